"""Open a folder of Megatron shards (ours, with manifest.json, or any .bin/.idx pairs), inspect and verify it.

    crawlmill shards inspect out/shards [--json]
    crawlmill shards verify out/shards [--vocab-size N]

`open_shards` accepts a pack output folder, a folder of `.idx`/`.bin` pairs without a manifest
(e.g. preprocess_data.py's output), or one shard by prefix, `.idx` or `.bin` path (with the
manifest.json beside it, when there is one: its checksums, tokenizer and sources). Nothing is
loaded whole: headers are validated before mapping (mmidx.read_index), arrays and token files are
walked in fixed-size chunks, so a hostile or damaged shard gives a ShardError naming the file,
in time linear in its size and bounded memory. `inspect` adds the documents' text bytes and bytes
per token from each shard's docs.parquet where pack counted them, else from the manifest's entry
(`crawlmill shards adopt` records the bytes the tokens spell); shards packed before pack counted
them, and foreign shards without a manifest, have none: they are inspected as before.

Any of these may be a URL (`s3://bucket/out/shards`): the manifest and docs tables are read
through crawlmill.files, each `.idx` is copied to the per-machine cache (small; it is mapped),
and each `.bin` is streamed for verify and stats (every byte is needed: its sha256 and token ids),
range-read for sample (only the sampled documents' bytes), and only sized for inspect.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from crawlmill.files import AnyPath, as_path, file_size, is_remote, list_files, parquet_file, sha256_file

from .manifest import MANIFEST, is_count, load_manifest
from .mmidx import CHUNK, ShardError, check_index, read_index, scan_tokens

UNKNOWN_LABEL = "unknown"  # pack's label of a document without a dump or language (pipeline/urls.py UNKNOWN)


@dataclass
class Shard:
    prefix: AnyPath  # path (or URL) without .bin / .idx
    entry: dict[str, Any] | None  # its manifest entry, when there is a manifest

    @property
    def name(self) -> str:
        return self.prefix.name

    def path(self, kind: str) -> AnyPath:
        return self.prefix.with_name(f"{self.prefix.name}.{kind}")


@dataclass
class ShardSet:
    root: AnyPath  # the folder (of the manifest, when there is one)
    shards: list[Shard]
    manifest: dict[str, Any] | None
    single: bool = False  # one shard was asked for, not the folder: the manifest's totals are not its own

    @property
    def label(self) -> str:
        """What was opened, for reports: the folder, or the one shard's prefix."""
        return str(self.shards[0].prefix) if self.single else str(self.root)

    @property
    def vocab_size(self) -> int | None:
        tokenizer = self.manifest.get("tokenizer") if isinstance(self.manifest, dict) else None
        return tokenizer.get("vocab_size") if isinstance(tokenizer, dict) else None


def _glob(folder: AnyPath, pattern: str) -> list[AnyPath]:
    # A URL's folder is listed by crawlmill.files (fresh listing, no temporaries); local as before.
    return list_files(folder, pattern) if is_remote(folder) else list(folder.glob(pattern))


def open_shards(path: str | Path) -> ShardSet:
    """The shards at `path` (see the module docstring); ShardError if there are none or the manifest is unreadable."""
    path = as_path(path)
    if path.is_dir():
        manifest = _read_manifest(path)
        if manifest is not None:
            shards = [Shard(path / entry["prefix"], entry) for entry in manifest["shards"]]
            return ShardSet(path, shards, manifest)
        prefixes = sorted({p.with_suffix("") for p in _glob(path, "*.idx")} | {p.with_suffix("") for p in _glob(path, "*.bin")}, key=str)
        if not prefixes:
            raise ShardError(path, "no manifest.json and no .idx/.bin files: not a shard folder")
        return ShardSet(path, [Shard(p, None) for p in prefixes], None)
    prefix = path.with_suffix("") if path.suffix in (".idx", ".bin") else path
    if not (prefix.with_name(prefix.name + ".idx").exists() or prefix.with_name(prefix.name + ".bin").exists()):
        raise ShardError(path, "no such shard folder, .idx/.bin file or shard prefix")
    # The manifest beside one shard is its folder's: the same tokenizer, checksums and sources as
    # when the folder is opened (a shard it does not list gets no entry; verify says so).
    folder = prefix.parent
    manifest = _read_manifest(folder)
    entry = next((e for e in (manifest or {}).get("shards", []) if folder / e["prefix"] == prefix), None)
    return ShardSet(folder, [Shard(prefix, entry)], manifest, single=True)


