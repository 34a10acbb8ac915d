"""An object store that cannot be used is one `error: ...` line, exit status 2 (1 when it does not
answer: an outage a rerun may outlast), naming the URL and
saying what to check (crawlmill/cli_common.py store_error), not a Rich traceback of botocore's
frames: no credentials (which variables give them), an endpoint that does not answer
(AWS_ENDPOINT_URL), credentials the store refuses (a bare "Forbidden" names the folder). Run as
users run it (`python -m crawlmill.cli` in a subprocess) against a real S3 server on loopback
(moto, tests/s3server.py); the refused credentials are moto's authentication turned on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.s3server import SECRET, free_port, moto_s3

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "crawlmill-errors"
SAMPLES = REPO / "samples/crawl-data/CC-MAIN-2023-50"
WARC = SAMPLES / "segments/1701141696281.12/warc/CC-MAIN-20231128083443-20231128113443-00000.warc.gz"
NO_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


@pytest.fixture(scope="module")
def s3():
    with moto_s3(BUCKET) as (fs, env):
        fs.put_file(str(WARC), f"{BUCKET}/in/{WARC.name}")
        base = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        # no instance metadata service to ask (none on loopback), botocore's retries of a refused connection cut short
        yield fs, {**base, **env, "AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"}


def _crawlmill(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crawlmill.cli", *args, "--num-cpus", "2", "--no-progress"], cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def _one_error_line(done: subprocess.CompletedProcess, status: int = 2) -> str:
    """The command's only line on stderr, an `error: ...` one, exit status 2 (1: try again later)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == status and len(lines) == 1 and lines[0].startswith("error: "), (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr and SECRET not in done.stdout + done.stderr
    return lines[0]


def test_no_credentials_names_the_url_and_the_variables(s3, tmp_path):
    _, env = s3
    env = {k: v for k, v in env.items() if k not in NO_CREDENTIALS} | {"AWS_SHARED_CREDENTIALS_FILE": "/none", "AWS_CONFIG_FILE": "/none"}
    for args, url in (
        ([str(SAMPLES), "--output", f"s3://{BUCKET}/x"], f"s3://{BUCKET}/x"),  # the output folder: its check is the first request
        ([f"s3://{BUCKET}/in/*.warc.gz", "--output", str(tmp_path / "out")], f"s3://{BUCKET}/in/*.warc.gz"),  # an input
    ):
        line = _one_error_line(_crawlmill(env, "ingest", *args))
        assert url in line and "NoCredentialsError" in line, line
        assert "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line and "AWS_PROFILE" in line, line
    assert not (tmp_path / "out").exists()


def test_an_endpoint_that_does_not_answer_names_aws_endpoint_url(s3):
    """Exit status 1, not 2: an outage may pass, and Airflow skips its retries after a 2."""
    _, env = s3
    down = f"http://127.0.0.1:{free_port()}"
    line = _one_error_line(_crawlmill({**env, "AWS_ENDPOINT_URL": down}, "ingest", str(SAMPLES), "--output", f"s3://{BUCKET}/x"), status=1)
    assert f"s3://{BUCKET}/x" in line and "EndpointConnectionError" in line and f"AWS_ENDPOINT_URL (it is {down})" in line, line


def test_an_output_bucket_that_does_not_exist_says_to_create_it(s3):
    _, env = s3
    line = _one_error_line(_crawlmill(env, "ingest", str(SAMPLES), "--output", "s3://no-such-bucket-here/run"))
    assert "s3://no-such-bucket-here/run" in line and "bucket does not exist" in line and "create the bucket first" in line, line


def test_refused_credentials_name_the_folder(s3, tmp_path, monkeypatch):
    from moto import settings

    fs, env = s3
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # the server checks the (unknown) key from now on
    line = _one_error_line(_crawlmill(env, "ingest", str(SAMPLES), "--output", f"s3://{BUCKET}/x"))
    assert line.startswith(f"error: s3://{BUCKET}/x: Forbidden; the object store refused the request"), line
    line = _one_error_line(_crawlmill(env, "ingest", f"s3://{BUCKET}/in/*.warc.gz", "--output", str(tmp_path / "out")))
    assert f"s3://{BUCKET}/in/*.warc.gz" in line and "refused" in line and "AWS_ACCESS_KEY_ID" in line, line


