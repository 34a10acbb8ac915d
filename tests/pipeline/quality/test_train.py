"""`crawlmill quality train`: held-out ROC-AUC >= 0.9 per language on real text (the issue's
acceptance), determinism, graded labels scored as the expected grade, topic labels for remix, and
labels files with bad lines."""

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.corpora.web_junk import junk_documents
from crawlmill.pipeline.quality.config import ClassifierTrainConfig, QualityConfig
from crawlmill.pipeline.quality.model import QualityModel, read_model_info
from crawlmill.pipeline.quality.stage import QualityStage
from crawlmill.pipeline.quality.train import train_classifier
from tests.conftest import REPO

QUALITY = REPO / "samples/quality"


def reference(lang):
    return (QUALITY / f"reference_{lang}.txt").read_text(encoding="utf-8").splitlines()


def web(lang):
    return (QUALITY / f"web_{lang}.txt").read_text(encoding="utf-8").splitlines()


def train_cli(*args):
    result = CliRunner().invoke(app, ["quality", "train", *args])
    assert result.exit_code == 0, result.output
    return result


def test_heldout_roc_auc_is_at_least_0_9_for_each_language(shared_data, tmp_path):
    """DCLM's recipe on real text of ../shared/data (Wikipedia prose, CMRC, People's Daily) against web
    pages made from other paragraphs of the same articles (crawlmill.corpora.quality_corpus): the
    figures go to train_report.json, per language."""
    from crawlmill.corpora.quality_corpus import build

    build(shared_data / "text", tmp_path / "corpus", seed=0, cc_dir=None)
    c = tmp_path / "corpus"
    train_cli(
        "--positive", f"en={c}/positive-en.jsonl", f"zh={c}/positive-zh.jsonl", "--negative", f"en={c}/negative-en.jsonl", f"zh={c}/negative-zh.jsonl",
        "--heldout", "0.2", "--bucket", "200000", "--output", str(tmp_path / "model"),
    )  # fmt: skip
    report = json.loads((tmp_path / "model/train_report.json").read_text())
    print({lang: {k: v for k, v in r.items()} for lang, r in report["heldout"].items()})
    for lang, minimum_documents in (("en", 80), ("zh", 400)):
        figures = report["heldout"][lang]
        assert figures["documents"] >= minimum_documents
        assert figures["roc_auc"] >= 0.9, (lang, figures)
        assert figures["precision_top_10pct"] >= 0.9 and figures["f1"] >= 0.8, (lang, figures)
    assert report["documents"]["train_by_language_and_class"]["zh:hq"] > 500


def demo_training_config(**overrides) -> ClassifierTrainConfig:
    """The demo's classifier settings (configs/demo.yaml's quality.train), paths from the repo."""
    import yaml

    section = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["quality"]["train"]
    section["positive"] = [f"{lang}={(REPO / 'configs' / path).resolve()}" for lang, path in (s.split("=", 1) for s in section["positive"])]
    section["negative"] = [f"{lang}={(REPO / 'configs' / path).resolve()}" for lang, path in (s.split("=", 1) for s in section["negative"])]
    return ClassifierTrainConfig(**{**section, **overrides})


def test_same_data_and_seed_give_the_same_model_bytes(tmp_path):
    reports = [train_classifier(demo_training_config(), str(tmp_path / name)) for name in ("a", "b")]
    assert (tmp_path / "a/model.bin").read_bytes() == (tmp_path / "b/model.bin").read_bytes()
    assert (tmp_path / "a/quality_model.json").read_text() == (tmp_path / "b/quality_model.json").read_text()
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in reports][0] == {k: v for k, v in reports[1].items() if k != "seconds"}
    other_seed = train_classifier(demo_training_config(seed=1), str(tmp_path / "c"))
    assert (tmp_path / "c/model.bin").read_bytes() != (tmp_path / "a/model.bin").read_bytes() and other_seed["heldout"].keys() == {"en", "zh"}


def test_one_model_per_language(tmp_path):
    report = train_classifier(demo_training_config(per_language=True), str(tmp_path / "m"))
    assert report["models"] == {"en": "model-en.bin", "zh": "model-zh.bin"}
    model = QualityModel.load(tmp_path / "m")
    scores = model.score([reference("en")[0], web("zh")[0], "texte"], ["en", "zh", "fr"])
    assert scores[0] > 0.5 > scores[1] and np.isnan(scores[2])  # no model for French: no score


