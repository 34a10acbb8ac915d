"""Damaged and forged shard folders through the shard readers (shards/mmidx.py, shards/shardset.py):
`crawlmill shards inspect` and `verify` end in ShardError, or in a problem list, naming the file at
fault, in bounded time and memory; a damaged byte is never passed as a good shard.

The folder is written by pack's own `.idx` writer (tests/shards/shard_folder.py); hypothesis damages
one `.idx`, `.bin` or docs.parquet (cuts, flips, random bytes, forged header counts up to 2**64, a
forged header whose counts match the file size), or the manifest (keys set to garbage or deleted, its
text cut or flipped). tests/shards/test_mmidx.py has the reader's fixed cases and a seeded loop over
read_index alone; this file drives the whole folder readers.
"""

import copy
import json
import random
import struct
import tracemalloc
from pathlib import Path

import pytest
from crawlmill.shards.manifest import MANIFEST
from crawlmill.shards.mmidx import HEADER_SIZE, MAGIC, ShardError
from crawlmill.shards.shardset import inspect_shards, verify_shards
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzzing import fuzz_settings

from .shard_folder import (
    JSON_GARBAGE,
    copy_folder,
    damage_manifest,
    json_paths,
    write_shard_folder,
)

FUZZ = fuzz_settings(max_examples=150)
pytestmark = pytest.mark.usefixtures("fuzz_time_limit")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    folder = write_shard_folder(tmp_path_factory.mktemp("pristine") / "shards")
    assert verify_shards(folder)[0]["ok"]
    return folder


def damage(data: bytes, rng: random.Random, op: str) -> bytes:
    data = bytearray(data)
    if op == "cut":
        return bytes(data[: rng.randrange(len(data))])
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            data[at] ^= 1 << rng.randrange(8)
        return bytes(data)
    if op == "bytes":
        at = rng.randrange(len(data))
        data[at : at + 8] = rng.randbytes(8)
        return bytes(data)
    if op == "append":
        return bytes(data) + rng.randbytes(rng.choice([1, 2, 4, 8, 12, 20]))
    if op == "counts":  # forged counts, up to 2**64 - 1: nothing may be allocated from them
        sequences, documents = rng.choice([2**64 - 1, 2**60, 2**32, rng.randrange(2**64), rng.randrange(100)]), rng.randrange(2**64)
        data[18:HEADER_SIZE] = struct.pack("<QQ", sequences, documents)
        return bytes(data)
    # "forged": a header whose counts describe the file size exactly, over random arrays
    sequences = rng.randrange(0, 80)
    documents = rng.randrange(1, 80)
    code = rng.choice([1, 2, 3, 4, 5, 8])
    header = MAGIC + struct.pack("<QB", 1, code) + struct.pack("<QQ", sequences, documents)
    return header + rng.randbytes(12 * sequences + 8 * documents + rng.choice([0, sequences]))


def run_readers(folder: Path) -> tuple[str | None, list[str]]:
    """inspect's ShardError (None if it passed) and verify's problems, within a memory bound."""
    tracemalloc.start()
    try:
        try:
            inspect_shards(folder)
            inspected = None
        except ShardError as exc:
            inspected = str(exc)
        try:
            summary, problems = verify_shards(folder)
        except ShardError as exc:
            summary, problems = {"ok": False}, [str(exc)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # scan_tokens' fixed 16 MB buffer at most; a count-sized allocation would be terabytes.
    assert peak < 48 << 20, f"peak traced allocation {peak:,} bytes"
    assert summary["ok"] == (not problems)
    return inspected, problems


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    shard=st.integers(0, 1),
    kind=st.sampled_from(["idx", "idx", "bin", "docs.parquet"]),
    op=st.sampled_from(["cut", "flip", "bytes", "append", "counts", "forged"]),
)
@example(seed=0, shard=0, kind="idx", op="counts")
def test_damaged_shard_files_are_named_by_inspect_and_verify(pristine, tmp_path, seed, shard, kind, op):
    folder = copy_folder(pristine, tmp_path)
    if kind != "idx" and op in ("counts", "forged"):
        op = "bytes"
    path = folder / f"shard-{shard:05d}.{kind}"
    original = path.read_bytes()
    data = damage(original, random.Random(seed), op)
    path.write_bytes(data)
    inspected, problems = run_readers(folder)
    if data == original:
        assert inspected is None and not problems
        return
    # verify checks every byte (sha256 against the manifest): the damage is always found and the
    # problem names the damaged shard (its .idx, .bin or docs.parquet).
    assert problems and all(str(folder) in p for p in problems), problems
    assert any(f"shard-{shard:05d}." in p for p in problems), problems
    if inspected is not None:  # inspect reads the .idx and sizes the .bin: its errors name them too
        assert f"shard-{shard:05d}." in inspected, inspected


DELETE = object()


def test_every_manifest_entry_with_every_odd_value(tmp_path):
    """Every key and list item of a one-shard manifest, set to each odd value in turn or deleted:
    inspect and verify pass or fail with ShardError naming the folder's files."""
    folder = write_shard_folder(tmp_path / "shards", shards=1, documents=5)
    original = json.loads((folder / MANIFEST).read_text())
    for path in json_paths(original):
        for value in (None, 5, "x", [1], {"a": 1}, 2**64, True, DELETE):
            manifest = copy.deepcopy(original)
            parent = manifest
            for key in path[:-1]:
                parent = parent[key]
            if value is DELETE:
                del parent[path[-1]]
            else:
                parent[path[-1]] = value
            (folder / MANIFEST).write_text(json.dumps(manifest))
            for read in (inspect_shards, verify_shards):
                try:
                    read(folder)
                except ShardError as exc:
                    assert str(folder) in str(exc), (path, value, str(exc))


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["replace", "replace", "delete", "text"]), value=JSON_GARBAGE)
@example(seed=0, how="top", value=[1, 2])
def test_damaged_manifest_is_a_shard_error_naming_it(pristine, tmp_path, seed, how, value):
    folder = copy_folder(pristine, tmp_path)
    manifest_path = folder / MANIFEST
    manifest_path.write_bytes(damage_manifest(manifest_path.read_text(), random.Random(seed), how, value))
    inspected, problems = run_readers(folder)
    # Whatever the reader trips on names a file of this folder: the manifest, or a shard the damaged
    # manifest describes wrongly.
    for message in [inspected, *problems]:
        if message is not None:
            assert str(folder) in message, message
