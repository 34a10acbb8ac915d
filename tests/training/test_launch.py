"""training/launch.py: where a run's ranks come from. Here: a launch through Ray Train asks for a
local Ray that Ray Train runs on quietly (ray_tasks.RAY_TRAIN_AHEAD) before anything starts Ray;
one that trains in this process asks nothing of Ray."""

from __future__ import annotations

import pytest

from crawlmill.pipeline import ray_tasks
from crawlmill.pipeline.ray_tasks import RayOptions
from crawlmill.training import launch as launch_module
from crawlmill.training.config import load_train_config


class RayAsked(Exception):
    pass


@pytest.mark.parametrize(("workers", "through_ray"), [(2, True), (1, False)])
def test_a_launch_through_ray_train_starts_its_local_ray_for_it(tmp_path, monkeypatch, workers, through_ray):
    seen: list[bool] = []

    def first_ray_call(options: RayOptions) -> bool:  # cluster_has_gpus: the launch's first use of Ray
        seen.append(ray_tasks.RAY_TRAIN_AHEAD[0])
        raise RayAsked

    def trained_here(*args, **kwargs):
        seen.append(ray_tasks.RAY_TRAIN_AHEAD[0])
        return {"here": True}

    monkeypatch.setattr(launch_module, "cluster_has_gpus", first_ray_call)
    monkeypatch.setattr("crawlmill.training.trainer.train", trained_here)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = load_train_config("tiny", {"data": {"shards": [str(tmp_path / "shards")]}, "workers": workers})
    ray_tasks.RAY_TRAIN_AHEAD[0] = False
    try:
        if through_ray:
            with pytest.raises(RayAsked):
                launch_module.launch(config, tmp_path / "run", ray_options=RayOptions())
        else:
            assert launch_module.launch(config, tmp_path / "run", ray_options=RayOptions()) == {"here": True}
    finally:
        ray_tasks.RAY_TRAIN_AHEAD[0] = False
    assert seen == [through_ray]
