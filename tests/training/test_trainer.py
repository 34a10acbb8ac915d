"""Training the tiny model on CPU with real Megatron-Core: exact resume (in one process, and after a
SIGKILL), data parallelism on 2 Ray Train workers against 1 worker (one worker killed and restarted
by Ray Train), a run folder never trained into twice, validation loss and bits per byte."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any
from pathlib import Path

import pytest
import torch
import yaml

from crawlmill.pipeline.ray_tasks import RayOptions
from crawlmill.training.checkpoint import LATEST, Checkpointer
from crawlmill.training.launch import launch
from crawlmill.training.perf import megatron_flops_per_token
from crawlmill.training.trainer import train

from .conftest import checkpoint_tensors, tiny_config

pytestmark = pytest.mark.heavy(360)  # seconds on 2 cores: runs first (tests/conftest.py)


def train_records(run_dir: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if r["kind"] == kind]


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the newest checkpoint (model and optimizer moments) by global key."""
    folder = run_dir / "checkpoints" / (run_dir / "checkpoints" / LATEST).read_text().strip()
    return checkpoint_tensors(folder / "model")


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


STRAIGHT = {"max_steps": 20, "eval": {"interval": 10, "iters": 2}, "checkpoint": {"every_steps": 5, "keep": 3}}


@pytest.fixture(scope="module")
def straight(tiny_shards, tmp_path_factory) -> Path:
    """20 steps undisturbed, which the stopped, resumed and damaged runs must match; its saves are
    synchronous (how a checkpoint is written does not change training: the async runs below match it)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    summary = train(tiny_config(tiny_shards, **STRAIGHT), run)
    assert summary["step"] == 20 and summary["valid"]["bpb"] > 0
    return run


@pytest.mark.parametrize("async_save", ["gpu", "always"])  # CPU: synchronous saves, and dist_checkpointing's async save
def test_stopped_and_resumed_run_is_bitwise_the_straight_run(tiny_shards, straight, tmp_path, async_save):
    config = tiny_config(tiny_shards, **{**STRAIGHT, "checkpoint": {**STRAIGHT["checkpoint"], "async_save": async_save}})
    resumed = tmp_path / "resumed"
    assert train(config, resumed, stop_after=10)["step"] == 10
    assert json.loads((resumed / "checkpoints/step-00000010/meta.json").read_text())["consumed_samples"] == 10 * 8
    assert train(config, resumed, resume=True)["step"] == 20
    losses = [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in train_records(straight)]
    assert [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in train_records(resumed)] == losses  # bit for bit
    assert [r["loss"] for r in train_records(resumed, "valid")] == [r["loss"] for r in train_records(straight, "valid")]
    assert same_weights(final_weights(straight), final_weights(resumed))
    assert losses[-1][1] < losses[0][1]


@pytest.mark.parametrize("damaged", ["model", "rank file"])
def test_a_damaged_newest_checkpoint_is_skipped_and_the_resume_still_matches_the_straight_run(tiny_shards, straight, tmp_path, capfd, damaged):
    config = tiny_config(tiny_shards, **STRAIGHT)
    resumed = tmp_path / "resumed"
    assert train(config, resumed, stop_after=15)["step"] == 15
    newest = resumed / "checkpoints/step-00000015"
    for path in newest.glob("model/__0_*.distcp") if damaged == "model" else [newest / "rank-00000.pt"]:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a disk fault, a copy cut short
    capfd.readouterr()
    assert train(config, resumed, resume=True)["step"] == 20
    said = capfd.readouterr().err
    assert "step-00000015" in said and "damaged or incomplete" in said and "resuming from the checkpoint before it" in said, said
    assert train_records(resumed, "resumed") == [{"kind": "resumed", "step": 10, "checkpoint": "step-00000010", "skipped": ["step-00000015"]}]
    key = lambda r: (r["step"], r["loss"], r["grad_norm"], r["lr"])  # noqa: E731
    assert [key(r) for r in train_records(resumed)] == [key(r) for r in train_records(straight)]  # bit for bit
    assert same_weights(final_weights(straight), final_weights(resumed))
    if damaged == "model":  # none readable: said, and nothing trained from scratch over them
        for path in (resumed / "checkpoints").glob("step-*/model/__0_*.distcp"):
            path.write_bytes(path.read_bytes()[:100])
        with pytest.raises(ValueError, match=r"no checkpoint of it could be read \(step-00000020, step-00000015, step-00000010 damaged or incomplete\)"):
            train(config, resumed, resume=True)


KILLED_RUN = {"base": "tiny", "max_steps": 50, "log_interval": 1, "checkpoint": {"every_steps": 10, "keep": 2}, "eval": {"interval": 40, "iters": 1}}


def train_command(config: dict, tmp_path: Path, run_dir: Path, *more: str) -> list[str]:
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return [sys.executable, "-m", "crawlmill.cli", "train", "--config", str(tmp_path / "run.yaml"), "--output", str(run_dir), "--no-progress", *more]


@pytest.fixture(scope="module")
def undisturbed_run(tiny_shards, tmp_path_factory) -> Path:
    """The straight run the killed runs must match, once for both save modes (how a checkpoint is
    written does not change training: test_stopped_and_resumed_run_is_bitwise_the_straight_run)."""
    tmp_path = tmp_path_factory.mktemp("undisturbed")
    config = {**KILLED_RUN, "data": {"shards": [str(tiny_shards)]}}
    subprocess.run(train_command(config, tmp_path, tmp_path / "run"), env={**os.environ, "RAY_ADDRESS": ""}, check=True, capture_output=True, timeout=600)
    return tmp_path / "run"


# SIGKILL (a crash) with asynchronous saves: it may land while the forked writer writes; SIGTERM (a
# preemption's warning) with synchronous ones: the run saves the step it reached and exits 1; SIGINT
# (Ctrl-C, to the whole process group) likewise, with asynchronous saves: their helper processes outlive it.
@pytest.mark.parametrize("how, async_save", [("SIGKILL", "always"), ("SIGTERM", "gpu"), ("SIGINT", "always")])
def test_a_killed_run_resumes_from_its_last_checkpoint_and_matches_the_undisturbed_run(tiny_shards, undisturbed_run, tmp_path, how, async_save):
    config = {**KILLED_RUN, "data": {"shards": [str(tiny_shards)]}, "checkpoint": {**KILLED_RUN["checkpoint"], "async_save": async_save}}
    env = {**os.environ, "RAY_ADDRESS": ""}

    def command(run_dir: Path, *more: str) -> list[str]:
        return train_command(config, tmp_path, run_dir, *more)

    killed = tmp_path / "killed"
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(command(killed), env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    deadline = time.time() + 300
    while not (killed / "checkpoints/step-00000020/meta.json").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, getattr(signal, how))
    status = process.wait(timeout=120)
    steps_before = max(r["step"] for r in train_records(killed))
    assert 20 <= steps_before < 50, "the kill should land mid-run"
    if how != "SIGKILL":  # the step reached is saved; the message says how to go on
        message = " ".join((tmp_path / "stderr.txt").read_text().split())
        assert status == 1 and f"{how} received: stopped after step {steps_before} of 50" in message and "--resume" in message, message[-2000:]
        assert (killed / "checkpoints" / LATEST).read_text().strip() == f"step-{steps_before:08d}"
        assert json.loads((killed / "log.jsonl").read_text().splitlines()[-1]) == {
            "kind": "stopped", "step": steps_before, "signal": how, "checkpoint": f"step-{steps_before:08d}"}  # fmt: skip
    resumed = subprocess.run(command(killed, "--resume"), env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [(r["step"], r["loss"]) for r in train_records(killed)] == [(r["step"], r["loss"]) for r in train_records(undisturbed_run)]
    assert same_weights(final_weights(killed), final_weights(undisturbed_run))
    assert sorted(p.name for p in (killed / "checkpoints").glob("step-*")) == ["step-00000040", "step-00000050"]  # keep 2


def kill_a_train_worker_once(appears: Path, killed: list[int], timeout_s: float = 300) -> None:
    """SIGKILL one Ray Train worker process of this test's own Ray (its processes descend from this
    one) once `appears` exists; run in a thread."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while not appears.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    for proc in psutil.Process().children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()):
                proc.kill()
                killed.append(proc.pid)
                return
        except psutil.Error:
            continue


