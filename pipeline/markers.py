"""A step's task markers as the driver sees them: which tasks finished before (read back for a
resume, runner.StageContext.step), and whether what finished tasks wrote is where the driver looks
(an output folder on one node's own disk is refused, OutputNotShared)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Sequence

from crawlmill.files import AnyPath, list_files, read_json

if TYPE_CHECKING:
    from .runner import Task


NFS_LISTING_WAITS = (2, 4, 8, 16, 32)  # seconds between looks: 62 s in all


class OutputNotShared(ValueError):
    """Tasks finished, but what they wrote is not where the driver looks: the output folder is on
    a disk of the node that ran them (a node-local path on a cluster)."""


def check_markers_seen(markers: AnyPath, done: Sequence[Task]) -> None:
    """Refuse (OutputNotShared) a step whose finished tasks' markers the driver cannot see (one
    listing; more only while some are missing): a folder on a node's own disk. Marking the stage
    finished would leave a later stage, or a rerun, reading only the parts this node holds."""
    unseen = list(done)
    if not unseen:
        return
    # An NFS client may list a folder from its cache for up to a minute (acdirmax): look again before refusing.
    for wait in (0, *NFS_LISTING_WAITS):
        time.sleep(wait)
        seen = {p.name for p in list_files(markers, "*.json")}
        unseen = [t for t in unseen if f"{t.key}.json" not in seen]
        if not unseen:
            return
    raise OutputNotShared(
        f"{markers}: {len(unseen)} of {len(done)} finished task(s) wrote files this machine does not see "
        f"(first: {unseen[0].label or unseen[0].key}): on a Ray cluster every node must see the output folder, "
        "a shared file system or an object store (s3://...), not a node's own disk"
    )


def finished_tasks(markers: AnyPath, tasks: Sequence[Task]) -> dict[str, Any]:
    """Results of the tasks whose marker exists (one listing of the marker folder, not a request
    per task: on an object store each would be a round trip)."""
    present = {p.name: p for p in list_files(markers, "*.json")}
    return {t.key: read_json(present[f"{t.key}.json"]) for t in tasks if f"{t.key}.json" in present}
