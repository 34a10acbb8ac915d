#!/usr/bin/env python3
"""Near-duplicate test corpora with exact ground truth, built from the real text in ../shared/data/text.

Two builders, for measuring the dedup stage:

* `build_corpus` writes a multi-dump corpus in Common Crawl's WET layout,
  ``OUT/crawl-data/<DUMP>/segments/<seg>/wet/CC-MAIN-<ts>-<ts>-<nnnnn>.warc.wet.gz`` (+ ``wet.paths.gz``),
  English and Chinese pages: unique pages, pages republished unchanged in a later dump (same URL or a
  new one), small edits, rewrites, and mirrors on another host within a dump. Every page descends from
  one base document (its *family*). The ground truth is exact: two pages are true near duplicates iff
  the Jaccard similarity of their shingle sets (`crawlmill.pipeline.dedup.shingles`) is >= 0.8, and the
  true clusters are the connected components of those pairs. Only pages of one family can be that
  similar (base documents are pairwise < 0.5 and new text comes from unused base documents), so pairs
  are computed within families; the tests check the claim. Written: ``OUT/ground_truth.parquet``
  (record_id, id, url, dump, lang, family, kind, cluster, ...) and ``OUT/pairs.parquet``.
* `build_scale_corpus` writes millions of documents straight in crawlmill's document schema,
  ``OUT/<DUMP>/part-NNNNN.parquet`` + ``_SUCCESS`` (what `crawlmill dedup` reads), by resampling and
  mutating the real sentences; per-document family and kind go to ``OUT/_truth/<DUMP>/part-NNNNN.parquet``.
  Streaming (one part in memory at a time per worker) and deterministic from the seed.

Run (repository root, virtualenv active)::

    python bench/dedup_corpus.py corpus --output /tmp/dd --dumps CC-MAIN-2023-50 CC-MAIN-2024-10 --docs-per-dump 500
    python bench/dedup_corpus.py stats /tmp/dd
    python bench/dedup_corpus.py scale --output /tmp/dd-1m --docs 1000000 --workers 2
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import multiprocessing
import re
import shutil
import sys
import time
import uuid
from base64 import b32encode
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastwarc.warc import WarcRecord, WarcRecordType

from crawlmill.pipeline.dedup.shingles import shingles
from crawlmill.pipeline.ingest.html_text import normalize_text
from crawlmill.pipeline.parts import PARQUET_OPTIONS
from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id

REPO = Path(__file__).resolve().parents[1]
TEXT_DIR = REPO.parent / "shared" / "data" / "text"
DEFAULT_DUMPS = ["CC-MAIN-2023-40", "CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-22"]
THRESHOLD = 0.8  # true near duplicates: Jaccard of shingle sets >= THRESHOLD
BASE_MAX_JACCARD = 0.5  # base documents at least this similar to an earlier one are removed
NAMESPACE = uuid.UUID("6f1c1c38-5a0e-5c55-9b47-2f4a8e0a3d11")  # uuid5 namespace of every record id
_DUMP = re.compile(r"^CC-MAIN-(\d{4})-(\d{2})$")
_SENTENCE = {"en": re.compile(r"(?<=[.!?])\s+"), "zh": re.compile(r"(?<=[。！？])")}
_JOIN = {"en": " ", "zh": ""}


# ----------------------------------------------------------------------------------------------
# Base documents
# ----------------------------------------------------------------------------------------------


def _chunks(pieces: Iterable[str], lo: int, hi: int, sep: str) -> list[str]:
    """Consecutive pieces merged into documents of about lo..hi characters (a short tail is dropped)."""
    out, cur, size = [], [], 0
    for piece in pieces:
        if cur and size + len(piece) > hi and size >= lo // 2:
            out.append(sep.join(cur))
            cur, size = [], 0
        cur.append(piece)
        size += len(piece) + len(sep)
        if size >= lo:
            out.append(sep.join(cur))
            cur, size = [], 0
    if size >= lo // 2:
        out.append(sep.join(cur))
    return out


def split_sentences(line: str, lang: str) -> list[str]:
    return [s for s in _SENTENCE[lang].split(line) if s.strip()]


def _vocab(text: str, lang: str) -> list[str]:
    """Substitution material: the words (English) or ideographs (Chinese) of a text, in first-seen order."""
    return list(dict.fromkeys(re.findall(r"[A-Za-z]{3,}" if lang == "en" else r"[\u4e00-\u9fff]", text)))


def exact_similar_pairs(texts: list[str], lang: str, threshold: float) -> list[tuple[int, int, float]]:
    """All pairs (i < j) with Jaccard >= threshold of their shingle sets, exactly, via a sparse
    document x shingle matrix (shingles as 64-bit hashes: a collision among a few million is ~1e-7)."""
    from crawlmill.pipeline.dedup.shingles import shingle_hashes
    from scipy import sparse

    sets = [shingle_hashes(t, lang) for t in texts]
    if not texts:
        return []
    cols, inverse = np.unique(np.concatenate(sets), return_inverse=True)
    rows = np.repeat(np.arange(len(sets)), [len(s) for s in sets])
    m = sparse.csr_matrix((np.ones(len(rows), np.int32), (rows, inverse)), shape=(len(sets), len(cols)))
    inter = sparse.triu(m @ m.T, k=1).tocoo()
    sizes = np.array([len(s) for s in sets])
    jac = inter.data / (sizes[inter.row] + sizes[inter.col] - inter.data)
    keep = jac >= threshold
    return sorted(zip(inter.row[keep].tolist(), inter.col[keep].tolist(), jac[keep].tolist()))


@functools.lru_cache(maxsize=4)
def _source_documents(text_dir: str) -> dict[str, tuple[str, ...]]:
    root = Path(text_dir)
    en: list[str] = []
    for line in (root / "en/wikitext-2-valid.articles.jsonl").read_text(encoding="utf-8").splitlines():
        article = json.loads(line)
        en += _chunks((p for p in article["text"].split("\n") if p.strip()), 1500, 3000, "\n")
    plays = (root / "en/tinyshakespeare.txt").read_text(encoding="utf-8").split("\n\n")
    en += _chunks((p for p in plays if p.strip()), 1500, 3000, "\n\n")
    zh = [p for p in (root / "zh/cmrc2018_contexts.txt").read_text(encoding="utf-8").splitlines() if len(p.strip()) >= 200]
    news = (root / "zh/peoples_daily_199801_raw.txt").read_bytes().decode("utf-8", errors="replace")
    zh += _chunks((p for p in news.splitlines() if p.strip()), 400, 1500, "\n")
    docs = {}
    for lang, texts in (("en", en), ("zh", zh)):
        texts = list(dict.fromkeys(t for t in (normalize_text(t) for t in texts) if t))
        drop = {j for i, j, _ in exact_similar_pairs(texts, lang, BASE_MAX_JACCARD)}
        docs[lang] = tuple(t for k, t in enumerate(texts) if k not in drop)
    return docs


def source_documents(text_dir: Path = TEXT_DIR) -> dict[str, list[str]]:
    """Base documents per language ("en", "zh"), in a fixed order, pairwise Jaccard < 0.5.

    English: WikiText-2 articles cut at line boundaries into ~1,500-3,000-character documents, and
    Tiny Shakespeare in chunks of speeches of the same size. Chinese: CMRC 2018 paragraphs of 200+
    characters, and People's Daily paragraphs merged into ~400-1,500-character documents. Of two
    documents with Jaccard >= 0.5 the later one is removed, so the ground truth starts clean.
    """
    return {lang: list(texts) for lang, texts in _source_documents(str(Path(text_dir).resolve())).items()}


# ----------------------------------------------------------------------------------------------
# The multi-dump WET corpus
# ----------------------------------------------------------------------------------------------

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
class _Page:
    index: int
    dump: int
    lang: str
    family: str
    kind: str
    text: str
    url: str
    parent: int | None = None
    edit: str | None = None


@dataclass
class GroundTruth:
    """`docs`: one row per page, in generation order (record_id: WARC-Record-ID; id: the ingest
    stage's document id; url, dump, lang; family: base document; kind; cluster: row number of the
    cluster's first page; parent: record_id of the page it was copied or edited from; edit: what
    changed; jaccard_parent; n_shingles; warc_file). `pairs`: every pair with Jaccard >= 0.8
    (record_id_a/b, id_a/b, lang, family, jaccard)."""

    docs: pa.Table
    pairs: pa.Table

    def write(self, out_dir: Path) -> None:
        pq.write_table(self.docs, Path(out_dir) / "ground_truth.parquet", **PARQUET_OPTIONS)
        pq.write_table(self.pairs, Path(out_dir) / "pairs.parquet", **PARQUET_OPTIONS)

    @classmethod
    def read(cls, out_dir: Path) -> "GroundTruth":
        return cls(pq.read_table(Path(out_dir) / "ground_truth.parquet"), pq.read_table(Path(out_dir) / "pairs.parquet"))

    def stats(self) -> dict:
        return corpus_stats(self)


def dump_period(dump: str) -> tuple[datetime, datetime]:
    """The crawl period of a dump CC-MAIN-YYYY-WW: the 14 days that end with ISO week WW's Monday."""
    match = _DUMP.match(dump)
    if not match:
        raise ValueError(f"{dump!r} is not a Common Crawl dump id like CC-MAIN-2024-10")
    end = datetime.combine(date.fromisocalendar(int(match[1]), int(match[2]), 1), datetime.min.time(), timezone.utc)
    return end - timedelta(days=14), end


