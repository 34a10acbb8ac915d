"""`crawlmill plan`: DeepSeek LLM's scaling laws (Section 3) as a planner (training/planner.py) and
an IsoFLOP study's configs (training/scaling_sweep.py) and fit (training/scaling_fit.py).

    crawlmill plan --compute 1e20                          # η_opt, B_opt, M_opt, D_opt and a model shape
    crawlmill plan --model deepseek-7b --tokens 2e12       # M, 6N1, 6N2, C = M·D, Equation 1 for C, memory per GPU
    crawlmill plan sweep --budgets 1e17 3e17 1e18 --points 5 --output sweep/
    crawlmill plan fit sweep/runs/* --plot isoflop.png

Nothing here imports torch or Megatron; numpy and matplotlib only inside `fit`. Results go to
stdout, errors to stderr with exit status 2 (cli_common).
"""

import dataclasses
from pathlib import Path
from typing import Any, List, Optional

import click
import typer
from typer.core import TyperCommand

from crawlmill.training.memory import human_count
from crawlmill.training.planner import sci

from .cli_common import at_least_one, err, fail, out, print_json, user_errors

PAPER_FORMULAS = "η_opt = 0.3118·C^-0.1250, B_opt = 0.2920·C^0.3271, M_opt = 0.1715·C^0.5243, D_opt = 5.8316·C^0.4757"

