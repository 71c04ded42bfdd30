#!/usr/bin/env bash
# Create .venv and install the workbench with its test tools. Safe to rerun:
# it does nothing when pyproject.toml has not changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: CTR Workbench needs Python >= 3.11; '$PYTHON' is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv" >&2
    "$PYTHON" -m venv .venv
fi

stamp=.venv/.workbench-setup
wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] \
    && .venv/bin/python -c 'import workbench, torch, streamlit, captum' 2>/dev/null; then
    exit 0
fi

# Install torch before everything else. Where a CPU wheel of 2.13.0 is the
# local default, this avoids a multi-GB CUDA download. Elsewhere pip takes
# the normal torch build.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    echo "installing torch" >&2
    .venv/bin/python -m pip install --quiet torch==2.13.0 || .venv/bin/python -m pip install --quiet 'torch>=2.2'
fi
echo "installing the workbench and its dependencies" >&2
.venv/bin/python -m pip install --quiet -e '.[test,adapters]'
echo "$wanted" > "$stamp"
