"""Bounded-memory BPE training: count pre-tokenized words on Ray, prune the rarest to a memory
budget, and feed the trainer the word table instead of the corpus.

HF `tokenizers` keeps every distinct pre-tokenized word in memory while it merges (~2 KB for a
12-character Chinese run: DeepSeek's pre-tokenization makes a whole run of CJK characters between
punctuation one word, and nearly every such clause is distinct). Its memory therefore grows with the
corpus (BENCHMARKS.md: 15 GiB for 1 GB of mixed text). With `--max-memory-gib`:

The tokenizer stage (stage.py) runs steps 1 and 2 as Ray tasks through the runner:

1. count: one Ray task per input chunk (64 MB ranges of plain text, whole other files) splits its
   documents with DeepSeek's pre-tokenizer (all steps but the byte mapping; each distinct cut of a
   batch of documents once, pretokenize.CUT_PATTERN: 4x faster on English) and writes partial
   counts hash-partitioned by word (`_work/counts/p-NNNNN/`); memory: one chunk's distinct words.
2. reduce: one task per partition sums its counts (`_work/words/p-NNNNN.parquet`) and returns a
   histogram of word counts, sizes and estimated trainer bytes.
3. the driver picks the smallest `min_count` whose surviving words fit the budget (memory model
   below, fitted to measured runs), and fills what is left of the budget with a hash-chosen share
   of the words seen `min_count - 1` times; min_count 1 keeps everything.
4. the trainer is fed each kept word `count` times, joined by newlines: newlines are split off as
   their own one-byte words, which have no pairs, so the merges are exactly those of training on the
   corpus itself (tested: byte-identical tokenizer.json when nothing is pruned).
"""

from __future__ import annotations

import resource
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from tokenizers import pre_tokenizers

from crawlmill.files import as_path, file_size, open_binary, parquet_file

from ..pipeline.dedup.shuffle import partition_files, write_partitioned, write_table
from ..pipeline.stage import StageInputError
from .corpus import TEXT_BLOCK_BYTES, CorpusCounts, InputSpec, decode_block, expand_files, iter_documents
from .pretokenize import CUT_PATTERN, text_splits

CHUNK_BYTES = 64 << 20
WORD_SCHEMA = pa.schema([("word", pa.string()), ("count", pa.int64())])
HISTOGRAM_COUNTS = 64  # per-count histogram up to here; larger counts are never pruned
FEED_STRING_BYTES = 1 << 16
CUTS_PER_FLUSH = 100_000  # distinct cuts held before they are split into words
# Trainer memory per distinct word (hash maps, the word's symbol list, pair positions): fitted to
# the peaks measured by bench/tokenizer_bench.py (see BENCHMARKS.md, tokenizer scale).
MIB_BASE = 230
BYTES_PER_WORD = 160
BYTES_PER_WORD_BYTE = 93


class BudgetTooSmall(StageInputError, MemoryError):
    """--max-memory-gib cannot hold even the most frequent words."""


@dataclass(frozen=True)
class CountTask:
    index: int
    kind: str  # text_range or file
    path: str
    lang: str | None
    start: int = 0
    end: int = 0


def plan_count_tasks(specs: list[InputSpec], chunk_bytes: int = CHUNK_BYTES) -> list[CountTask]:
    """Plain uncompressed text is cut into byte ranges (aligned to lines when read); others whole."""
    tasks: list[CountTask] = []
    for spec in specs:
        for kind, path in expand_files(spec):
            size = file_size(path)
            if kind == "text" and not path.name.endswith(".gz") and size > chunk_bytes:
                for start in range(0, size, chunk_bytes):
                    tasks.append(CountTask(len(tasks), "text_range", str(path), spec.lang, start, min(size, start + chunk_bytes)))
            else:
                tasks.append(CountTask(len(tasks), "file", str(path), spec.lang))
    return tasks


def _range_documents(path: str, start: int, end: int, counts: CorpusCounts) -> Iterator[str]:
    """Lines starting in [start, end) (a line crossing `start` belongs to the previous range)."""
    with open_binary(path) as handle:
        if start:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                handle.readline()
        block: list[bytes] = []
        size = 0
        while handle.tell() < end:
            line = handle.readline()
            if not line:
                break
            block.append(line)
            size += len(line)
            if size >= TEXT_BLOCK_BYTES:
                yield decode_block(b"".join(block), path, counts)
                block, size = [], 0
        if block:
            yield decode_block(b"".join(block), path, counts)


