"""The run's accounting: where every record of a pipeline output went, checked, in `_run.json`.

`crawlmill run` ends by calling `account_run`, which reads the counts of every stage folder of the
output (this run's and those an earlier run finished) and checks three invariants:

- balance: at every stage, records in = kept + dropped (each reason) + quarantined;
- chain: a stage's `in` equals the `kept` of the stage it reads (per dump when both run per dump;
  a stage that samples what it reads, the tokenizer, or counts steps, training, is left out), plus
  the `kept` of each folder its section names in its own `inputs` (from that folder's `_stats.json`);
- tokens: a stage's own audit (pack: the tokens and documents of the `.idx` files equal those of
  the packed documents, counted by its parts, and the manifest's).

The summary (one entry per stage folder: in, kept, dropped by reason, quarantined, tokens, this
run's time) and every check go to `output_dir/_run.json`, written last; a failed check is an
error of the run (a counting bug), not of the input. A check whose folders have not all
finished (a `--dump` run of one dump) is reported as not checked, with the reason. A run that
an error stopped (`error`) is summarized too: the stage run it stopped failed, with the error's
message, and the selected stage runs that did not start are "not run", not a counting bug.

    from crawlmill.pipeline.accounting import account_run
    summary = account_run(pipeline, run_config, results)  # results: StageRun.key -> StageResult
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from crawlmill.files import AnyPath, as_path, atomic_write_json, read_json

from .output_folder import STATS_FILE, SUCCESS_FILE, TASKS_FILE
from .wiring import StageRun, plan_runs
from .stage import StageResult
from .task_record import inputs_made_again

RUN_FILE = "_run.json"
FORMAT = "crawlmill-run/1"


@dataclass
class Entry:
    """One stage folder of the output: its counts and how this run found it."""

    unit: StageRun
    folder: AnyPath
    status: str  # ran | resumed | done before | failed | not run (started, unfinished; or not started: a run stopped) | external | absent (no stage folder)
    stats: dict[str, Any] | None
    seconds: float | None = None
    selected: bool = False  # one of the stage runs this `crawlmill run` was asked for (--only, --from, --dump)
    last_run: dict[str, Any] | None = None  # done before: the run that made it, from the last _run.json (status, seconds)
    error: str | None = None  # failed: the message of the error that stopped the run in this stage run
    unreached: bool = False  # not run: selected, but an error stopped the run before it (no folder): checked as absent

    def to_json(self) -> dict[str, Any]:
        s = self.stats or {}
        entry: dict[str, Any] = {"stage": self.unit.spec.name, "dump": self.unit.dump, "folder": str(self.folder), "status": self.status, "selected": self.selected}
        if self.stats is not None:
            dropped = {str(k): int(v) for k, v in s.get("dropped", {}).items()}
            entry.update(
                records_in=int(s.get("in", 0)), kept=int(s.get("kept", 0)), dropped=dropped,
                dropped_total=sum(dropped.values()), quarantined=int(s.get("quarantined", 0)),
            )  # fmt: skip
            tokens = s.get("counters", {}).get("tokens")
            if tokens is not None:
                entry["tokens"] = int(tokens)
        entry["seconds"] = None if self.seconds is None else round(self.seconds, 3)
        if self.last_run is not None:
            entry["last_run"] = self.last_run
        if self.error is not None:
            entry["error"] = self.error
        return entry


def _inside(folder: str, root: str) -> str:
    """`folder` relative to `root` when it lies inside it (`dedup/CC-MAIN-2024-10`), else as it is."""
    root = root.rstrip("/")
    return folder[len(root) + 1 :] if root and folder.startswith(root + "/") else folder


def _carry_last_runs(output_dir: Any, entries: list[Entry]) -> None:
    """A stage done before keeps what the run that made it said (its status and seconds), from
    the summary this one replaces: an Airflow DAG runs one stage per `crawlmill run --only`, and
    its last task's summary would otherwise hold no stage's time."""
    try:
        previous = read_json(as_path(output_dir) / RUN_FILE)
        # folders by their place in the output: the summary of an output moved since names the old one
        old_root = str(previous.get("output_dir") or output_dir)
        earlier = {(e["stage"], e["dump"], _inside(e["folder"], old_root)): e for e in previous["stages"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # none yet, or not ours: nothing to carry
        return
    for entry in entries:
        before = earlier.get((entry.unit.spec.name, entry.unit.dump, _inside(str(entry.folder), str(output_dir))))
        if entry.status not in ("done before", "external") or not isinstance(before, dict):
            continue  # "external": a folder this run only reads (an append run's tokenizer): carried on too
        if before.get("status") in ("ran", "resumed") and before.get("seconds") is not None:
            made = {"status": before["status"], "seconds": before["seconds"], "records_in": before.get("records_in"), "kept": before.get("kept")}
        elif isinstance(before.get("last_run"), dict):
            made = before["last_run"]
        else:
            continue
        now = entry.stats if entry.stats is not None else _finished_stats(entry.folder)  # an external folder's own
        counts = {} if now is None else {"records_in": int(now.get("in", 0)), "kept": int(now.get("kept", 0))}
        if any(made.get(k) is not None and made.get(k) != v for k, v in counts.items()):
            continue  # not the folder that run made (made again since by a stage's own command, with other counts)
        entry.last_run = made


def _units(pipeline: Any, run_config: Any, appended: list[str]) -> list[tuple[StageRun, str | None]]:
    """Every stage folder of the output: (stage run, family); the family is None for the config's
    own dumps and the dump's id for a dump appended later (its stages each have a folder of it)."""
    units = [(unit, None) for unit in plan_runs(run_config, pipeline.stages)]
    # A shared stage (the tokenizer) has one folder for every dump: listed once, with the config's own.
    later = [(unit, dump) for dump in appended for unit in plan_runs(run_config, pipeline.stages, [dump], append=True) if not unit.spec.shared]
    # A per-dump stage's folder of an appended dump is the config's own folder of that dump: listed once, with its dump.
    taken = {str(_folder(pipeline, run_config, unit, dump)) for unit, dump in later}
    units = [(u, f) for u, f in units if str(_folder(pipeline, run_config, u, f)) not in taken] + later
    return [(u, family) for u, family in units if not u.spec.left_out(getattr(run_config, "sections", ()))]


