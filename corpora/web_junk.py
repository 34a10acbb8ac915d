"""Low-quality web documents in English and Chinese, generated from real text: the negatives of the
semantic quality classifier; and "clean" documents, whole real paragraphs as an article has them.

`junk_documents(paragraphs, lang, n, seed)` writes `n` pages, the kinds (`KINDS`) taken in turn, so
every kind is there once `n >= len(KINDS)`:

| kind | the page |
|---|---|
| `boilerplate` | menu, breadcrumb, byline and share buttons around one or two real sentences; related posts, categories, archives, tags, footer |
| `cookie_wall` | cookie-consent text and buttons, a teaser of a real sentence, paywall and newsletter prompts |
| `keyword_stuffing` | SEO templates repeating keywords taken from the real text, a real sentence with a keyword pushed in, tag lists |
| `product_listing` | a shop page: filters, products named from the text's words with prices, ratings and badges |
| `comment_spam` | a short post (a real sentence or two) under many spam comments with links, QQ and WeChat numbers |
| `link_farm` | link lists and "friendly links" (友情链接) of keyword anchors and made-up hosts, domain mirror lists |
| `sentence_salad` | an auto-generated "article": real sentences from unrelated paragraphs strung together with connectives (Chinese: some sentences bracketed character by character, 【字】, a real spam pattern) |
| `teaser_list` | a list page of truncated teasers ("Read more »", [详细]) with dates and pagination |
| `listicle` | clickbait headlines numbered, made from the text's keywords and truncated sentences; sponsored blocks |
| `word_salad` | real sentences through an article spinner / poor machine translation: wrong-sense synonyms, dropped articles, swapped words |
| `notice` | an error or notice page (404, removed, maintenance, login or region wall, domain for sale): a line or two of notice, sometimes repeated, under a heading (as a main-text extractor leaves it) or in the site's menu, related posts and footer |

Real vocabulary: keywords are the most frequent content words and adjacent content-word pairs of
the paragraphs a page draws (English: regex words, stop words out; Chinese: jieba words of 2+ Han
characters), and the real sentences come from those paragraphs. Everything else comes from the
phrase banks of corpora/web_junk_phrases.py (written for crawlmill). Pages are text as a WET
record or an HTML extractor gives it: lines, blank lines between blocks. The share of real text
differs by kind on purpose: a salad or spun page is mostly real words, a shop or link page hardly
any; how separable that makes them is for the classifier to show, not tuned here.

`clean_documents(paragraphs, lang, n, seed)` cuts the paragraphs, in order, into windows of 1-5
consecutive paragraphs that never cross an empty string (a document boundary marker, so a caller can
pass several articles at once) and returns `n` of the windows (all of them when there are fewer),
joined by newlines, in corpus order.

Each document carries `sources`: the indices of the paragraphs it used. Deterministic: a page's
random generator is seeded by (seed, lang, its index), so the same inputs give the same documents,
and the first k of n documents are the k documents. Library use, or a command::

    python -m crawlmill.corpora.web_junk samples/quality/reference_en.txt --lang en -n 10 --seed 0  # JSONL to stdout
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Sequence

from crawlmill.corpora.web_junk_phrases import EN, ZH

KINDS: tuple[str, ...] = (
    "boilerplate", "cookie_wall", "keyword_stuffing", "product_listing", "comment_spam",
    "link_farm", "sentence_salad", "teaser_list", "listicle", "word_salad", "notice",
)  # fmt: skip
LANGS = ("en", "zh")
MAX_CLEAN_WINDOW = 5

_EN_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]")
_EN_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_ZH_SENTENCE = re.compile(r"[^。！？]*[。！？]+[”」’）]*|[^。！？]+$")
_HAN = re.compile(r"^[\u4e00-\u9fff]+$")
_EN_TOKENS = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*|[^\sA-Za-z0-9]")
_SYLLABLES = ["bao", "xin", "hua", "tian", "long", "feng", "jia", "hong", "sheng", "yuan", "kang", "da", "mei", "jin", "li", "hai", "wei", "yi"]


@lru_cache(maxsize=1)
def _jieba():  # noqa: ANN202 - the jieba module, its dictionary loaded once
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


def sentences(paragraph: str, lang: str) -> list[str]:
    """A paragraph's sentences (English: after . ! ? before a capital; Chinese: after 。！？)."""
    if lang == "zh":
        return [s.strip() for s in _ZH_SENTENCE.findall(paragraph) if s.strip()]
    return [s.strip() for s in _EN_SENTENCE.split(paragraph) if s.strip()]


