"""`crawlmill quality`: score documents with a quality classifier, and train one.

    crawlmill quality out/dedup --model models/quality --output out/quality --keep-top 0.3
    crawlmill quality train --positive en=ref/en.jsonl zh=ref/zh.txt --negative out/dedup --output models/quality
    crawlmill quality train --labels graded.jsonl --output models/edu

`crawlmill quality DIR...` is `crawlmill quality score DIR...` (the pipeline's quality stage alone;
its options are the `quality:` section's fields); the group's --help says so, and shows the bare
form in its usage line. `--positive` and `--negative` take several inputs
after one flag, or the flag again before each.
"""

from typing import List, Optional

import click
import typer
from typer.core import TyperGroup

from .cli_common import stage_verb

VARIADIC = ("--positive", "--negative")


class ScoreByDefault(TyperGroup):
    """`crawlmill quality DIR...` runs `score`; `--positive a b --negative c` repeats the flag per value."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["score", *args]
        expanded, flag = [], None
        for arg in args:
            if arg in VARIADIC:
                flag = arg
                continue
            if flag and not arg.startswith("-"):
                expanded += [flag, arg]
                continue
            flag = None
            expanded.append(arg)
        return super().parse_args(ctx, expanded)


app = typer.Typer(
    cls=ScoreByDefault,
    help=(
        "Semantic quality: score documents with a fastText classifier (crawlmill quality DIR...), or train one (crawlmill quality train).\n\n"
        "The bare form `crawlmill quality DIR... --model MODEL --output DIR [OPTIONS]` is `crawlmill quality score`: "
        "its options (--model, --keep-top, --threshold, --buckets, --keep-dropped, --normalize...) are listed by `crawlmill quality score --help`."
    ),
    # the bare form in the usage line too, where the group's would show `COMMAND [ARGS]...` only
    subcommand_metavar="DIR... [SCORE OPTIONS] | COMMAND [ARGS]...",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill quality out/dedup --model models/quality --output out/quality --keep-top 0.3`\n\n"
        "* `crawlmill quality out/dedup --model dclm_fasttext.bin --output out/quality --threshold 0.02`  (DCLM's released classifier)\n\n"
        "* `crawlmill quality train --positive en=ref/en.jsonl zh=ref/zh.txt --negative out/dedup --output models/quality`\n\n"
        "* `crawlmill quality train --labels graded.jsonl --output models/edu`  (graded 0-5 labels)"
    ),
)


@stage_verb(
    app, "quality", name="score",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill quality out/dedup --model models/quality --output out/quality --keep-top 0.3`  (the best 30% of each language)\n\n"
        "* `crawlmill quality out/dedup --model models/quality --output out/quality`  (label only: quality_score, quality_bucket)\n\n"
        "* `crawlmill quality out/dedup --model models/quality --output out/quality --keep-top 0.3 --keep-dropped`  (the other 70% in out/quality/_dropped, with their scores)\n\n"
        "* `crawlmill quality score out/dedup --model dclm.bin --positive-label __label__hq --output out/q --threshold 0.02`"
    ),
)  # fmt: skip
def score(
    inputs: List[str] = typer.Argument(..., help="Finished stage output folders (e.g. dedup's)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="A `crawlmill quality train` folder, or a fastText model file (.bin/.ftz)."),
    positive_label: Optional[str] = typer.Option(None, "--positive-label", help="A model file's label whose probability is the score [default: __label__hq]; a model folder's (or a file inside one) is its quality_model.json's, and a different one is refused."),
    normalize: Optional[str] = typer.Option(None, "--normalize", help="A model file's text preparation: newlines (DCLM's: line breaks become spaces) or crawlmill (`crawlmill quality train`'s: lower-cased, split into words, Chinese segmented) [default: newlines, with a warning]; a model folder's (or a file inside one) is its quality_model.json's, and a different one is refused. A model.bin copied out of its folder needs --normalize crawlmill."),
    keep_top: Optional[float] = typer.Option(None, "--keep-top", help="Keep this share of each language's documents, best first."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Keep documents scoring at least this: a probability in (0, 1) (0.3, not 30), a graded model's expected grade in (0, max grade)."),
    label_only: Optional[bool] = typer.Option(None, "--label-only", help="Keep every document; only add quality_score and quality_bucket (also when no rule is given)."),
    buckets: Optional[int] = typer.Option(None, "--buckets", help="Percentile buckets of the score (byte-weighted, per language), 2 to 100."),
    keep_dropped: Optional[bool] = typer.Option(None, "--keep-dropped", help="Also write the dropped documents, with their quality_score and drop_reason, to _dropped/ (as filter's --keep-dropped): the pages a --keep-top or --threshold left out."),
) -> None:
    """Score every document with a quality classifier; bucket the scores; keep by a rule."""


def _train_spec():  # noqa: ANN202 - a StageSpec outside the pipeline list
    from crawlmill.pipeline.definition import StageSpec
    from crawlmill.pipeline.quality.config import ClassifierTrainConfig

    return StageSpec("quality_train", ClassifierTrainConfig, "crawlmill.pipeline.quality.train_stage:QualityTrainStage", "", "")


class _LazySpec:
    """The train verb's spec, built when used (keeps `crawlmill --help` light)."""

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(_train_spec(), name)