def graded_file(path, seed=0):
    """Reference paragraphs graded 4-5, web pages 0-2 (as an LLM annotator might), both languages."""
    rng = random.Random(seed)
    rows = [{"text": t, "lang": lang, "grade": rng.choice([4, 5])} for lang in ("en", "zh") for t in reference(lang)]
    rows += [{"text": t, "lang": lang, "grade": rng.choice([0, 1, 2])} for lang in ("en", "zh") for t in web(lang)[:60]]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows


def test_graded_labels_train_one_class_per_grade_and_score_the_expected_grade(tmp_path):
    graded_file(tmp_path / "graded.jsonl")
    train_cli("--labels", str(tmp_path / "graded.jsonl"), "--epoch", "25", "--lr", "0.5", "--bucket", "20000", "--min-chars", "10", "--output", str(tmp_path / "edu"))
    info = read_model_info(tmp_path / "edu")
    assert info.grades == {f"__label__{g}": float(g) for g in range(6) if g != 3} and info.topics is None
    model = QualityModel.load(tmp_path / "edu")
    assert model.info.max_score == 5.0
    scores = model.score([reference("en")[1], web("en")[100], reference("zh")[1], web("zh")[100]], ["en", "en", "zh", "zh"])
    assert scores[0] > 3 > scores[1] and scores[2] > 3 > scores[3] and scores.min() >= 0 and scores.max() <= 5
    report = json.loads((tmp_path / "edu/train_report.json").read_text())
    assert set(report["heldout"]) == {"en", "zh"} and all(r["roc_auc"] >= 0.9 for r in report["heldout"].values())


def topic_file(path):
    """Web pages labelled by what they are (shop, links, comments, notice): topic labels, both languages."""
    topics = {"product_listing": "shop", "link_farm": "links", "comment_spam": "comments", "notice": "notice"}
    rows = []
    for lang in ("en", "zh"):
        for doc in junk_documents(reference(lang), lang, 160, seed=5, kinds=list(topics)):
            rows.append({"text": doc["text"], "lang": lang, "label": topics[doc["kind"]]})
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return rows


def test_topic_labels_train_a_topic_model_the_quality_stage_refuses(tmp_path):
    rows = topic_file(tmp_path / "topics.jsonl")
    train_cli("--labels", str(tmp_path / "topics.jsonl"), "--heldout", "0.25", "--bucket", "20000", "--epoch", "25", "--lr", "0.5", "--min-chars", "10", "--output", str(tmp_path / "topics"))
    info = read_model_info(tmp_path / "topics")
    assert info.topics == ["__label__comments", "__label__links", "__label__notice", "__label__shop"] and info.grades is None
    report = json.loads((tmp_path / "topics/train_report.json").read_text())
    for lang in ("en", "zh"):
        assert report["heldout"][lang]["documents"] >= 20 and report["heldout"][lang]["accuracy"] >= 0.8, report["heldout"]
    model = QualityModel.load(tmp_path / "topics", positive_label=None)
    labels, probabilities = model.top_labels([rows[0]["text"], rows[-1]["text"]], ["en", "zh"])
    assert labels == [f"__label__{rows[0]['label']}", f"__label__{rows[-1]['label']}"] and np.all(probabilities > 0.5)
    with pytest.raises(ValueError, match="topic model gives labels"):
        model.score(["text"], ["en"])
    with pytest.raises(ValueError, match="a topic model .* belongs in remix's classifier.model"):
        QualityStage(QualityConfig(inputs=[], model=str(tmp_path / "topics")))


