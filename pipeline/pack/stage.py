"""`crawlmill pack`: pipeline output -> Megatron-Core IndexedDataset shards (.bin + .idx) + manifest.json.

Three steps through the runner, all Ray tasks, all resumable:

1. encode.py, one task per input part: tokenize in batches (tokenizers' encode_batch_fast, or the
   same ids from text cut and memoized by tokenizer/fastencode.py where the tokenizer allows), append
   EOD, write the part's tokens and a per-document table to `_work/tokens/`, its counts to `_parts/`.
2. shards.py: cut the parts' documents, in input order, into shards of at most `shard_tokens`
   tokens (boundaries computed from the pass-1 lengths, so they never depend on scheduling), one
   task per shard copying token bytes into `shard-NNNNN.bin` and writing `.idx` and `.docs.parquet`.
3. domains.py, one task per run of 64 parts, then one per hash partition of the domains: sum the
   per-domain counts.

A remix output folder (it has _mixture.json, or mixture.json where an earlier version wrote it) is
packed group by group: each group's parts into shards of its own, `<group>-00000`, ..., and the
manifest's blend is the mixture (mixture.py).

Then `manifest.json` (manifest.py), `domains.parquet`, `_stats.json`, `_SUCCESS`, and `_work/` is
deleted (it holds a second copy of every token). A rerun skips finished parts, shards and
partitions, removes temporaries of a killed run and gives byte-identical output; a rerun with other
inputs or settings is refused (`_tasks.json`). Parts are read in the order given (each folder's
parts sorted), rows in order, so the document order of the shards is deterministic.

Run it: `crawlmill pack out/dedup --tokenizer TOKENIZER_DIR --output out/shards [--shard-size-mb 1024]`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from crawlmill.files import AnyPath, atomic_write_json, file_size, read_text, sha256_file

from ..parts import PARTS_DIR, PartStats, input_parts, part_name
from ..remix.layout import mixture_path
from ..runner import StageContext, Task
from ..stage import Stage, StageResult, merge_stats
from .config import PackConfig
from .domains import WORK_FORMAT, combine_run, finish_domains, merge_partition, partitions_for, run_files
from .encode import PackSettings, encode_part
from .manifest import DOMAINS_IN_MANIFEST, MANIFEST, build_manifest
from .mixture import mixture_blend, mixture_lines, remix_input
from .shards import plan_shards, write_shard
from .tokenizer import TokenizerInfo, inspect_tokenizer_dir


class OutputDamaged(ValueError):
    """A finished pack folder whose files are not those its manifest lists (exit status 2)."""


class PackStage(Stage):
    name = "pack"
    remove_work = True  # _work/ holds a second copy of every token
    resume_only_settings = ("work_format",)  # a finished folder of an older version stays done

    def __init__(self, config: PackConfig) -> None:
        super().__init__(config)
        if config.tokenizer is None:
            raise ValueError("pack needs a tokenizer folder (--tokenizer DIR; in a run, the tokenizer stage's)")
        self.parts = [part for folder in config.inputs for part in input_parts(folder)]
        self.remix = remix_input(config.inputs, self.parts)  # remix output: shards and blend per group
        self.info: TokenizerInfo = inspect_tokenizer_dir(config.tokenizer, config.eod_token, config.padded_vocab_size)
        self.itemsize = np.dtype(self.info.dtype).itemsize
        self.shard_tokens = config.resolve_shard_tokens(self.itemsize)
        self.domain_partitions = config.domain_partitions or partitions_for(len(self.parts))

    def sources(self) -> list[str]:
        return self.parts

    def fingerprint(self) -> dict[str, Any]:
        info = self.info
        return {
            "tokenizer_sha256": info.sha256,
            "eod_id": info.eod_id,
            "padded_vocab_size": info.padded_vocab_size,
            "dtype": info.dtype,
            "shard_tokens": self.shard_tokens,
            "domain_partitions": self.domain_partitions,
            "work_format": WORK_FORMAT,
            # only when not the default: a folder packed before the setting existed stays done
            **({"special_tokens_in_text": "text"} if self.config.special_tokens_in_text == "text" else {}),
            # the file found, new name or old: the bytes are the same, so a renamed folder's pack resumes
            **({"mixture_sha256": sha256_file(mixture_path(self.remix.folder))} if self.remix else {}),
        }

    def run(self, ctx: StageContext) -> dict[str, Any]:
        c, output, work = self.config, ctx.output, ctx.work
        settings = PackSettings(
            self.info, batch_rows=c.batch_rows, batch_bytes=c.batch_bytes, threads=c.threads_per_task,
            domain_partitions=self.domain_partitions, fast_encode=c.fast_encode, special_as_text=c.special_tokens_in_text == "text",
        )  # fmt: skip
        encode = [Task(part_name(i), (i, source, str(output)), label=source) for i, source in enumerate(self.parts)]
        parts = ctx.step("parts", encode_part, encode, shared=(settings,), markers=output / PARTS_DIR, unit="parts", title="pack: tokenize")
        part_markers = [parts[task.key] for task in encode]

        if self.remix is None:
            plans = plan_shards(work, len(self.parts), self.shard_tokens, self.itemsize)
        else:
            plans = [p for group, parts in self.remix.groups for p in plan_shards(work, parts, self.shard_tokens, self.itemsize, prefix=group)]
        write = [Task(p.name, (p, str(output))) for p in plans]
        shards = ctx.step("shards", write_shard, write, shared=(self.info.dtype,), unit="shards", title="pack: shards")
        shard_markers = [shards[task.key] for task in write]

        combine = [Task(f"run-{i:05d}", (i, files, str(work), self.domain_partitions)) for i, files in enumerate(run_files(work, len(self.parts)))]
        ctx.step("domain_runs", combine_run, combine, unit="runs", title="pack: domain runs")
        merge = [Task(f"p-{r:05d}", (r, str(work), DOMAINS_IN_MANIFEST)) for r in range(self.domain_partitions)]
        merged = ctx.step("domains", merge_partition, merge, unit="partitions", title="pack: domains")
        domains = finish_domains(output, work, [merged[task.key] for task in merge], DOMAINS_IN_MANIFEST)

        blend = mixture_blend(self.remix, shard_markers, [p.prefix for p in plans]) if self.remix else None
        manifest = build_manifest(self.info, self.parts, self.shard_tokens, part_markers, shard_markers, domains, blend)
        atomic_write_json(output / MANIFEST, manifest)
        stats = merge_stats("pack", [PartStats.from_json(m) for m in part_markers])
        stats["counters"]["shards"] = len(plans)
        stats["counters"]["eod_tokens"] = manifest["documents"]
        stats["counters"] = dict(sorted(stats["counters"].items()))
        return stats

    def check_done(self, output: AnyPath) -> None:
        """Every file the manifest lists, at the size it records (a stat each, no data read)."""
        manifest = json.loads(read_text(output / MANIFEST)) if (output / MANIFEST).is_file() else None
        if manifest is None:
            raise OutputDamaged(f"{output}: finished, but its {MANIFEST} is gone; --overwrite packs it again")
        for shard in manifest.get("shards", []):
            for kind, entry in shard.get("files", {}).items():
                path = output / entry["name"]
                size = file_size(path) if path.is_file() else None
                if size != entry.get("bytes", size):
                    what = "is missing" if size is None else f"holds {size:,} bytes, the manifest says {entry['bytes']:,}"
                    raise OutputDamaged(f"{output}: finished, but {entry['name']} {what} (changed since it was packed); "
                                        f"`crawlmill shards verify {output}` checks the rest; --overwrite packs it again")  # fmt: skip

    def report(self, result: StageResult) -> list[str]:
        manifest = json.loads(read_text(result.output_dir / MANIFEST))
        stats = result.stats or {}
        dropped = ", ".join(f"{k} {v:,}" for k, v in stats.get("dropped", {}).items()) or "none"
        quarantined = f"; {stats['quarantined']:,} quarantined (_quarantine/)" if stats.get("quarantined") else ""
        rate = f"; {result.seconds:.1f} s, {manifest['tokens'] / max(result.seconds, 1e-9):,.0f} tokens/s" if not result.already_done else ""
        lines = [
            f"[green]pack done[/green] → {result.output_dir}: {stats['in']:,} documents in, {manifest['documents']:,} packed "
            f"({manifest['tokens']:,} {manifest['megatron']['dtype']} tokens) into {manifest['shards_count']} shard(s); "
            f"dropped: {dropped}{quarantined}{rate}"
        ]
        shards_before = manifest["shards_count"] if result.already_done else result.steps_finished_before.get("shards", 0)
        if result.finished_before or shards_before:
            lines.append(f"({result.finished_before} part(s) and {shards_before} shard(s) were already finished and were skipped)")
        lines += mixture_lines(manifest["blend"])
        reason = self.info.fast_encode_unsupported
        lines.append("fast encode: " + ("off (--no-fast-encode)" if not self.config.fast_encode else f"off: {reason}" if reason else "on"))
        return lines
