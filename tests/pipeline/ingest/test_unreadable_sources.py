"""An input file that cannot be opened (gone since it was listed, a folder, missing from its
bucket, forbidden) fails its task instead of ending as a quarantine entry: a rerun can fix it,
so the stage must not end with _SUCCESS. Inputs that name nothing at all (a prefix with nothing
under it, a bucket that does not exist) are refused up front, as a missing local path is.
Locally on a Ray run, and on a real S3 server on loopback (moto's server mode); HTTP (a 404 of
a dump's listed file) in test_sources.py."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.sources import InputError, expand_inputs
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import run_part
from tests.conftest import REPO

WARCS = sorted((REPO / "samples/crawl-data").rglob("*.warc.gz"))[:3]
BUCKETS = iter(range(1_000_000))  # moto's server keeps its buckets for the process: a new one per test


def test_a_local_file_gone_or_made_a_folder_after_listing_fails_its_task(ray_local, tmp_path):
    """Listed, then deleted (or replaced by a folder of its name) before its task opens it: those
    tasks fail with the file and the cause, the stage has no _SUCCESS and quarantines nothing; with
    the files back, a rerun does only them and the folder is the one an uninterrupted run makes."""
    data = tmp_path / "data"
    data.mkdir()
    for path in WARCS:
        shutil.copy(path, data / path.name)
    names = [p.name for p in WARCS]
    stage = IngestStage(IngestConfig(inputs=[str(data)]))
    (data / names[0]).unlink()
    (data / names[2]).unlink()
    (data / names[2]).mkdir()  # a folder named like the file
    out = tmp_path / "out"
    result = run_stage(stage, out, progress=False)
    assert not result.ok and not (out / "_SUCCESS").exists() and not (out / "_quarantine").exists()
    first, third = str((data / names[0]).resolve()), str((data / names[2]).resolve())
    assert sorted(result.failures) == [
        (first, f"FileNotFoundError: cannot read {first}: no such file; if it stays unreadable, "
                "the ingest config's unreadable_sources: quarantine records it in _quarantine instead"),
        (third, f"IsADirectoryError: cannot read {third}: it is a folder, not a file; if it stays unreadable, "
                "the ingest config's unreadable_sources: quarantine records it in _quarantine instead"),
    ]  # fmt: skip
    assert [p.name for p in out.glob("part-*.parquet")] == ["part-00001.parquet"]

    (data / names[2]).rmdir()
    for name in (names[0], names[2]):
        shutil.copy(next(p for p in WARCS if p.name == name), data / name)
    again = run_stage(IngestStage(IngestConfig(inputs=[str(data)])), out, progress=False)
    assert again.ok and again.finished_before == 1 and (out / "_SUCCESS").exists()
    reference = run_stage(IngestStage(IngestConfig(inputs=[str(data)])), tmp_path / "reference", progress=False)
    assert again.stats == reference.stats and reference.stats["quarantined"] == 0
    for part in ("part-00000.parquet", "part-00001.parquet", "part-00002.parquet"):
        assert (out / part).read_bytes() == (tmp_path / "reference" / part).read_bytes()


def test_quarantine_setting_keeps_the_old_entry_for_a_missing_local_file(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(WARCS[0], data / WARCS[0].name)
    stage = IngestStage(IngestConfig(inputs=[str(data)], unreadable_sources="quarantine"))
    (data / WARCS[0].name).unlink()
    stats = run_part(stage, stage.tasks()[0], str(tmp_path / "out"))
    assert stats["quarantined"] == 1 and stats["kept"] == 0
    (entry,) = pq.read_table(tmp_path / "out/_quarantine/part-00000.parquet").to_pylist()
    assert entry["error"] == "unreadable_source" and entry["detail"].startswith("FileNotFoundError: ")


@pytest.fixture
def s3():
    """A moto S3 server on loopback and a bucket of its own holding in/a.warc.gz, other/x.dat (the
    environment of this process points s3fs at it); the bucket's name."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from tests.s3server import moto_s3

    bucket = f"crawlmill-unreadable-{next(BUCKETS)}"
    with moto_s3(bucket) as (fs, env):
        fs.put_file(str(WARCS[0]), f"{bucket}/in/a.warc.gz")
        fs.pipe_file(f"{bucket}/other/x.dat", b"not an archive")
        yield bucket


