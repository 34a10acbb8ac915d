"""The quality stage on real Ray with a model trained here: every document scored and bucketed,
kept by each rule, determinism and resume; the classifier's fastText probabilities exact."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.quality.config import ClassifierTrainConfig, QualityConfig
from crawlmill.pipeline.quality.stage import QualityStage
from crawlmill.pipeline.quality.train import train_classifier
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.filter.config import FilterConfig
from crawlmill.pipeline.filter.stage import FilterStage
from tests.conftest import SAMPLES


def folder_bytes(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and "_work" not in p.parts}


@pytest.fixture(scope="module")
def filtered(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("quality-input")
    assert run_stage(IngestStage(IngestConfig(inputs=[str(SAMPLES / "crawl-data")])), root / "ingest", progress=False).ok
    assert run_stage(FilterStage(FilterConfig(inputs=[str(root / "ingest")])), root / "filter", progress=False).ok
    return root / "filter"


@pytest.fixture(scope="module")
def model(shared_data, tmp_path_factory):
    t = shared_data / "text"
    config = ClassifierTrainConfig(
        positive=[f"en={t}/en/wikitext-2-valid.txt", f"zh={t}/zh/cmrc2018_contexts.txt"],
        negative=[f"en={t}/en/tinyshakespeare.txt", f"zh={t}/zh/peoples_daily_199801_raw.txt"], min_chars=20, bucket=200_000,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("quality-model") / "model"
    report = train_classifier(config, str(folder))
    assert report["heldout"]["en"]["roc_auc"] > 0.9 and report["heldout"]["zh"]["roc_auc"] > 0.9
    return folder


def run(filtered, model, out, **rule):
    return run_stage(QualityStage(QualityConfig(inputs=[str(filtered)], model=str(model), **rule)), out, progress=False)


def test_every_document_is_scored_and_bucketed_and_label_only_keeps_all(filtered, model, tmp_path):
    result = run(filtered, model, tmp_path / "q")
    assert result.ok, result.failures
    docs = pq.read_table(tmp_path / "q").to_pylist()
    source = pq.read_table(filtered).to_pylist()
    assert [d["id"] for d in docs] == [d["id"] for d in source] and result.stats["kept"] == len(source)
    assert all(0 <= d["quality_score"] <= 1 and 0 <= d["quality_bucket"] < 20 for d in docs)
    assert {d["lang"] for d in docs} == {"en", "zh"}
    summary = json.loads((tmp_path / "q/_quality.json").read_text())
    assert summary["mode"] == "label" and set(summary["languages"]) == {"en", "zh"}
    for lang, cut in summary["languages"].items():
        scores = np.array([d["quality_score"] for d in docs if d["lang"] == lang])
        buckets = np.array([d["quality_bucket"] for d in docs if d["lang"] == lang])
        assert cut["documents"] == len(scores) and len(cut["boundaries"]) == 19
        assert np.all(np.diff(buckets[np.argsort(scores)]) >= 0)  # buckets follow scores


def test_keep_top_and_threshold(filtered, model, tmp_path):
    from crawlmill.pipeline.quality.buckets import BINS

    assert run(filtered, model, tmp_path / "all").ok
    scored = pq.read_table(tmp_path / "all").to_pylist()
    top = run(filtered, model, tmp_path / "top", keep_top=0.5)
    kept = pq.read_table(tmp_path / "top").to_pylist()
    cuts = json.loads((tmp_path / "top/_quality.json").read_text())["languages"]
    for lang in ("en", "zh"):
        scores = np.array([d["quality_score"] for d in scored if d["lang"] == lang])
        cut = cuts[lang]["top_cutoff"]
        n_kept = sum(d["lang"] == lang for d in kept)
        assert n_kept == int((scores >= cut).sum()) >= len(scores) / 2  # the best half, ties in the cut-off bin kept
        assert int((scores >= cut + 1 / BINS).sum()) < len(scores) / 2  # the bins above it hold less than half
    assert top.stats["in"] == top.stats["kept"] + top.stats["dropped"]["quality_not_in_top"]
    every = scored
    threshold = run(filtered, model, tmp_path / "thr", threshold=0.5)
    assert all(d["quality_score"] >= 0.5 for d in pq.read_table(tmp_path / "thr").to_pylist())
    assert threshold.stats["dropped"].get("quality_below_threshold", 0) == sum(1 for d in every) - threshold.stats["kept"]


def test_same_input_gives_byte_identical_output_and_a_rerun_resumes(filtered, model, tmp_path):
    assert run(filtered, model, tmp_path / "a", keep_top=0.3).ok
    assert run(filtered, model, tmp_path / "b", keep_top=0.3).ok
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    (tmp_path / "b/_SUCCESS").unlink()
    (tmp_path / "b/_stats.json").unlink()
    next((tmp_path / "b/_work/_done/score").glob("*.json")).unlink()  # one part's scores as if never done
    again = run(filtered, model, tmp_path / "b", keep_top=0.3)
    assert again.ok and again.steps_finished_before["score"] == again.stats["parts"] - 1
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")


def test_a_model_without_the_positive_label_or_missing_is_a_clear_error(filtered, model, tmp_path):
    import shutil

    lone = shutil.copy(model / "model.bin", tmp_path / "model.bin")  # a fastText file of no model folder
    with pytest.raises(ValueError, match="no label '__label__good'"):
        run_stage(QualityStage(QualityConfig(inputs=[str(filtered)], model=str(lone), positive_label="__label__good")), tmp_path / "x", progress=False)
    with pytest.raises(ValueError, match="positive_label '__label__good': .*quality_model.json says '__label__hq'"):  # the folder's file
        QualityStage(QualityConfig(inputs=[str(filtered)], model=str(model / "model.bin"), positive_label="__label__good"))
    with pytest.raises(ValueError, match="quality needs a model"):
        QualityStage(QualityConfig(inputs=[str(filtered)]))
