"""Rank agreement of each model's intrinsic pair maps with its exact SII map on Frappe test rows.

For every bundle under runs/frappe (written by bench/frappe_train.sh) whose
architecture declares a field x field probe, read the probes and the exact
pair interactions (SII, zero baseline, logit) of the same test rows, and print
the Spearman correlation of the intrinsic map (mean |value| over rows, mean
over layers and heads) with the mean |SII| map over the 45 field pairs. For per-sample maps
the median of the per-row correlations is printed as well.

Usage: python bench/intrinsic_frappe.py [--rows 500] [--runs runs/frappe]
FRAPPE_DIR overrides the data folder (default: ../shared/data/frappe).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from workbench.bundle import find_bundles, load_bundle
from workbench.data import load_dataset
from workbench.explain.exact import exact_indices
from workbench.probes import capture_probes, model_probes, pair_agreement_per_row, pair_map, pair_map_agreement

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500, help="first N Frappe test rows (default: 500)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "frappe", help="folder of Frappe bundles")
    args = parser.parse_args()
    frappe = Path(os.environ.get("FRAPPE_DIR", ROOT.parent / "shared" / "data" / "frappe"))
    test_file = frappe / "frappe.test.libfm"
    if not test_file.is_file():
        raise SystemExit(f"error: {test_file} not found; set FRAPPE_DIR to the folder with the Frappe files")

    print(f"torch threads: {torch.get_num_threads()}; rows: {args.rows}; SII with the zero baseline, logits\n")
    print("| bundle | probe | per sample | Spearman, global maps | median per-row Spearman | seconds (probes / SII) |")
    print("|---|---|---|---|---|---|")
    for path in find_bundles(args.runs):
        bundle = load_bundle(path)
        pair_probes = [p.name for p in model_probes(bundle.model) if p.is_pair_map]
        if not pair_probes:
            continue
        test = load_dataset(test_file, bundle.schema, max_rows=args.rows)
        rows = np.arange(len(test))
        start = time.perf_counter()
        capture = capture_probes(bundle.model, test.tensors(rows), names=pair_probes)
        probe_seconds = time.perf_counter() - start
        start = time.perf_counter()
        sii = exact_indices(bundle.model, test, rows).sii
        sii_seconds = time.perf_counter() - start
        post_hoc = sii.mean_abs().to_numpy()
        for name in pair_probes:
            values = capture[name]
            global_rho = pair_map_agreement(pair_map(values, absolute=True), post_hoc)["spearman"]
            if values.probe.per_sample:
                per_row = np.nanmedian(pair_agreement_per_row(values, sii.pairs))
                per_row_text = f"{per_row:+.3f}"
            else:
                per_row_text = "(static)"
            print(
                f"| {path.name} | {name} | {'yes' if values.probe.per_sample else 'no'} | {global_rho:+.3f} | "
                f"{per_row_text} | {probe_seconds:.2f} / {sii_seconds:.1f} |"
            )


if __name__ == "__main__":
    main()
