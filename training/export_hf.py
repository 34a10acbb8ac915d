"""Export a training run's checkpoint as a Hugging Face model folder in Llama's layout, the one
DeepSeek LLM's own release uses (LlamaForCausalLM): transformers, vLLM, lm-evaluation-harness and
llama.cpp's converter then load what crawlmill trained.

    crawlmill export runs/1b --output hf/1b                                   # newest checkpoint, bf16
    crawlmill export runs/1b --checkpoint step-00002000 --dtype fp32 --output hf/1b-2000

    HF/config.json                 LlamaForCausalLM: shapes, GQA heads, RMSNorm epsilon, RoPE base, untied embeddings
    HF/model.safetensors           the weights (model-0000i-of-0000N.safetensors + index beyond --shard-size)
    HF/generation_config.json      the end-of-document token as eos
    HF/tokenizer.json, tokenizer_config.json, special_tokens_map.json   the tokenizer the shards were packed with
    HF/crawlmill_export.json       provenance: run, checkpoint, step, tokens seen, sha256 of each weight file
    HF/README.md                   the model card: shape, tokens, data, the last validation loss and bits per byte

The weights stream: the files are planned from the checkpoint's metadata, then each decoder layer
is read from the checkpoint alone (checkpoint_weights.py, whatever parallel layout wrote it),
renamed and split, converted, and its tensors' bytes appended to their file (safetensors_stream.py),
so that memory holds one layer (or the embedding, the largest tensor), whatever the model's size
and --shard-size. Megatron's fused query/key/value matrix is laid out by key/value group, [groups, heads per group + 2, head_dim,
hidden], and becomes q_proj, k_proj and v_proj; the SwiGLU's fused first matrix is [gate; up] and
becomes gate_proj and up_proj. Both use the same non-interleaved RoPE (rotate_half), so nothing
else changes. Every weight's name and shape is checked against the run's model before any is read.
The tokenizer's tokenizer.json must be the one the shards' manifest names (its sha256): a model is
only usable with its own tokenizer. A checkpoint at a URL is read in place: the byte ranges of
the weights only, never the optimizer's state beside them. The folder is written under a temporary name and renamed when complete;
an existing folder is refused unless overwritten.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch

from crawlmill.files import AnyPath, as_path, is_url, read_json, read_text, sha256_file
from crawlmill.pathsafety import redact

from .checkpoint import MODEL
from .checkpoint_source import find_checkpoint
from .checkpoint_weights import checkpoint_reader, checkpoint_weights, meta_weights, weight_shapes
from .model_config import ModelConfig
from .run_model import checkpoint_source, run_model_config, run_tokenizer_entry
from .runlog import LOG_FILE
from .runstore import local_file
from .safetensors_stream import SafetensorsWriter

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
TORCH_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
EXPORT_FILE = "crawlmill_export.json"
DEFAULT_SHARD_BYTES = 5 * 10**9  # Hugging Face's default shard size


def llama_weights(state: Mapping[str, Any], model: ModelConfig) -> dict[str, torch.Tensor]:
    """Hugging Face Llama names and tensors for a Megatron GPTModel state dict (the local spec's
    names, which the TE spec's checkpoints load into). A weight this does not know is an error,
    never silently left out."""
    groups, head_dim = model.query_groups, model.head_dim
    per_group = model.num_attention_heads // groups
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith("._extra_state") or not torch.is_tensor(tensor):
            continue  # Transformer Engine's fp8 bookkeeping: no weights
        if name == "embedding.word_embeddings.weight":
            out["model.embed_tokens.weight"] = tensor
        elif name == "decoder.final_layernorm.weight":
            out["model.norm.weight"] = tensor
        elif name == "output_layer.weight":
            out["lm_head.weight"] = tensor
        elif name.startswith("decoder.layers."):
            index, rest = name[len("decoder.layers.") :].split(".", 1)
            out.update(_layer(f"model.layers.{int(index)}.", rest, tensor, groups, per_group, head_dim))
        else:
            raise ValueError(f"{name}: a weight the Llama layout has no place for")
    return out


def _layer(prefix: str, rest: str, tensor: torch.Tensor, groups: int, per_group: int, head_dim: int) -> dict[str, torch.Tensor]:
    # the norms: the local spec's module names, or the names checkpoints keep them under (Transformer
    # Engine's fused norm-linear layers', which the local spec maps its own to)
    if rest in ("input_layernorm.weight", "self_attention.linear_qkv.layer_norm_weight"):
        return {prefix + "input_layernorm.weight": tensor}
    if rest in ("pre_mlp_layernorm.weight", "mlp.linear_fc1.layer_norm_weight"):
        return {prefix + "post_attention_layernorm.weight": tensor}
    if rest == "self_attention.linear_proj.weight":
        return {prefix + "self_attn.o_proj.weight": tensor}
    if rest == "mlp.linear_fc2.weight":
        return {prefix + "mlp.down_proj.weight": tensor}
    if rest == "self_attention.linear_qkv.weight":
        hidden = tensor.shape[1]
        grouped = tensor.reshape(groups, per_group + 2, head_dim, hidden)
        return {
            prefix + "self_attn.q_proj.weight": grouped[:, :per_group].reshape(groups * per_group * head_dim, hidden),
            prefix + "self_attn.k_proj.weight": grouped[:, per_group].reshape(groups * head_dim, hidden),
            prefix + "self_attn.v_proj.weight": grouped[:, per_group + 1].reshape(groups * head_dim, hidden),
        }
    if rest == "mlp.linear_fc1.weight":
        gate, up = torch.chunk(tensor, 2, dim=0)  # Megatron's GLU: activation(first half) * second half
        return {prefix + "mlp.gate_proj.weight": gate, prefix + "mlp.up_proj.weight": up}
    raise ValueError(f"decoder layer weight {rest}: a weight the Llama layout has no place for")


def llama_config(model: ModelConfig, vocab: int, dtype: str, bos: int | None, eos: int | None, pad: int | None) -> dict[str, Any]:
    """config.json of LlamaForCausalLM for this model."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": model.hidden_size,
        "intermediate_size": model.ffn_hidden_size,
        "num_hidden_layers": model.num_layers,
        "num_attention_heads": model.num_attention_heads,
        "num_key_value_heads": model.query_groups,
        "head_dim": model.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": model.seq_length,
        "initializer_range": model.init_std,
        "rms_norm_eps": model.norm_epsilon,
        "rope_theta": float(model.rotary_base),
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "torch_dtype": TORCH_DTYPE_NAMES[dtype],
        "use_cache": True,
    }


