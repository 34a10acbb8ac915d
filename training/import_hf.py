"""Import a Hugging Face Llama-layout model (DeepSeek LLM's released base models, or what
`crawlmill export` wrote) as a run folder whose one checkpoint `crawlmill train --init-from` starts
from: continued pretraining of a released model on new shards.

    crawlmill import hf/deepseek-llm-7b-base --output runs/deepseek-7b-base
    crawlmill train --config deepseek-7b --data out/shards --output runs/7b-cont --init-from runs/deepseek-7b-base

    RUN/checkpoints/step-00000000/   the weights through dist_checkpointing (model only), meta.json
    RUN/run.json                     the model's shape (a ModelConfig) and where it came from

config.json gives the shape (LlamaForCausalLM only: SiLU, no biases, untied embeddings, plain RoPE;
anything else is refused by name, never converted into another model). The weights
(model.safetensors, its index and files, or pytorch_model*.bin read as weights only) are the
inverse of export_hf.py's renaming: q/k/v_proj are fused into Megatron's linear_qkv by key/value
group, gate_proj and up_proj into linear_fc1. The checkpoint is written by one process with
tensor parallelism 1; dist_checkpointing reshards it by global key for a run of any layout. The
run's own config must have the same shape (the init_from check names the first tensor that
differs); the built-in whose shape it is, if any, is printed. Memory: the model once, filled a
layer at a time from the files as they are read (a 7B in bf16: about 14 GB, where reading every
file first and then the model needed twice that and more). The folder is written under a temporary
name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
import torch.distributed as dist

from .checkpoint import Checkpointer, rng_state
from .export_hf import new_folder, refuse_existing
from .model_config import ModelConfig
from .run_model import one_process_model_parallel
from .runlog import RUN_FILE
from .safetensors_stream import DTYPES

SAFETENSORS_DTYPES = {name: dtype for dtype, name in DTYPES.items()}

FUSED = ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight")  # into 2 Megatron matrices


def model_config_of(config: Mapping[str, Any], source: str = "config.json") -> ModelConfig:
    """The ModelConfig of a LlamaForCausalLM config.json; what the DeepSeek design cannot express is refused."""
    refuse = []
    if config.get("model_type") != "llama":
        refuse.append(f"model_type {config.get('model_type')!r} (llama only)")
    checks = {"hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False}
    refuse += [f"{key} {config.get(key)!r} (needs {want!r})" for key, want in checks.items() if config.get(key, want) != want]
    rope = config.get("rope_parameters") or {}
    scaling = config.get("rope_scaling") or ({} if rope.get("rope_type", "default") == "default" else rope)
    if scaling:
        refuse.append(f"RoPE scaling {scaling!r} (plain RoPE only)")
    heads, hidden = int(config["num_attention_heads"]), int(config["hidden_size"])
    if config.get("head_dim") not in (None, hidden // heads):
        refuse.append(f"head_dim {config['head_dim']} (needs hidden_size / heads = {hidden // heads})")
    theta = float(config.get("rope_theta") or rope.get("rope_theta") or 10_000.0)
    if not theta.is_integer():
        refuse.append(f"rope_theta {theta} (a whole number)")
    if refuse:
        raise ValueError(f"{source}: not a model crawlmill trains: {'; '.join(refuse)}")
    kv = int(config.get("num_key_value_heads") or heads)
    return ModelConfig(
        num_layers=int(config["num_hidden_layers"]), hidden_size=hidden, num_attention_heads=heads,
        num_query_groups=None if kv == heads else kv, ffn_hidden_size=int(config["intermediate_size"]),
        seq_length=int(config.get("max_position_embeddings") or 4096), vocab_size=int(config["vocab_size"]),
        init_std=float(config.get("initializer_range") or 0.006), rotary_base=int(theta),
        norm_epsilon=float(config.get("rms_norm_eps") or 1e-6),
    )  # fmt: skip


def megatron_tensors(hf: Mapping[str, torch.Tensor], model: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Megatron GPTModel (local spec) names and tensors for Llama weights, export_hf.llama_weights
    inverted, a layer at a time (each weight is read from `hf` when its layer comes). A weight
    without a place is an error (before any is read); so is one missing."""
    groups, head_dim = model.query_groups, model.head_dim
    per_group = model.num_attention_heads // groups
    top = {"model.embed_tokens.weight": "embedding.word_embeddings.weight", "model.norm.weight": "decoder.final_layernorm.weight", "lm_head.weight": "output_layer.weight"}
    layer_names = {
        "input_layernorm.weight": "input_layernorm.weight", "post_attention_layernorm.weight": "pre_mlp_layernorm.weight",
        "self_attn.o_proj.weight": "self_attention.linear_proj.weight", "mlp.down_proj.weight": "mlp.linear_fc2.weight",
    }  # fmt: skip
    taken = set(top) | {f"model.layers.{i}.{p}" for i in range(model.num_layers) for p in (*FUSED, *layer_names)}
    unplaced = sorted(k for k in hf if k not in taken and not k.endswith("rotary_emb.inv_freq"))
    if unplaced:
        raise ValueError(f"weights without a place in the model: {', '.join(unplaced[:5])}{' ...' if len(unplaced) > 5 else ''}")
    yield "embedding.word_embeddings.weight", _take(hf, "model.embed_tokens.weight")
    for i in range(model.num_layers):
        hf_layer, layer = f"model.layers.{i}.", f"decoder.layers.{i}."
        q, k, v = (_take(hf, f"{hf_layer}self_attn.{p}_proj.weight") for p in "qkv")
        hidden = q.shape[1]
        fused = torch.cat([q.reshape(groups, per_group, head_dim, hidden), k.reshape(groups, 1, head_dim, hidden), v.reshape(groups, 1, head_dim, hidden)], dim=1)
        yield layer + "self_attention.linear_qkv.weight", fused.reshape(-1, hidden)
        yield layer + "mlp.linear_fc1.weight", torch.cat([_take(hf, f"{hf_layer}mlp.gate_proj.weight"), _take(hf, f"{hf_layer}mlp.up_proj.weight")])
        for theirs, ours in layer_names.items():
            yield layer + ours, _take(hf, hf_layer + theirs)
    for theirs, ours in top.items():
        if ours != "embedding.word_embeddings.weight":
            yield ours, _take(hf, theirs)


