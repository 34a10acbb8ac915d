"""The record of what an output folder is made from (pipeline/task_record.py), with real stages on
real Ray: a folder whose input stage folder was made again since is not taken as done."""

import json

import pytest

from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.stage import FilterStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageInputMismatch
from tests.conftest import SAMPLES

WARC = str(SAMPLES / "crawl-data/*/segments/*/warc/*.warc.gz")
WET = str(SAMPLES / "crawl-data/*/segments/*/wet/*.warc.wet.gz")


def test_a_folder_whose_input_was_made_again_is_refused_until_overwritten(ray_local, tmp_path):
    """A user's run: `--only ingest --overwrite` on the WET files instead of the WARC files, then
    `crawlmill run`: filter and every stage after it counted as done, the shards still made of
    the WARC text (exit 0, "accounting: 14 of 14 checks passed")."""
    ingest, filtered = tmp_path / "ingest", tmp_path / "filter"

    def run_ingest(pattern, **kw):
        return run_stage(IngestStage(IngestConfig(inputs=[pattern])), ingest, progress=False, **kw)

    def run_filter(**kw):
        return run_stage(FilterStage(FilterConfig(inputs=[str(ingest)])), filtered, progress=False, **kw)

    assert run_ingest(WARC).ok and run_filter().ok
    assert run_filter().already_done
    remade = run_ingest(WET, overwrite=True)
    with pytest.raises(StageInputMismatch, match=r"an input made again since \(.*ingest: .*--overwrite"):
        run_filter()
    redone = run_filter(overwrite=True)
    assert redone.ok and redone.stats["in"] == remade.stats["kept"]
    assert run_ingest(WET, overwrite=True).ok  # made again the same way: the same record and counts
    assert run_filter().already_done
    record = json.loads((filtered / "_tasks.json").read_text())
    assert list(record["inputs_made"]) == [str(ingest)]
    del record["inputs_made"]  # as a version before inputs were recorded wrote it: stays done
    (filtered / "_tasks.json").write_text(json.dumps(record))
    assert run_filter().already_done
