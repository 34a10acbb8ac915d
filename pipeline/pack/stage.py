"""`crawlmill pack`: pipeline output -> Megatron-Core IndexedDataset shards (.bin + .idx) + manifest.json.

Three passes, all Ray tasks, all resumable:

1. encode.py, one task per input part: tokenize in batches (tokenizers' encode_batch_fast, or the
   same ids from text cut and memoized by tokenizer/fastencode.py where the tokenizer allows), append
   EOD, write the part's tokens and a per-document table to `_work/tokens/`, its counts to `_parts/`.
2. shards.py: cut the parts' documents, in input order, into shards of at most `shard_tokens`
   tokens (boundaries computed from the pass-1 lengths, so they never depend on scheduling), one
   task per shard copying token bytes into `shard-NNNNN.bin` and writing `.idx` and `.docs.parquet`.
3. domains.py, one task per hash partition of the domains: sum the per-domain counts.

Then `manifest.json` (manifest.py), `domains.parquet`, `_stats.json`, `_SUCCESS`, and `_work/` is
deleted (it holds a second copy of every token). A rerun skips finished parts, shards and partitions, removes
temporaries of a killed run and gives byte-identical output; a rerun with other inputs or settings
is refused (`_tasks.json`). Parts are read in the order given (each folder's parts sorted), rows in
order, so the document order of the shards is deterministic.

Run it: `crawlmill pack out/dedup --tokenizer TOKENIZER_DIR --output out/shards [--shard-size-mb 1024]`.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..parts import PARTS_DIR, TMP_MARK, PartStats, atomic_write_text, input_parts, marker_path
from ..progress import StageProgress
from ..ray_tasks import Job, RayOptions, run_jobs
from ..stage import StageResult, check_task_record, merge_stats
from .encode import PackSettings, encode_part
from .domains import finish_domains, merge_partition, partitions_for, read_merge_marker
from .manifest import DOMAINS_IN_MANIFEST, MANIFEST, build_manifest
from .shards import plan_shards, read_shard_marker, write_shard
from .tokenizer import TokenizerInfo, inspect_tokenizer_dir

DEFAULT_SHARD_MB = 1024


@dataclass
class PackConfig:
    shard_tokens: int | None = None  # at most this many tokens per shard (documents are never split)
    shard_size_mb: float | None = None  # or: at most this many MiB of .bin per shard (default 1024)
    eod_token: str | None = None  # default: tokenizer_config.json's eos_token
    padded_vocab_size: int | None = None  # default: crawlmill.json, else vocab rounded up to 128
    batch_rows: int = 1024
    batch_bytes: int = 8 << 20
    threads_per_task: int = 1
    domain_partitions: int | None = None  # default: one per 64 input parts (domains.py)
    fast_encode: bool = True  # same ids, cut and memoized (tokenizer/fastencode.py) where the tokenizer allows

    def resolve_shard_tokens(self, itemsize: int) -> int:
        if self.shard_tokens is not None and self.shard_size_mb is not None:
            raise ValueError("give --shard-tokens or --shard-size-mb, not both")
        if self.shard_tokens is not None:
            tokens = self.shard_tokens
        else:
            tokens = int((self.shard_size_mb or DEFAULT_SHARD_MB) * (1 << 20)) // itemsize
        if tokens < 1:
            raise ValueError(f"shard size must be at least one token (got {tokens})")
        return tokens


@dataclass
class PackResult(StageResult):
    manifest: dict[str, Any] | None = None
    shards_before: int = 0
    tokenizer: TokenizerInfo | None = None


def _run_pass(
    name: str, unit: str, fn: Any, jobs: list[Job], total: int, done: int, shared: tuple, options: RayOptions, progress: bool
) -> list[tuple[str, str]]:
    """One pass's Ray tasks with a progress bar; returns the failures (none: the pass finished)."""
    if not jobs:
        return []
    with StageProgress(name, total=total, done=done, enabled=progress, unit=unit) as bar:
        outcome = run_jobs(
            fn, jobs, options,
            on_done=lambda job, marker: bar.part_done(marker if isinstance(marker, dict) else {}),
            on_failed=lambda job, detail: bar.part_failed(job.key, detail),
            shared=shared,
        )  # fmt: skip
    return outcome.failures


def _remove_temporaries(output: Path) -> None:
    for path in output.rglob(f"{TMP_MARK}*"):
        path.unlink(missing_ok=True)


