"""The Airflow DAG crawlmill_new_dump (dags/): real Airflow and a real Ray head (conftest.py), and a
loopback HTTP server in the role of data.commoncrawl.org and index.commoncrawl.org: it serves a crawl
list (collinfo.json), each dump's wet.paths.gz and the WET files.

One test, three DAG runs: the first appends the two dumps of the list; then a third dump appears
(half copies of earlier pages, half new text) and the second run appends only it, deduplicated
against the first two as one joint dedup of all three would; the third run finds nothing new and
does nothing."""

from __future__ import annotations

import functools
import gzip
import http.server
import importlib.util
import json
import shutil
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.conftest import REPO

from .conftest import jobs_of_run, load_dags, no_ray_address_env, poll_quickly

pytestmark = pytest.mark.heavy(135)  # seconds on 2 cores: runs first (tests/conftest.py)

if importlib.util.find_spec("airflow") is None:
    pytest.skip(
        "apache-airflow is not installed (the `airflow` extra: pip install -c constraints.txt -e '.[airflow]')",
        allow_module_level=True,
    )

DAG_ID = "crawlmill_new_dump"
D1, D2, D3 = "CC-MAIN-2023-50", "CC-MAIN-2024-10", "CC-MAIN-2024-18"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: ANN002 - the test's output stays readable
        pass


