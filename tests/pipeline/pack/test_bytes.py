"""Pack records each document's UTF-8 byte count, and the per-token table of crawlmill.shards.tokenbytes
sums to it exactly over the document's tokens: exact bits per byte. Byte totals in the manifest and
domains.parquet add up; `crawlmill shards inspect` shows bytes, and still reads shards packed before
pack counted them (docs.parquet without the column, a manifest without byte keys)."""

import hashlib
import json
import shutil

import pyarrow.parquet as pq

from crawlmill.corpora.edge_documents import EOS
from crawlmill.shards.tokenbytes import token_byte_lengths
from tests.pipeline.pack.conftest import document_byte_sums, manifest_of
from tests.pipeline.pack.test_cli import invoke


def test_every_document_has_its_utf8_byte_count(packed):
    output, manifest = packed
    checked = 0
    for shard in manifest["shards"]:
        docs = pq.read_table(output / f"{shard['prefix']}.docs.parquet")
        assert docs.schema.field("bytes").type == "int64" and docs.schema.names.index("bytes") == docs.schema.names.index("tokens") + 1
        for row in docs.to_pylist():
            text = pq.read_table(manifest["inputs"][row["input"]], columns=["text"]).column("text")[row["row"]].as_py()
            assert row["bytes"] == len(text.encode("utf-8")) > 0
            checked += 1
        assert shard["bytes"] == sum(docs.column("bytes").to_pylist())
    assert checked == manifest["documents"]


def test_token_bytes_sum_to_each_documents_bytes(packed, tokenizer_dir):
    """Every document of every shard, with the released DeepSeek tokenizer. The one document that
    spells the EOD token in its text gets the EOD id there (as preprocess_data.py does), which is
    indistinguishable from an appended EOD, so the table (EOD = 0 bytes) counts its bytes short by
    exactly the token's spelling; every other document is exact."""
    output, manifest = packed
    table = token_byte_lengths(tokenizer_dir / "tokenizer.json")
    assert table[manifest["tokenizer"]["eod_id"]] == 0
    sums = document_byte_sums(output, table)
    assert len(sums) == manifest["documents"] > 50
    exact = [d for d in sums if d["counted"] == d["recorded"]]
    spelled = [d for d in sums if d["eod_inside"]]
    assert len(exact) == len(sums) - 1 and len(spelled) == 1
    [doc] = spelled
    assert doc["recorded"] - doc["counted"] == doc["eod_inside"] * len(EOS.encode("utf-8"))


def test_manifest_and_domains_byte_totals_add_up(packed):
    output, manifest = packed
    total = sum(s["bytes"] for s in manifest["shards"])
    assert manifest["bytes"] == total > manifest["tokens"]
    assert manifest["format"] == "crawlmill-pack/1"  # keys were added, none changed meaning
    for key in ("by_dump", "by_lang", "by_domain"):
        assert sum(v["bytes"] for v in manifest[key].values()) == total, key
    for shard in manifest["shards"]:
        for key in ("by_dump", "by_lang"):
            assert sum(v["bytes"] for v in shard[key].values()) == shard["bytes"]
    domains = pq.read_table(output / "domains.parquet")
    assert domains.schema.names == ["domain", "documents", "tokens", "bytes"]
    assert sum(domains.column("bytes").to_pylist()) == total
    by_name = {row["domain"]: row for row in domains.to_pylist()}
    for name, counts in manifest["by_domain"].items():
        if name in by_name:
            assert counts == {k: by_name[name][k] for k in ("documents", "tokens", "bytes")}


def test_inspect_shows_text_bytes_and_bytes_per_token(packed):
    output, manifest = packed
    report = json.loads(invoke("shards", "inspect", output, "--json").stdout)
    assert report["text_bytes"] == manifest["bytes"]
    assert report["bytes_per_token"] == round(manifest["bytes"] / (manifest["tokens"] - manifest["documents"]), 4)
    for row, shard in zip(report["shards"], manifest["shards"]):
        assert row["text_bytes"] == shard["bytes"] and row["bytes_per_token"] > 1
    shown = invoke("shards", "inspect", output)
    assert shown.exit_code == 0 and "bytes/token" in shown.stdout and f"{manifest['bytes']:,}" in shown.stdout


def _as_packed_before_bytes(output, folder):
    """`output` as pack wrote it before it counted bytes: no `bytes` column, no byte keys."""
    shutil.copytree(output, folder)
    manifest = manifest_of(folder)
    for shard in manifest["shards"]:
        docs = folder / f"{shard['prefix']}.docs.parquet"
        pq.write_table(pq.read_table(docs).drop_columns(["bytes"]), docs, compression="zstd")
        shard["files"]["docs.parquet"].update(bytes=docs.stat().st_size, sha256=hashlib.sha256(docs.read_bytes()).hexdigest())
        for counts in [shard, *shard["by_dump"].values(), *shard["by_lang"].values()]:
            del counts["bytes"]
    del manifest["bytes"]
    for key in ("by_dump", "by_lang", "by_domain"):
        for counts in manifest[key].values():
            del counts["bytes"]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
    return manifest


def test_shards_packed_before_bytes_still_read(packed, tmp_path):
    output, _ = packed
    old = tmp_path / "old"
    manifest = _as_packed_before_bytes(output, old)
    assert "bytes" not in pq.read_schema(old / f"{manifest['shards'][0]['prefix']}.docs.parquet").names
    result = invoke("shards", "inspect", old, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert "text_bytes" not in report and all(r["text_bytes"] is None and r["bytes_per_token"] is None for r in report["shards"])
    assert report["tokens"] == manifest["tokens"] and report["by_lang"] == manifest["by_lang"]
    shown = invoke("shards", "inspect", old)
    assert shown.exit_code == 0 and "bytes/token" not in shown.stdout and "text bytes" not in shown.stdout
    assert invoke("shards", "verify", old).exit_code == 0
    assert invoke("shards", "sample", old, "--n", 2, "--decode").exit_code == 0
    assert invoke("shards", "stats", old, "--json").exit_code == 0
