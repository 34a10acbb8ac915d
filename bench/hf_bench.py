"""Benchmark: the memory and time of `crawlmill export` (a checkpoint streamed one decoder layer at a
time into safetensors files) and `crawlmill import` (a checkpoint written a parameter at a time, each
read from the files when it is written, the model built on the meta device) against the whole-model paths. Export's peer: the run's Megatron model built,
the checkpoint loaded into it through dist_checkpointing, its state dict renamed and written with
safetensors' save_file. Import's peer: every file read first (safetensors' load_file), the weights
fused, then loaded into the model (load_state_dict) and saved. Both peers are what Megatron-LM's
checkpoint converters do (the whole model in memory), and what crawlmill did before it streamed.

A run folder is made first, in its own process: a built-in config's model (default `1b`, fp32
weights, vocabulary 102,400, initialized by Megatron) saved by the trainer's Checkpointer as
checkpoint step 0 (model only: neither method reads optimizer state), with a run.json naming
`--shards` (export copies the tokenizer their manifest names; `crawlmill run configs/demo.yaml`
writes demo-output/shards). Then each method exports it to bf16, in a fresh process whose RSS
harness.run_tree polls: the peak RSS of the converting process (the tree's sum is recorded too, but
it counts again the pages that dist_checkpointing's forked helper processes share with it); a
process that only imports what both need gives the fixed cost. Then the
exported folder is imported by each import method. The methods of each must write the same tensors,
bit for bit (checked a tensor at a time), or the benchmark fails.

    python bench/hf_bench.py                                  # 1b
    python bench/hf_bench.py --config 125m --shard-size 1GB   # a smaller model, split files

Writes bench/out/hf.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from harness import REPO, run_info, run_tree

sys.path.insert(0, str(REPO))

IMPORTS = "import torch, megatron.core, crawlmill.training.export_hf, crawlmill.training.import_hf, crawlmill.training.run_model, crawlmill.training.model"


def make_run(run: Path, config_name: str, shards: str) -> None:
    """A run folder whose one checkpoint holds the freshly initialized model of `config_name`."""
    import torch.distributed as dist

    from crawlmill.training.checkpoint import Checkpointer
    from crawlmill.training.rng_state import rng_state
    from crawlmill.training.config import load_train_config
    from crawlmill.training.model import build_model
    from crawlmill.training.run_model import one_process_model_parallel

    config = load_train_config(config_name, {"data": {"shards": [shards]}})
    vocab = config.model.vocab_size or 102_400
    with one_process_model_parallel():
        model = build_model(config.model, vocab, "fp32")
        saver = Checkpointer(run, 0, 1, 1, False, dist.barrier)
        saver.save(0, {"model": model.sharded_state_dict()}, rng_state(), {"consumed_samples": 0, "tokens": 0})
        saver.close()
    info = {"config": asdict(config), "model": {"vocab_size": vocab, "parameters": config.model.parameters(vocab)}}
    (run / "run.json").write_text(json.dumps(info, indent=1, default=str))


def whole_model_export(run: str, output: Path, shard_bytes: int) -> None:
    """The peer: the model built and loaded, then its state dict renamed, converted and written
    with the safetensors library's save_file, a file at a time (as transformers' save_pretrained),
    split where crawlmill's export splits."""
    import torch
    from safetensors.torch import save_file

    from crawlmill.training.export_hf import llama_weights, plan_files
    from crawlmill.training.run_model import load_run_model, one_process_model_parallel, run_model_config

    model_config, _, info = run_model_config(run)
    with one_process_model_parallel():
        model, _, _ = load_run_model(run, None, info)
        tensors = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in llama_weights(model.state_dict(), model_config).items()}
        del model
    output.mkdir(parents=True)
    for name, group in plan_files(tensors, shard_bytes).items():
        save_file({n: tensors[n] for n in group}, str(output / name), metadata={"format": "pt"})


def streaming_export(run: str, output: Path, shard_bytes: int) -> None:
    from crawlmill.training.export_hf import export_run

    export_run(run, output, dtype="bf16", shard_bytes=shard_bytes)


def streaming_import(hf: str, output: Path, shard_bytes: int) -> None:
    from crawlmill.training.import_hf import import_hf

    import_hf(hf, output)


def whole_files_import(hf: str, output: Path, shard_bytes: int) -> None:
    """The peer: every file read, the weights fused, then the model built and loaded, and saved."""
    import torch.distributed as dist
    from safetensors.torch import load_file

    from crawlmill.training.checkpoint import Checkpointer
    from crawlmill.training.rng_state import rng_state
    from crawlmill.training.import_hf import megatron_tensors, model_config_of
    from crawlmill.training.model import build_model
    from crawlmill.training.run_model import one_process_model_parallel

    folder = Path(hf)
    model = model_config_of(json.loads((folder / "config.json").read_text()))
    weights = {k: v for path in sorted(folder.glob("*.safetensors")) for k, v in load_file(path).items()}
    fused = dict(megatron_tensors(weights, model))
    del weights
    with one_process_model_parallel():
        gpt = build_model(model, int(model.vocab_size), "bf16")
        gpt.load_state_dict(fused, strict=False)
        del fused
        saver = Checkpointer(output, 0, 1, 1, False, dist.barrier)
        saver.save(0, {"model": gpt.sharded_state_dict()}, rng_state(), {"consumed_samples": 0, "tokens": 0})
        saver.close()


