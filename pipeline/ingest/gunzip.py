"""A file-like reader that gunzips multi-member gzip (or passes plain bytes through) and never hides damage.

FastWARC's own decompressor stops silently at a truncated gzip stream, so a cut-off download
would lose its tail without a trace. This reader instead ends the stream cleanly and *records*
what happened (`truncated`, `corrupt`), so the ingest stage can quarantine the remainder with
its offset while keeping every record before it. It also remembers where each gzip member
starts, which maps a record's position in the decompressed stream to the compressed offset
Common Crawl's index uses (each record is its own member there).

Output per call is bounded (`max_length`), so a gzip bomb cannot blow up memory.
"""

from __future__ import annotations

import bisect
import io
import zlib
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"


class GunzipReader(io.RawIOBase):
    def __init__(self, raw: BinaryIO, chunk_size: int = 1 << 20) -> None:
        super().__init__()
        self._raw = raw
        self._chunk_size = chunk_size
        self._in = b""  # compressed bytes read but not yet consumed
        self._in_offset = 0  # compressed offset of self._in[0]
        self._raw_eof = False
        self._out = bytearray()
        self._decompressor: zlib._Decompress | None = None
        self._done = False
        self.total_out = 0
        self.member_out: list[int] = []  # decompressed offset where each member starts
        self.member_in: list[int] = []  # compressed offset of the same member
        self.truncated = False
        self.corrupt: str | None = None
        while len(self._in) < 2 and self._more_input():
            pass
        self.is_gzip = self._in[:2] == GZIP_MAGIC
        self.empty = not self._in

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """Position in the decompressed stream (FastWARC asks for it; seeking is not supported)."""
        return self.total_out - len(self._out)

    def _more_input(self) -> bool:
        if self._raw_eof:
            return False
        chunk = self._raw.read(self._chunk_size)
        if not chunk:
            self._raw_eof = True
            return False
        self._in += chunk
        return True

    def _produce(self, limit: int) -> None:
        if not self.is_gzip:
            if not self._in and not self._more_input():
                self._done = True
                return
            self._out += self._in
            self.total_out += len(self._in)
            self._in_offset += len(self._in)
            self._in = b""
            return
        if self._decompressor is None:
            while len(self._in) < 2 and self._more_input():
                pass
            if not self._in:
                self._done = True
                return
            if self._in[:2] != GZIP_MAGIC:
                self.corrupt = f"bytes at compressed offset {self._in_offset} do not start a gzip member"
                self._done = True
                return
            self._decompressor = zlib.decompressobj(wbits=31)
            self.member_in.append(self._in_offset)
            self.member_out.append(self.total_out)
        if not self._in and not self._more_input():
            self.truncated = True
            self._done = True
            return
        before = len(self._in)
        try:
            data = self._decompressor.decompress(self._in, limit)
        except zlib.error as exc:
            self.corrupt = f"corrupt gzip member at compressed offset {self.member_in[-1]}: {exc}"
            self._done = True
            return
        if self._decompressor.eof:
            self._in = self._decompressor.unused_data
            self._decompressor = None
        else:
            self._in = self._decompressor.unconsumed_tail
        self._in_offset += before - len(self._in)
        self._out += data
        self.total_out += len(data)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._out and not self._done:
            self._produce(max(len(buffer), 1 << 16))
        n = min(len(buffer), len(self._out))
        buffer[:n] = self._out[:n]
        del self._out[:n]
        return n

    @property
    def damaged(self) -> str | None:
        """What went wrong with the stream, or None if it ended cleanly."""
        if self.truncated:
            start = self.member_in[-1] if self.member_in else 0
            return f"gzip stream ends inside the member that starts at compressed offset {start}"
        return self.corrupt

    def record_offset(self, position: int) -> int:
        """Offset to report for a record starting at `position` of the decompressed stream.

        The compressed offset of its gzip member when the record starts one (Common Crawl's
        layout, usable for range requests); the decompressed position otherwise.
        """
        if not self.is_gzip:
            return position
        i = bisect.bisect_left(self.member_out, position)
        if i < len(self.member_out) and self.member_out[i] == position:
            return self.member_in[i]
        return position
