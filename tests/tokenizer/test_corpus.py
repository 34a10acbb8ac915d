"""Corpus streaming: input specs, the language mix, unreadable records counted, determinism."""

import gzip
from collections import Counter
from pathlib import Path

import pytest

from crawlmill.tokenizer.config import parse_mix
from crawlmill.tokenizer.corpus import CorpusCounts, InputSpec, SampledCorpus, iter_documents, keep_probabilities


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
    p = keep_probabilities(totals, {"en": 0.5, "zh": 0.5}, None)
    assert p == {"en": 0.1, "zh": 1.0, "fr": 0.0}  # zh is scarce: all of it, as much en, no fr
    assert keep_probabilities(totals, {"en": 0.5, "zh": 0.5}, 100)["zh"] == 0.5
    assert keep_probabilities(totals, {}, 575) == {"en": 0.5, "zh": 0.5, "fr": 0.5}


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
    assert counts.bad_records == {"invalid_utf8_replaced": 1} and "b.txt" in counts.first_errors[0]


def test_sampling_is_deterministic_and_seeded(tmp_path):
    (tmp_path / "en.jsonl").write_text("".join(f'{{"text": "document {i}", "lang": "en"}}\n' for i in range(5000)))
    specs = [InputSpec(tmp_path / "en.jsonl")]
    runs = [[t for batch in SampledCorpus(specs, {"en": 0.3}, seed) for t in batch] for seed in (0, 0, 1)]
    assert runs[0] == runs[1] != runs[2]
    assert 1300 < len(runs[0]) < 1700
