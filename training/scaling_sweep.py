"""IsoFLOP sweeps (DeepSeek LLM, Section 3.2): the training configs of a sweep, one per budget, model
scale and (optionally) learning-rate and batch factor; scaling_fit.py fits the laws back from the runs.

    crawlmill plan sweep --budgets 1e17 3e17 1e18 --points 5 --output sweep/ --data out/shards
    crawlmill train --config sweep/c1e17-m1.47e8.yaml     # each run writes sweep/runs/<name>/
    crawlmill plan fit sweep/runs/* --plot isoflop.png

For each budget C, `points` model scales log-spaced from M_opt/span to M_opt·span around the
planner's M_opt (planner.py), each snapped to a real shape (planner.snap_model), trained on D = C/M
tokens (rounded to whole steps) with η and B from Equation 1 for C; optional `lr_factors` /
`batch_factors` multiply them (a grid for fitting η_opt and B_opt too). Every file is a training
config that `load_train_config(path)` accepts; `sweep.json` lists budget, M, D and file of each, and
its memory per GPU (memory.py). With `overwrite`, an earlier sweep's configs in the folder go first;
the runs trained under it stay.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crawlmill.files import atomic_write_json, atomic_write_text

from .config import DataConfig, TrainConfig
from .model_config import ModelConfig
from .planner import DEEPSEEK, DEFAULT_VOCAB_SIZE, ScalingLaws, global_batch, optimum, sci, snap_model

SWEEP_FILE = "sweep.json"
HEADER = "# crawlmill plan sweep:"  # first line of every config a sweep writes: how --overwrite knows its own
MAX_WARMUP_STEPS = 2000  # DeepSeek's warm-up (Section 2.3)
WARMUP_FRACTION = 0.05  # a short IsoFLOP run warms up over at most this share of its steps
MIN_SIZES = 3  # model scales per budget a parabola's minimum needs


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
    tensor_parallel: int = 1  # heads and ffn of every shape divisible by it (planner.snap_model); each config's parallel.tensor
    pipeline_parallel: int = 1  # layers of every shape divisible by it; each config's parallel.pipeline
    data: str | None = None  # a pack output folder, written as each config's data.shards
    lr_factors: list[float] = field(default_factory=lambda: [1.0])
    batch_factors: list[float] = field(default_factory=lambda: [1.0])
    split: str | None = None  # data.split of every config (train,valid,test shares); None: the config's default
    notes: list[str] = field(default_factory=list, init=False)  # inputs merged here, said in sweep.json's warnings

    def __post_init__(self) -> None:
        if not self.budgets or not all(b > 0 and math.isfinite(b) for b in self.budgets):
            raise ValueError(f"budgets {self.budgets}: give one or more positive FLOP counts")
        if self.points < 1:
            raise ValueError(f"points {self.points}: must be at least 1")
        if not self.span >= 1:
            raise ValueError(f"span {self.span}: must be >= 1 (the factor either side of M_opt)")
        if not self.lr_factors or not self.batch_factors or not all(0 < f < math.inf for f in self.lr_factors + self.batch_factors):
            raise ValueError("lr and batch factors must be positive numbers")
        if min(self.seq_length, self.micro_batch_size, self.data_parallel, self.tensor_parallel, self.pipeline_parallel, 1 if self.vocab_size is None else self.vocab_size) < 1:
            raise ValueError("seq_length, micro_batch_size, data_parallel, tensor_parallel, pipeline_parallel and vocab_size must be at least 1")
        if self.split is not None:
            DataConfig(split=self.split)  # what `crawlmill train` would refuse, refused now
        # A run's file is named by its budget to 3 digits and its factors by %g: values equal in those
        # would be two runs written to one file, so each is kept once.
        self.budgets = self._once(self.budgets, "--budgets", lambda b: sci(b, 3))
        self.lr_factors = self._once(self.lr_factors, "--lr-factors", lambda f: f"{f:g}")
        self.batch_factors = self._once(self.batch_factors, "--batch-factors", lambda f: f"{f:g}")

    def _once(self, values: list[float], option: str, name: Any) -> list[float]:
        kept: dict[str, float] = {}
        for value in values:
            kept.setdefault(name(value), value)
        if len(kept) < len(values):
            repeated = ", ".join(f"{key} given {n} times" for key, n in Counter(map(name, values)).items() if n > 1)
            self.notes.append(f"{option}: {repeated}: each written once (values equal in a file name are one run)")
        return list(kept.values())


def sweep_points(config: SweepConfig, laws: ScalingLaws = DEEPSEEK) -> list[dict[str, Any]]:
    """Every run of the sweep: budget, target and snapped M, model, D, lr, global batch, name."""
    entries = []
    for budget in config.budgets:
        best = optimum(budget, laws)
        seen = set()
        for i in range(config.points):
            position = 0.0 if config.points == 1 else 2 * i / (config.points - 1) - 1
            target = best.model_scale_opt * config.span**position
            model = snap_model(target, config.seq_length, config.vocab_size, config.tensor_parallel, config.pipeline_parallel)
            scale = model.non_embedding_flops_per_token()
            # two targets snapped to one shape (small budgets), or to one M to the 3 digits of a file name: train it once
            if sci(scale, 3) in seen:
                continue
            seen.add(sci(scale, 3))
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
    if config.tensor_parallel > 1 or config.pipeline_parallel > 1:
        data["parallel"] = {"tensor": config.tensor_parallel, "pipeline": config.pipeline_parallel}
    if config.data is not None:
        data["data"] = {"shards": [str(Path(config.data).resolve())]}
    if config.split is not None:
        data.setdefault("data", {})["split"] = config.split
    return data


def write_sweep(config: SweepConfig, output: str | Path, overwrite: bool = False, laws: ScalingLaws = DEEPSEEK) -> dict[str, Any]:
    """Write one training config per sweep run and the index sweep.json into `output`; with
    `overwrite`, an earlier sweep's configs there go first (its runs stay: _runs_of_no_config)."""
    output = Path(output)
    if (output / SWEEP_FILE).exists() and not overwrite:
        raise FileExistsError(f"{output / SWEEP_FILE} exists: write the sweep elsewhere or pass --overwrite")
    if config.data is not None and not Path(config.data).is_dir():
        raise FileNotFoundError(f"--data {config.data}: no such folder (a pack output folder)")
    texts, runs = {}, []
    for entry in sweep_points(config, laws):  # all of it before the folder exists: a refused sweep leaves none
        file = f"{entry['name']}.yaml"
        header = (
            f"{HEADER} budget {entry['budget']:.3g} FLOPs, M {entry['M']:.4g} "
            f"({entry['M'] / entry['M_opt']:.2f} x M_opt), D {entry['D']:.4g} tokens, "
            f"{entry['steps']} steps; lr and batch from Equation 1 (x {entry['lr_factor']:g}, x {entry['batch_factor']:g})\n"
        )
        texts[file] = header + yaml.safe_dump(train_config_data(entry, config), sort_keys=False)
        model = entry.pop("model")
        memory = _memory_gib(model, entry["global_batch_size"], config)
        runs.append({**entry, "file": file, "output": f"runs/{entry['name']}", "model": asdict(model), "memory_gib": memory})
    index = {"seq_length": config.seq_length, "budgets": config.budgets, "points": config.points, "span": config.span, "laws": asdict(laws), "runs": runs,
             "warnings": config.notes + _few_sizes(config, runs) + _off_budget(config, runs) + _data_epochs(config, runs) + _runs_of_no_config(output, runs)}  # fmt: skip
    output.mkdir(parents=True, exist_ok=True)
    if overwrite:
        _remove_earlier_sweep(output)
    for file, text in texts.items():
        atomic_write_text(output / file, text)
    atomic_write_json(output / SWEEP_FILE, index)
    return index


