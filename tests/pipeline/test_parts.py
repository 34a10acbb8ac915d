import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.parts import PartSink
from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id


def doc(i: int) -> dict:
    return {"id": document_id(f"<urn:uuid:{i}>"), "text": f"document {i} " * 50, "url": f"https://e.org/{i}"}


def test_every_record_counted_once_and_files_renamed_into_place(tmp_path):
    sink = PartSink(tmp_path, 3, "src.warc.gz", "test", DOCUMENT_SCHEMA, batch_rows=4, keep_dropped=True)
    for i in range(10):
        sink.keep(doc(i))
    sink.drop("too_short", doc(99))
    sink.drop("too_short")
    sink.quarantine("bad_http", "no end of headers", offset=123, record_id="<urn:uuid:x>")
    assert not (tmp_path / "part-00003.parquet").exists()  # only a temporary until commit
    stats = sink.commit()
    assert (stats.records_in, stats.kept, dict(stats.dropped), stats.quarantined) == (13, 10, {"too_short": 2}, 1)
    table = pq.read_table(tmp_path / "part-00003.parquet")
    assert table.num_rows == 10 and table.schema.equals(DOCUMENT_SCHEMA)
    assert pq.ParquetFile(tmp_path / "part-00003.parquet").metadata.num_row_groups == 3  # batches of 4
    quarantine = pq.read_table(tmp_path / "_quarantine/part-00003.parquet").to_pylist()
    assert quarantine == [{"stage": "test", "source": "src.warc.gz", "offset": 123, "record_id": "<urn:uuid:x>", "error": "bad_http", "detail": "no end of headers"}]
    assert pq.read_table(tmp_path / "_dropped/part-00003.parquet").column("drop_reason").to_pylist() == ["too_short"]
    marker = stats.to_json()  # what the runner writes as _parts/part-00003.json
    assert marker["in"] == 13 and marker["source"] == "src.warc.gz"
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_empty_part_still_has_a_readable_parquet_file(tmp_path):
    sink = PartSink(tmp_path, 0, "s", "test", DOCUMENT_SCHEMA)
    sink.drop("empty_text")
    sink.commit()
    assert pq.read_table(tmp_path / "part-00000.parquet").num_rows == 0
    assert not (tmp_path / "_quarantine").exists()


def test_abort_leaves_nothing_behind(tmp_path):
    sink = PartSink(tmp_path, 0, "s", "test", DOCUMENT_SCHEMA, batch_rows=1)
    sink.keep(doc(1))
    sink.quarantine("x", "y")
    sink.abort()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_unaccounted_records_are_a_bug_not_silence(tmp_path):
    sink = PartSink(tmp_path, 0, "s", "test", DOCUMENT_SCHEMA)
    sink.keep(doc(1))
    sink.stats.records_in += 1  # a stage that lost a record
    with pytest.raises(AssertionError, match="2 records in, 1 accounted"):
        sink.commit()
