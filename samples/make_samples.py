#!/usr/bin/env python3
"""Generate crawlmill's sample Common-Crawl-style corpus from samples/pages/*.yaml.

The page text in ``samples/pages/`` is original synthetic content written for
crawlmill. This script wraps each page's main content (title + paragraphs) in
realistic site boilerplate (header, nav, cookie banner, related-articles aside,
footer, <script> and <style>), and writes the result the way Common Crawl
publishes a crawl:

    samples/crawl-data/<DUMP>/warc.paths.gz
    samples/crawl-data/<DUMP>/wet.paths.gz
    samples/crawl-data/<DUMP>/segments/<segment>/warc/CC-MAIN-<ts>-<ts>-<nnnnn>.warc.gz
    samples/crawl-data/<DUMP>/segments/<segment>/wet/CC-MAIN-<ts>-<ts>-<nnnnn>.warc.wet.gz

for two dumps, CC-MAIN-2023-50 and CC-MAIN-2024-10, with two WARC files (and
the matching WET files) per dump. It also writes ``samples/manifest.jsonl``:
one JSON line per fetched URL saying which file/record holds it, its kind,
language, charset and HTTP status, so tests can look up the ground truth
(the YAML page with the same ``slug``) for any record.

WARC files contain a ``warcinfo`` record followed by request / response /
metadata records for every fetch (200 HTML pages plus, per dump, one 404, one
301 redirect and one image/png response). WET files contain a ``warcinfo``
record and one ``conversion`` record (plain text, UTF-8) per 200 HTML page.
Every record is its own gzip member, as in Common Crawl.

The output is deterministic: fixed dates, record IDs from uuid5 of
(dump, URL, record type), gzip members written with mtime=0 and a fixed
iteration order. Running the script twice produces byte-identical files.

Usage (from the repository root, with the project's virtualenv active)::

    python samples/make_samples.py

Requires ``fastwarc`` (from the ``resiliparse`` project) and ``PyYAML``.
"""

from __future__ import annotations

import base64
import glob
import gzip
import hashlib
import html
import json
import os
import shutil
import struct
import uuid
import zlib
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from fastwarc.warc import WarcRecord, WarcRecordType

HERE = Path(__file__).resolve().parent
PAGES_DIR = HERE / "pages"
CRAWL_DIR = HERE / "crawl-data"
MANIFEST = HERE / "manifest.jsonl"

UTC = timezone.utc


