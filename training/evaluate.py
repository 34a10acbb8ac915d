"""Evaluate a training run's checkpoint on packed shard folders: the loss and the exact bits per byte
(the DeepSeek LLM paper's measure of generalization) over every token of every document, on data the
run did not train on (another dump, another register, a held-out set).

    crawlmill eval runs/1b --data heldout/shards
    crawlmill eval runs/1b --data wiki/shards --data forums/shards --checkpoint step-00002000 --json eval.json

Each folder (a path or URL) is read in its manifest's order, document after document, each ending
with its end-of-document token as packed. The token stream, after one end-of-document token that
stands for "no context", is cut into windows of the model's context plus one token, which overlap
by that token: every token of every document is predicted exactly once (as in training's
validation, a window starts without the context before it). The last, shorter window is evaluated
at its own length. Bits per byte = the summed loss in nats / ln 2 / the UTF-8 bytes of the predicted
tokens (the byte-level tokenizer's table; the end-of-document token counts 0): over a whole folder
the bytes counted are the pack stage's recorded bytes (`bytes_packed`, checked by the tests).

The folder must be packed with the run's tokenizer (the sha256 of the manifests; for an imported
run, of the tokenizer.json import copied from the model's folder; one imported without it is not
checked, and says so). One process, on the GPU when there is one;
memory: the model and one micro-batch. Deterministic: no sampling; other micro-batches change the loss only by float rounding.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterator

import numpy as np
import torch

from crawlmill.files import as_path, sha256_file
from crawlmill.shards.manifest import tokenizer_folder

from .compat import causal_mask, device_scope, use_cuda
from .data import open_folders, token_bytes  # open_folders checks every blended shard (check_counts)
from .run_model import load_run_model, one_process_model_parallel, run_model_config, run_tokenizer_entry

LN2 = math.log(2.0)


def windows(documents: Iterator[np.ndarray], eod: int, length: int) -> Iterator[np.ndarray]:
    """The stream of documents, after one `eod`, as windows of at most length + 1 tokens that share
    their boundary token; the last may be shorter (at least 2 tokens)."""
    buffer = np.array([eod], dtype=np.int64)
    for document in documents:
        buffer = np.concatenate([buffer, np.asarray(document, dtype=np.int64)])
        while len(buffer) >= length + 1:
            yield buffer[: length + 1]
            buffer = buffer[length:]
    if len(buffer) >= 2:
        yield buffer


def _documents(folder: Any, prefixes: list[str], counted: list[int]) -> Iterator[np.ndarray]:
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    for prefix in prefixes:
        dataset = IndexedDataset(str(folder / prefix))
        for index in range(len(dataset)):
            counted[0] += 1
            yield dataset[index]


def _run_tokenizer(run: str, info: dict[str, Any]) -> str | None:
    """The sha256 of the tokenizer the run's shards were packed with (or the imported model's);
    None for a run with neither."""
    found = run_tokenizer_entry(run, info)
    return found[0]["sha256"] if found else None


def _packed_with(folder: str, run_tokenizer: str | None) -> tuple[Any, dict[str, Any]]:
    """The folder's shards and tokenizer entry; a ValueError when it was packed with another tokenizer than the run's."""
    (shards,) = open_folders([folder])
    entry = shards.manifest["tokenizer"]
    if run_tokenizer is not None and entry["sha256"] != run_tokenizer:
        raise ValueError(f"{folder}: packed with another tokenizer (sha256 {entry['sha256'][:12]}…) than the run's ({run_tokenizer[:12]}…): its tokens mean other text to this model")
    return shards, entry


def evaluate_folder(model: Any, folder: str, seq_length: int, vocab: int, run_tokenizer: str | None, micro_batch: int = 4,
                    max_tokens: int | None = None, progress: Callable[[int], None] | None = None, tokenizer: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Loss and bits per byte of `model` on one shard folder (module docstring); `max_tokens`: stop
    once that many tokens are predicted (a sample: the windows from the start); `progress(n)` is
    called with the tokens of each micro-batch; `tokenizer`: the tokenizer folder when it moved
    since packing (for the bytes; its tokenizer.json must be the manifest's)."""
    shards, entry = _packed_with(folder, run_tokenizer)
    if tokenizer is not None and not (as_path(tokenizer) / "tokenizer.json").is_file():
        raise FileNotFoundError(f"--tokenizer {tokenizer}: no tokenizer.json there")
    if tokenizer is not None and sha256_file(as_path(tokenizer) / "tokenizer.json") != entry["sha256"]:
        raise ValueError(f"--tokenizer {tokenizer}: its tokenizer.json is not the one {folder} was packed with (the manifest's sha256)")
    table, no_bytes = token_bytes(tokenizer or tokenizer_folder(shards.manifest, folder), int(entry["eod_id"]), entry["sha256"])
    device = next(model.parameters()).device
    prefixes = list(shards.manifest["blend"]["prefixes"])
    documents, started = [0], time.perf_counter()
    loss = 0.0
    tokens = byte_count = sequences = 0

    def run(batch: list[np.ndarray]) -> None:
        nonlocal loss, tokens, byte_count, sequences
        ids = torch.as_tensor(np.stack(batch), device=device)
        if int(ids.max()) >= vocab:
            raise ValueError(f"{folder}: token id {int(ids.max())} is outside the model's vocabulary of {vocab}")
        inputs, labels = ids[:, :-1], ids[:, 1:]
        positions = torch.arange(inputs.shape[1], device=device).expand_as(inputs)
        with torch.no_grad(), device_scope():
            losses = model(inputs, positions, causal_mask(inputs.shape[1], device), labels=labels).double()
        loss += float(losses.sum())
        tokens += labels.numel()
        sequences += len(batch)
        if table is not None:
            byte_count += int(table[labels.cpu().numpy()].sum())
        if progress is not None:
            progress(labels.numel())

    model.eval()
    pending: list[np.ndarray] = []
    complete = True
    for window in windows(_documents(shards.path, prefixes, documents), int(entry["eod_id"]), seq_length):
        if max_tokens is not None and tokens + sum(len(w) - 1 for w in pending) >= max_tokens:
            complete = False
            break
        if pending and len(window) != len(pending[0]):  # the last, shorter window: a batch of its own
            run(pending)
            pending = []
        pending.append(window)
        if len(pending) == micro_batch:
            run(pending)
            pending = []
    if pending:
        run(pending)
    if tokens == 0:
        raise ValueError(f"{folder}: no tokens to evaluate (its shards hold no document)")
    result: dict[str, Any] = {
        "data": folder, "documents": documents[0], "tokens": tokens, "sequences": sequences, "loss": loss / max(tokens, 1),
        "bytes": byte_count if table is not None else None, "bpb": loss / LN2 / byte_count if table is not None and byte_count else None,
        "complete": complete, "tokenizer_checked": run_tokenizer is not None, "seconds": round(time.perf_counter() - started, 3),
    }  # fmt: skip
    if table is None:
        result["bpb_unavailable"] = no_bytes  # the tokenizer moved, or is not byte-level
    entries = [s for s in shards.manifest["shards"] if s["prefix"] in prefixes]
    if complete and all(isinstance(s.get("bytes"), int) for s in entries):  # older pack manifests and adopted shards of a non-byte-level tokenizer have none
        result["bytes_packed"] = sum(s["bytes"] for s in entries)
    return result


