"""Train the quality classifier: fastText on reference (positive) vs web (negative) text, or on graded
or topic labels, with a held-out split and a report of how well it ranks.

    crawlmill quality train --positive en=ref/en.jsonl zh=ref/zh.txt --negative out/dedup --output models/quality
    crawlmill quality train --labels graded.jsonl --output models/edu        # {"text", "grade", "lang"} lines
    crawlmill quality train --labels topics.jsonl --output models/topics     # {"text", "label", "lang"} lines

DCLM's recipe: `fasttext.train_supervised` with lr 0.1, dim 100, ws 5, epoch 5, minCount 1,
wordNgrams 2, two labels `__label__hq` / `__label__cc`, the score P(hq). Differences, for the points
users raise about it: the training script and data selection ship here; Chinese is segmented with
jieba before fastText (text.py) so it learns from words; English and Chinese train in one model or
one per language (`per_language`); a held-out split (by a hash of the text, so a document is in the
same split wherever it appears) measures each language's ROC-AUC, F1 and the precision of the top 10%
(train_report.json), which tells how a threshold will behave before it is used; one thread makes
training deterministic (same data and seed: the same model bytes).

Graded labels (an annotator's 0-5, as FineWeb-Edu) train one class per grade; the score is the
expected grade, and the report's binary figures count a grade >= `grade_threshold` as good.
Topic labels (`label`: a name, e.g. code, news, recipes) train one class per topic, for remix's
topic classifier (its `classifier.model` takes this folder); the report has each language's held-out
accuracy and macro F1.

The report warns (`warnings`, also in the command's summary) when a language's scores all lie in
a sliver of the score range (too little data for the epochs and lr: `collapsed`) and when a trained
language has no held-out document (listed with `documents: 0`, not left out).

Inputs are checked before anything runs (inputs.py); a problem found while training (a language with
one class only, no document long enough, a labels line without `lang` where several languages are
trained) raises StageInputError: the command stops with exit status 2 and the reason, as a rerun
cannot fix it.

Output folder: model.bin (or model-<lang>.bin), quality_model.json (model.py), train_report.json.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import xxhash

from crawlmill.files import as_path, atomic_path, atomic_write_json, is_remote, make_dirs, open_binary, remove_file
from crawlmill.tokenizer.corpus import CorpusCounts, InputSpec, iter_file_documents
from ..stage import StageInputError
from .config import DEFAULT_MAX_DOCUMENTS, ClassifierTrainConfig
from .inputs import lang_rule, training_files
from .model import ALL, ModelInfo, QualityModel, write_model_info
from .text import prepare

POSITIVE, NEGATIVE = "__label__hq", "__label__cc"
REPORT = "train_report.json"


def _lines(path: Path) -> Iterator[str]:
    """Plain text: one document a line (classifier data comes as paragraphs or pages a line)."""
    raw = open_binary(path)
    with gzip.open(raw, "rt", encoding="utf-8", errors="replace") if path.name.endswith(".gz") else io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                yield line.strip()


def read_documents(specs: list[str], counts: Counter) -> Iterator[tuple[str, str]]:
    """(text, lang) of every document of the inputs; `counts` gathers what could not be read."""
    unreadable = CorpusCounts()
    for spec in map(InputSpec.parse, specs):
        for kind, path in training_files(spec):
            if kind == "text":
                for text in _lines(path):
                    yield text, spec.lang or "und"
                continue
            for _, texts, langs in iter_file_documents(kind, path, spec.lang, unreadable):
                yield from zip(texts, langs)
    counts.update({f"unreadable:{k}": v for k, v in unreadable.bad_records.items()})


def _labelled(path: str, languages: list[str], counts: Counter) -> Iterator[tuple[str, str, str | float]]:
    """(text, lang, grade or topic) of each line of a labels file; a file holds grades or topics, not
    both. A line without `lang` is in the one language trained; with several trained, it is refused
    (a guess would segment Chinese as English, or the reverse, at training or at scoring time)."""
    kinds: set[str] = set()
    with open_binary(path) as raw, io.TextIOWrapper(raw, encoding="utf-8") as handle:  # streamed, not read whole
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if "grade" in row:
                    value: str | float = float(row["grade"])
                else:
                    value = str(row["label"]).strip().removeprefix("__label__")
                    if not value or any(c.isspace() for c in value):
                        raise ValueError("a label is one word")
                text = row["text"]
                if not isinstance(text, str):
                    raise TypeError("text is not a string")
            except (ValueError, KeyError, TypeError):
                counts["unreadable:bad_label_line"] += 1
                if counts["unreadable:bad_label_line"] == 1:
                    print(f"{path}:{number}: expected a JSON object with text and a grade (a number) or a label (a word); such lines are counted and skipped", file=sys.stderr)
                continue
            kinds.add("grade" if isinstance(value, float) else "label")
            counts["labels_are:topics" if isinstance(value, str) else "labels_are:grades"] = 1
            if len(kinds) > 1:
                raise StageInputError(f"{path}:{number}: the file mixes grades and topic labels; train them apart")
            if not row.get("lang") and len(languages) > 1:
                raise StageInputError(f"{path}:{number}: no `lang`: every line needs one when {lang_rule(languages)}")
            yield text, row.get("lang") or languages[0], value


def _heldout(text: str, share: float, seed: int) -> bool:
    return xxhash.xxh64_intdigest(text, seed=seed) % 10_000 < share * 10_000


def collect(config: ClassifierTrainConfig) -> tuple[list[tuple[str, str, str]], Counter]:
    """(label, lang, text) of every usable example, classes balanced per language; and the counts.

    Memory is bounded by `max_documents` per class and language, not by the inputs: each class keeps
    a uniform sample of that many while reading (Algorithm R, its own generator seeded by the seed,
    drawn only once a class has more); balancing then samples each down to the smallest class's
    count, and a uniform sample of a uniform sample is one of the whole class."""
    counts: Counter = Counter()
    examples: dict[tuple[str, str], list[str]] = {}
    usable: Counter = Counter()  # (label, lang): usable documents read, of which `examples` holds a sample
    seen: Counter = Counter()  # (label, lang) of every document read: what an error says was there
    # Graded or topic labels (an annotator's file, of a size one process holds): the default caps no
    # class, which would flatten the grades' distribution; a limit given caps each, as before.
    limit = None if config.labels is not None and config.max_documents == DEFAULT_MAX_DOCUMENTS else config.max_documents
    reservoir_rng = random.Random(f"reservoir:{config.seed}")

    def add(label: str, text: str, lang: str) -> None:
        counts["read"] += 1
        seen[label, lang] += 1
        if lang not in config.languages:
            counts["dropped:other_language"] += 1
        elif len(text) < config.min_chars:
            counts["dropped:too_short"] += 1
        else:
            usable[label, lang] += 1
            kept = examples.setdefault((label, lang), [])
            if limit is None or len(kept) < limit:
                kept.append(text)
            elif (slot := reservoir_rng.randrange(usable[label, lang])) < limit:
                kept[slot] = text

    if config.labels is not None:
        for text, lang, value in _labelled(config.labels, config.languages, counts):
            add(f"__label__{value:g}" if isinstance(value, float) else f"__label__{value}", text, lang)
    else:
        for label, specs in ((POSITIVE, config.positive), (NEGATIVE, config.negative)):
            for text, lang in read_documents(specs, counts):
                add(label, text, lang)
    rng = random.Random(config.seed)
    out = []
    for lang in config.languages:
        classes = {label: docs for (label, doc_lang), docs in sorted(examples.items()) if doc_lang == lang}
        if not classes:
            continue
        if config.labels is None and len(classes) < 2:
            missing = NEGATIVE if POSITIVE in classes else POSITIVE
            raise StageInputError(f"language {lang}: examples of only {', '.join(classes)}; {_read_of(missing, seen, config)}; give both positive and negative text (or leave {lang} out of languages)")
        cap = min(usable[label, lang] for label in classes) if config.balance and config.labels is None else None
        if limit is not None:
            cap = min(cap or limit, limit)
        for label, docs in classes.items():
            if cap is not None and usable[label, lang] > cap:
                counts["dropped:balanced_out"] += usable[label, lang] - cap
                docs = rng.sample(docs, cap) if len(docs) > cap else docs
            out += [(label, lang, text) for text in docs]
    return out, counts


def _read_of(label: str, seen: Counter, config: ClassifierTrainConfig) -> str:
    """What the inputs of a class held, by language (and how many were long enough)."""
    option = "--positive" if label == POSITIVE else "--negative"
    held = {lang: n for (of, lang), n in sorted(seen.items()) if of == label}
    if not held:
        return f"{option} gave no documents"
    langs = ", ".join(f"{lang} {n:,}" for lang, n in held.items())
    return f"{option} gave documents in {langs} (trained: {', '.join(config.languages)}; shorter than min_chars {config.min_chars} left out)"


def _write_training_file(path: Path, rows: list[tuple[str, str, str]], seed: int) -> None:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    with open(path, "w", encoding="utf-8") as handle:
        for label, lang, text in rows:
            handle.write(f"{label} {prepare(text, lang, 'crawlmill')}\n")


def roc_auc(scores: np.ndarray, good: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U, ties counted half); None without both classes."""
    from scipy.stats import rankdata

    n_good, n_bad = int(good.sum()), int((~good).sum())
    if not n_good or not n_bad:
        return None
    ranks = rankdata(scores)
    return float((ranks[good].sum() - n_good * (n_good + 1) / 2) / (n_good * n_bad))


