"""What every `crawlmill` verb shares: the common options (declared once, here), the one error path,
and how a stage verb turns its options into its stage's config and runs it.

- Results go to stdout (`out`); progress, warnings and errors to stderr (`err`).
- Bad input or config (any ValueError or OSError that reaches a verb) is one line on stderr,
  `error: ...` with rich markup escaped, and exit status 2; failed tasks are exit status 1 (a rerun
  retries only those); success is 0.
- A stage verb's parameters are its config's fields: a parameter named `minhash__bands` sets
  `minhash.bands`, positional INPUTs set `inputs`, and an option left out keeps the config's
  default (or the value of `--config FILE`). So a verb and its section of a run config always agree.

Heavy modules (Ray, the stages) are imported only when a verb runs, so `--help` stays fast.
"""

import contextlib
import dataclasses
import functools
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import click
import typer
from rich.console import Console
from typer.core import TyperCommand
from rich.markup import escape

from crawlmill.pathsafety import redact

out = Console(soft_wrap=True)  # results: tables, JSON, the stage's summary lines
err = Console(stderr=True, soft_wrap=True)  # progress, warnings and errors; paths are never wrapped


def fail(message: str, status: int = 2) -> typer.Exit:
    # A URL's password, should a message hold one, is never printed; file names may hold [brackets].
    err.print(f"[red]error:[/red] {escape(redact(message))}", highlight=False)
    return typer.Exit(status)



def at_least_one(**counts: Optional[int]) -> None:
    """Counts given as options, by the option's name (`seq_length` is --seq-length; None: not given).
    0 or a negative number would fall back to a default (`seq_length or 4096`), fail deep in the
    arithmetic, or slice silently (--top -3 would list all but 3), exit status 0."""
    for name, value in counts.items():
        if value is not None and value < 1:
            raise fail(f"--{name.replace('_', '-')} {value}: must be at least 1")


def print_json(data: object) -> None:
    """A --json answer on stdout: indented, text in any script as it is."""
    print(json.dumps(data, indent=1, ensure_ascii=False))

