"""Findings of a user journey through the quality stage, on real Ray, real fastText and real files:

- documents without a language (the stage run on ingest's output, before filter's language ID)
  were pooled under "none" for one keep-top cut-off and scored without any language's text
  preparation (Chinese unsegmented), exit 0; now they are kept unscored, counted, and warned of,
  and an input none of whose documents has a language is refused;
- a model.bin copied out of its folder was scored with `newlines` without a word; now a warning
  names --normalize;
- --keep-dropped (as filter's) writes the dropped documents with their score to `_dropped/`."""

import json
import shutil

import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.parts import DROPPED_DIR
from crawlmill.pipeline.quality.config import QualityConfig
from crawlmill.pipeline.quality.stage import QualityStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.stage import StageInputError, StageInputMismatch
from tests.pipeline.quality.test_settings import REF_EN, REF_ZH, WEB_EN, WEB_ZH, documents_folder, lines, train_demo_classifier


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train_demo_classifier(tmp_path_factory.mktemp("quality-model") / "model")


def run(inputs, model, out, **settings):
    result = run_stage(QualityStage(QualityConfig(inputs=[str(inputs)], model=str(model), **settings)), out, progress=False)
    assert result.ok, result.failures
    return result


def test_documents_without_a_language_are_kept_unscored_and_warned_of(ray_local, model, tmp_path):
    english = [{"text": t, "lang": "en"} for t in lines(REF_EN, 10) + lines(WEB_EN, 10)]
    unlabelled = [{"text": t, "lang": lang} for t, lang in zip(lines(REF_ZH, 6) + lines(WEB_ZH, 6), [None, ""] * 6)]
    folder = documents_folder(tmp_path / "mixed", [english, unlabelled])
    result = run(folder, model, tmp_path / "q", keep_top=0.5)
    docs = pq.read_table(tmp_path / "q").to_pylist()
    without = [d for d in docs if not d["lang"]]
    assert len(without) == 12 and all(d["quality_score"] is None and d["quality_bucket"] is None for d in without)  # kept, not scored
    assert result.stats["counters"]["unscored:no_lang"] == 12
    assert sum(d["lang"] == "en" for d in docs) == 10  # the best half of English: no pooled "none" cut-off
    summary = json.loads((tmp_path / "q/_quality.json").read_text())
    assert set(summary["languages"]) == {"en"}
    said = [w for w in result.stats["warnings"] if "12 of 32 documents have no language" in w]
    assert said and "run filter first: it sets lang" in said[0] and said == summary["warnings"]
    stage = QualityStage(QualityConfig(inputs=[str(folder)], model=str(model), keep_top=0.5))
    assert any("run filter first" in line for line in stage.report(result))


def test_an_input_without_any_language_is_refused_before_anything_runs(ray_local, model, tmp_path):
    folder = documents_folder(tmp_path / "ingested", [[{"text": t, "lang": None} for t in lines(REF_EN, 5) + lines(WEB_ZH, 5)]])
    with pytest.raises(StageInputError, match=r"its documents have no language .*run filter first: it sets lang"):
        QualityStage(QualityConfig(inputs=[str(folder)], model=str(model), keep_top=0.5))
    # A folder whose first part has no language but a later one has: not refused (every footer is read).
    mixed = documents_folder(tmp_path / "mixed", [[{"text": t, "lang": None} for t in lines(REF_EN, 3)], [{"text": t, "lang": "en"} for t in lines(REF_EN, 3)]])
    QualityStage(QualityConfig(inputs=[str(mixed)], model=str(model), keep_top=0.5))


def test_a_model_file_copied_out_of_its_folder_warns_that_its_text_preparation_is_assumed(ray_local, model, tmp_path, capfd):
    folder = documents_folder(tmp_path / "docs", [[{"text": t, "lang": "zh"} for t in lines(REF_ZH, 5) + lines(WEB_ZH, 5)]])
    (tmp_path / "lone").mkdir()
    shutil.copy(model / "model.bin", tmp_path / "lone/model.bin")
    assumed = run(folder, tmp_path / "lone/model.bin", tmp_path / "assumed")
    warning = next(w for w in assumed.stats["warnings"] if "--normalize" in w)
    assert "no quality_model.json beside it" in warning and "needs --normalize crawlmill" in warning
    assert "warning: " in capfd.readouterr().err  # said as the scoring starts, not only in the summary at its end
    told = run(folder, tmp_path / "lone/model.bin", tmp_path / "told", normalize="crawlmill")
    assert "warnings" not in told.stats  # said which: nothing assumed
    assert "warnings" not in run(folder, model, tmp_path / "folder").stats  # a folder has its settings
    scores = lambda out: pq.read_table(out).column("quality_score").to_pylist()  # noqa: E731
    assert scores(tmp_path / "told") == scores(tmp_path / "folder") != scores(tmp_path / "assumed")


def test_keep_dropped_writes_the_dropped_documents_with_their_score(ray_local, model, tmp_path):
    rows = [{"text": t, "lang": "en"} for t in lines(REF_EN, 10) + lines(WEB_EN, 10)]
    folder = documents_folder(tmp_path / "docs", [rows[::2], rows[1::2]])
    result = run(folder, model, tmp_path / "q", keep_top=0.3, keep_dropped=True)
    kept, dropped = pq.read_table(tmp_path / "q").to_pylist(), pq.read_table(tmp_path / "q" / DROPPED_DIR).to_pylist()
    assert len(dropped) == result.stats["dropped"]["quality_not_in_top"] == 14 and len(kept) == 6
    assert {d["text"] for d in kept + dropped} == {r["text"] for r in rows}
    cutoff = json.loads((tmp_path / "q/_quality.json").read_text())["languages"]["en"]["top_cutoff"]
    assert all(d["drop_reason"] == "quality_not_in_top" and d["quality_score"] < cutoff and d["quality_bucket"] is not None for d in dropped)
    # _dropped/ is output: a finished folder made without it is refused, not "done" without it
    run(folder, model, tmp_path / "plain", keep_top=0.3)
    with pytest.raises(StageInputMismatch, match="keep_dropped"):
        run_stage(QualityStage(QualityConfig(inputs=[str(folder)], model=str(model), keep_top=0.3, keep_dropped=True)), tmp_path / "plain", progress=False)
    assert run(folder, model, tmp_path / "plain", keep_top=0.3).already_done  # without it: still done