def test_two_ray_workers_match_one_worker_and_a_killed_worker_is_restarted_from_the_checkpoint(ray_local, tiny_shards, tmp_path, capfd):
    """Global batch 8 = 2 workers x 1 micro batch of 4, or 1 worker x 2 micro batches of 4. One of
    the two workers' processes is SIGKILLed once the step-4 checkpoint is complete: Ray Train starts
    the workers again (max_restarts 1), they continue from the run's last checkpoint, and the whole
    run still matches the one worker's, step for step. Ray Train's placement-group cleaner, which
    asks a dashboard-less local Ray's State API every second, warns nothing (init_local_ray)."""
    settings = {"max_steps": 24, "eval": {"interval": 24, "iters": 1}, "checkpoint": {"every_steps": 4, "keep": 2}}
    one = tiny_config(tiny_shards, **settings)
    train(one, tmp_path / "one")
    two = tiny_config(tiny_shards, **settings, workers=2, max_restarts=1)
    killed: list[int] = []
    killer = threading.Thread(target=kill_a_train_worker_once, args=(tmp_path / "two/checkpoints/step-00000004/meta.json", killed))
    killer.start()
    try:
        summary = launch(two, tmp_path / "two", ray_options=RayOptions())  # Ray Train's workers trained
    finally:
        killer.join()
    # rank 0's summary, of the workers Ray Train restarted (Ray Train v2's return_value)
    assert (summary["step"], summary["total_steps"], summary["loss"]) == (24, 24, train_records(tmp_path / "two")[-1]["loss"])
    run = json.loads((tmp_path / "two/run.json").read_text())
    assert run["world_size"] == 2 and run["data_parallel"] == 2
    printed = capfd.readouterr()
    assert "[train] step 24" in printed.out + printed.err  # the workers' lines reach this process
    assert "Failed to query Ray Train Controller" not in printed.out + printed.err
    resumed = train_records(tmp_path / "two", "resumed")
    assert killed and len(resumed) == 1 and 4 <= resumed[0]["step"] < 24, (killed, resumed)  # the kill landed mid-run
    print(f"worker {killed[0]} killed; the restarted workers resumed from step {resumed[0]['step']}")
    a, b = train_records(tmp_path / "one"), train_records(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 25))  # each step once
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    assert train_records(tmp_path / "two", "valid")[0]["loss"] == pytest.approx(train_records(tmp_path / "one", "valid")[0]["loss"], rel=1e-5)
    wa, wb = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    # float sums in another order: Adam turns the embedding rows' near-zero gradients into full steps (lr 3e-3), 1e-5 apart
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=3e-5) for k in wa)


