"""Tables the pages show, built from a bundle, a data set, an attribution or an interaction. This module does not import Streamlit."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from workbench.data import CTRDataset
from workbench.explain import Attribution, Interaction
from workbench.explain.summaries import top_pairs
from workbench.figures import display_value
from workbench.schema import Schema

METRIC_COLUMNS = {"auc": "AUC", "logloss": "log loss", "positive_rate": "positive rate", "n_rows": "rows"}


def _text(value: Any) -> str:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def format_metric(value: float, digits: int = 4) -> str:
    """Format a metric value, or ``n/a`` when it is NaN (AUC of a data set with one class)."""
    return "n/a" if np.isnan(value) else f"{value:.{digits}f}"


def key_value_table(values: dict[str, Any], *, key: str = "name", value: str = "value") -> pd.DataFrame:
    """Build a two-column table of a flat dict. Nested values are written as JSON, so every cell is text."""
    return pd.DataFrame({key: list(values), value: [_text(v) for v in values.values()]})


def metrics_table(metrics: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Build a table of metrics per split (rows).

    AUC, log loss, positive rate and row count come first, other metrics after.
    """
    frame = pd.DataFrame.from_dict({split: dict(values) for split, values in metrics.items()}, orient="index")
    if frame.empty:
        return frame
    known = [column for column in METRIC_COLUMNS if column in frame.columns]
    frame = frame[known + [column for column in frame.columns if column not in METRIC_COLUMNS]]
    if "n_rows" in frame.columns:
        frame["n_rows"] = frame["n_rows"].astype("Int64")
    frame.index.name = "split"
    return frame.rename(columns=METRIC_COLUMNS)


def training_summary(training: dict[str, Any]) -> dict[str, Any]:
    """Collect best epoch, epochs run and training time from a manifest's ``training`` entry (keys that exist only)."""
    summary: dict[str, Any] = {}
    if "best_epoch" in training:
        summary["best epoch"] = training["best_epoch"]
    history = training.get("history")
    if isinstance(history, list):
        summary["epochs run"] = len(history)
    if isinstance(training.get("seconds"), (int, float)):
        summary["training time"] = f"{training['seconds']:.1f} s"
    return summary


def data_fingerprint_table(data: dict[str, Any]) -> pd.DataFrame:
    """Build a table with one row per data split recorded in a manifest (path, SHA-256 and any other entries)."""
    rows = []
    for split, entry in data.items():
        if isinstance(entry, dict):
            rows.append({"split": split, **{key: _text(value) for key, value in entry.items()}})
        else:
            rows.append({"split": split, "value": _text(entry)})
    return pd.DataFrame(rows)


def schema_table(schema: Schema, dataset: CTRDataset | None = None) -> pd.DataFrame:
    """Build a table of field, kind and cardinality per field.

    When a data set is given, the table also has its OOV count and OOV share.

    For sequence fields the OOV count counts history items, so no share of rows is given.
    """
    frame = pd.DataFrame(
        {
            "field": schema.field_names,
            "kind": [f.kind for f in schema.fields],
            "cardinality": [f.cardinality if f.vocabulary is not None else None for f in schema.fields],
        }
    )
    frame["cardinality"] = frame["cardinality"].astype("Int64")
    if dataset is not None:
        counts = [dataset.oov_counts.get(f.name, 0) for f in schema.fields]
        frame["OOV count"] = counts
        frame["OOV share of rows"] = [
            count / len(dataset) if f.kind == "categorical" and len(dataset) else None
            for f, count in zip(schema.fields, counts, strict=True)
        ]
    return frame


def sample_table(attribution: Attribution, position: int, file_values: pd.Series | None = None) -> pd.DataFrame:
    """Build a table of one sample's fields.

    Columns: value in the file, value the model saw (``<OOV>`` when unknown) and attribution.

    Rows keep the schema's field order.
    """
    sample = attribution.sample(position)
    frame = pd.DataFrame({"field": sample["field"]})
    if file_values is not None:
        frame["value in file"] = [display_value(_missing_to_empty(file_values.get(name))) for name in sample["field"]]
    frame["value the model saw"] = [display_value(value) for value in sample["raw_value"]]
    frame["attribution"] = sample["attribution"].to_numpy()
    return frame


def _missing_to_empty(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return value


# --- pair interactions ----------------------------------------------------------------------------


PAIR_SEPARATOR = " × "


def pair_label(player_i: str, player_j: str) -> str:
    """Return the label of a pair in selectors, such as ``city × device``."""
    return f"{player_i}{PAIR_SEPARATOR}{player_j}"


def pair_options(interaction: Interaction) -> dict[str, tuple[str, str]]:
    """Map the label of every pair ``i < j`` to its two players, ordered by mean |pair value|, largest first."""
    pairs = top_pairs(interaction)
    return {
        pair_label(first, second): (first, second)
        for first, second in zip(pairs["player_i"], pairs["player_j"], strict=True)
    }


def pair_from_selection(selection: dict[str, Any] | None, player_names: tuple[str, ...]) -> tuple[str, str] | None:
    """Return the pair of the first point selected on an interaction heatmap, in player order, or None.

    ``selection`` is the ``selection`` entry of a Streamlit plotly chart event.
    A selected cell's ``y`` is one player and its ``x`` the other (see
    ``workbench.figures.interaction_heatmap``). Points on the diagonal or with
    unknown names give None.
    """
    points = (selection or {}).get("points") or []
    if not points:
        return None
    first, second = points[0].get("y"), points[0].get("x")
    if first not in player_names or second not in player_names or first == second:
        return None
    if player_names.index(first) > player_names.index(second):
        first, second = second, first
    return first, second
