"""Corpus streaming: input specs, the language mix and its byte targets, unreadable records
counted. The sampling itself (exact, deterministic): test_sampling.py."""

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from crawlmill.tokenizer.config import TokenizerConfig, parse_mix
from crawlmill.tokenizer.corpus import CorpusCounts, InputSpec, iter_documents
from crawlmill.tokenizer.sampling import byte_targets


def test_input_specs(tmp_path):
    assert InputSpec.parse("zh=data/zh.txt") == InputSpec(Path("data/zh.txt"), "zh")
    assert InputSpec.parse("data/x.txt") == InputSpec(Path("data/x.txt"))
    odd = tmp_path / "a=b.txt"  # an existing file whose name has "=" is a path, not a language
    odd.write_text("x")
    assert InputSpec.parse(str(odd)) == InputSpec(odd)


def test_mix_parsing_and_probabilities():
    assert parse_mix("en=3,zh=1") == {"en": 0.75, "zh": 0.25}
    for bad in ("en", "en=x", "en=-1", "en=0"):
        with pytest.raises(ValueError):
            parse_mix(bad)
    totals = Counter(en=1000, zh=100, fr=50)
    assert byte_targets(totals, {"en": 0.5, "zh": 0.5}, None) == {"en": 100, "zh": 100, "fr": 0}  # zh is scarce: all of it, as much en, no fr
    assert byte_targets(totals, {"en": 0.5, "zh": 0.5}, 100) == {"en": 50, "zh": 50, "fr": 0}
    assert byte_targets(totals, {}, 575) == {"en": 500, "zh": 50, "fr": 25}  # no mix: each language's own share
    assert byte_targets(totals, {}, 10**9) == dict(totals)
    assert sum(byte_targets(Counter(a=1, b=1, c=1), {}, 2).values()) <= 2  # rounded down, never over
    with pytest.raises(ValueError, match="no text in it"):
        byte_targets(totals, {"de": 1.0}, None)
    with pytest.raises(ValueError, match="seed -1: must be >= 0"):  # refused up front, not by numpy after the scan
        TokenizerConfig(inputs=["x"], seed=-1)


def test_text_gzip_and_bad_utf8_are_read_and_counted(tmp_path):
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("第一行\nsecond line\n" * 10_000)
    (tmp_path / "b.txt").write_bytes(b"ok\n\xff\xfe broken\n")
    counts = CorpusCounts()
    batches = list(iter_documents(InputSpec(tmp_path, "xx"), counts))
    texts = [t for _, ts, _ in batches for t in ts]
    assert "".join(texts).count("第一行") == 10_000 and "\ufffd\ufffd broken" in "".join(texts)
    assert all(len(t.encode()) < 2 * 65536 for t in texts)  # blocks, not whole files
    assert {lang for _, _, langs in batches for lang in langs} == {"xx"}
    assert counts.bad_records == {"invalid_utf8_replaced": 1} and "b.txt: byte 3 of its text are not UTF-8" in counts.first_errors[0]
    # Past the first block, the place is the file's, not the block's (it was 13,239 for byte 999,998).
    (tmp_path / "b.txt").unlink()
    (tmp_path / "a.txt.gz").unlink()
    (tmp_path / "c.txt").write_bytes(b"line of text\n" * 20_000 + b"bad \xff end\n")
    counts = CorpusCounts()
    list(iter_documents(InputSpec(tmp_path, "xx"), counts))
    assert f"c.txt: byte {13 * 20_000 + 4:,} of its text are not UTF-8" in counts.first_errors[0]


def test_jsonl_whose_records_have_no_text_field_is_named_with_their_keys(ray_local, tmp_path):
    """`crawlmill tokenizer train` on JSONL keyed `content`: once "there is no text in the inputs
    (en=...content.jsonl): nothing to read"; now the file, that its records have no `text`, and the
    first record's keys, as for a Parquet file without the column. A file with some records
    without it is read as before (those counted as no_text_field, test_train.py)."""
    from typer.testing import CliRunner

    from crawlmill.cli import app

    records = tmp_path / "content.jsonl"
    records.write_text("".join(json.dumps({"content": f"Hello gardens {i}.", "url": f"https://x.org/{i}"}) + "\n" for i in range(50)))
    result = CliRunner().invoke(app, ["tokenizer", "train", f"en={records}", "--output", str(tmp_path / "tok"), "--vocab-size", "300", "--no-progress"])
    said = " ".join(result.output.split())
    assert result.exit_code == 2 and f"error: {records}: none of its 50 records has a `text` string (the first record's keys: content, url)" in said, said
    assert not (tmp_path / "tok").exists()