def test_a_run_folder_with_a_checkpoint_is_continued_only_when_resuming(tiny_shards, tmp_path, monkeypatch):
    """A second `crawlmill train` into a run folder without --resume is refused (it would mix two
    runs' logs and let keep-K delete the first run's newest checkpoint); --resume continues it;
    --overwrite starts over. A folder with a log but no checkpoint yet starts afresh with an empty log."""
    from typer.testing import CliRunner

    from crawlmill.cli import app

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = {"base": "tiny", "max_steps": 5, "log_interval": 1, "data": {"shards": [str(tiny_shards)]}, "eval": {"interval": 5, "iters": 1}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"

    def train_cli(*more: str):
        return CliRunner().invoke(app, ["train", "--config", str(tmp_path / "run.yaml"), "--output", str(run_dir), "--no-progress", *more])

    run_dir.mkdir()
    (run_dir / "log.jsonl").write_text(json.dumps({"kind": "train", "step": 7, "loss": 9.0}) + "\n")  # a run that saved nothing
    first = train_cli("--stop-after", "3")
    assert first.exit_code == 0 and "stopped at step 3 of 5 (--stop-after)" in first.output, first.output
    assert [r["step"] for r in train_records(run_dir)] == [1, 2, 3]
    before = (run_dir / "log.jsonl").read_text(), final_weights(run_dir)
    again = train_cli()
    message = " ".join(again.output.split())
    assert again.exit_code == 2 and f"{run_dir} already holds a training run (its last checkpoint: step-00000003, step 3)" in message, message
    assert "--resume" in message and "--overwrite" in message
    bare = CliRunner().invoke(app, ["train", "--config", "tiny", "--output", str(tmp_path / "bare"), "--no-progress"])  # no shards: no folder made
    assert bare.exit_code == 2 and "give --data DIR" in bare.output and not (tmp_path / "bare").exists(), bare.output
    nothing = train_cli("--resume", "--stop-after", "0")
    assert nothing.exit_code == 2 and "--stop-after 0: must be at least 1" in nothing.output, nothing.output
    assert (run_dir / "log.jsonl").read_text() == before[0] and same_weights(final_weights(run_dir), before[1])  # untouched
    over = train_cli("--overwrite", "--stop-after", "3")
    assert over.exit_code == 0, over.output
    assert [r["step"] for r in train_records(run_dir)] == [1, 2, 3] and train_records(run_dir, "resumed") == []
    resumed = train_cli("--resume")
    assert resumed.exit_code == 0, resumed.output
    assert [r["step"] for r in train_records(run_dir)] == [1, 2, 3, 4, 5]
    assert train_records(run_dir, "resumed") == [{"kind": "resumed", "step": 3, "checkpoint": "step-00000003"}]
    log = (run_dir / "log.jsonl").read_text()
    with monkeypatch.context() as patch:  # nothing left: checked (tested above for damage and layout), not loaded
        patch.setattr(Checkpointer, "load", lambda *args: pytest.fail("a finished run's checkpoint was loaded"))
        finished = train_cli("--resume")  # said so, the last figures shown (strict JSON), the log as it was
    assert finished.exit_code == 0 and "is at step 5 of 5; nothing trained" in " ".join(finished.output.split()), finished.output
    shown = json.loads(finished.output[finished.output.index("{") : finished.output.rindex("}") + 1])
    assert shown["already_finished"] and shown["loss"] == train_records(run_dir)[-1]["loss"] and "loss" in shown["valid"]
    assert (run_dir / "log.jsonl").read_text() == log
    (run_dir / "log.jsonl").write_text("".join(line + "\n" for line in log.splitlines() if '"end"' not in line))  # died before its end record
    assert train_cli("--resume").exit_code == 0 and [r["kind"] for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())][-1] == "end"
    (run_dir / "log.jsonl").write_text(log.replace(log.splitlines()[-1], '{"kind": "en'))  # killed while writing it: a torn line
    torn = train_cli("--resume")
    assert torn.exit_code == 0 and "log.jsonl could not be read" in torn.output and "not JSON dropped" in torn.output, torn.output
    again = (run_dir / "log.jsonl").read_text().splitlines()  # the torn line gone; loaded (resumed) and ended again
    assert again[:-2] == log.splitlines()[:-1] and [(json.loads(r)["kind"], json.loads(r)["step"]) for r in again[-2:]] == [("resumed", 5), ("end", 5)]


