"""Choosing data set rows: seeded samples for global attributions and rows for the sample explorer.

This module does not import Streamlit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.data import sample_rows  # noqa: F401 (the pages call rows.sample_rows)
from workbench.schema import Schema

FILTER_KINDS = ("categorical", "numeric")
"""Field kinds the sample explorer can filter on (one raw value per row)."""


def check_row(row: int, n_total: int, dataset_name: str) -> int:
    """Return ``row`` when it is a valid row number of a data set of ``n_total`` rows, else raise IndexError."""
    if not 0 <= row < n_total:
        msg = (
            f"row {row} is out of range: the data set {dataset_name} has {n_total:,} rows, "
            f"numbered 0 to {n_total - 1:,}. Enter a row number in that range."
        )
        raise IndexError(msg)
    return int(row)


def filter_fields(schema: Schema) -> list[str]:
    """Return the fields a row filter can use."""
    return [f.name for f in schema.fields if f.kind in FILTER_KINDS]


def value_counts(values: pd.Series, limit: int) -> pd.Series:
    """Return the ``limit`` most frequent values of a column with their counts, most frequent first."""
    return values.astype(str).value_counts(sort=True).iloc[:limit]


def matching_rows(values: pd.Series, value: str, limit: int) -> np.ndarray:
    """Return the first ``limit`` row numbers whose value equals ``value`` (compared as text)."""
    hits = np.flatnonzero(values.astype(str).to_numpy() == str(value))
    return hits[:limit]


def random_row(n_total: int, generator: np.random.Generator | None = None) -> int:
    """Return a uniformly drawn row number."""
    generator = generator or np.random.default_rng()
    return int(generator.integers(n_total))
