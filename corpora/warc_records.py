"""Small WARC files built byte by byte for tests: records written as the WARC 1.0 spec lays them out,
no WARC library involved, so a test can also write what a library would refuse (a Content-Length
that differs from the block, bytes cut anywhere). Deterministic: record ids are uuid5 of the
record's type, URI and block length. A library module, no command line::

    from crawlmill.corpora.warc_records import gzip_members, http_response, record, warcinfo
    body = http_response(b"<html><p>hello</p></html>")
    data = gzip_members([warcinfo("CC-MAIN-2024-22"), record("response", body, "https://example.com/")])
"""

from __future__ import annotations

import gzip
import uuid


def record(warc_type: str, block: bytes, uri: str | None = None, extra: dict[str, str] | None = None, content_length: int | None = None) -> bytes:
    """One uncompressed WARC record; `extra` headers go before Content-Length, which `content_length` overrides."""
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
    """An HTTP/1.1 response block; `extra` is raw header lines, each ending in CRLF."""
    return f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


def warcinfo(dump: str) -> bytes:
    """A warcinfo record naming the dump (isPartOf), as Common Crawl starts each file."""
    return record("warcinfo", f"isPartOf: {dump}\r\nformat: WARC File Format 1.0\r\n".encode(), extra={"Content-Type": "application/warc-fields"})


def gzip_members(records: list[bytes]) -> bytes:
    """One gzip member per record, as Common Crawl writes its files."""
    return b"".join(gzip.compress(r, compresslevel=1, mtime=0) for r in records)
