"""The quality stage run alone on a folder with a row whose `text` is null and one whose `id` is null
(a user's own Parquet, or a dedup output edited by hand): each is quarantined as `no_text` /
`no_id` with its part and row, as filter does, and the counts balance. Once the score step failed
the part on the null text (TypeError: 'NoneType' object is not subscriptable), exit 1."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.quality.config import ClassifierTrainConfig, QualityConfig
from crawlmill.pipeline.quality.stage import QualityStage
from crawlmill.pipeline.quality.train import train_classifier
from crawlmill.pipeline.runner import run_stage

from tests.conftest import SAMPLES
from tests.pipeline.incomplete_part import write_incomplete_part


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """The demo's classifier (configs/demo.yaml's quality.train on samples/quality): seconds to train."""
    q = SAMPLES / "quality"
    config = ClassifierTrainConfig(
        positive=[f"en={q}/reference_en.txt"], negative=[f"en={q}/web_en.txt"], languages=["en"],
        balance=False, min_chars=10, epoch=5, lr=0.5, bucket=20_000,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("quality-model") / "model"
    train_classifier(config, str(folder))
    return folder


def test_rows_without_text_or_id_are_quarantined_and_counted(ray_local, small_model, tmp_path):
    folder = write_incomplete_part(tmp_path / "foreign")  # row 2's empty text: a document still
    for rule in ({}, {"keep_top": 0.5}):  # label only, and a rule whose cut-off the null rows must not move
        out = tmp_path / f"out-{len(rule)}"
        result = run_stage(QualityStage(QualityConfig(inputs=[str(folder)], model=str(small_model), **rule)), out, progress=False)
        assert result.ok, result.failures
        stats = json.loads((out / "_stats.json").read_text())
        assert stats["in"] == 6 and stats["quarantined"] == 2 and stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + 2, stats
        part = str(folder / "part-00000.parquet")
        assert pq.read_table(out / "_quarantine").to_pylist() == [
            {"stage": "quality", "source": part, "offset": 1, "record_id": "doc-1", "error": "no_text", "detail": "row 1: its `text` is null"},
            {"stage": "quality", "source": part, "offset": 4, "record_id": None, "error": "no_id", "detail": "row 4: its `id` is null"},
        ]
        docs = pq.read_table(out).to_pylist()
        assert {d["id"] for d in docs} <= {"doc-0", "doc-2", "doc-3", "doc-5"} and all(d["quality_score"] is not None for d in docs)
        summary = json.loads((out / "_quality.json").read_text())
        assert summary["languages"]["en"]["documents"] == 4  # the quarantined rows are in no histogram
