"""`crawlmill eval`: a run's checkpoint on shard folders. Every token of every document is predicted
exactly once, the bytes counted are the bytes pack recorded (so bits per byte are exact), the loss
is the model's own cross-entropy, a trained checkpoint beats an earlier one, and bad input is a
clear error."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.training.compat import causal_mask, device_scope
from crawlmill.training.evaluate import evaluate_run, windows
from crawlmill.training.run_model import load_run_model, one_process_model_parallel, run_model_config
from crawlmill.training.trainer import train

from .conftest import tiny_config


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory):
    run = tmp_path_factory.mktemp("eval") / "run"
    train(tiny_config(tiny_shards, max_steps=30, checkpoint={"every_steps": 10, "keep": 3}), run)
    return run


def test_windows_predict_every_token_once():
    docs = [np.array([5, 6, 7, 0]), np.array([8, 0]), np.array([9, 10, 11, 12, 0])]
    got = list(windows(iter(docs), eod=0, length=3))
    assert [w.tolist() for w in got] == [[0, 5, 6, 7], [7, 0, 8, 0], [0, 9, 10, 11], [11, 12, 0]]
    labels = np.concatenate([w[1:] for w in got])
    assert labels.tolist() == np.concatenate(docs).tolist()  # each token a label once, in order
    assert [w.tolist() for w in windows(iter([np.array([0])]), eod=0, length=3)] == [[0, 0]]
    assert [w.tolist() for w in windows(iter([]), eod=0, length=3)] == []


def test_every_token_once_with_packs_bytes_and_a_trained_checkpoint_beats_an_earlier_one(trained, tiny_shards):
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    record = evaluate_run(str(trained), [str(tiny_shards)], micro_batch=3)
    (result,) = record["results"]
    assert record["step"] == 30 and result["complete"] and result["tokenizer_checked"]
    assert result["tokens"] == manifest["tokens"] and result["documents"] == manifest["documents"]
    assert result["bytes"] == result["bytes_packed"] == manifest["bytes"]  # bits per byte exact
    assert result["bpb"] == pytest.approx(result["loss"] * result["tokens"] / math.log(2) / result["bytes"], rel=1e-12)
    again = evaluate_run(str(trained), [str(tiny_shards)], micro_batch=5)["results"][0]  # other batching, same figures
    exact = ("data", "documents", "tokens", "bytes", "bytes_packed", "complete")
    assert [again[k] for k in exact] == [result[k] for k in exact] and again["loss"] == pytest.approx(result["loss"], rel=1e-6)
    earlier = evaluate_run(str(trained), [str(tiny_shards)], checkpoint="step-00000010")
    assert earlier["step"] == 10 and earlier["results"][0]["loss"] > result["loss"] + 0.05



def test_a_manifest_without_per_shard_bytes_is_evaluated_without_them(trained, tiny_shards, tmp_path):
    """Manifests of shards packed before pack counted bytes (and adopted ones of a non-byte-level
    tokenizer) crashed eval with KeyError: 'bytes'."""
    older = tmp_path / "older"
    shutil.copytree(tiny_shards, older)
    manifest = json.loads((older / "manifest.json").read_text())
    for entry in manifest["shards"]:
        del entry["bytes"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    (result,) = evaluate_run(str(trained), [str(older)], micro_batch=3)["results"]
    assert result["complete"] and result["bpb"] is not None and "bytes_packed" not in result


def test_the_loss_is_the_models_cross_entropy_on_the_stream(trained, tiny_shards):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    model_config, _, info = run_model_config(str(trained))
    seq = model_config.seq_length
    sample = evaluate_run(str(trained), [str(tiny_shards)], micro_batch=1, max_tokens=2 * seq)["results"][0]
    assert not sample["complete"] and sample["tokens"] == 2 * seq and "bytes_packed" not in sample

    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    eod = manifest["tokenizer"]["eod_id"]
    datasets = [IndexedDataset(str(tiny_shards / p)) for p in manifest["blend"]["prefixes"]]
    stream = np.concatenate([[eod], *(np.asarray(d[i]) for d in datasets for i in range(len(d)))]).astype(np.int64)
    with one_process_model_parallel():
        model, _, _ = load_run_model(str(trained), None, info)
        model.eval()
        total = 0.0
        for start in (0, seq):  # two windows sharing their boundary token
            ids = torch.as_tensor(stream[start : start + seq + 1]).unsqueeze(0)
            with torch.no_grad(), device_scope():
                logits = model(ids[:, :-1], torch.arange(seq).unsqueeze(0), causal_mask(seq, torch.device("cpu")))
            total += float(F.cross_entropy(logits[0].double(), ids[0, 1:], reduction="sum"))
    assert sample["loss"] == pytest.approx(total / (2 * seq), rel=1e-5)


def test_bad_input_is_a_clear_error(trained, tiny_shards, tmp_path):
    def crawlmill(*args):
        return CliRunner().invoke(app, ["eval", *map(str, args)])

    done = crawlmill(trained, "--data", tiny_shards, "--json", tmp_path / "new/folder/eval.json", "--no-progress")  # its folder made
    assert done.exit_code == 0, done.output
    assert "bits per byte" in done.output and json.loads((tmp_path / "new/folder/eval.json").read_text())["results"][0]["complete"]
    into_folder = crawlmill(trained, "--data", tiny_shards, "--json", tmp_path, "--no-progress")  # refused before evaluating
    assert into_folder.exit_code == 2 and "is a folder: give a file name" in into_folder.output and "bits per byte" not in into_folder.output
    (tmp_path / "a-file").write_text("")
    unwritable = crawlmill(trained, "--data", tiny_shards, "--json", tmp_path / "a-file/eval.json", "--no-progress")
    assert unwritable.exit_code == 2 and "bits per byte" in unwritable.output and "a-file" in unwritable.output, unwritable.output  # figures first

    output = tmp_path / "pipeline-output"  # a `crawlmill run` output folder given for its train stage's run
    (output / "train").mkdir(parents=True)
    shutil.copy(trained / "run.json", output / "train/run.json")
    wrong_folder = crawlmill(output, "--data", tiny_shards)
    assert wrong_folder.exit_code == 2 and f"the run of this output's train stage is {output}/train" in " ".join(wrong_folder.output.split())

    other = tmp_path / "other"
    shutil.copytree(tiny_shards, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["tokenizer"]["sha256"] = "0" * 64
    (other / "manifest.json").write_text(json.dumps(manifest))
    refused = crawlmill(trained, "--data", other)
    assert refused.exit_code == 2 and "packed with another tokenizer" in refused.output, refused.output
    refused = crawlmill(trained, "--data", tiny_shards, "--data", other, "--no-progress")  # before the first folder's evaluation, not after it
    assert refused.exit_code == 2 and "packed with another tokenizer" in refused.output and "bits per byte" not in refused.output, refused.output
    cut_shard = tmp_path / "cut-shard"
    shutil.copytree(tiny_shards, cut_shard)
    prefix = json.loads((cut_shard / "manifest.json").read_text())["blend"]["prefixes"][0]
    (cut_shard / f"{prefix}.bin").write_bytes((cut_shard / f"{prefix}.bin").read_bytes()[:-2])
    short = crawlmill(trained, "--data", cut_shard)
    assert short.exit_code == 2 and f"{prefix}.bin, which has" in short.output.replace("\n", ""), short.output
    moved = tmp_path / "moved"  # the tokenizer is no longer where pack found it: no bytes, said why; --tokenizer gives them back
    shutil.copytree(tiny_shards, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    packed_with = manifest["tokenizer"]["path"]
    manifest["tokenizer"]["path"] = str(tmp_path / "gone")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    unmeasured = crawlmill(trained, "--data", moved, "--max-tokens", "64")
    assert unmeasured.exit_code == 0 and "bits per byte not reported (" in unmeasured.output and "gone/tokenizer.json not found" in unmeasured.output.replace("\n", "")
    assert "if it moved: --tokenizer DIR" in " ".join(unmeasured.output.split())
    measured = crawlmill(trained, "--data", moved, "--max-tokens", "64", "--tokenizer", packed_with)
    assert measured.exit_code == 0 and "not reported" not in measured.output, measured.output
    assert crawlmill(trained, "--data", moved, "--tokenizer", other).exit_code == 2  # no tokenizer.json there
    changed = tmp_path / "changed-tokenizer"  # another tokenizer.json where the manifest points: no bytes rather than wrong ones
    shutil.copytree(packed_with, changed)
    (changed / "tokenizer.json").write_text((changed / "tokenizer.json").read_text() + "\n")
    manifest["tokenizer"]["path"] = str(changed)
    (moved / "manifest.json").write_text(json.dumps(manifest))
    swapped = crawlmill(trained, "--data", moved, "--max-tokens", "64")
    assert swapped.exit_code == 0 and "not the tokenizer.json the shards were packed with" in " ".join(swapped.output.split()), swapped.output
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = crawlmill(trained, "--data", empty)
    assert missing.exit_code == 2 and "has no manifest.json" in missing.output, missing.output
    gone = crawlmill(trained, "--data", tmp_path / "gone")
    assert gone.exit_code == 2 and "gone: no such folder" in gone.output, gone.output
    assert crawlmill(trained, "--data", tiny_shards, "--micro-batch", "0").exit_code == 2
    assert crawlmill(tmp_path / "nothing", "--data", tiny_shards).exit_code == 2
    cut = tmp_path / "cut"
    shutil.copytree(trained, cut)
    for path in (cut / "checkpoints").glob("step-*/model/__0_*.distcp"):  # cut short within the model's weights (megatron-core
        path.write_bytes(path.read_bytes()[:1000])  # 0.19 writes them first, the optimizer's after: a cut half can leave them whole)
    damaged = crawlmill(cut, "--data", tiny_shards)
    assert damaged.exit_code == 2 and "a file of this checkpoint is damaged or incomplete" in damaged.output, damaged.output
    unknown = crawlmill(trained, "--data", tiny_shards, "--checkpoint", "step-00000099")
    assert unknown.exit_code == 2 and "not a complete checkpoint" in unknown.output


def test_a_run_moved_with_its_shards_and_tokenizer_is_evaluated_and_exported_where_they_are(trained, tiny_shards, tmp_path):
    """An output moved as a whole (relocation.py): the run's recorded shard folder and the manifest's
    tokenizer folder are gone, and the folders of those names beside them, whose content is what
    the run trained on and packed with, are used (before: bits per byte not reported, export refused)."""
    made = tmp_path / "made/out"
    manifest = json.loads((tiny_shards / "manifest.json").read_text())
    tokenizer_name = manifest["tokenizer"]["path"].rstrip("/").rsplit("/", 1)[-1]
    shutil.copytree(manifest["tokenizer"]["path"], made / tokenizer_name)
    shutil.copytree(tiny_shards, made / "shards")
    (made / "shards/manifest.json").write_text(json.dumps({**manifest, "tokenizer": {**manifest["tokenizer"], "path": str(made / tokenizer_name)}}))
    shutil.copytree(trained, made / "run")
    info = json.loads((made / "run/run.json").read_text())
    info["config"]["data"]["shards"] = [str(made / "shards")]
    (made / "run/run.json").write_text(json.dumps(info))
    moved = tmp_path / "moved/elsewhere"
    moved.parent.mkdir()
    made.rename(moved)
    evaluated = CliRunner().invoke(app, ["eval", str(moved / "run"), "--data", str(moved / "shards"), "--max-tokens", "64", "--no-progress"])
    assert evaluated.exit_code == 0 and "bits per byte" in evaluated.output and "not reported" not in evaluated.output, evaluated.output
    exported = CliRunner().invoke(app, ["export", str(moved / "run"), "--output", str(tmp_path / "hf")])
    assert exported.exit_code == 0 and (tmp_path / "hf/tokenizer.json").is_file(), exported.output
    other = tmp_path / "other/out"  # a folder of that name whose content is not what the run trained on: not taken
    shutil.copytree(moved, other)
    shutil.rmtree(other / "shards")
    shutil.copytree(moved / "shards", other / "shards")
    prefix = manifest["blend"]["prefixes"][0]
    other_manifest = json.loads((other / "shards/manifest.json").read_text())
    next(s for s in other_manifest["shards"] if s["prefix"] == prefix)["files"]["bin"]["sha256"] = "0" * 64
    (other / "shards/manifest.json").write_text(json.dumps(other_manifest))
    info["config"]["data"]["shards"] = [str(tmp_path / "gone/shards")]
    (other / "run/run.json").write_text(json.dumps(info))
    refused = CliRunner().invoke(app, ["export", str(other / "run"), "--output", str(tmp_path / "hf2")])
    assert refused.exit_code != 0 and "the tokenizer is unknown" in refused.output, refused.output


def test_json_dash_prints_the_figures_as_json_on_stdout_alone(trained, tiny_shards):
    """`--json -`, as other verbs' --json: stdout is the JSON, the lines go to stderr."""
    result = CliRunner().invoke(app, ["eval", str(trained), "--data", str(tiny_shards), "--max-tokens", "64", "--json", "-", "--no-progress"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["results"][0]["tokens"] >= 64 and record["results"][0]["data"] == str(tiny_shards)
    assert "bits per byte" in result.stderr and not (trained.parent / "-").exists()
