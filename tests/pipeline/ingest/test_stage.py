"""Ingest on real Common Crawl files (../shared/data) and on every kind of damaged input."""

import dataclasses
import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crawlmill.corpora.warc_records import gzip_members, http_response, record, warcinfo
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage
from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id
from crawlmill.pipeline.stage import run_part

from .gzip_members import member_starts


def ingest_one(path: Path, out: Path, config: IngestConfig | None = None) -> tuple[dict, list[dict], list[dict]]:
    stage = IngestStage(dataclasses.replace(config or IngestConfig(), inputs=[str(path)]))
    stats = run_part(stage, stage.tasks()[0], str(out))
    docs = pq.read_table(out / "part-00000.parquet").to_pylist()
    qpath = out / "_quarantine/part-00000.parquet"
    quarantine = pq.read_table(qpath).to_pylist() if qpath.exists() else []
    return stats, docs, quarantine


def test_common_crawl_warc_pages_become_documents(shared_data, tmp_path, lid_model_path):
    import fasttext

    stats, docs, quarantine = ingest_one(shared_data / "cc/resiliparse/warcfile.warc.gz", tmp_path)
    assert stats["in"] == 50 and stats["kept"] == 16 and not quarantine
    assert stats["dropped"] == {"record_metadata": 16, "record_request": 17, "warcinfo": 1}
    model = fasttext.load_model(str(lid_model_path))
    labels = {d["url"]: model.predict(d["text"].replace("\n", " "))[0][0] for d in docs}
    chinese = [d for d in docs if labels[d["url"]] == "__label__zh"]
    assert len(chinese) >= 6
    for d in chinese:
        assert "\ufffd" not in d["text"]
    # Pages declared gb2312/gbk come out as readable Chinese through the GB18030 superset.
    gb = [d for d in docs if d["charset"] == "gb18030"]
    assert len(gb) >= 4 and all(labels[d["url"]] in ("__label__zh", "__label__en") for d in gb)
    assert sum(labels[d["url"]] == "__label__zh" for d in gb) >= 4
    for d in docs:
        assert set(d) == set(DOCUMENT_SCHEMA.names)
        assert d["dump"] == "CC-MAIN-2020-34"  # from the warcinfo record's isPartOf
        assert d["warc_record_id"].startswith("<urn:uuid:") and d["id"] == document_id(d["warc_record_id"])
        assert d["date"].startswith("2020-") and d["source_format"] == "warc" and d["content_type"] == "text/html"
        assert d["lang"] is None and d["text"].strip() == d["text"] and d["text"]


def test_offsets_point_at_the_records_gzip_member(shared_data, tmp_path):
    path = shared_data / "cc/resiliparse/warcfile.warc.gz"
    _, docs, _ = ingest_one(path, tmp_path)
    data = path.read_bytes()
    for d in docs:
        member = gzip.GzipFile(fileobj=__import__("io").BytesIO(data[d["warc_offset"] :])).read(4096)
        assert member.startswith(b"WARC/1.0") and d["warc_record_id"].encode() in member


def test_warc_and_wet_of_the_same_page_share_the_document_id(shared_data, tmp_path):
    _, warc_docs, _ = ingest_one(shared_data / "cc/whirlwind/whirlwind.warc.gz", tmp_path / "warc")
    _, wet_docs, _ = ingest_one(shared_data / "cc/whirlwind/whirlwind.warc.wet.gz", tmp_path / "wet")
    assert len(warc_docs) == len(wet_docs) == 1
    assert warc_docs[0]["id"] == wet_docs[0]["id"] and warc_docs[0]["url"] == wet_docs[0]["url"]
    assert wet_docs[0]["source_format"] == "wet" and wet_docs[0]["dump"] == "CC-MAIN-2024-22"
    assert "Escopete" in warc_docs[0]["text"] and "Escopete" in wet_docs[0]["text"]


