"""Remix config: how documents get their group, and the mixture of groups training should see.

The run config's `remix:` section and `crawlmill remix`'s options (`--rule '*.wikipedia.org=encyclopedia'`
is `rules: [{pattern: '*.wikipedia.org', group: encyclopedia}]`, `--weights a=2,b=1` is
`mixture: {weights: {a: 2, b: 1}}`, `--allow-shortfall` is `mixture: {allow_shortfall: true}`).
The classifier is set in the section (or `--config FILE`) only. Example::

    remix:
      rules:                                     # first match wins
        - {pattern: "*.wikipedia.org", group: encyclopedia}   # wikipedia.org and every host under it
        - {pattern: "*/recipes/*", group: cooking}            # any host, a path glob
      default_group: other                       # documents no rule (or classifier) places
      classifier: {model: topics.bin, labels: {__label__code: code}, min_score: 0.6}
      mixture: {method: temperature, temperature: 0.5, max_epochs: 4}

Rule patterns are `HOST[/PATH]` globs (fnmatch: `*` any run of characters, `/` included; `?` one
character; `[ab]` a set), matched against the URL's lower-case host and, when the pattern has a
`/`, its path (the query is ignored; the path glob is case-sensitive). A host glob starting with
`*.` also matches the domain itself (`*.wikipedia.org` matches `wikipedia.org`); an empty host
glob (`/wiki/*`) or `*` matches any host. A document without a URL matches no rule.

Groups name output files and shard prefixes: lower-case letters, digits, `_` and `-`, starting with
a letter or digit. The groups of a config are its rules' groups, the classifier's groups and the
default group; `mixture.weights` may name only those.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from crawlmill.files import as_path

GROUP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
METHODS = ("weights", "temperature", "unimax")
UNITS = ("tokens", "characters")


def check_group(name: str, where: str) -> None:
    if not isinstance(name, str) or not GROUP_NAME.match(name):
        raise ValueError(
            f"{where}: group {name!r} is not a group name (lower-case letters, digits, _ and -, "
            "starting with a letter or digit, at most 64 characters; it names files and shard prefixes)"
        )


def _assignments(value: Any, what: str, convert: Callable[[str, str], Any]) -> Any:
    """`a=1,b=2` (a string, or a list of `KEY=VALUE` strings from repeated options) -> what
    `convert(key, value)` makes of each entry; mappings and lists of mappings pass through."""
    if isinstance(value, dict):
        return value
    entries = value.split(",") if isinstance(value, str) else value
    if not isinstance(entries, list):
        return value  # the type check names what was expected
    out = []
    for entry in entries:
        if not isinstance(entry, str):
            out.append(entry)
            continue
        key, sep, item = entry.strip().rpartition("=")
        if not sep or not key.strip() or not item.strip():
            raise ValueError(f"{entry!r}: expected {what}")
        out.append(convert(key.strip(), item.strip()))
    return out


def parse_rules(value: Any) -> Any:
    """`PATTERN=GROUP` entries (from `--rule`) or mappings {pattern, group}."""
    return _assignments(value, "PATTERN=GROUP, e.g. '*.wikipedia.org=encyclopedia'", lambda k, v: {"pattern": k, "group": v})


def parse_weights(value: Any) -> Any:
    """`GROUP=WEIGHT,...` (from `--weights`) or a mapping."""
    if isinstance(value, dict):
        return value
    pairs = _assignments(value, "GROUP=WEIGHT, e.g. code=2", lambda k, v: (k, v))
    out: dict[str, float] = {}
    for key, weight in pairs:
        if key in out:  # the last would win silently: news=1,news=2 is a typo, not a weight
            raise ValueError(f"--weights: group {key} given twice ({key}={out[key]:g} and {key}={weight}); give each group once")
        try:
            out[key] = float(weight)
        except ValueError:
            raise ValueError(f"weight {key}={weight}: not a number") from None
    return out


@dataclass
class Rule:
    pattern: str  # HOST[/PATH] glob (module docstring)
    group: str

    def __post_init__(self) -> None:
        if not self.pattern.strip() or any(c.isspace() for c in self.pattern):
            raise ValueError(f"rule pattern {self.pattern!r}: expected HOST[/PATH] without spaces")
        if "://" in self.pattern:
            raise ValueError(f"rule pattern {self.pattern!r}: give HOST[/PATH] (no scheme), e.g. '*.wikipedia.org/wiki/*'")
        check_group(self.group, f"rule {self.pattern!r}")


@dataclass
class ClassifierConfig:
    """A fastText topic classifier for documents no rule places (labels.py)."""

    # a `crawlmill quality train --labels topics.jsonl` folder or a fastText .bin/.ftz; None: no classifier
    model: str | None = field(default=None, metadata={"path": True})
    labels: dict[str, str] = field(default_factory=dict)  # model label (`__label__code` or `code`) -> group
    min_score: float = 0.5  # a top label below this probability leaves the document to the default group

    def __post_init__(self) -> None:
        if not 0 <= self.min_score <= 1:
            raise ValueError(f"classifier.min_score {self.min_score}: expected a probability in [0, 1]")
        if self.model is None and self.labels:
            raise ValueError("classifier.labels given without classifier.model")
        if self.model is not None and not self.labels:
            raise ValueError("classifier.model needs classifier.labels (model label -> group)")
        for label, group in self.labels.items():
            check_group(group, f"classifier.labels.{label}")


@dataclass
class MixtureConfig:
    """Target weights of the groups and the repeat cap (mixture.py has the arithmetic)."""

    # weights | temperature | unimax; default: weights when `weights` are given, temperature when
    # `temperature` is, else unimax.
    method: str | None = None
    weights: dict[str, float] = field(default_factory=dict, metadata={"parse": parse_weights})  # group -> weight (normalised)
    temperature: float | None = None  # tau of p ∝ n^tau: 1 keeps the corpus's shares, 0 is uniform
    max_epochs: float = 4.0  # repeat cap per group (Muennighoff et al. 2023: up to ~4 epochs are worth unique data)
    budget: float | None = None  # training tokens (characters with unit characters) planned; default: the corpus's size
    allow_shortfall: bool = False  # a target over the cap: cap it and give the rest to the others, instead of an error
    unit: str | None = None  # tokens | characters; default: tokens when `tokenizer` is given, else characters
    tokenizer: str | None = field(default=None, metadata={"path": True})  # Hugging Face tokenizer folder, for unit tokens

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"mixture.method {self.method!r}: choose one of {', '.join(METHODS)}")
        if self.weights and self.temperature is not None:
            raise ValueError("mixture: give weights or temperature, not both")
        method = self.resolved_method
        if method == "weights" and not self.weights:
            raise ValueError("mixture.method weights needs mixture.weights (group -> weight)")
        if method == "temperature" and self.temperature is None:
            raise ValueError("mixture.method temperature needs mixture.temperature (tau of p ∝ n^tau)")
        if method != "weights" and self.weights:
            raise ValueError(f"mixture.weights are for method weights, not {method} (set mixture.method: weights, or --method weights)")
        if method != "temperature" and self.temperature is not None:
            raise ValueError(f"mixture.temperature is for method temperature, not {method} (set mixture.method: temperature, or --method temperature)")
        for group, weight in self.weights.items():
            if not weight >= 0 or weight == float("inf"):
                raise ValueError(f"mixture.weights.{group} {weight}: expected a finite weight >= 0")
        if self.weights and sum(self.weights.values()) <= 0:
            raise ValueError("mixture.weights add up to 0")
        if self.temperature is not None and not 0 <= self.temperature <= 1:
            raise ValueError(f"mixture.temperature {self.temperature}: expected tau in [0, 1] (1: the corpus's shares, 0: uniform)")
        if not self.max_epochs >= 1:
            raise ValueError(f"mixture.max_epochs {self.max_epochs}: must be at least 1")
        if self.budget is not None and not self.budget > 0:
            raise ValueError(f"mixture.budget {self.budget}: must be > 0")
        if self.unit is not None and self.unit not in UNITS:
            raise ValueError(f"mixture.unit {self.unit!r}: choose tokens or characters")
        if self.unit == "tokens" and self.tokenizer is None:
            raise ValueError("mixture.unit tokens needs mixture.tokenizer (a tokenizer folder); or use characters")
        if self.unit == "characters" and self.tokenizer is not None:
            raise ValueError("mixture.tokenizer is for unit tokens, not characters")

    @property
    def resolved_method(self) -> str:
        return self.method or ("weights" if self.weights else "temperature" if self.temperature is not None else "unimax")

    @property
    def resolved_unit(self) -> str:
        return self.unit or ("tokens" if self.tokenizer else "characters")


@dataclass
class RemixConfig:
    inputs: list[str] = field(default_factory=list, metadata={"path": True})  # stage output folders (e.g. dedup's)
    rules: list[Rule] = field(default_factory=list, metadata={"parse": parse_rules})  # first match wins
    default_group: str = "other"  # documents no rule or classifier places
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    batch_rows: int = 1024  # documents read (and labelled, counted) at a time

    def __post_init__(self) -> None:
        self.rules = [Rule(**r) if isinstance(r, dict) else r for r in self.rules]
        check_group(self.default_group, "default_group")
        if self.batch_rows < 1:
            raise ValueError(f"batch_rows {self.batch_rows}: must be at least 1")
        unknown = sorted(set(self.mixture.weights) - set(self.groups))
        if unknown:
            raise ValueError(
                f"mixture.weights name group(s) {', '.join(unknown)} that no rule, classifier label or "
                f"default_group gives; the groups are {', '.join(self.groups)}"
            )

    @property
    def groups(self) -> list[str]:
        """Every group a document can get, sorted (the order of output parts and shards)."""
        return sorted({rule.group for rule in self.rules} | set(self.classifier.labels.values()) | {self.default_group})

    def check(self) -> None:
        """Files the config names must be usable: the classifier model, the tokenizer folder."""
        if self.classifier.model is not None and not as_path(self.classifier.model).exists():
            raise FileNotFoundError(f"classifier.model: {self.classifier.model} does not exist")
        if self.mixture.tokenizer is not None:
            from ..pack.tokenizer import inspect_tokenizer_dir

            inspect_tokenizer_dir(self.mixture.tokenizer)

