"""`crawlmill run` accounts for every record (pipeline/accounting.py): on the sample corpus plus a
bad-input set (corrupt gzip, truncated records, bad UTF-8, empty and huge documents, non-HTML,
mislabelled charsets; crawlmill.corpora.bad_input) every stage balances, every stage's `in` is its
input stage's `kept`, the shards hold the tokens of the packed documents, and `_run.json` says so.
A folder whose counts are changed afterwards fails the run's checks, with the stage named."""

import json

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.corpora.bad_input import write_bad_input
from tests.conftest import REPO
from tests.pipeline.demo_stages import demo_config

QUARANTINED = {"bad_encoding", "record_too_large", "corrupt_gzip", "truncated_gzip", "invalid_record", "truncated_record", "empty_file", "invalid_warc"}


def run(tmp_path, config):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "--no-progress"])


def test_every_record_of_samples_and_bad_input_is_accounted_for(ray_local, tmp_path):
    bad = write_bad_input(tmp_path / "bad")
    config = demo_config(tmp_path / "out", bad.values())
    config["ingest"]["max_record_mb"] = 1  # the bad set's huge page is 1.2 MB
    result = run(tmp_path, config)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    summary = json.loads((out / "_run.json").read_text())
    assert summary["ok"] and all(check["ok"] is True for check in summary["checks"]), summary["checks"]
    checked = {(c["check"], c["stage"]) for c in summary["checks"]}
    stages = ["ingest", "filter", "dedup", "quality", "remix", "tokenizer", "pack"]
    assert {("balance", s) for s in stages} | {("chain", s) for s in ("filter", "dedup", "quality", "remix", "pack")} | {("tokens", "pack"), ("documents", "pack")} == checked
    entries = {e["stage"]: e for e in summary["stages"]}
    assert [e["stage"] for e in summary["stages"]] == stages and all(e["status"] == "ran" for e in summary["stages"])
    for name in stages:  # the summary is each stage's own counts
        stats = json.loads((out / ("shards" if name == "pack" else name) / "_stats.json").read_text())
        assert (entries[name]["records_in"], entries[name]["kept"], entries[name]["quarantined"]) == (stats["in"], stats["kept"], stats["quarantined"])
    # Every piece of damage is a quarantine entry naming its file, every awkward record a named drop.
    quarantine = pq.read_table(out / "ingest/_quarantine").to_pylist()
    assert {row["error"] for row in quarantine} == QUARANTINED and len(quarantine) == entries["ingest"]["quarantined"] == 8
    assert all(row["source"].startswith(str(tmp_path / "bad")) for row in quarantine)
    assert {"not_html", "empty_text", "http_error", "record_request", "record_metadata", "warcinfo"} <= set(entries["ingest"]["dropped"])
    # The mislabelled pages are decoded by their bytes, the page with two bad bytes is repaired.
    texts = {row["url"]: row["text"] for row in pq.read_table(out / "ingest", columns=["url", "text"]).to_pylist()}
    assert "Gärten" in texts["https://bad-input.example.org/gaerten"] and "城市公园" in texts["https://bad-input.example.org/gongyuan"]
    assert "图书馆" in texts["https://bad-input.example.org/tushuguan"] and "surv\ufffdey" in texts["https://bad-input.example.org/survey"]
    tokens = summary["tokens"]["pack"]
    assert tokens["tokens_in_shards"] == tokens["tokens_of_documents"] == entries["pack"]["tokens"] > 10_000
    assert "accounting: 14 of 14 checks passed" in result.output

    # Counts changed by hand: the run (nothing left to do) fails its checks and names them.
    stats_path = out / "shards/_stats.json"
    original = stats_path.read_text()
    stats_path.write_text(json.dumps({**json.loads(original), "kept": json.loads(original)["kept"] + 1}))
    broken = run(tmp_path, config)
    assert broken.exit_code == 1 and "accounting check failed (balance, pack)" in broken.stderr
    rerun = json.loads((out / "_run.json").read_text())
    assert rerun["ok"] is False
    # Each stage done before keeps the time of the run that made it (an Airflow DAG runs one stage per
    # `crawlmill run --only`: the last task's summary held no stage's time); pack's counts changed: not its.
    last = {e["stage"]: e.get("last_run") for e in rerun["stages"]}
    assert all(e["status"] == "done before" and e["seconds"] is None for e in rerun["stages"]), [(e["stage"], e["status"], e["seconds"]) for e in rerun["stages"]]
    assert last.pop("pack") is None, last
    assert all(r == {"status": "ran", "seconds": entries[n]["seconds"], "records_in": entries[n]["records_in"], "kept": entries[n]["kept"]} for n, r in last.items()), last
    stats_path.write_text(original)
    # A stage's counts changed under the stages that read it: the first of those is refused, naming it.
    stats_path = out / "filter/_stats.json"
    original = stats_path.read_text()
    stats_path.write_text(json.dumps({**json.loads(original), "kept": json.loads(original)["kept"] + 1}))
    broken = run(tmp_path, config)
    assert broken.exit_code == 2 and f"an input made again since ({out / 'filter'}" in " ".join(broken.output.split()), broken.output
    # ...and a run of that stage alone (as after `--only filter --overwrite` with other settings)
    # does not call the stale stages' counts a bug: their chain is not checked, what to run named.
    edited = json.loads(original)
    reason = next(r for r, n in edited["dropped"].items() if n > 0)
    stats_path.write_text(json.dumps({**edited, "kept": edited["kept"] + 1, "dropped": {**edited["dropped"], reason: edited["dropped"][reason] - 1}}))
    only = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "--only", "filter", "--no-progress"])
    chain = next(c for c in json.loads((out / "_run.json").read_text())["checks"] if c["check"] == "chain" and c["stage"] == "dedup")
    assert only.exit_code == 0 and chain["ok"] is None, (only.output, chain)
    assert chain["detail"] == f"not checked: {out / 'filter'} made again since dedup ran; `--from dedup --overwrite` makes it again from it"
    stats_path.write_text(original)
    shard = next((out / "shards").glob("*.bin"))
    shard.write_bytes(shard.read_bytes() + b"\0\0")  # one token more than its index says
    broken = run(tmp_path, config)  # a finished pack folder whose file is not the size its manifest says: refused before accounting
    assert broken.exit_code == 2 and f"finished, but {shard.name} holds" in " ".join(broken.output.split()), broken.output
    manifest = json.loads((out / "shards/manifest.json").read_text())  # the manifest edited to match: accounting's token audit catches it
    for entry in manifest["shards"]:
        if entry["files"]["bin"]["name"] == shard.name:
            entry["files"]["bin"]["bytes"] += 2
    (out / "shards/manifest.json").write_text(json.dumps(manifest))
    broken = run(tmp_path, config)
    assert broken.exit_code == 1 and "accounting check failed (tokens, pack)" in broken.stderr and shard.name in broken.stderr


