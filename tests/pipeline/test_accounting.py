"""The run summary's memory of earlier runs (pipeline/accounting.py `_carry_last_runs`): a stage
done before keeps the status and seconds of the run that made it, through runs that only read it."""

import json

from crawlmill.pipeline.accounting import RUN_FILE, Entry, _carry_last_runs
from crawlmill.pipeline.definition import PIPELINE
from crawlmill.pipeline.wiring import StageRun


def _summary(tmp_path, *entries: Entry) -> None:
    (tmp_path / RUN_FILE).write_text(json.dumps({"stages": [e.to_json() for e in entries]}))


def test_the_run_that_made_a_folder_is_remembered_through_runs_that_only_read_it(tmp_path):
    tokenizer, filter_ = StageRun(PIPELINE.get("tokenizer")), StageRun(PIPELINE.get("filter"))
    stats = {"in": 10, "kept": 8, "dropped": {"short": 2}, "quarantined": 0}
    _summary(tmp_path, Entry(tokenizer, tmp_path / "tokenizer", "ran", stats, 12.5), Entry(filter_, tmp_path / "filter", "ran", stats, 3.0))
    # An append run: the tokenizer is only read ("external", no counts); filter done before.
    appended = [Entry(tokenizer, tmp_path / "tokenizer", "external", None), Entry(filter_, tmp_path / "filter", "done before", stats)]
    _carry_last_runs(tmp_path, appended)
    made = {"records_in": 10, "kept": 8}
    assert [e.last_run for e in appended] == [{"status": "ran", "seconds": 12.5, **made}, {"status": "ran", "seconds": 3.0, **made}]
    _summary(tmp_path, *appended)
    # The next plain run: both done before, still with the time of the run that made them...
    later = [Entry(tokenizer, tmp_path / "tokenizer", "done before", stats), Entry(filter_, tmp_path / "filter", "done before", {**stats, "kept": 9, "dropped": {"short": 1}})]
    _carry_last_runs(tmp_path, later)
    # ...unless its counts changed (made again by a stage's own command, which writes no summary).
    assert [e.last_run for e in later] == [{"status": "ran", "seconds": 12.5, **made}, None]
    # An external folder made again since (its own _stats.json now other counts): not carried either.
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer/_SUCCESS").write_text("")
    (tmp_path / "tokenizer/_stats.json").write_text(json.dumps({**stats, "kept": 7}))
    _summary(tmp_path, *appended)
    remade = [Entry(tokenizer, tmp_path / "tokenizer", "external", None)]
    _carry_last_runs(tmp_path, remade)
    assert remade[0].last_run is None


def test_an_output_moved_since_keeps_the_times_of_the_runs_that_made_it(tmp_path):
    """`mv out /data/out` (pipeline/relocation.py): the summary it holds names the old place; its
    folders are matched by their place in the output, not by their absolute path."""
    filter_, stats = StageRun(PIPELINE.get("filter")), {"in": 10, "kept": 8, "dropped": {"short": 2}, "quarantined": 0}
    old, new = tmp_path / "old/out", tmp_path / "new/out"
    new.mkdir(parents=True)
    (new / RUN_FILE).write_text(json.dumps({"output_dir": str(old), "stages": [Entry(filter_, old / "filter", "ran", stats, 3.0).to_json()]}))
    moved = [Entry(filter_, new / "filter", "done before", stats)]
    _carry_last_runs(new, moved)
    assert moved[0].last_run == {"status": "ran", "seconds": 3.0, "records_in": 10, "kept": 8}


def _run_only(path, stage):
    from typer.testing import CliRunner

    from crawlmill.cli import app

    return CliRunner().invoke(app, ["run", str(path), "--only", stage, "--no-progress"])


def _kept(folder) -> int:
    return json.loads((folder / "_stats.json").read_text())["kept"]


