"""The pipeline: every stage, in order, with what it reads and its config. This list is the one
place the order lives: `crawlmill run` (and its `--only` / `--from`), the Airflow DAG's tasks
(dags/crawlmill_pipeline.py), README's stage table and the tests all take it from here.

Adding a stage is one `StageSpec` here plus its package: a config dataclass (the run config's
section of the same name, and the options of its verb) and a `Stage` subclass (stage.py) built
from that config alone. This module imports only the config classes, so reading it (as the
Airflow scheduler does) needs none of the stages' dependencies.

    crawlmill run configs/demo.yaml                 # every stage, in this order
    crawlmill run configs/demo.yaml --only dedup    # one stage (what it reads must have finished)
    crawlmill run configs/demo.yaml --from dedup    # dedup and everything after it
    python -m crawlmill.pipeline.definition         # the stage table README shows
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from crawlmill.tokenizer.config import TokenizerConfig
from crawlmill.training.config import TrainConfig

from .dedup.config import DedupConfig
from .filter.config import FilterConfig
from .ingest.config import IngestConfig
from .pack.config import PackConfig
from .quality.config import QualityConfig
from .remix.config import RemixConfig


@dataclass(frozen=True)
class StageSpec:
    name: str  # the config section, the DAG task id, the value of --only / --from
    config: type  # the stage's config dataclass
    stage: str  # "module:Class" of its Stage, built as Class(config); imported only when it runs
    summary: str  # one line for the docs
    verb: str  # the command that runs the stage alone
    reads: tuple[str, ...] = ()  # stages whose output folders come first in its `inputs`
    uses: tuple[tuple[str, str], ...] = ()  # (config field, stage): the field defaults to that stage's folder
    folder: str | None = None  # its output folder under output_dir (default: its name)
    inputs_field: str = "inputs"  # the config field (a dotted path) the folders it reads go in front of
    optional: bool = False  # runs only when the run config has its section
    # With a `dumps:` section: runs once per dump into <folder>/<dump>/ (dumps.py), on its dump's folder
    # of a per-dump stage it reads, or its dump's parts of a joint stage's output (its config's
    # for_dump); a stage that is not per-dump reads every dump's folder.
    per_dump: bool = False
    shared: bool = False  # appending dumps: one output for all of them (the tokenizer), not one per dump
    # Given the stage's config: a folder that already holds its output (then nothing runs), or None.
    external: Callable[[Any], str | None] | None = None
    # Whether its `in` counts every record of what it reads (the run's chain check, accounting.py);
    # the tokenizer samples its input and training counts steps.
    counts_input: bool = True
    audit: str | None = None  # "module:function" of the stage's own accounting check (accounting.py)

    def stage_class(self) -> type:
        module, _, name = self.stage.partition(":")
        return getattr(importlib.import_module(module), name)

    def left_out(self, sections: Any) -> bool:
        """Whether a run whose config has these stage sections (`Pipeline.sections_in`) leaves this
        stage out: an optional stage without its section never runs (`crawlmill run`, its
        accounting, and the Airflow DAG, which shows it skipped)."""
        return self.optional and self.name not in sections


class Pipeline:
    """Stages in order; each reads only stages before it."""

    def __init__(self, stages: list[StageSpec]) -> None:
        self.stages = tuple(stages)
        seen: set[str] = set()
        for spec in self.stages:
            if spec.name in seen or spec.name in ("output_dir", "ray", "dumps"):
                raise ValueError(f"stage name {spec.name!r} is taken")
            for upstream in (*spec.reads, *(stage for _, stage in spec.uses)):
                if upstream not in seen:
                    raise ValueError(f"stage {spec.name} reads {upstream!r}, which is not an earlier stage")
                if spec.per_dump and not self.get_in(upstream, stages).per_dump and not hasattr(spec.config, "for_dump"):
                    raise ValueError(f"per-dump stage {spec.name} reads {upstream!r}, which is not per-dump, "
                                     f"and its config has no for_dump to take that stage's parts of one dump")  # fmt: skip
            seen.add(spec.name)

    @staticmethod
    def get_in(name: str, stages: list[StageSpec]) -> StageSpec:
        return next(spec for spec in stages if spec.name == name)

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.stages]

    def sections_in(self, data: dict[str, Any]) -> list[str]:
        """The stages a run config's YAML mapping has a section for: the keys, whatever their value
        (a bare `quality:` or `quality: null` runs the stage with its defaults)."""
        return [spec.name for spec in self.stages if spec.name in data]

    def get(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise KeyError(f"no stage {name!r}; the stages are {', '.join(self.names)}")

    def select(self, only: str | None = None, start: str | None = None) -> list[StageSpec]:
        """The stages a run does: all, `only` one, or `start` and every stage after it."""
        if only is not None and start is not None:
            raise ValueError("give --only or --from, not both")
        for name, flag in ((only, "--only"), (start, "--from")):
            if name is not None and name not in self.names:
                raise ValueError(f"{flag} {name!r}: choose one of {', '.join(self.names)}")
        if only is not None:
            return [self.get(only)]
        return list(self.stages[self.names.index(start) :] if start else self.stages)

    def folder(self, name: str, run_config: Any, dump: str | None = None) -> Any:
        """Where stage `name`'s output is: its external folder, else output_dir/<folder>, and /<dump>
        for one dump's output (not for a `shared` stage); an optional stage the config leaves out
        passes on the output of the stage it reads."""
        spec = self.get(name)
        if spec.optional and spec.reads and name not in getattr(run_config, "sections", [name]):
            return self.folder(spec.reads[0], run_config, dump)
        section = getattr(run_config, name)
        external = spec.external(section) if spec.external else None
        from crawlmill.files import as_path  # a local Path, or a UPath for a URL

        if external:
            return as_path(external)
        base = as_path(run_config.output_dir) / (spec.folder or spec.name)
        return base / dump if dump and not spec.shared else base

    @property
    def per_dump(self) -> list[str]:
        """The stages that run once per dump (with a `dumps:` section), in order."""
        return [spec.name for spec in self.stages if spec.per_dump]

    def segments(self) -> list[tuple[bool, list[str]]]:
        """The stages in runs of per-dump and joint ones, in order: [(per_dump, names), ...]."""
        runs: list[tuple[bool, list[str]]] = []
        for spec in self.stages:
            if runs and runs[-1][0] == spec.per_dump:
                runs[-1][1].append(spec.name)
            else:
                runs.append((spec.per_dump, [spec.name]))
        return runs

    def present(self, name: str, run_config: Any) -> str:
        """`name`, or for an optional stage the config leaves out, the stage whose output it passes on."""
        spec = self.get(name)
        while spec.optional and spec.reads and spec.name not in getattr(run_config, "sections", [spec.name]):
            spec = self.get(spec.reads[0])
        return spec.name

    def markdown_table(self) -> str:
        """README's stage table (a test keeps README equal to it)."""
        rows = ["| # | stage | reads | run alone | what it does |", "|---|---|---|---|---|"]
        for number, spec in enumerate(self.stages, 1):
            reads = ", ".join([*spec.reads, *(stage for _, stage in spec.uses)]) or "—"
            rows.append(f"| {number} | `{spec.name}` | {reads} | `{spec.verb}` | {spec.summary} |")
        return "\n".join(rows)

    def with_stage(self, spec: StageSpec, after: str | None = None) -> Pipeline:
        """A copy with `spec` inserted after stage `after` (default: at the end)."""
        stages = list(self.stages)
        stages.insert(self.names.index(after) + 1 if after else len(stages), spec)
        return Pipeline(stages)


