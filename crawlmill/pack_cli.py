"""`crawlmill pack` and `crawlmill shards inspect|verify|sample|stats`: Megatron shards, made and looked into.

    crawlmill pack out/dedup --tokenizer TOKENIZER_DIR --output out/shards
    crawlmill shards inspect out/shards --json
    crawlmill shards verify out/shards
    crawlmill shards sample out/shards --n 3 --decode
    crawlmill shards stats out/shards --plot stats.png

Registered on the main app by crawlmill/cli.py (`register(app)`). Heavy modules (Ray, numpy,
tokenizers, matplotlib) are imported inside the commands so that `crawlmill --help` stays fast.
Exit status: 0 done, 1 parts failed (pack; rerun to retry them), 2 bad input: a missing or
unfinished input, an unusable tokenizer, a shard that fails verification (the message names the file).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)  # results (tables, JSON, samples) go to stdout

shards_app = typer.Typer(
    help="Look into Megatron shards: inspect, verify, sample, stats.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards inspect out/shards`\n\n"
        "* `crawlmill shards verify out/shards`\n\n"
        "* `crawlmill shards sample out/shards --n 3 --decode`\n\n"
        "* `crawlmill shards stats out/shards --plot stats.png`"
    ),
)
SHARDS_PATH = typer.Argument(..., help="A pack output folder, a folder of .bin/.idx pairs, or one shard's prefix / .idx / .bin.")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False)  # file names may hold [brackets]
    return typer.Exit(2)


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=1, ensure_ascii=False))


def pack(
    inputs: list[Path] = typer.Argument(..., help="Finished stage output folders (Parquet parts), packed in this order."),
    tokenizer: Path = typer.Option(..., "--tokenizer", "-t", help="Hugging Face tokenizer folder (tokenizer.json [+ tokenizer_config.json, crawlmill.json])."),
    output: Path = typer.Option(..., "--output", "-o", help="Shard folder: shard-NNNNN.bin/.idx/.docs.parquet, manifest.json, _stats.json."),
    shard_tokens: Optional[int] = typer.Option(None, "--shard-tokens", help="At most this many tokens per shard (documents are never split)."),
    shard_size_mb: Optional[float] = typer.Option(None, "--shard-size-mb", help="Or: at most this many MiB of .bin per shard (default 1024)."),
    eod_token: Optional[str] = typer.Option(None, "--eod-token", help="End-of-document token (default: tokenizer_config.json's eos_token)."),
    padded_vocab_size: Optional[int] = typer.Option(None, "--padded-vocab-size", help="Model vocabulary size (default: crawlmill.json's, else the vocabulary rounded up to 128)."),
    batch_rows: int = typer.Option(1024, "--batch-rows", help="Documents per tokenizer batch."),
    no_fast_encode: bool = typer.Option(False, "--no-fast-encode", help="Encode with the tokenizers library alone: same ids, slower (for comparison)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address; default: a local Ray started for this command."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", help="CPUs of the local Ray (default: all)."),
    max_in_flight: Optional[int] = typer.Option(None, "--max-in-flight", help="Tasks at once (default: 2 x cluster CPUs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete the output folder first instead of resuming it."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Do not draw the progress bar."),
) -> None:
    """Tokenize documents on Ray and write Megatron-Core IndexedDataset shards (.bin + .idx) with manifest.json."""
    from crawlmill.pipeline.pack.stage import PackConfig, run_pack
    from crawlmill.pipeline.pack.tokenizer import TokenizerError
    from crawlmill.pipeline.stage import RayOptions, StageInputMismatch, reset_output

    config = PackConfig(
        shard_tokens=shard_tokens, shard_size_mb=shard_size_mb, eod_token=eod_token,
        padded_vocab_size=padded_vocab_size, batch_rows=batch_rows, fast_encode=not no_fast_encode,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        if overwrite:
            reset_output(output)
        result = run_pack([str(i) for i in inputs], output, tokenizer, config, RayOptions(address, num_cpus, max_in_flight), progress=not no_progress)
    except (TokenizerError, StageInputMismatch, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    if not result.ok:
        for source, detail in result.failures:
            console.print(f"[red]failed[/red] {escape(source)}: {escape(detail)}")
        console.print(f"{len(result.failures)} task(s) failed; rerun the same command to retry only those.")
        raise typer.Exit(1)
    manifest, stats = result.manifest, result.stats
    seconds = time.perf_counter() - started
    dropped = ", ".join(f"{k} {v:,}" for k, v in stats["dropped"].items()) or "none"
    console.print(
        f"[green]pack done[/green] → {escape(str(output))}: {stats['in']:,} documents in, {manifest['documents']:,} packed "
        f"({manifest['tokens']:,} {manifest['megatron']['dtype']} tokens) into {manifest['shards_count']} shard(s); "
        f"dropped: {dropped}; {seconds:.1f} s, {manifest['tokens'] / max(seconds, 1e-9):,.0f} tokens/s"
    )
    if result.finished_before or result.shards_before:
        console.print(f"({result.finished_before} part(s) and {result.shards_before} shard(s) were already finished and were skipped)")
    reason = result.tokenizer.fast_encode_unsupported if result.tokenizer else None
    console.print("fast encode: " + ("off (--no-fast-encode)" if no_fast_encode else f"off: {reason}" if reason else "on"))


@shards_app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards inspect out/shards`\n\n"
        "* `crawlmill shards inspect out/shards --json`\n\n"
        "* `crawlmill shards inspect data/my_text_document.idx`  (any Megatron .idx)"
    )
)
def inspect(path: Path = SHARDS_PATH, as_json: bool = JSON) -> None:
    """Documents, tokens, dtype and sizes of every shard; per-dump / language / domain token counts."""
    from crawlmill.pipeline.pack.mmidx import ShardError
    from crawlmill.pipeline.pack.shardset import inspect_shards

    try:
        report = inspect_shards(path)
    except ShardError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _print_json(report)
        return
    from rich.table import Table

    table = Table("shard", "documents", "tokens", "dtype", ".bin bytes", ".idx bytes", title=f"{report['path']}")
    for row in report["shards"]:
        table.add_row(row["shard"], f"{row['documents']:,}", f"{row['tokens']:,}", row["dtype"], f"{row['bin_bytes'] or 0:,}", f"{row['idx_bytes']:,}")
    table.add_row("[bold]total", f"[bold]{report['documents']:,}", f"[bold]{report['tokens']:,}", report["dtype"], "", f"{report['bytes']:,} (all)")
    out.print(table)
    for key in ("by_dump", "by_lang", "by_domain"):
        if key in report:
            breakdown = Table(key.replace("by_", ""), "documents", "tokens", "share")
            total = max(report["tokens"], 1)
            for label, counts in sorted(report[key].items(), key=lambda kv: -kv[1]["tokens"])[:20]:
                breakdown.add_row(label, f"{counts['documents']:,}", f"{counts['tokens']:,}", f"{100 * counts['tokens'] / total:.1f}%")
            out.print(breakdown)
    if "tokenizer" in report:
        t = report["tokenizer"]
        out.print(f"tokenizer {t['path']} (sha256 {t['sha256'][:12]}…): vocabulary {t['vocab_size']:,}, padded {t['padded_vocab_size']:,}, EOD {t['eod_id']}")


@shards_app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards verify out/shards`  (exit status 2 and the file and problem on failure)\n\n"
        "* `crawlmill shards verify data/ --vocab-size 50257`  (shards without a manifest)"
    )
)
def verify(
    path: Path = SHARDS_PATH,
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="Token ids must be below this (default: the manifest tokenizer's)."),
    as_json: bool = JSON,
) -> None:
    """Check that every .idx agrees with its .bin (sizes, pointers, counts), token ids are below the
    vocabulary size and checksums match the manifest."""
    from crawlmill.pipeline.pack.mmidx import ShardError
    from crawlmill.pipeline.pack.shardset import verify_shards

    try:
        summary, problems = verify_shards(path, vocab_size)
    except ShardError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _print_json({**summary, "problems": problems})
    for problem in problems:
        console.print(f"[red]error:[/red] {escape(problem)}", highlight=False)
    if problems:
        raise typer.Exit(2)
    if not as_json:
        checks = "structure, token range and checksums" if summary["checksums"] else "structure and token range (no manifest: no checksums)"
        out.print(f"[green]ok[/green] {summary['path']}: {summary['shards']} shard(s), {summary['tokens']:,} tokens; {checks} verified")


@shards_app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards sample out/shards --n 3 --decode`\n\n"
        "* `crawlmill shards sample out/shards --n 10 --seed 7 --json`\n\n"
        "* `crawlmill shards sample data/ --n 2 --decode --tokenizer TOKENIZER_DIR`"
    )
)
def sample(
    path: Path = SHARDS_PATH,
    n: int = typer.Option(5, "--n", help="Documents to show."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed shows the same documents)."),
    decode: bool = typer.Option(False, "--decode", help="Show the text (decoded with the tokenizer), not token ids."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer folder (default: the one the manifest names)."),
    as_json: bool = JSON,
) -> None:
    """Show random documents with their source (document id, URL, WARC record)."""
    from crawlmill.pipeline.pack.mmidx import ShardError
    from crawlmill.pipeline.pack.shardstats import sample_documents
    from crawlmill.pipeline.pack.tokenizer import TokenizerError

    try:
        items = sample_documents(path, n, seed, tokenizer, decode)
    except (ShardError, TokenizerError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        _print_json(items)
        return
    for item in items:
        source = item.get("source") or {}
        out.rule(f"{item['shard']} document {item['document']} · {item['tokens']:,} tokens", style="dim")
        if source:
            out.print(f"id {source.get('id')}  {source.get('url')}  dump {source.get('dump')}  lang {source.get('lang')}", markup=False, highlight=False)
            out.print(f"WARC {source.get('warc_file')} @ {source.get('warc_offset')}  {source.get('warc_record_id')}", markup=False, highlight=False)
        if "warning" in item:
            console.print(f"[yellow]warning:[/yellow] {item['warning']}")
        out.print(item["text"] if "text" in item else f"token ids: {item['token_ids']}{' …' if item['tokens'] > 64 else ''}", markup=False, highlight=False)


@shards_app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards stats out/shards --plot stats.png`\n\n"
        "* `crawlmill shards stats out/shards --json --top 50`"
    )
)
def stats(
    path: Path = SHARDS_PATH,
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write document-length and token-frequency histograms to this PNG."),
    top: int = typer.Option(20, "--top", help="Most frequent tokens to list."),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="Vocabulary size (default: the manifest's padded size)."),
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Tokenizer folder to show tokens as text (default: the manifest's)."),
    as_json: bool = JSON,
) -> None:
    """Document-length and token-frequency statistics, optionally plotted."""
    from crawlmill.pipeline.pack.mmidx import ShardError
    from crawlmill.pipeline.pack.shardstats import plot_stats, shard_stats

    try:
        report, lengths, counts = shard_stats(path, vocab_size, top, tokenizer)
    except ShardError as exc:
        raise _fail(str(exc)) from None
    if plot is not None:
        plot_stats(report, lengths, counts, plot)
        report["plot"] = str(plot)
    if as_json:
        _print_json(report)
        return
    d = report["document_tokens"]
    out.print(f"{report['path']}: {report['documents']:,} documents, {report['tokens']:,} tokens, {report['token_ids_used']:,} of {report['vocabulary']:,} token ids used")
    if d:
        out.print(f"tokens per document: mean {d['mean']:,}, median {d['median']:,.0f}, p90 {d['p90']:,.0f}, p99 {d['p99']:,.0f}, max {d['max']:,}")
    out.print("most frequent: " + ", ".join(f"{t.get('token', t['id'])!r} {t['count']:,}" for t in report["top_tokens"]), highlight=False)
    if plot is not None:
        out.print(f"plot written to {plot}")


def register(app: typer.Typer) -> None:
    """Add `pack` and the `shards` group to the main `crawlmill` app."""
    app.command(
        epilog=(
            "**Examples**\n\n"
            "* `crawlmill pack out/dedup --tokenizer out/tokenizer --output out/shards`\n\n"
            "* `crawlmill pack out/2023-50/dedup out/2024-10/dedup --tokenizer TOKENIZER_DIR --output out/shards --shard-size-mb 2048`\n\n"
            "* `crawlmill pack out/filter --tokenizer TOKENIZER_DIR --output out/shards --shard-tokens 100000000 --eod-token '</s>'`"
        )
    )(pack)
    app.add_typer(shards_app, name="shards")
