"""Object-storage credentials never leave the environment they are given in: a `crawlmill ingest`
from and to `s3://` (a moto S3 server on loopback, tests/s3server.py), run as a user runs it, writes
the secret key and the key id into no object of the bucket, no line it prints and no file of its
Ray session (logs included); its errors (a bucket that does not exist) do not carry the secret; and
a URL with the credentials written into it (`s3://KEY:SECRET@bucket/...`, which s3fs would take
for a bucket name and echo in its errors) is refused before anything runs, the message redacted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from crawlmill.pathsafety import redact
from tests.conftest import REPO
from tests.s3server import SECRET, moto_s3

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "crawlmill-creds"
WARC = REPO / "samples/crawl-data/CC-MAIN-2023-50/segments/1701141696281.12/warc/CC-MAIN-20231128083443-20231128113443-00000.warc.gz"


def _crawlmill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crawlmill.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_credentials_appear_in_no_output_log_or_error() -> None:
    with moto_s3(BUCKET) as (fs, s3_env):
        key_id = s3_env["AWS_ACCESS_KEY_ID"]
        fs.put_file(str(WARC), f"{BUCKET}/in/{WARC.name}")
        ray_tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # this run's Ray session, logs included
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(s3_env, RAY_TMPDIR=ray_tmp)

        done = _crawlmill(env, "ingest", f"s3://{BUCKET}/in/*.warc.gz", "--output", f"s3://{BUCKET}/out/ingest")
        assert done.returncode == 0, done.stderr
        objects = fs.find(f"{BUCKET}/out")
        assert any(name.endswith("_tasks.json") for name in objects) and any(name.endswith(".parquet") for name in objects), objects
        for name in fs.find(BUCKET):
            data = fs.cat_file(name)
            assert SECRET.encode() not in data and key_id.encode() not in data, name
        assert SECRET not in done.stdout + done.stderr and key_id not in done.stdout + done.stderr
        session_files = [p for p in Path(ray_tmp).rglob("*") if p.is_file() and not p.is_socket()]
        assert any(p.parent.name == "logs" for p in session_files), "no Ray session logs found to check"
        for path in session_files:
            data = path.read_bytes()
            assert SECRET.encode() not in data and key_id.encode() not in data, path

        # A bucket that does not exist: an error that names no secret.
        missing = _crawlmill(env, "ingest", f"s3://{BUCKET}/in/*.warc.gz", "--output", "s3://no-such-bucket/out")
        assert missing.returncode == 2 and "bucket does not exist" in missing.stderr, missing.stderr
        assert SECRET not in missing.stdout + missing.stderr

        # Credentials written into a URL, as input or as output: refused up front, redacted.
        local_out = Path(ray_tmp) / "local-out"
        for args in (
            [f"s3://{key_id}:{SECRET}@{BUCKET}/in/*.warc.gz", "--output", str(local_out)],
            [f"s3://{BUCKET}/in/*.warc.gz", "--output", f"s3://{key_id}:{SECRET}@{BUCKET}/out2"],
        ):
            refused = _crawlmill(env, "ingest", *args)
            assert refused.returncode == 2 and "a URL with a password in it is refused" in refused.stderr, refused.stderr
            assert SECRET not in refused.stdout + refused.stderr and f"{key_id}:***@{BUCKET}" in refused.stderr
        assert not local_out.exists()  # refused before a folder or _tasks.json was written
        assert not fs.find(f"{BUCKET}/out2")
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_redact_hides_passwords_with_slashes_and_keeps_ports() -> None:
    # AWS secret keys may hold "/" and "+"; a port before a path with "@" is not a password
    assert redact("cannot open s3://AKIA:ab/c+d@bucket/x: bad") == "cannot open s3://AKIA:***@bucket/x: bad"
    assert redact("http://host:8080/p/f@v2 and s3://bucket/a:b@c") == "http://host:8080/p/f@v2 and s3://bucket/a:b@c"


def test_print_config_never_shows_a_urls_password(tmp_path: Path) -> None:
    """--print-config of a config holding `KEY:SECRET@` URLs: the secret appears in no output."""
    import yaml
    from typer.testing import CliRunner

    from crawlmill.cli import app

    url = "s3://AKIAPRINTCONFIG:pr1nt/s3cret@bucket"
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"output_dir": f"{url}/out", "ingest": {"inputs": [f"{url}/in/*.warc.gz"]}}))
    for args in (["run", str(tmp_path / "run.yaml"), "--print-config"], ["ingest", f"{url}/in/x.warc.gz", "--output", str(tmp_path / "o"), "--print-config"]):
        result = CliRunner().invoke(app, args)
        assert "pr1nt" not in result.stdout + result.stderr and "AKIAPRINTCONFIG" in result.stdout + result.stderr, (args, result.output)
