"""WARC and WET record building for crawlmill's sample corpus.

Turns one planned fetch (a page from ``sample_pages`` or a special 404 / 301 /
image fetch) into gzip-compressed request, response and metadata WARC
records, and builds the ``warcinfo`` and WET ``conversion`` records. Also holds
the helpers those records need: record IDs (uuid5), digests, WARC/HTTP dates,
the HTML-to-text conversion used for WET text and the synthetic PNG payload.
Every record is serialised with fastwarc and compressed as its own gzip member
with mtime=0, so the output is deterministic.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import struct
import uuid
import zlib
from datetime import datetime
from email.utils import format_datetime
from html.parser import HTMLParser
from urllib.parse import urlsplit

from fastwarc.warc import WarcRecord, WarcRecordType

from sample_pages import UTC, render_301, render_404, render_page

USER_AGENT = "crawlmill-sample-bot/1.0 (synthetic sample data; not a real crawler)"
UUID_NAMESPACE = uuid.NAMESPACE_URL

LANG_INFO = {
    "eng": {"code": "en", "name": "ENGLISH"},
    "zho": {"code": "zh", "name": "Chinese"},
}
DEFAULT_LANGUAGES = {"en": ["eng"], "zh": ["zho"]}

CHARSET_LABEL = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030"}


# --------------------------------------------------------------------------
# Non-HTML payloads
# --------------------------------------------------------------------------

def make_png(seed: str, size: int = 16) -> bytes:
    """A small valid RGB PNG whose pixels are derived from ``seed``."""
    stream = b""
    counter = 0
    need = size * size * 3
    while len(stream) < need:
        stream += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    raw = b"".join(b"\x00" + stream[y * size * 3:(y + 1) * size * 3] for y in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------
# HTML -> text for WET records (whole page, like Common Crawl's WET)
# --------------------------------------------------------------------------

class _TextExtractor(HTMLParser):
    SKIP = {"script", "style", "noscript", "template", "head"}
    BLOCK = {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
        "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "table", "td", "th", "tr", "ul", "button", "body", "html",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.lines: list[str] = []
        self._buf: list[str] = []
        self._skip = 0
        self._in_title = False
        self._pre = 0

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skip += 1
        if tag == "pre":
            self._flush()
            self._pre += 1
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        if tag == "pre":
            self._flush_pre()
            self._pre = max(0, self._pre - 1)
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data):
        if self._in_title:
            self.title += data
            return
        if self._skip:
            return
        self._buf.append(data)

    def _flush(self):
        text = " ".join("".join(self._buf).split())
        if text:
            self.lines.append(text)
        self._buf = []

    def _flush_pre(self):
        for line in "".join(self._buf).split("\n"):
            line = line.rstrip()
            if line.strip():
                self.lines.append(line)
        self._buf = []


def html_to_text(doc: str) -> str:
    parser = _TextExtractor()
    parser.feed(doc)
    parser.close()
    parser._flush()
    title = " ".join(parser.title.split())
    return "\n".join([title, *parser.lines]) if title else "\n".join(parser.lines)


# --------------------------------------------------------------------------
# WARC writing
# --------------------------------------------------------------------------

def sha1_b32(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


def record_uuid(*parts: str) -> str:
    return str(uuid.uuid5(UUID_NAMESPACE, "|".join(parts)))


def warc_date(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def http_date(dt: datetime) -> str:
    return format_datetime(dt, usegmt=True)


def warc_fields(fields: list[tuple[str, str]]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in fields).encode("utf-8")


def build_record(rtype: WarcRecordType, rid: str, date: datetime,
                 headers: list[tuple[str, str]], block: bytes) -> bytes:
    """Serialise one WARC record with fastwarc and return it gzip-compressed."""
    rec = WarcRecord()
    rec.init_headers(rtype, ("uuid:" + rid).encode("ascii"))
    rec.headers["WARC-Date"] = warc_date(date)
    rec.set_bytes_content(block)
    for key, value in headers:
        rec.headers[key] = value
    buf = _Buffer()
    rec.write(buf)
    return gzip.compress(buf.getvalue(), compresslevel=9, mtime=0)


class _Buffer:
    """Minimal writable stream for WarcRecord.write."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