def binary_report(scores: np.ndarray, good: np.ndarray, cut: float) -> dict[str, Any]:
    """ROC-AUC, F1 at `cut`, precision of the top 10% by score."""
    predicted = scores >= cut
    true_positive = int((predicted & good).sum())
    precision = true_positive / max(int(predicted.sum()), 1)
    recall = true_positive / max(int(good.sum()), 1)
    top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
    return {
        "documents": int(len(scores)), "good": int(good.sum()),
        "roc_auc": None if (auc := roc_auc(scores, good)) is None else round(auc, 4),
        "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
        "precision_top_10pct": round(float(good[top].mean()), 4),
    }  # fmt: skip


def topic_report(predicted: list[str | None], truth: list[str]) -> dict[str, Any]:
    """Accuracy and macro F1 (over the true labels) of a topic model's top labels."""
    f1s = []
    for label in sorted(set(truth)):
        true_positive = sum(p == t == label for p, t in zip(predicted, truth))
        precision = true_positive / max(sum(p == label for p in predicted), 1)
        recall = true_positive / max(sum(t == label for t in truth), 1)
        f1s.append(2 * precision * recall / max(precision + recall, 1e-12))
    accuracy = sum(p == t for p, t in zip(predicted, truth)) / max(len(truth), 1)
    return {"documents": len(truth), "accuracy": round(accuracy, 4), "macro_f1": round(float(np.mean(f1s)), 4)}


