"""Build small WARC files byte by byte for tests (records written as the WARC 1.0 spec lays them out)."""

from __future__ import annotations

import gzip
import uuid


def record(warc_type: str, block: bytes, uri: str | None = None, extra: dict[str, str] | None = None, content_length: int | None = None) -> bytes:
    headers = {
        "WARC-Type": warc_type,
        "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{warc_type}:{uri}:{len(block)}')}>",
        "WARC-Date": "2024-05-20T10:00:00Z",
    }
    if uri:
        headers["WARC-Target-URI"] = uri
    headers.update(extra or {})
    headers["Content-Length"] = str(len(block) if content_length is None else content_length)
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + block + b"\r\n\r\n"


def http_response(body: bytes, content_type: str = "text/html; charset=utf-8", status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


def warcinfo(dump: str) -> bytes:
    return record("warcinfo", f"isPartOf: {dump}\r\nformat: WARC File Format 1.0\r\n".encode(), extra={"Content-Type": "application/warc-fields"})


def gzip_members(records: list[bytes]) -> bytes:
    """One gzip member per record, as Common Crawl writes its files."""
    return b"".join(gzip.compress(r, compresslevel=1, mtime=0) for r in records)
