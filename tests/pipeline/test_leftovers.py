"""Issue 15, fault B: what a killed or disturbed run leaves in a stage's output folder is ignored or
redone, never trusted. On real stage output (ingest of the sample WARCs, filter reading it): a part
without its marker, a marker without its part, a half-written part under a temporary name, a
half-written part under its final name without a marker, a stray part no task makes, and (not a
leftover of our writer, which renames only whole files) a part damaged under its final name with
its marker: the rerun gives the undisturbed run's bytes (tests/crawlmill/demo_checksums.json) and
the downstream stage reads none of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from crawlmill.pipeline.parts import committed_parts, input_parts
from tests.pipeline.demo_stages import checksums, reference_checksums, run_only, write_demo_config

STAGES = ("ingest", "filter")


def truncate_to_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_leftovers_are_redone_or_ignored_never_trusted(ray_local, tmp_path: Path) -> None:
    root = tmp_path / "out"
    config = write_demo_config(tmp_path / "run.yaml", root)
    expected = reference_checksums(STAGES)
    assert run_only(config, "ingest").exit_code == 0
    ingest = root / "ingest"
    parts = [ingest / f"part-{i:05d}.parquet" for i in range(4)]
    markers = [ingest / f"_parts/part-{i:05d}.json" for i in range(4)]

    # A part damaged under its final name, its marker there, the stage marked finished: the marker
    # records the part's size, so the reader refuses it and names it ...
    whole = parts[2].read_bytes()
    truncate_to_half(parts[2])
    assert committed_parts(ingest)[1] == [markers[2]]
    refused = run_only(config, "filter")
    assert refused.exit_code == 2 and "part-00002.json are missing or not the size it records" in refused.output, refused.output
    # ... and a rerun of the stage (once _SUCCESS is gone) makes that part again, and only it.
    (ingest / "_SUCCESS").unlink()
    untouched = {p: p.stat().st_mtime_ns for p in parts if p != parts[2]}
    again = run_only(config, "ingest")
    assert again.exit_code == 0 and "3 part(s) were already finished" in again.output, again.output
    assert parts[2].read_bytes() == whole and all(p.stat().st_mtime_ns == t for p, t in untouched.items())

    # What killed runs and strays leave, one of each per part:
    markers[0].unlink()  # 0: a part without its marker (killed between the part and its marker)
    parts[1].unlink()  # 1: a marker without its part (a part lost, e.g. deleted on an object store)
    half = ingest / f".tmp-0123456789abcdef0123456789abcdef-{parts[2].name}"  # 2: killed while writing
    parts[2].rename(half)
    truncate_to_half(half)
    markers[2].unlink()
    truncate_to_half(parts[3])  # 3: half a part under its final name, no marker (not our writer's, but possible by hand)
    markers[3].unlink()
    stray = ingest / "part-00009.parquet"  # a whole, readable part no task of this run makes
    shutil.copy(ingest / "part-00000.parquet", stray)
    (ingest / "_SUCCESS").unlink()

    # Unfinished, the folder is refused downstream, and its leftovers are no part for a reader.
    refused = run_only(config, "filter")
    assert refused.exit_code == 2 and "has no _SUCCESS" in refused.output, refused.output
    assert not (root / "filter").exists()
    assert committed_parts(ingest) == ([], [markers[1]])

    # The rerun redoes every disturbed part and deletes the temporary; the stray stays, unread.
    again = run_only(config, "ingest")
    assert again.exit_code == 0, again.output
    assert not list(ingest.rglob(".tmp-*")) and stray.exists()
    assert input_parts(ingest) == [str(p) for p in parts]
    assert run_only(config, "filter").exit_code == 0
    assert json.loads((root / "filter/_tasks.json").read_text())["sources"] == [str(p) for p in parts]
    assert checksums(root, STAGES) == expected


@pytest.mark.parametrize("record", [True, False])
def test_a_marker_without_a_size_is_trusted_by_presence(tmp_path: Path, record: bool) -> None:
    """Markers of runs before sizes were recorded (and commit_folder's) have no `files`: their
    parts are checked for presence only, as before."""
    folder = tmp_path / "stage"
    (folder / "_parts").mkdir(parents=True)
    (folder / "part-00000.parquet").write_bytes(b"12345")
    marker = {"index": 0, **({"files": {"part-00000.parquet": 4}} if record else {})}
    (folder / "_parts/part-00000.json").write_text(json.dumps(marker))
    (folder / "_SUCCESS").write_text("")
    if record:
        with pytest.raises(FileNotFoundError, match="not the size it records"):
            input_parts(folder)
    else:
        assert input_parts(folder) == [str(folder / "part-00000.parquet")]
