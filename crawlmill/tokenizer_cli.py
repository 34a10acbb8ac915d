"""`crawlmill tokenizer train|eval`: train the byte-level BPE vocabulary and measure its compression.

    crawlmill tokenizer train out/dedup --output out/tokenizer
    crawlmill tokenizer eval out/tokenizer en=heldout/en.txt zh=heldout/zh.txt --reference deepseek

Training runs on one machine (HF `tokenizers` uses all its cores); see crawlmill/tokenizer/train.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

tokenizer_app = typer.Typer(
    help="Train the DeepSeek-style byte-level BPE tokenizer and evaluate it.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

INPUTS_HELP = (
    "Pipeline output folders (text, lang columns), Parquet, JSONL (text[, lang]) or text files/folders; "
    "`LANG=PATH` sets the language of one input (e.g. `code=src/`)."
)


def _console():  # noqa: ANN202 - shared with the main CLI so output goes to the same stream
    from crawlmill.cli import console

    return console


def _fail(message: str) -> typer.Exit:
    from crawlmill.cli import _fail as fail

    return fail(message)


@tokenizer_app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill tokenizer train out/dedup --output out/tokenizer`  (100,000 learned + 15 specials, padded 102,400)\n\n"
        "* `crawlmill tokenizer train out/dedup code=data/code/ --mix en=0.5,zh=0.4,code=0.1 --max-bytes 2e9 --output out/tokenizer`\n\n"
        "* `crawlmill tokenizer train zh=corpus/zh.txt en=corpus/en.jsonl --vocab-size 32000 --output out/tok32k`\n\n"
        "* `crawlmill tokenizer train out/dedup --max-memory-gib 12 --output out/tokenizer`  (word count on Ray, rarest words pruned to fit)"
    )
)
def train(
    inputs: list[str] = typer.Argument(..., help=INPUTS_HELP),
    output: Path = typer.Option(..., "--output", "-o", help="Tokenizer folder to write (replaced when training succeeds)."),
    vocab_size: int = typer.Option(100_000, "--vocab-size", help="Learned tokens, the 256 byte symbols included; 15 specials follow."),
    padded_vocab_size: Optional[int] = typer.Option(None, "--padded-vocab-size", help="Model vocabulary (default: 102,400 for 100,000 learned, else a multiple of 128)."),
    mix: Optional[str] = typer.Option(None, "--mix", help="Target shares of bytes per language, e.g. en=0.6,zh=0.4 (a first pass counts bytes)."),
    max_bytes: Optional[float] = typer.Option(None, "--max-bytes", help="Train on at most this many bytes, sampled evenly (e.g. 2e9)."),
    min_frequency: int = typer.Option(2, "--min-frequency", help="A merge needs a pair seen at least this often."),
    max_token_length: Optional[int] = typer.Option(None, "--max-token-length", help="Longest token in characters (default: no limit)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling draws."),
    max_memory_gib: Optional[float] = typer.Option(
        None, "--max-memory-gib", help="Count words on Ray first and drop the rarest until the trainer fits this (default: stream everything, exact)."
    ),
    address: Optional[str] = typer.Option(None, "--address", help="With --max-memory-gib: Ray cluster for the word count (default: a local Ray)."),
    num_cpus: Optional[int] = typer.Option(None, "--num-cpus", help="With --max-memory-gib: CPUs of the local Ray (default: all)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Do not draw progress bars."),
) -> None:
    """Train a byte-level BPE with DeepSeek LLM's pre-tokenization; write a folder AutoTokenizer loads."""
    from crawlmill.pipeline.ray_tasks import RayOptions
    from crawlmill.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    try:
        config = TokenizerTrainConfig(
            inputs=inputs,
            output=output,
            vocab_size=vocab_size,
            padded_vocab_size=padded_vocab_size,
            mix=mix or {},
            max_bytes=int(max_bytes) if max_bytes else None,
            min_frequency=min_frequency,
            max_token_length=max_token_length,
            seed=seed,
            max_memory_gib=max_memory_gib,
            show_progress=not no_progress,
        )
        report = train_tokenizer(config, RayOptions(address, num_cpus))
    except (ValueError, FileNotFoundError, OSError, MemoryError) as exc:
        raise _fail(str(exc)) from None
    trained = report["corpus_trained"]["bytes"]
    mib = ", ".join(f"{lang} {size / 2**20:,.1f} MiB" for lang, size in trained.items())
    vocab = report["vocab"]
    if report["word_table"]:
        table = report["word_table"]
        _console().print(
            f"word table: {table['distinct_words']:,} distinct words, kept {table['kept_words']:,} seen >= {table['min_count']} times "
            f"({100 * table['dropped_byte_share']:.2f}% of the text's bytes dropped), trainer estimate {table['estimated_trainer_gib']} GiB"
        )
    _console().print(
        f"[green]tokenizer done[/green] → {output}: {vocab['learned']:,} learned + {vocab['specials']} specials, "
        f"padded {vocab['padded_vocab_size']:,}; trained on {mib}; {report['seconds']:.1f} s, peak {report['peak_rss_mib']:,} MiB"
    )


@tokenizer_app.command(
    name="eval",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill tokenizer eval out/tokenizer en=heldout/en.txt zh=heldout/zh.txt --reference deepseek`\n\n"
        "* `crawlmill tokenizer eval out/tokenizer out/dedup --json`  (languages from the lang column)"
    ),
)
def eval_(
    tokenizer: str = typer.Argument(..., help="Tokenizer folder or tokenizer.json."),
    texts: list[str] = typer.Argument(..., help=INPUTS_HELP),
    reference: Optional[str] = typer.Option(None, "--reference", help="A second tokenizer to compare; `deepseek` = the released DeepSeek LLM one."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Bytes per token and tokens per character, per language, for a tokenizer (and a reference)."""
    from crawlmill.tokenizer.evaluate import evaluate, table

    try:
        result = evaluate(tokenizer, texts, reference)
    except (ValueError, FileNotFoundError, OSError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps(result, indent=1))
        return
    out = Table("tokenizer", "language", "bytes/token", "tokens/char")
    for path, lang, bytes_per_token, tokens_per_char in table(result):
        out.add_row(path, lang, f"{bytes_per_token:.3f}", f"{tokens_per_char:.3f}")
    _console().print(out)