def _read_manifest(folder: AnyPath) -> dict[str, Any] | None:
    """The folder's manifest, checked (`_check_manifest`); None when it has none."""
    try:
        manifest = load_manifest(folder)
    except (OSError, ValueError) as exc:
        raise ShardError(folder / MANIFEST, f"unreadable manifest: {exc}") from None
    if manifest is not None:
        _check_manifest(manifest, folder / MANIFEST)
    return manifest


def _check_manifest(manifest: Any, path: AnyPath) -> None:
    """ShardError naming the manifest unless what inspect and verify read of it has the types pack
    writes: a shard list of objects with a prefix, their `files` checksums, `documents` and `tokens`
    counts, the tokenizer's vocab_size and the blend (a damaged or hand-edited manifest would raise
    KeyError or TypeError deep in them)."""

    def bad(problem: str) -> ShardError:
        return ShardError(path, f"not a valid pack manifest: {problem}")

    if not isinstance(manifest, dict):
        raise bad("expected a JSON object")
    if not isinstance(manifest.get("shards"), list):
        raise bad("`shards` is not a list")
    for i, entry in enumerate(manifest["shards"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("prefix"), str) or not entry["prefix"]:
            raise bad(f"shards[{i}] is not an object with a prefix")
        files = entry.get("files", {})
        if not isinstance(files, dict) or not all(isinstance(f, dict) and isinstance(f.get("sha256"), str) for f in files.values()):
            raise bad(f"shards[{i}].files is not an object of files with their sha256")
        for key in ("documents", "tokens"):
            if key in entry and not is_count(entry[key]):
                raise bad(f"shards[{i}].{key} {entry[key]!r} is not a count")
    tokenizer = manifest.get("tokenizer")
    if tokenizer is not None and not isinstance(tokenizer, dict):
        raise bad("`tokenizer` is not an object")
    vocab = (tokenizer or {}).get("vocab_size")
    if vocab is not None and not (is_count(vocab) and vocab >= 1):
        raise bad(f"tokenizer.vocab_size {vocab!r} is not a positive count")
    padded = (tokenizer or {}).get("padded_vocab_size")
    if padded is not None and not (is_count(padded) and padded >= (vocab or 1)):
        # A model sized by it (training does) would have no embedding row for the higher token ids.
        raise bad(f"tokenizer.padded_vocab_size {padded!r} is not a count at least vocab_size {vocab}")
    blend = manifest.get("blend")
    if blend is not None and not isinstance(blend, dict):
        raise bad("`blend` is not an object")


def _size(path: AnyPath) -> int | None:
    try:
        return file_size(path)
    except OSError:
        return None


def _text_bytes(docs: AnyPath) -> int | None:
    """Sum of a docs.parquet's `bytes` column (UTF-8 bytes of the documents' text); None when there is
    no docs.parquet or it was packed before pack counted bytes."""
    if not docs.is_file():
        return None
    try:
        parquet = parquet_file(docs)
        if "bytes" not in parquet.schema_arrow.names:
            return None
        return sum(int(pc.sum(batch.column(0)).as_py() or 0) for batch in parquet.iter_batches(batch_size=CHUNK, columns=["bytes"]))
    except (OSError, ValueError) as exc:
        raise ShardError(docs, f"unreadable: {exc}") from None


def _bytes_per_token(text_bytes: int | None, tokens: int, eods: int) -> float | None:
    # Text tokens only: every pack document ends with one EOD, which stands for no text (adopted
    # shards made without --append-eod: fewer, their manifest entry says how many documents lack one).
    return None if text_bytes is None or tokens <= eods else round(text_bytes / (tokens - eods), 4)


def _eods(entry: dict[str, Any] | None, documents: int) -> int:
    without = (entry or {}).get("documents_without_eod", 0)
    return documents - without if is_count(without) and without <= documents else documents


def inspect_shards(path: str | Path) -> dict[str, Any]:
    """Documents, tokens, dtype and sizes per shard (validated headers), text bytes and bytes per
    token (EOD excluded) where docs.parquet counts them, totals, and the manifest's per-dump /
    language / domain breakdown when there is one (for one shard, only the manifest's tokenizer:
    the breakdowns are the whole folder's)."""
    shard_set = open_shards(path)
    rows, dtypes, eods = [], set(), 0
    for shard in shard_set.shards:
        index = read_index(shard.path("idx"))
        tokens = check_index(index, _size(shard.path("bin")), shard.path("bin"))
        dtypes.add(index.dtype.name)
        text_bytes = _text_bytes(shard.path("docs.parquet"))
        if text_bytes is None and shard.entry and is_count(shard.entry.get("bytes")):
            text_bytes = shard.entry["bytes"]  # adopted shards have no docs.parquet: the bytes their tokens spell (adopt.py)
        eods += _eods(shard.entry, index.documents)
        rows.append(
            {
                "shard": shard.name,
                "documents": index.documents,
                "sequences": index.sequence_count,
                "tokens": tokens,
                "dtype": index.dtype.name,
                "bin_bytes": _size(shard.path("bin")),
                "idx_bytes": index.file_size,
                "text_bytes": text_bytes,
                "bytes_per_token": _bytes_per_token(text_bytes, tokens, _eods(shard.entry, index.documents)),
            }
        )
    manifest = shard_set.manifest or {}
    report: dict[str, Any] = {
        "path": shard_set.label,
        "manifest": bool(shard_set.manifest),
        "shards": rows,
        "documents": sum(r["documents"] for r in rows),
        "tokens": sum(r["tokens"] for r in rows),
        "dtype": ",".join(sorted(dtypes)),
        "bin_bytes": sum(r["bin_bytes"] or 0 for r in rows),
        "idx_bytes": sum(r["idx_bytes"] for r in rows),
        "bytes": sum((r["bin_bytes"] or 0) + r["idx_bytes"] for r in rows),  # of the files
    }
    if rows and all(r["text_bytes"] is not None for r in rows):
        report["text_bytes"] = sum(r["text_bytes"] for r in rows)
        report["bytes_per_token"] = _bytes_per_token(report["text_bytes"], report["tokens"], eods)
    if manifest and shard_set.single:
        report["tokenizer"] = manifest.get("tokenizer")
    elif manifest:  # what the manifest says, as it says it (a key it lacks: None)
        for key in ("tokenizer", "counts", "by_dump", "by_lang", "by_domain", "domains"):
            report[key] = manifest.get(key)
        blend = manifest.get("blend") or {}
        report["blend"] = {k: blend.get(k) for k in ("method", "prefixes", "weights")}
        if blend.get("mixture"):  # shards of a remix output: the mixture per group
            report["mixture"] = blend["mixture"]
        if isinstance(manifest.get("adopted"), dict):  # written by `crawlmill shards adopt`, not by pack
            report["adopted"] = manifest["adopted"]
    return report


def verify_shard(shard: Shard, vocab_size: int | None, counted: dict[str, Any] | None = None) -> int:
    """Check one shard completely; returns its token count; ShardError on the first problem.
    `counted`: gets the text bytes and the per-dump / per-language counts its docs.parquet holds."""
    idx_path, bin_path = shard.path("idx"), shard.path("bin")
    for p in (idx_path, bin_path):
        if not p.is_file():
            raise ShardError(p, "missing")
    entry = shard.entry or {}
    files = entry.get("files", {})
    index = read_index(idx_path)  # structure first: its errors say more than a checksum mismatch
    bin_size = file_size(bin_path)
    tokens = check_index(index, bin_size, bin_path)
    digest = hashlib.sha256() if "bin" in files else None
    scan_tokens(bin_path, index.dtype, vocab_size, digest=digest)
    if digest is not None and digest.hexdigest() != files["bin"]["sha256"]:
        raise ShardError(bin_path, f"sha256 differs from the manifest's ({files['bin']['sha256'][:16]}...)")
    if "idx" in files and sha256_file(idx_path) != files["idx"]["sha256"]:
        raise ShardError(idx_path, f"sha256 differs from the manifest's ({files['idx']['sha256'][:16]}...)")
    if entry:
        if index.documents != entry.get("documents") or tokens != entry.get("tokens"):
            raise ShardError(
                idx_path,
                f"holds {index.documents:,} documents and {tokens:,} tokens, the manifest says "
                f"{entry.get('documents')} and {entry.get('tokens')}",
            )
        if index.sequence_count != index.documents:
            raise ShardError(idx_path, f"{index.sequence_count:,} sequences for {index.documents:,} documents (pack writes one each)")
    if "docs.parquet" in files:
        found = _verify_docs(shard.path("docs.parquet"), files["docs.parquet"]["sha256"], index)
        # The counts a manifest holds beside the tokens (bytes: the denominator of exact bits per
        # byte), each against its rows; keys a manifest of before they were written lacks are skipped.
        for key, value in found.items():
            if key in entry and value is not None and entry[key] != value:
                raise ShardError(shard.path("docs.parquet"), f"its rows give {key} {_shown(value)}, the manifest says {_shown(entry[key])}")
        if counted is not None:
            counted.update(found)
    return tokens


def _shown(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _verify_docs(path: AnyPath, sha256: str, index: Any) -> dict[str, Any]:
    """Check a shard's docs.parquet against its .idx; returns what its rows add up to: `bytes` and
    `by_dump` / `by_lang` ({label: {documents, tokens, bytes}}, as pack counts them), None for a
    column an older pack did not write."""
    if not path.is_file():
        raise ShardError(path, "missing")
    if sha256_file(path) != sha256:
        raise ShardError(path, f"sha256 differs from the manifest's ({sha256[:16]}...)")
    start = 0
    parquet = parquet_file(path)
    names = set(parquet.schema_arrow.names)
    columns = ["tokens"] + [c for c in ("bytes", "dump", "lang") if c in names]
    sums: dict[str, dict[str, list[int]]] = {"by_dump": {}, "by_lang": {}}
    total_bytes = 0
    try:
        for batch in parquet.iter_batches(batch_size=CHUNK, columns=columns):
            lengths = batch.column("tokens").to_numpy()
            if (lengths != index.lengths[start : start + len(lengths)]).any():
                raise ShardError(path, f"token counts disagree with the .idx from document {start:,} on")
            start += len(lengths)
            text_bytes = batch.column("bytes").to_numpy() if "bytes" in names else None
            total_bytes += int(text_bytes.sum()) if text_bytes is not None else 0
            for key, column in (("by_dump", "dump"), ("by_lang", "lang")):
                if column in names and text_bytes is not None:
                    _sum_by_label(sums[key], batch.column(column), batch.column("tokens"), batch.column("bytes"))
    except (OSError, ValueError) as exc:
        if isinstance(exc, ShardError):
            raise
        raise ShardError(path, f"unreadable: {exc}") from None
    if start != index.documents:
        raise ShardError(path, f"{start:,} rows for {index.documents:,} documents")
    found: dict[str, Any] = {"bytes": total_bytes if "bytes" in names else None}
    for key, column in (("by_dump", "dump"), ("by_lang", "lang")):
        has = column in names and "bytes" in names
        found[key] = {label: {"documents": d, "tokens": t, "bytes": b} for label, (d, t, b) in sorted(sums[key].items())} if has else None
    return found


def _sum_by_label(into: dict[str, list[int]], labels: Any, tokens: Any, text_bytes: Any) -> None:
    """Add a batch's documents, tokens and bytes per label (null or empty: UNKNOWN_LABEL) to `into`."""
    labels = pc.if_else(pc.fill_null(pc.equal(labels, ""), True), UNKNOWN_LABEL, labels)
    grouped = pa.table({"label": labels, "tokens": tokens, "bytes": text_bytes}).group_by("label").aggregate(
        [("tokens", "count"), ("tokens", "sum"), ("bytes", "sum")])
    for label, d, t, b in zip(*(grouped.column(c).to_pylist() for c in ("label", "tokens_count", "tokens_sum", "bytes_sum"))):
        entry = into.setdefault(label, [0, 0, 0])
        entry[0], entry[1], entry[2] = entry[0] + d, entry[1] + (t or 0), entry[2] + (b or 0)


def _add_up(totals: dict[str, Any], counted: dict[str, Any]) -> None:
    """Add one shard's docs.parquet counts to the folder's; a key a shard cannot give becomes None."""
    for key in totals:
        value = counted.get(key)
        if value is None or totals[key] is None:
            totals[key] = None
        elif key == "bytes":
            totals[key] += value
        else:
            for label, row in value.items():
                into = totals[key].setdefault(label, {"documents": 0, "tokens": 0, "bytes": 0})
                for name in into:
                    into[name] += row[name]
    for key in ("by_dump", "by_lang"):
        if totals[key] is not None:
            totals[key] = dict(sorted(totals[key].items()))


def verify_shards(path: str | Path, vocab_size: int | None = None) -> tuple[dict[str, Any], list[str]]:
    """Verify every shard (and the manifest's totals); returns a summary and the problems found
    (each names the file). `vocab_size` defaults to the manifest tokenizer's."""
    shard_set = open_shards(path)
    vocab = vocab_size or shard_set.vocab_size
    problems: list[str] = []
    tokens = 0
    totals: dict[str, Any] = {"bytes": 0, "by_dump": {}, "by_lang": {}}  # None: a shard whose docs.parquet cannot say
    for shard in shard_set.shards:
        counted: dict[str, Any] = {}
        try:
            tokens += verify_shard(shard, vocab, counted)
        except ShardError as exc:
            problems.append(str(exc))
        _add_up(totals, counted)
    manifest = shard_set.manifest
    if manifest and shard_set.single:
        shard = shard_set.shards[0]
        if shard.entry is None:
            problems.append(f"{shard.prefix}: not in {shard_set.root / MANIFEST}")
    elif manifest and not problems:
        if tokens != manifest.get("tokens"):
            problems.append(f"{shard_set.root / MANIFEST}: says {_shown(manifest.get('tokens'))} tokens, the shards hold {tokens:,}")
        for key, value in totals.items():
            if key in manifest and value is not None and manifest[key] != value:
                problems.append(f"{shard_set.root / MANIFEST}: says {key} {_shown(manifest[key])}, the shards' docs.parquet give {_shown(value)}")
        listed = {s.name for s in shard_set.shards}
        extra = sorted(p.stem for p in _glob(shard_set.root, "*.idx") if p.stem not in listed)
        if extra:
            problems.append(f"{shard_set.root}: shard(s) not in the manifest: {', '.join(extra)}")
    summary = {
        "path": shard_set.label,
        "shards": len(shard_set.shards),
        "tokens": tokens,
        "vocab_size": vocab,
        "checksums": bool(manifest) and all(s.entry for s in shard_set.shards),
        "ok": not problems,
    }
    return summary, problems