def run_pack(
    inputs: list[str | Path],
    output: str | Path,
    tokenizer_dir: str | Path,
    config: PackConfig | None = None,
    ray_options: RayOptions | None = None,
    progress: bool = True,
    tokenizer: TokenizerInfo | None = None,
) -> PackResult:
    """Pack finished stage folders `inputs` into shards in `output` (see the module docstring)."""
    config = config or PackConfig()
    options = ray_options or RayOptions()
    output = Path(output)
    parts = [part for folder in inputs for part in input_parts(folder)]
    info = tokenizer or inspect_tokenizer_dir(tokenizer_dir, config.eod_token, config.padded_vocab_size)
    itemsize = np.dtype(info.dtype).itemsize
    shard_tokens = config.resolve_shard_tokens(itemsize)
    domain_partitions = config.domain_partitions or partitions_for(len(parts))
    output.mkdir(parents=True, exist_ok=True)
    check_task_record(
        output,
        {
            "stage": "pack",
            "settings": {
                "tokenizer_sha256": info.sha256,
                "eod_id": info.eod_id,
                "padded_vocab_size": info.padded_vocab_size,
                "dtype": info.dtype,
                "shard_tokens": shard_tokens,
                "domain_partitions": domain_partitions,
            },
            "sources": parts,
        },
    )
    result = PackResult(stats=None, output_dir=output, tokenizer=info)
    if (output / "_SUCCESS").exists():
        result.finished_before = len(parts)
        result.stats = json.loads((output / "_stats.json").read_text(encoding="utf-8"))
        result.manifest = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
        result.shards_before = result.manifest["shards_count"]
        shutil.rmtree(output / "_work", ignore_errors=True)  # a run killed while deleting it
        return result
    _remove_temporaries(output)
    (output / PARTS_DIR).mkdir(exist_ok=True)
    work = output / "_work"
    settings = PackSettings(
        info, batch_rows=config.batch_rows, batch_bytes=config.batch_bytes, threads=config.threads_per_task,
        domain_partitions=domain_partitions, fast_encode=config.fast_encode,
    )  # fmt: skip

    # Pass 1: tokenize every unfinished part.
    todo = [Job(source, (i, source, str(output))) for i, source in enumerate(parts) if not marker_path(output, i).exists()]
    result.finished_before = len(parts) - len(todo)
    result.failures = _run_pass("pack: tokenize", "parts", encode_part, todo, len(parts), result.finished_before, (settings,), options, progress)
    if result.failures:
        return result
    part_markers = [json.loads(marker_path(output, i).read_text(encoding="utf-8")) for i in range(len(parts))]

    # Pass 2: cut into shards at deterministic boundaries and write the unfinished ones.
    plans = plan_shards(work, len(parts), shard_tokens, itemsize)
    todo_shards = [Job(f"shard {p.number}", (p, str(output))) for p in plans if read_shard_marker(work, p.number) is None]
    result.shards_before = len(plans) - len(todo_shards)
    result.failures = _run_pass("pack: shards", "shards", write_shard, todo_shards, len(plans), result.shards_before, (info.dtype,), options, progress)
    if result.failures:
        return result
    shard_markers = [read_shard_marker(work, p.number) for p in plans]

    # Pass 3: per-domain counts, one task per hash partition of the domains.
    todo_domains = [Job(f"domains {r}", (r, str(work), DOMAINS_IN_MANIFEST)) for r in range(domain_partitions) if read_merge_marker(work, r) is None]
    done = domain_partitions - len(todo_domains)
    result.failures = _run_pass("pack: domains", "partitions", merge_partition, todo_domains, domain_partitions, done, (), options, progress)
    if result.failures:
        return result
    domains = finish_domains(output, work, [read_merge_marker(work, r) for r in range(domain_partitions)], DOMAINS_IN_MANIFEST)

    manifest = build_manifest(info, parts, shard_tokens, part_markers, shard_markers, domains)
    atomic_write_text(output / MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False))
    stats = merge_stats("pack", [PartStats.from_json(m) for m in part_markers])
    stats["counters"]["shards"] = len(plans)
    stats["counters"]["eod_tokens"] = manifest["documents"]
    stats["counters"] = dict(sorted(stats["counters"].items()))
    atomic_write_text(output / "_stats.json", json.dumps(stats, indent=1, ensure_ascii=False))
    atomic_write_text(output / "_SUCCESS", "")
    shutil.rmtree(work, ignore_errors=True)  # a second copy of every token; the shards are complete
    result.stats, result.manifest = stats, manifest
    return result
