"""Benchmark: WARC -> text documents per second per core, crawlmill ingest vs datatrove.

Peer: datatrove's WarcReader followed by its default extractor, Trafilatura (datatrove 0.10.1,
defaults: favour_precision, 1 s per-document timeout sandbox), on the same WARC files in the
same run. Both sides run single-process on one core; crawlmill also runs as a Ray stage at 1
and 2 workers (Ray start-up excluded, measured separately).

Extraction quality: on the repo's sample WARCs (samples/pages/*.yaml hold each page's true main
text, samples/manifest.jsonl maps URLs to pages) word-level precision/recall/F1 of each
extractor's output against the truth (words for Latin script, characters for Chinese).

Throughput is HTML pages of the corpus per second (the same denominator for every side; each\nside's documents out are reported too), each measurement in a fresh process.\n\nRun: python bench/ingest_bench.py [--repeat 20] [--json bench/out/ingest.json]
Needs ../shared/data (real Common Crawl WARC samples) beside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from crawlmill.corpora.ingest_corpus import CC_DIR, build_corpus

REPO = Path(__file__).resolve().parents[1]


def run_crawlmill_single(paths: list[Path], extractor: str = "resiliparse") -> tuple[int, float]:
    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.stage import run_part

    stage = IngestStage(IngestConfig(inputs=[str(p) for p in paths], extractor=extractor))
    out = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    start = time.perf_counter()
    docs = sum(run_part(stage, task, str(out))["kept"] for task in stage.tasks())
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    return docs, elapsed


def run_datatrove(paths: list[Path]) -> tuple[int, float]:
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    folder = str(paths[0].parent)
    reader = WarcReader(folder, glob_pattern="*.warc.gz")
    extractor = Trafilatura()
    start = time.perf_counter()
    docs = sum(1 for _ in extractor.run(reader.run()))
    return docs, time.perf_counter() - start


def run_crawlmill_ray(paths: list[Path], num_cpus: int) -> tuple[int, float, float]:
    import ray

    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.ray_tasks import RayOptions, ensure_ray
    from crawlmill.pipeline.runner import run_stage

    if ray.is_initialized():
        ray.shutdown()
    start = time.perf_counter()
    ensure_ray(RayOptions(num_cpus=num_cpus))
    ray_start = time.perf_counter() - start
    out = Path(tempfile.mkdtemp(prefix="bench-ingest-ray-"))
    start = time.perf_counter()
    result = run_stage(IngestStage(IngestConfig(inputs=[str(p) for p in paths])), out, RayOptions(num_cpus=num_cpus), progress=False)
    elapsed = time.perf_counter() - start
    shutil.rmtree(out)
    ray.shutdown()
    return result.stats["kept"], elapsed, ray_start


_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> Counter:
    """Word units for scoring: whitespace words for Latin script, single characters for CJK."""
    units: Counter = Counter()
    for token in _WORD.findall(text.lower()):
        if re.search(r"[\u3400-\u9fff]", token):
            units.update(ch for ch in token)
        else:
            units[token] += 1
    return units


def _score(texts: dict[str, str], truth: dict[str, str]) -> dict[str, float]:
    tp = fp = fn = 0
    for url, true_text in truth.items():
        expected, got = words(true_text), words(texts.get(url, ""))
        overlap = sum((expected & got).values())
        tp, fp, fn = tp + overlap, fp + sum(got.values()) - overlap, fn + sum(expected.values()) - overlap
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {
        "pages": len(truth),
        "pages_with_text": sum(1 for url in truth if texts.get(url)),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / max(precision + recall, 1e-9), 4),
    }


def extraction_quality() -> dict[str, dict[str, float]]:
    """Word precision/recall of each extractor on the sample WARCs against the pages' true main text."""
    import pyarrow.parquet as pq

    from crawlmill.pipeline.ingest.config import IngestConfig
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.stage import run_part

    sys.path.insert(0, str(REPO / "samples"))
    import make_samples

    _, pages, _ = make_samples.load_corpus()
    by_slug = {p["slug"]: p for p in pages}
    truth = {}
    for line in (REPO / "samples/manifest.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry["kind"] in ("clean", "near_duplicate") and entry.get("slug") in by_slug:
            truth[entry["url"]] = make_samples.ground_truth_text(by_slug[entry["slug"]])
    warcs = sorted((REPO / "samples/crawl-data").glob("*/segments/*/warc/*.warc.gz"))
    scores = {}
    for name in ("resiliparse", "trafilatura"):
        stage = IngestStage(IngestConfig(inputs=[str(p) for p in warcs], extractor=name))
        out = Path(tempfile.mkdtemp(prefix="bench-quality-"))
        for task in stage.tasks():
            run_part(stage, task, str(out))
        texts = {row["url"]: row["text"] for row in pq.read_table(out, columns=["url", "text"]).to_pylist()}
        scores[f"crawlmill_{name}"] = _score(texts, truth)
        shutil.rmtree(out)
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader

    folder = Path(tempfile.mkdtemp(prefix="bench-quality-dt-"))
    for i, path in enumerate(warcs):
        shutil.copy(path, folder / f"{i}.warc.gz")
    texts = {doc.metadata["url"]: doc.text for doc in Trafilatura().run(WarcReader(str(folder)).run())}
    scores["datatrove_trafilatura"] = _score(texts, truth)
    shutil.rmtree(folder)
    return scores


def count_html_responses(paths: list[Path]) -> int:
    """The work both sides face: HTML response records in the corpus (counted once, neutrally)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    n = 0
    for path in paths:
        for record in ArchiveIterator(str(path), parse_http=True, record_types=WarcRecordType.response):
            n += (record.http_content_type or "") in ("text/html", "application/xhtml+xml")
    return n


def measure(name: str, corpus: Path) -> dict:
    """One measurement, in a fresh process (trafilatura keeps a process-wide dedup cache)."""
    paths = sorted(corpus.glob("*.warc.gz"))
    if name == "crawlmill_resiliparse_1core":
        docs, t = run_crawlmill_single(paths)
    elif name == "crawlmill_trafilatura_1core":
        docs, t = run_crawlmill_single(paths, "trafilatura")
    elif name == "datatrove_warcreader_trafilatura_1core":
        docs, t = run_datatrove(paths)
    elif name.startswith("crawlmill_ray_"):
        docs, t, ray_start = run_crawlmill_ray(paths, int(name.split("_")[2]))
        return {"docs_out": docs, "seconds": round(t, 3), "ray_start_s": round(ray_start, 2)}
    else:
        raise SystemExit(f"unknown measurement {name}")
    return {"docs_out": docs, "seconds": round(t, 3)}


MEASUREMENTS = [
    "crawlmill_resiliparse_1core",
    "crawlmill_trafilatura_1core",
    "datatrove_warcreader_trafilatura_1core",
    "crawlmill_ray_1_workers",
    "crawlmill_ray_2_workers",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="copies of the Common Crawl samples (files)")
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/ingest.json")
    parser.add_argument("--quality", action="store_true", help="only the extraction quality figures")
    parser.add_argument("--one", nargs=2, metavar=("NAME", "CORPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.quality:
        print(json.dumps(extraction_quality()))
        return
    if args.one:
        print(json.dumps(measure(args.one[0], Path(args.one[1]))))
        return
    if not CC_DIR.is_dir():
        sys.exit(f"needs the Common Crawl samples at {CC_DIR}")
    corpus_dir = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
    corpus = build_corpus(corpus_dir, args.repeat)
    pages = count_html_responses(corpus)
    results: dict = {"input": {"files": len(corpus), "bytes": sum(p.stat().st_size for p in corpus), "html_pages": pages}}
    for name in MEASUREMENTS:
        proc = subprocess.run([sys.executable, __file__, "--one", name, str(corpus_dir)], capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        result["pages_per_s"] = round(pages / result["seconds"], 1)
        results[name] = result
        print(name, result, file=sys.stderr)
    ours, peer = results["crawlmill_resiliparse_1core"], results["datatrove_warcreader_trafilatura_1core"]
    results["speedup_vs_datatrove_per_core"] = round(ours["pages_per_s"] / peer["pages_per_s"], 2)
    quality = subprocess.run([sys.executable, __file__, "--quality"], capture_output=True, text=True)
    if quality.returncode:
        sys.exit(f"extraction quality failed:\n{quality.stderr[-3000:]}")
    results["extraction_quality_on_sample_pages"] = json.loads(quality.stdout.strip().splitlines()[-1])
    shutil.rmtree(corpus_dir)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