def http_message(status_line: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    head = status_line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def build_fetch(dump: str, fetch: dict, date: datetime, warcinfo_id: str,
                sites: dict, pages: list[dict]) -> tuple[list[bytes], dict]:
    """Request, response and metadata records for one fetch; plus manifest info."""
    url = fetch["url"]
    site = sites[fetch["site"]]
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    lang = fetch.get("lang") or site["lang"]
    accept_language = "zh-CN,zh;q=0.9,en;q=0.5" if lang == "zh" else "en-US,en;q=0.5"

    req_id = record_uuid(dump, url, "request")
    resp_id = record_uuid(dump, url, "response")
    meta_id = record_uuid(dump, url, "metadata")

    # ---- request
    req_block = http_message(
        f"GET {path} HTTP/1.1",
        [
            ("User-Agent", USER_AGENT),
            ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            ("Accept-Language", accept_language),
            ("Accept-Encoding", "br,gzip"),
            ("Host", parts.netloc),
            ("Connection", "Keep-Alive"),
        ],
        b"",
    )

    # ---- response
    kind = fetch["kind"]
    extra_meta: list[tuple[str, str]] = []
    info = {"status": 200, "content_type": "text/html", "charset": None, "charset_declared": None}
    html_doc = None
    if kind in ("clean", "junk", "near_duplicate"):
        charset = fetch["charset"]
        declared = fetch.get("charset_declared", ["header", "meta"])
        html_doc = render_page(fetch, sites, pages)
        body = html_doc.encode(charset)
        ctype = "text/html" + (f"; charset={CHARSET_LABEL[charset]}" if "header" in declared else "")
        status_line = "HTTP/1.1 200 OK"
        hdrs = [("Date", http_date(date)), ("Server", site["server"]), ("Content-Type", ctype),
                ("Content-Length", str(len(body)))]
        if fetch.get("date"):
            lm = datetime.strptime(fetch["date"], "%Y-%m-%d").replace(hour=9, tzinfo=UTC)
            hdrs.append(("Last-Modified", http_date(lm)))
        hdrs += [("Cache-Control", "max-age=600"), ("Vary", "Accept-Encoding"), ("Connection", "keep-alive")]
        payload_type = "text/html"
        info.update(charset=charset, charset_declared=declared)
        extra_meta.append(("charset-detected", CHARSET_LABEL[charset]))
    elif kind == "http_404":
        body = render_404(site).encode("utf-8")
        status_line = "HTTP/1.1 404 Not Found"
        hdrs = [("Date", http_date(date)), ("Server", site["server"]),
                ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                ("Connection", "close")]
        payload_type = "text/html"
        info.update(status=404, charset="utf-8")
    elif kind == "http_301":
        body = render_301(fetch["location"]).encode("utf-8")
        status_line = "HTTP/1.1 301 Moved Permanently"
        hdrs = [("Date", http_date(date)), ("Server", site["server"]),
                ("Content-Type", "text/html"), ("Content-Length", str(len(body))),
                ("Location", fetch["location"]), ("Connection", "close")]
        payload_type = "text/html"
        info.update(status=301, location=fetch["location"])
    elif kind == "image_png":
        body = make_png(url)
        status_line = "HTTP/1.1 200 OK"
        hdrs = [("Date", http_date(date)), ("Server", site["server"]),
                ("Content-Type", "image/png"), ("Content-Length", str(len(body))),
                ("Cache-Control", "public, max-age=2592000"), ("Accept-Ranges", "bytes")]
        payload_type = "image/png"
        info.update(content_type="image/png")
    else:
        raise ValueError(f"unknown kind {kind}")
    resp_block = http_message(status_line, hdrs, body)

    # ---- metadata (like CC: fetch time, detected charset, languages)
    seed = int.from_bytes(hashlib.sha1(f"{dump}|{url}".encode()).digest()[:4], "big")
    meta = [("fetchTimeMs", str(60 + seed % 900))] + extra_meta
    wet_text = None
    languages = None
    if html_doc is not None:
        wet_text = html_to_text(html_doc)
        languages = fetch.get("languages") or DEFAULT_LANGUAGES[fetch["lang"]]
        n_bytes = len(wet_text.encode("utf-8"))
        langs = []
        covered = [0.98, 0.02] if len(languages) == 1 else [0.71, 0.27]
        for i, code3 in enumerate(languages):
            li = LANG_INFO[code3]
            langs.append({"code": li["code"], "code-iso-639-3": code3,
                          "text-covered": covered[i], "score": float(900 + seed % 300 - i * 400),
                          "name": li["name"]})
        cld2 = {"reliable": True, "text-bytes": n_bytes, "languages": langs}
        meta.append(("languages-cld2", json.dumps(cld2, separators=(",", ":"))))
    meta_block = warc_fields(meta)

    ip = site["ip"]
    records = [
        build_record(WarcRecordType.request, req_id, date, [
            ("Content-Type", "application/http; msgtype=request"),
            ("WARC-Warcinfo-ID", f"<urn:uuid:{warcinfo_id}>"),
            ("WARC-IP-Address", ip),
            ("WARC-Target-URI", url),
            ("WARC-Block-Digest", sha1_b32(req_block)),
        ], req_block),
        build_record(WarcRecordType.response, resp_id, date, [
            ("Content-Type", "application/http; msgtype=response"),
            ("WARC-Warcinfo-ID", f"<urn:uuid:{warcinfo_id}>"),
            ("WARC-Concurrent-To", f"<urn:uuid:{req_id}>"),
            ("WARC-IP-Address", ip),
            ("WARC-Target-URI", url),
            ("WARC-Payload-Digest", sha1_b32(body)),
            ("WARC-Block-Digest", sha1_b32(resp_block)),
            ("WARC-Identified-Payload-Type", payload_type),
        ], resp_block),
        build_record(WarcRecordType.metadata, meta_id, date, [
            ("Content-Type", "application/warc-fields"),
            ("WARC-Warcinfo-ID", f"<urn:uuid:{warcinfo_id}>"),
            ("WARC-Concurrent-To", f"<urn:uuid:{resp_id}>"),
            ("WARC-Target-URI", url),
            ("WARC-Block-Digest", sha1_b32(meta_block)),
        ], meta_block),
    ]
    info.update(
        request_record_id=f"<urn:uuid:{req_id}>",
        response_record_id=f"<urn:uuid:{resp_id}>",
        metadata_record_id=f"<urn:uuid:{meta_id}>",
        payload_digest=sha1_b32(body),
        wet_text=wet_text,
        languages=languages,
    )
    return records, info


def warcinfo_record(dump: str, filename: str, date: datetime, fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    rid = record_uuid(dump, filename, "warcinfo")
    block = warc_fields(fields)
    rec = build_record(WarcRecordType.warcinfo, rid, date, [
        ("WARC-Filename", filename),
        ("Content-Type", "application/warc-fields"),
        ("WARC-Block-Digest", sha1_b32(block)),
    ], block)
    return rec, rid


def conversion_record(dump: str, url: str, date: datetime, refers_to: str,
                      text: str, languages: list[str]) -> tuple[bytes, str]:
    rid = record_uuid(dump, url, "conversion")
    block = text.encode("utf-8")
    rec = build_record(WarcRecordType.conversion, rid, date, [
        ("WARC-Target-URI", url),
        ("WARC-Refers-To", refers_to),
        ("WARC-Block-Digest", sha1_b32(block)),
        ("WARC-Identified-Content-Language", ",".join(languages)),
        ("Content-Type", "text/plain"),
    ], block)
    return rec, rid