def _ts(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# Two dumps, two WARC files each. Segment IDs follow Common Crawl's
# "<epoch millis>.<nn>" pattern and precede the fetch times of their files.
DUMPS: dict[str, dict] = {
    "CC-MAIN-2023-50": {
        "description": "Synthetic sample crawl for crawlmill, modelled on Common Crawl November/December 2023",
        "files": [
            {"segment": "1701141696281.12", "start": _ts("2023-11-28T08:34:43Z"), "number": 0},
            {"segment": "1701686699137.57", "start": _ts("2023-12-04T15:56:22Z"), "number": 1},
        ],
    },
    "CC-MAIN-2024-10": {
        "description": "Synthetic sample crawl for crawlmill, modelled on Common Crawl February/March 2024",
        "files": [
            {"segment": "1708444931402.33", "start": _ts("2024-02-20T21:10:58Z"), "number": 0},
            {"segment": "1709155847719.86", "start": _ts("2024-02-29T02:43:05Z"), "number": 1},
        ],
    },
}

FILE_SPAN = timedelta(hours=3)          # second timestamp in a CC file name
FETCH_INTERVAL = timedelta(seconds=97)  # spacing of fetches inside one file
WET_DELAY = timedelta(days=9, hours=4)  # WET extraction date after the crawl

USER_AGENT = "crawlmill-sample-bot/1.0 (synthetic sample data; not a real crawler)"
UUID_NAMESPACE = uuid.NAMESPACE_URL

LANG_INFO = {
    "eng": {"code": "en", "name": "ENGLISH"},
    "zho": {"code": "zh", "name": "Chinese"},
}
DEFAULT_LANGUAGES = {"en": ["eng"], "zh": ["zho"]}

I18N = {
    "en": {
        "html_lang": "en",
        "skip": "Skip to main content",
        "search": "Search",
        "menu": "Menu",
        "accept": "Accept all",
        "reject": "Reject",
        "privacy": "Privacy policy",
        "by": "By",
        "published": "Published",
        "share": "Share this article:",
        "share_targets": ["Facebook", "X", "LinkedIn", "Email"],
        "related": "Related articles",
        "newsletter": "Get our weekly newsletter",
        "newsletter_button": "Sign up",
        "email": "Your email address",
        "back_to_top": "Back to top",
    },
    "zh": {
        "html_lang": "zh-CN",
        "skip": "跳到正文",
        "search": "搜索",
        "menu": "菜单",
        "accept": "全部接受",
        "reject": "拒绝",
        "privacy": "隐私政策",
        "by": "作者：",
        "published": "发布时间：",
        "share": "分享到：",
        "share_targets": ["微信", "微博", "QQ空间"],
        "related": "相关文章",
        "newsletter": "订阅我们的每周精选",
        "newsletter_button": "订阅",
        "email": "请输入邮箱地址",
        "back_to_top": "返回顶部",
    },
}

CHARSET_LABEL = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030"}


# --------------------------------------------------------------------------
# Loading the page descriptions (also usable from tests)
# --------------------------------------------------------------------------

def load_corpus(pages_dir: Path = PAGES_DIR) -> tuple[dict, list[dict], list[dict]]:
    """Return (sites, pages, specials) from the YAML files in ``pages_dir``.

    ``pages`` is sorted by slug. The ground truth main content of a page is
    ``page["title"]`` plus the paragraphs in ``page["main"]``.
    """
    with open(pages_dir / "sites.yaml", encoding="utf-8") as fh:
        site_doc = yaml.safe_load(fh)
    sites = site_doc["sites"]
    specials = sorted(site_doc.get("specials", []), key=lambda s: s["slug"])
    pages: list[dict] = []
    for path in sorted(glob.glob(str(pages_dir / "pages_*.yaml"))):
        with open(path, encoding="utf-8") as fh:
            pages.extend(yaml.safe_load(fh)["pages"])
    pages.sort(key=lambda p: p["slug"])
    _validate(sites, pages, specials)
    return sites, pages, specials


def _validate(sites: dict, pages: list[dict], specials: list[dict]) -> None:
    slugs = [p["slug"] for p in pages] + [s["slug"] for s in specials]
    if len(slugs) != len(set(slugs)):
        raise ValueError("duplicate slug")
    urls = [p["url"] for p in pages] + [s["url"] for s in specials]
    if len(urls) != len(set(urls)):
        raise ValueError("duplicate url")
    by_slug = {p["slug"]: p for p in pages}
    for p in pages + specials:
        site = sites[p["site"]]
        host = urlsplit(p["url"]).hostname
        if p in specials:
            if p["dump"] not in DUMPS:
                raise ValueError(f"{p['slug']}: unknown dump")
            continue
        if host != site["host"]:
            raise ValueError(f"{p['slug']}: host {host} does not match site {site['host']}")
        if p["lang"] not in ("en", "zh") or p["kind"] not in ("clean", "junk", "near_duplicate"):
            raise ValueError(f"{p['slug']}: bad lang/kind")
        if p["kind"] == "near_duplicate" and p.get("duplicate_of") not in by_slug:
            raise ValueError(f"{p['slug']}: duplicate_of must name a page")
        for d in p["dumps"]:
            if d not in DUMPS:
                raise ValueError(f"{p['slug']}: unknown dump {d}")
        # fail early if the text cannot be encoded in the declared charset
        (p["title"] + "".join(p["main"])).encode(p["charset"])


def ground_truth_text(page: dict) -> str:
    """Title and main paragraphs joined by newlines (extractor reference)."""
    return "\n".join([page["title"], *page["main"]])


# --------------------------------------------------------------------------
# HTML rendering
# --------------------------------------------------------------------------

def esc(s: str) -> str:
    return html.escape(s, quote=False)


def attr(s: str) -> str:
    return html.escape(s, quote=True)


def _accent(site_key: str) -> str:
    h = hashlib.sha1(site_key.encode()).digest()
    return "#%02x%02x%02x" % (40 + h[0] % 120, 40 + h[1] % 120, 40 + h[2] % 120)


STYLE = """
:root { --accent: %(accent)s; --text: #222; --muted: #666; }
* { box-sizing: border-box; }
body { margin: 0; font-family: %(font)s; color: var(--text); line-height: 1.6; }
.skip-link { position: absolute; left: -9999px; }
.cookie-banner { position: fixed; bottom: 0; left: 0; right: 0; padding: 1em; background: #f4f1ea; border-top: 2px solid var(--accent); z-index: 100; }
.cookie-banner button { margin-left: .5em; padding: .3em 1em; }
.site-header { display: flex; align-items: center; justify-content: space-between; padding: 1em 2em; border-bottom: 4px solid var(--accent); }
.site-header .logo { font-size: 1.6em; font-weight: bold; color: var(--accent); text-decoration: none; }
.site-header .tagline { margin: 0; color: var(--muted); font-size: .9em; }
.main-nav ul { list-style: none; margin: 0; padding: .5em 2em; display: flex; flex-wrap: wrap; gap: 1.2em; background: #fafafa; }
.main-nav a { color: var(--text); text-decoration: none; }
.layout { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 1fr); gap: 2em; max-width: 1100px; margin: 2em auto; padding: 0 1em; }
article h1 { font-size: 2em; line-height: 1.2; }
.article-meta { color: var(--muted); font-size: .9em; margin-bottom: 1.5em; }
.share { margin-top: 2em; font-size: .9em; color: var(--muted); }
.related h2, .newsletter h2 { font-size: 1.1em; border-bottom: 1px solid #ddd; }
.related ul { padding-left: 1.1em; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: .85em; }
.site-footer { border-top: 1px solid #ddd; padding: 1.5em 2em 6em; color: var(--muted); font-size: .85em; }
@media (max-width: 800px) { .layout { grid-template-columns: 1fr; } }
"""

HEAD_SCRIPT = """
window.dataLayer = window.dataLayer || [];
function track() { window.dataLayer.push(arguments); }
track('init', '%(property_id)s');
track('pageview', { path: location.pathname, lang: document.documentElement.lang });
"""

FOOT_SCRIPT = """
(function () {
  var banner = document.getElementById('cookie-banner');
  function choose(value) {
    document.cookie = 'consent=' + value + ';path=/;max-age=31536000;SameSite=Lax';
    banner.style.display = 'none';
    track('consent', value);
  }
  if (document.cookie.indexOf('consent=') !== -1) { banner.style.display = 'none'; }
  document.getElementById('cookie-accept').addEventListener('click', function () { choose('all'); });
  document.getElementById('cookie-reject').addEventListener('click', function () { choose('essential'); });
})();
"""


def _site_url(site: dict, path: str) -> str:
    if path.startswith("http://") or path.startswith("https://"):
        return path
    return "https://" + site["host"] + path


def _related(page: dict, site_key: str, sites: dict, pages: list[dict]) -> list[tuple[str, str]]:
    site = sites[site_key]
    links = [
        (p["title"], p["url"])
        for p in pages
        if p["site"] == site_key and p["kind"] == "clean" and p["slug"] != page["slug"]
        and p["url"] != page["url"]
    ][:4]
    for title, path in site["popular"]:
        if len(links) >= 4:
            break
        links.append((title, _site_url(site, path)))
    return links


def _meta_description(page: dict) -> str:
    first = " ".join(page["main"][0].split())
    if page["lang"] == "zh":
        return first[:70]
    if len(first) <= 155:
        return first
    return first[:152].rsplit(" ", 1)[0] + "..."


def _date_display(page: dict) -> str:
    d = datetime.strptime(page["date"], "%Y-%m-%d")
    if page["lang"] == "zh":
        return d.strftime("%Y-%m-%d")
    return f"{d.day} {d.strftime('%B %Y')}"


def render_page(page: dict, sites: dict, pages: list[dict]) -> str:
    """Render one page to an HTML string (not yet encoded)."""
    site_key = page["site"]
    site = sites[site_key]
    t = I18N[site["lang"]]
    lang = page["lang"]
    charset = page["charset"]
    declared = page.get("charset_declared", ["header", "meta"])
    font = '"Noto Sans SC", "PingFang SC", "Microsoft YaHei", sans-serif' if lang == "zh" else 'Georgia, "Times New Roman", serif'
    out: list[str] = []
    w = out.append

    w("<!DOCTYPE html>")
    w(f'<html lang="{I18N[lang]["html_lang"]}">')
    w("<head>")
    if "meta" in declared:
        if page.get("meta_style") == "http-equiv":
            w(f'<meta http-equiv="Content-Type" content="text/html; charset={charset}">')
        else:
            w(f'<meta charset="{charset}">')
    w('<meta name="viewport" content="width=device-width, initial-scale=1">')
    w(f"<title>{esc(page['title'])} | {esc(site['name'])}</title>")
    w(f'<meta name="description" content="{attr(_meta_description(page))}">')
    w(f'<link rel="canonical" href="{attr(page["url"])}">')
    w(f'<link rel="icon" href="/favicon.ico">')
    w("<style>" + STYLE % {"accent": _accent(site_key), "font": font} + "</style>")
    prop = "CMS-" + hashlib.sha1(site["host"].encode()).hexdigest()[:8].upper()
    w("<script>" + HEAD_SCRIPT % {"property_id": prop} + "</script>")
    if page.get("author"):
        ld = {
            "@context": "https://schema.org",
            "@type": "Article",
            "headline": page["title"],
            "author": {"@type": "Person", "name": page["author"]},
            "datePublished": page["date"],
            "publisher": {"@type": "Organization", "name": site["name"]},
        }
        w('<script type="application/ld+json">' + json.dumps(ld, ensure_ascii=False, sort_keys=True) + "</script>")
    w("</head>")
    w(f'<body id="top" class="site-{site_key}">')
    w(f'<a class="skip-link" href="#content">{esc(t["skip"])}</a>')

    # cookie banner
    w('<div id="cookie-banner" class="cookie-banner" role="dialog" aria-live="polite">')
    w(f'  <p>{esc(site["cookie"])} <a href="/privacy/">{esc(t["privacy"])}</a></p>')
    w(f'  <button type="button" id="cookie-accept">{esc(t["accept"])}</button>')
    w(f'  <button type="button" id="cookie-reject">{esc(t["reject"])}</button>')
    w("</div>")

    # header
    w('<header class="site-header">')
    w("  <div>")
    w(f'    <a class="logo" href="/">{esc(site["name"])}</a>')
    w(f'    <p class="tagline">{esc(site["tagline"])}</p>')
    w("  </div>")
    w('  <form class="search" action="/search" method="get">')
    w(f'    <input type="search" name="q" placeholder="{attr(t["search"])}" aria-label="{attr(t["search"])}">')
    w(f'    <button type="submit">{esc(t["search"])}</button>')
    w("  </form>")
    w("</header>")

    # nav
    w(f'<nav class="main-nav" aria-label="{attr(t["menu"])}">')
    w("  <ul>")
    for label, path in site["nav"]:
        w(f'    <li><a href="{attr(path)}">{esc(label)}</a></li>')
    w("  </ul>")
    w("</nav>")

    # main content
    w('<div class="layout">')
    w('<main id="content">')
    w("<article>")
    w(f"<h1>{esc(page['title'])}</h1>")
    if page.get("author") or page.get("date"):
        w('<div class="article-meta">')
        if page.get("author"):
            w(f'  <span class="author">{esc(t["by"])} {esc(page["author"])}</span>' if lang == "en"
              else f'  <span class="author">{esc(t["by"])}{esc(page["author"])}</span>')
        if page.get("date"):
            w(f'  <time datetime="{page["date"]}">{esc(t["published"])} {esc(_date_display(page))}</time>'
              if lang == "en" else
              f'  <time datetime="{page["date"]}">{esc(t["published"])}{esc(_date_display(page))}</time>')
        w("</div>")
    render = page.get("render", "paragraphs")
    if render == "paragraphs":
        for para in page["main"]:
            w(f"<p>{esc(para)}</p>")
    elif render == "list":
        w('<ul class="category-list">')
        for item in page["main"]:
            href = "/categories/" + "-".join(item.lower().replace("&", "and").split()) + "/"
            w(f'  <li><a href="{attr(href)}">{esc(item)}</a></li>')
        w("</ul>")
    elif render == "pre":
        for block in page["main"]:
            w(f'<pre><code class="language-python">{esc(block)}</code></pre>')
    else:
        raise ValueError(f"{page['slug']}: unknown render {render}")
    w("</article>")
    if page["kind"] != "junk":
        targets = " · ".join(f'<a href="#share-{i}">{esc(s)}</a>' for i, s in enumerate(t["share_targets"]))
        w(f'<div class="share">{esc(t["share"])} {targets}</div>')
    w("</main>")

    # aside
    w('<aside class="sidebar">')
    w('  <section class="related">')
    w(f"    <h2>{esc(t['related'])}</h2>")
    w("    <ul>")
    for title, url in _related(page, site_key, sites, pages):
        w(f'      <li><a href="{attr(url)}">{esc(title)}</a></li>')
    w("    </ul>")
    w("  </section>")
    w('  <section class="newsletter">')
    w(f"    <h2>{esc(t['newsletter'])}</h2>")
    w('    <form action="/newsletter/subscribe" method="post">')
    w(f'      <input type="email" name="email" placeholder="{attr(t["email"])}">')
    w(f'      <button type="submit">{esc(t["newsletter_button"])}</button>')
    w("    </form>")
    w("  </section>")
    w("</aside>")
    w("</div>")

    # footer
    w('<footer class="site-footer">')
    for line in site["footer"]:
        w(f"  <p>{esc(line)}</p>")
    w(f'  <p><a href="#top">{esc(t["back_to_top"])}</a></p>')
    w("</footer>")
    w('<script src="/static/js/site.min.js" defer></script>')
    w("<script>" + FOOT_SCRIPT + "</script>")
    w("</body>")
    w("</html>")
    return "\n".join(out) + "\n"


def render_404(site: dict) -> str:
    if site["lang"] == "zh":
        title, h1, msg, back = "404 页面不存在", "页面不存在", "抱歉，您访问的页面不存在或已被移除。", "返回首页"
        lang = "zh-CN"
    else:
        title, h1, msg, back = "404 Not Found", "Page not found", "Sorry, the page you were looking for does not exist or has been moved.", "Return to the home page"
        lang = "en"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n<title>{esc(title)}</title>\n'
        "<style>body{font-family:sans-serif;text-align:center;margin-top:10%;color:#444}</style>\n"
        f"</head>\n<body>\n<h1>{esc(h1)}</h1>\n<p>{esc(msg)}</p>\n"
        f'<p><a href="/">{esc(back)}</a> · {esc(site["name"])}</p>\n</body>\n</html>\n'
    )


