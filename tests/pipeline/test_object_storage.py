"""The pipeline on object storage: configs/demo.yaml (without training) from `s3://` inputs to an
`s3://` output folder on a real S3 server on loopback (moto's server mode, started and stopped
here). Every file is byte for byte that of the same run on local disk; a run killed mid-stage
and a run with deleted parts and markers resume to the same bytes; the secret key given in the
environment appears in no output object and in no line the command printed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.s3server import SECRET, moto_s3

pytestmark = pytest.mark.heavy(135)  # seconds on 2 cores: runs first (tests/conftest.py)

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "crawlmill-test"
# A driver of its own (a subprocess, so it can be killed) on an in-process Ray on loopback.
DRIVER = """
import sys, tempfile
from crawlmill.pipeline.ray_tasks import init_local_ray
init_local_ray(num_cpus=2, include_dashboard=False, _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"), logging_level="ERROR")
from crawlmill.cli import app
app(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on loopback with the repo's samples uploaded; the environment that points
    s3fs at it (fake keys), as a dict for subprocesses."""
    with moto_s3(BUCKET) as (fs, env):
        for path in sorted((REPO / "samples").rglob("*")):
            if path.is_file() and ("crawl-data" in path.parts or "quality" in path.parts):
                fs.put_file(str(path), f"{BUCKET}/{path.relative_to(REPO)}")
        yield fs, env


def _config(root: str, output: str) -> dict:
    """configs/demo.yaml without its train section, inputs under `root` (the bucket), dedup's
    partitions received as one block."""
    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    config.pop("train")
    config["output_dir"] = output
    config["ingest"]["inputs"] = [f"{root}/samples/crawl-data/*/segments/*/warc/*.warc.gz"]
    # dedup's 2 partitions as one block: its steps between partitions read each sender's bytes of
    # both at once into a local spool and send one file a step for both (shuffle.block_io) in Ray's
    # workers, and still give the local bytes
    config["dedup"]["partitions_per_task"] = 2
    for side in ("positive", "negative"):
        config["quality"]["train"][side] = [f"{s.split('=')[0]}={root}/samples/quality/{s.rsplit('/', 1)[1]}" for s in config["quality"]["train"][side]]
    return config


def _run(config_path: Path, env: dict, *args: str, kill_when=None) -> subprocess.CompletedProcess | None:
    """`crawlmill run CONFIG` in a driver process; with `kill_when`, SIGTERM it once that returns True."""
    command = [sys.executable, "-c", DRIVER, "run", str(config_path), "--no-progress", *args]
    proc = subprocess.Popen(command, env={**os.environ, **env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if kill_when is not None:
        deadline = time.monotonic() + 240
        while proc.poll() is None and not kill_when() and time.monotonic() < deadline:
            time.sleep(0.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            proc.communicate()
            return None
    output, _ = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(command, proc.returncode, output)


def _checksums(fs, url: str) -> dict[str, str]:
    """sha256 of the files the demo test checks (tests/crawlmill/demo_checksums.json, recorded from
    the local run; test_demo keeps the local run equal to it), read from the bucket; the manifest
    with its paths made relative to the output folder, as there."""
    reference = json.loads((REPO / "tests/crawlmill/demo_checksums.json").read_text())
    root = url.removeprefix("s3://")
    found = {}
    for name in reference:
        if name.startswith("shards/manifest.json"):
            manifest = json.loads(fs.cat_file(f"{root}/shards/manifest.json"))
            relative = lambda path: path.removeprefix(f"{url}/")  # noqa: E731
            manifest["inputs"] = [relative(p) for p in manifest["inputs"]]
            manifest["tokenizer"]["path"] = relative(manifest["tokenizer"]["path"])
            manifest["blend"]["mixture"]["remix"] = relative(manifest["blend"]["mixture"]["remix"])
            data = json.dumps(manifest, indent=1, ensure_ascii=False).encode()
        else:
            data = fs.cat_file(f"{root}/{name}") if fs.exists(f"{root}/{name}") else b"(missing)"
        found[name] = hashlib.sha256(data).hexdigest()
    return found


def test_demo_pipeline_on_s3_gives_the_local_bytes_and_resumes(s3, tmp_path):
    fs, env = s3
    url = f"s3://{BUCKET}/out"
    (tmp_path / "s3.yaml").write_text(yaml.safe_dump(_config(f"s3://{BUCKET}", url)))

    # Killed while dedup runs (its shuffle files are on S3), then resumed to the end.
    started = time.perf_counter()
    assert _run(tmp_path / "s3.yaml", env, kill_when=lambda: fs.exists(f"{BUCKET}/out/dedup/_work/_done/map")) is None
    assert not fs.exists(f"{BUCKET}/out/shards/_SUCCESS")
    resumed = _run(tmp_path / "s3.yaml", env)
    assert resumed.returncode == 0, resumed.stdout
    assert "pack done" in resumed.stdout and "were already finished" in resumed.stdout
    s3_seconds = time.perf_counter() - started

    # Byte for byte the local run's output (the demo's recorded checksums), shards included.
    expected = json.loads((REPO / "tests/crawlmill/demo_checksums.json").read_text())
    assert _checksums(fs, url) == expected

    # Parts and markers deleted (as a lost write leaves them): a rerun redoes just those.
    for name in ("dedup/_SUCCESS", "dedup/_parts/part-00001.json", "dedup/part-00002.parquet", "remix/_SUCCESS", "remix/_parts/part-00000.json"):
        fs.rm(f"{BUCKET}/out/{name}")
    fs.pipe_file(f"{BUCKET}/out/dedup/part-00009.parquet", b"a stray part without a marker")
    again = _run(tmp_path / "s3.yaml", env)
    assert again.returncode == 0, again.stdout
    fs.rm(f"{BUCKET}/out/dedup/part-00009.parquet")
    assert _checksums(fs, url) == expected

    # The secret key is in no object written and in nothing the command printed.
    assert not fs.glob(f"{BUCKET}/out/**/.tmp-*")
    for name in fs.find(f"{BUCKET}/out"):
        assert SECRET.encode() not in fs.cat_file(name), name
    for run in (resumed, again):
        assert SECRET not in run.stdout
    print(f"s3 run (killed + resumed): {s3_seconds:.1f} s")


def test_temporary_files_never_appear_under_final_names(s3):
    """A write that fails leaves nothing under its final name on S3, and a reader of a stage folder
    takes only the parts its markers name."""
    fs, _ = s3
    from crawlmill.files import as_path, atomic_path, atomic_write_json, atomic_write_text
    from crawlmill.pipeline.parts import input_parts

    folder = as_path(f"s3://{BUCKET}/unit")
    with pytest.raises(RuntimeError):
        with atomic_path(folder / "part-00000.parquet") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not fs.exists(f"{BUCKET}/unit/part-00000.parquet")
    atomic_write_text(folder / "part-00000.parquet", "x")
    atomic_write_text(folder / "part-00001.parquet", "a part without a marker")
    atomic_write_json(folder / "_parts/part-00000.json", {"index": 0})
    atomic_write_text(folder / "_SUCCESS", "")
    assert input_parts(str(folder)) == [f"s3://{BUCKET}/unit/part-00000.parquet"]
    # A part that is not the size its marker records (sizes from the one listing) is not trusted either.
    atomic_write_text(folder / "part-00002.parquet", "damaged")
    atomic_write_json(folder / "_parts/part-00002.json", {"index": 2, "files": {"part-00002.parquet": 99}})
    with pytest.raises(FileNotFoundError, match="part-00002.json are missing or not the size it records"):
        input_parts(str(folder))
    with tempfile.TemporaryDirectory() as local:
        Path(local, "part-00003.parquet").write_text("stray")
        Path(local, "_SUCCESS").write_text("")
        with pytest.raises(FileNotFoundError, match="none of its 1 part files"):  # no marker at all: not a stage's folder, not 0 documents
            input_parts(local)


def test_an_input_folder_in_the_bucket_is_searched_like_a_local_one(s3):
    """`s3://bucket/folder/` (no glob) stands for the archives under it, as a local folder does."""
    from crawlmill.pipeline.ingest.sources import InputError, expand_inputs

    fs, env = s3
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        local = expand_inputs([str(REPO / "samples/crawl-data")])
        found = expand_inputs([f"s3://{BUCKET}/samples/crawl-data/", f"s3://{BUCKET}/samples/crawl-data/CC-MAIN-2023-50"])
        assert [u.split("/samples/", 1)[1] for u in found] == [p.split("/samples/", 1)[1] for p in local] and len(found) == 8
        with pytest.raises(InputError, match="the folder holds no .warc"):
            expand_inputs([f"s3://{BUCKET}/samples/quality"])


def test_an_upload_error_names_the_file(s3):
    """A bucket that does not exist: the error names the object that could not be written."""
    from crawlmill.files import atomic_write_json

    _, env = s3
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        with pytest.raises(OSError, match="s3://no-such-bucket-crawlmill/run/_tasks.json"):
            atomic_write_json("s3://no-such-bucket-crawlmill/run/_tasks.json", {"stage": "x"})