def _remove_earlier_sweep(output: Path) -> None:
    """The configs an earlier sweep wrote into `output` (listed in its sweep.json, or starting with
    HEADER), so that only the new sweep's are there to train. Other files and runs/ are the user's."""
    listed: set[str] = set()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):  # a damaged index: the headers still tell
        listed = {run["file"] for run in json.loads((output / SWEEP_FILE).read_text())["runs"]}
    for path in output.glob("*.yaml"):  # this folder's own files only, whatever the index names
        if path.is_file() and (path.name in listed or path.read_bytes()[: len(HEADER)] == HEADER.encode()):
            path.unlink()
    (output / SWEEP_FILE).unlink(missing_ok=True)


def _runs_of_no_config(output: Path, runs: list[dict[str, Any]]) -> list[str]:
    """Run folders in output/runs that no config of this sweep writes (an earlier sweep's): trained runs
    are never deleted here, but `plan fit output/runs` would fit them with this sweep's."""
    folder, names = output / "runs", {run["name"] for run in runs}
    other = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in names) if folder.is_dir() else []
    if not other:
        return []
    shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
    return [f"{folder}: {len(other)} run folder(s) of no config of this sweep, kept ({shown}): `crawlmill plan fit {folder}` would fit them too; move them away"]


def _few_sizes(config: SweepConfig, runs: list[dict[str, Any]]) -> list[str]:
    """Warnings: --points below what a minimum needs; a budget whose targets snapped to fewer model sizes
    than asked (so small that neighbouring targets share the nearest real shape): fewer curve points."""
    warnings = []
    if config.points < MIN_SIZES:
        warnings.append(f"--points {config.points}: an IsoFLOP minimum needs at least {MIN_SIZES} model sizes per budget; `crawlmill plan fit` will fit no M_opt or D_opt to this sweep")
    for budget in config.budgets:
        sizes = sorted({run["M"] for run in runs if run["budget"] == budget})
        if len(sizes) < config.points:
            few = f"; an IsoFLOP minimum needs at least {MIN_SIZES}" if len(sizes) < MIN_SIZES <= config.points else ""
            warnings.append(f"budget {sci(budget, 3)}: {len(sizes)} model size(s) of the {config.points} asked (targets snapped to the same shapes){few}: raise the budget or --span")
    return warnings


