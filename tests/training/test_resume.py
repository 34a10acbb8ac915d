"""Resuming a run of the tiny model on CPU with real Megatron-Core: bit for bit the straight run after a
stop (synchronous and asynchronous saves), past a damaged newest checkpoint, only with --resume, never
with data read in another order; starting from another run's weights (checkpoint.init_from)."""

import json
from pathlib import Path

import pytest
import yaml

from crawlmill.training.checkpoint import Checkpointer
from crawlmill.training.trainer import train

from .conftest import final_weights, same_weights, tiny_config, train_records

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


# "missing": a file gone, as a deletion cut short leaves a folder (before, FileNotFoundError ended the resume)
@pytest.mark.parametrize("damaged", ["model", "rank file", "missing rank file", "missing .metadata"])
def test_a_damaged_newest_checkpoint_is_skipped_and_the_resume_still_matches_the_straight_run(tiny_shards, straight, tmp_path, capfd, damaged):
    config = tiny_config(tiny_shards, **STRAIGHT)
    resumed = tmp_path / "resumed"
    assert train(config, resumed, stop_after=15)["step"] == 15
    newest = resumed / "checkpoints/step-00000015"
    if damaged.startswith("missing"):
        (newest / ("rank-00000.pt" if damaged == "missing rank file" else "model/.metadata")).unlink()
    for path in newest.glob("model/__0_*.distcp") if damaged == "model" else [newest / "rank-00000.pt"] if damaged == "rank file" else []:
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
