"""Counterfactuals for a batch of Frappe test rows: success rate, fewest changes and time within a budget.

For ``--rows`` test rows drawn with ``--seed``, the goal is to flip the
decision at a predicted CTR of 0.5 (``flip:0.5``: up to at least 0.5 from
below, down to at most 0.5 from above) under three sets of constraints:

* ``user fixed``: the user keeps its id; anything else may change;
* ``user and item fixed``: only the context (time, place, weather) may change;
* ``user fixed, item within its cost``: a new item must have been seen with
  the row's ``cost`` value (free / paid) in the training data.

Each row gets a budget of ``--max-evaluations`` model evaluations and
``--time-limit`` seconds. The script prints one line per setting.

Usage: python bench/counterfactuals_frappe.py runs/frappe/dcnv2 [--rows 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from workbench.bundle import load_bundle
from workbench.counterfactual import find_counterfactuals
from workbench.data import load_dataset

FRAPPE_DIR = Path(os.environ.get("FRAPPE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "frappe"))
SETTINGS = {
    "user fixed": {"immutable": ["user"]},
    "user and item fixed": {"immutable": ["user", "item"]},
    "user fixed, item within its cost": {"immutable": ["user"], "together": [("item", "cost")], "reference": "train"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-evaluations", type=int, default=100_000)
    parser.add_argument("--time-limit", type=float, default=5.0)
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    model = bundle.model
    test = load_dataset(FRAPPE_DIR / "frappe.test.libfm", model.schema)
    train = load_dataset(FRAPPE_DIR / "frappe.train.rebuilt.libfm.gz", model.schema)
    rows = np.sort(np.random.default_rng(args.seed).choice(len(test), size=args.rows, replace=False))
    print(f"{bundle.manifest.get('name', args.bundle)}: {args.rows} test rows, seed {args.seed}, torch threads {torch.get_num_threads()}")
    print(
        "| setting | found | fewest changes 1 / 2 / 3 | not found: none exists / budget / beam "
        "| median s | p95 s | max s | total s | mean evaluations |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, options in SETTINGS.items():
        options = dict(options)
        if options.pop("reference", None) == "train":
            options["reference"] = train
        fewest, seconds, evaluations = [], [], []
        # Why a row got no counterfactual: every combination was tried, a budget ran out, or the beam cut some.
        reasons = {"none exists": 0, "budget": 0, "beam": 0}
        started = time.perf_counter()
        for row in rows:
            result = find_counterfactuals(
                model, test, int(row), "flip:0.5",
                max_evaluations=args.max_evaluations, time_limit=args.time_limit, random_state=args.seed, **options,
            )  # fmt: skip
            seconds.append(result.seconds)
            evaluations.append(result.evaluations)
            if result.found:
                fewest.append(result.counterfactuals[0].n_changes)
            elif result.exhaustive:
                reasons["none exists"] += 1
            elif result.stopped is not None:
                reasons["budget"] += 1
            else:
                reasons["beam"] += 1
        total = time.perf_counter() - started
        counts = np.bincount(np.asarray(fewest, dtype=int), minlength=4)[1:4]
        print(
            f"| {label} | {len(fewest)} / {len(rows)} | {' / '.join(map(str, counts))} "
            f"| {' / '.join(map(str, reasons.values()))} | {np.median(seconds):.3f} "
            f"| {np.percentile(seconds, 95):.3f} | {np.max(seconds):.3f} | {total:.1f} | {np.mean(evaluations):,.0f} |"
        )


if __name__ == "__main__":
    main()
