"""The first stages of the README's demo (configs/demo.yaml on samples/), run one at a time as
`crawlmill run CONFIG --only STAGE`, for the fault tests (test_faults_disk.py, test_leftovers.py):
the same bytes as the undisturbed demo run (tests/crawlmill/demo_checksums.json) for the stages run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml
from typer.testing import CliRunner

from crawlmill.cli import app
from tests.conftest import REPO

REFERENCE = REPO / "tests/crawlmill/demo_checksums.json"
MISSING = hashlib.sha256(b"(missing)").hexdigest()  # what demo_checksums() records for an absent file


def demo_config(output_dir: Path, extra_inputs: Iterable[Any] = (), left_out: tuple[str, ...] = ("train",)) -> dict[str, Any]:
    """configs/demo.yaml with its paths made absolute (the config is written elsewhere), its outputs
    under `output_dir`, `extra_inputs` after its WARC files, and the `left_out` sections removed."""
    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    config["output_dir"] = str(output_dir)
    config["ingest"]["inputs"] = [str(REPO / "configs" / p) for p in config["ingest"]["inputs"]] + [str(p) for p in extra_inputs]
    for side in ("positive", "negative"):
        config["quality"]["train"][side] = [f"{lang}={REPO / 'configs' / path}" for lang, path in (s.split("=", 1) for s in config["quality"]["train"][side])]
    for section in left_out:
        config.pop(section)
    return config


def write_demo_config(path: Path, output_dir: Path) -> Path:
    """The demo config with its outputs under `output_dir`; the optional `quality:` and `train:`
    sections left out (the stages run here are before them, and nothing they read changes)."""
    path.write_text(yaml.safe_dump(demo_config(output_dir, left_out=("quality", "train"))))
    return path


def run_only(config: Path, stage: str, *options: str) -> Any:
    """`crawlmill run CONFIG --only STAGE [OPTIONS]` in this process (on the test session's Ray): a
    click Result, `output` holding stdout and stderr."""
    return CliRunner().invoke(app, ["run", str(config), "--only", stage, "--no-progress", *options])


def reference_checksums(stages: tuple[str, ...]) -> dict[str, str]:
    """The undisturbed demo run's sha256 of every file of `stages` it records (parts, quarantine,
    duplicates, the dedup report, stats, _SUCCESS)."""
    reference = json.loads(REFERENCE.read_text())
    return {name: digest for name, digest in reference.items() if name.split("/")[0] in stages}


def checksums(root: Path, stages: tuple[str, ...]) -> dict[str, str]:
    """sha256 of the files of `root` that reference_checksums(stages) names (MISSING if absent)."""
    found = {}
    for name in reference_checksums(stages):
        path = root / name
        found[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else MISSING
    return found