def refuse_existing(output: Path, overwrite: bool, sources: list[Any], marker: str) -> None:
    """Before any work: an existing `output` only with `overwrite`, and never one whose replacement
    would delete input: a source itself, a folder holding it, or a folder inside it that is not an
    earlier output of this command (which holds `marker`; e.g. RUN/hf, exported again)."""
    if not output.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{output} exists: choose another --output, or --overwrite to replace it")
    if not output.is_dir():
        raise FileExistsError(f"--output {output} is a file, not a folder: choose another --output")
    mine = output.resolve()
    for source in (s for s in sources if s is not None and not is_url(str(s))):
        theirs = Path(source).resolve()
        if mine == theirs or mine in theirs.parents or (theirs in mine.parents and not (output / marker).is_file()):
            raise FileExistsError(f"--output {output} is, holds or lies inside the input {source}: --overwrite would delete input; choose another --output")


@contextlib.contextmanager
def new_folder(output: Path) -> Iterator[Path]:
    """A temporary sibling of `output` to fill: it replaces `output` when the block ends (the old one
    renamed aside first, then deleted), and is deleted when the block raises (a half-written or
    half-deleted folder never has the final name)."""
    tmp = output.parent / f".tmp-{output.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    aside = output.parent / f".tmp-replaced-{output.name}"
    try:
        yield tmp
        shutil.rmtree(aside, ignore_errors=True)
        if output.exists():  # --overwrite: moved aside whole, never half-deleted under its name
            output.rename(aside)
        tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _tokenizer(run: str, info: dict[str, Any], tokenizer: str | None) -> tuple[Any, dict[str, Any]]:
    """(the tokenizer folder, its entry), its tokenizer.json checked against the sha256 the shards
    were packed with (or the imported model's)."""
    found = run_tokenizer_entry(run, info)
    if found is None:
        shards = info["config"]["data"]["shards"]
        raise FileNotFoundError(f"{shards[0] if shards else 'data.shards'}: the run's shards have no manifest.json (nor was it imported with a tokenizer.json); the tokenizer is unknown")
    entry, default = found
    folder = as_path(tokenizer or default)
    if not (folder / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{folder}: no tokenizer.json (the shards' tokenizer; give its folder with --tokenizer)")
    digest = sha256_file(folder / "tokenizer.json")
    if digest != entry["sha256"]:
        raise ValueError(f"{folder}/tokenizer.json is not the tokenizer the run's shards were packed with (sha256 {digest[:12]}…, the manifest's {entry['sha256'][:12]}…)")
    return folder, entry


def _special_ids(folder: Any, entry: dict[str, Any]) -> tuple[int | None, int, int | None]:
    """(bos, eos, pad) ids: eos is the end-of-document token documents were packed with."""
    extra = folder / "crawlmill.json"
    ids = read_json(extra) if extra.is_file() else {}
    eod = entry.get("eod_id")
    return ids.get("bos_id", entry.get("bos_id")), None if eod is None else int(eod), ids.get("pad_id", entry.get("pad_id"))


def llama_shapes(model: ModelConfig, vocab: int) -> dict[str, tuple[int, ...]]:
    """The shape of every weight of this model's Llama folder, by name."""
    h, hd, ffn = model.hidden_size, model.head_dim, model.ffn_hidden_size
    q, kv = model.num_attention_heads * hd, model.query_groups * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, h)}
    for i in range(model.num_layers):
        layer = {"input_layernorm": (h,), "post_attention_layernorm": (h,), "self_attn.q_proj": (q, h), "self_attn.k_proj": (kv, h),
                 "self_attn.v_proj": (kv, h), "self_attn.o_proj": (h, q), "mlp.gate_proj": (ffn, h), "mlp.up_proj": (ffn, h), "mlp.down_proj": (h, ffn)}  # fmt: skip
        shapes.update({f"model.layers.{i}.{name}.weight": shape for name, shape in layer.items()})
    return {**shapes, "model.norm.weight": (h,), "lm_head.weight": (vocab, h)}


