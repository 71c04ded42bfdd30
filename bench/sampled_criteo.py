"""Compare the workbench's sampled Shapley estimators with shap's at equal budgets on a Criteo DeepFM.

The script trains a small DeepFM on the first 8,000 rows of the Criteo 10k
sample (39 fields: I1-I13 numeric after log1p, C1-C26 categorical) and saves
it as a bundle under ``--out``. It then explains ``--rows`` test rows in logit
units against the zero-embedding baseline.

Training uses learning rate 3e-3 and no L2 on the embeddings. With the
workbench's default embedding L2 (1e-3) the game was nearly additive: the
strongest pair in the pair screen was 0.001 logit, against a mean |Shapley
value| of 0.010. Every estimator gets such a game almost right, so it could
not tell them apart.

Every estimator, ours and shap's, evaluates the same
:class:`~workbench.explain.game.EmbeddingGame`. shap's explainers get a model
function that maps their 0/1 masks to ``v(S)``, so the comparison is between
estimators, not between games. The error of a value is its absolute
difference from a reference, ``permutation_shapley`` with
``--reference-factor`` times the largest budget and another seed. The
reference has sampling error too, so the output gives its mean standard
error and the MAE that its noise alone adds to a perfect estimator
(``sqrt(2 / π)`` times its standard error, for normal errors). A second table
runs our estimators at ``--time-factor`` times the largest budget, with their
wall times. Each method runs once, untimed, on one row before the timed runs.

Usage: python bench/sampled_criteo.py [--data CSV] [--rows 50] [--budgets 500,1000,2000]

The data file is read from ``../shared/data/criteo-sample`` next to the
repository by default. Its licence does not allow copying it into the repository.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.bundle import save_bundle
from workbench.data import CTRDataset, encode
from workbench.explain.captum_methods import captum_shapley_sampling
from workbench.explain.game import EmbeddingGame
from workbench.explain.sampling import kernel_shap, permutation_shapley
from workbench.schema import Field, Schema, fit_schema
from workbench.training import TrainConfig, evaluate, train
from workbench.zoo import CTRModel, build_model

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "criteo-sample" / "criteo_sampled_data_10k.csv"
NUMERIC = [f"I{k}" for k in range(1, 14)]
CATEGORICAL = [f"C{k}" for k in range(1, 27)]
TRAIN_ROWS, VALID_ROWS = 8_000, 1_000
SHAP_METHODS = {
    "permutation": "shap PermutationExplainer",
    "kernel": "shap KernelExplainer (default l1_reg)",
    "kernel_no_l1": "shap KernelExplainer (l1_reg=False)",
}
HEADER = (
    "| budget | method | coalitions/sample used | MAE vs reference | MAE / best shap | mean SE | ±2 SE coverage "
    "| wall s |\n|---:|---|---:|---:|---:|---:|---:|---:|"
)


@dataclass
class Run:
    """One estimator's values (n_rows, 39) and standard errors on one budget, with its cost."""

    values: np.ndarray
    errors: np.ndarray | None
    coalitions_per_sample: float
    seconds: float


# --- data and model -------------------------------------------------------------------


def read_criteo(path: Path) -> pd.DataFrame:
    """Read the CSV. Integer fields become log1p of their non-negative part, and missing values stay missing."""
    frame = pd.read_csv(path, dtype={name: str for name in CATEGORICAL})
    for name in NUMERIC:
        frame[name] = np.log1p(pd.to_numeric(frame[name], errors="coerce").clip(lower=0))
    return frame