def _task_documents(task: CountTask, counts: CorpusCounts) -> Iterator[tuple[list[str], list[str]]]:
    if task.kind == "text_range":
        lang = task.lang or "und"
        batch: list[str] = []
        for text in _range_documents(task.path, task.start, task.end, counts):
            batch.append(text)
            if len(batch) == 64:
                yield batch, [lang] * len(batch)
                batch = []
        if batch:
            yield batch, [lang] * len(batch)
        return
    for _, texts, langs in iter_documents(InputSpec(as_path(task.path), task.lang), counts):
        yield texts, langs


def count_words(task: CountTask, probabilities: dict[str, float] | None, seed: int, partitions: int, work: str) -> dict[str, Any]:
    """Ray task: word counts of one chunk, hash-partitioned to `work/counts`; returns corpus counts."""
    counts = CorpusCounts()
    kept = CorpusCounts()
    # The steps after the line and letter splits: on a cut (CUT_PATTERN) those two do nothing. No byte
    # mapping: pieces stay substrings, as they are fed back to the trainer as text.
    splitter = pre_tokenizers.Sequence(text_splits()[2:])
    words: Counter = Counter()
    cuts: Counter = Counter()
    rng = np.random.default_rng([seed, zlib.crc32(as_path(task.path).name.encode()), task.start])
    for texts, langs in _task_documents(task, counts):
        draws = rng.random(len(texts))
        for text, lang, draw in zip(texts, langs, draws):
            size = len(text.encode("utf-8"))
            counts.bytes[lang] += size
            counts.documents[lang] += 1
            if probabilities is not None and draw >= probabilities.get(lang, 0.0):
                continue
            kept.bytes[lang] += size
            kept.documents[lang] += 1
            cuts.update(CUT_PATTERN.findall(text))
        if len(cuts) >= CUTS_PER_FLUSH:
            _add_pieces(cuts, splitter, words)
    _add_pieces(cuts, splitter, words)
    if words:
        table = pa.table({"word": list(words.keys()), "count": list(words.values())}, schema=WORD_SCHEMA)
        partition = np.fromiter((xxhash.xxh64_intdigest(w) % partitions for w in words), dtype=np.int64, count=len(words))
        write_partitioned(as_path(work) / "counts", f"t-{task.index:05d}", table, partition, partitions)
    del words
    return {"read": counts.to_json(), "kept": kept.to_json(), "peak_rss_mib": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def _add_pieces(cuts: Counter, splitter: pre_tokenizers.PreTokenizer, words: Counter) -> None:
    """Each distinct cut is split once and its pieces counted as often as the cut occurs: a text's
    pieces are its cuts' pieces (pretokenize.CUT_PATTERN), and most cuts (words) repeat."""
    for cut, n in cuts.items():
        pieces = splitter.pre_tokenize_str(cut)
        if len(pieces) == 1:
            words[cut] += n
        else:
            for piece, _ in pieces:
                words[piece] += n
    cuts.clear()


def reduce_words(p: int, work: str) -> dict[str, Any]:
    """Ray task: the summed counts of partition p, sorted by word; a histogram for pruning."""
    files = partition_files(as_path(work) / "counts", p)
    tables = [pq.read_table(f, schema=WORD_SCHEMA) for f in files]
    table = pa.concat_tables(tables) if tables else WORD_SCHEMA.empty_table()
    summed = table.group_by("word").aggregate([("count", "sum")]).rename_columns(["word", "count"])
    summed = summed.sort_by("word").cast(WORD_SCHEMA)
    write_table(as_path(work) / "words" / f"p-{p:05d}.parquet", summed)
    sizes = pc.binary_length(pc.cast(summed.column("word"), pa.binary())).to_numpy()
    counts = summed.column("count").to_numpy()
    cost = BYTES_PER_WORD + BYTES_PER_WORD_BYTE * sizes
    capped = np.minimum(counts, HISTOGRAM_COUNTS)
    return {
        "distinct": int(len(counts)),
        "occurrences": int(counts.sum()),
        "cost_by_count": np.bincount(capped, weights=cost, minlength=HISTOGRAM_COUNTS + 1).tolist(),
        "distinct_by_count": np.bincount(capped, minlength=HISTOGRAM_COUNTS + 1).tolist(),
        "bytes_by_count": np.bincount(capped, weights=sizes * counts, minlength=HISTOGRAM_COUNTS + 1).tolist(),
    }


def choose_min_count(histograms: list[dict[str, Any]], max_memory_gib: float) -> dict[str, Any]:
    """Which words the trainer gets: every word seen at least `min_count` times, and of the words
    seen exactly `min_count - 1` times a deterministic `boundary_share` (by word hash), as many as
    the budget allows (memory model at the top of this file)."""
    cost = np.sum([h["cost_by_count"] for h in histograms], axis=0)
    distinct = np.sum([h["distinct_by_count"] for h in histograms], axis=0)
    occurrence_bytes = np.sum([h["bytes_by_count"] for h in histograms], axis=0)
    budget = max_memory_gib * 2**30 - MIB_BASE * 2**20
    kept_cost = cost[::-1].cumsum()[::-1]  # kept_cost[c]: words with count >= c
    fits = [c for c in range(1, HISTOGRAM_COUNTS + 1) if kept_cost[c] <= budget]
    if not fits:
        raise BudgetTooSmall(f"even words seen {HISTOGRAM_COUNTS}+ times need ~{kept_cost[-1] / 2**30:.1f} GiB: raise --max-memory-gib")
    min_count = fits[0]
    share = 0.0
    if min_count > 1 and cost[min_count - 1] > 0:
        share = float(np.clip((budget - kept_cost[min_count]) / cost[min_count - 1], 0.0, 1.0))
    estimate = kept_cost[min_count] + share * (cost[min_count - 1] if min_count > 1 else 0.0)
    dropped = occurrence_bytes[: max(0, min_count - 1)].sum() + (1 - share) * (occurrence_bytes[min_count - 1] if min_count > 1 else 0.0)
    return {
        "min_count": min_count,
        "boundary_share": round(share, 6),
        "distinct_words": int(distinct.sum()),
        "kept_words": int(distinct[min_count:].sum() + round(share * (distinct[min_count - 1] if min_count > 1 else 0))),
        "dropped_byte_share": round(float(dropped / max(1.0, occurrence_bytes.sum())), 6),
        "estimated_trainer_gib": round(float((estimate + MIB_BASE * 2**20) / 2**30), 3),
        "estimated_unpruned_gib": round(float((kept_cost[1] + MIB_BASE * 2**20) / 2**30), 3),
    }


def feed(work: str, partitions: int, min_count: int, boundary_share: float = 0.0) -> Iterator[list[str]]:
    """Batches for `train_from_iterator`: every kept word `count` times, newline-joined into strings
    of about FEED_STRING_BYTES (the trainer's pre-tokenizer holds ~16 bytes of offsets per byte of a
    string, so one string per frequent word would cost GBs)."""
    threshold = int(boundary_share * 2**64)
    strings: list[str] = []
    pieces: list[str] = []
    size = 0
    for p in range(partitions):
        path = as_path(work) / "words" / f"p-{p:05d}.parquet"
        if not path.exists():
            continue
        for record in parquet_file(path).iter_batches(batch_size=65536):
            for word, count in zip(record.column("word").to_pylist(), record.column("count").to_pylist()):
                if count < min_count and not (count == min_count - 1 and xxhash.xxh64_intdigest(word, seed=1) < threshold):
                    continue
                per_string = max(1, FEED_STRING_BYTES // (len(word) + 1))
                while count > 0:
                    repeats = min(count, per_string)
                    pieces.append("\n".join([word] * repeats))
                    size += repeats * (len(word) + 1)
                    count -= repeats
                    if size >= FEED_STRING_BYTES:
                        strings.append("\n".join(pieces))
                        pieces, size = [], 0
                        if len(strings) == 64:
                            yield strings
                            strings = []
    if pieces:
        strings.append("\n".join(pieces))
    if strings:
        yield strings
