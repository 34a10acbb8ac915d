"""A quality model: one fastText classifier (or one per language) and how to read its score.

A model folder (`crawlmill quality train`) holds `quality_model.json` and its `.bin` files; any
single fastText model file works too (DCLM's released `__label__hq` classifier, for one), scored as
the probability of `positive_label` with the `newlines` text preparation unless told otherwise. A
model file of a folder (`models/quality/model.bin`) is read with the settings of the
quality_model.json beside it, so it scores exactly as its folder does (a per-language folder's
`model-en.bin`: its language only).

The score of a document: the probability of the positive label (binary models), or the expected
grade Σ p(grade) · grade (models trained on graded labels, e.g. an LLM annotator's 0-5, as
FineWeb-Edu); documents in a language the model has no classifier for get no score (NaN).
A topic model (trained on topic labels) has no score: `top_labels` gives each document's most
probable label and its probability (remix places documents in groups with it).

    model = QualityModel.load("out/quality-model")
    scores = model.score(["some text", "一些文本"], ["en", "zh"])
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from crawlmill.files import as_path
from crawlmill.local_cache import local_copy

from .text import prepare

MODEL_FILE = "quality_model.json"
FORMAT = "crawlmill-quality/1"
ALL = "*"  # the key of a model that serves every language
FROM_MODEL = ""  # QualityModel.load's positive_label: the model's own (its quality_model.json), else __label__hq


@dataclass
class ModelInfo:
    models: dict[str, str]  # language (or "*") -> model file, relative to the folder
    positive_label: str = "__label__hq"
    grades: dict[str, float] | None = None  # graded models: label -> grade
    topics: list[str] | None = None  # topic models: their labels (no quality score)
    normalize: str = "crawlmill"
    format: str = FORMAT
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def max_score(self) -> float:
        return max(self.grades.values()) if self.grades else 1.0


def write_model_info(folder: Any, info: ModelInfo) -> None:
    from crawlmill.files import atomic_write_json

    atomic_write_json(folder / MODEL_FILE, asdict(info))


DEFAULT_LABEL, DEFAULT_NORMALIZE = "__label__hq", "newlines"  # a lone model file's (DCLM's)


def _info_file(path: Any) -> ModelInfo:
    try:
        return ModelInfo(**json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a {FORMAT} settings file ({exc})") from None


def settings_file(path: Any) -> Any:
    """The quality_model.json that holds a model's settings: a folder's, or the one beside a model
    file when it names that file; None for a lone model file (or no such path)."""
    path = as_path(path)
    if path.is_dir():
        return path / MODEL_FILE
    beside = path.parent / MODEL_FILE
    if path.is_file() and beside.is_file() and path.name in _info_file(beside).models.values():
        return beside
    return None


def contradictions(info: ModelInfo, where: Any, positive_label: str | None, normalize: str | None) -> list[str]:
    """Settings given for a model that disagree with its quality_model.json (`where`), as lines."""
    lines = []
    if positive_label is not None and (info.grades is not None or info.topics is not None):
        kind = "graded (the score is the expected grade)" if info.grades is not None else "a topic model"
        lines.append(f"positive_label {positive_label!r}: {where} is {kind}; it has no positive label")
    elif positive_label is not None and positive_label != info.positive_label:
        lines.append(f"positive_label {positive_label!r}: {where} says {info.positive_label!r}")
    if normalize is not None and normalize != info.normalize:
        lines.append(f"normalize {normalize!r}: {where} says {info.normalize!r} (the text preparation the model was trained with)")
    return lines


def read_model_info(path: Any, positive_label: str | None = None, normalize: str | None = None) -> ModelInfo:
    """A model's settings without loading it: a folder's quality_model.json; for a model file, the
    quality_model.json beside it when it names the file (only that file's entries: the same scores
    as the folder), else `positive_label` and `normalize` (None: __label__hq, newlines). A setting
    given for a model file that contradicts the quality_model.json beside it is refused
    (ValueError); a folder's settings are its own (the stage refuses settings given against them)."""
    path = as_path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{path}: no {MODEL_FILE} (a `crawlmill quality train` folder, or give a fastText model file)")
        return _info_file(path / MODEL_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    beside = settings_file(path)
    if beside is None:
        return ModelInfo(models={ALL: path.name}, positive_label=positive_label or DEFAULT_LABEL, normalize=normalize or DEFAULT_NORMALIZE)
    info = _info_file(beside)
    if problems := contradictions(info, beside, positive_label, normalize):
        raise ValueError("\n".join([*problems, f"{path} belongs to that model folder and is scored with its settings: leave those options out (or score the folder {path.parent})"]))
    info.models = {key: name for key, name in info.models.items() if name == path.name}
    return info


def check_model_settings(path: Any, positive_label: str | None, normalize: str | None) -> ModelInfo:
    """read_model_info, and for a folder too: settings given that contradict its quality_model.json
    are refused (ValueError, a line each), rather than ignored."""
    info = read_model_info(path, positive_label, normalize)
    if as_path(path).is_dir() and (problems := contradictions(info, as_path(path) / MODEL_FILE, positive_label, normalize)):
        raise ValueError("\n".join([*problems, "a model folder is scored with its own settings: leave those options out"]))
    return info


def model_digest(path: Any) -> dict[str, str]:
    """sha256 of a model's files (a folder's models and settings, or the one file): its identity in fingerprints."""
    from crawlmill.files import list_files, sha256_file

    path = as_path(path)
    beside = None if path.is_dir() else settings_file(path)  # its settings are part of the file's identity
    files = list_files(path, "*.bin") + list_files(path, "*.json") if path.is_dir() else [path, *([beside] if beside else [])]
    return {f.name: sha256_file(f) for f in files if f.name != "train_report.json"}


class QualityModel:
    def __init__(self, info: ModelInfo, models: dict[str, Any]) -> None:
        from .fastinfer import FastInference, unsupported_reason

        self.info, self.models = info, models
        # Batched numpy inference where it is exact (fastinfer.py), fastText's own predict elsewhere.
        self.fast = {key: FastInference(m) for key, m in models.items() if unsupported_reason(m) is None}

    @classmethod
    def load(cls, path: Any, positive_label: str | None = FROM_MODEL, normalize: str | None = None) -> "QualityModel":
        """A model folder (its settings from quality_model.json) or a fastText file (read_model_info);
        `positive_label` FROM_MODEL (or normalize None): the model's own, else the file default;
        `positive_label` None: any labels (the model is read with `top_labels` only)."""
        import fasttext

        info = read_model_info(path, positive_label or None, normalize)  # where it is (a URL file's settings lie beside it)
        path = local_copy(path)  # a URL's model: copied once per machine (the cache is shared by its workers)
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        files = {lang: folder / name for lang, name in info.models.items()}
        models = {lang: fasttext.load_model(str(file)) for lang, file in files.items()}
        labels = set(models[next(iter(models))].get_labels())
        if positive_label is not None and info.grades is None and info.topics is None and info.positive_label not in labels:
            raise ValueError(f"{path}: the model has no label {info.positive_label!r} (it has {', '.join(sorted(labels))}); set positive_label")
        return cls(info, models)

    def key_for(self, lang: str | None) -> str | None:
        """The model that scores a language ("*" serves all), or None."""
        return lang if lang in self.models else (ALL if ALL in self.models else None)

    def _probabilities(self, texts: list[str], langs: list[str | None]) -> Iterator[tuple[list[int], list[str], np.ndarray]]:
        """Per model: (the rows it scores, its labels, their probabilities as fastText reports them)."""
        keys = [self.key_for(lang) for lang in langs]
        for key in sorted(set(keys) - {None}):
            rows = [i for i, k in enumerate(keys) if k == key]
            lines = [prepare(texts[i], langs[i], self.info.normalize) for i in rows]
            if key in self.fast:
                yield rows, self.fast[key].labels, np.minimum(self.fast[key].probabilities(lines), 1.0)
                continue
            labels = self.models[key].get_labels()
            matrix = np.zeros((len(rows), len(labels)))
            predicted_labels, predicted = self.models[key].predict(lines, k=-1)
            column = {label: j for j, label in enumerate(labels)}
            for r, (doc_labels, doc_probs) in enumerate(zip(predicted_labels, predicted)):
                matrix[r, [column[label] for label in doc_labels]] = np.minimum(doc_probs, 1.0)
            yield rows, labels, matrix

    def score(self, texts: list[str], langs: list[str | None]) -> np.ndarray:
        """Scores (float32; NaN where the document's language has no model), in input order."""
        if self.info.topics is not None:
            raise ValueError("a topic model gives labels (top_labels), not a quality score")
        scores = np.full(len(texts), np.nan, dtype=np.float32)
        for rows, labels, probabilities in self._probabilities(texts, langs):
            scores[rows] = self._read_matrix(labels, probabilities)
        return scores

    def top_labels(self, texts: list[str], langs: list[str | None]) -> tuple[list[str | None], np.ndarray]:
        """Each document's most probable label (None where its language has no model) and its probability."""
        top: list[str | None] = [None] * len(texts)
        probability = np.zeros(len(texts), dtype=np.float32)
        for rows, labels, matrix in self._probabilities(texts, langs):
            best = matrix.argmax(axis=1)
            for r, i in enumerate(rows):
                top[i], probability[i] = labels[best[r]], matrix[r, best[r]]
        return top, probability

    def _read_matrix(self, labels: list[str], probabilities: np.ndarray) -> np.ndarray:
        """Each row's score: P(positive label), or the expected grade Σ p(label) · grade."""
        if self.info.grades is None:
            at = [j for j, label in enumerate(labels) if label == self.info.positive_label]
            return probabilities[:, at[0]] if at else np.zeros(len(probabilities))
        return probabilities @ np.array([self.info.grades.get(label, 0.0) for label in labels])
