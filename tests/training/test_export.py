"""`crawlmill export`: a trained run's checkpoint as a Hugging Face Llama folder. transformers'
LlamaForCausalLM loads it and computes the Megatron model's logits on the run's own token
sequences; the tokenizer beside it is the shards' one; bf16 and split files load too; bad input is
a clear error (exit status 2)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.training.compat import causal_mask, device_scope
from crawlmill.training.run_model import load_run_model, one_process_model_parallel, run_model_config
from crawlmill.training.trainer import train

from .conftest import checkpoint_tensors, tiny_config

SEQ = 64
TEXT = "Common Crawl 抓取的网页, 经过清洗和去重, 成为预训练数据. Reviews: 5 stars, would buy again!"


def export(*args: str):
    return CliRunner().invoke(app, ["export", *map(str, args)])


def shard_sequences(shards: Path, count: int = 4) -> torch.Tensor:
    """The first `count` sequences of SEQ tokens of the packed shard, as training reads them."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    manifest = json.loads((shards / "manifest.json").read_text())
    datasets = [IndexedDataset(str(shards / prefix)) for prefix in manifest["blend"]["prefixes"]]  # alive: their arrays map the files
    tokens = np.concatenate([np.array(dataset[i]) for dataset in datasets for i in range(min(len(dataset), 40))])
    return torch.as_tensor(tokens[: count * SEQ].astype(np.int64)).reshape(count, SEQ)


def megatron_logits(run: Path, ids: torch.Tensor) -> torch.Tensor:
    _, _, info = run_model_config(str(run))
    with one_process_model_parallel():
        model, _, _ = load_run_model(str(run), None, info)
        model.eval()
        positions = torch.arange(ids.shape[1]).expand(ids.shape[0], -1)
        with torch.no_grad(), device_scope():
            return model(ids, positions, causal_mask(ids.shape[1], torch.device("cpu")))