@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Bad input, config or folders become `error: ...` and exit status 2; a write the storage
    refused (full disk, quota, read-only) exit status 1, as failed tasks: rerun once it has room.
    An object store's client error (no credentials, no connection, a refusal) is one line too,
    naming the URL where known and saying what to check (`store_error`), exit status 2; 1 when the
    store could not be reached (an outage: the rerun resumes, and Airflow's retry is not skipped)."""
    from crawlmill.store_errors import client_class, store_error, store_unreachable

    try:
        yield
    except BrokenPipeError:  # `crawlmill ... | head` has what it wanted: click ends quietly (exit 1), not "error: Broken pipe"
        raise
    except Exception as exc:
        if not isinstance(exc, (OSError, ValueError)) and client_class(exc) is None:  # typer.Exit, a bug's error...
            raise
        said = store_error(exc)
        if said is not None:
            raise fail(said, 1 if store_unreachable(exc) else 2) from None
        if isinstance(exc, OSError):
            from crawlmill.files import WRITE_ERRNOS

            from crawlmill.pipeline.folder_lock import OutputFolderBusy

            # a full disk, or another run writing the folder: rerun later, as failed tasks
            raise fail(str(exc), 1 if exc.errno in WRITE_ERRNOS or isinstance(exc, OutputFolderBusy) else 2) from None
        if isinstance(exc, ValueError):  # ConfigError, InputError, StageInputMismatch, TokenizerError, ShardError...
            raise fail(str(exc)) from None
        raise


def _option(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


RUNTIME_OPTIONS = [
    _option("address", typer.Option(None, "--address", help="Ray cluster to join, its GCS address HEAD:6379; default: a local Ray started for this command, or the cluster of RAY_ADDRESS, as under `ray job submit --address http://HEAD:8265 -- crawlmill ...`."), Optional[str]),
    _option("num_cpus", typer.Option(None, "--num-cpus", help="CPUs of the local Ray (default: all)."), Optional[int]),
    _option("max_in_flight", typer.Option(None, "--max-in-flight", help="Ray tasks at once (default: 2 x cluster CPUs)."), Optional[int]),
    _option("no_progress", typer.Option(False, "--no-progress", help="Show no progress: no bar on a terminal, and no progress lines in a log or pipe (otherwise one as each step starts, at most one every $CRAWLMILL_PROGRESS_INTERVAL seconds, default 10, one a minute while no task finishes, and one as it ends)."), bool),
    _option("overwrite", typer.Option(False, "--overwrite", help="Start over: delete the earlier output in the output folder(s) instead of resuming, once the inputs are checked (never a folder crawlmill did not write)."), bool),
]  # fmt: skip
STAGE_OPTIONS = [
    _option("output", typer.Option(..., "--output", "-o", help="Output folder or URL (s3://..., gs://...): Parquet parts or the stage's files, _stats.json, _SUCCESS."), str),
    _option("config_file", typer.Option(None, "--config", help="The stage's settings as YAML (its section of a run config); options given here override it."), Optional[Path]),
    _option("print_config", typer.Option(False, "--print-config", help="Print the resolved config as JSON and exit (nothing runs)."), bool),
]  # fmt: skip


@dataclass
class Runtime:
    """The common options of a verb that runs on Ray."""

    address: Optional[str] = None
    num_cpus: Optional[int] = None
    max_in_flight: Optional[int] = None
    no_progress: bool = False
    overwrite: bool = False

    def ray_options(self, base: Any = None) -> Any:
        """These options over `base` (a run config's `ray:` section)."""
        from crawlmill.pipeline.ray_tasks import RayOptions

        base = base or RayOptions()
        return RayOptions(
            address=self.address or base.address,
            num_cpus=self.num_cpus or base.num_cpus,
            max_in_flight=self.max_in_flight or base.max_in_flight,
        )


def _with_options(fn: Callable[..., Any], extra: list[inspect.Parameter], call: Callable[[dict, dict], Any]) -> Callable[..., Any]:
    """A command whose parameters are fn's own plus `extra`; `call(own values, extra values)` runs it."""
    signature = inspect.signature(fn)
    own = [p for p in signature.parameters.values() if p.name != "runtime"]

    @functools.wraps(fn)  # keeps __wrapped__: typer resolves fn's annotations in fn's module
    def command(**values: Any) -> Any:
        common = {p.name: values.pop(p.name) for p in extra}
        return call(values, common)

    command.__signature__ = signature.replace(parameters=own + extra)  # type: ignore[attr-defined]
    return command


def runtime_verb(app: typer.Typer, **command: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` as a verb with the common runtime options; fn gets them as `runtime`."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(own: dict, common: dict) -> Any:
            return fn(**own, runtime=Runtime(**common))

        app.command(**command)(_with_options(fn, RUNTIME_OPTIONS, call))
        return fn

    return decorate


class PrintConfigCommand(TyperCommand):
    """A stage verb's command: with `--print-config` its INPUTs and `--output` are not required, so
    that `crawlmill dedup --config dedup.yaml --print-config` shows a section's resolved config
    without inventing folders it would not read."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--print-config" in args:
            for param in self.params:  # this invocation's own command object: typer builds one per run
                param.required = False
        return super().parse_args(ctx, args)


def stage_verb(app: typer.Typer, stage: str, spec: Any = None, **command: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `fn` (its parameters are config fields; its body is not called) as the verb that
    runs pipeline stage `stage` alone, with the common stage and runtime options. `spec`: a StageSpec
    of a stage outside the pipeline list (e.g. training the quality classifier)."""

    def find() -> Any:
        from crawlmill.pipeline.definition import PIPELINE

        return spec or PIPELINE.get(stage)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(own: dict, common: dict) -> None:
            spec = find()
            runtime = Runtime(**{k: common[k] for k in ("address", "num_cpus", "max_in_flight", "no_progress", "overwrite")})
            with user_errors():
                config = stage_config(spec.config, common["config_file"], option_values(own), stage)
                if common["print_config"]:
                    from crawlmill.pipeline.config import to_json

                    print(redact(json.dumps(to_json(config), indent=1, ensure_ascii=False)))  # a URL's password is never printed
                    return
                run_one_stage(spec, config, common["output"], runtime)

        _document_defaults(fn, find().config)
        verb = _with_options(fn, STAGE_OPTIONS + RUNTIME_OPTIONS, call)
        verb.crawlmill_stage = stage  # type: ignore[attr-defined] - which stage's config its options are
        app.command(cls=PrintConfigCommand, **command)(verb)
        return fn

    return decorate


def option_values(own: dict[str, Any]) -> dict[str, Any]:
    """A verb's given parameters as a nested config mapping (`a__b` -> {"a": {"b": ...}})."""
    values: dict[str, Any] = {}
    for name, value in own.items():
        if value is None or value == []:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        *parents, leaf = name.split("__")
        node = values
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return values


def stage_config(config_type: type, config_file: Optional[Path], values: dict[str, Any], where: str) -> Any:
    """The stage's config: `--config FILE` (paths in it relative to it), then the options given."""
    from crawlmill.pipeline.config import build, check_section, load_section, merge

    data: dict[str, Any] = {}
    if config_file is not None:
        from_file = load_section(config_type, str(config_file), where, Path.cwd())
        data = dataclasses.asdict(from_file)
    config = build(config_type, merge(data, values), where, Path.cwd())  # relative paths: from here
    check_section(config, where)
    return config


@contextlib.contextmanager
def resumable(overwrite: bool = False) -> Iterator[None]:
    """Ctrl-C in a stage: typer would exit 130 without a word; say that the finished tasks are kept
    (and that the same command with --overwrite would delete them again)."""
    import signal

    from crawlmill.pipeline.ray_tasks import TERMINATED, UNWIND_ON_SIGTERM, Terminated, raise_terminated, shutdown_ray_quietly

    UNWIND_ON_SIGTERM[0], TERMINATED[0] = True, False
    try:
        yield
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated) or TERMINATED[0]  # Ray's wait re-raises it as KeyboardInterrupt
        how = "rerun the same command without --overwrite" if overwrite else "rerun the same command"
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        err.print(f"{what}: the tasks that finished are kept; {how} to resume from them")
        shutdown_ray_quietly()
        raise typer.Exit(143 if terminated else 130) from None
    finally:
        UNWIND_ON_SIGTERM[0] = False
        if signal.getsignal(signal.SIGTERM) is raise_terminated:  # past the stage: the default again
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def warn_if_in_job_copy(output: Any) -> None:
    """Under `ray job submit --working-dir DIR` a relative output lands in Ray's copy of DIR, which
    Ray deletes with its session, and which no other node sees: say so before the work starts."""
    from crawlmill.files import is_url

    where = str(output) if is_url(output) else os.path.abspath(os.path.expanduser(str(output)))
    if "/runtime_resources/working_dir_files/" in where:
        err.print(f"[yellow]warning:[/yellow] the output folder {escape(where)} lies in Ray's copy of the job's --working-dir, "
                  "which Ray deletes with its session and other nodes do not see: give an absolute path on shared storage", highlight=False)  # fmt: skip


def run_one_stage(spec: Any, config: Any, output: str, runtime: Runtime, ray_base: Any = None) -> Any:
    """Build the stage from its config, run it into `output` and report; exit 1 on failed tasks.
    --overwrite deletes the earlier output only once the stage's inputs are checked (run_stage)."""
    from crawlmill.pipeline.runner import run_stage

    stage = spec.stage_class()(config)
    warn_if_in_job_copy(output)
    with resumable(runtime.overwrite):
        result = run_stage(stage, output, runtime.ray_options(ray_base), progress=not runtime.no_progress, overwrite=runtime.overwrite)
    report(stage, result)
    return result


WARNING = "[yellow]warning:[/yellow] "  # how a stage's report line that is a warning starts


def report(stage: Any, result: Any) -> None:
    """A finished stage's lines to stdout; failed tasks to stderr and exit status 1."""
    if not result.ok:
        for source, detail in result.failures:
            err.print(f"[red]failed[/red] {escape(redact(source))}: {escape(redact(detail))}", highlight=False)
        err.print(f"{len(result.failures)} task(s) failed; rerun the same command to retry only those.")
        raise typer.Exit(1)
    for line in stage.report(result):
        (err if line.startswith(WARNING) else out).print(line, highlight=False)  # warnings to stderr, as every verb's


def _document_defaults(fn: Callable[..., Any], config_type: type) -> None:
    """Append the config's default to each option's help, so --help and the config never disagree."""
    for param in inspect.signature(fn).parameters.values():
        info = param.default
        if not isinstance(info, typer.models.OptionInfo) or info.default is not None or "default" in (info.help or ""):
            continue
        default = config_default(config_type, param.name.split("__"))
        if default is not None:
            info.help = f"{info.help or ''} [default: {default}]".strip()


def config_default(config_type: type, path: list[str]) -> Any:
    """The default of the config field at `path` (a list of field names); KeyError if there is none."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    if path[0] not in fields:
        raise KeyError(f"{config_type.__name__} has no field {path[0]!r}")
    field = fields[path[0]]
    if len(path) > 1:
        return config_default(field.default_factory if field.default is dataclasses.MISSING else type(field.default), path[1:])  # type: ignore[misc]
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]
