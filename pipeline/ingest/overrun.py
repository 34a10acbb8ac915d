"""A WARC record whose Content-Length is larger than its block (a broken writer) reads on into the
records after it: FastWARC cannot tell, and those records would vanish inside its block uncounted.

In Common Crawl's layout (one gzip member per record) the member boundaries tell: a record that
starts a member must end in it. `find_overrun` finds where the record's member really ends inside
the block read (the record's end `\\r\\n\\r\\n`, then the next member's `WARC/` line), so the ingest
stage keeps the record with its true block and gives each record swallowed whole its own quarantine
entry; a record swallowed in part is left to FastWARC, whose parse error in the middle of its member
is that member's one entry. A file that is not one member per record (an uncompressed WARC, a whole
file gzipped) has no boundaries to tell by and is read as FastWARC reads it.
"""

from __future__ import annotations

import bisect
import io
import re
from dataclasses import dataclass

from fastwarc.warc import WarcRecord

# Canonical headers ("Name: value") make the record's header length exact; other spellings (no space
# after the colon, folded lines) differ by a few bytes: the next member's start is looked for this near.
_HEADER_SLACK = 64
_NEXT_RECORD = re.compile(rb"\r\n\r\nWARC/\d")
_WARC_HEADER = re.compile(rb"\r\n\r\n(WARC/\d+\.\d+\r\n(?:[!-9;-~]+:[^\r\n]*\r\n)+\r\n)")
_RECORD_ID = re.compile(rb"\r\nWARC-Record-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE)


@dataclass
class Overrun:
    block_length: int  # the record's true block length, or -1 when its end could not be found in the block
    swallowed: list[int]  # member indexes whose whole record was read into the block
    swallowed_ids: list[str | None]  # each one's WARC-Record-ID, as its header in the block says


def header_length(record: WarcRecord) -> int:
    """Bytes of the record's WARC header block (version line, fields, the blank line), as written canonically."""
    buffer = io.BytesIO()
    record.headers.write(buffer)
    return len(buffer.getvalue())


def find_overrun(record: WarcRecord, block: bytes, member_out: list[int], stream_end: int | None) -> Overrun | None:
    """The overrun of `record` (its `block` as read), or None when its block stays in its member (or
    the layout cannot tell). `member_out`: decompressed offset where each gzip member starts;
    `stream_end`: the stream's decompressed length when the block reached it (a short block at the
    end of a sound file)."""
    start, content_length = record.stream_pos, record.content_length
    i = bisect.bisect_left(member_out, start)
    if i + 1 >= len(member_out) or member_out[i] != start:
        return None  # the record starts no member (a whole-file gzip), or its member is the last read
    next_member = member_out[i + 1]
    longer_than_member = content_length > next_member - start
    if not longer_than_member and b"\r\n\r\nWARC/" not in block:
        return None  # the cheap test first: most blocks hold no WARC header's start (ingest's speed)
    header = header_length(record)
    block_start = _block_start(start + header, block, next_member)
    if block_start is None:
        if not longer_than_member:
            return None  # its block may fit its member: nothing shows an overrun
        block_start, true_length = start + header, -1  # longer than its whole member, end not found
    else:
        true_length = next_member - 4 - block_start
    block_end = block_start + len(block)
    swallowed: list[int] = []
    for k in range(i + 1, len(member_out)):
        member_end = member_out[k + 1] if k + 1 < len(member_out) else stream_end
        if member_end is None or member_end > block_end:
            break  # read in part (or not at all): FastWARC's parse error in it is its entry
        swallowed.append(k)
    ids = [_record_id(block[member_out[k] - block_start :]) for k in swallowed]
    return Overrun(true_length, swallowed, ids)


def _block_start(estimate: int, block: bytes, next_member: int) -> int | None:
    """Where the block starts, found from the next member's start inside it: after the record's
    `\\r\\n\\r\\n` end, a `WARC/1.` version line's start (fewer bytes of it cannot tell a
    block that merely ends in a blank line)."""
    lowest = max(4, next_member - (estimate + _HEADER_SLACK))
    highest = next_member - (estimate - _HEADER_SLACK)
    best = None
    for match in _NEXT_RECORD.finditer(block, lowest - 4, highest + len(b"WARC/1")):
        q = match.start() + 4
        if best is None or abs(next_member - q - estimate) < abs(next_member - best - estimate):
            best = q
    return None if best is None else next_member - best


def embedded_records(block: bytes) -> list[tuple[int, str | None]]:
    """(position, WARC-Record-ID) of each whole WARC header inside a block cut short by the file's
    end: records a too-large Content-Length read in, where no member boundary tells (an uncompressed
    WARC, a whole file gzipped). Only for a block already known short: a page may quote a header."""
    return [(m.start() + 4, _record_id(m.group(1))) for m in _WARC_HEADER.finditer(block)]


def _record_id(head: bytes) -> str | None:
    end = head.find(b"\r\n\r\n", 0, 64 << 10)
    match = _RECORD_ID.search(head, 0, end if end >= 0 else 64 << 10)
    return match.group(1).decode("ascii", errors="replace") if match else None
