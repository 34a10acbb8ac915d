"""The whole pipeline survives the faults of real clusters, and its output is the undisturbed run's,
byte for byte (demo_checksums.json: the bytes tests/crawlmill/test_demo.py gets from an undisturbed run
of the same config):

- a Ray worker killed with SIGKILL while it works on a part: the stage completes (Ray retries the task);
- the driver (`crawlmill run`) killed with SIGKILL in the middle of every stage in turn (ingest,
  filter, dedup's steps, quality's two steps, remix, the tokenizer, pack's three passes): each rerun
  resumes where the killed one stopped;
- a different seed (quality's classifier training) changes only what that seed governs: the
  classifier and its scores, not the documents kept, the tokenizer or the shards' tokens.

The drivers join a Ray head started here (as `ray job submit` runs them on a cluster); a killed
driver's tasks are ended by Ray with its job.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.crawlmill.test_demo import demo_checksums
from tests.pipeline.demo_stages import demo_config
from tests.rayhead import RAY, VENV_BIN, start_head, user_env

pytestmark = pytest.mark.heavy(195)  # seconds on 2 cores: runs first (tests/conftest.py)

if RAY is None:
    pytest.skip("the `ray` CLI is not installed (the `pipeline` extra)", allow_module_level=True)

CHECKSUMS = json.loads((Path(__file__).parent / "demo_checksums.json").read_text())
# (stage, a folder of task markers, how many markers): once there are that many, the stage is under
# way and the driver is killed.
KILL_POINTS = [
    ("ingest", "ingest/_parts", 1),
    ("filter", "filter/_parts", 1),
    ("dedup", "dedup/_work/_done/shingles", 1),
    ("dedup", "dedup/_work/_done/buckets", 1),
    ("dedup", "dedup/_work/_done/cluster_map", 1),
    ("quality", "quality/_work/_done/train_model", 1),
    ("quality", "quality/_work/_done/score", 1),
    ("remix", "remix/_parts", 1),
    ("tokenizer", "tokenizer/_work/_done/scan", 1),
    ("shards", "shards/_parts", 1),  # pack's tokenize pass
    ("shards", "shards/_work/_done/shards", 1),  # its shards pass
    ("shards", "shards/_work/_done/shards", 4),  # every shard written: its domains pass next
]


@pytest.fixture(scope="module")
def head():
    root = Path(tempfile.mkdtemp(prefix="cmft-", dir="/tmp"))
    env = user_env(root, RAY_AUTH_MODE="disabled")
    ray_head = start_head(root, env, num_cpus=2)
    try:
        yield ray_head, env
    finally:
        left = ray_head.stop(grace=0)  # nothing to save: no need to wait for a clean exit
        shutil.rmtree(root, ignore_errors=True)
        assert not left, f"processes of the Ray head still running: {left}"


def start_driver(config: Path, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([str(VENV_BIN / "crawlmill"), "run", str(config), "--no-progress", *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(condition, driver: subprocess.Popen, log: Path, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the run ended ({driver.returncode}) before {what}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.01)


def busy_workers(ray_head) -> list[psutil.Process]:
    """This head's Ray workers running a step's task now (Ray titles a worker by the task it runs);
    only the head's descendants: another test's Ray on the machine runs tasks of the same name."""
    found = []
    for proc in psutil.Process(ray_head.process.pid).children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:  # ended since listed
            continue
        if cmdline and cmdline[0].startswith("ray::run_task"):
            found.append(proc)
    return found


def test_killed_workers_and_drivers_in_every_stage_leave_the_undisturbed_output(head, tmp_path):
    ray_head, env = head
    env = {**env, "RAY_ADDRESS": ray_head.gcs}
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(tmp_path / "out")))
    out, log = tmp_path / "out", tmp_path / "runs.log"

    # A worker killed in the middle of an ingest part: Ray runs the task again, the stage completes.
    driver = start_driver(config_path, env, log)
    busy: list[psutil.Process] = []
    wait_for(lambda: (out / "ingest/_tasks.json").exists() and bool(busy.extend(busy_workers(ray_head)) or busy), driver, log, "an ingest task")
    victim = busy[0]
    victim.send_signal(signal.SIGKILL)
    assert not (out / "ingest/_SUCCESS").exists()
    killed = []
    for stage, marker_dir, markers in KILL_POINTS:
        if driver is None:
            driver = start_driver(config_path, env, log)
        wait_for(lambda: len(list((out / marker_dir).glob("*.json"))) >= markers, driver, log, f"{markers} marker(s) in {marker_dir}")
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        killed.append((f"{marker_dir} {markers}", (out / stage / "_SUCCESS").exists()))
        driver = None
    assert not victim.is_running() and "ingest done" in log.read_text()
    # Each kill came while its stage was under way: its folder was not finished.
    assert [point for point, finished in killed if finished] == [], killed
    finished = subprocess.run([str(VENV_BIN / "crawlmill"), "run", str(config_path), "--no-progress"], env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert demo_checksums(out) == CHECKSUMS
    summary = json.loads((out / "_run.json").read_text())
    assert summary["ok"] and {e["stage"]: e["status"] for e in summary["stages"]}["pack"] in ("resumed", "ran")
    assert list((out).rglob(".tmp-*")) == []  # no temporary of a killed run is left

    # Another seed for quality's classifier: a new model and new scores; the same documents, tokenizer and tokens.
    config = yaml.safe_load(config_path.read_text())
    config["quality"]["train"]["seed"] = 7
    config["output_dir"] = str(tmp_path / "seeded")
    shutil.copytree(out, tmp_path / "seeded")
    (tmp_path / "seeded.yaml").write_text(yaml.safe_dump(config))
    reseeded = subprocess.run([str(VENV_BIN / "crawlmill"), "run", str(tmp_path / "seeded.yaml"), "--from", "quality", "--overwrite", "--no-progress"],
                              env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert reseeded.returncode == 0, reseeded.stdout + reseeded.stderr
    changed = {name for name, digest in demo_checksums(tmp_path / "seeded").items() if CHECKSUMS.get(name) != digest}
    assert "quality/_model/model.bin" in changed and any(n.startswith("quality/part-") for n in changed)
    unchanged = {n for n in CHECKSUMS if n.startswith(("ingest/", "filter/", "dedup/", "tokenizer/")) or (n.startswith("shards/") and n.endswith((".bin", ".idx")))}
    assert not changed & unchanged, sorted(changed & unchanged)
    for stage in ("quality", "remix", "shards"):
        before, after = (json.loads((root / stage / "_stats.json").read_text()) for root in (out, tmp_path / "seeded"))
        assert (before["in"], before["kept"]) == (after["in"], after["kept"]), stage
