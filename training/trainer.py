"""The training loop of one rank: Megatron-Core GPT on pack's shards, DeepSeek LLM's optimizer and
schedule, checkpoints, exact resume, validation loss and bits per byte.

    crawlmill train --config tiny --data out/shards --output runs/tiny      # the command (launch.py)
    torchrun --nproc-per-node 8 -m crawlmill.training.launch --config 1b --data ... --output ...
    summary = train(load_train_config("tiny", {"data": {"shards": [...]}}), Path("runs/tiny"))

Every rank runs `train`: it joins the process group torchrun or Ray Train made (or makes a
one-rank gloo group), sets Megatron's model-parallel state, seeds every generator, builds the data
(data.py), the model (model.py) and the optimizer (backends.py: torch AdamW on CPU, Megatron's
distributed optimizer on GPU), restores the newest checkpoint when resuming, then runs the steps.
Rank 0 writes run.json, the log (runlog.py: stdout, log.jsonl, TensorBoard when installed).

Exactness: nothing random happens after seeding except what the checkpoint restores (no dropout),
the data position is the step number (data.py), and the schedule is a function of the step; so a
run stopped and resumed gives the same losses and weights, bit for bit, as one that never stopped.
A run folder holding a checkpoint is refused without `resume` (checkpoint_source.RunExists), and a resume
whose data would come in another order is refused (data.DataOrderChanged). A new run may start from
another run's weights (`checkpoint.init_from`, checkpoint_source.load_weights), loaded before the optimizer.

A step whose loss or gradient norm is not finite (nan or inf: the run diverged, or a fault) stops the
run before anything saves that state: the pending checkpoint completes, a `diverged` record is
logged, and TrainingDiverged names the step and the last checkpoint, which stays intact (keep-K
never rotates good checkpoints out for broken ones). Every rank sees the same all-reduced figures,
so all stop at the same step.

`checkpoint.on_signal` (default SIGTERM, what Kubernetes and Slurm send ahead of a kill): the run
saves a checkpoint at the step it reached and stops with TrainingStopped (stopsignal.py). So does
a stop request (`stop_request`, a file the driver of the pipeline's train stage writes when it gets
the signal: the trainer runs in a Ray task that no signal reaches; stopsignal.StopRequest).

`run_dir` may be a URL (`s3://bucket/runs/tiny`): the ranks work in a local staging folder and the
run's files are uploaded there (runstore.py, checkpoint.py); shards may be URLs too (data.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .checkpoint import Checkpointer, DamagedElsewhere, step_name
from .checkpoint_source import load_weights, refuse_to_overwrite
from .compat import layer_spec, use_cuda
from .config import TrainConfig
from .data import ShardData, check_resume_order, data_order, token_bytes
from .epochs import epochs_record, over_cap
from .layout import ResumeLayout
from .preemption import PreemptionNotice
from .process_group import init_distributed, release_distributed, seed_everything
from .memory import MemoryEstimate, estimate_memory, peak_memory, too_large
from .model import build_model
from .perf import StepProfiler, megatron_flops_per_token, utilisation
from .runlog import LOG_FILE, Reporter, read_log, write_run_info
from .rng_state import rng_state, set_rng_state
from .run_plan import RunPlan, plan_run
from .runstore import PROFILE, RunStore
from .sharing import check_shared
from .sharded_io import DamagedCheckpoint
from .schedule import Schedule
from .stopsignal import StopOnSignal, StopRequest, TrainingStopped, any_rank

LN2 = math.log(2)


class TrainingDiverged(FloatingPointError):
    """A step's loss or gradient norm was nan or inf; the run stopped without saving that state."""


def _byte_table(tokenizer_path: str, eod: int, vocab: int, device: torch.device, sha256: str) -> torch.Tensor | None:
    """data.token_bytes as a tensor on `device`, padded to the vocabulary; None (and why, on stderr)
    when bits per byte cannot be exact (`sha256`: the packed tokenizer.json's)."""
    lengths, why = token_bytes(tokenizer_path, eod, sha256)
    if lengths is None:
        print(f"bits per byte not reported: {why}", file=sys.stderr)
        return None
    table = torch.zeros(max(vocab, len(lengths)), dtype=torch.float64, device=device)
    table[: len(lengths)] = torch.as_tensor(lengths, dtype=torch.float64)
    return table


def check_stop_after(stop_after: int | None) -> None:
    if stop_after is not None and stop_after < 1:
        raise ValueError(f"--stop-after {stop_after}: must be at least 1 (the steps this invocation trains)")


