"""Adopt Megatron shards made elsewhere: check a folder of plain `.bin`/`.idx` pairs (Megatron-LM's
`tools/preprocess_data.py`, Megatron-Core's `IndexedDatasetBuilder`) against a tokenizer and write
the `manifest.json` pack would have written, so that `crawlmill train --data DIR`, `crawlmill eval`
and `crawlmill shards verify|inspect|stats|sample` take the folder.

    crawlmill shards adopt data/megatron --tokenizer TOKENIZER_DIR [--eod-id N] [--weights tokens|equal]

    from crawlmill.shards.adopt import adopt_shards
    adoption = adopt_shards("data/megatron", "TOKENIZER_DIR")   # .manifest (written), .warnings

The tokenizer is read by pack's own loader (pipeline/pack/tokenizer.py, imported when called: this
is the one writer in crawlmill.shards, the readers still import nothing of the pipeline), so the
manifest's tokenizer block (sha256 of tokenizer.json, vocabulary, padded vocabulary, EOD) is the
one pack would write. A tokenizer.json file stands for its folder: training, eval and `sample
--decode` read `<tokenizer.path>/tokenizer.json`.

Checked before anything is written, each refusal a ShardError / ValueError naming the file: every
`.idx` against itself and its `.bin` (mmidx.check_index), one sequence per document (GPT's layout;
sentence-level or multimodal shards are refused), one token dtype, no shard without tokens, and in
one streaming pass over each `.bin` (mmidx.scan_tokens: read once) every token id below the
vocabulary, the `.bin`'s sha256, each document's first and last token, and the token counts that
give the text bytes. Documents not ending with the EOD are counted and warned of, not refused
(preprocess_data.py's --append-eod is optional): `megatron.eod_appended` records it.

Text bytes ("bytes", what `crawlmill eval` compares its count with): there is no docs.parquet, so
they come from the tokenizer's bytes per token (shards.tokenbytes: exact for byte-level BPE, the
EOD 0), as training's bits per byte does. A special token opening documents (a BOS a tokenizer's
template added) is no text: it is left out of "bytes" and warned of, since training's table would
count its spelling. For a tokenizer that is not byte-level no bytes are recorded (training then
reports no bits per byte, and says why).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crawlmill.files import (
    AnyPath,
    as_path,
    atomic_write_json,
    file_size,
    is_remote,
    list_files,
    resolved,
    sha256_file,
)
from crawlmill.local_cache import local_copy

from .manifest import FORMAT, MANIFEST
from .mmidx import CHUNK, CODE_OF, ShardError, check_index, read_index, scan_tokens

WEIGHTS = ("tokens", "equal")
BLEND_NOTES = {
    "tokens": "one prefix per shard weighted by its token count (every token equally likely); prefixes are relative to this folder",
    "equal": "one prefix per shard, each weighted equally (a small shard's tokens are drawn more often); prefixes are relative to this folder",
}


@dataclass
class Adoption:
    """What adopt_shards wrote (`manifest`, at `path`) and what it warns of."""

    path: str
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def find_shards(folder: AnyPath) -> tuple[list[AnyPath], list[str]]:
    """The folder's shard prefixes, sorted, and notes on shards in its subfolders (left out: each
    folder is adopted on its own). ValueError for a folder without shards, a `.bin` without its
    `.idx` or the reverse."""
    def shard_files(pattern: str) -> list[AnyPath]:
        return [p for suffix in ("idx", "bin") for p in list_files(folder, f"{pattern}.{suffix}")]

    top = shard_files("*")
    root = str(folder).rstrip("/")  # a URL may end with one
    nested = sorted({str(p.parent) for p in shard_files("**/*") if str(p.parent).rstrip("/") != root})
    if not top and nested:
        raise ValueError(
            f"{folder}: no .bin/.idx shards in the folder itself, only in its subfolders ({', '.join(nested[:5])}"
            f"{', ...' if len(nested) > 5 else ''}): adopt each of them (`crawlmill shards adopt {nested[0]} --tokenizer TOK`) "
            "and give training several --data folders"
        )
    if not top:
        raise ValueError(f"{folder}: no .bin/.idx shards to adopt")
    names = {(p.name.rsplit(".", 1)[0], p.name.rsplit(".", 1)[1]) for p in top}
    unpaired = sorted(f"{name}.{kind}" for name, kind in names if (name, "bin" if kind == "idx" else "idx") not in names)
    if unpaired:
        raise ValueError(f"{folder}: {', '.join(unpaired[:5])} without {'its pair' if len(unpaired) == 1 else 'their pairs'} (every shard is a .bin and an .idx)")
    notes = [f"shards in subfolders are not adopted with {folder}: {', '.join(nested[:5])} (adopt each folder on its own)"] if nested else []
    return [folder / name for name in sorted({name for name, _ in names})], notes


def load_tokenizer(tokenizer: str, eod_id: int | None = None, eod_token: str | None = None, padded_vocab_size: int | None = None) -> tuple[Any, str]:
    """Pack's TokenizerInfo for a tokenizer folder or its tokenizer.json, with the EOD given by id or
    text (else tokenizer_config.json's eos_token); and where the EOD came from."""
    from tokenizers import Tokenizer

    from crawlmill.pipeline.pack.tokenizer import TokenizerError, inspect_tokenizer_dir  # pack's loader: the same tokenizer block

    path = as_path(tokenizer)
    if not path.is_dir() and path.is_file():
        if path.name != "tokenizer.json":  # readers open <path>/tokenizer.json: another name would not be found
            raise TokenizerError(f"{tokenizer}: give a tokenizer folder, or a file named tokenizer.json (training reads the folder's tokenizer.json)")
        path = path.parent
    folder = resolved(path)  # training may run from another working folder
    source = "tokenizer_config.json's eos_token"
    if eod_id is not None:
        local = path / "tokenizer.json"
        text = Tokenizer.from_file(str(local_copy(local) if is_remote(local) else local)).id_to_token(eod_id) if local.is_file() else None
        if local.is_file() and text is None:
            raise TokenizerError(f"--eod-id {eod_id}: no such token in {local}")
        if eod_token is not None and text is not None and text != eod_token:
            raise TokenizerError(f"--eod-id {eod_id} is {text!r}, not --eod-token {eod_token!r}")
        eod_token, source = text, "--eod-id"
    elif eod_token is not None:
        source = "--eod-token"
    info = inspect_tokenizer_dir(folder, eod_token, padded_vocab_size)
    if eod_id is not None and info.eod_id != eod_id:
        raise TokenizerError(f"--eod-id {eod_id}: its text {eod_token!r} is token {info.eod_id} in {folder}/tokenizer.json")
    return info, source


class _Picker:
    """Token ids at given positions of a .bin, taken from its chunks as they stream by: the positions
    come in sorted blocks (`blocks`), so memory stays at one block whatever the shard's size."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self.blocks, self.pending = blocks, np.zeros(0, np.int64)

    def take(self, chunk: np.ndarray, position: int) -> np.ndarray:
        taken, end = [], position + len(chunk)
        while True:
            if not len(self.pending):
                block = next(self.blocks, None)
                if block is None:
                    break
                self.pending = block
                continue
            cut = int(np.searchsorted(self.pending, end))
            taken.append(chunk[self.pending[:cut] - position])
            self.pending = self.pending[cut:]
            if len(self.pending):  # the rest lies in later chunks
                break
        return np.concatenate(taken) if taken else np.zeros(0, chunk.dtype)


def _positions(lengths: np.ndarray, last: bool) -> Iterator[np.ndarray]:
    """The first (or last) token's position of every non-empty document, in blocks of CHUNK documents."""
    base = 0
    for start in range(0, len(lengths), CHUNK):
        block = np.asarray(lengths[start : start + CHUNK], dtype=np.int64)
        ends = base + np.cumsum(block)
        yield (ends - 1 if last else ends - block)[block > 0]
        base = int(ends[-1])


def _special_ids(tokenizer_json: AnyPath) -> dict[int, str]:
    local = local_copy(tokenizer_json) if is_remote(tokenizer_json) else tokenizer_json
    spec = json.loads(local.read_text(encoding="utf-8"))
    return {t["id"]: t["content"] for t in spec.get("added_tokens", []) if t.get("special")}


def _byte_table(tokenizer_json: AnyPath, eod: int, vocab: int) -> tuple[np.ndarray | None, str]:
    """tokenbytes' bytes per token id, sized to the vocabulary; (None, why) when they would not be exact."""
    from .tokenbytes import TokenBytesError, token_byte_lengths

    try:
        table = token_byte_lengths(local_copy(tokenizer_json) if is_remote(tokenizer_json) else tokenizer_json, eod_id=eod)
    except TokenBytesError as exc:
        return None, str(exc)
    return np.pad(table, (0, max(0, vocab - len(table))))[:vocab], ""


def _file(path: AnyPath, sha256: str) -> dict[str, Any]:
    return {"name": path.name, "bytes": file_size(path), "sha256": sha256}


def _check_structure(prefix: AnyPath) -> tuple[Any, int]:
    """The shard's validated index and token count; ShardError for what GPT training cannot read."""
    idx_path, bin_path = prefix.with_name(prefix.name + ".idx"), prefix.with_name(prefix.name + ".bin")
    index = read_index(idx_path)
    tokens = check_index(index, file_size(bin_path), bin_path)
    if index.multimodal:
        raise ShardError(idx_path, "a multimodal index (sequence modes): not text shards for GPT training")
    if index.sequence_count != index.documents:
        empty = int(np.count_nonzero(np.diff(np.asarray(index.document_indices)) == 0))
        why = f"{empty:,} document(s) of no sequence (an empty text)" if empty else "several sequences per document (preprocess_data.py --split-sentences)"
        raise ShardError(idx_path, f"{index.sequence_count:,} sequences for {index.documents:,} documents: {why}; GPT training reads one sequence per document: preprocess without --split-sentences, and leave empty texts out")
    if tokens == 0:
        raise ShardError(bin_path, "holds no tokens: nothing to train on (remove the shard)")
    return index, tokens


def _scan(prefix: AnyPath, index: Any, tokens: int, info: Any, table: np.ndarray | None, specials: dict[int, str]) -> dict[str, Any]:
    """One pass over the shard's .bin: ids below the vocabulary, sha256, first and last tokens of its
    documents, text bytes; its manifest entry (with the counts the warnings need)."""
    bin_path = prefix.with_name(prefix.name + ".bin")
    vocab = info.vocab_size
    counts = np.zeros(vocab, np.int64) if table is not None else None
    firsts, lasts = np.zeros(vocab, np.int64), np.zeros(vocab, np.int64)
    first, last = _Picker(_positions(index.lengths, False)), _Picker(_positions(index.lengths, True))

    def visit(chunk: np.ndarray, position: int) -> None:
        firsts[:] += np.bincount(first.take(chunk, position), minlength=vocab)
        lasts[:] += np.bincount(last.take(chunk, position), minlength=vocab)

    digest = hashlib.sha256()
    scan_tokens(bin_path, index.dtype, vocab, counts=counts, digest=digest, visit=visit)
    empty = index.documents - int(lasts.sum())
    opening = {int(i): int(firsts[i]) for i in specials if i != info.eod_id and i < vocab and firsts[i]}
    entry: dict[str, Any] = {"prefix": prefix.name, "documents": index.documents, "tokens": tokens}
    if table is not None:  # the text the tokens spell; an opening special token (a template's BOS) is none
        entry["bytes"] = int(counts @ table) - sum(int(table[i]) * n for i, n in opening.items())
    entry["files"] = {"bin": _file(bin_path, digest.hexdigest()), "idx": _file(prefix.with_name(prefix.name + ".idx"), sha256_file(prefix.with_name(prefix.name + ".idx")))}
    entry["documents_without_eod"] = int(index.documents - empty - lasts[info.eod_id])
    return {"entry": entry, "lasts": lasts, "opening": opening, "empty": empty}


def adopt_shards(
    shard_dir: str, tokenizer: str, eod_id: int | None = None, eod_token: str | None = None, weights: str = "tokens",
    padded_vocab_size: int | None = None, overwrite: bool = False, progress: Callable[[str, int, int], None] | None = None,
) -> Adoption:  # fmt: skip
    """Check the Megatron shards of `shard_dir` (a path or URL) and write its manifest.json (module
    docstring); `progress(shard, number, count)` is called before each shard's .bin is read."""
    if weights not in WEIGHTS:
        raise ValueError(f"--weights {weights!r}: choose {' or '.join(WEIGHTS)}")
    folder = as_path(shard_dir)
    if not folder.is_dir():
        raise ValueError(f"{shard_dir}: no such folder")
    if (folder / MANIFEST).is_file() and not overwrite:
        raise ValueError(f"{folder / MANIFEST} exists (`crawlmill shards verify {shard_dir}` checks the folder against it); give --overwrite to replace it")
    prefixes, warnings = find_shards(folder)
    info, eod_from = load_tokenizer(tokenizer, eod_id, eod_token, padded_vocab_size)
    # Every structure first, then the long streaming pass: a damaged shard is named in seconds.
    checked = [_check_structure(prefix) for prefix in prefixes]
    dtypes = sorted({index.dtype.name for index, _ in checked})
    if len(dtypes) > 1:
        kinds = [f"{d}: " + ", ".join(p.name for p, (index, _) in zip(prefixes, checked) if index.dtype.name == d) for d in dtypes]
        raise ValueError(f"{folder}: shards of {len(dtypes)} token dtypes ({'; '.join(kinds)}): adopt each dtype's shards as a folder of its own")
    dtype = np.dtype(dtypes[0])
    if np.iinfo(dtype).max < info.vocab_size - 1:
        warnings.append(f"the shards' {dtype.name} ids reach {np.iinfo(dtype).max:,}, below the tokenizer's {info.vocab_size:,} ids: were they made with another tokenizer?")
    tokenizer_json = as_path(info.path) / "tokenizer.json"
    table, no_bytes = _byte_table(tokenizer_json, info.eod_id, info.vocab_size)
    specials = _special_ids(tokenizer_json)
    scans, lasts = [], np.zeros(info.vocab_size, np.int64)
    for number, (prefix, (index, tokens)) in enumerate(zip(prefixes, checked)):
        if progress is not None:
            progress(prefix.name, number, len(prefixes))
        scan = _scan(prefix, index, tokens, info, table, specials)
        lasts += scan.pop("lasts")  # one total: a vocabulary-sized array per shard would be 0.8 MB each at 100k
        scans.append(scan)
    entries = [s["entry"] for s in scans]
    documents, tokens = sum(e["documents"] for e in entries), sum(e["tokens"] for e in entries)
    without_eod = sum(e["documents_without_eod"] for e in entries)
    empty = sum(s["empty"] for s in scans)
    opening: dict[str, int] = {}
    for scan in scans:
        for token_id, n in scan["opening"].items():
            opening[specials[token_id]] = opening.get(specials[token_id], 0) + n
    adopted: dict[str, Any] = {
        "by": "crawlmill shards adopt",
        "note": "not made by crawlmill pack: Megatron shards written elsewhere, checked and described here; no docs.parquet "
        "(no per-document sources), no per-dump / language / domain counts",
        "tokenizer_given": str(tokenizer),
        "eod_from": eod_from,
        "documents_without_eod": without_eod,
        "empty_documents": empty,
        "special_tokens_opening_documents": opening,
        "bytes_from": "the tokenizer's bytes per token (crawlmill.shards.tokenbytes; the EOD and special tokens opening documents count 0)"
        if table is not None else f"unknown: {no_bytes}",
    }  # fmt: skip
    eod = f"{info.eod_id} ({info.eod_token!r}, from {eod_from})"
    if without_eod:
        common = int(np.argmax(lasts))
        adopted["most_common_last_token"] = {"id": common, "documents": int(lasts[common])}
        hint = f"; {int(lasts[common]):,} end with id {common}: if that is the end-of-document token, adopt again with --eod-id {common} --overwrite" if common != info.eod_id and lasts[common] > documents // 2 else ""
        warnings.append(f"{without_eod:,} of {documents:,} documents do not end with the EOD token {eod} (made without --append-eod?): recorded as eod_appended false; training reads them as they are{hint}")
    if empty:
        warnings.append(f"{empty:,} document(s) hold no tokens (pack never writes one)")
    if opening:
        spelled = sum(n * len(text.encode()) for text, n in opening.items())
        warnings.append(
            f"documents open with special token(s) {', '.join(f'{t!r} x{n:,}' for t, n in opening.items())} (a tokenizer template's BOS?): "
            f"not counted as text bytes here, but training's bits per byte counts their spelling ({spelled:,} bytes in all) as text"
        )
    if table is None:
        warnings.append(f"no text bytes recorded ({no_bytes}); training reports no bits per byte for these shards")
    shard_weights = [e["tokens"] for e in entries] if weights == "tokens" else [1.0] * len(entries)
    names = [e["prefix"] for e in entries]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "adopted": adopted,
        "megatron": {"index": "MMIDIDX", "version": 1, "dtype": dtype.name, "dtype_code": CODE_OF[dtype.name], "level": "document", "eod_appended": without_eod == 0},
        "tokenizer": {k: v for k, v in info.to_json().items() if k not in ("dtype", "fast_encode_unsupported")},
        "inputs": [],
        "shards_count": len(entries),
        "documents": documents,
        "tokens": tokens,
        **({"bytes": sum(e["bytes"] for e in entries)} if table is not None else {}),
        "by_dump": {}, "by_lang": {}, "domains": 0, "by_domain": {},
        "shards": entries,
        "blend": {"method": weights, "note": BLEND_NOTES[weights], "prefixes": names, "weights": shard_weights,
                  "data_path": [x for w, p in zip(shard_weights, names) for x in (str(w), p)], "mixture": None},
    }  # fmt: skip
    atomic_write_json(folder / MANIFEST, manifest)
    return Adoption(str(folder / MANIFEST), manifest, warnings)
