"""Benchmark: near-dedup, crawlmill's dedup stage against datatrove's 4-stage MinHash, same corpus, same run.

Peer: datatrove 0.10.1's MinHash deduplication with its DEFAULT `MinhashConfig` (word 5-grams, 14
buckets x 8 hashes, seed 1, 64-bit xxhash) and the default `language` of `MinhashDedupSignature`
(English: spaCy's blank "en" tokenizer), run with `LocalPipelineExecutor` as its example pipeline
does: ParquetReader -> MinhashDedupSignature; MinhashDedupBuckets (14 tasks); MinhashDedupCluster
(1 task, save_cluster_id=True); ParquetReader -> MinhashDedupFilter (removed documents to a
JsonlWriter) -> ParquetWriter. Tasks = workers = 1 in `quality` (the per-core figure), 2 in `scale`.
The quality mode also runs a variant outside datatrove's defaults, "datatrove told the language":
the English and Chinese documents in two separate pipelines with `language="eng"` and
`language="cmn"` (spaCy + jieba; note that `language="zh"` maps to datatrove's whitespace
tokenizer, not to jieba), to separate tokenization from the rest.

crawlmill: the dedup stage with its default `DedupConfig` (14 bands x 8 rows, exact 128-bit hash band,
exact-Jaccard verification of candidates at 0.8, connected components, earliest-dump keep rule) on
a fresh local Ray started by the measuring process with `num_cpus` 1 and 2; Ray start-up is
reported apart and not counted in the wall time. Its per-core signature figure comes from the map
step (`steps.map_parts`: read Parquet, exact hash, shingles, MinHash, band keys, partitioned shuffle
write) run in one process without Ray over every part; datatrove's from its signature stage
(read Parquet, shingles, MinHash, 14 bucket files written and sorted), each timed around the
whole step.

Every measurement runs in a fresh subprocess. The parent polls psutil every 0.1 s and sums the RSS
of that subprocess, all its descendants and every process whose command line names the Ray temp
dir it was given (Ray's workers, raylet, GCS): reported are the peak of that sum, the peak of any
single process and the peak of any single Ray worker, overall and per step. RSS counts shared
pages once per process, so the sum overstates what the machine holds.

Modes:
  quality  crawlmill.corpora.dedup_corpus's build_corpus (4 dumps x 1,000 pages, seed 0, English and
           Chinese, WET files), ingested in-process into crawlmill's Parquet schema; both tools on
           that output; pairwise same-cluster precision and recall per language against the exact
           ground truth (true clusters: components of pairs with Jaccard >= 0.8 of crawlmill's
           shingles, as in tests/pipeline/dedup/test_quality.py). Datatrove's clusters come from
           its cluster stage's `.clusters` files (document index -> cluster id), its removals from
           the `.remove` files, checked against the documents its filter stage dropped.
  scale    crawlmill.corpora.dedup_scale's build_scale_corpus (--docs N, 4 dumps, parts of
           --docs-per-part documents so a part is the same size at every N), crawlmill on Ray
           (--cpus, default 2), optionally datatrove (tasks = workers = --cpus, bounded by
           --datatrove-timeout); the share of each synthetic kind (exact copy, near copy, ...) each
           tool removes. No exact ground truth at this size.

Run (repository root, virtualenv active):
    python bench/dedup_bench.py quality
    python bench/dedup_bench.py scale --docs 100000
    python bench/dedup_bench.py scale --docs 1000000 --no-datatrove
Results: bench/out/dedup_<mode>.json (scale: one entry per N) and stdout. Temporary data under /tmp
(removed at the end). Never calls `ray stop`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from dedup_scoring import by_kind, crawlmill_predictions, datatrove_predictions, pairwise_scores
from harness import phase, run_info, run_tree

from crawlmill.corpora.shared_text import TEXT_DIR

REPO = Path(__file__).resolve().parents[1]
DUMPS = ["CC-MAIN-2023-40", "CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-22"]
POLL_S = 0.1
SCAN_S = 0.5  # how often all processes are scanned for the Ray temp dir (descendants: every poll)


# ----------------------------------------------------------------------------------------------
# Inside the measuring subprocess
# ----------------------------------------------------------------------------------------------


def m_crawlmill_map(spec: dict) -> dict:
    """crawlmill's signature step (map) in this process, no Ray: the per-core figure."""
    import pyarrow.parquet as pq

    from crawlmill.pipeline.dedup import steps
    from crawlmill.pipeline.dedup.config import DedupConfig
    from crawlmill.pipeline.parts import input_parts

    config = DedupConfig(partitions=spec.get("partitions"))
    parts = [p for folder in spec["inputs"] for p in input_parts(folder)]
    docs = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    partitions = config.partitions_for(docs)
    work = Path(spec["work"])
    phase("map")
    start = time.perf_counter()
    size = steps.part_group_size(len(parts), partitions)
    runs = steps.groups(list(enumerate(parts)), size)
    for run in runs:  # as the stage's map tasks take them
        steps.map_parts(config, str(work), f"part-{run[0][0]:05d}", run, partitions, size, len(runs))
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "docs": docs, "parts": len(parts), "partitions": partitions}


