import gzip
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawlmill.pipeline.ingest.gunzip import GunzipReader


class Trickle(io.RawIOBase):
    """A stream that returns at most `step` bytes a read, like a slow network."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.step if size < 0 else min(size, self.step)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def read_all(reader: GunzipReader, size: int = 7777) -> bytes:
    out = bytearray()
    while chunk := reader.read(size):
        out += chunk
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(
    members=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=6),
    step=st.integers(min_value=1, max_value=5000),
    read_size=st.integers(min_value=1, max_value=9000),
)
def test_multi_member_gzip_matches_gzip_module_for_any_chunking(members, step, read_size):
    data = b"".join(gzip.compress(m, mtime=0) for m in members)
    reader = GunzipReader(Trickle(data, step), chunk_size=step)
    assert read_all(reader, read_size) == b"".join(members)
    assert reader.damaged is None
    assert reader.is_gzip


def test_member_offsets_map_records_to_compressed_offsets():
    members = [b"A" * 1000, b"B" * 50, b"C" * 7000]
    compressed = [gzip.compress(m, mtime=0) for m in members]
    reader = GunzipReader(io.BytesIO(b"".join(compressed)))
    read_all(reader)
    assert reader.record_offset(0) == 0
    assert reader.record_offset(1000) == len(compressed[0])
    assert reader.record_offset(1050) == len(compressed[0]) + len(compressed[1])
    assert reader.record_offset(1049) == 1049  # not a member start: decompressed offset


def test_plain_bytes_pass_through():
    data = b"WARC/1.0\r\n" * 5000
    reader = GunzipReader(Trickle(data, 333))
    assert not reader.is_gzip
    assert read_all(reader) == data
    assert reader.damaged is None


def test_truncated_stream_keeps_earlier_members_and_says_where():
    first, second = gzip.compress(b"x" * 5000, mtime=0), gzip.compress(b"y" * 5000, mtime=0)
    reader = GunzipReader(io.BytesIO(first + second[: len(second) // 2]))
    out = read_all(reader)
    assert out.startswith(b"x" * 5000)
    assert reader.truncated
    assert f"compressed offset {len(first)}" in reader.damaged


def test_corrupt_member_is_reported_not_raised():
    good = gzip.compress(b"hello" * 100, mtime=0)
    bad = bytearray(gzip.compress(b"world" * 100, mtime=0))
    bad[12:20] = b"\xff" * 8
    reader = GunzipReader(io.BytesIO(good + bytes(bad)))
    assert read_all(reader).startswith(b"hello" * 100)
    assert reader.corrupt and "corrupt gzip member" in reader.corrupt


def test_garbage_after_a_member_is_reported():
    reader = GunzipReader(io.BytesIO(gzip.compress(b"ok", mtime=0) + b"not gzip at all"))
    assert read_all(reader) == b"ok"
    assert "do not start a gzip member" in reader.damaged


def test_gzip_bomb_is_produced_in_bounded_pieces():
    data = gzip.compress(b"\0" * (64 << 20), compresslevel=9, mtime=0)  # 64 MiB in ~64 KiB
    reader = GunzipReader(io.BytesIO(data))
    assert len(reader.read(1 << 16)) == 1 << 16
    assert len(reader._out) <= 1 << 17  # never the whole 64 MiB at once


def test_empty_input():
    reader = GunzipReader(io.BytesIO(b""))
    assert reader.empty and read_all(reader) == b"" and reader.damaged is None


# Resync after a corrupt member (Common Crawl's files are one gzip member per record).
def warc_members(n: int, size: int = 3000) -> list[bytes]:
    from crawlmill.corpora.warc_records import record

    return [gzip.compress(record("resource", bytes([65 + i % 26]) * size, f"https://r.example/{i}"), mtime=0) for i in range(n)]


def corrupt_middle(member: bytes) -> bytes:
    """The member with its deflate data damaged and its 10-byte gzip header intact."""
    damaged = bytearray(member)
    for at in range(len(member) // 2, len(member) // 2 + 16):
        damaged[at] ^= 0xA5
    return bytes(damaged)


@pytest.mark.parametrize("step", [1, 7, 333, 1 << 20])
def test_resync_resumes_at_the_next_member_after_a_corrupt_one(step):
    members = warc_members(5)
    data = b"".join(members[:2]) + corrupt_middle(members[2]) + b"".join(members[3:])
    reader = GunzipReader(Trickle(data, step), chunk_size=step)
    # In small reads a little of the damaged member may come out before zlib finds the damage.
    assert read_all(reader).startswith(gzip.decompress(b"".join(members[:2])))
    start = len(members[0]) + len(members[1])
    assert reader.corrupt and reader.damage_offset == start
    resumed = reader.resync()
    assert resumed == start + len(members[2]) and reader.damaged is None
    position = reader.tell()
    assert read_all(reader) == gzip.decompress(b"".join(members[3:]))
    assert reader.record_offset(position) == resumed  # the resumed record's offset is its member's
    assert reader.damaged is None


def test_resync_passes_over_a_false_gzip_magic_and_a_member_that_is_no_warc():
    members = warc_members(4)
    damaged = bytearray(corrupt_middle(members[1]))
    planted = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage" + gzip.compress(b"a gzip member, but no WARC record", mtime=0)
    damaged[20 : 20 + len(planted)] = planted  # inside the damaged member's compressed bytes
    data = members[0] + bytes(damaged) + members[2] + members[3]
    reader = GunzipReader(io.BytesIO(data))
    read_all(reader)
    assert reader.resync() == len(members[0]) + len(damaged)
    assert read_all(reader) == gzip.decompress(members[2] + members[3])


def test_resync_after_the_last_member_finds_nothing_and_knows_the_size():
    members = warc_members(3)
    data = members[0] + members[1] + corrupt_middle(members[2])
    reader = GunzipReader(Trickle(data, 100), chunk_size=100)
    read_all(reader)
    assert reader.resync() is None
    assert reader.size == len(data) and reader.corrupt and read_all(reader) == b""


def test_resync_after_bytes_that_start_no_member():
    members = warc_members(3)
    data = members[0] + b"\x00" * 500 + members[1] + members[2]
    reader = GunzipReader(io.BytesIO(data))
    assert read_all(reader) == gzip.decompress(members[0])
    assert "do not start a gzip member" in reader.damaged and reader.damage_offset == len(members[0])
    assert reader.resync() == len(members[0]) + 500
    assert read_all(reader) == gzip.decompress(members[1] + members[2])
