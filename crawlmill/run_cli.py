"""`crawlmill run CONFIG.yaml`: the whole pipeline (crawlmill/pipeline/definition.py) from one config.

    crawlmill run configs/demo.yaml
    crawlmill run configs/demo.yaml --only pack
    crawlmill run configs/demo.yaml --from dedup --print-config
    crawlmill run crawl.yaml --only ingest --dump CC-MAIN-2024-10    # one dump of the config's dumps.ids
    crawlmill run crawl.yaml --append                                # new dumps of the crawl list (dumps.py)
    crawlmill run s3://bkt/configs/run.yaml                          # a config in a bucket (relative paths: under s3://bkt/configs/)

The whole config, every stage's section, is read and checked before anything runs; then each
selected stage runs in pipeline order into `output_dir/<stage>`, resuming whatever an earlier run
finished. Each stage's lines go to stdout as it finishes; the run ends with its summary: per stage
records in, kept, dropped, quarantined, tokens and time, and the accounting checks
(pipeline/accounting.py), also written to `output_dir/_run.json`; a run that an error stops in a
stage (a bad input found there) ends with it too: the stages that finished, the one that failed
with the error's message, those after it not run. Exit status 1 when a task failed or a check does
not add up, 2 for a bad config or input.
"""

import json
import time
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape

from crawlmill.pathsafety import redact
from crawlmill.pipeline.accounting import account_run, failed_checks, write_summary
from crawlmill.pipeline.definition import PIPELINE

from .cli_common import Runtime, err, out, report, resumable, runtime_verb, user_errors, warn_if_in_job_copy

app = typer.Typer()
STAGES = ", ".join(PIPELINE.names)


