"""remix run alone on a folder with a row whose `text` is null and one whose `id` is null (a user's
own Parquet, or a quality output edited by hand): each is quarantined as `no_text` / `no_id` with
its part and row, in no group, as filter does, and the counts balance. Once the part failed on the
null text (TypeError: object of type 'NoneType' has no len()), exit 1."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from crawlmill.pipeline.parts import input_parts

from tests.pipeline.incomplete_part import write_incomplete_part
from tests.pipeline.remix.conftest import run_remix

URLS = ["https://www.example-garden.org/a", "https://docs.example-dev.io/b", "https://news.example.com/c"] * 2


def test_rows_without_text_or_id_are_quarantined_in_no_group(ray_local, tmp_path):
    folder = write_incomplete_part(tmp_path / "foreign", url=URLS)  # row 2's empty text: a document still
    out = tmp_path / "remix"
    result = run_remix([folder], out, mixture={"allow_shortfall": True})
    assert result.ok, result.failures
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["in"] == 6 and stats["kept"] == 4 and stats["quarantined"] == 2 and stats["dropped"] == {}, stats
    assert sum(n for key, n in stats["counters"].items() if key.startswith("group:")) == stats["kept"]
    part = str(folder / "part-00000.parquet")
    assert pq.read_table(out / "_quarantine").to_pylist() == [
        {"stage": "remix", "source": part, "offset": 1, "record_id": "doc-1", "error": "no_text", "detail": "row 1: its `text` is null"},
        {"stage": "remix", "source": part, "offset": 4, "record_id": None, "error": "no_id", "detail": "row 4: its `id` is null"},
    ]
    kept = sorted(i for p in input_parts(out) for i in pq.read_table(p, columns=["id"])["id"].to_pylist())
    assert kept == ["doc-0", "doc-2", "doc-3", "doc-5"]
    mixture = json.loads((out / "_mixture.json").read_text())
    assert sum(g["documents"] for g in mixture["groups"].values()) == 4, mixture