def _fresh_s3fs() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()  # nothing known from an earlier listing: each request is made


def test_bucket_inputs_that_name_nothing_are_refused_before_anything_is_written(s3, tmp_path):
    """A prefix with nothing under it (a typo), a name ending in / that is a file, a bucket that does
    not exist: `error: URL: no such file or folder`, exit 2, no output folder, as for a local path."""
    from typer.testing import CliRunner

    from crawlmill.cli import app

    refused = {
        f"s3://{s3}/nothere/": "no such file or folder",
        f"s3://{s3}/nothere": "no such file or folder",
        f"s3://{s3}/in/a.warc.gz/": "no such file or folder",
        "s3://no-such-bucket-crawlmill/x.warc.gz": "no such file or folder (the bucket no-such-bucket-crawlmill does not exist)",
        "s3://no-such-bucket-crawlmill/crawl/": "no such file or folder (the bucket no-such-bucket-crawlmill does not exist)",
        "s3://no-such-bucket-crawlmill/*.warc.gz": "the pattern matches no file (the bucket no-such-bucket-crawlmill does not exist)",
        "https://mirror.example/crawl-data/": "names a folder, and HTTP(S) has no listing to search one",
    }
    for url, message in refused.items():
        _fresh_s3fs()
        out = tmp_path / "out"
        result = CliRunner().invoke(app, ["ingest", f"s3://{s3}/in/a.warc.gz", url, "--output", str(out)])
        assert result.exit_code == 2 and f"error: {url}: {message}" in result.stderr, (url, result.output)
        assert not out.exists()
    # What does exist is taken; an explicit file URL is not looked up (a listing of thousands costs no request each).
    _fresh_s3fs()
    found = expand_inputs([f"s3://{s3}/in/", f"s3://{s3}/other/x.dat", f"s3://{s3}/in/gone.warc.gz"])
    assert found == [f"s3://{s3}/in/a.warc.gz", f"s3://{s3}/in/gone.warc.gz", f"s3://{s3}/other/x.dat"]
    with pytest.raises(InputError, match=f"^s3://{s3}/other/: the folder holds no .warc"):
        expand_inputs([f"s3://{s3}/other/"])


def test_an_object_missing_or_forbidden_fails_its_task(s3, tmp_path, monkeypatch):
    """A listed object not in its bucket, or a bucket the credentials may not read: the task raises
    (FileNotFoundError / PermissionError, not retried), naming the object; no part is left."""
    import moto.settings

    _fresh_s3fs()
    gone, there = f"s3://{s3}/in/gone.warc.gz", f"s3://{s3}/in/a.warc.gz"
    stage = IngestStage(IngestConfig(inputs=[there, gone]))
    ok_stats = run_part(stage, stage.tasks()[0], str(tmp_path / "out"))
    assert ok_stats["kept"] > 0 and ok_stats["quarantined"] == 0
    with pytest.raises(FileNotFoundError, match=f"^cannot read {gone}: no such file; if it stays unreadable"):
        run_part(stage, stage.tasks()[1], str(tmp_path / "out"))
    assert not list((tmp_path / "out").glob("part-00001*")) and not (tmp_path / "out/_quarantine").exists()

    quarantining = IngestStage(IngestConfig(inputs=[there, gone], unreadable_sources="quarantine"))
    assert run_part(quarantining, quarantining.tasks()[1], str(tmp_path / "q"))["quarantined"] == 1
    (entry,) = pq.read_table(tmp_path / "q/_quarantine/part-00001.parquet").to_pylist()
    assert entry["error"] == "unreadable_source" and entry["source"] == gone

    # Wrong credentials: the server now checks them (moto's IAM), and knows not the test's key.
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    _fresh_s3fs()
    with pytest.raises(PermissionError, match=f"^cannot read {there}: permission denied"):
        run_part(stage, stage.tasks()[0], str(tmp_path / "forbidden"))
    assert not list((tmp_path / "forbidden").glob("part-*"))
    with pytest.raises(InputError, match=f"^s3://{s3}/in/: cannot be listed: PermissionError"):
        expand_inputs([f"s3://{s3}/in/"])  # a folder: nothing to list, refused up front
    _fresh_s3fs()
    assert expand_inputs([there]) == [there]  # a file: its task says what is wrong (a bucket it cannot probe is not called missing)