app = typer.Typer(
    help=(
        "Scaling-law planner (DeepSeek LLM, Section 3): from a compute budget C (FLOPs) the optimal peak LR, "
        f"batch, model scale M and tokens D ({PAPER_FORMULAS}), with a real model shape and global batch; "
        "or, for a model and a token count, its M beside 6N1 and 6N2 and Equation 1 for C = M·D."
    ),
    no_args_is_help=True,
    invoke_without_command=True,
    rich_markup_mode="markdown",
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill plan --compute 1e20`\n\n"
        "* `crawlmill plan --compute 3e21 --seq-length 2048 --micro-batch-size 2 --data-parallel 64 --json`\n\n"
        "* `crawlmill plan --model deepseek-7b --tokens 2e12`  (built-ins: tiny, 125m, 1b, deepseek-7b, deepseek-67b; or a config file)\n\n"
        "* `crawlmill plan --model deepseek-7b --tokens 2e12 --data-parallel 64`  (its memory per GPU with 64 data-parallel ranks sharing the optimizer)\n\n"
        "* `crawlmill plan --compute 1e24 --tensor-parallel 8 --pipeline-parallel 4 --data-parallel 128`  (a shape Megatron can split: heads a multiple of 8, layers of 4)\n\n"
        "* `crawlmill plan sweep --budgets 1e17 3e17 1e18 --points 5 --output sweep/`\n\n"
        "* `crawlmill plan fit sweep/runs/* --plot isoflop.png`"
    ),
)
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
MICRO = typer.Option(1, "--micro-batch-size", help="Megatron's micro batch: the global batch is a multiple of it x --data-parallel.")
MICRO_OR_CONFIG = typer.Option(None, "--micro-batch-size", help="Megatron's micro batch: the global batch is a multiple of it x --data-parallel (default 1; with --model, the config's).")
DATA_PARALLEL = typer.Option(1, "--data-parallel", help="Data-parallel ranks: the global batch is a multiple of --micro-batch-size x this.")


def _line(label: str, text: str) -> None:
    out.print(f"{label:<20} {text}", highlight=False, markup=False)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n != 1 else f"1 {noun.removesuffix('s')}"


def _shape(model: Any) -> str:
    groups = f" ({model.num_query_groups} key/value groups)" if model.num_query_groups else ""
    return (
        f"{_count(model.num_layers, 'layers')}, d_model {model.hidden_size}, {_count(model.num_attention_heads, 'heads')} of dim {model.head_dim}{groups}, "
        f"SwiGLU ffn {model.ffn_hidden_size}, seq {model.seq_length}"
    )


def _batch(tokens: float, sequences: int, seq_length: int, multiple: dict[str, int]) -> str:
    return (
        f"{sci(tokens)} tokens = {tokens / seq_length:,.1f} sequences of {seq_length} -> global batch {sequences:,} "
        f"(a multiple of micro batch {multiple['micro_batch_size']} x data-parallel {multiple['data_parallel']})"
    )


@app.callback()
def plan(
    ctx: typer.Context,
    compute: Optional[float] = typer.Option(None, "--compute", help="Compute budget C in FLOPs (e.g. 1e20): plan the optimal run for it."),
    model: Optional[str] = typer.Option(None, "--model", help="A built-in model (tiny, 125m, 1b, deepseek-7b, deepseek-67b) or a training config file: with --tokens, its M, 6N1, 6N2 and Equation 1."),
    tokens: Optional[float] = typer.Option(None, "--tokens", help="With --model: training tokens D (e.g. 2e12)."),
    seq_length: Optional[int] = typer.Option(None, "--seq-length", help="Sequence length l_seq (default: 4096; with --model, the model's)."),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="Vocabulary for 6N2 and parameter counts (default: the model's, else 102,400)."),
    micro_batch_size: Optional[int] = MICRO_OR_CONFIG,
    data_parallel: int = DATA_PARALLEL,
    tensor_parallel: Optional[int] = typer.Option(None, "--tensor-parallel", help="Tensor-parallel ranks: with --compute, heads and ffn snapped to multiples of it; the memory per GPU for it (default: 1; with --model, the config's)."),
    pipeline_parallel: Optional[int] = typer.Option(None, "--pipeline-parallel", help="Pipeline-parallel stages: with --compute, layers snapped to a multiple of it; the memory per GPU for it (default: 1; with --model, the config's)."),
    as_json: bool = JSON,
) -> None:
    """Plan a run from a compute budget, or check a model and token count against the scaling laws
    (and its memory per GPU)."""
    if ctx.invoked_subcommand is not None:
        # `plan --seq-length 2048 sweep ...` would plan the sweep at sweep's own default (4096), silently
        sources = {param.opts[0]: ctx.get_parameter_source(param.name) for param in ctx.command.params if param.name}
        given = [option for option, source in sources.items() if source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")]  # typer's own click
        if given:
            sub = ctx.invoked_subcommand
            raise fail(f"plan {sub}: {', '.join(given)} before `{sub}` belong{'s' * (len(given) == 1)} to `crawlmill plan` alone; give {sub}'s own options after it (crawlmill plan {sub} --help)")
        return
    from crawlmill.training.planner import DEFAULT_SEQ_LENGTH, DEFAULT_VOCAB_SIZE, plan_compute, plan_model

    if compute is not None and (model is not None or tokens is not None):
        raise fail("give either --compute C, or --model NAME with --tokens D, not both")
    if compute is None and (model is None or tokens is None):
        raise fail("give --compute C (FLOPs), or --model NAME with --tokens D")
    at_least_one(seq_length=seq_length, vocab_size=vocab_size, micro_batch_size=micro_batch_size, data_parallel=data_parallel, tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel)
    with user_errors():
        from crawlmill.training.config import ParallelConfig

        if compute is not None:
            tp, pp = tensor_parallel or 1, pipeline_parallel or 1
            result = plan_compute(compute, seq_length or DEFAULT_SEQ_LENGTH, vocab_size or DEFAULT_VOCAB_SIZE, micro_batch_size or 1, data_parallel,
                                  tensor_parallel=tp, pipeline_parallel=pp)  # fmt: skip
            from crawlmill.training.config import TrainConfig

            shaped = TrainConfig(model=result.model, micro_batch_size=result.micro_batch_size, global_batch_size=result.global_batch_size,
                                 parallel=ParallelConfig(tensor=tp, pipeline=pp))  # fmt: skip
            memory = _memory(shaped, {"vocab_size": result.scales["vocab_size"]}, data_parallel)
            if as_json:
                print_json({**result.to_json(), "memory": memory})
            else:
                _print_compute(result, memory)
            return
        from crawlmill.training.config import builtin_names, load_train_config, resolve_builtin

        try:
            resolve_builtin(model)  # type: ignore[arg-type]
        except FileNotFoundError:
            raise fail(f"--model {model}: not a built-in ({', '.join(builtin_names())}) and no such config file") from None
        config = load_train_config(model)  # type: ignore[arg-type]
        if seq_length is not None:
            config.model = dataclasses.replace(config.model, seq_length=seq_length)  # checked again
        if micro_batch_size is not None:
            config = dataclasses.replace(config, micro_batch_size=micro_batch_size)  # checked again
        if tensor_parallel is not None or pipeline_parallel is not None:
            given = ParallelConfig(tensor=tensor_parallel or config.parallel.tensor, pipeline=pipeline_parallel or config.parallel.pipeline, context=config.parallel.context)
            config = dataclasses.replace(config, parallel=given)  # checked again
        report = plan_model(config.model, tokens, vocab_size, config.micro_batch_size, data_parallel)  # type: ignore[arg-type]
        report["memory"] = _memory(config, report, data_parallel)
    report = {"name": model, **report, "config_lr": config.optimizer.lr, "config_global_batch_size": config.global_batch_size}
    if as_json:
        print_json(report)
    else:
        _print_model(report, config.model, assumed_vocabulary=vocab_size is None and config.model.vocab_size is None)


H100_BYTES = 85_029_158_912  # what torch.cuda.mem_get_info reports as an 80 GB H100's total


def _memory(config: Any, report: dict[str, Any], data_parallel: int) -> dict[str, Any]:
    """One GPU's memory for the config's parallel layout, micro batch and recomputation (training/memory.py)."""
    from crawlmill.training.memory import estimate_memory, too_large

    batch = config.global_batch_size or report["global_batch_size"]  # the config's, else Equation 1's
    estimate = estimate_memory(config, report["vocab_size"], data_parallel, cuda=True, global_batch=batch)
    p = config.parallel
    layout = {"tensor": p.tensor, "pipeline": p.pipeline, "context": p.context, "data": data_parallel,
              "micro_batch_size": config.micro_batch_size, "recompute": config.model.recompute, "precision": config.precision}  # fmt: skip
    fits = too_large(estimate, H100_BYTES) is None
    return {**estimate.to_json(), "layout": layout, "text": estimate.describe(), "fits_h100": fits}


def _print_memory(memory: dict[str, Any]) -> None:
    _line("memory per GPU", memory["text"])
    _line("", "for " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in memory["layout"].items()) + " (estimated; CUDA context and workspace not counted)")
    if not memory["fits_h100"]:
        _line("", "more than an 80 GB H100 holds: more data-parallel ranks (--data-parallel N; they share the optimizer's states), "
                  "tensor or pipeline parallelism (--tensor-parallel N, --pipeline-parallel N; they split the weights and activations), "
                  "a smaller micro batch (--micro-batch-size) or model.recompute lower it")


def _print_compute(result: Any, memory: dict[str, Any]) -> None:
    best, m = result.optimum, result.model
    params = result.model.parameters(result.scales["vocab_size"])
    multiple = {"micro_batch_size": result.micro_batch_size, "data_parallel": result.data_parallel}
    _line("compute C", f"{sci(best.compute)} FLOPs")
    _line("peak LR η_opt", f"{sci(best.lr_opt, 3)}")
    _line("batch B_opt", _batch(best.batch_tokens_opt, result.global_batch_size, m.seq_length, multiple))
    _line("model scale M_opt", f"{sci(best.model_scale_opt)} non-embedding FLOPs/token")
    _line("data D_opt", f"{sci(best.data_tokens_opt)} tokens")
    _line("model", _shape(m))
    _line("  its M", f"{sci(result.model_scale)} ({result.model_scale_deviation:+.1%} from M_opt); 6N1 {sci(result.scales['six_n1'])}, 6N2 {sci(result.scales['six_n2'])}")
    _line("  parameters", f"{human_count(params['non_embedding'])} non-embedding, {human_count(params['total'])} with embeddings (vocabulary {result.scales['vocab_size']:,})")
    _line("  tokens C / M", f"{sci(result.data_tokens)}")
    _print_memory(memory)
    for warning in result.warnings():
        err.print(f"warning: {warning}", highlight=False, markup=False)


def _print_model(report: dict[str, Any], model: Any, assumed_vocabulary: bool = False) -> None:
    # a config that leaves the vocabulary to its data's tokenizer is planned at DeepSeek's: say so
    assumed = " (DeepSeek's: the config takes its data's; --vocab-size N for yours)" if assumed_vocabulary else ""
    _line("model", f"{report['name']}: {_shape(model)}, vocabulary {report['vocab_size']:,}{assumed}")
    _line("M", f"{sci(report['M'])}  (72·L·d² + 12·L·d·l_seq, non-embedding FLOPs/token)")
    _line("6N1", f"{sci(report['six_n1'])}  ({report['six_n1_over_M']:.3f} x M; 72·L·d²)")
    _line("6N2", f"{sci(report['six_n2'])}  ({report['six_n2_over_M']:.3f} x M; 6N1 + 6·vocab·d)")
    _line("tokens D", f"{sci(report['tokens'])}")
    _line("compute C = M·D", f"{sci(report['compute'])} FLOPs")
    configured = ""
    if report["config_lr"] is not None:
        configured = f"  (config: {sci(report['config_lr'], 3)})"
    _line("peak LR η_opt", f"{sci(report['lr_opt'], 3)}{configured}")
    batch = _batch(report["batch_tokens_opt"], report["global_batch_size"], model.seq_length, report["batch_multiple"])
    if report["config_global_batch_size"] is not None:
        batch += f"  (config: {report['config_global_batch_size']:,})"
    _line("batch B_opt", batch)
    _line("at this C", f"M_opt {sci(report['model_scale_opt'])} (this model {report['M'] / report['model_scale_opt']:.2f} x), D_opt {sci(report['data_tokens_opt'])} (these tokens {report['tokens'] / report['data_tokens_opt']:.2f} x)")
    _print_memory(report["memory"])


class MultiValueCommand(TyperCommand):
    """Lets `--budgets 1e17 3e17 1e18` (values up to the next option) mean `--budgets 1e17 --budgets 3e17 ...`:
    click options take one value each, and the plain form is what people type."""

    multi = ("--budgets", "--lr-factors", "--batch-factors")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from crawlmill.pipeline.config import is_number  # what a config's numeric field takes as a string too

        rewritten: list[str] = []
        current, first_pending = None, False
        for arg in args:
            if arg.startswith("-") and not is_number(arg):
                name, has_value = arg.split("=", 1)[0], "=" in arg
                current = name if name in self.multi else None
                first_pending = current is not None and not has_value
            elif current is not None and not first_pending:
                rewritten.append(current)
            else:
                first_pending = False
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


@app.command(
    cls=MultiValueCommand,
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill plan sweep --budgets 1e17 3e17 1e18 --points 5 --output sweep/`\n\n"
        "* `crawlmill plan sweep --budgets 1e18 1e19 --points 7 --span 8 --data out/shards --output sweep/`  (data.shards in every config)\n\n"
        "* `crawlmill plan sweep --budgets 1e17 1e18 --lr-factors 0.5 1 2 --batch-factors 0.5 1 2 --output grid/`  (to fit η_opt and B_opt too)\n\n"
        "* `crawlmill plan sweep --budgets 2e14 6e14 --points 3 --seq-length 128 --data small/shards --split 90,10,0 --output sw/`  "
        "(a small rehearsal: three sizes per budget at sequence 128, the smallest budgets that give three; shards of few documents: "
        "every share of data.split needs a document of each shard)\n\n"
        "then `crawlmill train --config sweep/NAME.yaml` for each file (each writes sweep/runs/NAME/), and "
        "`crawlmill plan fit sweep/runs`"
    ),
)
def sweep(
    budgets: List[float] = typer.Option(..., "--budgets", help="Compute budgets in FLOPs, one or more: --budgets 1e17 3e17 1e18."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the configs (NAME.yaml) and sweep.json; runs write into its runs/."),
    points: int = typer.Option(5, "--points", help="Model sizes per budget, log-spaced around M_opt."),
    span: float = typer.Option(4.0, "--span", help="The sizes run from M_opt / span to M_opt x span."),
    seq_length: int = typer.Option(4096, "--seq-length", help="Sequence length of every model."),
    vocab_size: Optional[int] = typer.Option(None, "--vocab-size", help="Model vocabulary written into each config (default: left to the data's tokenizer)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Pack output folder (shards) every config trains on."),
    split: Optional[str] = typer.Option(None, "--split", help="data.split of every config: train,valid,test shares of each shard's documents (e.g. 90,10,0 for small shards; default: the config's 969,30,1)."),
    lr_factors: List[float] = typer.Option([1.0], "--lr-factors", help="Multiply Equation 1's learning rate by each (one run per factor): --lr-factors 0.5 1 2."),
    batch_factors: List[float] = typer.Option([1.0], "--batch-factors", help="Multiply Equation 1's batch by each (one run per factor)."),
    micro_batch_size: int = MICRO,
    data_parallel: int = DATA_PARALLEL,
    tensor_parallel: int = typer.Option(1, "--tensor-parallel", help="Tensor-parallel ranks of every run: heads and ffn snapped to multiples of it; written as each config's parallel.tensor."),
    pipeline_parallel: int = typer.Option(1, "--pipeline-parallel", help="Pipeline-parallel stages of every run: layers snapped to a multiple of it; written as each config's parallel.pipeline."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write over an existing sweep in --output: its configs and sweep.json are removed; run folders in runs/ are kept (and warned of)."),
    as_json: bool = JSON,
) -> None:
    """Write the training configs of an IsoFLOP study: per budget, model sizes around M_opt, each trained on
    D = C/M tokens with Equation 1's learning rate and batch; sweep.json lists them. Budgets (or factors)
    given twice are written once."""
    from crawlmill.training.scaling_sweep import SweepConfig, write_sweep

    at_least_one(points=points, seq_length=seq_length, vocab_size=vocab_size, micro_batch_size=micro_batch_size, data_parallel=data_parallel,
                 tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel)  # fmt: skip
    with user_errors():
        config = SweepConfig(
            budgets=list(budgets), points=points, span=span, seq_length=seq_length, vocab_size=vocab_size,
            micro_batch_size=micro_batch_size, data_parallel=data_parallel, tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel,
            data=str(data) if data else None,
            lr_factors=list(lr_factors), batch_factors=list(batch_factors), split=split,
        )  # fmt: skip
        index = write_sweep(config, output, overwrite)
    for warning in index["warnings"]:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    if as_json:
        print_json(index)
        return
    for run in index["runs"]:
        out.print(
            f"{run['file']:<26} C {sci(run['budget'], 3):<6} M {sci(run['M'])} ({run['M'] / run['M_opt']:.2f} x M_opt)  D {sci(run['D'])}  "
            f"{_count(run['steps'], 'steps'):>11}  lr {sci(run['lr'], 3)}  batch {run['global_batch_size']:,} x {index['seq_length']}  "
            f"{run['memory_gib']:,.1f} GiB per GPU",
            highlight=False, markup=False,
        )  # fmt: skip
    out.print(f"wrote {_count(len(index['runs']), 'configs')} and sweep.json to {output}; train each with `crawlmill train --config FILE`, then `crawlmill plan fit {output}/runs`", highlight=False, markup=False)


@app.command(
    epilog=(
        "**Examples**\n\n"
        "* `crawlmill plan fit sweep/runs/* --plot isoflop.png`\n\n"
        "* `crawlmill plan fit sweep/runs --json`  (a folder stands for its run folders)\n\n"
        "* `crawlmill plan fit runs/a runs/b runs/c --metric loss --tolerance 0.05 --skip-unfinished`"
    ),
)
def fit(
    runs: List[Path] = typer.Argument(..., metavar="RUN_DIR", help="Training run folders (run.json + log.jsonl), or folders holding them."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the IsoFLOP curves and the fitted optimum line to this image (its extension says the format: .png, .svg, .pdf, .jpg)."),
    metric: str = typer.Option("bpb", "--metric", help="Final validation metric to minimise: bpb (as DeepSeek) or loss."),
    tolerance: float = typer.Option(0.1, "--tolerance", help="Runs whose compute agrees within this share belong to one budget."),
    skip_unfinished: bool = typer.Option(False, "--skip-unfinished", help="Leave out runs without an end record or validation (default: an error)."),
    as_json: bool = JSON,
) -> None:
    """Fit the scaling laws to finished runs: each budget's IsoFLOP minimum (a parabola in ln M), then
    M_opt = a·C^b and D_opt = a'·C^b' (and η_opt, B_opt where runs varied them), beside DeepSeek's.
    Exit status 1 when no law could be fitted (and then no plot is written)."""
    from crawlmill.training.planner import DEEPSEEK
    from crawlmill.training.scaling_fit import fit_scaling, plot_fit, read_runs

    if metric not in ("bpb", "loss"):
        raise fail(f"--metric {metric!r}: choose bpb or loss")
    if not tolerance >= 0:
        raise fail(f"--tolerance {tolerance}: must be >= 0 (a share of a budget's compute)")
    with user_errors():
        results, skipped = read_runs(list(runs), metric, skip_unfinished)
        if not results:
            raise ValueError("no finished runs to fit")
        result = fit_scaling(results, tolerance)
        fitted = [name for name in LAWS if getattr(result, name) is not None]
        if plot is not None and fitted:  # nothing fitted: no plot that could pass for a result
            plot_fit(result, plot, metric)
    for line in skipped:
        err.print(f"skipped {line}", highlight=False, markup=False)
    for note in result.notes:
        err.print(f"note: {note}", highlight=False, markup=False)
    if as_json:
        print_json({**result.to_json(), "metric": metric, "skipped": skipped, "plot": str(plot) if plot and fitted else None})
        if not fitted:
            raise _nothing_fitted(result, plot)
        return
    for b in result.budgets:
        where = b.problem or (
            f"M_opt {sci(b.model_scale_opt)}{'' if b.in_range else ' (outside the sampled sizes)'}, D_opt {sci(b.data_tokens_opt)}, "
            f"{metric} at the minimum {b.value_opt:.4f}; best run {Path(b.best.path).name} ({metric} {b.best.value:.4f})"
        )
        for name, value in (("η_opt", b.lr_opt), ("B_opt", b.batch_tokens_opt)):
            if value is not None:
                how = "between the values tried" if ("lr" if name == "η_opt" else "batch_tokens") in b.interpolated else "the best value tried"
                where += f"; {name} {sci(value)} ({how})"
        out.print(f"budget {sci(b.compute, 3)} FLOPs, {len(b.runs)} runs: {where}", highlight=False, markup=False)
    for name, label in LAWS.items():
        law, paper = getattr(result, name), getattr(DEEPSEEK, name)
        text = "not fitted (see notes)" if law is None else f"{law.coefficient:.4g}·C^{law.exponent:.4f}"
        out.print(f"{label:<6} = {text:<28} DeepSeek: {paper.coefficient:.4g}·C^{paper.exponent:.4f}", highlight=False, markup=False)
    if not fitted:
        raise _nothing_fitted(result, plot)
    if plot is not None:
        out.print(f"plot written to {plot}", highlight=False, markup=False)


LAWS = {"model_scale": "M_opt", "data_tokens": "D_opt", "lr": "η_opt", "batch_tokens": "B_opt"}


def _nothing_fitted(result: Any, plot: Optional[Path]) -> typer.Exit:
    """Exit status 1, so that a script can tell a fit that gave no law from one that did."""
    minima = sum(b.model_scale_opt is not None for b in result.budgets)
    return fail(
        f"nothing fitted: {minima} of {len(result.budgets)} budget(s) with an IsoFLOP minimum (M_opt and D_opt need 2), "
        f"and no learning rate or batch varied within 2 budgets (see the notes){'; no plot written' if plot else ''}",
        status=1,
    )