class _Generator:
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
        self.vocab = _vocab(" ".join(base[:200]), lang)
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
        return "\n".join(_JOIN[self.lang].join(toks) for toks in lines)

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
        return "\n".join(_JOIN[self.lang].join(s) for s in lines if s)

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
        text = self.edit_tokens("\n".join(_JOIN[self.lang].join(s) for s in lines), "substitute", 0.01)
        return text, f"rewrite:{share:.2f}"

    # -- pages -------------------------------------------------------------------------------
    def pages(self, dump: int, n: int, shares: KindShares, earlier: list[_Page], start: int) -> list[_Page]:
        """n pages of dump `dump`; `earlier` holds this language's pages of earlier dumps."""
        out: list[_Page] = []
        urls: set[str] = set()
        for kind in self.rng.choice(KINDS, size=n, p=shares.probabilities(first_dump=dump == 0)):
            kind = str(kind)
            if kind == "mirror" and not out:
                kind = "unique"
            page = _Page(start + len(out), dump, self.lang, "", kind, "", "")
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


def _record_id(*parts: object) -> str:
    return f"<urn:uuid:{uuid.uuid5(NAMESPACE, ':'.join(map(str, parts)))}>"


def _warc_record(
    rtype: WarcRecordType, record_id: str, when: datetime, headers: list[tuple[str, str]], block: bytes
) -> bytes:
    rec = WarcRecord()
    rec.init_headers(rtype, record_id[len("<urn:") : -1].encode("ascii"))  # fastwarc adds "<urn:" and ">"
    rec.headers["WARC-Date"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    rec.set_bytes_content(block)
    for key, value in headers:
        rec.headers[key] = value
    chunks: list[bytes] = []

    class _Sink:
        def write(self, data: bytes) -> int:
            chunks.append(bytes(data))
            return len(data)

        def flush(self) -> None:
            pass

    rec.write(_Sink())
    return gzip.compress(b"".join(chunks), compresslevel=6, mtime=0)  # one gzip member per record


def _digest(block: bytes) -> str:
    return "sha1:" + b32encode(hashlib.sha1(block).digest()).decode("ascii")


def _write_dump(out_dir: Path, dump: str, pages: list[_Page], files: int, seed: int) -> dict[int, tuple[str, str, str]]:
    """Write a dump's WET files; returns page index -> (record id, refers-to id, warc_file)."""
    start, end = dump_period(dump)
    span = (end - start) / files
    written: dict[int, tuple[str, str, str]] = {}
    rel_paths = []
    for f, chunk in enumerate(np.array_split(np.arange(len(pages)), files)):
        t0 = start + f * span
        segment = f"{int(t0.timestamp() * 1000)}.{(f * 37 + 11) % 100:02d}"
        name = f"CC-MAIN-{t0:%Y%m%d%H%M%S}-{t0 + span:%Y%m%d%H%M%S}-{f:05d}.warc.wet.gz"
        rel = f"crawl-data/{dump}/segments/{segment}/wet/{name}"
        info = "".join(f"{k}: {v}\r\n" for k, v in [
            ("Software-Info", "crawlmill bench/dedup_corpus.py"), ("isPartOf", dump),
            ("publisher", f"crawlmill (synthetic test corpus, seed {seed})"),
            ("description", "near-duplicate test corpus built from real text"), ("format", "WARC File Format 1.0"),
        ]).encode()
        members = [_warc_record(WarcRecordType.warcinfo, _record_id(seed, dump, name, "warcinfo"), t0,
                                [("WARC-Filename", name), ("Content-Type", "application/warc-fields")], info)]
        step = span / (len(chunk) + 1)
        for k, i in enumerate(chunk):
            page = pages[int(i)]
            rid, refers = _record_id(seed, dump, page.url, "conversion"), _record_id(seed, dump, page.url, "response")
            block = page.text.encode("utf-8")
            members.append(_warc_record(WarcRecordType.conversion, rid, t0 + (k + 1) * step, [
                ("WARC-Target-URI", page.url), ("WARC-Refers-To", refers), ("WARC-Block-Digest", _digest(block)),
                ("WARC-Identified-Content-Language", {"en": "eng", "zh": "zho"}[page.lang]), ("Content-Type", "text/plain"),
            ], block))
            written[page.index] = (rid, refers, rel)
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(members))
        rel_paths.append(rel)
    listing = gzip.compress("".join(p + "\n" for p in rel_paths).encode("ascii"), mtime=0)
    (out_dir / "crawl-data" / dump / "wet.paths.gz").write_bytes(listing)
    return written


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[max(a, b)] = min(a, b)


