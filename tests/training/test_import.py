"""`crawlmill import`: a Hugging Face Llama-layout folder (one transformers wrote, or `crawlmill
export`) as a run folder whose checkpoint `--init-from` starts from. The Megatron model computes
transformers' logits; a run exported and imported again has the run's weights and continues from
its loss; what the DeepSeek design cannot express is refused by name."""

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from crawlmill.cli import app
from crawlmill.training.compat import causal_mask, device_scope
from crawlmill.training.run_model import load_run_model, one_process_model_parallel, run_model_config
from crawlmill.training.trainer import train

from .conftest import checkpoint_tensors, tiny_config

SMALL = {"vocab_size": 1024, "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 128, "rope_theta": 1000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "initializer_range": 0.05}  # fmt: skip


def crawlmill(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def llama(folder: Path, **changes):
    """A randomly initialized transformers LlamaForCausalLM saved in bf16 (split into several
    safetensors files with an index), and the model as read back in fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**{**SMALL, **changes})).to(torch.bfloat16).save_pretrained(folder, max_shard_size="200KB")
    return LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def megatron_logits(run: Path, ids: torch.Tensor) -> torch.Tensor:
    _, _, info = run_model_config(str(run))
    info["config"]["precision"] = "fp32"  # the bf16 weights in an fp32 model, as transformers reads them above
    with one_process_model_parallel():
        model, _, _ = load_run_model(str(run), None, info)
        model.eval()
        with torch.no_grad(), device_scope():
            return model(ids, torch.arange(ids.shape[1]).expand(ids.shape[0], -1), causal_mask(ids.shape[1], torch.device("cpu")))


def test_a_transformers_llama_is_imported_and_computes_its_logits(tmp_path):
    hf = llama(tmp_path / "hf")
    assert (tmp_path / "hf/model.safetensors.index.json").is_file()
    done = crawlmill("import", tmp_path / "hf", "--output", tmp_path / "run")
    assert done.exit_code == 0, done.output
    info = json.loads((tmp_path / "run/run.json").read_text())
    assert info["config"]["model"] | {"vocab_size": None} == info["config"]["model"] | {
        "num_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_query_groups": 2, "ffn_hidden_size": 172,
        "seq_length": 128, "rotary_base": 1000, "norm_epsilon": 1e-5, "vocab_size": None,
    }  # fmt: skip
    assert info["imported"]["precision"] == "bf16" and json.loads((tmp_path / "run/checkpoints/step-00000000/meta.json").read_text())["step"] == 0

    ids = torch.randint(0, 1024, (2, 64), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
    torch.testing.assert_close(megatron_logits(tmp_path / "run", ids), expected, atol=1e-4, rtol=1e-4)

    # the same weights as one pytorch_model.bin (older releases, DeepSeek LLM's among them), read as weights only
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text((tmp_path / "hf/config.json").read_text())
    torch.save({k: v.bfloat16() for k, v in hf.state_dict().items()}, legacy / "pytorch_model.bin")
    assert crawlmill("import", legacy, "--output", tmp_path / "run-bin").exit_code == 0
    a, b = (checkpoint_tensors(tmp_path / f"{name}/checkpoints/step-00000000/model") for name in ("run", "run-bin"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_exported_and_imported_again_continues_from_its_weights(tiny_shards, tmp_path):
    first = tmp_path / "first"
    train(tiny_config(tiny_shards, max_steps=30, checkpoint={"every_steps": 30}), first)
    assert crawlmill("export", first, "--output", tmp_path / "hf", "--dtype", "fp32").exit_code == 0
    done = crawlmill("import", tmp_path / "hf", "--output", tmp_path / "again")
    assert done.exit_code == 0 and "the shape of the built-in config tiny" in done.output, done.output
    onto_source = crawlmill("import", tmp_path / "hf", "--output", tmp_path / "hf", "--overwrite")  # would delete the model it reads
    assert onto_source.exit_code == 2 and "--overwrite would delete input" in " ".join(onto_source.output.split()), onto_source.output
    assert (tmp_path / "hf/model.safetensors").is_file()

    trained = checkpoint_tensors(first / "checkpoints/step-00000030/model")
    imported = checkpoint_tensors(tmp_path / "again/checkpoints/step-00000000/model")
    assert imported and all(torch.equal(imported[k], trained[k]) for k in imported)  # the model's; the optimizer's stay behind
    assert any("linear_qkv" in k for k in imported) and any("linear_fc1" in k for k in imported)

    # the folder's tokenizer came along: the imported run exports back to the same folder, and eval checks data against it
    assert crawlmill("export", tmp_path / "again", "--output", tmp_path / "hf-again", "--dtype", "fp32").exit_code == 0
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"):
        assert (tmp_path / "hf-again" / name).read_bytes() == (tmp_path / "hf" / name).read_bytes(), name
    card = (tmp_path / "hf-again/README.md").read_text()  # says where the model came from, claims no pretraining or data here
    assert f"imported into crawlmill from `{(tmp_path / 'hf').resolve()}`" in card and "pretrained with crawlmill" not in card
    assert "| data |" not in card and "``" not in card and "end of document " in card
    evaluated = crawlmill("eval", tmp_path / "again", "--data", tiny_shards, "--max-tokens", 512, "--json", tmp_path / "eval.json", "--no-progress")
    assert evaluated.exit_code == 0 and json.loads((tmp_path / "eval.json").read_text())["results"][0]["tokenizer_checked"], evaluated.output
    info = json.loads((tmp_path / "again/run.json").read_text())
    assert info["imported"]["tokenizer"]["sha256"] == json.loads((tiny_shards / "manifest.json").read_text())["tokenizer"]["sha256"]
    info["imported"]["tokenizer"]["sha256"] = "0" * 64  # a model imported with another tokenizer than the data's
    (tmp_path / "again/run.json").write_text(json.dumps(info))
    other = crawlmill("eval", tmp_path / "again", "--data", tiny_shards, "--max-tokens", 512, "--no-progress")
    assert other.exit_code == 2 and "packed with another tokenizer" in other.output, other.output

    train(tiny_config(tiny_shards, max_steps=2, checkpoint={"init_from": str(tmp_path / "again")}), tmp_path / "warm")
    last = [json.loads(line) for line in (first / "log.jsonl").read_text().splitlines() if '"train"' in line][-1]["loss"]
    warm = [json.loads(line) for line in (tmp_path / "warm/log.jsonl").read_text().splitlines()]
    assert warm[0]["kind"] == "initialized" and abs(warm[1]["loss"] - last) < 0.15


def test_models_crawlmill_does_not_train_are_refused_by_name(tmp_path):
    for name, changes, message in [
        ("tied", {"tie_word_embeddings": True}, "tie_word_embeddings True (needs False)"),
        ("biased", {"attention_bias": True}, "attention_bias True (needs False)"),
        ("gelu", {"hidden_act": "gelu"}, "hidden_act 'gelu' (needs 'silu')"),
        ("scaled", {"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "RoPE scaling"),
    ]:
        llama(tmp_path / name, **changes)
        refused = crawlmill("import", tmp_path / name, "--output", tmp_path / f"run-{name}")
        assert refused.exit_code == 2 and message in refused.output, (name, refused.output)
        assert not (tmp_path / f"run-{name}").exists()

    llama(tmp_path / "hf")
    assert crawlmill("import", tmp_path / "hf", "--output", tmp_path / "run").exit_code == 0
    again = crawlmill("import", tmp_path / "hf", "--output", tmp_path / "run")
    assert again.exit_code == 2 and "exists: choose another --output, or --overwrite" in again.output
    index = json.loads((tmp_path / "hf/model.safetensors.index.json").read_text())
    lost = next(file for name, file in index["weight_map"].items() if name.endswith("mlp.up_proj.weight"))
    (tmp_path / "hf" / lost).unlink()  # a lost file, dropped from the index too: its weights are missing
    index["weight_map"] = {name: file for name, file in index["weight_map"].items() if file != lost}
    (tmp_path / "hf/model.safetensors.index.json").write_text(json.dumps(index))
    missing = crawlmill("import", tmp_path / "hf", "--output", tmp_path / "run2")
    assert missing.exit_code == 2 and "missing from the weights" in missing.output, missing.output
    assert crawlmill("import", tmp_path / "nothing", "--output", tmp_path / "run3").exit_code == 2
    kept = next(iter(set(index["weight_map"].values())))
    (tmp_path / "hf" / kept).write_bytes((tmp_path / "hf" / kept).read_bytes()[:-100])  # a download cut short
    cut = crawlmill("import", tmp_path / "hf", "--output", tmp_path / "run4")
    assert cut.exit_code == 2 and f"{kept}: unreadable weights (SafetensorError" in cut.output.replace("\n", ""), cut.output
    assert not list(tmp_path.glob(".tmp-*"))


def test_deepseeks_released_shapes_are_the_built_in_configs():
    """A config.json of DeepSeek LLM's shapes (Table 2 in Llama's keys, as its releases are) names the built-in to train it with."""
    from crawlmill.training.import_hf import matching_builtin, model_config_of

    common = {"model_type": "llama", "hidden_act": "silu", "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": False, "vocab_size": 102400}
    seven = model_config_of({**common, "num_hidden_layers": 30, "hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 11008})
    sixty_seven = model_config_of({**common, "num_hidden_layers": 95, "hidden_size": 8192, "num_attention_heads": 64, "num_key_value_heads": 8, "intermediate_size": 22016})
    assert (matching_builtin(seven), matching_builtin(sixty_seven)) == ("deepseek-7b", "deepseek-67b")
    assert matching_builtin(model_config_of({**common, "num_hidden_layers": 30, "hidden_size": 4096, "num_attention_heads": 32, "intermediate_size": 11008, "rope_theta": 5e5})) is None


def test_import_holds_one_parameter_at_a_time_never_the_model(tmp_path, monkeypatch):
    """Memory: the model is built on the meta device (shapes only) and each parameter is read and
    fused when it is written, the one before it gone by then; each file's weight read once or, for
    linear_fc1's gate and up (written as two halves), at most twice."""
    import gc
    import weakref

    from crawlmill.training import import_hf, model

    llama(tmp_path / "hf", num_hidden_layers=3)
    built, alive, reads = [], [], []
    real_build, real_tensor, real_get = model.build_model, import_hf.megatron_tensor, import_hf.HFWeights.__getitem__

    def build(*args, **kwargs):
        built.append(real_build(*args, **kwargs))
        return built[-1]

    def tensor(hf, config, name, sources):
        gc.collect()
        assert not [ref for ref in alive if ref() is not None], f"{name}: an earlier parameter is still held"
        made = real_tensor(hf, config, name, sources)
        alive.append(weakref.ref(made))
        return made

    def get(self, name):
        reads.append(name)
        return real_get(self, name)

    monkeypatch.setattr(model, "build_model", build)
    monkeypatch.setattr(import_hf, "megatron_tensor", tensor)
    monkeypatch.setattr(import_hf.HFWeights, "__getitem__", get)
    assert crawlmill("import", tmp_path / "hf", "--output", tmp_path / "run").exit_code == 0
    assert len(built) == 1 and {p.device.type for p in built[0].parameters()} == {"meta"}
    weights = json.loads((tmp_path / "hf/model.safetensors.index.json").read_text())["weight_map"]
    assert set(reads) == set(weights) and all(reads.count(n) <= (2 if ".mlp.gate_proj" in n or ".mlp.up_proj" in n else 1) for n in weights)
