"""Damaged WARC files: each record counted exactly once (kept, dropped or one quarantine entry), and
reading goes on after a gzip member that is sound but holds no record FastWARC can parse."""

import gzip
import re
from collections import Counter

import pytest

from crawlmill.corpora.warc_records import gzip_members, http_response, record, warcinfo
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.sources import InputError, resolve_named_sources
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.stage import StageResult

from .gzip_members import member_starts
from .test_stage import ingest_one, sample_copy


def balanced(stats: dict) -> bool:
    return stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


def sample_members() -> tuple[bytes, list[bytes]]:
    from tests.conftest import SAMPLES

    data = next(SAMPLES.glob("crawl-data/CC-MAIN-2024-10/segments/*/warc/*.warc.gz")).read_bytes()
    starts = member_starts(data) + [len(data)]
    return data, [data[a:b] for a, b in zip(starts, starts[1:])]


def page(n: int) -> bytes:
    return record("response", http_response(f"<html><body><p>Page number {n} has a paragraph of ordinary words in it.</p></body></html>".encode()), f"https://example.com/{n}")


def test_a_sound_member_that_is_no_warc_loses_only_its_record(tmp_path):
    """A member whose record's version line is mangled: before, FastWARC's parse error ended the file
    (5 of the sample's records counted, every page after it lost without an entry)."""
    data, members = sample_members()
    clean_stats, clean_docs, _ = ingest_one(sample_copy(tmp_path / "clean", data), tmp_path / "clean-out")
    victim = len(members) // 2
    mangled = gzip.compress(gzip.decompress(members[victim]).replace(b"WARC/1.", b"WARX/1.", 1), mtime=0)
    damaged = b"".join(members[:victim]) + mangled + b"".join(members[victim + 1 :])
    stats, docs, quarantine = ingest_one(sample_copy(tmp_path / "bad", damaged), tmp_path / "out")
    offset = len(b"".join(members[:victim]))
    assert [(q["error"], q["offset"]) for q in quarantine] == [("invalid_warc", offset)]
    assert f"in the gzip member at compressed offset {offset}" in quarantine[0]["detail"]
    assert f"reading resumed at the next valid gzip member, at offset {offset + len(mangled)}" in quarantine[0]["detail"]
    assert stats["in"] == clean_stats["in"] and balanced(stats)
    assert [d["id"] for d in docs] == [d["id"] for d in clean_docs if d["warc_offset"] != offset]


def test_a_content_length_too_small_counts_its_record_once(tmp_path):
    """The record is read short; the bytes it leaves in its member are no WARC: no second entry for them."""
    records = [warcinfo("CC-MAIN-2024-10"), page(1), page(2), page(3)]
    block_length = int(re.search(rb"Content-Length: (\d+)\r\n\r\nHTTP", records[2]).group(1))
    records[2] = records[2].replace(b"Content-Length: %d\r\n\r\nHTTP" % block_length, b"Content-Length: %d\r\n\r\nHTTP" % (block_length - 10), 1)
    path = tmp_path / "short.warc.gz"
    path.write_bytes(gzip_members(records))
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert stats["in"] == 4 and balanced(stats)
    assert "https://example.com/3" in {d["url"] for d in docs}  # the record after it is read
    assert stats["counters"]["damaged_member_of_counted_record"] == 1 and not quarantine


@pytest.mark.parametrize("share", [0.3, 0.5])
def test_a_record_cut_in_its_header_by_the_files_end_is_one_entry(tmp_path, share):
    records = [warcinfo("CC-MAIN-2024-10"), page(1), page(2), page(3)]
    data = gzip_members(records)
    last = member_starts(data)[-1]
    header_end = records[-1].index(b"\r\n\r\n")
    # A cut inside the last record's WARC header: decompress the member, keep `share` of its header, recompress without a trailer.
    cut = zlib_prefix(records[-1][: int(header_end * share)])
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data[:last] + cut)
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert [q["error"] for q in quarantine] == ["truncated_gzip"] and "header block is cut off" in quarantine[0]["detail"]
    assert stats["in"] == 4 and len(docs) == 2 and balanced(stats)


def zlib_prefix(raw: bytes) -> bytes:
    """A gzip member of `raw` with its end (the rest of the stream and the trailer) cut off."""
    whole = gzip.compress(raw + b"x" * 4096, compresslevel=1, mtime=0)  # more after `raw`, so the cut lies past it
    import zlib

    for n in range(10, len(whole)):  # the shortest prefix that decompresses to all of `raw`
        d = zlib.decompressobj(wbits=31)
        if d.decompress(whole[:n]).startswith(raw):
            return whole[:n]
    raise AssertionError("no prefix")


def test_a_file_ending_before_its_last_members_check_bytes_counts_each_record_once(tmp_path):
    """Before, the last record was kept *and* the truncation was an entry: in = records + 1. In a gzip
    of a whole file (one member), a truncation anywhere is one entry or none, never one per record."""
    records = [warcinfo("CC-MAIN-2024-10"), page(1), page(2)]
    data = gzip_members(records)
    for missing in (4, 8):
        path = tmp_path / f"trailer{missing}.warc.gz"
        path.write_bytes(data[:-missing])
        stats, docs, quarantine = ingest_one(path, tmp_path / f"out{missing}")
        assert stats["in"] == 3 and balanced(stats) and not quarantine
        assert [d["url"] for d in docs] == ["https://example.com/1", "https://example.com/2"] and stats["counters"]["gzip_end_missing"] == 1
    # A gzip of a whole file: what a cut took after the records read is one entry, whatever it was
    # (a record lost, or only the check bytes: no telling), never an entry per record read.
    whole = gzip.compress(b"".join([warcinfo("CC-MAIN-2024-10"), page(1), page(2), page(3)]), mtime=0)
    for cut in (4, 30, 76, 120):
        path = tmp_path / f"whole{cut}.warc.gz"
        path.write_bytes(whole[:-cut])
        stats, docs, quarantine = ingest_one(path, tmp_path / f"whole-out{cut}")
        assert balanced(stats) and [q["error"] for q in quarantine] == ["truncated_gzip"], (cut, quarantine)
        assert stats["dropped"] == {"warcinfo": 1} and all(d["dump"] == "CC-MAIN-2024-10" for d in docs)


