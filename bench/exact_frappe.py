"""Exact Shapley values and pair indices on a Frappe DCNv2: ours against shap, captum and the bare forward pass.

The game is one that every tool can express: a field is present with its own
id or absent with the id of one fixed background row. shap's ExactExplainer
and captum's ShapleyValueSampling replace ids. ``exact_indices`` replaces
field embeddings by the embeddings of the same ids (the ``"mean"`` baseline
over that one row), so it plays the same game. The default background row holds
every field's OOV id (``--background oov``), so every test field differs from
it; ``--background valid`` takes the first validation row instead.

Measured on ``--rows`` test rows (default 1,000), 10 fields, 1,024 coalitions each:

* ``exact_indices`` with its defaults (first layers summed from per-field
  terms, repeated rows forwarded once), with each speed-up alone and with
  neither; every run yields Shapley, Banzhaf, SII, STII and FSII;
* the bound: ``logit_from_embeddings`` alone on rows x 1,024 rows, in chunks of
  the same size, and its cost per row for chunk sizes from 1,024 to 32,768;
* shap ExactExplainer, plain and with ``interactions=2`` (its pair values are
  half the Shapley-Taylor index, its diagonal the main effect v({i}) - v({}));
* captum ShapleyValueSampling with as many evaluations per row as the exact
  game (93 permutations x 11 evaluations = 1,023), which is exact only in
  expectation.

Needs the DCNv2 bundle from ``bash bench/frappe_train.sh dcnv2`` (runs/frappe/dcnv2).

Usage: python bench/exact_frappe.py [--rows 1000] [--bundle runs/frappe/dcnv2] [--background oov|valid]
                                    [--skip-shap] [--skip-captum]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain.exact import exact_indices
from workbench.explain.game import DEFAULT_CHUNK_SIZE

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = "ours: defaults (repeated rows once, else first layers from per-field terms)"
FRAPPE_DIR = Path(os.environ.get("FRAPPE_DIR", ROOT.parent / "shared" / "data" / "frappe"))


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1000, help="test rows to explain (default: 1000)")
    parser.add_argument("--bundle", default=str(ROOT / "runs" / "frappe" / "dcnv2"), help="DCNv2 bundle folder")
    parser.add_argument(
        "--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help=f"rows per forward pass (default: {DEFAULT_CHUNK_SIZE})"
    )
    parser.add_argument(
        "--background", choices=("oov", "valid"), default="oov",
        help="the fixed background row: OOV ids (default) or the first validation row",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours and of the bound (default: 3)")
    parser.add_argument("--skip-shap", action="store_true", help="do not run shap")
    parser.add_argument("--skip-captum", action="store_true", help="do not run captum")
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    model = bundle.model.eval()
    schema = model.schema
    test = load_dataset(FRAPPE_DIR / "frappe.test.libfm", schema, feature_map=FRAPPE_DIR / "feature_map.tsv")
    rows = np.arange(args.rows)
    inputs = test.tensors(rows)
    if args.background == "valid":
        valid = load_dataset(
            FRAPPE_DIR / "frappe.validation.libfm", schema, feature_map=FRAPPE_DIR / "feature_map.tsv", max_rows=1
        )
        background = valid.tensors(np.array([0]))
    else:
        background = {f.name: torch.tensor([f.vocabulary.oov_index]) for f in schema.fields}
    names = schema.field_names
    n_players = len(names)
    n_coalition_rows = args.rows * 2**n_players
    print(f"model: {bundle.name} ({bundle.architecture}), {n_players} fields, rows: {args.rows}, "
          f"coalition rows: {n_coalition_rows:,}, torch threads: {torch.get_num_threads()}")
    print(f"background row ({args.background}):", {name: int(background[name][0]) for name in names})

    # --- ours -----------------------------------------------------------------
    variants = {
        "ours: defaults (repeated rows once, else first layers from per-field terms)": {},
        "ours: first layers from per-field terms only": {"deduplicate": False},
        "ours: repeated rows once only": {"use_structure": False},
        "ours: neither speed-up": {"use_structure": False, "deduplicate": False},
    }
    runs: dict[str, tuple] = {}
    # Interleave the repeats, so that a busy moment on a shared machine does not hit one variant only.
    for _ in range(args.repeats):
        for label, options in variants.items():
            result, seconds = timed(
                exact_indices, model, inputs, baseline="mean", background=background, chunk_size=args.chunk_size,
                **options,
            )
            if label not in runs or seconds < runs[label][1]:
                runs[label] = (result, seconds)
    for label, (result, seconds) in runs.items():
        print(f"{label}: best of {args.repeats} {seconds:.2f} s, "
              f"rows forwarded {result.shapley.parameters['model_evaluations']:,}")
    ours = runs[DEFAULT][0]
    plain = runs["ours: neither speed-up"][0]
    print("max |default - neither| Shapley:", f"{np.abs(ours.shapley.values - plain.shapley.values).max():.2e}",
          "SII:", f"{np.abs(ours.sii.pairs - plain.sii.pairs).max():.2e}")
    print("max Shapley completeness gap:", f"{np.abs(ours.shapley.completeness_gap).max():.2e}")

    # --- the bound: the bare forward pass ---------------------------------------------
    with torch.no_grad():
        embeddings = model.field_embedding(inputs)
        mixed = embeddings.repeat_interleave(2**n_players, dim=0)

        def forward_all() -> None:
            for begin in range(0, n_coalition_rows, args.chunk_size):
                model.logit_from_embeddings(mixed[begin : begin + args.chunk_size])

        bound = min(timed(forward_all)[1] for _ in range(args.repeats))
        for size in (1024, 2048, 4096, 8192, 32768):
            sweep_rows = min(n_coalition_rows, 131_072)

            def forward_sweep(size: int = size, sweep_rows: int = sweep_rows) -> None:
                for begin in range(0, sweep_rows, size):
                    model.logit_from_embeddings(mixed[begin : min(begin + size, sweep_rows)])

            seconds = min(timed(forward_sweep)[1] for _ in range(args.repeats))
            print(f"bare forward in chunks of {size:,} rows: {seconds / sweep_rows * 1e6:.2f} microseconds per row")
    del mixed
    print(f"bare forward over {n_coalition_rows:,} rows in chunks of {args.chunk_size:,}, best of {args.repeats}: "
          f"{bound:.2f} s")
    for label, (_, seconds) in runs.items():
        print(f"  {label}: {seconds / bound:.3f} x bound")

    # --- shap ------------------------------------------------------------------
    ids = np.stack([inputs[name].numpy() for name in names], axis=1)
    background_ids = np.stack([background[name].numpy() for name in names], axis=1)

    def logits_of_ids(x: np.ndarray) -> np.ndarray:
        batch = {name: torch.from_numpy(np.ascontiguousarray(x[:, i]).astype(np.int64)) for i, name in enumerate(names)}
        with torch.no_grad():
            return model(batch).double().numpy()

    if not args.skip_shap:
        import shap

        masker = shap.maskers.Independent(background_ids, max_samples=1)
        explainer = shap.explainers.Exact(logits_of_ids, masker)
        # Untimed warm-up: shap compiles its numba loops on first use.
        explainer(ids[:2], silent=True)
        explainer(ids[:2], interactions=2, silent=True)
        explanation, seconds = timed(explainer, ids, silent=True)
        delta = np.abs(explanation.values - ours.shapley.values).max()
        base_delta = np.abs(explanation.base_values - ours.shapley.base_values).max()
        print(f"shap ExactExplainer: {seconds:.2f} s ({seconds / bound:.2f} x bound, "
              f"{seconds / runs[DEFAULT][1]:.2f} x ours); "
              f"max |shap - ours| Shapley {delta:.2e}, base value {base_delta:.2e}")

        explanation, seconds = timed(explainer, ids, interactions=2, silent=True)
        values = explanation.values
        upper_i, upper_j = np.triu_indices(n_players, k=1)
        pair_delta = np.abs(2 * values[:, upper_i, upper_j] - ours.stii.pairs[:, upper_i, upper_j]).max(axis=1)
        diagonal = values[:, np.arange(n_players), np.arange(n_players)]
        main_delta = np.abs(diagonal - ours.stii.main_effects).max(axis=1)
        # shap skips fields whose id equals the background's, and its pair loop then indexes the remaining
        # fields by position. Pair values of such rows land on the wrong pairs, so they are reported apart.
        all_vary = (ids != background_ids).all(axis=1)
        print(f"shap ExactExplainer interactions=2: {seconds:.2f} s ({seconds / bound:.2f} x bound, "
              f"{seconds / runs[DEFAULT][1]:.2f} x ours)")
        print(f"  rows where every field differs from the background row: {int(all_vary.sum())} of {args.rows}; "
              f"there max |2 x shap pair - ours STII| {pair_delta[all_vary].max(initial=0):.2e}, "
              f"max |shap diagonal - ours STII main| {main_delta[all_vary].max(initial=0):.2e}")
        print(f"  other rows: max |2 x shap pair - ours STII| {pair_delta[~all_vary].max(initial=0):.2e}, "
              f"max |shap diagonal - ours STII main| {main_delta[~all_vary].max(initial=0):.2e}")

    # --- captum ------------------------------------------------------------------
    if not args.skip_captum:
        from captum.attr import ShapleyValueSampling

        def forward_ids(x: torch.Tensor) -> torch.Tensor:
            return model({name: x[:, i] for i, name in enumerate(names)})

        id_tensor = torch.from_numpy(ids.astype(np.int64))
        baseline_tensor = torch.from_numpy(background_ids.astype(np.int64))
        sampler = ShapleyValueSampling(forward_ids)
        with torch.no_grad():  # untimed warm-up
            sampler.attribute(id_tensor[:2], baselines=baseline_tensor, n_samples=2)
        torch.manual_seed(0)
        with torch.no_grad():
            attributions, seconds = timed(
                sampler.attribute, id_tensor, baselines=baseline_tensor, n_samples=93, perturbations_per_eval=1
            )
        error = np.abs(attributions.double().numpy() - ours.shapley.values)
        print(f"captum ShapleyValueSampling (93 permutations, 1,023 evaluations per row): {seconds:.2f} s "
              f"({seconds / bound:.2f} x bound); |captum - exact| mean {error.mean():.2e}, max {error.max():.2e}; "
              f"mean |exact Shapley| {np.abs(ours.shapley.values).mean():.2e}")


if __name__ == "__main__":
    main()
