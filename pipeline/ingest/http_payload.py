"""Parse the HTTP response block of a WARC response record: status, headers, decoded body.

We read the whole block ourselves (instead of FastWARC's parse_http) so that a record whose
block is shorter than its Content-Length is detected as truncated, not passed on as a page.
Transfer-Encoding chunked and Content-Encoding gzip/deflate/br are undone (Common Crawl stores
decoded payloads, other archives may not); output is bounded by `max_bytes`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_CHARSET = re.compile(r"charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)


class HttpPayloadError(ValueError):
    pass


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes

    @property
    def mime_type(self) -> str | None:
        value = self.headers.get("content-type")
        return value.split(";", 1)[0].strip().lower() or None if value else None

    @property
    def charset(self) -> str | None:
        match = _CHARSET.search(self.headers.get("content-type", ""))
        return match.group(1) if match else None


def _dechunk(data: bytes, max_bytes: int) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        end = data.find(b"\n", pos)
        if end < 0:
            raise HttpPayloadError("chunked body ends without a last chunk")
        size_text = data[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpPayloadError(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0:  # "-3": the next chunk would start behind this one, and the loop never end
            raise HttpPayloadError(f"bad chunk size {size_text[:20]!r}")
        if size == 0:
            return bytes(out)
        start = end + 1
        out += data[start : start + size]
        if len(out) > max_bytes:
            raise HttpPayloadError(f"decoded body exceeds {max_bytes} bytes")
        pos = start + size
        if data[pos : pos + 2] == b"\r\n":
            pos += 2
        elif data[pos : pos + 1] == b"\n":
            pos += 1


def _decompress(data: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding in ("gzip", "x-gzip", "deflate"):
        # wbits 47 accepts gzip and zlib; raw deflate (seen in the wild for "deflate") needs -15.
        for wbits in ((47, -15) if encoding == "deflate" else (47,)):
            try:
                d = zlib.decompressobj(wbits=wbits)
                out = d.decompress(data, max_bytes + 1)
                break
            except zlib.error as exc:
                error = exc
        else:
            raise HttpPayloadError(f"cannot decode Content-Encoding {encoding}: {error}")
    elif encoding == "br":
        import brotli

        try:
            # Bounded like zlib's: a brotli bomb stops at max_bytes + 1 instead of inflating whole.
            decompressor = brotli.Decompressor()
            out = decompressor.process(data, output_buffer_limit=max_bytes + 1)
        except brotli.error as exc:
            raise HttpPayloadError(f"cannot decode Content-Encoding br: {exc}") from None
        if len(out) <= max_bytes and not decompressor.is_finished():  # brotli.decompress raised on these
            raise HttpPayloadError("cannot decode Content-Encoding br: the stream ends early")
    else:
        raise HttpPayloadError(f"unsupported Content-Encoding {encoding!r}")
    if len(out) > max_bytes:
        raise HttpPayloadError(f"decoded body exceeds {max_bytes} bytes")
    return out


def parse_http_response(block: bytes, max_bytes: int) -> HttpResponse:
    end = block.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end, sep = block.find(b"\n\n"), 2
    if end < 0:
        raise HttpPayloadError("no end of HTTP headers in the record")
    lines = block[:end].decode("latin-1").splitlines()
    status_line = lines[0].split(None, 2) if lines else []
    # isascii: "²00" (latin-1 superscripts) passes isdigit but not int().
    if len(status_line) < 2 or not status_line[0].upper().startswith("HTTP/") or not (status_line[1].isascii() and status_line[1].isdigit()):
        raise HttpPayloadError(f"bad HTTP status line {lines[0][:80] if lines else ''!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    body = block[end + sep :]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body, max_bytes)
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding and encoding != "identity" and body:
        try:
            body = _decompress(body, encoding, max_bytes)
        except HttpPayloadError:
            # Archives such as Common Crawl 2014 store the decoded payload but keep the header.
            if not body.lstrip()[:1] == b"<":
                raise
    return HttpResponse(status=int(status_line[1]), headers=headers, body=body)
