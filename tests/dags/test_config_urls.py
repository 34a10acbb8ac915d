"""The DAGs read a run config given as an fsspec URL as `crawlmill run` does (crawlmill_config.py):
relative paths against the URL's folder, on a real S3 server on loopback (moto)."""

from __future__ import annotations

import importlib.util

import pytest
import yaml

from tests.s3server import moto_s3

from .conftest import dag_module

if importlib.util.find_spec("airflow") is None:
    pytest.skip("apache-airflow is not installed (the `airflow` extra)", allow_module_level=True)
pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "crawlmill-dag-cfg"


def test_the_dag_and_crawlmill_run_agree_on_a_url_configs_output_dir(airflow_home, tmp_path):
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException

    from crawlmill.pipeline.config import load_run_config

    config_module = dag_module("crawlmill_config")
    with moto_s3(BUCKET) as (fs, _):
        for name, output in (("run.yaml", "out"), ("up.yaml", "../runs/a/"), ("local.yaml", str(tmp_path / "out"))):
            fs.pipe(f"{BUCKET}/configs/{name}", yaml.safe_dump({"output_dir": output, "dumps": {"ids": ["CC-MAIN-2024-10"]}}).encode())
            url = f"s3://{BUCKET}/configs/{name}"
            data, base = config_module.read_run_config(url, working_dir=None)
            assert data["dumps"] == {"ids": ["CC-MAIN-2024-10"]}
            assert config_module.output_dir_of(data, base) == load_run_config(url).output_dir
        assert config_module.output_dir_of({"output_dir": "out"}, base) == f"s3://{BUCKET}/configs/out"  # not s3:/...
        assert config_module.output_dir_of({"output_dir": "../runs/a/"}, base) == f"s3://{BUCKET}/runs/a/"
        with pytest.raises(AirflowException, match=rf"output_dir: \.\./\.\./x: goes above s3://{BUCKET}/"):
            config_module.output_dir_of({"output_dir": "../../x"}, base)
        # An optional stage's task reads the URL config too: no `quality:` section there, skipped.
        with pytest.raises(AirflowSkipException, match="no `quality:` section"):
            config_module.skip_if_left_out("quality", f"s3://{BUCKET}/configs/run.yaml", working_dir=None)
    # A local config: as before (the folder resolved), with or without working_dir.
    (tmp_path / "run.yaml").write_text("output_dir: out\n")
    data, base = config_module.read_run_config("run.yaml", working_dir=str(tmp_path))
    assert config_module.output_dir_of(data, base) == str(tmp_path / "out") == load_run_config(tmp_path / "run.yaml").output_dir


def test_a_mistake_in_the_config_fails_the_dags_own_tasks_at_once(airflow_home, tmp_path):
    """What the DAGs' Python tasks read of the config (dumps, find_new_dumps): a mistake in it no retry
    mends fails at once (AirflowFailException); a file not readable now may be, and is retried."""
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    config_module = dag_module("crawlmill_config")
    cases = {
        "bad.yaml": ("output_dir: [unclosed\n", "not valid YAML"),
        "list.yaml": ("- a\n", "expected a mapping"),
        "no_output.yaml": ("dumps: {ids: [CC-MAIN-2024-10]}\n", "the config has no output_dir"),
        "bad_dump.yaml": ("output_dir: out\ndumps: {ids: [CC-MAIN-2024]}\n", "dumps: "),
        "bad_key.yaml": ("output_dir: out\ndumps: {idz: [CC-MAIN-2024-10]}\n", "dumps: "),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(AirflowFailException, match=message):
            data, base = config_module.read_run_config(str(tmp_path / name), working_dir=None)
            config_module.output_dir_of(data, base)
            config_module.dumps_section(data)
    with pytest.raises(AirflowException) as missing:
        config_module.read_run_config(str(tmp_path / "nope.yaml"), working_dir=None)
    assert not isinstance(missing.value, AirflowFailException)