def check_shapes(planned: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], folder: AnyPath) -> None:
    """A checkpoint whose weights are not the run's model's (another run's folder, another shape)
    is refused before anything is written, naming the first weight that differs."""
    for name in [*expected, *planned]:
        have, want = planned.get(name), expected.get(name)
        if have is None or want is None or tuple(have.shape) != tuple(want):
            found = "missing" if have is None else f"{tuple(have.shape)}"
            raise ValueError(f"{folder}: its weights do not fit the run's model ({name}: {found}, the model's {want or 'has no such weight'})")


def plan_files(planned: Mapping[str, torch.Tensor], shard_bytes: int) -> dict[str, list[str]]:
    """File name -> the tensors it holds, in order: files of at most `shard_bytes` (one tensor may
    exceed it), named as transformers names them (model.safetensors, or model-0000i-of-0000N)."""
    groups: list[list[str]] = [[]]
    size = 0
    for name, tensor in planned.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    if len(groups) == 1:
        return {"model.safetensors": groups[0]}
    return {f"model-{i:05d}-of-{len(groups):05d}.safetensors": group for i, group in enumerate(groups, 1)}


def _write_weights(planned: Mapping[str, torch.Tensor], tensors: Iterable[tuple[str, torch.Tensor]], folder: Path, shard_bytes: int) -> list[str]:
    """The safetensors files of plan_files, with the index transformers reads when there are
    several. `planned`: every name, in the order `tensors` yields them, with its shape and dtype
    (meta tensors): the files are planned first, then each tensor is written into its file as it
    arrives (safetensors_stream.py). Returns the files' names."""
    files = plan_files(planned, shard_bytes)
    if len(files) > 1:
        total = sum(t.numel() * t.element_size() for t in planned.values())
        index = {"metadata": {"total_size": total}, "weight_map": {k: name for name, group in files.items() for k in group}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=1))
    arriving = iter(tensors)
    for name, group in files.items():
        with SafetensorsWriter(folder / name, {n: planned[n] for n in group}, {"format": "pt"}) as out:
            while not out.complete:
                out.write(*next(arriving, ("(the end of the checkpoint's weights)", torch.empty(0))))
    leftover = next(arriving, None)
    if leftover is not None:
        raise ValueError(f"{leftover[0]}: a weight the plan has no place for")
    return list(files)