def test_old_uncompressed_warc_wet_and_wat(shared_data, tmp_path):
    folder = shared_data / "cc/npm-warc"
    stats, docs, quarantine = ingest_one(next(folder.glob("*.warc")), tmp_path / "warc")
    assert stats["kept"] == 3 and not quarantine  # one page keeps a stale Content-Encoding header
    assert stats["dropped"]["empty_text"] == 1 and "not_html" not in stats["dropped"]  # an empty 200 response without Content-Type: nothing to read
    stats, docs, _ = ingest_one(next(folder.glob("*.wet")), tmp_path / "wet")
    assert stats["kept"] == 3 and all(d["source_format"] == "wet" for d in docs)
    stats, docs, _ = ingest_one(next(folder.glob("*.wat")), tmp_path / "wat")
    assert stats["kept"] == 0 and stats["dropped"] == {"record_metadata": 8, "warcinfo": 1}


def test_non_document_records_are_dropped_by_name(shared_data, tmp_path):
    stats, _, _ = ingest_one(shared_data / "cc/warcio/example.warc.gz", tmp_path / "a")
    assert stats["dropped"]["record_revisit"] == 1 and stats["dropped"]["record_request"] == 2
    stats, _, _ = ingest_one(shared_data / "cc/resiliparse/block-sized-records.warc.gz", tmp_path / "b")
    assert stats["dropped"] == {"record_unknown": 3}
    redirect = next((shared_data / "cc/cdx_toolkit").glob("*00905*.warc.gz"))
    stats, _, _ = ingest_one(redirect, tmp_path / "c")
    assert stats["dropped"] == {"http_redirect": 1}


def make_bad_inputs(shared_data: Path, folder: Path) -> dict[str, Path]:
    folder.mkdir()
    good = (shared_data / "cc/resiliparse/warcfile.warc.gz").read_bytes()
    page = http_response(b"<html><body><p>" + b"A large page. " * 4_000_000 + b"</p></body></html>")
    files = {
        "truncated_gzip": good[:70000],
        "clipped": (shared_data / "cc/resiliparse/clipped.warc.gz").read_bytes(),
        "not_warc": gzip.compress(b"this is a plain text file, not WARC\n" * 100, mtime=0),
        "empty": b"",
        "huge_record": gzip_members([warcinfo("CC-MAIN-2024-22"), record("response", page, "https://big.example/")]),
        "good": good,
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.warc.gz"
        paths[name].write_bytes(data)
    return paths


def test_bad_inputs_are_quarantined_with_file_offset_and_error_and_the_rest_goes_on(ray_local, shared_data, tmp_path):
    paths = make_bad_inputs(shared_data, tmp_path / "in")
    assert paths["huge_record"].stat().st_size < 1 << 20 < 50 << 20  # 50+ MB decompressed, one record
    out = tmp_path / "out"
    result = run_stage(IngestStage(IngestConfig(inputs=sorted(str(p) for p in paths.values()))), out, progress=False)
    assert result.ok
    quarantine = pq.read_table(out / "_quarantine").to_pylist()
    by_file = {Path(q["source"]).name.split(".")[0]: q for q in quarantine}
    assert len(quarantine) == 5 and set(by_file) == {"truncated_gzip", "clipped", "not_warc", "empty", "huge_record"}
    assert by_file["truncated_gzip"]["error"] == "truncated_gzip" and by_file["truncated_gzip"]["offset"] > 60000
    assert by_file["clipped"]["error"] == "truncated_gzip" and "of its 88275 bytes" in by_file["clipped"]["detail"]
    assert by_file["not_warc"]["error"] == "invalid_warc" and by_file["not_warc"]["offset"] == 0
    assert by_file["empty"]["error"] == "empty_file"
    assert by_file["huge_record"]["error"] == "record_too_large" and by_file["huge_record"]["record_id"]
    assert "exceeds max_record_bytes" in by_file["huge_record"]["detail"] and by_file["huge_record"]["offset"] > 0

    parts = {json.loads(p.read_text())["source"]: json.loads(p.read_text()) for p in (out / "_parts").glob("*.json")}
    good = parts[str(paths["good"])]
    assert good["kept"] == 16 and good["quarantined"] == 0
    truncated = parts[str(paths["truncated_gzip"])]
    assert truncated["kept"] >= 6  # the pages before the cut are kept
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]
    assert stats["quarantined"] == 5


