"""Check and benchmark: a training run stopped and resumed against the same run undisturbed, with
asynchronous and synchronous checkpoints. On a GPU this is the GPU path's resume: Megatron's
distributed optimizer saving its sharded state (dp_reshardable, or with --optimizer-sharding
fully_reshardable gathered into one tensor per parameter) and dist_checkpointing's async save of
CUDA tensors; on CPU the same commands run torch AdamW (tests/training shows CPU's exact resume;
here it is a smoke run of the script).

Four `crawlmill train` runs of one config on the same shards, checkpoints every `--steps / 2`:
- `straight`: `--steps` steps, async save where the run's default is (GPU);
- `sync`: the same with `checkpoint.async_save: never` (the stall an async save avoids);
- `split`: `--stop-after steps/2`, then `--resume` to the end.
Reported: per step after the stop, the loss and grad norm of `split` against `straight` (bitwise
equal or the largest difference), how long each checkpoint kept training waiting (async against
sync), the optimizer entries found in the checkpoint's dist_checkpointing metadata, the bytes.

    python bench/train_resume.py --shards .gpu/shards                       # GPU: 125m, 40 steps
    python bench/train_resume.py --shards .gpu/shards --optimizer-sharding fully_reshardable
    python bench/train_resume.py --config tiny --steps 10 --global-batch 8 --shards out/shards   # CPU smoke

Writes bench/out/train_resume.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import crawlmill_cli, device_name, run_info

from crawlmill.training.runlog import read_run

REPO = Path(__file__).resolve().parents[1]


def crawlmill_train(config: Path, shards: Path, run: Path, *extra: str) -> None:
    crawlmill_cli("train", "--config", str(config), "--data", str(shards), "--output", str(run), *extra)


def checkpoint_contents(run: Path) -> dict[str, Any]:
    """The newest checkpoint's dist_checkpointing keys (model and optimizer entries) and bytes."""
    from torch.distributed.checkpoint import FileSystemReader

    folder = run / "checkpoints" / (run / "checkpoints/latest").read_text().strip()
    keys = list(FileSystemReader(str(folder / "model")).read_metadata().state_dict_metadata)
    optimizer = [k for k in keys if k.startswith("optimizer")]
    return {
        "folder": folder.name,
        "keys": len(keys),
        "optimizer_keys": len(optimizer),
        "optimizer_key_examples": sorted(optimizer)[:4],
        "bytes": sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()),
    }


def compare(straight: list[dict[str, Any]], split: list[dict[str, Any]], after: int) -> dict[str, Any]:
    a = {r["step"]: r for r in straight if r["step"] > after}
    b = {r["step"]: r for r in split if r["step"] > after}
    if sorted(a) != sorted(b) or not a:
        return {"steps_compared": 0, "error": f"steps differ: straight {sorted(a)}, split {sorted(b)}"}
    diff = lambda key: max(abs(a[s][key] - b[s][key]) for s in a)  # noqa: E731
    return {
        "steps_compared": len(a),
        "bitwise_equal": all(a[s]["loss"] == b[s]["loss"] and a[s]["grad_norm"] == b[s]["grad_norm"] for s in a),
        "max_loss_difference": diff("loss"),
        "max_grad_norm_difference": diff("grad_norm"),
        "loss_straight_split": [[s, a[s]["loss"], b[s]["loss"]] for s in sorted(a)][:: max(1, len(a) // 5)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, required=True, help="a pack output folder (crawlmill pack, or scripts/gpu_kit.sh)")
    parser.add_argument("--config", default="125m", help="built-in training config (default 125m; tiny on CPU)")
    parser.add_argument("--steps", type=int, default=40, help="steps of the whole run; it stops and checkpoints halfway")
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--optimizer-sharding", choices=["dp_reshardable", "fully_reshardable"], default="dp_reshardable",
                        help="checkpoint.optimizer_sharding: how the GPU backend saves the distributed optimizer's states (CPU: ignored)")
    parser.add_argument("--work", type=Path, default=None, help="where the runs go (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/train_resume.json")
    args = parser.parse_args()
    if args.steps < 4 or args.steps % 2:
        parser.error("--steps must be even and at least 4")
    half = args.steps // 2

    work = args.work or Path(tempfile.mkdtemp(prefix="train-resume-"))
    work.mkdir(parents=True, exist_ok=True)

    def config(async_save: str) -> Path:
        path = work / f"{async_save}.yaml"
        path.write_text(json.dumps({
            "base": args.config, "max_steps": args.steps, "global_batch_size": args.global_batch, "micro_batch_size": args.micro_batch,
            "log_interval": 1, "eval": {"interval": 10**9, "iters": 1}, "optimizer": {"lr": 3e-4}, "schedule": {"warmup_steps": 5},
            "checkpoint": {"every_minutes": 0, "every_steps": half, "keep": 2, "async_save": async_save, "optimizer_sharding": args.optimizer_sharding},
        }))  # fmt: skip
        return path

    crawlmill_train(config("gpu"), args.shards, work / "straight", "--overwrite")
    crawlmill_train(config("never"), args.shards, work / "sync", "--overwrite")
    crawlmill_train(config("gpu"), args.shards, work / "split", "--overwrite", "--stop-after", str(half))
    crawlmill_train(config("gpu"), args.shards, work / "split", "--resume")

    runs = {name: read_run(work / name) for name in ("straight", "sync", "split")}
    waited = {name: [r["seconds"] for r in run["checkpoint"]] for name, run in runs.items()}
    device = device_name()
    result = {
        **run_info(),
        "config": args.config,
        "steps": args.steps,
        "stopped_at": half,
        "device": device,
        "backend": "megatron distributed optimizer" if device != "cpu" else "torch AdamW",
        "optimizer_sharding": json.loads((work / "split/checkpoints" / (work / "split/checkpoints/latest").read_text().strip() / "meta.json").read_text()).get("optimizer_sharding"),
        "resume": compare(runs["straight"]["train"], runs["split"]["train"], half),
        "checkpoint_waited_s": {"async (straight)": waited["straight"], "sync": waited["sync"], "split": waited["split"]},
        "checkpoint": checkpoint_contents(work / "straight"),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    if not result["resume"]["steps_compared"]:
        sys.exit(f"resume check failed: {result['resume']['error']}")


if __name__ == "__main__":
    main()
