"""The attribution result that flows from explainers to figures, the CLI and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Attribution:
    """Field attributions of a set of samples, with everything needed to read them.

    ``values[i, f]`` is field ``f``'s share of ``predictions[i] - base_values[i]``
    for sample ``i``, in the units of ``output_space`` (``"logit"``: log-odds).
    ``rows`` are the samples' row numbers in the data set they came from, and
    ``raw_values`` contains the field values the model saw, as display strings.
    """

    values: np.ndarray
    base_values: np.ndarray
    predictions: np.ndarray
    field_names: tuple[str, ...]
    rows: np.ndarray
    method: str
    baseline: str
    output_space: str = "logit"
    parameters: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None
    raw_values: pd.DataFrame | None = None
    standard_errors: np.ndarray | None = None
    """Standard error of each value for sampled methods, shape like ``values``; None for deterministic ones."""

    def __post_init__(self) -> None:
        n_samples, n_fields = self.values.shape
        if self.standard_errors is not None and self.standard_errors.shape != self.values.shape:
            msg = f"standard_errors must have shape {self.values.shape}; got {self.standard_errors.shape}"
            raise ValueError(msg)
        if n_fields != len(self.field_names):
            msg = f"values have {n_fields} columns but there are {len(self.field_names)} field names"
            raise ValueError(msg)
        for name in ("base_values", "predictions", "rows"):
            if getattr(self, name).shape != (n_samples,):
                msg = f"{name} must have shape ({n_samples},); got {getattr(self, name).shape}"
                raise ValueError(msg)

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

    @property
    def completeness_gap(self) -> np.ndarray:
        """``|sum_f values - (prediction - base value)|`` per sample (0 for exact methods)."""
        return np.abs(self.values.sum(axis=1) - (self.predictions - self.base_values))

    @property
    def relative_completeness_gap(self) -> np.ndarray:
        """Completeness gap divided by ``|prediction - base value|`` per sample."""
        span = np.abs(self.predictions - self.base_values)
        return self.completeness_gap / np.maximum(span, 1e-12)

    @property
    def completeness_gap_share(self) -> float:
        """Mean completeness gap divided by the mean ``|prediction - base value|``.

        Per-sample relative gaps blow up for samples whose prediction is close
        to the base value. This ratio of means weighs each sample by how much
        there is to attribute, so it is the summary the app and CLI report.
        """
        span = np.abs(self.predictions - self.base_values).mean()
        return float(self.completeness_gap.mean() / max(span, 1e-12))

    def mean_abs(self) -> pd.Series:
        """Global importance: mean |attribution| per field, largest first."""
        return pd.Series(np.abs(self.values).mean(axis=0), index=list(self.field_names)).sort_values(
            ascending=False
        )

    def sample(self, position: int) -> pd.DataFrame:
        """Return one sample's attributions as a frame (field, raw value, attribution), in field order."""
        if not 0 <= position < self.n_samples:
            msg = f"sample position {position} is out of range (0..{self.n_samples - 1})"
            raise IndexError(msg)
        raw = (
            self.raw_values.iloc[position].astype(str).tolist()
            if self.raw_values is not None
            else [""] * len(self.field_names)
        )
        return pd.DataFrame(
            {"field": list(self.field_names), "raw_value": raw, "attribution": self.values[position]}
        )

    def position_of_row(self, row: int) -> int:
        """Return the position of data set row ``row`` in this result."""
        hits = np.flatnonzero(self.rows == row)
        if hits.size == 0:
            msg = f"row {row} is not among the {self.n_samples} attributed rows"
            raise KeyError(msg)
        return int(hits[0])

    def to_frame(self) -> pd.DataFrame:
        """Long format: one line per (sample, field) with raw value and attribution."""
        n_fields = len(self.field_names)
        frame = pd.DataFrame(
            {
                "row": np.repeat(self.rows, n_fields),
                "field": np.tile(np.asarray(self.field_names, dtype=object), self.n_samples),
                "attribution": self.values.reshape(-1),
                "base_value": np.repeat(self.base_values, n_fields),
                "prediction": np.repeat(self.predictions, n_fields),
            }
        )
        if self.standard_errors is not None:
            frame["standard_error"] = self.standard_errors.reshape(-1)
        if self.raw_values is not None:
            frame.insert(2, "raw_value", self.raw_values.to_numpy(dtype=object).reshape(-1).astype(str))
        if self.labels is not None:
            frame["label"] = np.repeat(self.labels, n_fields)
        frame["method"] = self.method
        frame["baseline"] = self.baseline
        frame["output_space"] = self.output_space
        return frame

    def to_parquet(self, path: str | Path) -> Path:
        """Write :meth:`to_frame` to Parquet with the parameters in the file metadata."""
        import json

        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        table = pa.Table.from_pandas(self.to_frame(), preserve_index=False)
        metadata = dict(table.schema.metadata or {})
        metadata[b"workbench.attribution"] = json.dumps(
            {
                "method": self.method,
                "baseline": self.baseline,
                "output_space": self.output_space,
                "parameters": self.parameters,
                "field_names": list(self.field_names),
            }
        ).encode("utf-8")
        pq.write_table(table.replace_schema_metadata(metadata), path)
        return path

    def describe(self) -> str:
        """One line naming method, baseline, output space and key parameters, for figure captions."""
        parts = [f"method: {self.method}", f"baseline: {self.baseline}", f"output: {self.output_space}"]
        if "n_steps" in self.parameters:
            parts.append(f"steps: {self.parameters['n_steps']}")
        return " · ".join(parts)
