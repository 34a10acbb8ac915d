"""A real S3 server on loopback for tests (moto's ThreadedMotoServer), with fake credentials given
the usual way: AWS_* environment variables (set in this process for the test's duration, and
returned as a dict for subprocesses). Tests check that SECRET appears in no output.

    with moto_s3("my-bucket") as (fs, env):
        fs.put_file(local, "my-bucket/key")
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any, Iterator

SECRET = "crawlmill-secret-7f3a9c1e5b"  # the fake secret key: must never be written anywhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[tuple[Any, dict[str, str]]]:
    """Start a moto S3 server, create `bucket`, point s3fs at it through the environment; yield an
    s3fs filesystem (no listings cache: subprocesses write too) and that environment."""
    import logging

    from moto import server as moto_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "crawlmill-test-key", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "RAY_USAGE_STATS_ENABLED": "0",
    }  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import s3fs

    # fsspec reuses a filesystem made with the same arguments: one made for an earlier test's server
    # (another port, read from the environment when it was made) must not serve this one.
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
        fs.mkdir(bucket)
        yield fs, env
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
