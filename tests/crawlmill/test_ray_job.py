"""Every verb runs unchanged as a Ray job: a Ray head started here as the README starts a local one
(token authentication: `RAY_AUTH_MODE=token`, `ray get-auth-token --generate`, `ray start --head`),
then `crawlmill run`, a stage verb and `crawlmill train` submitted with the Ray job CLI as a user
types them.

The head runs in its own process group, HOME (so its token file is its own) and temp dir, on free
ports; it is stopped by killing that group, never with `ray stop` (which would stop every Ray on the
machine). The test process never imports Ray: it only runs the `ray` CLI, as a user would.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

VENV_BIN = Path(sys.executable).parent
RAY = shutil.which("ray", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
if RAY is None:
    pytest.skip("the `ray` CLI is not installed (the `pipeline` extra: pip install -c constraints.txt -e '.[pipeline]')", allow_module_level=True)

# Ray reads these before its arguments; a developer's own would point the CLI at another cluster.
RAY_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
PART_STAGES = ("ingest", "filter", "dedup", "remix")  # stages whose progress counts documents


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's shell: the venv activated, none of the developer's Ray settings, this HOME."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_ENV}
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def _ray(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _group_members(pgid: int) -> list[int]:
    """Live processes of the group (a zombie has exited; only its parent's wait is missing)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if os.getpgid(int(entry.name)) == pgid and state != "Z":
                    members.append(int(entry.name))
    return members


def _stop_group(pgid: int) -> list[int]:
    """SIGTERM the head's process group, SIGKILL what is left after 10 s (GCS takes ~30 s to exit on
    SIGTERM; `ray stop` waits 16 s); the pids still alive after."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while _group_members(pgid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(-pgid, os.WNOHANG)  # reap the leader, our child
            time.sleep(0.2)
        if not _group_members(pgid):
            return []
    return _group_members(pgid)


def _wait_for_job_server(address: str, token: str, head: subprocess.Popen, log: Path) -> None:
    """Until the job API answers (it comes up after `ray start` prints its banner)."""
    request = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + 120
    while True:
        assert head.poll() is None, f"ray start exited with {head.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the job server did not come up:\n{log.read_text()}"
        time.sleep(0.5)


@pytest.fixture(scope="module")
def ray_head():
    """The README's local head: `export RAY_AUTH_MODE=token`, `ray get-auth-token --generate`,
    `ray start --head` (here --block, free ports, loopback). Yields (job address, head env, home)."""
    root = Path(tempfile.mkdtemp(prefix="cmrj-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    home = root / "home"
    home.mkdir()
    env = _user_env(home, RAY_AUTH_MODE="token")
    generated = _ray(["get-auth-token", "--generate"], env, timeout=120)
    assert generated.returncode == 0, generated.stderr
    token = (home / ".ray" / "auth_token").read_text().strip()
    assert token and generated.stdout.strip() == token
    gcs, dashboard, client, agent_http, agent_grpc, metrics, runtime_env, node_manager, object_manager = _free_ports(9)
    command = [
        RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=2",
        f"--port={gcs}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}", f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}", f"--temp-dir={root / 'ray'}", "--disable-usage-stats",
    ]  # fmt: skip
    log = root / "ray-start.log"
    with log.open("w") as out:
        head = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        _wait_for_job_server(address, token, head, log)
        yield address, env, home
    finally:
        left = _stop_group(head.pid)
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the Ray head still running: {left}"


def _run_config(tmp_path: Path) -> Path:
    """configs/demo.yaml writing to tmp_path, without `quality` and `train` (time: the other stages
    show the same), absolute paths (the job runs in the head's folder)."""
    config = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    del config["quality"], config["train"]
    config["output_dir"] = str(tmp_path / "out")
    config["ingest"]["inputs"] = [str(REPO / "configs" / p) for p in config["ingest"]["inputs"]]
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _submit(address: str, env: dict[str, str], submission_id: str, *entrypoint: str) -> str:
    """`ray job submit`, which waits for the job and prints its log as it goes; that output."""
    submitted = _ray(["job", "submit", "--address", address, "--submission-id", submission_id, "--", *entrypoint], env, timeout=600)
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0 and f"Job '{submission_id}' succeeded" in output, output
    return output


def _job_log(address: str, env: dict[str, str], submission_id: str) -> str:
    """The job's log as the head keeps it (`ray job logs`): the entrypoint's stdout and stderr."""
    logs = _ray(["job", "logs", "--address", address, submission_id], env)
    assert logs.returncode == 0, logs.stderr
    return logs.stdout


def _stats(folder: Path) -> dict:
    return json.loads((folder / "_stats.json").read_text())


def test_the_readme_gives_the_commands_this_test_runs():
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("**One machine**") :]
    block = block[block.index("```bash") : block.index("```", block.index("```bash") + 3)]
    commands = [line.split("#")[0].strip() for line in block.splitlines()[1:]]
    assert commands[:4] == [
        "export RAY_AUTH_MODE=token",
        "ray get-auth-token --generate > /dev/null",
        "ray start --head --num-cpus 2",  # here with --block and free ports on loopback
        "ray job submit --address http://127.0.0.1:8265 -- crawlmill run configs/demo.yaml",  # here a copy of it, without quality and train
    ]


def test_a_client_without_the_token_mode_is_refused(ray_head):
    """The issue's failure, kept visible: the head requires the token, so a shell without
    RAY_AUTH_MODE=token (its token file notwithstanding) is refused with Ray's own message."""
    address, _, home = ray_head
    refused = _ray(["job", "list", "--address", address], _user_env(home))
    assert refused.returncode != 0
    assert "Missing authentication token" in refused.stdout + refused.stderr


def test_run_a_stage_verb_and_train_as_ray_jobs(ray_head, tmp_path):
    address, env, home = ray_head
    config = _run_config(tmp_path)
    out = tmp_path / "out"
    _submit(address, env, "crawlmill-test-run", "crawlmill", "run", str(config))
    log = _job_log(address, env, "crawlmill-test-run")

    folders = {"ingest": "ingest", "filter": "filter", "dedup": "dedup", "remix": "remix", "tokenizer": "tokenizer", "pack": "shards"}
    for stage, folder in folders.items():
        assert (out / folder / "_SUCCESS").exists(), f"{stage}: no _SUCCESS\n{log}"
    manifest = json.loads((out / "shards/manifest.json").read_text())
    assert manifest["documents"] == _stats(out / "remix")["kept"] > 0
    for shard in manifest["shards"]:
        prefix = out / "shards" / shard["prefix"]
        assert prefix.with_suffix(".bin").stat().st_size > 0 and prefix.with_suffix(".idx").stat().st_size > 0

    # The job's log: each stage's count line, and its progress as plain lines (no terminal, no escapes).
    lines = log.splitlines()
    for stage in PART_STAGES:
        stats = _stats(out / stage)
        done = f"{stage} done → {out / stage}: {stats['in']:,} records in, {stats['kept']:,} kept, {stats['quarantined']:,} quarantined"
        assert any(line.startswith(done) for line in lines), f"no line {done!r} in the job's log:\n{log}"
    assert any(line.startswith(f"tokenizer trained → {out / 'tokenizer'}") for line in lines), log
    packed = _stats(out / "shards")
    assert any(line.startswith(f"pack done → {out / 'shards'}: {packed['in']:,} documents in, {packed['kept']:,} packed") for line in lines), log
    for stage in PART_STAGES:
        stats = _stats(out / stage)
        parts = stats["parts"]
        assert f"{stage}: {parts} of {parts} parts to do" in lines, log
        last = re.compile(rf"{stage}: {parts}/{parts} parts, {stats['in']:,} records, {stats['kept']:,} kept, {stats['quarantined']:,} quarantined, \d+s")
        assert any(last.fullmatch(line) for line in lines), f"no final progress line of {stage} in the job's log:\n{log}"
    assert any(re.fullmatch(r"dedup verify_check: (\d+)/\1 tasks, \d+s", line) for line in lines), log  # a step without record counts
    crawlmill_lines = [line for line in lines if line.split(":")[0].split(" ")[0] in folders]
    assert crawlmill_lines and not any("\x1b" in line for line in crawlmill_lines)
    summary = json.loads(log[log.index("\n{") + 1 : log.rindex("}") + 1])
    assert list(summary) == ["ingest", "filter", "dedup", "remix", "tokenizer", "pack"]

    # A stage verb, from another client: the token as an environment variable (as a cluster's
    # clients get it), not a file in its HOME.
    client_home = tmp_path / "client-home"
    client_home.mkdir()
    token = (home / ".ray" / "auth_token").read_text().strip()
    client = _user_env(client_home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    refiltered = tmp_path / "refiltered"
    log = _submit(address, client, "crawlmill-test-filter", "crawlmill", "filter", str(out / "ingest"), "--output", str(refiltered))
    stats = _stats(refiltered)
    assert (refiltered / "_SUCCESS").exists() and stats["kept"] == _stats(out / "filter")["kept"]
    assert f"filter done → {refiltered}: {stats['in']:,} records in, {stats['kept']:,} kept" in log
    assert re.search(rf"^filter: {stats['parts']}/{stats['parts']} parts, {stats['in']:,} records, {stats['kept']:,} kept, 0 quarantined, \d+s$", log, re.M), log

    # Training, submitted the same way, trains on the cluster of RAY_ADDRESS (Ray Train workers) on
    # the pack stage's shards and writes its run folder.
    run = tmp_path / "run"
    log = _submit(address, env, "crawlmill-test-train", "crawlmill", "train", "--config", "tiny", "--data", str(out / "shards"),
                  "--output", str(run), "--max-steps", "4")  # fmt: skip
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    assert steps and steps[-1]["step"] == 4 and all(r["loss"] > 0 for r in steps)
    assert records[-1]["kind"] == "end" and f"train done → {run}" in log
