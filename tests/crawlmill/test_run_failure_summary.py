"""`crawlmill run` stopped by an error in a later stage (a bad input found there, exit status 2) still
ends with its summary, printed and in `_run.json`: the stages that finished with their counts, the
stage that failed with the error's message, the stages after it not run, and no accounting check
failed for what did not run. The exit status and error line are those of the error."""

import json

import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from tests.pipeline.demo_stages import demo_config


def test_a_run_stopped_by_a_stage_error_ends_with_its_summary(ray_local, tmp_path):
    out = tmp_path / "out"
    config = demo_config(out, left_out=("quality", "train"))
    # Nearly all of the training from the stem pages, read at most once: a mixture that cannot be met.
    config["remix"]["mixture"] = {"weights": {"stem": 50, "lifestyle": 1, "culture": 1, "other": 1}, "max_epochs": 1}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "--no-progress"])

    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and error[0].startswith("error: the mixture cannot be met within max_epochs 1"), result.stderr
    message = error[0].removeprefix("error: ")
    assert "run summary" in result.stdout and "the run stopped in remix (the stages after it did not run): the mixture cannot be met" in " ".join(result.stdout.split())

    summary = json.loads((out / "_run.json").read_text())
    assert summary["error"] == {"stage": "remix", "message": message}
    entries = {e["stage"]: e for e in summary["stages"]}
    assert [e["stage"] for e in summary["stages"]] == ["ingest", "filter", "dedup", "remix", "tokenizer", "pack"]
    for name in ("ingest", "filter", "dedup"):  # finished: their own counts
        stats = json.loads((out / name / "_stats.json").read_text())
        assert entries[name]["status"] == "ran" and entries[name]["selected"], entries[name]
        assert (entries[name]["records_in"], entries[name]["kept"], entries[name]["quarantined"]) == (stats["in"], stats["kept"], stats["quarantined"])
    assert entries["remix"]["status"] == "failed" and entries["remix"]["error"] == message and "kept" not in entries["remix"]
    assert not (out / "remix").exists()  # the stage left nothing (as before): its entry comes from the error
    assert [(entries[n]["status"], "kept" in entries[n]) for n in ("tokenizer", "pack")] == [("not run", False)] * 2
    # What finished is checked; what did not run is no counting bug: no check failed, none about tokenizer or pack.
    checks = {(c["check"], c["stage"]): c["ok"] for c in summary["checks"]}
    assert summary["ok"] is False and all(ok is not False for ok in checks.values()), summary["checks"]  # stopped: not ok, though every count adds up
    assert {("balance", n) for n in ("ingest", "filter", "dedup")} | {("chain", "filter"), ("chain", "dedup")} == {k for k, ok in checks.items() if ok}
    assert checks == {**{k: True for k, ok in checks.items() if ok}, ("chain", "remix"): None}
    assert "accounting check failed" not in result.output

    # The mixture made possible: the rerun resumes after dedup, and its summary holds no error.
    config["remix"]["mixture"]["allow_shortfall"] = True
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    again = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "--no-progress"])
    assert again.exit_code == 0, again.output
    rerun = json.loads((out / "_run.json").read_text())
    assert rerun["error"] is None and "the run stopped" not in again.output
    assert {e["stage"]: e["status"] for e in rerun["stages"]} == {**{n: "done before" for n in ("ingest", "filter", "dedup")}, **{n: "ran" for n in ("remix", "tokenizer", "pack")}}
    assert all(e["last_run"]["status"] == "ran" for e in rerun["stages"] if e["status"] == "done before")
