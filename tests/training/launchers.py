"""Training runs launched as users launch them, for the multi-process tests: `torchrun` on one or
several nodes, or plain processes given the ranks' environment as `srun` does."""

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml


def launch_nodes(tmp_path: Path, name: str, config: dict, *more: str, ranks: int = 2, port: int = 29533, nodes: int = 1, node_env: list[dict] | None = None,
                 node_cwd: list[Path] | None = None, output: str | None = None, srun: bool = False) -> list[tuple[int, str]]:  # fmt: skip
    """`torchrun --nproc-per-node RANKS -m crawlmill.cli train --config <config> ...` (ranks 1: plain
    python), the run folder tmp_path/name; `nodes` > 1: that many torchrun agents, `--nnodes NODES
    --node-rank I` each with RANKS / NODES ranks, as on machines (every node's first rank has
    LOCAL_RANK 0), `node_env[i]` added to node i's environment, `node_cwd[i]` its working folder;
    `output`: the run folder instead (a URL, or a relative path); `srun`: each rank a plain python
    process given RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT but no LOCAL_RANK, as `srun` without
    torchrun starts them (one rank per node). Returns each node's exit code and stderr. A hang ends
    every rank and fails the test."""
    env = {key: value for key, value in os.environ.items() if key != "LOCAL_RANK"} | {"RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    if srun:
        assert ranks == nodes, "srun here: one rank per node"
        node_env = [{**(node_env[node] if node_env else {}), "RANK": str(node), "WORLD_SIZE": str(nodes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
                    for node in range(nodes)]  # fmt: skip
    per_node = ["--nproc-per-node", str(ranks // nodes), "--master-addr", "127.0.0.1", "--master-port", str(port)]
    launchers = [[sys.executable, "-m", "torch.distributed.run", *per_node, *(["--nnodes", str(nodes), "--node-rank", str(node)] if nodes > 1 else [])]
                 for node in range(nodes)] if ranks > 1 and not srun else [[sys.executable]] * nodes  # fmt: skip
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    args = ["-m", "crawlmill.cli", "train", "--config", str(tmp_path / f"{name}.yaml"), "--no-progress", "--output", output or str(tmp_path / name), *more]
    processes = [subprocess.Popen([*launcher, *args], env={**env, **(node_env[node] if node_env else {})}, cwd=node_cwd[node] if node_cwd else None,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
                 for node, launcher in enumerate(launchers)]  # fmt: skip
    results = []
    for process in processes:
        try:
            results.append(process.communicate(timeout=300)[1])
        except subprocess.TimeoutExpired:  # ranks that wait on each other: end them all, not only torchrun
            for each in processes:
                os.killpg(each.pid, signal.SIGKILL)
            pytest.fail(f"{name}: the ranks did not finish in 300 s (a hang)\n{process.communicate()[1][-3000:]}")
    return [(process.returncode, stderr) for process, stderr in zip(processes, results, strict=True)]


def cli_errors(stderr: str) -> str:
    """The CLI's error lines (before torchrun's tracebacks)."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith("error:"))


def torchrun(tmp_path: Path, name: str, config: dict, *more: str, **options: Any) -> Path:
    """launch_nodes(), every node succeeding; the run folder tmp_path/name."""
    failed = [f"node {node}: {stderr[-3000:]}\n{cli_errors(stderr)}" for node, (code, stderr) in enumerate(launch_nodes(tmp_path, name, config, *more, **options)) if code]
    assert not failed, "\n".join(failed)
    return tmp_path / name


def torchrun_config(shards: Path) -> dict:
    return {"base": "tiny", "max_steps": 6, "log_interval": 1, "data": {"shards": [str(shards)]}, "eval": {"interval": 6, "iters": 1},
            "optimizer": {"grad_clip": 0.2}, "checkpoint": {"every_steps": 2}}  # fmt: skip
