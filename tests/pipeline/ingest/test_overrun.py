"""A record whose Content-Length is too large reads the records after it into its block (FastWARC
cannot tell): the record is kept with its true block where its gzip member shows where it ends, and
every record read into it is counted once, as its own `swallowed_record` entry or its member's
parse error (pipeline/ingest/overrun.py)."""

import gzip
import re

import pytest

from crawlmill.corpora.warc_records import gzip_members, http_response, record, warcinfo

from .gzip_members import member_starts
from .test_damage_counted_once import balanced, sample_members
from .test_stage import ingest_one, sample_copy


def page(n: int) -> bytes:
    body = f"<html><body><p>Page number {n} has a paragraph of ordinary words in it.</p></body></html>"
    return record("response", http_response(body.encode()), f"https://example.com/{n}")


def lengthen(raw: bytes, extra: int) -> bytes:
    """The record with its Content-Length `extra` bytes larger than its block."""
    n = int(re.search(rb"\r\nContent-Length: (\d+)\r\n", raw).group(1))
    return raw.replace(b"\r\nContent-Length: %d\r\n" % n, b"\r\nContent-Length: %d\r\n" % (n + extra), 1)


def record_id(raw: bytes) -> str:
    return re.search(rb"WARC-Record-ID: (<[^>]+>)", raw).group(1).decode()


def texts(docs: list[dict]) -> dict[str, str]:
    return {d["url"]: d["text"] for d in docs}


def test_a_record_reading_on_to_the_files_end_keeps_its_text_and_counts_each_record_it_swallowed(tmp_path):
    """Before: records 3 and 4 vanished inside record 2's block (`in` 3 of 5 records) and record 2
    was one `truncated_record` entry; now 2 is kept as it is and 3 and 4 are an entry each."""
    records = [warcinfo("CC-MAIN-2024-10"), page(1), page(2), page(3), page(4)]
    clean = tmp_path / "clean.warc.gz"
    clean.write_bytes(gzip_members(records))
    _, clean_docs, _ = ingest_one(clean, tmp_path / "clean-out")
    damaged = list(records)
    damaged[2] = lengthen(records[2], 5000)
    path = tmp_path / "long.warc.gz"
    path.write_bytes(gzip_members(damaged))
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert stats["in"] == 5 and balanced(stats)
    assert texts(docs) == {url: text for url, text in texts(clean_docs).items() if url in ("https://example.com/1", "https://example.com/2")}
    starts = member_starts(path.read_bytes())
    assert [(q["error"], q["offset"], q["record_id"]) for q in quarantine] == [
        ("swallowed_record", starts[3], record_id(records[3])),
        ("swallowed_record", starts[4], record_id(records[4])),
    ]
    assert f"the record at offset {starts[2]}" in quarantine[0]["detail"]
    assert stats["counters"]["content_length_past_member"] == 1


@pytest.mark.parametrize("extra", [10, 200])
def test_a_record_reading_into_part_of_the_next_keeps_its_true_text(tmp_path, extra):
    """Before, record 2 was kept with the next record's first bytes in its text; the next record,
    read in part, is its member's one parse-error entry, and reading goes on after it."""
    records = [warcinfo("CC-MAIN-2024-10"), page(1), page(2), page(3), page(4)]
    clean = tmp_path / "clean.warc.gz"
    clean.write_bytes(gzip_members(records))
    _, clean_docs, _ = ingest_one(clean, tmp_path / "clean-out")
    damaged = list(records)
    damaged[2] = lengthen(records[2], extra)
    path = tmp_path / "long.warc.gz"
    path.write_bytes(gzip_members(damaged))
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert stats["in"] == 5 and balanced(stats)
    assert texts(docs) == {url: text for url, text in texts(clean_docs).items() if url != "https://example.com/3"}
    assert [(q["error"], q["offset"]) for q in quarantine] == [("invalid_warc", member_starts(path.read_bytes())[3])]
    assert stats["counters"]["content_length_past_member"] == 1


