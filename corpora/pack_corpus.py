"""The corpus of the pack benchmark (bench/pack_bench.py): real paragraphs from ../shared/data/text
(WikiText-2 lines and Tiny Shakespeare speeches of 80+ characters; CMRC 2018 and People's Daily
paragraphs of 40+), resampled with a fixed seed into documents of 1-12 paragraphs of one language.

`build_corpus` writes them as Parquet parts in the pipeline's document schema, plus corpus.jsonl
with the same texts in pack order (Megatron's preprocess_data.py input); `unique_documents` is the
control corpus without repeats (every paragraph exactly once). Byte-identical for the same
arguments. A library module, no command line::

    from pathlib import Path
    from crawlmill.corpora.pack_corpus import build_corpus
    build_corpus(Path("/tmp/pack-corpus"), docs=1000, parts=4, seed=0)  # parquet/ + corpus.jsonl
"""

from __future__ import annotations

import json
from pathlib import Path

from crawlmill.corpora.shared_text import TEXT_DIR, paragraphs

MIN_CHARS = {"en": 80, "zh": 40}


def pools(text_dir: Path = TEXT_DIR) -> dict[str, list[str]]:
    """The paragraphs documents are drawn from, per language."""
    return paragraphs(text_dir, wikitext="lines", min_chars=MIN_CHARS)


def build_corpus(folder: Path, docs: int, parts: int, seed: int, text_dir: Path = TEXT_DIR) -> dict:
    """Parquet parts (the pipeline's document schema) + corpus.jsonl with the same texts in pack order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crawlmill.pipeline.parts import commit_folder
    from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id

    by_lang = pools(text_dir)
    rng = np.random.default_rng(seed)
    parquet = folder / "parquet"
    parquet.mkdir(parents=True)
    per_part = -(-docs // parts)
    chars = 0
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as jsonl:
        for p in range(parts):
            rows = []
            for i in range(p * per_part, min(docs, (p + 1) * per_part)):
                lang = "zh" if rng.random() < 0.5 else "en"
                pool = by_lang[lang]
                picks = rng.integers(0, len(pool), size=int(rng.integers(1, 13)))
                text = "\n\n".join(pool[j] for j in picks)
                chars += len(text)
                rows.append({
                    "id": document_id(f"bench-{i}"), "text": text, "url": f"https://site{i % 997}.example.org/{i}",
                    "dump": f"CC-MAIN-2024-{10 + i % 3:02d}", "lang": lang,
                })  # fmt: skip
                jsonl.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), parquet / f"part-{p:05d}.parquet")
    commit_folder(parquet)  # markers and _SUCCESS, as a stage leaves them
    return {"documents": docs, "parts": parts, "characters": chars, "jsonl_bytes": (folder / "corpus.jsonl").stat().st_size}


def unique_documents(seed: int, text_dir: Path = TEXT_DIR) -> dict[str, list[str]]:
    """Control corpus without repeats: every source paragraph exactly once, 1-12 per document."""
    import numpy as np

    rng = np.random.default_rng(seed)
    docs: dict[str, list[str]] = {}
    for lang, pool in pools(text_dir).items():
        order = [pool[i] for i in rng.permutation(len(pool))]
        docs[lang] = []
        while order:
            k = int(rng.integers(1, 13))
            docs[lang].append("\n\n".join(order[:k]))
            order = order[k:]
    return docs
