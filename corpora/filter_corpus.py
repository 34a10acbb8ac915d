"""The corpus of the filter benchmark (bench/filter_bench.py): real text from ../shared/data/text
— CMRC 2018 (Chinese Wikipedia) and People's Daily paragraphs of 200+ characters, WikiText-2
articles cut into ~2,000-character documents, Tiny Shakespeare in ~2,000-character chunks — and
the junk fixtures of tests/fixtures/filter_junk.jsonl, as 8 Parquet parts in the pipeline's
document schema. Byte-identical for the same arguments. A library module, no command line::

    from pathlib import Path
    from crawlmill.corpora.filter_corpus import build_corpus
    build_corpus(Path("/tmp/filter-corpus"), per_language=2000)  # {"zh": 2000, "en": 893, "junk": 46, "chars": ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from crawlmill.corpora.shared_text import (
    REPO,
    TEXT_DIR,
    cmrc_paragraphs,
    peoples_daily_lines,
    shakespeare_speeches,
    wikitext_articles,
)

JUNK = REPO / "tests/fixtures/filter_junk.jsonl"
PARTS = 8


def chunks(pieces: Iterable[str], size: int = 2000, sep: str = "\n") -> list[str]:
    """Consecutive pieces joined by `sep` into documents of `size`+ characters; a short tail is dropped."""
    out, current = [], ""
    for paragraph in pieces:
        current = f"{current}{sep}{paragraph}" if current else paragraph
        if len(current) >= size:
            out.append(current.strip())
            current = ""
    return out


def build_corpus(folder: Path, per_language: int, text_dir: Path = TEXT_DIR) -> dict[str, int]:
    """Up to `per_language` Chinese and English documents plus every junk fixture, as folder/part-*.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id

    zh = [line.strip() for line in cmrc_paragraphs(text_dir) + peoples_daily_lines(text_dir) if len(line.strip()) >= 200]
    en = [c for article in wikitext_articles(text_dir) for c in chunks(article.split("\n"))]
    en += chunks(shakespeare_speeches(text_dir), sep="\n\n")
    junk = [json.loads(line)["text"] for line in JUNK.read_text(encoding="utf-8").splitlines()]
    docs = zh[:per_language] + en[:per_language] + junk
    rows = [{"id": document_id(f"bench-{i}"), "text": t, "url": f"https://bench.example/{i}"} for i, t in enumerate(docs)]
    folder.mkdir(parents=True, exist_ok=True)
    for p in range(PARTS):
        pq.write_table(pa.Table.from_pylist(rows[p::PARTS], schema=DOCUMENT_SCHEMA), folder / f"part-{p:05d}.parquet")
    (folder / "_SUCCESS").write_text("")
    return {"zh": len(zh[:per_language]), "en": len(en[:per_language]), "junk": len(junk), "chars": sum(map(len, docs))}
