"""What every benchmark shares: run one measurement in a fresh process and poll its memory, say
which step runs now from inside it, and describe the run.

`run_tree` starts a command and, until it exits, polls (psutil) the RSS of the process, all its
descendants and, if asked, every process whose command line names a marker (the Ray temp dir: Ray's
workers, raylet and GCS are not descendants of a driver that started a local Ray). Reported: the peak
of the summed RSS, the largest single process (and what it is), the largest Ray worker, overall and
per step (the step name the measured process last wrote with `phase`). A time-out or a memory limit
kills everything it tracked, so a blow-up fails the measurement instead of taking the machine down.
(An address-space rlimit does not work with Ray: it reserves ~9 GB of virtual memory per process.)
RSS counts shared pages once per process, so the sum overstates what the machine holds.

    from harness import run_tree
    tree = run_tree([sys.executable, "-c", "print(1)"], timeout=60)
    tree.stdout, tree.wall_s, tree.peak_total
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PHASE_ENV = "BENCH_PHASE_FILE"
MiB = 1 << 20


def phase(name: str) -> None:
    """Inside a measured process: tell the parent's poller which step runs now."""
    path = os.environ.get(PHASE_ENV)
    if path:
        tmp = f"{path}.tmp"
        Path(tmp).write_text(name)
        os.replace(tmp, path)


def role(proc) -> str:  # noqa: ANN001 - psutil.Process
    """What a process is, for the memory report: driver, ray_worker, raylet, gcs_server, ..."""
    try:
        cmd = proc.cmdline()
    except Exception:  # noqa: BLE001 - gone or not readable
        return "?"
    head = cmd[0] if cmd else ""
    if (head.startswith("ray::") and "Agent" not in head) or "default_worker.py" in " ".join(cmd[:3]):
        return "ray_worker"
    return Path(head).name or "?"


@dataclass
class TreeResult:
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    peak_total: int = 0  # bytes: summed RSS of everything tracked
    peak_single: int = 0
    peak_single_role: str = ""
    peak_ray_worker: int = 0
    by_step: dict[str, dict[str, int]] = field(default_factory=dict)  # step -> total/single/ray_worker
    steps_started_at_s: list[tuple[str, float]] = field(default_factory=list)
    step_reached: str = "start"
    killed: str | None = None  # why the tree was killed (time-out, memory limit), if it was
    load1_before: float = 0.0
    load1_after: float = 0.0

    def memory_mib(self) -> dict:
        return {
            "peak_total_rss_mib": round(self.peak_total / MiB),
            "peak_process_rss_mib": round(self.peak_single / MiB),
            "peak_process_role": self.peak_single_role,
            "peak_ray_worker_rss_mib": round(self.peak_ray_worker / MiB) if self.peak_ray_worker else None,
            "by_step": {k: {m: round(v / MiB) for m, v in d.items()} for k, d in self.by_step.items()},
        }


def run_tree(
    cmd: list[str],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    limit_bytes: int | None = None,
    marker: str | None = None,
    poll_s: float = 0.1,
    scan_s: float = 0.5,
) -> TreeResult:
    """Run `cmd` to its end (or its time-out / memory limit) and report its process tree's memory."""
    import psutil

    logs = Path(tempfile.mkdtemp(prefix="bench-log-", dir="/tmp"))
    phase_file = logs / "phase"
    env = {**(env if env is not None else os.environ), PHASE_ENV: str(phase_file), "RAY_USAGE_STATS_ENABLED": "0"}
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd or REPO)
    result = TreeResult(None, "", "", 0.0, load1_before=round(os.getloadavg()[0], 2))
    root = psutil.Process(proc.pid)
    tracked: dict[int, tuple] = {proc.pid: (root, "driver")}
    start, last_scan = time.monotonic(), 0.0

    def kill_all() -> None:
        for p, _ in list(tracked.values()):
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        proc.wait()

    try:
        while proc.poll() is None:
            now = time.monotonic()
            try:
                for child in root.children(recursive=True):
                    if child.pid not in tracked:
                        tracked[child.pid] = (child, role(child))
            except psutil.Error:
                pass
            if marker and now - last_scan >= scan_s:
                last_scan = now
                for p in psutil.process_iter(["cmdline"]):
                    if p.pid not in tracked and any(marker in a for a in (p.info["cmdline"] or [])):
                        tracked[p.pid] = (p, role(p))
                for pid, (p, name) in list(tracked.items()):  # Ray workers rename themselves after start
                    if name not in ("driver", "ray_worker"):
                        tracked[pid] = (p, role(p))
            total, single, single_role, worker = 0, 0, "", 0
            for pid, (p, name) in list(tracked.items()):
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    del tracked[pid]
                    continue
                total += rss
                if rss > single:
                    single, single_role = rss, name
                if name == "ray_worker":
                    worker = max(worker, rss)
            try:
                result.step_reached = phase_file.read_text() or "start"
            except OSError:
                pass  # not written yet: keep the last step
            step = result.by_step.setdefault(result.step_reached, {"total": 0, "single": 0, "ray_worker": 0})
            if len(result.by_step) > len(result.steps_started_at_s):
                result.steps_started_at_s.append((result.step_reached, round(now - start, 1)))
            step.update(total=max(step["total"], total), single=max(step["single"], single), ray_worker=max(step["ray_worker"], worker))
            result.peak_total = max(result.peak_total, total)
            if single > result.peak_single:
                result.peak_single, result.peak_single_role = single, single_role
            result.peak_ray_worker = max(result.peak_ray_worker, worker)
            if timeout and now - start > timeout:
                result.killed = f"timed out after {timeout:.0f} s"
            elif limit_bytes and total > limit_bytes:
                result.killed = f"killed at {total / (1 << 30):.1f} GiB after {now - start:.0f} s"
            if result.killed:
                kill_all()
                break
            time.sleep(poll_s)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave no measurement processes behind
        kill_all()
        shutil.rmtree(logs, ignore_errors=True)
        raise
    result.wall_s = round(time.monotonic() - start, 2)
    result.returncode = proc.returncode
    result.load1_after = round(os.getloadavg()[0], 2)
    result.stdout, result.stderr = (logs / "stdout").read_text(), (logs / "stderr").read_text()
    shutil.rmtree(logs, ignore_errors=True)
    return result


def run_info(**extra: object) -> dict:
    """Date, commit (and uncommitted files in the code), machine, load: to store beside figures."""
    import psutil

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout
        except OSError:  # no git (a bare GPU machine: scripts/gpu_check.sh)
            return ""

    dirty = git("status", "--porcelain", "pipeline", "tokenizer", "crawlmill", "corpora", "training").splitlines()
    return {
        "date": date.today().isoformat(),
        "commit": git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted_code": [line[3:] for line in dirty if line.strip()],
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / (1 << 30):.0f} GiB, {platform.machine()}, Python {platform.python_version()}",
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        **extra,
    }


def crawlmill_cli(*args: str) -> None:
    """`python -m crawlmill.cli ARGS` in a child process on a local Ray (never a developer's RAY_ADDRESS)."""
    env = {**os.environ, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([sys.executable, "-m", "crawlmill.cli", *args], check=True, env=env)


def device_name() -> str:
    """The GPU's name, or "cpu"."""
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
