"""The dedup tests' shared input: the sample corpus's two dumps, ingested once per test module."""

import pytest

from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from tests.conftest import SAMPLES

DUMPS = ["CC-MAIN-2023-50", "CC-MAIN-2024-10"]


def folder_bytes(folder):
    """Every file of `folder` but its `_work/` (kept for resume), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and "_work" not in p.parts}


@pytest.fixture(scope="module")
def ingested(ray_local, tmp_path_factory):
    """A folder holding one ingest output folder per sample dump, named after the dump."""
    root = tmp_path_factory.mktemp("ingested")
    for dump in DUMPS:
        warcs = IngestConfig(inputs=[str(SAMPLES / "crawl-data" / dump / "segments/*/warc/*.warc.gz")])
        assert run_stage(IngestStage(warcs), root / dump, progress=False).ok
    return root
