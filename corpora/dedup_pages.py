"""The page generator of the multi-dump WET corpus (crawlmill.corpora.dedup_corpus): page kinds and
their shares, dump crawl periods, and `PageGenerator`, which makes one language's pages from base
documents (crawlmill.corpora.dedup_text): unique pages, mirrors, republications under the same or a
new URL, small edits and rewrites, with URLs and all randomness from one seeded numpy Generator. A
library module, no command line; `build_corpus` in crawlmill.corpora.dedup_corpus drives it::

    python -m crawlmill.corpora.dedup_corpus corpus --output /tmp/dd --docs-per-dump 500
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np

from crawlmill.corpora.dedup_text import JOIN, split_sentences, vocabulary
from crawlmill.pipeline.ingest.html_text import normalize_text

_DUMP = re.compile(r"^CC-MAIN-(\d{4})-(\d{2})$")

KINDS = ("unique", "mirror", "republish_same_url", "republish_new_url", "edit", "rewrite")
CROSS_DUMP_KINDS = ("republish_same_url", "republish_new_url", "edit", "rewrite")


@dataclass(frozen=True)
class KindShares:
    """Share of each kind among a dump's pages; `unique` gets the rest. The first dump has no earlier
    dump to copy from, so its cross-dump shares become unique pages too. A mirror copies a page of the
    same dump; the others copy or change a page of an earlier dump (any kind, so chains form)."""

    mirror: float = 0.2
    republish_same_url: float = 0.25
    republish_new_url: float = 0.15
    edit: float = 0.15
    rewrite: float = 0.05

    def probabilities(self, first_dump: bool) -> np.ndarray:
        p = np.array([0.0] + [getattr(self, k) for k in KINDS[1:]])
        if p.min() < 0 or p.sum() > 1:
            raise ValueError(f"kind shares must be >= 0 and sum to <= 1: {self}")
        if first_dump:
            p[[KINDS.index(k) for k in CROSS_DUMP_KINDS]] = 0
        p[0] = 1 - p.sum()
        return p


@dataclass
class Page:
    """One page: `index` in generation order, `dump` as an index into the dump list, `parent` the
    index of the page it was copied or edited from, `edit` what changed."""

    index: int
    dump: int
    lang: str
    family: str
    kind: str
    text: str
    url: str
    parent: int | None = None
    edit: str | None = None


def dump_period(dump: str) -> tuple[datetime, datetime]:
    """The crawl period of a dump CC-MAIN-YYYY-WW: the 14 days that end with ISO week WW's Monday."""
    match = _DUMP.match(dump)
    if not match:
        raise ValueError(f"{dump!r} is not a Common Crawl dump id like CC-MAIN-2024-10")
    end = datetime.combine(date.fromisocalendar(int(match[1]), int(match[2]), 1), datetime.min.time(), timezone.utc)
    return end - timedelta(days=14), end


