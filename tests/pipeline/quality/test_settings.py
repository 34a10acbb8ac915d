"""What the quality stage must not get silently wrong, and the mistakes it refuses before anything
runs: a model file inside a trained folder scores exactly as the folder; training inputs without a
language or in a language not trained, and missing ones; a threshold outside the score's range;
labels without `lang`; input problems found while training stop with exit status 2, not as a failed
task to retry; keep-top keeps its share when the scores crowd one histogram bin."""

import json
import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.pipeline.config import ConfigError, load_run_config
from crawlmill.pipeline.quality.config import ClassifierTrainConfig, QualityConfig
from crawlmill.pipeline.quality.model import MODEL_FILE, ModelInfo, QualityModel, model_digest, read_model_info, write_model_info
from crawlmill.pipeline.quality.stage import QualityStage
from crawlmill.pipeline.quality.train import train_classifier
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.schema import document_id
from crawlmill.pipeline.stage import PartStage, PartTask, StageInputError
from tests.conftest import REPO

QUALITY = REPO / "samples/quality"
REF_EN, WEB_EN, REF_ZH, WEB_ZH = (str(QUALITY / f"{kind}_{lang}.txt") for lang in ("en", "zh") for kind in ("reference", "web"))


class Documents(PartStage):
    """A finished stage folder of the documents of JSONL files (text, lang), a part each."""

    name = "documents"

    def __init__(self, files: list[str]) -> None:
        super().__init__(None)
        self.files = files

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, f) for i, f in enumerate(self.files)]

    def process(self, task, sink) -> None:
        with open(task.source, encoding="utf-8") as handle:
            for n, line in enumerate(handle):
                row = json.loads(line)
                sink.keep({"id": document_id(f"{task.source}:{n}"), "text": row["text"], "lang": row["lang"], "url": f"https://example.com/{n}"})


