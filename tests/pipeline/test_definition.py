"""The one pipeline list (pipeline/definition.py): its rules, and a toy stage added to a copy of it
that `crawlmill run`, `--only` and `--from` pick up with no other change (the DAG: tests/dags)."""

import json
import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline import definition
from crawlmill.pipeline.definition import PIPELINE, Pipeline, StageSpec
from tests.conftest import REPO
from tests.pipeline.toy_stage import TOY, ToyConfig, pipeline_with_toy


def test_stages_read_only_earlier_stages_and_names_are_unique():
    assert PIPELINE.names == ["ingest", "filter", "dedup", "quality", "remix", "tokenizer", "pack", "train"]
    with pytest.raises(ValueError, match="not an earlier stage"):
        Pipeline([TOY, *PIPELINE.stages])
    with pytest.raises(ValueError, match="is taken"):
        PIPELINE.with_stage(PIPELINE.get("dedup"))
    with pytest.raises(ValueError, match="is taken"):
        PIPELINE.with_stage(StageSpec("ray", ToyConfig, "x:Y", "", ""))


def test_select_only_and_from():
    assert [s.name for s in PIPELINE.select()] == PIPELINE.names
    assert [s.name for s in PIPELINE.select(only="dedup")] == ["dedup"]
    assert [s.name for s in PIPELINE.select(start="dedup")] == ["dedup", "quality", "remix", "tokenizer", "pack", "train"]
    with pytest.raises(ValueError, match="--only 'dedupe': choose one of ingest, filter"):
        PIPELINE.select(only="dedupe")
    with pytest.raises(ValueError, match="not both"):
        PIPELINE.select(only="dedup", start="filter")


def test_every_stage_class_loads_and_is_named_as_its_spec():
    for spec in PIPELINE.stages:
        assert spec.stage_class().name == spec.name
        spec.config()  # every section has defaults: a run config may leave it out


def test_reading_the_list_imports_no_stage_dependency():
    """The Airflow scheduler parses the DAG, which reads this list: it must stay light."""
    code = "import sys, crawlmill.pipeline.definition; print(sorted(m for m in ('ray', 'pyarrow', 'numpy', 'datatrove', 'tokenizers', 'torch') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_readme_stage_table_is_the_pipeline_list():
    table = PIPELINE.markdown_table()
    assert table in (REPO / "README.md").read_text(), f"README.md's stage table should be (python -m crawlmill.pipeline.definition):\n{table}"


@pytest.fixture
def toy_pipeline(monkeypatch):
    """The pipeline list with the toy stage after filter; nothing else changes."""
    monkeypatch.setattr(definition, "PIPELINE", pipeline_with_toy())


def run(*args):
    return CliRunner().invoke(app, ["run", *map(str, args), "--no-progress"], env={"COLUMNS": "200"})


def summary(out) -> dict:
    """The stage runs the last `crawlmill run` was asked for, by name, from its _run.json."""
    return {e["stage"]: e for e in json.loads((out / "_run.json").read_text())["stages"] if e["selected"]}


