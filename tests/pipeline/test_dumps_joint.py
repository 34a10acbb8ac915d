"""docs/dumps.md's "one joint run, then each new dump" (pipeline/dumps.py), end to end on the sample WARCs
with `crawlmill run` in this process (real Ray): a joint run of CC-MAIN-2023-50 starts the dumps'
dedup index and records its dump, then `--append --dump CC-MAIN-2024-10` is deduplicated against it
and keeps what one joint dedup of both dumps keeps; the blend covers both. A joint output of an
earlier version (its dedup ran without the index) stays done, and appending to it is refused with
what to run instead."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline import dumps
from crawlmill.pipeline.config import load_run_config
from crawlmill.pipeline.definition import PIPELINE
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.wiring import wire_stage_config
from tests.pipeline.demo_stages import demo_config

pytestmark = pytest.mark.heavy(60)  # seconds on 2 cores (seven runs of the pipeline's CLI): started early

D1, D2 = "CC-MAIN-2023-50", "CC-MAIN-2024-10"


def _run(config, *options):
    return CliRunner().invoke(app, ["run", str(config), "--no-progress", *options])


def _ids(folder):
    return {row for part in sorted(folder.glob("part-*.parquet")) for row in pq.read_table(part, columns=["id"])["id"].to_pylist()}


def _statuses(out):
    return {(e["stage"], e["dump"]): e["status"] for e in json.loads((out / "_run.json").read_text())["stages"]}


def _write_config(tmp_path, ids):
    (tmp_path / "collinfo.json").write_text(json.dumps([{"id": D2}, {"id": D1}]))
    config = demo_config(tmp_path / "out", left_out=("quality", "train"))  # the stages appending runs, on both sample dumps
    config["dumps"] = {"ids": ids, "collinfo_url": str(tmp_path / "collinfo.json")}
    path = tmp_path / f"crawl-{len(ids)}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_joint_run_then_an_appended_dump_dedups_as_one_joint_run_of_both(ray_local, tmp_path, capsys):
    crawl, out = _write_config(tmp_path, [D1]), tmp_path / "out"
    result = _run(crawl)
    assert result.exit_code == 0, result.output
    assert dumps.recorded_dumps(out) == [D1] and dumps.appended_dumps(out) == []
    index = json.loads((out / "dedup" / dumps.INDEX_FOLDER / "manifest.json").read_text())["runs"]
    assert [run["output"] for run in index] == [str(out / "dedup")]  # the joint dedup is the index's first run
    capsys.readouterr()
    assert dumps.main(["new", str(crawl)]) == 0 and json.loads(capsys.readouterr().out) == [D2]  # the joint dump is done
    with pytest.raises(ValueError, match=f"older than {D1}"):
        dumps.check_append(out, ["CC-MAIN-2023-40"])

    result = _run(crawl, "--append", "--dump", D2)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "dedup" / D2 / "_tasks.json").read_text())["settings"]
    assert record["index"] == str(out / "dedup" / dumps.INDEX_FOLDER) and [r["output"] for r in record["index_runs"]] == [str(out / "dedup")]
    stats = json.loads((out / "dedup" / D2 / "_stats.json").read_text())
    assert stats["in"] > stats["kept"] and stats["dropped"].get("exact_duplicate") and stats["dropped"].get("near_duplicate")
    entries = json.loads((out / dumps.STATE_FILE).read_text())["appended"]
    assert [(e.get("dumps"), e.get("dump"), e["shards"]) for e in entries] == [([D1], None, "."), (None, D2, D2)]
    blend = json.loads((out / "shards/blend.json").read_text())
    manifests = [json.loads((out / "shards" / folder / "manifest.json").read_text()) for folder in (".", D2)]
    assert blend["dumps"] == [D1, D2] and blend["folders"] == [".", D2] and sum(blend["weights"]) == pytest.approx(1.0)
    assert blend["tokens"] == sum(m["tokens"] for m in manifests) and blend["documents"] == sum(m["documents"] for m in manifests)
    prefixes = blend["data_path"][1::2]
    assert len(prefixes) == sum(len(m["blend"]["prefixes"]) for m in manifests) and any(p.startswith(f"{D2}/") for p in prefixes)
    assert all((out / "shards" / f"{p}.bin").is_file() and (out / "shards" / f"{p}.idx").is_file() for p in prefixes)  # Megatron's --data-path, from shards/
    summary = json.loads((out / "_run.json").read_text())
    assert summary["ok"] and all(check["ok"] is True for check in summary["checks"]), summary["checks"]
    assert {("chain", f"dedup/{D2}"), ("chain", f"pack/{D2}"), ("tokens", f"pack/{D2}"), ("chain", "pack"), ("tokens", "pack")} <= {
        (c["check"], c["stage"]) for c in summary["checks"]}  # fmt: skip

    # One joint dedup of both dumps' filter folders keeps exactly what the joint run and the append kept.
    both = load_run_config(_write_config(tmp_path, [D1, D2]))
    joint = run_stage(PIPELINE.get("dedup").stage_class()(wire_stage_config(PIPELINE, PIPELINE.get("dedup"), both)), tmp_path / "both", progress=False)
    assert joint.ok and _ids(tmp_path / "both") == _ids(out / "dedup") | _ids(out / "dedup" / D2)

    # The joint config again: already done; its dedup cannot be recomputed under the appended dump.
    before = (out / "dedup/_tasks.json").read_text()
    result = _run(crawl)
    assert result.exit_code == 0, result.output
    assert {status for (stage, dump), status in _statuses(out).items() if dump != D2 and status != "external"} == {"done before"}
    assert (out / "dedup/_tasks.json").read_text() == before and dumps.recorded_dumps(out) == [D1, D2]
    result = _run(crawl, "--from", "dedup", "--overwrite")
    assert result.exit_code == 2 and "is run 1 of 2 in the index" in result.output, result.output
    assert (out / "dedup" / D2 / "_SUCCESS").is_file() and (out / "shards" / D2 / "manifest.json").is_file()

    # A dump added to ids after the joint run ran: never recorded as done, said so.
    state = (out / dumps.STATE_FILE).read_text()
    grown = _write_config(tmp_path, [D1, D2])
    for options in ([], ["--only", "pack"]):
        result = _run(grown, *options)
        assert result.exit_code == 2 and f"dumps.ids lists {D2}, which the joint run's dedup" in " ".join(result.output.split()), result.output
    assert (out / dumps.STATE_FILE).read_text() == state


def test_an_earlier_versions_joint_output_stays_done_and_appending_to_it_is_refused(ray_local, tmp_path, monkeypatch):
    """An earlier version's joint run: its dedup ran without the index, and nothing recorded its dumps."""
    crawl, out = _write_config(tmp_path, [D1]), tmp_path / "out"
    with monkeypatch.context() as earlier:
        earlier.setattr(dumps, "prepare_joint", lambda *args: None)
        earlier.setattr(dumps, "record_joint", lambda *args: None)
        result = _run(crawl)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "dedup/_tasks.json").read_text())["settings"]["index"] is None and not (out / dumps.STATE_FILE).exists()

    result = _run(crawl)  # not refused as changed settings: the dedup folder keeps its record
    assert result.exit_code == 0, result.output
    assert {status for status in _statuses(out).values() if status != "external"} == {"done before"}
    assert json.loads((out / "dedup/_tasks.json").read_text())["settings"]["index"] is None
    assert not (out / "dedup" / dumps.INDEX_FOLDER).exists() and dumps.recorded_dumps(out) == []  # not recorded: not in an index
    for options in (["--append", "--dump", D2], ["--append"]):
        result = _run(crawl, *options)
        assert result.exit_code == 2, result.output
        assert "is not in the dumps' dedup index" in result.output and "--from dedup --overwrite" in result.output
    assert not (out / "dedup" / D2).exists() and not (out / "ingest" / D2).exists()

    # What the refusal says to run: the joint run recomputed from dedup, then the append.
    result = _run(crawl, "--from", "dedup", "--overwrite")
    assert result.exit_code == 0, result.output
    result = _run(crawl, "--append", "--dump", D2)
    assert result.exit_code == 0, result.output
    assert dumps.recorded_dumps(out) == [D1, D2] and sum(json.loads((out / "dedup" / D2 / "_stats.json").read_text())["dropped"].values()) > 0