PIPELINE = Pipeline(
    [
        StageSpec("ingest", IngestConfig, "crawlmill.pipeline.ingest.stage:IngestStage",
                  "Common Crawl WARC/WET -> text documents (HTTP, charset, main-text extraction); JSONL, Parquet and text corpora alike",
                  "crawlmill ingest INPUT... --output DIR", per_dump=True),
        StageSpec("filter", FilterConfig, "crawlmill.pipeline.filter.stage:FilterStage",
                  "fastText language ID and linguistic quality rules, right for Chinese",
                  "crawlmill filter DIR... --output DIR", reads=("ingest",), per_dump=True),
        StageSpec("dedup", DedupConfig, "crawlmill.pipeline.dedup.stage:DedupStage",
                  "exact + MinHash LSH near-dedup over every dump at once",
                  "crawlmill dedup DIR... --output DIR", reads=("filter",)),
        StageSpec("quality", QualityConfig, "crawlmill.pipeline.quality.stage:QualityStage",
                  "semantic quality: a fastText classifier's score and percentile bucket, kept by a rule (when the config has a `quality:` section)",
                  "crawlmill quality DIR... --model DIR --output DIR", reads=("dedup",), optional=True, per_dump=True),
        StageSpec("remix", RemixConfig, "crawlmill.pipeline.remix.stage:RemixStage",
                  "registered domain and group per document (URL rules, fastText topic classifier); the mixture of groups under a repeat cap",
                  "crawlmill remix DIR... --output DIR", reads=("quality",)),
        StageSpec("tokenizer", TokenizerConfig, "crawlmill.tokenizer.stage:TokenizerStage",
                  "byte-level BPE with DeepSeek's pre-tokenization, trained on the deduplicated text",
                  "crawlmill tokenizer train INPUT... --output DIR", reads=("remix",),
                  external=lambda config: config.path, shared=True, counts_input=False),
        StageSpec("pack", PackConfig, "crawlmill.pipeline.pack.stage:PackStage",
                  "tokenized, packed Megatron-Core .bin/.idx shards, one prefix per group, with a manifest whose blend is the mixture",
                  "crawlmill pack DIR... --tokenizer DIR --output DIR", reads=("remix",),
                  uses=(("tokenizer", "tokenizer"),), folder="shards", audit="crawlmill.pipeline.pack.audit:audit_shards"),
        StageSpec("train", TrainConfig, "crawlmill.training.stage:TrainStage",
                  "Megatron-Core pretraining of a DeepSeek-style GPT (only when the config has a `train:` section)",
                  "crawlmill train --config FILE --data DIR [--data DIR ...] --output DIR", reads=("pack",),
                  inputs_field="data.shards", optional=True, counts_input=False),
    ]
)  # fmt: skip


if __name__ == "__main__":  # python -m crawlmill.pipeline.definition: the stage table for README
    print(PIPELINE.markdown_table())