def _folder(pipeline: Any, run_config: Any, unit: StageRun, family: str | None) -> AnyPath:
    spec = unit.spec
    return pipeline.folder(spec.name, run_config, unit.dump if (family is not None or spec.per_dump) else None)


def _finished_stats(folder: AnyPath) -> dict[str, Any] | None:
    try:
        return read_json(folder / STATS_FILE) if (folder / SUCCESS_FILE).exists() else None
    except (OSError, ValueError):
        return None


def _entries(pipeline: Any, run_config: Any, results: Mapping[str, StageResult], appended: list[str]) -> list[tuple[Entry, str | None]]:
    entries = []
    for unit, family in _units(pipeline, run_config, appended):
        spec, folder = unit.spec, _folder(pipeline, run_config, unit, family)
        result = results.get(unit.key)
        if spec.external and spec.external(getattr(run_config, spec.name)):
            entries.append((Entry(unit, folder, "external", None), family))
        elif result is not None:
            status = "failed" if not result.ok else "done before" if result.already_done else "resumed" if result.finished_before or any(result.steps_finished_before.values()) else "ran"
            seconds = None if result.already_done else result.seconds  # nothing ran: its time is the run's that made it (last_run)
            entries.append((Entry(unit, folder, status, result.stats if result.ok else None, seconds), family))
        else:
            stats = _finished_stats(folder)
            # A folder that only holds other folders (`dedup/` above appended dumps' `dedup/DUMP/`) is no stage's.
            status = "done before" if stats is not None else "not run" if (folder / TASKS_FILE).exists() else "absent"
            entries.append((Entry(unit, folder, status, stats), family))
    return entries


def _check(name: str, stage: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"check": name, "stage": stage, "ok": ok, "detail": detail}


