"""Training asked for where Megatron-Core does not import (a `crawlmill[pipeline]` install, a Ray
worker of the pipeline's image): one line naming the extra, exit status 2; before, an ImportError's
traceback (exit 1), and the run's train stage a failed task that "rerun the same command" would not
fix (training/packages.py)."""

import importlib

import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.stage import StageInputError
from crawlmill.training import packages


@pytest.fixture
def no_megatron(monkeypatch):
    real = importlib.import_module

    def blocked(name, *args, **kwargs):
        if name.startswith("megatron"):
            raise ModuleNotFoundError("No module named 'megatron'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(packages.importlib, "import_module", blocked)


@pytest.mark.parametrize("verb", [["train", "--config", "tiny", "--data", "{shards}"], ["eval", "{run}", "--data", "{shards}"], ["export", "{run}", "--output", "{out}"], ["import", "{run}", "--output", "{out}"]])
def test_each_training_verb_names_the_extra_to_install(no_megatron, tmp_path, verb):
    (tmp_path / "shards").mkdir()
    (tmp_path / "run").mkdir()
    args = [a.format(shards=tmp_path / "shards", run=tmp_path / "run", out=tmp_path / "out") for a in verb]
    if verb[0] == "train":
        args += ["--output", str(tmp_path / "new-run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert f"error: crawlmill {verb[0]} needs megatron-core" in said and "No module named 'megatron'" in said
    assert "pip install -e '.[train]'" in said and "Traceback" not in result.output
    assert not (tmp_path / "new-run").exists() and not (tmp_path / "out").exists()


def test_the_train_stage_on_a_worker_without_it_is_the_stages_input_error(no_megatron, tmp_path):
    """A StageInputError: the run stops with the message and exit status 2, not a part failure to retry."""
    from crawlmill.training.stage import train_task

    with pytest.raises(StageInputError, match=r"the train stage needs megatron-core.*docker/ray-worker.Dockerfile"):
        train_task({}, str(tmp_path / "run"), None)
    assert not (tmp_path / "run").exists()


def test_with_the_packages_installed_nothing_is_said():
    packages.require_training_packages("crawlmill train")