def _off_budget(config: SweepConfig, runs: list[dict[str, Any]]) -> list[str]:
    """Warnings: budgets where the laws are extrapolated (as `plan --compute` says), runs whose whole
    steps spend a compute far from their budget (a budget of a step or two), and batches far from
    B_opt x factor (B_opt below one sequence)."""
    from .planner import LARGEST_CHECKED_COMPUTE, SMALLEST_FITTED_COMPUTE

    warnings = []
    low = [sci(b, 3) for b in config.budgets if b < SMALLEST_FITTED_COMPUTE]
    high = [sci(b, 3) for b in config.budgets if b > 2 * LARGEST_CHECKED_COMPUTE]
    if low:
        warnings.append(f"budget(s) {', '.join(low)} lie below the paper's smallest ({sci(SMALLEST_FITTED_COMPUTE)} FLOPs): Equation 1's lr, batch and M_opt are extrapolated there")
    if high:
        warnings.append(f"budget(s) {', '.join(high)} lie far above the largest run the paper checked the laws on ({sci(LARGEST_CHECKED_COMPUTE)} FLOPs): extrapolated")
    off = [run for run in runs if not 0.9 <= run["compute"] / run["budget"] <= 1.1]
    if off:
        worst = max(off, key=lambda run: abs(math.log(run["compute"] / run["budget"])))
        warnings.append(
            f"{len(off)} run(s) spend a compute more than 10% off their budget, as whole steps of the batch allow "
            f"(the furthest, {worst['name']}: {worst['steps']:,} step(s), {sci(worst['compute'], 3)} FLOPs for {sci(worst['budget'], 3)}); "
            "`plan fit` places each run at its own compute, so the budget's IsoFLOP curve is not one budget: raise the budget or lower --seq-length"
        )
    far = sorted({run["name"] for run in runs if not 0.5 <= run["batch_tokens"] / (optimum(run["budget"]).batch_tokens_opt * run["batch_factor"]) <= 2})
    if far:
        warnings.append(f"{len(far)} run(s) have a global batch far from B_opt (x its factor), a whole number of sequences of {config.seq_length} (e.g. {far[0]})")
    return warnings


def _data_epochs(config: SweepConfig, runs: list[dict[str, Any]]) -> list[str]:
    """Warning: --data holds far fewer tokens than the sweep's longest run reads (each run's
    `crawlmill train` says it per group, at run time; the sweep says it before any is launched)."""
    from crawlmill.shards.manifest import load_manifest

    from .epochs import DEFAULT_MAX_EPOCHS

    manifest = load_manifest(config.data) if config.data is not None else None
    tokens = manifest.get("tokens") if isinstance(manifest, dict) else None
    if not runs or not isinstance(tokens, int) or tokens <= 0:
        return []
    longest = max(runs, key=lambda run: run["D"])
    epochs = longest["D"] / tokens
    if epochs <= DEFAULT_MAX_EPOCHS:
        return []
    within = sum(run["D"] / tokens <= DEFAULT_MAX_EPOCHS for run in runs)
    return [
        f"--data {config.data} holds {tokens:,} tokens: the longest run, {longest['name']}, reads {epochs:,.1f} epochs of it "
        f"({sci(longest['D'], 3)} tokens), {within} of {len(runs)} run(s) stay within {DEFAULT_MAX_EPOCHS:g} (repeated tokens lose their "
        "value past ~4 epochs, Muennighoff et al. 2023): such runs measure the data's repetition, not the model's scaling"
    ]


def _memory_gib(model: ModelConfig, batch: int, config: SweepConfig) -> float:
    """A sweep run's memory per GPU (training/memory.py; bf16, the sweep's micro batch and data
    parallelism), so that the largest sizes of a budget are seen to fit before they are launched."""
    from .memory import GIB, estimate_memory

    from .config import ParallelConfig

    parallel = ParallelConfig(tensor=config.tensor_parallel, pipeline=config.pipeline_parallel)
    train = TrainConfig(model=model, micro_batch_size=config.micro_batch_size, global_batch_size=batch, parallel=parallel)
    vocab = config.vocab_size or DEFAULT_VOCAB_SIZE
    estimate = estimate_memory(train, vocab, config.data_parallel, cuda=True)
    return round(estimate.total / GIB, 2)
