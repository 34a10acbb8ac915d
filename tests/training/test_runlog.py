"""A run folder's progress as a driver reads it while the trainer writes (runlog.steps_so_far)."""

import json

from crawlmill.training.runlog import LOG_FILE, RUN_FILE, TAIL_BYTES, steps_so_far


def test_nothing_written_yet_is_zero_steps_of_an_unknown_length(tmp_path):
    assert steps_so_far(tmp_path) == (0, 0)
    (tmp_path / RUN_FILE).write_text(json.dumps({"total_steps": 400}))
    assert steps_so_far(tmp_path) == (0, 400)


def test_the_highest_step_at_the_end_of_a_long_log_with_a_line_being_written(tmp_path):
    (tmp_path / RUN_FILE).write_text(json.dumps({"total_steps": 9000}))
    records = [{"kind": "train", "step": step, "loss": 2.5, "note": "x" * 40} for step in range(1, 3001)]
    records.insert(1500, {"kind": "checkpoint", "step": 1500, "path": "checkpoints/step-00001500"})
    text = "".join(json.dumps(r) + "\n" for r in records) + '{"kind": "train", "step": 3001, "lo'  # torn by the writer
    (tmp_path / LOG_FILE).write_text(text)
    assert len(text) > 2 * TAIL_BYTES  # read from its end only
    assert steps_so_far(tmp_path) == (3000, 9000)


def test_a_stop_record_counts_its_step(tmp_path):
    (tmp_path / LOG_FILE).write_text(json.dumps({"kind": "train", "step": 7}) + "\n" + json.dumps({"kind": "stopped", "step": 9, "signal": "SIGTERM"}) + "\n")
    assert steps_so_far(tmp_path) == (9, 0)


def test_a_resume_that_fails_to_rewrite_the_log_leaves_it_whole(tmp_path, monkeypatch):
    """The log cut back to the resumed step was written in place: a kill or a full disk there left the
    run's only log empty or cut (and `plan fit`, the model card and the end record trust it)."""
    import errno
    import json
    import pathlib

    import pytest

    from crawlmill.training.runlog import LOG_FILE, RunLog

    log = tmp_path / LOG_FILE
    text = "".join(json.dumps({"kind": "train", "step": s, "loss": 1.0}) + "\n" for s in range(1, 6))
    log.write_text(text)
    real = pathlib.Path.write_text

    def full_disk(self, data, *args, **kwargs):
        real(self, data[: len(data) // 3], *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pathlib.Path, "write_text", full_disk)
    with pytest.raises(OSError):
        RunLog(tmp_path, resume_step=3)
    monkeypatch.undo()
    assert log.read_text() == text
    RunLog(tmp_path, resume_step=3).close()
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]
