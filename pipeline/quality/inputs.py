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

Besides what the tokenizer's corpus reader takes (`expand_files`: a stage folder, Parquet, JSONL,
text, a folder of them), an input may be a glob (`'out/filter/_dropped/*.parquet'`, matched as
ingest matches its globs) or a stage folder's `_dropped/` (filter's or quality's `--keep-dropped`:
the documents a stage dropped, web text for `--negative`), read with its finished parent folder's
parts: `training_files`.

A mistake is a ValueError naming the option and the input, one line each.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from crawlmill.files import as_path, open_binary, read_schema

from ..parts import DROPPED_DIR, input_parts

GLOB_CHARS = set("*?[")  # as ingest's (pipeline/ingest/sources.py)
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


def is_pattern(spec: Any) -> bool:
    """A glob to expand, not a path (a file whose name holds `*` is the file)."""
    return bool(GLOB_CHARS & set(str(spec.path))) and not spec.path.exists()


def is_dropped_folder(spec: Any) -> bool:
    return bool(spec.path.name == DROPPED_DIR and spec.path.is_dir())


def training_files(spec: Any) -> list[tuple[str, Any]]:
    """(kind, file) of one input: expand_files', or a glob's matches (ingest's expand_inputs, each
    file as expand_files reads it), or a `_dropped/` folder's parts. Those carry no markers of their
    own (a stray or killed run's file would look the same): the parts of the finished parent
    folder's markers are taken, an unfinished parent refused as input_parts refuses it."""
    from crawlmill.tokenizer.corpus import InputSpec, expand_files

    if is_pattern(spec):
        from ..ingest.sources import expand_inputs

        return [pair for file in expand_inputs([str(spec.path)]) for pair in expand_files(InputSpec(as_path(file), spec.lang))]
    if is_dropped_folder(spec):
        dropped = (spec.path / as_path(part).name for part in input_parts(spec.path.parent))
        return [("parquet", path) for path in dropped if path.exists()]
    return expand_files(spec)


def _check_spec(option: str, item: str, languages: list[str]) -> list[str]:
    from crawlmill.tokenizer.corpus import InputSpec

    spec = InputSpec.parse(item)
    where = f"{option}: {item}"
    if spec.lang is not None and spec.lang not in languages:
        return [f"{where}: {spec.lang} is not among the languages trained ({', '.join(languages)}); {LANG_HINT}"]
    if not is_pattern(spec) and not spec.path.exists():
        return [f"{where}: no such file or folder"]
    if spec.lang is not None and not is_pattern(spec) and not is_dropped_folder(spec):
        return []
    try:
        files = training_files(spec)
    except (FileNotFoundError, ValueError) as exc:  # a pattern matching nothing, an unfinished parent of _dropped/
        return [f"{where}: {str(exc).removeprefix(f'{spec.path}: ')}"]
    if not files and is_dropped_folder(spec):
        return [f"{where}: no dropped documents in it (its stage dropped none)"]
    if spec.lang is not None:
        return []
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
