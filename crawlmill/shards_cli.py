"""`crawlmill shards inspect|verify|sample|stats|adopt`: look into Megatron shards (crawlmill/shards/).

    crawlmill shards inspect out/shards --json
    crawlmill shards verify out/shards
    crawlmill shards sample out/shards --n 3 --decode
    crawlmill shards stats out/shards --plot stats.png
    crawlmill shards adopt data/megatron --tokenizer TOKENIZER_DIR   # a manifest for shards made elsewhere

Any Megatron `.bin`/`.idx` pair is read, with or without pack's manifest, from a path or a URL
(`crawlmill shards verify s3://bucket/out/shards`; crawlmill/shards/shardset.py says what each
command reads of a remote shard). Heavy modules (numpy,
tokenizers, matplotlib) are imported inside the commands so that `crawlmill --help` stays fast.
Exit status: 0 done, 2 bad input: a missing or damaged shard, one that fails verification (the
message names the file). Results go to stdout, errors, warnings and progress to stderr (cli_common).
"""

from typing import Optional

import typer
from rich.markup import escape

from .cli_common import at_least_one, err, fail, out, print_json, user_errors

app = typer.Typer(
    help="Look into Megatron shards: inspect, verify, sample, stats; adopt shards made elsewhere (a manifest for training).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards inspect out/shards`\n\n"
        "* `crawlmill shards verify out/shards`\n\n"
        "* `crawlmill shards sample out/shards --n 3 --decode`\n\n"
        "* `crawlmill shards stats out/shards --plot stats.png`\n\n"
        "* `crawlmill shards adopt data/megatron --tokenizer TOKENIZER_DIR`"
    ),
)
# str, not Path: pathlib would fold a URL's "//" ("s3://b/x" -> "s3:/b/x").
SHARDS_PATH = typer.Argument(..., help="A pack output folder, a folder of .bin/.idx pairs, or one shard's prefix / .idx / .bin; a path or a URL (s3://...).")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _token_label(token: dict) -> str:
    # Part of a character (a byte token): its bytes, b'\xe4'; text as Python writes it, ' the'.
    if "bytes" in token:
        return repr(bytes.fromhex(token["bytes"]))
    return repr(token["token"]) if "token" in token else str(token["id"])


