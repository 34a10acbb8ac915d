import gzip
import zlib

import brotli
import pytest

from crawlmill.pipeline.ingest.http_payload import HttpPayloadError, parse_http_response

HTML = b"<html><body><p>Hello</p></body></html>"


def block(body: bytes, headers: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\n{headers}\r\n".encode() + body


def test_status_headers_mime_and_charset():
    r = parse_http_response(block(HTML, "Content-Type: text/HTML; Charset=\"GBK\"\r\nX-A: 1\r\n"), 1 << 20)
    assert (r.status, r.mime_type, r.charset, r.body) == (200, "text/html", "GBK", HTML)


def test_chunked_and_gzip_are_undone():
    gz = gzip.compress(HTML)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(gz[i : i + 7]), gz[i : i + 7]) for i in range(0, len(gz), 7)) + b"0\r\n\r\n"
    r = parse_http_response(block(chunked, "Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n"), 1 << 20)
    assert r.body == HTML


@pytest.mark.parametrize("encoding,data", [("deflate", zlib.compress(HTML)), ("deflate", zlib.compress(HTML)[2:-4]), ("br", brotli.compress(HTML))])
def test_deflate_raw_deflate_and_brotli(encoding, data):
    assert parse_http_response(block(data, f"Content-Encoding: {encoding}\r\n"), 1 << 20).body == HTML


def test_stale_content_encoding_header_on_decoded_html_is_tolerated():
    # Common Crawl 2014 WARCs keep "Content-Encoding: gzip" on payloads they stored decoded.
    assert parse_http_response(block(HTML, "Content-Encoding: gzip\r\n"), 1 << 20).body == HTML


def test_undecodable_binary_and_bombs_are_errors():
    with pytest.raises(HttpPayloadError, match="cannot decode"):
        parse_http_response(block(b"\x00\x01binary", "Content-Encoding: gzip\r\n"), 1 << 20)
    with pytest.raises(HttpPayloadError, match="exceeds"):
        parse_http_response(block(gzip.compress(b"a" * 100_000), "Content-Encoding: gzip\r\n"), 1000)


@pytest.mark.parametrize("bad", [b"no headers end here", b"SMTP 200 OK\r\n\r\nbody", b"HTTP/1.1 abc\r\n\r\n"])
def test_malformed_blocks_are_errors(bad):
    with pytest.raises(HttpPayloadError):
        parse_http_response(bad, 1 << 20)
