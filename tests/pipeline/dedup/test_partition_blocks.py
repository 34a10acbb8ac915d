"""Dedup's steps between partitions run a block of consecutive partitions a task
(`partitions_per_task`, steps.partition_block: each sender's bytes for the block read at once): the
output is byte for byte one partition a task's, and a run resumed with another grouping redoes the
steps between partitions in its own blocks (their tasks are named by block), keeps the steps by
input part, and still gives those bytes."""

from __future__ import annotations

import shutil

from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.runner import SUCCESS_FILE
from tests.pipeline.dedup.conftest import DUMPS, folder_bytes
from tests.pipeline.dedup.test_part_groups import _tasks, run_dedup

PARTITION_STEPS = ("buckets", "verify_send", "verify_check", "cc-0000", "cluster_map", "cluster_reduce", "report_map", "report_reduce")


def test_blocks_cover_every_partition_once_and_the_default_keeps_at_most_4096_tasks():
    assert DedupConfig(partitions_per_task=3).blocks(7) == [(0, 3), (3, 3), (6, 1)]
    assert DedupConfig(partitions_per_task=16).blocks(4) == [(0, 4)]
    assert DedupConfig().blocks(5) == [(p, 1) for p in range(5)]
    for partitions, size in [(4096, 1), (4097, 2), (16_384, 4)]:
        blocks = DedupConfig().blocks(partitions)
        assert len(blocks) <= 4096 and {count for _, count in blocks[:-1]} == {size}
        assert [p for first, count in blocks for p in range(first, first + count)] == list(range(partitions))


def test_blocks_of_partitions_give_the_bytes_of_one_partition_a_task_and_resume_under_another_grouping(ingested, tmp_path):
    inputs = [str(ingested / d) for d in DUMPS]
    one = run_dedup(inputs, tmp_path / "one", partitions=7, partitions_per_task=1)
    assert one.ok and one.stats["dropped"]
    assert _tasks(tmp_path / "one", "buckets") == [f"p-{p:05d}" for p in range(7)]
    assert run_dedup(inputs, tmp_path / "blocks", partitions=7, partitions_per_task=3).ok
    assert folder_bytes(tmp_path / "blocks") == folder_bytes(tmp_path / "one")  # _tasks.json too: the grouping is no setting
    for step in PARTITION_STEPS:
        assert _tasks(tmp_path / "blocks", step) == ["p-00000-00002", "p-00003-00005", "p-00006"], step
    # killed after verification, resumed in blocks of 2: the steps between partitions are redone in
    # blocks of 2 (a block's marker covers its own partitions only), map and shingles are kept
    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "blocks", resumed)
    (resumed / SUCCESS_FILE).unlink()
    for done in (resumed / "_work/_done").iterdir():
        if done.name.startswith(("cc-", "cluster", "report", "removed")):
            shutil.rmtree(done)
    for path in resumed.glob("part-*.parquet"):
        path.unlink()
    assert run_dedup(inputs, resumed, partitions=7, partitions_per_task=2).ok
    assert folder_bytes(resumed) == folder_bytes(tmp_path / "one")
    twos = ["p-00000-00001", "p-00002-00003", "p-00004-00005", "p-00006"]
    assert _tasks(resumed, "cluster_reduce") == twos
    assert _tasks(resumed, "verify_check") == sorted({"p-00000-00002", "p-00003-00005", *twos})  # p-00006: one key in both
    map_markers = {p.name: p.stat().st_mtime_ns for p in (resumed / "_work/_done/map").iterdir()}
    assert map_markers == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "blocks/_work/_done/map").iterdir()}