def train(
    config: TrainConfig, run_dir: str | Path, resume: bool = False, stop_after: int | None = None, stop_at: int | None = None, ray_train: bool = False,
    stop_request: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train (or resume) into `run_dir`; `stop_after` ends this invocation after that many steps of
    it (`stop_at`: at that step of the run), with a checkpoint, keeping the schedule of the whole
    run. Returns the last figures. Without `resume`, a run folder holding a checkpoint is refused
    (checkpoint_source.RunExists). `ray_train`: this is a Ray Train worker (preemption notices are heeded).
    `stop_request`: the file (path or URL) whose appearance stops the run as the stop signal does
    (stopsignal.StopRequest: the driver of a Ray task asks so)."""
    from megatron.core import parallel_state

    check_stop_after(stop_after)
    if stop_at is not None and stop_at < 1:
        raise ValueError(f"stop_at {stop_at}: must be at least 1")
    rank, world, made_group = init_distributed()
    p = config.parallel
    if world % (p.tensor * p.pipeline * p.context):
        raise ValueError(f"world size {world} is not a multiple of tensor x pipeline x context ({p.tensor * p.pipeline * p.context})")
    if not use_cuda() and p.pipeline > 1:
        raise ValueError("pipeline parallelism needs GPUs; on CPU data and tensor parallelism")
    parallel_state.initialize_model_parallel(p.tensor, p.pipeline, context_parallel_size=p.context)
    try:
        return _train(config, RunStore(run_dir), resume, stop_after, stop_at, rank, world, ray_train, StopRequest(stop_request if rank == 0 else None))
    finally:
        parallel_state.destroy_model_parallel()
        release_distributed(made_group)


def _train(
    config: TrainConfig, store: RunStore, resume: bool, stop_after: int | None, stop_at: int | None, rank: int, world: int, ray_train: bool,
    request: StopRequest,
) -> dict[str, Any]:  # fmt: skip
    from megatron.core import parallel_state

    run_dir = store.local  # the run folder, or a URL run's local staging folder
    run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda", torch.cuda.current_device()) if use_cuda() else torch.device("cpu")
    if store.remote is None:  # a URL run stages per machine
        check_shared(run_dir, device)  # first: every rank then reads the same folder
    if not resume:
        refuse_to_overwrite(store)

    from .backends import MegatronBackend, TorchBackend

    dp, dp_rank = parallel_state.get_data_parallel_world_size(), parallel_state.get_data_parallel_rank()
    if not use_cuda() and config.precision == "bf16":  # bf16 with fp32 gradient buffers is the GPU path
        if rank == 0:
            print("precision bf16 needs a GPU here: training in fp32 on CPU", file=sys.stderr)
        config = dataclasses.replace(config, precision="fp32")
    plan = plan_run(config, dp)
    seed_everything(config.seed)
    data = ShardData(config, run_dir / "data_cache", plan.total_steps * plan.global_batch, config.eval.iters * plan.global_batch)
    vocab = config.model.vocab_size or data.padded_vocab
    if vocab < data.tokenizer_vocab:
        raise ValueError(f"model.vocab_size {vocab} is below the tokenizer's {data.tokenizer_vocab} tokens")
    model = build_model(config.model, vocab, config.precision, config.parallel)
    schedule = Schedule(config.schedule, plan.peak_lr, plan.train_tokens, plan.tokens_per_step)
    def publish() -> None:  # rank 0, once a checkpoint is complete at a URL: the logs up to it
        reporter.flush()
        store.push_logs()

    saver = Checkpointer(
        run_dir, rank, world, config.checkpoint.keep, config.checkpoint.asynchronous(use_cuda()), dist.barrier,
        remote=store.remote, published=publish, trusted=config.checkpoint.trusted,
        fully_parallel=config.checkpoint.fully_parallel, constant_structure=config.checkpoint.constant_structure, shield=StopOnSignal.signals(config.checkpoint.on_signal),
    )  # fmt: skip
    saver.remove_unfinished()

    found = saver.latest() if resume else None
    initialized = None
    if found is None and config.checkpoint.init_from:  # before the optimizer copies the weights
        initialized = load_weights(model, config.checkpoint.init_from, rank, world, config.checkpoint.trusted, dist.barrier)
    if use_cuda():
        backend: Any = MegatronBackend(model, config.optimizer, plan.peak_lr, config.precision, config.model.seq_length, config.micro_batch_size,
                                       config.checkpoint.optimizer_sharding, config.checkpoint.optimizer_gather_on_one_rank)  # fmt: skip
    else:
        backend = TorchBackend(model, config.optimizer, plan.peak_lr, device, parallel_state.get_data_parallel_group(with_context_parallel=True), parallel_state.get_model_parallel_group())
    layout = ResumeLayout(config.parallel, backend.optimizer_sharding)  # what checkpoints it can resume (layout.py)
    start = 0
    order = data_order(config, data.folders, plan.global_batch, plan.total_steps * plan.global_batch)
    skipped: list[str] = []  # damaged checkpoints a resume went past, the same on every rank
    if found is not None:
        for folder, meta in saver.complete():
            if config.data.check_on_resume:
                check_resume_order(meta.get("data_order"), order, folder)
            try:
                if meta["step"] >= plan.total_steps:  # the run's end: checked, not loaded, if the log ended there too
                    saver.check(folder, meta, layout)
                    if (summary := _finished(store, meta["step"], plan, rank, device)) is not None:
                        saver.close(publish=False)  # nothing new to publish
                        return summary
                template = partial(backend.sharded_state_dict, is_loading=True, saved_sharding=meta.get("optimizer_sharding"))
                state, rng = saver.load(folder, meta, layout, template)
            except DamagedCheckpoint as exc:  # on every rank alike (Checkpointer._agreed)
                if rank == 0 or not isinstance(exc, DamagedElsewhere):  # the rank whose file it is says which
                    print(f"{exc}: resuming from the checkpoint before it", file=sys.stderr)
                skipped.append(Path(str(folder)).name)
                continue
            found = folder, meta
            break
        else:
            raise DamagedCheckpoint(f"{store.name}: no checkpoint of it could be read ({', '.join(skipped)} damaged or incomplete)")
        backend.load_sharded_state_dict(state)
        set_rng_state(rng)
        start = meta["step"]
        if plan.note and "train_tokens" not in meta and rank == 0:  # written before max_steps replaced train_tokens
            print(f"{store.name}: warning: its checkpoints were written by a crawlmill before 2026-12-07, whose schedule spanned the config's "
                  f"train_tokens; resumed, the LR milestones fall at 80% and 90% of its {plan.total_steps:,} steps", file=sys.stderr)  # fmt: skip
    elif resume and rank == 0:
        print(f"{store.name}: no checkpoint yet; starting from step 0", file=sys.stderr)
    if rank == 0:
        store.pull_log()  # a URL's log.jsonl continues (a local run appends to its own)
    reporter = Reporter(run_dir, rank == 0, start if found is not None else -1)  # the log cut back to the checkpoint's step; else empty
    if found is not None:
        reporter.record("resumed", step=start, checkpoint=Path(str(found[0])).name, **({"skipped": skipped} if skipped else {}))
    elif initialized is not None:
        reporter.record("initialized", step=0, checkpoint=initialized[0], from_step=initialized[1])
    flops = {"M": plan.model_scale, "megatron": megatron_flops_per_token(config.model, vocab)}  # per token, for MFU
    if rank == 0:
        memory = estimate_memory(config, vocab, plan.data_parallel, use_cuda(), plan.global_batch)
        info = _run_info(config, plan, flops, vocab, world, memory)
        epochs = data.epochs()
        info["data_epochs"] = epochs_record(epochs)
        write_run_info(run_dir, info)
        p = config.parallel
        print(f"{store.name}: {info['model']['parameters']['total']:,} parameters, layer spec {info['model']['layer_spec']}, "
              f"{world} rank(s) (tensor {p.tensor}, pipeline {p.pipeline}, context {p.context}, data {plan.data_parallel}); "
              f"memory per rank, estimated: {memory.describe()}", file=sys.stderr)  # fmt: skip
        if plan.note:
            print(f"{store.name}: {plan.note}", file=sys.stderr)
        for line in over_cap(epochs, data.train_tokens, plan.tokens_per_step):  # Megatron repeats a group without a word
            print(line, file=sys.stderr)
        if use_cuda() and (warning := too_large(memory, torch.cuda.mem_get_info()[1])):
            print(f"{store.name}: {warning}", file=sys.stderr)
    byte_table = _byte_table(data.tokenizer_path, data.eod, vocab, device, data.tokenizer_sha256)
    if any_rank([byte_table is None], device)[0]:  # all ranks or none: validation's byte count is a collective
        byte_table = None

    def checkpoint(step: int) -> None:
        meta = {"consumed_samples": step * plan.global_batch, "tokens": step * plan.tokens_per_step, "train_tokens": plan.train_tokens,
                "time": datetime.now(timezone.utc).isoformat(), "data_order": order,
                "parallel": layout.sizes(), "optimizer_sharding": backend.optimizer_sharding}  # fmt: skip
        waited = saver.save(step, backend.sharded_state_dict(), rng_state(), meta)
        reporter.record("checkpoint", step=step, path=f"{saver.location}/{step_name(step)}", seconds=round(waited, 3))

    def validate(step: int) -> dict[str, float]:
        if data.valid is None:
            return {}
        loss = tokens = byte_count = 0.0
        for index in range(config.eval.iters):
            batches = data.micro_batches("valid", index, dp_rank, dp, config.micro_batch_size, plan.global_batch)
            batch_loss, batch_tokens = backend.evaluate(batches)
            loss, tokens = loss + batch_loss, tokens + batch_tokens
            if byte_table is not None:
                byte_count += sum(float((byte_table[b["labels"].to(device)] * b["loss_mask"].to(device)).sum()) for b in batches)
        result = {"loss": loss / max(tokens, 1)}
        if byte_table is not None:
            count = torch.tensor([byte_count], dtype=torch.float64, device=device)
            dist.all_reduce(count, group=parallel_state.get_data_parallel_group())
            result["bpb"] = loss / LN2 / max(float(count), 1.0)
        reporter.record("valid", step=step, tokens=step * plan.tokens_per_step, **result)
        return result

    last_save, last_log, logged_tokens = time.monotonic(), time.monotonic(), 0
    paused = 0.0  # seconds validating and checkpointing since the last log: not training, so out of tokens/s (as Megatron-LM's interval timer)
    wanted = stop_at if stop_at is not None else start + stop_after if stop_after is not None else plan.total_steps
    end = max(start, min(plan.total_steps, wanted))
    loss = grad_norm = float("nan")
    valid: dict[str, float] = {}
    profiler = StepProfiler(config.profile, rank, run_dir / PROFILE, written=store.push_files)
    preemption = PreemptionNotice(ray_train and config.checkpoint.on_preemption)
    with StopOnSignal(config.checkpoint.on_signal) as stop:  # a preemption's warning: save, stop
        for step in range(start, end):
            lr = schedule.lr_at(step)
            profiler.before(step)
            batches = data.micro_batches("train", step, dp_rank, dp, config.micro_batch_size, plan.global_batch)
            loss, grad_norm = backend.step(batches, lr)
            profiler.after(step)
            done = step + 1
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                _stop_diverged(done, loss, grad_norm, profiler, saver, reporter, store, rank)
            logged_tokens += plan.tokens_per_step
            if done % config.log_interval == 0 or done == end:
                now = time.monotonic()
                rate = logged_tokens / max(now - last_log - paused, 1e-9)
                extra = utilisation(flops, rate / world, torch.cuda.get_device_name()) if use_cuda() else {}
                used = peak_memory(device)  # a collective: every rank logs at the same steps
                eta = timedelta(seconds=round((plan.total_steps - done) * plan.tokens_per_step / max(rate, 1e-9)))  # training time, no pauses
                reporter.record("train", note=f"{done:,}/{plan.total_steps:,} steps, eta {eta}", step=done, tokens=done * plan.tokens_per_step, loss=loss, lr=lr,
                                grad_norm=grad_norm, tokens_per_s=round(rate, 1), **extra, **used)  # fmt: skip
                last_log, logged_tokens, paused = now, 0, 0.0
            if done % config.eval.interval == 0 or done == plan.total_steps:
                pause_from = time.monotonic()
                valid = validate(done)
                paused += time.monotonic() - pause_from
            every = config.checkpoint
            by_time = every.every_minutes > 0 and time.monotonic() - last_save >= every.every_minutes * 60
            by_steps = every.every_steps is not None and done % every.every_steps == 0
            asked = request.asked()  # rank 0's look at the driver's stop request (None elsewhere)
            stopping, by_time = any_rank([stop.received or asked is not None, by_time], device)  # every rank decides alike
            notice = preemption.poll()  # Ray Train's own collective: the same answer on every rank
            if notice is not None:
                reporter.record("preemption", step=done, **notice)
            if by_time or by_steps or done == end or stopping or notice is not None:
                pause_from = time.monotonic()
                checkpoint(done)
                if notice is not None:  # the node goes at the deadline: complete (written, uploaded) now, not at the next save
                    saver.settle()
                last_save = time.monotonic()
                paused += last_save - pause_from
            if stopping and done < end:
                _stop_on_signal(done, plan.total_steps, stop.which or asked or "a stop signal (on another rank)", profiler, saver, reporter, store, rank)
    last = {"kind": "end", "step": end, "tokens": end * plan.tokens_per_step} if end == plan.total_steps else None
    _close_run(profiler, saver, reporter, store, rank, last)
    return {"step": end, "total_steps": plan.total_steps, "loss": loss, "grad_norm": grad_norm, "valid": valid, "plan": asdict(plan)}


def _finished(store: RunStore, step: int, plan: RunPlan, rank: int, device: torch.device) -> dict[str, Any] | None:
    """The summary of a run resumed at its end, a checkpoint at `step` (rank 0's: its last logged figures);
    nothing trained or logged. None when the log has no end record there (the process died after its last
    checkpoint; a line torn by the kill alike): the run is loaded, to log and publish its end. Collective."""
    last: dict[str, dict[str, Any]] = {}  # the last record of each kind in rank 0's log.jsonl
    if rank == 0:
        try:
            store.pull_log()
            last = {str(r.get("kind")): r for r in read_log(store.local)} if (store.local / LOG_FILE).is_file() else {}
        except (OSError, ValueError) as exc:  # on rank 0 only: the collective below still runs on every rank
            print(f"{store.name}: its log.jsonl could not be read ({exc}): the run is loaded to end it", file=sys.stderr)
    if any_rank([rank == 0 and last.get("end", {}).get("step") != step], device)[0]:
        return None
    if rank == 0:
        print(f"{store.name}: already finished, at step {step:,} (this config's length: {plan.total_steps:,}): nothing to train", file=sys.stderr)
    train_record, valid = last.get("train", {}), last.get("valid", {})
    return {"step": step, "total_steps": plan.total_steps, "loss": train_record.get("loss"), "grad_norm": train_record.get("grad_norm"),
            "valid": {k: v for k, v in valid.items() if k not in ("kind", "step", "tokens")}, "already_finished": True, "plan": asdict(plan)}  # fmt: skip


def _close_run(profiler: Any, saver: Checkpointer, reporter: Reporter, store: RunStore, rank: int, record: dict[str, Any] | None) -> None:
    """How every run ends: the profile written, the pending checkpoint completed, the last record
    logged, the logs closed and (rank 0) uploaded."""
    profiler.close()
    saver.close()
    if record is not None:
        reporter.record(**record)
    reporter.close()
    if rank == 0:
        store.push_logs()  # the last records and TensorBoard events


def _stop_diverged(step: int, loss: float, grad_norm: float, profiler: Any, saver: Checkpointer, reporter: Reporter, store: RunStore, rank: int) -> None:
    """End the run at a non-finite step (module docstring): the last good checkpoint completed and
    kept, then TrainingDiverged on every rank."""
    saver.close()  # first: the checkpoint the record names must be complete
    saver.barrier()  # and published: at a URL rank 0 does it after the others' uploads
    found = saver.latest()
    last = found[0].name if found is not None else None
    _close_run(profiler, saver, reporter, store, rank, {"kind": "diverged", "step": step, "loss": str(loss), "grad_norm": str(grad_norm), "checkpoint": last})
    kept = f"the last checkpoint, {last}, is intact: resume from it with --resume" if last else "no checkpoint was saved yet"
    raise TrainingDiverged(
        f"step {step}: loss {loss}, gradient norm {grad_norm}: training stopped without saving this state; {kept}, "
        "after lowering the peak LR or lengthening the warm-up (a run that diverges again at the same step points at its data)"
    )


def _stop_on_signal(step: int, total: int, name: str, profiler: Any, saver: Checkpointer, reporter: Reporter, store: RunStore, rank: int) -> None:
    """End the run after the checkpoint of `step`, saved because `name` arrived (stopsignal.py)."""
    _close_run(profiler, saver, reporter, store, rank, {"kind": "stopped", "step": step, "signal": name, "checkpoint": step_name(step)})
    stopped = TrainingStopped(f"{name} received: stopped after step {step} of {total} with its checkpoint, {step_name(step)}; continue with --resume")
    stopped.step = step
    raise stopped


def _run_info(config: TrainConfig, plan: RunPlan, flops: dict[str, float], vocab: int, world: int, memory: MemoryEstimate) -> dict[str, Any]:
    return json.loads(json.dumps({
        "config": asdict(config),
        "model": {"parameters": config.model.parameters(vocab), "M": plan.model_scale, "megatron_flops_per_token": flops["megatron"], "vocab_size": vocab,
                  "layer_spec": layer_spec(config.model.attention)[1]},  # as build_model chose it
        "global_batch_size": plan.global_batch,
        "global_batch_tokens": plan.tokens_per_step,
        "peak_lr": plan.peak_lr,
        "train_tokens": plan.train_tokens,
        "total_steps": plan.total_steps,
        "compute": plan.compute,
        "world_size": world,
        "data_parallel": plan.data_parallel,
        "memory_estimate": memory.to_json(),  # per rank, bytes (memory.py)
        "started": datetime.now(timezone.utc).isoformat(),
    }, default=str))  # fmt: skip
