"""The pack output's `manifest.json`: what the shards hold, where every token came from, the blend.

    {
      "format": "crawlmill-pack/1",
      "megatron": {"index": "MMIDIDX", "version": 1, "dtype": "int32", "dtype_code": 4, "eod_appended": true, ...},
      "tokenizer": {"path", "sha256" (of tokenizer.json), "vocab_size", "padded_vocab_size", "padded_from", "eod_id", "eod_token"},
      "inputs": ["out/dedup/part-00000.parquet", ...],        # "input" numbers below index this list
      "shard_tokens": ..., "shards_count": ..., "documents": ..., "tokens": ...,
      "counts": {"in": ..., "packed": ..., "dropped": {"empty_tokens": ...}},
      "by_dump" / "by_lang": {label: {"documents", "tokens"}}, "by_domain": the top DOMAINS_IN_MANIFEST
      domains by tokens plus "(other domains)"; "domains": how many; every domain is in
      domains.parquet (domains.py),
      "shards": [{"prefix": "shard-00000", "documents", "tokens", "files": {"bin"|"idx"|"docs.parquet": {"name", "bytes", "sha256"}},
                  "source": {"first": {"input", "row", "id"}, "last": {...}, "ranges": [{"input", "rows": [start, end)}]},
                  "by_dump", "by_lang"}],
      "blend": {"method": "tokens", "prefixes": [...], "weights": [...], "data_path": [w, prefix, ...], "mixture": null}
    }

Provenance: token t of shard S lies in document d = the sequence whose pointer range holds it (the
.idx); row d of `S.docs.parquet` names its input part, row, id, url and WARC file / offset /
record id (`locate_token`).

The blend: with no remix stage yet, one prefix per shard weighted by its token count (Megatron
normalises weights), i.e. every token sampled equally often. Prefixes are relative to the shard
folder (`megatron_blend` makes them absolute). A remix mixture (weights per domain or language)
will fill "mixture" and replace "weights" (method "mixture"); the per-shard breakdowns and
`*.docs.parquet` give the composition that needs.

Written by `crawlmill pack` (stage.py); read it with `crawlmill shards inspect out/shards --json`,
`megatron_blend("out/shards")` or `locate_token("out/shards", shard, token)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from .mmidx import CODE_OF
from .tokenizer import TokenizerInfo

MANIFEST = "manifest.json"
DOMAINS_IN_MANIFEST = 1000
FORMAT = "crawlmill-pack/1"
OTHER_DOMAINS = "(other domains)"


def merge_breakdowns(parts: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        for label, counts in part.items():
            entry = out.setdefault(label, {"documents": 0, "tokens": 0})
            entry["documents"] += counts["documents"]
            entry["tokens"] += counts["tokens"]
    return dict(sorted(out.items()))


def build_manifest(
    tokenizer: TokenizerInfo,
    inputs: list[str],
    shard_tokens: int,
    part_markers: list[dict[str, Any]],
    shard_markers: list[dict[str, Any]],
    domains: dict[str, Any],
) -> dict[str, Any]:
    """The manifest; `domains` is domains.finish_domains' summary (top domains and totals)."""
    dropped: dict[str, int] = {}
    for marker in part_markers:
        for reason, n in marker["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
    breakdown = {key: merge_breakdowns([m["breakdown"][key] for m in part_markers]) for key in ("dump", "lang")}
    top = {row["domain"]: {"documents": row["documents"], "tokens": row["tokens"]} for row in domains["top"]}
    if domains["domains"] > len(top):
        top[OTHER_DOMAINS] = {
            "documents": domains["documents"] - sum(c["documents"] for c in top.values()),
            "tokens": domains["tokens"] - sum(c["tokens"] for c in top.values()),
            "domains": domains["domains"] - len(top),
        }
    prefixes = [s["prefix"] for s in shard_markers]
    weights = [s["tokens"] for s in shard_markers]
    return {
        "format": FORMAT,
        "megatron": {
            "index": "MMIDIDX",
            "version": 1,
            "dtype": tokenizer.dtype,
            "dtype_code": CODE_OF[tokenizer.dtype],
            "level": "document",  # one sequence per document, as preprocess_data.py without --split-sentences
            "eod_appended": True,
        },
        "tokenizer": {k: v for k, v in tokenizer.to_json().items() if k not in ("dtype", "fast_encode_unsupported")},
        "inputs": inputs,
        "shard_tokens": shard_tokens,
        "shards_count": len(shard_markers),
        "documents": sum(s["documents"] for s in shard_markers),
        "tokens": sum(s["tokens"] for s in shard_markers),
        "counts": {
            "in": sum(m["in"] for m in part_markers),
            "packed": sum(m["kept"] for m in part_markers),
            "dropped": dict(sorted(dropped.items())),
        },
        "by_dump": breakdown["dump"],
        "by_lang": breakdown["lang"],
        "domains": domains["domains"],
        "by_domain": top,
        "shards": shard_markers,
        "blend": {
            "method": "tokens",
            "note": "no remix stage yet: one prefix per shard weighted by its token count (every token equally likely); "
            "prefixes are relative to this folder",
            "prefixes": prefixes,
            "weights": weights,
            "data_path": [x for w, p in zip(weights, prefixes) for x in (str(w), p)],
            "mixture": None,
        },
    }


def load_manifest(shard_dir: str | Path) -> dict[str, Any] | None:
    path = Path(shard_dir) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def megatron_blend(shard_dir: str | Path) -> tuple[list[str], list[float]]:
    """The manifest's blend as BlendedMegatronDatasetConfig(blend=...) takes it: absolute prefixes, weights."""
    manifest = load_manifest(shard_dir)
    if manifest is None:
        raise FileNotFoundError(f"{shard_dir}: no {MANIFEST}")
    root = Path(shard_dir).resolve()
    blend = manifest["blend"]
    return [str(root / p) for p in blend["prefixes"]], [float(w) for w in blend["weights"]]


def locate_token(shard_dir: str | Path, shard: int, token: int) -> dict[str, Any]:
    """The source document of token number `token` of shard `shard`: its row of the shard's docs table
    (input part path, row, id, url, dump, lang, domain, warc_file, warc_offset, warc_record_id) plus
    the document number and the token's offset within the document."""
    import numpy as np

    from .mmidx import read_index

    shard_dir = Path(shard_dir)
    manifest = load_manifest(shard_dir)
    entry = manifest["shards"][shard] if manifest else {"prefix": f"shard-{shard:05d}"}
    index = read_index(shard_dir / f"{entry['prefix']}.idx")
    ends = np.cumsum(np.asarray(index.lengths, dtype=np.int64))
    if not 0 <= token < (int(ends[-1]) if len(ends) else 0):
        raise IndexError(f"{entry['prefix']} has {int(ends[-1]) if len(ends) else 0} tokens; no token {token}")
    document = int(np.searchsorted(ends, token, side="right"))
    row = pq.read_table(shard_dir / f"{entry['prefix']}.docs.parquet").slice(document, 1).to_pylist()[0]
    if manifest:
        row["input_path"] = manifest["inputs"][row["input"]]
    start = int(ends[document - 1]) if document else 0
    return {**row, "document": document, "offset_in_document": token - start}