@runtime_verb(
    app,
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill run configs/demo.yaml`  (the sample corpus that ships in the repo)\n\n"
        "* `crawlmill run configs/demo.yaml --only filter`  (one stage; the stages it reads must have finished)\n\n"
        "* `crawlmill run configs/demo.yaml --from dedup`  (dedup and every stage after it)\n\n"
        "* `crawlmill run crawl.yaml --only ingest --dump CC-MAIN-2024-10`  (a per-dump stage for one dump of `dumps.ids`)\n\n"
        "* `crawlmill run crawl.yaml --append`  (every dump of the crawl list not appended yet: its own shards, deduplicated against the earlier dumps)\n\n"
        "* `crawlmill run crawl.yaml --append --dump CC-MAIN-2024-18`  (that dump)\n\n"
        f"Stages, in order: {STAGES}."
    ),
)
def run(
    config_file: str = typer.Argument(..., help="Pipeline config (YAML), a path or an fsspec URL (s3://...: its relative paths are relative to its folder there); see configs/demo.yaml."),
    only: Optional[str] = typer.Option(None, "--only", help=f"Run this stage alone: {STAGES}."),
    start: Optional[str] = typer.Option(None, "--from", help="Run this stage and every stage after it."),
    dump: Optional[List[str]] = typer.Option(None, "--dump", help="A dump id (repeatable): the per-dump stages for these dumps of `dumps.ids` only; with --append, the dumps to append."),
    append: bool = typer.Option(False, "--append", help="Append dumps to a finished output: each through every stage up to pack, deduplicated against the dumps appended before; without --dump, the crawl list's new dumps."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config (every section) as JSON and exit."),
    runtime: Runtime = None,  # type: ignore[assignment] - the common options (cli_common)
) -> None:
    """Run the pipeline from one config: ingest, filter, dedup, quality (with a `quality:` section), remix, tokenizer, pack, and train (with a `train:` section); each stage resumable."""
    from crawlmill.pipeline import definition
    from crawlmill.pipeline import dumps as dump_runs
    from crawlmill.pipeline.config import load_run_config, to_json
    from crawlmill.pipeline.runner import run_pipeline
    from crawlmill.pipeline.wiring import plan_runs

    pipeline = definition.PIPELINE  # looked up now: a test may run a pipeline with a stage added
    dumps = list(dump or [])
    with user_errors():
        specs = pipeline.select(only, start)
        config = load_run_config(config_file, pipeline)
        config.ray = runtime.ray_options(config.ray)
        if any(spec.name == "train" and not spec.left_out(config.sections) for spec in specs):
            from crawlmill.pipeline.ray_tasks import RAY_TRAIN_AHEAD

            RAY_TRAIN_AHEAD[0] = True  # a local Ray started by the first stage is one Ray Train runs on quietly
        if append:
            dump_runs.check_joint(config, pipeline)  # a joint run this version did not index: refused, saying what to run
            done = dump_runs.recorded_dumps(config.output_dir)
            asked = dumps or dump_runs.new_dumps(config.dumps, config.output_dir)
            dumps = dump_runs.check_append(config.output_dir, asked)
            for name in sorted(set(asked) & set(done)):
                out.print(f"{name}: already in this output (see {config.output_dir}/{dump_runs.STATE_FILE})", highlight=False)
            if not dumps:
                out.print("no dump to append", highlight=False)
        plan_runs(config, specs, dumps, append)  # a --dump that does not fit the stages fails here, before any work
    if print_config:
        print(redact(json.dumps(to_json(config), indent=1, ensure_ascii=False)))  # a URL's password is never printed
        return

    def external(spec, folder: Path) -> None:  # noqa: ANN001 - a StageSpec
        out.print(f"[green]{spec.name}[/green]: using {folder} (nothing to run)", highlight=False)

    def skipped(spec) -> None:  # noqa: ANN001 - a StageSpec
        out.print(f"{spec.name}: the config has no `{spec.name}:` section; nothing to do", highlight=False)

    running: list = []  # the stage runs started (run_pipeline's on_start), in order: an error is the last one's
    done: dict = {}  # StageRun.key -> StageResult of those that finished: the summary of a run an error stopped

    def finished(spec, stage, result) -> None:  # noqa: ANN001 - a StageSpec, Stage and StageResult
        if result.ok:
            report(stage, result)  # before it counts as finished: an error here is the stage's
        else:  # the failures now; the summary and exit status 1 once _run.json is written
            for source, detail in result.failures:
                err.print(f"[red]failed[/red] {escape(source)}: {escape(detail)}", highlight=False)
            err.print(f"{spec.name}: {len(result.failures)} task(s) failed; rerun the same command to retry only those.")
        done[running[-1].key] = result

    from crawlmill.pipeline.ray_tasks import RAY_START_SECONDS

    warn_if_in_job_copy(config.output_dir)
    started, ray_before = time.perf_counter(), RAY_START_SECONDS[0]
    selected = [unit.key for unit in plan_runs(config, specs, dumps, append)]
    stopped: list = []  # the error a stage run raised, as it was before user_errors made it its message and exit status
    try:
        with user_errors(), resumable(runtime.overwrite):
            try:
                results = run_pipeline(
                    config, specs, pipeline, on_result=finished, on_external=external,
                    progress=not runtime.no_progress, overwrite=runtime.overwrite, on_skipped=skipped,
                    dumps=dumps, append=append, on_start=running.append,
                )  # fmt: skip
            except Exception as exc:  # not a stop (Ctrl-C, SIGTERM): that ends at once, the rerun resumes and sums up
                if running:  # before any stage started (a refused folder): nothing ran to sum up
                    stopped.append(exc)
                raise
            summary = account_run(pipeline, config, results, selected, seconds=time.perf_counter() - started, write=False,
                                  ray_start_seconds=RAY_START_SECONDS[0] - ray_before)
    finally:
        from crawlmill.pipeline.folder_lock import OutputFolderBusy

        # Refused by another run's lock: the output is that run's, and so is its summary to write.
        if stopped and not isinstance(stopped[0], OutputFolderBusy):  # after the error's own line (user_errors), with its exit status
            stopped_summary(pipeline, config, done, selected, stopped[0], None if running[-1].key in done else running[-1].key,
                            seconds=time.perf_counter() - started, ray_start_seconds=RAY_START_SECONDS[0] - ray_before)
    try:
        write_summary(config, summary)
    except OSError as exc:  # e.g. the disk that failed a stage: that failure is the one to report
        err.print(f"[yellow]warning:[/yellow] the run summary was not written: {escape(str(exc))}", highlight=False)
    print_summary(summary)
    if any(not result.ok for result in results.values()):
        raise typer.Exit(1)
    if failed_checks(summary):
        for check in failed_checks(summary):
            err.print(f"[red]accounting check failed[/red] ({check['check']}, {escape(check['stage'])}): {escape(check['detail'])}", highlight=False)
        err.print("the counts of this output do not add up: a bug of crawlmill or a folder changed by hand; see _run.json")
        raise typer.Exit(1)


def stopped_summary(
    pipeline: Any, config: Any, results: dict, selected: List[str], error: Exception, stage: Optional[str], seconds: float, ray_start_seconds: float,
) -> None:
    """The summary of a run that `error` stopped, raised by stage run `stage` (None: between two):
    written and printed as a finished run's. It never hides the error: a summary that cannot be
    made (the store the stage failed on) is a warning."""
    from crawlmill.store_errors import store_error

    message = redact(store_error(error) or (str(error) if isinstance(error, (OSError, ValueError)) else f"{type(error).__name__}: {error}"))
    try:
        summary = account_run(pipeline, config, results, selected, seconds=seconds, write=False, ray_start_seconds=ray_start_seconds,
                              error=message, error_stage=stage)  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the run's own error is the one to report
        err.print(f"[yellow]warning:[/yellow] no run summary: {escape(redact(f'{type(exc).__name__}: {exc}'))}", highlight=False)
        return
    try:
        write_summary(config, summary)
    except Exception as exc:  # noqa: BLE001 - e.g. the full disk or the store that stopped the stage
        err.print(f"[yellow]warning:[/yellow] the run summary was not written: {escape(str(exc))}", highlight=False)
    print_summary(summary)


def print_summary(summary: dict) -> None:
    """The run's summary table (what _run.json holds) and its checks, to stdout."""
    from rich.table import Table

    table = Table(title=f"run summary ({summary['output_dir']}/_run.json)", title_justify="left")
    for name in ("stage", "status", "in", "kept", "dropped", "quarantined", "tokens", "seconds"):
        table.add_column(name, justify="left" if name in ("stage", "status") else "right", no_wrap=True)
    for e in summary["stages"]:
        stage = e["stage"] if e["dump"] is None else f"{e['stage']}/{e['dump']}"
        number = lambda key: "" if e.get(key) is None else f"{e[key]:,}"  # noqa: E731
        earlier = e.get("last_run")  # done before: the seconds of the run that made it, in brackets
        seconds = f"{e['seconds']:.1f}" if e["seconds"] is not None else f"({earlier['seconds']:.1f})" if earlier else ""
        table.add_row(stage, e["status"], number("records_in"), number("kept"), number("dropped_total"), number("quarantined"), number("tokens"), seconds)  # fmt: skip
    if summary.get("seconds") is not None:
        ray_start = summary.get("ray_start_seconds") or 0
        table.caption = f"the run: {summary['seconds']:.1f} s" + (f", of which {ray_start:.1f} s starting Ray" if ray_start >= 0.05 else "")
        if any(e.get("last_run") for e in summary["stages"]):
            table.caption += "; (seconds): the earlier run that made the folder"
        table.caption_justify = "left"
    from rich.console import Console

    Console(width=max(out.width, 120)).print(table)  # not squeezed in a log (no terminal: 80 columns)
    checks = summary["checks"]
    passed = sum(1 for c in checks if c["ok"])
    unchecked = [c for c in checks if c["ok"] is None]
    out.print(
        f"accounting: {passed} of {len(checks)} checks passed (balance, chain, tokens)"
        + (f"; {len(unchecked)} not checked ({escape(unchecked[0]['detail'])})" if unchecked else ""),
        highlight=False,
    )
    error = summary.get("error")
    if error:  # the error's own line (stderr) came before: where the run stopped, and what did not run
        where = f"in {error['stage']}" if error["stage"] else "between two stages"
        out.print(f"the run stopped {where} (the stages after it did not run): {escape(error['message'])}", highlight=False)
