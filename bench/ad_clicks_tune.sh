#!/usr/bin/env bash
# Run the small hyper-parameter search on sample_data/ad_clicks that chose the
# settings in scripts/build_models.sh, then print the results.
# Settings are compared on VALIDATION AUC only; test metrics are printed but
# were not used to choose. Each run writes a bundle to runs/ad_clicks_tune/<run>.
#
# Usage: bash bench/ad_clicks_tune.sh [RUN_NAME ...]   (default: every run below)
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=sample_data/ad_clicks
WORKBENCH=${WORKBENCH:-.venv/bin/workbench}
PYTHON=${PYTHON:-.venv/bin/python}
OUT_DIR=runs/ad_clicks_tune

# Shared by every run: the small model sizes used for the bundles in models/.
COMMON="--embedding-dim 8 --hidden-units 64,64 --batch-size 1024"

# run name -> architecture and the options on top of COMMON
declare -A RUNS=(
    [lr_reg1e-3]="lr --embedding-regularizer 1e-3"
    [lr_reg0_lr1e-2]="lr --embedding-regularizer 0 --learning-rate 1e-2"
    [lr_reg1e-4_lr1e-2]="lr --embedding-regularizer 1e-4 --learning-rate 1e-2"
    [fm_reg1e-3]="fm --embedding-regularizer 1e-3"
    [fm_reg0_lr1e-2]="fm --embedding-regularizer 0 --learning-rate 1e-2"
    [fm_reg1e-3_lr1e-2]="fm --embedding-regularizer 1e-3 --learning-rate 1e-2"
    [fm_reg1e-2_lr1e-2]="fm --embedding-regularizer 1e-2 --learning-rate 1e-2"
    [fm_reg1e-3_lr1e-2_emb32]="fm --embedding-regularizer 1e-3 --learning-rate 1e-2 --embedding-dim 32"
    [deepfm_reg1e-3]="deepfm --embedding-regularizer 1e-3"
    [deepfm_reg1e-2]="deepfm --embedding-regularizer 1e-2"
    [deepfm_reg5e-2]="deepfm --embedding-regularizer 5e-2"
    [deepfm_reg1e-1]="deepfm --embedding-regularizer 1e-1"
    [deepfm_reg2e-1]="deepfm --embedding-regularizer 2e-1"
    [deepfm_reg5e-1]="deepfm --embedding-regularizer 5e-1"
    [deepfm_reg1e-1_lr3e-3]="deepfm --embedding-regularizer 1e-1 --learning-rate 3e-3"
    [deepfm_reg1e-1_batch4096]="deepfm --embedding-regularizer 1e-1 --batch-size 4096"
    [deepfm_reg1e-1_batch256]="deepfm --embedding-regularizer 1e-1 --batch-size 256"
    [deepfm_reg1e-1_dnn128,64]="deepfm --embedding-regularizer 1e-1 --hidden-units 128,64"
    [deepfm_reg1e-1_emb16]="deepfm --embedding-regularizer 1e-1 --embedding-dim 16"
    [deepfm_reg5e-1_batch256]="deepfm --embedding-regularizer 5e-1 --batch-size 256"
    [deepfm_reg5e-1_lr3e-3]="deepfm --embedding-regularizer 5e-1 --learning-rate 3e-3"
    [deepfm_reg5e-1_dropout0]="deepfm --embedding-regularizer 5e-1 --dropout 0"
    [deepfm_reg5e-1_dropout0.5]="deepfm --embedding-regularizer 5e-1 --dropout 0.5"
    [deepfm_reg1]="deepfm --embedding-regularizer 1"
    [deepfm_reg1_emb32]="deepfm --embedding-regularizer 1 --embedding-dim 32"
    [dcnv2_reg1e-3]="dcnv2 --embedding-regularizer 1e-3"
    [dcnv2_reg1e-1]="dcnv2 --embedding-regularizer 1e-1"
    [dcnv2_reg5e-1]="dcnv2 --embedding-regularizer 5e-1"
    [autoint+_reg1e-3]="autoint+ --embedding-regularizer 1e-3"
    [autoint+_reg1e-1]="autoint+ --embedding-regularizer 1e-1"
    [autoint+_reg5e-1]="autoint+ --embedding-regularizer 5e-1"
)

if [ "$#" -gt 0 ]; then
    names=("$@")
else
    mapfile -t names < <(printf '%s\n' "${!RUNS[@]}" | sort)
fi

for name in "${names[@]}"; do
    if [ -z "${RUNS[$name]+set}" ]; then
        echo "error: unknown run '$name'; known runs: ${!RUNS[*]}" >&2
        exit 2
    fi
    read -r arch options <<<"${RUNS[$name]}"
    echo "== $name: --arch $arch $COMMON $options" >&2
    # shellcheck disable=SC2086  # $COMMON and $options are lists of CLI options
    "$WORKBENCH" train --arch "$arch" \
        --train "$DATA_DIR/train.parquet" \
        --valid "$DATA_DIR/valid.parquet" \
        --test "$DATA_DIR/test.parquet" \
        --out "$OUT_DIR/$name" --overwrite --quiet $COMMON $options >/dev/null
done

"$PYTHON" bench/collect_metrics.py "$OUT_DIR"
