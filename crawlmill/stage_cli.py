"""`crawlmill ingest|filter|dedup|remix|pack`: each pipeline stage alone, as a command or a Ray job.

    crawlmill ingest samples/crawl-data --output out/ingest
    crawlmill filter out/ingest --output out/filter
    crawlmill dedup out/filter --output out/dedup
    crawlmill remix out/dedup --output out/remix --rule '*.wikipedia.org=encyclopedia'
    crawlmill pack out/remix --tokenizer out/tokenizer --output out/shards

Each verb's parameters are its stage's config fields (cli_common.stage_verb): the same settings as
the stage's section of a `crawlmill run` config, which `--config FILE` can also hold.
"""

from typing import List, Optional

import typer

from .cli_common import stage_verb

app = typer.Typer()


@stage_verb(
    app, "ingest",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill ingest samples/crawl-data --output out/ingest`  (a folder, searched recursively)\n\n"
        "* `crawlmill ingest 'data/*.warc.wet.gz' s3://bucket/x.warc.gz --output out/ingest`\n\n"
        "* `crawlmill ingest data/mine/*.jsonl --dump my-forum-2024 --output out/mine`  (your own corpus: JSONL, Parquet, .txt)\n\n"
        "* `crawlmill ingest data/zh/cmrc2018_contexts.txt data/shop.parquet --text-field body --id-field sku --output out/mine`\n\n"
        "* `crawlmill ingest data/papers.jsonl --keep-field title,license --keep-field source.name --output out/papers`  (fields carried in corpus_fields)\n\n"
        "* `crawlmill ingest --dump CC-MAIN-2024-22 --max-files 8 --output out/ingest`  (Common Crawl's wet.paths.gz)\n\n"
        "* `crawlmill ingest --dump CC-MAIN-2024-22 --format warc --base-url http://mirror.local/ --output out/ingest`"
    ),
)  # fmt: skip
def ingest(
    inputs: Optional[List[str]] = typer.Argument(None, help="WARC/WET files, or your own corpus's JSONL (.jsonl/.ndjson/.json[.gz]), Parquet (.parquet) and plain-text (.txt[.gz]) files; folders (WARC/WET, else .jsonl/.json.gz/.parquet; .txt only named or globbed), globs or fsspec URLs."),
    dump: Optional[str] = typer.Option(None, "--dump", help="CC-MAIN-YYYY-WW: with no INPUT, ingest this dump's listed files; with INPUTs, the dump id of files that name none, or your dataset's own label (my-forum-2024), part of its document ids."),
    max_files: Optional[int] = typer.Option(None, "--max-files", help="With --dump: only the first N files of the listing."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="With --dump: where crawl-data/ lives."),
    format: Optional[str] = typer.Option(None, "--format", help="With --dump: wet (text) or warc (HTML, extracted here); not wat (metadata, no page text)."),
    extractor: Optional[str] = typer.Option(None, "--extractor", help="HTML extractor for WARC: resiliparse or trafilatura."),
    max_record_mb: Optional[float] = typer.Option(None, "--max-record-mb", help="Records (a JSONL/.txt line or paragraph too) larger than this are quarantined unread."),
    max_text_chars: Optional[int] = typer.Option(None, "--max-text-chars", help="Longer extracted texts are dropped as text_too_large."),
    max_bad_utf8_share: Optional[float] = typer.Option(None, "--max-bad-utf8-share", help="WET text (or a JSONL/.txt line) with a larger share of invalid UTF-8 is quarantined."),
    text_field: Optional[str] = typer.Option(None, "--text-field", help="JSONL/Parquet: the field holding the document's text (a.b: field b of object a); a row without it is dropped as no_text_field."),
    id_field: Optional[str] = typer.Option(None, "--id-field", help="JSONL/Parquet: the row's own id (a string or integer), kept as warc_record_id and made part of the document id; '' or a row without it: the line/row number."),
    url_field: Optional[str] = typer.Option(None, "--url-field", help="JSONL/Parquet: the field holding the document's URL ('': none)."),
    date_field: Optional[str] = typer.Option(None, "--date-field", help="JSONL/Parquet: the field holding the document's date ('': none)."),
    txt_document: Optional[str] = typer.Option(None, "--txt-document", help="Plain text (.txt): one document per `line`, or per `paragraph` (lines up to a blank line)."),
    keep_fields: Optional[List[str]] = typer.Option(None, "--keep-field", help="JSONL/Parquet: a field to carry with each document (repeatable or comma-separated; a.b: field b of object a; '*': every field not read as text, id, URL or date), as a JSON object in its corpus_fields column."),
) -> None:
    """Read Common Crawl WARC/WET files, or a corpus of your own (JSONL, Parquet, plain text), into text
    documents (Parquet), one part per input file."""


