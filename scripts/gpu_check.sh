#!/usr/bin/env bash
# The training stage's GPU checks, in one run on a bare GPU machine (Python 3.12 with torch, no
# package index, no Ray): the kit of scripts/gpu_kit.sh installed offline, then
#   1. bench/train_resume.py (125m): Megatron's distributed optimizer and dist_checkpointing's
#      async save of CUDA tensors; a run stopped and resumed against the undisturbed run;
#   2. bench/attention_bench.py (1b shapes, bf16): torch's fused attention against Megatron's unfused,
#      and one context-parallel rank's attention (flash with a lower-right causal mask);
#   3. bench/train_bench.py (1b, bf16): tokens/s and MFU against Megatron-LM's published 41-48%,
#      with Megatron's fused SwiGLU and cross-entropy (again without, if that run fails), and a
#      torch.profiler table of two steps (profile.txt: where the time goes).
# Each has a time limit (RESUME_LIMIT, ATTENTION_LIMIT, BENCH_LIMIT seconds) so that one stuck
# check leaves time to the others, and none runs past TOTAL_LIMIT seconds from the start (default
# 560: a device call ends at 600); a bench cut short still reports the steps it logged
# (train_bench.py --from-run, `complete: false`). Checkpoints are deleted once a check is done with
# them (the 1b's is 23 GB; the machine has 64 GiB of disk). Results go to $OUT (default bench/out), at most 7 files:
# gpu_env.txt, train_resume.json, attention.json, train.json (train_unfused.json), profile.txt and
# logs.txt (every script's output). Build the kit first, here:
#   bash scripts/gpu_kit.sh
# then on the GPU machine, from the repository root (the kit folder .gpu travelling with the tree):
#   bash scripts/gpu_check.sh [RESUME_STEPS] [BENCH_STEPS]     # defaults 40 and 40
# RESUME_ARGS, ATTENTION_ARGS and BENCH_ARGS add options to the scripts (a CPU rehearsal: "--config tiny ...";
# RESUME_ARGS="--optimizer-sharding fully_reshardable": the resume check with the gathered optimizer states).
set -euo pipefail
START=$SECONDS
TOTAL_LIMIT="${TOTAL_LIMIT:-560}"
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
KIT="$PWD/.gpu"
[ -d "$KIT/shards" ] || { echo "no $KIT/shards: build the kit first (bash scripts/gpu_kit.sh)" >&2; exit 2; }
PY="${PYTHON:-python3}"
SITE="${SITE:-/tmp/crawlmill-site}"

"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$KIT"/wheels/*.whl
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --upgrade --target "$SITE" .
# Megatron-Core's INFO logs too (off by default): one session on a GPU, so everything that may explain a failure
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CRAWLMILL_MEGATRON_LOG=INFO
# the manifest names the tokenizer folder where the kit was packed: point it at the kit's copy
"$PY" - "$KIT" <<'EOF'
import json, sys
from pathlib import Path
kit = Path(sys.argv[1])
manifest = kit / "shards/manifest.json"
data = json.loads(manifest.read_text())
data["tokenizer"]["path"] = str(kit / "tokenizer")
manifest.write_text(json.dumps(data, indent=1, ensure_ascii=False))
EOF
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PY" -c "import torch, megatron.core as m; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'megatron-core', m.__version__)"
} | tee "$OUT/gpu_env.txt"

LOG="$OUT/logs.txt"
: > "$LOG"
# check NAME LIMIT COMMAND...: run it under a time limit (at most what TOTAL_LIMIT leaves, less 15 s
# for what follows it), its output to the log; say how it ended
check() {
  local name="$1" limit="$2" rc=0 left=$((TOTAL_LIMIT - (SECONDS - START) - 15))
  shift 2
  if [ "$left" -lt "$limit" ]; then limit="$left"; fi
  if [ "$limit" -lt 20 ]; then echo "=== $name: skipped, ${left}s left of TOTAL_LIMIT" | tee -a "$LOG"; return 124; fi
  echo "=== $name (limit ${limit}s): $*" >> "$LOG"
  timeout --kill-after 10 "$limit" "$@" >> "$LOG" 2>&1 || rc=$?
  echo "=== $name: exit $rc" | tee -a "$LOG"
  return "$rc"
}

cd bench
check resume "${RESUME_LIMIT:-200}" "$PY" train_resume.py --shards "$KIT/shards" --steps "${1:-40}" --work /tmp/train-resume --json "$OUT/train_resume.json" ${RESUME_ARGS:-} || true
rm -rf /tmp/train-resume/*/checkpoints  # ~20 GB for the 125m's three runs
check attention "${ATTENTION_LIMIT:-80}" "$PY" attention_bench.py --batch 4 --dtype bf16 --json "$OUT/attention.json" ${ATTENTION_ARGS:-} || true
BENCH=(train_bench.py --shards "$KIT/shards" --steps "${2:-40}" --profile 2 ${BENCH_ARGS:-})
# bench NAME WORK JSON [OPTIONS]: the bench; when cut short, the figures of the steps its run logged
bench() {
  local name="$1" work="$2" json="$3" rc=0
  shift 3
  check "$name" "${BENCH_LIMIT:-280}" "$PY" "${BENCH[@]}" "$@" --work "$work" --json "$json" || rc=$?
  if [ ! -f "$json" ] && [ -f "$work/run/log.jsonl" ]; then
    "$PY" "${BENCH[@]}" "$@" --from-run "$work/run" --json "$json" >> "$LOG" 2>&1 || true
  fi
  cat "$work"/run/profile/rank0-*.txt >> "$OUT/profile.txt" 2>/dev/null || true
  rm -rf "$work/run/checkpoints"
  return "$rc"
}
: > "$OUT/profile.txt"
rc=0
bench bench /tmp/train-bench "$OUT/train.json" || rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ]; then  # it failed (not ran out of time): without the fusions
  bench bench-unfused /tmp/train-bench-unfused "$OUT/train_unfused.json" --no-fused-kernels || true
fi
echo "=== done in $((SECONDS - START)) s" | tee -a "$LOG"
tail -n 40 "$LOG"
