"""`crawlmill quality train`'s inputs, checked before anything runs (ClassifierTrainConfig.check: the
verb's options, and a run config's `quality.train` before its first stage starts):

- every input exists (`positive`/`negative`: `LANG=PATH` or `PATH`; `labels`);
- every document's language is known: `LANG=` is given, or the input says it per document (a
  pipeline folder or Parquet with a `lang` column, JSONL whose lines have a `lang` field: the first
  line of each file is looked at). Plain text (one document a line) says nothing, so it needs
  `LANG=`: read as language `und`, it would be left out of training without a word;
- a `LANG=` is one of the languages trained (`languages`, `--language`);
- a labels file names each line's language when more than one language is trained (its first line
  is looked at here; train.py refuses any line without one).

A mistake is a ValueError naming the option and the input, one line each.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from crawlmill.files import as_path, open_binary, read_schema

LANG_HINT = "name it with --language (languages: in a config), one flag per language trained"


def check_training_inputs(config: Any) -> None:
    problems = []
    for option in ("positive", "negative"):
        for item in getattr(config, option):
            problems += _check_spec(option, item, config.languages)
    if config.labels is not None:
        if not as_path(config.labels).is_file():
            problems.append(f"labels: {config.labels}: no such file")
        elif len(config.languages) > 1 and (line := _first_record(config.labels)) is not None and not line.get("lang"):
            problems.append(f"labels: {config.labels}: its first line has no `lang`: every line needs one when {lang_rule(config.languages)}")
    if problems:
        raise ValueError("\n".join(problems))


def lang_rule(languages: list[str]) -> str:
    return f"more than one language is trained ({', '.join(languages)}); or train one, e.g. --language {languages[0]}"


def _check_spec(option: str, item: str, languages: list[str]) -> list[str]:
    from crawlmill.tokenizer.corpus import InputSpec, expand_files

    spec = InputSpec.parse(item)
    where = f"{option}: {item}"
    if spec.lang is not None and spec.lang not in languages:
        return [f"{where}: {spec.lang} is not among the languages trained ({', '.join(languages)}); {LANG_HINT}"]
    if not spec.path.exists():
        return [f"{where}: no such file or folder"]
    if spec.lang is not None:
        return []
    files = expand_files(spec)
    if any(kind == "text" for kind, _ in files):
        text = next(path for kind, path in files if kind == "text")
        inside = "" if str(text) == str(spec.path) else f" ({text})"
        return [f"{where}: plain text{inside} says nothing of its documents' language: write LANG=PATH, e.g. {languages[0]}={item}"]
    for kind in ("parquet", "jsonl"):  # the first file of each kind: a folder's files are alike
        path = next((path for k, path in files if k == kind), None)
        if path is None:
            continue
        if kind == "parquet" and "lang" not in read_schema(path).names:
            return [f"{where}: {path} has no `lang` column: write LANG=PATH, e.g. {languages[0]}={item}"]
        if kind == "jsonl" and (record := _first_record(path)) is not None and not record.get("lang"):
            return [f"{where}: the lines of {path} have no `lang` field: write LANG=PATH, e.g. {languages[0]}={item}"]
    return []


def _first_record(path: Any) -> dict[str, Any] | None:
    """The first non-empty line of a JSONL file, when it is a JSON object (else None: the reader counts it)."""
    raw = open_binary(as_path(path))
    with gzip.open(raw, "rb") if str(path).endswith(".gz") else raw as handle:
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return None
                return record if isinstance(record, dict) else None
    return None