def keywords(texts: Sequence[str], lang: str, k: int) -> list[str]:
    """The k most frequent content words and adjacent content-word pairs of texts (pairs count double:
    SEO pages repeat phrases); ties in order of first appearance."""
    bank = EN if lang == "en" else ZH
    stop = set(bank["stop"])
    counts: Counter[str] = Counter()
    for text in texts:
        if lang == "en":
            # a pair must be adjacent in the text, so split on anything but letters and a single space
            for run in re.split(r"[^A-Za-z' \-]+|\s{2,}", text):
                words = [w.lower() for w in _EN_WORD.findall(run)]
                content = [w if len(w) >= 4 and w not in stop else None for w in words]
                for a, b in zip(content, content[1:]):
                    if a and b and a != b:
                        counts[f"{a} {b}"] += 2
                counts.update(w for w in content if w)
        else:
            words = _jieba().lcut(text)
            content = [w if len(w) >= 2 and _HAN.match(w) and w not in stop else None for w in words]
            for a, b in zip(content, content[1:]):
                if a and b and a != b and len(a) + len(b) <= 6:
                    counts[a + b] += 2
            counts.update(w for w in content if w)
    return [w for w, _ in counts.most_common(k)]


def title_case(text: str) -> str:
    """Each word's first letter upper-cased, the rest left alone (str.title would write "At'S")."""
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


