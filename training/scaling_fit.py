"""IsoFLOP studies (DeepSeek LLM, Section 3.2): fit the scaling laws back from the finished runs of a
sweep (scaling_sweep.py writes its configs).

    crawlmill plan sweep --budgets 1e17 3e17 1e18 --points 5 --output sweep/ --data out/shards
    crawlmill train --config sweep/c1e17-m1.47e8.yaml     # each run writes sweep/runs/<name>/
    crawlmill plan fit sweep/runs/* --plot isoflop.png

Fit: the runs (training/runlog.py: run.json's compute, model.M, train_tokens, peak_lr,
global_batch_tokens; the last "valid" record's bpb) are grouped by compute (runs of one budget agree
within `tolerance`). At each budget, every model scale keeps its best run (over lr and batch), and
a least-squares parabola in ln M through them gives the IsoFLOP minimum M_opt (Chinchilla's approach
2, the IsoFLOP profiles of DeepSeek's Figure 4); D_opt = C / M_opt. M_opt = a·C^b and D_opt = a'·C^b' are least-squares lines in
log-log space over the budgets. Where the learning rate (or batch) varies within at least two
budgets, η_opt (B_opt) is fit the same way from each of those budgets' optimum: at the scale of
its best run, a parabola in ln η (ln B) through three or more values tried, else its best run's
value (hyperparameter_optimum).

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

from crawlmill.files import atomic_path

from .planner import DEEPSEEK, PowerLaw, ScalingLaws
from .runlog import RUN_FILE, read_run
from .scaling_sweep import MIN_SIZES


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
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such folder")
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
        try:
            run = read_run(path)
        except (OSError, ValueError) as exc:  # no log.jsonl (a run imported without it), a bad record
            if not skip_unfinished:
                raise
            skipped.append(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
            continue
        info = run["run"]
        problem, value = None, math.nan
        if not run["end"]:
            cut = f"; its last line, {run['cut'][0]['line']}, is cut off (a run still writing, or killed)" if run.get("cut") else ""
            problem = f"unfinished (no end record in log.jsonl{cut})"
        elif not run["valid"] or metric not in run["valid"][-1]:
            problem = f"no final validation {metric}"
        else:
            value = _number(run["valid"][-1][metric], f"{path}/log.jsonl: the last validation's {metric}")
            if not math.isfinite(value):
                problem = f"its final validation {metric} is {value} (a diverged run)"
        if problem:
            if not skip_unfinished:
                raise ValueError(f"{path}: {problem}; finish it, or pass --skip-unfinished")
            skipped.append(f"{path}: {problem}")
            continue
        try:
            scale = float(info["model"]["M"])
            compute = float(info.get("compute") or scale * float(info["train_tokens"]))
            tokens = float(info.get("train_tokens") or compute / scale)
            if info.get("total_steps") and info.get("global_batch_tokens"):
                # The tokens its steps hold: a run.json of before 2026-12-07 cut short by --max-steps
                # recorded the config's train_tokens (and its compute); a run's last step may hold more.
                stepped = float(info["total_steps"]) * float(info["global_batch_tokens"])
                if stepped < tokens:
                    tokens, compute = stepped, scale * stepped
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path / RUN_FILE}: missing or bad {exc} (see training/runlog.py)") from None
        results.append(RunResult(str(path), compute, scale, tokens, info.get("peak_lr"), info.get("global_batch_tokens"), value))
    return results, skipped


def _number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is {value!r}, not a number") from None


def group_by_budget(runs: list[RunResult], tolerance: float = 0.1) -> list[list[RunResult]]:
    """Runs whose compute agrees within `tolerance` (relative to the group's smallest) form a budget."""
    if not tolerance >= 0:
        raise ValueError(f"tolerance {tolerance}: must be >= 0 (a share of a budget's compute)")
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
    lr_opt: float | None = None  # hyperparameter_optimum's, where the budget's runs varied it
    batch_tokens_opt: float | None = None
    interpolated: list[str] = field(default_factory=list)  # which of them came from a parabola, not a grid point


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
    x, p, x_opt = _envelope_parabola(envelope)
    if math.isnan(x_opt):
        fit.problem = "the curve is not convex in ln M (no minimum): widen the sweep's span"
        return fit
    fit.parabola = [float(v) for v in p]
    fit.model_scale_opt = float(math.exp(x_opt))
    fit.data_tokens_opt = compute / fit.model_scale_opt
    fit.value_opt = float(np.polyval(p, x_opt))
    fit.in_range = bool(x[0] <= x_opt <= x[-1])
    return fit


def _envelope_parabola(envelope: dict[float, float]) -> tuple[Any, Any, float]:
    """The envelope's points' x (sorted), the least-squares parabola through them (numpy's
    coefficients, highest power first) and its vertex's x, NaN where it is not convex."""
    import numpy as np

    x = np.array(sorted(envelope))
    p = np.polyfit(x, [envelope[k] for k in x], 2)
    return x, p, (-p[1] / (2 * p[0]) if p[0] > 0 else math.nan)


def hyperparameter_optimum(runs: list[RunResult], attribute: str) -> tuple[float, bool]:
    """A budget's optimum of `attribute` ("lr" or "batch_tokens") and whether it was interpolated.
    At the model scale of the budget's best run, each value's best run (over the other
    hyperparameter); through three or more values, a parabola in ln(value) whose minimum, when it lies
    within the values tried, is the optimum. A sweep's factors form a grid: its best point alone would
    give back Equation 1's exponent whenever the same factor wins at every budget. Otherwise (fewer
    values, no convex minimum, or one outside them) the best run's value."""
    best = min(runs, key=lambda r: r.value)
    scale = round(math.log(best.model_scale), 6)
    envelope: dict[float, float] = {}
    for run in runs:
        value = getattr(run, attribute)
        if value is not None and round(math.log(run.model_scale), 6) == scale:
            key = math.log(value)
            envelope[key] = min(envelope.get(key, math.inf), run.value)
    if len(envelope) < 3:
        return float(getattr(best, attribute)), False
    x, _, x_opt = _envelope_parabola(envelope)
    if not x[0] - 1e-9 <= x_opt <= x[-1] + 1e-9:
        return float(getattr(best, attribute)), False
    return float(math.exp(x_opt)), True


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
        for b in varied:
            optimum, interpolated = hyperparameter_optimum(b.runs, attribute)
            setattr(b, f"{attribute}_opt", optimum)
            if interpolated:
                b.interpolated.append(attribute)
        if len(varied) >= 2:
            setattr(result, law, fit_power_law([b.compute for b in varied], [getattr(b, f"{attribute}_opt") for b in varied]))
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
    else:  # an empty panel would read as a plotting failure
        right.text(0.5, 0.5, "M_opt and D_opt not fitted:\nfewer than 2 budgets with a minimum", ha="center", va="center", transform=right.transAxes)
    left.set(xscale="log", xlabel="M (non-embedding FLOPs / token)", ylabel=f"final validation {metric}", title="IsoFLOP curves")
    right.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel="M_opt, D_opt", title="Optimal allocation")
    for axes in (left, right):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize=8)
    fig.tight_layout()
    # The file's own format (.png, .svg, .pdf, .jpg): a .jpg holding PNG bytes opens nowhere.
    kind = Path(path).suffix.lower().lstrip(".") or "png"
    if kind not in fig.canvas.get_supported_filetypes():
        plt.close(fig)
        raise ValueError(f"--plot {path}: .{kind} is not an image format matplotlib writes (png, svg, pdf, jpg, ...)")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=kind, dpi=110)
    plt.close(fig)