def documents_folder(root, rows_per_part: list[list[dict]]):
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for i, rows in enumerate(rows_per_part):
        files.append(str(root / f"docs-{i}.jsonl"))
        (root / f"docs-{i}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert run_stage(Documents(files), root / "folder", progress=False).ok
    return root / "folder"


def lines(path: str, n: int) -> list[str]:
    return open(path, encoding="utf-8").read().splitlines()[:n]


@pytest.fixture(scope="module")
def documents(ray_local, tmp_path_factory):
    """40 English and 40 Chinese documents of samples/quality (reference and web text), in two parts."""
    parts = [[{"text": t, "lang": lang} for t in lines(ref, 20) + lines(web, 20)] for lang, ref, web in (("en", REF_EN, WEB_EN), ("zh", REF_ZH, WEB_ZH))]
    return documents_folder(tmp_path_factory.mktemp("quality-documents"), parts)


def train_demo_classifier(folder):
    """configs/demo.yaml's classifier, trained into `folder`: normalize crawlmill (lower-cased, Chinese segmented with jieba), in seconds."""
    config = ClassifierTrainConfig(positive=[f"en={REF_EN}", f"zh={REF_ZH}"], negative=[f"en={WEB_EN}", f"zh={WEB_ZH}"], balance=False, min_chars=10, epoch=25, lr=0.5, bucket=20000)
    train_classifier(config, str(folder))
    return folder


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    return train_demo_classifier(tmp_path_factory.mktemp("quality-demo-model") / "model")


def scores_of(folder):
    return pq.read_table(folder).column("quality_score").to_pylist()


def score_run(documents, model, out, **settings):
    result = run_stage(QualityStage(QualityConfig(inputs=[str(documents)], model=str(model), **settings)), out, progress=False)
    assert result.ok, result.failures
    return result


def test_a_model_file_inside_its_folder_scores_exactly_as_the_folder(documents, demo_model, tmp_path):
    score_run(documents, demo_model, tmp_path / "folder")
    score_run(documents, demo_model / "model.bin", tmp_path / "file")
    assert scores_of(tmp_path / "file") == scores_of(tmp_path / "folder")  # the folder's preparation: crawlmill, jieba
    info = read_model_info(demo_model / "model.bin")
    assert (info.normalize, info.positive_label, info.models) == ("crawlmill", "__label__hq", {"*": "model.bin"})
    assert MODEL_FILE in model_digest(demo_model / "model.bin")  # its settings are part of its identity
    # The same bytes as a lone file are scored as a lone file's defaults (newlines): other scores.
    (tmp_path / "lone").mkdir()
    shutil.copy(demo_model / "model.bin", tmp_path / "lone/model.bin")
    score_run(documents, tmp_path / "lone/model.bin", tmp_path / "lone-scores")
    assert read_model_info(tmp_path / "lone/model.bin").normalize == "newlines"
    assert scores_of(tmp_path / "lone-scores") != scores_of(tmp_path / "folder")


def test_settings_given_against_a_model_folder_are_refused(demo_model, tmp_path):
    for model in (demo_model, demo_model / "model.bin"):
        with pytest.raises(ValueError, match="normalize 'newlines': .*quality_model.json says 'crawlmill'"):
            QualityStage(QualityConfig(inputs=[], model=str(model), normalize="newlines"))
        with pytest.raises(ValueError, match="positive_label '__label__good': .*says '__label__hq'"):
            QualityConfig(inputs=[], model=str(model), positive_label="__label__good").check()
        QualityConfig(inputs=[], model=str(model), normalize="crawlmill", positive_label="__label__hq").check()  # agreeing: fine
    result = CliRunner().invoke(app, ["quality", str(tmp_path), "--model", str(demo_model / "model.bin"), "--normalize", "newlines", "--output", str(tmp_path / "q")])
    assert result.exit_code == 2 and "says 'crawlmill'" in result.output and not (tmp_path / "q").exists()


def test_a_per_language_file_scores_its_language_as_its_folder(demo_model, tmp_path):
    folder = tmp_path / "per-language"
    folder.mkdir()
    for lang in ("en", "zh"):
        shutil.copy(demo_model / "model.bin", folder / f"model-{lang}.bin")
    write_model_info(folder, ModelInfo(models={"en": "model-en.bin", "zh": "model-zh.bin"}, normalize="crawlmill"))
    texts, langs = [lines(REF_EN, 1)[0], lines(WEB_ZH, 1)[0]], ["en", "zh"]
    whole = QualityModel.load(folder).score(texts, langs)
    english = QualityModel.load(folder / "model-en.bin").score(texts, langs)
    assert english[0] == whole[0] and np.isnan(english[1])  # the Chinese model is the folder's other file


def test_training_inputs_are_checked_before_anything_runs(tmp_path):
    def refused(match, **settings):
        with pytest.raises(ValueError, match=match):
            ClassifierTrainConfig(**{"positive": [f"en={REF_EN}"], "negative": [f"en={WEB_EN}"], **settings}).check()

    refused(r"positive: .*reference_en.txt: plain text says nothing of its documents' language: write LANG=PATH", positive=[REF_EN])
    refused("positive: fr=.*: fr is not among the languages trained \\(en, zh\\); name it with --language", positive=[f"fr={REF_EN}"])
    refused("negative: en=/nope.txt: no such file or folder", negative=["en=/nope.txt"])
    refused("labels: /nope.jsonl: no such file", positive=[], negative=[], labels="/nope.jsonl")
    pq.write_table(pa.table({"text": ["a web page"]}), tmp_path / "no-lang.parquet")
    refused("no-lang.parquet has no `lang` column", negative=[str(tmp_path / "no-lang.parquet")])
    (tmp_path / "no-lang.jsonl").write_text('{"text": "a web page"}\n')
    refused("the lines of .*no-lang.jsonl have no `lang` field", negative=[str(tmp_path / "no-lang.jsonl")])
    (tmp_path / "texts").mkdir()
    shutil.copy(WEB_EN, tmp_path / "texts/web.txt")
    refused("plain text .*web.txt.* says nothing", negative=[str(tmp_path / "texts")])  # a folder of text files
    # Inputs that name their documents' language need no LANG=.
    pq.write_table(pa.table({"text": ["a web page"], "lang": ["en"]}), tmp_path / "lang.parquet")
    (tmp_path / "lang.jsonl").write_text('{"text": "a web page", "lang": "en"}\n')
    ClassifierTrainConfig(positive=[f"en={REF_EN}"], negative=[str(tmp_path / "lang.parquet"), str(tmp_path / "lang.jsonl")]).check()
    result = CliRunner().invoke(app, ["quality", "train", "--positive", f"fr={REF_EN}", "--negative", f"en={WEB_EN}", "--output", str(tmp_path / "m")])
    assert result.exit_code == 2 and "fr is not among the languages trained" in result.output and not (tmp_path / "m").exists()


def test_input_problems_found_while_training_stop_the_command_with_exit_2(ray_local, tmp_path):
    runner = CliRunner()
    common = ["--bucket", "20000", "--min-chars", "10", "--no-progress"]
    result = runner.invoke(app, ["quality", "train", "--positive", f"en={REF_EN}", "--negative", f"zh={WEB_ZH}", *common, "--output", str(tmp_path / "a")])
    assert result.exit_code == 2, result.output
    assert "language en: examples of only __label__hq; --negative gave documents in zh 132" in result.output
    assert "rerun the same command" not in result.output and not (tmp_path / "a").exists()
    result = runner.invoke(app, ["quality", "train", "--positive", f"en={REF_EN}", "--negative", f"en={WEB_EN}", "--language", "en", *common[:2], "--min-chars", "100000", "--output", str(tmp_path / "b")])
    assert result.exit_code == 2 and "no training documents in en (read 172; left out: too_short 172)" in result.output, result.output


def test_a_run_config_checks_quality_train_paths_before_any_stage(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"output_dir: out\nquality:\n  train:\n    positive: [en=/nope.txt, zh=missing/zh.txt]\n    negative: [en={WEB_EN}, {REF_ZH}]\n")
    with pytest.raises(ConfigError) as error:
        load_run_config(config)
    assert str(error.value).splitlines() == [
        "run.yaml.quality: train.positive: en=/nope.txt: no such file or folder",
        f"run.yaml.quality: train.positive: zh={tmp_path}/missing/zh.txt: no such file or folder",  # relative to the config
        f"run.yaml.quality: train.negative: {REF_ZH}: plain text says nothing of its documents' language: write LANG=PATH, e.g. en={REF_ZH}",
    ]
    result = CliRunner().invoke(app, ["run", str(config)])
    assert result.exit_code == 2 and "en=/nope.txt: no such file or folder" in result.output and not (tmp_path / "out").exists()


def test_a_threshold_outside_the_score_range_is_refused(demo_model, tmp_path):
    for threshold, match in ((30, r"probability in \[0, 1\].*\(30 as a percentage is 0.3\)"), (1, "strictly between 0 and 1")):
        with pytest.raises(ValueError, match=match):
            QualityConfig(inputs=[], model=str(demo_model), threshold=threshold).check()
        with pytest.raises(ValueError, match=match):
            QualityStage(QualityConfig(inputs=[], model=str(demo_model), threshold=threshold))
    with pytest.raises(ValueError, match="threshold 0: must be a score above 0"):
        QualityConfig(model=str(demo_model), threshold=0)
    with pytest.raises(ValueError, match="trained in the run .* strictly between 0 and 1"):  # binary: a probability
        QualityConfig(train=ClassifierTrainConfig(positive=[f"en={REF_EN}"], negative=[f"en={WEB_EN}"]), threshold=2)
    QualityConfig(inputs=[], model=str(demo_model), threshold=0.5).check()
    # A graded model's score is the expected grade: 3 of 0-5 is a threshold (FineWeb-Edu's), 5 and 30 are not.
    graded = tmp_path / "graded"
    graded.mkdir()
    shutil.copy(demo_model / "model.bin", graded / "model.bin")
    write_model_info(graded, ModelInfo(models={"*": "model.bin"}, grades={"__label__cc": 0.0, "__label__hq": 5.0}))
    QualityConfig(inputs=[], model=str(graded), threshold=3).check()
    for threshold in (5, 30):
        with pytest.raises(ValueError, match=r"an expected grade in \[0, 5\]"):
            QualityConfig(inputs=[], model=str(graded), threshold=threshold).check()


def test_labels_name_their_language_unless_one_language_is_trained(tmp_path):
    rows = [{"text": t, "label": "reference"} for t in lines(REF_EN, 40)] + [{"text": t, "label": "web"} for t in lines(WEB_EN, 40)]
    labels = tmp_path / "topics.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="first line has no `lang`: every line needs one when more than one language is trained \\(en, zh\\)"):
        ClassifierTrainConfig(labels=str(labels)).check()
    with pytest.raises(StageInputError, match=r"topics.jsonl:1: no `lang`"):
        train_classifier(ClassifierTrainConfig(labels=str(labels), bucket=20000), str(tmp_path / "two"))
    rows[0]["lang"] = "en"  # the first line passes the early look; the training refuses the second
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(StageInputError, match=r"topics.jsonl:2: no `lang`"):
        train_classifier(ClassifierTrainConfig(labels=str(labels), bucket=20000), str(tmp_path / "two"))
    one = ClassifierTrainConfig(labels=str(labels), languages=["en"], bucket=20000, epoch=25, lr=0.5, min_chars=10)
    one.check()
    report = train_classifier(one, str(tmp_path / "one"))  # one language: lines without lang are in it
    assert report["documents"]["read"] == len(rows) and read_model_info(tmp_path / "one").topics == ["__label__reference", "__label__web"]


def test_keep_top_keeps_its_share_when_the_scores_crowd_one_bin(documents, tmp_path):
    """A model trained with DCLM's defaults on a few hundred documents scores everything within
    ~3e-5 of 0.5: one to three of the histogram's 65,536 bins. The cut-off is still the exact score
    of the last document of the share; only documents of that very score go beyond it (here 19 of
    the 40 Chinese documents score the same: the English model knows none of their words), and a
    share far beyond keep_top is a warning."""
    from crawlmill.pipeline.quality.buckets import BINS, bins_of

    crowded = tmp_path / "crowded"
    train_classifier(ClassifierTrainConfig(positive=[f"en={REF_EN}"], negative=[f"en={WEB_EN}"], languages=["en"], bucket=20000, min_chars=10), str(crowded))
    score_run(documents, crowded, tmp_path / "all")
    result = score_run(documents, crowded, tmp_path / "top", keep_top=0.3)
    every = pq.read_table(tmp_path / "all").to_pylist()
    kept = pq.read_table(tmp_path / "top").to_pylist()
    summary = json.loads((tmp_path / "top/_quality.json").read_text())
    for lang in ("en", "zh"):
        scores = np.array(sorted((d["quality_score"] for d in every if d["lang"] == lang), reverse=True), dtype=np.float32)
        assert len(set(bins_of(scores, 1.0).tolist())) <= 3 and scores[0] - scores[-1] < 5 / BINS  # crowded
        needed = math.ceil(0.3 * len(scores))
        assert summary["languages"][lang]["top_cutoff"] == float(scores[needed - 1])  # the exact score
        assert sum(d["lang"] == lang for d in kept) == int((scores >= scores[needed - 1]).sum())
    assert sum(d["lang"] == "en" for d in kept) <= math.ceil(0.3 * 40) + 1  # 13: two documents tie at the cut-off
    assert [w.split(":")[0] for w in result.stats["warnings"]] == ["zh"] and "warning" not in summary["languages"]["en"]
    assert result.stats["dropped"]["quality_not_in_top"] == len(every) - len(kept)


def test_a_kept_share_far_from_keep_top_is_a_warning(ray_local, demo_model, tmp_path):
    """Documents of one and the same score cannot be cut between: all are kept, and said so."""
    same = documents_folder(tmp_path / "same", [[{"text": lines(WEB_EN, 1)[0], "lang": "en"}] * 10])
    stage = QualityStage(QualityConfig(inputs=[str(same)], model=str(demo_model), keep_top=0.3))
    result = run_stage(stage, tmp_path / "q", progress=False)
    assert result.ok and result.stats["kept"] == 10
    [warning] = result.stats["warnings"]
    assert warning.startswith("en: kept 100.0% of 10 documents for keep_top 0.3: the documents kept beyond it score the same as the cut-off")
    assert json.loads((tmp_path / "q/_quality.json").read_text())["languages"]["en"]["warning"] == warning
    assert any("warning" in line and "kept 100.0%" in line for line in stage.report(result))