def _text_cells(row: dict) -> tuple[str, str]:
    if row["text_bytes"] is None:
        return "-", "-"
    per_token = row["bytes_per_token"]
    return f"{row['text_bytes']:,}", "-" if per_token is None else f"{per_token:.3f}"


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards inspect out/shards`\n\n"
        "* `crawlmill shards inspect out/shards --json`\n\n"
        "* `crawlmill shards inspect data/my_text_document.idx`  (any Megatron .idx)"
    )
)
def inspect(path: str = SHARDS_PATH, as_json: bool = JSON) -> None:
    """Documents, tokens, text bytes (and bytes per token), dtype and sizes of every shard; per-dump /
    language / domain counts; for shards of a remix output, the mixture per group."""
    from crawlmill.shards.shardset import inspect_shards

    with user_errors():
        report = inspect_shards(path)
    if as_json:
        print_json(report)
        return
    from rich.table import Column, Table

    # Text bytes where docs.parquet counts them (pack since it does); other shards show "-".
    text = any(row["text_bytes"] is not None for row in report["shards"])
    # Shard names stay whole in a narrow terminal: the number columns narrow instead, folding a
    # number onto two lines rather than cutting its digits off.
    names = [row["shard"] for row in report["shards"]]
    numbers = [Column(h, justify="right", overflow="fold") for h in ("documents", "tokens", *(("text bytes", "bytes/token") if text else ()))]
    sizes = [Column(h, justify="right", overflow="fold") for h in (".bin bytes", ".idx bytes")]
    shard_column = Column("shard", no_wrap=True, min_width=max(map(len, names), default=5))
    table = Table(shard_column, *numbers, Column("dtype", overflow="fold"), *sizes, title=escape(report["path"]))
    for row in report["shards"]:
        table.add_row(
            escape(row["shard"]), f"{row['documents']:,}", f"{row['tokens']:,}", *(_text_cells(row) if text else ()),
            row["dtype"], f"{row['bin_bytes'] or 0:,}", f"{row['idx_bytes']:,}",
        )  # fmt: skip
    table.add_row(
        "[bold]total", f"[bold]{report['documents']:,}", f"[bold]{report['tokens']:,}",
        *(_text_cells({"text_bytes": report.get("text_bytes"), "bytes_per_token": report.get("bytes_per_token")}) if text else ()),
        report["dtype"], f"{report['bin_bytes']:,}", f"{report['idx_bytes']:,}",
    )  # fmt: skip
    out.print(table)
    for key in ("by_dump", "by_lang", "by_domain"):
        if report.get(key):  # a hand-written manifest may give none
            with_bytes = all("bytes" in counts for counts in report[key].values())
            breakdown = Table(key.replace("by_", ""), "documents", "tokens", *(("text bytes",) if with_bytes else ()), "share")
            total = max(report["tokens"], 1)
            for label, counts in sorted(report[key].items(), key=lambda kv: -kv[1]["tokens"])[:20]:
                text_bytes = (f"{counts['bytes']:,}",) if with_bytes else ()
                breakdown.add_row(label, f"{counts['documents']:,}", f"{counts['tokens']:,}", *text_bytes, f"{100 * counts['tokens'] / total:.1f}%")
            out.print(breakdown)
    if "mixture" in report:
        mixture = report["mixture"]
        groups = Table("group", "shards", "documents", "tokens", "target", "share", "epochs", title=f"the blend: remix mixture ({mixture['method']}) at {mixture['budget_tokens']:,} tokens")
        for name, g in mixture["groups"].items():
            groups.add_row(name, f"{len(g['shards'])}", f"{g['documents']:,}", f"{g['tokens']:,}", f"{100 * g['target']:.1f}%", f"{100 * g['share']:.1f}%", f"{g['epochs']:.2f}")
        out.print(groups)
    if "tokenizer" in report:
        t = report["tokenizer"]
        out.print(f"tokenizer {t['path']} (sha256 {t['sha256'][:12]}…): vocabulary {t['vocab_size']:,}, padded {t['padded_vocab_size']:,}, EOD {t['eod_id']}")
    if "adopted" in report:  # shards made elsewhere: say what the manifest could not know
        a = report["adopted"]
        without = a.get("documents_without_eod")
        eod = f"; {without:,} document(s) without the EOD at their end" if isinstance(without, int) and without else ""
        out.print(f"adopted by `crawlmill shards adopt`, not made by pack: no sources, no per-dump / language / domain counts{eod}", highlight=False, markup=False)


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards verify out/shards`  (exit status 2 and the file and problem on failure)\n\n"
        "* `crawlmill shards verify data/ --vocab-size 50257`  (shards without a manifest)"
    )
)
def verify(
    path: str = SHARDS_PATH,
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="Token ids must be below this (default: the manifest tokenizer's)."),
    as_json: bool = JSON,
) -> None:
    """Check that every .idx agrees with its .bin (sizes, pointers, counts), token ids are below the
    vocabulary size and checksums match the manifest."""
    from crawlmill.shards.shardset import verify_shards

    at_least_one(vocab_size=vocab_size)
    with user_errors():
        summary, problems = verify_shards(path, vocab_size)
    if as_json:
        print_json({**summary, "problems": problems})
    for problem in problems:
        err.print(f"[red]error:[/red] {escape(problem)}", highlight=False)
    if problems:
        raise typer.Exit(2)
    if not as_json:
        checked = ["structure", *(["token range"] if summary["vocab_size"] else []), *(["checksums"] if summary["checksums"] else [])]
        unchecked = [*([] if summary["vocab_size"] else ["token ids (give --vocab-size)"]), *([] if summary["checksums"] else ["checksums (no manifest)"])]
        said = " and ".join([", ".join(checked[:-1]), checked[-1]] if len(checked) > 1 else checked) + " verified"
        out.print(f"[green]ok[/green] {summary['path']}: {summary['shards']} shard(s), {summary['tokens']:,} tokens; {said}" + (f"; not checked: {', '.join(unchecked)}" if unchecked else ""))


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards sample out/shards --n 3 --decode`\n\n"
        "* `crawlmill shards sample out/shards --n 10 --seed 7 --json`\n\n"
        "* `crawlmill shards sample data/ --n 2 --decode --tokenizer TOKENIZER_DIR`"
    )
)
def sample(
    path: str = SHARDS_PATH,
    n: int = typer.Option(5, "--n", help="Documents to show (1 or more)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the same seed shows the same documents)."),
    decode: bool = typer.Option(False, "--decode", help="Show the text (decoded with the tokenizer), not token ids."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer folder, a path or URL (default: the one the manifest names)."),
    as_json: bool = JSON,
) -> None:
    """Show random documents with their source (document id, URL, WARC record; a corpus's own
    fields, ingest --keep-field, read from the packed part's row)."""
    from crawlmill.shards.shardstats import sample_documents

    at_least_one(n=n)
    with user_errors():
        items = sample_documents(path, n, seed, tokenizer, decode)
    if as_json:
        print_json(items)
        return
    for item in items:
        source = item.get("source") or {}
        out.rule(f"{item['shard']} document {item['document']} · {item['tokens']:,} tokens", style="dim")
        if source:
            out.print(f"id {source.get('id')}  {source.get('url')}  dump {source.get('dump')}  lang {source.get('lang')}", markup=False, highlight=False)
            out.print(f"WARC {source.get('warc_file')} @ {source.get('warc_offset')}  {source.get('warc_record_id')}", markup=False, highlight=False)
            if source.get("corpus_fields"):
                out.print(f"fields {source['corpus_fields']}", markup=False, highlight=False)
        if "warning" in item:
            err.print(f"[yellow]warning:[/yellow] {item['warning']}")
        out.print(item["text"] if "text" in item else f"token ids: {item['token_ids']}{' …' if item['tokens'] > 64 else ''}", markup=False, highlight=False)


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards stats out/shards --plot stats.png`\n\n"
        "* `crawlmill shards stats out/shards --json --top 50`"
    )
)
def stats(
    path: str = SHARDS_PATH,
    # str, not Path, as SHARDS_PATH: a URL stays a URL.
    plot: Optional[str] = typer.Option(None, "--plot", help="Write document-length and token-frequency histograms to this PNG (a path or a URL; missing folders are made)."),
    top: int = typer.Option(20, "--top", help="Most frequent tokens to list (1 or more)."),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="Vocabulary size (default: the manifest's padded size)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer folder (path or URL) to show tokens as text (default: the manifest's)."),
    as_json: bool = JSON,
) -> None:
    """Document-length and token-frequency statistics, optionally plotted. A token that is part of a
    character (a byte of a byte-level BPE) is shown as its bytes, b'\\xe4'."""
    from crawlmill.shards.shardstats import plot_stats, shard_stats

    at_least_one(top=top, vocab_size=vocab_size)
    with user_errors():
        report, lengths, counts = shard_stats(path, vocab_size, top, tokenizer)
        if plot is not None:
            plot_stats(report, lengths, counts, plot)
            report["plot"] = plot
    if as_json:
        print_json(report)
        return
    d = report["document_tokens"]
    out.print(f"{report['path']}: {report['documents']:,} documents, {report['tokens']:,} tokens, {report['token_ids_used']:,} of {report['vocabulary']:,} token ids used")
    if d:
        out.print(f"tokens per document: mean {d['mean']:,}, median {d['median']:,.0f}, p90 {d['p90']:,.0f}, p99 {d['p99']:,.0f}, max {d['max']:,}")
    out.print("most frequent: " + ", ".join(f"{_token_label(t)} {t['count']:,}" for t in report["top_tokens"]), highlight=False, markup=False)
    if plot is not None:
        out.print(f"plot written to {plot}", highlight=False, markup=False)


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill shards adopt data/megatron --tokenizer TOKENIZER_DIR`  (preprocess_data.py output; EOD: tokenizer_config.json's eos_token)\n\n"
        "* `crawlmill shards adopt data/megatron --tokenizer hf/model/tokenizer.json --eod-id 2 --weights equal`\n\n"
        "* `crawlmill shards adopt data/megatron --tokenizer TOKENIZER_DIR --overwrite`  (replace the manifest.json written before)\n\n"
        "* then `crawlmill shards verify data/megatron` and `crawlmill train --config tiny --data data/megatron --output runs/tiny`"
    )
)
def adopt(
    path: str = typer.Argument(..., help="A folder of Megatron .bin/.idx pairs without manifest.json (preprocess_data.py's or IndexedDatasetBuilder's output); a path or a URL."),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="The tokenizer the shards were made with: a Hugging Face tokenizer folder (a crawlmill tokenizer's too) or its tokenizer.json."),
    eod_id: Optional[int] = typer.Option(None, "--eod-id", help="End-of-document token id (default: tokenizer_config.json's eos_token, as pack)."),
    eod_token: Optional[str] = typer.Option(None, "--eod-token", help="End-of-document token as text, instead of --eod-id (as pack's option)."),
    weights: str = typer.Option("tokens", "--weights", help="The blend: `tokens` (each shard by its token count: every token equally likely, as pack) or `equal` (each shard alike)."),
    padded_vocab_size: Optional[int] = typer.Option(None, "--padded-vocab-size", help="Model vocabulary size (default: crawlmill.json's, else the vocabulary rounded up to 128, as pack)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the folder's manifest.json if it has one."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary and warnings as JSON (no progress lines)."),
) -> None:
    """Write the manifest.json pack would have written for Megatron shards made elsewhere, so that
    `crawlmill train --data`, `crawlmill eval` and the other `shards` commands take the folder. Every
    shard is checked first: .idx against .bin, one sequence per document, token ids below the
    tokenizer's vocabulary (each .bin read once, its sha256 taken in the same pass). Documents that do
    not end with the EOD token are counted and warned of (recorded as eod_appended false), not refused."""
    from crawlmill.shards.adopt import adopt_shards

    at_least_one(padded_vocab_size=padded_vocab_size)
    if eod_id is not None and eod_id < 0:
        raise fail(f"--eod-id {eod_id}: a token id is 0 or more")

    def progress(shard: str, number: int, count: int) -> None:
        if not as_json:
            err.print(f"checking {escape(shard)} ({number + 1}/{count})", style="dim", highlight=False)

    with user_errors():
        adoption = adopt_shards(path, tokenizer, eod_id, eod_token, weights, padded_vocab_size, overwrite, progress)
    m = adoption.manifest
    if as_json:
        print_json({"manifest": adoption.path, "shards": m["shards_count"], "documents": m["documents"], "tokens": m["tokens"], "bytes": m.get("bytes"),
                    "eod_appended": m["megatron"]["eod_appended"], "tokenizer": m["tokenizer"], "blend": m["blend"]["method"], "warnings": adoption.warnings})  # fmt: skip
        return
    for warning in adoption.warnings:
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    t = m["tokenizer"]
    out.print(
        f"[green]adopted[/green] {escape(path)}: {m['shards_count']} shard(s), {m['documents']:,} documents, {m['tokens']:,} tokens ({m['megatron']['dtype']}); "
        f"tokenizer {escape(t['path'])}: vocabulary {t['vocab_size']:,}, padded {t['padded_vocab_size']:,}, EOD {t['eod_id']} {escape(repr(t['eod_token']))}; "
        f"blend by {m['blend']['method']}; wrote {escape(adoption.path)}",
        highlight=False,
    )
