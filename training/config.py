"""The training config: one dataclass per component (model, data, optimizer, schedule, parallelism,
checkpoints, evaluation, profiling), the run config's `train:` section and `crawlmill train --config`'s file.

    crawlmill train --config tiny                 # a built-in: training/configs/<name>.yaml
    crawlmill train --config my-run.yaml          # a file; relative paths are relative to it

Built-ins: `tiny` (CPU tests), `125m`, `1b` (one GPU), `deepseek-7b`, `deepseek-67b` (Table 2 of the
DeepSeek LLM report, exactly). A file may start from a built-in with `base: NAME` and change any key.
The whole config is checked before anything starts (crawlmill.pipeline.config.build: unknown keys,
types, values, with the key path in the error).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crawlmill.files import as_path

from .model_config import ModelConfig

BUILTIN_DIR = Path(__file__).parent / "configs"
SCHEDULES = ("multistep", "cosine", "wsd", "constant")
PRECISIONS = ("bf16", "fp32")


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


@dataclass
class DataConfig:
    # Pack output folders (manifest.json + shards); each folder's own blend weighs its shards.
    shards: list[str] = field(default_factory=list, metadata={"path": True})
    weights: list[float] | None = None  # one per folder; None: by the folders' token counts
    split: str = "969,30,1"  # train, validation, test shares of every shard's documents (Megatron's)
    seed: int = 1234  # GPTDataset's shuffling
    # Refuse to resume where the sample order differs from the checkpoint's run (data.py)
    check_on_resume: bool = True

    def __post_init__(self) -> None:
        if self.weights is not None and len(self.weights) != len(self.shards):
            raise ValueError(f"weights: {len(self.weights)} given for {len(self.shards)} shard folder(s)")
        if self.weights is not None and (not all(w >= 0 for w in self.weights) or sum(self.weights) <= 0):
            raise ValueError(f"weights {self.weights}: need non-negative numbers with a positive sum")
        parts = self.split.split(",")
        try:
            shares = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"split {self.split!r}: expected three numbers like 969,30,1") from None
        if len(shares) != 3 or min(shares) < 0 or shares[0] <= 0:
            raise ValueError(f"split {self.split!r}: expected train,valid,test shares with train > 0")


@dataclass
class OptimizerConfig:
    lr: float | None = None  # peak learning rate; None: the planner's η_opt for the run's compute
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.lr is not None and not 0 < self.lr < float("inf"):  # inf: every weight nan after one step
            raise ValueError(f"lr {self.lr}: must be > 0 and finite")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas ({self.beta1}, {self.beta2}) must be in [0, 1)")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be >= 0")


@dataclass
class ScheduleConfig:
    kind: str = "multistep"  # DeepSeek's multi-step; cosine, wsd (warm-up, stable, decay) and constant beside it
    warmup_steps: int = 2000
    milestones: list[float] = field(default_factory=lambda: [0.8, 0.9])  # multistep: fractions of the training tokens
    factors: list[float] = field(default_factory=lambda: [0.316, 0.1])  # multistep: LR / peak after each milestone
    min_lr_ratio: float = 0.1  # cosine and wsd: the final LR / peak
    decay_fraction: float = 0.2  # wsd: the last share of training that decays

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"kind {self.kind!r}: choose one of {', '.join(SCHEDULES)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps {self.warmup_steps}: must be >= 0")
        if len(self.milestones) != len(self.factors) or sorted(self.milestones) != self.milestones or not all(0 < m < 1 for m in self.milestones):
            raise ValueError(f"milestones {self.milestones} / factors {self.factors}: increasing fractions in (0, 1), one factor each")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 < self.decay_fraction <= 1:
            raise ValueError("min_lr_ratio must be in [0, 1] and decay_fraction in (0, 1]")


@dataclass
class ParallelConfig:
    """Model-parallel sizes; data parallelism is what the world size leaves. Tensor and context
    parallelism run on CPU (gloo) and GPU; pipeline parallelism is the GPU backend's (Megatron's
    schedule; tests/training/test_backends.py runs it on CPU through a CUDA shim). Context parallelism
    gives each rank a share of every sequence (context_parallel.py): Transformer Engine's attention
    where TE is installed, else the local spec's (attention: sdpa)."""

    tensor: int = 1
    pipeline: int = 1
    context: int = 1

    def __post_init__(self) -> None:
        if min(self.tensor, self.pipeline, self.context) < 1:
            raise ValueError("parallel sizes must be at least 1")


