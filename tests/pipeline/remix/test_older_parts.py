"""remix over a folder written before a document column existed (no `corpus_fields`, as every
output of crawlmill before 2026-12) and one with it: every output part has the column, so the
output folder reads as one dataset (pyarrow/pandas take the first part's columns for all: the
newer part's values were dropped unseen), and the newer part's values are all there."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from crawlmill.pipeline.parts import commit_folder, input_parts
from crawlmill.pipeline.schema import DOCUMENT_SCHEMA

from tests.pipeline.remix.conftest import run_remix

TEXT = "The garden of the old house has many trees and a pond with fish in it, number {}."


def folder(path, ids, fields=None):
    path.mkdir(parents=True)
    columns = {"id": ids, "text": [TEXT.format(i) for i in ids], "url": [f"https://www.example-garden.org/{i}" for i in ids]}
    if fields is not None:
        columns["corpus_fields"] = fields
    pq.write_table(pa.table(columns), path / "part-00000.parquet")
    commit_folder(path)
    return path


def test_parts_without_a_newer_column_get_it_and_the_others_keep_their_values(ray_local, tmp_path):
    old = folder(tmp_path / "old", ["a", "b", "c"])
    new = folder(tmp_path / "new", ["d", "e"], ['{"title":"D"}', '{"title":"E"}'])
    out = tmp_path / "remix"
    assert run_remix([old, new], out, mixture={"allow_shortfall": True}).ok
    parts = input_parts(out)
    assert parts and all("corpus_fields" in pq.read_schema(p).names for p in parts)
    assert len({tuple(pq.read_schema(p).names) for p in parts}) == 1  # the same columns in the same order
    whole = pq.read_table(out, columns=["id", "corpus_fields"]).to_pylist()  # the folder as one dataset
    assert {r["id"]: r["corpus_fields"] for r in whole} == {"a": None, "b": None, "c": None, "d": '{"title":"D"}', "e": '{"title":"E"}'}
    assert set(DOCUMENT_SCHEMA.names) <= set(pq.read_schema(parts[0]).names)
    assert json.loads((out / "_stats.json").read_text())["kept"] == 5
