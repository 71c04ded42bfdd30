#!/usr/bin/env bash
# Train the behaviour-sequence models (DIN, DIEN, QIN-style) and a DNN without the
# histories on the MovieLens-100k sequence data, and print their metrics as a
# Markdown table. The DNN reads the same fields minus history_movies and
# history_genres, so the difference is what the histories add.
#
# Usage: bash bench/movielens_train.sh [ARCH ...]   (default: dnn din dien qin)
# MOVIELENS_DIR overrides the source folder (default: ../shared/data/movielens-100k
# next to the repository). The MovieLens licence forbids redistribution, so the
# prepared data and the bundles stay in runs/ (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."

MOVIELENS_DIR=${MOVIELENS_DIR:-$(pwd)/../shared/data/movielens-100k}
WORKBENCH=${WORKBENCH:-.venv/bin/workbench}
PYTHON=${PYTHON:-.venv/bin/python}
DATA=runs/movielens
OUT_DIR=runs/movielens_models
ARCHS=("$@")
[ ${#ARCHS[@]} -eq 0 ] && ARCHS=(dnn din dien qin)

if [ ! -f "$DATA/PREPARED.md" ]; then
    "$WORKBENCH" prepare movielens --source "$MOVIELENS_DIR" --out "$DATA"
fi
# The same schema without the two history fields, for the no-sequence reference.
"$PYTHON" - "$DATA" <<'PY'
import json, sys
from pathlib import Path
folder = Path(sys.argv[1])
spec = json.loads((folder / "schema.json").read_text())
spec["fields"] = [f for f in spec["fields"] if f["kind"] != "sequence"]
(folder / "schema_no_history.json").write_text(json.dumps(spec, indent=2))
PY

# Shared settings, chosen once on validation AUC (docs/benchmarks.md): embedding 16,
# DNN 200-80 as in the DIN paper, batch 1024, Adam 1e-3, embedding L2 0.01, seed 2024.
COMMON=(--embedding-dim 16 --hidden-units 200,80 --batch-size 1024 --embedding-regularizer 0.01 --seed 2024 --quiet)
mkdir -p "$OUT_DIR"
for arch in "${ARCHS[@]}"; do
    extra=()
    [ "$arch" = dnn ] && extra=(--schema "$DATA/schema_no_history.json" --dropout 0 --param batch_norm=false)
    "$WORKBENCH" train --arch "$arch" --train "$DATA/train.parquet" --valid "$DATA/valid.parquet" \
        --test "$DATA/test.parquet" --out "$OUT_DIR/$arch" --overwrite "${COMMON[@]}" "${extra[@]}" \
        > "$OUT_DIR/$arch.log"
done
"$PYTHON" bench/collect_metrics.py "${ARCHS[@]/#/$OUT_DIR/}"
