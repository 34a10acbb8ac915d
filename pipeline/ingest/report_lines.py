"""The ingest stage's summary lines after its counts (stage.py's `report`): input files changed since
they were ingested, fields the document schema has no column for, other dumps' files left to their
own run, and what a mistyped field name looks like from the counts."""

from __future__ import annotations

from typing import Any

from . import changed as changed_files
from .config import IngestConfig


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


def report_lines(config: IngestConfig, stats: dict[str, Any], changed: list[changed_files.ChangedSource], other_dumps: dict[str, int]) -> list[str]:
    lines = []
    if changed:
        lines.append(changed_files.report_line(changed))
    counters = stats.get("counters", {})
    not_kept = {k.split(":", 1)[1]: n for k, n in counters.items() if k.startswith("field_not_kept:")}
    if not_kept:  # the schema is fixed: say which of the user's fields it has no column for
        named = ", ".join(f"{name} ({_rows(n)})" for name, n in sorted(not_kept.items()))
        lines.append(f"fields not kept (the document schema has no column for them; --keep-field NAME carries them in corpus_fields): {named}")
    if other_dumps:  # a dumps: run's files of a dump it does not list are ingested by none of its runs
        others = ", ".join(f"{dump} ({n:,})" for dump, n in sorted(other_dumps.items()))
        lines.append(f"input files of other dumps, left to their own dump's run (none for a dump not in dumps.ids): {others}")
    return lines + _field_mistakes(config, stats, counters, not_kept)


def _field_mistakes(config: IngestConfig, stats: dict[str, Any], counters: dict[str, int], not_kept: dict[str, int]) -> list[str]:
    """What a mistyped field name looks like from the counts: no row with the text field, kept
    fields or an id field that no row has."""
    lines = []
    no_text = (stats.get("dropped") or {}).get("no_text_field", 0)
    if no_text and not stats.get("kept"):
        seen = f" (fields the rows have: {', '.join(sorted(not_kept))})" if not_kept else ""
        lines.append(f"[yellow]warning:[/yellow] no row has the text field {config.text_field!r}: all {no_text:,} dropped as no_text_field{seen}; --text-field names it")
    absent = {k.split(":", 1)[1]: n for k, n in counters.items() if k.startswith("keep_field_absent:")}
    if absent:
        lines.append("kept fields absent from rows, those dropped too (--keep-field): " + ", ".join(f"{name} ({_rows(n)})" for name, n in sorted(absent.items())))
    if counters.get("id_field_absent"):
        lines.append(f"the id field {config.id_field!r} is absent from {counters['id_field_absent']:,} rows: their ids come from their line or row numbers (--id-field '' for none)")
    return lines
