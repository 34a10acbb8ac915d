"""Runs over several dumps (pipeline/dumps.py): the per-dump layout of a joint run, which dumps an
append run takes, and the state and blend it leaves. The Airflow DAGs run all of it end to end
against a Ray head and an HTTP server (tests/dags/)."""

from __future__ import annotations

import json

import pytest
import yaml

from crawlmill.pipeline import dumps
from crawlmill.pipeline.config import ConfigError, load_run_config
from crawlmill.pipeline.definition import PIPELINE
from crawlmill.pipeline.ingest.sources import InputError, resolve_named_sources
from crawlmill.pipeline.wiring import plan_runs, wire_stage_config
from tests.conftest import REPO

D1, D2, D3 = "CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-18"
SAMPLES = str(REPO / "samples/crawl-data/*/segments/*/warc/*.warc.gz")


def config_with(tmp_path, **sections):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"output_dir": "out", "ingest": {"inputs": [SAMPLES]}, **sections}))
    return load_run_config(path)


def test_the_dumps_section_is_checked_and_sorted(tmp_path):
    assert config_with(tmp_path, dumps={"ids": [D2, D1]}).dumps.ids == [D1, D2]
    for bad, message in (({"ids": ["2024-10"]}, "not a Common Crawl dump id"), ({"ids": [D1, D1]}, "listed twice"),
                         ({"max_new": 0}, "at least 1"), ({"idz": [D1]}, "unknown key")):  # fmt: skip
        with pytest.raises(ConfigError, match=message) as error:
            config_with(tmp_path, dumps=bad)
        assert "run.yaml.dumps" in str(error.value)


def test_a_joint_run_runs_the_per_dump_stages_per_dump_and_dedup_over_all(tmp_path):
    config = config_with(tmp_path, dumps={"ids": [D1, D2]})
    runs = plan_runs(config, PIPELINE.select(start=None))
    assert [r.key for r in runs][:5] == [f"ingest/{D1}", f"ingest/{D2}", f"filter/{D1}", f"filter/{D2}", "dedup"]
    out = tmp_path / "out"
    ingest = wire_stage_config(PIPELINE, PIPELINE.get("ingest"), config, D2)
    assert ingest.dump == ingest.only_dump == D2 and ingest.inputs == [SAMPLES]
    assert wire_stage_config(PIPELINE, PIPELINE.get("filter"), config, D2).inputs == [str(out / "ingest" / D2)]
    assert wire_stage_config(PIPELINE, PIPELINE.get("dedup"), config).inputs == [str(out / "filter" / D1), str(out / "filter" / D2)]
    # Quality is per dump after the joint dedup: each dump's parts of dedup's output; remix reads every dump's.
    assert wire_stage_config(PIPELINE, PIPELINE.get("remix"), config).inputs == [str(out / "dedup")]  # no quality section
    quality = {"train": {"positive": [f"en={REPO}/samples/quality/reference_en.txt"], "negative": [f"en={REPO}/samples/quality/web_en.txt"]}}
    with_quality = config_with(tmp_path, dumps={"ids": [D1, D2]}, quality=quality)
    assert [r.key for r in plan_runs(with_quality, PIPELINE.select(start="dedup"))][:3] == ["dedup", f"quality/{D1}", f"quality/{D2}"]
    q2 = wire_stage_config(PIPELINE, PIPELINE.get("quality"), with_quality, D2)
    assert q2.inputs == [str(out / "dedup")] and q2.dump == D2
    assert PIPELINE.folder("quality", with_quality, D2) == out / "quality" / D2
    assert wire_stage_config(PIPELINE, PIPELINE.get("remix"), with_quality).inputs == [str(out / "quality" / D1), str(out / "quality" / D2)]
    # --dump picks dumps of the config for the per-dump stages only.
    assert [r.key for r in plan_runs(config, [PIPELINE.get("ingest")], [D2])] == [f"ingest/{D2}"]
    with pytest.raises(ValueError, match="not among the config's dumps.ids"):
        plan_runs(config, [PIPELINE.get("ingest")], [D3])
    with pytest.raises(ValueError, match="dedup is not a per-dump stage"):
        plan_runs(config, [PIPELINE.get("dedup")], [D1])
    # Without a dumps section nothing changes: one ingest of every input, into out/ingest.
    plain = config_with(tmp_path)
    assert [r.key for r in plan_runs(plain, PIPELINE.select(only="ingest"))] == ["ingest"]
    assert PIPELINE.folder("ingest", plain) == out / "ingest"


