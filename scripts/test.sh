#!/usr/bin/env bash
# Set up and run the test suite (what CI runs). Extra arguments go to pytest.
# Two pytest-xdist workers, each taking whole files (module fixtures stay per process), the `heavy` ones
# first (tests/conftest.py); `-n 0` runs serially.
# Usage: bash scripts/test.sh [-k PATTERN] [-n 0]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export RAY_USAGE_STATS_ENABLED=0
python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=30 "$@" tests
