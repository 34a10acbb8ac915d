"""Import a Hugging Face Llama-layout model (DeepSeek LLM's released base models, or what
`crawlmill export` wrote) as a run folder whose one checkpoint `crawlmill train --init-from` starts
from: continued pretraining of a released model on new shards.

    crawlmill import hf/deepseek-llm-7b-base --output runs/deepseek-7b-base
    crawlmill train --config deepseek-7b --data out/shards --output runs/7b-cont --init-from runs/deepseek-7b-base

    RUN/checkpoints/step-00000000/   the weights through dist_checkpointing (model only), meta.json
    RUN/run.json                     the model's shape (a ModelConfig) and where it came from
    RUN/tokenizer/                   the folder's tokenizer files, when it has a tokenizer.json: `crawlmill
                                     eval` checks data against it, `crawlmill export` writes it back

config.json gives the shape (LlamaForCausalLM only: SiLU, no biases, untied embeddings, plain RoPE;
anything else is refused by name, never converted into another model). The weights
(model.safetensors, its index and files, or pytorch_model*.bin read as weights only) are the
inverse of export_hf.py's renaming: q/k/v_proj are fused into Megatron's linear_qkv by key/value
group, gate_proj and up_proj into linear_fc1. The checkpoint is written by one process with
tensor parallelism 1; dist_checkpointing reshards it by global key for a run of any layout. The
run's own config must have the same shape (the init_from check names the first tensor that
differs); the built-in whose shape it is, if any, is printed. Every weight's name and shape is
checked against config.json's model from the files' headers before anything is read. Memory: one
parameter at a time, never the model: the model is built on the meta device (shapes only) for
Megatron's checkpoint layout, and each parameter is read from the files, fused and written when
torch.distributed.checkpoint writes it (lazy_save.py); a 67B in bf16 needed 134 GB held whole. The
folder is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist

from crawlmill.files import sha256_file

from .checkpoint import Checkpointer
from .rng_state import rng_state
from .export_hf import TOKENIZER_FILES, llama_shapes, new_folder, refuse_existing
from .model_config import ModelConfig
from .run_model import one_process_model_parallel
from .runlog import RUN_FILE
from .safetensors_stream import DTYPES

TOKENIZER_DIR = "tokenizer"  # in the run folder: the imported model's tokenizer, if its folder had one

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


def weight_sources(model: ModelConfig) -> dict[str, tuple[str, ...]]:
    """Each Megatron GPTModel parameter (local spec names), in the model's order, and the Llama
    weights it is made of: export_hf.llama_weights inverted (q/k/v fused by key/value group into
    linear_qkv, gate and up into linear_fc1, the rest renamed)."""
    renamed = {"input_layernorm.weight": "input_layernorm.weight", "pre_mlp_layernorm.weight": "post_attention_layernorm.weight",
               "self_attention.linear_proj.weight": "self_attn.o_proj.weight", "mlp.linear_fc2.weight": "mlp.down_proj.weight"}  # fmt: skip
    sources: dict[str, tuple[str, ...]] = {"embedding.word_embeddings.weight": ("model.embed_tokens.weight",)}
    for i in range(model.num_layers):
        hf, ours = f"model.layers.{i}.", f"decoder.layers.{i}."
        sources[ours + "self_attention.linear_qkv.weight"] = tuple(f"{hf}{p}" for p in FUSED[:3])
        sources[ours + "mlp.linear_fc1.weight"] = tuple(f"{hf}{p}" for p in FUSED[3:])
        sources.update({ours + name: (hf + theirs,) for name, theirs in renamed.items()})
    return {**sources, "decoder.final_layernorm.weight": ("model.norm.weight",), "output_layer.weight": ("lm_head.weight",)}


def check_weights(hf: HFWeights, model: ModelConfig, source: Path) -> None:
    """Before anything is read or written: every weight has a place in the model, none is missing,
    each has its shape (from the files' headers)."""
    expected = llama_shapes(model, int(model.vocab_size))
    unplaced = sorted(k for k in hf if k not in expected and not k.endswith("rotary_emb.inv_freq"))
    if unplaced:
        raise ValueError(f"{source}: weights without a place in the model: {', '.join(unplaced[:5])}{' ...' if len(unplaced) > 5 else ''}")
    for name, want in expected.items():
        if name not in hf:
            raise ValueError(f"{source}: {name}: missing from the weights")
        if hf.shape(name) != want:
            raise ValueError(f"{source}: {name} is {hf.shape(name)}, the model's {want} (config.json's shape)")


def megatron_tensor(hf: Mapping[str, torch.Tensor], model: ModelConfig, name: str, sources: tuple[str, ...]) -> torch.Tensor:
    """Megatron parameter `name` made of its Llama weights `sources` (weight_sources), read now."""
    tensors = [_take(hf, s) for s in sources]
    if name.endswith("linear_qkv.weight"):
        groups, head_dim = model.query_groups, model.head_dim
        q, k, v = tensors
        hidden, per_group = q.shape[1], model.num_attention_heads // groups
        parts = [q.reshape(groups, per_group, head_dim, hidden), k.reshape(groups, 1, head_dim, hidden), v.reshape(groups, 1, head_dim, hidden)]
        return torch.cat(parts, dim=1).reshape(-1, hidden)
    return torch.cat(tensors) if len(tensors) > 1 else tensors[0]


def megatron_tensors(hf: Mapping[str, torch.Tensor], model: ModelConfig) -> Iterator[tuple[str, torch.Tensor]]:
    """Every (Megatron name, tensor) in the model's order, each read when it comes."""
    for name, sources in weight_sources(model).items():
        yield name, megatron_tensor(hf, model, name, sources)


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
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._loaded: dict[str, torch.Tensor] = {}  # .bin tensors (memory-mapped where possible)
        if (folder / "model.safetensors").is_file() or index.is_file():
            names = ["model.safetensors"] if (folder / "model.safetensors").is_file() else sorted(set(json.loads(index.read_text())["weight_map"].values()))
            for name in names:
                with _unreadable(folder / name), safe_open(str(folder / name), framework="pt") as handle:
                    for key in handle.keys():
                        self._files[key] = folder / name
                        header = handle.get_slice(key)
                        self._dtypes[key], self._shapes[key] = SAFETENSORS_DTYPES[header.get_dtype()], tuple(header.get_shape())
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
        self._shapes = {key: tuple(tensor.shape) for key, tensor in self._loaded.items()}

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

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, without reading it."""
        return self._shapes[name]


def copy_tokenizer(source: Path, target: Path, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The folder's tokenizer files copied into the run (RUN/tokenizer), and its entry as a pack
    manifest records one (sha256 of tokenizer.json; end-of-document = config.json's eos), so that
    `crawlmill eval` checks data against it and `crawlmill export` writes it back; None without a
    tokenizer.json."""
    if not (source / "tokenizer.json").is_file():
        return None
    target.mkdir()
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    ids = {key: config.get(f"{key}_token_id") for key in ("bos", "eos", "pad")}
    ids = {key: value[0] if isinstance(value, list) and value else value for key, value in ids.items()}  # a list of eos ids: the first
    return {"path": TOKENIZER_DIR, "sha256": sha256_file(target / "tokenizer.json"), "eod_id": ids["eos"], "bos_id": ids["bos"], "pad_id": ids["pad"]}


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
    from .lazy_save import ProducingSave
    from .model import build_model

    source, output = Path(source), Path(output)
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source}: no config.json (a Hugging Face model folder)")
    refuse_existing(output, overwrite, [source], "run.json")
    config = json.loads((source / "config.json").read_text())
    model = model_config_of(config, str(source / "config.json"))
    hf = HFWeights(source)
    check_weights(hf, model, source)
    precision = "bf16" if all(hf.dtype(name) == torch.bfloat16 for name in hf if not name.endswith("rotary_emb.inv_freq")) else "fp32"
    sources = weight_sources(model)
    with new_folder(output) as tmp:
        with one_process_model_parallel():
            gpt = build_model(model, int(model.vocab_size), precision, meta=True)  # shapes only: each weight is made as it is written
            strategy = ProducingSave(gpt, lambda name: megatron_tensor(hf, model, name, sources[name]))
            saver = Checkpointer(tmp, 0, 1, 1, False, dist.barrier, strategy=strategy)
            saver.save(0, {"model": gpt.sharded_state_dict()}, rng_state(), {"consumed_samples": 0, "tokens": 0, "imported_from": str(source)})
            saver.close()
        record = {"source": str(source.resolve()), "builtin": matching_builtin(model), "precision": precision, "parameters": model.parameters()["total"]}
        tokenizer = copy_tokenizer(source, tmp / TOKENIZER_DIR, config)
        if tokenizer is not None:
            record["tokenizer"] = tokenizer
        info = {"config": asdict(TrainConfig(model=model, precision=precision)), "model": {"vocab_size": model.vocab_size, "parameters": model.parameters()}, "imported": record}
        (tmp / RUN_FILE).write_text(json.dumps(info, indent=1, default=str))
    return record
