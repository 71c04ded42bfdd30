"""Time one what-if edit: set one field of one row to another value, predict and explain before and after.

For ``--edits`` random (row, field, value) edits of a bundle's test data, this
script times :func:`workbench.whatif.what_if` with exact Shapley values (all
``2**n_fields`` coalitions for both rows) and without an attribution, and
prints the median, 95th percentile and maximum in milliseconds. The first
call is a warm-up and is not counted.

Usage: python bench/whatif_latency.py runs/frappe/dcnv2 --data ../shared/data/frappe/frappe.test.libfm
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.whatif import value_choices, what_if


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--data", default="sample_data/ad_clicks/test.parquet")
    parser.add_argument("--edits", type=int, default=100, help="timed edits (default: 100)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    model = bundle.model
    data = load_dataset(args.data, model.schema, max_rows=20_000)
    generator = np.random.default_rng(args.seed)
    fields = [f for f in model.schema.fields if f.kind == "categorical"]
    choices = {f.name: value_choices(f)["value"].tolist()[:1000] for f in fields}
    print(f"{bundle.manifest.get('name', args.bundle)}: {len(model.schema.fields)} fields, torch threads {torch.get_num_threads()}")

    timings: dict[str, list[float]] = {"exact_shapley": [], "prediction only": []}
    for index in range(args.edits + 1):
        row = int(generator.integers(len(data)))
        field = fields[int(generator.integers(len(fields)))]
        value = choices[field.name][int(generator.integers(len(choices[field.name])))]
        for label, method in (("exact_shapley", "exact_shapley"), ("prediction only", None)):
            started = time.perf_counter()
            what_if(model, data, row, {field.name: value}, method=method)
            if index > 0:
                timings[label].append(1000 * (time.perf_counter() - started))
    for label, values in timings.items():
        values = np.asarray(values)
        print(
            f"{label:>16}: median {np.median(values):.1f} ms, p95 {np.percentile(values, 95):.1f} ms, "
            f"max {values.max():.1f} ms over {len(values)} edits"
        )


if __name__ == "__main__":
    main()