def components(n: int, pairs: Iterable[tuple[int, int]]) -> list[int]:
    """Connected components of 0..n-1: each node's label is the smallest node of its component."""
    uf = _UnionFind(n)
    for a, b in pairs:
        uf.union(a, b)
    return [uf.find(i) for i in range(n)]


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def build_corpus(
    out_dir: Path,
    text_dir: Path = TEXT_DIR,
    dumps: list[str] = DEFAULT_DUMPS,
    docs_per_dump: int = 500,
    seed: int = 0,
    langs: tuple[str, ...] = ("en", "zh"),
    *,
    shares: KindShares | None = None,
    files_per_dump: int = 3,
    overwrite: bool = False,
) -> GroundTruth:
    """Write the WET corpus and its ground truth under out_dir (see the module docstring).

    `docs_per_dump` pages per dump in all, split evenly between `langs`. Byte-identical output for
    the same arguments. An existing out_dir/crawl-data is an error unless `overwrite`.
    """
    out_dir = Path(out_dir)
    shares = shares or KindShares()
    if (out_dir / "crawl-data").exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir / 'crawl-data'} exists (use overwrite=True / --overwrite)")
        shutil.rmtree(out_dir / "crawl-data")
    base = source_documents(text_dir)
    pages: list[_Page] = []
    gens = {lang: _Generator(lang, base[lang], np.random.default_rng([seed, k]), dumps) for k, lang in enumerate(langs)}
    by_lang: dict[str, list[_Page]] = defaultdict(list)
    for d in range(len(dumps)):
        for k, lang in enumerate(langs):
            n = docs_per_dump // len(langs) + (k < docs_per_dump % len(langs))
            new = gens[lang].pages(d, n, shares, by_lang[lang], len(pages))
            pages += new
            by_lang[lang] += new  # visible to later dumps only (pages() gets earlier dumps' pages)

    # Exact ground truth: all pairs within each family.
    shingle_sets: dict[tuple[str, str], set] = {}
    sets = []
    for p in pages:
        key = (p.lang, p.text)
        if key not in shingle_sets:
            shingle_sets[key] = set(shingles(p.text, p.lang))
        sets.append(shingle_sets[key])
    families: dict[str, list[int]] = defaultdict(list)
    for p in pages:
        families[p.family].append(p.index)
    pairs = []
    for members in families.values():
        for x, a in enumerate(members):
            for b in members[x + 1 :]:
                j = 1.0 if sets[a] is sets[b] else jaccard(sets[a], sets[b])
                if j >= THRESHOLD:
                    pairs.append((a, b, j))
    pairs.sort()
    cluster = components(len(pages), ((a, b) for a, b, _ in pairs))

    rng = np.random.default_rng([seed, 99])
    ids: dict[int, tuple[str, str, str]] = {}
    for d, dump in enumerate(dumps):
        in_dump = [p for p in pages if p.dump == d]
        ids.update(_write_dump(out_dir, dump, [in_dump[i] for i in rng.permutation(len(in_dump))], files_per_dump, seed))
    docs = pa.table({
        "record_id": [ids[p.index][0] for p in pages],
        "id": [document_id(ids[p.index][1]) for p in pages],
        "url": [p.url for p in pages],
        "dump": [dumps[p.dump] for p in pages],
        "lang": [p.lang for p in pages],
        "family": [p.family for p in pages],
        "kind": [p.kind for p in pages],
        "cluster": pa.array(cluster, pa.int64()),
        "parent": [None if p.parent is None else ids[p.parent][0] for p in pages],
        "edit": [p.edit for p in pages],
        "jaccard_parent": [None if p.parent is None else jaccard(sets[p.index], sets[p.parent]) for p in pages],
        "n_shingles": pa.array([len(s) for s in sets], pa.int32()),
        "warc_file": [ids[p.index][2] for p in pages],
    })
    pair_table = pa.table({
        "record_id_a": [ids[a][0] for a, _, _ in pairs],
        "record_id_b": [ids[b][0] for _, b, _ in pairs],
        "id_a": [document_id(ids[a][1]) for a, _, _ in pairs],
        "id_b": [document_id(ids[b][1]) for _, b, _ in pairs],
        "lang": [pages[a].lang for a, _, _ in pairs],
        "family": [pages[a].family for a, _, _ in pairs],
        "jaccard": pa.array([j for _, _, j in pairs], pa.float64()),
    })
    truth = GroundTruth(docs, pair_table)
    truth.write(out_dir)
    return truth


