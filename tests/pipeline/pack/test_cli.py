"""`crawlmill pack` and `crawlmill shards inspect|verify|sample|stats` as users run them (CliRunner,
in-process Ray from the session fixture): output, exit status 2 with the file and problem named."""

import json
import shutil

import pyarrow.parquet as pq
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.corpora.edge_documents import EOS
from tests.pipeline.pack.conftest import SHARD_TOKENS, folder_bytes


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_pack_command_matches_the_library_run(packed, pack_inputs, tokenizer_dir, tmp_path):
    output, _ = packed
    result = invoke("pack", *pack_inputs, "--tokenizer", tokenizer_dir, "--output", tmp_path / "cli", "--shard-tokens", SHARD_TOKENS, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "pack done" in result.output and "dropped: empty_tokens 1" in result.output
    assert "fast encode: on" in result.output  # the released DeepSeek tokenizer qualifies
    assert folder_bytes(tmp_path / "cli") == folder_bytes(output)
    again = invoke("pack", *pack_inputs, "--tokenizer", tokenizer_dir, "--output", tmp_path / "cli", "--shard-tokens", SHARD_TOKENS, "--no-progress")
    assert again.exit_code == 0 and "already finished and were skipped" in again.output


def test_pack_bad_input_exits_2(pack_inputs, tokenizer_dir, tmp_path):
    result = invoke("pack", pack_inputs[0], "--tokenizer", tmp_path, "--output", tmp_path / "o")
    assert result.exit_code == 2 and "no tokenizer.json" in result.output
    result = invoke("pack", tmp_path / "nothing", "--tokenizer", tokenizer_dir, "--output", tmp_path / "o")
    assert result.exit_code == 2 and "no such stage output folder" in result.output
    (tmp_path / "part-00000.parquet").write_bytes(b"PAR1")  # a part given for its folder
    result = invoke("pack", tmp_path / "part-00000.parquet", "--tokenizer", tokenizer_dir, "--output", tmp_path / "o")
    assert result.exit_code == 2 and "part-00000.parquet is a file, not a stage output folder: give the folder that holds it" in " ".join(result.output.split())
    result = invoke("pack", pack_inputs[0], "--tokenizer", tokenizer_dir, "--output", tmp_path / "o", "--shard-tokens", 5, "--shard-size-mb", 1)
    assert result.exit_code == 2 and "not both" in result.output


def test_inspect(packed):
    output, manifest = packed
    result = invoke("shards", "inspect", output, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["documents"], report["tokens"], report["dtype"]) == (manifest["documents"], manifest["tokens"], "int32")
    assert [s["shard"] for s in report["shards"]] == manifest["blend"]["prefixes"]
    assert report["by_lang"] == manifest["by_lang"] and report["by_dump"] == manifest["by_dump"]
    assert all(s["bin_bytes"] == 4 * s["tokens"] for s in report["shards"])
    table = invoke("shards", "inspect", output)
    assert table.exit_code == 0 and "total" in table.stdout and "CC-MAIN-2025-33" in table.stdout


def test_verify_passes_and_names_the_damaged_file(packed, tmp_path):
    output, manifest = packed
    result = invoke("shards", "verify", output)
    assert result.exit_code == 0 and "checksums verified" in result.stdout
    prefix = manifest["shards"][1]["prefix"]

    flipped = tmp_path / "flipped"
    shutil.copytree(output, flipped)
    data = bytearray((flipped / f"{prefix}.bin").read_bytes())
    data[10] ^= 1
    (flipped / f"{prefix}.bin").write_bytes(bytes(data))
    result = invoke("shards", "verify", flipped)
    assert result.exit_code == 2 and f"{prefix}.bin: sha256 differs" in result.output

    truncated = tmp_path / "truncated"
    shutil.copytree(output, truncated)
    idx = truncated / f"{prefix}.idx"
    idx.write_bytes(idx.read_bytes()[:-8])
    result = invoke("shards", "verify", truncated)
    assert result.exit_code == 2 and f"{prefix}.idx: counts do not match the file size" in result.output
    result = invoke("shards", "inspect", truncated)
    assert result.exit_code == 2 and f"{prefix}.idx" in result.output

    bare = tmp_path / "bare"  # no manifest: structure and --vocab-size only
    bare.mkdir()
    for kind in ("bin", "idx"):
        shutil.copy(output / f"{prefix}.{kind}", bare / f"{prefix}.{kind}")
    assert invoke("shards", "verify", bare, "--vocab-size", 100002).exit_code == 0
    result = invoke("shards", "verify", bare / f"{prefix}.idx", "--vocab-size", 1000)
    assert result.exit_code == 2 and f"{prefix}.bin: token" in result.output and "not below the vocabulary size 1,000" in result.output


def test_sample_decodes_documents_with_their_source(packed):
    output, _ = packed
    result = invoke("shards", "sample", output, "--n", 4, "--seed", 3, "--decode", "--json")
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)
    assert len(items) == 4 and items == json.loads(invoke("shards", "sample", output, "--n", 4, "--seed", 3, "--decode", "--json").stdout)
    for item in items:
        source = item["source"]
        row = pq.read_table(source["input_path"]).slice(source["row"], 1).to_pylist()[0]
        assert item["text"] == row["text"] + EOS and source["id"] == row["id"] and source["warc_record_id"] == row["warc_record_id"]
    shown = invoke("shards", "sample", output, "--n", 1, "--decode")
    assert shown.exit_code == 0 and "WARC" in shown.stdout and EOS in shown.stdout


def test_sample_with_few_files_open_reads_the_same(packed, monkeypatch):
    """At most OPEN_FILES Parquet files stay open (one per docs.parquet and input part otherwise:
    "Too many open files" on a large folder); closing the least recently used changes nothing."""
    from crawlmill.shards import shardstats

    output, _ = packed
    wide = invoke("shards", "sample", output, "--n", 12, "--seed", 5, "--json")
    monkeypatch.setattr(shardstats, "OPEN_FILES", 1)
    narrow = invoke("shards", "sample", output, "--n", 12, "--seed", 5, "--json")
    assert wide.exit_code == narrow.exit_code == 0 and json.loads(narrow.stdout) == json.loads(wide.stdout)
    assert all("input_path" in item["source"] for item in json.loads(narrow.stdout))


def test_stats_with_plot(packed, tmp_path):
    output, manifest = packed
    result = invoke("shards", "stats", output, "--plot", tmp_path / "stats.png", "--json", "--top", 500)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["documents"] == manifest["documents"] and report["tokens"] == manifest["tokens"]
    assert report["vocabulary"] == 100096 and report["document_tokens"]["max"] > SHARD_TOKENS
    eod = [t for t in report["top_tokens"] if t["id"] == 100001]
    # One EOD per document, plus the edge document that spells the EOD token in its text (encoded
    # as the special token, as preprocess_data.py does).
    assert eod and eod[0]["count"] == manifest["documents"] + 1 and eod[0]["token"] == EOS
    assert (tmp_path / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
