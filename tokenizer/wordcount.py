"""Bounded-memory BPE training: count pre-tokenized words on Ray, prune the rarest to a memory
budget, and feed the trainer the word table instead of the corpus.

HF `tokenizers` keeps every distinct pre-tokenized word in memory while it merges (~2 KB for a
12-character Chinese run: DeepSeek's pre-tokenization makes a whole run of CJK characters between
punctuation one word, and nearly every such clause is distinct). Its memory therefore grows with the
corpus (BENCHMARKS.md: 15 GiB for 1 GB of mixed text). With `--max-memory-gib`:

The tokenizer stage (stage.py) runs steps 1 and 2 as Ray tasks through the runner:

1. count: one Ray task per input chunk (sampling.plan_units: 64 MB ranges of plain text and JSONL,
   ranges of row groups of Parquet, whole gzipped files; with a mix or byte limit, its sample)
   splits its documents with DeepSeek's pre-tokenizer (all steps but the byte mapping; each
   distinct cut of a batch of documents once, pretokenize.CUT_PATTERN: 4x faster on English) and
   writes partial counts per word and language, hash-partitioned by word (`_work/counts/t-NNNNN.shuffle`, one file per chunk: shuffle.py);
   memory: one chunk's distinct words.
2. reduce: one task per partition sums its counts (`_work/words/p-NNNNN.parquet`, a row per word
   and language) and returns a histogram by each word's count: estimated trainer bytes, distinct
   words and their bytes, and text bytes per language. There are enough partitions that each
   expects at most PARTITION_ROWS partial rows (`word_partitions`: from the chunks' text bytes), and
   a task sums its partials as it reads them (`sum_partials`): it holds the partition's distinct
   words and a batch of partials, never every chunk's partials at once.
3. the driver picks the smallest `min_count` whose surviving words fit the budget (memory model
   below, fitted to measured runs), and fills what is left of the budget with a hash-chosen share
   of the words seen `min_count - 1` times; min_count 1 keeps everything.
4. the trainer is fed each kept word `count` times, joined by newlines: newlines are split off as
   their own one-byte words, which have no pairs, so the merges are exactly those of training on the
   corpus itself (tested: byte-identical tokenizer.json when nothing is pruned). The text bytes the
   kept and pruned words stood for are counted per language as they are fed (`FeedTally`): what
   the run reports as trained on and pruned.
"""

from __future__ import annotations

import math
import resource
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from tokenizers import pre_tokenizers

from crawlmill.files import as_path, parquet_file

from ..pipeline.dedup.shuffle import partition_tables, write_partitioned, write_table
from ..pipeline.stage import StageInputError
from .corpus import CorpusCounts
from .pretokenize import CUT_PATTERN, text_splits
from .sampling import Unit, sampled_documents

CHUNK_BYTES = 64 << 20
WORD_SCHEMA = pa.schema([("word", pa.string()), ("lang", pa.string()), ("count", pa.int64())])
HISTOGRAM_COUNTS = 64  # per-count histogram up to here; larger counts are never pruned
FEED_STRING_BYTES = 1 << 12  # small: the trainer pre-tokenizes each string in a thread, ~16 bytes a byte, and its allocator keeps that per thread
CUTS_PER_FLUSH = 100_000  # distinct cuts held before they are split into words
# Partitions of the reduce: enough that each expects at most PARTITION_ROWS partial rows (a word's
# count from one chunk), at a partial row per TEXT_BYTES_PER_ROW bytes of text (an upper estimate:
# measured 32-38 bytes on Chinese, 74-89 on English, for chunks of 1.5-64 MB; larger chunks repeat
# more words); at least one per chunk up to 256, at most MAX_PARTITIONS (each count task writes one
# shuffle file, and each reduce reads its range of every chunk's: chunks x partitions reads). Beyond that (~1 TB of text at these figures) a
# partition's partials grow with the corpus again; its reduce still holds only its distinct words.
PARTITION_ROWS = 8_000_000
TEXT_BYTES_PER_ROW = 32
MAX_PARTITIONS = 4096
REDUCE_BATCH_ROWS = 2_000_000  # partial rows a reduce reads before summing them into its running table
# The trainer's peak (its Ray worker's VmHWM from the start of training): MIB_BASE, then per kept
# distinct word (hash maps, the word's symbol list, pair positions). An upper bound of the peaks
# measured with 2 and 16 trainer threads, vocabularies of 4,000-100,000 and up to 450,000 words
# (docs/tokenizer.md has the figures): the trainer used 64-92% of the budget. More threads use
# more (16 threads: ~10% more than 2), a smaller vocabulary less.
MIB_BASE = 380
BYTES_PER_WORD = 160
BYTES_PER_WORD_BYTE = 140


class BudgetTooSmall(StageInputError, MemoryError):
    """--max-memory-gib cannot hold even the most frequent words."""


