"""A real Ray head for tests, started as a user starts one (`ray start --head --block`): loopback, free
ports, its own temp dir and process group. It is stopped by killing that group, never with `ray stop`
(which would stop every Ray on the machine, the in-process one of the other tests included)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

VENV_BIN = Path(sys.executable).parent
RAY = shutil.which("ray", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
# Ray reads these before its arguments; a developer's own would point the CLI at another cluster.
RAY_ENV = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A user's shell: the venv activated, none of the developer's Ray settings, this HOME."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_ENV}
    env.update(HOME=str(home), PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def group_members(pgid: int) -> list[int]:
    """Live processes of the group (a zombie has exited; only its parent's wait is missing)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if os.getpgid(int(entry.name)) == pgid and state != "Z":
                    members.append(int(entry.name))
    return members


def stop_group(pgid: int, grace: float = 10.0) -> list[int]:
    """SIGTERM the head's process group, SIGKILL what is left after `grace` seconds (GCS takes ~30 s
    to exit on SIGTERM; `ray stop` waits 16 s); the pids still alive after."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while group_members(pgid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(-pgid, os.WNOHANG)  # reap the leader, our child
            time.sleep(0.2)
        if not group_members(pgid):
            return []
    return group_members(pgid)


@dataclass
class RayHead:
    process: subprocess.Popen
    gcs: str  # HOST:PORT, what a driver's RAY_ADDRESS names
    dashboard: str  # http://HOST:PORT, the job server
    log: Path

    def stop(self, grace: float = 10.0) -> list[int]:
        return stop_group(self.process.pid, grace)


def start_head(root: Path, env: dict[str, str], num_cpus: int = 2, token: str | None = None) -> RayHead:
    """`ray start --head --block` in its own process group under `root` (keep it short: Ray's socket
    paths have a length limit); returns once the job server answers. A loaded machine can miss Ray's
    own startup deadline ("timed out during startup"): then once more, on other ports."""
    try:
        return _start_head(root, env, num_cpus, token, "ray")
    except AssertionError as exc:
        if "timed out during startup" not in str(exc):
            raise
        return _start_head(root, env, num_cpus, token, "ray2")


def _start_head(root: Path, env: dict[str, str], num_cpus: int, token: str | None, temp: str) -> RayHead:
    gcs, dashboard, client, agent_http, agent_grpc, metrics, runtime_env, node_manager, object_manager = free_ports(9)
    command = [
        RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
        f"--port={gcs}", f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
        f"--ray-client-server-port={client}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}", f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}", f"--temp-dir={root / temp}", "--disable-usage-stats",
    ]  # fmt: skip
    log = root / "ray-start.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    head = RayHead(process, f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", log)
    request = urllib.request.Request(f"{head.dashboard}/api/jobs/", headers={"Authorization": f"Bearer {token}"} if token else {})
    deadline = time.monotonic() + 120
    while True:  # the job API comes up after `ray start` prints its banner
        if process.poll() is not None:
            head.stop()
            raise AssertionError(f"ray start exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return head
        if time.monotonic() > deadline:
            head.stop()
            raise AssertionError(f"the job server did not come up:\n{log.read_text()}")
        time.sleep(0.5)


@dataclass
class RayNode:
    process: subprocess.Popen
    node_id: str
    log: Path

    def stop(self, grace: float = 10.0) -> list[int]:
        return stop_group(self.process.pid, grace)


def node_ids(head: RayHead, env: dict[str, str]) -> dict[str, bool]:
    """The cluster's live nodes: node id -> whether it is the head (`ray list nodes`, as an operator asks)."""
    deadline = time.monotonic() + 60
    while True:  # just after `ray start`, the state API answers "No resource in the cluster", not JSON
        listed = subprocess.run([RAY, "list", "nodes", "--address", head.dashboard, "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stderr
        with contextlib.suppress(json.JSONDecodeError):
            nodes = {n["node_id"]: n["is_head_node"] for n in json.loads(listed.stdout) if n["state"] == "ALIVE"}
            if any(nodes.values()):
                return nodes
        assert time.monotonic() < deadline, f"`ray list nodes` does not list the head: {listed.stdout}"
        time.sleep(0.5)


def start_node(root: Path, head: RayHead, env: dict[str, str], num_cpus: int = 2) -> RayNode:
    """A worker node joining `head` (`ray start --address HEAD --block`, loopback, free ports) in its
    own process group; returns once the cluster lists it."""
    before = set(node_ids(head, env))
    node_manager, object_manager, agent_http, agent_grpc, metrics, runtime_env = free_ports(6)
    command = [
        RAY, "start", "--block", f"--address={head.gcs}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}",
        f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}", "--disable-usage-stats",
    ]  # fmt: skip
    log = root / f"ray-node-{len(list(root.glob('ray-node-*.log'))) + 1}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 120
    while not (new := set(node_ids(head, env)) - before):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_group(process.pid)
            raise AssertionError(f"the node did not join:\n{log.read_text()}")
        time.sleep(0.5)
    return RayNode(process, new.pop(), log)
