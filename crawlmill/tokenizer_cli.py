"""`crawlmill tokenizer train|eval`: train the byte-level BPE vocabulary and measure its compression.

    crawlmill tokenizer train out/dedup --output out/tokenizer
    crawlmill tokenizer eval out/tokenizer en=heldout/en.txt zh=heldout/zh.txt --reference deepseek

`train` is the pipeline's tokenizer stage run alone (crawlmill/tokenizer/stage.py); its options are
the fields of the `tokenizer:` section of a run config.
"""

import json
from typing import List, Optional

import typer

from .cli_common import out, stage_verb, user_errors

app = typer.Typer(
    help="Train the DeepSeek-style byte-level BPE tokenizer and evaluate it.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill tokenizer train out/dedup --output out/tokenizer`\n\n"
        "* `crawlmill tokenizer eval out/tokenizer en=heldout/en.txt zh=heldout/zh.txt --reference deepseek`"
    ),
)

INPUTS_HELP = (
    "Pipeline output folders (text, lang columns), Parquet, JSONL (text[, lang]) or text files/folders; "
    "`LANG=PATH` sets the language of one input (e.g. `code=src/`)."
)


@stage_verb(
    app, "tokenizer", name="train",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill tokenizer train out/dedup --output out/tokenizer`  (100,000 learned + 15 specials, padded 102,400: a corpus of GBs; the sample corpus allows a few thousand, `--vocab-size 1000` as configs/demo.yaml)\n\n"
        "* `crawlmill tokenizer train out/dedup code=data/code/ --mix en=0.5,zh=0.4,code=0.1 --max-bytes 2e9 --output out/tokenizer`\n\n"
        "* `crawlmill tokenizer train zh=corpus/zh.txt en=corpus/en.jsonl --vocab-size 32000 --output out/tok32k`\n\n"
        "* `crawlmill tokenizer train out/dedup --max-memory-gib 12 --output out/tokenizer`  (word count on Ray, rarest words pruned to fit)"
    ),
)  # fmt: skip
def train(
    inputs: List[str] = typer.Argument(..., help=INPUTS_HELP),
    vocab_size: Optional[int] = typer.Option(
        None, "--vocab-size",
        help=(
            "Learned tokens, the 256 byte symbols included; 15 specials follow, and the model vocabulary is padded "
            "(--padded-vocab-size). 102,400 is DeepSeek's padded model vocabulary: 100,000 learned + 15 specials, "
            "padded to 102,400 (the default); --vocab-size 102400 learns 102,400 tokens, padded to 102,528."
        ),
    ),
    padded_vocab_size: Optional[int] = typer.Option(None, "--padded-vocab-size", help="Model vocabulary (default: 102,400 for 100,000 learned, else a multiple of 128)."),
    mix: Optional[str] = typer.Option(None, "--mix", help="Target shares of bytes per language, e.g. en=0.6,zh=0.4 (a first pass counts bytes)."),
    max_bytes: Optional[float] = typer.Option(
        None, "--max-bytes",
        help=(
            "Train on at most this many bytes (e.g. 2e9): each language gets its share (of --mix, else its own) to within a few "
            "bytes, never more; documents (64 KB blocks of a text file) are chosen at random by --seed, the last one cut to fit."
        ),
    ),
    min_frequency: Optional[int] = typer.Option(None, "--min-frequency", help="A merge needs a pair seen at least this often."),
    max_token_length: Optional[int] = typer.Option(None, "--max-token-length", help="Longest token, in byte-level symbols (one per byte: a Chinese character counts 3), as HF tokenizers' BpeTrainer counts it; its merges stop one short of it (4 gives tokens of at most 3) (default: no limit)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the sampling draws."),
    max_memory_gib: Optional[float] = typer.Option(None, "--max-memory-gib", help="Count words on Ray first and drop the rarest until the trainer's modelled peak fits this; measured peaks 64-92% of it (docs/tokenizer.md). Default: stream everything, exact."),
    count_chunk_mb: Optional[float] = typer.Option(None, "--count-chunk-mb", help="With --max-memory-gib: files are word-counted in chunks of about this size (plain text and JSONL in byte ranges of lines, Parquet in row groups; a .gz file whole)."),
) -> None:
    """Train a byte-level BPE with DeepSeek LLM's pre-tokenization; write a folder AutoTokenizer loads."""


@app.command(
    name="eval",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill tokenizer eval out/tokenizer en=heldout/en.txt zh=heldout/zh.txt --reference deepseek`\n\n"
        "* `crawlmill tokenizer eval out/tokenizer out/dedup --json`  (languages from the lang column)"
    ),
)
def eval_(
    tokenizer: str = typer.Argument(..., help="Tokenizer folder or tokenizer.json."),
    texts: List[str] = typer.Argument(..., help=INPUTS_HELP),
    reference: Optional[str] = typer.Option(None, "--reference", help="A second tokenizer to compare; `deepseek` = the released DeepSeek LLM one."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Bytes per token and tokens per character, per language, for a tokenizer (and a reference)."""
    from rich.table import Table

    from crawlmill.tokenizer.evaluate import evaluate, table

    with user_errors():
        result = evaluate(tokenizer, texts, reference)
    if as_json:
        print(json.dumps(result, indent=1))
        return
    rows = Table("tokenizer", "language", "bytes/token", "tokens/char")
    for path, lang, bytes_per_token, tokens_per_char in table(result):
        rows.add_row(path, lang, f"{bytes_per_token:.3f}", f"{tokens_per_char:.3f}")
    out.print(rows)
