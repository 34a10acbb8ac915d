"""Benchmark: near-dedup, crawlmill `run_dedup` against datatrove's 4-stage MinHash, same corpus, same run.

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

crawlmill: `run_dedup` with its default `DedupConfig` (14 bands x 8 rows, exact 128-bit hash band,
exact-Jaccard verification of candidates at 0.8, connected components, earliest-dump keep rule) on
a fresh local Ray started by the measuring process with `num_cpus` 1 and 2; Ray start-up is
reported apart and not counted in the wall time. Its per-core signature figure comes from the map
step (`steps.map_part`: read Parquet, exact hash, shingles, MinHash, band keys, partitioned shuffle
write) run in one process without Ray over every part; datatrove's from its signature stage
(read Parquet, shingles, MinHash, 14 bucket files written and sorted), each timed around the
whole step.

Every measurement runs in a fresh subprocess. The parent polls psutil every 0.1 s and sums the RSS
of that subprocess, all its descendants and every process whose command line names the Ray temp
dir it was given (Ray's workers, raylet, GCS): reported are the peak of that sum, the peak of any
single process and the peak of any single Ray worker, overall and per step. RSS counts shared
pages once per process, so the sum overstates what the machine holds.

Modes:
  quality  bench/dedup_corpus.py's build_corpus (4 dumps x 1,000 pages, seed 0, English and
           Chinese, WET files), ingested in-process into crawlmill's Parquet schema; both tools on
           that output; pairwise same-cluster precision and recall per language against the exact
           ground truth (true clusters: components of pairs with Jaccard >= 0.8 of crawlmill's
           shingles, as in tests/pipeline/dedup/test_quality.py). Datatrove's clusters come from
           its cluster stage's `.clusters` files (document index -> cluster id), its removals from
           the `.remove` files, checked against the documents its filter stage dropped.
  scale    bench/dedup_scale_corpus.py's build_scale_corpus (--docs N, 4 dumps, parts of
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
import importlib.util
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from itertools import combinations
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
TEXT = REPO.parent / "shared" / "data" / "text"
DUMPS = ["CC-MAIN-2023-40", "CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-22"]
POLL_S = 0.1
SCAN_S = 0.5  # how often all processes are scanned for the Ray temp dir (descendants: every poll)
MiB = 1 << 20


# ----------------------------------------------------------------------------------------------
# Corpus modules (bench/ is not a package: loaded by path, as the tests do)
# ----------------------------------------------------------------------------------------------


def _load(name: str, filename: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and worker pickling look the module up by name
    spec.loader.exec_module(module)
    return module


def corpus_module():
    return _load("crawlmill_bench_dedup_corpus", "dedup_corpus.py")


def build_scale_corpus_fn():
    if (BENCH / "dedup_scale_corpus.py").exists():
        module = _load("crawlmill_bench_dedup_scale_corpus", "dedup_scale_corpus.py")
        if hasattr(module, "build_scale_corpus"):
            return module.build_scale_corpus
    return corpus_module().build_scale_corpus


# ----------------------------------------------------------------------------------------------
# Inside the measuring subprocess
# ----------------------------------------------------------------------------------------------


def phase(name: str) -> None:
    """Tell the parent's memory poller which step runs now."""
    path = os.environ.get("DEDUP_BENCH_PHASE_FILE")
    if path:
        tmp = f"{path}.tmp"
        Path(tmp).write_text(name)
        os.replace(tmp, path)


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
    for i, path in enumerate(parts):
        steps.map_part(config, str(work), i, path, partitions)
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 3), "docs": docs, "parts": len(parts), "partitions": partitions}


