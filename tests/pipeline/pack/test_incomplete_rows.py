"""pack run alone on a folder with a row whose `text` is null and one whose `id` is null (a user's
own Parquet, or a remix output edited by hand): each is quarantined as `no_text` / `no_id` with
its part and row, as filter does; the counts balance, in `_stats.json` and the manifest, and the
shards hold exactly the packed documents. Once the part failed on the null text (TypeError:
expected string or bytes-like object, got 'NoneType'), and a null id alone failed the docs.parquet
write (Column 'id' is declared non-nullable but contains nulls), exit 1."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from crawlmill.pipeline.pack.audit import audit_shards

from tests.pipeline.incomplete_part import write_incomplete_part
from tests.pipeline.pack.conftest import manifest_of, run_pack


def test_rows_without_text_or_id_are_quarantined_and_the_shards_hold_the_rest(ray_local, tokenizer_dir, tmp_path):
    folder = write_incomplete_part(tmp_path / "foreign")  # row 2's empty text: dropped as empty_tokens
    out = tmp_path / "shards"
    result = run_pack([folder], out, tokenizer_dir)
    assert result.ok, result.failures
    stats = json.loads((out / "_stats.json").read_text())
    assert (stats["in"], stats["kept"], stats["dropped"], stats["quarantined"]) == (6, 3, {"empty_tokens": 1}, 2), stats
    manifest = manifest_of(out)
    assert manifest["counts"] == {"in": 6, "packed": 3, "dropped": {"empty_tokens": 1}, "quarantined": 2} and manifest["documents"] == 3
    part = str(folder / "part-00000.parquet")
    assert pq.read_table(out / "_quarantine").to_pylist() == [
        {"stage": "pack", "source": part, "offset": 1, "record_id": "doc-1", "error": "no_text", "detail": "row 1: its `text` is null"},
        {"stage": "pack", "source": part, "offset": 4, "record_id": None, "error": "no_id", "detail": "row 4: its `id` is null"},
    ]
    docs = pq.read_table(out / f"{manifest['shards'][0]['prefix']}.docs.parquet", columns=["row", "id"]).to_pylist()
    assert docs == [{"row": 0, "id": "doc-0"}, {"row": 3, "id": "doc-3"}, {"row": 5, "id": "doc-5"}]  # the input rows, as before
    _, checks = audit_shards(out)
    assert all(ok for _, ok, _ in checks), checks
