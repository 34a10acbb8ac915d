"""JSONL, Parquet and plain-text files of your own corpus become document rows, every line or row
accounted for (pipeline/ingest/corpus_rows.py). One part at a time through run_part (no Ray); the
stage on Ray, filter and dedup after it are tests/pipeline/ingest/test_corpus_pipeline.py."""

import datetime
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id
from crawlmill.pipeline.stage import run_part

from tests.conftest import SAMPLES

PROSE = "The tide went out slowly, leaving small pools among the rocks."


def ingest(inputs: list[Path | str], out: Path, **config) -> tuple[list[dict], list[dict], list[dict]]:
    """(each part's counts, the kept rows, the quarantine entries) of ingesting `inputs`."""
    stage = IngestStage(IngestConfig(inputs=[str(i) for i in inputs], **config))
    stats = [run_part(stage, task, str(out)) for task in stage.tasks()]
    rows = pq.read_table(sorted(str(p) for p in out.glob("part-*.parquet"))).to_pylist()
    quarantine = pq.read_table(out / "_quarantine").to_pylist() if (out / "_quarantine").exists() else []
    return stats, rows, quarantine


def balanced(stats: dict) -> bool:
    return stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


def test_every_jsonl_line_is_kept_dropped_or_quarantined_with_its_line(tmp_path):
    lines = [
        json.dumps({"id": "a", "text": PROSE, "url": "https://x.example/a", "date": "2024-01-02", "title": "kept"}).encode(),
        b"<p>not JSON</p>",                                    # 2 invalid_json
        b"[1, 2, 3]",                                          # 3 not_an_object
        b"",                                                   # 4 blank_line
        b'{"text": 17}',                                       # 5 text_not_string
        b'{"body": "no text field"}',                          # 6 no_text_field
        b'{"text": null}',                                     # 7 no_text_field
        b'{"text": "  \\n\\t "}',                              # 8 empty_text
        b'{"text": "x", "id": [1]}',                           # 9 bad_id
        b'{"text": "lone \\ud800 surrogate"}',                 # 10 invalid_json
        b'{"text": "\xff\xfe\xfd mostly bad"}',                # 11 bad_utf8
        json.dumps({"text": "a" * 200 + " caf\xe9"}, ensure_ascii=False).encode("utf-8").replace("é".encode(), b"\xe9"),  # 12 one bad byte in 200: repaired
        b'{"text": NaN}',                                      # 13 invalid_json
        json.dumps({"text": "y" * 251, "id": 7}).encode(),     # 14 text_too_large (max_text_chars 250)
        json.dumps({"text": PROSE, "id": 7, "url": 5, "meta": {"u": "https://x.example/m"}}).encode(),  # 15 kept; url not a string
    ]  # fmt: skip
    path = tmp_path / "in/posts.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines))  # a byte-order mark, and no newline after the last line
    (stats,), rows, quarantine = ingest([path], tmp_path / "out", max_text_chars=250, dump="my-forum")
    assert stats["in"] == 15 and balanced(stats)
    assert stats["dropped"] == {"blank_line": 1, "no_text_field": 2, "empty_text": 1, "text_too_large": 1}
    assert {(q["offset"], q["error"]) for q in quarantine} == {
        (2, "invalid_json"), (3, "not_an_object"), (5, "text_not_string"), (9, "bad_id"), (10, "invalid_json"), (11, "bad_utf8"), (13, "invalid_json")}  # fmt: skip
    assert all(q["source"] == str(path) and q["detail"].startswith(f"line {q['offset']}: ") for q in quarantine)
    by_line = {q["offset"]: q["detail"] for q in quarantine}
    assert by_line[2].endswith(" at column 1: '<p>not JSON</p>'")  # orjson's message, its position in the line
    assert "holds an integer, not a string" in by_line[5] and "holds a list ('[1]'): an id is a string or an integer" in by_line[9]
    assert stats["counters"] == {"utf8_repaired_docs": 1, "url_not_string": 1, "field_not_kept:title": 1, "field_not_kept:meta": 1, "field_not_kept:body": 1}
    assert [r["warc_offset"] for r in rows] == [1, 12, 15] and stats["kept"] == 3
    first, repaired, last = rows
    assert first == {
        "id": document_id("my-forum\x1fin/posts.jsonl\x1fid=a"), "text": PROSE, "url": "https://x.example/a", "dump": "my-forum",
        "warc_record_id": "a", "warc_file": str(path), "warc_offset": 1, "date": "2024-01-02", "source_format": "jsonl",
        "content_type": "text/plain", "charset": "utf-8", "lang": None, "lang_score": None, "corpus_fields": None,
    }  # fmt: skip
    assert repaired["text"].endswith("caf\ufffd") and repaired["warc_record_id"] is None and repaired["id"] == document_id("my-forum\x1fin/posts.jsonl\x1fline=12")
    assert last["warc_record_id"] == "7" and last["url"] is None
    assert set(first) == set(DOCUMENT_SCHEMA.names)