def m_crawlmill_ray(spec: dict) -> dict:
    """`run_dedup` on a fresh local Ray of `cpus` CPUs; every step timed from the driver."""
    import ray

    from crawlmill.pipeline.dedup import stage as stage_mod
    from crawlmill.pipeline.dedup.config import DedupConfig
    from crawlmill.pipeline.ray_tasks import RayOptions

    cpus = spec["cpus"]
    phase("ray_init")
    start = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=spec["ray_temp"], _node_ip_address="127.0.0.1", logging_level=logging.WARNING)
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

    run_step = stage_mod._run_step
    stage_mod._run_step = lambda name, *a, **k: timed(name, run_step)(name, *a, **k)
    stage_mod.run_stage = timed("output", stage_mod.run_stage)
    stage_mod.write_report = timed("report", stage_mod.write_report)
    output = Path(spec["output"])
    start = time.perf_counter()
    result = stage_mod.run_dedup(spec["inputs"], output, DedupConfig(partitions=spec.get("partitions")), RayOptions(num_cpus=cpus), progress=False)
    seconds = time.perf_counter() - start
    phase("shutdown")
    ray.shutdown()
    if not result.ok:
        raise RuntimeError(f"run_dedup failed: {result.failures[:3]}")
    report = json.loads((output / "_report/report.json").read_text())
    work_bytes = sum(p.stat().st_size for p in (output / "_work").rglob("*") if p.is_file())
    return {
        "seconds": round(seconds, 3),
        "ray_init_s": round(ray_init_s, 2),
        "steps_s": {k: round(v, 3) for k, v in steps.items()},
        "stats": result.stats,
        "summary": {k: v for k, v in report.items() if k not in ("docs_per_dump", "within_single_dump", "cumulative")},
        "work_bytes": work_bytes,
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


def _role(proc) -> str:
    try:
        cmd = proc.cmdline()
    except Exception:  # noqa: BLE001 - gone or not readable
        return "?"
    head = cmd[0] if cmd else ""
    joined = " ".join(cmd[:3])
    if head.startswith("ray::") and "Agent" not in head:
        return "ray_worker"
    if "default_worker.py" in joined:
        return "ray_worker"
    return Path(head).name or "?"


def run_measured(kind: str, spec: dict, timeout: float | None = None, ray_temp: str | None = None) -> dict:
    """Run MEASURE[kind](spec) in a fresh process; return its result plus time-outs and memory peaks."""
    import psutil

    logs = Path(tempfile.mkdtemp(prefix="dedup-bench-log-", dir="/tmp"))
    phase_file = logs / "phase"
    env = {**os.environ, "DEDUP_BENCH_PHASE_FILE": str(phase_file), "RAY_USAGE_STATS_ENABLED": "0"}
    with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--one", kind, json.dumps(spec)], stdout=out, stderr=err, env=env, cwd=REPO)
    load_before = os.getloadavg()[0]
    root = psutil.Process(proc.pid)
    tracked: dict[int, tuple] = {proc.pid: (root, "driver")}
    peaks = {"total": 0, "single": 0, "single_role": "", "ray_worker": 0}
    by_phase: dict[str, dict] = {}
    start, last_scan, timed_out = time.monotonic(), 0.0, False
    current, timeline = "start", []  # (step, seconds after start when first seen)

    def kill_all() -> None:  # what this measurement started, by pid
        for p, _ in list(tracked.values()):
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        proc.wait()

    try:
        while proc.poll() is None:
            now = time.monotonic()
            if timeout and now - start > timeout:
                timed_out = True
                break
            try:
                for child in root.children(recursive=True):
                    if child.pid not in tracked:
                        tracked[child.pid] = (child, _role(child))
            except psutil.Error:
                pass
            if ray_temp and now - last_scan >= SCAN_S:
                last_scan = now
                for p in psutil.process_iter(["cmdline"]):
                    if p.pid not in tracked and any(ray_temp in a for a in (p.info["cmdline"] or [])):
                        tracked[p.pid] = (p, _role(p))
                for pid, (p, role) in list(tracked.items()):  # Ray workers rename themselves after start
                    if role not in ("driver", "ray_worker"):
                        tracked[pid] = (p, _role(p))
            total, single, single_role, worker = 0, 0, "", 0
            for pid, (p, role) in list(tracked.items()):
                try:
                    rss = p.memory_info().rss
                except psutil.Error:
                    del tracked[pid]
                    continue
                total += rss
                if rss > single:
                    single, single_role = rss, role
                if role == "ray_worker":
                    worker = max(worker, rss)
            try:
                current = phase_file.read_text() or "start"
            except OSError:
                pass  # not written yet: keep the last step
            if current not in by_phase:
                timeline.append((current, round(now - start, 1)))
            ph = by_phase.setdefault(current, {"total": 0, "single": 0, "ray_worker": 0})
            ph["total"], ph["single"], ph["ray_worker"] = max(ph["total"], total), max(ph["single"], single), max(ph["ray_worker"], worker)
            if total > peaks["total"]:
                peaks["total"] = total
            if single > peaks["single"]:
                peaks["single"], peaks["single_role"] = single, single_role
            peaks["ray_worker"] = max(peaks["ray_worker"], worker)
            time.sleep(POLL_S)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave no measurement processes behind
        kill_all()
        shutil.rmtree(logs, ignore_errors=True)
        raise
    wall = time.monotonic() - start
    load = {"load1_before": round(load_before, 2), "load1_after": round(os.getloadavg()[0], 2)}
    if timed_out:
        kill_all()
    stdout, stderr = (logs / "stdout").read_text(), (logs / "stderr").read_text()
    shutil.rmtree(logs, ignore_errors=True)
    memory = {
        "peak_total_rss_mib": round(peaks["total"] / MiB),
        "peak_process_rss_mib": round(peaks["single"] / MiB),
        "peak_process_role": peaks["single_role"],
        "peak_ray_worker_rss_mib": round(peaks["ray_worker"] / MiB) if peaks["ray_worker"] else None,
        "by_step": {k: {m: round(v / MiB) for m, v in d.items()} for k, d in by_phase.items()},
    }
    if timed_out:
        return {"timed_out": True, "timeout_s": timeout, "step_reached": current, "steps_started_at_s": timeline, "process_wall_s": round(wall, 1), "memory": memory, **load}
    if proc.returncode:
        sys.exit(f"{kind} failed (exit {proc.returncode}):\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(wall, 1)
    result["memory"] = memory
    result.update(load)
    return result


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


def crawlmill_predictions(output: Path) -> tuple[dict[str, str], set[str]]:
    """(removed id -> kept id, removed ids) from crawlmill's duplicates/ folder."""
    import pyarrow.parquet as pq

    rows = pq.read_table(output / "duplicates", columns=["id", "kept_id"]).to_pylist() if (output / "duplicates").exists() else []
    kept_as = {r["id"]: r["kept_id"] for r in rows}
    return kept_as, set(kept_as)


def datatrove_predictions(jobs: list[dict], tasks: int) -> tuple[dict[str, object], set[str]]:
    """(document id -> datatrove cluster, removed ids), from the cluster stage's files.

    MinhashDedupCluster writes per input task (file id = rank) `<rank:06d>.remove` (uint32 index,
    within that task's document stream, of every document to drop) and, with save_cluster_id,
    `<rank:06d>.clusters` ((index, cluster id) uint32 pairs for every document of a cluster with
    two or more members). The index is the document's position in the rank's ParquetReader stream,
    so re-reading that stream gives the ids; a document in no cluster is alone. The removed ids
    are checked against the documents the filter stage wrote to its exclusion writer."""
    import gzip

    import numpy as np
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.utils.logging import logger

    logger.disable("datatrove")  # re-reading the inputs: no per-file log lines

    cluster_of: dict[str, object] = {}
    removed: set[str] = set()
    for job in jobs:
        folder, job_removed = Path(job["work"]) / "remove_ids", set()
        for rank in range(tasks):
            reader = ParquetReader(job["folder"], glob_pattern=job["glob"], text_key="text", id_key="id")
            ids = [doc.id for doc in reader.run(rank=rank, world_size=tasks)]
            rm = folder / f"{rank:06d}.remove"
            if rm.exists():
                job_removed.update(ids[i] for i in np.fromfile(rm, dtype="<u4"))
            cl = folder / f"{rank:06d}.clusters"
            if cl.exists():
                for i, c in np.fromfile(cl, dtype="<u4").reshape(-1, 2):
                    cluster_of[ids[i]] = (job["name"], int(c))
        excluded: list[str] = []
        for path in (Path(job["work"]) / "removed").glob("*.jsonl.gz"):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                excluded += [json.loads(line)["id"] for line in f]
        if len(excluded) != len(job_removed) or set(excluded) != job_removed:
            raise AssertionError(f"datatrove {job['name']}: {len(job_removed)} ids in .remove files, {len(excluded)} dropped by its filter")
        removed |= job_removed
    return cluster_of, removed


def same_cluster_pairs(cluster_of: dict[str, object]) -> set[tuple[str, str]]:
    members = defaultdict(list)
    for doc, cluster in cluster_of.items():
        members[cluster].append(doc)
    return {tuple(sorted(p)) for group in members.values() for p in combinations(group, 2)}


def pairwise_scores(truth_docs: list[dict], predicted_cluster: dict[str, object], removed: set[str]) -> dict:
    """Pairwise same-cluster precision/recall per language, as tests/pipeline/dedup/test_quality.py."""
    out = {}
    for lang in ("en", "zh"):
        docs = [d for d in truth_docs if d["lang"] == lang]
        predicted = {d["id"]: predicted_cluster.get(d["id"], d["id"]) for d in docs}
        true = {d["id"]: d["cluster"] for d in docs}
        pred_pairs, true_pairs = same_cluster_pairs(predicted), same_cluster_pairs(true)
        hit = len(pred_pairs & true_pairs)
        clusters = defaultdict(list)
        for d in docs:
            clusters[d["cluster"]].append(d["id"])
        out[lang] = {
            "docs": len(docs),
            "true_pairs": len(true_pairs),
            "predicted_pairs": len(pred_pairs),
            "precision": round(hit / len(pred_pairs), 4) if pred_pairs else None,
            "recall": round(hit / len(true_pairs), 4) if true_pairs else None,
            "removed": sum(d["id"] in removed for d in docs),
            "ideal_removed": len(docs) - len(clusters),  # one kept per true cluster
            "true_clusters_lost": sum(set(m) <= removed for m in clusters.values()),
        }
    return out


def by_kind(truth: dict[str, tuple[str, int]], cluster_of: dict[str, object], removed: set[str]) -> dict:
    """Per synthetic kind of the scale corpus: documents, how many were removed, and how many ended in
    the same cluster as the first document of their family (exact copies: should be all; rewrites,
    about half their sentences replaced: should be none; near copies, J 0.67-0.98: some)."""
    first = {family: doc_id for doc_id, (kind, family) in truth.items() if kind == "unique"}
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for doc_id, (kind, family) in truth.items():
        c = counts[kind]
        c[0] += 1
        c[1] += doc_id in removed
        if kind != "unique" and family in first:
            c[2] += cluster_of.get(doc_id, doc_id) == cluster_of.get(first[family], first[family])
    return {
        k: {"docs": n, "removed": r, **({"merged_with_family_first": round(m / n, 4)} if k != "unique" else {})}
        for k, (n, r, m) in sorted(counts.items())
    }


# ----------------------------------------------------------------------------------------------
# Modes
# ----------------------------------------------------------------------------------------------


def ingest_in_process(corpus: Path, output: Path) -> dict:
    from crawlmill.pipeline.ingest.sources import expand_inputs
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.stage import run_part

    stage = IngestStage(expand_inputs([str(corpus / "crawl-data")]))
    parts = [run_part(stage, task, str(output)) for task in stage.tasks()]
    (output / "_SUCCESS").write_text("")
    return {"wet_files": len(parts), "docs": sum(p["kept"] for p in parts), "quarantined": sum(p["quarantined"] for p in parts)}


def run_info() -> dict:
    import psutil

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "pipeline"], capture_output=True, text=True, cwd=REPO).stdout.split("\n")
    return {
        "date": date.today().isoformat(),
        "commit": commit,
        "uncommitted_in_pipeline": [line[3:] for line in dirty if line.strip()],
        "machine": f"{os.cpu_count()} cores, {psutil.virtual_memory().total / (1 << 30):.0f} GiB, {platform.machine()}, Python {platform.python_version()}",
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def per_core(docs: int, seconds: float, cores: int) -> float:
    return round(docs / seconds / cores, 1)


def run_crawlmill(inputs: list[str], work: Path, cpus: int, timeout: float | None, partitions: int | None = None) -> tuple[dict, Path]:
    output = work / f"crawlmill-{cpus}cpu"
    ray_temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    spec = {"inputs": inputs, "output": str(output), "cpus": cpus, "ray_temp": ray_temp, "partitions": partitions}
    try:
        result = run_measured("crawlmill_ray", spec, timeout, ray_temp)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    result["cores"] = cpus
    return result, output


def quality_mode(args) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dc = corpus_module()
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

        # crawlmill: map step in one process (per-core signature figure), then run_dedup on Ray 1 and 2 CPUs.
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

    build = build_scale_corpus_fn()
    work = Path(tempfile.mkdtemp(prefix="dedup-bench-scale-", dir="/tmp"))
    try:
        dumps = DUMPS[: args.dumps]
        files = max(1, round(args.docs / len(dumps) / args.docs_per_part))
        t0 = time.perf_counter()
        totals = build(work / "corpus", args.text_dir, args.docs, dumps, seed=args.seed, files=files, workers=args.build_workers)
        build_s = time.perf_counter() - t0
        inputs = [str(work / "corpus" / d) for d in dumps]
        docs = totals["docs"]
        result: dict = {
            **run_info(),
            "input": {"docs": docs, "chars": totals["chars"], "dumps": dumps, "parts": totals["parts"], "docs_per_part": docs // totals["parts"],
                      "kinds": totals["kinds"], "seed": args.seed, "build_s": round(build_s, 1), "partitions_option": args.partitions},
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
        r, output = run_crawlmill(inputs, work, args.cpus, args.timeout, args.partitions)
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
    parser.add_argument("--text-dir", type=Path, default=TEXT, help=f"real text the corpora are built from (default {TEXT})")
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
