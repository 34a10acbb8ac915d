"""Page descriptions and HTML rendering for crawlmill's sample corpus.

Loads and validates ``samples/pages/*.yaml`` (the ground truth for every page:
title plus main paragraphs), defines the two sample dumps, and renders each
page to a full HTML document: the main content wrapped in realistic site
boilerplate (header, nav, cookie banner, related-articles aside, footer,
<script> and <style>), plus the HTML bodies of the 404 and 301 responses.

Used by ``sample_warc`` (which encodes the rendered pages into WARC/WET
records) and by ``make_samples`` (which re-exports ``load_corpus`` and
``ground_truth_text`` for tests and benchmarks).
"""

from __future__ import annotations

import glob
import hashlib
import html
import json
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import yaml

HERE = Path(__file__).resolve().parent
PAGES_DIR = HERE / "pages"

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
    w('<link rel="icon" href="/favicon.ico">')
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
