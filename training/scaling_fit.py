"""IsoFLOP studies (DeepSeek LLM, Section 3.2): write the training configs of a sweep, and fit the
scaling laws back from the finished runs.

    crawlmill plan sweep --budgets 1e17 3e17 1e18 --points 5 --output sweep/ --data out/shards
    crawlmill train --config sweep/c1e17-m1.47e8.yaml     # each run writes sweep/runs/<name>/
    crawlmill plan fit sweep/runs/* --plot isoflop.png

Sweep: for each budget C, `points` model scales log-spaced from M_opt/span to M_opt·span around the
planner's M_opt (planner.py), each snapped to a real shape (planner.snap_model), trained on D = C/M
tokens (rounded to whole steps) with η and B from Equation 1 for C; optional `lr_factors` /
`batch_factors` multiply them (a grid for fitting η_opt and B_opt too). Every file is a training
config that `load_train_config(path)` accepts; `sweep.json` lists budget, M, D and file of each, and
its memory per GPU (memory.py).

Fit: the runs (training/runlog.py: run.json's compute, model.M, train_tokens, peak_lr,
global_batch_tokens; the last "valid" record's bpb) are grouped by compute (runs of one budget agree
within `tolerance`). At each budget, every model scale keeps its best run (over lr and batch), and
a least-squares parabola in ln M through them gives the IsoFLOP minimum M_opt (Chinchilla's approach
2, the IsoFLOP profiles of DeepSeek's Figure 4); D_opt = C / M_opt. M_opt = a·C^b and D_opt = a'·C^b' are least-squares lines in
log-log space over the budgets. Where the learning rate (or batch) varies within at least two
budgets, η_opt (B_opt) is fit the same way from each of those budgets' best run.

The parabola's bias: a loss E + A/M^α + B/D^β is not symmetric in ln M, so a parabola over a span
×1/4..×4 puts the minimum slightly off, the more so the further β/α = b/(1 − b) is from 1. Measured
on such losses (α 0.2–0.4, three budgets, five points): exponents within 0.2%; coefficients within 1%
for b ≤ 0.53 (DeepSeek's 0.5243: −0.5%), 1–2.4% at b = 0.54, 3–6% at b = 0.56. A coefficient is the
law at C = 1, extrapolated ~18 decades: a tilt of the exponent by 0.001 moves it ~4%, so compare laws
by their values at the budgets measured as well as by their coefficients.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crawlmill.files import atomic_path, atomic_write_json, atomic_write_text

from .model_config import ModelConfig
from .planner import DEEPSEEK, DEFAULT_VOCAB_SIZE, PowerLaw, ScalingLaws, global_batch, optimum, sci, snap_model
from .runlog import RUN_FILE, read_run

SWEEP_FILE = "sweep.json"
MAX_WARMUP_STEPS = 2000  # DeepSeek's warm-up (Section 2.3)
WARMUP_FRACTION = 0.05  # a short IsoFLOP run warms up over at most this share of its steps
MIN_SIZES = 3  # model scales per budget a parabola's minimum needs


# --- Sweep ----------------------------------------------------------------------------------------


@dataclass
class SweepConfig:
    """`crawlmill plan sweep`'s settings."""

    budgets: list[float]
    points: int = 5
    span: float = 4.0  # model scales from M_opt / span to M_opt · span
    seq_length: int = 4096
    vocab_size: int | None = None  # written into each model; None: the data's tokenizer decides
    micro_batch_size: int = 1
    data_parallel: int = 1  # global batches are multiples of micro batch x data-parallel size
    data: str | None = None  # a pack output folder, written as each config's data.shards
    lr_factors: list[float] = field(default_factory=lambda: [1.0])
    batch_factors: list[float] = field(default_factory=lambda: [1.0])

    def __post_init__(self) -> None:
        if not self.budgets or not all(b > 0 and math.isfinite(b) for b in self.budgets):
            raise ValueError(f"budgets {self.budgets}: give one or more positive FLOP counts")
        if self.points < 1:
            raise ValueError(f"points {self.points}: must be at least 1")
        if not self.span >= 1:
            raise ValueError(f"span {self.span}: must be >= 1 (the factor either side of M_opt)")
        if not all(f > 0 for f in self.lr_factors + self.batch_factors) or not self.lr_factors or not self.batch_factors:
            raise ValueError("lr and batch factors must be positive numbers")