def test_an_exported_run_is_a_llama_that_computes_the_megatron_models_logits(tiny_shards, small_tokenizer_dir, tmp_path):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, LlamaForCausalLM

    # RoPE base and norm epsilon off transformers' defaults, so that config.json must carry them
    run = tmp_path / "run"
    train(tiny_config(tiny_shards, max_steps=30, checkpoint={"every_steps": 15}, model={"rotary_base": 1000, "norm_epsilon": 1e-5}), run)
    first_loss = json.loads((run / "log.jsonl").read_text().splitlines()[0])["loss"]

    done = export(run, "--output", tmp_path / "hf", "--dtype", "fp32")
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "hf/crawlmill_export.json").read_text())
    assert (record["step"], record["dtype"], list(record["files"])) == (30, "fp32", ["model.safetensors"])
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "hf/model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask  # readable as the folder's other files
    config = json.loads((tmp_path / "hf/config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["rope_theta"], config["rms_norm_eps"]) == (4, 2, 1000.0, 1e-5)

    hf = LlamaForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    ids = shard_sequences(tiny_shards)
    with torch.no_grad():
        out = hf(ids, labels=ids)
    reference = megatron_logits(run, ids)
    assert out.logits.shape == reference.shape == (4, SEQ, 1024)
    torch.testing.assert_close(out.logits, reference, atol=1e-4, rtol=1e-4)  # measured: 7e-7 apart
    # the weights are the checkpoint's (read here by torch's own converter), and trained ones
    saved = checkpoint_tensors(run / "checkpoints/step-00000030/model")
    assert torch.equal(hf.model.embed_tokens.weight, saved["embedding.word_embeddings.weight"])
    assert torch.equal(hf.lm_head.weight, saved["output_layer.weight"])
    assert out.loss.item() < first_loss - 0.3
    valid = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"valid"' in line][-1]
    card = (tmp_path / "hf/README.md").read_text()
    assert f"validation at step {valid['step']} | loss {valid['loss']:.4f}, bits per byte {valid['bpb']:.4f}" in card and "library_name: transformers" in card

    # the shards' tokenizer, end of document as eos, the model's context as its length
    manifest = json.loads((tiny_shards / "manifest.json").read_text())["tokenizer"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer(TEXT)["input_ids"] == Tokenizer.from_file(str(small_tokenizer_dir / "tokenizer.json")).encode(TEXT).ids
    assert config["eos_token_id"] == manifest["eod_id"] == tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
    assert tokenizer.model_max_length == 128 and config["vocab_size"] == manifest["padded_vocab_size"]

    # bf16 (the default) split into files of at most 200 kB, with the index transformers follows
    done = export(run, "--output", tmp_path / "hf16", "--shard-size", "200KB", "--checkpoint", "step-15")
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "hf16/crawlmill_export.json").read_text())
    index = json.loads((tmp_path / "hf16/model.safetensors.index.json").read_text())
    assert record["step"] == 15 and len(record["files"]) > 1 and set(index["weight_map"].values()) == set(record["files"])
    half = LlamaForCausalLM.from_pretrained(tmp_path / "hf16").eval()
    assert half.dtype == torch.bfloat16 and torch.equal(half.lm_head.weight, checkpoint_tensors(run / "checkpoints/step-00000015/model")["output_layer.weight"].bfloat16())


def test_bad_input_is_a_clear_error(tiny_shards, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(tiny_shards, max_steps=2), run)
    assert export(run, "--output", tmp_path / "hf").exit_code == 0
    again = export(run, "--output", tmp_path / "hf")
    assert again.exit_code == 2 and "exists: choose another --output, or --overwrite" in again.output
    assert export(run, "--output", tmp_path / "hf", "--overwrite").exit_code == 0
    # --overwrite never deletes the input: the run itself, a folder holding it, a folder of it
    # that is not an earlier export (RUN/hf exported again is fine); nor replaces a file
    (run / "hf").mkdir()
    for output in (run, tmp_path, run / "checkpoints", run / "hf"):
        refused = export(run, "--output", output, "--overwrite")
        assert refused.exit_code == 2 and "--overwrite would delete input" in " ".join(refused.output.split()), refused.output
    assert (run / "checkpoints").is_dir() and (run / "run.json").is_file()
    shutil.copy(tmp_path / "hf" / "crawlmill_export.json", run / "hf")  # an earlier export there
    assert export(run, "--output", run / "hf", "--overwrite").exit_code == 0 and (run / "hf/model.safetensors").is_file()
    tokenizer = shutil.copytree(Path(json.loads((tiny_shards / "manifest.json").read_text())["tokenizer"]["path"]), tmp_path / "tok")
    checkpoint = shutil.copytree(run / "checkpoints/step-00000002", tmp_path / "ck")  # inputs given outside the run
    for output, given in ((tokenizer, "--tokenizer"), (checkpoint, "--checkpoint")):
        refused = export(run, given, output, "--output", output, "--overwrite")
        assert refused.exit_code == 2 and "--overwrite would delete input" in " ".join(refused.output.split()), refused.output
    assert (tokenizer / "tokenizer.json").is_file() and (checkpoint / "meta.json").is_file()
    (tmp_path / "a-file").write_text("mine")
    onto_file = export(run, "--output", tmp_path / "a-file", "--overwrite")
    assert onto_file.exit_code == 2 and "is a file, not a folder" in onto_file.output and (tmp_path / "a-file").read_text() == "mine"

    other = tmp_path / "other-tokenizer"
    other.mkdir()
    (other / "tokenizer.json").write_text((Path(json.loads((tiny_shards / "manifest.json").read_text())["tokenizer"]["path"]) / "tokenizer.json").read_text() + " ")
    wrong = export(run, "--output", tmp_path / "x", "--tokenizer", other)
    assert wrong.exit_code == 2 and "is not the tokenizer the run's shards were packed with" in wrong.output

    missing = export(tmp_path / "nothing", "--output", tmp_path / "x")
    assert missing.exit_code == 2 and "nothing: no such run folder" in missing.output
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "run.json").write_text((run / "run.json").read_text())
    unsaved = export(empty, "--output", tmp_path / "x")
    assert unsaved.exit_code == 2 and f"run {empty}: no complete checkpoint there" in unsaved.output.replace("\n", "")
    unknown = export(run, "--output", tmp_path / "x", "--checkpoint", "step-99")
    assert unknown.exit_code == 2 and "--checkpoint step-99: not a complete checkpoint of" in unknown.output and "its complete ones: step-00000002" in " ".join(unknown.output.split())
    assert export(run, "--output", tmp_path / "x", "--shard-size", "lots").exit_code == 2
    # a run.json that is not the checkpoint's model: refused before anything is written, naming the weight
    wider = tmp_path / "wider"
    shutil.copytree(run, wider)
    info = json.loads((wider / "run.json").read_text())
    info["config"]["model"]["ffn_hidden_size"] += 8
    (wider / "run.json").write_text(json.dumps(info))
    misfit = export(wider, "--output", tmp_path / "x")
    # a checkpoint file cut short (a copy that stopped, a full disk): named, not a traceback
    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    for path in (cut / "checkpoints").glob("step-*/model/__0_*.distcp"):  # cut short within the model's weights (megatron-core
        path.write_bytes(path.read_bytes()[:1000])  # 0.19 writes them first, the optimizer's after: a cut half can leave them whole)
    damaged = export(cut, "--output", tmp_path / "x")
    assert damaged.exit_code == 2 and "a file of this checkpoint is damaged or incomplete" in damaged.output, damaged.output
    assert misfit.exit_code == 2 and "its weights do not fit the run's model (model.layers.0.mlp.gate_proj.weight: (172, 64), the model's (180, 64))" in misfit.output.replace("\n", "")
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".tmp-*"))