def render_301(location: str) -> str:
    return (
        "<html>\n<head><title>301 Moved Permanently</title></head>\n<body>\n"
        "<h1>Moved Permanently</h1>\n"
        f'<p>The document has moved <a href="{attr(location)}">here</a>.</p>\n'
        "</body>\n</html>\n"
    )


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


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def plan_fetches(pages: list[dict], specials: list[dict]) -> dict[str, list[list[dict]]]:
    """Assign every fetch of every dump to one of the dump's WARC files.

    Order inside a dump is a stable pseudo-random shuffle (sha1 of dump+URL),
    so files are not sorted by URL, and fetches alternate between the files.
    """
    plan: dict[str, list[list[dict]]] = {}
    for dump, cfg in DUMPS.items():
        fetches = [p for p in pages if dump in p["dumps"]] + [s for s in specials if s["dump"] == dump]
        fetches.sort(key=lambda f: hashlib.sha1(f"{dump}|{f['url']}".encode()).hexdigest())
        n_files = len(cfg["files"])
        plan[dump] = [fetches[i::n_files] for i in range(n_files)]
    return plan


def file_stem(cfg_file: dict) -> str:
    start = cfg_file["start"]
    end = start + FILE_SPAN
    return f"CC-MAIN-{start:%Y%m%d%H%M%S}-{end:%Y%m%d%H%M%S}-{cfg_file['number']:05d}"


