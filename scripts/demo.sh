#!/usr/bin/env bash
# Set up and run the whole pipeline on the sample corpus that ships in samples/ (a local Ray is
# started for it). Output: demo-output/. Usage: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
crawlmill run configs/demo.yaml