def test_a_nested_url_field_and_no_id_field(tmp_path):
    path = tmp_path / "d/x.jsonl.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(json.dumps({"body": PROSE, "id": "z", "meta": {"url": "https://x.example/n"}}).encode() + b"\n", mtime=0))
    (stats,), rows, _ = ingest([path], tmp_path / "out", text_field="body", url_field="meta.url", id_field="")
    assert stats["kept"] == 1 and rows[0]["url"] == "https://x.example/n" and rows[0]["warc_record_id"] is None
    assert rows[0]["id"] == document_id("\x1fd/x.jsonl.gz\x1fline=1") and stats["counters"] == {"field_not_kept:id": 1, "no_dump": 1}


def test_named_fields_travel_in_corpus_fields_and_the_others_are_counted(tmp_path):
    records = [
        {"text": PROSE, "id": 1, "title": "Tides", "license": "CC-BY-4.0", "source": {"name": "coast", "page": 3}, "extra": 1},
        {"text": PROSE + " Again.", "id": 2, "title": None, "source": {"page": 4}},  # a null is kept as null
        {"text": PROSE + " Third.", "id": 3, "extra": [1, 2]},  # none of the named fields
    ]  # fmt: skip
    path = tmp_path / "in/papers.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps(r) for r in records))
    (stats,), rows, _ = ingest([path], tmp_path / "out", keep_fields=["title, license", "source.name"])
    assert [json.loads(r["corpus_fields"]) if r["corpus_fields"] else None for r in rows] == [
        {"license": "CC-BY-4.0", "source.name": "coast", "title": "Tides"}, {"title": None}, None]  # fmt: skip
    assert rows[0]["corpus_fields"] == '{"license":"CC-BY-4.0","source.name":"coast","title":"Tides"}'  # keys sorted: same bytes on every run
    # `source` is kept in part: its other field is counted by path, as are the rows without a named field.
    assert stats["counters"] == {"field_not_kept:extra": 2, "field_not_kept:source.page": 2, "keep_field_absent:license": 2,
                                 "keep_field_absent:source.name": 2, "keep_field_absent:title": 1, "no_dump": 3} and balanced(stats)  # fmt: skip
    # "*": every field not read as the text, id, URL or date, whole; nothing counted as not kept.
    (stats,), rows, _ = ingest([path], tmp_path / "all", keep_fields=["*"], dump="papers")  # a label: no no_dump count
    assert json.loads(rows[0]["corpus_fields"]) == {"extra": 1, "license": "CC-BY-4.0", "source": {"name": "coast", "page": 3}, "title": "Tides"}
    assert json.loads(rows[2]["corpus_fields"]) == {"extra": [1, 2]} and not stats.get("counters")


def test_parquet_columns_in_corpus_fields(tmp_path):
    import decimal

    table = pa.table({
        "text": [PROSE, PROSE + " Two."], "id": ["a", "b"], "title": ["One", "Two"],
        "published": pa.array([datetime.datetime(2024, 5, 6, 7, 8, 9)] * 2, pa.timestamp("s")),
        "raw": pa.array([b"caf\xc3\xa9", b"\xff"], pa.binary()), "price": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(5, 2)),
        "meta": [{"url": "https://x.example/a", "lang": "en"}, {"url": "https://x.example/b", "lang": "fr"}],
    })  # fmt: skip
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    (stats,), rows, _ = ingest([path], tmp_path / "out", url_field="meta.url", keep_fields=["*"])
    assert rows[0]["url"] == "https://x.example/a" and stats["counters"] == {"corpus_fields_utf8_repaired": 1, "no_dump": 2}  # b"\xff"; no --dump
    assert json.loads(rows[0]["corpus_fields"]) == {
        "meta": {"lang": "en", "url": "https://x.example/a"}, "price": "1.50", "published": "2024-05-06T07:08:09", "raw": "café", "title": "One"}  # fmt: skip
    assert json.loads(rows[1]["corpus_fields"])["raw"] == "\ufffd" and json.loads(rows[1]["corpus_fields"])["price"] is None
    (stats,), rows, _ = ingest([path], tmp_path / "title", keep_fields=["title"])
    assert [r["corpus_fields"] for r in rows] == ['{"title":"One"}', '{"title":"Two"}']
    assert stats["counters"] == {**{f"field_not_kept:{name}": 2 for name in ("meta", "price", "published", "raw")}, "no_dump": 2}


