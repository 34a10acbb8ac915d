"""A run config given as an fsspec URL (`crawlmill run s3://bkt/configs/run.yaml`): read from the
store, its relative paths resolved against its folder there (a URL), absolute local paths left
local, and what cannot be read from a URL (train's `base:` file) refused naming the key. Against a
real S3 server on loopback (moto), through the `crawlmill` program as users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from crawlmill.pipeline.config import ConfigError, load_run_config
from crawlmill.pipeline.relative_paths import UrlFolder, resolve_path
from tests.conftest import REPO
from tests.s3server import SECRET, moto_s3

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "crawlmill-cfg"
CONFIG = f"s3://{BUCKET}/configs/run.yaml"


@pytest.fixture(scope="module")
def s3():
    with moto_s3(BUCKET) as (fs, env):
        yield fs, env


def _put(fs, key: str, data: dict) -> str:
    with fs.open(f"{BUCKET}/{key}", "w") as f:
        f.write(yaml.safe_dump(data))
    return f"s3://{BUCKET}/{key}"


def crawlmill(env: dict, *args: str) -> subprocess.CompletedProcess:
    run_env = {**os.environ, **env, "RAY_ADDRESS": "", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "crawlmill.cli", *args], env=run_env, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_relative_paths_join_the_url_folder_and_never_climb_above_its_bucket():
    folder = UrlFolder("s3://bkt/configs")
    assert str(folder.url) == "s3://bkt/configs/"
    assert resolve_path("data/", folder) == "s3://bkt/configs/data/"  # a folder stays a folder
    assert resolve_path("data/*.warc.gz", folder) == "s3://bkt/configs/data/*.warc.gz"
    assert resolve_path("../out", folder) == "s3://bkt/out"
    assert resolve_path("./a//b/../c", folder) == "s3://bkt/configs/a/c"
    assert resolve_path(".", folder) == "s3://bkt/configs" and resolve_path("..", folder) == "s3://bkt"
    assert resolve_path("/abs/out", folder) == "/abs/out"  # an absolute local path stays local
    assert resolve_path("gs://other/x", folder) == "gs://other/x"
    with pytest.raises(ValueError, match=r"\.\./\.\./x: goes above s3://bkt/"):
        resolve_path("../../x", folder)


def test_a_url_config_resolves_its_paths_against_its_own_folder_there(s3, tmp_path):
    fs, _ = s3
    fs.pipe({f"{BUCKET}/elsewhere/ingest/_SUCCESS": b"", f"{BUCKET}/configs/corpus/en.txt": b"text\n"})  # read before any stage runs
    _put(fs, "configs/sections/filter.yaml", {"inputs": ["../../elsewhere/ingest"]})  # relative to the section's file
    _put(fs, "configs/run.yaml", {
        "output_dir": "out",
        "ingest": {"inputs": ["data/", "crawl/*.warc.gz", "s3://other-bucket/x.warc.gz", "/abs/local.warc.gz"]},
        "filter": "sections/filter.yaml",
        "tokenizer": {"inputs": ["en=corpus/en.txt"], "vocab_size": 500},
        "dedup": {"index": str(tmp_path / "index")},
        "train": {"base": "tiny", "output": "runs/tiny"},
    })  # fmt: skip
    config = load_run_config(CONFIG)
    assert config.output_dir == f"s3://{BUCKET}/configs/out"
    assert config.ingest.inputs == [f"s3://{BUCKET}/configs/data/", f"s3://{BUCKET}/configs/crawl/*.warc.gz", "s3://other-bucket/x.warc.gz", "/abs/local.warc.gz"]
    assert config.filter.inputs == [f"s3://{BUCKET}/elsewhere/ingest"]
    assert config.tokenizer.inputs == [f"en=s3://{BUCKET}/configs/corpus/en.txt"]
    assert config.dedup.index == str(tmp_path / "index")
    assert config.train.output == f"s3://{BUCKET}/configs/runs/tiny"
    assert config.sections == ["ingest", "filter", "dedup", "tokenizer", "train"]


def test_what_a_url_config_cannot_resolve_is_refused_naming_the_key(s3):
    fs, _ = s3
    # train's `base:` file is read from local paths only: a relative one under a URL config is refused.
    url = _put(fs, "configs/train-base.yaml", {"output_dir": "out", "train": {"base": "other.yaml"}})
    with pytest.raises(ConfigError, match=r"train-base\.yaml\.train\.base: other\.yaml: relative to a config read from a URL \(s3://crawlmill-cfg/configs/\)"):
        load_run_config(url)
    url = _put(fs, "configs/above.yaml", {"output_dir": "../../out"})
    with pytest.raises(ConfigError, match=r"above\.yaml\.output_dir: \.\./\.\./out: goes above s3://crawlmill-cfg/"):
        load_run_config(url)
    url = _put(fs, "configs/section-above.yaml", {"output_dir": "out", "filter": "../../filter.yaml"})
    with pytest.raises(ConfigError, match=r"section-above\.yaml\.filter: \.\./\.\./filter\.yaml: goes above"):
        load_run_config(url)
    with pytest.raises(ConfigError, match=rf"cannot read s3://{BUCKET}/configs/nope\.yaml: "):
        load_run_config(f"s3://{BUCKET}/configs/nope.yaml")


def test_crawlmill_run_reads_a_config_url_as_the_dag_does(s3, tmp_path):
    """`crawlmill run s3://.../run.yaml --print-config` (the URL once mangled by Path into s3:/...)."""
    fs, env = s3
    _put(fs, "configs/run.yaml", {"output_dir": "out", "ingest": {"inputs": ["data/*.warc.gz"]}, "tokenizer": {"vocab_size": 500}})
    shown = crawlmill(env, "run", CONFIG, "--print-config")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    printed = json.loads(shown.stdout)
    assert printed["output_dir"] == f"s3://{BUCKET}/configs/out"
    assert printed["ingest"]["inputs"] == [f"s3://{BUCKET}/configs/data/*.warc.gz"]
    missing = crawlmill(env, "run", f"s3://{BUCKET}/configs/missing.yaml", "--print-config")
    assert missing.returncode == 2 and f"cannot read s3://{BUCKET}/configs/missing.yaml" in missing.stderr, missing.stderr
    assert "s3:/crawlmill" not in missing.stderr
    assert SECRET not in shown.stdout + shown.stderr + missing.stdout + missing.stderr


def test_a_file_url_config_is_the_local_file(tmp_path):
    (tmp_path / "run.yaml").write_text("output_dir: out\ningest: {inputs: [data/]}\n")
    by_url = load_run_config(f"file://{tmp_path}/run.yaml")
    by_path = load_run_config(tmp_path / "run.yaml")
    assert by_url.output_dir == by_path.output_dir == str(tmp_path / "out")
    assert by_url.ingest.inputs == by_path.ingest.inputs == [str(tmp_path / "data")]
