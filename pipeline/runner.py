"""The one runner: every stage, single-pass or multi-step, runs through `run_stage`.

`run_stage(stage, output_dir)` gives every stage the same output-folder contract:

- before anything is written or deleted, the stage's inputs are resolved (`plan`, `sources`) and
  the output folder is checked against them and for what it holds (output_folder.py); with
  `overwrite` (the CLI's --overwrite) it is deleted only then, and never a folder crawlmill did not write;
- `_tasks.json` records the stage's inputs and settings; a folder made from others is refused;
- a folder with `_SUCCESS` is finished: nothing runs again;
- temporaries of a killed run (`.tmp-*`) are removed, then the stage's `run(ctx)` does its steps;
- each `ctx.step(name, fn, tasks)` runs the step's tasks as Ray tasks (ray_tasks.py), at most
  `max_in_flight` at once, with a progress bar; a task's result is written as its marker
  (`_work/_done/<step>/<task>.json`, or where the step says, e.g. `_parts/`) after its outputs, and a
  task whose marker exists is never run again, so a killed run resumes task by task;
- a failed task is reported with its source and error while the others go on; the step then stops
  the stage without `_SUCCESS` (a rerun retries only what is unfinished). A task that raises
  `StageInputError` (unusable input) stops the stage with that error instead;
- when `run` returns, its stats go to `_stats.json`, then `_SUCCESS` is written.

Nothing here depends on the machine, time or scheduling order, so the same inputs and settings give
byte-identical output folders.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from crawlmill.files import (
    AnyPath, as_path, atomic_write_json, atomic_write_text, list_files, make_dirs, naming_store_errors, read_json,
    remove_temporaries, remove_tree,
)  # fmt: skip

from . import dumps as dump_runs
from .output_folder import (
    DONE_DIR, STATS_FILE, SUCCESS_FILE, WORK_DIR, check_output_folder, check_output_not_input, folder_key,
    overwrite_folder, stage_inputs,
)  # fmt: skip
from .folder_lock import folder_locks
from .markers import check_markers_seen, finished_tasks
from .progress import StageProgress
from .run_folders import check_folders_first, clear_later_folders, state_paths
from .ray_tasks import RAY_START_SECONDS, Job, RayOptions, cpu_nodes, run_jobs, run_on_nodes
from .stage import Stage, StageInputError, StageResult, check_input_columns
from .task_record import INPUTS_MADE, check_task_record, input_records
from .worker_memory import freeze_worker_state, release_memory
from .wiring import StageRun, plan_runs, wire_stage_config

if TYPE_CHECKING:
    from .definition import Pipeline, StageSpec

@dataclass(frozen=True)
class Task:
    """One task of a step: `fn(*shared, *args)`; its marker is `<markers>/<key>.json`."""

    key: str
    args: tuple = ()
    label: str = ""  # names it in progress and failure reports (default: the key)


class StepFailed(RuntimeError):
    def __init__(self, step: str, failures: list[tuple[str, str]], errors: dict[str, BaseException]) -> None:
        super().__init__(f"step {step}: {len(failures)} task(s) failed; first: {failures[0][0]}: {failures[0][1]}")
        self.step, self.failures = step, failures
        self.input_error = next((e for e in errors.values() if isinstance(e, StageInputError)), None)


def run_task(fn: Callable[..., Any], shared: tuple, marker: str, args: tuple) -> Any:
    """In a Ray worker: run one task, then write its result as its marker (after its outputs)."""
    freeze_worker_state()
    try:
        result = fn(*shared, *args)
        atomic_write_json(marker, result)
        return result
    finally:
        release_memory()


class StageContext:
    """What a running stage sees: its folders, and `step` to run a resumable set of Ray tasks."""

    def __init__(self, stage: str, output: AnyPath, ray_options: RayOptions, progress: bool) -> None:
        self.stage, self.output, self.work = stage, as_path(output), as_path(output) / WORK_DIR
        self.ray_options, self.progress = ray_options, progress
        self.finished_before: dict[str, int] = {}  # step -> tasks an earlier run had finished

    def step(
        self,
        name: str,
        fn: Callable[..., Any],
        tasks: Sequence[Task],
        *,
        shared: tuple = (),
        markers: AnyPath | None = None,
        unit: str = "tasks",
        retry: tuple[type[BaseException], ...] = (),
        title: str | None = None,
        fresh_worker: bool = False,
        said_by_stage: tuple[str, ...] = (),
        poll_units: Callable[[], tuple[int, int]] | None = None,
    ) -> dict[str, Any]:
        """Run `fn(*shared, *task.args)` for every task not finished before; return every task's
        result (a JSON-able dict, read back from its marker for finished ones), by key, in order.
        `fresh_worker`: each task in a new worker process (run_jobs). `said_by_stage`: names of
        errors whose failure the stage reports itself (a stop the user asked for), not as "part failed".
        `poll_units`: the bar counts `unit`s that the tasks write as they go, (done, total) read by
        it (the trainer's steps), rather than tasks finished."""
        markers = as_path(markers) if markers is not None else self.work / DONE_DIR / name
        if len({t.key for t in tasks}) != len(tasks):
            raise ValueError(f"step {name}: task keys are not unique")
        results = finished_tasks(markers, tasks)
        todo = [t for t in tasks if t.key not in results]
        self.finished_before[name] = len(results)
        if todo:
            jobs = [Job(t.key, (str(markers / f"{t.key}.json"), t.args), t.label) for t in todo]
            title = title or f"{self.stage} {name}"
            total, done = len(tasks), len(results)
            if poll_units is not None and self.progress:
                done, total = _first_look(poll_units)
            with StageProgress(title, total=total, done=done, enabled=self.progress, unit=unit, poll=poll_units, polled_units=poll_units is not None) as bar:
                outcome = run_jobs(
                    run_task, jobs, self.ray_options,
                    on_done=lambda job, result: bar.part_done(result if isinstance(result, dict) else {}),
                    on_failed=lambda job, detail: bar.part_failed(job.name, detail, shown=detail.split(":", 1)[0].rsplit(".", 1)[-1] not in said_by_stage),
                    retry_exceptions=list(retry), shared=(fn, shared), fresh_worker=fresh_worker,
                )  # fmt: skip
            if outcome.failures:
                raise StepFailed(name, outcome.failures, outcome.errors)
            check_markers_seen(markers, [t for t in todo if t.key in outcome.results])
            results.update(outcome.results)
        elif tasks and self.progress:  # a resumed stage: its steps an earlier run finished are said, not passed over unsaid
            StageProgress.say(f"{title or f'{self.stage} {name}'}: all {len(tasks):,} {unit} finished before, skipping them")
        return {t.key: results[t.key] for t in tasks}

    def node_step(
        self, name: str, setup: Callable[..., Any], fn: Callable[..., Any], tasks: Sequence[Task], *,
        shared: tuple = (), markers: AnyPath | None = None, title: str | None = None,
    ) -> dict[str, Any]:
        """Like `step`, for work that needs something big loaded first (a fastText model of
        gigabytes): one Ray task per node, holding its CPUs, runs `state = setup(*shared)` once and
        forks as many processes as CPUs, each running `fn(state, *task.args)` for its share of the
        node's tasks. What setup loaded exists once per node, not once per worker process. Resume
        and failures as `step` (per task, by marker)."""
        markers = as_path(markers) if markers is not None else self.work / DONE_DIR / name
        results = finished_tasks(markers, tasks)
        todo = [t for t in tasks if t.key not in results]
        self.finished_before[name] = len(results)
        if todo:
            nodes = cpu_nodes(self.ray_options)
            groups = [todo[i :: len(nodes)] for i in range(len(nodes))]
            per_node = [(node, cpus, ([(str(markers / f"{t.key}.json"), t.key, t.args) for t in group],)) for (node, cpus), group in zip(nodes, groups) if group]
            names = {f"{t.key}.json" for t in tasks}
            count_markers = lambda: sum(1 for p in list_files(markers, "*.json") if p.name in names)  # noqa: E731 - a node reports at its end only
            with StageProgress(title or f"{self.stage} {name}", total=len(tasks), done=len(results), enabled=self.progress, unit="tasks (per node)",
                               poll=count_markers) as bar:  # fmt: skip
                outcomes = run_on_nodes(run_node, per_node, self.ray_options, shared=(setup, fn, shared))
                failures, errors = [], {}
                labels = {t.key: t.label or t.key for t in todo}
                for (_, _, (node_items,)), outcome in zip(per_node, outcomes):
                    if isinstance(outcome, BaseException):  # the node's task died: its unfinished items failed
                        detail = f"{type(outcome).__name__}: {outcome}".splitlines()[0]
                        done = finished_tasks(markers, [Task(key) for _, key, _ in node_items])
                        outcome = [(key, done.get(key), None if key in done else detail, False) for _, key, _ in node_items]
                    for key, result, error, input_error in outcome:
                        bar.part_done(result if isinstance(result, dict) else {})
                        if error is None:
                            results[key] = result
                        else:
                            failures.append((labels[key], error))
                            errors[key] = StageInputError(error) if input_error else RuntimeError(error)
            if failures:
                raise StepFailed(name, failures, errors)
            check_markers_seen(markers, todo)
        return {t.key: results[t.key] for t in tasks}


def _first_look(poll: Callable[[], tuple[int, int]]) -> tuple[int, int]:
    """A step's units (done, total) before it starts; (0, 0) when they cannot be read yet."""
    try:
        return poll()
    except Exception:  # a store's hiccup: the watch thread looks again
        return 0, 0


_NODE_STATE: Any = None  # what a node step's setup made, inherited by the processes forked from it


def _node_item(job: tuple[str, str, tuple, Callable[..., Any]]) -> tuple[str, Any, str | None, bool]:
    """In a forked process: one item of a node step; (key, result, error, whether it is an input error)."""
    marker, key, args, fn = job
    try:
        result = fn(_NODE_STATE, *args)
        atomic_write_json(marker, result)
        return key, result, None, False
    except Exception as exc:  # reported with its item; the other items go on
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return key, None, detail, isinstance(exc, StageInputError)


def _forked_defaults() -> None:
    """In a process forked from a Ray worker: the default signal handlers. Ray's SIGTERM handler,
    inherited by the fork, does not end the process, so stopping a pool of them could wait forever
    (seen: a suite hung in multiprocessing.Pool's terminate)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_node(setup: Callable[..., Any], fn: Callable[..., Any], shared: tuple, cpus: int, items: list[tuple[str, str, tuple]]) -> list[tuple[str, Any, str | None, bool]]:
    """In a Ray task holding a node's CPUs: `setup(*shared)` once, then the items in `cpus` processes
    forked from this one, which share what setup loaded (copy-on-write pages nobody writes). A
    forked process that dies (killed, out of memory) fails the items not finished yet instead of
    leaving the task waiting for the item it had; a rerun redoes only those. Ray retrying the task
    (its worker died) skips the items whose markers the first try wrote."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    before = finished_tasks(as_path(items[0][0]).parent, [Task(key) for _, key, _ in items]) if items else {}
    todo = [(marker, key, args) for marker, key, args in items if key not in before]
    finished = {key: (key, result, None, False) for key, result in before.items()}
    if not todo:
        return [finished[key] for _, key, _ in items]
    global _NODE_STATE
    _NODE_STATE = setup(*shared)
    jobs = [(marker, key, args, fn) for marker, key, args in todo]
    try:
        if cpus <= 1 or len(jobs) <= 1:
            ran = [_node_item(job) for job in jobs]
        else:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(min(cpus, len(jobs)), mp_context=context, initializer=_forked_defaults) as pool:
                try:
                    ran = list(pool.map(_node_item, jobs))
                except BrokenProcessPool as exc:
                    detail = f"BrokenProcessPool: {exc}"
                    done = {key: read_json(as_path(marker)) for marker, key, _ in todo if as_path(marker).is_file()}
                    ran = [(key, done.get(key), None if key in done else detail, False) for _, key, _ in todo]
        finished.update({item[0]: item for item in ran})
        return [finished[key] for _, key, _ in items]
    finally:
        _NODE_STATE = None
        release_memory()


def run_stage(
    stage: Stage, output_dir: str | Path, ray_options: RayOptions | None = None, progress: bool = True, overwrite: bool = False,
    before_overwrite: Callable[[], None] | None = None,
) -> StageResult:
    """Run `stage` into `output_dir` (see the module docstring). Failed tasks come back in
    `result.failures`; unusable input raises (StageInputError, StageInputMismatch, ValueError...),
    and a folder this call created for it is removed again. `overwrite`: delete the folder's earlier
    output first (only once the inputs are resolved and checked, and only a stage output folder),
    `before_overwrite()` just before (a run's later stages' folders: run_folders.clear_later_folders)."""
    started = time.perf_counter() - RAY_START_SECONDS[0]  # a Ray started in this stage: the run's time (_run.json)
    output = as_path(output_dir)
    # One writer per folder on this machine (folder_lock.py): the output and the state it extends
    # (dedup's index), before the plan reads them.
    written = [output, *state_paths(stage.config, stage.state_fields)]
    with contextlib.ExitStack() as locks:
        locks.enter_context(folder_locks(written))
        stage.plan(output)  # the inputs are resolved and checked here and in sources(): before any write or deletion
        check_input_columns(stage)  # a foreign folder's parts: refused by file and column, not failed part by part
        record = {"stage": stage.name, "settings": stage.fingerprint(), "sources": stage.sources()}
        # The stage folders it reads: no run rewrites them while this one reads (shared locks: readers
        # do not exclude each other); their records read once held, so that none was remade in between.
        read = input_records(stage_inputs(stage))
        locks.enter_context(folder_locks([key for key in read if key not in {folder_key(f) for f in written}], reading=True))
        made = input_records(stage_inputs(stage))
        if made:
            record[INPUTS_MADE] = made
        check_output_not_input(output, stage_inputs(stage, record["sources"]), stage.name, stage.output_inside_input, state_paths(stage.config, stage.state_fields))
        with naming_store_errors(output):  # often the run's first request to the store: its errors name the folder
            finished = (output / SUCCESS_FILE).exists()
        if overwrite or not finished:  # it will be computed (again): a stage may refuse that, whatever the folder holds
            stage.check_recompute()
        check_output_folder(output, overwrite, markers=stage.output_markers)
        if overwrite:
            if before_overwrite is not None:
                before_overwrite()
            overwrite_folder(output)
        created = not output.exists()
        make_dirs(output)
        try:
            return _run(stage, output, record, ray_options or RayOptions(), progress, started)
        except StageInputError:
            if created:
                remove_tree(output)
            raise


def _run(stage: Stage, output: AnyPath, record: dict[str, Any], ray_options: RayOptions, progress: bool, started: float) -> StageResult:
    check_task_record(output, record, stage.resume_only_settings, finished=(output / SUCCESS_FILE).exists())
    result = StageResult(stats=None, output_dir=output)
    if (output / SUCCESS_FILE).exists():
        stage.check_done(output)
    if (output / SUCCESS_FILE).exists():  # check_done may make it unfinished again (ingest: an input file replaced since)
        result.stats = read_json(output / STATS_FILE)
        result.already_done = True
        result.finished_before = int(result.stats.get("parts", 0))
        if stage.remove_work:  # a run killed while deleting it
            remove_tree(output / WORK_DIR)
        return result
    remove_temporaries(output)
    ctx = StageContext(stage.name, output, ray_options, progress)
    try:
        stats = stage.run(ctx)
    except StepFailed as failed:
        if failed.input_error is not None:
            raise failed.input_error from None
        stats = None
        result.failures = failed.failures
    result.finished_before = ctx.finished_before.get("parts", 0)
    result.steps_finished_before = dict(ctx.finished_before)
    result.seconds = time.perf_counter() - RAY_START_SECONDS[0] - started
    if stats is None:
        return result
    atomic_write_json(output / STATS_FILE, stats)
    atomic_write_text(output / SUCCESS_FILE, "")
    if stage.remove_work:
        remove_tree(ctx.work)
    result.stats = stats
    return result


def run_pipeline(
    run_config: Any,
    specs: Sequence[StageSpec],
    pipeline: Pipeline,
    on_result: Callable[[StageSpec, Stage, StageResult], None],
    on_external: Callable[[StageSpec, AnyPath], None],
    progress: bool = True,
    overwrite: bool = False,
    on_skipped: Callable[[StageSpec], None] = lambda spec: None,
    dumps: Sequence[str] = (),
    append: bool = False,
    on_start: Callable[[StageRun], None] = lambda unit: None,
) -> dict[str, StageResult]:
    """Run `specs` (in pipeline order) of a validated run config, each into its folder (per dump:
    `plan_runs`); stop at the first stage with failed tasks; an optional stage runs only when the
    config has its section. Returns each stage run's result, by `StageRun.key` (accounting.py
    makes the run's summary of them); `on_start(unit)` as each stage run starts."""
    units = plan_runs(run_config, specs, dumps, append)
    if not append:  # a joint run's dedup starts the dumps' index that appended dumps extend
        runs_dedup = any(unit.spec.name == "dedup" for unit in units)
        from_dedup = any(pipeline.names.index(unit.spec.name) >= pipeline.names.index("dedup") for unit in units)
        dump_runs.prepare_joint(run_config, pipeline, overwrite and runs_dedup, from_dedup)
    check_folders_first(run_config, pipeline, units, overwrite, append)
    clear_later = overwrite and not append  # once, as the first stage run deletes its own folder
    summary: dict[str, StageResult] = {}
    skipped: set[str] = set()
    for unit in units:
        spec, dump = unit.spec, unit.dump
        if spec.left_out(getattr(run_config, "sections", ())):
            if spec.name not in skipped:  # said once, not once per dump
                on_skipped(spec)
            skipped.add(spec.name)
            continue
        if append and not dump_runs.prepare_append(run_config, pipeline, unit):
            continue
        folder = pipeline.folder(spec.name, run_config, dump if (append or spec.per_dump) else None)
        if spec.external and spec.external(getattr(run_config, spec.name)):
            on_external(spec, folder)
            continue
        on_start(unit)  # a stage run that raises is this one (the CLI's summary of a run stopped by an error)
        stage = spec.stage_class()(wire_stage_config(pipeline, spec, run_config, dump, append))
        before = (lambda first=folder: clear_later_folders(run_config, pipeline, units, first)) if clear_later else None
        clear_later = False
        result = run_stage(stage, folder, run_config.ray, progress, overwrite=overwrite, before_overwrite=before)  # deletes (overwrite) once its inputs are checked
        summary[unit.key] = result
        on_result(spec, stage, result)
        if not result.ok:
            break
        if spec.name == dump_runs.APPEND_LAST and (append or run_config.dumps.ids):
            with folder_locks([run_config.output_dir]):  # _dumps.json: two append runs record one after the other
                if append:
                    dump_runs.record_appended(run_config.output_dir, dump, folder)
                else:  # the joint run's dumps are done: appending builds on them
                    dump_runs.record_joint_run(run_config, pipeline, folder)
    return summary
