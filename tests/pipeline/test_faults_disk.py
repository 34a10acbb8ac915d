"""Issue 15, fault A: the disk fills up. A real full disk (a small tmpfs mounted as the output
folder), filling in the middle of filter's part writes, in the middle of dedup's steps, and at the
driver's own writes (_tasks.json, _stats.json): the run exits non-zero with an error naming the
file being written and saying no space is left, nothing is marked complete, no half-written file is
under a final name; once space is freed the rerun finishes with the undisturbed run's bytes
(tests/crawlmill/demo_checksums.json). Then the storage layer alone (crawlmill/files.py): an empty
_SUCCESS refused by a disk out of inodes or read-only names _SUCCESS, and errors raised in a
writer's block that are not about the write (a source's) keep their type and text.

The tmpfs needs root (or CAP_SYS_ADMIN) to mount; those tests skip with that reason otherwise."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest

from crawlmill.files import atomic_path, atomic_write_text
from crawlmill.pipeline.stage import SourceReadError
from tests.pipeline.demo_stages import MISSING, checksums, reference_checksums, run_only, write_demo_config

STAGES = ("ingest", "filter", "dedup")
ROOMY = 64 << 20
# What the CLI prints for a write the disk refused: errno 28 and the file's name (crawlmill/files.py).
NO_SPACE = re.compile(r"\[Errno 28\] No space left on device: '([^']+)'")


class SmallDisk:
    """A tmpfs mounted at `path` whose size the test sets: `limit(free)` leaves `free` bytes beyond
    what is used now, `fill()` takes all that is left, `roomy()` gives space back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"

    def _mount(self, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run(["mount", *options, str(self.path)], capture_output=True, text=True)

    def used(self) -> int:
        stat = os.statvfs(self.path)
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize

    def remount(self, options: str) -> None:
        done = self._mount("-o", f"remount,{options}")
        assert done.returncode == 0, done.stderr

    def resize(self, size: int) -> None:
        self.remount(f"size={size}")

    def limit(self, free: int) -> None:
        self.resize(self.used() + free)

    def roomy(self) -> None:
        self.filler.unlink(missing_ok=True)
        self.resize(ROOMY)

    def fill(self) -> None:
        """Write zeros until the disk refuses: nothing is left for anyone (tmpfs pages are real)."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)  # unbuffered: nothing to flush at close
        try:
            while os.write(fd, b"\0" * 65536):
                pass
        except OSError as exc:
            assert exc.errno == 28, exc
        finally:
            os.close(fd)
        assert os.statvfs(self.path).f_bavail == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    path = tmp_path / "disk"
    path.mkdir()
    disk = SmallDisk(path)
    mounted = disk._mount("-t", "tmpfs", "-o", f"size={ROOMY}", "tmpfs")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # a straggling reader: detach now, freed when it closes


def refused_file(output: str) -> Path:
    """The file a 'No space left' error in the command's output names."""
    found = NO_SPACE.search(output)
    assert found, f"no '[Errno 28] No space left on device: FILE' in:\n{output}"
    return Path(found.group(1))


def assert_nothing_half_written(root: Path) -> None:
    """Under final names only whole files: every Parquet file has its footer, every JSON parses,
    and no temporary is left (a failed write deletes its own)."""
    assert not [p for p in root.rglob(".tmp-*")]
    for path in root.rglob("*.parquet"):
        pq.read_metadata(path)
    for path in root.rglob("*.json"):
        json.loads(path.read_text())


def test_full_disk_fails_with_the_file_named_and_the_rerun_gives_the_same_bytes(ray_local, small_disk: SmallDisk, tmp_path: Path) -> None:
    root = small_disk.path / "out"
    config = write_demo_config(tmp_path / "run.yaml", root)
    expected = reference_checksums(STAGES)
    assert run_only(config, "ingest").exit_code == 0

    # Filter fills the disk halfway through its parts: each part is about the size of its input part,
    # so half of ingest's bytes hold its _tasks.json and some parts but not all. One task at a time:
    # two parts written at once can both be refused near their ends (seen in CI), then the next two.
    small_disk.limit(sum(p.stat().st_blocks * 512 for p in (root / "ingest").glob("part-*.parquet")) // 2)
    failed = run_only(config, "filter", "--max-in-flight", "1")
    # Tasks failed: status 1, rerun to retry (the run's summary, _run.json, is not written on the full disk: a warning)
    assert failed.exit_code == 1, failed.output
    named = refused_file(failed.output)
    assert named.parent in (root / "filter", root / "filter/_parts") and not named.name.startswith(".tmp-"), named
    sources = {str(root / f"ingest/part-{i:05d}.parquet"): i for i in range(4)}
    failed_parts = {sources[m.group(1)] for m in re.finditer(r"failed (\S+): OSError: \[Errno 28\]", failed.output)}
    done_parts = {int(p.stem.split("-")[1]) for p in (root / "filter/_parts").glob("part-*.json")}
    assert failed_parts and done_parts, f"the disk should fill in the middle of filter: failed {failed_parts}, done {done_parts}"
    assert not failed_parts & done_parts  # a failed part has no marker
    assert not (root / "filter/_SUCCESS").exists() and not (root / "filter/_stats.json").exists()
    assert_nothing_half_written(root)
    found = checksums(root, STAGES)
    for name in expected:  # each filter file there is the undisturbed run's, whole
        if name.startswith("filter/"):
            assert found[name] in (expected[name], MISSING), name

    small_disk.roomy()
    again = run_only(config, "filter")
    assert again.exit_code == 0, again.output
    assert f"{len(done_parts)} part(s) were already finished" in again.output

    # The driver's own writes on a full disk: dedup's record of its inputs (_tasks.json, its first
    # write), then filter's _stats.json (every part done, the stage about to be marked finished).
    small_disk.fill()
    refused = run_only(config, "dedup")
    assert refused.exit_code == 1 and refused_file(refused.output) == root / "dedup/_tasks.json", refused.output
    assert not (root / "dedup/_tasks.json").exists()  # a half-written record would refuse every rerun
    (root / "filter/_SUCCESS").unlink()
    (root / "filter/_stats.json").unlink()
    small_disk.fill()  # the page _stats.json held is free again
    refused = run_only(config, "filter")
    assert refused.exit_code == 1 and refused_file(refused.output) == root / "filter/_stats.json", refused.output
    assert not (root / "filter/_SUCCESS").exists() and not (root / "filter/_stats.json").exists()
    assert_nothing_half_written(root)
    small_disk.roomy()
    assert run_only(config, "filter").exit_code == 0

    # Dedup fills the disk between its steps: its shuffle files and markers are small and many
    # (a page each on tmpfs), several times filter's output in all.
    small_disk.limit(sum(p.stat().st_blocks * 512 for p in (root / "filter").rglob("*") if p.is_file()))
    failed = run_only(config, "dedup")
    assert failed.exit_code == 1, failed.output  # a task's write or the driver's (the dedup report)
    assert refused_file(failed.output).is_relative_to(root / "dedup"), failed.output
    steps_done = [p.parent.name for p in (root / "dedup/_work/_done").glob("*/*.json")]
    assert steps_done, "the disk should fill in the middle of dedup, after its first tasks"
    assert not (root / "dedup/_SUCCESS").exists() and not (root / "dedup/_stats.json").exists()
    assert_nothing_half_written(root)

    small_disk.roomy()
    again = run_only(config, "dedup")
    assert again.exit_code == 0, again.output
    assert checksums(root, STAGES) == expected


def test_an_empty_marker_refused_by_the_disk_names_its_file(small_disk: SmallDisk) -> None:
    """_SUCCESS is empty: a disk without free blocks still takes it, one without free inodes or a
    read-only one refuses even that, and the error names _SUCCESS, not its temporary."""
    folder = small_disk.path / "stage"
    folder.mkdir()
    stat = os.statvfs(small_disk.path)
    small_disk.remount(f"nr_inodes={stat.f_files - stat.f_ffree}")  # every inode taken
    with pytest.raises(OSError) as refused:
        atomic_write_text(folder / "_SUCCESS", "")
    assert (refused.value.errno, refused.value.filename) == (errno.ENOSPC, str(folder / "_SUCCESS"))
    small_disk.remount("nr_inodes=1000,ro")
    with pytest.raises(OSError) as refused:  # deleting the temporary fails too: the write's error is raised
        atomic_write_text(folder / "_SUCCESS", "")
    assert (refused.value.errno, refused.value.filename) == (errno.EROFS, str(folder / "_SUCCESS"))
    small_disk.remount("rw")
    assert list(folder.iterdir()) == []


def test_errors_not_about_the_write_are_left_as_they_are(tmp_path: Path) -> None:
    """Inside a writer's block a stage also reads: a source's error keeps its type (Ray retries
    SourceReadError by type) and its file name; a read error without an errno is no write error."""
    final = tmp_path / "part-00000.parquet"
    with pytest.raises(SourceReadError, match="connection reset"):
        with atomic_path(final):
            raise SourceReadError("s3://bucket/a.warc.gz: connection reset")
    with pytest.raises(FileNotFoundError) as missing:
        with atomic_path(final):
            open(tmp_path / "no-such-source.warc.gz", "rb")
    assert missing.value.filename == str(tmp_path / "no-such-source.warc.gz")
    with pytest.raises(OSError, match="^Parquet magic bytes not found") as corrupt:
        with atomic_path(final):
            raise OSError("Parquet magic bytes not found in footer")  # pyarrow reading a damaged input
    assert corrupt.value.filename is None
    with pytest.raises(OSError) as full:  # pyarrow's write error: the errno, no file name
        with atomic_path(final):
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert str(full.value) == f"[Errno 28] No space left on device: '{final}'"
    with pytest.raises(OSError) as full:  # tokenizers' save (Rust): a plain Exception
        with atomic_path(final):
            raise Exception("No space left on device (os error 28)")
    assert str(full.value) == f"[Errno 28] No space left on device: '{final}'"
    with pytest.raises(Exception, match="^vocabulary too small$"):
        with atomic_path(final):
            raise Exception("vocabulary too small")
    assert list(tmp_path.iterdir()) == []
