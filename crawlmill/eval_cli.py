"""`crawlmill eval RUN --data SHARDS...`: a run's checkpoint on packed shard folders it did not train
on: the loss and the exact bits per byte over every token of every document
(crawlmill/training/evaluate.py).

    crawlmill eval runs/1b --data heldout/shards
    crawlmill eval runs/1b --data wiki/shards --data forums/shards --checkpoint step-00002000 --json eval.json

Exit status: 0 done, 2 bad input (no run or checkpoint, a folder without a manifest or packed with
another tokenizer, a token outside the model's vocabulary).
"""

from pathlib import Path
from typing import Any, List, Optional

import typer

from crawlmill.training.packages import require_training_packages

from .cli_common import err, out, print_json, user_errors
from .hf_cli import quiet_libraries

app = typer.Typer()


@app.command(
    name="eval",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill eval runs/1b --data heldout/shards`  (the newest checkpoint on a held-out folder)\n\n"
        "* `crawlmill eval runs/1b --data wiki/shards --data forums/shards --checkpoint step-00002000 --json eval.json`\n\n"
        "* `crawlmill eval runs/1b --data s3://bucket/CC-MAIN-2024-10/shards --max-tokens 10000000`  (a sample: the first 10M tokens)\n\n"
        "Every token of every document is predicted once (windows of the model's context); bits per byte use the UTF-8 bytes "
        "of the predicted tokens, which over a whole folder are the bytes pack recorded (bytes_packed).\n\n"
        "Exit status: 0 done; 2 bad input (no run or checkpoint, no manifest, another tokenizer, a token outside the vocabulary)."
    ),
)
def eval_(
    run: str = typer.Argument(..., help="A `crawlmill train` (or `crawlmill import`) run folder, path or URL."),
    data: List[str] = typer.Option(..., "--data", help="A shard folder (`crawlmill pack` output, path or URL); repeat for several."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="A checkpoint of the run (its step: step-2000, or the folder's name step-00002000) or a checkpoint folder; default: the newest complete one."),
    micro_batch: int = typer.Option(4, "--micro-batch", "--micro-batch-size", help="Windows evaluated at once (memory: the model and this many windows)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", help="Stop each folder after about this many predicted tokens (a sample from its start)."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="The tokenizer folder, when it moved since packing (for bits per byte; its tokenizer.json must be the shards')."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the figures to this JSON file; `--json -`: print them as JSON on stdout (as other verbs' --json does), the lines going to stderr."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress (tokens) on stderr."),
) -> None:
    """Evaluate a run's checkpoint on shard folders: loss and exact bits per byte."""
    from crawlmill.pipeline.progress import StageProgress
    from crawlmill.shards.manifest import load_manifest

    shown: dict[str, Any] = {}

    def report(folder: str, count: int) -> None:
        if folder not in shown:
            for previous in shown.values():
                previous.__exit__(None, None, None)
            shown.clear()
            manifest = load_manifest(folder) or {}
            total = int(manifest.get("tokens", 0)) if max_tokens is None else max_tokens
            shown[folder] = StageProgress(f"eval {folder}", total, 0, enabled=progress, unit="tokens", console=err).__enter__()
        shown[folder].advance(count)

    with user_errors(), quiet_libraries():
        to_stdout = json_path is not None and str(json_path) == "-"
        if json_path is not None and not to_stdout and json_path.is_dir():  # before the evaluation, not after it
            raise IsADirectoryError(f"--json {json_path} is a folder: give a file name")
        require_training_packages("crawlmill eval")
        from crawlmill.training.evaluate import evaluate_run

        try:
            record = evaluate_run(run, data, checkpoint=checkpoint, micro_batch=micro_batch, max_tokens=max_tokens, progress=report, tokenizer=tokenizer)
        finally:
            for bar in shown.values():
                bar.__exit__(None, None, None)
    lines = err if to_stdout else out  # stdout holds the JSON alone
    lines.print(f"{record['run']} at step {record['step']:,} ({record['checkpoint']})", highlight=False)
    for r in record["results"]:
        why = r.get("bpb_unavailable", "no bytes counted")
        hint = "; the tokenizer's folder, if it moved: --tokenizer DIR" if not tokenizer and why.endswith("not found") else ""
        bpb = f"{r['bpb']:.4f}" if r["bpb"] is not None else f"not reported ({why}{hint})"
        sample = "" if r["complete"] else " (a sample: --max-tokens)"
        checked = "" if r["tokenizer_checked"] else " (tokenizer not checked: the run has no shards, nor an imported tokenizer)"
        lines.print(f"{r['data']}: loss {r['loss']:.4f}, bits per byte {bpb}; {r['tokens']:,} tokens, {r['documents']:,} documents{sample}{checked}", highlight=False)
    if to_stdout:
        print_json(record)
    elif json_path is not None:  # after the figures are shown: a write that fails loses nothing of them
        from crawlmill.files import atomic_write_json

        with user_errors():
            json_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(json_path, record)