def sweep_points(config: SweepConfig, laws: ScalingLaws = DEEPSEEK) -> list[dict[str, Any]]:
    """Every run of the sweep: budget, target and snapped M, model, D, lr, global batch, name."""
    entries = []
    for budget in config.budgets:
        best = optimum(budget, laws)
        seen = set()
        for i in range(config.points):
            position = 0.0 if config.points == 1 else 2 * i / (config.points - 1) - 1
            target = best.model_scale_opt * config.span**position
            model = snap_model(target, config.seq_length, config.vocab_size)
            shape = (model.num_layers, model.hidden_size)
            if shape in seen:  # two targets snapped to one shape (small budgets): train it once
                continue
            seen.add(shape)
            scale = model.non_embedding_flops_per_token()
            for lr_factor in config.lr_factors:
                for batch_factor in config.batch_factors:
                    batch = global_batch(best.batch_tokens_opt * batch_factor, config.seq_length, config.micro_batch_size, config.data_parallel)
                    steps = max(1, round(budget / scale / (batch * config.seq_length)))
                    tokens = steps * batch * config.seq_length
                    name = f"c{sci(budget, 3)}-m{sci(scale, 3)}"
                    name += f"-lr{lr_factor:g}" if len(config.lr_factors) > 1 else ""
                    name += f"-b{batch_factor:g}" if len(config.batch_factors) > 1 else ""
                    entries.append({
                        "name": name, "budget": budget, "M_opt": best.model_scale_opt, "M_target": target, "M": scale, "D": tokens,
                        "compute": scale * tokens, "steps": steps, "lr": float(f"{best.lr_opt * lr_factor:.4g}"),
                        "global_batch_size": batch, "batch_tokens": batch * config.seq_length,
                        "lr_factor": lr_factor, "batch_factor": batch_factor, "model": model,
                    })  # fmt: skip
    return entries


def train_config_data(entry: dict[str, Any], config: SweepConfig) -> dict[str, Any]:
    """One sweep run as a training config mapping (relative paths: relative to the file)."""
    model = entry["model"]
    model_data = {k: getattr(model, k) for k in ("num_layers", "hidden_size", "num_attention_heads", "ffn_hidden_size", "seq_length")}
    if model.vocab_size is not None:
        model_data["vocab_size"] = model.vocab_size
    data: dict[str, Any] = {
        "model": model_data,
        "global_batch_size": entry["global_batch_size"],
        "micro_batch_size": config.micro_batch_size,
        "train_tokens": float(entry["D"]),
        "optimizer": {"lr": entry["lr"]},
        # DeepSeek's 2000 warm-up steps are ~1% of the 7B's 212k steps; a run of a few thousand steps
        # would spend most of itself warming up, so short runs warm up over 5% of their steps.
        "schedule": {"kind": "multistep", "warmup_steps": min(MAX_WARMUP_STEPS, math.ceil(WARMUP_FRACTION * entry["steps"]))},
        "output": f"runs/{entry['name']}",
    }
    if config.data is not None:
        data["data"] = {"shards": [str(Path(config.data).resolve())]}
    return data