def m_crawlmill_ray(spec: dict) -> dict:
    """The dedup stage on a fresh local Ray of `cpus` CPUs; every step timed from the driver."""
    import ray

    from crawlmill.pipeline import runner
    from crawlmill.pipeline.dedup import stage as stage_mod
    from crawlmill.pipeline.dedup.config import DedupConfig
    from crawlmill.pipeline.ray_tasks import RayOptions, init_local_ray

    cpus = spec["cpus"]
    phase("ray_init")
    start = time.perf_counter()
    init_local_ray(num_cpus=cpus, include_dashboard=False, _temp_dir=spec["ray_temp"], logging_level=logging.WARNING)
    ray_init_s = time.perf_counter() - start
    steps: dict[str, float] = defaultdict(float)

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            phase(name)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                steps[name] += time.perf_counter() - t0

        return wrapper

    run_step = runner.StageContext.step
    names = {"parts": "output"}  # the output step; the cc-NNNN rounds count as one step, cc

    def step(self, name, *a, **k):  # noqa: ANN001, ANN202 - StageContext.step, timed
        return timed(names.get(name, name.split("-")[0]), run_step)(self, name, *a, **k)

    runner.StageContext.step = step
    stage_mod.write_report = timed("report", stage_mod.write_report)
    output = Path(spec["output"])
    start = time.perf_counter()
    config = DedupConfig(inputs=spec["inputs"], partitions=spec.get("partitions"), **({"partitions_per_task": spec["per_task"]} if spec.get("per_task") else {}))
    result = runner.run_stage(stage_mod.DedupStage(config), output, RayOptions(num_cpus=cpus), progress=False)
    seconds = time.perf_counter() - start
    phase("shutdown")
    ray.shutdown()
    if not result.ok:
        raise RuntimeError(f"dedup failed: {result.failures[:3]}")
    report = json.loads((output / "_report/report.json").read_text())
    work_files = [p for p in (output / "_work").rglob("*") if p.is_file()]
    work_bytes = sum(p.stat().st_size for p in work_files)
    step_bytes = defaultdict(int)  # by step folder (_work/<step>/, cc rounds together): which shuffle carries what
    for p in work_files:
        step_bytes[p.relative_to(output / "_work").parts[0]] += p.stat().st_size
    return {
        "seconds": round(seconds, 3),
        "ray_init_s": round(ray_init_s, 2),
        "steps_s": {k: round(v, 3) for k, v in steps.items()},
        "stats": result.stats,
        "summary": {k: v for k, v in report.items() if k not in ("docs_per_dump", "within_single_dump", "cumulative")},
        "work_bytes": work_bytes,
        "work_files": len(work_files),  # the shuffle's file count: one per sending task and step, not per pair
        "work_bytes_by_step": dict(sorted(step_bytes.items())),
    }


