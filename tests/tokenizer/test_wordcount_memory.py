"""Word-count mode's memory is bounded by a chunk and a partition, not by the corpus: large JSONL and
Parquet files are counted in chunks (byte ranges of lines, ranges of row groups) whose counts add up
to the whole file's, the reduce's partitions grow with the text, and a reduce task sums its partials
as it reads them instead of holding every chunk's at once."""

import json
import random
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.dedup.shuffle import partition_tables, write_partitioned
from crawlmill.pipeline.stage import StageInputError
from crawlmill.tokenizer import wordcount
from crawlmill.tokenizer.config import TokenizerConfig
from crawlmill.tokenizer.corpus import CorpusCounts, InputSpec, iter_file_documents
from crawlmill.tokenizer.sampling import Unit, plan_units, unit_documents
from crawlmill.tokenizer.stage import train_tokenizer
from crawlmill.tokenizer.wordcount import MAX_PARTITIONS, PARTITION_ROWS, TEXT_BYTES_PER_ROW, WORD_SCHEMA, count_words, reduce_words, word_partitions

from .test_sampling import sample

WORDS = [f"w{i}" for i in range(3000)] + ["深度求索", "語言", "模型"]


def _jsonl_lines(n: int, seed: int = 0) -> list[str]:
    """Records with a text (and a language or not), and what is counted as unreadable: bad JSON, a
    record without `text`, a JSON array; blank lines."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 40)))
        kind = i % 97
        if kind == 5:
            lines.append("{not json\n")
        elif kind == 6:
            lines.append(json.dumps({"body": text}) + "\n")
        elif kind == 7:
            lines.append("[1, 2]\n")
        elif kind == 8:
            lines.append("\n")
        else:
            lines.append(json.dumps({"text": text, **({"lang": rng.choice(["en", "zh"])} if i % 3 else {})}, ensure_ascii=i % 2 == 0) + "\n")
    return lines


def _counted(units: list[Unit], work, partitions: int = 3) -> tuple[Counter, CorpusCounts, CorpusCounts]:
    """The word counts of `units` (each counted as the stage's count task does), summed; what was read and kept."""
    read, kept = CorpusCounts(), CorpusCounts()
    for unit in units:
        result = count_words(unit, None, 0, partitions, str(work))
        read.add_json(result["read"])
        kept.add_json(result["kept"])
    words: Counter = Counter()
    for p in range(partitions):
        for t in partition_tables(work / "counts", p, WORD_SCHEMA):
            for w, lang, n in zip(t.column("word").to_pylist(), t.column("lang").to_pylist(), t.column("count").to_pylist()):
                words[w, lang] += n
    return words, read, kept


def test_a_jsonl_file_larger_than_a_chunk_is_counted_in_ranges_that_add_up_to_the_whole(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(_jsonl_lines(4000)), encoding="utf-8")
    size = path.stat().st_size
    units = plan_units([InputSpec(path)], 50_000)
    assert len(units) == -(-size // 50_000) > 5 and {u.kind for u in units} == {"jsonl_range"}
    assert sum(u.size for u in units) == size
    whole = plan_units([InputSpec(path)])
    assert [u.kind for u in whole] == ["file"]
    chunked_words, chunked_read, chunked_kept = _counted(units, tmp_path / "chunked")
    whole_words, whole_read, whole_kept = _counted(whole, tmp_path / "whole")
    assert chunked_words == whole_words and sum(whole_words.values()) > 50_000
    for name in ("bytes", "documents", "empty", "bad_records"):
        assert getattr(chunked_read, name) == getattr(whole_read, name), name
        assert getattr(chunked_kept, name) == getattr(whole_kept, name), name
    assert whole_read.bad_records == {"bad_json": 42, "no_text_field": 84}  # counted by reason, chunked or not
    assert chunked_read.first_errors[0] == f"{path}: the line at byte {_offset(path, 5):,}: " + whole_read.first_errors[0].split(": ", 1)[1]


def _offset(path, line: int) -> int:
    return sum(len(x) for x in path.read_bytes().splitlines(keepends=True)[:line])


def test_jsonl_ranges_read_every_record_once_wherever_they_are_cut(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(_jsonl_lines(600, seed=1)), encoding="utf-8")
    size = path.stat().st_size
    expected = [t for _, texts, _ in iter_file_documents("jsonl", path, None, CorpusCounts()) for t in texts]
    rng = random.Random(0)
    for _ in range(20):
        cuts = sorted({0, size, *(rng.randrange(size) for _ in range(rng.randrange(1, 12)))})
        cuts += [_offset(path, 10), _offset(path, 11)]  # cuts at a line's first byte too
        cuts = sorted(set(cuts))
        got = [t for start, end in zip(cuts, cuts[1:]) for _, texts, _ in iter_file_documents("jsonl", path, None, CorpusCounts(), start, end) for t in texts]
        assert got == expected


def test_a_jsonl_file_without_text_is_still_an_error_said_by_its_first_range(tmp_path):
    path = tmp_path / "content.jsonl"
    path.write_text("".join(json.dumps({"content": f"record {i} " * 20}) + "\n" for i in range(2000)), encoding="utf-8")
    units = plan_units([InputSpec(path)], 20_000)
    assert len(units) > 3
    with pytest.raises(StageInputError, match=r"none of its 2,000 records has a `text` string \(the first record's keys: content\)"):
        list(unit_documents(units[0], CorpusCounts()))
    later = CorpusCounts()
    assert list(unit_documents(units[2], later)) == [] and later.bad_records["no_text_field"] > 0  # counted; the first range says the error

    # text only after the first range: no error, as when the file is read whole
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(path.read_text() + json.dumps({"text": "at last"}) + "\n", encoding="utf-8")
    counts = CorpusCounts()
    texts = [t for u in plan_units([InputSpec(mixed)], 20_000) for batch, _ in unit_documents(u, counts) for t in batch]
    assert texts == ["at last"] and counts.bad_records == {"no_text_field": 2000}


def test_a_parquet_file_of_many_row_groups_is_counted_in_ranges_of_them(tmp_path):
    rng = random.Random(2)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 60))) for _ in range(6000)]
    langs = [rng.choice(["en", "zh", None]) for _ in texts]
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": texts, "lang": langs}), path, row_group_size=250)
    units = plan_units([InputSpec(path)], 40_000)
    assert len(units) > 5 and {u.kind for u in units} == {"parquet_range"}
    assert [(u.start, u.end) for u in units][0][0] == 0 and units[-1].end == 24
    assert all(a.end == b.start for a, b in zip(units, units[1:]))  # every row group once
    got = [t for u in units for batch, _ in unit_documents(u, CorpusCounts()) for t in batch]
    assert got == texts
    chunked_words, chunked_read, _ = _counted(units, tmp_path / "chunked")
    whole_words, whole_read, _ = _counted(plan_units([InputSpec(path)]), tmp_path / "whole")
    assert chunked_words == whole_words and chunked_read.bytes == whole_read.bytes and chunked_read.documents == whole_read.documents


