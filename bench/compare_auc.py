"""Compare the test AUC of bundles on the same rows, with a paired bootstrap interval of each difference.

The first bundle is the reference. Each other bundle's AUC minus the reference's
is computed on the same resampled rows (1,000 draws with replacement, fixed
seed), so the interval reflects the test set's sampling noise for this pair of
models, not the noise of training.

Usage: python bench/compare_auc.py DATA REFERENCE_BUNDLE BUNDLE [BUNDLE ...]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.metrics import roc_auc_score

from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.training import predict_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("bundles", nargs="+")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    scores, labels = {}, None
    for path in args.bundles:
        bundle = load_bundle(path)
        data = load_dataset(args.data, bundle.schema)
        labels = data.labels if labels is None else labels
        scores[path] = predict_logits(bundle.model, data)

    rng = np.random.default_rng(args.seed)
    draws = [rng.integers(0, len(labels), len(labels)) for _ in range(args.draws)]
    reference = args.bundles[0]
    print("| bundle | test AUC | difference to the reference | 95 % paired bootstrap interval |")
    print("|---|---:|---:|---|")
    print(f"| {reference} | {roc_auc_score(labels, scores[reference]):.4f} | | |")
    for path in args.bundles[1:]:
        difference = roc_auc_score(labels, scores[path]) - roc_auc_score(labels, scores[reference])
        resampled = [
            roc_auc_score(labels[rows], scores[path][rows]) - roc_auc_score(labels[rows], scores[reference][rows])
            for rows in draws
        ]
        low, high = np.percentile(resampled, [2.5, 97.5])
        print(f"| {path} | {roc_auc_score(labels, scores[path]):.4f} | {difference:+.4f} | [{low:+.4f}, {high:+.4f}] |")


if __name__ == "__main__":
    main()