@stage_verb(
    app, "filter", name="filter",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill filter out/ingest --output out/filter`  (defaults: keep English and Chinese)\n\n"
        "* `crawlmill filter out/ingest --output out/filter --config configs/filters.yaml --keep-dropped`\n\n"
        "* `crawlmill filter out/ingest --output out/filter --lid-model /models/glotlid.bin`"
    ),
)  # fmt: skip
def filter_(
    inputs: List[str] = typer.Argument(..., help="Finished stage output folders (e.g. ingest's)."),
    language_id__model_path: Optional[str] = typer.Option(None, "--lid-model", help="fastText LID model (lid.176.bin/.ftz, GlotLID); default lid.176.ftz."),
    keep_dropped: Optional[bool] = typer.Option(None, "--keep-dropped", help="Also write dropped documents with their reason to _dropped/."),
) -> None:
    """Language ID (fastText) and linguistic quality filters (Gopher, C4, FineWeb), right for Chinese too."""


@stage_verb(
    app, "dedup",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill dedup out/2023-50/filter out/2024-10/filter --output out/dedup`  (every dump at once)\n\n"
        "* `crawlmill dedup out/filter --output out/dedup --bands 20 --rows 10 --keep longest`\n\n"
        "* `crawlmill dedup out/2024-18/filter --output out/dedup-2024-18 --index out/dedup-index`  (against every earlier run)\n\n"
        "* `crawlmill dedup s3://bucket/filter --output s3://bucket/dedup --partitions 4096 --partitions-per-task 16`  (`_work/` on S3: 256 times fewer GETs)"
    ),
)  # fmt: skip
def dedup(
    inputs: List[str] = typer.Argument(..., help="Finished stage output folders (e.g. filter's), all dumps."),
    minhash__bands: Optional[int] = typer.Option(None, "--bands", help="LSH bands (x rows = MinHash permutations)."),
    minhash__rows: Optional[int] = typer.Option(None, "--rows", help="Rows per band; 14 x 8 finds pairs of Jaccard >= ~0.8."),
    partitions: Optional[int] = typer.Option(None, "--partitions", help="Shuffle partitions (default: one per 40,000 documents, at most 16,384; each reduce-side task holds 1/partitions of the rows, and a step between partitions costs 2 x (partitions / --partitions-per-task)^2 ranged reads)."),
    partitions_per_task: Optional[int] = typer.Option(None, "--partitions-per-task", help="Consecutive partitions one task of a step between partitions runs, reading each sender's bytes for all of them at once and sending one file a step for all of them: R^2 times fewer reads (GETs on an object store), the same memory, fewer tasks (default: 1 up to 4,096 partitions, then as many as keep the tasks at 4,096)."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Document kept per cluster: earliest_dump, latest_dump or longest."),
    index: Optional[str] = typer.Option(None, "--index", help="Dedup against the kept documents of earlier runs with this index, then add this run's."),
    jaccard_threshold: Optional[float] = typer.Option(None, "--jaccard-threshold", help="Candidate pairs are duplicates from this exact Jaccard similarity of shingles."),
) -> None:
    """Exact + MinHash LSH near-dedup over every input folder (every dump) at once, distributed on Ray.
    Writes kept documents, _duplicates/ and _report/report.json + .png (removal per dump and across dumps)."""


@stage_verb(
    app, "remix",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill remix out/dedup --output out/remix --config remix.yaml`  (rules, classifier and mixture in the file)\n\n"
        "* `crawlmill remix out/dedup --output out/remix --rule '*.wikipedia.org=encyclopedia' --rule '*/recipes/*=cooking' --method temperature --temperature 0.5`\n\n"
        "* `crawlmill remix out/dedup --output out/remix --rule 'docs.*=code' --weights code=0.3,other=0.7 --tokenizer TOKENIZER_DIR --allow-shortfall`"
    ),
)  # fmt: skip
def remix(
    inputs: List[str] = typer.Argument(..., help="Finished stage output folders (e.g. dedup's)."),
    rules: Optional[List[str]] = typer.Option(None, "--rule", help="`PATTERN=GROUP`, repeatable, first match wins: a HOST[/PATH] glob (`*.wikipedia.org` also matches wikipedia.org; `*/wiki/*` any host)."),
    default_group: Optional[str] = typer.Option(None, "--default-group", help="Group of documents no rule or classifier places."),
    mixture__method: Optional[str] = typer.Option(None, "--method", help="weights, temperature or unimax (default: weights with --weights, temperature with --temperature, else unimax)."),
    mixture__weights: Optional[str] = typer.Option(None, "--weights", help="`GROUP=WEIGHT,...` explicit weights (normalised); every group with documents needs one."),
    mixture__temperature: Optional[float] = typer.Option(None, "--temperature", help="τ of p ∝ n^τ: 1 keeps the corpus's shares, 0 is uniform."),
    mixture__max_epochs: Optional[float] = typer.Option(None, "--max-epochs", help="Repeat cap per group, in epochs at the budget."),
    mixture__budget: Optional[float] = typer.Option(None, "--budget", help="Training tokens (characters with --unit characters) the mixture is planned for; default: the corpus's size."),
    mixture__allow_shortfall: Optional[bool] = typer.Option(None, "--allow-shortfall", help="A target past the cap is capped and the rest goes to the other groups, instead of an error."),
    mixture__unit: Optional[str] = typer.Option(None, "--unit", help="tokens or characters (default: tokens with --tokenizer, else characters)."),
    mixture__tokenizer: Optional[str] = typer.Option(None, "--tokenizer", "-t", help="Hugging Face tokenizer folder: group sizes in tokens, exactly as pack counts them."),
    batch_rows: Optional[int] = typer.Option(None, "--batch-rows", help="Documents read and labelled at a time."),
) -> None:
    """Label every document with its registered domain and a group (URL rules, else a fastText topic classifier
    from --config, else the default group), write the documents by group, and plan the mixture of groups
    (explicit weights, temperature or UniMax, under a repeat cap) into _mixture.json + _mixture.png for pack."""


@stage_verb(
    app, "pack",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill pack out/dedup --tokenizer out/tokenizer --output out/shards`\n\n"
        "* `crawlmill pack out/2023-50/dedup out/2024-10/dedup --tokenizer TOKENIZER_DIR --output out/shards --shard-size-mb 2048`\n\n"
        "* `crawlmill pack out/filter --tokenizer TOKENIZER_DIR --output out/shards --shard-tokens 100000000 --eod-token '</s>'`"
    ),
)  # fmt: skip
def pack(
    inputs: List[str] = typer.Argument(..., help="Finished stage output folders (Parquet parts), packed in this order."),
    tokenizer: str = typer.Option(..., "--tokenizer", "-t", help="Hugging Face tokenizer folder (tokenizer.json [+ tokenizer_config.json, crawlmill.json])."),
    shard_tokens: Optional[int] = typer.Option(None, "--shard-tokens", help="At most this many tokens per shard (documents are never split)."),
    shard_size_mb: Optional[float] = typer.Option(None, "--shard-size-mb", help="Or: at most this many MiB of .bin per shard (default 1024)."),
    eod_token: Optional[str] = typer.Option(None, "--eod-token", help="End-of-document token (default: tokenizer_config.json's eos_token)."),
    padded_vocab_size: Optional[int] = typer.Option(None, "--padded-vocab-size", help="Model vocabulary size (default: crawlmill.json's, else the vocabulary rounded up to 128)."),
    batch_rows: Optional[int] = typer.Option(None, "--batch-rows", help="Documents per tokenizer batch."),
    fast_encode: Optional[bool] = typer.Option(None, "--fast-encode/--no-fast-encode", help="--no-fast-encode: encode with the tokenizers library alone (same ids, slower; for comparison)."),
    special_tokens_in_text: Optional[str] = typer.Option(None, "--special-tokens-in-text", help="A special token's spelling in a document's text: `tokens` encodes it as that token (default, as Megatron-LM's preprocess_data.py: a web page can plant an EOD inside a document), `text` as the ordinary text it is. Such documents are counted either way (special_token_in_text)."),
) -> None:
    """Tokenize documents on Ray and write Megatron-Core IndexedDataset shards (.bin + .idx) with manifest.json."""
