"""Check per-behaviour attribution against the planted history effect of sample_data/ad_clicks.

The planted click model adds +0.8 to the logit when the ad's category appears in
``history_categories``; no other behaviour matters given the ad. For the rows
whose category is in the history, this script explains a sequence model's
prediction with single behaviours as players and reports:

* how often the behaviours with the ad's category take the top ranks (the top
  one, and the whole set of copies), against the rate of a random order;
* the mean attribution of those behaviours and of the others;
* what the model itself does when they are cut out of the history, against
  cutting out as many other behaviours (``sequence_edits``), which shows how
  much of the planted effect the model learned;
* the median rank correlation of |attention| with |attribution|.

Usage: python bench/behaviours_ad_clicks.py models/ad_clicks_din [--rows 300] [--method auto]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain.behaviours import BEHAVIOUR_METHODS, explain_behaviours
from workbench.sequence_edits import apply_edit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--data", default="sample_data/ad_clicks/test.parquet")
    parser.add_argument("--rows", type=int, default=300, help="rows with the ad's category in the history (default: 300)")
    parser.add_argument("--method", choices=list(BEHAVIOUR_METHODS), default="auto")
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    data = load_dataset(args.data, bundle.schema)
    raw = data.raw_values()
    histories = raw["history_categories"].str.split("|")
    matched = np.flatnonzero([c in h for c, h in zip(raw["category"], histories, strict=True)])
    rows = matched[: args.rows]

    start = time.perf_counter()
    result = explain_behaviours(bundle.model, data, rows, method=args.method)
    seconds = time.perf_counter() - start

    top_one = whole_set = chance = 0.0
    planted_values, other_values, planted_drop, other_drop = [], [], [], []
    for sample, row in enumerate(rows):
        present = result.present[sample]
        planted = (result.items[sample] == raw["category"].iloc[row]) & present
        others = present & ~planted
        top = result.top_positions(sample, int(planted.sum()))
        top_one += planted[top[0]]
        whole_set += set(top.tolist()) == set(np.flatnonzero(planted).tolist())
        chance += planted.sum() / present.sum()
        planted_values += result.values[sample, planted].tolist()
        other_values += result.values[sample, others].tolist()
        cut = apply_edit(bundle.model, data, int(row), "drop", positions=np.flatnonzero(planted).tolist())
        planted_drop.append(cut.logit_after - cut.logit_before)
        if others.sum() >= planted.sum():
            positions = np.flatnonzero(others)[: int(planted.sum())].tolist()
            cut = apply_edit(bundle.model, data, int(row), "drop", positions=positions)
            other_drop.append(cut.logit_after - cut.logit_before)

    n = len(rows)
    agreement = result.attention_agreement()
    print(f"bundle {args.bundle}, {n} rows with the ad's category in the history, method {result.method}, {seconds:.1f} s")
    print(f"top behaviour has the ad's category: {top_one / n:.3f} (random order: {chance / n:.3f})")
    print(f"all copies of the category rank first: {whole_set / n:.3f}")
    print(f"mean attribution (logit): copies {np.mean(planted_values):+.4f}, other behaviours {np.mean(other_values):+.4f}")
    print(
        f"model's logit change when the copies are cut out: {np.mean(planted_drop):+.4f}; "
        f"when as many other behaviours are cut out: {np.mean(other_drop):+.4f} (planted effect: -0.8)"
    )
    print(f"median Spearman of |attention| with |attribution|: {np.nanmedian(agreement):+.3f}")
    print(f"largest completeness gap: {result.completeness_gap.max():.2e}")


if __name__ == "__main__":
    main()
