"""A near-duplicate scale corpus: millions of documents in crawlmill's document schema, for timing dedup.

`build_scale_corpus` writes ``OUT/<DUMP>/part-NNNNN.parquet`` + ``_SUCCESS`` (what `crawlmill dedup`
reads) by resampling and mutating the sentences of the real text in ../shared/data/text (loaded by
crawlmill.corpora.dedup_text): new families are 1-2 KB mosaics of a base document's sentences and
random ones; repeats are exact copies, near copies, reorders, truncations, concatenations and
rewrites of earlier families. Per-document family and kind go to
``OUT/_truth/<DUMP>/part-NNNNN.parquet``.
Streaming (one part in memory at a time per worker) and deterministic from the seed: every text is
a pure function of (seed, document index), so the output is byte-identical for any worker count.
The small corpus with exact ground truth in WET files is crawlmill.corpora.dedup_corpus.

Run (virtualenv active)::

    python -m crawlmill.corpora.dedup_scale --output /tmp/dd-1m --docs 1000000 --workers 2
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import shutil
import sys
import time
import uuid
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.corpora.dedup_text import (
    DEFAULT_DUMPS,
    JOIN,
    NAMESPACE,
    TEXT_DIR,
    add_corpus_options,
    print_result,
    source_documents,
    split_sentences,
    vocabulary,
)
from crawlmill.pipeline.parts import PARQUET_OPTIONS, commit_folder
from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id

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
        vocab = vocabulary(" ".join(sentences[:20000]), lang)
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
    sep = JOIN[pool.lang]
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
        commit_folder(out_dir / d)  # markers and _SUCCESS, as a stage leaves them
    totals["kinds"] = dict(sorted(totals["kinds"].items()))
    totals["seconds"] = round(time.perf_counter() - t0, 2)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Run" + __doc__.split("\nRun")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8, help="Parquet parts per dump (default 8)")
    parser.add_argument("--dup-share", type=float, default=0.5, help="share of documents that repeat an earlier family")
    parser.add_argument("--zh-share", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=1)
    add_corpus_options(parser)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    result = build_scale_corpus(args.output, args.text_dir, args.docs, args.dumps, args.seed, args.files,
                                dup_share=args.dup_share, zh_share=args.zh_share, workers=args.workers,
                                overwrite=args.overwrite)
    return print_result(result, t0)


if __name__ == "__main__":
    sys.exit(main())