def test_bad_label_lines_are_counted_and_a_file_mixing_grades_and_topics_is_refused(tmp_path):
    rows = graded_file(tmp_path / "graded.jsonl")
    with open(tmp_path / "graded.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"text": "no grade here"}\nnot json\n{"text": ["a list"], "grade": 3}\n')
    report = train_classifier(ClassifierTrainConfig(labels=str(tmp_path / "graded.jsonl"), bucket=20000, min_chars=10), str(tmp_path / "m"))
    assert report["dropped"]["unreadable:bad_label_line"] == 3 and report["documents"]["read"] == len(rows)
    with open(tmp_path / "graded.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"text": "a page about code and programs", "label": "code"}\n')
    with pytest.raises(ValueError, match="mixes grades and topic labels"):
        train_classifier(ClassifierTrainConfig(labels=str(tmp_path / "graded.jsonl"), bucket=20000), str(tmp_path / "n"))


def test_training_holds_a_uniform_sample_of_max_documents_per_class_not_every_document(tmp_path):
    """Before, every example was held until the end (memory followed the inputs); now each class keeps
    at most max_documents while reading, a uniform sample, and balancing counts what was read."""
    import tracemalloc

    from crawlmill.pipeline.quality.train import collect

    def write(name, n, prefix):
        path = tmp_path / name
        path.write_text("".join(f"{prefix} document number {i} with enough words in it to be long enough to learn from\n" for i in range(n)))
        return str(path)

    positive, negative = write("good.txt", 3000, "good"), write("bad.txt", 20000, "bad")
    config = ClassifierTrainConfig(positive=[f"en={positive}"], negative=[f"en={negative}"], languages=["en"], max_documents=500, seed=3)
    tracemalloc.start()
    rows, counts = collect(config)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000  # 500 + 500 short strings, not 23,000
    by_label = {label: [text for lab, _, text in rows if lab == label] for label in ("__label__hq", "__label__cc")}
    assert [len(v) for v in by_label.values()] == [500, 500]
    assert counts["dropped:balanced_out"] == (3000 - 500) + (20000 - 500)
    numbers = sorted(int(text.split()[3]) for text in by_label["__label__cc"])
    assert numbers[-1] > 15000 and numbers[0] < 5000  # drawn from the whole file, not its first 500 lines
    assert collect(config)[0] == rows  # deterministic by seed
    # Within the limit, every document is kept and the larger class balanced down to the smaller's count.
    rows, counts = collect(ClassifierTrainConfig(positive=[f"en={positive}"], negative=[f"en={negative}"], languages=["en"], max_documents=None))
    assert len(rows) == 6000 and counts["dropped:balanced_out"] == 17000


def test_the_new_max_documents_default_keeps_a_finished_folder_of_before_its_own():
    """The default was null (every document): a folder made then records null, and must not be refused
    as made with other settings; asking for every document now is recorded apart."""
    from crawlmill.pipeline.quality.train_stage import train_record

    inputs = {"positive": ["en=good.txt"], "negative": ["en=bad.txt"]}
    assert train_record(ClassifierTrainConfig(**inputs))["max_documents"] is None
    assert train_record(ClassifierTrainConfig(**inputs, max_documents=None))["max_documents"] == "all"
    assert train_record(ClassifierTrainConfig(**inputs, max_documents=5000))["max_documents"] == 5000
    from crawlmill.pipeline.quality.train_stage import QualityTrainStage  # `crawlmill quality train`'s own folder too

    assert QualityTrainStage(ClassifierTrainConfig(**inputs)).fingerprint()["max_documents"] is None


def test_graded_labels_keep_their_distribution_under_the_default_and_are_capped_only_when_asked(tmp_path, monkeypatch):
    """The default cap would flatten an annotator's grades (each grade a class): it caps no class of a
    labels file; a limit given caps each, as before."""
    from crawlmill.pipeline.quality import train as module

    path = tmp_path / "graded.jsonl"
    path.write_text("".join(json.dumps({"text": f"document {g}-{i} with words enough to learn from them, and a few more words to pass min_chars", "grade": g, "lang": "en"}) + "\n"
                            for g in range(3) for i in range(10 * (g + 1))))  # fmt: skip
    config = ClassifierTrainConfig(labels=str(path), languages=["en"], max_documents=5)
    assert len(module.collect(config)[0]) == 15  # asked for: 5 of each grade
    monkeypatch.setattr(module, "DEFAULT_MAX_DOCUMENTS", 5)  # as if 5 were the default
    assert len(module.collect(config)[0]) == 60  # 10, 20, 30: every document, the grades' shares kept
    assert ClassifierTrainConfig(labels=str(path), max_documents=0).max_documents is None  # `--max-documents 0`: every document
