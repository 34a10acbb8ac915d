"""Quality models: any fastText model file with a configurable positive label (DCLM's `__label__hq`
classifier works unchanged), graded models scored as the expected grade, languages without a model."""

import random

import fasttext
import numpy as np
import pytest

from crawlmill.pipeline.quality.model import ModelInfo, QualityModel, write_model_info
from crawlmill.pipeline.quality.text import prepare

GOOD = "the committee published a detailed report on the history of the river and its bridges".split()
BAD = "buy cheap best price click here free shipping discount deal online now".split()


def fasttext_file(tmp_path, labels: dict[str, list[str]], name: str = "model.bin"):
    rng = random.Random(0)
    with open(tmp_path / "train.txt", "w") as handle:
        for _ in range(400):
            for label, words in labels.items():
                handle.write(f"{label} {' '.join(rng.choice(words) for _ in range(30))}\n")
    model = fasttext.train_supervised(str(tmp_path / "train.txt"), epoch=5, wordNgrams=2, minCount=1, thread=1, seed=0, verbose=0)
    model.save_model(str(tmp_path / name))
    return tmp_path / name


def test_a_dclm_style_model_file_scores_as_its_positive_label_probability(tmp_path):
    path = fasttext_file(tmp_path, {"__label__hq": GOOD, "__label__cc": BAD})
    texts = ["The committee published a report\non the bridges.", "Buy cheap, click here for free shipping!"]
    scores = QualityModel.load(path, "__label__hq", "newlines").score(texts, ["en", "en"])
    direct = fasttext.load_model(str(path))
    for text, score in zip(texts, scores):
        labels, probs = direct.predict(text.replace("\n", " "), k=-1)
        assert score == pytest.approx(min(1.0, float(dict(zip(labels, probs))["__label__hq"])), rel=1e-6)
    assert scores[0] > 0.5 > scores[1]
    with pytest.raises(ValueError, match="no label '__label__good'"):
        QualityModel.load(path, "__label__good")


def test_a_graded_model_scores_the_expected_grade(tmp_path):
    words = {f"__label__{g}": [f"w{g}{i}" for i in range(10)] for g in range(6)}
    fasttext_file(tmp_path, words, "model.bin")
    write_model_info(tmp_path, ModelInfo(models={"*": "model.bin"}, grades={f"__label__{g}": float(g) for g in range(6)}))
    model = QualityModel.load(tmp_path)
    scores = model.score([" ".join(words[f"__label__{g}"]) for g in range(6)], ["en"] * 6)
    assert model.info.max_score == 5.0 and np.all(np.diff(scores) > 0) and 0 <= scores.min() and scores.max() <= 5


def test_languages_without_a_model_get_no_score(tmp_path):
    fasttext_file(tmp_path, {"__label__hq": GOOD, "__label__cc": BAD}, "model-en.bin")
    write_model_info(tmp_path, ModelInfo(models={"en": "model-en.bin"}))
    scores = QualityModel.load(tmp_path).score(["the report", "报告"], ["en", "zh"])
    assert not np.isnan(scores[0]) and np.isnan(scores[1])


def test_text_preparation_segments_chinese_and_splits_punctuation():
    assert prepare("Hello, World!\nSecond line.", "en") == "hello , world ! second line ."
    assert prepare("我们今天去北京。", "zh") == "我们 今天 去 北京 。"
    assert prepare("a\nb", "en", "newlines") == "a b"
