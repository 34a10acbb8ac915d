"""An uncompressed WARC with bytes FastWARC cannot parse in the middle (a stray line, a Content-Length
too large) is read on at the next WARC record header: one `invalid_warc` entry naming where reading
resumed, and every record after the damage read as in the undamaged file. Before, the entry said
the rest of the file was not read. A source that cannot seek, or damage with no header after it,
ends the file as before, and the entry says which."""

import gzip
import io
import re

import pytest

from crawlmill.pipeline.ingest.gunzip import GunzipReader
from tests.conftest import SAMPLES
from tests.pipeline.ingest.test_stage import ingest_one


@pytest.fixture(scope="module")
def plain() -> bytes:
    """A sample crawl's WARC file, uncompressed (every record: warcinfo, request, response, metadata)."""
    return gzip.decompress(next(SAMPLES.glob("crawl-data/CC-MAIN-2024-10/segments/*/warc/*.warc.gz")).read_bytes())


def record_starts(data: bytes) -> list[int]:
    return [m.start() for m in re.finditer(rb"(?:^|(?<=\n))WARC/1\.\d\r\n", data)]


def rows(docs: list[dict]) -> list[tuple]:
    return [(d["warc_record_id"], d["url"], d["text"]) for d in docs]


def test_a_stray_line_between_records_loses_no_record(plain, tmp_path):
    starts = record_starts(plain)
    victim = len(starts) // 2
    damaged = plain[: starts[victim]] + b"a stray line from a broken writer\r\n" + plain[starts[victim] :]
    (tmp_path / "good.warc").write_bytes(plain)
    (tmp_path / "damaged.warc").write_bytes(damaged)
    good_stats, good_docs, _ = ingest_one(tmp_path / "good.warc", tmp_path / "good")
    stats, docs, quarantine = ingest_one(tmp_path / "damaged.warc", tmp_path / "damaged")
    assert rows(docs) == rows(good_docs) and len(docs) > 2
    assert [(q["error"], q["offset"]) for q in quarantine] == [("invalid_warc", starts[victim - 1])]
    resumed_at = starts[victim] + len(b"a stray line from a broken writer\r\n")
    assert f"reading resumed at the next WARC record header, at offset {resumed_at}" in quarantine[0]["detail"]
    assert stats["in"] == good_stats["in"] + 1 and stats["kept"] == good_stats["kept"]  # the entry, and every record
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


def test_a_content_length_too_large_mid_file_reads_the_records_after_it(plain, tmp_path):
    starts = record_starts(plain)
    victim = next(i for i in range(1, len(starts) - 2) if b"WARC-Type: request" in plain[starts[i] : starts[i + 1]])
    header = re.compile(rb"Content-Length: (\d+)").search(plain, starts[victim])
    damaged = plain[: header.start(1)] + str(int(header.group(1)) + 300).encode() + plain[header.end(1) :]
    (tmp_path / "good.warc").write_bytes(plain)
    (tmp_path / "damaged.warc").write_bytes(damaged)
    _, good_docs, _ = ingest_one(tmp_path / "good.warc", tmp_path / "good")
    stats, docs, quarantine = ingest_one(tmp_path / "damaged.warc", tmp_path / "damaged")
    assert rows(docs) == rows(good_docs)  # a request record swallowed 300 bytes: every page survives
    assert [q["error"] for q in quarantine] == ["invalid_warc"] and "reading resumed" in quarantine[0]["detail"]
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


def test_damage_with_no_header_after_it_ends_the_file_and_says_so(plain, tmp_path):
    starts = record_starts(plain)
    damaged = plain[: starts[-1]] + b"not a record\r\n" + plain[starts[-1] + 20 :].replace(b"WARC/", b"warc/")
    (tmp_path / "damaged.warc").write_bytes(damaged)
    stats, docs, quarantine = ingest_one(tmp_path / "damaged.warc", tmp_path / "out")
    assert [q["error"] for q in quarantine] == ["invalid_warc"]
    assert "no WARC record header follows: the rest of the file was not read" in quarantine[0]["detail"]
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


def test_resync_goes_forward_over_a_header_that_is_no_record(plain, tmp_path):
    """A header block that looks like one (the resync's test) but is no record (no WARC-Record-ID, a
    negative Content-Length): its own entry, and reading goes on past it, never back to it."""
    starts = record_starts(plain)
    victim = len(starts) // 2
    bogus = b"WARC/1.0\r\nWARC-Type: response\r\nContent-Length: -5\r\n\r\n"
    damaged = plain[: starts[victim]] + b"stray\r\n" + bogus + plain[starts[victim] :]
    (tmp_path / "good.warc").write_bytes(plain)
    (tmp_path / "damaged.warc").write_bytes(damaged)
    _, good_docs, _ = ingest_one(tmp_path / "good.warc", tmp_path / "good")
    stats, docs, quarantine = ingest_one(tmp_path / "damaged.warc", tmp_path / "damaged")
    assert rows(docs) == rows(good_docs)
    bogus_at = starts[victim] + len(b"stray\r\n")
    assert [(q["error"], q["offset"]) for q in quarantine] == [("invalid_warc", starts[victim - 1]), ("invalid_record", bogus_at)]
    assert f"at offset {bogus_at}" in quarantine[0]["detail"]
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


class NoSeek(io.RawIOBase):
    """A source read once, front to back (a pipe, an HTTP stream without ranges)."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_the_resync_finds_the_next_header_from_an_offset_and_needs_a_source_that_seeks(plain):
    starts = record_starts(plain)
    reader = GunzipReader(io.BytesIO(plain), chunk_size=4096)
    assert not reader.is_gzip
    reader.read(10_000)  # FastWARC has read on; the resync reads again from the offset
    assert reader.resync_plain(starts[3] + 1) == starts[4] and reader.tell() == starts[4]
    assert reader.read(len(b"WARC/1.")) == b"WARC/1."
    assert reader.resync_plain(starts[-1] + 1) is None and reader.size == len(plain)
    assert GunzipReader(NoSeek(plain)).resync_plain(1) is None
