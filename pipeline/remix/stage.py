"""`crawlmill remix`: DeepSeek's remixing. Every document gets its registered `domain` and a
`group` (URL rules, a fastText topic classifier, the default group: labels.py); the documents are
written group by group (layout.py), and the mixture of groups training should see is computed from
their sizes (mixture.py) into `_mixture.json` and `_mixture.png` (report.py). Nothing is copied or
dropped: pack writes one shard prefix per group and puts the mixture's shares in its manifest's
blend, so Megatron samples the mixture at training time, repeating or skipping documents there.

Two steps, through the runner:

1. `parts`, one Ray task per input part: read it in batches of `batch_rows`, label each document,
   count its characters (and tokens, with `mixture.tokenizer`: pack's own encoder, so the count
   is exactly what pack will pack, EOD included) and write it to its group's part,
   `part-<group>-NNNNN.parquet` (PartSink: atomic, bounded row groups). The part's counts per
   group are its marker, `_parts/part-NNNNN.json`. Memory: one batch plus one bounded buffer per
   group, never the corpus.
2. on the driver: sum the markers per group (one row per group), plan the mixture, write
   _mixture.json and _mixture.png. A mixture the cap cannot meet stops the stage with an error
   naming the groups (exit status 2) unless `allow_shortfall`.

Every input document ends in exactly one group (`_stats.json` counts them per group and by what
placed them: `labelled_by:rule|classifier|default`), except a row without its `id` or `text` (a
foreign part's null), quarantined as `no_id` / `no_text` with its part and row (in == kept +
quarantined). Nothing depends on scheduling or randomness, so two runs give byte-identical
folders; a killed run resumes part by part.

Run it: `crawlmill remix out/dedup --output out/remix --rule '*.wikipedia.org=encyclopedia' [--config remix.yaml]`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any


from crawlmill.files import as_path, atomic_write_json, parquet_file, remove_file

from ..quality.model import model_digest
from ..pack.tokenizer import TokenizerInfo, inspect_tokenizer_dir
from ..partfile import Quarantine
from ..parts import PARTS_DIR, PartSink, PartStats, input_parts, part_name, redo_orphan_markers
from ..runner import StageContext, Task
from ..schema import with_document_columns
from ..stage import Stage, StageResult, merge_stats
from .config import RemixConfig
from .labels import Labeler
from .layout import LEGACY_MIXTURE_FILE, LEGACY_MIXTURE_PLOT, MIXTURE_FILE, MIXTURE_PLOT, group_part_name, mixture_path, with_group_columns
from .mixture import plan_mixture
from .report import mixture_document, plot_mixture, report_lines

SINK_BATCH_BYTES = 8 << 20  # text buffered per group before a row group is written


@dataclasses.dataclass
class LabelSettings:
    """What every part task needs (shipped to Ray once)."""

    config: RemixConfig
    tokenizer: TokenizerInfo | None  # count tokens with it (unit tokens)


def label_part(settings: LabelSettings, index: int, source: str, output_dir: str) -> dict[str, Any]:
    """Ray task: label one input part's documents and write them by group; return its counts."""
    from ..pack.encode import worker_encoder

    labeler = Labeler(settings.config)
    encoder = worker_encoder(settings.tokenizer, 1, True) if settings.tokenizer else None
    parquet = parquet_file(source)
    schema = with_group_columns(with_document_columns(parquet.schema_arrow))
    sinks: dict[str, PartSink] = {}
    counts: dict[str, Counter] = {}
    labelled_by: Counter = Counter()
    # A row without its id or text (a foreign part's null) can be neither labelled nor written: it
    # is quarantined (`no_id` / `no_text`, with its row) into the input part's own quarantine file,
    # since it belongs to no group.
    quarantine = Quarantine(as_path(output_dir), index, source, "remix")
    offset = 0
    try:
        for batch in parquet.iter_batches(batch_size=settings.config.batch_rows):
            rows = [row for k, row in enumerate(batch.to_pylist(), offset) if not quarantine.incomplete(row, k)]
            offset += batch.num_rows
            if not rows:
                continue
            tokens = encoder.encode_documents([r["text"] for r in rows])[1].tolist() if encoder else None
            labels = labeler.label_batch([r.get("url") for r in rows], [r["text"] for r in rows], [r.get("lang") for r in rows])
            for k, (row, (domain, group, how)) in enumerate(zip(rows, labels)):
                if group not in sinks:
                    name = group_part_name(group, index)
                    sinks[group] = PartSink(as_path(output_dir), index, source, "remix", schema, batch_bytes=SINK_BATCH_BYTES, name=name)
                    counts[group] = Counter()
                sinks[group].keep({**row, "domain": domain, "group": group})
                counts[group].update(documents=1, characters=len(row["text"]), **({"tokens": tokens[k]} if tokens else {}))
                labelled_by[how] += 1
        for group in sorted(sinks):
            sinks[group].commit()
        quarantine.commit()
    except BaseException:
        for sink in [*sinks.values(), quarantine]:
            sink.abort()
        raise
    stats = PartStats(index=index, source=source)
    stats.files = {name: size for sink in sinks.values() for name, size in sink.stats.files.items()}  # checked by readers
    stats.kept = sum(c["documents"] for c in counts.values())
    stats.quarantined = quarantine.count
    stats.records_in = stats.kept + stats.quarantined
    stats.counters.update({f"group:{g}": c["documents"] for g, c in counts.items()})
    stats.counters.update({f"labelled_by:{how}": n for how, n in labelled_by.items()})
    groups = {g: {"documents": c["documents"], "characters": c["characters"], **({"tokens": c["tokens"]} if encoder else {})} for g, c in sorted(counts.items())}
    return {**stats.to_json(), "groups": groups}


