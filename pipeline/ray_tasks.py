"""Run a list of independent jobs as Ray tasks: bounded in flight, failures isolated. The only module
of crawlmill that imports Ray (the runner, runner.py, calls it for every step of every stage).

A job that raises is reported with its key and error and the others go on; the original exception
is kept (`JobsResult.errors`) so that the runner can tell bad input from a crash.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)


@dataclass
class RayOptions:
    """The run config's `ray:` section and every verb's --address / --num-cpus / --max-in-flight."""

    address: str | None = None  # None: a local Ray, or the cluster of RAY_ADDRESS (ray job submit)
    num_cpus: int | None = None  # for a local Ray only
    max_in_flight: int | None = None  # default: 2 x the cluster's CPUs

    def __post_init__(self) -> None:
        for name in ("num_cpus", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} {value}: must be at least 1")
        if self.address and self.address.startswith(("http://", "https://")):  # ray.init's error would name RAY_ADDRESS
            raise ValueError(
                f"address {self.address}: that is a job server's address; give the cluster's GCS address "
                f"(HEAD:6379), or submit the command as a job: ray job submit --address {self.address} -- crawlmill ..."
            )


@dataclass
class Job:
    key: str  # unique among the jobs of one call
    args: tuple
    label: str = ""  # names the job in progress and failure reports (default: the key)

    @property
    def name(self) -> str:
        return self.label or self.key


@dataclass
class JobsResult:
    results: dict[str, Any] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (label, error summary)
    errors: dict[str, BaseException] = field(default_factory=dict)  # key -> the job's own exception


def ensure_ray(options: RayOptions) -> None:
    """Join the cluster of `options.address` or of RAY_ADDRESS (set inside `ray job submit`), else
    start a local Ray whose every service listens on loopback only (`init_local_ray`). A cluster's
    CPUs are its own: num_cpus is for a local Ray only. Token authentication comes from the
    environment (RAY_AUTH_MODE, RAY_AUTH_TOKEN...; docs/ray.md)."""
    import ray

    if ray.is_initialized():
        return
    started = time.perf_counter()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not (sys.stdout.isatty() and sys.stderr.isatty()):  # a job's log, a file, Airflow's task log
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # workers' lines without colour codes around "(pid=...)"
    before = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    if options.address:
        ray.init(address=options.address, logging_level=logging.WARNING)
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING)
    else:
        setup = {"runtime_env": ray_train_runtime_env()} if RAY_TRAIN_AHEAD[0] else {}
        init_local_ray(num_cpus=options.num_cpus, include_dashboard=False, logging_level=logging.WARNING, **setup)
    if before == signal.SIG_DFL and UNWIND_ON_SIGTERM[0]:
        signal.signal(signal.SIGTERM, raise_terminated)
    elif before not in (None, signal.SIG_DFL):  # the program's own handler, which ray.init replaced
        signal.signal(signal.SIGTERM, before)
    RAY_START_SECONDS[0] += time.perf_counter() - started
    STARTED_HERE[0] = True


STARTED_HERE = [False]  # this process started (or joined) Ray through ensure_ray: its shutdown is ours

# Set before Ray starts by the commands that may start Ray Train (`crawlmill train`, `crawlmill run` of
# a config with a train section): a local Ray that ensure_ray starts then runs without_state_api in
# every worker. Only then: any job runtime env starts each worker through Ray's setup_worker.py (Ray
# imported twice) and leaves unused the workers Ray prestarts for a job (measured: ~0.3 CPU-s a worker,
# ~1.5 of the demo pipeline's ~28).
RAY_TRAIN_AHEAD = [False]


def shutdown_ray_quietly() -> None:
    """After Ctrl-C: Ray shut down now, with further Ctrl-Cs ignored meanwhile. Left to its exit hook,
    a second Ctrl-C broke the shutdown with a traceback and left Ray's agents running for a minute."""
    import ray

    if not (STARTED_HERE[0] and ray.is_initialized()) or threading.current_thread() is not threading.main_thread():
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ray.shutdown()
    finally:
        signal.signal(signal.SIGINT, before)
        STARTED_HERE[0] = False


# Seconds this process spent starting or joining Ray: the first stage of a run starts it, and its
# time is the run's, not that stage's (the run summary reports it apart: runner.run_stage).
RAY_START_SECONDS = [0.0]


# Set by the CLI around a stage (cli_common.resumable), which says what a stop leaves and exits 143.
UNWIND_ON_SIGTERM = [False]


