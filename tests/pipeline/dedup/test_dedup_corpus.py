"""The near-duplicate benchmark corpora: WET layout, exact ground truth and joinability with ingest
output (crawlmill.corpora.dedup_corpus), and the streaming scale builder
(crawlmill.corpora.dedup_scale)."""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType

from crawlmill.corpora import dedup_corpus as dc
from crawlmill.corpora import dedup_scale as ds
from crawlmill.pipeline.dedup.shingles import shingles
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.schema import DOCUMENT_SCHEMA, document_id
from crawlmill.pipeline.stage import run_part

DUMPS = ["CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-22"]


@pytest.fixture(scope="module")
def text_dir(shared_data) -> Path:
    path = shared_data / "text"
    if not (path / "en").is_dir() or not (path / "zh").is_dir():
        pytest.skip(f"real text files not found under {path}")
    return path


@pytest.fixture(scope="module")
def corpus(text_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    truth = dc.build_corpus(out, text_dir, DUMPS, docs_per_dump=150, seed=0)
    return out, truth


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _wet_records(out: Path) -> dict[str, dict]:
    """Every conversion record of the corpus: record id -> headers, text, file, dump."""
    records = {}
    for path in sorted((out / "crawl-data").rglob("*.warc.wet.gz")):
        dump = path.relative_to(out).parts[1]
        for n, rec in enumerate(ArchiveIterator(open(path, "rb"), parse_http=False)):
            headers = dict(rec.headers.items())
            block = rec.reader.read()
            if n == 0:
                assert rec.record_type == WarcRecordType.warcinfo and f"isPartOf: {dump}".encode() in block
                continue
            assert rec.record_type == WarcRecordType.conversion
            records[headers["WARC-Record-ID"]] = {**headers, "text": block.decode("utf-8"), "file": path, "dump": dump}
    return records


def _texts(out: Path, truth) -> list[str]:
    wet = _wet_records(out)
    return [wet[r]["text"] for r in truth.docs["record_id"].to_pylist()]


def test_two_builds_are_byte_identical(corpus, text_dir, tmp_path):
    out, _ = corpus
    dc.build_corpus(tmp_path, text_dir, DUMPS, docs_per_dump=150, seed=0)
    assert _files(out) == _files(tmp_path)
    other = dc.build_corpus(tmp_path / "seed1", text_dir, DUMPS, docs_per_dump=150, seed=1)
    assert other.docs["record_id"].to_pylist() != dc.GroundTruth.read(out).docs["record_id"].to_pylist()
    with pytest.raises(FileExistsError):
        dc.build_corpus(tmp_path, text_dir, DUMPS, docs_per_dump=150, seed=0)


def test_base_documents_are_clean(text_dir):
    docs = dc.source_documents(text_dir)
    assert len(docs["en"]) > 500 and len(docs["zh"]) > 1000
    assert all(1500 // 2 <= len(t) <= 4000 for t in docs["en"]) and all(len(t) >= 200 for t in docs["zh"])
    rng = random.Random(0)
    for lang, texts in docs.items():  # neighbours (chunks of one article or play) and random pairs
        starts = rng.sample(range(len(texts) - 1), 400)
        pairs = [(i, i + 1) for i in starts] + [tuple(rng.sample(range(len(texts)), 2)) for _ in range(300)]
        sets = {i: set(shingles(texts[i], lang)) for pair in pairs for i in pair}
        assert max(dc.jaccard(sets[a], sets[b]) for a, b in pairs) < dc.BASE_MAX_JACCARD


def test_wet_files_follow_common_crawl_layout(corpus):
    out, truth = corpus
    wet = _wet_records(out)
    rows = truth.docs.to_pylist()
    assert set(wet) == {r["record_id"] for r in rows}
    for dump in DUMPS:
        files = sorted((out / "crawl-data" / dump / "segments").glob("*/wet/CC-MAIN-*-*-0000?.warc.wet.gz"))
        assert len(files) == 3
        for path in files:  # every record its own gzip member: members = records
            data, members, records = path.read_bytes(), 0, 0
            while data:
                d = zlib.decompressobj(31)
                d.decompress(data)
                data, members = d.unused_data, members + 1
            records = sum(1 for _ in ArchiveIterator(open(path, "rb"), parse_http=False))
            assert members == records > 1
    for r in rows:
        rec = wet[r["record_id"]]
        start, end = dc.dump_period(r["dump"])
        assert rec["dump"] == r["dump"] and rec["WARC-Target-URI"] == r["url"]
        assert start.strftime("%Y-%m-%dT%H:%M:%SZ") <= rec["WARC-Date"] < end.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert rec["Content-Type"] == "text/plain" and rec["WARC-Refers-To"].startswith("<urn:uuid:")
        assert r["id"] == document_id(rec["WARC-Refers-To"])
        assert str(rec["file"]).endswith(r["warc_file"])
    for dump in DUMPS:  # a URL appears once in a dump
        urls = [r["url"] for r in rows if r["dump"] == dump]
        assert len(urls) == len(set(urls))


def test_clusters_are_the_components_of_exact_pairs(corpus):
    out, truth = corpus
    texts = _texts(out, truth)
    rows = truth.docs.to_pylist()
    sets = [set(shingles(t, r["lang"])) for t, r in zip(texts, rows)]
    index = {r["record_id"]: i for i, r in enumerate(rows)}
    columns = (truth.pairs[c].to_pylist() for c in ("record_id_a", "record_id_b", "jaccard"))
    pairs = {(index[a], index[b]): j for a, b, j in zip(*columns)}
    # Recompute every within-family pair: the stored pairs are exactly those >= 0.8.
    found = {}
    for a in range(len(rows)):
        for b in range(a + 1, len(rows)):
            if rows[a]["family"] == rows[b]["family"] and (j := dc.jaccard(sets[a], sets[b])) >= dc.THRESHOLD:
                found[(a, b)] = j
    assert found.keys() == pairs.keys() and all(abs(found[p] - pairs[p]) < 1e-12 for p in found)
    # Clusters are the connected components (same partition).
    labels = dc.components(len(rows), pairs)
    cluster = [r["cluster"] for r in rows]
    assert len(set(zip(labels, cluster))) == len(set(labels)) == len(set(cluster))
    # jaccard_parent is right, and exact copies have identical text.
    for i, r in enumerate(rows):
        if r["parent"] is not None:
            assert abs(r["jaccard_parent"] - dc.jaccard(sets[i], sets[index[r["parent"]]])) < 1e-12
        if r["kind"] in ("mirror", "republish_same_url", "republish_new_url"):
            assert texts[i] == texts[index[r["parent"]]]


def test_no_cross_family_pair_reaches_the_threshold(corpus):
    out, truth = corpus
    texts = _texts(out, truth)
    rows = truth.docs.to_pylist()
    rng = random.Random(0)
    sample = []
    while len(sample) < 2000:
        a, b = rng.randrange(len(rows)), rng.randrange(len(rows))
        if rows[a]["lang"] == rows[b]["lang"] and rows[a]["family"] != rows[b]["family"]:
            sample.append((a, b))
    for a, b in sample:
        assert dc.jaccard(set(shingles(texts[a], rows[a]["lang"])), set(shingles(texts[b], rows[b]["lang"]))) < dc.THRESHOLD
    # Exhaustively too (every pair of the small corpus, through a sparse shingle matrix).
    stored = set(zip(truth.pairs["record_id_a"].to_pylist(), truth.pairs["record_id_b"].to_pylist()))
    for lang in ("en", "zh"):
        members = [i for i, r in enumerate(rows) if r["lang"] == lang]
        allpairs = dc.exact_similar_pairs([texts[i] for i in members], lang, dc.THRESHOLD)
        assert {(rows[members[a]]["record_id"], rows[members[b]]["record_id"]) for a, b, _ in allpairs} == {
            p for p in stored if rows[[r["record_id"] for r in rows].index(p[0])]["lang"] == lang
        }


def test_both_languages_all_kinds_and_duplication_growing_across_dumps(corpus):
    _, truth = corpus
    stats = truth.stats()
    for lang in ("en", "zh"):
        s = stats["by_lang"][lang]
        assert s["docs"] == 225 and set(s["kinds"]) == set(dc.KINDS)
        removed = [s["removed_first_k_dumps"][k] for k in (1, 2, 3)]
        assert 0.05 < removed[0] < removed[1] < removed[2] < 0.9
    rows = truth.docs.to_pylist()
    dumps_of = {}
    for r in rows:
        dumps_of.setdefault((r["lang"], r["cluster"]), set()).add(r["dump"])
    for lang in ("en", "zh"):
        assert sum(len(d) > 1 for (lg, _), d in dumps_of.items() if lg == lang) >= 10
    edits = [r["jaccard_parent"] for r in rows if r["kind"] == "edit"]
    assert any(j >= 0.8 for j in edits) and any(j < 0.8 for j in edits)  # edits fall on both sides
    rewrites = [r["jaccard_parent"] for r in rows if r["kind"] == "rewrite"]
    assert sum(j < 0.8 for j in rewrites) >= 0.9 * len(rewrites)  # by design; the ground truth decides


def test_ingested_ids_join_the_ground_truth(corpus, tmp_path):
    out, truth = corpus
    stage = IngestStage(IngestConfig(inputs=[str(out / "crawl-data")]))
    docs = []
    for task in stage.tasks():
        stats = run_part(stage, task, str(tmp_path))
        assert stats["quarantined"] == 0 and stats["dropped"] == {"warcinfo": 1}
    for part in sorted(tmp_path.glob("part-*.parquet")):
        docs += pq.read_table(part).to_pylist()
    rows = {r["id"]: r for r in truth.docs.to_pylist()}
    assert sorted(d["id"] for d in docs) == sorted(rows)
    wet = _wet_records(out)
    for d in docs:
        r = rows[d["id"]]
        assert (d["dump"], d["url"], d["warc_record_id"]) == (r["dump"], r["url"], r["record_id"])
        assert d["text"] == wet[r["record_id"]]["text"]  # ingest keeps the text as written


def test_scale_corpus_schema_determinism_and_streaming(text_dir, tmp_path):
    dumps = DUMPS[:2]
    seen = []

    def on_part(result):  # parts are written one after the other: the next one is not there yet
        seen.append(sorted(p.name for d in dumps for p in (tmp_path / "a" / d).glob("part-*.parquet")))
        assert Path(result["path"]).is_file()

    totals = ds.build_scale_corpus(tmp_path / "a", text_dir, 2000, dumps, seed=0, files=2, batch_rows=200, on_part=on_part)
    assert [len(s) for s in seen] == [1, 2, 3, 4] and totals["docs"] == 2000
    ds.build_scale_corpus(tmp_path / "b", text_dir, 2000, dumps, seed=0, files=2, batch_rows=200)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    ds.build_scale_corpus(tmp_path / "c", text_dir, 2000, dumps, seed=0, files=2)  # other row groups, same rows
    assert pq.read_table(tmp_path / "c" / dumps[1]).equals(pq.read_table(tmp_path / "a" / dumps[1]))
    docs, truth = [], []
    for d in dumps:
        assert (tmp_path / "a" / d / "_SUCCESS").exists()
        for part in sorted((tmp_path / "a" / d).glob("part-*.parquet")):
            meta = pq.ParquetFile(part)
            assert meta.schema_arrow == DOCUMENT_SCHEMA and meta.num_row_groups >= 2  # written in batches
            docs += [{**r, "part": part.name} for r in pq.read_table(part).to_pylist()]
        truth += pq.read_table(tmp_path / "a" / "_truth" / d).to_pylist()
    assert len(docs) == 2000 and [d["id"] for d in docs] == [t["id"] for t in truth]
    assert len({d["id"] for d in docs}) == 2000
    for d in docs:
        assert d["id"] == document_id(d["warc_record_id"]) and d["lang"] in ("en", "zh") and d["dump"] in dumps
        assert d["text"] and d["date"] is None and d["lang_score"] is None
    kinds = {t["kind"] for t in truth}
    assert kinds == set(ds.SCALE_KINDS)
    assert 0.4 < sum(t["kind"] == "unique" for t in truth) / 2000 < 0.6
    first = {t["family"]: d for d, t in zip(docs, truth) if t["kind"] == "unique"}
    for d, t in zip(docs, truth):
        assert t["base"].startswith(d["lang"] + "-")
        if t["kind"] == "exact":
            assert d["text"] == first[t["family"]]["text"]
        elif t["kind"] == "near":
            a, b = (set(shingles(x, d["lang"])) for x in (d["text"], first[t["family"]]["text"]))
            assert 0.5 < dc.jaccard(a, b) < 1
    uniques = list(first.values())
    rng = random.Random(0)
    for _ in range(300):  # distinct families are far apart
        a, b = rng.sample(uniques, 2)
        if a["lang"] == b["lang"]:
            assert dc.jaccard(set(shingles(a["text"], a["lang"])), set(shingles(b["text"], b["lang"]))) < 0.5


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        dc.main(["--help"])
    assert exc.value.code == 0 and "corpus" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        ds.main(["--help"])
    assert exc.value.code == 0 and "--docs" in capsys.readouterr().out