def test_bad_utf8_in_wet_is_repaired_when_rare_and_quarantined_when_not(tmp_path):
    text_ok = ("Plain English text. " * 200).encode() + b"\xff"
    text_bad = b"\xff\xfe\xfa" * 500
    conv = lambda body, uri: record("conversion", body, uri, {"WARC-Refers-To": f"<urn:uuid:{uri}>", "Content-Type": "text/plain"})  # noqa: E731
    path = tmp_path / "x.warc.wet.gz"
    path.write_bytes(gzip_members([warcinfo("CC-MAIN-2024-10"), conv(text_ok, "a"), conv(text_bad, "b")]))
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert len(docs) == 1 and stats["counters"]["utf8_repaired_docs"] == 1
    assert quarantine[0]["error"] == "bad_utf8"


def test_http_statuses_and_content_types(tmp_path):
    html = b"<html><body><article><p>" + b"Some real words in a paragraph. " * 20 + b"</p></article></body></html>"
    records = [
        record("response", http_response(html), "https://ok.example/"),
        record("response", http_response(html, status="404 Not Found"), "https://e.example/404"),
        record("response", http_response(b"", status="301 Moved"), "https://e.example/301"),
        record("response", http_response(b"\x89PNG....", "image/png"), "https://e.example/i.png"),
        record("response", http_response(b"plain text body", "text/plain"), "https://e.example/t.txt"),
        record("response", http_response(b"<html><body></body></html>"), "https://e.example/empty"),
        record("response", b"garbage without http", "https://e.example/bad"),
    ]
    path = tmp_path / "CC-MAIN-2024-10-x.warc.gz"
    path.write_bytes(gzip_members(records))
    stats, docs, quarantine = ingest_one(path, tmp_path / "out", IngestConfig(dump="CC-MAIN-2099-01"))
    assert stats["dropped"] == {"http_error": 1, "http_redirect": 1, "not_html": 1, "empty_text": 1}
    assert [d["url"] for d in docs] == ["https://ok.example/", "https://e.example/t.txt"]
    assert {d["dump"] for d in docs} == {"CC-MAIN-2099-01"}  # no warcinfo, no crawl-data/ path: the flag
    assert quarantine[0]["error"] == "bad_http"


def test_dump_id_from_the_common_crawl_path(shared_data, tmp_path):
    target = tmp_path / "crawl-data/CC-MAIN-2022-05/segments/1/warc/x.warc.gz"
    target.parent.mkdir(parents=True)
    raw = gzip.decompress((shared_data / "cc/cmoncrawl/mini.warc.gz").read_bytes())
    without_warcinfo = raw[raw.index(b"WARC/1.0", 10) :]
    target.write_bytes(gzip.compress(without_warcinfo, mtime=0))
    _, docs, _ = ingest_one(target, tmp_path / "out")
    assert docs[0]["dump"] == "CC-MAIN-2022-05"
    assert docs[0]["warc_file"] == "crawl-data/CC-MAIN-2022-05/segments/1/warc/x.warc.gz"


def test_trafilatura_extractor_option(shared_data, tmp_path):
    stats, docs, _ = ingest_one(shared_data / "cc/whirlwind/whirlwind.warc.gz", tmp_path, IngestConfig(extractor="trafilatura"))
    assert stats["kept"] == 1 and "Escopete" in docs[0]["text"]


@pytest.mark.parametrize("where,error", [("in_header", "invalid_record"), ("in_block", "truncated_record"), ("after_version", "invalid_record")])
def test_plain_warc_cut_anywhere_in_a_record_is_quarantined(tmp_path, where, error):
    from tests.conftest import SAMPLES

    raw = gzip.decompress(next(SAMPLES.glob("crawl-data/CC-MAIN-2024-10/segments/*/warc/*.warc.gz")).read_bytes())
    second_response = raw.index(b"WARC-Type: response", raw.index(b"WARC-Type: response") + 1)
    record_start = raw.rindex(b"WARC/1.1", 0, second_response)
    cut = {"in_header": second_response + 8, "in_block": second_response + 2000, "after_version": record_start + 12}[where]
    path = tmp_path / "cut.warc"
    path.write_bytes(raw[:cut])
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert len(docs) == 1  # the first page survives
    assert [q["error"] for q in quarantine] == [error]
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