def test_a_resume_that_would_read_the_data_in_another_order_is_refused(tiny_shards, tmp_path):
    """The data position is the step: resuming with another batch, run length, seed or shard
    content would read other samples there (repeating some, skipping others). Each is refused,
    naming what changed; the same shards moved elsewhere resume; data.check_on_resume: false accepts."""
    import shutil

    from crawlmill.training.data import DataOrderChanged

    run = tmp_path / "run"
    assert train(tiny_config(tiny_shards, max_steps=6), run, stop_after=3)["step"] == 3
    moved = shutil.copytree(tiny_shards, tmp_path / "moved")
    repacked = shutil.copytree(tiny_shards, tmp_path / "repacked")
    manifest = json.loads((repacked / "manifest.json").read_text())
    manifest["shards"][0]["files"]["bin"]["sha256"] = "0" * 64  # other tokens in the same files' places
    (repacked / "manifest.json").write_text(json.dumps(manifest))
    refused = [
        (tiny_config(tiny_shards, max_steps=6, global_batch_size=16), "global_batch 8 → 16; train_samples 48 → 96"),
        (tiny_config(tiny_shards, max_steps=12), "train_samples 48 → 96: the run has 6 steps of 8 sequences: resume it with --max-steps 6"),
        (tiny_config(tiny_shards, max_steps=6, data={"shards": [str(tiny_shards)], "seed": 5}), "seed 1234 → 5"),
        (tiny_config(repacked, max_steps=6), "the content of data.shards"),
    ]
    for config, named in refused:
        with pytest.raises(DataOrderChanged, match=named):
            train(config, run, resume=True)
    assert train(tiny_config(moved, max_steps=6), run, resume=True, stop_after=1)["step"] == 4
    anyway = tiny_config(tiny_shards, max_steps=12, data={"shards": [str(tiny_shards)], "check_on_resume": False})
    assert train(anyway, run, resume=True)["step"] == 12