def test_a_real_common_crawl_record_swallowing_two_whole_records_and_part_of_a_third(tmp_path):
    """The sample WARC (one gzip member per record): a response record's Content-Length grown to
    reach into the third member after it. The two whole ones are entries with their ids, the third
    its member's parse error; every record after it reads as in the clean file."""
    data, members = sample_members()
    clean_stats, clean_docs, _ = ingest_one(sample_copy(tmp_path / "clean", data), tmp_path / "clean-out")
    raw = [gzip.decompress(m) for m in members]
    victim = next(i for i in range(len(raw) // 2, len(raw) - 4) if b"WARC-Type: response" in raw[i])
    reach = len(raw[victim + 1]) + len(raw[victim + 2]) + len(raw[victim + 3]) // 2
    grown = gzip.compress(lengthen(raw[victim], reach), mtime=0)
    damaged = b"".join(members[:victim]) + grown + b"".join(members[victim + 1 :])
    stats, docs, quarantine = ingest_one(sample_copy(tmp_path / "bad", damaged), tmp_path / "out")
    starts = member_starts(damaged)
    assert stats["in"] == clean_stats["in"] and balanced(stats)
    assert [(q["error"], q["offset"]) for q in quarantine] == [
        ("swallowed_record", starts[victim + 1]),
        ("swallowed_record", starts[victim + 2]),
        ("invalid_warc", starts[victim + 3]),
    ]
    assert [q["record_id"] for q in quarantine[:2]] == [record_id(raw[victim + 1]), record_id(raw[victim + 2])]
    lost = {starts[victim + k] for k in (1, 2, 3)}
    clean_offsets = member_starts(data)
    shift = len(grown) - len(members[victim])
    expected = [(d["url"], d["text"]) for d in clean_docs if d["warc_offset"] + (shift if d["warc_offset"] > clean_offsets[victim] else 0) not in lost]
    assert [(d["url"], d["text"]) for d in docs] == expected
    assert stats["counters"]["content_length_past_member"] == 1


def test_an_uncompressed_warc_counts_the_records_read_into_a_block_cut_by_the_files_end(tmp_path):
    """No member boundary tells where the record ends: it stays a `truncated_record` entry, and the
    whole WARC headers inside its short block are an entry each (before: not counted at all)."""
    records = [warcinfo("CC-MAIN-2024-10"), page(1), page(2), page(3), page(4)]
    damaged = list(records)
    damaged[2] = lengthen(records[2], 5000)
    path = tmp_path / "long.warc"
    path.write_bytes(b"".join(damaged))
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert stats["in"] == 5 and balanced(stats)
    assert [d["url"] for d in docs] == ["https://example.com/1"]
    assert [(q["error"], q["record_id"]) for q in quarantine] == [
        ("truncated_record", record_id(records[2])),
        ("swallowed_record", record_id(records[3])),
        ("swallowed_record", record_id(records[4])),
    ]


def test_sound_common_crawl_files_show_no_overrun(tmp_path, shared_data):
    """No false alarm on real files (the repo's samples, the shared WARC, WET and WAT files of
    Common Crawl and of WARC libraries' test sets): no record
    is cut, none counted as reading past its member."""
    from tests.conftest import SAMPLES

    shared = [p for p in sorted((shared_data / "cc").rglob("*.warc*.gz")) if p.name != "clipped.warc.gz"]  # clipped: cut on purpose
    files = sorted(SAMPLES.glob("crawl-data/*/segments/*/*/*.gz")) + shared
    assert len(files) > 12
    for n, path in enumerate(files):
        stats, _, quarantine = ingest_one(path, tmp_path / f"out{n}")
        assert "content_length_past_member" not in stats.get("counters", {}), path
        assert not [q for q in quarantine if q["error"] == "swallowed_record"], path