def count_words(task: Unit, quota: dict[str, int] | None, seed: int, partitions: int, work: str) -> dict[str, Any]:
    """Ray task: word counts per language of one chunk (its sample: `quota`, sampling.py),
    hash-partitioned by word to `work/counts`; returns the corpus counts."""
    counts = CorpusCounts()
    kept = CorpusCounts()
    # The steps after the line and letter splits: on a cut (CUT_PATTERN) those two do nothing. No byte
    # mapping: pieces stay substrings, as they are fed back to the trainer as text.
    splitter = pre_tokenizers.Sequence(text_splits()[2:])
    words: dict[str, Counter] = {}
    cuts: dict[str, Counter] = {}
    for texts, langs in sampled_documents(task, quota, seed, work, counts, kept):
        for text, lang in zip(texts, langs):
            (cuts.get(lang) or cuts.setdefault(lang, Counter())).update(CUT_PATTERN.findall(text))
        if sum(map(len, cuts.values())) >= CUTS_PER_FLUSH:
            for lang, lang_cuts in cuts.items():
                _add_pieces(lang_cuts, splitter, words.setdefault(lang, Counter()))
    for lang, lang_cuts in cuts.items():
        _add_pieces(lang_cuts, splitter, words.setdefault(lang, Counter()))
    del cuts
    if any(words.values()):
        table = pa.table(
            {
                "word": [w for lang_words in words.values() for w in lang_words],
                "lang": [lang for lang, lang_words in words.items() for _ in range(len(lang_words))],
                "count": [n for lang_words in words.values() for n in lang_words.values()],
            },
            schema=WORD_SCHEMA,
        )
        partition = np.fromiter((xxhash.xxh64_intdigest(w) % partitions for lang_words in words.values() for w in lang_words), dtype=np.int64, count=table.num_rows)
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


def word_partitions(units: list[Unit]) -> int:
    """The reduce's partitions for these chunks (`PARTITION_ROWS`)."""
    rows = sum(u.size for u in units) / TEXT_BYTES_PER_ROW
    return max(1, min(256, len(units)), min(MAX_PARTITIONS, math.ceil(rows / PARTITION_ROWS)))


def _group_sum(tables: list[pa.Table]) -> pa.Table:
    table = pa.concat_tables(tables)
    return table.group_by(["word", "lang"]).aggregate([("count", "sum")]).rename_columns(["word", "lang", "count"])


def sum_partials(tables: Iterable[pa.Table], batch_rows: int | None = None) -> pa.Table:
    """The partial counts summed per word and language (in no particular order), summed as they are
    read: a batch of at least `batch_rows` (REDUCE_BATCH_ROWS) partial rows, and at least as many as
    the running sums have (so that summing again costs at most about twice a single pass), is added
    to the running sums. Holds the running sums and one batch (and the sum of both) at a time; the
    sums are exact integers, so they are those of summing everything at once."""
    batch_rows = REDUCE_BATCH_ROWS if batch_rows is None else batch_rows
    summed = WORD_SCHEMA.empty_table()
    pending: list[pa.Table] = []
    rows = 0
    for table in tables:
        pending.append(table)
        rows += table.num_rows
        if rows >= max(batch_rows, summed.num_rows):
            summed = _group_sum([summed, *pending])
            pending, rows = [], 0
    return _group_sum([summed, *pending]) if pending or not summed.num_rows else summed


def reduce_words(p: int, work: str) -> dict[str, Any]:
    """Ray task: the summed counts of partition p (a row per word and language, sorted by word); a
    histogram by each word's count over all languages, for pruning."""
    summed = sum_partials(partition_tables(as_path(work) / "counts", p, WORD_SCHEMA))
    summed = summed.sort_by([("word", "ascending"), ("lang", "ascending")]).cast(WORD_SCHEMA).combine_chunks()
    write_table(as_path(work) / "words" / f"p-{p:05d}.parquet", summed)
    rows = summed.num_rows
    words = summed.column("word").chunk(0) if summed.column("word").num_chunks else pa.array([], pa.string())
    first = np.ones(rows, dtype=bool)  # a word's first row
    if rows > 1:
        first[1:] = pc.not_equal(words.slice(1), words.slice(0, rows - 1)).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(first)
    sizes = pc.binary_length(pc.cast(words, pa.binary())).to_numpy(zero_copy_only=False).astype(np.int64)
    counts = summed.column("count").to_numpy()
    totals = np.add.reduceat(counts, starts) if rows else np.zeros(0, dtype=np.int64)
    row_capped = np.minimum(totals, HISTOGRAM_COUNTS)[np.cumsum(first) - 1]
    capped, word_sizes = np.minimum(totals, HISTOGRAM_COUNTS), sizes[starts]
    langs = pc.dictionary_encode(summed.column("lang")).combine_chunks()  # codes, not a Python string per row
    codes, row_bytes = langs.indices.to_numpy(zero_copy_only=False), sizes * counts
    by_lang = {str(lang): np.bincount(row_capped[codes == i], weights=row_bytes[codes == i], minlength=HISTOGRAM_COUNTS + 1).tolist() for i, lang in enumerate(langs.dictionary.to_pylist())}
    return {
        "distinct": int(len(totals)),
        "occurrences": int(counts.sum()),
        "cost_by_count": np.bincount(capped, weights=BYTES_PER_WORD + BYTES_PER_WORD_BYTE * word_sizes, minlength=HISTOGRAM_COUNTS + 1).tolist(),
        "distinct_by_count": np.bincount(capped, minlength=HISTOGRAM_COUNTS + 1).tolist(),
        "word_bytes_by_count": np.bincount(capped, weights=word_sizes, minlength=HISTOGRAM_COUNTS + 1).tolist(),
        "bytes_by_count": {lang: by_lang[lang] for lang in sorted(by_lang)},  # text bytes per language
    }


