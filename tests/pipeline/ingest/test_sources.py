"""Input expansion, and --dump resolution against a local HTTP server laid out like Common Crawl's bucket."""

import functools
import gzip
import http.server
import json
import shutil
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from crawlmill.pipeline.ingest.sources import InputError, display_name, dump_from_path, dump_listing, expand_inputs
from crawlmill.pipeline.ingest.config import IngestConfig
from crawlmill.pipeline.ingest.stage import IngestStage
from crawlmill.pipeline.runner import run_stage

DUMP = "CC-MAIN-2024-22"


@pytest.fixture
def cc_server(shared_data, tmp_path):
    """127.0.0.1 server: crawl-data/<dump>/{wet,warc}.paths.gz and the files they list."""
    root = tmp_path / "bucket"
    files = {
        "wet": [shared_data / "cc/whirlwind/whirlwind.warc.wet.gz", shared_data / "cc/resiliparse/warcfile.warc.gz"],
        "warc": [shared_data / "cc/whirlwind/whirlwind.warc.gz"],
    }
    for kind, sources in files.items():
        listed = []
        for i, src in enumerate(sources):
            rel = f"crawl-data/{DUMP}/segments/1715971057216.39/{kind}/CC-MAIN-20240520-{i:05d}.{'warc.wet.gz' if kind == 'wet' else 'warc.gz'}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / rel)
            listed.append(rel)
        (root / f"crawl-data/{DUMP}/{kind}.paths.gz").write_bytes(gzip.compress("\n".join(listed).encode() + b"\n"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_dump_listing_resolves_paths_under_the_base_url(cc_server):
    urls = dump_listing(DUMP, cc_server, "wet")
    assert urls == [
        f"{cc_server}crawl-data/{DUMP}/segments/1715971057216.39/wet/CC-MAIN-20240520-00000.warc.wet.gz",
        f"{cc_server}crawl-data/{DUMP}/segments/1715971057216.39/wet/CC-MAIN-20240520-00001.warc.wet.gz",
    ]
    assert dump_listing(DUMP, cc_server.rstrip("/"), "wet", max_files=1) == urls[:1]


def test_ingest_streams_a_dump_from_the_server(ray_local, cc_server, tmp_path):
    out = tmp_path / "out"
    result = run_stage(IngestStage(IngestConfig(dump=DUMP, base_url=cc_server)), out, progress=False)
    assert result.ok and result.stats["kept"] == 17
    docs = pq.read_table(out).to_pylist()
    assert {d["warc_file"].split("/segments/")[0] for d in docs} == {f"crawl-data/{DUMP}"}
    # The renamed 2020 WARC has CC-MAIN-2020-34 in its warcinfo: the dump whose listing and path it
    # was taken from is its rows' (a dump's later stages read them by it), the warcinfo's is counted.
    assert {d["dump"] for d in docs} == {DUMP}
    assert result.stats["counters"]["warcinfo_dump_differs_from_path"] == 1


MISSING = f"crawl-data/{DUMP}/segments/1715971057216.39/wet/CC-MAIN-20240520-00009.warc.wet.gz"


def list_a_missing_file(bucket: Path) -> None:
    """The server's wet.paths.gz lists MISSING (not on the server: a 404) between its two files."""
    listing = bucket / f"crawl-data/{DUMP}/wet.paths.gz"
    lines = gzip.decompress(listing.read_bytes()).decode().split()
    listing.write_bytes(gzip.compress("\n".join([lines[0], MISSING, lines[1]]).encode() + b"\n"))


def test_a_listed_file_missing_on_the_server_fails_its_task_and_a_rerun_retries_only_it(ray_local, cc_server, shared_data, tmp_path):
    """A 404 is no damage of the file's content: the stage ends without _SUCCESS, exit 1, the file and
    the cause named, nothing quarantined; once the file is there, the same command reads only it."""
    from typer.testing import CliRunner

    from crawlmill.cli import app

    list_a_missing_file(tmp_path / "bucket")
    out, url = tmp_path / "out", cc_server + MISSING
    command = ["ingest", "--dump", DUMP, "--base-url", cc_server, "--output", str(out), "--no-progress"]
    failed = CliRunner().invoke(app, command)
    assert failed.exit_code == 1, failed.output
    assert f"failed {url}: FileNotFoundError: cannot read {url}: no such file" in failed.stderr
    assert "1 task(s) failed; rerun the same command to retry only those." in failed.stderr
    assert not (out / "_SUCCESS").exists() and not (out / "_quarantine").exists()
    assert sorted(p.name for p in out.glob("part-*.parquet")) == ["part-00000.parquet", "part-00002.parquet"]

    shutil.copy(shared_data / "cc/whirlwind/whirlwind.warc.wet.gz", tmp_path / "bucket" / MISSING)  # the mirror has it now
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "(2 part(s) were already finished and were skipped)" in again.stdout and (out / "_SUCCESS").exists()
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["parts"] == 3 and stats["quarantined"] == 0 and stats["kept"] == 17 + 1


def test_unreadable_sources_quarantine_finishes_a_dump_without_a_file_gone_for_good(ray_local, cc_server, tmp_path):
    """`unreadable_sources: quarantine` (a config setting, no option): the failed run's folder is
    finished by the same command with it, the missing file an `unreadable_source` entry; the parts
    read before are kept (the setting is not in the folder's fingerprint)."""
    from typer.testing import CliRunner

    from crawlmill.cli import app

    list_a_missing_file(tmp_path / "bucket")
    out, url = tmp_path / "out", cc_server + MISSING
    command = ["ingest", "--dump", DUMP, "--base-url", cc_server, "--output", str(out), "--no-progress"]
    assert CliRunner().invoke(app, command).exit_code == 1
    (tmp_path / "ingest.yaml").write_text("unreadable_sources: quarantine\n")
    finished = CliRunner().invoke(app, [*command, "--config", str(tmp_path / "ingest.yaml")])
    assert finished.exit_code == 0, finished.output
    assert "(2 part(s) were already finished and were skipped)" in finished.stdout and (out / "_SUCCESS").exists()
    quarantine = pq.read_table(out / "_quarantine").to_pylist()
    assert [(q["error"], q["source"]) for q in quarantine] == [("unreadable_source", url)]
    assert quarantine[0]["detail"].startswith("FileNotFoundError: ")
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["parts"] == 3 and stats["quarantined"] == 1 and stats["kept"] == 17
    with pytest.raises(ValueError, match="unreadable_sources 'skip': choose one of fail, quarantine"):
        IngestConfig(dump=DUMP, unreadable_sources="skip")


def test_an_append_run_never_records_a_dump_whose_ingest_failed(ray_local, cc_server, tmp_path):
    """`crawlmill run --append` (the crawlmill_new_dump DAG's command): a file of the dump's listing
    missing fails ingest, so the run stops there, exit 1, and `_dumps.json` does not name the dump:
    the next run takes it again."""
    import yaml
    from typer.testing import CliRunner

    from crawlmill.cli import app
    from crawlmill.pipeline import dumps

    list_a_missing_file(tmp_path / "bucket")
    out = tmp_path / "run"
    config = {"output_dir": str(out), "ray": {"num_cpus": 2}, "ingest": {"base_url": cc_server}, "tokenizer": {"vocab_size": 600}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "run.yaml"), "--append", "--dump", DUMP, "--no-progress"])
    assert result.exit_code == 1, result.output
    assert f"failed {cc_server + MISSING}: FileNotFoundError" in result.stderr and "ingest: 1 task(s) failed" in result.stderr
    assert not (out / dumps.STATE_FILE).exists() and dumps.appended(out) == []
    assert not (out / "ingest" / DUMP / "_SUCCESS").exists() and not (out / "filter").exists()
    assert dumps.check_append(out, [DUMP]) == [DUMP]  # not "already appended": the next run does it again


