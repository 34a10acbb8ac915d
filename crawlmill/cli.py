"""The `crawlmill` command line: one verb per stage, each also runnable as a Ray job.

    crawlmill ingest samples/crawl-data --output out/ingest
    crawlmill run configs/demo.yaml
    ray job submit --working-dir . -- crawlmill ingest --dump CC-MAIN-2024-22 --max-files 4 --output /shared/ingest

Every verb starts a local Ray unless --address (or RAY_ADDRESS, as under `ray job submit`) names
a cluster. Exit status: 0 when the stage finished, 1 when parts failed (rerun to retry only
those), 2 for bad input or config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="crawlmill: Common Crawl -> pretraining data -> Megatron-Core pretraining, on Ray.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)  # paths and messages are never wrapped mid-word

ADDRESS = typer.Option(None, "--address", help="Ray cluster address; default: a local Ray started for this command.")
NUM_CPUS = typer.Option(None, "--num-cpus", help="CPUs of the local Ray (default: all).")
MAX_IN_FLIGHT = typer.Option(None, "--max-in-flight", help="Parts processed at once (default: 2 x cluster CPUs).")
NO_PROGRESS = typer.Option(False, "--no-progress", help="Do not draw the progress bar.")
OVERWRITE = typer.Option(False, "--overwrite", help="Delete the output folder first instead of resuming it.")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(2)


def _report(result) -> None:  # noqa: ANN001 - StageResult; imported lazily to keep --help fast
    if not result.ok:
        for source, detail in result.failures:
            console.print(f"[red]failed[/red] {source}: {detail}")
        console.print(f"{len(result.failures)} part(s) failed; rerun the same command to retry only those.")
        raise typer.Exit(1)
    stats = result.stats
    dropped = ", ".join(f"{k} {v:,}" for k, v in stats["dropped"].items()) or "none"
    console.print(
        f"[green]{stats['stage']} done[/green] → {result.output_dir}: {stats['in']:,} records in, "
        f"{stats['kept']:,} kept, {stats['quarantined']:,} quarantined; dropped: {dropped}"
    )
    if result.finished_before:
        console.print(f"({result.finished_before} part(s) were already finished and were skipped)")


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill ingest samples/crawl-data --output out/ingest`  (a folder, searched recursively)\n\n"
        "* `crawlmill ingest 'data/*.warc.wet.gz' s3://bucket/x.warc.gz --output out/ingest`\n\n"
        "* `crawlmill ingest --dump CC-MAIN-2024-22 --max-files 8 --output out/ingest`  (Common Crawl's wet.paths.gz)\n\n"
        "* `crawlmill ingest --dump CC-MAIN-2024-22 --format warc --base-url http://mirror.local/ --output out/ingest`"
    )
)
def ingest(
    inputs: Optional[list[str]] = typer.Argument(None, help="WARC/WET files, folders, globs or fsspec URLs."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (Parquet parts, _stats.json, _quarantine/)."),
    dump: Optional[str] = typer.Option(
        None, "--dump", help="CC-MAIN-YYYY-WW: with no INPUT, ingest this dump's listed files; with INPUTs, the dump id of files that name none."
    ),
    max_files: Optional[int] = typer.Option(None, "--max-files", help="With --dump: only the first N files of the listing."),
    base_url: str = typer.Option("https://data.commoncrawl.org/", "--base-url", help="With --dump: where crawl-data/ lives."),
    file_format: str = typer.Option("wet", "--format", help="With --dump: wet (text) or warc (HTML, extracted here)."),
    extractor: str = typer.Option("resiliparse", "--extractor", help="HTML extractor for WARC: resiliparse or trafilatura."),
    max_record_mb: float = typer.Option(16, "--max-record-mb", help="Records larger than this are quarantined unread."),
    address: Optional[str] = ADDRESS,
    num_cpus: Optional[int] = NUM_CPUS,
    max_in_flight: Optional[int] = MAX_IN_FLIGHT,
    overwrite: bool = OVERWRITE,
    no_progress: bool = NO_PROGRESS,
) -> None:
    """Read Common Crawl WARC/WET files into text documents (Parquet), one part per input file."""
    from crawlmill.pipeline.ingest.sources import InputError, resolve_sources
    from crawlmill.pipeline.ingest.stage import IngestConfig, IngestStage
    from crawlmill.pipeline.stage import RayOptions

    try:
        config = IngestConfig(extractor=extractor, max_record_bytes=int(max_record_mb * (1 << 20)))
        config.dump = dump if inputs else None
        sources = resolve_sources(inputs, dump, base_url, file_format, max_files)
    except (InputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _run(IngestStage(sources, config), output, RayOptions(address, num_cpus, max_in_flight), overwrite, no_progress)


@app.command(
    name="filter",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill filter out/ingest --output out/filter`  (defaults: keep English and Chinese)\n\n"
        "* `crawlmill filter out/ingest --output out/filter --config configs/filters.yaml --keep-dropped`\n\n"
        "* `crawlmill filter out/ingest --output out/filter --lid-model /models/glotlid.bin`"
    ),
)
def filter_(
    input_dir: Path = typer.Argument(..., help="A finished stage output folder (e.g. ingest's)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="Filter config YAML (see configs/filters.yaml)."),
    lid_model: Optional[Path] = typer.Option(None, "--lid-model", help="fastText LID model (lid.176.bin/.ftz, GlotLID)."),
    keep_dropped: bool = typer.Option(False, "--keep-dropped", help="Also write dropped documents with their reason to _dropped/."),
    address: Optional[str] = ADDRESS,
    num_cpus: Optional[int] = NUM_CPUS,
    max_in_flight: Optional[int] = MAX_IN_FLIGHT,
    overwrite: bool = OVERWRITE,
    no_progress: bool = NO_PROGRESS,
) -> None:
    """Language ID (fastText) and linguistic quality filters (Gopher, C4, FineWeb), right for Chinese too."""
    from crawlmill.pipeline.config import ConfigError
    from crawlmill.pipeline.filter.config import load_filter_config
    from crawlmill.pipeline.filter.stage import FilterStage
    from crawlmill.pipeline.stage import RayOptions

    try:
        config = load_filter_config(config_file)
        if lid_model:
            config.language_id.model_path = str(lid_model)
        config.keep_dropped = config.keep_dropped or keep_dropped
        stage = FilterStage(str(input_dir), config)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    _run(stage, output, RayOptions(address, num_cpus, max_in_flight), overwrite, no_progress)


def _run(stage, output: Path, ray_options, overwrite: bool, no_progress: bool):  # noqa: ANN001, ANN202
    from crawlmill.pipeline.stage import StageInputMismatch, reset_output, run_stage

    if overwrite:
        reset_output(output)
    try:
        result = run_stage(stage, output, ray_options, progress=not no_progress)
    except StageInputMismatch as exc:
        raise _fail(str(exc)) from None
    _report(result)
    return result


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill dedup out/2023-50/filter out/2024-10/filter --output out/dedup`  (every dump at once)\n\n"
        "* `crawlmill dedup out/filter --output out/dedup --bands 20 --rows 10 --keep longest`\n\n"
        "* `crawlmill dedup out/2024-18/filter --output out/dedup-2024-18 --index out/dedup-index`  (against every earlier run)"
    )
)
def dedup(
    inputs: list[str] = typer.Argument(..., help="Finished stage output folders (e.g. filter's), all dumps."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (kept documents, duplicates/, _report/report.json and .png)."),
    bands: int = typer.Option(14, "--bands", help="LSH bands (x rows = MinHash permutations)."),
    rows: int = typer.Option(8, "--rows", help="Rows per band; 14 x 8 finds pairs of Jaccard >= ~0.8."),
    partitions: Optional[int] = typer.Option(None, "--partitions", help="Shuffle partitions (default: one per 40,000 documents)."),
    keep: str = typer.Option("earliest_dump", "--keep", help="Document kept per cluster: earliest_dump, latest_dump or longest."),
    index_dir: Optional[Path] = typer.Option(None, "--index", help="Dedup against the kept documents of earlier runs with this index, then add this run's."),
    address: Optional[str] = ADDRESS,
    num_cpus: Optional[int] = NUM_CPUS,
    max_in_flight: Optional[int] = MAX_IN_FLIGHT,
    overwrite: bool = OVERWRITE,
    no_progress: bool = NO_PROGRESS,
) -> None:
    """Exact + MinHash LSH near-dedup over every input folder (every dump) at once, distributed on Ray."""
    from crawlmill.pipeline.dedup.config import DedupConfig
    from crawlmill.pipeline.dedup.minhash import MinHashConfig
    from crawlmill.pipeline.dedup.stage import run_dedup
    from crawlmill.pipeline.stage import RayOptions, StageInputMismatch, reset_output

    try:
        config = DedupConfig(minhash=MinHashConfig(bands=bands, rows=rows), partitions=partitions, keep=keep)
        if overwrite:
            reset_output(output)
        result = run_dedup(inputs, output, config, RayOptions(address, num_cpus, max_in_flight), progress=not no_progress, index_dir=index_dir)
    except (ValueError, FileNotFoundError, StageInputMismatch) as exc:
        raise _fail(str(exc)) from None
    _report(result)
    report = json.loads((output / "_report/report.json").read_text())
    for row in report["cumulative"]:
        console.print(f"first {row['dumps']} dump(s) through {row['through']}: {100 * row['share']:.1f}% removed")


PIPELINE_STAGES = ("ingest", "filter", "dedup", "tokenizer", "pack")


def _pipeline_tokenizer(config, out: Path, no_progress: bool) -> dict:  # noqa: ANN001 - RunConfig
    """The run's tokenizer: the configured folder, or one trained on the dedup output (skipped when
    already trained with the same settings)."""
    from dataclasses import asdict

    from crawlmill.tokenizer.train import TokenizerTrainConfig, train_as_ray_task

    section = config.tokenizer
    if section.path:
        if not (Path(section.path) / "tokenizer.json").is_file():
            raise FileNotFoundError(f"tokenizer.path {section.path}: no tokenizer.json there")
        return {"path": section.path, "trained": False}
    settings = {k: v for k, v in asdict(section).items() if k not in ("path", "extra_inputs")}
    train_config = TokenizerTrainConfig(inputs=[str(out / "dedup"), *section.extra_inputs], output=out / "tokenizer", show_progress=not no_progress, **settings)
    report, trained = train_as_ray_task(train_config, config.ray)
    console.print(f"[green]tokenizer {'trained' if trained else 'already trained'}[/green] → {out / 'tokenizer'}: {report['vocab']}")
    return {"path": str(out / "tokenizer"), "trained": trained, "vocab": report["vocab"], "corpus_bytes": report["corpus_trained"]["bytes"]}


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill run configs/demo.yaml`  (the sample corpus that ships in the repo)\n\n"
        "* `crawlmill run configs/demo.yaml --only filter`  (one stage; its input stage must have finished)"
    )
)
def run(
    config_file: Path = typer.Argument(..., help="Pipeline config (YAML); see configs/demo.yaml."),
    only: Optional[str] = typer.Option(None, "--only", help=f"Run one stage: {', '.join(PIPELINE_STAGES)}."),
    no_progress: bool = NO_PROGRESS,
) -> None:
    """Run the whole pipeline from one config: ingest, filter, dedup, tokenizer, pack; each stage resumable."""
    from crawlmill.pipeline.config import ConfigError, load_run_config
    from crawlmill.pipeline.dedup.stage import run_dedup
    from crawlmill.pipeline.filter.stage import FilterStage
    from crawlmill.pipeline.ingest.sources import InputError, resolve_sources
    from crawlmill.pipeline.ingest.stage import IngestStage
    from crawlmill.pipeline.stage import StageInputMismatch

    if only is not None and only not in PIPELINE_STAGES:
        raise _fail(f"--only {only!r}: choose one of {', '.join(PIPELINE_STAGES)}")
    try:
        config = load_run_config(config_file)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    out = Path(config.output_dir)

    def build(name: str):  # noqa: ANN202 - a Stage
        if name == "ingest":
            section = config.ingest
            sources = resolve_sources(section.inputs, section.dump, section.base_url, section.file_format, section.max_files)
            return IngestStage(sources, section.options)
        return FilterStage(str(out / "ingest"), config.filter)

    summary = {}
    for name in PIPELINE_STAGES if only is None else (only,):
        try:
            if name == "dedup":
                result = run_dedup([str(out / "filter")], out / "dedup", config.dedup, config.ray, progress=not no_progress)
                _report(result)
                summary[name] = result.stats
                continue
            if name == "tokenizer":
                summary[name] = _pipeline_tokenizer(config, out, no_progress)
                continue
            if name == "pack":
                from crawlmill.pipeline.pack.stage import run_pack

                tokenizer_dir = config.tokenizer.path or out / "tokenizer"
                result = run_pack([out / "dedup"], out / "shards", tokenizer_dir, config.pack, config.ray, progress=not no_progress)
                _report(result)
                summary[name] = {**result.stats, "tokens": result.manifest["tokens"], "shards": result.manifest["shards_count"]}
                continue
            stage = build(name)
        except (InputError, ValueError, FileNotFoundError, StageInputMismatch) as exc:
            raise _fail(str(exc)) from None
        summary[name] = _run(stage, out / name, config.ray, False, no_progress).stats
    console.print(json.dumps(summary, indent=1, ensure_ascii=False))


from crawlmill.tokenizer_cli import tokenizer_app  # noqa: E402 - sub-apps register after the verbs above

app.add_typer(tokenizer_app, name="tokenizer")


from .pack_cli import register as _register_pack  # noqa: E402 - pack and shards live in pack_cli.py

_register_pack(app)


if __name__ == "__main__":
    app()
