"""Dedup's map and shingles tasks take runs of input parts, and the shuffles back by input part go
to those runs (steps.part_group_size): the output is byte for byte what one part per task gives,
alone and against an index (a run mixing new and indexed parts), with one task per run."""

from __future__ import annotations

import shutil

from crawlmill.pipeline.dedup import steps
from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.dedup.stage import DedupStage
from crawlmill.pipeline.runner import run_stage
from tests.pipeline.dedup.conftest import DUMPS, folder_bytes


def run_dedup(inputs: list[str], out, **config):
    return run_stage(DedupStage(DedupConfig(inputs=inputs, **config)), out, progress=False)


def test_runs_of_parts_grow_only_past_eight_parts_a_partition():
    assert [steps.part_group_size(parts, 2) for parts in (1, 4, 15, 16, 17, 40)] == [1, 1, 1, 2, 2, 5]
    assert steps.part_group_size(10**6, 4096) == 61  # a million WET files at 4,096 partitions
    assert steps.groups(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert steps.part_group(steps.np.array([(5 << 32) | 7, 2 << 32, 0]), 3).tolist() == [1, 0, 0]
    # the default partitions stop at 16,384: a shuffle between partitions costs partitions^2 reads
    assert [DedupConfig().partitions_for(n) for n in (1, 10**5, 10**6, 655_360_000, 10**10)] == [2, 3, 25, 16_384, 16_384]


def _force_group_size(monkeypatch, size: int) -> None:
    monkeypatch.setattr(steps, "part_group_size", lambda parts, partitions: size)


def _tasks(out, step: str) -> list[str]:
    return sorted(p.stem for p in (out / "_work/_done" / step).glob("*.json"))


def test_runs_of_parts_give_the_bytes_of_one_part_a_task(ingested, monkeypatch, tmp_path, size=3):
    inputs = [str(ingested / d) for d in DUMPS]  # 4 parts
    assert run_dedup(inputs, tmp_path / "one", partitions=2).ok
    assert _tasks(tmp_path / "one", "map") == ["part-00000", "part-00001", "part-00002", "part-00003"]
    _force_group_size(monkeypatch, size)
    assert run_dedup(inputs, tmp_path / "runs", partitions=2).ok
    assert folder_bytes(tmp_path / "runs") == folder_bytes(tmp_path / "one")
    runs = 2  # parts [0, 1, 2] and [3]
    assert len(_tasks(tmp_path / "runs", "map")) == len(_tasks(tmp_path / "runs", "shingles")) == runs
    assert len(list((tmp_path / "runs/_work" / steps.BUCKETS).glob("*.shuffle"))) == runs  # one file a map task
    assert len(list((tmp_path / "runs/_work" / steps.REMOVED_PARTS).glob("*.parquet"))) == 4  # one a part


def test_a_run_mixing_new_and_indexed_parts_gives_the_bytes_of_one_part_a_task(ingested, monkeypatch, tmp_path):
    first = [str(ingested / DUMPS[0])]
    assert run_dedup(first, tmp_path / "first", partitions=2, index=str(tmp_path / "index-one")).ok
    shutil.copytree(tmp_path / "index-one", tmp_path / "index-runs")
    second = [str(ingested / DUMPS[1])]
    assert run_dedup(second, tmp_path / "one", partitions=2, index=str(tmp_path / "index-one")).ok
    _force_group_size(monkeypatch, 3)  # parts 0-1 new, 2-3 indexed: runs [0, 1, 2] and [3]
    result = run_dedup(second, tmp_path / "runs", partitions=2, index=str(tmp_path / "index-runs"))
    assert result.ok and result.stats["dropped"]
    runs, one = folder_bytes(tmp_path / "runs"), folder_bytes(tmp_path / "one")
    assert runs.pop("_tasks.json") == one.pop("_tasks.json").replace(b"index-one", b"index-runs")  # the index's path
    assert runs == one
    assert _tasks(tmp_path / "runs", "shingles") == ["group-00000", "group-00001"]
    assert _tasks(tmp_path / "runs", "index_load") == ["index-00002"] and _tasks(tmp_path / "runs", "map") == ["part-00000"]
    stored = lambda index: {p.name: p.read_bytes() for p in sorted((index / "run-0001").glob("*.parquet"))}  # noqa: E731
    assert stored(tmp_path / "index-runs") == stored(tmp_path / "index-one") and stored(tmp_path / "index-one")