METHODS = {"crawlmill export (streaming)": streaming_export, "whole model (Megatron load)": whole_model_export}
IMPORT_METHODS = {"crawlmill import (a parameter at a time)": streaming_import, "all files read, then loaded": whole_files_import}


def same_checkpoints(a: Path, b: Path) -> bool:
    """Whether two checkpoints' model folders hold the same weights (read a layer at a time)."""
    from crawlmill.training.checkpoint_weights import checkpoint_reader, checkpoint_weights, weight_shapes

    x, y = checkpoint_reader(a), checkpoint_reader(b)
    shapes = weight_shapes(x)
    if shapes != weight_shapes(y):
        return False
    return all(p[0] == q[0] and p[1].equal(q[1]) for p, q in zip(checkpoint_weights(x, shapes), checkpoint_weights(y, shapes), strict=True))


def same_weights(a: Path, b: Path) -> bool:
    """Whether two folders' safetensors files hold the same tensors, bit for bit (one at a time)."""
    from safetensors import safe_open

    files = sorted(p.name for p in a.glob("*.safetensors"))
    if files != sorted(p.name for p in b.glob("*.safetensors")):
        return False
    for name in files:
        with safe_open(str(a / name), "pt") as x, safe_open(str(b / name), "pt") as y:
            if set(x.keys()) != set(y.keys()) or not all(x.get_tensor(k).equal(y.get_tensor(k)) for k in x.keys()):
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="1b", help="built-in model config (default 1b)")
    parser.add_argument("--shards", default=str(REPO / "demo-output/shards"), help="shards with a manifest.json (their tokenizer is exported)")
    parser.add_argument("--shard-size", default="5GB", help="export's --shard-size (default 5GB, Hugging Face's)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, deleted)")
    parser.add_argument("--json", default=str(REPO / "bench/out/hf.json"))
    parser.add_argument("--_child", nargs=3, metavar=("WHAT", "RUN", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    from crawlmill.hf_cli import parse_size

    shard_bytes = parse_size(args.shard_size)
    if args._child:
        what, run, output = args._child
        make_run(Path(run), args.config, args.shards) if what == "make" else {**METHODS, **IMPORT_METHODS}[what](run, Path(output), shard_bytes)
        return
    if not (Path(args.shards) / "manifest.json").is_file():
        sys.exit(f"{args.shards}: no manifest.json; run `crawlmill run configs/demo.yaml` first, or give --shards")
    work = Path(args.work or tempfile.mkdtemp(prefix="export-bench-"))
    run = work / "run"
    child = [sys.executable, str(Path(__file__).resolve()), "--config", args.config, "--shards", args.shards, "--shard-size", args.shard_size, "--_child"]
    made = run_tree([*child, "make", str(run), "-"], timeout=1800)
    if made.returncode != 0:
        sys.exit(f"making the run failed:\n{made.stderr[-3000:]}")
    checkpoint_bytes = sum(p.stat().st_size for p in (run / "checkpoints").rglob("*.distcp"))
    base = run_tree([sys.executable, "-c", IMPORTS], timeout=600)
    results, outputs = {}, []
    for name in METHODS:
        outputs.append(work / name.split()[0])
        tree = run_tree([*child, name, str(run), str(outputs[-1])], timeout=3600)
        if tree.returncode != 0:
            sys.exit(f"{name} failed:\n{tree.stderr[-3000:]}")
        results[name] = {
            "wall_s": round(tree.wall_s, 2),
            "peak_rss_mib": round(tree.peak_single / 2**20),
            "peak_tree_rss_mib": round(tree.peak_total / 2**20),
            "files": len(list(outputs[-1].glob("*.safetensors"))),
        }
        print(f"{name}: {results[name]}", flush=True)
    if not same_weights(*outputs):
        sys.exit(f"the methods wrote different weights: compare {outputs[0]} and {outputs[1]}")
    imported, runs = {}, []
    for name in IMPORT_METHODS:
        runs.append(work / f"import-{name.split()[0]}")
        tree = run_tree([*child, name, str(outputs[0]), str(runs[-1])], timeout=3600)
        if tree.returncode != 0:
            sys.exit(f"{name} failed:\n{tree.stderr[-3000:]}")
        imported[name] = {"wall_s": round(tree.wall_s, 2), "peak_rss_mib": round(tree.peak_single / 2**20), "peak_tree_rss_mib": round(tree.peak_total / 2**20)}
        print(f"{name}: {imported[name]}", flush=True)
    if not same_checkpoints(*(r / "checkpoints/step-00000000/model" for r in runs)):
        sys.exit(f"the import methods wrote different checkpoints: compare {runs[0]} and {runs[1]}")
    report = run_info(
        config=args.config, shard_size=args.shard_size, checkpoint_mib=round(checkpoint_bytes / 2**20),
        imports_rss_mib=round(base.peak_single / 2**20), methods=results, same_weights=True, import_methods=imported,
    )  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    print(f"| method | wall (s) | peak RSS (MiB) | above the imports' {report['imports_rss_mib']} MiB |\n|---|---|---|---|")
    for name, r in {**results, **imported}.items():
        print(f"| {name} | {r['wall_s']} | {r['peak_rss_mib']:,} | {r['peak_rss_mib'] - report['imports_rss_mib']:,} |")
    if not args.work:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