@dataclass
class CheckpointConfig:
    every_minutes: float = 5.0  # as DeepSeek LLM; 0: never by time
    every_steps: int | None = None  # also every N steps
    keep: int = 3  # the last K checkpoints are kept
    # dist_checkpointing's async save: "gpu" (on GPU; CPU saves synchronously), "always", "never"
    async_save: str = "gpu"
    # Resume without the data-only checks (sharded_io.py): only for checkpoints nobody else could
    # have written, and only needed if a layer's extra state is more than tensors and plain data
    trusted: bool = False
    # Spread the writing of tensors every data-parallel rank holds over those ranks (Megatron-LM's
    # default); constant_structure reuses the first save's plan (sharded_io.py)
    fully_parallel: bool = True
    constant_structure: bool = False
    # The GPU backend's distributed optimizer states (layout.RESHARDS): "dp_reshardable" (each rank
    # its shards, no gather; resumes on other data-parallel sizes only) or "fully_reshardable" (one
    # tensor per parameter, gathered over data-parallel ranks into host memory, or into rank 0's alone
    # with optimizer_gather_on_one_rank: resumes on other tensor, pipeline and context sizes too).
    # The CPU backend's states load into any layout either way.
    optimizer_sharding: str = "dp_reshardable"
    optimizer_gather_on_one_rank: bool = False
    # On this signal (ahead of a preemption's kill) save a checkpoint at the step reached and stop
    # (stopsignal.py), and on Ctrl-C; "SIGUSR1" for Slurm's --signal=USR1@SECONDS, null to leave signals alone
    on_signal: str | None = "SIGTERM"
    # On Ray Train, a node's preemption notice (ray.train.get_preemption_info) saves a checkpoint at
    # the step reached and training goes on; Ray Train then restarts from it (preemption.py)
    on_preemption: bool = True
    # Start a new run from the weights of another run's checkpoint (a run folder or its
    # checkpoints/step-N, path or URL); optimizer, schedule and data start afresh (checkpoint.py)
    init_from: str | None = field(default=None, metadata={"path": True})

    def __post_init__(self) -> None:
        if self.every_minutes < 0 or self.keep < 1 or (self.every_steps is not None and self.every_steps < 1):
            raise ValueError("checkpoint: every_minutes >= 0, every_steps >= 1 and keep >= 1")
        if self.optimizer_sharding not in ("dp_reshardable", "fully_reshardable"):
            raise ValueError(f"checkpoint.optimizer_sharding: 'dp_reshardable' or 'fully_reshardable', not {self.optimizer_sharding!r}")
        if self.async_save not in ("gpu", "always", "never"):
            raise ValueError(f"checkpoint.async_save: 'gpu', 'always' or 'never', not {self.async_save!r}")
        if self.on_signal is not None and (self.on_signal not in signal.Signals.__members__ or self.on_signal in ("SIGKILL", "SIGSTOP")):
            raise ValueError(f"checkpoint.on_signal: a signal name that can be caught (SIGTERM, SIGUSR1, ...) or null, not {self.on_signal!r}")

    def asynchronous(self, on_gpu: bool) -> bool:
        return self.async_save == "always" or (self.async_save == "gpu" and on_gpu)


@dataclass
class EvalConfig:
    interval: int = 1000  # steps between validations (and at the end)
    iters: int = 10  # validation batches each time

    def __post_init__(self) -> None:
        if self.interval < 1 or self.iters < 1:
            raise ValueError("eval interval and iters must be at least 1")


