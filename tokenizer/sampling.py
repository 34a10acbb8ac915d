"""Sample the corpus to exact byte counts per language (`--mix`, `--max-bytes`), deterministically.

The corpus is read in units: each file of the inputs, or with `--max-memory-gib` the word count's
chunks (`plan_units` with `chunk_bytes`: uncompressed plain text and JSONL cut into byte ranges of
whole lines, Parquet into ranges of row groups; gzipped files stay whole). The chunks are the units
of the sample too, in word-count mode only: a sampled word-count run draws its documents per chunk
(keys seeded by the chunk's start), so it takes other documents than a streamed run of the same
inputs and seed, the same bytes per language; deterministic all the same. With a mix or a byte limit:

1. `scan` (a Ray task per unit) writes the size in bytes and the language of each of the unit's
   documents (text files: blocks of lines), in reading order, to `_work/sizes/u-NNNNN.parquet`, and
   returns the unit's bytes per language;
2. the driver sets the bytes to train on per language (`byte_targets`: the mix's shares of the
   largest total the scarcest language allows, at most `--max-bytes`, rounded down), and splits each
   language's target over the units in proportion to their bytes of it (`unit_quotas`, largest
   remainders: the parts add up to the target exactly);
3. reading a unit for training (the trainer's stream, or a word-count task), each language's
   documents are taken in a random order (keys from a generator seeded by the seed, the unit's
   `source` and the range's start: `sample_keys`) until the unit's quota is reached; the last one is
   cut to fit, at a character boundary (a cut that leaves less than a character takes nothing of it:
   that document is not sampled).

So each language gets its target to within 3 bytes per unit (a character cut in half is left out),
never more, and the total never exceeds `--max-bytes`. Memory: one unit's document sizes.
"""

from __future__ import annotations

import hashlib
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from crawlmill.files import as_path, file_size, is_remote, open_binary, parquet_file, read_table

from ..pipeline.dedup.shuffle import write_table
from .corpus import TEXT_BLOCK_BYTES, UNDETERMINED, CorpusCounts, InputSpec, decode_block, expand_files, iter_documents, iter_file_documents

BATCH = 64  # documents per batch handed on
COMPRESSION = 4  # a gzipped or Parquet file's text: about this many times its size on disk (zstd/gzip on text: 3-4x)
BYTE_RANGES = {"text": "text_range", "jsonl": "jsonl_range"}  # files cut into byte ranges of whole lines


@dataclass(frozen=True)
class Unit:
    """A file of the inputs (kind `file`), or a part of one (word-count mode): the lines starting in
    bytes [start, end) of an uncompressed plain text (`text_range`) or JSONL file (`jsonl_range`),
    the row groups [start, end) of a Parquet file (`parquet_range`)."""

    index: int
    kind: str
    path: str
    lang: str | None
    source: str  # `<input's index>/<path within the input>`: what seeds its sample (`input_source`)
    start: int = 0
    end: int = 0
    size: int = 0  # with `chunk_bytes`: about the bytes of text it holds (the word count's partitions); else 0


def plan_units(specs: list[InputSpec], chunk_bytes: int | None = None) -> list[Unit]:
    """Every file of the inputs in order; with `chunk_bytes` (word-count mode), an uncompressed
    plain text or JSONL file larger than that is cut into byte ranges (aligned to lines when read),
    a Parquet file into ranges of row groups of about that much text (a row group is never cut)."""
    units: list[Unit] = []
    for number, spec in enumerate(specs):
        for kind, path in expand_files(spec):
            source = input_source(number, spec.path, path)
            if not chunk_bytes:
                units.append(Unit(len(units), "file", str(path), spec.lang, source))
                continue
            for range_kind, start, end, size in _chunks(kind, path, chunk_bytes):
                units.append(Unit(len(units), range_kind, str(path), spec.lang, source, start, end, size))
    return units