def test_a_sections_own_inputs_count_in_the_chain_of_a_real_run(ray_local, tmp_path):
    """docs/pipeline.md "Wiring": a stage reads the folders of the stages it reads, then its section's own
    `inputs` (another dump's output). The chain check counts both: `filter: {inputs: [...]}` and
    `dedup: {inputs: [...]}` once made a run whose stages all balance fail with "dedup in 38 !=
    filter kept 24 ... a bug of crawlmill or a folder changed by hand", exit 1."""
    import yaml

    from crawlmill.pipeline.accounting import account_run
    from crawlmill.pipeline.config import load_run_config
    from tests.conftest import REPO

    warcs = sorted(str(p) for p in (REPO / "samples/crawl-data").glob("*/segments/*/warc/*.warc.gz"))

    def config(out, inputs, **sections):
        return {"output_dir": str(out), "ray": {"num_cpus": 2}, "ingest": {"inputs": inputs},
                "filter": {"language_id": {"keep": {"en": 0.65, "zh": 0.65}}, **sections.get("filter", {})}, **{k: v for k, v in sections.items() if k != "filter"}}  # fmt: skip

    other, out = tmp_path / "other", tmp_path / "out"
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(config(other, warcs[2:])))
    for stage in ("ingest", "filter"):
        assert _run_only(tmp_path / "other.yaml", stage).exit_code == 0
    main = config(out, warcs[:2], filter={"inputs": [str(other / "ingest")]}, dedup={"inputs": [str(other / "filter")]})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(main))
    for stage in ("ingest", "filter", "dedup"):
        result = _run_only(tmp_path / "run.yaml", stage)
        assert result.exit_code == 0, result.output
    checks = {(c["check"], c["stage"]): c for c in json.loads((out / "_run.json").read_text())["checks"]}
    assert all(c["ok"] for c in checks.values()), checks
    stats = {name: json.loads((out / name / "_stats.json").read_text()) for name in ("filter", "dedup")}
    assert checks["chain", "filter"]["detail"] == f"filter in {stats['filter']['in']} = ingest kept {_kept(out / 'ingest')} + inputs kept {_kept(other / 'ingest')}"
    assert checks["chain", "dedup"]["detail"] == f"dedup in {stats['dedup']['in']} = filter kept {_kept(out / 'filter')} + inputs kept {_kept(other / 'filter')}"
    assert _kept(other / "filter") > 0 and _kept(other / "ingest") > 0  # both parts are there to count

    # An own input that is no finished stage folder (any more): what it kept is unknown, not a bug.
    (other / "filter/_SUCCESS").unlink()
    summary = account_run(PIPELINE, load_run_config(tmp_path / "run.yaml"), {}, write=False)
    dedup = next(c for c in summary["checks"] if c["check"] == "chain" and c["stage"] == "dedup")
    assert summary["ok"] and dedup["ok"] is None, dedup
    assert dedup["detail"] == f"not checked: {other / 'filter'} (of dedup's own inputs): no finished stage folder (_SUCCESS and _stats.json), so what it kept is not known"


def _finished(folder, records_in: int, kept: int) -> str:
    folder.mkdir(parents=True)
    (folder / "_stats.json").write_text(json.dumps({"in": records_in, "kept": kept, "dropped": {"x": records_in - kept}, "quarantined": 0}))
    (folder / "_SUCCESS").write_text("")
    return str(folder)


def test_own_inputs_per_dump_are_read_by_each_dumps_run(tmp_path, monkeypatch):
    """With `dumps:`, each dump's filter reads its dump's ingest and all of filter's own inputs; a
    per-dump quality takes only its dump's documents of its own inputs, which no _stats.json counts
    by dump: not checked, with the reason (never a failed check)."""
    import yaml

    from crawlmill.pipeline.accounting import account_run
    from crawlmill.pipeline.config import load_run_config
    from crawlmill.pipeline.quality.config import QualityConfig
    from tests.conftest import REPO

    monkeypatch.setattr(QualityConfig, "check", lambda self: None)  # no model needed: nothing runs
    d1, d2, out = "CC-MAIN-2023-50", "CC-MAIN-2024-10", tmp_path / "out"
    extra, more = _finished(tmp_path / "extra", 9, 7), _finished(tmp_path / "more", 5, 4)
    warc = str(next((REPO / "samples/crawl-data").glob("*/segments/*/warc/*.warc.gz")))
    config = {"output_dir": str(out), "dumps": {"ids": [d1, d2]}, "ingest": {"inputs": [warc]}, "filter": {"inputs": [extra]},
              "quality": {"model": extra, "inputs": [more]}}  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    for dump, ingested in ((d1, 10), (d2, 20)):
        _finished(out / "ingest" / dump, 30, ingested)
        _finished(out / "filter" / dump, ingested + 7, ingested)  # its dump's ingest kept + extra's 7
        _finished(out / "quality" / dump, 3, 3)
    _finished(out / "dedup", 30, 6)
    summary = account_run(PIPELINE, load_run_config(tmp_path / "run.yaml"), {}, write=False)
    chains = {c["stage"]: c for c in summary["checks"] if c["check"] == "chain"}
    assert chains[f"filter/{d1}"] == {"check": "chain", "stage": f"filter/{d1}", "ok": True, "detail": "filter in 17 = ingest kept 10 + inputs kept 7"}
    assert chains[f"filter/{d2}"]["ok"] and chains[f"filter/{d2}"]["detail"] == "filter in 27 = ingest kept 20 + inputs kept 7"
    assert chains["dedup"]["ok"] and chains["dedup"]["detail"] == "dedup in 30 = filter kept 30"  # no own inputs: as before
    assert chains["quality"]["ok"] is None and summary["ok"], chains["quality"]
    assert chains["quality"]["detail"] == f"not checked: quality per dump reads only its dump's documents of its own inputs ({more}), which their _stats.json do not count by dump"
