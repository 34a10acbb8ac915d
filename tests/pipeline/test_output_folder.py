"""What --overwrite may delete (pipeline/output_folder.py, crawlmill/files.py remove_tree):

- an output folder at a bucket's root (`s3://bucket`) loses the objects crawlmill wrote, never the
  bucket, which crawlmill did not create and whose owner gave it a policy and versioning (s3fs's
  recursive rm of a bucket name deletes the bucket);
- a name starting with "_" that crawlmill never writes (`_my_notes/`, `_index_backup_by_me/`) is
  someone else's: --overwrite refuses, and the refusal names it;
- every "_" name crawlmill does write at the top of a folder is its own (OWN_NAMES against the
  constants of the modules that write them; test_demo.py checks every folder of the demo run).

S3 is a real server on loopback (moto, tests/s3server.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from crawlmill.pipeline.output_folder import OWN_NAMES, OutputFolderRefused, check_output_folder, reset_output
from tests.conftest import REPO

SAMPLES = REPO / "samples/crawl-data/CC-MAIN-2023-50"
# One moto server's buckets outlive it in this process (moto's backends are global): a bucket each.
BUCKET_API, BUCKET_CLI, BUCKET_USER = "crawlmill-root-api", "crawlmill-root-cli", "crawlmill-underscore"


def _s3():
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from tests.s3server import moto_s3

    return moto_s3


def _client(env: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")


def _own_bucket(fs, env: dict[str, str], bucket: str) -> None:
    """Give `bucket` what its owner would: versioning and a policy, which a deleted bucket loses."""
    client = _client(env)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _bucket_kept(env: dict[str, str], bucket: str) -> list[str]:
    """The keys left in `bucket`, once its versioning and policy are checked to be still there."""
    client = _client(env)
    assert client.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"
    assert bucket in client.get_bucket_policy(Bucket=bucket)["Policy"]
    return [entry["Key"] for entry in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_overwrite_at_a_bucket_root_deletes_the_objects_not_the_bucket():
    from crawlmill.files import remove_tree

    with _s3()(BUCKET_API) as (fs, env):
        _own_bucket(fs, env, BUCKET_API)
        for name in ("_tasks.json", "_SUCCESS", "_stats.json", "part-00000.parquet", "_parts/part-00000.json", "_work/_done/x/a.json", "_quarantine/"):
            fs.pipe_file(f"{BUCKET_API}/{name}", b"{}")
        for url in (f"s3://{BUCKET_API}", f"s3://{BUCKET_API}/"):
            check_output_folder(url, overwrite=True)
        reset_output(f"s3://{BUCKET_API}")
        assert _bucket_kept(env, BUCKET_API) == []
        fs.pipe_file(f"{BUCKET_API}/_work/x", b"1")
        remove_tree(f"s3://{BUCKET_API}/")  # the runner's own deletions (run_stage --overwrite) go through remove_tree
        assert _bucket_kept(env, BUCKET_API) == []
        remove_tree(f"s3://{BUCKET_API}")  # an empty bucket: nothing to do, the bucket stays
        assert _bucket_kept(env, BUCKET_API) == []
        with pytest.raises(ValueError, match="never deletes everything in a store"):
            remove_tree("s3:///")
        remove_tree("s3://no-such-bucket-crawlmill")  # absent: nothing


def test_cli_overwrite_into_a_bucket_root_keeps_the_bucket():
    ray_tmp = tempfile.mkdtemp(prefix="rb-", dir="/tmp")  # Ray's socket paths must be short
    try:
        with _s3()(BUCKET_CLI) as (fs, env):
            _own_bucket(fs, env, BUCKET_CLI)
            run_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | env | {"RAY_TMPDIR": ray_tmp}
            command = [sys.executable, "-m", "crawlmill.cli", "ingest", str(SAMPLES), "--output", f"s3://{BUCKET_CLI}", "--num-cpus", "2", "--no-progress"]
            first = subprocess.run(command, env=run_env, cwd=REPO, capture_output=True, text=True, timeout=300)
            assert first.returncode == 0, first.stderr
            again = subprocess.run([*command, "--overwrite"], env=run_env, cwd=REPO, capture_output=True, text=True, timeout=300)
            kept = _bucket_kept(env, BUCKET_CLI)  # the bucket, with its policy and versioning, whatever the exit status
            assert again.returncode == 0, again.stderr
            assert "_tasks.json" in kept and "_SUCCESS" in kept and any(key.endswith(".parquet") for key in kept)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_underscore_names_crawlmill_never_writes_are_someone_elses(tmp_path):
    out = tmp_path / "filter"
    for name in ("_tasks.json", "_SUCCESS", "_stats.json", "part-00000.parquet", "_parts/part-00000.json", "_quarantine/part-00000.parquet", "_my_notes/report.csv"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("{}")
    check_output_folder(out)  # resumed: fine
    with pytest.raises(OutputFolderRefused, match=r"holds files crawlmill never writes \(_my_notes\): --overwrite would delete them"):
        reset_output(out)
    assert (out / "_my_notes/report.csv").read_text() == "{}" and (out / "_tasks.json").exists()
    (out / "_my_notes/report.csv").unlink()
    (out / "_my_notes").rmdir()
    reset_output(out)
    assert not out.exists()

    with _s3()(BUCKET_USER) as (fs, _):
        for name in ("_tasks.json", "_SUCCESS", "_stats.json", "part-00000.parquet", "_duplicates/part-00000.parquet", "_report/report.json",
                     "_index/manifest.json", "_index_backup_by_me/y.txt", "notes.txt"):  # fmt: skip
            fs.pipe_file(f"{BUCKET_USER}/run1/dedup/{name}", b"{}")
        with pytest.raises(OutputFolderRefused, match=rf"^s3://{BUCKET_USER}/run1/dedup holds files crawlmill never writes \(_index_backup_by_me, notes.txt\)"):
            reset_output(f"s3://{BUCKET_USER}/run1/dedup")
        assert fs.cat_file(f"{BUCKET_USER}/run1/dedup/_index_backup_by_me/y.txt") == b"{}" and fs.exists(f"{BUCKET_USER}/run1/dedup/_tasks.json")


def test_every_underscore_name_crawlmill_writes_is_its_own():
    """The "_" names of the modules that write them (a renamed constant must be renamed in OWN_NAMES)."""
    import fnmatch

    from crawlmill.pipeline import accounting, dumps, output_folder, parts
    from crawlmill.pipeline.dedup import report
    from crawlmill.pipeline.dedup import stage as dedup
    from crawlmill.pipeline.quality import stage as quality
    from crawlmill.pipeline.remix import layout as remix

    written = [
        output_folder.TASKS_FILE, output_folder.SUCCESS_FILE, output_folder.STATS_FILE, output_folder.WORK_DIR, parts.PARTS_DIR,
        parts.QUARANTINE_DIR, parts.DROPPED_DIR, report.REPORT_DIR, dumps.INDEX_FOLDER, dumps.STATE_FILE, quality.MODEL_DIR, quality.SUMMARY,
        accounting.RUN_FILE, remix.MIXTURE_FILE, remix.MIXTURE_PLOT, dedup.DUPLICATES_DIR,
    ]  # fmt: skip
    assert all(name.startswith("_") for name in written)
    assert [name for name in written if not any(fnmatch.fnmatchcase(name, pattern) for pattern in OWN_NAMES)] == []
    assert not any(pattern.startswith("_") and set(pattern) & set("*?[") for pattern in OWN_NAMES)  # no "_*": a user's `_x` is theirs
    # the names an earlier remix wrote: its folders stay crawlmill's (--overwrite deletes them)
    assert all(any(fnmatch.fnmatchcase(name, p) for p in OWN_NAMES) for name in (remix.LEGACY_MIXTURE_FILE, remix.LEGACY_MIXTURE_PLOT, dedup.LEGACY_DUPLICATES_DIR))
