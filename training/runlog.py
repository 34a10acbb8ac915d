"""A training run's folder: what it was (`run.json`) and what happened (`log.jsonl`), for people,
TensorBoard and `crawlmill plan fit` alike.

    RUN/run.json     written at the start: {"config": the TrainConfig as JSON, "model": {"parameters":
                     {...}, "M": non-embedding FLOPs per token,
                     "megatron_flops_per_token": Megatron-LM's count (perf.py), "layer_spec"}, "global_batch_tokens", "peak_lr",
                     "train_tokens", "compute": M x train_tokens, "world_size", "memory_estimate": one rank's
                     (memory.py: "states", "activations", "output_gradient", "total" in bytes, "total_gib"),
                     "data_epochs": {group: epochs the run reads of it} (epochs.py), "started": ISO time}
    RUN/log.jsonl    one JSON object a line, appended and flushed as it happens:
                     {"kind": "train", "step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu"?, "mfu_megatron"?, "tflops_per_gpu"?, "memory_gib", "memory_reserved_gib"?}
                     {"kind": "valid", "step", "tokens", "loss", "bpb"}
                     {"kind": "checkpoint", "step", "path", "seconds"}
                     {"kind": "resumed", "step", "checkpoint", "skipped"?}   (a resume, or Ray Train's restart of its workers; skipped: damaged newer checkpoints)
                     {"kind": "initialized", "step": 0, "checkpoint", "from_step"}   (checkpoint.init_from's weights)
                     {"kind": "end", "step", "tokens"}
                     {"kind": "diverged", "step", "loss", "grad_norm" (as text: "nan", "inf"), "checkpoint"}
                     {"kind": "stopped", "step", "signal", "checkpoint"}
                     {"kind": "preemption", "step", "nodes", "ranks", "deadline_ms"}   (Ray Train's notice: a checkpoint follows)

On stdout each record is a line; a train line ends with the steps done of the total and an ETA at
its rate (for people only: not in log.jsonl). `step` counts optimizer steps done; `tokens` the training tokens consumed by then; `tokens_per_s`
(and the MFUs from it) covers the steps since the last train record, without the time spent validating
and checkpointing between them (as Megatron-LM's interval timer). `memory_gib`: the most any rank used so
far (memory.peak_memory: on GPU the allocator's peak of allocated memory, and of its reserve in
`memory_reserved_gib`; on CPU the peak resident size). A resumed run
appends to the same log (lines after a resume repeat no step: the log is cut back to the checkpoint's
step when the run resumes, so every step appears once); a run started afresh starts an empty log.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from crawlmill.files import as_path, atomic_write_json, atomic_write_text, file_size, open_binary, read_text

RUN_FILE = "run.json"
LOG_FILE = "log.jsonl"
KINDS = ("train", "valid", "checkpoint", "resumed", "initialized", "end", "diverged", "stopped", "preemption")


def write_run_info(run_dir: str | Path, info: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / RUN_FILE, info)


class RunLog:
    """Appends records to RUN/log.jsonl, one line each, flushed at once."""

    def __init__(self, run_dir: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(run_dir) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")

    def _truncate_after(self, step: int) -> None:
        """Keep the records up to `step` (what the checkpoint resumed from holds), drop later ones, and
        a line that is not JSON (a record torn by the kill that stopped the run), said on stderr."""
        kept, torn = [], 0
        for line in filter(str.strip, self.path.read_text(encoding="utf-8").splitlines()):
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except ValueError:
                torn += 1
        if torn:
            print(f"{self.path}: {torn} line(s) that are not JSON dropped (a record torn by the kill)", file=sys.stderr)
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))  # a kill here leaves the whole log of before

    def write(self, kind: str, **record: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"log record kind {kind!r}: one of {', '.join(KINDS)}")
        self._file.write(json.dumps({"kind": kind, **record}, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_log(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a run's log.jsonl (a local run folder or a URL's). A last line without its
    newline that is not JSON is a record the writer had not finished (a run still going, or killed
    while writing): left out, as `{"kind": "cut", "line": N}`; any other line that is not a JSON
    object is an error naming it."""
    path = as_path(run_dir) / LOG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {LOG_FILE} (not a crawlmill training run folder)")
    text = read_text(path)
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            if number == len(lines) and not text.endswith("\n"):
                yield {"kind": "cut", "line": number}
                return
            raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: not a log record (a JSON object): {line[:80]}")
        yield record


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """run.json plus the log's records by kind: {"run": {...}, "train": [...], "valid": [...], ...}
    ("cut": the unfinished last line read_log left out, if any)."""
    path = as_path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: no {RUN_FILE} (not a crawlmill training run folder)")
    try:
        info = json.loads(read_text(path))
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(info, dict):
        raise ValueError(f"{path}: not a run's record (a JSON object)")
    run: dict[str, Any] = {"run": info, **{kind: [] for kind in KINDS}}
    for record in read_log(run_dir):
        run.setdefault(record.get("kind", "train"), []).append(record)
    return run


TAIL_BYTES = 1 << 16  # the end of a log that steps_so_far reads: many records, whatever the log's length


def steps_so_far(run_dir: str | Path) -> tuple[int, int]:
    """(the highest step the run's log records, its length in steps from run.json), 0 for what is not
    written yet; read from the log's end only, so that a driver can look every few seconds."""
    folder = as_path(run_dir)
    total = int(json.loads(read_text(folder / RUN_FILE)).get("total_steps", 0)) if (folder / RUN_FILE).is_file() else 0
    if not (folder / LOG_FILE).is_file():
        return 0, total
    start = max(0, file_size(folder / LOG_FILE) - TAIL_BYTES)
    with open_binary(folder / LOG_FILE) as log:
        log.seek(start)
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    done = 0
    for line in lines[1:] if start else lines:  # from the middle of the file, the first line is cut
        with contextlib.suppress(ValueError, AttributeError, TypeError):  # a line cut by the writer, or not a record
            done = max(done, int(json.loads(line).get("step", 0)))
    return done, total


def final_validation(run_dir: str | Path) -> dict[str, Any]:
    """The last validation record of a run (loss and bits per byte at its last step)."""
    valid = read_run(run_dir)["valid"]
    if not valid:
        raise ValueError(f"{run_dir}: the run logged no validation")
    return valid[-1]


class Reporter:
    """Rank 0's outputs: stdout, log.jsonl, TensorBoard (when the tensorboard package is installed)."""

    def __init__(self, run_dir: Path, enabled: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.log = RunLog(run_dir, resume_step) if enabled else None
        self.board = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.board = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                print("tensorboard is not installed: logging to stdout and log.jsonl only", file=sys.stderr)

    def record(self, kind: str, note: str = "", **values: Any) -> None:
        """Log a record; `note` is for people only (stdout, not log.jsonl or TensorBoard)."""
        if not self.enabled:
            return
        self.log.write(kind, **values)
        shown = " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        print(f"[{kind}] {shown}{' | ' + note if note else ''}", flush=True)
        if self.board is not None and kind in ("train", "valid"):
            for key, value in values.items():
                if isinstance(value, (int, float)) and key not in ("step", "tokens"):
                    self.board.add_scalar(f"{kind}/{key}", value, values["step"])

    def flush(self) -> None:
        """Everything recorded so far on disk (before the run's files are uploaded)."""
        if self.board is not None:
            self.board.flush()

    def close(self) -> None:
        if self.enabled:
            self.log.close()
            if self.board is not None:
                self.board.close()
