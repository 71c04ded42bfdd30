"""Ranking and calibration metrics of CTR predictions: AUC, log loss, gAUC, reliability and ECE, per field value.

AUC and log loss come from scikit-learn. gAUC, the reliability table and the
expected calibration error are written here, because scikit-learn has no
grouped AUC and its ``calibration_curve`` does not return bin counts. The
uniform bins are the same as ``calibration_curve``'s. Nothing here imports
Streamlit or plotly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss, roc_auc_score

from workbench.data import CTRDataset

BinStrategy = Literal["uniform", "quantile"]
BIN_STRATEGIES: tuple[str, ...] = ("uniform", "quantile")
DEFAULT_BINS = 10
COUNT_COLUMNS = ("n_rows", "gauc_groups_used", "gauc_rows_used")
"""Metrics that count rows or groups; tables show them as integers."""
USER_FIELD_NAMES = ("user_id", "user", "uid", "userid", "user_name")
"""Field names taken as the user for gAUC when no group field is given, in this order."""


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def _check_pair(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if labels.shape != probabilities.shape:
        msg = f"labels and predictions differ in length: {labels.size} versus {probabilities.size}"
        raise ValueError(msg)
    if labels.size == 0:
        msg = "no rows to compute metrics on; choose a data set or cohort with rows"
        raise ValueError(msg)
    if not np.isin(labels, (0.0, 1.0)).all():
        bad = labels[~np.isin(labels, (0.0, 1.0))][0]
        msg = f"labels must be 0 or 1; found {bad:g}"
        raise ValueError(msg)
    if not np.isfinite(probabilities).all() or (probabilities < 0).any() or (probabilities > 1).any():
        msg = "predicted CTRs must be finite and between 0 and 1"
        raise ValueError(msg)
    return labels, probabilities


def user_field(field_names: Sequence[str]) -> str | None:
    """Return the field that most likely identifies the user (see :data:`USER_FIELD_NAMES`), or None."""
    lowered = {name.lower(): name for name in field_names}
    return next((lowered[name] for name in USER_FIELD_NAMES if name in lowered), None)


def gauc(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Group AUC: the AUC within each group (user), averaged with the group's impressions as weights.

    Groups whose rows are all clicks or all non-clicks have no AUC and are left
    out of both the sum and the weights, as usual for gAUC.

    Returns
    -------
    dict
        ``gauc`` (NaN when no group has both classes), ``groups_used``,
        ``groups_total`` and ``rows_used`` (impressions of the groups used).
    """
    labels, probabilities = _check_pair(labels, probabilities)
    groups = np.asarray(groups).reshape(-1)
    if groups.shape != labels.shape:
        msg = f"groups and labels differ in length: {groups.size} versus {labels.size}"
        raise ValueError(msg)
    frame = pd.DataFrame({"group": groups, "label": labels, "score": probabilities})
    weighted_sum = 0.0
    rows_used = 0
    groups_used = 0
    for _, part in frame.groupby("group", sort=False):
        positives = part["label"].sum()
        if positives == 0 or positives == len(part):
            continue
        weighted_sum += len(part) * roc_auc_score(part["label"], part["score"])
        rows_used += len(part)
        groups_used += 1
    return {
        "gauc": weighted_sum / rows_used if rows_used else float("nan"),
        "groups_used": float(groups_used),
        "groups_total": float(frame["group"].nunique()),
        "rows_used": float(rows_used),
    }


def _bin_edges(probabilities: np.ndarray, n_bins: int, strategy: str) -> np.ndarray:
    if n_bins < 1:
        msg = f"the number of bins must be at least 1; got {n_bins}"
        raise ValueError(msg)
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        edges = np.quantile(probabilities, np.linspace(0.0, 1.0, n_bins + 1))
        edges[0], edges[-1] = 0.0, 1.0
        return edges
    msg = f"unknown bin strategy {strategy!r}; use one of {', '.join(BIN_STRATEGIES)}"
    raise ValueError(msg)


def calibration_table(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "uniform",
) -> pd.DataFrame:
    """Bin rows by predicted CTR and compare each bin's mean prediction with its click rate.

    Parameters
    ----------
    labels : ndarray of shape (n_rows,)
        0/1 clicks.
    probabilities : ndarray of shape (n_rows,)
        Predicted CTRs.
    n_bins : int
        Number of bins.
    strategy : {"uniform", "quantile"}
        ``uniform``: equal-width bins on [0, 1], the bins of scikit-learn's
        ``calibration_curve``. ``quantile``: bins with about equal row counts,
        better for CTRs that crowd near 0.

    Returns
    -------
    DataFrame
        One line per non-empty bin: ``bin``, ``low``, ``high``, ``count``,
        ``mean_predicted``, ``observed_rate`` and ``gap`` (observed − predicted).
    """
    labels, probabilities = _check_pair(labels, probabilities)
    edges = _bin_edges(probabilities, n_bins, strategy)
    # A prediction on an inner edge goes to the upper bin, as in calibration_curve.
    bins = np.searchsorted(edges[1:-1], probabilities, side="right")
    count = np.bincount(bins, minlength=n_bins)
    predicted = np.bincount(bins, weights=probabilities, minlength=n_bins)
    clicks = np.bincount(bins, weights=labels, minlength=n_bins)
    used = count > 0
    frame = pd.DataFrame(
        {
            "bin": np.arange(n_bins)[used],
            "low": edges[:-1][used],
            "high": edges[1:][used],
            "count": count[used],
            "mean_predicted": predicted[used] / count[used],
            "observed_rate": clicks[used] / count[used],
        }
    )
    frame["gap"] = frame["observed_rate"] - frame["mean_predicted"]
    return frame