def write_sweep(config: SweepConfig, output: str | Path, overwrite: bool = False, laws: ScalingLaws = DEEPSEEK) -> dict[str, Any]:
    """Write one training config per sweep run and the index sweep.json into `output`."""
    output = Path(output)
    if (output / SWEEP_FILE).exists() and not overwrite:
        raise FileExistsError(f"{output / SWEEP_FILE} exists: write the sweep elsewhere or pass --overwrite")
    if config.data is not None and not Path(config.data).is_dir():
        raise FileNotFoundError(f"--data {config.data}: no such folder (a pack output folder)")
    output.mkdir(parents=True, exist_ok=True)
    runs = []
    for entry in sweep_points(config, laws):
        file = f"{entry['name']}.yaml"
        header = (
            f"# crawlmill plan sweep: budget {entry['budget']:.3g} FLOPs, M {entry['M']:.4g} "
            f"({entry['M'] / entry['M_opt']:.2f} x M_opt), D {entry['D']:.4g} tokens, "
            f"{entry['steps']} steps; lr and batch from Equation 1 (x {entry['lr_factor']:g}, x {entry['batch_factor']:g})\n"
        )
        atomic_write_text(output / file, header + yaml.safe_dump(train_config_data(entry, config), sort_keys=False))
        model = entry.pop("model")
        memory = _memory_gib(model, entry["global_batch_size"], config)
        runs.append({**entry, "file": file, "output": f"runs/{entry['name']}", "model": asdict(model), "memory_gib": memory})
    index = {"seq_length": config.seq_length, "budgets": config.budgets, "points": config.points, "span": config.span, "laws": asdict(laws), "runs": runs,
             "warnings": _collapsed(config, runs)}  # fmt: skip
    atomic_write_json(output / SWEEP_FILE, index)
    return index


def _collapsed(config: SweepConfig, runs: list[dict[str, Any]]) -> list[str]:
    """A warning for each budget whose targets snapped to fewer model sizes than asked (a budget so
    small that neighbouring targets share the nearest real shape): its IsoFLOP curve has fewer points."""
    warnings = []
    for budget in config.budgets:
        sizes = sorted({run["M"] for run in runs if run["budget"] == budget})
        if len(sizes) < config.points:
            few = f"; an IsoFLOP minimum needs at least {MIN_SIZES}" if len(sizes) < MIN_SIZES else ""
            warnings.append(f"budget {sci(budget, 3)}: {len(sizes)} model size(s) of the {config.points} asked (targets snapped to the same shapes){few}: raise the budget or --span")
    return warnings


def _memory_gib(model: ModelConfig, batch: int, config: SweepConfig) -> float:
    """A sweep run's memory per GPU (training/memory.py; bf16, the sweep's micro batch and data
    parallelism), so that the largest sizes of a budget are seen to fit before they are launched."""
    from .config import TrainConfig
    from .memory import GIB, estimate_memory

    train = TrainConfig(model=model, micro_batch_size=config.micro_batch_size, global_batch_size=batch)
    vocab = config.vocab_size or DEFAULT_VOCAB_SIZE
    estimate = estimate_memory(train, vocab, config.data_parallel, cuda=True)
    return round(estimate.total / GIB, 2)


# --- Fit ------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What the fit needs of one finished run."""

    path: str
    compute: float
    model_scale: float
    tokens: float
    lr: float | None
    batch_tokens: float | None
    value: float  # the final validation metric (bpb by default)