def test_keep_fields_settings():
    assert IngestConfig(keep_fields=["title, license", "title"]).keep_fields == ["license", "title"]
    assert IngestConfig(keep_fields="a").keep_fields == ["a"]  # a YAML string for a one-name list
    with pytest.raises(ValueError, match="an empty field name"):
        IngestConfig(keep_fields=["title,"])
    plain, kept = (IngestStage(IngestConfig(inputs=[str(SAMPLES / "own-corpus/forum.jsonl")], keep_fields=k)) for k in ([], ["title"]))
    assert "keep_fields" not in plain.fingerprint()["corpus"] and kept.fingerprint()["corpus"]["keep_fields"] == ["title"]


def test_ids_are_stable_across_reruns_and_distinct_across_files_with_the_same_row_ids(tmp_path):
    """Two datasets numbering their rows 0..3 (samples/own-corpus): no id in common; the same again on a rerun."""
    (tmp_path / "in").mkdir()
    for name in ("forum.jsonl", "notes.jsonl"):
        (tmp_path / "in" / name).write_bytes((SAMPLES / "own-corpus" / name).read_bytes())
    stats, rows, quarantine = ingest([tmp_path / "in"], tmp_path / "a")
    assert [s["kept"] for s in stats] == [4, 4] and not quarantine
    assert [r["warc_record_id"] for r in rows] == ["0", "1", "2", "3"] * 2 and len({r["id"] for r in rows}) == 8
    again = ingest([tmp_path / "in/*.jsonl"], tmp_path / "b")[1]  # the same files named by a glob: the same ids
    assert [r["id"] for r in again] == [r["id"] for r in rows]
    # Determinism: the same input gives byte-identical parts.
    for part in ("part-00000.parquet", "part-00001.parquet"):
        assert (tmp_path / "a" / part).read_bytes() == (tmp_path / "b" / part).read_bytes()
    # A dataset label is part of the id: the same files under another label are other documents.
    relabelled = ingest([tmp_path / "in"], tmp_path / "c", dump="notes-2024")[1]
    assert not {r["id"] for r in relabelled} & {r["id"] for r in rows} and {r["dump"] for r in relabelled} == {"notes-2024"}


def test_plain_text_one_document_a_line_or_a_paragraph(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"First line.\r\nSecond line.\n\n   \nThird \xff\xfe\xfd\xfc line.\n\nPara two a.\nPara two b.")
    (stats,), rows, quarantine = ingest([path], tmp_path / "lines")
    assert stats["in"] == 8 and balanced(stats) and stats["dropped"] == {"blank_line": 3}
    assert [(r["warc_offset"], r["text"]) for r in rows] == [(1, "First line."), (2, "Second line."), (7, "Para two a."), (8, "Para two b.")]
    assert [(q["offset"], q["error"]) for q in quarantine] == [(5, "bad_utf8")] and quarantine[0]["detail"].startswith("line 5: 4 invalid UTF-8 sequences")
    assert {r["source_format"] for r in rows} == {"text"} and {r["warc_record_id"] for r in rows} == {None}
    (stats,), rows, quarantine = ingest([path], tmp_path / "paragraphs", txt_document="paragraph")
    assert stats["in"] == 3 and balanced(stats) and not stats["dropped"] and len(quarantine) == 1
    assert [(r["warc_offset"], r["text"]) for r in rows] == [(1, "First line.\nSecond line."), (7, "Para two a.\nPara two b.")]
    assert quarantine[0]["detail"].startswith("line 5: ")  # the paragraph's first line


