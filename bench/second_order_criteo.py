"""Why sampled Shapley estimators are hard to beat on a Criteo DeepFM: its game is almost second order.

Trains the DeepFM of ``bench/sampled_criteo.py`` (same data, settings and seed)
and, for ``--rows`` test rows, measures two things:

1. How much of the game's variance over coalitions an additive fit and a
   second-order fit (all 39 main terms and 741 pair terms, least squares on
   4,000 coalitions, scored on 2,000 others) leave unexplained.
2. Whether a second-order control variate helps antithetic permutation
   sampling. The estimator fits the second-order game ``g`` on half of the
   permutations, adds ``g``'s exact Shapley values (``a_i + sum_j b_ij / 2``)
   to the permutation estimate of ``f - g`` on the other half, swaps the
   halves and averages. It spends the same evaluations as
   ``permutation_shapley``. A permutation and its reverse give player ``i``
   the predecessor sets ``P`` and ``N - P - {i}``; for a second-order game
   the mean of the two marginal contributions is exactly
   ``a_i + sum_j b_ij / 2``. Antithetic sampling is therefore already exact
   on the second-order part, and the control variate can only remove error
   from the remaining third- and higher-order part.

Errors are mean absolute differences from ``permutation_shapley`` at
``--reference-budget`` coalitions per sample (another seed).

Usage: python bench/second_order_criteo.py [--rows 20] [--budgets 500,1000,2000] [--reference-budget 80000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampled_criteo import DEFAULT_DATA, read_criteo, train_deepfm  # noqa: E402

from workbench.explain.game import EmbeddingGame  # noqa: E402
from workbench.explain.sampling import permutation_shapley  # noqa: E402


def second_order_design(coalitions: np.ndarray) -> np.ndarray:
    """Columns: intercept, one per player, one per pair i < j (the product of their presence)."""
    z = coalitions.astype(float)
    upper_i, upper_j = np.triu_indices(z.shape[1], k=1)
    return np.hstack([np.ones((len(z), 1)), z, z[:, upper_i] * z[:, upper_j]])


def kernel_coalitions(n_players: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Paired coalitions with sizes drawn from the Shapley kernel's size distribution."""
    sizes = np.arange(1, n_players)
    weights = (n_players - 1) / (sizes * (n_players - sizes))
    drawn = rng.choice(sizes, size=n // 2, p=weights / weights.sum())
    half = np.zeros((n // 2, n_players), dtype=bool)
    for row, size in enumerate(drawn):
        half[row, rng.choice(n_players, size, replace=False)] = True
    return np.vstack([half, ~half])


def unexplained_variance(game: EmbeddingGame, sample: int, rng: np.random.Generator) -> tuple[float, float]:
    n_players = game.n_players
    fit_rows, test_rows = kernel_coalitions(n_players, 4000, rng), kernel_coalitions(n_players, 2000, rng)
    fit_values = game.values(fit_rows, samples=[sample])[0]
    test_values = game.values(test_rows, samples=[sample])[0]
    shares = []
    for columns in (1 + n_players, None):
        x_fit = second_order_design(fit_rows)[:, :columns]
        x_test = second_order_design(test_rows)[:, :columns]
        coefficients, *_ = np.linalg.lstsq(x_fit, fit_values, rcond=None)
        shares.append(float((test_values - x_test @ coefficients).var() / test_values.var()))
    return shares[0], shares[1]


def control_variate_shapley(game: EmbeddingGame, sample: int, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Antithetic permutation sampling of f - g plus the exact Shapley values of a fitted second-order g."""
    n_players = game.n_players
    n_permutations = max(4, ((budget - 2) // (n_players - 1)) // 4 * 4)

    drawn = [rng.permutation(n_players) for _ in range(n_permutations // 2)]
    permutations = np.array([p for forward in drawn for p in (forward, forward[::-1])])
    # prefixes[k, s]: the first s players of permutation k
    prefixes = np.zeros((n_permutations, n_players + 1, n_players), dtype=bool)
    for k, permutation in enumerate(permutations):
        for s in range(1, n_players + 1):
            prefixes[k, s] = prefixes[k, s - 1]
            prefixes[k, s, permutation[s - 1]] = True

    inner = game.values_per_sample(prefixes[:, 1:n_players].reshape(1, -1, n_players), samples=[sample])[0]
    ends = game.values(np.array([np.zeros(n_players, bool), np.ones(n_players, bool)]), samples=[sample])[0]
    values = np.concatenate(
        [np.full((n_permutations, 1), ends[0]), inner.reshape(n_permutations, -1), np.full((n_permutations, 1), ends[1])],
        axis=1,
    )

    # Antithetic pairs stay together: pairs 0, 2, 4, ... fit, pairs 1, 3, 5, ... estimate, then swapped.
    first_half = np.arange(n_permutations) % 4 < 2
    upper_i, upper_j = np.triu_indices(n_players, k=1)
    estimate = np.zeros(n_players)
    for fit, use in ((first_half, ~first_half), (~first_half, first_half)):
        x = second_order_design(prefixes[fit].reshape(-1, n_players))
        ridge = np.r_[np.zeros(1 + n_players), np.full(upper_i.size, 1e-6 * x.shape[0])]
        beta = np.linalg.solve(x.T @ x + np.diag(ridge), x.T @ values[fit].reshape(-1))
        pairs = np.zeros((n_players, n_players))
        pairs[upper_i, upper_j] = beta[1 + n_players :]
        pairs = pairs + pairs.T
        exact_g = beta[1 : 1 + n_players] + 0.5 * pairs.sum(axis=1)
        fitted = (second_order_design(prefixes[use].reshape(-1, n_players)) @ beta).reshape(-1, n_players + 1)
        residual_steps = np.diff(values[use] - fitted, axis=1)
        contributions = np.zeros(n_players)
        for permutation, steps in zip(permutations[use], residual_steps, strict=True):
            contributions[permutation] += steps
        estimate += 0.5 * (exact_g + contributions / use.sum())
    return estimate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20, help="test rows (default: 20)")
    parser.add_argument("--budgets", default="500,1000,2000", help="coalitions per sample, comma-separated")
    parser.add_argument("--reference-budget", type=int, default=80_000, help="reference coalitions per sample")
    parser.add_argument("--out", type=Path, default=Path("/tmp/second_order_criteo/deepfm"), help="bundle folder")
    args = parser.parse_args()

    model, test_set, metrics = train_deepfm(read_criteo(DEFAULT_DATA), args.out, epochs=2, seed=0)
    print(f"DeepFM test AUC {metrics['test']['auc']:.4f}")
    rows = np.arange(args.rows)
    game = EmbeddingGame(model, test_set.tensors(rows))

    rng = np.random.default_rng(0)
    shares = np.array([unexplained_variance(game, sample, rng) for sample in range(len(rows))])
    print(f"variance left by an additive fit: mean {shares[:, 0].mean():.4f} (max {shares[:, 0].max():.4f}); "
          f"by a second-order fit: mean {shares[:, 1].mean():.5f} (max {shares[:, 1].max():.5f})")

    reference = permutation_shapley(model, test_set, rows, budget=args.reference_budget, random_state=123)
    print(f"reference: mean |Shapley value| {np.abs(reference.values).mean():.5f}, "
          f"mean SE {reference.standard_errors.mean():.6f}")
    print("| budget | permutation_shapley MAE | with second-order control variate MAE | ratio |")
    print("|---:|---:|---:|---:|")
    for budget in (int(b) for b in args.budgets.split(",")):
        plain = permutation_shapley(model, test_set, rows, budget=budget, random_state=0).values
        rng = np.random.default_rng(0)
        adjusted = np.array([control_variate_shapley(game, sample, budget, rng) for sample in range(len(rows))])
        plain_mae = np.abs(plain - reference.values).mean()
        adjusted_mae = np.abs(adjusted - reference.values).mean()
        print(f"| {budget:,} | {plain_mae:.6f} | {adjusted_mae:.6f} | {adjusted_mae / plain_mae:.2f} |")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(1)
    raise SystemExit(main())
