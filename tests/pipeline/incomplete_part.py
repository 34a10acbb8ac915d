"""A committed input folder of one part with the rows a user's own Parquet (or an output edited by
hand) can hold: row 1 with a null `text`, row 2 with an empty one, row 4 with a null `id`; the
stage tests in tests/pipeline/*/test_incomplete_rows.py run a stage alone on it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from crawlmill.pipeline.parts import commit_folder

TEXTS = [f"Document {i}: the garden of the old house has many trees and a pond with fish in it, number {i}." for i in range(6)]


def write_incomplete_part(folder: Path, **columns: list) -> Path:
    """`folder` with part-00000.parquet of six rows (TEXTS but rows 1, 2 and 4 as above), English,
    one dump, and any further `columns`; committed as a stage's finished output."""
    folder.mkdir(parents=True)
    texts = [None if i == 1 else "" if i == 2 else t for i, t in enumerate(TEXTS)]
    ids = [None if i == 4 else f"doc-{i}" for i in range(len(TEXTS))]
    table = pa.table({"id": ids, "text": texts, **columns, "dump": ["CC-MAIN-2024-10"] * len(TEXTS), "lang": ["en"] * len(TEXTS)})
    pq.write_table(table, folder / "part-00000.parquet")
    commit_folder(folder)
    return folder
