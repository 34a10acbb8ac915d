"""Hugging Face model folders in and out (LlamaForCausalLM, DeepSeek LLM's own layout):
`crawlmill export RUN --output DIR` writes a training run's checkpoint as one
(crawlmill/training/export_hf.py); `crawlmill import DIR --output RUN` makes one a run folder that
`crawlmill train --init-from RUN` starts from (crawlmill/training/import_hf.py).

    crawlmill export runs/1b --output hf/1b
    crawlmill export s3://bucket/runs/1b --checkpoint step-00002000 --dtype fp32 --output hf/1b-2000
    crawlmill import hf/deepseek-llm-7b-base --output runs/deepseek-7b-base

Export's run folder may be a URL; the folders written are local, under a temporary name renamed
when complete. Exit status: 0 done, 2 bad input (no run or checkpoint there, a tokenizer that is
not the shards', a model crawlmill does not train, an output folder that exists without
--overwrite), 1 when the disk refused a write.
"""

import contextlib
import json
import re
import warnings
from typing import Iterator, Optional

import typer

from crawlmill.training.packages import require_training_packages

from .cli_common import err, out, user_errors

app = typer.Typer()
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """Bytes of a size such as 5GB, 500MB, 2GiB or 1000000."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not found or found.group(2).upper() not in UNITS or float(found.group(1)) <= 0:
        raise ValueError(f"--shard-size {text!r}: a positive size such as 5GB, 500MB or 2GiB")
    return int(float(found.group(1)) * UNITS[found.group(2).upper()])


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Megatron-Core's and torch.distributed.checkpoint's notices (no Apex, deprecations) are not
    the user's to act on here: the conversion's own errors still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(megatron|torch\.distributed\.checkpoint)(\.|$)")
        yield


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
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="A checkpoint of the run (its step: step-2000, or the folder's name step-00002000) or a checkpoint folder; default: the newest complete one."),
    dtype: str = typer.Option("bf16", "--dtype", help="Weights' type in the folder: bf16, fp16 or fp32."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="The tokenizer folder, when it moved since packing (its tokenizer.json must be the shards')."),
    shard_size: str = typer.Option("5GB", "--shard-size", help="Largest safetensors file; a bigger model is split, with an index."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output folder if it exists."),
) -> None:
    """Export a run's checkpoint as a Hugging Face model folder (LlamaForCausalLM + the run's tokenizer)."""
    with user_errors(), quiet_libraries():
        shard_bytes = parse_size(shard_size)
        require_training_packages("crawlmill export")
        from crawlmill.training.export_hf import export_run

        with err.status(f"exporting {run} → {output} (loading the checkpoint, converting, writing)"):
            record = export_run(run, output, checkpoint=checkpoint, dtype=dtype, tokenizer=tokenizer, shard_bytes=shard_bytes, overwrite=overwrite)
    out.print(json.dumps(record, indent=1), highlight=False)
    out.print(f"[green]export done[/green] → {output} (step {record['step']}, {record['parameters']:,} parameters)", highlight=False)


@app.command(
    name="import",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill import hf/deepseek-llm-7b-base --output runs/deepseek-7b-base`  (a released base model)\n\n"
        "* `crawlmill train --config deepseek-7b --data out/shards --output runs/7b-cont --init-from runs/deepseek-7b-base`  (then continue its pretraining)\n\n"
        "* `crawlmill import hf/1b --output runs/1b-again`  (what `crawlmill export` wrote)\n\n"
        "The training config's model must have the folder's shape; the built-in config of that shape, if any, is printed.\n\n"
        "Exit status: 0 done; 2 bad input (not a Llama-layout folder, a model crawlmill does not train, an existing output); "
        "1 when the disk refused a write."
    ),
)
def import_(
    source: str = typer.Argument(..., help="A Hugging Face model folder (config.json + safetensors or pytorch_model*.bin), LlamaForCausalLM."),
    output: str = typer.Option(..., "--output", "-o", help="The run folder to write (local): one checkpoint, for --init-from."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the output folder if it exists."),
) -> None:
    """Import a Hugging Face Llama-layout model as a run folder that `crawlmill train --init-from` starts from."""
    with user_errors(), quiet_libraries():
        require_training_packages("crawlmill import")
        from crawlmill.training.import_hf import import_hf

        with err.status(f"importing {source} → {output} (reading the weights, converting, writing the checkpoint)"):
            record = import_hf(source, output, overwrite=overwrite)
    out.print(json.dumps(record, indent=1), highlight=False)
    shape = f"the shape of the built-in config {record['builtin']}" if record["builtin"] else "a shape no built-in config has: give its model in your training config (run.json's)"
    out.print(f"[green]import done[/green] → {output} ({record['parameters']:,} parameters; {shape})", highlight=False)