def test_a_new_run_starts_from_another_runs_weights_with_init_from(tiny_shards, straight, tmp_path):
    """checkpoint.init_from (`--init-from`): the weights of a run folder's newest checkpoint, or of
    one checkpoint folder; optimizer, schedule and data start afresh. Its first loss is the trained
    model's, far below a fresh model's; its own checkpoint, not the source, is what it resumes from;
    a model of another shape is a clear error."""
    first = straight  # 20 steps, its checkpoints 10, 15 and 20 kept
    trained = train_records(first)
    assert trained[-1]["loss"] < trained[0]["loss"] - 0.3

    warm = tiny_config(tiny_shards, max_steps=4, checkpoint={"init_from": str(first)})
    train(warm, tmp_path / "warm", stop_after=2)
    records = [json.loads(line) for line in (tmp_path / "warm/log.jsonl").read_text().splitlines()]
    assert records[0] == {"kind": "initialized", "step": 0, "checkpoint": str(first / "checkpoints/step-00000020"), "from_step": 20}
    warm_losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert abs(warm_losses[0] - trained[-1]["loss"]) < 0.15 and warm_losses[0] < trained[0]["loss"] - 0.3
    train(warm, tmp_path / "warm", resume=True)  # its own checkpoint: no second initialization
    kinds = [r["kind"] for r in map(json.loads, (tmp_path / "warm/log.jsonl").read_text().splitlines())]
    assert kinds.count("initialized") == 1 and kinds.count("resumed") == 1 and [r["step"] for r in train_records(tmp_path / "warm")] == [1, 2, 3, 4]

    middle = tiny_config(tiny_shards, max_steps=1, checkpoint={"init_from": str(first / "checkpoints/step-15")})  # the step as people write it
    train(middle, tmp_path / "middle")
    assert train_records(tmp_path / "middle", "initialized")[0]["from_step"] == 15

    wider = tiny_config(tiny_shards, max_steps=1, model={"hidden_size": 128, "num_attention_heads": 2, "ffn_hidden_size": 256}, checkpoint={"init_from": str(first)})
    with pytest.raises(ValueError, match=r"its weights do not fit this run.s model \(Global shape mismatch .* for key "):
        train(wider, tmp_path / "wider")
    with pytest.raises(FileNotFoundError, match="no complete checkpoint there"):
        train(tiny_config(tiny_shards, max_steps=1, checkpoint={"init_from": str(tmp_path / "nothing")}), tmp_path / "none")


