"""Just-in-time checkpoints on Ray: when a node of the run is about to be reclaimed (a spot
instance's notice, KubeRay or the autoscaler draining it with reason preemption), Ray Train 2.60
tells the workers (`ray.train.get_preemption_info()`); the run then saves a checkpoint at the step
it has reached and trains on. When the node goes, Ray Train restarts the workers
(FailureConfig.max_preemption_failures, unlimited by default) and they resume from that checkpoint:
a preemption costs the steps since the notice, not up to `checkpoint.every_minutes` of them.

Outside Ray Train (torchrun, one process) the stop signal does this job (stopsignal.py).
`get_preemption_info` is a collective of Ray Train's workers (rank 0's view, broadcast), so every
rank asks after every step and all decide alike; each notice (its nodes and deadline) is acted on
once. `checkpoint.on_preemption: false` turns it off.

    notice = PreemptionNotice(enabled=under_ray_train)
    for step in ...:
        if (news := notice.poll()) is not None:
            save(step)
"""

from __future__ import annotations

from typing import Any


class PreemptionNotice:
    """Polls Ray Train for a preemption notice; `poll()` returns a new one once, else None."""

    def __init__(self, enabled: bool) -> None:
        self._ask: Any = None
        if enabled:
            try:
                from ray.train import get_preemption_info
            except ImportError:  # a Ray without it (before 2.60): no notices
                get_preemption_info = None
            self._ask = get_preemption_info
        self._seen: tuple[Any, ...] | None = None

    @property
    def enabled(self) -> bool:
        return self._ask is not None

    def poll(self) -> dict[str, Any] | None:
        """{"nodes": [...], "ranks": [...], "deadline_ms": ...} of a notice not acted on yet, else None. Collective."""
        if self._ask is None:
            return None
        info = self._ask()
        if info is None:
            return None
        nodes = {node: sorted(ranks) for node, ranks in sorted(info.preempted_node_to_ranks.items())}
        key = (info.deadline_ms, tuple(nodes))
        if key == self._seen:
            return None
        self._seen = key
        return {"nodes": list(nodes), "ranks": sorted({r for ranks in nodes.values() for r in ranks}), "deadline_ms": info.deadline_ms}
