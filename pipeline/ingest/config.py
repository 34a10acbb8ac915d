"""Ingest config: where the WARC/WET files (or your own JSONL/Parquet/text corpus) come from and how
they become text.

The run config's `ingest:` section and `crawlmill ingest`'s options, field for field
(`--max-record-mb` sets `max_record_mb`, `--text-field` sets `text_field`, the INPUT arguments set
`inputs`); `unreadable_sources` is set in the section (or `crawlmill ingest --config FILE`) only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

EXTRACTORS = ("resiliparse", "trafilatura")
FILE_FORMATS = ("wet", "warc")
# Common Crawl's third kind of file: request/response metadata as JSON, no page text to make documents of.
WAT_NO_TEXT = "WAT files hold metadata, no page text"
WAT_REFUSED = f"{WAT_NO_TEXT}: choose wet or warc"
CC_BASE_URL = "https://data.commoncrawl.org/"
DUMP_ID = re.compile(r"^CC-MAIN-\d{4}-\d{2}$")
# `dump` of INPUT files may also be a dataset's own label (my-forum-2024): a column value, never a path.
DATASET_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TXT_DOCUMENTS = ("line", "paragraph")  # plain text: one document a line, or a blank-line-separated paragraph
# What becomes of an input file that cannot be opened (missing, forbidden, a folder): see the field.
UNREADABLE_SOURCES = ("fail", "quarantine")


DEFAULT_ID_FIELD = "id"


@dataclass
class IngestConfig:
    # Files, folders (searched recursively), globs and fsspec URLs of WARC/WET files or of your own
    # JSONL/Parquet/.txt corpus (corpus_files.py: which is which); none: the files of `dump`'s listing.
    inputs: list[str] = field(default_factory=list, metadata={"path": True})
    # With no inputs: ingest this dump's listed files; with inputs: the dump id of files that name none,
    # or a dataset label of your own (my-forum-2024) for JSONL/Parquet/text inputs (corpus_rows.py).
    dump: str | None = None
    max_files: int | None = None  # with a dump listing: only its first N files
    # With inputs: only the files whose path names this dump (crawl-data/<dump>/...); a per-dump run's.
    only_dump: str | None = None
    base_url: str = CC_BASE_URL  # with a dump listing: where crawl-data/ lives
    format: str = "wet"  # with a dump listing: wet (text) or warc (HTML, extracted here); not wat (no text)
    extractor: str = "resiliparse"  # HTML extractor for WARC; or trafilatura (datatrove's extractor class)
    max_record_mb: float = 16  # larger records (a JSONL or .txt line or paragraph too) are quarantined unread
    max_text_chars: int = 1_000_000  # longer extracted texts are dropped as text_too_large
    max_bad_utf8_share: float = 0.01  # a text (WET, a page after decoding, a JSONL/.txt line) with more U+FFFD replacements is quarantined
    # An input file that cannot be opened (missing: a 404, a typo'd key, no such bucket; forbidden;
    # a folder): `fail` fails its task, so the stage ends without _SUCCESS and a rerun retries only
    # it (once the file is back or the credentials are right); `quarantine` records it as an
    # `unreadable_source` entry instead and the stage finishes without its pages (a file gone for
    # good). Not in the fingerprint: a file that is read gives the same part either way, so a dump
    # whose run failed on such a file is finished by rerunning into the same folder with `quarantine`.
    unreadable_sources: str = "fail"
    # Your own corpus (JSONL/Parquet rows; `a.b` is field b of object a): the document's text, the
    # row's own id (kept in warc_record_id and made part of the document id; null or "": the line or
    # row number), its URL and date (null or "": none).
    text_field: str = "text"
    id_field: str | None = DEFAULT_ID_FIELD
    url_field: str | None = "url"
    date_field: str | None = "date"
    txt_document: str = "line"  # plain text (.txt): one document a `line`, or a `paragraph` (lines up to a blank line)
    # Fields of your own corpus's rows carried with each document, as a JSON object in its
    # `corpus_fields` column (`title`, `source.name`; "*": every field not read as text, id, URL or
    # date). A name may also list several, comma-separated. Others are counted as field_not_kept.
    keep_fields: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.only_dump is not None and not DUMP_ID.match(self.only_dump):
            raise ValueError(f"only_dump {self.only_dump!r} is not a Common Crawl dump id like CC-MAIN-2024-22")
        if self.dump is not None and not DUMP_ID.match(self.dump):
            if not self.inputs or self.dump.upper().startswith("CC-MAIN"):  # a listing's dump; a mistyped id is no label
                raise ValueError(f"dump {self.dump!r} is not a Common Crawl dump id like CC-MAIN-2024-22 (a dataset label like my-forum-2024 names the documents of INPUT files)")
            if not DATASET_LABEL.match(self.dump):
                raise ValueError(f"dump {self.dump!r}: a dataset label is letters, digits, '.', '_' and '-', at most 100, starting with a letter or digit (e.g. my-forum-2024)")
        for name in ("id_field", "url_field", "date_field"):
            if getattr(self, name) == "":
                setattr(self, name, None)  # "" on the command line: no such field
        if not self.text_field:
            raise ValueError("text_field: name the field that holds the text (default text)")
        if isinstance(self.keep_fields, str):
            self.keep_fields = [self.keep_fields]
        names = [name.strip() for given in self.keep_fields for name in str(given).split(",")]
        if any(not name for name in names):
            raise ValueError(f"keep_fields {self.keep_fields!r}: an empty field name")
        self.keep_fields = sorted(set(names))
        if self.text_field in self.keep_fields:
            raise ValueError(f"keep_fields: {self.text_field!r} is the text field: the document's text is its `text` column already")
        if self.txt_document not in TXT_DOCUMENTS:
            raise ValueError(f"txt_document {self.txt_document!r}: choose one of {', '.join(TXT_DOCUMENTS)}")
        if self.extractor not in EXTRACTORS:
            raise ValueError(f"extractor {self.extractor!r}: choose one of {', '.join(EXTRACTORS)}")
        if self.format == "wat":
            raise ValueError(f"format 'wat': {WAT_REFUSED}")
        if self.format not in FILE_FORMATS:
            raise ValueError(f"format {self.format!r}: choose one of {', '.join(FILE_FORMATS)}")
        # Below 2**63 bytes: max_record_bytes is an int (inf or 1e308 MB would overflow it when ingest runs).
        if not 0 < self.max_record_mb * (1 << 20) < 2**63 or self.max_text_chars <= 0:
            raise ValueError(f"max_record_mb {self.max_record_mb} and max_text_chars {self.max_text_chars} must be positive and finite")
        if not 0 <= self.max_bad_utf8_share <= 1:
            raise ValueError(f"max_bad_utf8_share {self.max_bad_utf8_share}: must be in [0, 1]")
        if self.unreadable_sources not in UNREADABLE_SOURCES:
            raise ValueError(f"unreadable_sources {self.unreadable_sources!r}: choose one of {', '.join(UNREADABLE_SOURCES)}")
        if self.max_files is not None and self.max_files < 1:
            raise ValueError(f"max_files {self.max_files}: must be at least 1")

    def for_dump(self, dump: str) -> "IngestConfig":
        """This section for one dump of a run's `dumps:` (pipeline/dumps.py): the dump's own files of
        the inputs, or with no inputs the dump's listing under `base_url`."""
        return replace(self, dump=dump, only_dump=dump if self.inputs else None)

    @property
    def max_record_bytes(self) -> int:
        return int(self.max_record_mb * (1 << 20))

    @property
    def default_dump(self) -> str | None:
        """The dump id of input files whose warcinfo and path name none (with explicit inputs)."""
        return self.dump if self.inputs else None
