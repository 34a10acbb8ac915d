"""A run's config as crawlmill's Airflow DAGs read it, on the Airflow worker (the jobs read it
again on the Ray cluster). Not a DAG itself: the DAGs in this folder import it, as Airflow puts
this folder on sys.path. They read only `output_dir` and `dumps:` from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk.exceptions import AirflowException


def read_run_config(config: str, working_dir: str | None) -> tuple[dict[str, Any], str]:
    """The run config's YAML as the Airflow worker reads it, and the folder its relative paths are
    relative to. `config` is what the jobs get: a path or fsspec URL, or, with a local
    `working_dir`, relative to it. The DAGs read only `output_dir` and `dumps:` from it."""
    import fsspec
    import yaml

    if "://" not in config and not os.path.isabs(config) and working_dir and "://" not in working_dir:
        config = os.path.join(working_dir, config)
    try:
        with fsspec.open(config, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise AirflowException(
            f"cannot read the config {config} here, on the Airflow worker ({exc}); the DAG reads its "
            "dumps: section, so put it where the worker sees it (shared storage, an fsspec URL, or working_dir)"
        ) from None
    if not isinstance(data, dict):
        raise AirflowException(f"{config}: expected a mapping")
    base = config.rsplit("/", 1)[0] if "://" in config else str(Path(config).resolve().parent)
    return data, base


def output_dir_of(data: dict[str, Any], base: str) -> str:
    """The config's output_dir, a relative one resolved against the config's folder (as crawlmill does)."""
    output = str(data.get("output_dir") or "")
    if not output:
        raise AirflowException("the config has no output_dir")
    return output if "://" in output or os.path.isabs(output) else os.path.normpath(os.path.join(base, output))