def corpus_stats(truth: GroundTruth) -> dict:
    """Pages per kind and language, true clusters, and the share of pages a perfect dedup removes
    within each single dump and across the first k dumps (DeepSeek Table 1 style), per language."""
    docs = truth.docs.to_pylist()
    row = {r["record_id"]: i for i, r in enumerate(docs)}
    ends = zip(truth.pairs["record_id_a"].to_pylist(), truth.pairs["record_id_b"].to_pylist())
    pairs = [(row[a], row[b]) for a, b in ends]
    dumps = list(dict.fromkeys(r["dump"] for r in docs))

    def removed(selected: set[int]) -> float:
        if not selected:
            return 0.0
        index = {i: k for k, i in enumerate(sorted(selected))}
        labels = components(len(index), ((index[a], index[b]) for a, b in pairs if a in index and b in index))
        return 1 - len(set(labels)) / len(index)

    out: dict = {"docs": len(docs), "pairs": len(pairs), "by_lang": {}}
    for lang in [None] + sorted({r["lang"] for r in docs}):
        rows = {i for i, r in enumerate(docs) if lang in (None, r["lang"])}
        kinds: dict[str, int] = defaultdict(int)
        for i in rows:
            kinds[docs[i]["kind"]] += 1
        sizes: dict[int, int] = defaultdict(int)
        for i in rows:
            sizes[docs[i]["cluster"]] += 1
        out["by_lang"][lang or "all"] = {
            "docs": len(rows),
            "kinds": dict(sorted(kinds.items())),
            "clusters": len(sizes),
            "clusters_with_duplicates": sum(s > 1 for s in sizes.values()),
            "removed_within_dump": {d: round(removed({i for i in rows if docs[i]["dump"] == d}), 4) for d in dumps},
            "removed_first_k_dumps": {
                k: round(removed({i for i in rows if docs[i]["dump"] in dumps[:k]}), 4) for k in range(1, len(dumps) + 1)
            },
        }
    return out