def test_damaged_and_oversized_files(tmp_path):
    good = b"".join(json.dumps({"text": f"{PROSE} {i}"}).encode() + b"\n" for i in range(400))
    packed = gzip.compress(good, mtime=0)
    files = {"cut.jsonl.gz": packed[: len(packed) // 2], "empty.jsonl": b"", "empty.txt": b"",
             "long.txt": b"short line\n" + b"x" * 3000 + b"\nafter it\n"}  # fmt: skip
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    stats, _, quarantine = ingest([tmp_path / n for n in files], tmp_path / "out", max_record_mb=0.002)  # 2,097 bytes
    by_source = {Path(s["source"]).name: s for s in stats}
    entries = {Path(q["source"]).name: q for q in quarantine}
    cut = by_source["cut.jsonl.gz"]
    assert 0 < cut["kept"] < 400 and cut["quarantined"] == 1 and balanced(cut)
    assert entries["cut.jsonl.gz"]["error"] == "truncated_gzip" and entries["cut.jsonl.gz"]["offset"] == cut["kept"] + 1
    assert f"{cut['kept']} lines read before; its last line (line {cut['kept'] + 1}," in entries["cut.jsonl.gz"]["detail"]
    assert entries["empty.jsonl"]["error"] == entries["empty.txt"]["error"] == "empty_file"
    long = by_source["long.txt"]
    assert (long["in"], long["kept"], long["quarantined"]) == (3, 2, 1) and entries["long.txt"]["offset"] == 2
    assert entries["long.txt"]["error"] == "record_too_large" and "line 2: 3,001 bytes exceed max_record_bytes=2097" in entries["long.txt"]["detail"]


def test_parquet_rows_columns_types_and_a_damaged_row_group(tmp_path):
    table = pa.table({
        "text": pa.array([b"Row zero.", None, b"", b"Row three.", b"\xff\xfe\xfd\xfc!", b"Row five."], pa.binary()).view(pa.string()),
        "id": pa.array([10, 11, 12, 13, 14, None], pa.int64()),
        "when": pa.array([datetime.datetime(2024, 5, 6, 7, 8, 9)] * 6, pa.timestamp("s")),
        "meta": [{"url": f"https://x.example/{i}", "lang": "en"} for i in range(6)],
        "license": ["CC0"] * 6,
    })  # fmt: skip
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path, row_group_size=2, compression="none")
    (stats,), rows, quarantine = ingest([path], tmp_path / "out", date_field="when", url_field="meta.url")
    assert (stats["in"], stats["kept"], stats["dropped"], stats["quarantined"]) == (6, 3, {"no_text_field": 1, "empty_text": 1}, 1)
    assert [(q["offset"], q["error"]) for q in quarantine] == [(4, "bad_utf8")] and quarantine[0]["detail"].startswith("row 4: ")
    assert [(r["warc_offset"], r["text"], r["warc_record_id"], r["url"]) for r in rows] == [
        (0, "Row zero.", "10", "https://x.example/0"), (3, "Row three.", "13", "https://x.example/3"), (5, "Row five.", None, "https://x.example/5")]  # fmt: skip
    assert rows[0]["date"] == "2024-05-06T07:08:09" and rows[0]["source_format"] == "parquet"
    assert rows[2]["id"] == document_id(f"\x1f{tmp_path.name}/rows.parquet\x1frow=5")  # no id: the row index
    assert stats["counters"] == {"field_not_kept:license": 6, "field_not_kept:meta.lang": 6, "no_dump": 3}  # meta.url read: its other field counted

    # A row group whose bytes are damaged: one entry naming its rows; the row groups around it are read.
    data = bytearray(path.read_bytes())
    meta = pq.ParquetFile(path).metadata.row_group(1).column(0)
    start = meta.data_page_offset
    data[start : start + 40] = b"\xff" * 40
    damaged = tmp_path / "damaged/rows.parquet"
    damaged.parent.mkdir()
    damaged.write_bytes(bytes(data))
    (stats,), rows, quarantine = ingest([damaged], tmp_path / "out2", date_field="when", url_field="meta.url")
    assert balanced(stats) and [r["warc_offset"] for r in rows] == [0, 5]
    assert [(q["offset"], q["error"]) for q in quarantine] == [(2, "invalid_parquet"), (4, "bad_utf8")]
    assert quarantine[0]["detail"].startswith("row group 1 (rows 2..3: 2 rows not read): ")
    # Not Parquet at all: one entry.
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 but not really")
    (stats,), _, quarantine = ingest([tmp_path / "fake.parquet"], tmp_path / "out3")
    assert stats["in"] == stats["quarantined"] == 1 and quarantine[0]["error"] == "invalid_parquet"


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_a_file_without_the_text_field_drops_every_row_by_name(tmp_path, kind):
    rows = [{"body": PROSE, "id": i} for i in range(3)]
    path = tmp_path / f"x.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    (stats,), kept, _ = ingest([path], tmp_path / "out")
    assert stats["in"] == 3 and stats["dropped"] == {"no_text_field": 3} and not kept
    (stats,), kept, _ = ingest([path], tmp_path / "out2", text_field="body")
    assert stats["kept"] == 3 and [r["warc_record_id"] for r in kept] == ["0", "1", "2"]