class _Page:
    """One page being written: its random generator, the real paragraphs it drew, its keywords and site."""

    def __init__(self, rng: random.Random, lang: str, pool: Sequence[str]) -> None:
        self.rng, self.lang, self.pool = rng, lang, pool
        self.bank = EN if lang == "en" else ZH
        self.used: list[int] = []
        first = self.paragraphs(self.rng.randint(1, 3))
        self.kws = keywords(first, lang, 12) or (["news"] if lang == "en" else ["资讯"])
        self.kw = self.kws[0]
        self.kw2 = self.kws[1] if len(self.kws) > 1 else self.kw
        self.site = self._site_name()
        self.host = self._host()
        self.title = ""

    # -- real text --------------------------------------------------------------------------------
    def paragraphs(self, k: int) -> list[str]:
        picked = self.rng.sample(range(len(self.pool)), min(k, len(self.pool)))
        self.used.extend(i for i in picked if i not in self.used)
        return [self.pool[i] for i in picked]

    def sentences(self, k: int, per_paragraph: int = 1) -> list[str]:
        """k real sentences, at most per_paragraph from each of the paragraphs drawn."""
        out: list[str] = []
        for paragraph in self.paragraphs(max(1, -(-k // per_paragraph))):
            found = sentences(paragraph, self.lang)
            start = self.rng.randrange(len(found))
            out.extend(found[start : start + per_paragraph])
        return out[:k]

    def fragment(self, text: str, least: int, most: int) -> str:
        """The start of text cut at a word (English) or character (Chinese) between least and most characters."""
        if len(text) <= least:
            return text
        cut = self.rng.randint(least, min(most, len(text)))
        if self.lang == "en":
            cut = text.rfind(" ", 0, cut) if " " in text[:cut] else cut
        return text[:cut].rstrip(" ,;:，、；：")

    def headline(self, text: str) -> str:
        """A title made of the first words of a sentence."""
        if self.lang == "zh":
            return self.fragment(text.rstrip("。！？"), 8, 22)
        words = text.split()[: self.rng.randint(5, 10)]
        return " ".join(title_case(w) if len(w) > 3 else w for w in words).rstrip(",;:.")

    # -- phrase banks -----------------------------------------------------------------------------
    def pick(self, key: str) -> Any:
        return self.rng.choice(self.bank[key])

    def picks(self, key: str, k: int) -> list[Any]:
        return self.rng.sample(self.bank[key], min(k, len(self.bank[key])))

    def fill(self, template: str, **fixed: str) -> str:
        values = _Filler(self, fixed)
        return template.format_map(values)

    def fills(self, key: str, k: int, **fixed: str) -> list[str]:
        return [self.fill(t, **fixed) for t in self.picks(key, k)]

    # -- invented sites ---------------------------------------------------------------------------
    def _site_name(self) -> str:
        if self.lang == "zh":
            return self.kw[:4] + self.pick("site_suffixes")
        words = self.kw.split()
        return "".join(w.capitalize() for w in words[: self.rng.randint(1, len(words))]) + " " + self.pick("site_suffixes")

    def _host(self) -> str:
        tld = self.pick("tlds")
        if self.lang == "zh":
            shape = self.rng.randrange(3)
            if shape == 0:
                return f"www.{self.rng.randint(10000, 999999)}{tld}"
            if shape == 1:
                return f"www.{''.join(self.rng.sample(_SYLLABLES, 2))}{self.rng.randint(1, 99)}{tld}"
            letters = "".join(self.rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3))
            return f"{self.rng.randint(0, 999):03d}.{letters}{self.rng.randint(100, 999)}{tld}"
        slug = re.sub(r"[^a-z0-9]+", "-", self.kw.lower()).strip("-") or "web"
        return f"www.{slug}-{self.rng.choice(['hub', 'best', 'info', 'top', 'pro', 'now'])}{self.rng.randint(1, 99)}{tld}"

    def url(self) -> str:
        tld = self.pick("tlds")
        if self.lang == "zh":
            host = f"www.{''.join(self.rng.sample(_SYLLABLES, 2))}{self.rng.randint(1, 999)}{tld}"
            return f"http://{host}/{self.rng.choice(['news', 'html', 'list', 'a', 'show'])}/{self.rng.randint(1000, 99999)}.html"
        word = re.sub(r"[^a-z0-9]+", "-", self.rng.choice(self.kws).lower()).strip("-") or "web"
        host = f"{word}-{self.rng.choice(['deals', 'online', 'review', 'guide', 'shop'])}{tld}"
        return f"https://{host}/{self.rng.choice(['', 'go/', 'ref/', 'p/'])}{self.rng.randint(100, 9999)}"

    def date(self) -> str:
        y, m, d = self.rng.randint(2015, 2024), self.rng.randint(1, 12), self.rng.randint(1, 28)
        if self.lang == "zh":
            return f"{y}-{m:02d}-{d:02d}"
        return f"{self.bank['archives_months'][m - 1]} {d}, {y}"

    # -- page furniture ---------------------------------------------------------------------------
    def header(self, nav: tuple[int, int] = (5, 11)) -> list[str]:
        lines = [self.site + (" - " + self.fill(self.pick("taglines")) if self.rng.random() < 0.5 else "")]
        items = self.picks("nav", self.rng.randint(*nav))
        if self.rng.random() < 0.5:
            lines += items
        else:
            lines.append(" | ".join(items))
        return lines

    def footer(self, k: tuple[int, int] = (3, 6)) -> list[str]:
        return [""] + self.fills("footer", self.rng.randint(*k))

    def related(self, k: int) -> list[str]:
        heading = self.fill(self.pick("sections"))
        return ["", heading] + [self.headline(s) for s in self.sentences(k)]


class _Filler(dict):
    """Values of a template's placeholders: the page's keywords and site, else fresh random ones."""

    def __init__(self, page: _Page, fixed: dict[str, str]) -> None:
        super().__init__(fixed)
        self.page = page

    def __missing__(self, key: str) -> str:
        p, rng = self.page, self.page.rng
        if key in ("kw", "kw2"):
            return p.kw if key == "kw" else p.kw2
        if key in ("Kw", "Kw2"):
            word = p.kw if key == "Kw" else p.kw2
            return word if p.lang == "zh" else title_case(word)
        simple: dict[str, Callable[[], Any]] = {
            "site": lambda: p.site, "host": lambda: p.host, "domain": lambda: p.host.removeprefix("www."), "title": lambda: p.title or p.site,
            "year": lambda: rng.randint(2019, 2025), "year0": lambda: rng.randint(2005, 2018),
            "n": lambda: rng.choice([rng.randint(12, 99), rng.randint(100, 999), rng.randint(1000, 99999)]),
            "k": lambda: rng.randint(2, 15), "c": lambda: rng.choice([3, 5, 7, 8, 10, 12, 15, 17, 20, 25]), "m": lambda: rng.randint(10, 99), "p": lambda: rng.randint(20, 95),
            "price": lambda: f"{rng.randint(1, 99)}.{rng.choice(['00', '90', '99', '50', '80'])}",
            "city": lambda: rng.choice(p.bank["cities"]), "url": p.url, "date": p.date,
            "time": lambda: f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}",
            "email": lambda: f"{rng.choice(['info', 'contact', 'admin', 'seo', 'sales'])}{rng.randint(1, 99)}@{p.host.removeprefix('www.')}",
            "theme": lambda: rng.choice(p.bank["themes"]), "cat": lambda: rng.choice(p.bank["categories"]),
            "qq": lambda: str(rng.randint(10_000_000, 2_999_999_999)), "wx": lambda: f"{rng.choice(['vip', 'kf', 'abc', 'zx'])}{rng.randint(1000, 99999)}",
            "phone": lambda: f"1{rng.choice('35789')}{rng.randint(0, 999_999_999):09d}",
            "area": lambda: str(rng.randint(10, 999)), "n8": lambda: str(rng.randint(10_000_000, 99_999_999)),
            "n14": lambda: str(rng.randint(10**13, 10**14 - 1)), "prov": lambda: rng.choice(p.bank["provinces"]),
            "road": lambda: rng.choice(p.bank["roads"]), "author": lambda: rng.choice(p.bank["authors"]),
            "company": lambda: f"{rng.choice(p.bank['cities'])}{rng.choice(p.bank['company_words'])}网络科技有限公司",
            "tags": lambda: ("，" if p.lang == "zh" else ", ").join(p.kws[: rng.randint(3, 8)]),
        }
        if key not in simple:
            raise KeyError(f"web_junk template placeholder {{{key}}} has no value")
        return str(simple[key]())


# -- the kinds ------------------------------------------------------------------------------------


def _boilerplate(p: _Page) -> list[str]:
    s = p.sentences(p.rng.randint(1, 2), per_paragraph=2)
    p.title = p.headline(s[0])
    lines = p.header((6, 14)) + ["", p.fill(p.pick("breadcrumb")), p.title, p.fill(p.pick("bylines")), ""]
    lines.append(("" if p.lang == "zh" else " ").join(s) if p.rng.random() < 0.5 else p.fragment(" ".join(s), 60, 200) + "…")
    lines += ["", p.fill(p.pick("share"))] + p.related(p.rng.randint(3, 6))
    counts = [f"{c} ({p.rng.randint(1, 240)})" for c in p.picks("categories", p.rng.randint(5, 9))]
    lines += ["", "Categories" if p.lang == "en" else "文章分类"] + counts
    if p.lang == "en":
        months = p.bank["archives_months"]
        lines += ["", "Archives"] + [f"{p.rng.choice(months)} {p.rng.randint(2016, 2024)}" for _ in range(p.rng.randint(4, 9))]
    else:
        lines += ["", "文章归档"] + [f"{p.rng.randint(2016, 2024)}年{p.rng.randint(1, 12)}月" for _ in range(p.rng.randint(4, 9))]
    lines += ["", ("Tags: " if p.lang == "en" else "标签：") + p.fill("{tags}")]
    return lines + p.footer()


def _cookie_wall(p: _Page) -> list[str]:
    lines = p.fills("cookie", p.rng.randint(1, 3)) + [" ".join(p.picks("cookie_buttons", p.rng.randint(2, 4))), ""]
    lines += p.header((3, 7))
    s = p.sentences(1)[0]
    p.title = p.headline(s)
    lines += ["", p.title, p.fill(p.pick("bylines")), "", p.fragment(s, 40, 160) + ("……" if p.lang == "zh" else "...")]
    lines += [""] + p.fills("paywall", p.rng.randint(2, 4)) + [""] + p.fills("newsletter", p.rng.randint(2, 5))
    if p.rng.random() < 0.5:
        lines += [""] + p.fills("cookie", 1) + [" ".join(p.picks("cookie_buttons", 3))]
    return lines + p.footer()


def _keyword_stuffing(p: _Page) -> list[str]:
    p.title = p.fill(p.pick("seo_titles"))
    lines = [p.title] + p.header((4, 9)) + ["", p.fill(p.pick("tag_variants"))]
    glue = "" if p.lang == "zh" else " "
    for _ in range(p.rng.randint(3, 6)):
        lines += ["", glue.join(p.fills("seo", p.rng.randint(2, 5)))]
    # one real sentence with the keyword pushed in, as keyword-density "optimised" copy does
    s = p.sentences(1)[0]
    lines += ["", p.fill(p.pick("salad_inserts")) + (s if p.lang == "zh" else _lower_first(s))]
    variants = [p.fill(t, kw=p.rng.choice(p.kws[:4])) for t in p.rng.choices(p.bank["tag_variants"], k=p.rng.randint(10, 25))]
    lines += ["", ("Related searches: " if p.lang == "en" else "相关搜索：") + ("、" if p.lang == "zh" else ", ").join(variants)]
    return lines + p.footer((2, 4))


def _product_listing(p: _Page) -> list[str]:
    lines = p.header((5, 10)) + ["", p.fill(p.pick("breadcrumb"), title=p.kw)]
    lines += p.fills("shop_chrome", p.rng.randint(3, 7)) + [""]
    for _ in range(p.rng.randint(8, 16)):
        word = p.rng.choice(p.kws)
        if p.lang == "zh":
            name = f"{p.pick('product_adjectives')}{word}{p.pick('product_types')} {p.pick('product_suffixes')}".strip()
            was = p.rng.randint(30, 600)
            now = round(was * p.rng.uniform(0.3, 0.9), 1)
            lines += [name, f"￥{now}  ￥{was}", p.fill(p.pick("shop_labels")) + "  " + p.fill(p.pick("shop_labels")), p.fill(p.pick("shops"))]
        else:
            name = f"{p.pick('product_adjectives')} {title_case(word)} {p.pick('product_types')} {p.pick('product_suffixes')}".strip()
            was = p.rng.randint(15, 150) + 0.99
            now = round(was * p.rng.uniform(0.3, 0.9), 0) - 0.01
            stars = p.rng.randint(3, 5)
            lines += [name, "★" * stars + "☆" * (5 - stars) + f" ({p.rng.randint(2, 2400)})", f"${now:.2f}  ${was:.2f}  -{round(100 * (1 - now / was))}%", p.fill(p.pick("shop_labels"))]
        lines.append("")
    if p.rng.random() < 0.6:
        lines += [("About " + title_case(p.kw) + ": " if p.lang == "en" else "商品详情：") + p.sentences(1)[0]]
    lines += [p.fill(p.pick("pagination"))]
    return lines + p.footer()


def _comment_spam(p: _Page) -> list[str]:
    s = p.sentences(p.rng.randint(1, 2), per_paragraph=2)
    p.title = p.headline(s[0])
    lines = p.header((4, 8)) + ["", p.title, p.fill(p.pick("bylines")), ("" if p.lang == "zh" else " ").join(s), ""]
    count = p.rng.randint(8, 18)
    lines.append(p.fill("{n} Comments" if p.lang == "en" else "共有{n}条评论", n=str(count + p.rng.randint(0, 40))))
    for _ in range(count):
        name = p.pick("comment_names")
        if p.lang == "zh":
            name = name if p.rng.random() < 0.6 else f"{p.fill('{city}')}网友{p.rng.randint(100, 9999)}"
            lines += [f"{name}  发表于 {p.date()} {p.fill('{time}')}", p.fill(p.pick("comments"), kw=p.rng.choice(p.kws))]
        else:
            lines += [f"{name} says:", f"{p.date()} at {p.fill('{time}')}", p.fill(p.pick("comments"), kw=p.rng.choice(p.kws))]
        lines.append(p.fill(p.pick("comment_actions")))
        lines.append("")
    lines += p.fills("comment_chrome", p.rng.randint(3, 6))
    return lines + p.footer((2, 4))


def _link_farm(p: _Page) -> list[str]:
    lines = p.header((3, 7))
    if p.rng.random() < 0.5:
        lines += ["", p.sentences(1)[0]]
    for _ in range(p.rng.randint(2, 5)):
        lines += ["", p.fill(p.pick("link_headers"))]
        k = p.rng.randint(8, 20)
        if p.lang == "zh":
            names = [p.fill(p.pick("link_variants"), kw=p.rng.choice(p.kws)) for _ in range(k)]
            lines.append("    ".join(names) if p.rng.random() < 0.5 else "\n".join(f"{n} {p.url()}" for n in names))
        else:
            for _ in range(k):
                anchor = p.fill(p.pick("tag_variants"), kw=p.rng.choice(p.kws))
                lines.append(f"{title_case(anchor)} - {p.url()}" if p.rng.random() < 0.6 else title_case(anchor))
    # the same site under many host names, as doorway networks list themselves
    base = p.host.removeprefix("www.")
    prefixes = p.rng.sample(["www", "m", "wap", "web", "ios", "app", "news", "bbs", "book", "vip"], p.rng.randint(5, 9))
    lines += ["", " | ".join(f"http://{x}.{base}" for x in prefixes)]
    return lines + p.footer((2, 5))


def _lower_first(sentence: str) -> str:
    first = sentence.split(" ", 1)[0]
    return sentence if first.isupper() or first == "I" else sentence[0].lower() + sentence[1:]


def _obfuscate(sentence: str) -> str:
    return "".join(f"【{c}】" for c in sentence)


def _sentence_salad(p: _Page) -> list[str]:
    p.title = p.fill(p.pick("salad_titles"))
    lines = [p.title, p.fill(p.pick("bylines")), ""]
    for _ in range(p.rng.randint(3, 6)):
        parts = []
        for s in p.sentences(p.rng.randint(2, 5)):
            joint = p.pick("connectors")
            if p.rng.random() < 0.15:
                joint = p.fill(p.pick("salad_inserts"))
            piece = joint + (_lower_first(s) if joint and p.lang == "en" else s)
            if p.lang == "zh" and p.rng.random() < 0.08:
                piece = _obfuscate(piece)
            parts.append(piece)
        lines += [("" if p.lang == "zh" else " ").join(parts), ""]
    heads = p.sentences(2)  # one when the pool has a single paragraph
    before, after = heads[0], heads[-1]
    lines += [p.fill(p.bank["prev_next"][0], title=p.headline(before)), p.fill(p.bank["prev_next"][1], title=p.headline(after))]
    lines += p.fills("prev_next", 1, title=p.headline(after))[:1]
    return lines + p.footer((1, 4))


def _teaser_list(p: _Page) -> list[str]:
    lines = p.header((5, 10)) + ["", p.pick("headings"), ""]
    for paragraph in p.paragraphs(p.rng.randint(6, 11)):
        found = sentences(paragraph, p.lang)
        teaser = p.fragment(paragraph, 60, 180 if p.lang == "en" else 90)
        more = p.pick("read_more")
        lines += [p.headline(found[0]), p.date(), teaser + ("… " if p.rng.random() < 0.7 else " ") + more, ""]
    lines += [p.fill(p.pick("pagination"))] + p.related(p.rng.randint(3, 5))
    return lines + p.footer()


def _listicle(p: _Page) -> list[str]:
    p.title = p.fill(p.pick("listicles"))
    lines = p.header((4, 8)) + ["", p.title, p.fill(p.pick("bylines")), p.fill(p.pick("listicle_chrome")), ""]
    items = p.rng.randint(7, 14)
    heads = p.sentences(items)
    for i in range(items):
        if p.rng.random() < 0.45 and i < len(heads):
            head = p.headline(heads[i]) + p.fill(p.pick("clickbait_tails"))
        else:
            word = p.rng.choice(p.kws)
            head = p.fill(p.pick("listicles"), kw=word, Kw=title_case(word) if p.lang == "en" else word)
        lines.append(f"{i + 1}. {head}")
    lines += ["", p.fill(p.pick("listicle_chrome")), p.fill(p.pick("listicle_chrome"))]
    for _ in range(p.rng.randint(3, 6)):
        word = p.rng.choice(p.kws)
        lines.append(p.fill(p.pick("listicles"), kw=word, Kw=title_case(word) if p.lang == "en" else word) + " · " + p.pick("sponsors"))
    return lines + p.footer((2, 4))


def _spin_en(p: _Page, sentence: str) -> str:
    spin, drop = p.bank["spin"], set(p.bank["drop"])
    out: list[str] = []
    for token in _EN_TOKENS.findall(sentence):
        low = token.lower()
        if low in drop and p.rng.random() < 0.35:
            continue
        if low in spin and p.rng.random() < 0.7:
            token = spin[low] if token.islower() else spin[low].capitalize()
        out.append(token)
    for i in range(len(out) - 1):  # local word-order slips
        if out[i].isalpha() and out[i + 1].isalpha() and p.rng.random() < 0.07:
            out[i], out[i + 1] = out[i + 1], out[i]
    text = " ".join(out)
    return re.sub(r" ([,.;:!?)\]'\"])", r"\1", re.sub(r"([(\[]) ", r"\1", text))


def _spin_zh(p: _Page, sentence: str) -> str:
    spin, particles = p.bank["spin"], p.bank["particles"]
    out: list[str] = []
    for word in _jieba().lcut(sentence):
        if word in spin and p.rng.random() < 0.7:
            word = spin[word]
        out.append(word)
        if _HAN.match(word) and p.rng.random() < 0.05:
            out.append(p.rng.choice(particles))
    for i in range(len(out) - 1):
        if _HAN.match(out[i]) and _HAN.match(out[i + 1]) and p.rng.random() < 0.06:
            out[i], out[i + 1] = out[i + 1], out[i]
    return "".join(out)


def _notice(p: _Page) -> list[str]:
    notices = p.fills("notices", p.rng.randint(1, 2))
    if p.rng.random() < 0.3:  # the notice a template prints once per widget
        notices = notices * p.rng.randint(2, 4)
    p.title = notices[0]
    if p.rng.random() < 0.5:  # as a main-text extractor leaves it: a heading and the notice
        return [p.pick("notice_titles"), ""] + notices
    lines = p.header((3, 9)) + [""] + notices + [""] + [" | ".join(p.picks("notice_links", p.rng.randint(1, 3)))]
    return lines + p.related(p.rng.randint(2, 5)) + p.footer()


def _word_salad(p: _Page) -> list[str]:
    p.title = p.fill(p.pick("salad_titles"))
    lines = p.header((3, 7)) + ["", p.title, p.fill(p.pick("bylines")), ""]
    spin = _spin_zh if p.lang == "zh" else _spin_en
    for paragraph in p.paragraphs(p.rng.randint(2, 4)):
        found = sentences(paragraph, p.lang)
        start = p.rng.randrange(max(1, len(found) - 2))
        lines += [("" if p.lang == "zh" else " ").join(spin(p, s) for s in found[start : start + p.rng.randint(2, 5)]), ""]
    return lines + p.footer((2, 4))


_GENERATORS: dict[str, Callable[[_Page], list[str]]] = {
    "boilerplate": _boilerplate, "cookie_wall": _cookie_wall, "keyword_stuffing": _keyword_stuffing,
    "product_listing": _product_listing, "comment_spam": _comment_spam, "link_farm": _link_farm,
    "sentence_salad": _sentence_salad, "teaser_list": _teaser_list, "listicle": _listicle, "word_salad": _word_salad,
    "notice": _notice,
}  # fmt: skip


def _tidy(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in "\n".join(lines).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _check(paragraphs: Sequence[str], lang: str) -> list[str]:
    if lang not in LANGS:
        raise ValueError(f"lang {lang!r}: web_junk writes {', '.join(LANGS)}")
    pool = [p for p in paragraphs if p.strip()]
    if not pool:
        raise ValueError("web_junk needs real paragraphs to draw words and sentences from")
    return pool


def junk_documents(paragraphs: Sequence[str], lang: str, n: int, seed: int, kinds: Sequence[str] = KINDS) -> list[dict[str, Any]]:
    """n low-quality pages ({text, kind, sources}), kinds in turn, drawing real words and sentences
    from paragraphs (empty strings ignored; `sources` index the non-empty paragraphs in order)."""
    pool = _check(paragraphs, lang)
    unknown = [k for k in kinds if k not in _GENERATORS]
    if unknown or not kinds:
        raise ValueError(f"unknown junk kinds {unknown}: choose from {', '.join(KINDS)}")
    docs = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        page = _Page(random.Random(f"web_junk|{lang}|{seed}|{i}"), lang, pool)
        docs.append({"text": _tidy(_GENERATORS[kind](page)), "kind": kind, "sources": sorted(page.used)})
    return docs


def clean_documents(paragraphs: Sequence[str], lang: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Up to n documents ({text, sources}) of 1-5 consecutive paragraphs each, windows not overlapping
    and not crossing an empty string; `sources` index paragraphs (boundary markers included)."""
    if lang not in LANGS:
        raise ValueError(f"lang {lang!r}: web_junk writes {', '.join(LANGS)}")
    rng = random.Random(f"clean|{lang}|{seed}")
    windows: list[list[int]] = []
    run: list[int] = []
    for i, paragraph in enumerate(list(paragraphs) + [""]):
        if paragraph.strip():
            run.append(i)
            continue
        while run:
            size = rng.randint(1, MAX_CLEAN_WINDOW)
            windows.append(run[:size])
            run = run[size:]
    chosen = sorted(rng.sample(range(len(windows)), min(n, len(windows))))
    return [{"text": "\n".join(paragraphs[i].strip() for i in windows[w]), "sources": windows[w]} for w in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print generated low-quality (or clean) web documents as JSONL.")
    parser.add_argument("paragraphs", help="text file: one real paragraph a line")
    parser.add_argument("--lang", choices=LANGS, required=True)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clean", action="store_true", help="clean documents instead of junk")
    args = parser.parse_args(argv)
    with open(args.paragraphs, encoding="utf-8") as f:
        paragraphs = f.read().splitlines()
    make = clean_documents if args.clean else junk_documents
    for doc in make(paragraphs, args.lang, args.n, args.seed):
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