# ----------------------------------------------------------------------------------------------
# The scale corpus: resampled and mutated sentences, straight to Parquet
# ----------------------------------------------------------------------------------------------

SCALE_KINDS = ("unique", "exact", "near", "reorder", "truncate", "concat", "rewrite")
SCALE_DUP_SHARES = {"exact": 0.4, "near": 0.3, "reorder": 0.1, "truncate": 0.1, "concat": 0.05, "rewrite": 0.05}
# The scale corpus's side table: family (and family2 of a concatenation) are synthetic family numbers,
# base the base document the family's text starts from (as in source_documents: "en-00042").
TRUTH_SCHEMA = pa.schema(
    [("id", pa.string()), ("family", pa.int64()), ("family2", pa.int64()), ("base", pa.string()), ("kind", pa.string())]
)
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)
_WINDOW = 40  # sentences considered per family text


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _hash(seed: int, stream: int, keys: np.ndarray, width: int = 1) -> np.ndarray:
    """Counter-based random uint64s: shape (len(keys), width), a pure function of (seed, stream, key, column)."""
    salt = _mix(np.array([seed * 1_000_003 + stream], dtype=np.uint64))
    keys = np.asarray(keys, dtype=np.uint64)[:, None] * np.uint64(width) + np.arange(width, dtype=np.uint64)[None, :]
    return _mix(keys * _GOLD + salt)


def _unit(h: np.ndarray) -> np.ndarray:
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass
class _Pool:
    """A language's sentences, base document by base document, and a substitution vocabulary."""

    lang: str
    sentences: list[str]
    nbytes: np.ndarray
    start: np.ndarray
    count: np.ndarray
    vocab: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=4)
def _pools(text_dir: str) -> dict[str, _Pool]:
    pools = {}
    for lang, docs in source_documents(Path(text_dir)).items():
        sentences, start, count = [], [], []
        for doc in docs:
            sents = [s for line in doc.split("\n") for s in split_sentences(line, lang)]
            start.append(len(sentences))
            count.append(len(sents))
            sentences += sents
        nbytes = np.array([len(s.encode("utf-8")) for s in sentences], dtype=np.int64)
        vocab = _vocab(" ".join(sentences[:20000]), lang)
        pools[lang] = _Pool(lang, sentences, nbytes, np.array(start), np.array(count), vocab)
    return pools