def group_totals(markers: list[dict[str, Any]], groups: list[str], with_tokens: bool) -> dict[str, dict[str, int]]:
    """Documents, characters (and tokens) per group over every part; every configured group, even empty."""
    keys = ["documents", "characters", *(["tokens"] if with_tokens else [])]
    totals = {g: dict.fromkeys([*keys, "parts"], 0) for g in groups}
    for marker in markers:
        for group, counts in marker["groups"].items():
            entry = totals.setdefault(group, dict.fromkeys([*keys, "parts"], 0))
            for key in keys:
                entry[key] += counts[key]
            entry["parts"] += 1
    return dict(sorted(totals.items()))


class RemixStage(Stage):
    name = "remix"

    def __init__(self, config: RemixConfig) -> None:
        super().__init__(config)
        if not config.inputs:
            raise ValueError("remix needs input folders (finished stage output, e.g. dedup's)")
        self.parts = [part for folder in config.inputs for part in input_parts(folder)]
        self.tokenizer = inspect_tokenizer_dir(config.mixture.tokenizer) if config.mixture.tokenizer else None

    def sources(self) -> list[str]:
        return self.parts

    def fingerprint(self) -> dict[str, Any]:
        c = self.config
        mixture = {k: v for k, v in dataclasses.asdict(c.mixture).items() if k != "tokenizer"}
        classifier = None
        if c.classifier.model:
            classifier = {"sha256": model_digest(c.classifier.model), "labels": c.classifier.labels, "min_score": c.classifier.min_score}
        return {
            "rules": [dataclasses.asdict(rule) for rule in c.rules],
            "default_group": c.default_group,
            "classifier": classifier,
            "mixture": {**mixture, "method": c.mixture.resolved_method, "unit": c.mixture.resolved_unit},
            "tokenizer_sha256": self.tokenizer.sha256 if self.tokenizer else None,
        }

    def run(self, ctx: StageContext) -> dict[str, Any]:
        c = self.config
        settings = LabelSettings(c, self.tokenizer)
        tasks = [Task(part_name(i), (i, source, str(ctx.output)), label=source) for i, source in enumerate(self.parts)]
        redo_orphan_markers(ctx.output)  # a marker whose group parts are gone: label that part again
        results = ctx.step("parts", label_part, tasks, shared=(settings,), markers=ctx.output / PARTS_DIR, unit="parts", title="remix")
        markers = [results[task.key] for task in tasks]
        unit = c.mixture.resolved_unit
        totals = group_totals(markers, c.groups, with_tokens=unit == "tokens")
        mix = c.mixture
        mixture = plan_mixture(
            {g: float(t[unit]) for g, t in totals.items()}, mix.resolved_method, weights=mix.weights, temperature=mix.temperature,
            max_epochs=mix.max_epochs, budget=mix.budget, allow_shortfall=mix.allow_shortfall, unit=unit,
        )  # fmt: skip
        document = mixture_document(c, mixture, totals, self.tokenizer)
        atomic_write_json(ctx.output / MIXTURE_FILE, document)
        plot_mixture(ctx.output / MIXTURE_PLOT, document)
        # An earlier version's folder, resumed: drop its mixture.json/.png, so the folder holds one
        # mixture and no file a Parquet reader would take for a part.
        for legacy in (LEGACY_MIXTURE_FILE, LEGACY_MIXTURE_PLOT):
            remove_file(ctx.output / legacy)
        stats = merge_stats(self.name, [PartStats.from_json(marker) for marker in markers])
        stats["counters"]["groups"] = sum(1 for t in totals.values() if t["documents"])
        stats["counters"] = dict(sorted(stats["counters"].items()))
        return stats

    def report(self, result: StageResult) -> list[str]:
        # mixture_path: a finished folder of an earlier version (nothing reruns) has mixture.json
        return [*super().report(result), *report_lines(mixture_path(result.output_dir) or result.output_dir / MIXTURE_FILE)]