def fill_model(gpt: Any, tensors: Iterable[tuple[str, torch.Tensor]], source: Path) -> None:
    """Copy each (name, tensor) into the model's parameter of that name as it comes (converted to
    the parameter's dtype), so that only the model and one tensor are in memory; every parameter
    must be filled, each with its own shape."""
    params = {k: v for k, v in gpt.state_dict(keep_vars=True).items() if not k.endswith("._extra_state")}
    with torch.no_grad():
        for name, tensor in tensors:
            target = params.pop(name, None)
            if target is None:
                raise ValueError(f"{source}: {name} has no place in the model")
            if target.shape != tensor.shape:
                raise ValueError(f"{source}: {name} is {tuple(tensor.shape)}, the model's {tuple(target.shape)}")
            target.copy_(tensor)
    if params:
        raise ValueError(f"{source}: the weights do not fill the model (missing {sorted(params)[:5]})")


def _take(weights: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    if name not in weights:
        raise ValueError(f"{name}: missing from the weights")
    return weights[name]


@contextlib.contextmanager
def _unreadable(path: Path) -> Iterator[None]:
    """A weights file that is damaged, cut short or not what its name says: a ValueError naming it."""
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError) as exc:
        raise ValueError(f"{path}: unreadable weights ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None


class HFWeights(Mapping[str, torch.Tensor]):
    """The tensors of a Hugging Face folder, each read from its file when asked for: safetensors
    (one file or an index's; each read maps the file only meanwhile, so that its pages do not stay
    in this process), else pytorch_model*.bin loaded as weights only (no pickled code runs) and
    memory-mapped where the file allows (torch's zip format)."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        index = folder / "model.safetensors.index.json"
        self._files: dict[str, Path] = {}  # safetensors tensor name -> its file
        self._dtypes: dict[str, torch.dtype] = {}
        self._loaded: dict[str, torch.Tensor] = {}  # .bin tensors (memory-mapped where possible)
        if (folder / "model.safetensors").is_file() or index.is_file():
            names = ["model.safetensors"] if (folder / "model.safetensors").is_file() else sorted(set(json.loads(index.read_text())["weight_map"].values()))
            for name in names:
                with _unreadable(folder / name), safe_open(str(folder / name), framework="pt") as handle:
                    for key in handle.keys():
                        self._files[key] = folder / name
                        self._dtypes[key] = SAFETENSORS_DTYPES[handle.get_slice(key).get_dtype()]
            return
        bins = sorted(folder.glob("pytorch_model*.bin"))
        if not bins:
            raise FileNotFoundError(f"{folder}: no model.safetensors, model.safetensors.index.json or pytorch_model*.bin")
        for path in bins:
            with _unreadable(path):
                try:
                    self._loaded.update(torch.load(path, map_location="cpu", weights_only=True, mmap=True))
                except RuntimeError as exc:  # the legacy (pre-zip) format cannot be mapped
                    if "mmap" not in str(exc):
                        raise
                    self._loaded.update(torch.load(path, map_location="cpu", weights_only=True))
        self._dtypes = {key: tensor.dtype for key, tensor in self._loaded.items()}

    def __getitem__(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        if name in self._loaded:
            return self._loaded[name]
        with _unreadable(self._files[name]), safe_open(str(self._files[name]), framework="pt") as handle:
            return handle.get_tensor(name)

    def __contains__(self, name: object) -> bool:  # Mapping's would read the tensor
        return name in self._dtypes

    def __iter__(self) -> Iterator[str]:
        return iter(self._dtypes)

    def __len__(self) -> int:
        return len(self._dtypes)

    def dtype(self, name: str) -> torch.dtype:
        """A tensor's dtype, without reading it."""
        return self._dtypes[name]


def matching_builtin(model: ModelConfig) -> str | None:
    """The built-in config whose model has this shape, if one has."""
    from .config import builtin_model, builtin_names

    fields = ("num_layers", "hidden_size", "num_attention_heads", "query_groups", "ffn_hidden_size", "seq_length", "rotary_base", "norm_epsilon")
    for name in builtin_names():
        builtin = builtin_model(name)
        if all(getattr(builtin, f) == getattr(model, f) for f in fields) and builtin.vocab_size in (None, model.vocab_size):
            return name
    return None


def import_hf(source: str | Path, output: str | Path, overwrite: bool = False) -> dict[str, Any]:
    """Write the run folder of the Hugging Face model in `source` into `output` (module
    docstring); returns what run.json records of the import."""
    from .config import TrainConfig
    from .model import build_model

    source, output = Path(source), Path(output)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source}: no config.json (a Hugging Face model folder)")
    refuse_existing(output, overwrite)
    model = model_config_of(json.loads((source / "config.json").read_text()), str(source / "config.json"))
    hf = HFWeights(source)
    precision = "bf16" if all(hf.dtype(name) == torch.bfloat16 for name in hf if not name.endswith("rotary_emb.inv_freq")) else "fp32"
    with new_folder(output) as tmp:
        with one_process_model_parallel():
            gpt = build_model(model, int(model.vocab_size), precision, initialize=False)  # fill_model sets every weight
            fill_model(gpt, megatron_tensors(hf, model), source)
            del hf
            saver = Checkpointer(tmp, 0, 1, 1, False, dist.barrier)
            saver.save(0, {"model": gpt.sharded_state_dict()}, rng_state(), {"consumed_samples": 0, "tokens": 0, "imported_from": str(source)})
            saver.close()
        record = {"source": str(source.resolve()), "builtin": matching_builtin(model), "precision": precision, "parameters": model.parameters()["total"]}
        info = {"config": asdict(TrainConfig(model=model, precision=precision)), "model": {"vocab_size": model.vocab_size, "parameters": model.parameters()}, "imported": record}
        (tmp / RUN_FILE).write_text(json.dumps(info, indent=1, default=str))
    return record