@dataclass
class ProfileConfig:
    """torch.profiler over a window of steps (training/perf.py); off unless start_step is set."""

    start_step: int | None = None  # the first profiled step (0-based, as the run counts them)
    steps: int = 2
    ranks: list[int] = field(default_factory=lambda: [0])
    shapes: bool = False  # record operator input shapes
    memory: bool = False  # record allocations
    rows: int = 40  # operators in the summary table

    def __post_init__(self) -> None:
        if self.start_step is not None and self.start_step < 0:
            raise ValueError(f"start_step {self.start_step}: must be >= 0")
        if self.steps < 1 or self.rows < 1 or not self.ranks or min(self.ranks) < 0:
            raise ValueError("steps and rows at least 1, ranks a non-empty list of ranks")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    global_batch_size: int | None = None  # sequences per step; None: the planner's B_opt for the run's compute
    micro_batch_size: int = 1  # sequences per forward/backward of one rank
    train_tokens: float | None = None  # total training tokens (the schedule's milestones are fractions of it)
    max_steps: int | None = None  # or: this many steps (then train_tokens = steps x batch x seq, whatever train_tokens says)
    precision: str = "bf16"  # bf16 with fp32 gradient accumulation on GPU; fp32 (CPU)
    seed: int = 1234
    output: str | None = field(default=None, metadata={"path": True})  # the run folder
    log_interval: int = 10
    workers: int = 1  # Ray Train workers (data parallel ranks) under `crawlmill train`; torchrun sets its own
    max_restarts: int = 0  # Ray Train: restart failed workers from the last checkpoint this many times (launch.py)

    @classmethod
    def expand_config(cls, data: dict[str, Any], chain: tuple[Path, ...] = (), base: Path | None = None) -> dict[str, Any]:
        """`base: NAME` (a built-in or a file): the mapping laid over that config's. `chain`: the
        files whose `base:` led here, the last one holding `data` (read_train_data); a relative
        file is relative to that file's folder, or for a run config's `train:` section to `base`,
        the run config's folder (as every path in a config)."""
        if "base" not in data:
            return data
        from crawlmill.pipeline.config import ConfigError, merge

        data = dict(data)
        name = str(data.pop("base"))
        folder = chain[-1].parent if chain else base
        try:
            if folder is not None and not (BUILTIN_DIR / f"{name}.yaml").is_file() and not Path(name).is_absolute():
                name = str(folder / name)
            parent, _ = read_train_data(name, chain, option="")  # named below: base
        except OSError as exc:  # no such file, a name too long for one...: say whose `base:` it is
            raise ConfigError(f"{chain[-1].name + ': ' if chain else ''}base: {exc}") from None
        return merge(parent, data)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.micro_batch_size < 1 or self.workers < 1 or self.log_interval < 1:
            raise ValueError("micro_batch_size, workers and log_interval must be at least 1")
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts {self.max_restarts}: must be 0 or more")
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise ValueError(f"global_batch_size {self.global_batch_size}: must be at least 1 (or left out for the planner's)")
        if self.global_batch_size is not None and self.global_batch_size % self.micro_batch_size:
            raise ValueError(f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps {self.max_steps}: must be at least 1")
        if self.train_tokens is not None and not self.train_tokens > 0:
            raise ValueError(f"train_tokens {self.train_tokens}: must be > 0")
        tensor, model = self.parallel.tensor, self.model
        # Megatron splits heads (and key/value groups) and the ffn's columns across tensor ranks: it
        # refuses an uneven split deep in model building; said here, before any rank starts.
        uneven = [f"{name} {value}" for name, value in (("num_attention_heads", model.num_attention_heads), ("num_query_groups", model.num_query_groups),
                                                       ("ffn_hidden_size", model.ffn_hidden_size)) if value and value % tensor]  # fmt: skip
        if uneven:
            raise ValueError(f"model.{', model.'.join(uneven)} not a multiple of parallel.tensor {tensor}: tensor parallelism splits them evenly")
        stages, layers = self.parallel.pipeline, self.model.num_layers
        if layers % stages:
            raise ValueError(f"model.num_layers {layers} is not a multiple of parallel.pipeline {stages}: every stage holds as many layers")
        if self.model.recompute == "full" and (layers // stages) % self.model.recompute_layers:
            raise ValueError(f"model.recompute_layers {self.model.recompute_layers} must divide the {layers // stages} layers of a pipeline stage")
        if self.parallel.context > 1 and self.model.seq_length % (2 * self.parallel.context):
            raise ValueError(
                f"model.seq_length {self.model.seq_length} is not a multiple of 2 x parallel.context ({2 * self.parallel.context}): "
                "context parallelism cuts every sequence into that many equal chunks"
            )

    def check(self) -> None:
        """Shard folders named here must be pack output (a run's pack folder is checked when it exists)."""
        for folder in self.data.shards:
            if not (as_path(folder) / "manifest.json").is_file():  # a path or a URL
                raise not_pack_output(folder)


def not_pack_output(folder: str) -> FileNotFoundError:
    """The error for a data.shards folder without manifest.json: it is missing, or not pack output."""
    if not as_path(folder).exists():
        return FileNotFoundError(f"data.shards: {folder}: no such folder (give `crawlmill pack` output folders)")
    return FileNotFoundError(
        f"data.shards: {folder} has no manifest.json: give `crawlmill pack` output folders, or run "
        f"`crawlmill shards adopt {folder} --tokenizer TOKENIZER` for Megatron shards made elsewhere"
    )


def resolve_builtin(name_or_path: str, option: str = "--config ") -> Path:
    """A built-in config's file for its name, else the path itself; `option` names where it was given, in errors."""
    if (BUILTIN_DIR / f"{name_or_path}.yaml").is_file() and "/" not in name_or_path:
        return BUILTIN_DIR / f"{name_or_path}.yaml"
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"{option}{name_or_path}: no such file, and not a built-in ({', '.join(builtin_names())})")
    return path


def read_train_data(name_or_path: str, chain: tuple[Path, ...] = (), option: str = "--config ") -> tuple[dict[str, Any], Path]:
    """The raw mapping of a config (its `base:` laid under it) and the folder its paths are relative to.
    `chain`: the files whose `base:` led here; a file met again is a loop (ConfigError, not a RecursionError);
    `option`: where the name was given, for errors."""
    from crawlmill.pipeline.config import ConfigError, read_yaml

    path = resolve_builtin(name_or_path, option)
    resolved = path.resolve()
    if resolved in chain:
        raise ConfigError(f"{path.name}: base: the chain loops ({' -> '.join(p.name for p in (*chain, resolved))})")
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name}: expected a mapping")
    return TrainConfig.expand_config(data, (*chain, resolved)), resolved.parent


def load_train_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A built-in name or a YAML file, with `overrides` (nested mapping) laid over it."""
    from crawlmill.pipeline.config import build, merge

    data, base = read_train_data(name_or_path)
    return build(TrainConfig, merge(data, overrides or {}), Path(name_or_path).name, base)


def builtin_model(name: str) -> ModelConfig:
    """The model of a built-in config (`tiny`, `125m`, `1b`, `deepseek-7b`, `deepseek-67b`)."""
    if name not in builtin_names():
        raise ValueError(f"no built-in model {name!r}; choose one of {', '.join(builtin_names())}")
    return load_train_config(name).model