def test_a_sampled_word_count_of_a_chunked_jsonl_file_is_exact_and_deterministic(tmp_path):
    """With --mix/--max-bytes in word-count mode, a large JSONL file's chunks are the sample's units
    (as plain text's were): other documents than a streamed run, the same bytes, the same each run."""
    path = tmp_path / "en.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {i} " + "x" * (i % 50)}) + "\n" for i in range(6000)), encoding="utf-8")
    total = sum(len(f"document {i} " + "x" * (i % 50)) for i in range(6000))
    runs = [[t for batch in sample([InputSpec(path, "en")], {}, total // 3, 4, tmp_path / f"w{i}", chunk_bytes=60_000) for t in batch] for i in range(2)]
    assert runs[0] == runs[1] and sum(len(t) for t in runs[0]) == total // 3


def _partials(work, chunks: int, rows: int, seed: int = 0) -> Counter:
    """`chunks` count files of partition 0, each `rows` words of a 3,003-word vocabulary (words repeat
    over chunks, as they do in a corpus); their sum."""
    rng = random.Random(seed)
    total: Counter = Counter()
    for c in range(chunks):
        words = rng.sample(WORDS, rows)
        langs = [rng.choice(["en", "zh", "und"]) for _ in words]
        counts = [rng.randrange(1, 100) for _ in words]
        table = pa.table({"word": words, "lang": langs, "count": counts}, schema=WORD_SCHEMA)
        write_partitioned(work / "counts", f"t-{c:05d}", table, np.zeros(rows, np.int64), 1)
        total.update({(w, lang): n for w, lang, n in zip(words, langs, counts)})
    return total


def test_a_reduce_sums_its_partials_as_it_reads_them(tmp_path, monkeypatch):
    """Each reduce task concatenated every chunk's partials of its partition before summing them: its
    rows grew with the corpus (at 10 TB, ~4.6e8 rows in one task). Now it holds the running sums and
    a batch of partials: here at most ~2x the distinct words and a batch, not all 120,000 rows."""
    expected = _partials(tmp_path, chunks=60, rows=2000)
    monkeypatch.setattr(wordcount, "REDUCE_BATCH_ROWS", 5000, raising=False)
    held: list[int] = []
    concat = pa.concat_tables

    def counting_concat(tables, *args, **kwargs):
        table = concat(tables, *args, **kwargs)
        held.append(table.num_rows)
        return table

    monkeypatch.setattr(pa, "concat_tables", counting_concat)
    histogram = reduce_words(0, str(tmp_path))
    summed = pq.read_table(tmp_path / "words" / "p-00000.parquet")
    got = Counter({(w, lang): n for w, lang, n in zip(summed.column("word").to_pylist(), summed.column("lang").to_pylist(), summed.column("count").to_pylist())})
    assert got == expected  # exactly the sums
    keys = list(zip(summed.column("word").to_pylist(), summed.column("lang").to_pylist()))
    assert keys == sorted(keys)  # sorted by word, then language, as before
    assert histogram["distinct"] == len({w for w, _ in expected}) and histogram["occurrences"] == sum(expected.values())
    partial_rows, distinct_rows = 60 * 2000, len(expected)
    assert held and max(held) <= 2 * max(5000, distinct_rows) + 2000 < partial_rows, held


def test_reduce_partitions_grow_with_the_text():
    """`min(256, chunks)` partitions: at 10 TB (156k chunks of 64 MB) each reduce got 1/256 of every
    chunk's partials. Now each expects at most PARTITION_ROWS partial rows, up to MAX_PARTITIONS."""
    mb64 = 64 << 20

    def units(n: int, size: int = mb64) -> list[Unit]:
        return [Unit(i, "text_range", "x.txt", None, "0/x.txt", i * size, (i + 1) * size, size) for i in range(n)]

    assert word_partitions(units(10)) == 10 and word_partitions(units(300, 1 << 20)) == 256  # small corpora: as before
    assert word_partitions([]) == 1
    for n in (2_000, 8_000, 20_000):  # 128 GB, 512 GB, 1.3 TB
        p = word_partitions(units(n))
        assert p > 256 and (n * mb64 / TEXT_BYTES_PER_ROW / p <= PARTITION_ROWS or p == MAX_PARTITIONS)
    assert word_partitions(units(2_000)) < word_partitions(units(8_000)) < word_partitions(units(20_000)) == MAX_PARTITIONS


def test_a_chunked_word_count_of_jsonl_and_parquet_gives_the_streamed_tokenizer(ray_local, tmp_path):
    """JSONL and Parquet counted in chunks (several units each) and reduced over several partitions:
    the same word counts, so the same tokenizer as streaming the files."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("".join(_jsonl_lines(3000, seed=3)), encoding="utf-8")
    rng = random.Random(4)
    pq.write_table(pa.table({"text": [" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(3000)]}), tmp_path / "in" / "b.parquet", row_group_size=300)
    inputs = [str(tmp_path / "in")]
    streamed = train_tokenizer(TokenizerConfig(inputs=inputs, vocab_size=270), tmp_path / "streamed")
    counted = train_tokenizer(TokenizerConfig(inputs=inputs, vocab_size=270, max_memory_gib=8, count_chunk_mb=0.05), tmp_path / "counted")
    assert counted["word_table"]["count_tasks"] > 6 and counted["word_table"]["min_count"] == 1
    assert (tmp_path / "counted" / "tokenizer.json").read_bytes() == (tmp_path / "streamed" / "tokenizer.json").read_bytes()
    assert counted["corpus_read"]["bad_records"] == streamed["corpus_read"]["bad_records"] != {}
    assert counted["corpus_trained"]["bytes"] == streamed["corpus_trained"]["bytes"]