@stage_verb(
    app, "quality_train", spec=_LazySpec(), name="train",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill quality train --positive en=ref/en.jsonl zh=ref/zh.txt --negative out/dedup --output models/quality`\n\n"
        "* `crawlmill quality train --positive en=wiki.txt --negative en=cc.txt --per-language --output models/q`\n\n"
        "* `crawlmill quality train --labels graded.jsonl --output models/edu`  (one class per grade; the score is the expected grade)\n\n"
        "* `crawlmill quality train --labels topics.jsonl --output models/topics`  (topic labels: remix's classifier.model)"
    ),
)  # fmt: skip
def train(
    positive: Optional[List[str]] = typer.Option(None, "--positive", help="Reference text: LANG=PATH (a pipeline folder, Parquet, JSONL, or text: one document a line); LANG one of --language. Plain text needs LANG=; a folder or file with a lang column or field may leave it out."),
    negative: Optional[List[str]] = typer.Option(None, "--negative", help="Web text, as --positive ([LANG=]PATH; without LANG= the rows' lang column or field)."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Labelled examples: JSONL with text, lang and grade (e.g. 0-5) or label (a topic, for remix's classifier); lang may be left out only when one --language is trained."),
    languages: Optional[List[str]] = typer.Option(None, "--language", help="Languages to train (repeat the flag; default en and zh)."),
    per_language: Optional[bool] = typer.Option(None, "--per-language", help="One model per language (default: one model for all)."),
    heldout: Optional[float] = typer.Option(None, "--heldout", help="Share of the documents held out for the report."),
    max_documents: Optional[int] = typer.Option(None, "--max-documents", help="At most this many documents per class and language, a uniform sample of each (also what training holds in memory); 0: every document. With --labels the default caps nothing (grades keep their shares); give a number to cap each class."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the split, the sampling and fastText."),
    epoch: Optional[int] = typer.Option(None, "--epoch", help="fastText epochs."),
    word_ngrams: Optional[int] = typer.Option(None, "--word-ngrams", help="fastText word n-grams."),
    lr: Optional[float] = typer.Option(None, "--lr", help="fastText learning rate (DCLM's 0.1; more for a few hundred documents)."),
    bucket: Optional[int] = typer.Option(None, "--bucket", help="fastText n-gram hash buckets (2M: an 800 MB model; fewer for small data)."),
    min_chars: Optional[int] = typer.Option(None, "--min-chars", help="Leave out documents shorter than this."),
    balance: Optional[bool] = typer.Option(None, "--balance/--no-balance", help="Downsample the larger class of each language to the smaller's size (--positive/--negative only: --labels classes keep their shares)."),
) -> None:
    """Train a fastText quality classifier (reference vs web text, or graded labels); report held-out ROC-AUC."""