def test_a_corpus_in_a_bucket_is_searched_named_and_read_as_a_local_one(tmp_path):
    """s3:// (moto's server on loopback): the folder search, the names ids are made from, JSONL
    streamed and Parquet read by random access (its footer first) through the same checked stream."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from tests.s3server import moto_s3

    local = tmp_path / "own"
    local.mkdir()
    (local / "forum.jsonl").write_bytes((SAMPLES / "own-corpus/forum.jsonl").read_bytes())
    notes = [json.loads(line) for line in (SAMPLES / "own-corpus/notes.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(notes), local / "notes.parquet", row_group_size=2)
    with moto_s3("crawlmill-corpus") as (fs, _):
        for name in ("forum.jsonl", "notes.parquet", "README.txt"):
            fs.pipe_file(f"crawlmill-corpus/data/own/{name}", (local / name).read_bytes() if name != "README.txt" else b"read me")
        stats, rows, quarantine = ingest(["s3://crawlmill-corpus/data/own/"], tmp_path / "remote")
        assert [s["source"] for s in stats] == ["s3://crawlmill-corpus/data/own/forum.jsonl", "s3://crawlmill-corpus/data/own/notes.parquet"]
    assert [s["kept"] for s in stats] == [4, 4] and not quarantine
    # The same ids as the same files read from a local folder of the same name.
    assert [r["id"] for r in rows] == [r["id"] for r in ingest([local], tmp_path / "local")[1]]


def test_a_corrupt_gzip_member_ends_a_text_file_and_the_paragraph_it_cuts_goes_with_it(tmp_path):
    first = gzip.compress(b"One a.\nOne b.\n\nTwo a.\n", mtime=0)  # a whole member, then a damaged one
    second = b"no gzip member here" + gzip.compress(b"Two b.\n\nThree.\n", mtime=0)
    path = tmp_path / "notes.txt.gz"
    path.write_bytes(first + second)
    (stats,), rows, quarantine = ingest([path], tmp_path / "out", txt_document="paragraph")
    assert (stats["in"], stats["kept"], stats["quarantined"]) == (2, 1, 1) and rows[0]["text"] == "One a.\nOne b."
    (entry,) = quarantine
    assert entry["error"] == "corrupt_gzip" and entry["offset"] == 5 and entry["detail"].startswith(f"bytes at compressed offset {len(first)} do not start a gzip member")
    assert "4 lines read before; the paragraph at line 4 (1 whole lines before the damage) left out with it; the rest of the file is not read" in entry["detail"]


def test_integers_past_64_bits_stay_exact(tmp_path):
    """orjson reads 2**70 as a float (1.1805916207174113e+21): such lines are read exactly."""
    path = tmp_path / "in/big.jsonl"
    path.parent.mkdir()
    low = -(2**63) - 1  # 19 digits
    path.write_text(f'{{"text": "{PROSE}", "id": {2**70}, "n": {2**70 + 1}, "small": 5, "note": "{"9" * 25}"}}\n{{"text": "{PROSE} Two.", "n": 1.5}}\n'
                    f'{{"text": "{PROSE} Three.", "id": {low}, "n": {low}}}\n')  # fmt: skip
    (stats,), rows, _ = ingest([path], tmp_path / "out", keep_fields=["n", "small", "note"])
    assert rows[0]["warc_record_id"] == str(2**70)
    assert rows[0]["corpus_fields"] == f'{{"n":{2**70 + 1},"note":"{"9" * 25}","small":5}}' and json.loads(rows[1]["corpus_fields"]) == {"n": 1.5}
    assert rows[2]["warc_record_id"] == str(low) and rows[2]["corpus_fields"] == f'{{"n":{low}}}'


def test_kept_fields_hold_no_second_copy_of_the_text_and_deep_nesting_is_counted(tmp_path):
    with pytest.raises(ValueError, match="'body' is the text field"):
        IngestConfig(text_field="body", keep_fields=["body"])
    deep = "[" * 1020 + "]" * 1020  # orjson reads 1024 levels; writing them here stops past ~1000
    lines = [json.dumps({"content": {"body": PROSE, "lang": "en"}, "meta": {"t": 1}}), f'{{"content": {{"body": "{PROSE} Deep."}}, "deep": {deep}}}']
    path = tmp_path / "in/nested.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines))
    (stats,), rows, _ = ingest([path], tmp_path / "out", text_field="content.body", keep_fields=["*", "meta.t"])
    assert rows[0]["text"] == PROSE and json.loads(rows[0]["corpus_fields"]) == {"content": {"lang": "en"}, "meta": {"t": 1}}  # no body, no "meta.t" twice
    assert rows[1]["corpus_fields"] is None and stats["counters"]["corpus_fields_too_deep"] == 1 and stats["kept"] == 2


def test_a_nested_url_field_counts_the_other_fields_of_its_object(tmp_path):
    """--url-field metadata.url (a Dolma or datatrove file) reads one field of `metadata`: its other
    fields are counted by path, not lost unnamed; `*` keeps the whole object."""
    record = {"text": PROSE, "id": "d1", "metadata": {"url": "https://x.example/d", "lang": "en", "score": {"a": 1}}, "source": "web"}
    path = tmp_path / "in/dolma.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    (stats,), rows, _ = ingest([path], tmp_path / "out", url_field="metadata.url")
    assert rows[0]["url"] == "https://x.example/d"
    assert stats["counters"] == {"field_not_kept:metadata.lang": 1, "field_not_kept:metadata.score": 1, "field_not_kept:source": 1, "no_dump": 1}
    (stats,), rows, _ = ingest([path], tmp_path / "all", url_field="metadata.url", keep_fields=["*"], dump="dolma")
    assert json.loads(rows[0]["corpus_fields"]) == {"metadata": record["metadata"], "source": "web"} and not stats.get("counters")
    (stats,), rows, _ = ingest([path], tmp_path / "lang", url_field="metadata.url", keep_fields=["metadata.lang", "metadata.score"])
    assert stats["counters"] == {"field_not_kept:source": 1, "no_dump": 1}


def test_a_nanosecond_timestamp_in_corpus_fields_is_iso_8601(tmp_path):
    table = pa.table({"text": [PROSE], "at": pa.array([datetime.datetime(2020, 1, 1, 0, 1)], pa.timestamp("ns")), "day": pa.array([datetime.date(1998, 1, 2)])})
    pq.write_table(table, tmp_path / "t.parquet")
    (_,), rows, _ = ingest([tmp_path / "t.parquet"], tmp_path / "out", keep_fields=["*"])
    assert json.loads(rows[0]["corpus_fields"]) == {"at": "2020-01-01T00:01:00", "day": "1998-01-02"}


def test_the_summary_names_a_mistyped_field(ray_local, tmp_path):
    """A mistyped --text-field drops every row (exit 0, as any drop is): the summary says so and names
    the fields the rows have; kept or id fields no row has are named too."""
    from crawlmill.pipeline.runner import run_stage

    path = tmp_path / "in/posts.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps({"body": f"{PROSE} {i}", "title": "t"}) for i in range(3)))
    for k, (config, expected) in enumerate((
        ({"text_field": "txt"}, "no row has the text field 'txt': all 3 dropped as no_text_field (fields the rows have: body, title)"),
        ({"text_field": "body", "keep_fields": ["titel"]}, "kept fields absent from rows, those dropped too (--keep-field): titel (3 rows)"),
        ({"text_field": "body", "id_field": "uid"}, "the id field 'uid' is absent from 3 rows"),
    )):  # fmt: skip
        stage = IngestStage(IngestConfig(inputs=[str(path)], **config))
        result = run_stage(stage, tmp_path / f"out{k}", progress=False)
        assert any(expected in line for line in stage.report(result)), (config, stage.report(result))
