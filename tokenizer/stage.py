"""The tokenizer stage: train the byte-level BPE vocabulary on Ray through the runner.

    crawlmill tokenizer train out/dedup --output out/tokenizer                 # the verb
    crawlmill run configs/demo.yaml --only tokenizer                           # the pipeline stage
    train_tokenizer(TokenizerConfig(inputs=["out/dedup"]), "out/tokenizer")    # from Python

Steps (each a set of resumable Ray tasks):

1. `scan` (only with `mix` or `max_bytes`): bytes and documents per language, one task per file;
   the driver turns them into keep probabilities per language (corpus.keep_probabilities);
2. `count` and `reduce` (only with `max_memory_gib`): the word table (wordcount.py), one task per
   input chunk, then one per word partition; the driver picks the words that fit the budget;
3. `train`: one task trains (train.py, all the node's cores through the Rust trainer) and writes
   the tokenizer files into the output folder.

The output folder is a tokenizer folder (tokenizer.json, ... train_report.json) and a stage folder
(`_stats.json`: documents read, trained on, left out by the sampling, unreadable records by reason).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crawlmill.files import as_path

from ..pipeline.ray_tasks import RayOptions
from ..pipeline.runner import StageContext, Task, run_stage
from ..pipeline.stage import Stage, StageInputError, StageResult

from .config import TokenizerConfig
from .corpus import CorpusCounts, InputSpec, SampledCorpus, count_languages, expand_files, keep_probabilities
from .train import train
from .wordcount import choose_min_count, count_words, feed, plan_count_tasks, reduce_words

REPORT = "train_report.json"
REPAIRED = "invalid_utf8_replaced"  # corpus.decode_block: a block read with its bad bytes replaced


def train_task(config: TokenizerConfig, plan: dict[str, Any], output: str) -> dict[str, Any]:
    """The `train` step's one task: the corpus (streamed and sampled, or the word table), trained."""
    specs = [InputSpec.parse(spec) for spec in config.inputs]
    word_table = plan["word_table"]
    if word_table is None:
        corpus = SampledCorpus(specs, plan["probabilities"], config.seed)
        seen, kept = corpus.seen, corpus.kept
        texts = corpus
    else:
        seen, kept = CorpusCounts(), CorpusCounts()
        seen.add_json(plan["read"])
        kept.add_json(plan["kept"])
        texts = feed(plan["work"], word_table["partitions"], word_table["min_count"], word_table["boundary_share"])
    extra = {"word_table": word_table, "language_scan": plan["language_scan"], "keep_probabilities": plan["probabilities"]}
    return train(config, texts, seen, kept, as_path(output), extra)


class TokenizerStage(Stage):
    name = "tokenizer"
    remove_work = True  # the word table

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
        c = self.config
        probabilities, scan = None, None
        if c.mix or c.max_bytes:
            tasks = [Task(f"file-{i:05d}", file, label=file[1]) for i, file in enumerate(self.files)]
            scanned = ctx.step("scan", count_languages, tasks, unit="files")
            scan = CorpusCounts()
            for task in tasks:
                scan.add_json(scanned[task.key])
            try:
                probabilities = keep_probabilities(scan.bytes, c.mix, c.max_bytes)
            except ValueError as exc:  # the mix asks for a language the inputs lack
                raise StageInputError(str(exc)) from None
        plan: dict[str, Any] = {"probabilities": probabilities, "language_scan": scan.to_json() if scan else None, "word_table": None}
        if c.max_memory_gib:
            plan.update(self._word_table(ctx, probabilities))
        trained = ctx.step("train", train_task, [Task("train", (plan, str(ctx.output)))], shared=(c,), title="tokenizer train")
        report = trained["train"]
        return _stats(report, len(self.files))

    def _word_table(self, ctx: StageContext, probabilities: dict[str, float] | None) -> dict[str, Any]:
        c, work = self.config, str(ctx.work)
        chunks = plan_count_tasks(self.specs, int(c.count_chunk_mb * 2**20))
        partitions = max(1, min(256, len(chunks)))
        tasks = [Task(f"chunk-{t.index:05d}", (t, probabilities, c.seed, partitions, work), label=f"{t.path}@{t.start}") for t in chunks]
        counted = ctx.step("count", count_words, tasks, unit="chunks", title="tokenizer word count")
        reduced = ctx.step("reduce", reduce_words, [Task(f"p-{p:05d}", (p, work)) for p in range(partitions)], unit="partitions")
        info = choose_min_count([reduced[f"p-{p:05d}"] for p in range(partitions)], c.max_memory_gib)
        info["count_tasks"], info["partitions"] = len(chunks), partitions
        info["count_task_peak_rss_mib"] = max((r["peak_rss_mib"] for r in counted.values()), default=0)
        read, kept = CorpusCounts(), CorpusCounts()
        for task in tasks:
            read.add_json(counted[task.key]["read"])
            kept.add_json(counted[task.key]["kept"])
        return {"word_table": info, "work": work, "read": read.to_json(), "kept": kept.to_json()}

    def report(self, result: StageResult) -> list[str]:
        report = json.loads((result.output_dir / REPORT).read_text(encoding="utf-8"))
        vocab = report["vocab"]
        if result.already_done:
            return [f"[green]tokenizer already trained[/green] → {result.output_dir}: {vocab['learned']:,} learned + {vocab['specials']} specials, padded {vocab['padded_vocab_size']:,}"]
        lines = []
        if report["word_table"]:
            table = report["word_table"]
            lines.append(
                f"word table: {table['distinct_words']:,} distinct words, kept {table['kept_words']:,} seen >= {table['min_count']} times "
                f"({100 * table['dropped_byte_share']:.2f}% of the text's bytes dropped), trainer estimate {table['estimated_trainer_gib']} GiB"
            )
        mib = ", ".join(f"{lang} {size / 2**20:,.1f} MiB" for lang, size in report["corpus_trained"]["bytes"].items())
        lines.append(
            f"[green]tokenizer trained[/green] → {result.output_dir}: {vocab['learned']:,} learned + {vocab['specials']} specials, "
            f"padded {vocab['padded_vocab_size']:,}; trained on {mib}; {result.seconds:.1f} s, trainer peak {report['peak_rss_mib']:,} MiB"
        )
        return lines


def _stats(report: dict[str, Any], files: int) -> dict[str, Any]:
    """The stage's counts: documents read, trained on, left out by the sampling; unreadable records."""
    read, trained = report["corpus_read"], report["corpus_trained"]
    documents_in = sum(read["documents"].values())
    kept = sum(trained["documents"].values())
    # Unreadable records were never documents; a block with bad UTF-8 was read (repaired) and counted.
    unreadable = {k: n for k, n in read["bad_records"].items() if k != REPAIRED}
    dropped = {"not_sampled": documents_in - kept} if documents_in > kept else {}
    counters = {f"bytes_trained:{lang}": n for lang, n in trained["bytes"].items()}
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
