"""Pack's accounting check (pipeline/accounting.py): the tokens in the shards equal the tokens of
the packed documents.

Three counts made independently: the `.idx` files (each checked entry by entry against its `.bin`
size, shards.mmidx), the parts' markers (tokens and documents counted while encoding), and the
manifest. Reads only the index arrays, in chunks: memory does not grow with the shards.

    from crawlmill.pipeline.pack.audit import audit_shards
    figures, checks = audit_shards("out/shards")  # checks: [(name, ok, detail), ...]
"""

from __future__ import annotations

from typing import Any

from crawlmill.files import AnyPath, file_size, list_files, read_json
from crawlmill.shards.mmidx import check_index, read_index
from crawlmill.shards.shardset import open_shards

from ..parts import PARTS_DIR


def audit_shards(folder: AnyPath) -> tuple[dict[str, Any], list[tuple[str, bool, str]]]:
    """(figures, checks) of a finished pack folder."""
    shard_set = open_shards(folder)
    manifest = shard_set.manifest or {}
    idx_tokens = idx_documents = 0
    for shard in shard_set.shards:
        index = read_index(shard.path("idx"))
        idx_tokens += check_index(index, file_size(shard.path("bin")), shard.path("bin"))
        idx_documents += index.documents
    markers = [read_json(p) for p in list_files(folder / PARTS_DIR, "part-*.json")]
    part_tokens = sum(int(m.get("counters", {}).get("tokens", 0)) for m in markers)
    part_documents = sum(int(m.get("kept", 0)) for m in markers)
    figures = {
        "shards": len(shard_set.shards), "tokens_in_shards": idx_tokens, "tokens_of_documents": part_tokens,
        "manifest_tokens": manifest.get("tokens"), "documents_in_shards": idx_documents,
        "documents_packed": part_documents, "manifest_documents": manifest.get("documents"),
    }  # fmt: skip
    same_tokens = idx_tokens == part_tokens == manifest.get("tokens")
    same_documents = idx_documents == part_documents == manifest.get("documents")
    return figures, [
        ("tokens", same_tokens, f"{folder}: .idx files {idx_tokens:,} tokens, packed documents {part_tokens:,}, manifest {manifest.get('tokens')}"),
        ("documents", same_documents, f"{folder}: .idx files {idx_documents:,} documents, packed {part_documents:,}, manifest {manifest.get('documents')}"),
    ]
