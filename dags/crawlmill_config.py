"""A run's config as crawlmill's Airflow DAGs read it, on the Airflow worker (the jobs read it
again on the Ray cluster). Not a DAG itself: the DAGs in this folder import it, as Airflow puts
this folder on sys.path. They read only `output_dir`, `dumps:` and which optional stages' sections
it has from it, and resolve a relative path as `crawlmill run` does (crawlmill.pipeline.config):
against the config's folder, a URL's for a config given as an fsspec URL
(`s3://bkt/configs/run.yaml`: `out` is `s3://bkt/configs/out`).
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException


def read_run_config(config: str, working_dir: str | None) -> tuple[dict[str, Any], Any]:
    """The run config's YAML as the Airflow worker reads it, and the folder its relative paths are
    relative to (crawlmill's: a Path, or a UrlFolder for a URL). `config` is what the jobs get: a path
    or fsspec URL, or, with a local `working_dir`, relative to it. The DAGs read only `output_dir`,
    `dumps:` and which optional stages' sections it has from it."""
    import fsspec
    import yaml

    from crawlmill.pipeline.relative_paths import config_file, config_folder

    if "://" not in config and not os.path.isabs(config) and working_dir and "://" not in working_dir:
        config = os.path.join(working_dir, config)
    try:
        with fsspec.open(config, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as exc:  # a mistake in the file: no retry mends it
        raise AirflowFailException(f"{config}: not valid YAML ({exc})") from None
    except OSError as exc:  # perhaps passing (a store, a network): retried
        raise AirflowException(
            f"cannot read the config {config} here, on the Airflow worker ({exc}); the DAG reads its "
            "dumps: section and which optional stages it has, so put it where the worker sees it "
            "(shared storage, an fsspec URL, or working_dir)"
        ) from None
    if not isinstance(data, dict):
        raise AirflowFailException(f"{config}: expected a mapping")
    return data, config_folder(config_file(config)[0])


def output_dir_of(data: dict[str, Any], base: Any) -> str:
    """The config's output_dir, a relative one resolved against the config's folder (as crawlmill does)."""
    from crawlmill.pipeline.relative_paths import resolve_path

    output = str(data.get("output_dir") or "")
    if not output:
        raise AirflowFailException("the config has no output_dir")
    try:
        return resolve_path(output, base)
    except ValueError as exc:  # a relative path above a URL config's bucket
        raise AirflowFailException(f"output_dir: {exc}") from None


def dumps_section(data: dict[str, Any]) -> Any:
    """The config's `dumps:` section, checked as crawlmill checks it; a mistake in it fails the task
    at once (AirflowFailException: no retry mends a config)."""
    from crawlmill.pipeline.dumps import DumpsConfig

    section = data.get("dumps") or {}
    if not isinstance(section, dict):
        raise AirflowFailException(f"dumps: expected a mapping, got {type(section).__name__}")
    try:
        return DumpsConfig(**section)
    except (TypeError, ValueError) as exc:
        raise AirflowFailException(f"dumps: {exc}") from None


def stage_left_out(stage: str, data: dict[str, Any]) -> bool:
    """Whether `crawlmill run` leaves `stage` out of a run of this config (an optional stage without
    its section), by crawlmill's own rule (StageSpec.left_out, Pipeline.sections_in)."""
    from crawlmill.pipeline.definition import PIPELINE

    return PIPELINE.get(stage).left_out(PIPELINE.sections_in(data))


def skip_if_left_out(stage: str, config: str, working_dir: str | None) -> None:
    """Skip the running task (AirflowSkipException: no Ray job, "skipped" in the UI) when the run
    config leaves optional `stage` out. Read at run time, as the jobs read it; a config that cannot be
    read fails or is retried as read_run_config says, never skipped."""
    data, _ = read_run_config(config, working_dir)
    if stage_left_out(stage, data):
        raise AirflowSkipException(f"the config has no `{stage}:` section: crawlmill leaves the optional stage {stage} out")
