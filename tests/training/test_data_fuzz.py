"""Damaged training data fails with ShardError naming the file, before Megatron reads it or as the
sample is read, never with a KeyError, TypeError, AssertionError or IndexError from inside.

The data is a small pack output folder made by pack's own writer (tests/shards/shard_folder.py) and
read the way training reads it (training/data.py: ShardData over Megatron's GPTDataset). Hypothesis
damages its manifest.json (keys set to garbage or deleted, its text flipped or cut) and its .bin and
.idx files (cuts, flips, random bytes, appended bytes); fixed cases cover a missing .bin, an .idx of
another shard, and token ids outside the vocabulary (above it, and negative in an int32 shard), which
must stop training at its first batch with the shard named.
"""

import random
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
from crawlmill.shards.manifest import MANIFEST
from crawlmill.shards.mmidx import ShardError
from crawlmill.training.config import load_train_config
from crawlmill.training.data import ShardData
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzzing import fuzz_settings
from tests.shards.shard_folder import (
    JSON_GARBAGE,
    VOCAB,
    copy_folder,
    damage_manifest,
    write_shard_folder,
)

FUZZ = fuzz_settings(max_examples=120)
pytestmark = pytest.mark.usefixtures("fuzz_time_limit")


@pytest.fixture(scope="module", autouse=True)
def process_group(tmp_path_factory):
    """Megatron's dataset builder asks torch.distributed for the rank: a one-process gloo group."""
    if dist.is_initialized():
        yield
        return
    store = tmp_path_factory.mktemp("pg") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return write_shard_folder(tmp_path_factory.mktemp("data") / "shards")


def read_all(folder: Path) -> None:
    """What training reads of `folder`: the datasets (tiny: 128-token samples, 90/10 split), then every
    sample of the first batches of both splits."""
    config = load_train_config("tiny", {"data": {"shards": [str(folder)]}})
    data = ShardData(config, folder.parent / "cache", train_samples=16, valid_samples=8)
    data.micro_batches("train", 0, 0, 1, 4, 8)
    data.micro_batches("train", 1, 0, 1, 4, 8)
    data.micro_batches("valid", 0, 0, 1, 4, 8)


def read_or_shard_error(folder: Path) -> str | None:
    """None if the folder trains, else the ShardError's message, which must name a file of the folder."""
    try:
        read_all(folder)
    except ShardError as exc:
        assert str(folder) in str(exc), str(exc)
        return str(exc)
    return None


def test_the_undamaged_folder_trains(pristine, tmp_path):
    assert read_or_shard_error(copy_folder(pristine, tmp_path)) is None


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["replace", "replace", "delete", "text"]), value=JSON_GARBAGE)
@example(seed=0, how="top", value=[1, 2])
@example(seed=0, how="top", value={"tokenizer": {}})
def test_damaged_manifest_is_a_shard_error_naming_a_file(pristine, tmp_path, seed, how, value):
    folder = copy_folder(pristine, tmp_path)
    manifest = folder / MANIFEST
    manifest.write_bytes(damage_manifest(manifest.read_text(), random.Random(seed), how, value))
    read_or_shard_error(folder)


@FUZZ
@given(
    seed=st.integers(0, 2**32 - 1),
    shard=st.integers(0, 1),
    kind=st.sampled_from(["idx", "bin"]),
    op=st.sampled_from(["cut", "flip", "bytes", "append"]),
)
def test_damaged_shard_files_are_a_shard_error_naming_the_shard(pristine, tmp_path, seed, shard, kind, op):
    folder = copy_folder(pristine, tmp_path)
    path = folder / f"shard-{shard:05d}.{kind}"
    rng = random.Random(seed)
    data = bytearray(path.read_bytes())
    if op == "cut":
        data = data[: rng.randrange(len(data))]
    elif op == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif op == "bytes":
        at = rng.randrange(len(data))
        data[at : at + 8] = rng.randbytes(8)
    else:
        data += rng.randbytes(rng.choice([1, 2, 4, 8]))
    path.write_bytes(bytes(data))
    error = read_or_shard_error(folder)
    if op in ("cut", "append"):  # the .idx no longer describes the .bin: refused before Megatron maps it
        assert error is not None and f"shard-{shard:05d}." in error, error
    # A flipped .bin byte may still be a token id of the vocabulary (then training reads it as data,
    # as it would any token: pack's checksums are for `crawlmill shards verify`), or not: then the
    # error names this shard's .bin.
    if error is not None:
        assert f"shard-{shard:05d}." in error, error


def test_missing_bin_and_another_shards_idx_are_named(pristine, tmp_path):
    folder = copy_folder(pristine, tmp_path)
    (folder / "shard-00001.bin").unlink()
    with pytest.raises(ShardError, match=r"shard-00001.bin: cannot read: No such file"):
        read_all(folder)
    folder = copy_folder(pristine, tmp_path)
    (folder / "shard-00000.idx").write_bytes((folder / "shard-00001.idx").read_bytes())
    with pytest.raises(ShardError, match=r"shard-00000.idx: the sequences cover .* bytes but .*shard-00000.bin has"):
        read_all(folder)


@pytest.mark.parametrize("vocab, bad", [(VOCAB, VOCAB), (VOCAB, 65535), (70_000, -5), (70_000, 2**31 - 1)])
def test_token_ids_outside_the_vocabulary_stop_the_first_batch(tmp_path, vocab, bad):
    """Every token of shard 1 out of range (uint16 for 1,000 ids, int32 for 70,000): the first batch
    that reads it is a ShardError naming shard-00001.bin, not the embedding's IndexError (CPU) or a
    device-side assert (GPU)."""
    folder = write_shard_folder(tmp_path / "shards", vocab=vocab)
    bin_path = folder / "shard-00001.bin"
    dtype = np.uint16 if vocab < 65500 else np.int32
    bin_path.write_bytes(np.full(bin_path.stat().st_size // np.dtype(dtype).itemsize, bad, dtype=dtype).tobytes())
    with pytest.raises(ShardError, match=rf"shard-00001.bin: (train|valid) sample \d+ holds token id {bad}, outside the tokenizer's {vocab:,} ids"):
        read_all(folder)