def expand_run_dirs(paths: list[str | Path]) -> list[Path]:
    """Run folders as given; a folder without run.json stands for its subfolders that have one."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / RUN_FILE).is_file():
            found.append(path)
            continue
        children = sorted(p.parent for p in path.glob(f"*/{RUN_FILE}")) if path.is_dir() else []
        if not children:
            raise FileNotFoundError(f"{path}: no {RUN_FILE} in it or its subfolders (not a crawlmill training run folder)")
        found.extend(children)
    return found


def read_runs(paths: list[str | Path], metric: str = "bpb", skip_unfinished: bool = False) -> tuple[list[RunResult], list[str]]:
    """The finished runs among `paths` and, when skip_unfinished, what was skipped and why."""
    results, skipped = [], []
    for path in expand_run_dirs(paths):
        run = read_run(path)
        info = run["run"]
        problem = None
        if not run["end"]:
            problem = "unfinished (no end record in log.jsonl)"
        elif not run["valid"] or metric not in run["valid"][-1]:
            problem = f"no final validation {metric}"
        if problem:
            if not skip_unfinished:
                raise ValueError(f"{path}: {problem}; finish it, or pass --skip-unfinished")
            skipped.append(f"{path}: {problem}")
            continue
        try:
            scale = float(info["model"]["M"])
            compute = float(info.get("compute") or scale * float(info["train_tokens"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path / RUN_FILE}: missing or bad {exc} (see training/runlog.py)") from None
        results.append(RunResult(str(path), compute, scale, float(info.get("train_tokens") or compute / scale), info.get("peak_lr"), info.get("global_batch_tokens"), float(run["valid"][-1][metric])))
    return results, skipped


def group_by_budget(runs: list[RunResult], tolerance: float = 0.1) -> list[list[RunResult]]:
    """Runs whose compute agrees within `tolerance` (relative to the group's smallest) form a budget."""
    groups: list[list[RunResult]] = []
    for run in sorted(runs, key=lambda r: r.compute):
        if groups and run.compute <= groups[-1][0].compute * (1 + tolerance):
            groups[-1].append(run)
        else:
            groups.append([run])
    return groups


@dataclass
class BudgetFit:
    """One budget's IsoFLOP curve and its minimum."""

    compute: float  # geometric mean of its runs' compute
    runs: list[RunResult]
    model_scale_opt: float | None = None
    data_tokens_opt: float | None = None
    value_opt: float | None = None  # the parabola's value at its minimum
    parabola: list[float] | None = None  # y = p0·x² + p1·x + p2, x = ln M
    in_range: bool = False  # the minimum lies within the sampled model scales
    best: RunResult | None = None  # the run with the lowest metric
    problem: str | None = None  # why there is no minimum


def isoflop_minimum(runs: list[RunResult]) -> BudgetFit:
    import numpy as np

    compute = float(np.exp(np.mean([math.log(r.compute) for r in runs])))
    fit = BudgetFit(compute, runs, best=min(runs, key=lambda r: r.value))
    envelope: dict[float, float] = {}  # per model scale, its best run over lr and batch
    for run in runs:
        key = round(math.log(run.model_scale), 6)
        envelope[key] = min(envelope.get(key, math.inf), run.value)
    if len(envelope) < MIN_SIZES:
        fit.problem = f"{len(envelope)} model scale(s): a minimum needs at least {MIN_SIZES}"
        return fit
    x = np.array(sorted(envelope))
    y = np.array([envelope[k] for k in x])
    p = np.polyfit(x, y, 2)
    if not p[0] > 0:
        fit.problem = "the curve is not convex in ln M (no minimum): widen the sweep's span"
        return fit
    x_opt = -p[1] / (2 * p[0])
    fit.parabola = [float(v) for v in p]
    fit.model_scale_opt = float(math.exp(x_opt))
    fit.data_tokens_opt = compute / fit.model_scale_opt
    fit.value_opt = float(np.polyval(p, x_opt))
    fit.in_range = bool(x[0] <= x_opt <= x[-1])
    return fit


def fit_power_law(compute: list[float], values: list[float]) -> PowerLaw:
    """Least squares of ln y = ln a + b·ln C."""
    import numpy as np

    b, ln_a = np.polyfit(np.log(compute), np.log(values), 1)
    return PowerLaw(float(math.exp(ln_a)), float(b))


@dataclass
class ScalingFit:
    budgets: list[BudgetFit]
    model_scale: PowerLaw | None = None
    data_tokens: PowerLaw | None = None
    lr: PowerLaw | None = None
    batch_tokens: PowerLaw | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self, laws: ScalingLaws = DEEPSEEK) -> dict[str, Any]:
        def law(name: str) -> dict[str, Any] | None:
            fitted = getattr(self, name)
            return None if fitted is None else {**asdict(fitted), "paper": asdict(getattr(laws, name))}

        budgets = []
        for b in self.budgets:
            row = {k: v for k, v in asdict(b).items() if k not in ("runs", "best")}
            row["runs"] = [r.path for r in b.runs]
            row["best_run"] = asdict(b.best) if b.best else None
            budgets.append(row)
        return {"budgets": budgets, "fits": {name: law(name) for name in ("model_scale", "data_tokens", "lr", "batch_tokens")}, "notes": self.notes}