def train_deepfm(frame: pd.DataFrame, out: Path, epochs: int, seed: int) -> tuple[CTRModel, CTRDataset, dict]:
    """Train a DeepFM (embedding 10, DNN 200-200) on the first 8,000 rows and return model, test set and metrics.

    The file is in time order, so the split is chronological: 8,000 training
    rows, 1,000 validation rows and the remaining 999 test rows.
    """
    spec = Schema(
        [Field(name, "numeric") for name in NUMERIC] + [Field(name, "categorical") for name in CATEGORICAL],
        label="label",
    )
    train_frame = frame.iloc[:TRAIN_ROWS]
    valid_frame = frame.iloc[TRAIN_ROWS : TRAIN_ROWS + VALID_ROWS]
    test_frame = frame.iloc[TRAIN_ROWS + VALID_ROWS :].reset_index(drop=True)
    schema = fit_schema(train_frame, spec, min_count=2)
    train_set, valid_set, test_set = (encode(part, schema) for part in (train_frame, valid_frame, test_frame))

    torch.manual_seed(seed)
    model = build_model("deepfm", schema, embedding_dim=10, hidden_units=[200, 200], dropout=0.2)
    config = TrainConfig(
        epochs=epochs, batch_size=256, learning_rate=3e-3, embedding_regularizer=0.0, patience=epochs, seed=seed
    )
    result = train(model, train_set, valid_set, config, show_progress=False)
    metrics = {"valid": result.valid_metrics, "test": evaluate(model, test_set)}
    training = {"best_epoch": result.best_epoch, "seconds": result.seconds}
    save_bundle(model, out, metrics=metrics, training=training, overwrite=True)
    return model.eval(), test_set, metrics


# --- the estimators ----------------------------------------------------------------------


class GameFunction:
    """A numpy model for shap that maps rows of 0/1 masks over the players of one sample to v(S)."""

    def __init__(self, game: EmbeddingGame) -> None:
        self.game = game
        self.sample = 0
        self.calls = 0

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks)
        self.calls += masks.shape[0]
        return self.game.values(masks > 0.5, samples=np.array([self.sample]))[0]


def run_shap(kind: str, game: EmbeddingGame, budget: int, seed: int) -> Run:
    """Run one of :data:`SHAP_METHODS` on every sample of ``game``, one sample at a time as shap does."""
    import shap

    start = time.perf_counter()
    n_players = game.n_players
    function = GameFunction(game)
    present, absent = np.ones((1, n_players)), np.zeros((1, n_players))
    values = np.empty((game.n_samples, n_players))
    np.random.seed(seed)
    if kind == "permutation":
        explainer = shap.PermutationExplainer(function, shap.maskers.Independent(absent, max_samples=1), seed=seed)
    else:
        explainer = shap.KernelExplainer(function, absent)
    function.calls = 0
    for sample in range(game.n_samples):
        function.sample = sample
        if kind == "permutation":
            values[sample] = explainer(present, max_evals=budget, silent=True).values[0]
        elif kind == "kernel":
            values[sample] = explainer.shap_values(present, nsamples=budget - 2, silent=True)[0]
        else:
            values[sample] = explainer.shap_values(present, nsamples=budget - 2, l1_reg=False, silent=True)[0]
    return Run(values, None, function.calls / game.n_samples, time.perf_counter() - start)


def run_ours(method: Callable, model: CTRModel, test_set: CTRDataset, rows: np.ndarray, budget: int, seed: int) -> Run:
    start = time.perf_counter()
    result = method(model, test_set, rows, budget=budget, random_state=seed)
    seconds = time.perf_counter() - start
    return Run(result.values, result.standard_errors, result.parameters["coalitions_per_sample"], seconds)


# --- the report --------------------------------------------------------------------------------