class PageGenerator:
    """Makes the pages of one language; all randomness from one numpy Generator."""

    SYLLABLES = {
        "en": "ka lo mi ten ra vo zu bel dor fin gal hut pen sor tam wix ber col dan eve".split(),
        "zh": "bai hua xin zhong tian ming guo hai long feng jia yun shan cheng an kang le hong".split(),
    }
    TLDS = {"en": ["com", "org", "net", "co.uk", "info"], "zh": ["cn", "com.cn", "com", "net"]}
    SECTIONS = {"en": ["article", "news", "wiki", "story", "post"], "zh": ["news", "html", "wenzhang", "info"]}

    def __init__(self, lang: str, base: list[str], rng: np.random.Generator, dumps: list[str]) -> None:
        self.lang, self.base, self.rng, self.dumps = lang, base, rng, dumps
        self.order = rng.permutation(len(base))  # families from the front, new text from the back
        self.next_family, self.next_donor = 0, len(base) - 1
        self.donor_sentences: list[str] = []
        self.vocab = vocabulary(" ".join(base[:200]), lang)
        self.sites = [self._host() for _ in range(60)]
        self.counter = 0

    def _host(self) -> str:
        r, syl = self.rng, self.SYLLABLES[self.lang]
        name = "".join(syl[i] for i in r.integers(len(syl), size=int(r.integers(2, 4))))
        prefix = ["www", "news", "blog", "m"][int(r.integers(4))]
        return f"{prefix}.{name}.{self.TLDS[self.lang][int(r.integers(len(self.TLDS[self.lang])))]}"

    def new_url(self, text: str, host: str | None = None) -> str:
        self.counter += 1
        host = host or self.sites[int(self.rng.integers(len(self.sites)))]
        section = self.SECTIONS[self.lang][int(self.rng.integers(len(self.SECTIONS[self.lang])))]
        if self.lang == "en":
            slug = "-".join(re.findall(r"[a-z]+", text[:80].lower())[:6]) or "page"
            return f"https://{host}/{section}/{slug}-{self.counter}.html"
        return f"https://{host}/{section}/{int(self.rng.integers(1998, 2024))}/{self.counter:06d}.html"

    def mirror_url(self, url: str) -> str:
        host = url.split("/")[2]
        while True:
            other = self._host()
            if other != host:
                return url.replace(f"//{host}/", f"//{other}/", 1)

    def new_family(self) -> tuple[str, str]:
        if self.next_family > self.next_donor:
            raise ValueError(f"not enough {self.lang} base documents ({len(self.base)}); ask for fewer documents")
        k = int(self.order[self.next_family])
        self.next_family += 1
        return f"{self.lang}-{k:05d}", self.base[k]

    def donor(self) -> str:
        """A sentence no other page has: from base documents no family uses."""
        while not self.donor_sentences:
            if self.next_donor < self.next_family:
                raise ValueError(f"not enough {self.lang} base documents ({len(self.base)}); ask for fewer documents")
            text = self.base[int(self.order[self.next_donor])]
            self.next_donor -= 1
            self.donor_sentences = [s for line in text.split("\n") for s in split_sentences(line, self.lang)][::-1]
        return self.donor_sentences.pop()

    # -- edits -------------------------------------------------------------------------------
    def _tokens(self, line: str) -> list[str]:
        return line.split(" ") if self.lang == "en" else list(line)

    def edit_tokens(self, text: str, op: str, fraction: float) -> str:
        """Substitute, insert or delete about `fraction` of the words (English) or characters (Chinese)."""
        lines = [self._tokens(line) for line in text.split("\n")]
        slots = [(i, j) for i, toks in enumerate(lines) for j in range(len(toks))]
        k = max(1, round(fraction * len(slots)))
        picks = sorted((slots[p] for p in self.rng.choice(len(slots), size=min(k, len(slots)), replace=False)), reverse=True)
        for i, j in picks:  # right to left, so earlier positions stay valid
            word = self.vocab[int(self.rng.integers(len(self.vocab)))]
            if op == "substitute":
                lines[i][j] = word
            elif op == "insert":
                lines[i].insert(j, word)
            elif len(lines[i]) > 1:
                del lines[i][j]
        return "\n".join(JOIN[self.lang].join(toks) for toks in lines)

    def edit_sentence(self, text: str, op: str) -> str:
        lines = [split_sentences(line, self.lang) or [line] for line in text.split("\n")]
        i = int(self.rng.integers(len(lines)))
        j = int(self.rng.integers(len(lines[i])))
        if op == "replace_sentence":
            lines[i][j] = self.donor()
        elif op == "insert_sentence":
            lines[i].insert(j, self.donor())
        elif sum(map(len, lines)) > 1:
            del lines[i][j]
        return "\n".join(JOIN[self.lang].join(s) for s in lines if s)

    def _day(self, dump: int) -> datetime:
        start, end = dump_period(self.dumps[dump])
        return start + timedelta(days=int(self.rng.integers((end - start).days)))

    def date_counter(self, text: str, dump: int) -> str:
        d, views = self._day(dump), int(self.rng.integers(10, 99999))
        if self.lang == "en":
            header = f"Updated {d:%B} {d.day}, {d.year} · {views:,} views"
        else:
            header = f"更新时间：{d.year}年{d.month}月{d.day}日 阅读：{views}"
        first, _, rest = text.partition("\n")
        return f"{header}\n{rest}" if first.startswith(("Updated ", "更新时间：")) else f"{header}\n{text}"

    def boilerplate(self, text: str, dump: int, url: str) -> str:
        host, year = url.split("/")[2], self._day(dump).year
        lines = {
            "en": [f"Copyright © {year} {host}. All rights reserved.", "Share this page: Facebook · X · Email",
                   "Subscribe to our newsletter to get more stories like this one."],
            "zh": [f"版权所有 © {year} {host} 保留所有权利", f"本文来源：{host} 责任编辑：王{'明红华'[year % 3]}",
                   "欢迎关注我们的公众号，获取更多资讯。"],
        }[self.lang]
        return f"{text}\n{lines[int(self.rng.integers(len(lines)))]}"

    def small_edit(self, text: str, dump: int, url: str) -> tuple[str, str]:
        """One or two small changes; word edits of 0.2%-6% of the tokens straddle Jaccard 0.8."""
        ops = ["substitute", "insert", "delete", "replace_sentence", "insert_sentence", "delete_sentence",
               "date_counter", "boilerplate"]
        done = []
        for op in self.rng.choice(ops, size=int(self.rng.integers(1, 3)), replace=False):
            if op in ("substitute", "insert", "delete"):
                fraction = float(np.exp(self.rng.uniform(np.log(0.002), np.log(0.06))))
                text = self.edit_tokens(text, op, fraction)
                op = f"{op}:{fraction:.3f}"
            elif op == "date_counter":
                text = self.date_counter(text, dump)
            elif op == "boilerplate":
                text = self.boilerplate(text, dump, url)
            else:
                text = self.edit_sentence(text, op)
            done.append(str(op))
        return text, ";".join(done)

    def rewrite(self, text: str) -> tuple[str, str]:
        """Replace about half the sentences with new ones, and change a few words."""
        lines = [split_sentences(line, self.lang) or [line] for line in text.split("\n")]
        share = float(self.rng.uniform(0.45, 0.7))
        lines = [[self.donor() if self.rng.random() < share else s for s in line] for line in lines]
        text = self.edit_tokens("\n".join(JOIN[self.lang].join(s) for s in lines), "substitute", 0.01)
        return text, f"rewrite:{share:.2f}"

    # -- pages -------------------------------------------------------------------------------
    def pages(self, dump: int, n: int, shares: KindShares, earlier: list[Page], start: int) -> list[Page]:
        """n pages of dump `dump`; `earlier` holds this language's pages of earlier dumps."""
        out: list[Page] = []
        urls: set[str] = set()
        for kind in self.rng.choice(KINDS, size=n, p=shares.probabilities(first_dump=dump == 0)):
            kind = str(kind)
            if kind == "mirror" and not out:
                kind = "unique"
            page = Page(start + len(out), dump, self.lang, "", kind, "", "")
            if kind == "unique":
                page.family, page.text = self.new_family()
                page.url = self.new_url(page.text)
            else:
                candidates = out if kind == "mirror" else earlier
                parent = candidates[int(self.rng.integers(len(candidates)))]
                page.parent, page.family, page.text = parent.index, parent.family, parent.text
                if kind == "mirror":
                    page.url = self.mirror_url(parent.url)
                elif kind == "republish_new_url" or (kind == "republish_same_url" and parent.url in urls):
                    page.kind, page.url = "republish_new_url", self.new_url(parent.text)
                else:  # same URL, except when this dump already has it
                    reuse = kind == "republish_same_url" or self.rng.random() < 0.5
                    page.url = parent.url if reuse and parent.url not in urls else self.new_url(parent.text)
                if kind == "edit":
                    page.text, page.edit = self.small_edit(parent.text, dump, page.url)
                elif kind == "rewrite":
                    page.text, page.edit = self.rewrite(parent.text)
            page.text = normalize_text(page.text)  # what ingest reads back is exactly this text
            urls.add(page.url)
            out.append(page)
        return out
