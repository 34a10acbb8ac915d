"""Optional stages in the DAG crawlmill_pipeline: a task skipped, with no Ray job, exactly when
`crawlmill run` leaves the stage out, and the trigger rules that let later stages run after that skip
but not after a failure. Cheap checks, no DAG run: test_dags.py's runs show both in real Airflow (a
config without quality/train: those tasks skipped, no job for them, the rest succeeds; a failed
ingest: every later task upstream_failed)."""

from __future__ import annotations

import importlib.util

import pytest

from crawlmill.pipeline.definition import PIPELINE

from .conftest import dag_module, load_dags

if importlib.util.find_spec("airflow") is None:
    pytest.skip("apache-airflow is not installed (the `airflow` extra)", allow_module_level=True)

OPTIONAL = [spec.name for spec in PIPELINE.stages if spec.optional]
# A section written every way YAML allows: crawlmill counts the key, whatever its value.
SECTIONS = {"absent": None, "bare": "{name}:\n", "null": "{name}: null\n", "empty": "{name}: {{}}\n"}


@pytest.fixture(scope="module")
def dags(airflow_home):
    return load_dags().dags


def test_an_optional_stage_is_skipped_exactly_when_crawlmill_run_leaves_it_out(airflow_home, tmp_path):
    """The DAG's decision against crawlmill's own: load_run_config's `sections`, which the runner
    checks before an optional stage (pipeline/runner.py)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from crawlmill.pipeline.config import load_run_config

    config_module = dag_module("crawlmill_config")
    assert {"quality", "train"} <= set(OPTIONAL)
    for name in OPTIONAL:
        for how, section in SECTIONS.items():
            path = tmp_path / f"{name}-{how}.yaml"
            path.write_text(f"output_dir: {tmp_path / 'out'}\n" + (section or "").format(name=name))
            crawlmill_skips = name not in load_run_config(path).sections
            assert crawlmill_skips == (how == "absent")
            data, _ = config_module.read_run_config(str(path), working_dir=None)
            assert config_module.stage_left_out(name, data) == crawlmill_skips, (name, how)
            if crawlmill_skips:
                with pytest.raises(AirflowSkipException, match=f"no `{name}:` section"):
                    config_module.skip_if_left_out(name, path.name, working_dir=str(tmp_path))
            else:
                config_module.skip_if_left_out(name, path.name, working_dir=str(tmp_path))
    # A stage that is not optional always runs, section or not (its defaults).
    assert not any(config_module.stage_left_out(name, {}) for name in PIPELINE.names if name not in OPTIONAL)


def test_a_config_that_cannot_be_read_fails_an_optional_stage_instead_of_skipping_it(airflow_home, tmp_path):
    """As the DAG's other tasks: a file not readable now is retried, a mistake in it fails at once."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

    config_module = dag_module("crawlmill_config")
    with pytest.raises(AirflowException) as missing:
        config_module.skip_if_left_out("quality", str(tmp_path / "nope.yaml"), working_dir=None)
    assert not isinstance(missing.value, (AirflowFailException, AirflowSkipException))
    (tmp_path / "bad.yaml").write_text("output_dir: [unclosed\n")
    with pytest.raises(AirflowFailException, match="not valid YAML"):
        config_module.skip_if_left_out("quality", str(tmp_path / "bad.yaml"), working_dir=None)


def test_the_stage_after_an_optional_one_runs_after_a_skip_but_not_after_a_failure(dags):
    """none_failed: runs when every upstream succeeded or was skipped, is upstream_failed when one
    failed. none_failed_min_one_success would skip remix after a skipped quality (its one upstream);
    every other task keeps all_success, so a skip anywhere else still cascades."""
    from airflow.sdk import TriggerRule

    dag = dags["crawlmill_pipeline"]
    follows_optional = {PIPELINE.names[i + 1] for i, name in enumerate(PIPELINE.names[:-1]) if name in OPTIONAL}
    assert "remix" in follows_optional
    for task in dag.tasks:
        stage = task.task_id.rsplit(".", 1)[-1]
        expected = TriggerRule.NONE_FAILED if stage in follows_optional else TriggerRule.ALL_SUCCESS
        assert task.trigger_rule == expected, task.task_id
        assert (task.task_type == "OptionalStageOperator") == (stage in OPTIONAL), task.task_id  # skips itself
    # crawlmill_new_dump relies on skips cascading (no new dump: every later task skipped): unchanged.
    assert {task.trigger_rule for task in dags["crawlmill_new_dump"].tasks} == {TriggerRule.ALL_SUCCESS}