def test_ingest_of_one_dump_takes_only_that_dumps_files():
    both = list(resolve_named_sources([SAMPLES]))
    mine = list(resolve_named_sources([SAMPLES], only_dump=D1))
    assert mine and set(mine) < set(both) and all(f"/crawl-data/{D1}/" in path for path in mine)
    with pytest.raises(InputError, match=f"no input file of dump {D3}"):
        resolve_named_sources([SAMPLES], only_dump=D3)


def test_appending_takes_every_stage_per_dump_with_one_tokenizer_and_the_dump_index(tmp_path):
    config = config_with(tmp_path)
    runs = plan_runs(config, PIPELINE.select(start="dedup"), [D2, D1], append=True)
    assert [r.key for r in runs[:2]] == [f"dedup/{D1}", f"quality/{D1}"] and runs[len(runs) // 2].key == f"dedup/{D2}"
    out = tmp_path / "out"
    assert PIPELINE.folder("remix", config, D1) == out / "remix" / D1
    assert PIPELINE.folder("tokenizer", config, D1) == out / "tokenizer"  # shared by every dump
    dedup = runs[0]
    assert dumps.prepare_append(config, PIPELINE, dedup) and config.dedup.index == str(out / "dedup" / dumps.INDEX_FOLDER)
    assert wire_stage_config(PIPELINE, dedup.spec, config, D1, append=True).inputs == [str(out / "filter" / D1)]
    pack = next(r for r in runs if r.spec.name == "pack")
    assert wire_stage_config(PIPELINE, pack.spec, config, D1, append=True).tokenizer == str(out / "tokenizer")
    train = next(r for r in runs if r.spec.name == "train")
    assert not dumps.prepare_append(config, PIPELINE, train)  # training is not part of appending


def test_new_dumps_come_from_the_crawl_list_oldest_first_and_never_twice(tmp_path):
    crawls = tmp_path / "collinfo.json"
    crawls.write_text(json.dumps([{"id": D3}, {"id": D2}, {"id": "not-a-dump"}, {"id": D1}, {"id": "CC-MAIN-2023-40"}]))
    assert dumps.crawl_list(str(crawls)) == ["CC-MAIN-2023-40", D1, D2, D3]
    config = dumps.DumpsConfig(collinfo_url=str(crawls), since=D1)
    out = tmp_path / "out"
    assert dumps.new_dumps(config, out) == [D1, D2, D3]
    assert dumps.new_dumps(dumps.DumpsConfig(collinfo_url=str(crawls), since=D1, max_new=1), out) == [D1]
    (out).mkdir()
    (out / dumps.STATE_FILE).write_text(json.dumps({"appended": [{"dump": D2}]}))
    assert dumps.new_dumps(config, out) == [D3]  # D1 is older than an appended dump: never taken
    assert dumps.check_append(out, [D2, D3]) == [D3]
    with pytest.raises(ValueError, match=f"older than {D2}"):
        dumps.check_append(out, [D1])
    crawls.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the crawl list"):
        dumps.crawl_list(str(crawls))


def _pack_output(folder, tokens, prefixes, sha="abc"):
    folder.mkdir(parents=True)
    weights = [1 / len(prefixes)] * len(prefixes)
    folder.joinpath("manifest.json").write_text(json.dumps({"tokens": tokens, "documents": tokens // 10, "tokenizer": {"sha256": sha},
                                                            "blend": {"prefixes": prefixes, "weights": weights}}))  # fmt: skip


def test_recording_a_dump_rewrites_the_blend_over_every_appended_dump(tmp_path):
    out = tmp_path / "out"
    _pack_output(out / "shards" / D1, 300, ["a-00000", "b-00000"])
    _pack_output(out / "shards" / D2, 100, ["a-00000"])
    dumps.record_appended(out, D1, out / "shards" / D1)
    blend = dumps.record_appended(out, D2, out / "shards" / D2)
    assert blend == json.loads((out / "shards/blend.json").read_text())
    assert blend["dumps"] == [D1, D2] and blend["weights"] == [0.75, 0.25] and blend["tokens"] == 400
    assert blend["data_path"] == [0.375, f"{D1}/a-00000", 0.375, f"{D1}/b-00000", 0.25, f"{D2}/a-00000"]
    assert dumps.record_appended(out, D2, out / "shards" / D2) == blend  # recording again changes nothing
    assert [e["dump"] for e in dumps.appended(out)] == [D1, D2]
    _pack_output(out / "shards" / D3, 100, ["a-00000"], sha="other")
    with pytest.raises(ValueError, match="different tokenizers"):
        dumps.record_appended(out, D3, out / "shards" / D3)
    assert [e["dump"] for e in dumps.appended(out)] == [D1, D2]  # nothing recorded


def test_a_joint_runs_dumps_are_recorded_first_and_blended_with_the_appended_ones(tmp_path):
    out = tmp_path / "out"
    _pack_output(out / "shards", 300, ["a-00000", "b-00000"])
    _pack_output(out / "shards" / D3, 100, ["a-00000"])
    dumps.record_joint(out, [D2, D1], out / "shards")
    assert dumps.recorded_dumps(out) == [D1, D2] and dumps.appended_dumps(out) == []
    assert dumps.new_dumps(dumps.DumpsConfig(), out, listed=["CC-MAIN-2023-40", D1, D2, D3]) == [D3]
    with pytest.raises(ValueError, match=f"older than {D2}"):
        dumps.check_append(out, ["CC-MAIN-2024-01"])
    blend = dumps.record_appended(out, D3, out / "shards" / D3)
    assert dumps.record_joint(out, [D1, D2], out / "shards") == blend  # recording again changes nothing
    assert [e.get("dumps", e.get("dump")) for e in dumps.appended(out)] == [[D1, D2], D3]
    assert blend["dumps"] == [D1, D2, D3] and blend["folders"] == [".", D3] and blend["weights"] == [0.75, 0.25]
    assert blend["data_path"] == [0.375, "a-00000", 0.375, "b-00000", 0.25, f"{D3}/a-00000"]  # relative to shards/
    state = out / dumps.STATE_FILE
    for entries, message in (([{"dumps": [D1], "shards": "elsewhere"}], "a joint run's entry is the first"),
                             ([{"dump": D3, "shards": D3}, {"dumps": [D1], "shards": "."}], "a joint run's entry is the first"),
                             ([{"dumps": [], "shards": "."}], "not a Common Crawl dump id"),
                             ([{"dumps": [D1, "x"], "shards": "."}], "not a Common Crawl dump id")):  # fmt: skip
        state.write_text(json.dumps({"appended": entries}))
        with pytest.raises(ValueError, match=message):
            dumps.appended(out)


def test_a_joint_run_in_an_object_store_is_recorded_and_blended(tmp_path):
    """The joint run's shards are "." in _dumps.json: joined literally it named the key
    `shards/./manifest.json`, and every joint run with an s3:// output failed once packed."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from crawlmill.files import as_path
    from tests.s3server import moto_s3

    local = tmp_path / "out"
    _pack_output(local / "shards", 300, ["a-00000", "b-00000"])
    _pack_output(local / "shards" / D3, 100, ["a-00000"])
    with moto_s3("dumps-bucket") as (fs, _):
        fs.put(str(local) + "/", "dumps-bucket/out/", recursive=True)
        out = as_path("s3://dumps-bucket/out")
        dumps.record_joint(out, [D1, D2], out / "shards")
        blend = dumps.record_appended(out, D3, out / "shards" / D3)
        assert dumps.recorded_dumps(out) == [D1, D2, D3] and blend["folders"] == [".", D3]
        assert blend["data_path"] == [0.375, "a-00000", 0.375, "b-00000", 0.25, f"{D3}/a-00000"]
        assert json.loads(fs.cat_file("dumps-bucket/out/shards/blend.json")) == blend


def test_a_dumps_parts_are_found_from_the_parquet_statistics(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from crawlmill.pipeline.parts import parts_of_dump

    def part(name, dumps, statistics=True):
        path = str(tmp_path / f"{name}.parquet")
        pq.write_table(pa.table({"id": [str(i) for i in range(len(dumps))], "dump": pa.array(dumps, pa.string())}), path,
                       row_group_size=2, write_statistics=statistics)  # fmt: skip
        return path

    one, two, later, empty, bare = part("one", [D1] * 5), part("two", [D2] * 3), part("later", [D2, D2, D2]), part("empty", []), part("bare", [D1] * 3, statistics=False)
    assert parts_of_dump([one, two, later, empty, bare], D1) == [one, bare]
    assert parts_of_dump([one, two, later, empty], D2) == [two, later]
    mixed = part("mixed", [D1, D1, D2])
    with pytest.raises(ValueError, match="holds documents of .* and of other dumps"):
        parts_of_dump([one, mixed], D2)


def test_a_joint_run_is_refused_in_an_output_made_by_appending(tmp_path):
    """Its dedup would join the index after the appended dumps (usually newer), yet be recorded first."""
    out = tmp_path / "out"
    _pack_output(out / "shards" / D2, 100, ["a-00000"])
    dumps.record_appended(out, D2, out / "shards" / D2)
    config = config_with(tmp_path, dumps={"ids": [D1]})
    with pytest.raises(ValueError, match=rf"made by appending dumps \({D2}\): a joint run cannot come before them"):
        dumps.prepare_joint(config, PIPELINE)
