"""The `crawlmill` command line: one verb per stage, each also runnable as a Ray job.

    crawlmill ingest samples/crawl-data --output out/ingest
    crawlmill run configs/demo.yaml
    ray job submit --working-dir . -- crawlmill ingest --dump CC-MAIN-2024-22 --max-files 4 --output /shared/ingest

Every CLI module holds a `typer.Typer` named `app`; this one adds them all the same way. What the
verbs share (common options, errors, reporting) is cli_common.py. Every verb that runs stages starts
a local Ray unless --address (or RAY_ADDRESS, as under `ray job submit`) names a cluster. Exit
status: 0 when the work finished, 1 when tasks failed (rerun to retry only those), 2 for bad input
or config.
"""

import typer

from . import eval_cli, hf_cli, plan_cli, quality_cli, run_cli, shards_cli, stage_cli, tokenizer_cli, train_cli

app = typer.Typer(
    help="crawlmill: Common Crawl -> pretraining data -> Megatron-Core pretraining, on Ray.",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill run configs/demo.yaml`  (every stage on the sample corpus, resumable)\n\n"
        "* `crawlmill ingest samples/crawl-data --output out/ingest`  (one stage; `crawlmill ingest --help`)\n\n"
        "* `crawlmill shards inspect out/shards`\n\n"
        "* `crawlmill plan --compute 1e21`\n\n"
        "* `ray job submit --working-dir . -- crawlmill ingest --dump CC-MAIN-2024-22 --max-files 4 --output /shared/ingest`"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
)
# (module, group name): None adds the module's verbs at the top level.
for module, group in ((stage_cli, None), (quality_cli, "quality"), (tokenizer_cli, "tokenizer"), (run_cli, None), (train_cli, None), (eval_cli, None), (hf_cli, None), (shards_cli, "shards"), (plan_cli, "plan")):
    app.add_typer(module.app, name=group)


if __name__ == "__main__":
    app()