def _varies(runs: list[RunResult], attribute: str) -> bool:
    values = {getattr(r, attribute) for r in runs}
    return None not in values and len({round(math.log(v), 6) for v in values}) > 1


def fit_scaling(runs: list[RunResult], tolerance: float = 0.1) -> ScalingFit:
    budgets = [isoflop_minimum(group) for group in group_by_budget(runs, tolerance)]
    result = ScalingFit(budgets)
    usable = [b for b in budgets if b.model_scale_opt is not None]
    for b in budgets:
        if b.problem:
            result.notes.append(f"budget {b.compute:.3g}: {b.problem}")
        elif not b.in_range:
            result.notes.append(f"budget {b.compute:.3g}: the minimum M {b.model_scale_opt:.3g} lies outside the sampled scales (extrapolated)")
    if len(usable) >= 2:
        result.model_scale = fit_power_law([b.compute for b in usable], [b.model_scale_opt for b in usable])  # type: ignore[misc]
        result.data_tokens = fit_power_law([b.compute for b in usable], [b.data_tokens_opt for b in usable])  # type: ignore[misc]
    else:
        result.notes.append(f"{len(usable)} budget(s) with a minimum: M_opt and D_opt laws need at least 2")
    for attribute, law, label in (("lr", "lr", "learning rate"), ("batch_tokens", "batch_tokens", "batch size")):
        varied = [b for b in budgets if _varies(b.runs, attribute)]
        if len(varied) >= 2:
            setattr(result, law, fit_power_law([b.compute for b in varied], [getattr(b.best, attribute) for b in varied]))
        else:
            result.notes.append(f"{label} varies within {len(varied)} budget(s): its law needs 2 or more (sweep --{'lr' if law == 'lr' else 'batch'}-factors)")
    return result


def plot_fit(fit: ScalingFit, path: str | Path, metric: str = "bpb", laws: ScalingLaws = DEEPSEEK) -> None:
    """Left: the IsoFLOP curves (metric over M per budget, parabolas, minima). Right: M_opt and D_opt
    over C with the fitted lines and the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(fit.budgets), 1)))
    for colour, b in zip(colours, fit.budgets):
        scales = np.array([r.model_scale for r in b.runs])
        left.scatter(scales, [r.value for r in b.runs], color=colour, s=18, label=f"C = {b.compute:.2g}")
        if b.parabola is not None:
            xs = np.linspace(np.log(scales.min()), np.log(scales.max()), 100)
            left.plot(np.exp(xs), np.polyval(b.parabola, xs), color=colour, lw=1)
            left.scatter([b.model_scale_opt], [b.value_opt], color=colour, marker="*", s=120, edgecolor="black", zorder=3)
    usable = [b for b in fit.budgets if b.model_scale_opt is not None]
    if fit.model_scale is not None and len(usable) >= 2:
        cs = np.array([b.compute for b in usable])
        left.plot([b.model_scale_opt for b in usable], [b.value_opt for b in usable], "k--", lw=1, label="optimum")
        span = np.logspace(np.log10(cs.min()) - 0.3, np.log10(cs.max()) + 0.3, 50)
        for name, marker, colour in (("model_scale", "o", "tab:blue"), ("data_tokens", "s", "tab:orange")):
            fitted, paper = getattr(fit, name), getattr(laws, name)
            right.scatter(cs, [getattr(b, f"{name}_opt") for b in usable], marker=marker, color=colour)
            right.plot(span, fitted(span), color=colour, label=f"{name}_opt = {fitted.coefficient:.4g}·C^{fitted.exponent:.4f}")
            right.plot(span, paper(span), color=colour, ls=":", label=f"DeepSeek {paper.coefficient:.4g}·C^{paper.exponent:.4f}")
    left.set(xscale="log", xlabel="M (non-embedding FLOPs / token)", ylabel=f"final validation {metric}", title="IsoFLOP curves")
    right.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel="M_opt, D_opt", title="Optimal allocation")
    for axes in (left, right):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)

