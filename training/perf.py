"""How fast a run goes: model FLOPs utilisation against the device's peak, and a torch.profiler
window over chosen steps.

Two MFU figures, logged on GPU with every `train` record:
- `mfu`: DeepSeek's M (non-embedding FLOPs per token, the planner's) x tokens/s / peak, so the
  planner's compute and the run's utilisation count the same FLOPs;
- `mfu_megatron`: Megatron-LM's own count (its `num_floating_point_operations`: the projections,
  attention's s·d term, the SwiGLU MLP and the output layer), the count behind its published MFU,
  so the two can be compared as they are. For the `1b` config it is 13% above M (the output layer).

Peaks are the dense bf16 tensor-core figures of the datasheets, by device name; a device not in the
table reports no MFU unless CRAWLMILL_PEAK_TFLOPS gives its peak.

The profile (`profile:` in the training config) records steps [start_step, start_step + steps) of
the chosen ranks with torch.profiler and writes, under the run folder's profile/,
`rank{R}-step{S}.json.gz` (a Chrome / Perfetto trace) and `rank{R}-step{S}.txt` (the operators
with the most self time on the device, or on the CPU without one). In a run into a URL each profiled
rank uploads its own files once written (runstore.RunStore.push_files).

    from crawlmill.training.perf import peak_flops, StepProfiler
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from .config import ProfileConfig
from .model_config import ModelConfig

# Dense (not 2:4 sparse) bf16 tensor-core peaks, FLOP/s; more specific names first.
PEAK_BF16 = (
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("H800", 989e12),
    ("H20", 148e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
)


def peak_flops(device_name: str) -> float | None:
    """The device's dense bf16 peak in FLOP/s (CRAWLMILL_PEAK_TFLOPS overrides), None if unknown."""
    override = os.environ.get("CRAWLMILL_PEAK_TFLOPS")
    if override:
        try:
            value = float(override)
        except ValueError:
            raise ValueError(f"CRAWLMILL_PEAK_TFLOPS={override!r}: expected a number of TFLOP/s") from None
        if not value > 0:
            raise ValueError(f"CRAWLMILL_PEAK_TFLOPS={override!r}: must be > 0")
        return value * 1e12
    return next((peak for name, peak in PEAK_BF16 if name in device_name), None)


def megatron_flops_per_token(model: ModelConfig, vocab_size: int) -> float:
    """Training FLOPs per token as Megatron-LM counts them for a dense GPT (forward and backward,
    3 x forward): 12·L·d²·[(1 + g/h + s/d)·(h·k/d) + (ffn/d)·1.5 + V/(2·L·d)] with g key/value
    groups, h heads, k head dim, 1.5 for a gated (SwiGLU) MLP, V the padded vocabulary."""
    d, layers, seq = model.hidden_size, model.num_layers, model.seq_length
    heads = model.num_attention_heads
    query_ratio = heads * model.head_dim / d
    attention = (1 + model.query_groups / heads + seq / d) * query_ratio
    mlp = model.ffn_hidden_size / d * 1.5
    logits = vocab_size / (2 * layers * d)
    return 12.0 * layers * d * d * (attention + mlp + logits)


def utilisation(flops_per_token: dict[str, float], tokens_per_s_per_device: float, device_name: str) -> dict[str, float]:
    """{"mfu": ..., "mfu_megatron": ..., "tflops_per_gpu": ...} for the given FLOPs-per-token counts
    ("M", "megatron"): the MFUs when the device's peak is known; the model TFLOP/s each GPU did by
    Megatron-LM's count (the "throughput per GPU" it prints) whatever the device."""
    peak = peak_flops(device_name)
    figures = {}
    if "megatron" in flops_per_token:
        figures["tflops_per_gpu"] = round(flops_per_token["megatron"] * tokens_per_s_per_device / 1e12, 1)
    if peak is not None:
        names = {"M": "mfu", "megatron": "mfu_megatron"}
        figures.update({names[k]: round(v * tokens_per_s_per_device / peak, 4) for k, v in flops_per_token.items()})
    return figures


class StepProfiler:
    """torch.profiler over the steps a ProfileConfig names, on the ranks it names. Call `before(step)`
    ahead of each step (0-based) and `after(step)` once it is done; outputs go to `folder`."""

    def __init__(self, config: ProfileConfig, rank: int, folder: Path, written: Callable[[list[Path]], None] | None = None) -> None:
        """`written`: called with the trace and the table once written (a URL run uploads them)."""
        self.config = config
        self.enabled = config.start_step is not None and rank in config.ranks
        self.rank, self.folder, self.written = rank, folder, written
        self.profile: Any = None

    def before(self, step: int) -> None:
        if not self.enabled or step != self.config.start_step:
            return
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        try:
            self.profile = profile(activities=activities, record_shapes=self.config.shapes, profile_memory=self.config.memory)
            self.profile.__enter__()
        except Exception as exc:  # a profiler that cannot start (no CUPTI, say) must not stop the run
            self._give_up("start", exc)

    def after(self, step: int) -> None:
        """Ends the window after its last step (or earlier, at the run's last step: `close`)."""
        if self.profile is not None and step + 1 >= self.config.start_step + self.config.steps:
            self.close()

    def close(self) -> None:
        if self.profile is None:
            return
        stem = self.folder / f"rank{self.rank}-step{self.config.start_step}"
        try:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.profile.__exit__(None, None, None)
            self.folder.mkdir(parents=True, exist_ok=True)
            self.profile.export_chrome_trace(f"{stem}.json.gz")
            device = "cuda" if torch.cuda.is_available() else "cpu"
            table = self.profile.key_averages().table(sort_by=f"self_{device}_time_total", row_limit=self.config.rows, max_name_column_width=90)
            stem.with_suffix(".txt").write_text(table + "\n")
        except Exception as exc:
            self._give_up("write", exc)
            return
        print(f"profile of steps {self.config.start_step}..{self.config.start_step + self.config.steps - 1}: {stem}.json.gz, {stem}.txt", file=sys.stderr)
        self.profile = None
        if self.written is not None:
            try:
                self.written([Path(f"{stem}.json.gz"), stem.with_suffix(".txt")])
            except Exception as exc:  # the files are on this machine: a failed upload must not stop the run
                print(f"profiler: could not upload the profile ({type(exc).__name__}: {exc}); training goes on", file=sys.stderr)

    def _give_up(self, what: str, exc: Exception) -> None:
        print(f"profiler: could not {what} the profile ({type(exc).__name__}: {exc}); training goes on without it", file=sys.stderr)
        self.profile, self.enabled = None, False