def expected_calibration_error(
    labels: np.ndarray,
    probabilities: np.ndarray,
    *,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "uniform",
) -> float:
    """Expected calibration error: Σ_bins (rows in bin ÷ rows) · |click rate − mean predicted CTR|."""
    table = calibration_table(labels, probabilities, n_bins=n_bins, strategy=strategy)
    return float((table["count"] * table["gap"].abs()).sum() / table["count"].sum())


def prediction_metrics(
    labels: np.ndarray,
    logits: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "uniform",
) -> dict[str, float]:
    """Return every metric of one model's logits on one set of rows.

    Keys: ``n_rows``, ``positive_rate``, ``mean_predicted``, ``auc`` (NaN
    with one class), ``logloss`` (natural log), ``ece`` (with ``n_bins`` and
    ``strategy``), and with ``groups`` also ``gauc``, ``gauc_groups_used``
    and ``gauc_rows_used``.
    """
    probabilities = sigmoid(logits)
    labels, probabilities = _check_pair(labels, probabilities)
    out = {
        "n_rows": float(labels.size),
        "positive_rate": float(labels.mean()),
        "mean_predicted": float(probabilities.mean()),
        "auc": float(roc_auc_score(labels, probabilities)) if np.unique(labels).size == 2 else float("nan"),
        "logloss": float(log_loss(labels, probabilities, labels=[0, 1])),
        "ece": expected_calibration_error(labels, probabilities, n_bins=n_bins, strategy=strategy),
    }
    if groups is not None:
        grouped = gauc(labels, probabilities, groups)
        out["gauc"] = grouped["gauc"]
        out["gauc_groups_used"] = grouped["groups_used"]
        out["gauc_rows_used"] = grouped["rows_used"]
    return out


def value_calibration(
    dataset: CTRDataset,
    probabilities: np.ndarray,
    field: str,
    *,
    rows: np.ndarray | None = None,
    min_count: int = 1,
    limit: int | None = 30,
) -> pd.DataFrame:
    """Compare the mean predicted CTR with the observed click rate for each value of one field.

    Values are grouped as the model saw them (``<OOV>`` for unknown ones; numeric
    fields by their decoded value). ``probabilities`` has one entry per row in
    ``rows`` (all rows when None).

    Returns
    -------
    DataFrame
        ``raw_value``, ``count``, ``mean_predicted``, ``observed_rate`` and
        ``gap`` (observed − predicted), most frequent values first, values with
        fewer than ``min_count`` rows left out, at most ``limit`` lines.
    """
    if field not in dataset.schema.field_names:
        msg = f"unknown field {field!r}; fields: {', '.join(dataset.schema.field_names)}"
        raise KeyError(msg)
    rows = np.arange(len(dataset)) if rows is None else np.asarray(rows)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if probabilities.shape != rows.shape:
        msg = f"got {probabilities.size} predictions for {rows.size} rows"
        raise ValueError(msg)
    frame = pd.DataFrame(
        {
            "raw_value": dataset.raw_values(rows)[field].to_numpy(),
            "label": dataset.labels[rows],
            "predicted": probabilities,
        }
    )
    grouped = frame.groupby("raw_value", sort=False)
    table = pd.DataFrame(
        {
            "count": grouped.size(),
            "mean_predicted": grouped["predicted"].mean(),
            "observed_rate": grouped["label"].mean(),
        }
    ).reset_index()
    table["gap"] = table["observed_rate"] - table["mean_predicted"]
    table = table[table["count"] >= min_count]
    table = table.sort_values(["count", "raw_value"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return table if limit is None else table.iloc[:limit]


def metrics_table(results: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Put the metrics of several models side by side: one line per model, one column per metric."""
    frame = pd.DataFrame({label: dict(values) for label, values in results.items()}).T
    frame.index.name = "model"
    for column in COUNT_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].round().astype("Int64")
    preferred = ["auc", "gauc", "logloss", "ece", "mean_predicted", "positive_rate", "n_rows"]
    ordered = [c for c in preferred if c in frame.columns] + [c for c in frame.columns if c not in preferred]
    return frame[ordered]
