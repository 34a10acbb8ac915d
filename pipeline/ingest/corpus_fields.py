"""Which fields of your own corpus's rows ingest reads, which it carries with each document (the
`corpus_fields` column, `keep_fields`), and which it counts as not kept: corpus_rows.py asks
`FieldSelection` for each JSONL object or Parquet row.

A field is named by its path: `title`, or `source.name` (field `name` of object `source`). The text,
id, URL and date fields are read into their columns; `keep_fields` are carried as one JSON object
(keys sorted: the same bytes on every run), a named nested field under its path (`"source.name"`),
and with `*` every field not read into a column, whole (an object of which only `meta.url` is read
keeps its other fields). Everything else is counted per name as not kept, also the other fields of
an object read in part (`metadata.title` beside `--url-field metadata.url`), so that nothing a
row holds disappears unnamed.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import orjson

from .config import IngestConfig

MISSING = object()


def field_value(record: dict[str, Any], path: str) -> Any:
    """record[path], or the nested field `a.b` (object a's field b); MISSING when there is none."""
    if path in record:
        return record[path]
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


class FieldSelection:
    def __init__(self, config: IngestConfig, count: Callable[[str], None]) -> None:
        self.count = count  # the part's counters: corpus_fields_utf8_repaired, corpus_fields_too_deep
        self.text_path = config.text_field
        read = [f for f in (config.text_field, config.id_field, config.url_field, config.date_field) if f]
        self.read = set(read)  # read into the document's columns
        self.keep_all = "*" in config.keep_fields
        self.keep = [f for f in config.keep_fields if f != "*"]
        self.named = {*read, *self.keep}  # paths read or kept whole
        self.top = {p.split(".")[0] for p in self.named}  # top-level fields read or kept, whole or in part
        # Objects read in part: their other fields are counted as not kept (unless kept whole).
        prefixes = {".".join(p.split(".")[:i]) for p in self.named for i in range(1, p.count(".") + 1)}
        self.partial = sorted(p for p in prefixes if not self._kept_whole(p))
        self.prefixes = prefixes

    def _kept_whole(self, path: str) -> bool:
        return any(path == whole or path.startswith(whole + ".") for whole in self.keep)

    def parquet_columns(self, names: list[str]) -> list[str]:
        """The columns of a Parquet file to read: those holding a named field (all with `*`)."""
        if self.keep_all:
            return list(names)
        return sorted({p if p in names else p.split(".")[0] for p in self.named} & set(names))

    def not_kept(self, record: dict[str, Any]) -> list[str]:
        """The names of the record's fields that nothing reads or keeps."""
        if self.keep_all:
            return []
        names = [key for key in record if key not in self.top and key not in self.named]
        for prefix in self.partial:
            value = field_value(record, prefix)
            if isinstance(value, dict):
                names += [f"{prefix}.{key}" for key in value if f"{prefix}.{key}" not in self.named and f"{prefix}.{key}" not in self.prefixes]
        return names

    def carried(self, record: dict[str, Any]) -> tuple[str | None, list[str]]:
        """(the kept fields as one JSON object, None when the row has none of them; the named
        keep_fields the row lacks). Counted: a bytes value whose invalid UTF-8 was replaced, kept
        fields nested deeper than JSON can be written here (~1000 levels)."""
        values = {k: v for k, v in record.items() if k not in self.read} if self.keep_all else {}
        absent = []
        for path in self.keep:
            value = field_value(record, path)
            if value is MISSING:
                absent.append(path)
            elif not (self.keep_all and path.split(".")[0] in values):  # `*` has it already, in its object
                values[path] = value
        values = _without_path(values, self.text_path)  # an object kept whole holds no second copy of the text
        if not values:
            return None, absent
        try:
            return orjson.dumps(values, default=self._plain, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode("utf-8"), absent
        except TypeError:  # an integer past 64 bits (JSONL read exactly), or nesting past orjson's 255 levels
            pass
        try:  # the stdlib writes it, as compactly
            return json.dumps(values, default=self._plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False), absent
        except RecursionError:
            self.count("corpus_fields_too_deep")
            return None, absent

    def _plain(self, value: Any) -> Any:
        """What JSON has no type for."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                self.count("corpus_fields_utf8_repaired")
                return bytes(value).decode("utf-8", errors="replace")
        if hasattr(value, "isoformat"):  # a timestamp orjson does not know (pandas' for ns), a time
            return value.isoformat()
        return str(value)  # a decimal: its digits


def _without_path(values: dict[str, Any], path: str) -> dict[str, Any]:
    """`values` without the nested field `path` (`content.body` of a kept `content`), copying only
    the objects on its way."""
    head, _, rest = path.partition(".")
    if head not in values or not rest or not isinstance(values[head], dict):
        return values
    return {**values, head: _without_path(values[head], rest) if "." in rest else {k: v for k, v in values[head].items() if k != rest}}
