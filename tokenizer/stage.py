"""The tokenizer stage: train the byte-level BPE vocabulary on Ray through the runner.

    crawlmill tokenizer train out/dedup --output out/tokenizer                 # the verb
    crawlmill run configs/demo.yaml --only tokenizer                           # the pipeline stage
    train_tokenizer(TokenizerConfig(inputs=["out/dedup"]), "out/tokenizer")    # from Python

Steps (each a set of resumable Ray tasks):

1. `scan` (only with `mix` or `max_bytes`): each document's size and language, one task per file
   (per chunk with `max_memory_gib`); the driver sets the bytes to train on per language and each
   file's (chunk's) share of them (sampling.py: exact byte counts, deterministic by seed);
2. `count` and `reduce` (only with `max_memory_gib`): the word table (wordcount.py), one task per
   input chunk (byte ranges of text and JSONL, row groups of Parquet), then one per word partition
   (as many as the chunks' text needs: `word_partitions`); the driver picks the words that fit the budget;
3. `train`: one task trains (train.py, all the node's cores through the Rust trainer) and writes
   the tokenizer files into the output folder. Too little text is the stage's error (exit 2), said
   once: the task returns it instead of failing.

The output folder is a tokenizer folder (tokenizer.json, ... train_report.json) and a stage folder
(`_stats.json`: documents read, trained on, left out by the sampling, unreadable records by reason;
counters: bytes read, left out by the sampling, pruned from the word table and trained on, per
language). train_report.json's `bytes_per_language` has the same byte counts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from crawlmill.files import as_path, atomic_write_text, read_text, remove_file, remove_tree

from ..pipeline.output_folder import DONE_DIR
from ..pipeline.ray_tasks import RayOptions
from ..pipeline.runner import StageContext, Task, run_stage
from ..pipeline.stage import Stage, StageInputError, StageResult

from .config import TokenizerConfig
from .corpus import CorpusCounts, InputSpec, expand_files
from .human import human_bytes
from .sampling import SampledCorpus, byte_targets, plan_units, scan_unit, text_bytes, unit_quotas
from .train import CorpusTooSmall, train
from .wordcount import FeedTally, choose_min_count, count_words, feed, reduce_words, word_partitions

REPORT = "train_report.json"
REPAIRED = "invalid_utf8_replaced"  # corpus.decode_block: a block read with its bad bytes replaced
WORK_FORMAT = "5"  # `_work/_format`: the work of an unfinished run by an earlier version (other files, results or sample keys) is not resumed; 5: word counts in shuffle files (dedup/shuffle.py)


def train_task(config: TokenizerConfig, plan: dict[str, Any], output: str) -> dict[str, Any]:
    """The `train` step's one task: the corpus (streamed and sampled, or the word table), trained.
    Unusable input (too little text) comes back as `{"input_error": ...}`, for the driver to raise."""
    specs = [InputSpec.parse(spec) for spec in config.inputs]
    word_table = plan["word_table"]
    tally = None
    if word_table is None:
        corpus = SampledCorpus(plan_units(specs), plan["quotas"], config.seed, plan["work"])
        seen, kept = corpus.seen, corpus.kept
        texts: Any = corpus
    else:
        seen, sampled = CorpusCounts(), CorpusCounts()
        seen.add_json(plan["read"])
        sampled.add_json(plan["kept"])
        tally = FeedTally()
        kept = CorpusCounts(bytes=tally.trained, documents=sampled.documents)  # bytes: filled as the trainer reads
        texts = feed(plan["work"], word_table["partitions"], word_table["min_count"], word_table["boundary_share"], tally)

    def extra() -> dict[str, Any]:
        table = word_table
        if tally is not None:  # the exact figures, now that the trainer has read the table
            pruned = sum(tally.pruned.values())
            table = {
                **word_table, "kept_words": tally.kept_words, "kept_word_bytes": tally.kept_word_bytes,
                "dropped_byte_share": round(pruned / max(1, pruned + sum(tally.trained.values())), 6),
                "pruned_bytes": dict(sorted(tally.pruned.items())),
            }  # fmt: skip
        return {
            "bytes_per_language": bytes_per_language(seen.bytes, kept.bytes, tally.pruned if tally else Counter()),
            "word_table": table, "language_scan": plan["language_scan"], "byte_targets": plan["targets"],
        }  # fmt: skip

    try:
        return train(config, texts, seen, kept, as_path(output), extra)
    except StageInputError as exc:
        return {"input_error": str(exc), "error_type": type(exc).__name__}


# Text that HF's trainer, given all of it, holds every distinct word of: 15.2 GiB at 1 GB measured
# (BENCHMARKS.md, 6.17 M words), distinct words growing ~5.8x per 10x text: ~60 GiB at 8 GB.
IN_MEMORY_TEXT_LIMIT = 8 * 10**9


def check_fits_in_memory(specs: list[InputSpec]) -> None:
    """Refuse, before any work, to train on every byte of inputs holding more text than one machine's
    trainer can count (its memory follows the distinct words, so the corpus): a run killed by the
    kernel hours later says nothing. Parquet's text column counts uncompressed, gzip files
    COMPRESSION times their size (sampling.text_bytes)."""
    text = text_bytes(specs)
    if text > IN_MEMORY_TEXT_LIMIT:
        raise StageInputError(
            f"the inputs hold about {human_bytes(text)} of text, and training on all of it holds every distinct word in one process "
            "(15 GiB of memory for 1 GB of text measured, ~60 GiB for 8 GB): give --max-bytes (a sample; DeepSeek trained on ~24 GB, "
            "e.g. --max-bytes 4e9 with --mix) or --max-memory-gib (the word count on Ray, the rarest words pruned to fit); "
            f"--max-bytes {-(-text // 10**9)}e9 or more trains on all of it anyway"
        )


def bytes_per_language(read: Counter, trained: Counter, pruned: Counter) -> dict[str, dict[str, int]]:
    """Per language: bytes read, left out by the sampling, pruned from the word table, trained on."""
    return {
        lang: {"read": read[lang], "not_sampled": read[lang] - trained[lang] - pruned[lang], "pruned": pruned[lang], "trained": trained[lang]}
        for lang in sorted(set(read) | set(trained))
    }


class TokenizerStage(Stage):
    name = "tokenizer"
    remove_work = True  # the document sizes and the word table

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__(config)
        if not config.inputs:
            raise ValueError("no inputs: give pipeline folders, JSONL or text files")
        self.specs = [InputSpec.parse(spec) for spec in config.inputs]
        self.files = [(kind, str(path), spec.lang) for spec in self.specs for kind, path in expand_files(spec)]

    def fingerprint(self) -> dict[str, Any]:
        settings = json.loads(json.dumps(self.config.__dict__))
        settings.pop("inputs")
        settings.pop("path")
        return settings

    def run(self, ctx: StageContext) -> dict[str, Any]:
        c, work = self.config, str(ctx.work)
        fmt = ctx.work / "_format"
        if not fmt.exists() or read_text(fmt) != WORK_FORMAT:
            remove_tree(ctx.work)  # an earlier version's: start the work over
            atomic_write_text(fmt, WORK_FORMAT)
        if not (c.max_bytes or c.max_memory_gib):
            check_fits_in_memory(self.specs)
        units = plan_units(self.specs, int(c.count_chunk_mb * 2**20) if c.max_memory_gib else None)
        quotas, targets, scan = None, None, None
        if c.mix or c.max_bytes:
            tasks = [Task(f"unit-{u.index:05d}", (u, work), label=_label(u)) for u in units]
            scanned = ctx.step("scan", scan_unit, tasks, unit="chunks" if c.max_memory_gib else "files")
            scan = CorpusCounts()
            for task in tasks:
                scan.add_json(scanned[task.key])
            try:
                targets = byte_targets(scan.bytes, c.mix, c.max_bytes)
            except ValueError as exc:  # the mix asks for a language the inputs lack
                raise StageInputError(str(exc)) from None
            quotas = unit_quotas([scanned[task.key]["bytes"] for task in tasks], targets)
        plan: dict[str, Any] = {"quotas": quotas, "targets": targets, "language_scan": scan.to_json() if scan else None, "word_table": None, "work": work}
        if c.max_memory_gib:
            plan.update(self._word_table(ctx, units, quotas))
            plan["quotas"] = None  # applied by the word count
        trained = ctx.step("train", train_task, [Task("train", (plan, str(ctx.output)))], shared=(c,), title="tokenizer train", fresh_worker=True)
        report = trained["train"]
        if "input_error" in report:
            remove_file(ctx.work / DONE_DIR / "train" / "train.json")  # a rerun trains again
            raise (CorpusTooSmall if report["error_type"] == CorpusTooSmall.__name__ else StageInputError)(report["input_error"])
        return _stats(report, len(self.files))

    def _word_table(self, ctx: StageContext, units: list, quotas: list[dict[str, int]] | None) -> dict[str, Any]:
        c, work = self.config, str(ctx.work)
        partitions = word_partitions(units)
        tasks = [Task(f"chunk-{u.index:05d}", (u, None if quotas is None else quotas[u.index], c.seed, partitions, work), label=_label(u)) for u in units]
        counted = ctx.step("count", count_words, tasks, unit="chunks", title="tokenizer word count")
        reduce_tasks = [Task(f"p-{p:05d}", (p, work)) for p in range(partitions)]
        reduced = ctx.step("reduce", reduce_words, reduce_tasks, unit="partitions")
        info = choose_min_count([reduced[f"p-{p:05d}"] for p in range(partitions)], c.max_memory_gib)
        info["count_tasks"], info["partitions"] = len(units), partitions
        info["count_task_peak_rss_mib"] = max((r["peak_rss_mib"] for r in counted.values()), default=0)
        read, kept = CorpusCounts(), CorpusCounts()
        for task in tasks:
            read.add_json(counted[task.key]["read"])
            kept.add_json(counted[task.key]["kept"])
        return {"word_table": info, "read": read.to_json(), "kept": kept.to_json()}

    def report(self, result: StageResult) -> list[str]:
        report = json.loads((result.output_dir / REPORT).read_text(encoding="utf-8"))
        vocab = report["vocab"]
        if result.already_done:
            return [f"[green]tokenizer already trained[/green] → {result.output_dir}: {vocab['learned']:,} learned + {vocab['specials']} specials, padded {vocab['padded_vocab_size']:,}"]
        lines = []
        per_lang = report.get("bytes_per_language") or {}
        if report["word_table"]:
            table = report["word_table"]
            share = f" and {100 * table['boundary_share']:.0f}% of those seen {_times(table['min_count'] - 1)}" if table["boundary_share"] else ""
            pruned = ", ".join(f"{lang} {100 * n['pruned'] / max(1, n['pruned'] + n['trained']):.2f}%" for lang, n in per_lang.items() if n["pruned"] + n["trained"])
            lines.append(
                f"word table: {table['distinct_words']:,} distinct words, kept {table['kept_words']:,} (those seen >= {table['min_count']} times{share}); "
                f"pruned {100 * table['dropped_byte_share']:.2f}% of the text's bytes ({pruned}); trainer estimate {table['estimated_trainer_gib']} GiB"
            )
        trained = ", ".join(_language_line(lang, n) for lang, n in per_lang.items() if n["read"] or n["trained"]) or "nothing"
        lines.append(
            f"[green]tokenizer trained[/green] → {result.output_dir}: {vocab['learned']:,} learned + {vocab['specials']} specials, "
            f"padded {vocab['padded_vocab_size']:,}; trained on {trained}; {result.seconds:.1f} s, trainer peak {report['peak_rss_mib']:,} MiB"
        )
        return lines


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _label(unit: Any) -> str:
    if unit.kind == "parquet_range":
        return f"{unit.path}@row-group-{unit.start}"
    return f"{unit.path}@{unit.start}" if unit.kind.endswith("_range") else unit.path


def _language_line(lang: str, n: dict[str, int]) -> str:
    """`zh 3.6 MiB of 5.3 MiB (1.7 MiB pruned)`: bytes trained on, read, and where the rest went."""
    line = f"{lang} {human_bytes(n['trained'])}"
    if n["read"] != n["trained"]:
        left = [f"{human_bytes(n[key])} {what}" for key, what in (("not_sampled", "not sampled"), ("pruned", "pruned")) if n[key]]
        line += f" of {human_bytes(n['read'])}" + (f" ({', '.join(left)})" if left else "")
    return line


def _stats(report: dict[str, Any], files: int) -> dict[str, Any]:
    """The stage's counts: documents read, trained on, left out by the sampling; unreadable records;
    bytes per language read, left out by the sampling, pruned from the word table, trained on."""
    read, trained = report["corpus_read"], report["corpus_trained"]
    documents_in = sum(read["documents"].values())
    kept = sum(trained["documents"].values())
    # Unreadable records were never documents; a block with bad UTF-8 was read (repaired) and counted.
    unreadable = {k: n for k, n in read["bad_records"].items() if k != REPAIRED}
    empty = sum(read.get("empty", {}).values())  # no text: never trained on, sampled or not
    dropped = {key: n for key, n in (("empty", empty), ("not_sampled", documents_in - kept - empty)) if n > 0}
    counters = {}
    for lang, n in report["bytes_per_language"].items():
        counters.update({f"bytes_{key}:{lang}": value for key, value in n.items() if value or key in ("read", "trained")})
    if read["bad_records"].get(REPAIRED):
        counters[REPAIRED] = read["bad_records"][REPAIRED]
    return {
        "stage": "tokenizer",
        "parts": files,
        "in": documents_in + sum(unreadable.values()),
        "kept": kept,
        "dropped": dict(sorted({**dropped, **unreadable}.items())),
        "quarantined": 0,
        "counters": dict(sorted(counters.items())),
    }


def train_tokenizer(config: TokenizerConfig, output: str | Path, ray_options: RayOptions | None = None, progress: bool = False) -> dict[str, Any]:
    """Run the tokenizer stage into `output`; return its train report (train_report.json)."""
    result = run_stage(TokenizerStage(config), output, ray_options, progress)
    if not result.ok:
        raise RuntimeError("tokenizer training failed: " + "; ".join(f"{k}: {d}" for k, d in result.failures))
    return json.loads((as_path(output) / REPORT).read_text(encoding="utf-8"))
