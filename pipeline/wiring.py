"""How a run config becomes stage runs: which stage runs for which dump (`plan_runs`), and each
stage's section with its inputs wired to the folders of the stages it reads (`wire_stage_config`).
Pure planning, nothing runs here: runner.run_pipeline runs the plan, accounting.py checks it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from .definition import Pipeline, StageSpec


def wire_stage_config(pipeline: Pipeline, spec: StageSpec, run_config: Any, dump: str | None = None, append: bool = False) -> Any:
    """Stage `spec`'s section of a run config with its inputs wired: the folders of the stages it
    reads first, then the section's own `inputs`; fields it `uses` default to those stages' folders.
    `dump`: the section for that dump's run (a per-dump stage's, or every stage's when appending);
    a stage after the per-dump ones reads every dump of `dumps.ids` (dumps.py)."""
    section = getattr(run_config, spec.name)
    if dump is not None and hasattr(section, "for_dump"):
        section = section.for_dump(dump)
    changes: dict[str, Any] = {}
    for field_name, upstream in spec.uses:
        if getattr(section, field_name) is None:
            changes[field_name] = str(pipeline.folder(upstream, run_config, dump if append else None))
    section = dataclasses.replace(section, **changes) if changes else section
    if not spec.reads:
        return section

    def folders(upstream: str) -> list[str]:
        upstream = pipeline.present(upstream, run_config)
        if append or (spec.per_dump and dump is not None and pipeline.get(upstream).per_dump):
            return [str(pipeline.folder(upstream, run_config, dump))]  # its dump's folder
        if pipeline.get(upstream).per_dump and run_config.dumps.ids:
            return [str(pipeline.folder(upstream, run_config, d)) for d in run_config.dumps.ids]
        return [str(pipeline.folder(upstream, run_config))]  # a joint output (a per-dump stage takes its dump's parts)

    *parents, leaf = spec.inputs_field.split(".")  # e.g. data.shards: a field of a nested section
    chain = [section]
    for name in parents:
        chain.append(getattr(chain[-1], name))
    inputs = [folder for name in spec.reads for folder in folders(name)] + list(getattr(chain[-1], leaf))
    value = dataclasses.replace(chain[-1], **{leaf: inputs})
    for holder, name in zip(reversed(chain[:-1]), reversed(parents)):
        value = dataclasses.replace(holder, **{name: value})
    return value


@dataclass(frozen=True)
class StageRun:
    """One stage run of a pipeline run: a stage, and the dump it is for (None: all of them)."""

    spec: StageSpec
    dump: str | None = None

    @property
    def key(self) -> str:
        return self.spec.name if self.dump is None else f"{self.spec.name}/{self.dump}"


def plan_runs(run_config: Any, specs: Sequence[StageSpec], dumps: Sequence[str] = (), append: bool = False) -> list[StageRun]:
    """The stage runs of `specs`, in order. Appending: every stage for each of `dumps` in turn (the
    oldest first). Otherwise a per-dump stage runs for each dump of `dumps` (default: `dumps.ids`)."""
    if append:
        return [StageRun(spec, dump) for dump in sorted(dumps) for spec in specs]
    chosen = sorted(dumps) or run_config.dumps.ids
    unknown = sorted(set(dumps) - set(run_config.dumps.ids))
    if unknown:
        raise ValueError(f"--dump {', '.join(unknown)}: not among the config's dumps.ids ({', '.join(run_config.dumps.ids) or 'none'}); "
                         "to add a new dump to a finished run, use --append")  # fmt: skip
    runs: list[StageRun] = []
    for spec in specs:
        if spec.per_dump and chosen:
            runs += [StageRun(spec, dump) for dump in chosen]
        elif dumps:
            raise ValueError(f"--dump: {spec.name} is not a per-dump stage ({', '.join(s.name for s in specs if s.per_dump) or 'none selected'}); "
                             "it runs over every dump of the config")  # fmt: skip
        else:
            runs.append(StageRun(spec))
    return runs
