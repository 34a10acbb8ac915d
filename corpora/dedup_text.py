"""Real source text for the near-duplicate corpora (dedup_corpus and dedup_scale in this package).

Turns the English and Chinese text in ../shared/data/text (read by crawlmill.corpora.shared_text)
into base documents (pairwise Jaccard of their shingle sets < 0.5), splits sentences, collects
substitution vocabularies, and finds exactly similar pairs; also what both builders share: default
dumps, record-id namespace, and their common command-line options. A library module, no command
line::

    from crawlmill.corpora.dedup_text import source_documents
    docs = source_documents()  # {"en": [...], "zh": [...]}
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np

from crawlmill.corpora.shared_text import (
    TEXT_DIR,
    cmrc_paragraphs,
    peoples_daily_lines,
    shakespeare_speeches,
    wikitext_articles,
)
from crawlmill.pipeline.ingest.html_text import normalize_text

DEFAULT_DUMPS = ["CC-MAIN-2023-40", "CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-22"]
BASE_MAX_JACCARD = 0.5  # base documents at least this similar to an earlier one are removed
NAMESPACE = uuid.UUID("6f1c1c38-5a0e-5c55-9b47-2f4a8e0a3d11")  # uuid5 namespace of every record id
_SENTENCE = {"en": re.compile(r"(?<=[.!?])\s+"), "zh": re.compile(r"(?<=[。！？])")}
JOIN = {"en": " ", "zh": ""}  # what joins words (English) or characters (Chinese) back into a line


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
    """The sentences of one line of text (after . ! ? in English, 。！？ in Chinese), blank ones dropped."""
    return [s for s in _SENTENCE[lang].split(line) if s.strip()]


def vocabulary(text: str, lang: str) -> list[str]:
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
    for article in wikitext_articles(root):
        en += _chunks((p for p in article.split("\n") if p.strip()), 1500, 3000, "\n")
    en += _chunks((p for p in shakespeare_speeches(root) if p.strip()), 1500, 3000, "\n\n")
    zh = [p for p in cmrc_paragraphs(root) if len(p.strip()) >= 200]
    zh += _chunks((p for p in peoples_daily_lines(root) if p.strip()), 400, 1500, "\n")
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


def add_corpus_options(parser: argparse.ArgumentParser) -> None:
    """The options both builders' commands take: where to write, which dumps, seed, source text."""
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--dumps", nargs="+", default=DEFAULT_DUMPS, help=f"default: {' '.join(DEFAULT_DUMPS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--text-dir", type=Path, default=TEXT_DIR, help=f"default: {TEXT_DIR}")
    parser.add_argument("--overwrite", action="store_true", help="replace a corpus this script wrote there before")


def print_result(result: dict, started: float) -> int:
    """A command's result as JSON on stdout, with the seconds since `started` (time.perf_counter)."""
    result["elapsed_s"] = round(time.perf_counter() - started, 2)
    json.dump(result, sys.stdout, indent=1, ensure_ascii=False)
    print()
    return 0