def _chunks(kind: str, path: Any, chunk_bytes: int) -> list[tuple[str, int, int, int]]:
    """(kind, start, end, text bytes) of a file's units of about `chunk_bytes` of text."""
    size = file_size(path)
    compressed = path.name.endswith(".gz")
    if kind in BYTE_RANGES and not compressed:
        if size <= chunk_bytes:
            return [("file", 0, 0, size)]
        return [(BYTE_RANGES[kind], start, min(size, start + chunk_bytes), min(size, start + chunk_bytes) - start) for start in range(0, size, chunk_bytes)]
    if kind == "parquet" and size * COMPRESSION > chunk_bytes:
        groups = _row_group_bytes(path)
        ranges: list[tuple[int, int, int]] = []  # (first row group, end, text bytes)
        for i, n in enumerate(groups):
            if ranges and ranges[-1][2] + n <= chunk_bytes:
                ranges[-1] = (ranges[-1][0], i + 1, ranges[-1][2] + n)
            else:
                ranges.append((i, i + 1, n))
        if len(ranges) > 1:
            return [("parquet_range", first, end, n) for first, end, n in ranges]
        return [("file", 0, 0, sum(groups))]
    return [("file", 0, 0, size * (COMPRESSION if compressed or kind == "parquet" else 1))]


def text_bytes(specs: list[InputSpec]) -> int:
    """About the bytes of text the inputs hold: Parquet's `text` column uncompressed (its footers'
    figures, one read each), gzip COMPRESSION times its size, other files their size."""
    total = 0
    for spec in specs:
        for kind, path in expand_files(spec):
            total += sum(_row_group_bytes(path)) if kind == "parquet" else file_size(path) * (COMPRESSION if path.name.endswith(".gz") else 1)
    return total


def _row_group_bytes(path: Any) -> list[int]:
    """Each row group's uncompressed bytes of `text` (of all its columns, without one)."""
    meta = parquet_file(path).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    column = names.index("text") if "text" in names else None
    return [meta.row_group(g).column(column).total_uncompressed_size if column is not None else meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)]


def input_source(number: int, root: Any, path: Any) -> str:
    """`<number>/<path relative to root>`: which file of the inputs `path` is (input `number`, whose
    file or folder is `root`), told apart from every other and the same wherever the inputs live.

    The relative path, not the base name: two inputs' files share names (every stage folder has a
    `part-00000.parquet`; `a/x.txt` and `b/x.txt` in one folder), and equal keys would sample the same
    positions of both. Relative, not absolute: a corpus moved elsewhere or read from S3 (`s3://` and
    `s3a://` alike: the path within the store) gives the same sample. The input's number tells apart
    inputs whose files have the same relative path (`dumpA/filter`, `dumpB/filter`); the order of the
    inputs is part of the run, as their list is. Not the content: files of the same text are still
    independent draws."""
    root, path = as_path(root), as_path(path)
    if is_remote(path):  # the path within the store, without the protocol
        top, inner = root.path.rstrip("/"), path.path.rstrip("/")
        relative = "" if inner == top else inner[len(top) + 1 :] if inner.startswith(top + "/") else None
    else:
        relative = path.relative_to(root).as_posix() if path.is_relative_to(root) else None
    if relative in ("", "."):  # the input is this file
        relative = path.name
    elif relative is None:  # not under its input (expand_files never does this): unique, though not location-free
        relative = path.as_posix() if not is_remote(path) else path.path
    return f"{number}/{relative}"


def sample_keys(seed: int, unit: Unit, count: int) -> np.ndarray:
    """The unit's documents' random keys (their order of sampling): a generator seeded by `seed`, a
    hash of the unit's `source` (all its bytes: crc32 collides over many files) and its start."""
    digest = hashlib.sha256(unit.source.encode("utf-8")).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:16], "little"), unit.start]).random(count)


def range_documents(path: str, start: int, end: int, counts: CorpusCounts) -> Iterator[str]:
    """Blocks of the lines starting in [start, end) (a line crossing `start` belongs to the previous range)."""
    with open_binary(path) as handle:
        if start:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                handle.readline()
        block: list[bytes] = []
        size, offset = 0, handle.tell()  # offset: the block's first byte in the file
        while handle.tell() < end:
            line = handle.readline()
            if not line:
                break
            block.append(line)
            size += len(line)
            if size >= TEXT_BLOCK_BYTES:
                yield decode_block(b"".join(block), path, counts, offset)
                block, offset, size = [], offset + size, 0
        if block:
            yield decode_block(b"".join(block), path, counts, offset)