def _balance(entry: Entry) -> dict[str, Any] | None:
    s = entry.stats
    if s is None:
        return None
    records_in, kept, quarantined = int(s.get("in", 0)), int(s.get("kept", 0)), int(s.get("quarantined", 0))
    dropped = sum(int(v) for v in s.get("dropped", {}).values())
    ok = records_in == kept + dropped + quarantined
    return _check("balance", entry.unit.key, ok, f"{entry.folder}: in {records_in:,} {'=' if ok else '!='} kept {kept:,} + dropped {dropped:,} + quarantined {quarantined:,}")


def _sum(entries: list[Entry], field: str) -> tuple[int | None, list[str]]:
    missing = [str(e.folder) for e in entries if e.stats is None]
    return (None if missing else sum(int(e.stats.get(field, 0)) for e in entries)), missing  # type: ignore[union-attr]


def _chains(pipeline: Any, run_config: Any, entries: list[tuple[Entry, str | None]]) -> list[dict[str, Any]]:
    """A stage's `in` against the `kept` of the stage it reads (per dump where both run per dump)
    plus that of the folders its section's own `inputs` name: wiring.py gives it both."""
    checks = []
    families = sorted({family for _, family in entries}, key=lambda f: (f is not None, f or ""))
    for family in families:
        scoped = [e for e, f in entries if f == family]
        for spec in pipeline.stages:
            if not spec.reads or not spec.counts_input:
                continue
            readers = [e for e in scoped if e.unit.spec.name == spec.name and e.status != "external"]
            upstream = pipeline.present(spec.reads[0], run_config)
            own = _own_inputs(spec, run_config)  # read by each of its runs too, after the upstream folders
            sources = [e for e in scoped if e.unit.spec.name == upstream]
            if not readers or not sources:
                continue
            by_dump = spec.per_dump and pipeline.get(upstream).per_dump and all(e.unit.dump for e in readers + sources)
            pairs = [([r], [s for s in sources if s.unit.dump == r.unit.dump]) for r in readers] if by_dump else [(readers, sources)]
            for these, those in pairs:
                if all(e.status == "absent" or e.unreached for e in these):  # never run (e.g. the joint stages of an output made by appending)
                    continue
                label = these[0].unit.key if len(these) == 1 else spec.name
                remade = [key for e in these if e.status == "done before" for key in inputs_made_again(e.folder)]
                if remade:  # `--only filter --overwrite` with other settings: dedup still holds what the old filter kept
                    checks.append(_check("chain", label, None, f"not checked: {', '.join(remade)} made again since {spec.name} ran; "
                                                               f"`--from {spec.name} --overwrite` makes it again from it"))  # fmt: skip
                    continue
                records_in, missing_in = _sum(these, "in")
                kept, missing_kept = _sum(those, "kept")
                if missing_in or missing_kept or not those:
                    checks.append(_check("chain", label, None, f"not checked: not finished: {', '.join(missing_in + missing_kept) or upstream}"))
                    continue
                extra, unknown = _own_inputs_kept(spec, own, these)
                if unknown:
                    checks.append(_check("chain", label, None, f"not checked: {unknown}"))
                    continue
                ok = records_in == kept + extra
                more = f" + inputs kept {extra:,}" if own else ""
                checks.append(_check("chain", label, ok, f"{spec.name} in {records_in:,} {'=' if ok else '!='} {upstream} kept {kept:,}{more}"))
    return checks


def _own_inputs(spec: Any, run_config: Any) -> list[str]:
    """The folders of a stage section's own `inputs` (its `inputs_field`), which a stage reads after
    those of the stages it reads (wiring.wire_stage_config): more dumps' filter output for dedup."""
    value = getattr(run_config, spec.name, None)
    for name in spec.inputs_field.split("."):
        value = getattr(value, name, None)
    return [str(folder) for folder in value or ()]


def _own_inputs_kept(spec: Any, own: list[str], readers: list[Entry]) -> tuple[int, str]:
    """(what the readers of a chain read from their section's own inputs `own`, counted by those
    folders' own `_stats.json`: each reader reads every one of them; why that is not known, or "")."""
    if not own:
        return 0, ""
    if any(r.unit.dump is not None and hasattr(spec.config, "for_dump") for r in readers):
        # A per-dump run of a stage that takes its dump's parts of what it reads (quality): only
        # some of those folders' documents, which their _stats.json do not count by dump.
        return 0, f"{spec.name} per dump reads only its dump's documents of its own inputs ({', '.join(own)}), which their _stats.json do not count by dump"
    stats = {folder: _finished_stats(as_path(folder)) for folder in own}
    unfinished = [folder for folder, s in stats.items() if s is None]
    if unfinished:
        return 0, f"{', '.join(unfinished)} (of {spec.name}'s own inputs): no finished stage folder (_SUCCESS and _stats.json), so what it kept is not known"
    return len(readers) * sum(int(s.get("kept", 0)) for s in stats.values() if s is not None), ""