def test_a_stage_added_to_the_list_runs_in_order_alone_and_from(ray_local, toy_pipeline, tmp_path, monkeypatch):
    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    config["output_dir"] = str(tmp_path / "out")
    config["ingest"]["inputs"] = [str(REPO / "configs" / p) for p in config["ingest"]["inputs"]]
    config.pop("train")  # (training at the end is the demo test's)
    config.pop("quality")  # (its classifier is the demo test's; remix then reads dedup)
    config["toy"] = {"min_chars": 2000}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))

    # The toy section is part of the run config, checked with the others before anything runs.
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**config, "toy": {"min_chars": -1}}))
    bad = run(tmp_path / "bad.yaml")
    assert bad.exit_code == 2 and "bad.yaml.toy: min_chars -1" in bad.output and not (tmp_path / "out").exists()

    result = run(tmp_path / "run.yaml")
    assert result.exit_code == 0, result.output
    assert list(summary(tmp_path / "out")) == ["ingest", "filter", "toy", "dedup", "remix", "tokenizer", "pack"]
    toy = json.loads((tmp_path / "out/toy/_stats.json").read_text())
    filtered = json.loads((tmp_path / "out/filter/_stats.json").read_text())
    assert toy["in"] == filtered["kept"] and 0 < toy["dropped"]["toy_short"] < toy["in"]
    assert json.loads((tmp_path / "out/dedup/_stats.json").read_text())["in"] == filtered["kept"]  # dedup still reads filter

    # --only toy runs it alone; its inputs are wired from the list (filter's folder).
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*") if p.is_file() and "/toy/" not in str(p) and p.name != "_run.json"}
    again = run(tmp_path / "run.yaml", "--only", "toy", "--overwrite")
    assert again.exit_code == 0, again.output
    assert list(summary(tmp_path / "out")) == ["toy"]
    assert json.loads((tmp_path / "out/toy/_stats.json").read_text()) == toy
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # no other stage touched
    tasks = json.loads((tmp_path / "out/toy/_tasks.json").read_text())
    assert all(source.startswith(str(tmp_path / "out/filter")) for source in tasks["sources"])

    # --from toy: toy and every stage after it, all finished already.
    later = run(tmp_path / "run.yaml", "--from", "toy")
    assert later.exit_code == 0 and list(summary(tmp_path / "out")) == ["toy", "dedup", "remix", "tokenizer", "pack"]
    assert "tokenizer already trained" in later.stdout

    # --from toy --overwrite stopped (Ctrl-C) as dedup starts: the later folders of before are gone at
    # once, not left finished downstream of the toy made again; the same command without --overwrite
    # resumes and makes them again, the same bytes.
    from crawlmill.pipeline import runner

    shards = {p.name: p.read_bytes() for p in (tmp_path / "out/shards").glob("*.bin")}
    real_run_stage = runner.run_stage

    def stop_at_dedup(stage, *args, **kwargs):
        if stage.name == "dedup":
            raise KeyboardInterrupt
        return real_run_stage(stage, *args, **kwargs)

    monkeypatch.setattr(runner, "run_stage", stop_at_dedup)
    stopped = run(tmp_path / "run.yaml", "--from", "toy", "--overwrite")
    assert stopped.exit_code == 130 and "rerun the same command without --overwrite" in stopped.output, stopped.output
    assert f"--overwrite: deleting the earlier output in {tmp_path / 'out/shards'}" in stopped.output
    assert (tmp_path / "out/toy/_SUCCESS").exists() and (tmp_path / "out/filter/_SUCCESS").exists()
    assert not any((tmp_path / "out" / name).exists() for name in ("dedup", "remix", "tokenizer", "shards"))
    monkeypatch.setattr(runner, "run_stage", real_run_stage)
    resumed = run(tmp_path / "run.yaml", "--from", "toy")
    assert resumed.exit_code == 0, resumed.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "out/shards").glob("*.bin")} == shards
    # ...but not before the first stage's inputs are checked: a run --overwrite whose ingest finds no
    # file to read (an empty folder: the config's check sees a folder) deletes nothing.
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump({**config, "ingest": {**config["ingest"], "inputs": [str(tmp_path / "empty")]}}))
    refused = run(tmp_path / "empty.yaml", "--overwrite")
    assert refused.exit_code == 2 and "holds no .warc" in refused.output, refused.output
    assert all((tmp_path / "out" / name / "_SUCCESS").exists() for name in ("ingest", "filter", "toy", "dedup", "remix", "tokenizer", "shards"))

    # A stage whose config names an existing output (tokenizer.path) runs nothing; pack reads that folder.
    (tmp_path / "external.yaml").write_text(yaml.safe_dump({**config, "tokenizer": {"path": str(tmp_path / "out/tokenizer")}}))
    external = run(tmp_path / "external.yaml", "--from", "tokenizer")
    assert external.exit_code == 0, external.output
    ran = summary(tmp_path / "out")
    assert "tokenizer: using" in external.stdout and (ran["tokenizer"]["status"], ran["tokenizer"]["folder"]) == ("external", str(tmp_path / "out/tokenizer"))
    packed = json.loads((tmp_path / "out/shards/_stats.json").read_text())
    assert ran["pack"]["status"] == "done before" and (ran["pack"]["records_in"], ran["pack"]["kept"]) == (packed["in"], packed["kept"])  # the same tokenizer: already packed


def test_an_optional_stage_left_out_of_the_config_is_not_checked(tmp_path):
    """A new optional stage whose defaults are not runnable (`check()` asks for a setting) made every
    run config without its section fail to load."""
    from dataclasses import dataclass, field

    from crawlmill.pipeline.config import ConfigError, load_run_config

    @dataclass
    class NeedsPhrases:
        inputs: list[str] = field(default_factory=list, metadata={"path": True})
        phrases: list[str] = field(default_factory=list)

        def check(self) -> None:
            if not self.phrases:
                raise ValueError("give phrases")

    spec = StageSpec("blocklist", NeedsPhrases, "tests.pipeline.toy_stage:ToyStage", "drops listed phrases", "(none)", reads=("filter",), optional=True)
    pipeline = PIPELINE.with_stage(spec, after="filter")
    (tmp_path / "without.yaml").write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out")}))
    assert load_run_config(tmp_path / "without.yaml", pipeline).sections == []
    (tmp_path / "with.yaml").write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "blocklist": {"inputs": []}}))
    with pytest.raises(ConfigError, match="with.yaml.blocklist: give phrases"):
        load_run_config(tmp_path / "with.yaml", pipeline)
