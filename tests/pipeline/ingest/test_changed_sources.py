"""An input file replaced since ingest read it (downloaded again after a transfer cut it short) has
its part made again by a rerun of the same command, in a finished folder too; the folder ends as
a fresh ingest of the files as they are now (pipeline/ingest/changed.py)."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq

from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.stage import FilterStage
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageInputMismatch
from tests.conftest import SAMPLES

DUMP = SAMPLES / "crawl-data/CC-MAIN-2024-10/segments"


def _ingest(inputs, out):
    stage = IngestStage(IngestConfig(inputs=[str(inputs)]))
    return stage, run_stage(stage, out, progress=False)


def _files(tmp_path):
    """Two of the sample crawl's WARC files in one folder, the first cut short as a failed
    download leaves it; and the whole first file, to put in its place."""
    warcs = sorted(DUMP.glob("*/warc/*.warc.gz"))[:2]
    folder = tmp_path / "crawl"
    folder.mkdir()
    for warc in warcs:
        shutil.copy(warc, folder / warc.name)
    whole = folder / warcs[0].name
    data = whole.read_bytes()
    whole.write_bytes(data[: len(data) * 2 // 3])
    return folder, whole, data


def _folder(out) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name not in ("_tasks.json", "_run.json")}


def test_a_file_downloaded_again_is_ingested_again_by_the_same_command(ray_local, tmp_path):
    folder, cut, whole = _files(tmp_path)
    _, first = _ingest(folder, tmp_path / "out")
    assert first.ok and first.stats["quarantined"] == 1  # the cut record: truncated_gzip
    marker = json.loads((tmp_path / "out/_parts/part-00000.json").read_text())
    assert marker["source_bytes"] == len(whole) * 2 // 3
    assert run_stage(FilterStage(FilterConfig(inputs=[str(tmp_path / "out")])), tmp_path / "filter", progress=False).ok

    cut.write_bytes(whole)  # downloaded again
    stage, again = _ingest(folder, tmp_path / "out")
    assert again.ok and not again.already_done and again.finished_before == 1  # the other part stays done
    assert any(line.startswith(f"1 input file(s) changed since they were ingested, their parts made again: {cut} (") for line in stage.report(again))
    assert again.stats["quarantined"] == 0 and again.stats["in"] > first.stats["in"]
    assert not (tmp_path / "out/_quarantine/part-00000.parquet").exists() or pq.read_table(tmp_path / "out/_quarantine/part-00000.parquet").num_rows == 0

    _, fresh = _ingest(folder, tmp_path / "fresh")  # the files as they are now, into a new folder
    assert fresh.stats == again.stats and _folder(tmp_path / "out") == _folder(tmp_path / "fresh")
    # A rerun now is done, and the filter that read the earlier folder says its input was made again.
    assert _ingest(folder, tmp_path / "out")[1].already_done
    try:
        run_stage(FilterStage(FilterConfig(inputs=[str(tmp_path / "out")])), tmp_path / "filter", progress=False)
        raise AssertionError("the filter folder of the earlier ingest counted as done")
    except StageInputMismatch as exc:
        assert "an input made again since" in str(exc)


def test_an_unfinished_folder_makes_the_changed_files_part_again_and_old_markers_are_not_compared(ray_local, tmp_path):
    folder, cut, whole = _files(tmp_path)
    assert _ingest(folder, tmp_path / "out")[1].ok
    (tmp_path / "out/_SUCCESS").unlink()  # as a run killed before its end leaves it
    cut.write_bytes(whole)
    _, resumed = _ingest(folder, tmp_path / "out")
    assert resumed.ok and resumed.finished_before == 1 and resumed.stats["quarantined"] == 0

    # A marker of a version that did not record the size: not compared, the folder stays done.
    marker = tmp_path / "out/_parts/part-00000.json"
    data = json.loads(marker.read_text())
    del data["source_bytes"]
    marker.write_text(json.dumps(data))
    cut.write_bytes(whole[:1000])
    assert _ingest(folder, tmp_path / "out")[1].already_done


def test_a_file_replaced_in_an_object_store_is_found_from_one_listing(tmp_path):
    """The sizes of files in a bucket come from one listing of their folder (a real S3 server); the
    size a task records is the object's."""
    import pytest

    pytest.importorskip("s3fs")
    from tests.s3server import moto_s3

    from crawlmill.pipeline.ingest import changed

    with moto_s3("crawl") as (fs, _):
        files = ["s3://crawl/warc/a.warc.gz", "s3://crawl/warc/b.warc.gz", "s3://crawl/other/c.warc.gz"]
        for n, url in enumerate(files):
            fs.pipe_file(url.removeprefix("s3://"), b"x" * (100 + n))
        for n, url in enumerate(files):  # the markers as the tasks write them
            sizes = {"index": n, "source": url, "in": 0, "kept": 0, "dropped": {}, "quarantined": 0, "counters": {}, "source_bytes": changed.source_size(url)}
            (tmp_path / "_parts").mkdir(exist_ok=True)
            (tmp_path / f"_parts/part-{n:05d}.json").write_text(json.dumps(sizes))
        assert changed.source_size(files[1]) == 101 and changed.changed_sources(tmp_path, files) == []
        fs.pipe_file("crawl/warc/b.warc.gz", b"y" * 5000)
        fs.pipe_file("crawl/other/c.warc.gz", b"z" * 102)  # replaced, same size: a size cannot tell
        assert changed.changed_sources(tmp_path, files) == [changed.ChangedSource(1, files[1], 101, 5000)]
    # Files read over HTTP (no listing): no size recorded, none compared.
    assert changed.source_size("https://data.commoncrawl.org/crawl-data/x.warc.wet.gz") is None