def test_a_too_large_record_in_a_corrupt_member_is_one_entry(tmp_path):
    big = record("response", http_response(b"<html><body><p>" + b"many words here " * 8000 + b"</p></body></html>"), "https://example.com/big")
    records = [warcinfo("CC-MAIN-2024-10"), page(1), big, page(3)]
    members = [gzip.compress(r, compresslevel=1, mtime=0) for r in records]
    bad = bytearray(members[2])
    bad[-8] ^= 0xFF  # its CRC-32
    path = tmp_path / "big.warc.gz"
    path.write_bytes(b"".join(members[:2]) + bytes(bad) + members[3])
    stats, docs, quarantine = ingest_one(path, tmp_path / "out", IngestConfig(max_record_mb=0.05))
    assert [q["error"] for q in quarantine] == ["record_too_large"]
    assert stats["in"] == 4 and balanced(stats) and [d["url"] for d in docs] == ["https://example.com/1", "https://example.com/3"]


def test_a_utf7_page_with_a_lone_surrogate_is_read_not_a_failed_file(tmp_path):
    """`+2AA-` decodes to U+D800 in UTF-7: before, the Parquet write failed the whole file's task."""
    words = b"An ordinary paragraph of words, long enough that one undecodable character is a rare one. " * 3
    utf7 = record("response", http_response(b"<html><body><p>" + words + b"+2AA-" + words + b"</p></body></html>", "text/html; charset=utf-7"), "https://example.com/7")
    path = tmp_path / "utf7.warc.gz"
    path.write_bytes(gzip_members([warcinfo("CC-MAIN-2024-10"), page(1), utf7, page(3)]))
    stats, docs, _ = ingest_one(path, tmp_path / "out")
    assert stats["in"] == 4 and stats["kept"] == 3
    text = next(d["text"] for d in docs if d["url"] == "https://example.com/7")
    assert "\ufffd" in text and not re.search("[\ud800-\udfff]", text)


def test_the_paths_dump_wins_over_a_warcinfo_naming_another(tmp_path):
    """A dump's run takes the file by its path: its rows must carry that dump, or the dump's later
    stages would not find them (parts_of_dump)."""
    path = tmp_path / "crawl-data/CC-MAIN-2024-10/segments/1/warc/x.warc.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip_members([warcinfo("CC-MAIN-2023-50"), page(1)]))
    stats, docs, _ = ingest_one(path, tmp_path / "out", IngestConfig(only_dump="CC-MAIN-2024-10"))
    assert [d["dump"] for d in docs] == ["CC-MAIN-2024-10"]
    assert stats["counters"]["warcinfo_dump_differs_from_path"] == 1


def test_a_dumps_run_refuses_files_of_no_dump_and_names_those_of_other_dumps(tmp_path):
    for dump in ("CC-MAIN-2024-10", "CC-MAIN-2023-50"):
        path = tmp_path / f"in/crawl-data/{dump}/segments/1/warc/{dump}.warc.gz"
        path.parent.mkdir(parents=True)
        path.write_bytes(gzip_members([warcinfo(dump), page(1)]))
    others: Counter = Counter()
    assert len(resolve_named_sources([str(tmp_path / "in")], only_dump="CC-MAIN-2024-10", other_dumps=others)) == 1
    assert others == {"CC-MAIN-2023-50": 1}
    stage = IngestStage(IngestConfig(inputs=[str(tmp_path / "in")], only_dump="CC-MAIN-2024-10"))
    lines = stage.report(StageResult({"in": 0, "kept": 0, "dropped": {}, "quarantined": 0}, tmp_path / "out"))
    assert any("input files of other dumps" in line and "CC-MAIN-2023-50 (1)" in line for line in lines)
    # A WARC file whose path names no dump: no dump's run would take it; before, it was left out unsaid.
    (tmp_path / "in/extra").mkdir()
    (tmp_path / "in/extra/c.warc.gz").write_bytes(gzip_members([page(2)]))
    with pytest.raises(InputError, match=r"c\.warc\.gz: a run with a dumps: section .* names no dump \(1 such input file"):
        resolve_named_sources([str(tmp_path / "in")], only_dump="CC-MAIN-2024-10")


def test_a_payload_the_crawler_truncated_is_counted(tmp_path):
    """Common Crawl cuts payloads at 1 MiB and says so (WARC-Truncated: length): the page's text is partial."""
    cut = record("response", http_response(b"<html><body><p>" + b"A page the crawler cut short, with words. " * 5 + b"</p></body></html>"), "https://example.com/cut", extra={"WARC-Truncated": "length"})
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(gzip_members([warcinfo("CC-MAIN-2024-10"), page(1), cut]))
    stats, docs, _ = ingest_one(path, tmp_path / "out")
    assert stats["kept"] == 2 and stats["counters"]["payload_truncated_by_crawler"] == 1
