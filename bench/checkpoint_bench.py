"""Benchmark: how long training waits for a checkpoint, crawlmill's dist_checkpointing saves
(synchronous, and asynchronous: the GPU path's mechanism, run here on CPU) against torch.save of the
whole state dict (nanoGPT's checkpoint, and crawlmill's own before it moved to dist_checkpointing).

A real Megatron-Core GPTModel of a built-in config (default `125m`, fp32, vocabulary 102,400) with
torch AdamW after one step (so both moments exist), in one process with a gloo group of 1, or with
`--ranks N` in N processes holding the same replica (data parallel, as a DDP run on one machine).
Each method saves `--repeats` times after one warm-up save (left out: the first dist_checkpointing
save starts its result queue's helper process, reported apart as start-up); reported per method:
the median seconds training waited (until save returned, the slowest rank: the next step's
all-reduce waits for it), the median seconds until the checkpoint was complete, its bytes on disk
and the bytes each rank wrote. Each saved checkpoint is loaded back into a fresh model and optimizer
on every rank and compared tensor by tensor (a wrong save fails the benchmark).

With several ranks the methods are torch.save on rank 0 (a DDP run's checkpoint), dist_checkpointing
with data-parallel rank 0 writing every replicated tensor (its plain strategy), and crawlmill's
default, Megatron's fully parallel strategy (the writes spread over the ranks), each sync and async,
and each with the first save's plan reused (`constant_structure`).

    python bench/checkpoint_bench.py                      # 125m, 3 repeats
    python bench/checkpoint_bench.py --config tiny --repeats 5
    python bench/checkpoint_bench.py --ranks 2            # rank 0 writing against fully parallel

Writes bench/out/checkpoint.json (checkpoint-ranks2.json for --ranks 2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from harness import run_info

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _build(config_name: str, seed: int):
    from megatron.core import parallel_state

    from crawlmill.training.backends import TorchBackend
    from crawlmill.training.config import load_train_config
    from crawlmill.training.model import build_model
    from crawlmill.training.trainer import seed_everything

    config = load_train_config(config_name)
    seed_everything(seed)
    vocab = config.model.vocab_size or 102_400
    model = build_model(config.model, vocab, "fp32", config.parallel)
    backend = TorchBackend(model, config.optimizer, 1e-4, torch.device("cpu"), parallel_state.get_data_parallel_group(), parallel_state.get_model_parallel_group())
    tokens = torch.randint(0, vocab, (1, 128), generator=torch.Generator().manual_seed(seed))
    batch = {"tokens": tokens, "labels": tokens.roll(-1, 1), "loss_mask": torch.ones(1, 128), "position_ids": torch.arange(128).unsqueeze(0)}
    backend.step([batch], 1e-4)
    return backend


def _tensors(backend) -> dict[str, torch.Tensor]:
    state = {f"model.{k}": v for k, v in backend.model.state_dict().items() if torch.is_tensor(v)}
    for pid, moments in backend.optimizer.state_dict()["state"].items():
        state.update({f"optimizer.{pid}.{k}": v for k, v in moments.items()})
    return state


def _same(a, b) -> bool:
    x, y = _tensors(a), _tensors(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k].to(x[k].dtype)) for k in x)


METHODS = {  # name: (ShardedWriter's keyword arguments, or None for torch.save on rank 0)
    "torch.save": None,
    "dist_checkpointing sync": {"asynchronous": False},
    "dist_checkpointing async": {"asynchronous": True},
}
RANK0_METHODS = {  # several ranks: who writes the replicated tensors, and whether the plan is reused
    f"dist_checkpointing {mode}, {who}{', constant structure' if constant else ''}": {
        "asynchronous": mode == "async", "fully_parallel": who == "fully parallel", "constant_structure": constant,
    }
    for mode in ("sync", "async") for constant in (False, True) for who in ("rank 0 writes", "fully parallel")
}  # fmt: skip


def _rank_bytes(target: Path, rank: int) -> int:
    if not target.is_dir():
        return target.stat().st_size if rank == 0 else 0
    return sum(p.stat().st_size for p in target.glob(f"__{rank}_*.distcp"))


def measure(method: str, options: dict | None, backend, fresh, work: Path, repeats: int) -> dict:
    """One method on this rank: its waits, totals and bytes written (collective with several ranks)."""
    from crawlmill.training.sharded_io import ShardedWriter, load_sharded, torch_optimizer_state

    rank = dist.get_rank()
    waits, totals, sizes, wrote = [], [], [], []
    writer = ShardedWriter(**options) if options is not None else None
    slug = method.replace(" ", "-").replace(",", "")
    for attempt in range(repeats + 1):
        target = work / f"{slug}-{attempt}"
        dist.barrier()
        started = time.perf_counter()
        if writer is None:
            if rank == 0:
                torch.save({"model": backend.model.state_dict(), "optimizer": backend.optimizer.state_dict()}, target)
            waited = time.perf_counter() - started
            dist.barrier()
        else:
            writer.save(backend.sharded_state_dict(), target)
            waited = time.perf_counter() - started
            writer.wait()
        total = time.perf_counter() - started
        if attempt == 0:
            startup = total
        else:
            waits.append(waited), totals.append(total), sizes.append(_folder_bytes(target)), wrote.append(_rank_bytes(target, rank))
        if attempt < repeats:  # the last one is loaded back below; the rest only take disk
            dist.barrier()
            if rank == 0:
                shutil.rmtree(target) if target.is_dir() else target.unlink()
    if writer is not None:
        writer.close()
        loaded = load_sharded(fresh.sharded_state_dict(is_loading=True), target)
        fresh.model.load_state_dict(loaded["model"])
        fresh.optimizer.load_state_dict(torch_optimizer_state(loaded["optimizer"]))
    else:
        state = torch.load(target, weights_only=True)
        fresh.model.load_state_dict(state["model"])
        fresh.optimizer.load_state_dict(state["optimizer"])
    if not _same(backend, fresh):
        raise SystemExit(f"{method}: the loaded checkpoint differs from the saved state (rank {rank})")
    return {"waits": waits, "totals": totals, "startup": startup, "bytes": sizes[0], "wrote": wrote[0]}


def _row(method: str, ranks: list[dict], repeats: int) -> dict:
    """The slowest rank of each repeat, then the median over the repeats."""
    slowest = [max(values) for values in zip(*(r["waits"] for r in ranks), strict=True)]
    complete = [max(values) for values in zip(*(r["totals"] for r in ranks), strict=True)]
    return {
        "method": method, "waited_s": round(statistics.median(slowest), 3), "complete_s": round(statistics.median(complete), 3),
        "first_save_s": round(max(r["startup"] for r in ranks), 3), "bytes": ranks[0]["bytes"], "bytes_by_rank": [r["wrote"] for r in ranks],
        "repeats": repeats, "round_trip_exact": True,
    }  # fmt: skip


def run_rank(rank: int, args: argparse.Namespace, work: Path, results: Path) -> None:
    from megatron.core import parallel_state

    dist.init_process_group("gloo", init_method=f"file://{work / 'store'}", rank=rank, world_size=args.ranks)
    parallel_state.initialize_model_parallel(1, 1)  # every rank one data-parallel replica
    backend = _build(args.config, 1)
    methods = METHODS if args.ranks == 1 else {"torch.save": None, **RANK0_METHODS}
    rows = []
    for method, options in methods.items():
        mine = measure(method, options, backend, _build(args.config, 2), work, args.repeats)
        everyone: list = [None] * args.ranks
        dist.all_gather_object(everyone, mine)
        rows.append(_row(method, everyone, args.repeats))
        if rank == 0:
            print(json.dumps(rows[-1]), flush=True)
    if rank == 0:
        parameters = sum(p.numel() for p in backend.model.parameters())
        results.write_text(json.dumps({"parameters": parameters, "results": rows}))
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="125m", help="built-in model config (default 125m)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ranks", type=int, default=1, help="data-parallel processes saving together (default 1)")
    parser.add_argument("--json", type=Path, help="where to write (default bench/out/checkpoint.json, checkpoint-ranksN.json)")
    args = parser.parse_args()
    args.json = args.json or REPO / "bench/out" / ("checkpoint.json" if args.ranks == 1 else f"checkpoint-ranks{args.ranks}.json")
    work = Path(tempfile.mkdtemp(prefix="checkpoint-bench-"))
    results = work / "results.json"
    try:
        if args.ranks == 1:
            run_rank(0, args, work, results)
        else:
            torch.multiprocessing.spawn(run_rank, args=(args, work, results), nprocs=args.ranks)
        found = json.loads(results.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"benchmark": "checkpoint", "config": args.config, "ranks": args.ranks, **found, "run": run_info()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"{args.config}: {found['parameters']:,} parameters, {args.ranks} rank(s); wrote {args.json}")


if __name__ == "__main__":
    main()