def test_a_clients_error_from_anywhere_names_its_request(s3, monkeypatch, capsys):
    """An error raised where no folder check named the URL (a listing through s3fs directly): the
    request's object, from s3fs's frame; through user_errors, one line and exit status 2."""
    import typer
    from moto import settings

    from crawlmill.cli_common import user_errors
    from crawlmill.store_errors import store_error

    fs, _ = s3
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    with pytest.raises(PermissionError) as refused:
        fs.ls(f"{BUCKET}/deep/folder")
    said = store_error(refused.value)
    assert said is not None and said.startswith(f"s3://{BUCKET}/deep/folder (list_objects_v2): ") and "refused" in said, said
    with pytest.raises(typer.Exit) as stopped, user_errors():
        fs.ls(f"{BUCKET}/deep/folder")
    assert stopped.value.exit_code == 2
    assert capsys.readouterr().err.strip() == f"error: {said}"
    assert store_error(ValueError("bad config")) is None and store_error(FileNotFoundError(2, "No such file", "x")) is None


def test_help_imports_no_object_store_client():
    code = (
        "import sys\nfrom crawlmill.cli import app\ntry:\n    app(['ingest', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('botocore', 'aiobotocore', 'aiohttp', 's3fs', 'boto3') if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip().splitlines()[-1] == "[]", done.stderr[-2000:]


def test_only_an_outage_is_retryable_not_missing_credentials_or_a_refused_certificate():
    from botocore.exceptions import EndpointConnectionError, NoCredentialsError, SSLError

    from crawlmill.store_errors import store_unreachable

    outage = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    assert store_unreachable(outage) and store_unreachable(OSError(5, "wrapped")) is False
    try:
        try:
            raise outage  # botocore's credential lookup timing out on a metadata service...
        except EndpointConnectionError:
            raise NoCredentialsError() from None  # ...ends as no credentials: a setting to mend (exit 2)
    except NoCredentialsError as chained:
        assert not store_unreachable(chained)
    assert not store_unreachable(SSLError(endpoint_url="https://x", error="certificate verify failed"))


def test_an_http_server_that_does_not_answer_is_an_outage_with_its_cause(tmp_path):
    """A Common Crawl mirror (or data.commoncrawl.org) out of reach: before, `cannot read the paths
    listing URL: URL` with exit status 2 (bad input) and no word of the cause, as fsspec raises a bare
    FileNotFoundError(url) from aiohttp's connection error (a subclass the check did not know)."""
    base = f"http://127.0.0.1:{free_port()}/"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    line = _one_error_line(_crawlmill(env, "ingest", "--dump", "CC-MAIN-2024-22", "--base-url", base, "--output", str(tmp_path / "out")), status=1)
    assert f"cannot read the paths listing {base}crawl-data/CC-MAIN-2024-22/wet.paths.gz: ClientConnectorError: Cannot connect to host" in line
    assert line.endswith("could not be reached: check the URL and the network")


def test_a_refused_certificate_over_http_is_a_setting_to_mend_not_an_outage():
    """aiohttp's ClientConnectorCertificateError is a ClientConnectorError too: exit 2, not 1 (retried)."""
    import ssl

    from aiohttp.client_exceptions import ClientConnectorCertificateError, ClientConnectorError
    from aiohttp.client_reqrep import ConnectionKey

    from crawlmill.store_errors import store_unreachable

    key = ConnectionKey("mirror.example", 443, True, None, None, None, None)

    def wrapped(error: BaseException) -> BaseException:  # as fsspec's HTTP raises it: FileNotFoundError(url) from the client's
        try:
            try:
                raise error
            except Exception as cause:
                raise FileNotFoundError("https://mirror.example/x") from cause
        except FileNotFoundError as outer:
            return outer

    assert not store_unreachable(wrapped(ClientConnectorCertificateError(key, ssl.SSLCertVerificationError(1, "certificate verify failed"))))
    assert store_unreachable(wrapped(ClientConnectorError(key, OSError(111, "Connection refused"))))
