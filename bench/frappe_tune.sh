#!/usr/bin/env bash
# Run the small hyper-parameter search on Frappe that chose the settings in
# bench/frappe_train.sh, then print the results. It varies the embedding L2
# coefficient of every model, the learning rate of LR and FM, and the epoch
# limit of FCN (its first run still improved at the 30-epoch default).
# Settings are compared on VALIDATION AUC only; test metrics are printed but
# were not used to choose. Each run writes a bundle to runs/frappe_tune/<run>.
#
# Usage: bash bench/frappe_tune.sh [RUN_NAME ...]   (default: every run below)
# FRAPPE_DIR overrides the data folder (default: ../shared/data/frappe next to the
# repository). The Frappe licence forbids redistribution, so these bundles must
# stay out of the repository (runs/ is gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."

FRAPPE_DIR=${FRAPPE_DIR:-$(pwd)/../shared/data/frappe}
WORKBENCH=${WORKBENCH:-.venv/bin/workbench}
PYTHON=${PYTHON:-.venv/bin/python}
OUT_DIR=runs/frappe_tune

# run name -> architecture and options that differ from the CLI defaults
declare -A RUNS=(
    [lr_reg1e-3]="lr --embedding-regularizer 1e-3"
    [lr_reg1e-2]="lr --embedding-regularizer 1e-2"
    [lr_lr1e-2]="lr --embedding-regularizer 1e-3 --learning-rate 1e-2"
    [lr_lr1e-1]="lr --embedding-regularizer 1e-3 --learning-rate 1e-1"
    [lr_reg0_lr1e-2]="lr --embedding-regularizer 0 --learning-rate 1e-2"
    [fm_reg1e-3]="fm --embedding-regularizer 1e-3"
    [fm_reg0_lr1e-2]="fm --embedding-regularizer 0 --learning-rate 1e-2"
    [fm_reg1e-4_lr1e-2]="fm --embedding-regularizer 1e-4 --learning-rate 1e-2"
    [fm_lr1e-2]="fm --embedding-regularizer 1e-3 --learning-rate 1e-2"
    [fm_lr1e-2_reg1e-2]="fm --embedding-regularizer 1e-2 --learning-rate 1e-2"
    [fm_reg5e-2]="fm --embedding-regularizer 5e-2"
    [deepfm_reg1e-3]="deepfm --embedding-regularizer 1e-3"
    [deepfm_reg1e-2]="deepfm --embedding-regularizer 1e-2"
    [deepfm_reg5e-2]="deepfm --embedding-regularizer 5e-2"
    [deepfm_reg1e-1]="deepfm --embedding-regularizer 1e-1"
    [deepfm_reg2e-1]="deepfm --embedding-regularizer 2e-1"
    [dcnv2_reg1e-3]="dcnv2 --embedding-regularizer 1e-3"
    [dcnv2_reg1e-2]="dcnv2 --embedding-regularizer 1e-2"
    [dcnv2_reg5e-2]="dcnv2 --embedding-regularizer 5e-2"
    [dcnv2_reg1e-1]="dcnv2 --embedding-regularizer 1e-1"
    [autoint+_reg1e-3]="autoint+ --embedding-regularizer 1e-3"
    [autoint+_reg5e-2]="autoint+ --embedding-regularizer 5e-2"
    [fibinet_reg2e-2]="fibinet --embedding-regularizer 2e-2"
    [fibinet_reg1e-1]="fibinet --embedding-regularizer 1e-1"
    [fcn_reg5e-2_ep100]="fcn --embedding-regularizer 5e-2 --epochs 100"
    [fcn_reg1e-2_ep100]="fcn --embedding-regularizer 1e-2 --epochs 100"
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
    echo "== $name: --arch $arch $options" >&2
    # shellcheck disable=SC2086  # $options is a list of CLI options
    "$WORKBENCH" train --arch "$arch" \
        --train "$FRAPPE_DIR/frappe.train.rebuilt.libfm.gz" \
        --valid "$FRAPPE_DIR/frappe.validation.libfm" \
        --test "$FRAPPE_DIR/frappe.test.libfm" \
        --out "$OUT_DIR/$name" --overwrite --quiet $options >/dev/null
done

"$PYTHON" bench/collect_metrics.py "$OUT_DIR"