class Table:
    """Markdown rows that score each run against the reference."""

    def __init__(self, reference: np.ndarray, reference_errors: np.ndarray) -> None:
        self.reference = reference
        self.reference_errors = reference_errors
        self.lines = [HEADER]

    def mae(self, run: Run) -> float:
        return float(np.abs(run.values - self.reference).mean())

    def add(self, budget: int, label: str, run: Run, best_shap_mae: float) -> str:
        if run.errors is not None:
            # The difference to the reference has the variance of both estimates.
            combined = np.sqrt(run.errors**2 + self.reference_errors**2)
            covered = f"{np.mean(np.abs(run.values - self.reference) <= 2 * combined):.3f}"
            mean_se = f"{run.errors.mean():.5f}"
        else:
            covered = mean_se = "–"
        line = (
            f"| {budget:,} | {label} | {run.coalitions_per_sample:,.0f} | {self.mae(run):.5f} | "
            f"{self.mae(run) / best_shap_mae:.2f} | {mean_se} | {covered} | {run.seconds:.2f} |"
        )
        self.lines.append(line)
        return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Criteo 10k sample CSV")
    parser.add_argument("--out", type=Path, default=Path("/tmp/sampled_criteo/deepfm"), help="bundle folder to write")
    parser.add_argument("--rows", type=int, default=50, help="test rows to explain (default: 50)")
    parser.add_argument("--budgets", default="500,1000,2000", help="coalitions per sample, comma-separated")
    parser.add_argument(
        "--reference-factor", type=int, default=20, help="reference budget / largest budget (default: 20)"
    )
    parser.add_argument(
        "--time-factor", type=int, default=5, help="budget of our estimators in the second table / largest budget"
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of training and of the estimators")
    args = parser.parse_args(argv)
    budgets = [int(budget) for budget in args.budgets.split(",")]

    start = time.perf_counter()
    model, test_set, metrics = train_deepfm(read_criteo(args.data), args.out, args.epochs, args.seed)
    print(
        f"DeepFM trained in {time.perf_counter() - start:.1f} s: valid AUC {metrics['valid']['auc']:.4f}, "
        f"test AUC {metrics['test']['auc']:.4f}; bundle at {args.out}"
    )
    rows = np.arange(min(args.rows, len(test_set)))
    game = EmbeddingGame(model, test_set.tensors(rows))
    print(f"{len(rows)} test rows, {game.n_players} players, zero baseline, logit output")
    print(f"torch threads: {torch.get_num_threads()}")

    # Untimed warm-up on one row, so that one-time costs (imports, numba compilation in shap) stay out of the timings.
    warm_up_game = EmbeddingGame(model, test_set.tensors(rows[:1]))
    for kind in SHAP_METHODS:
        run_shap(kind, warm_up_game, min(budgets), args.seed)
    for method in (permutation_shapley, kernel_shap, captum_shapley_sampling):
        run_ours(method, model, test_set, rows[:1], min(budgets), args.seed)

    reference_budget = args.reference_factor * max(budgets)
    reference = run_ours(permutation_shapley, model, test_set, rows, reference_budget, 10_000 + args.seed)
    floor = float(np.sqrt(2 / np.pi) * reference.errors.mean())
    print(
        f"reference: permutation_shapley, budget {reference_budget:,}, {reference.seconds:.1f} s, "
        f"mean SE {reference.errors.mean():.5f}, MAE from its noise alone {floor:.5f}\n"
    )

    ours: dict[str, Callable] = {
        "ours: permutation_shapley": permutation_shapley,
        "ours: kernel_shap": kernel_shap,
        "captum ShapleyValueSampling": captum_shapley_sampling,
    }
    table = Table(reference.values, reference.errors)
    best_shap: dict[int, tuple[float, float]] = {}
    for budget in budgets:
        runs = {label: run_ours(method, model, test_set, rows, budget, args.seed) for label, method in ours.items()}
        runs |= {label: run_shap(kind, game, budget, args.seed) for kind, label in SHAP_METHODS.items()}
        shap_maes = {label: table.mae(run) for label, run in runs.items() if label.startswith("shap")}
        best_label = min(shap_maes, key=shap_maes.get)
        best_shap[budget] = (shap_maes[best_label], runs[best_label].seconds)
        for label, run in runs.items():
            print(table.add(budget, label, run, best_shap[budget][0]), flush=True)

    top = max(budgets)
    timed = Table(reference.values, reference.errors)
    for label in ("ours: permutation_shapley", "ours: kernel_shap"):
        run = run_ours(ours[label], model, test_set, rows, args.time_factor * top, args.seed)
        timed.add(args.time_factor * top, label, run, best_shap[top][0])

    print("\nEqual budgets:\n" + "\n".join(table.lines))
    print(
        f"\nOur estimators at {args.time_factor} x {top:,} coalitions per sample. The best shap explainer at "
        f"{top:,} took {best_shap[top][1]:.1f} s for a MAE of {best_shap[top][0]:.5f}.\n" + "\n".join(timed.lines)
    )
    print(f"\nmean |Shapley value| {np.abs(reference.values).mean():.5f}")
    print(f"MAE that the reference's noise alone adds: {floor:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