def test_an_output_made_by_appending_dumps_is_accounted_once_per_folder(ray_local, tmp_path):
    """`crawlmill run --append`: each dump's folders are listed once (the config's own per-dump units
    name the same folders), the joint folders that only hold dumps' folders are no stage's, and so
    every check of every appended dump is made (none "not checked: not finished")."""
    config = {
        "output_dir": str(tmp_path / "out"),
        "ray": {"num_cpus": 2},
        "dumps": {"ids": ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]},
        "ingest": {"inputs": [str(REPO / "samples/crawl-data/*/segments/*/warc/*.warc.gz")]},
        "filter": {"language_id": {"keep": {"en": 0.65, "zh": 0.65}}},
        "tokenizer": {"vocab_size": 600},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    for dump in config["dumps"]["ids"]:
        result = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "--append", "--dump", dump, "--no-progress"])
        assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out/_run.json").read_text())
    assert summary["ok"] and all(check["ok"] is True for check in summary["checks"]), summary["checks"]
    folders = [e["folder"] for e in summary["stages"]]
    assert len(folders) == len(set(folders)) and not [e for e in summary["stages"] if e["status"] == "not run"], folders
    per_dump = {(stage, dump) for dump in config["dumps"]["ids"] for stage in ("ingest", "filter", "dedup", "remix", "pack")}
    assert per_dump | {("tokenizer", None)} == {(e["stage"], e["dump"]) for e in summary["stages"]}
    assert {("chain", f"{stage}/{dump}") for stage, dump in per_dump if stage != "ingest"} <= {(c["check"], c["stage"]) for c in summary["checks"]}