class Terminated(KeyboardInterrupt):
    """SIGTERM (`ray job stop`, Kubernetes, Airflow's kill) in a driver: unwound as Ctrl-C is, so the
    command says that the finished tasks are kept (cli_common.resumable). Ray's own handler, which
    ray.init installs, printed a C++ stack dump and ended the driver with a bare exit status."""


def raise_terminated(signum: int, frame: Any) -> None:
    TERMINATED[0] = True  # Ray's ray.wait turns what a handler raised into a plain KeyboardInterrupt
    raise Terminated()


TERMINATED = [False]  # a SIGTERM arrived (raise_terminated): cli_common.resumable says so, exit 143


# Ray's switch between "this machine only" and "a node of a cluster" (ray._private.ray_constants).
_CLUSTER_MODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_LOOPBACK = ("127.0.0.1", "::1")
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def init_local_ray(**init_kwargs: Any) -> None:
    """ray.init(**init_kwargs) starting a local Ray that no other machine can reach: the GCS, the
    raylet (node manager, object manager), every worker's gRPC server, the dashboard agent (gRPC,
    HTTP, metrics exporter), the runtime-env agent and the autoscaler's and dashboard's metrics
    servers all listen on 127.0.0.1 only. Any of them runs code for whoever reaches it.

    Ray 2.60 has no bind-address setting: each server listens on the node's address, or on every
    interface (0.0.0.0 / ::) unless that address is exactly loopback. And ray.init replaces a given
    `_node_ip_address="127.0.0.1"` by the host's network address (services.resolve_ip_for_localhost)
    unless Ray's cluster mode is off, as it is on Windows and macOS. So cluster mode is turned off
    while Ray starts: RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in the environment of the processes Ray
    starts now (read when they import Ray), and the same flag in this process, which imported Ray
    before. Both are restored afterwards, so that a later `ray start` or cluster connection made
    from this process is not turned into a local one. Such a Ray cannot take other nodes: for a
    cluster, `ray start --head` and `--address` (docs/ray.md)."""
    import ray
    import ray._private.ray_constants as ray_constants

    saved_env, saved_flag = os.environ.get(_CLUSTER_MODE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_CLUSTER_MODE_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    # A new local cluster gets token authentication by default (RAY_AUTH_MODE unset; its token made or
    # read at ~/.ray/auth_token), and Ray says so in a warning on every command: not for this one.
    auth_log = logging.getLogger(_AUTH_LOGGER)
    saved_level = auth_log.level
    auth_log.setLevel(logging.ERROR)
    try:
        ray.init(**init_kwargs)
    finally:
        auth_log.setLevel(saved_level)
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(_CLUSTER_MODE_ENV, None)
        else:
            os.environ[_CLUSTER_MODE_ENV] = saved_env
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in _LOOPBACK:  # a Ray release that resolves loopback otherwise: refuse rather than expose
        ray.shutdown()
        raise RuntimeError(f"the local Ray started on {node_ip}, not on loopback: its services would be reachable from the network")


# Ray Train's detached PlacementGroupCleaner asks the State API every second whether the controller
# lives; the State API is the dashboard's, so on a local Ray without one each ask fails with a warning,
# a line every second or two of a training run. Such a Ray ends with its driver, placement groups too.
_STATE_API_LOGGERS = ("ray.train.v2._internal.execution.controller.placement_group_cleaner",)


def without_state_api() -> None:
    """Worker-process setup of a local Ray started without a dashboard for a job that may run Ray
    Train (RAY_TRAIN_AHEAD): silence the warnings of what polls the State API there
    (_STATE_API_LOGGERS); their errors still show."""
    for name in _STATE_API_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def ray_train_runtime_env() -> dict[str, Any]:
    """The job runtime env of a local Ray that Ray Train may run on (RAY_TRAIN_AHEAD)."""
    return {"worker_process_setup_hook": f"{__name__}.{without_state_api.__name__}"}


def run_jobs(
    fn: Callable[..., Any],
    jobs: list[Job],
    options: RayOptions,
    on_done: Callable[[Job, Any], None] | None = None,
    on_failed: Callable[[Job, str], None] | None = None,
    retry_exceptions: list[type[BaseException]] | None = None,
    shared: tuple = (),
    fresh_worker: bool = False,
) -> JobsResult:
    """Run fn(*shared, *job.args) for every job on Ray; `shared` objects are put in the store once.
    `fresh_worker`: each job in a worker process of its own, started for it and ended after it, for
    work whose memory is measured or budgeted (a reused worker carries what earlier tasks left: a
    fastText model, torch, allocator pools)."""
    import ray

    out = JobsResult()
    if not jobs:
        return out
    ensure_ray(options)
    max_in_flight = options.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    # A fresh worker: Ray keeps a worker pool per runtime env (merged with the job's), so an env of
    # its own starts a new worker, and max_calls=1 ends it after the job.
    fresh = {"max_calls": 1, "runtime_env": {"env_vars": {"CRAWLMILL_FRESH_WORKER": "1"}}} if fresh_worker else {}
    remote = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=retry_exceptions or False, **fresh)(fn)
    shared_refs = tuple(ray.put(obj) for obj in shared)
    pending = list(reversed(jobs))
    in_flight: dict[Any, Job] = {}
    while pending or in_flight:
        while pending and len(in_flight) < max_in_flight:
            job = pending.pop()
            in_flight[remote.remote(*shared_refs, *job.args)] = job
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        job = in_flight.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # the job's own error, with its key; other jobs go on
            cause = getattr(exc, "cause", None) or exc
            detail = "".join(traceback.format_exception_only(type(cause), cause)).strip()
            out.failures.append((job.name, detail))
            out.errors[job.key] = cause
            if on_failed:
                on_failed(job, detail)
            continue
        out.results[job.key] = result
        if on_done:
            on_done(job, result)
    return out


