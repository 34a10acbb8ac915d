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