def _family_sentences(pool: _Pool, seed: int, families: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The sentence ids of each family's text (and its base document): a window of the base document
    with about half the sentences swapped for random sentences of the language, 1-2 KB in all."""
    h = _hash(seed, 1, families, _WINDOW + 3)
    base = (h[:, 0] % np.uint64(len(pool.start))).astype(np.int64)
    count = pool.count[base]
    offset = (h[:, 1] % np.maximum(count, 1).astype(np.uint64)).astype(np.int64)
    j = np.arange(_WINDOW)[None, :]
    own = pool.start[base][:, None] + (offset[:, None] + j) % np.maximum(count, 1)[:, None]
    other = (h[:, 3:] % np.uint64(len(pool.sentences))).astype(np.int64)
    ids = np.where((_unit(h[:, 3:]) < 0.5) & (count[:, None] > 0), own, other)
    target = 1000 + (h[:, 2] % np.uint64(1000)).astype(np.int64)
    size = np.cumsum(pool.nbytes[ids], axis=1)
    stop = np.minimum((size < target[:, None]).sum(axis=1) + 1, _WINDOW)
    return [row[:n] for row, n in zip(ids, stop)], base


def _join(pool: _Pool, ids: Iterable[int]) -> str:
    sents = [pool.sentences[i] for i in ids]
    sep = _JOIN[pool.lang]
    return "\n".join(sep.join(sents[k : k + 4]) for k in range(0, len(sents), 4))


def _substitute(pool: _Pool, text: str, h: np.ndarray, fraction: float) -> str:
    """Replace about `fraction` of the words (English) or characters (Chinese) with vocabulary ones."""
    tokens = text.split(" ") if pool.lang == "en" else text
    k = min(len(h), max(1, int(fraction * len(tokens))))
    pos = np.unique((h[:k] % np.uint64(len(tokens))).astype(np.int64)).tolist()
    words = [pool.vocab[int(v)] for v in (h[:k] >> np.uint64(32)) % np.uint64(len(pool.vocab))]
    if pool.lang == "en":
        for p, w in zip(pos, words):
            tokens[p] = w
        return " ".join(tokens)
    out, prev = [], 0
    for p, w in zip(pos, words):
        out += [text[prev:p], w]
        prev = p + 1
    return "".join(out) + text[prev:]


def _plan(seed: int, n_docs: int, dup_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Per document: is it a family's first (unique) page, and the family count before it. Kept as
    two small arrays (9 bytes a document); texts are never held beyond one part."""
    fresh = _unit(_hash(seed, 2, np.arange(n_docs))[:, 0]) >= dup_share
    fresh[:1] = True
    before = np.cumsum(fresh) - fresh
    return fresh, before


def _family_lang(seed: int, families: np.ndarray, zh_share: float) -> np.ndarray:
    return np.where(_unit(_hash(seed, 3, families)[:, 0]) < zh_share, "zh", "en")


@dataclass(frozen=True)
class _PartJob:
    out_dir: str
    text_dir: str
    seed: int
    dump: str
    part: int
    lo: int  # global index of the part's first document
    fresh: np.ndarray  # per document of the part: first page of a new family?
    before: np.ndarray  # per document: families created before it
    zh_share: float
    batch_rows: int


_H_SUBST = 8  # hash columns from here on: per-sentence (rewrite) and per-substitution (near) draws
_H_WIDTH = _H_SUBST + 64


def _scale_part(job: _PartJob) -> dict:
    """Generate and write one part; returns its counts. Memory: one part's texts at most."""
    pools = _pools(job.text_dir)
    n = len(job.fresh)
    h = _hash(job.seed, 4, np.arange(job.lo, job.lo + n), _H_WIDTH)
    dup_kinds = list(SCALE_DUP_SHARES)
    cum = np.cumsum([SCALE_DUP_SHARES[k] for k in dup_kinds]) / sum(SCALE_DUP_SHARES.values())
    pick = np.minimum(np.searchsorted(cum, _unit(h[:, 0]), side="right"), len(cum) - 1)
    kind = np.where(job.fresh, 0, 1 + pick)  # index into SCALE_KINDS
    fam = np.where(job.fresh, job.before, (_unit(h[:, 1]) * np.maximum(job.before, 1)).astype(np.int64))
    langs = _family_lang(job.seed, fam, job.zh_share)
    fam2 = np.full(n, -1, dtype=np.int64)  # concat: a second earlier family of the same language
    for i in np.flatnonzero(kind == SCALE_KINDS.index("concat")):
        limit = max(int(job.before[i]), 1)
        g = int(_unit(h[i, 2:3])[0] * limit)
        for _ in range(64):
            if g != fam[i] and _family_lang(job.seed, np.array([g]), job.zh_share)[0] == langs[i]:
                fam2[i] = g
                break
            g = (g + 1) % limit
        else:
            kind[i] = SCALE_KINDS.index("exact")
    sents: dict[str, dict[int, np.ndarray]] = {}
    bases: dict[str, dict[int, int]] = {}
    for lang in ("en", "zh"):
        wanted = np.unique(np.concatenate([fam[langs == lang], fam2[(langs == lang) & (fam2 >= 0)]]))
        ids, base = _family_sentences(pools[lang], job.seed, wanted)
        sents[lang], bases[lang] = dict(zip(wanted.tolist(), ids)), dict(zip(wanted.tolist(), base.tolist()))

    name = f"part-{job.part:05d}.parquet"
    folder, truth_folder = Path(job.out_dir) / job.dump, Path(job.out_dir) / "_truth" / job.dump
    warc_file = f"crawl-data/{job.dump}/segments/synthetic/wet/CC-MAIN-synthetic-{job.part:05d}.warc.wet.gz"
    counts: dict[str, int] = defaultdict(int)
    chars = 0
    with pq.ParquetWriter(folder / f".tmp-{name}", DOCUMENT_SCHEMA, **PARQUET_OPTIONS) as writer, \
            pq.ParquetWriter(truth_folder / f".tmp-{name}", TRUTH_SCHEMA, **PARQUET_OPTIONS) as truth_writer:
        for a in range(0, n, job.batch_rows):
            rows: dict[str, list] = defaultdict(list)
            for i in range(a, min(a + job.batch_rows, n)):
                lang, f, k, hi = str(langs[i]), int(fam[i]), SCALE_KINDS[kind[i]], h[i]
                pool, ids = pools[lang], sents[lang][f]
                if k == "reorder" and len(ids) > 2:  # drop one sentence, swap two neighbours
                    ids = np.delete(ids, int(hi[3] % np.uint64(len(ids))))
                    s = int(hi[4] % np.uint64(len(ids) - 1))
                    ids[[s, s + 1]] = ids[[s + 1, s]]
                elif k == "truncate":
                    ids = ids[: max(1, int(len(ids) * (0.5 + 0.4 * _unit(hi[3:4])[0])))]
                elif k == "concat":
                    ids = np.concatenate([ids, sents[lang][int(fam2[i])]])
                elif k == "rewrite":  # about half the sentences replaced by random ones
                    r = hi[_H_SUBST : _H_SUBST + len(ids)]
                    other = ((r >> np.uint64(20)) % np.uint64(len(pool.sentences))).astype(np.int64)
                    ids = np.where(_unit(r) < 0.5, ids, other)
                text = _join(pool, ids.tolist())
                if k == "near":  # 0.2%-4.2% of the tokens: Jaccard to the family text ~0.98..0.67
                    text = _substitute(pool, text, hi[_H_SUBST:], 0.002 + 0.04 * float(_unit(hi[5:6])[0]))
                record_id = f"<urn:uuid:{uuid.uuid5(NAMESPACE, f'{job.seed}:{job.dump}:{job.lo + i}')}>"
                site = f % 5000 if k in ("unique", "exact") else int(hi[6] % np.uint64(5000))
                rows["id"].append(document_id(record_id))
                rows["text"].append(text)
                rows["url"].append(f"https://www.site{site}.{'cn' if lang == 'zh' else 'com'}/{lang}/{f}/{job.lo + i}.html")
                rows["warc_record_id"].append(record_id)
                rows["lang"].append(lang)
                rows["family"].append(f)
                rows["family2"].append(int(fam2[i]) if fam2[i] >= 0 else None)
                rows["base"].append(f"{lang}-{bases[lang][f]:05d}")
                rows["kind"].append(k)
                counts[k] += 1
                chars += len(text)
            m = len(rows["id"])
            columns = {c: rows[c] for c in ("id", "text", "url", "warc_record_id", "lang")}
            columns.update(dump=[job.dump] * m, warc_file=[warc_file] * m)
            table = pa.table({c: columns.get(c, pa.nulls(m)) for c in DOCUMENT_SCHEMA.names})
            writer.write_table(table.cast(DOCUMENT_SCHEMA))
            truth_writer.write_table(pa.table({c: rows[c] for c in TRUTH_SCHEMA.names}, schema=TRUTH_SCHEMA))
    (truth_folder / f".tmp-{name}").replace(truth_folder / name)
    (folder / f".tmp-{name}").replace(folder / name)
    return {"path": str(folder / name), "docs": n, "chars": chars, "kinds": dict(counts)}


def build_scale_corpus(
    out_dir: Path,
    text_dir: Path = TEXT_DIR,
    n_docs: int = 1_000_000,
    dumps: list[str] = DEFAULT_DUMPS,
    seed: int = 0,
    files: int = 8,
    *,
    dup_share: float = 0.5,
    zh_share: float = 0.5,
    workers: int = 1,
    batch_rows: int = 5000,
    overwrite: bool = False,
    on_part: Callable[[dict], None] | None = None,
) -> dict:
    """Write n_docs documents in crawlmill's document schema, `files` parts per dump, and return counts.

    Documents are spread evenly over the dumps in order. A share `dup_share` of them repeats an
    earlier family (of any earlier dump or this one) as an exact copy, a near copy (word or character
    substitutions), a reorder (a sentence dropped, two swapped), a truncation, a concatenation with
    another family, or a rewrite (SCALE_DUP_SHARES); the rest start a new family (a 1-2 KB mosaic of a
    base document's sentences and random ones). Every text is a pure function of (seed, document
    index), so parts are generated independently (`workers` processes) and the output is
    byte-identical for the same arguments. `on_part` is called with each part's counts once written.
    """
    out_dir = Path(out_dir)
    targets = [out_dir / d for d in dumps] + [out_dir / "_truth"]
    if any(t.exists() for t in targets):
        if not overwrite:
            raise FileExistsError(f"{out_dir} holds a scale corpus already (use overwrite=True / --overwrite)")
        for t in targets:
            shutil.rmtree(t, ignore_errors=True)
    for d in dumps:
        (out_dir / d).mkdir(parents=True)
        (out_dir / "_truth" / d).mkdir(parents=True)
    _pools(str(Path(text_dir).resolve()))  # loaded once, before workers fork
    fresh, before = _plan(seed, n_docs, dup_share)
    jobs, edges = [], np.linspace(0, n_docs, len(dumps) * files + 1).astype(np.int64)
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        jobs.append(_PartJob(str(out_dir), str(Path(text_dir).resolve()), seed, dumps[k // files], k % files,
                             int(lo), fresh[lo:hi], before[lo:hi], zh_share, batch_rows))
    t0 = time.perf_counter()
    totals: dict = {"docs": 0, "chars": 0, "kinds": defaultdict(int), "parts": 0}
    if workers > 1:
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context)
        results = pool.map(_scale_part, jobs)
    else:
        pool, results = None, map(_scale_part, jobs)
    try:
        for result in results:
            totals["docs"] += result["docs"]
            totals["chars"] += result["chars"]
            totals["parts"] += 1
            for kind, count in result["kinds"].items():
                totals["kinds"][kind] += count
            if on_part:
                on_part(result)
    finally:
        if pool:
            pool.shutdown()
    for d in dumps:
        (out_dir / d / "_SUCCESS").write_text("")
    totals["kinds"] = dict(sorted(totals["kinds"].items()))
    totals["seconds"] = round(time.perf_counter() - t0, 2)
    return totals


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Run" + __doc__.split("\nRun")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    corpus = sub.add_parser("corpus", help="multi-dump WET corpus with exact ground truth")
    corpus.add_argument("--docs-per-dump", type=int, default=500, help="pages per dump, languages together (default 500)")
    corpus.add_argument("--langs", nargs="+", default=["en", "zh"], choices=["en", "zh"])
    corpus.add_argument("--files-per-dump", type=int, default=3)
    scale = sub.add_parser("scale", help="millions of documents as Parquet parts in crawlmill's document schema")
    scale.add_argument("--docs", type=int, default=1_000_000)
    scale.add_argument("--files", type=int, default=8, help="Parquet parts per dump (default 8)")
    scale.add_argument("--dup-share", type=float, default=0.5, help="share of documents that repeat an earlier family")
    scale.add_argument("--zh-share", type=float, default=0.5)
    scale.add_argument("--workers", type=int, default=1)
    for p in (corpus, scale):
        p.add_argument("--output", type=Path, required=True)
        p.add_argument("--dumps", nargs="+", default=DEFAULT_DUMPS, help=f"default: {' '.join(DEFAULT_DUMPS)}")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--text-dir", type=Path, default=TEXT_DIR, help=f"default: {TEXT_DIR}")
        p.add_argument("--overwrite", action="store_true", help="replace a corpus this script wrote there before")
    stats = sub.add_parser("stats", help="statistics of a built corpus's ground truth")
    stats.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.command == "corpus":
        truth = build_corpus(args.output, args.text_dir, args.dumps, args.docs_per_dump, args.seed, tuple(args.langs),
                             files_per_dump=args.files_per_dump, overwrite=args.overwrite)
        result = truth.stats()
    elif args.command == "scale":
        result = build_scale_corpus(args.output, args.text_dir, args.docs, args.dumps, args.seed, args.files,
                                    dup_share=args.dup_share, zh_share=args.zh_share, workers=args.workers,
                                    overwrite=args.overwrite)
    else:
        result = GroundTruth.read(args.output).stats()
    result["elapsed_s"] = round(time.perf_counter() - t0, 2)
    json.dump(result, sys.stdout, indent=1, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