def choose_min_count(histograms: list[dict[str, Any]], max_memory_gib: float) -> dict[str, Any]:
    """Which words the trainer gets: every word seen at least `min_count` times, and of the words
    seen exactly `min_count - 1` times a deterministic `boundary_share` (by word hash), as many as
    the budget allows (memory model at the top of this file). The figures of what is kept and
    dropped are estimates here (the boundary share is by hash); `feed` counts them exactly."""
    cost = np.sum([h["cost_by_count"] for h in histograms], axis=0)
    distinct = np.sum([h["distinct_by_count"] for h in histograms], axis=0)
    langs = sorted({lang for h in histograms for lang in h["bytes_by_count"]})
    zero = np.zeros(HISTOGRAM_COUNTS + 1)
    occurrence_bytes = np.sum([h["bytes_by_count"].get(lang, zero) for h in histograms for lang in langs] or [zero], axis=0)
    budget = max_memory_gib * 2**30 - MIB_BASE * 2**20
    kept_cost = cost[::-1].cumsum()[::-1]  # kept_cost[c]: words with count >= c
    fits = [c for c in range(1, HISTOGRAM_COUNTS + 1) if kept_cost[c] <= budget]
    if not fits:
        need = (kept_cost[-1] + MIB_BASE * 2**20) / 2**30
        raise BudgetTooSmall(
            f"--max-memory-gib {max_memory_gib:g} is too small: the trainer with even the words seen {HISTOGRAM_COUNTS}+ times "
            f"needs ~{need:.2f} GiB (~{MIB_BASE} MiB before any word): raise --max-memory-gib"
        )
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


@dataclass
class FeedTally:
    """What `feed` gave the trainer and left out: text bytes per language, distinct words."""

    trained: Counter = field(default_factory=Counter)
    pruned: Counter = field(default_factory=Counter)
    kept_words: int = 0
    kept_word_bytes: int = 0


def _word_rows(work: str, partitions: int) -> Iterator[tuple[str, int, list[tuple[str, int]]]]:
    """(word, count over all languages, [(lang, count)]) of the word table, in its order."""
    word, total, langs = None, 0, []
    for p in range(partitions):
        path = as_path(work) / "words" / f"p-{p:05d}.parquet"
        if not path.exists():
            continue
        for record in parquet_file(path).iter_batches(batch_size=65536):
            for w, lang, count in zip(record.column("word").to_pylist(), record.column("lang").to_pylist(), record.column("count").to_pylist()):
                if w != word:
                    if word is not None:
                        yield word, total, langs
                    word, total, langs = w, 0, []
                total += count
                langs.append((lang, count))
    if word is not None:
        yield word, total, langs


def feed(work: str, partitions: int, min_count: int, boundary_share: float = 0.0, tally: FeedTally | None = None) -> Iterator[list[str]]:
    """Batches for `train_from_iterator`: every kept word `count` times, newline-joined into strings
    of about FEED_STRING_BYTES (the trainer's pre-tokenizer holds ~16 bytes of offsets per byte of a
    string, so one string per frequent word would cost GBs). `tally` counts what is fed and left out."""
    tally = tally if tally is not None else FeedTally()
    threshold = int(boundary_share * 2**64)
    strings: list[str] = []
    pieces: list[str] = []
    size = 0
    for word, count, langs in _word_rows(work, partitions):
        word_bytes = len(word.encode("utf-8"))
        if count < min_count and not (count == min_count - 1 and xxhash.xxh64_intdigest(word, seed=1) < threshold):
            for lang, n in langs:
                tally.pruned[lang] += n * word_bytes
            continue
        for lang, n in langs:
            tally.trained[lang] += n * word_bytes
        tally.kept_words += 1
        tally.kept_word_bytes += word_bytes
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
