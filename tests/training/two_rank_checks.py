"""The two-rank probes of tests/training/test_backends.py (megatron_context_probe.py,
megatron_pipeline_probe.py, megatron_reshard_probe.py) in one torchrun launch: each check named
runs in turn on the same two ranks, so that torch, Megatron and the process group start once for
the three. Rank 0 prints `check NAME` as each begins; the probe's report (two_rank_probe.report) is
its JSON line. A check that raises ends the launch there (run on, the ranks could wait on each
other's collectives): test_backends.py names it, and the checks after it as not run.

    torchrun --nproc-per-node 2 tests/training/two_rank_checks.py WORK_DIR context pipeline reshard
"""

import sys
import warnings
from pathlib import Path

import cuda_on_cpu  # noqa: F401 - first: the CUDA-only code paths on CPU
import megatron_context_probe
import megatron_pipeline_probe
import megatron_reshard_probe

warnings.filterwarnings("ignore")

# each check's work folder is WORK_DIR/NAME
CHECKS = {
    "context": lambda work: megatron_context_probe.main(),
    "pipeline": lambda work: megatron_pipeline_probe.main(),
    "reshard": megatron_reshard_probe.main,
}


if __name__ == "__main__":  # not in the processes Megatron's checkpoint writer spawns, which import this file again
    from crawlmill.training.trainer import init_distributed

    rank, _, _ = init_distributed()  # the probes' own calls keep this group
    for name in sys.argv[2:]:
        if rank == 0:
            print(f"check {name}", flush=True)
        CHECKS[name](Path(sys.argv[1]) / name)
