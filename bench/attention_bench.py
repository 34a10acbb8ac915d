"""Benchmark: the local spec's core attention, crawlmill's SdpaAttention (torch's fused
scaled_dot_product_attention, training/attention.py) against Megatron-Core's DotProductAttention
(the unfused attention Megatron's local spec uses when Transformer Engine is absent), forward and
backward on the same inputs, at a model config's shape (heads, head dim, key/value groups, context).
A third method, "context", is what a context-parallel rank computes (training/context_parallel.py:
the sequence as two chunks, each query chunk against the keys up to it under a lower-right causal
mask, the keys gathered over a one-rank group): its kernels' dispatch and cost beside one causal call.

Each method runs in a fresh process (so that one's peak memory is not the other's): `--repeats`
timed forward+backward passes after one warm-up, the median reported, with the peak memory the
passes added (CPU: the process's peak resident set size; GPU: torch's peak allocation) and the largest difference
of the outputs and input gradients between the two methods.

    python bench/attention_bench.py                                 # 1b shapes, batch 1, fp32 (CPU)
    python bench/attention_bench.py --config 1b --batch 4 --dtype bf16    # on a GPU

Writes bench/out/attention.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import device_name, run_info

REPO = Path(__file__).resolve().parents[1]
METHODS = ("megatron", "sdpa", "context")


def measure(method: str, config_name: str, batch: int, dtype_name: str, repeats: int, seq: int | None, out: Path) -> None:
    """In this process: build the method's module, time it, save its outputs for the comparison."""
    import psutil
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state
    from megatron.core.transformer.dot_product_attention import DotProductAttention
    from megatron.core.transformer.enums import AttnMaskType

    from crawlmill.training.attention import SdpaAttention
    from crawlmill.training.compat import causal_mask, device_scope, use_cuda
    from crawlmill.training.config import load_train_config
    from crawlmill.training.context_parallel import context_parallel_attention
    from crawlmill.training.model import transformer_config
    from crawlmill.training.trainer import seed_everything

    model = load_train_config(config_name).model
    seq = seq or model.seq_length
    device = torch.device("cuda") if use_cuda() else torch.device("cpu")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    dist.init_process_group("nccl" if use_cuda() else "gloo", init_method=f"file://{out}.store", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    seed_everything(0)
    config = transformer_config(model, dtype_name)
    module = (DotProductAttention if method == "megatron" else SdpaAttention)(config, 1, AttnMaskType.causal, "self")
    if method == "context":  # one rank's work under context parallelism, on a group of one
        module = lambda q, k, v, mask: context_parallel_attention(q, k, v, None, dist.group.WORLD).flatten(2)  # noqa: E731
    generator = torch.Generator().manual_seed(0)
    shape = lambda heads: (seq, batch, heads, model.head_dim)  # noqa: E731
    q = torch.randn(shape(model.num_attention_heads), generator=generator)
    k, v = (torch.randn(shape(model.query_groups), generator=generator) for _ in range(2))
    grad = torch.randn(seq, batch, model.num_attention_heads * model.head_dim, generator=generator)
    q, k, v, grad = (t.to(device, dtype) for t in (q, k, v, grad))
    mask = causal_mask(seq, device)

    def step() -> tuple:
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        with device_scope():
            output = module(*leaves, mask)
        output.backward(grad)
        if use_cuda():
            torch.cuda.synchronize()
        return output.detach(), [t.grad for t in leaves]

    # peak memory over the warm-up and the timed passes, above what the inputs and module hold
    if use_cuda():
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if use_cuda() else psutil.Process().memory_info().rss
    step()  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        output, grads = step()
        seconds.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() if use_cuda() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    torch.save({"output": output.float().cpu(), "grads": [g.float().cpu() for g in grads]}, f"{out}.pt")
    out.write_text(json.dumps({"seconds": statistics.median(seconds), "peak_added_mib": round((peak - base) / 2**20, 1), "seq": seq}))
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="1b", help="built-in training config whose attention shape is used (default 1b)")
    parser.add_argument("--seq", type=int, default=None, help="context length (default: the config's)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/attention.json")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)  # internal: one method's process
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        measure(args.method, args.config, args.batch, args.dtype, args.repeats, args.seq, args.out)
        return

    import torch

    work = Path(tempfile.mkdtemp(prefix="attention-bench-"))
    figures = {}
    for method in METHODS:
        out = work / method
        command = [sys.executable, __file__, "--method", method, "--out", str(out), "--config", args.config, "--batch", str(args.batch),
                   "--dtype", args.dtype, "--repeats", str(args.repeats), *(["--seq", str(args.seq)] if args.seq else [])]  # fmt: skip
        subprocess.run(command, check=True, env={**os.environ, "RAY_ADDRESS": ""})
        figures[method] = json.loads(out.read_text())
    saved = {m: torch.load(work / f"{m}.pt") for m in METHODS}

    def differences(a: dict, b: dict) -> list[float]:
        return [float((x - y).abs().max()) for x, y in zip([a["output"], *a["grads"]], [b["output"], *b["grads"]], strict=True)]
    result = {
        **run_info(),
        "config": args.config,
        "seq": figures["sdpa"]["seq"],
        "batch": args.batch,
        "dtype": args.dtype,
        "device": device_name(),
        "methods": figures,
        "speedup": round(figures["megatron"]["seconds"] / figures["sdpa"]["seconds"], 2),
        "max_difference_output_dq_dk_dv": differences(saved["megatron"], saved["sdpa"]),
        "context_seconds_over_sdpa": round(figures["context"]["seconds"] / figures["sdpa"]["seconds"], 2),
        "context_max_difference_from_sdpa": differences(saved["context"], saved["sdpa"]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
