"""Each document's `domain` and `group`: URL rules first, then the topic classifier, then the default.

- `domain`: the URL's registered domain (crawlmill.pipeline.urls.domain_of, public-suffix aware,
  offline; the same function pack counts domains with).
- `group`: the first rule whose pattern matches the URL (config.py documents the HOST[/PATH] glob
  semantics); else, with a classifier, the group of the model's top label when its probability is
  at least `min_score` and the label is mapped; else `default_group`. `how` says which of the
  three decided ("rule", "classifier", "default"); the stage counts them.

The classifier is any fastText supervised model (`fasttext.train_supervised` with topic labels),
scored with the `fasttext` module directly, one model per worker process. Its input is the
document's text on one line (newlines become spaces), as fastText reads lines; a model trained on
other preprocessing (e.g. Chinese segmented into words) scores worse, so once the quality stage's
scorer lands (pipeline/quality/) this should score through it, with its preprocessing.

    labeler = Labeler(RemixConfig(rules=[Rule("*.wikipedia.org", "encyclopedia")]))
    labeler.label("https://en.wikipedia.org/wiki/Tide", "...")   # ('wikipedia.org', 'encyclopedia', 'rule')
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Callable

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


_MODELS: dict[str, Any] = {}


def load_fasttext(path: str) -> Any:
    """One loaded model per worker process (a Ray worker runs many part tasks)."""
    if path not in _MODELS:
        import fasttext

        _MODELS.clear()
        _MODELS[path] = fasttext.load_model(path)
    return _MODELS[path]


class TopicClassifier:
    def __init__(self, config: ClassifierConfig) -> None:
        self.model = load_fasttext(str(config.model))
        self.min_score = config.min_score
        self.groups = {LABEL_PREFIX + label.removeprefix(LABEL_PREFIX): group for label, group in config.labels.items()}
        known = set(self.model.get_labels())
        missing = sorted(label for label in self.groups if label not in known)
        if missing:
            raise StageInputError(
                f"classifier.labels: {config.model} has no label(s) {', '.join(missing)}; its labels are {', '.join(sorted(known))}"
            )

    def group(self, text: str) -> str | None:
        labels, scores = self.model.predict(text.replace("\n", " "), k=1)
        if not labels or float(scores[0]) < self.min_score:
            return None
        return self.groups.get(labels[0])


class Labeler:
    """Labels documents by the config's rules, classifier and default group (module docstring)."""

    def __init__(self, config: RemixConfig) -> None:
        self.rules = [UrlRule(rule) for rule in config.rules]
        self.classifier = TopicClassifier(config.classifier) if config.classifier.model else None
        self.default = config.default_group

    def label(self, url: str | None, text: str) -> tuple[str, str, str]:
        """(domain, group, how) of one document; how is rule, classifier or default."""
        host, path = host_and_path(url)
        domain = registered_domain(host)
        for rule in self.rules:
            if rule.matches(host, path):
                return domain, rule.group, "rule"
        if self.classifier is not None:
            group = self.classifier.group(text)
            if group is not None:
                return domain, group, "classifier"
        return domain, self.default, "default"