def run_torch_workers(
    fn: Callable[[dict], Any], config: dict[str, Any], workers: int, use_gpu: bool, storage: str, name: str, options: RayOptions,
    max_failures: int = 0,
) -> Any:  # fmt: skip
    """fn(config) on `workers` Ray Train workers that share a torch.distributed group (gloo on CPU,
    nccl on GPU, one GPU each): Ray Train's TorchTrainer, so training runs wherever Ray runs,
    `ray job submit` included. After a worker's failure Ray Train starts the workers again, up to
    `max_failures` times. A worker's error is raised here with its own message. Returns what fn
    returned on rank 0 (None on a Ray Train without it: Train v1)."""
    ensure_ray(options)
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        fn,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=max_failures),
            # Ray Train's print patch logs each print and also prints it (Ray's workers wrap sys.stdout),
            # so every line reached the driver twice: the workers print as any Ray worker does
            worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}},
        ),  # fmt: skip
    )
    try:
        return getattr(trainer.fit(), "return_value", None)
    except Exception as exc:  # Ray's wrapper names the worker; the cause says what went wrong
        cause = exc
        while getattr(cause, "cause", None) is not None or getattr(cause, "__cause__", None) is not None:
            cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, (ValueError, OSError, ArithmeticError)):  # bad input, storage, a diverged run
            raise cause from None
        raise


def cluster_has_gpus(options: RayOptions) -> bool:
    import ray

    ensure_ray(options)
    return ray.cluster_resources().get("GPU", 0) > 0


def cpu_nodes(options: RayOptions) -> list[tuple[str, int]]:
    """(node id, CPUs) of every live node with CPUs, in a stable order."""
    import ray

    ensure_ray(options)
    nodes = [(n["NodeID"], int(n["Resources"].get("CPU", 0))) for n in ray.nodes() if n.get("Alive")]
    return sorted((node, cpus) for node, cpus in nodes if cpus > 0)


def run_on_nodes(fn: Callable[..., Any], per_node: list[tuple[str, int, tuple]], options: RayOptions, shared: tuple = ()) -> list[Any]:
    """fn(*shared, cpus, *args) once on each given node, holding all its CPUs; results in order, Ray's
    error in place of the result of a node whose process died (WorkerCrashedError, after Ray's
    retries) or that left the cluster (TaskUnschedulableError, NodeDiedError...). An exception the
    function raises is raised here (it reports its items' own failures in its result)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ensure_ray(options)
    errors = ray.exceptions
    node_lost = (errors.WorkerCrashedError, errors.NodeDiedError, errors.TaskUnschedulableError, errors.ObjectLostError, errors.OutOfMemoryError)
    shared_refs = tuple(ray.put(obj) for obj in shared)
    refs = [ray.remote(fn).options(num_cpus=cpus, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(*shared_refs, cpus, *args) for node, cpus, args in per_node]
    results: list[Any] = []
    for ref in refs:
        try:
            results.append(ray.get(ref))
        except ray.exceptions.RayTaskError as exc:  # e.g. the setup refused its input: the step's error
            raise (getattr(exc, "cause", None) or exc) from None
        except node_lost as exc:  # the node's process died, or the node: its unfinished items failed
            results.append(exc)
    return results
