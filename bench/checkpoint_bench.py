"""Benchmark: how long training waits for a checkpoint, crawlmill's dist_checkpointing saves
(synchronous, and asynchronous: the GPU path's mechanism, run here on CPU) against torch.save of the
whole state dict (nanoGPT's checkpoint, and crawlmill's own before it moved to dist_checkpointing).

A real Megatron-Core GPTModel of a built-in config (default `125m`, fp32, vocabulary 102,400) with
torch AdamW after one step (so both moments exist), in one process with a gloo group of 1. Each
method saves `--repeats` times after one warm-up save (left out: the first dist_checkpointing save
starts its result queue's helper process, reported apart as start-up); reported per method: the
median seconds training waited (until save returned), the median seconds until the checkpoint was
complete, and its bytes on disk. Each saved checkpoint is loaded back into a fresh model and
optimizer and compared tensor by tensor (a wrong save fails the benchmark).

    python bench/checkpoint_bench.py                      # 125m, 3 repeats
    python bench/checkpoint_bench.py --config tiny --repeats 5

Writes bench/out/checkpoint.json.
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
    from crawlmill.training.backends import TorchBackend
    from crawlmill.training.config import load_train_config
    from crawlmill.training.model import build_model
    from crawlmill.training.trainer import seed_everything

    config = load_train_config(config_name)
    seed_everything(seed)
    vocab = config.model.vocab_size or 102_400
    model = build_model(config.model, vocab, "fp32", config.parallel)
    backend = TorchBackend(model, config.optimizer, 1e-4, torch.device("cpu"), None)
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


def measure(method: str, backend, fresh, work: Path, repeats: int) -> dict:
    from crawlmill.training.sharded_io import ShardedWriter, load_sharded, torch_optimizer_state

    waits, totals, sizes = [], [], []
    writer = ShardedWriter(asynchronous=method == "dist_checkpointing async") if method != "torch.save" else None
    for attempt in range(repeats + 1):
        target = work / f"{method.replace(' ', '-')}-{attempt}"
        started = time.perf_counter()
        if writer is None:
            torch.save({"model": backend.model.state_dict(), "optimizer": backend.optimizer.state_dict()}, target)
            waited = time.perf_counter() - started
        else:
            writer.save(backend.sharded_state_dict(), target)
            waited = time.perf_counter() - started
            writer.wait()
        total = time.perf_counter() - started
        if attempt == 0:
            startup = total
        else:
            waits.append(waited), totals.append(total), sizes.append(_folder_bytes(target))
        if attempt < repeats:  # the last one is loaded back below; the rest only take disk
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
        raise SystemExit(f"{method}: the loaded checkpoint differs from the saved state")
    return {
        "method": method, "waited_s": round(statistics.median(waits), 3), "complete_s": round(statistics.median(totals), 3),
        "first_save_s": round(startup, 3), "bytes": sizes[0], "repeats": repeats, "round_trip_exact": True,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="125m", help="built-in model config (default 125m)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/checkpoint.json")
    args = parser.parse_args()
    from megatron.core import parallel_state

    work = Path(tempfile.mkdtemp(prefix="checkpoint-bench-"))
    dist.init_process_group("gloo", init_method=f"file://{work / 'store'}", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    backend = _build(args.config, seed=1)
    parameters = sum(p.numel() for p in backend.model.parameters())
    rows = []
    for method in ("torch.save", "dist_checkpointing sync", "dist_checkpointing async"):
        rows.append(measure(method, backend, _build(args.config, seed=2), work, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    result = {"benchmark": "checkpoint", "config": args.config, "parameters": parameters, "results": rows, "run": run_info()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"{args.config}: {parameters:,} parameters; wrote {args.json}")


if __name__ == "__main__":
    main()
