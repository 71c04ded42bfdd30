#!/usr/bin/env bash
# Set up (if needed) and start the workbench on http://127.0.0.1:8501 with the
# bundles in models/ and the data in sample_data/. Extra options go to
# `workbench serve` (for example --port 8600).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/workbench serve "$@"