def test_a_checkpoint_of_the_gpu_backend_is_refused_by_a_cpu_resume_and_its_weights_start_a_run(tiny_shards, straight, tmp_path):
    """meta.json records how the optimizer's states were saved: the GPU backend's (Megatron's
    distributed optimizer) cannot load into the CPU backend's torch AdamW, so such a checkpoint is
    refused before any load, naming checkpoint.init_from, which takes its weights alone."""
    import shutil

    run = Path(shutil.copytree(straight, tmp_path / "gpu-run"))
    for path in (run / "checkpoints").glob("step-*/meta.json"):
        meta = json.loads(path.read_text())
        assert meta["optimizer_sharding"] == "torch"
        path.write_text(json.dumps({**meta, "optimizer_sharding": "fully_reshardable"}))  # as the GPU backend records it
    with pytest.raises(ValueError, match=r"step-00000020 holds the GPU backend's \(Megatron's distributed optimizer, fully_reshardable\) optimizer "
                       r"states, which this run's CPU backend's \(torch AdamW\) optimizer cannot load: .*checkpoint.init_from"):  # fmt: skip
        train(tiny_config(tiny_shards, **STRAIGHT), run, resume=True)
    train(tiny_config(tiny_shards, max_steps=1, checkpoint={"init_from": str(run)}), tmp_path / "warm")
    assert train_records(tmp_path / "warm", "initialized")[0]["from_step"] == 20


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


