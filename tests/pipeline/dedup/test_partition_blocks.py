"""Dedup's steps between partitions run a block of consecutive partitions a task
(`partitions_per_task`, steps.partition_block: each sender's bytes for the block read at once, one
file a step sent for the block): the output is byte for byte one partition a task's; a resume in
another grouping is refused, naming it."""

from __future__ import annotations

import pytest

from crawlmill.pipeline.dedup.config import DedupConfig
from crawlmill.pipeline.runner import SUCCESS_FILE
from crawlmill.pipeline.stage import StageInputMismatch
from tests.pipeline.dedup.conftest import DUMPS, folder_bytes
from tests.pipeline.dedup.test_part_groups import _tasks, run_dedup

PARTITION_STEPS = ("buckets", "verify_send", "verify_check", "cc-0000", "cluster_map", "cluster_reduce", "report_map", "report_reduce")


def test_blocks_cover_every_partition_once_and_the_default_keeps_at_most_4096_tasks():
    assert DedupConfig(partitions_per_task=3).blocks(7) == [(0, 3), (3, 3), (6, 1)]
    assert DedupConfig(partitions_per_task=16).blocks(4) == [(0, 4)]
    assert DedupConfig().blocks(5) == [(p, 1) for p in range(5)]
    assert DedupConfig(partitions=200_000).blocks(200_000)[:2] == [(0, 1), (1, 1)]  # names past 5 digits
    with pytest.raises(ValueError, match="at most 99,999 partitions"):
        DedupConfig(partitions=200_000, partitions_per_task=4)
    for partitions, size in [(4096, 1), (4097, 2), (16_384, 4)]:
        blocks = DedupConfig().blocks(partitions)
        assert len(blocks) <= 4096 and {count for _, count in blocks[:-1]} == {size}
        assert [p for first, count in blocks for p in range(first, first + count)] == list(range(partitions))


def test_blocks_of_partitions_give_the_bytes_of_one_partition_a_task_with_a_file_sent_a_block(ingested, tmp_path):
    inputs = [str(ingested / d) for d in DUMPS]
    one = run_dedup(inputs, tmp_path / "one", partitions=7, partitions_per_task=1)
    assert one.ok and one.stats["dropped"]
    assert _tasks(tmp_path / "one", "buckets") == [f"p-{p:05d}" for p in range(7)]
    assert run_dedup(inputs, tmp_path / "blocks", partitions=7, partitions_per_task=3).ok
    blocks, expected = folder_bytes(tmp_path / "blocks"), folder_bytes(tmp_path / "one")
    assert blocks.pop("_tasks.json") != expected.pop("_tasks.json")  # the grouping is recorded: it shapes _work/
    assert blocks == expected
    for step in PARTITION_STEPS:
        assert _tasks(tmp_path / "blocks", step) == ["p-00000-00002", "p-00003-00005", "p-00006"], step
    # what the steps between partitions send: a file a block (one of 3, one of 1) where one a partition
    for step in ("edges", "clusters"):
        sent = sorted(p.name for p in (tmp_path / "blocks/_work" / step).glob("*.shuffle"))
        alone = sorted(p.name for p in (tmp_path / "one/_work" / step).glob("*.shuffle"))
        assert len(sent) < len(alone) and any("~" in name for name in sent), (sent, alone)


def test_a_resume_with_another_grouping_is_refused_naming_it(ingested, tmp_path):
    """The files a block sends are named by block: an unfinished `_work/` resumed in other blocks
    would hold both groupings' files. A finished folder asked again with another grouping too."""
    inputs = [str(ingested / d) for d in DUMPS]
    assert run_dedup(inputs, tmp_path / "out", partitions=5, partitions_per_task=2).ok
    (tmp_path / "out" / SUCCESS_FILE).unlink()
    with pytest.raises(StageInputMismatch, match="partitions_per_task"):
        run_dedup(inputs, tmp_path / "out", partitions=5, partitions_per_task=3)
    assert run_dedup(inputs, tmp_path / "out", partitions=5, partitions_per_task=2).ok  # the same grouping resumes
    # the default is recorded as what it resolves to: 1 given, then left to the default, resumes
    assert run_dedup(inputs, tmp_path / "one", partitions=5, partitions_per_task=1).ok
    (tmp_path / "one" / SUCCESS_FILE).unlink()
    assert run_dedup(inputs, tmp_path / "one", partitions=5).ok
