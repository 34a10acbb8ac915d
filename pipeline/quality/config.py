"""Quality stage config: the classifier to train (`crawlmill quality train`) and how documents are
scored and kept (`crawlmill quality DIR... --model MODEL_DIR`).

The run config's `quality:` section is a QualityConfig; its `train:` subsection (a
ClassifierTrainConfig) trains the model in the run, into the stage folder, when no `model` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from crawlmill.files import as_path

NORMALIZATIONS = ("crawlmill", "newlines")


DEFAULT_MAX_DOCUMENTS = 200_000


@dataclass
class ClassifierTrainConfig:
    # Reference (positive) and web (negative) text: `LANG=PATH`, PATH a pipeline folder, Parquet, JSONL
    # (text[, lang]) or plain text (one document a line); without LANG= a row's `lang` column decides.
    positive: list[str] = field(default_factory=list, metadata={"path": "spec"})
    negative: list[str] = field(default_factory=list, metadata={"path": "spec"})
    # Or labelled examples: JSONL with text, and grade (a number, e.g. an LLM annotator's 0-5) or label
    # (a topic name, for remix's topic classifier), and optionally lang.
    labels: str | None = field(default=None, metadata={"path": True})
    languages: list[str] = field(default_factory=lambda: ["en", "zh"])  # documents of other languages are left out
    per_language: bool = False  # one model per language, else one model for all languages
    heldout: float = 0.1  # share of the documents kept out of training, for the report
    balance: bool = True  # downsample the larger class of each language to the smaller one's size
    # Per class and language, after balancing; also what training holds in memory: each class keeps a
    # uniform sample (a reservoir) of at most this many while reading. None: every document (memory
    # then grows with the inputs; 0 says it on the command line). With `labels` (an annotator's file)
    # the default caps no class.
    max_documents: int | None = DEFAULT_MAX_DOCUMENTS
    min_chars: int = 50  # shorter documents carry too little to learn from
    grade_threshold: float = 3.0  # graded labels: the grade from which a document counts as good (FineWeb-Edu's 3)
    seed: int = 0
    # fastText.train_supervised, DCLM's settings; threads 1 makes training deterministic.
    lr: float = 0.1
    dim: int = 100
    ws: int = 5
    epoch: int = 5
    min_count: int = 1
    word_ngrams: int = 2
    bucket: int = 2_000_000
    threads: int = 1

    def __post_init__(self) -> None:
        if self.labels is None and not (self.positive and self.negative):
            raise ValueError("give positive and negative text (--positive/--negative), or --labels (graded or topic examples)")
        if self.labels is not None and (self.positive or self.negative):
            raise ValueError("give either --labels or --positive/--negative, not both")
        if not 0 < self.heldout < 1:
            raise ValueError(f"heldout {self.heldout}: must be in (0, 1)")
        for name in ("dim", "epoch", "min_count", "word_ngrams", "bucket", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: must be at least 1")
        if not 0 < self.lr < float("inf") or not self.languages:
            raise ValueError("lr must be a finite number > 0 and languages not empty")
        if self.max_documents is not None and self.max_documents < 0:
            raise ValueError(f"max_documents {self.max_documents}: at least 1, or 0 for every document")
        if self.max_documents == 0:  # what the command line can say for "every document" (None is "not given")
            self.max_documents = None

    def check(self) -> None:
        """The inputs, before anything runs: each exists, and each document's language is known and
        trained (inputs.py)."""
        from .inputs import check_training_inputs

        check_training_inputs(self)


@dataclass
class QualityConfig:
    inputs: list[str] = field(default_factory=list, metadata={"path": True})  # finished stage folders (e.g. dedup's)
    # A model folder of `crawlmill quality train`, or any fastText model file (.bin/.ftz; e.g. DCLM's).
    model: str | None = field(default=None, metadata={"path": True})
    train: ClassifierTrainConfig | None = None  # no model: train one in the run (into the stage folder)
    # A model file's label whose probability is the score (default __label__hq, DCLM's) and its text
    # preparation: newlines (the default, DCLM's) or crawlmill (ours). A model folder, and a model file
    # inside one, has its own (quality_model.json): a setting given against them is refused.
    positive_label: str | None = None
    normalize: str | None = None
    keep_top: float | None = None  # keep this share of each language's documents, best first
    threshold: float | None = None  # or: keep documents scoring at least this
    label_only: bool = False  # or: keep everything, only add the score and bucket (also when neither is given)
    buckets: int = 20  # quality_bucket: percentile buckets of the score, weighted by the documents' bytes
    batch_rows: int = 1024
    keep_dropped: bool = False  # also write dropped documents, with their reason and score, to _dropped/ (as filter)
    # Only the input parts of this dump (a run's `dumps:` sets it per dump: pipeline/dumps.py); its
    # buckets and keep rule are then that dump's.
    dump: str | None = None

    def __post_init__(self) -> None:
        chosen = sum(x is not None for x in (self.keep_top, self.threshold)) + bool(self.label_only)
        if chosen > 1:
            raise ValueError("give one of keep_top (--keep-top), threshold (--threshold) or label_only (--label-only)")
        if self.keep_top is not None and not 0 < self.keep_top <= 1:
            raise ValueError(f"keep_top {self.keep_top}: must be in (0, 1]")
        if self.threshold is not None and not 0 < self.threshold < float("inf"):
            raise ValueError(f"threshold {self.threshold}: must be a score above 0 (a probability in (0, 1); a graded model's expected grade)")
        if self.threshold is not None and self.model is None and self.train is not None and self.train.labels is None:
            check_threshold(self.threshold, 1.0, "the classifier trained in the run (positive vs negative text)")
        if self.normalize is not None and self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize {self.normalize!r}: choose one of {', '.join(NORMALIZATIONS)}")
        # each setting said apart: a message naming one the user never set (batch_rows) misleads
        if not 2 <= self.buckets <= 100:
            raise ValueError(f"buckets {self.buckets}: must be in [2, 100] (percentile buckets of the score per language)")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows {self.batch_rows}: must be at least 1")

    def for_dump(self, dump: str) -> "QualityConfig":
        """This section for one dump of a run's `dumps:` (pipeline/dumps.py)."""
        return replace(self, dump=dump)

    @property
    def mode(self) -> str:
        return "top" if self.keep_top is not None else "threshold" if self.threshold is not None else "label"

    def check(self) -> None:
        """The model (its settings against those given, the threshold against its score's range) and
        the files `train:` names, before any stage of a run starts."""
        if self.model is not None and not as_path(self.model).exists():
            raise FileNotFoundError(f"model: {self.model} does not exist (a `crawlmill quality train` folder or a fastText model file)")
        if self.model is not None:
            from .model import check_model_settings

            info = check_model_settings(self.model, self.positive_label, self.normalize)
            if self.threshold is not None and info.topics is None:
                check_threshold(self.threshold, info.max_score, self.model, graded=info.grades is not None)
        if self.train is not None:
            try:
                self.train.check()
            except ValueError as exc:  # named as in the run config
                raise ValueError("\n".join(f"train.{line}" for line in str(exc).splitlines())) from None


def check_threshold(threshold: float, max_score: float, model: str, graded: bool = False) -> None:
    """Refuse a threshold no score of the model can usefully be measured against: the score of a
    binary model is a probability in [0, 1], a graded model's the expected grade in [0, max grade]."""
    if 0 < threshold < max_score:
        return
    scale = f"an expected grade in [0, {max_score:g}]" if graded else "a probability in [0, 1]"
    hint = f" ({threshold:g} as a percentage is {threshold / 100:g})" if not graded and 1 < threshold <= 100 else ""
    raise ValueError(f"threshold {threshold:g}: the score of {model} is {scale}; give a threshold strictly between 0 and {max_score:g}{hint}, or keep a share of the documents with keep_top (--keep-top)")