# A corrupt gzip member: quarantined with the bytes it covers, and reading resumes at the next member.
def damage_member(data: bytes, start: int, end: int) -> bytes:
    """Flip 64 bytes in the middle of the member data[start:end], past its 10-byte gzip header."""
    damaged = bytearray(data)
    middle = start + 10 + (end - start - 10) // 2 - 32
    for at in range(middle, middle + 64):
        damaged[at] ^= 0xA5
    return bytes(damaged)


def sample_copy(folder: Path, data: bytes) -> Path:
    """A sample WARC's bytes under a Common Crawl-like path in `folder` (the same warc_file name for every copy)."""
    from tests.conftest import SAMPLES

    sample = next(SAMPLES.glob("crawl-data/CC-MAIN-2024-10/segments/*/warc/*.warc.gz"))
    path = folder / sample.relative_to(SAMPLES)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return path


def test_corrupt_gzip_member_is_quarantined_and_reading_resumes_at_the_next_member(tmp_path):
    from tests.conftest import SAMPLES

    data = next(SAMPLES.glob("crawl-data/CC-MAIN-2024-10/segments/*/warc/*.warc.gz")).read_bytes()
    clean_stats, clean_docs, _ = ingest_one(sample_copy(tmp_path / "clean", data), tmp_path / "clean-out")
    starts = member_starts(data)
    assert len(starts) == clean_stats["in"]  # one gzip member per record
    victim = sorted(d["warc_offset"] for d in clean_docs)[len(clean_docs) // 2]  # a kept page in the middle
    end = starts[starts.index(victim) + 1]
    damaged = sample_copy(tmp_path / "damaged", damage_member(data, victim, end))
    stats, docs, quarantine = ingest_one(damaged, tmp_path / "out")

    assert [q["error"] for q in quarantine] == ["corrupt_gzip"]
    entry = quarantine[0]
    assert entry["offset"] == victim and entry["source"] == str(damaged)
    assert f"corrupt gzip member at compressed offset {victim}:" in entry["detail"]
    assert f"skipped bytes {victim}..{end} ({end - victim} bytes): reading resumed at the next valid gzip member, at offset {end}" in entry["detail"]
    # Every other record is read as in the undamaged file: the pages after the damage too, equal.
    assert any(d["warc_offset"] > victim for d in docs)
    assert docs == [d for d in clean_docs if d["warc_offset"] != victim]
    assert stats["kept"] == clean_stats["kept"] - 1 and stats["dropped"] == clean_stats["dropped"]
    assert stats["in"] == clean_stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]
    # Deterministic: the same damaged file gives the same output.
    assert ingest_one(damaged, tmp_path / "again")[1:] == (docs, quarantine)


def test_corrupt_last_member_says_the_rest_of_the_file_could_not_be_read(tmp_path):
    from tests.conftest import SAMPLES

    data = next(SAMPLES.glob("crawl-data/CC-MAIN-2024-10/segments/*/warc/*.warc.gz")).read_bytes()
    last = member_starts(data)[-1]
    stats, _, quarantine = ingest_one(sample_copy(tmp_path / "in", damage_member(data, last, len(data))), tmp_path / "out")
    assert [(q["error"], q["offset"]) for q in quarantine] == [("corrupt_gzip", last)]
    assert f"the rest of the file (bytes {last}..{len(data)}, {len(data) - last} bytes) could not be read: no valid gzip member follows the damage" in quarantine[0]["detail"]
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


def test_gzip_of_a_whole_warc_file_cannot_resume_after_damage_and_says_so(tmp_path):
    from tests.conftest import SAMPLES

    raw = gzip.decompress(next(SAMPLES.glob("crawl-data/CC-MAIN-2024-10/segments/*/warc/*.warc.gz")).read_bytes())
    whole = gzip.compress(raw, mtime=0)  # one member for the whole file
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(damage_member(whole, 0, len(whole)))
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    # (Before zlib finds the damage, the member's garbled output can make a record of its own entry.)
    assert (quarantine[-1]["error"], quarantine[-1]["offset"]) == ("corrupt_gzip", 0)
    assert "the file is not one gzip member per record, so reading cannot resume after the damage" in quarantine[-1]["detail"]
    assert docs  # the pages before the damage are kept, as before
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