def evaluate_run(run: str, data: list[str], checkpoint: str | None = None, micro_batch: int = 4, max_tokens: int | None = None,
                 progress: Callable[[str, int], None] | None = None, tokenizer: str | None = None) -> dict[str, Any]:  # fmt: skip
    """{"run", "checkpoint", "step", "results": [evaluate_folder's, one per folder]}; `progress(folder, n)`."""
    if not data:
        raise ValueError("--data: give at least one shard folder (`crawlmill pack` output)")
    if micro_batch < 1 or (max_tokens is not None and max_tokens < 1):
        raise ValueError("--micro-batch and --max-tokens must be positive")
    model_config, vocab, info = run_model_config(run)
    run_tokenizer = _run_tokenizer(run, info)
    for path in data:  # every folder checked before the first is evaluated (that can take hours)
        _packed_with(path, run_tokenizer)
    if not use_cuda():  # bf16 matmuls on CPU are slow where they exist: the weights are read into fp32
        info["config"]["precision"] = "fp32"
    with one_process_model_parallel():
        model, folder, step = load_run_model(run, checkpoint, info)
        results = []
        for path in data:
            report = (lambda n, path=path: progress(path, n)) if progress is not None else None
            results.append(evaluate_folder(model, path, model_config.seq_length, vocab, run_tokenizer, micro_batch, max_tokens, report, tokenizer))
    return {"run": run, "checkpoint": str(folder), "step": step, "results": results}