def unit_documents(unit: Unit, counts: CorpusCounts) -> Iterator[tuple[list[str], list[str]]]:
    """(texts, langs) batches of one unit, in a fixed order; unreadable records go to `counts`."""
    if unit.kind in ("jsonl_range", "parquet_range"):
        kind = "jsonl" if unit.kind == "jsonl_range" else "parquet"
        for _, texts, langs in iter_file_documents(kind, as_path(unit.path), unit.lang, counts, unit.start, unit.end):
            yield texts, langs
        return
    if unit.kind == "text_range":
        lang = unit.lang or UNDETERMINED
        batch: list[str] = []
        for text in range_documents(unit.path, unit.start, unit.end, counts):
            batch.append(text)
            if len(batch) == BATCH:
                yield batch, [lang] * len(batch)
                batch = []
        if batch:
            yield batch, [lang] * len(batch)
        return
    for _, texts, langs in iter_documents(InputSpec(as_path(unit.path), unit.lang), counts):
        yield texts, langs


def sizes_path(work: str, unit: Unit) -> Any:
    return as_path(work) / "sizes" / f"u-{unit.index:05d}.parquet"


def scan_unit(unit: Unit, work: str) -> dict[str, Any]:
    """Ray task: each document's size and language, to `sizes_path`; the unit's counts, as JSON."""
    counts = CorpusCounts()
    sizes = array("q")
    codes = array("i")
    names: dict[str, int] = {}
    for texts, langs in unit_documents(unit, counts):
        for text, lang in zip(texts, langs):
            size = len(text.encode("utf-8"))
            sizes.append(size)
            codes.append(names.setdefault(lang, len(names)))
            counts.bytes[lang] += size
            counts.documents[lang] += 1
    lang = pa.DictionaryArray.from_arrays(pa.array(np.frombuffer(codes, dtype=np.int32)), pa.array(list(names), pa.string()))
    write_table(sizes_path(work, unit), pa.table({"size": pa.array(np.frombuffer(sizes, dtype=np.int64)), "lang": lang}))
    return counts.to_json()