def test_record_of_a_member_that_fails_its_gzip_check_is_quarantined_not_kept(tmp_path):
    """A member whose CRC is damaged and whose record is 3 x 64 KiB + 2 bytes: the reader's 64 KiB steps
    hand out the whole block before zlib checks the member (its last step holds only the record's
    closing CRLFs), and the record is still not kept; the next record is."""

    def big(filler: int) -> bytes:
        page = http_response(b"<html><body><p>" + b"Words of a long page. " * 6000 + b"x" * filler + b"</p></body></html>")
        return record("response", page, "https://big.example/")

    first = big(3 * 65536 + 2 - len(big(0)))
    assert len(first) == 3 * 65536 + 2
    small = record("response", http_response(b"<html><body><p>" + b"A small page with words. " * 20 + b"</p></body></html>"), "https://small.example/")
    members = [gzip.compress(r, compresslevel=1, mtime=0) for r in (first, small)]
    bad = bytearray(members[0])
    bad[-8] ^= 0xFF  # the CRC-32 in the gzip trailer
    path = tmp_path / "crc.warc.gz"
    path.write_bytes(bytes(bad) + members[1])
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert [d["url"] for d in docs] == ["https://small.example/"]
    assert [(q["error"], q["offset"]) for q in quarantine] == [("corrupt_gzip", 0)]
    record_id = quarantine[0]["record_id"]
    assert record_id and f"its response record {record_id} came whole but fails the gzip check" in quarantine[0]["detail"]
    assert f"skipped bytes 0..{len(bad)}" in quarantine[0]["detail"] and stats["in"] == 2


def test_corrupt_member_of_a_common_crawl_file_loses_only_the_damaged_members(shared_data, tmp_path):
    """400 bytes flipped at offset 70000 of resiliparse's warcfile.warc.gz (50 records, one gzip member
    each) damage two members (from 69787 and 70222); reading resumes at the third, 74681."""
    data = (shared_data / "cc/resiliparse/warcfile.warc.gz").read_bytes()
    damaged = bytearray(data)
    for at in range(70000, 70400):
        damaged[at] ^= 0xFF
    (tmp_path / "bad").mkdir()
    path = tmp_path / "bad/warcfile.warc.gz"
    path.write_bytes(bytes(damaged))
    stats, docs, quarantine = ingest_one(path, tmp_path / "out")
    assert [(q["error"], q["offset"]) for q in quarantine] == [("corrupt_gzip", 69787)]
    assert "22 records read before; skipped bytes 69787..74681 (4894 bytes)" in quarantine[0]["detail"]
    _, clean_docs, _ = ingest_one(shared_data / "cc/resiliparse/warcfile.warc.gz", tmp_path / "clean")
    strip = lambda rows: [{**r, "warc_file": None} for r in rows]  # noqa: E731
    assert strip(docs) == strip([d for d in clean_docs if d["warc_offset"] not in (69787, 70222)])
    assert len([d for d in docs if d["warc_offset"] >= 74681]) == 8  # half the file, no longer lost
    assert stats["in"] == 49 and stats["kept"] == 15 and stats["quarantined"] == 1
    assert stats["in"] == stats["kept"] + sum(stats["dropped"].values()) + stats["quarantined"]


def test_documents_of_no_known_dump_are_counted(shared_data, tmp_path):
    """cdx_toolkit's single-record WARCs (CC-MAIN-2025-33) have no warcinfo and no crawl-data/ path:
    their rows had dump null without a word; --dump names it."""
    warc = next((shared_data / "cc/cdx_toolkit").glob("CC-MAIN-20250804083340-*.warc.gz"))
    stats, docs, _ = ingest_one(warc, tmp_path / "a")
    assert docs and all(d["dump"] is None for d in docs) and stats["counters"]["no_dump"] == len(docs)
    stats, docs, _ = ingest_one(warc, tmp_path / "b", IngestConfig(dump="CC-MAIN-2025-33"))
    assert docs and {d["dump"] for d in docs} == {"CC-MAIN-2025-33"} and "no_dump" not in stats["counters"]
