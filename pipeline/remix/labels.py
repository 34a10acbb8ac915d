"""Each document's `domain` and `group`: URL rules first, then the topic classifier, then the default.

- `domain`: the URL's registered domain (crawlmill.pipeline.urls.domain_of, public-suffix aware,
  offline; the same function pack counts domains with).
- `group`: the first rule whose pattern matches the URL (config.py documents the HOST[/PATH] glob
  semantics); else, with a classifier, the group of the model's top label when its probability is
  at least `min_score` and the label is mapped; else `default_group`. `how` says which of the
  three decided ("rule", "classifier", "default"); the stage counts them.

The classifier is a topic model of `crawlmill quality train --labels topics.jsonl` (a folder: its
text preparation, Chinese segmented into words, and one model per language if so trained) or any
fastText supervised model file (its input the document on one line, newlines as spaces, as fastText
reads lines). It scores through the quality stage's QualityModel, a batch at a time (batched numpy
inference where exact), one model per worker process.

    labeler = Labeler(RemixConfig(rules=[Rule("*.wikipedia.org", "encyclopedia")]))
    labeler.label_batch(["https://en.wikipedia.org/wiki/Tide"], ["..."], ["en"])   # [('wikipedia.org', 'encyclopedia', 'rule')]
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable

from ..quality.model import QualityModel
from ..stage import StageInputError
from ..urls import host_and_path, registered_domain
from .config import ClassifierConfig, RemixConfig, Rule

LABEL_PREFIX = "__label__"


def _glob(pattern: str) -> Callable[[str], Any]:
    return re.compile(fnmatch.translate(pattern), re.DOTALL).match


class UrlRule:
    """One compiled rule: a host glob (lower-cased) and an optional path glob."""

    def __init__(self, rule: Rule) -> None:
        host, slash, path = rule.pattern.partition("/")
        host = host.lower()
        self.group = rule.group
        self.any_host = host in ("", "*")
        self.host = _glob(host)
        self.apex = _glob(host[2:]) if host.startswith("*.") else None  # *.x.org also matches x.org
        self.path = _glob("/" + path) if slash else None

    def matches(self, host: str, path: str) -> bool:
        if not host:
            return False
        if not (self.any_host or self.host(host) or (self.apex is not None and self.apex(host))):
            return False
        return self.path is None or bool(self.path(path))


_MODELS: dict[str, QualityModel] = {}


def load_model(path: str) -> QualityModel:
    """One loaded model per worker process (a Ray worker runs many part tasks)."""
    if path not in _MODELS:
        _MODELS.clear()
        _MODELS[path] = QualityModel.load(path, positive_label=None)
    return _MODELS[path]


class TopicClassifier:
    def __init__(self, config: ClassifierConfig) -> None:
        self.model = load_model(str(config.model))
        self.min_score = config.min_score
        self.groups = {LABEL_PREFIX + label.removeprefix(LABEL_PREFIX): group for label, group in config.labels.items()}
        known = set(self.model.models[next(iter(self.model.models))].get_labels())
        missing = sorted(label for label in self.groups if label not in known)
        if missing:
            raise StageInputError(
                f"classifier.labels: {config.model} has no label(s) {', '.join(missing)}; its labels are {', '.join(sorted(known))}"
            )

    def groups_of(self, texts: list[str], langs: list[str | None]) -> list[str | None]:
        """Each document's group: its top label's, when mapped and at least min_score; else None."""
        labels, scores = self.model.top_labels(texts, langs)
        return [self.groups.get(label) if label is not None and score >= self.min_score else None for label, score in zip(labels, scores.tolist())]


class Labeler:
    """Labels documents by the config's rules, classifier and default group (module docstring)."""

    def __init__(self, config: RemixConfig) -> None:
        self.rules = [UrlRule(rule) for rule in config.rules]
        self.classifier = TopicClassifier(config.classifier) if config.classifier.model else None
        self.default = config.default_group

    def label_batch(self, urls: list[str | None], texts: list[str], langs: list[str | None]) -> list[tuple[str, str, str]]:
        """(domain, group, how) of each document; how is rule, classifier or default."""
        out: list[tuple[str, str, str] | None] = []
        unplaced = []
        for i, url in enumerate(urls):
            host, path = host_and_path(url)
            domain = registered_domain(host)
            rule = next((r for r in self.rules if r.matches(host, path)), None)
            out.append((domain, rule.group, "rule") if rule else None)
            if rule is None:
                unplaced.append((i, domain))
        groups = self.classifier.groups_of([texts[i] for i, _ in unplaced], [langs[i] for i, _ in unplaced]) if self.classifier and unplaced else [None] * len(unplaced)
        for (i, domain), group in zip(unplaced, groups):
            out[i] = (domain, group, "classifier") if group is not None else (domain, self.default, "default")
        return out  # type: ignore[return-value]

    def label(self, url: str | None, text: str, lang: str | None = None) -> tuple[str, str, str]:
        """One document's (domain, group, how)."""
        return self.label_batch([url], [text], [lang])[0]