COLLAPSED = 0.01  # a spread of scores below this share of the score range: the model has barely learned


def collapsed(scorer: QualityModel, lang: str, heldout_scores: np.ndarray, trained: list[tuple[str, str, str]], config: ClassifierTrainConfig) -> str | None:
    """A warning when a language's scores all lie within a sliver of the score range: fastText at
    DCLM's 5 epochs and lr 0.1 on a few dozen documents stays at its start, 0.5 (measured: 56
    documents, every score in 0.500006-0.500013), where ROC-AUC can still read 1.0 on the ranks and
    F1 at 0.5 counts every document as good. The held-out scores, or the training documents' when
    fewer than two are held out."""
    scores, which = heldout_scores, "held-out"
    if len(scores) < 2:
        sample = trained[:1000]
        scores, which = scorer.score([r[2] for r in sample], [lang] * len(sample)), "training"
    if len(scores) < 2 or float(scores.max() - scores.min()) >= COLLAPSED * scorer.info.max_score:
        return None
    return (f"{lang}: the scores of its {len(scores):,} {which} documents all lie within {scores.min():.6f}-{scores.max():.6f}: the classifier has "
            f"barely learned ({config.epoch} epochs at lr {config.lr:g} on this little data), so its figures say little and no threshold can be set "
            "on such scores; train with more epochs and a higher learning rate (e.g. --epoch 25 --lr 0.5, as a few hundred documents need), or give more documents")  # fmt: skip


def _train_fasttext(data: str, model_file: str, params: dict[str, Any]) -> None:
    import fasttext

    fasttext.train_supervised(input=data, **params).save_model(model_file)