def _audits(entries: list[tuple[Entry, str | None]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    checks, figures = [], {}
    for entry, _ in entries:
        spec = entry.unit.spec
        if spec.audit is None or entry.stats is None:
            continue
        module, _, name = spec.audit.partition(":")
        audit: Callable[[AnyPath], tuple[dict[str, Any], list[tuple[str, bool, str]]]] = getattr(importlib.import_module(module), name)
        try:
            found, results = audit(entry.folder)
        except (OSError, ValueError) as exc:  # an unreadable shard is a failed check, named
            found, results = {}, [("tokens", False, f"{entry.folder}: cannot audit: {exc}")]
        figures[entry.unit.key] = found
        checks += [_check(check, entry.unit.key, ok, detail) for check, ok, detail in results]
    return checks, figures


def account_run(
    pipeline: Any, run_config: Any, results: Mapping[str, StageResult], selected: Iterable[str] = (),
    seconds: float | None = None, write: bool = True, ray_start_seconds: float | None = None,
    error: str | None = None, error_stage: str | None = None,
) -> dict[str, Any]:
    """The run's summary and checks (module docstring); written to `output_dir/_run.json`.
    `selected`: the keys of the stage runs this run was asked for (`StageRun.key`); `seconds`: the
    run's, of which `ray_start_seconds` went to starting Ray (no stage's `seconds` holds them).
    `error`: the message of the error that stopped the run, raised by the stage run `error_stage`
    (None: between stage runs); `results` then holds the stage runs that finished before it."""
    from . import dumps as dump_runs

    started = time.perf_counter()
    appended = dump_runs.appended_dumps(run_config.output_dir)  # a joint run's dumps are the config's own units
    entries = _entries(pipeline, run_config, results, appended)
    chosen = set(selected)
    for entry, _ in entries:
        entry.selected = entry.unit.key in chosen
        if error is not None:
            _mark_stopped(entry, error, error_stage)
    _carry_last_runs(run_config.output_dir, [e for e, _ in entries])
    checks = [c for c in (_balance(e) for e, _ in entries) if c is not None]
    checks += _chains(pipeline, run_config, entries)
    audit_checks, tokens = _audits(entries)
    checks += audit_checks
    summary = {
        "format": FORMAT,
        "output_dir": str(run_config.output_dir),
        "ok": error is None and all(c["ok"] is not False for c in checks),  # a run an error stopped is not ok, whatever its counts
        "stages": [e.to_json() for e, _ in entries if e.status != "absent"],  # absent: in checks' reasons only
        "tokens": tokens,
        "checks": checks,
        "seconds": None if seconds is None else round(seconds, 3),
        "ray_start_seconds": None if ray_start_seconds is None else round(ray_start_seconds, 3),  # in `seconds`, in no stage's
        "check_seconds": round(time.perf_counter() - started, 3),
        "error": None if error is None else {"stage": error_stage, "message": error},  # the run stopped by an error (exit 2...)
    }
    if write:
        write_summary(run_config, summary)
    return summary


def _mark_stopped(entry: Entry, error: str, error_stage: str | None) -> None:
    """A run an error stopped: its stage run has no result (it raised), and the selected ones
    after it never started, so have no folder, or one an earlier run left (its own status)."""
    if entry.unit.key == error_stage and entry.status != "external":
        entry.status, entry.stats, entry.error = "failed", None, error
    elif entry.selected and entry.status == "absent":
        entry.status, entry.unreached = "not run", True


def write_summary(run_config: Any, summary: dict[str, Any]) -> None:
    atomic_write_json(as_path(run_config.output_dir) / RUN_FILE, summary)


def failed_checks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in summary["checks"] if c["ok"] is False]
