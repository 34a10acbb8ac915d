"""The ingest stage: Common Crawl WARC/WET files -> text documents (one output part per file); your
own JSONL, Parquet and plain-text files too (which is which: corpus_files.py; their rows: corpus_rows.py).

WET `conversion` records become documents as they are; WARC `response` records go through HTTP
parsing, charset decoding and main-text extraction. Every other record is dropped with a named
reason (`record_request`, `record_metadata`, `warcinfo`, `http_error`, `not_html`, ...). Damage
never stops the job and never disappears: a truncated or corrupt gzip stream, a record cut
short, a file that is not WARC, an empty file, an oversized record each become a quarantine
entry with the file, the offset and the error, and the records before it are kept. A file that
cannot be opened at all (missing, forbidden) is no damage a rerun would meet again: its task
fails, so the stage ends without _SUCCESS and a rerun retries only it (`unreadable_sources:
quarantine` makes it an `unreadable_source` entry instead, for a file gone for good). After a
corrupt gzip member, or a sound one that holds no record FastWARC can parse, reading resumes at
the next valid member (one per record in Common Crawl's files), so only the damaged member's
records are lost, and its entry names the bytes skipped; in an uncompressed WARC, at the next
record header (read again from there). Each record is counted once: a record cut
by the file's end and the truncation are one entry (a file ending just before its last record's
gzip check bytes: that record read, `gzip_end_missing` counted); a record whose Content-Length
reads on into the records after it is kept with its true block where its gzip member shows it, and
each record it read whole is its own `swallowed_record` entry (overrun.py).

Run it: `crawlmill ingest samples/crawl-data --output out/ingest`, or on a corpus of your own
`crawlmill ingest 'data/mine/*.jsonl' --dump my-forum-2024 --output out/mine` (`crawlmill ingest --help`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from contextlib import ExitStack
from typing import Any

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from crawlmill.files import AnyPath

from ..parts import PartSink
from ..schema import document_id
from ..runner import StageContext
from ..stage import PartStage, PartTask, SourceReadError, StageResult, run_parts
from . import changed as changed_files
from .config import IngestConfig
from .corpus_files import PARQUET, TEXT, corpus_kind
from .corpus_rows import CorpusFile
from .gunzip import GunzipReader
from .html_text import HtmlExtractor, decode_html, normalize_text
from .http_payload import HttpPayloadError, parse_http_response
from .overrun import Overrun, embedded_records, find_overrun
from .report_lines import report_lines
from .sources import UNREADABLE, display_name, dump_from_path, open_source, resolve_named_sources, unreadable_error

HTML_TYPES = ("text/html", "application/xhtml+xml")


def _warc_fields(payload: bytes) -> dict[str, str]:
    fields = {}
    for line in payload.decode("utf-8", errors="replace").splitlines():
        name, colon, value = line.partition(":")
        if colon:
            fields[name.strip().lower()] = value.strip()
    return fields


class IngestStage(PartStage):
    name = "ingest"
    # A folder search never takes the Parquet parts of a stage output folder (corpus_files.py).
    output_inside_input = True

    def __init__(self, config: IngestConfig) -> None:
        super().__init__(config)
        c = config
        # Each file with its name under its input's folder, from which a corpus file's document ids are made.
        self.other_dumps: Counter = Counter()  # a dump's run: the input files of other dumps, by dump
        self.names = resolve_named_sources(c.inputs, c.dump, c.base_url, c.format, c.max_files, c.only_dump, self.other_dumps)  # InputError if none
        self.files = list(self.names)
        self._extractor: HtmlExtractor | None = None
        self.changed: list[changed_files.ChangedSource] = []  # input files replaced since their parts were made

    def tasks(self) -> list[PartTask]:
        return [PartTask(i, source) for i, source in enumerate(self.files)]

    def fingerprint(self) -> dict[str, Any]:
        c = self.config
        return {
            "extractor": c.extractor,
            "max_record_bytes": c.max_record_bytes,
            "max_text_chars": c.max_text_chars,
            "max_bad_utf8_share": c.max_bad_utf8_share,
            "dump": c.default_dump,
        } | self._corpus_fingerprint()

    def _corpus_fingerprint(self) -> dict[str, Any]:
        """The settings of corpus files' rows, and the names their ids are made from; only in a run
        that has such files, so that the record of a WARC/WET-only folder made before stays its own."""
        c = self.config
        kinds = {source: kind for source in self.files if (kind := corpus_kind(source))}
        if not kinds:
            return {}
        names = json.dumps([self.names[source] for source in sorted(kinds)], ensure_ascii=False)
        corpus: dict[str, Any] = {"names": hashlib.sha256(names.encode("utf-8")).hexdigest()[:16]}
        if set(kinds.values()) - {TEXT}:
            corpus |= {"text_field": c.text_field, "id_field": c.id_field, "url_field": c.url_field, "date_field": c.date_field}
            if c.keep_fields:  # only when given: a record made before the option stays its own
                corpus["keep_fields"] = c.keep_fields
        if TEXT in kinds.values():
            corpus["txt_document"] = c.txt_document
        return {"corpus": corpus}

    def check_done(self, output: AnyPath) -> None:
        """A finished folder whose input files changed since (same name, another size) is made
        unfinished again, those files' parts to be made again (changed.py)."""
        self.changed = changed_files.changed_sources(output, self.files)
        changed_files.redo_changed(output, self.changed)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        found = changed_files.changed_sources(ctx.output, self.files)  # an unfinished folder's (a finished one's: check_done)
        changed_files.redo_changed(ctx.output, found)
        self.changed = self.changed or found
        return run_parts(ctx, self)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_extractor": None}

    @property
    def extractor(self) -> HtmlExtractor:
        if self._extractor is None:
            self._extractor = HtmlExtractor(self.config.extractor)
        return self._extractor

    def process(self, task: PartTask, sink: PartSink) -> None:
        kind = corpus_kind(task.source)
        with ExitStack() as stack:
            try:
                raw = stack.enter_context(open_source(task.source, random_access=kind == PARQUET))
            except UNREADABLE as exc:  # missing, forbidden, a folder: no content to judge
                if self.config.unreadable_sources != "quarantine":
                    raise unreadable_error(task.source, exc) from None  # fails the task: no _SUCCESS, a rerun retries it
                sink.quarantine("unreadable_source", f"{type(exc).__name__}: {exc}", offset=0)
                return
            sink.stats.source_bytes = changed_files.source_size(task.source)
            if kind is None:
                self._process_stream(task, GunzipReader(raw), sink)
                return
            dump = dump_from_path(task.source) or self.config.default_dump
            reader = CorpusFile(self.config, kind, self.names[task.source], display_name(task.source), dump, sink)
            if kind == PARQUET:
                reader.read_parquet(raw)
            else:
                reader.read_lines(GunzipReader(raw))  # .gz or not, by its bytes; damage recorded, never hidden

    def report(self, result: StageResult) -> list[str]:
        return super().report(result) + report_lines(self.config, result.stats or {}, self.changed, self.other_dumps)

    def _process_stream(self, task: PartTask, stream: GunzipReader, sink: PartSink) -> None:
        path_dump = dump_from_path(task.source)
        file_info = {"dump": path_dump or self.config.default_dump, "path_dump": path_dump, "warc_file": display_name(task.source)}
        records, last_pos, resumed = 0, 0, -1
        while not stream.empty:
            error = "corrupt_gzip"
            try:
                for record in ArchiveIterator(stream, parse_http=False, stream_detect=False):
                    records += 1
                    last_pos = record.stream_pos
                    sink.count("warc_bytes", record.content_length)
                    self._record(record, stream, file_info, sink)
            except SourceReadError:
                raise
            except OSError as exc:  # FastWARC's parse errors
                if stream.is_gzip and not stream.damaged:
                    stream.drain_member()  # bytes that are no WARC may come from a member zlib has not yet found corrupt
                if not stream.damaged and stream.is_gzip and stream.member_in:
                    # A sound member FastWARC cannot parse (a mangled header, a wrong Content-Length):
                    # as a corrupt member, one entry, and on at the next member that starts a record.
                    stream.give_up_member(str(exc))
                    error = "invalid_warc"
                elif not stream.damaged:  # an uncompressed WARC: on at the next record header, if one follows
                    offset = stream.record_offset(last_pos)
                    where = f"after the record at offset {offset}" if records else "at the start"
                    resumed = stream.resync_plain(max(last_pos, resumed) + 1)  # always forward
                    if resumed is not None:
                        rest = f"; reading resumed at the next WARC record header, at offset {resumed}"
                    elif stream.size is not None:
                        rest = "; no WARC record header follows: the rest of the file was not read"
                    else:
                        rest = "; the rest of the file was not read: its source cannot be read again from an offset"
                    sink.quarantine("invalid_warc", f"{exc} {where} ({records} records read before){rest}", offset=offset)
                    if resumed is not None:
                        continue
            # A damaged gzip member: one entry for it, then on at the next valid member if there is one.
            if not (stream.corrupt and self._corrupt_member(stream, records, last_pos, file_info, sink, error)):
                break
        if stream.truncated and not file_info.get("cut_record"):
            if records and file_info.get("read_whole") == last_pos and stream.member_out and stream.member_out[-1] == last_pos:
                # The last member held only the last record, read whole: the file ends before its gzip
                # check bytes, and no record is lost; counted, not an entry that no record stands for.
                sink.count("gzip_end_missing")
            else:
                sink.quarantine("truncated_gzip", f"{stream.damaged}; {records} records read before", offset=stream.member_in[-1] if stream.member_in else 0)
        elif stream.empty:
            sink.quarantine("empty_file", "the file has no bytes", offset=0)
        elif records == 0 and not sink.stats.quarantined:
            sink.quarantine("invalid_warc", "no WARC record found in the file", offset=0)

    def _corrupt_member(
        self, stream: GunzipReader, records: int, last_pos: int, file_info: dict[str, Any], sink: PartSink, error: str = "corrupt_gzip"
    ) -> bool:
        """Quarantine a damaged gzip member (with the record cut short in it, if one was) as one entry
        naming the bytes lost, and resume at the next gzip member that holds a WARC record (Common
        Crawl's files are one member per record). True when reading goes on. A member whose record
        was counted already gets no second entry: counted once."""
        start = stream.damage_offset
        # The member's own record counted already: quarantined (too large to read), or read (a
        # Content-Length too small leaves bytes FastWARC cannot parse after it in its member).
        counted_at = file_info.pop("quarantined_member", None), last_pos if error == "invalid_warc" and records else None
        counted = bool(stream.member_out) and stream.member_out[-1] in counted_at and stream.member_in[-1] == start
        cut = file_info.pop("corrupt_record", None)  # (record id, how much of its block came)
        detail = stream.corrupt + (f"; {cut[1]}" if cut else "") + f"; {records - (cut is not None)} records read before"
        resumed = None
        if stream.member_out and last_pos > stream.member_out[-1]:
            # A record started inside this member, after its first: a gzip of a whole WARC file (or of
            # many records per member), whose next member, if any, is not a record boundary to resume at.
            detail += "; the file is not one gzip member per record, so reading cannot resume after the damage"
        else:
            resumed = stream.resync()
            if resumed is not None:
                detail += f"; skipped bytes {start}..{resumed} ({resumed - start} bytes): reading resumed at the next valid gzip member, at offset {resumed}"
            else:
                detail += f"; the rest of the file (bytes {start}..{stream.size}, {stream.size - start} bytes) could not be read: no valid gzip member follows the damage"
        if counted:
            sink.count("damaged_member_of_counted_record")
        else:
            sink.quarantine(error, detail, offset=start, record_id=cut[0] if cut else None)
        return resumed is not None

    @staticmethod
    def _quarantine_swallowed(record: WarcRecord, overrun: Overrun, stream: GunzipReader, offset: int, sink: PartSink) -> None:
        """One entry per record read whole into the block of a record whose Content-Length is too large."""
        for member, record_id in zip(overrun.swallowed, overrun.swallowed_ids):
            detail = f"read into the block of the record at offset {offset} before it, whose Content-Length {record.content_length} runs past its own gzip member"
            sink.quarantine("swallowed_record", detail, offset=stream.member_in[member], record_id=record_id)

    def _record(self, record: WarcRecord, stream: GunzipReader, file_info: dict[str, Any], sink: PartSink) -> None:
        offset = stream.record_offset(record.stream_pos)
        kind = record.record_type
        record_id = record.record_id
        if record.content_length > self.config.max_record_bytes:
            detail = f"{kind} record of {record.content_length} bytes exceeds max_record_bytes={self.config.max_record_bytes}"
            sink.quarantine("record_too_large", detail, offset=offset, record_id=record_id)
            file_info["quarantined_member"] = record.stream_pos  # its member's damage, if any, is this entry's
            return
        if not record_id or "Content-Length" not in record.headers:
            # Mandatory headers missing: the header block was cut off or mangled.
            if stream.truncated:  # cut off by the stream's end: one entry for the record and the truncation
                sink.quarantine("truncated_gzip", f"{kind} record's header block is cut off; {stream.damaged}", offset=offset)
                file_info["cut_record"] = True
                return
            sink.quarantine("invalid_record", f"{kind} record without WARC-Record-ID or Content-Length", offset=offset)
            return
        # Every block is read, even of records we drop, so that a cut-off record is always seen.
        block = record.reader.read()
        stream.finish_member(record.stream_pos)
        if stream.member_failed(record.stream_pos) or (stream.corrupt and len(block) < record.content_length):
            # Its gzip member is corrupt: the member's entry (_corrupt_member) names this record.
            how = f"has {len(block)} of its {record.content_length} bytes" if len(block) < record.content_length else "came whole but fails the gzip check"
            file_info["corrupt_record"] = (record_id, f"its {kind} record {record_id} {how}")
            return
        length, overrun = record.content_length, None
        if stream.is_gzip and len(stream.member_out) > 1:
            at_end = stream.total_out if len(block) < length and not stream.truncated else None
            overrun = find_overrun(record, block, stream.member_out, at_end)
            if overrun is not None:
                self._quarantine_swallowed(record, overrun, stream, offset, sink)
                if overrun.block_length < 0:
                    detail = f"{kind} record's Content-Length {length} runs past the end of its gzip member, where its block's true end was not found"
                    sink.quarantine("invalid_record", detail, offset=offset, record_id=record_id)
                    return
                sink.count("content_length_past_member")  # kept: its member holds the record whole
                block = block[: overrun.block_length]
                length = len(block)
        if len(block) == length:
            file_info["read_whole"] = record.stream_pos  # the last record read whole (a truncation after it: _process_stream)
        if len(block) < length:
            detail = f"{kind} record block has {len(block)} of its {length} bytes"
            if stream.truncated:
                detail += f"; {stream.damaged}"
            error = "truncated_gzip" if stream.truncated else "truncated_record"
            inside = embedded_records(block) if overrun is None else []
            if inside:
                detail += f"; {len(inside)} more WARC records inside it (its Content-Length is too large): each its own entry"
            sink.quarantine(error, detail, offset=offset, record_id=record_id)
            for position, inner_id in inside:
                where = f"at {position} bytes into the block of the record at offset {offset}"
                sink.quarantine("swallowed_record", f"read into that record's block ({where}), whose Content-Length {length} is too large", offset=offset, record_id=inner_id)
            file_info["cut_record"] = True  # the stream's truncation is this record's; not counted twice
            return
        if kind == WarcRecordType.warcinfo:
            part_of = _warc_fields(block).get("ispartof", "")
            if part_of.startswith("CC-MAIN-"):
                if file_info["path_dump"] is None:
                    file_info["dump"] = part_of
                elif part_of != file_info["path_dump"]:
                    # The path's dump stays: it is the one a dump's run took the file for (only_dump),
                    # and the one its part is read back by (parts_of_dump).
                    sink.count("warcinfo_dump_differs_from_path")
            sink.drop("warcinfo")
            return
        if kind not in (WarcRecordType.response, WarcRecordType.conversion):
            sink.drop(f"record_{kind}")
            return
        headers = record.headers
        if headers.get("WARC-Truncated"):  # the crawler cut the payload (Common Crawl: at 1 MiB): its text is partial
            sink.count("payload_truncated_by_crawler")
        row = {
            "url": headers.get("WARC-Target-URI"),
            "dump": file_info["dump"],
            "warc_record_id": record_id,
            "warc_file": file_info["warc_file"],
            "warc_offset": offset,
            "date": headers.get("WARC-Date"),
            "lang": None,
            "lang_score": None,
        }
        if kind == WarcRecordType.conversion:
            self._conversion(block, headers, row, sink)
        else:
            self._response(block, headers, row, sink)

    def _conversion(self, block: bytes, headers: Any, row: dict[str, Any], sink: PartSink) -> None:
        try:
            text, bad = block.decode("utf-8"), 0
        except UnicodeDecodeError:
            text = block.decode("utf-8", errors="replace")
            bad = text.count("\ufffd") - block.decode("utf-8", errors="ignore").count("\ufffd")
        if bad:
            if bad > self.config.max_bad_utf8_share * max(len(text), 1):
                sink.quarantine("bad_utf8", f"{bad} invalid UTF-8 sequences in {len(block)} bytes", row["warc_offset"], row["warc_record_id"])
                return
            sink.count("utf8_repaired_docs")
        source_id = headers.get("WARC-Refers-To") or row["warc_record_id"]
        row.update(source_format="wet", content_type=(headers.get("Content-Type") or "text/plain"), charset="utf-8")
        self._emit(normalize_text(text), source_id, row, sink)

    def _response(self, block: bytes, headers: Any, row: dict[str, Any], sink: PartSink) -> None:
        try:
            http = parse_http_response(block, self.config.max_record_bytes)
        except HttpPayloadError as exc:
            sink.quarantine("bad_http", str(exc), row["warc_offset"], row["warc_record_id"])
            return
        if not 200 <= http.status < 300:
            reason = "http_redirect" if 300 <= http.status < 400 else "http_error" if http.status >= 400 else "http_status_other"
            sink.drop(reason)
            return
        if not http.body.strip():  # nothing to read, whatever its type says
            sink.drop("empty_text")
            return
        mime = http.mime_type or (headers.get("WARC-Identified-Payload-Type") or "").lower() or None
        if mime is None and b"<html" in http.body[:2048].lower():
            mime = "text/html"
        if mime not in HTML_TYPES and mime != "text/plain":
            sink.drop("not_html")
            return
        decoded = decode_html(http.body, http.charset)
        sink.count(f"charset_{decoded.how}")
        bad = decoded.text.count("\ufffd")
        if bad > self.config.max_bad_utf8_share * max(len(decoded.text), 1):  # bytes no charset reads: not text
            sink.quarantine("bad_encoding", f"{bad} undecodable sequences in {len(http.body)} bytes ({decoded.charset}, {decoded.how})", row["warc_offset"], row["warc_record_id"])
            return
        whole_before = self.extractor.whole_pages
        text = self.extractor.extract(decoded.text) if mime in HTML_TYPES else normalize_text(decoded.text)
        if self.extractor.whole_pages != whole_before:  # nested too deep for main-content extraction (html_text.MAX_DEPTH)
            sink.count("html_too_deep_extracted_whole")
        row.update(source_format="warc", content_type=mime, charset=decoded.charset)
        self._emit(text, row["warc_record_id"], row, sink)

    def _emit(self, text: str, source_id: str, row: dict[str, Any], sink: PartSink) -> None:
        if not text:
            sink.drop("empty_text")
        elif len(text) > self.config.max_text_chars:
            sink.drop("text_too_large")
        else:
            if row["dump"] is None:  # no warcinfo isPartOf, no crawl-data/ path, no --dump: said, not guessed
                sink.count("no_dump")
            row.update(id=document_id(source_id), text=text)
            sink.keep(row)