def m_datatrove(spec: dict) -> dict:
    """datatrove's 4 MinHash stages with their defaults, one or more jobs (one per input subset)."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import JsonlWriter, ParquetWriter

    tasks, workers = spec["tasks"], spec["workers"]
    config = MinhashConfig()  # the defaults
    out: dict = {"jobs": {}, "stages_s": defaultdict(float)}
    total = 0.0
    for job in spec["jobs"]:
        w = Path(job["work"])
        reader = lambda: ParquetReader(job["folder"], glob_pattern=job["glob"], text_key="text", id_key="id")  # noqa: E731
        signature = {} if job["language"] is None else {"language": job["language"]}
        stages = {
            "signatures": LocalPipelineExecutor(
                [reader(), MinhashDedupSignature(output_folder=str(w / "signatures"), config=config, **signature)],
                tasks=tasks, workers=workers, logging_dir=str(w / "logs/signatures")),
            "buckets": LocalPipelineExecutor(
                [MinhashDedupBuckets(input_folder=str(w / "signatures"), output_folder=str(w / "buckets"), config=config)],
                tasks=config.num_buckets, workers=workers, logging_dir=str(w / "logs/buckets")),
            "cluster": LocalPipelineExecutor(
                [MinhashDedupCluster(input_folder=str(w / "buckets"), output_folder=str(w / "remove_ids"), config=config, save_cluster_id=True)],
                tasks=1, logging_dir=str(w / "logs/clusters")),
            "filter": LocalPipelineExecutor(
                [reader(), MinhashDedupFilter(input_folder=str(w / "remove_ids"), exclusion_writer=JsonlWriter(str(w / "removed"))),
                 ParquetWriter(str(w / "deduplicated"))],
                tasks=tasks, workers=workers, logging_dir=str(w / "logs/filter")),
        }  # fmt: skip
        times = {}
        for name, executor in stages.items():
            phase(name if len(spec["jobs"]) == 1 else f"{job['name']}:{name}")
            t0 = time.perf_counter()
            executor.run()
            times[name] = round(time.perf_counter() - t0, 3)
            out["stages_s"][name] += times[name]
        out["jobs"][job["name"]] = {"stages_s": times, "seconds": round(sum(times.values()), 3)}
        total += sum(times.values())
    out["seconds"] = round(total, 3)
    out["stages_s"] = {k: round(v, 3) for k, v in out["stages_s"].items()}
    return out


MEASURE = {"crawlmill_map": m_crawlmill_map, "crawlmill_ray": m_crawlmill_ray, "datatrove": m_datatrove}


# ----------------------------------------------------------------------------------------------
# The parent: run one measurement in a fresh subprocess, polling its memory
# ----------------------------------------------------------------------------------------------


def run_measured(kind: str, spec: dict, timeout: float | None = None, ray_temp: str | None = None) -> dict:
    """Run MEASURE[kind](spec) in a fresh process; return its result plus time-outs and memory peaks."""
    tree = run_tree([sys.executable, __file__, "--one", kind, json.dumps(spec)], timeout=timeout, marker=ray_temp, poll_s=POLL_S, scan_s=SCAN_S)
    load = {"load1_before": tree.load1_before, "load1_after": tree.load1_after}
    if tree.killed:
        return {
            "timed_out": True, "timeout_s": timeout, "step_reached": tree.step_reached,
            "steps_started_at_s": tree.steps_started_at_s, "process_wall_s": round(tree.wall_s, 1),
            "memory": tree.memory_mib(), **load,
        }  # fmt: skip
    if tree.returncode:
        sys.exit(f"{kind} failed (exit {tree.returncode}):\n{tree.stderr[-4000:]}")
    result = json.loads(tree.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(tree.wall_s, 1)
    result["memory"] = tree.memory_mib()
    result.update(load)
    return result


def ingest_in_process(corpus: Path, output: Path) -> dict:
    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.parts import commit_folder
    from crawlmill.pipeline.stage import run_part

    stage = IngestStage(IngestConfig(inputs=[str(corpus / "crawl-data")]))
    parts = [run_part(stage, task, str(output)) for task in stage.tasks()]
    commit_folder(output)  # a marker per part and _SUCCESS, as a stage's run leaves them: input_parts reads only marked parts
    return {"wet_files": len(parts), "docs": sum(p["kept"] for p in parts), "quarantined": sum(p["quarantined"] for p in parts)}


def per_core(docs: int, seconds: float, cores: int) -> float:
    return round(docs / seconds / cores, 1)


def run_crawlmill(inputs: list[str], work: Path, cpus: int, timeout: float | None, partitions: int | None = None, per_task: int | None = None) -> tuple[dict, Path]:
    output = work / f"crawlmill-{cpus}cpu"
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    spec = {"inputs": inputs, "output": str(output), "cpus": cpus, "ray_temp": ray_temp, "partitions": partitions, "per_task": per_task}
    try:
        result = run_measured("crawlmill_ray", spec, timeout, ray_temp)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    result["cores"] = cpus
    return result, output


def quality_mode(args) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crawlmill.corpora import dedup_corpus as dc

    work = Path(tempfile.mkdtemp(prefix="dedup-bench-quality-", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        truth = dc.build_corpus(work / "corpus", args.text_dir, DUMPS[: args.dumps], docs_per_dump=args.docs_per_dump, seed=args.seed, langs=("en", "zh"))
        build_s = time.perf_counter() - t0
        ingest = work / "ingest"
        t0 = time.perf_counter()
        info = ingest_in_process(work / "corpus", ingest)
        info["ingest_s"] = round(time.perf_counter() - t0, 2)
        truth_docs = truth.docs.select(["id", "lang", "cluster", "kind", "dump"]).to_pylist()
        docs = info["docs"]
        chars = sum(len(t) for p in sorted(ingest.glob("part-*.parquet")) for t in pq.read_table(p, columns=["text"]).column("text").to_pylist())
        results: dict = {
            **run_info(),
            "input": {"dumps": DUMPS[: args.dumps], "docs_per_dump": args.docs_per_dump, "seed": args.seed, "docs": docs, "chars": chars,
                      "build_corpus_s": round(build_s, 2), **info, "truth": dc.corpus_stats(truth)["by_lang"]},
            "runs": {},
        }  # fmt: skip
        inputs = [str(ingest)]

        plan: list[tuple[str, object]] = []
        predictions: dict[str, list] = defaultdict(list)  # crawlmill's removed -> kept maps, per run

        # crawlmill: map step in one process (per-core signature figure), then the dedup stage on Ray 1 and 2 CPUs.
        def crawlmill_map() -> dict:
            shutil.rmtree(work / "map-only", ignore_errors=True)
            r = run_measured("crawlmill_map", {"inputs": inputs, "work": str(work / "map-only")})
            r["docs_per_s_per_core"] = per_core(docs, r["seconds"], 1)
            shutil.rmtree(work / "map-only", ignore_errors=True)
            return r

        def crawlmill_ray(cpus: int) -> dict:
            r, output = run_crawlmill(inputs, work, cpus, None)
            r["docs_per_s"] = round(docs / r["seconds"], 1)
            r["map_step_docs_per_s_per_core"] = per_core(docs, r["steps_s"]["map"], cpus)
            kept_as, removed = crawlmill_predictions(output)
            r["quality"] = pairwise_scores(truth_docs, kept_as, removed)
            predictions["crawlmill"].append(kept_as)
            shutil.rmtree(output, ignore_errors=True)
            return r

        # datatrove with its defaults, one task, one worker; and (not its default) told each language.
        def datatrove(jobs: list[dict], note: str | None = None) -> dict:
            for job in jobs:
                shutil.rmtree(job["work"], ignore_errors=True)
            r = run_measured("datatrove", {"jobs": jobs, "tasks": 1, "workers": 1})
            r.update(cores=1, docs_per_s=round(docs / r["seconds"], 1), signature_docs_per_s_per_core=per_core(docs, r["stages_s"]["signatures"], 1))
            cluster_of, removed = datatrove_predictions(jobs, 1)
            r["quality"] = pairwise_scores(truth_docs, cluster_of, removed)
            if note:
                r["note"] = note
            for job in jobs:
                shutil.rmtree(job["work"], ignore_errors=True)
            return r

        plan.append(("crawlmill_map_1core", crawlmill_map))
        plan += [(f"crawlmill_ray_{cpus}cpu", lambda cpus=cpus: crawlmill_ray(cpus)) for cpus in args.cpus]
        default_jobs = [{"name": "all", "folder": str(ingest), "glob": "part-*.parquet", "language": None, "work": str(work / "dt-default")}]
        plan.append(("datatrove_default_1core", lambda: datatrove(default_jobs)))
        if not args.no_language_variant:
            lang_of = {d["id"]: d["lang"] for d in truth_docs}
            table = pq.read_table(ingest)
            split_jobs = []
            for lang, dt_lang in (("en", "eng"), ("zh", "cmn")):
                folder = work / "split" / lang
                folder.mkdir(parents=True)
                mask = pa.array([lang_of[i] == lang for i in table.column("id").to_pylist()])
                pq.write_table(table.filter(mask), folder / "part-00000.parquet")
                split_jobs.append({"name": lang, "folder": str(folder), "glob": "part-*.parquet", "language": dt_lang, "work": str(work / f"dt-{lang}")})
            note = "not datatrove's default: English and Chinese split by the ground truth's language, language='eng' / 'cmn'"
            plan.append(("datatrove_language_split_1core", lambda: datatrove(split_jobs, note)))

        runs: dict[str, list[dict]] = defaultdict(list)
        for rep in range(args.repeat):  # round robin, so that a change of machine load hits every side
            for name, fn in plan:
                r = fn()
                runs[name].append(r)
                print(f"[{rep + 1}/{args.repeat}] {name}", r["seconds"], "s", r.get("quality", ""), file=sys.stderr)
        for name, _ in plan:
            ordered = sorted(runs[name], key=lambda r: r["seconds"])
            median = dict(ordered[(len(ordered) - 1) // 2])
            median["seconds_all_runs"] = [r["seconds"] for r in runs[name]]
            results["runs"][name] = median
        results["repeat"] = args.repeat
        results["crawlmill_same_result_in_every_run"] = all(p == predictions["crawlmill"][0] for p in predictions["crawlmill"])

        ours, peer = results["runs"]["crawlmill_map_1core"], results["runs"]["datatrove_default_1core"]
        results["signature_speedup_per_core"] = round(ours["docs_per_s_per_core"] / peer["signature_docs_per_s_per_core"], 2)
        one = results["runs"].get("crawlmill_ray_1cpu")
        if one:
            results["total_wall_speedup_1core"] = round(peer["seconds"] / one["seconds"], 2)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scale_mode(args) -> dict:
    import pyarrow.parquet as pq

    from crawlmill.corpora.dedup_scale import build_scale_corpus

    work = Path(tempfile.mkdtemp(prefix="dedup-bench-scale-", dir="/tmp"))
    try:
        dumps = DUMPS[: args.dumps]
        files = max(1, round(args.docs / len(dumps) / args.docs_per_part))
        t0 = time.perf_counter()
        totals = build_scale_corpus(work / "corpus", args.text_dir, args.docs, dumps, seed=args.seed, files=files, workers=args.build_workers)
        build_s = time.perf_counter() - t0
        inputs = [str(work / "corpus" / d) for d in dumps]
        docs = totals["docs"]
        result: dict = {
            **run_info(),
            "input": {"docs": docs, "chars": totals["chars"], "dumps": dumps, "parts": totals["parts"], "docs_per_part": docs // totals["parts"],
                      "kinds": totals["kinds"], "seed": args.seed, "build_s": round(build_s, 1), "partitions_option": args.partitions, "partitions_per_task_option": args.partitions_per_task},
            "runs": {},
        }  # fmt: skip
        print("corpus", result["input"], file=sys.stderr)
        truth = {}
        for d in dumps:
            t = pq.read_table(work / "corpus" / "_truth" / d, columns=["id", "kind", "family"])
            truth.update(zip(t.column("id").to_pylist(), zip(t.column("kind").to_pylist(), t.column("family").to_pylist())))

        if args.map_1core:
            r = run_measured("crawlmill_map", {"inputs": inputs, "work": str(work / "map-only"), "partitions": args.partitions}, args.timeout)
            if not r.get("timed_out"):
                r["docs_per_s_per_core"] = per_core(docs, r["seconds"], 1)
            result["runs"]["crawlmill_map_1core"] = r
            shutil.rmtree(work / "map-only", ignore_errors=True)
            print("crawlmill_map_1core", r, file=sys.stderr)
        r, output = run_crawlmill(inputs, work, args.cpus, args.timeout, args.partitions, args.partitions_per_task)
        if not r.get("timed_out"):
            r["docs_per_s"] = round(docs / r["seconds"], 1)
            r["map_step_docs_per_s_per_core"] = per_core(docs, r["steps_s"]["map"], args.cpus)
            r["by_kind"] = by_kind(truth, *crawlmill_predictions(output))
        result["runs"][f"crawlmill_ray_{args.cpus}cpu"] = r
        print(f"crawlmill_ray_{args.cpus}cpu", json.dumps(r), file=sys.stderr)
        shutil.rmtree(output, ignore_errors=True)

        if args.datatrove:
            jobs = [{"name": "all", "folder": str(work / "corpus"), "glob": "CC-MAIN-*/part-*.parquet", "language": None, "work": str(work / "dt")}]
            r = run_measured("datatrove", {"jobs": jobs, "tasks": args.cpus, "workers": args.cpus}, args.datatrove_timeout)
            r["cores"] = args.cpus
            if not r.get("timed_out"):
                r.update(docs_per_s=round(docs / r["seconds"], 1), signature_docs_per_s_per_core=per_core(docs, r["stages_s"]["signatures"], args.cpus))
                r["by_kind"] = by_kind(truth, *datatrove_predictions(jobs, args.cpus))
            result["runs"][f"datatrove_default_{args.cpus}core"] = r
            print(f"datatrove_default_{args.cpus}core", json.dumps(r), file=sys.stderr)
            shutil.rmtree(work / "dt", ignore_errors=True)
        runs = result["runs"]
        peer = runs.get(f"datatrove_default_{args.cpus}core")
        ours = runs.get(f"crawlmill_ray_{args.cpus}cpu")
        if peer and ours and not peer.get("timed_out") and not ours.get("timed_out"):
            result["total_wall_speedup"] = round(peer["seconds"] / ours["seconds"], 2)
            if "crawlmill_map_1core" in runs and not runs["crawlmill_map_1core"].get("timed_out"):
                result["signature_speedup_per_core"] = round(runs["crawlmill_map_1core"]["docs_per_s_per_core"] / peer["signature_docs_per_s_per_core"], 2)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["quality", "scale"], default="quality")
    parser.add_argument("--text-dir", type=Path, default=TEXT_DIR, help=f"real text the corpora are built from (default {TEXT_DIR})")
    parser.add_argument("--dumps", type=int, default=4, choices=range(1, 5), metavar="1-4", help="number of dumps (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="default: bench/out/dedup_<mode>.json")
    q = parser.add_argument_group("quality")
    q.add_argument("--docs-per-dump", type=int, default=1000, help="pages per dump, English and Chinese together (default 1000)")
    q.add_argument("--cpus", type=int, nargs="+", default=None, help="Ray CPUs of the crawlmill runs (quality default: 1 2; scale: 2)")
    q.add_argument("--repeat", type=int, default=1, help="runs of every measurement, round robin; the median run is reported (default 1)")
    q.add_argument("--no-language-variant", action="store_true", help="skip datatrove run per language (eng / cmn)")
    s = parser.add_argument_group("scale")
    s.add_argument("--docs", type=int, default=100_000, help="documents of the scale corpus (default 100000)")
    s.add_argument("--docs-per-part", type=int, default=25_000, help="documents per input part, the same at every --docs (default 25000)")
    s.add_argument("--build-workers", type=int, default=2, help="processes building the scale corpus (default 2)")
    s.add_argument("--datatrove", action=argparse.BooleanOptionalAction, default=None, help="also run datatrove (default: only when --docs <= 100000)")
    s.add_argument("--datatrove-timeout", type=float, default=1200, help="seconds before datatrove's run is stopped (default 1200)")
    s.add_argument("--map-1core", action=argparse.BooleanOptionalAction, default=True, help="also time crawlmill's map step in one process (default on)")
    s.add_argument("--partitions", type=int, help="crawlmill's shuffle partitions (default: its own choice, DedupConfig.partitions_for)")
    s.add_argument("--partitions-per-task", type=int, help="partitions a task of crawlmill's steps between partitions runs (default: its own choice)")
    s.add_argument("--timeout", type=float, default=3600, help="seconds before a crawlmill measurement is stopped (default 3600)")
    parser.add_argument("--one", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` and kill: run the clean-ups (finally)
    if args.one:
        print(json.dumps(MEASURE[args.one[0]](json.loads(args.one[1]))))
        return
    if not (args.text_dir / "en").is_dir() or not (args.text_dir / "zh").is_dir():
        sys.exit(f"needs the text samples at {args.text_dir}")
    if args.mode == "quality":
        args.cpus = args.cpus or [1, 2]
        results = quality_mode(args)
    else:
        args.cpus = (args.cpus or [2])[0]
        if args.datatrove is None:
            args.datatrove = args.docs <= 100_000
        results = scale_mode(args)
    path = args.json or REPO / f"bench/out/dedup_{args.mode}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.mode == "scale":  # one entry per corpus size
        previous = json.loads(path.read_text()) if path.exists() else {}
        previous[f"{args.docs}" + (f"_partitions{args.partitions}" if args.partitions else "")] = results
        path.write_text(json.dumps(previous, indent=1))
    else:
        path.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
