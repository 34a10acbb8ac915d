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