def byte_targets(totals: Counter | dict[str, int], mix: dict[str, float], max_bytes: int | None) -> dict[str, int]:
    """Bytes to train on per language: without a mix, every language's share of `max_bytes` in
    proportion to its bytes; with one, the mix's shares of the largest total that the scarcest
    language allows (and at most `max_bytes`). Rounded down: they never add up to more."""
    total = sum(totals.values())
    if not mix:
        if not max_bytes or total <= max_bytes:
            return {lang: int(n) for lang, n in totals.items()}
        return {lang: int(n) * max_bytes // total for lang, n in totals.items()}
    missing = [lang for lang, share in mix.items() if share > 0 and totals.get(lang, 0) == 0]
    if missing:
        raise ValueError(f"mix asks for {', '.join(missing)} but the inputs have no text in it (found: {dict(totals)})")
    budget = min(totals[lang] / share for lang, share in mix.items() if share > 0)
    if max_bytes:
        budget = min(budget, max_bytes)
    return {lang: min(int(n), int(mix.get(lang, 0.0) * budget)) for lang, n in totals.items()}


def unit_quotas(unit_bytes: list[dict[str, int]], targets: dict[str, int]) -> list[dict[str, int]]:
    """Each language's target split over the units in proportion to their bytes of it; largest
    remainders (ties: the earlier unit) make the parts add up to the target exactly."""
    quotas: list[dict[str, int]] = [{} for _ in unit_bytes]
    for lang, target in sorted(targets.items()):
        total = sum(b.get(lang, 0) for b in unit_bytes)
        if not total:
            continue
        shares = [(target * b.get(lang, 0), i) for i, b in enumerate(unit_bytes)]
        floors = {i: share // total for share, i in shares}
        left = target - sum(floors.values())
        for _, i in sorted(shares, key=lambda s: (-(s[0] % total), s[1]))[:left]:
            floors[i] += 1
        for i, n in floors.items():
            if n:
                quotas[i][lang] = n
    return quotas


def choose(sizes: np.ndarray, codes: np.ndarray, names: list[str], quota: dict[str, int], keys: np.ndarray) -> np.ndarray:
    """Bytes to take of each document: whole documents in key order per language until its quota,
    then part of the next one (what is left of the quota), none of the rest."""
    take = np.zeros(len(sizes), dtype=np.int64)
    for code, name in enumerate(names):
        wanted = quota.get(name, 0)
        if wanted <= 0:
            continue
        docs = np.flatnonzero(codes == code)
        order = docs[np.argsort(keys[docs], kind="stable")]
        ends = np.cumsum(sizes[order])
        whole = int(np.searchsorted(ends, wanted, side="right"))
        take[order[:whole]] = sizes[order[:whole]]
        if whole < len(order):
            take[order[whole]] = wanted - (int(ends[whole - 1]) if whole else 0)
    return take


def cut(text: str, size: int) -> str:
    """The first `size` bytes of `text`, less a character cut in half."""
    return text.encode("utf-8")[:size].decode("utf-8", "ignore")


def sampled_documents(unit: Unit, quota: dict[str, int] | None, seed: int, work: str | None, seen: CorpusCounts, kept: CorpusCounts) -> Iterator[tuple[list[str], list[str]]]:
    """(texts, langs) of one unit to train on: all of them (`quota` None), or each language's quota
    of them (see the module docstring); `seen` counts what was read, `kept` what is handed on."""
    take = None
    if quota is not None:
        assert work is not None
        table = read_table(sizes_path(work, unit))
        sizes = table.column("size").to_numpy()
        lang = table.column("lang").combine_chunks()
        take = choose(sizes, lang.indices.to_numpy(zero_copy_only=False), lang.dictionary.to_pylist(), quota, sample_keys(seed, unit, len(sizes)))
    index = 0
    for texts, langs in unit_documents(unit, seen):
        out_texts: list[str] = []
        out_langs: list[str] = []
        for text, lang in zip(texts, langs):
            size = len(text.encode("utf-8"))
            seen.bytes[lang] += size
            seen.documents[lang] += 1
            if size == 0:
                seen.empty[lang] += 1
            if take is not None:
                if index >= len(take) or sizes[index] != size:
                    raise RuntimeError(f"{unit.path}: changed since its documents were counted (document {index}); rerun with --overwrite")
                wanted = int(take[index])
                index += 1
                if wanted <= 0:
                    continue
                if wanted < size:
                    text = cut(text, wanted)
                    size = len(text.encode("utf-8"))
            if not text:  # empty, or cut below its first character: read, but nothing of it is trained on
                continue
            kept.bytes[lang] += size
            kept.documents[lang] += 1
            out_texts.append(text)
            out_langs.append(lang)
        if out_texts:
            yield out_texts, out_langs
    if take is not None and index != len(take):
        raise RuntimeError(f"{unit.path}: changed since its documents were counted ({index} documents, {len(take)} before); rerun with --overwrite")


class SampledCorpus:
    """Batches of training text, every unit in order (`quotas[i]` for unit i, or None: everything).
    `kept` counts what went to the trainer; `seen` what was read."""

    def __init__(self, units: list[Unit], quotas: list[dict[str, int]] | None, seed: int = 0, work: str | None = None) -> None:
        self.units, self.quotas, self.seed, self.work = units, quotas, seed, work
        self.seen = CorpusCounts()
        self.kept = CorpusCounts()

    def __iter__(self) -> Iterator[list[str]]:
        for unit in self.units:
            quota = None if self.quotas is None else self.quotas[unit.index]
            for texts, _ in sampled_documents(unit, quota, self.seed, self.work, self.seen, self.kept):
                yield texts