def test_bad_dump_ids_and_missing_listings_are_clear_errors(cc_server):
    with pytest.raises(InputError, match="not a Common Crawl dump id"):
        dump_listing("2024-22", cc_server)
    with pytest.raises(InputError, match="cannot read the paths listing"):
        dump_listing("CC-MAIN-1999-01", cc_server)
    with pytest.raises(InputError, match="choose wet or warc"):
        dump_listing(DUMP, cc_server, "pdf")


def test_expand_inputs_folders_globs_files_and_urls(tmp_path):
    for name in ["a.warc.gz", "b.warc.wet.gz", "sub/c.warc", "sub/readme.txt", "d.wat.gz"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    names = lambda paths: [Path(p).relative_to(tmp_path).as_posix() for p in paths]  # noqa: E731
    assert names(expand_inputs([str(tmp_path)])) == ["a.warc.gz", "b.warc.wet.gz", "sub/c.warc"]  # no .wat: no text
    assert names(expand_inputs([str(tmp_path / "*.gz"), str(tmp_path / "sub/readme.txt")])) == [
        "a.warc.gz", "b.warc.wet.gz", "d.wat.gz", "sub/readme.txt"]
    assert expand_inputs(["https://x.example/a.warc.gz"]) == ["https://x.example/a.warc.gz"]
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([str(tmp_path / "nope.warc.gz")])
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.arc")])


def test_names_and_dump_ids_from_paths():
    url = "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-22/segments/1/wet/x.warc.wet.gz"
    assert dump_from_path(url) == "CC-MAIN-2024-22"
    assert display_name(url) == "crawl-data/CC-MAIN-2024-22/segments/1/wet/x.warc.wet.gz"
    assert dump_from_path("/data/x.warc.gz") is None and display_name("/data/x.warc.gz") == "/data/x.warc.gz"


def test_wat_is_refused_as_a_format_and_left_out_of_folder_searches(tmp_path):
    from typer.testing import CliRunner

    from crawlmill.cli import app

    refused = "WAT files hold metadata, no page text: choose wet or warc"
    with pytest.raises(ValueError, match=f"format 'wat': {refused}"):
        IngestConfig(dump=DUMP, format="wat")
    with pytest.raises(InputError, match=f"--format wat: {refused}"):
        dump_listing(DUMP, "http://127.0.0.1:9/", "wat")  # refused before any request
    result = CliRunner().invoke(app, ["ingest", "--dump", DUMP, "--format", "wat", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and f"format 'wat': {refused}" in result.output and not (tmp_path / "o").exists()
    help_text = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"}).output
    assert "not wat (metadata, no page text)" in help_text

    # A folder holding only WAT files: nothing to read, and the message says why.
    (tmp_path / "wat/sub").mkdir(parents=True)
    for name in ["wat/x.warc.wat.gz", "wat/sub/y.wat"]:
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(InputError) as error:
        expand_inputs([str(tmp_path / "wat")])
    assert str(error.value) == f"{tmp_path / 'wat'}: the folder holds no .warc/.wet(.gz) file (2 .wat file(s) skipped: WAT files hold metadata, no page text)"
    # Named explicitly (or by a glob), a .wat file is still read.
    assert expand_inputs([str(tmp_path / "wat/x.warc.wat.gz")]) == [str((tmp_path / "wat/x.warc.wat.gz").resolve())]
    assert len(expand_inputs([str(tmp_path / "wat/**/*")])) == 2
