"""The pack output's `manifest.json`: what the shards hold, where every token came from, the blend.

    {
      "format": "crawlmill-pack/1",
      "megatron": {"index": "MMIDIDX", "version": 1, "dtype": "int32", "dtype_code": 4, "eod_appended": true, ...},
      "tokenizer": {"path", "sha256" (of tokenizer.json), "vocab_size", "padded_vocab_size", "padded_from", "eod_id", "eod_token"},
      "inputs": ["out/dedup/part-00000.parquet", ...],        # "input" numbers below index this list
      "shard_tokens": ..., "shards_count": ..., "documents": ..., "tokens": ..., "bytes": ...,
      "counts": {"in": ..., "packed": ..., "dropped": {"empty_tokens": ...}, "quarantined": ... (if any)},
      "by_dump" / "by_lang": {label: {"documents", "tokens", "bytes"}}, "by_domain": the top
      DOMAINS_IN_MANIFEST domains by tokens plus "(other domains)"; "domains": how many; every
      domain is in domains.parquet (domains.py),
      "shards": [{"prefix": "shard-00000", "documents", "tokens", "bytes",
                  "files": {"bin"|"idx"|"docs.parquet": {"name", "bytes" (the file's size), "sha256"}},
                  "source": {"first": {"input", "row", "id"}, "last": {...}, "ranges": [{"input", "rows": [start, end)}]},
                  "by_dump", "by_lang"}],
      "blend": {"method": "tokens", "prefixes": [...], "weights": [...], "data_path": [w, prefix, ...], "mixture": null}
    }

"bytes" (beside documents and tokens) is the documents' text in UTF-8 bytes (EOD is no text), the
sum of docs.parquet's `bytes` column: the denominator of exact bits per byte, with the per-token
table of crawlmill.shards.tokenbytes. The format stays "crawlmill-pack/1": these keys were added
beside the old ones, and a reader finds them missing in a manifest written before (no key changed
meaning).

Provenance: token t of shard S lies in document d = the sequence whose pointer range holds it (the
.idx); row d of `S.docs.parquet` names its input part, row, id, url and WARC file / offset /
record id (`locate_token`).

The blend: for any input but remix output, one prefix per shard weighted by its token count
(Megatron normalises weights), i.e. every token sampled equally often ("method": "tokens",
"mixture": null). For a remix output folder the shards are per group (`<group>-00000`, ...) and
the blend is the remix mixture: each group's share spread over its shards by tokens, with
"mixture" filled (per group: share, target, documents, tokens, epochs, shards; mixture.py).
Prefixes are relative to the shard folder (`megatron_blend` makes them absolute).

Written by `crawlmill pack` (stage.py); read it with `crawlmill shards inspect out/shards --json`,
or `megatron_blend("out/shards")` / `locate_token("out/shards", shard, token)` from
`crawlmill.shards.manifest` (the shard format's package, which training reads without the pipeline).
"""

from __future__ import annotations

from typing import Any

from crawlmill.shards.manifest import FORMAT, MANIFEST  # noqa: F401 - MANIFEST re-exported for the stage
from crawlmill.shards.mmidx import CODE_OF
from .domains import COUNTS
from .tokenizer import TokenizerInfo

DOMAINS_IN_MANIFEST = 1000
OTHER_DOMAINS = "(other domains)"


def merge_breakdowns(parts: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for part in parts:
        for label, counts in part.items():
            entry = out.setdefault(label, dict.fromkeys(COUNTS, 0))
            for key in COUNTS:
                entry[key] += counts[key]
    return dict(sorted(out.items()))


def build_manifest(
    tokenizer: TokenizerInfo,
    inputs: list[str],
    shard_tokens: int,
    part_markers: list[dict[str, Any]],
    shard_markers: list[dict[str, Any]],
    domains: dict[str, Any],
    blend: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest; `domains` is domains.finish_domains' summary (top domains and totals);
    `blend` replaces the token-weighted blend (a remix input's mixture, mixture.py)."""
    dropped: dict[str, int] = {}
    for marker in part_markers:
        for reason, n in marker["dropped"].items():
            dropped[reason] = dropped.get(reason, 0) + n
    breakdown = {key: merge_breakdowns([m["breakdown"][key] for m in part_markers]) for key in ("dump", "lang")}
    top = {row["domain"]: {key: row[key] for key in COUNTS} for row in domains["top"]}
    if domains["domains"] > len(top):
        top[OTHER_DOMAINS] = {
            **{key: domains[key] - sum(c[key] for c in top.values()) for key in COUNTS},
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
        "bytes": sum(s["bytes"] for s in shard_markers),
        "counts": {
            "in": sum(m["in"] for m in part_markers),
            "packed": sum(m["kept"] for m in part_markers),
            "dropped": dict(sorted(dropped.items())),
            # only when there are any (rows without id or text), so that other manifests keep their bytes
            **({"quarantined": quarantined} if (quarantined := sum(m["quarantined"] for m in part_markers)) else {}),
        },
        "by_dump": breakdown["dump"],
        "by_lang": breakdown["lang"],
        "domains": domains["domains"],
        "by_domain": top,
        "shards": shard_markers,
        "blend": blend
        or {
            "method": "tokens",
            "note": "no remix stage yet: one prefix per shard weighted by its token count (every token equally likely); "
            "prefixes are relative to this folder",
            "prefixes": prefixes,
            "weights": weights,
            "data_path": [x for w, p in zip(weights, prefixes) for x in (str(w), p)],
            "mixture": None,
        },
    }
