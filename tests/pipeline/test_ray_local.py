"""A local Ray, started as every crawlmill command without a cluster starts one (pipeline/ray_tasks.py
`ensure_ray` through `run_jobs`), listens on loopback only: while a driver in a subprocess holds it,
every TCP and UDP socket of its whole process tree (GCS, raylet, agents, workers, the driver itself)
is bound to 127.0.0.1 / ::1. Ray's servers run code for whoever reaches them."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psutil

from tests.conftest import REPO

# The driver a user's command is: one job through run_jobs (so a worker process exists), then it
# holds the Ray until the test closes its stdin.
DRIVER = """
import sys
from crawlmill.pipeline.ray_tasks import Job, RayOptions, run_jobs
def negate(x):
    return -x
result = run_jobs(negate, [Job("a", (-3,))], RayOptions(num_cpus=1))
from ray._raylet import AuthenticationMode, get_authentication_mode
print("auth", get_authentication_mode() == AuthenticationMode.TOKEN, file=sys.stderr, flush=True)
import ray
print("job runtime env", sorted(ray.get_runtime_context().runtime_env), file=sys.stderr, flush=True)
print("ready", result.results["a"], flush=True)
sys.stdin.read()
"""


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, an IPv6 socket bound to IPv4 loopback
    return (mapped or address).is_loopback


def _ray_processes(driver: psutil.Process, temp_dir: str) -> list[psutil.Process]:
    """The driver, its descendants, and any process naming this Ray's temp dir (in case Ray started
    one detached from the tree)."""
    found = {p.pid: p for p in [driver, *driver.children(recursive=True)]}
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid not in found and any(temp_dir in arg for arg in proc.info["cmdline"] or ()):
            found[proc.pid] = proc
    return list(found.values())


def _listening(procs: list[psutil.Process]) -> list[tuple[str, str, int, str]]:
    """(process name, ip, port, kind) of every listening TCP socket and every bound, unconnected UDP socket."""
    out = []
    for proc in procs:
        try:
            name, conns = proc.name(), proc.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        for conn in conns:
            if conn.type == socket.SOCK_STREAM and conn.status == psutil.CONN_LISTEN:
                out.append((name, conn.laddr.ip, conn.laddr.port, "tcp"))
            elif conn.type == socket.SOCK_DGRAM and not conn.raddr:
                out.append((name, conn.laddr.ip, conn.laddr.port, "udp"))
    return out


def test_local_ray_listens_on_loopback_only() -> None:
    temp_dir = tempfile.mkdtemp(prefix="rl-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}  # no cluster: the local Ray; a user's shell
    env.update(RAY_TMPDIR=temp_dir, RAY_USAGE_STATS_ENABLED="0")
    stderr = open(os.path.join(temp_dir, "driver.err"), "w+")  # a file: a full pipe would block the driver
    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    driver = psutil.Process(proc.pid)
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready 3":
            proc.wait(timeout=30)
            stderr.seek(0)
            raise AssertionError(f"the driver did not start its Ray: {line!r}\n{stderr.read()[-3000:]}")
        # Agents and metrics servers come up around the first task: gather for a moment.
        seen: dict[tuple, tuple] = {}
        names: set[str] = set()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            procs = _ray_processes(driver, temp_dir)
            for p in procs:
                try:
                    names.add(p.name())
                except psutil.NoSuchProcess:
                    pass
            for entry in _listening(procs):
                seen[entry[1:]] = entry
            time.sleep(0.25)
    finally:
        proc.stdin.close()  # the driver exits and shuts its Ray down
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for child in driver.children(recursive=True):
                child.kill()
            proc.kill()
        stderr.seek(0)
        said = stderr.read()
        stderr.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
    # Token authentication on (Ray's default), without the warning Ray prints when the mode is unset
    assert "Token authentication" not in said and "auth True" in said, said[-3000:]
    # A pipeline's Ray: no job runtime env, whose every worker Ray would start through setup_worker.py
    # (the test below: one that Ray Train may run on has one)
    assert "job runtime env []" in said, said[-3000:]
    # Not vacuous: Ray's own servers were found and listening.
    assert {"gcs_server", "raylet"} <= names, names
    servers = {name for name, _, _, _ in seen.values()}
    assert {"gcs_server", "raylet"} <= servers, sorted(seen.values())
    exposed = sorted(entry for entry in seen.values() if not _is_loopback(entry[1]))
    assert not exposed, f"listening beyond loopback: {exposed}"


# A driver that may run Ray Train (ray_tasks.RAY_TRAIN_AHEAD): its local Ray's job runtime env, and the
# level that a worker's setup left on the logger of Ray Train's placement-group cleaner.
TRAIN_DRIVER = """
import logging
import ray
from crawlmill.pipeline import ray_tasks
def level(_):
    return logging.getLogger(ray_tasks._STATE_API_LOGGERS[0]).getEffectiveLevel()
ray_tasks.RAY_TRAIN_AHEAD[0] = True
result = ray_tasks.run_jobs(level, [ray_tasks.Job("a", (0,))], ray_tasks.RayOptions(num_cpus=1))
print(sorted(ray.get_runtime_context().runtime_env), result.results["a"], flush=True)
"""


def test_a_local_ray_that_ray_train_may_run_on_gives_its_workers_a_setup_hook() -> None:
    """It quiets Ray Train's placement-group cleaner, which asks a State API that a Ray without a
    dashboard does not have. Only there: a job runtime env starts every worker through Ray's
    setup_worker.py and leaves the workers Ray prestarted for the job unused (a pipeline's Ray has
    none: the test above)."""
    temp_dir = tempfile.mkdtemp(prefix="rs-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(RAY_TMPDIR=temp_dir, RAY_USAGE_STATS_ENABLED="0")
    try:
        done = subprocess.run([sys.executable, "-c", TRAIN_DRIVER], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "['env_vars', 'worker_process_setup_hook'] 40", done.stdout + done.stderr[-3000:]
