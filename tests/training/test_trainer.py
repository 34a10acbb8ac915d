"""The training loop of the tiny model on CPU with real Megatron-Core: validation loss and bits per
byte, the steps' own rate, memory and the profile window, the planner's defaults, blended shard
folders, clear errors for unusable data, and a diverged step that stops the run."""

import json
import re
import time

import pytest
import torch
import yaml

from crawlmill.training.checkpoint import LATEST, Checkpointer
from crawlmill.training.perf import megatron_flops_per_token
from crawlmill.training.trainer import train

from .conftest import final_weights, tiny_config, train_records


def test_validation_reports_loss_and_exact_bits_per_byte(tiny_shards, tmp_path):
    import math

    config = tiny_config(tiny_shards, max_steps=40, eval={"interval": 20, "iters": 2}, profile={"start_step": 5, "steps": 2})
    train(config, tmp_path / "run")
    valid = train_records(tmp_path / "run", "valid")
    assert [r["step"] for r in valid] == [20, 40] and valid[1]["loss"] < valid[0]["loss"]
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    bytes_per_token = manifest["bytes"] / (manifest["tokens"] - manifest["documents"])  # EOD carries no text
    for record in valid:  # bpb = nats / ln 2 / bytes: near loss / ln 2 / (bytes per token) of the corpus
        assert record["bpb"] == pytest.approx(record["loss"] / math.log(2) / bytes_per_token, rel=0.25)
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["model"]["M"] == config.model.non_embedding_flops_per_token() and run["compute"] == run["model"]["M"] * run["train_tokens"]
    assert run["model"]["megatron_flops_per_token"] == megatron_flops_per_token(config.model, run["model"]["vocab_size"])
    # the profile window (training/perf.py): steps 5 and 6, the model's forward and the optimizer's step in it
    table = (tmp_path / "run/profile/rank0-step5.txt").read_text()
    assert "aten::mm" in table and "Optimizer.step#AdamW.step" in table
    assert sorted(p.name for p in (tmp_path / "run/profile").iterdir()) == ["rank0-step5.json.gz", "rank0-step5.txt"]


def test_tokens_per_s_leaves_out_validation_and_checkpoint_time(tiny_shards, tmp_path, monkeypatch, capsys):
    """Saves and validations made to take 3 s each: the train records after them still give the
    steps' own rate (as Megatron-LM's interval timer; MFU on GPU comes from it), not one that counts
    the pause (the demo's log showed a 7x drop in the interval after each save)."""
    from crawlmill.training.backends import TorchBackend

    pause, real_save, real_evaluate, paused = 3.0, Checkpointer.save, TorchBackend.evaluate, []

    def slow_save(self, step, *args):
        time.sleep(pause)
        paused.append(f"save {step}")
        return real_save(self, step, *args)

    def slow_evaluate(self, *args):
        time.sleep(pause)
        paused.append("valid")
        return real_evaluate(self, *args)

    monkeypatch.setattr(Checkpointer, "save", slow_save)
    monkeypatch.setattr(TorchBackend, "evaluate", slow_evaluate)
    config = tiny_config(tiny_shards, max_steps=10, log_interval=5, eval={"interval": 5, "iters": 1}, checkpoint={"every_steps": 5})
    train(config, tmp_path / "run")
    first, second = train_records(tmp_path / "run")
    assert (first["step"], second["step"]) == (5, 10) and paused[:2] == ["valid", "save 5"]  # both pauses after step 5
    seconds = (second["tokens"] - first["tokens"]) / second["tokens_per_s"]  # steps 6-10: 5 tiny steps, far under one pause
    assert seconds < pause, seconds
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["model"]["layer_spec"] == "local+sdpa"  # what build_model chose here (CPU: no Transformer Engine)
    # memory: the estimate for this run (training/memory.py, tested there) and the peak used, which on CPU is
    # the whole process's resident size: more than the model's states, never less from one record to the next
    estimate = run["memory_estimate"]
    assert estimate["states"] == 16 * estimate["parameters"] and estimate["activations"] > 0 and estimate["micro_batches_in_flight"] == 1
    assert estimate["states"] / 2**30 < first["memory_gib"] <= second["memory_gib"] and "memory_reserved_gib" not in first  # a GPU allocator's
    # stdout says how far the run is and when it should end (for people: not in the log)
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[train]")]
    assert re.search(r"^\[train\] step 5 \|.* \| 5/10 steps, eta 0:00:\d\d$", shown[0]) and shown[1].endswith("10/10 steps, eta 0:00:00")
    assert "eta" not in first and "note" not in first