def train_in_fresh_process(data: str, model_file: str, params: dict[str, Any]) -> None:
    """fastText's supervised training, in a process of its own. Measured: in a process that has
    trained a model before, the same data and seed can give another model, or "Encountered NaN"
    (fastText reads memory it did not initialise, which a fresh process has zeroed); in a fresh
    process the model is the same bytes every time."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            pool.submit(_train_fasttext, data, model_file, params).result()
        except RuntimeError as error:
            if "NaN" in str(error):
                raise StageInputError(f"fastText training diverged (NaN) at lr {params['lr']}: lower the learning rate") from error
            raise


def _training_file(final: Any) -> Any:
    """Where fastText's training text goes: beside the model locally (removed after training); for
    a model folder at a URL, a local temporary file (never uploaded)."""
    if is_remote(as_path(final)):
        return contextlib.contextmanager(_local_temporary)(as_path(final).name)
    return atomic_path(final)


def _local_temporary(name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="crawlmill-train-") as folder:
        yield Path(folder) / name


def train_classifier(config: ClassifierTrainConfig, output: str) -> dict[str, Any]:
    """Train into `output` (a folder); returns the report (also written as train_report.json)."""
    started = time.perf_counter()
    folder = as_path(output)
    make_dirs(folder)
    try:
        rows, counts = collect(config)
    except (ValueError, FileNotFoundError) as exc:  # input a rerun cannot fix (missing, unreadable, one class): exit 2
        raise exc if isinstance(exc, StageInputError) else StageInputError(str(exc)) from None
    held = [r for r in rows if _heldout(r[2], config.heldout, config.seed)]
    train = [r for r in rows if not _heldout(r[2], config.heldout, config.seed)]
    groups = {lang: [r for r in train if r[1] == lang] for lang in config.languages} if config.per_language else {ALL: train}
    models = {}
    for key, subset in groups.items():
        if not subset:
            continue
        name = "model.bin" if key == ALL else f"model-{key}.bin"
        with _training_file(folder / f"{name}.train.txt") as data, atomic_path(folder / name) as model_file:
            _write_training_file(data, subset, config.seed)
            params = dict(
                lr=config.lr, dim=config.dim, ws=config.ws, epoch=config.epoch, minCount=config.min_count,
                wordNgrams=config.word_ngrams, bucket=config.bucket, thread=config.threads, seed=config.seed, verbose=0,
            )  # fmt: skip
            train_in_fresh_process(str(data), str(model_file), params)
        remove_file(folder / f"{name}.train.txt")
        models[key] = name
    if not models:
        dropped = ", ".join(f"{k.split(':', 1)[1]} {v:,}" for k, v in sorted(counts.items()) if k.startswith(("dropped:", "unreadable:")))
        raise StageInputError(f"no training documents in {', '.join(config.languages)} (read {counts['read']:,}; left out: {dropped or 'none'})")
    labels = sorted({r[0] for r in rows})
    topics = labels if counts["labels_are:topics"] else None
    grades = {label: float(label.removeprefix("__label__")) for label in labels} if config.labels and topics is None else None
    settings = json.loads(json.dumps(config.__dict__))
    info = ModelInfo(models=models, positive_label=POSITIVE, grades=grades, topics=topics, normalize="crawlmill", settings=settings)
    write_model_info(folder, info)
    scorer = QualityModel.load(folder)
    evaluation, warnings = {}, []
    for lang in config.languages:
        subset = [r for r in held if r[1] == lang]
        trained = [r for r in train if r[1] == lang]
        if not subset:
            if trained:  # trained, yet not measured: said, not left out of the summary without a word
                evaluation[lang] = {"documents": 0}
                warnings.append(f"{lang}: no document held out ({len(trained):,} trained), so no figures for {lang}: give more documents, or a larger --heldout (now {config.heldout:g})")
                if not topics and (warning := collapsed(scorer, lang, np.empty(0), trained, config)) is not None:
                    warnings.append(warning)
            continue
        if topics:
            evaluation[lang] = topic_report(scorer.top_labels([r[2] for r in subset], [lang] * len(subset))[0], [r[0] for r in subset])
            continue
        scores = scorer.score([r[2] for r in subset], [lang] * len(subset))
        if grades:
            good = np.array([grades[r[0]] >= config.grade_threshold for r in subset])
            evaluation[lang] = binary_report(scores, good, config.grade_threshold)
        else:
            evaluation[lang] = binary_report(scores, np.array([r[0] == POSITIVE for r in subset]), 0.5)
        if (warning := collapsed(scorer, lang, scores, trained, config)) is not None:
            warnings.append(warning)
    by_class = Counter(f"{r[1]}:{r[0].removeprefix('__label__')}" for r in train)
    report = {
        "models": models,
        "documents": {"read": counts["read"], "train": len(train), "heldout": len(held), "train_by_language_and_class": dict(sorted(by_class.items()))},
        "dropped": {k.removeprefix("dropped:"): v for k, v in sorted(counts.items()) if k.startswith(("dropped:", "unreadable:"))},
        "heldout": evaluation,
        **({"warnings": warnings} if warnings else {}),
        "seconds": round(time.perf_counter() - started, 2),
    }
    atomic_write_json(folder / REPORT, report)
    return report