def export_run(run: str, output: str | Path, checkpoint: str | None = None, dtype: str = "bf16", tokenizer: str | None = None,
               shard_bytes: int = DEFAULT_SHARD_BYTES, overwrite: bool = False) -> dict[str, Any]:  # fmt: skip
    """Write the Hugging Face folder of `run`'s checkpoint into `output` (module docstring);
    returns what crawlmill_export.json records."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if is_url(str(output)):
        raise ValueError(f"--output {output}: export writes a local folder (copy it to object storage afterwards)")
    output = Path(output)
    refuse_existing(output, overwrite, [run], EXPORT_FILE)
    model_config, vocab, info = run_model_config(run)
    token_folder, entry = _tokenizer(run, info, tokenizer)  # before the weights: a wrong tokenizer is found at once
    folder, meta = find_checkpoint(*checkpoint_source(run, checkpoint))
    refuse_existing(output, overwrite, [token_folder, folder], EXPORT_FILE)  # the inputs found: a --checkpoint elsewhere too
    trusted = bool(info["config"]["checkpoint"].get("trusted"))
    reader = checkpoint_reader(as_path(folder) / MODEL, trusted)  # at a URL, read in place (checkpoint_weights.py)
    shapes = weight_shapes(reader)
    to_dtype = {k: v.to(DTYPES[dtype]) for k, v in llama_weights(meta_weights(shapes), model_config).items()}
    check_shapes(to_dtype, llama_shapes(model_config, vocab), folder)
    converted = ((name, tensor.to(DTYPES[dtype])) for name, weight in checkpoint_weights(reader, shapes) for name, tensor in llama_weights({name: weight}, model_config).items())
    with new_folder(output) as tmp:
        files = _write_weights(to_dtype, converted, tmp, shard_bytes)
        bos, eos, pad = _special_ids(token_folder, entry)
        (tmp / "config.json").write_text(json.dumps(llama_config(model_config, vocab, dtype, bos, eos, pad), indent=1))
        (tmp / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}, indent=1))
        for name in TOKENIZER_FILES:
            if (token_folder / name).is_file():
                shutil.copyfile(local_file(str(token_folder / name)), tmp / name)
        _limit_tokenizer_length(tmp / "tokenizer_config.json", model_config.seq_length)
        record = {
            "run": redact(str(run)), "checkpoint": redact(str(folder)), "step": int(meta["step"]), "tokens": meta.get("tokens"), "dtype": dtype,
            "parameters": sum(t.numel() for t in to_dtype.values()), "files": {name: sha256_file(tmp / name) for name in files},
        }  # fmt: skip
        (tmp / EXPORT_FILE).write_text(json.dumps(record, indent=1))
        (tmp / "README.md").write_text(model_card(run, info, model_config, vocab, record, entry), encoding="utf-8")
    return record


def _last_valid(run: str, step: int) -> dict[str, Any] | None:
    """The run's last validation record at or before `step` (log.jsonl), if any."""
    path = as_path(run) / LOG_FILE
    if not path.is_file():
        return None
    found = None
    for line in read_text(path).splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("kind") == "valid" and record.get("step", step + 1) <= step:
            found = record
    return found


def model_card(run: str, info: dict[str, Any], model: ModelConfig, vocab: int, record: dict[str, Any], tokenizer: dict[str, Any]) -> str:
    """README.md of the folder: what the Hub shows, from the run's own records (no claims beyond them)."""
    valid = _last_valid(run, record["step"])
    shards, imported = info["config"]["data"]["shards"], info.get("imported")
    # an imported model exported again was not pretrained here: say where it came from instead
    origin = (f"A DeepSeek LLM-style decoder imported into crawlmill from `{redact(imported['source'])}` (its pretraining is not recorded here), "
              f"exported from the run `{record['run']}`.") if imported else (  # fmt: skip
        f"A DeepSeek LLM-style decoder pretrained with crawlmill (Megatron-Core), exported from step {record['step']:,} "
        f"({record['tokens'] or 0:,} tokens seen) of the run `{record['run']}`.")
    eod = f"`{tokenizer['eod_token']}` (id {tokenizer['eod_id']})" if tokenizer.get("eod_token") else f"id {tokenizer['eod_id']}"
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-generation", "tags: [crawlmill, megatron-core, pretraining]", "---", "",
        f"# {Path(str(run).rstrip('/')).name}", "", origin, "",
        "| | |", "|---|---|",
        f"| parameters | {record['parameters']:,} |",
        f"| layers, hidden, heads (key/value), SwiGLU | {model.num_layers}, {model.hidden_size}, {model.num_attention_heads} ({model.query_groups}), {model.ffn_hidden_size} |",
        f"| context, RoPE base, vocabulary (padded) | {model.seq_length}, {model.rotary_base}, {vocab:,} |",
        f"| weights | {record['dtype']} |",
        f"| tokenizer | tokenizer.json sha256 {tokenizer['sha256']}, end of document {eod} |",
    ]  # fmt: skip
    if shards:
        lines.append(f"| data | {', '.join(f'`{redact(s)}`' for s in shards)} |")
    if valid is not None:
        lines.append(f"| validation at step {valid['step']:,} | loss {valid['loss']:.4f}, bits per byte {valid.get('bpb', float('nan')):.4f} |")
    lines += ["", "Load it with `transformers.AutoModelForCausalLM.from_pretrained(FOLDER)`; crawlmill_export.json records where it came from.", ""]
    return "\n".join(lines)


def _limit_tokenizer_length(path: Path, seq_length: int) -> None:
    """The tokenizer's model_max_length becomes the model's context (transformers warns past it)."""
    if path.is_file():
        config = json.loads(path.read_text())
        config["model_max_length"] = seq_length
        path.write_text(json.dumps(config, indent=1, ensure_ascii=False))