def test_unusable_data_is_a_clear_error(tiny_shards, tmp_path):
    with pytest.raises(ValueError, match="none for its test share"):
        train(tiny_config(tiny_shards, max_steps=2, data={"shards": [str(tiny_shards)], "split": "969,30,1"}), tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        train(tiny_config(tmp_path, max_steps=2), tmp_path / "b")


def test_batch_and_peak_lr_default_to_the_planners_equation_1():
    from crawlmill.training.config import load_train_config
    from crawlmill.training.planner import optimum
    from crawlmill.training.run_plan import plan_run

    config = load_train_config("1b")  # no lr, no batch: Equation 1 for C = M x 2e10 tokens
    plan = plan_run(config, data_parallel=8)
    best = optimum(config.model.non_embedding_flops_per_token() * 2e10)
    assert plan.peak_lr == best.lr_opt and plan.global_batch % (8 * config.micro_batch_size) == 0
    assert plan.global_batch * 4096 == pytest.approx(best.batch_tokens_opt, rel=0.1)
    assert plan.total_steps == -(-int(2e10) // (plan.global_batch * 4096))
    seven = plan_run(load_train_config("deepseek-7b"), data_parallel=256)  # its own lr and batch stay
    assert (seven.peak_lr, seven.global_batch) == (4.2e-4, 2304)
    with pytest.raises(ValueError, match="not a multiple of micro_batch_size"):
        plan_run(load_train_config("tiny"), data_parallel=3)


def test_max_steps_sets_the_schedules_length_and_the_compute_recorded():
    """A sweep's config (train_tokens, lr and batch given) cut short with --max-steps: its schedule
    and the compute run.json records (what `plan fit` reads) are those of the steps trained."""
    import dataclasses

    from crawlmill.training.config import load_train_config
    from crawlmill.training.run_plan import plan_run
    from crawlmill.training.schedule import Schedule

    base = dataclasses.replace(load_train_config("tiny"), max_steps=None, train_tokens=299 * 32 * 128.0, global_batch_size=32)
    base = dataclasses.replace(base, model=dataclasses.replace(base.model, seq_length=128))
    full = plan_run(base, data_parallel=1)
    assert (full.total_steps, full.train_tokens, full.note) == (299, 299 * 32 * 128, None)
    short = plan_run(dataclasses.replace(base, max_steps=20), data_parallel=1)
    assert (short.total_steps, short.train_tokens) == (20, 20 * 32 * 128)
    assert short.compute == short.model_scale * 20 * 32 * 128 and short.peak_lr == full.peak_lr
    assert "max_steps 20" in short.note and "not the config's train_tokens" in short.note
    schedule = Schedule(dataclasses.replace(base.schedule, warmup_steps=2), short.peak_lr, short.train_tokens, short.tokens_per_step)
    factors = [schedule.lr_at(step) / short.peak_lr for step in range(20)]
    assert factors[2:16] == [1.0] * 14 and factors[16:18] == [0.316] * 2 and factors[18:] == [0.1] * 2  # at 80% and 90% of 20 steps
    assert plan_run(dataclasses.replace(base, max_steps=299), data_parallel=1).note is None  # the same length: nothing to say


def test_shard_folders_blend_by_their_weights(tiny_shards):
    from crawlmill.training.data import ShardFolder, blend

    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    folders = [ShardFolder(tiny_shards, manifest), ShardFolder(tiny_shards, manifest)]
    prefixes, shares = blend(folders, [3.0, 1.0])
    per_folder = len(manifest["shards"])
    assert len(prefixes) == 2 * per_folder and sum(shares) == pytest.approx(1.0)
    assert sum(shares[:per_folder]) == pytest.approx(0.75) and sum(shares[per_folder:]) == pytest.approx(0.25)
    inside = [s["tokens"] / manifest["tokens"] for s in manifest["shards"]]  # a folder's own blend: by tokens
    assert shares[:per_folder] == pytest.approx([0.75 * x for x in inside])
    assert blend(folders, [1.0, 0.0])[1] == pytest.approx(inside)


def test_a_diverged_step_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_shards, tmp_path, monkeypatch):
    """A NaN weight at step 7 (a fault injected into the real model): the CLI exits 1 naming the step,
    the step-5 checkpoint (saved asynchronously, still pending) completes and holds finite tensors,
    nothing later is saved, and log.jsonl stays strict JSON with a `diverged` record."""
    from typer.testing import CliRunner

    from crawlmill.cli import app
    from crawlmill.training.backends import TorchBackend

    real_step, calls = TorchBackend.step, []

    def poisoned_step(self, micro_batches, lr):
        calls.append(lr)
        if len(calls) == 7:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return real_step(self, micro_batches, lr)

    monkeypatch.setattr(TorchBackend, "step", poisoned_step)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = {"base": "tiny", "max_steps": 12, "log_interval": 1, "data": {"shards": [str(tiny_shards)]},
              "eval": {"interval": 12, "iters": 1}, "checkpoint": {"every_steps": 5, "async_save": "always"}}  # fmt: skip
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "run.yaml"), "--output", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "step 7: loss nan, gradient norm nan" in message and "the last checkpoint, step-00000005, is intact" in message
    assert len(calls) == 7  # the run stopped at once
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [LATEST, "step-00000005"]
    assert all(torch.isfinite(t).all() for t in final_weights(run).values() if t.is_floating_point())
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in log.jsonl")) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 7))
    assert records[-1] == {"kind": "diverged", "step": 7, "loss": "nan", "grad_norm": "nan", "checkpoint": "step-00000005"}
