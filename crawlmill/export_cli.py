"""`crawlmill export RUN --output DIR`: a training run's checkpoint as a Hugging Face model folder
(LlamaForCausalLM, DeepSeek LLM's own layout; crawlmill/training/export_hf.py).

    crawlmill export runs/1b --output hf/1b
    crawlmill export s3://bucket/runs/1b --checkpoint step-00002000 --dtype fp32 --output hf/1b-2000

The run folder may be a URL; the output is a local folder, written under a temporary name and
renamed when complete. Exit status: 0 done, 2 bad input (no run or checkpoint there, a tokenizer
that is not the shards', an output folder that exists without --overwrite), 1 when the disk
refused a write.
"""

import json
import re
from typing import Optional

import typer

from .cli_common import err, out, user_errors

app = typer.Typer()
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """Bytes of a size such as 5GB, 500MB, 2GiB or 1000000."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not found or found.group(2).upper() not in UNITS or float(found.group(1)) <= 0:
        raise ValueError(f"--shard-size {text!r}: a positive size such as 5GB, 500MB or 2GiB")
    return int(float(found.group(1)) * UNITS[found.group(2).upper()])


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill export runs/1b --output hf/1b`  (the newest complete checkpoint, bf16)\n\n"
        "* `crawlmill export runs/1b --checkpoint step-00002000 --dtype fp32 --output hf/1b-2000`\n\n"
        "* `crawlmill export s3://bucket/runs/7b --output hf/7b --shard-size 2GB`\n\n"
        "Then: `transformers.AutoModelForCausalLM.from_pretrained('hf/1b')`, `vllm serve hf/1b`, "
        "`lm_eval --model hf --model_args pretrained=hf/1b`.\n\n"
        "Exit status: 0 done; 2 bad input (no run or checkpoint, a tokenizer other than the shards', an existing output); "
        "1 when the disk refused a write."
    ),
)
def export(
    run: str = typer.Argument(..., help="A `crawlmill train` run folder (path or URL)."),
    output: str = typer.Option(..., "--output", "-o", help="The Hugging Face folder to write (local)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="A checkpoint of the run (step-N) or a checkpoint folder; default: the newest complete one."),
    dtype: str = typer.Option("bf16", "--dtype", help="Weights' type in the folder: bf16, fp16 or fp32."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="The tokenizer folder, when it moved since packing (its tokenizer.json must be the shards')."),
    shard_size: str = typer.Option("5GB", "--shard-size", help="Largest safetensors file; a bigger model is split, with an index."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output folder if it exists."),
) -> None:
    """Export a run's checkpoint as a Hugging Face model folder (LlamaForCausalLM + the run's tokenizer)."""
    with user_errors():
        shard_bytes = parse_size(shard_size)
        from crawlmill.training.export_hf import export_run

        with err.status(f"exporting {run} → {output} (loading the checkpoint, converting, writing)"):
            record = export_run(run, output, checkpoint=checkpoint, dtype=dtype, tokenizer=tokenizer, shard_bytes=shard_bytes, overwrite=overwrite)
    out.print(json.dumps(record, indent=1), highlight=False)
    out.print(f"[green]export done[/green] → {output} (step {record['step']}, {record['parameters']:,} parameters)", highlight=False)