def launch_nodes(tmp_path: Path, name: str, config: dict, *more: str, ranks: int = 2, port: int = 29533, nodes: int = 1, node_env: list[dict] | None = None,
                 node_cwd: list[Path] | None = None, output: str | None = None, srun: bool = False) -> list[tuple[int, str]]:  # fmt: skip
    """`torchrun --nproc-per-node RANKS -m crawlmill.cli train --config <config> ...` (ranks 1: plain
    python), the run folder tmp_path/name; `nodes` > 1: that many torchrun agents, `--nnodes NODES
    --node-rank I` each with RANKS / NODES ranks, as on machines (every node's first rank has
    LOCAL_RANK 0), `node_env[i]` added to node i's environment, `node_cwd[i]` its working folder;
    `output`: the run folder instead (a URL, or a relative path); `srun`: each rank a plain python
    process given RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT but no LOCAL_RANK, as `srun` without
    torchrun starts them (one rank per node). Returns each node's exit code and stderr. A hang ends
    every rank and fails the test."""
    env = {key: value for key, value in os.environ.items() if key != "LOCAL_RANK"} | {"RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    if srun:
        assert ranks == nodes, "srun here: one rank per node"
        node_env = [{**(node_env[node] if node_env else {}), "RANK": str(node), "WORLD_SIZE": str(nodes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
                    for node in range(nodes)]  # fmt: skip
    per_node = ["--nproc-per-node", str(ranks // nodes), "--master-addr", "127.0.0.1", "--master-port", str(port)]
    launchers = [[sys.executable, "-m", "torch.distributed.run", *per_node, *(["--nnodes", str(nodes), "--node-rank", str(node)] if nodes > 1 else [])]
                 for node in range(nodes)] if ranks > 1 and not srun else [[sys.executable]] * nodes  # fmt: skip
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(config))
    args = ["-m", "crawlmill.cli", "train", "--config", str(tmp_path / f"{name}.yaml"), "--no-progress", "--output", output or str(tmp_path / name), *more]
    processes = [subprocess.Popen([*launcher, *args], env={**env, **(node_env[node] if node_env else {})}, cwd=node_cwd[node] if node_cwd else None,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
                 for node, launcher in enumerate(launchers)]  # fmt: skip
    results = []
    for process in processes:
        try:
            results.append(process.communicate(timeout=300)[1])
        except subprocess.TimeoutExpired:  # ranks that wait on each other: end them all, not only torchrun
            for each in processes:
                os.killpg(each.pid, signal.SIGKILL)
            pytest.fail(f"{name}: the ranks did not finish in 300 s (a hang)\n{process.communicate()[1][-3000:]}")
    return [(process.returncode, stderr) for process, stderr in zip(processes, results, strict=True)]


def cli_errors(stderr: str) -> str:
    """The CLI's error lines (before torchrun's tracebacks)."""
    return "\n".join(line for line in stderr.splitlines() if line.startswith("error:"))


def torchrun(tmp_path: Path, name: str, config: dict, *more: str, **options: Any) -> Path:
    """launch_nodes(), every node succeeding; the run folder tmp_path/name."""
    failed = [f"node {node}: {stderr[-3000:]}\n{cli_errors(stderr)}" for node, (code, stderr) in enumerate(launch_nodes(tmp_path, name, config, *more, **options)) if code]
    assert not failed, "\n".join(failed)
    return tmp_path / name


def torchrun_config(shards: Path) -> dict:
    return {"base": "tiny", "max_steps": 6, "log_interval": 1, "data": {"shards": [str(shards)]}, "eval": {"interval": 6, "iters": 1},
            "optimizer": {"grad_clip": 0.2}, "checkpoint": {"every_steps": 2}}  # fmt: skip


@pytest.fixture(scope="module")
def one_process(tiny_shards, tmp_path_factory) -> Path:
    """The run the model-parallel runs below must match: torchrun_config in one plain process."""
    return torchrun(tmp_path_factory.mktemp("one-process"), "one", torchrun_config(tiny_shards), ranks=1)


def test_torchrun_ranks_train_tensor_parallel_as_one_process(tiny_shards, one_process, tmp_path):
    """`torchrun --nproc-per-node 2 -m crawlmill.cli train ...`: two gloo ranks, tensor parallel,
    stopped after 4 steps and resumed from TP-sharded checkpoints, give the losses, gradient norms
    and final weights and Adam moments of one process (data parallel ranks: the Ray Train test). Clipping is on at every
    step (norms ~0.4 > 0.2): a norm over one TP rank's slices (torch's clip_grad_norm_) is 12% off.
    The resume finds its newest checkpoint damaged in one rank's RNG file only: both ranks go back
    to the same checkpoint before it (one all-reduce), or they would load different steps and
    deadlock or differ (one rank's model file: test_urls.py's two machines)."""
    config = torchrun_config(tiny_shards)

    def run(name: str, parallel: dict, *more: str, ranks: int = 2) -> Path:
        return torchrun(tmp_path, name, {**config, "parallel": parallel}, *more, ranks=ranks)

    def cut(path: Path) -> None:  # a disk fault on one rank's file only
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    one = one_process
    tensor = run("tensor", {"tensor": 2}, "--stop-after", "4")
    assert train_records(tensor)[-1]["step"] == 4
    cut(tensor / "checkpoints/step-00000004/rank-00001.pt")
    run("tensor", {"tensor": 2}, "--resume")  # from step 2
    assert train_records(tensor, "resumed") == [{"kind": "resumed", "step": 2, "checkpoint": "step-00000002", "skipped": ["step-00000004"]}]
    run_info = json.loads((tensor / "run.json").read_text())
    assert (run_info["world_size"], run_info["data_parallel"]) == (2, 1)
    reference, records = train_records(one), train_records(tensor)
    assert [r["step"] for r in records] == [r["step"] for r in reference] == list(range(1, 7))
    for x, y in zip(reference, records):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    assert train_records(tensor, "valid")[0]["bpb"] == pytest.approx(train_records(one, "valid")[0]["bpb"], rel=1e-5)
    weights, sharded = final_weights(one), final_weights(tensor)  # global tensors: the TP slices joined
    assert weights.keys() == sharded.keys()
    assert all(torch.allclose(weights[k], sharded[k], rtol=1e-3, atol=1e-7) for k in weights), [k for k in weights if not torch.allclose(weights[k], sharded[k], rtol=1e-3, atol=1e-7)]
    # `crawlmill export` joins the TP-sharded checkpoint into the Llama weights of the one-process run
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from crawlmill.cli import app

    for name, run_dir in (("one", one), ("tensor", tensor)):
        done = CliRunner().invoke(app, ["export", str(run_dir), "--output", str(tmp_path / f"hf-{name}"), "--dtype", "fp32"])
        assert done.exit_code == 0, done.output
    llama_one, llama_tensor = (load_file(tmp_path / f"hf-{name}/model.safetensors") for name in ("one", "tensor"))
    assert llama_one.keys() == llama_tensor.keys() and len(llama_one) == 3 + 2 * 9
    assert all(torch.allclose(llama_one[k], llama_tensor[k], rtol=1e-3, atol=1e-7) for k in llama_one)


def test_torchrun_ranks_train_context_parallel_as_one_process_and_resume_on_other_layouts(tiny_shards, one_process, tmp_path):
    """Two gloo ranks, each holding half of every sequence (context parallelism without Transformer
    Engine: training/context_parallel.py), give the losses, gradient norms (clipping on at every
    step), bits per byte and final weights and Adam moments of one process holding whole sequences,
    in a run that changes layout at each resume (layout.py): one process to step 2, context 2 on two
    ranks to step 4, then tensor 2 on two ranks to the end (a resume in the same layout: the
    tensor-parallel test above), launched as two nodes of one rank each (torchrun --nnodes 2)."""
    config, one = torchrun_config(tiny_shards), one_process
    layouts = [({}, 1, 1, "2"), ({"context": 2}, 2, 1, "2"), ({"tensor": 2}, 2, 2, None)]  # the last on two nodes
    for index, (parallel, ranks, nodes, stop_after) in enumerate(layouts):
        more = [*(["--resume"] if index else []), *(["--stop-after", stop_after] if stop_after else [])]
        run = torchrun(tmp_path, "run", {**config, "parallel": parallel}, *more, ranks=ranks, port=29543, nodes=nodes)
    assert json.loads((run / "checkpoints/step-00000006/meta.json").read_text())["world_size"] == 2  # the two nodes' ranks
    meta = json.loads((run / "checkpoints/step-00000004/meta.json").read_text())
    assert (meta["world_size"], meta["parallel"], meta["optimizer_sharding"]) == (2, {"tensor": 1, "pipeline": 1, "context": 2}, "torch")
    assert [r["step"] for r in train_records(run, "resumed")] == [2, 4]
    reference, records = train_records(one), train_records(run)
    assert [r["step"] for r in records] == [r["step"] for r in reference] == list(range(1, 7))
    for x, y in zip(reference, records, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["grad_norm"] == pytest.approx(x["grad_norm"], rel=1e-4)
    assert train_records(run, "valid")[0]["bpb"] == pytest.approx(train_records(one, "valid")[0]["bpb"], rel=1e-5)
    weights, resumed = final_weights(one), final_weights(run)
    assert weights.keys() == resumed.keys()
    assert all(torch.allclose(weights[k], resumed[k], rtol=1e-3, atol=1e-7) for k in weights), [k for k in weights if not torch.allclose(weights[k], resumed[k], rtol=1e-3, atol=1e-7)]


def test_a_run_folder_that_the_machines_do_not_share_is_refused_at_start(tiny_shards, tmp_path):
    """Two nodes whose `--output run` is a folder on each one's own disk (here: each node's own
    working folder): every rank stops at start naming it, before any step, instead of training for
    hours into checkpoints that lack the other machine's shards (found only at the first resume)."""
    machines = [tmp_path / f"machine-{n}" for n in range(2)]
    for machine in machines:
        machine.mkdir()
    config = {**torchrun_config(tiny_shards), "parallel": {"tensor": 2}}
    for code, stderr in launch_nodes(tmp_path, "unshared", config, nodes=2, node_cwd=machines, output="run", port=29563):
        assert code and "1 of 2 ranks do not see this run folder's files" in cli_errors(stderr), stderr[-3000:]
    assert not [p for machine in machines for p in (machine / "run").iterdir()]  # nothing written, the probe removed


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
