"""Benchmark: quality scoring, crawlmill against datatrove's FastTextClassifierFilter, same model,
same documents, same run; and memory per node of the quality stage's scoring.

speed (one core, this process): documents/s of scoring only, English and Chinese apart:
- datatrove: `FastTextClassifierFilter.filter(doc)` per document (newlines replaced by spaces, as
  DCLM's classifier expects), the model loaded before timing;
- crawlmill: `QualityModel.score` in batches of 1,024 (the stage's batch) with the same text
  preparation (`newlines`), i.e. fastinfer.py's batched numpy inference; its probabilities equal
  fastText's to 1e-6 (checked here on every document);
- crawlmill with its own text preparation (`crawlmill`: lowercased, punctuation split off, Chinese
  segmented with jieba), what a model trained by `crawlmill quality train` uses.
Each side scores the same documents `--repeat` times; the best time counts. The first pass is cold
for crawlmill (its token memo starts empty) and is reported too.

memory: the quality stage scores `--parts` parts on a local Ray of `--cpus` CPUs, (a) as it does, a
node step (the model loaded once per node, the scoring processes forked from the loader), and (b)
with the model loaded in every worker process (datatrove's layout, one copy per process); the peak
of the summed PSS (shared pages split between the processes sharing them) of the Ray workers and
their children is polled every 0.2 s.

The model: DCLM's recipe (lr 0.1, dim 100, wordNgrams 2, bucket 2M: an 800 MB model, the size class
of DCLM's released classifier) trained here on reference vs web text (crawlmill.corpora).

    python bench/quality_bench.py [--docs 8000] [--repeat 3] [--cpus 2] [--parts 8]

Writes bench/out/quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from harness import run_info

from crawlmill.corpora.shared_text import TEXT_DIR

REPO = Path(__file__).resolve().parents[1]


def documents(text_dir: Path, lang: str, n: int, seed: int) -> list[str]:
    """Web-page-sized documents of real paragraphs: 1-8 of them, as an article would hold them."""
    if lang == "en":
        articles = [json.loads(line)["text"] for line in (text_dir / "en/wikitext-2-valid.articles.jsonl").read_text().splitlines()]
        paragraphs = [p for a in articles for p in a.split("\n") if len(p) > 200]
    else:
        paragraphs = [line for name in ("cmrc2018_contexts.txt", "peoples_daily_199801_raw.txt") for line in (text_dir / "zh" / name).read_text().splitlines() if len(line) > 100]
    rng = random.Random(seed)
    return ["\n".join(rng.sample(paragraphs, rng.randint(1, 8))) for _ in range(n)]


def train_model(text_dir: Path, folder: Path) -> Path:
    from crawlmill.pipeline.quality.config import ClassifierTrainConfig
    from crawlmill.pipeline.quality.train import train_classifier

    t = text_dir
    config = ClassifierTrainConfig(
        positive=[f"en={t}/en/wikitext-2-valid.txt", f"zh={t}/zh/cmrc2018_contexts.txt"],
        negative=[f"en={t}/en/tinyshakespeare.txt", f"zh={t}/zh/peoples_daily_199801_raw.txt"], min_chars=20,
    )  # fmt: skip
    train_classifier(config, str(folder))
    # The bare fastText file, as datatrove and DCLM load one: outside its folder, whose
    # quality_model.json would otherwise give it crawlmill's own preparation.
    bare = folder.parent / "bare-model.bin"
    shutil.copyfile(folder / "model.bin", bare)
    return bare


def speed(model_file: Path, docs: dict[str, list[str]], repeat: int) -> dict:
    import numpy as np
    from datatrove.data import Document
    from datatrove.pipeline.filters import FastTextClassifierFilter

    from crawlmill.pipeline.quality.model import QualityModel

    out = {}
    datatrove = FastTextClassifierFilter(str(model_file), keep_labels=[("hq", 0.5)], newline_replacement=" ")
    datatrove.model  # loaded before timing  # noqa: B018
    ours = QualityModel.load(model_file, "__label__hq", "newlines")
    own = QualityModel.load(model_file.parent / "model")  # the trained folder (train_model)
    for lang, texts in docs.items():
        batches = [texts[i : i + 1024] for i in range(0, len(texts), 1024)]
        timings = {"datatrove": [], "crawlmill": [], "crawlmill_own_preparation": []}
        cold = {}
        for round_no in range(repeat):
            wrapped = [Document(text=t, id=str(i)) for i, t in enumerate(texts)]
            start = time.perf_counter()
            for doc in wrapped:
                datatrove.filter(doc)
            timings["datatrove"].append(time.perf_counter() - start)
            for name, model in (("crawlmill", ours), ("crawlmill_own_preparation", own)):
                start = time.perf_counter()
                scores = np.concatenate([model.score(b, [lang] * len(b)) for b in batches])
                timings[name].append(time.perf_counter() - start)
                if round_no == 0:
                    cold[name] = round(len(texts) / timings[name][0], 1)
            if round_no == 0:  # the same probabilities as fastText's own predict
                direct = datatrove.model
                reference = [dict(zip(*direct.predict(t.replace("\n", " "), k=-1))).get("__label__hq", 0.0) for t in texts]
                scores = np.concatenate([ours.score(b, [lang] * len(b)) for b in batches])
                max_difference = float(np.max(np.abs(scores - np.minimum(reference, 1.0))))
        best = {name: round(len(texts) / min(seconds), 1) for name, seconds in timings.items()}
        out[lang] = {
            "documents": len(texts), "mean_chars": round(sum(map(len, texts)) / len(texts)), "docs_per_s_per_core": best,
            "cold_first_pass": cold, "speedup_vs_datatrove": round(best["crawlmill"] / best["datatrove"], 2),
            "max_probability_difference_vs_fasttext": max_difference,
        }  # fmt: skip
    return out


def memory(model_dir: Path, docs: list[str], cpus: int, parts: int, work: Path) -> dict:
    """Peak summed PSS of the Ray workers (and their forks) while the quality stage scores."""
    import psutil
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray

    from crawlmill.pipeline import runner
    from crawlmill.pipeline.parts import commit_folder
    from crawlmill.pipeline.quality.config import QualityConfig
    from crawlmill.pipeline.quality.stage import QualityStage
    from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id

    folder = work / "input"
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(docs) // parts)
    for p in range(parts):
        rows = [{"id": document_id(f"q{p}-{i}"), "text": t, "lang": "en"} for i, t in enumerate(docs[p * per : (p + 1) * per])]
        pq.write_table(pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA), folder / f"part-{p:05d}.parquet")
    commit_folder(folder)  # a marker per part and _SUCCESS: input_parts reads only marked parts
    ray.init(num_cpus=cpus, include_dashboard=False, logging_level="ERROR")
    results = {}
    original = runner.StageContext.node_step

    def per_process(self, name, setup, fn, tasks, *, shared=(), markers=None, title=None):  # noqa: ANN001, ANN202
        return self.step(name, _score_loading_in_process, tasks, shared=(setup, fn, shared), markers=markers, title=title)

    for layout in ("node_step", "per_process"):
        runner.StageContext.node_step = original if layout == "node_step" else per_process
        peak, stop = [0], threading.Event()

        def poll() -> None:
            driver = os.getpid()
            while not stop.is_set():
                total = 0
                for proc in psutil.process_iter(["cmdline"]):
                    try:
                        line = " ".join(proc.info["cmdline"] or [])
                        if proc.pid != driver and ("ray::" in line or "default_worker.py" in line or _is_fork_of_worker(proc)):
                            total += proc.memory_full_info().pss
                    except psutil.Error:
                        continue
                peak[0] = max(peak[0], total)
                time.sleep(0.2)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        start = time.perf_counter()
        result = runner.run_stage(QualityStage(QualityConfig(inputs=[str(folder)], model=str(model_dir))), work / layout, progress=False)
        seconds = time.perf_counter() - start
        stop.set()
        watcher.join()
        assert result.ok, result.failures
        results[layout] = {"peak_pss_mib": peak[0] >> 20, "seconds": round(seconds, 2)}
    runner.StageContext.node_step = original
    ray.shutdown()
    model_mib = sum(f.stat().st_size for f in model_dir.glob("*.bin")) >> 20
    return {"cpus": cpus, "parts": parts, "documents": len(docs), "model_file_mib": model_mib, **results}


_MODELS: dict = {}


def _score_loading_in_process(setup, fn, shared, *args):  # noqa: ANN001, ANN202 - the per-process layout
    key = tuple(shared)
    if key not in _MODELS:
        _MODELS[key] = setup(*shared)
    return fn(_MODELS[key], *args)


def _is_fork_of_worker(proc) -> bool:  # noqa: ANN001 - psutil.Process
    try:
        parent = proc.parent()
        return parent is not None and "ray::" in " ".join(parent.cmdline())
    except Exception:  # noqa: BLE001
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=8000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--text-dir", type=Path, default=TEXT_DIR)
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/quality.json")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="quality-bench-") as folder:  # an 800 MB model: removed after
        work = Path(folder)
        model_file = train_model(args.text_dir, work / "model")
        docs = {lang: documents(args.text_dir, lang, args.docs if lang == "en" else args.docs // 4, seed=1) for lang in ("en", "zh")}
        result = {**run_info(), "speed": speed(model_file, docs, args.repeat), "memory": memory(work / "model", docs["en"], args.cpus, args.parts, work)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
