"""One generated low-quality page as web_junk.py writes it: its random generator, the real paragraphs
and keywords it draws, its made-up site, and the template filler that puts them into the phrase banks
of web_junk_phrases.py; with the text helpers both use (sentences, keywords, title_case)."""

from __future__ import annotations

import random
import re
from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Sequence

from crawlmill.corpora.web_junk_phrases import EN, ZH

_EN_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*[A-Za-z]")
_EN_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_ZH_SENTENCE = re.compile(r"[^。！？]*[。！？]+[”」’）]*|[^。！？]+$")
HAN_WORD = re.compile(r"^[\u4e00-\u9fff]+$")
EN_TOKENS = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*|[^\sA-Za-z0-9]")
_SYLLABLES = ["bao", "xin", "hua", "tian", "long", "feng", "jia", "hong", "sheng", "yuan", "kang", "da", "mei", "jin", "li", "hai", "wei", "yi"]


@lru_cache(maxsize=1)
def jieba_segmenter():  # noqa: ANN202 - the jieba module, its dictionary loaded once
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
            words = jieba_segmenter().lcut(text)
            content = [w if len(w) >= 2 and HAN_WORD.match(w) and w not in stop else None for w in words]
            for a, b in zip(content, content[1:]):
                if a and b and a != b and len(a) + len(b) <= 6:
                    counts[a + b] += 2
            counts.update(w for w in content if w)
    return [w for w, _ in counts.most_common(k)]


def title_case(text: str) -> str:
    """Each word's first letter upper-cased, the rest left alone (str.title would write "At'S")."""
    return " ".join(w[:1].upper() + w[1:] for w in text.split(" "))


class Page:
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
        values = Filler(self, fixed)
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


class Filler(dict):
    """Values of a template's placeholders: the page's keywords and site, else fresh random ones."""

    def __init__(self, page: Page, fixed: dict[str, str]) -> None:
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
