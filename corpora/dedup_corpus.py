"""A multi-dump near-duplicate test corpus with exact ground truth, built from the real text in ../shared/data/text.

`build_corpus` writes a multi-dump corpus in Common Crawl's WET layout,
``OUT/crawl-data/<DUMP>/segments/<seg>/wet/CC-MAIN-<ts>-<ts>-<nnnnn>.warc.wet.gz`` (+ ``wet.paths.gz``),
English and Chinese pages: unique pages, pages republished unchanged in a later dump (same URL or a
new one), small edits, rewrites, and mirrors on another host within a dump. Every page descends from
one base document (its *family*). The ground truth is exact: two pages are true near duplicates iff
the Jaccard similarity of their shingle sets (`crawlmill.pipeline.dedup.shingles`) is >= 0.8, and the
true clusters are the connected components of those pairs. Only pages of one family can be that
similar (base documents are pairwise < 0.5 and new text comes from unused base documents), so pairs
are computed within families; the tests check the claim. Written: ``OUT/ground_truth.parquet``
(record_id, id, url, dump, lang, family, kind, cluster, ...) and ``OUT/pairs.parquet``.

Base documents come from crawlmill.corpora.dedup_text, pages from crawlmill.corpora.dedup_pages;
this module writes the WET files and the ground truth. Millions of documents straight in crawlmill's
document schema: crawlmill.corpora.dedup_scale.

Run (virtualenv active)::

    python -m crawlmill.corpora.dedup_corpus corpus --output /tmp/dd --dumps CC-MAIN-2023-50 CC-MAIN-2024-10 --docs-per-dump 500
    python -m crawlmill.corpora.dedup_corpus stats /tmp/dd
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import sys
import time
import uuid
from base64 import b32encode
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fastwarc.warc import WarcRecord, WarcRecordType

# Some re-exported (see __all__): the source text helpers and the page kinds.
from crawlmill.corpora.dedup_pages import CROSS_DUMP_KINDS, KINDS, KindShares, Page, PageGenerator, dump_period
from crawlmill.corpora.dedup_text import (
    BASE_MAX_JACCARD,
    DEFAULT_DUMPS,
    NAMESPACE,
    TEXT_DIR,
    add_corpus_options,
    exact_similar_pairs,
    print_result,
    source_documents,
    split_sentences,
)
from crawlmill.pipeline.dedup.shingles import shingles
from crawlmill.pipeline.parts import PARQUET_OPTIONS
from crawlmill.pipeline.schema import document_id

THRESHOLD = 0.8  # true near duplicates: Jaccard of shingle sets >= THRESHOLD
__all__ = [
    "BASE_MAX_JACCARD", "CROSS_DUMP_KINDS", "DEFAULT_DUMPS", "KINDS", "THRESHOLD", "GroundTruth", "KindShares",
    "build_corpus", "components", "corpus_stats", "dump_period", "exact_similar_pairs", "jaccard", "main",
    "source_documents", "split_sentences",
]


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


def _write_dump(out_dir: Path, dump: str, pages: list[Page], files: int, seed: int) -> dict[int, tuple[str, str, str]]:
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
        # The generator's old path stays in the warcinfo record: the corpus bytes do not change with the move.
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
    pages: list[Page] = []
    gens = {lang: PageGenerator(lang, base[lang], np.random.default_rng([seed, k]), dumps) for k, lang in enumerate(langs)}
    by_lang: dict[str, list[Page]] = defaultdict(list)
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
    add_corpus_options(corpus)
    stats = sub.add_parser("stats", help="statistics of a built corpus's ground truth")
    stats.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    if args.command == "corpus":
        truth = build_corpus(args.output, args.text_dir, args.dumps, args.docs_per_dump, args.seed, tuple(args.langs),
                             files_per_dump=args.files_per_dump, overwrite=args.overwrite)
        result = truth.stats()
    else:
        result = GroundTruth.read(args.output).stats()
    return print_result(result, t0)


if __name__ == "__main__":
    sys.exit(main())