@pytest.fixture
def crawl_site(tmp_path):
    """A folder served on 127.0.0.1 as Common Crawl serves crawl-data/: yields (folder, base URL)."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "samples/crawl-data", site / "crawl-data", ignore=shutil.ignore_patterns("warc", "warc.paths.gz"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _list_crawls(site: Path, dumps: list[str]) -> None:
    (site / "collinfo.json").write_text(json.dumps([{"id": d, "name": f"crawl {d}"} for d in reversed(dumps)]))


def _publish_third_dump(site: Path, earlier_filter: Path) -> list[str]:
    """D3's one WET file: copies of 6 pages an earlier dump kept, and 4 pages of new text. Returns the
    URLs of the copies."""
    from crawlmill.corpora.warc_records import gzip_members, record, warcinfo

    earlier = pq.read_table(sorted(earlier_filter.glob("part-*.parquet"))[0], columns=["url", "text", "lang"]).to_pylist()[:6]
    lines = (REPO / "samples/quality/reference_en.txt").read_text().splitlines()
    new = [{"url": f"https://www.example-new.org/article/{i}", "text": "\n".join(lines[3 * i : 3 * i + 3]), "lang": "en"} for i in range(4)]
    records = [warcinfo(D3)]
    for page in earlier + new:
        language = {"en": "eng", "zh": "zho"}.get(page["lang"], "eng")
        records.append(record("conversion", page["text"].encode(), page["url"],
                              extra={"WARC-Identified-Content-Language": language, "Content-Type": "text/plain"}))  # fmt: skip
    path = f"crawl-data/{D3}/segments/1713000000000.00/wet/CC-MAIN-20240418000000-20240418030000-00000.warc.wet.gz"
    (site / path).parent.mkdir(parents=True)
    (site / path).write_bytes(gzip_members(records))
    (site / f"crawl-data/{D3}/wet.paths.gz").write_bytes(gzip.compress(f"{path}\n".encode(), mtime=0))
    return [page["url"] for page in earlier]


def _ids(folder: Path) -> set[str]:
    return {row for part in sorted(folder.glob("part-*.parquet")) for row in pq.read_table(part, columns=["id"])["id"].to_pylist()}


def _packed_ids(shards: Path) -> set[str]:
    return {row for docs in shards.glob("*.docs.parquet") for row in pq.read_table(docs, columns=["id"])["id"].to_pylist()}


def _submit_and_wait(client, entrypoint: str) -> str:
    sid = client.submit_job(entrypoint=entrypoint)
    deadline = time.monotonic() + 300
    while str(client.get_job_status(sid).value) not in {"SUCCEEDED", "FAILED", "STOPPED"}:
        assert time.monotonic() < deadline, client.get_job_logs(sid)
        time.sleep(0.2)
    assert str(client.get_job_status(sid).value) == "SUCCEEDED", client.get_job_logs(sid)
    return client.get_job_logs(sid)


def test_new_dumps_are_appended_once_each_and_dedup_as_one_joint_run(airflow_home, ray_head, client, crawl_site, tmp_path):
    bag = load_dags()
    dag = poll_quickly(bag.dags[DAG_ID])
    assert [t.task_id for t in dag.tasks] == ["find_new_dumps", "append", "per_dump_ingest.ingest", "per_dump_ingest.filter"]
    assert dag.max_active_runs == 1

    site, base_url = crawl_site
    out = tmp_path / "out"
    config = tmp_path / "crawl.yaml"
    config.write_text(yaml.safe_dump({
        "output_dir": str(out),
        "ingest": {"base_url": base_url, "format": "wet"},
        "filter": {"language_id": {"keep": {"en": 0.65, "zh": 0.65}}},
        "dumps": {"collinfo_url": base_url + "collinfo.json", "since": D1},
        "tokenizer": {"vocab_size": 500},
    }))  # fmt: skip
    _list_crawls(site, ["CC-MAIN-2023-40", D1, D2])  # an older dump than `since` is never taken
    conf = {"config": str(config), "ray_address": ray_head}

    def run_dag():
        with no_ray_address_env():
            run = dag.test(run_conf=conf)
        assert run.state == "success"
        return run, jobs_of_run(client, run.run_id)

    # First run: both dumps of the list, each through its own folders.
    first, jobs = run_dag()
    assert [e["dump"] for e in json.loads((out / "_dumps.json").read_text())["appended"]] == [D1, D2]
    assert len(jobs) == 2 * 2 + 1 and set(jobs.values()) == {"SUCCEEDED"}  # ingest and filter per dump, one append
    blend = json.loads((out / "shards/blend.json").read_text())
    assert blend["dumps"] == [D1, D2] and blend["folders"] == [D1, D2]
    before = {p: p.stat().st_mtime_ns for d in (D1, D2) for stage in ("ingest", "dedup", "shards") for p in (out / stage / d).rglob("*") if p.is_file()}

    # A third dump is published: the second run appends it alone.
    copies = _publish_third_dump(site, out / "filter" / D1)
    _list_crawls(site, ["CC-MAIN-2023-40", D1, D2, D3])
    second, jobs = run_dag()
    assert [e["dump"] for e in json.loads((out / "_dumps.json").read_text())["appended"]] == [D1, D2, D3]
    assert len(jobs) == 2 + 1 and set(jobs.values()) == {"SUCCEEDED"}
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # earlier dumps untouched
    dedup3 = json.loads((out / "dedup" / D3 / "_stats.json").read_text())
    assert dedup3["in"] == json.loads((out / "filter" / D3 / "_stats.json").read_text())["kept"] >= 8
    assert sum(dedup3["dropped"].values()) == len(copies) and dedup3["kept"] == dedup3["in"] - len(copies)
    blend = json.loads((out / "shards/blend.json").read_text())
    assert blend["dumps"] == [D1, D2, D3] and sum(blend["weights"]) == pytest.approx(1.0)
    assert blend["tokens"] == sum(json.loads((out / "shards" / d / "manifest.json").read_text())["tokens"] for d in (D1, D2, D3))
    # The append job's summary accounts for every appended dump, each stage against the one it reads.
    summary = json.loads((out / "_run.json").read_text())
    passed = {(c["check"], c["stage"]) for c in summary["checks"] if c["ok"]}
    assert summary["ok"] and {(check, f"{stage}/{d}") for d in (D1, D2, D3) for check in ("chain", "balance") for stage in ("dedup", "pack")} <= passed
    assert {("tokens", f"pack/{d}") for d in (D1, D2, D3)} <= passed

    # The three appended dumps keep exactly what one joint dedup of all three keeps, and pack it all.
    filters = " ".join(str(out / "filter" / d) for d in (D1, D2, D3))
    _submit_and_wait(client, f"crawlmill dedup {filters} --output {tmp_path / 'joint'} --no-progress")
    appended_ids = set().union(*(_ids(out / "dedup" / d) for d in (D1, D2, D3)))
    assert appended_ids == _ids(tmp_path / "joint")
    assert set().union(*(_packed_ids(out / "shards" / d) for d in (D1, D2, D3))) == appended_ids

    # Nothing new: the run succeeds and submits nothing.
    third, jobs = run_dag()
    assert jobs == {}
    states = {ti.task_id: ti.state for ti in third.get_task_instances()}
    assert states["find_new_dumps"] == "success" and states["append"] == "skipped"
    assert len(json.loads((out / "_dumps.json").read_text())["appended"]) == 3


def test_a_config_mistake_fails_each_dumps_task_once_without_retries(airflow_home, ray_head, client, crawl_site, tmp_path, capfd):
    """`ingest: {base_ur: ...}`: each mapped ingest job exits 2 (bad config); its task fails at once
    instead of retrying (CRAWLMILL_DAG_RETRIES=1 here; by default 2, 300 s apart) what cannot change."""
    dag = poll_quickly(load_dags().dags[DAG_ID])
    site, base_url = crawl_site
    _list_crawls(site, [D1, D2])
    config = tmp_path / "crawl_bad.yaml"
    config.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "ingest": {"base_ur": base_url},
                                      "dumps": {"collinfo_url": base_url + "collinfo.json"}}))  # fmt: skip
    with no_ray_address_env():
        run = dag.test(run_conf={"config": str(config), "ray_address": ray_head})
    log = capfd.readouterr()
    assert run.state == "failed"
    assert "unknown key(s) base_ur (did you mean base_url?)" in log.out + log.err
    jobs = jobs_of_run(client, run.run_id)
    assert len(jobs) == 2 and all(sid.endswith("-try1") for sid in jobs) and set(jobs.values()) == {"FAILED"}
    states = {(ti.task_id, ti.map_index): (ti.state, ti.try_number) for ti in run.get_task_instances()}
    assert states[("per_dump_ingest.ingest", 0)] == states[("per_dump_ingest.ingest", 1)] == ("failed", 1)
    assert states[("append", -1)][0] == "upstream_failed"