def generate(out_root: Path = HERE) -> list[Path]:
    sites, pages, specials = load_corpus()
    plan = plan_fetches(pages, specials)
    crawl_dir = out_root / "crawl-data"
    if crawl_dir.exists():
        shutil.rmtree(crawl_dir)
    written: list[Path] = []
    manifest: list[dict] = []
    first_dump_of = {p["slug"]: p["dumps"][0] for p in pages}

    for dump, cfg in DUMPS.items():
        warc_paths: list[str] = []
        wet_paths: list[str] = []
        for file_cfg, fetches in zip(cfg["files"], plan[dump]):
            stem = file_stem(file_cfg)
            seg = file_cfg["segment"]
            warc_rel = f"crawl-data/{dump}/segments/{seg}/warc/{stem}.warc.gz"
            wet_rel = f"crawl-data/{dump}/segments/{seg}/wet/{stem}.warc.wet.gz"
            start = file_cfg["start"]

            warcinfo, warcinfo_id = warcinfo_record(dump, f"{stem}.warc.gz", start, [
                ("isPartOf", dump),
                ("publisher", "crawlmill project (synthetic sample data, not Common Crawl)"),
                ("description", cfg["description"]),
                ("operator", "crawlmill samples/make_samples.py"),
                ("hostname", "sample-generator.invalid"),
                ("software", "crawlmill sample generator 1.0 (samples/make_samples.py)"),
                ("robots", "not applicable (synthetic pages)"),
                ("format", "WARC File Format 1.1"),
                ("conformsTo", "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"),
            ])
            wet_date = start + FILE_SPAN + WET_DELAY
            wet_info, _ = warcinfo_record(dump, f"{stem}.warc.wet.gz", wet_date, [
                ("Software-Info", "crawlmill sample generator 1.0 (samples/make_samples.py)"),
                ("Extracted-Date", http_date(wet_date)),
                ("robots", "not applicable (synthetic pages)"),
                ("isPartOf", dump),
                ("operator", "crawlmill samples/make_samples.py"),
                ("description", cfg["description"]),
                ("publisher", "crawlmill project (synthetic sample data, not Common Crawl)"),
            ])
            warc_chunks = [warcinfo]
            wet_chunks = [wet_info]
            for i, fetch in enumerate(fetches):
                date = start + timedelta(minutes=2) + i * FETCH_INTERVAL
                records, info = build_fetch(dump, fetch, date, warcinfo_id, sites, pages)
                warc_chunks.extend(records)
                conv_id = None
                if info["wet_text"] is not None:
                    conv, conv_uuid = conversion_record(dump, fetch["url"], date, info["response_record_id"],
                                                        info["wet_text"], info["languages"])
                    wet_chunks.append(conv)
                    conv_id = f"<urn:uuid:{conv_uuid}>"
                is_page = fetch["kind"] in ("clean", "junk", "near_duplicate")
                manifest.append({
                    "dump": dump,
                    "warc_path": warc_rel,
                    "wet_path": wet_rel if conv_id else None,
                    "position": i,
                    "slug": fetch["slug"],
                    "url": fetch["url"],
                    "kind": fetch["kind"],
                    "junk_type": fetch.get("junk_type"),
                    "lang": fetch.get("lang"),
                    "status": info["status"],
                    "content_type": info["content_type"],
                    "charset": info["charset"],
                    "charset_declared": info["charset_declared"],
                    "duplicate_of": fetch.get("duplicate_of"),
                    "location": info.get("location"),
                    "republished": bool(is_page and first_dump_of[fetch["slug"]] != dump),
                    "warc_date": warc_date(date),
                    "request_record_id": info["request_record_id"],
                    "response_record_id": info["response_record_id"],
                    "metadata_record_id": info["metadata_record_id"],
                    "conversion_record_id": conv_id,
                    "payload_digest": info["payload_digest"],
                })
            for rel, chunks in ((warc_rel, warc_chunks), (wet_rel, wet_chunks)):
                path = out_root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"".join(chunks))
                written.append(path)
            warc_paths.append(warc_rel)
            wet_paths.append(wet_rel)
        for name, rels in (("warc.paths.gz", warc_paths), ("wet.paths.gz", wet_paths)):
            path = crawl_dir / dump / name
            path.write_bytes(gzip.compress("".join(r + "\n" for r in rels).encode("ascii"),
                                           compresslevel=9, mtime=0))
            written.append(path)

    manifest_path = out_root / "manifest.jsonl"
    manifest_path.write_text(
        "".join(json.dumps(m, ensure_ascii=False, sort_keys=True) + "\n" for m in manifest),
        encoding="utf-8",
    )
    written.append(manifest_path)
    return written


def main() -> None:
    written = generate()
    for path in written:
        print(f"{path.stat().st_size:>9,d}  {os.path.relpath(path, HERE.parent)}")


if __name__ == "__main__":
    main()
