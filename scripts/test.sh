#!/usr/bin/env bash
# Set up and run the test suite (what CI runs). Extra arguments go to pytest.
# Usage: bash scripts/test.sh [-k PATTERN]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export RAY_USAGE_STATS_ENABLED=0
python -m pytest -q "$@" tests
