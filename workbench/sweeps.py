"""Field sweeps: set one field to each of several values for every row of a cohort and record the predictions.

For one field and a cohort of rows, :func:`sweep_field` replaces the field's
input by each swept value in turn and keeps everything else of the row as it
is. This gives two standard views of how the prediction depends on the field:

* Individual conditional expectation (ICE), from Goldstein, Kapelner, Bleich
  and Pitkin (2015), "Peeking Inside the Black Box: Visualizing Statistical
  Learning with Plots of Individual Conditional Expectation": one curve per
  row, ``ice[i, v]`` = the model's output for row ``i`` with the field set to
  value ``v``. Curves that are not parallel show that the field's effect
  depends on the row's other fields (an interaction).
* Partial dependence (PD), from Friedman (2001), "Greedy Function
  Approximation: A Gradient Boosting Machine": the mean of the ICE curves
  over the cohort, ``partial_dependence[v] = mean_i ice[i, v]``.

Each swept value comes with two counts. ``training_counts`` is how often a
categorical value occurred in the training data that fitted the schema (the
vocabulary's counts). ``cohort_counts`` is how many cohort rows have the value
themselves. A value with few training rows has a poorly learned embedding, so
its curve point rests on little evidence.

NOTE: PD over categorical values mixes rows whose other fields may make a value
implausible, such as an ``item_id`` swept into a row whose ``category``
belongs to another item. The model is then evaluated on inputs unlike any in
training, and the mean includes those outputs. Comparing the ICE curves of
rows that have the value themselves (``original_values``) with the rest shows
how much this matters.

Only categorical and numeric fields can be swept, because a sweep substitutes
one value. Behaviour histories are edited with :mod:`workbench.sequence_edits`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from workbench.data import CTRDataset
from workbench.explain.api import restored_modes
from workbench.schema import Field, decode_value, encode_field
from workbench.zoo.base import CTRModel

OutputSpace = Literal["probability", "logit"]
OUTPUT_SPACES: tuple[str, ...] = ("probability", "logit")

DEFAULT_TOP_K = 20
DEFAULT_GRID_POINTS = 20
DEFAULT_CHUNK_SIZE = 4096
GRID_QUANTILE_RANGE = (0.05, 0.95)
"""Lowest and highest quantile of the default numeric grid.

The outer 5 % on each side are left out because the data is sparse there,
so the model extrapolates. scikit-learn's ``partial_dependence`` has the same
default, ``percentiles=(0.05, 0.95)`` (version 1.1).
"""

ICE_QUANTILES: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
"""Quantiles of the ICE values per swept value that :meth:`FieldSweep.to_frame` exports."""

MAX_SUGGESTIONS = 5


@dataclass(frozen=True, eq=False)
class FieldSweep:
    """ICE curves and partial dependence of one field over a cohort of rows.

    Outputs are in ``output_space``: ``"probability"`` (predicted CTR) or
    ``"logit"`` (log-odds of a click).
    """

    field: str
    kind: str
    """``"categorical"`` or ``"numeric"``."""
    values: tuple[str, ...]
    """Swept raw values as display labels, in sweep order (numbers with 4 significant digits, more where needed)."""
    encoded_values: np.ndarray
    """Model inputs of the swept values, shape (n_values,): vocabulary indices or standardised floats."""
    numeric_values: np.ndarray | None
    """Raw swept numbers of a numeric field, shape (n_values,). None for categorical fields."""
    ice: np.ndarray
    """Model outputs of shape (n_rows, n_values): row ``i`` with the field set to value ``v``."""
    partial_dependence: np.ndarray
    """Mean of ``ice`` over rows, shape (n_values,)."""
    original: np.ndarray
    """Model output of each row with its own value, shape (n_rows,)."""
    original_values: tuple[str, ...]
    """Each row's own value as the model saw it (``<OOV>`` for unseen values), length n_rows."""
    training_counts: np.ndarray | None
    """Training rows with each categorical value, shape (n_values,). None for numeric fields."""
    cohort_counts: np.ndarray
    """Cohort rows with each value, shape (n_values,).

    For a numeric field this is the number of rows whose value is nearer to
    that grid point than to any other, so the counts add up to n_rows.
    """
    rows: np.ndarray
    """Data set rows of the cohort, shape (n_rows,)."""
    output_space: str

    @property
    def n_rows(self) -> int:
        return int(self.ice.shape[0])

    @property
    def n_values(self) -> int:
        return int(self.ice.shape[1])

    def describe(self) -> str:
        """Return a one-line summary of the sweep: field, kind, output space and sizes."""
        return (
            f"{self.field} ({self.kind}) · {self.output_space} · {self.n_rows:,} rows × {self.n_values:,} values"
        )

    def to_frame(self) -> pd.DataFrame:
        """Return one line per swept value: counts, partial dependence and quantiles of the ICE values.

        Columns: ``field``, ``value``, ``numeric_value`` (NaN for categorical
        fields), ``training_count`` (missing for numeric fields),
        ``cohort_count``, ``partial_dependence``, ``ice_min``, ``ice_q10``,
        ``ice_q25``, ``ice_q50``, ``ice_q75``, ``ice_q90``, ``ice_max`` and
        ``output_space``.
        """
        frame = pd.DataFrame(
            {
                "field": self.field,
                "value": list(self.values),
                "numeric_value": (
                    self.numeric_values if self.numeric_values is not None else np.full(self.n_values, np.nan)
                ),
                "training_count": pd.array(
                    self.training_counts if self.training_counts is not None else [None] * self.n_values,
                    dtype="Int64",
                ),
                "cohort_count": self.cohort_counts,
                "partial_dependence": self.partial_dependence,
                "ice_min": self.ice.min(axis=0),
            }
        )
        for level, column in zip(ICE_QUANTILES, np.quantile(self.ice, ICE_QUANTILES, axis=0), strict=True):
            frame[f"ice_q{round(level * 100):02d}"] = column
        frame["ice_max"] = self.ice.max(axis=0)
        frame["output_space"] = self.output_space
        return frame


def sweep_field(
    model: CTRModel,
    data: CTRDataset,
    rows: np.ndarray | Sequence[int] | None,
    field: str,
    *,
    values: Sequence[str] | Sequence[float] | None = None,
    top_k: int = DEFAULT_TOP_K,
    output_space: OutputSpace = "probability",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    grid_points: int = DEFAULT_GRID_POINTS,
    progress: Callable[[float], None] | None = None,
) -> FieldSweep:
    """Set ``field`` to each swept value for every cohort row and forward the model: ICE curves and PD.

    Parameters
    ----------
    model : CTRModel
        Any zoo model, sequence models included, because only the swept field
        changes. It runs in eval mode without gradients, and every submodule is
        back in its previous train or eval mode when this returns or raises.
    data : CTRDataset
        Encoded data with the model's schema.
    rows : array of int, optional
        Rows of ``data`` that form the cohort (default: all rows).
    field : str
        A categorical or numeric field of the model's schema.
    values : sequence, optional
        Values to sweep. For a categorical field, known raw values (strings).
        Default: the ``top_k`` values by training count, ties in vocabulary
        order. For a numeric field, raw numbers. Default: the distinct
        quantiles of the field's raw values in ``data`` at ``grid_points``
        evenly spaced levels in :data:`GRID_QUANTILE_RANGE`, in increasing order.
    top_k : int
        Number of categorical values swept by default (fewer when the field has fewer).
    output_space : ``"probability"`` (predicted CTR, default) or ``"logit"`` (log-odds).
    chunk_size : int
        Rows per forward pass; caps memory and does not change the values.
    grid_points : int
        Number of quantile levels of the default numeric grid.
    progress : callable, optional
        Called with the finished fraction in [0, 1] after each chunk.

    Returns
    -------
    FieldSweep
        ``ice`` of shape (n_rows, n_values) and the partial dependence, counts and
        raw values that go with it. The cost is ``n_rows * (n_values + 1)``
        forwarded rows.

    Raises
    ------
    ValueError
        For an unknown field, a sequence or dense field, an unknown categorical
        value, a non-numeric or missing numeric value, empty or out-of-range
        rows, or an option out of range.
    """
    _check_options(top_k=top_k, grid_points=grid_points, chunk_size=chunk_size, output_space=output_space)
    target = _sweep_target(model, data, field)
    rows = _cohort_rows(data, rows)

    if target.kind == "categorical":
        labels, encoded, training_counts = _categorical_values(target, values, top_k)
        numeric_values = None
        cohort_counts = _categorical_cohort_counts(data.inputs[field][rows], encoded)
    else:
        numeric_values = _numeric_values(target, data, values, grid_points)
        labels = _number_labels(numeric_values)
        encoded, _ = encode_field(target, pd.Series(numeric_values))
        training_counts = None
        cohort_counts = _numeric_cohort_counts(target, data.inputs[field][rows], numeric_values)

    original_values = tuple(decode_value(target, value) for value in data.inputs[field][rows])
    ice, original = _forward_sweep(model, data, rows, field, encoded, output_space, chunk_size, progress)
    return FieldSweep(
        field=field,
        kind=target.kind,
        values=labels,
        encoded_values=encoded,
        numeric_values=numeric_values,
        ice=ice,
        partial_dependence=ice.mean(axis=0),
        original=original,
        original_values=original_values,
        training_counts=training_counts,
        cohort_counts=cohort_counts,
        rows=rows,
        output_space=output_space,
    )


# --- checks -------------------------------------------------------------------------


def _check_options(*, top_k: int, grid_points: int, chunk_size: int, output_space: str) -> None:
    if output_space not in OUTPUT_SPACES:
        msg = f"sweep_field: output_space must be one of {', '.join(OUTPUT_SPACES)}; got {output_space!r}"
        raise ValueError(msg)
    for name, value in (("top_k", top_k), ("grid_points", grid_points), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            msg = f"sweep_field: {name} must be an integer >= 1; got {value!r}"
            raise ValueError(msg)


def _sweep_target(model: CTRModel, data: CTRDataset, field: str) -> Field:
    """Return the model's schema field named ``field`` after checking that it can be swept."""
    names = model.schema.field_names
    if field not in names:
        msg = f"sweep_field: the model has no field {field!r}; fields: {', '.join(names)}"
        raise ValueError(msg)
    target = model.schema[field]
    if target.kind == "sequence":
        msg = (
            f"sweep_field: field {field!r} is a behaviour sequence, and a sweep substitutes one value per row; "
            "edit histories with workbench.sequence_edits, or sweep a categorical or numeric field"
        )
        raise ValueError(msg)
    if target.kind == "dense":
        msg = (
            f"sweep_field: field {field!r} is a dense vector with no list of values to substitute; "
            "sweep a categorical or numeric field"
        )
        raise ValueError(msg)
    _check_data_schema(model, data, field)
    return target


def _check_data_schema(model: CTRModel, data: CTRDataset, field: str) -> None:
    """Check that ``data`` was encoded with the model's fields and the swept field's vocabulary or statistics.

    The sweep encodes the swept values with the model's schema, so the data's encoding of them must be the same.
    """
    names = model.schema.field_names
    if data.schema.field_names != names:
        msg = (
            f"sweep_field: the data has the fields {', '.join(data.schema.field_names)}, but the model has "
            f"{', '.join(names)}; encode the data with the model's schema, "
            "for example load_dataset(path, bundle.schema)"
        )
        raise ValueError(msg)
    if data.schema[field].to_dict() != model.schema[field].to_dict():
        msg = (
            f"sweep_field: field {field!r} of the data has another vocabulary or mean and standard deviation than "
            "the model's; encode the data with the model's schema, for example load_dataset(path, bundle.schema)"
        )
        raise ValueError(msg)
    missing = [name for name in names if name not in data.inputs]
    if missing:
        msg = (
            f"sweep_field: the data has no inputs for the model's field(s) {', '.join(missing)}; "
            "encode it with the model's schema"
        )
        raise ValueError(msg)


def _cohort_rows(data: CTRDataset, rows: np.ndarray | Sequence[int] | None) -> np.ndarray:
    n_total = len(data)
    if rows is None:
        rows = np.arange(n_total)
    rows = np.asarray(rows)
    if rows.size == 0:
        msg = "sweep_field: rows is empty; give at least one row of the data"
        raise ValueError(msg)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
        msg = (
            "sweep_field: rows must be a one-dimensional array of integer row numbers; "
            f"got dtype {rows.dtype} and shape {rows.shape}"
        )
        raise ValueError(msg)
    bad = rows[(rows < 0) | (rows >= n_total)]
    if bad.size:
        msg = f"sweep_field: row {int(bad[0])} is out of range; the data has rows 0..{n_total - 1}"
        raise ValueError(msg)
    return rows.astype(np.int64)


# --- swept values and counts ------------------------------------------------------------


def _categorical_values(
    target: Field, values: Sequence[str] | Sequence[float] | None, top_k: int
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Return the swept raw values, their vocabulary indices and their training counts."""
    vocabulary = target.vocabulary
    assert vocabulary is not None
    counts = np.asarray(vocabulary.counts, dtype=np.int64)
    if values is None:
        if not vocabulary.values:
            msg = f"sweep_field: categorical field {target.name!r} has an empty vocabulary, so it has no value to sweep"
            raise ValueError(msg)
        # A stable sort keeps vocabulary order among equal counts.
        order = np.argsort(-counts, kind="stable")[:top_k]
        labels = tuple(vocabulary.values[i] for i in order)
    else:
        labels = tuple(str(value) for value in values)
        _check_known_values(target, labels, counts)
    encoded = np.array([vocabulary.index_of(label) for label in labels], dtype=np.int64)
    return labels, encoded, counts[encoded - 1]


def _check_known_values(target: Field, labels: tuple[str, ...], counts: np.ndarray) -> None:
    vocabulary = target.vocabulary
    assert vocabulary is not None
    if not labels:
        msg = (
            f"sweep_field: values is empty; give at least one value of field {target.name!r}, "
            "or None for the most frequent"
        )
        raise ValueError(msg)
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        repeated = ", ".join(map(repr, duplicates))
        msg = f"sweep_field: values of field {target.name!r} repeat {repeated}; give each value once"
        raise ValueError(msg)
    known = set(vocabulary.values)
    for label in labels:
        if label not in known:
            close = difflib.get_close_matches(label, vocabulary.values, n=MAX_SUGGESTIONS)
            frequent = [vocabulary.values[i] for i in np.argsort(-counts, kind="stable")[:MAX_SUGGESTIONS]]
            suggestions = close or frequent
            kind = "similar" if close else "most frequent"
            msg = (
                f"sweep_field: {label!r} is not a known value of field {target.name!r} "
                f"({len(vocabulary.values):,} known values); {kind} known values: {', '.join(map(repr, suggestions))}"
            )
            raise ValueError(msg)


def _categorical_cohort_counts(column: np.ndarray, encoded: np.ndarray) -> np.ndarray:
    return np.array([int(np.count_nonzero(column == index)) for index in encoded], dtype=np.int64)


def _numeric_values(
    target: Field, data: CTRDataset, values: Sequence[str] | Sequence[float] | None, grid_points: int
) -> np.ndarray:
    """Return the swept raw numbers: the given ones, or distinct quantiles of the field's raw values."""
    if values is not None:
        values = list(values)
        numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
        if numbers.size == 0:
            msg = (
                f"sweep_field: values is empty; give at least one number for field {target.name!r}, "
                "or None for a quantile grid"
            )
            raise ValueError(msg)
        invalid = [value for value, number in zip(values, numbers, strict=True) if not np.isfinite(number)]
        if invalid:
            msg = f"sweep_field: numeric field {target.name!r} needs finite numbers; got {invalid[0]!r}"
            raise ValueError(msg)
        return numbers
    raw = pd.to_numeric(data.raw[target.name], errors="coerce").to_numpy(dtype=np.float64)
    raw = raw[np.isfinite(raw)]
    if raw.size == 0:
        msg = f"sweep_field: numeric field {target.name!r} has no values in the data to build a grid from; pass values="
        raise ValueError(msg)
    levels = np.linspace(*GRID_QUANTILE_RANGE, grid_points) if grid_points > 1 else np.array([0.5])
    return np.unique(np.quantile(raw, levels))


def _number_labels(numbers: np.ndarray) -> tuple[str, ...]:
    """Format numbers with 4 significant digits, or more where 4 would give two numbers the same label."""
    for digits in range(4, 18):
        labels = tuple(f"{number:.{digits}g}" for number in numbers)
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _numeric_cohort_counts(target: Field, column: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Count the cohort rows nearest to each grid point, giving a tie to the first of the nearest points."""
    raw = column.astype(np.float64) * target.std + target.mean
    nearest = np.argmin(np.abs(raw[:, None] - grid[None, :]), axis=1)
    return np.bincount(nearest, minlength=grid.size).astype(np.int64)


# --- forward passes ------------------------------------------------------------------


def _forward_sweep(
    model: CTRModel,
    data: CTRDataset,
    rows: np.ndarray,
    field: str,
    encoded: np.ndarray,
    output_space: str,
    chunk_size: int,
    progress: Callable[[float], None] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Forward the cohort once as it is and once per swept value, and return ``ice`` and ``original`` as float64.

    Swept rows are numbered ``p = i * n_values + v`` for cohort row ``i`` and
    value ``v``, and each chunk gathers its rows from the cohort's inputs, so
    the repeated inputs never exist all at once.
    """
    n_rows, n_values = rows.size, encoded.size
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    inputs = {name: torch.from_numpy(np.ascontiguousarray(array[rows])) for name, array in data.inputs.items()}
    swept = torch.from_numpy(np.ascontiguousarray(encoded)).to(inputs[field].dtype)
    n_total = n_rows * (n_values + 1)
    outputs = np.empty(n_total, dtype=np.float64)

    with restored_modes(model), torch.no_grad():
        model.eval()
        for start in range(0, n_total, chunk_size):
            stop = min(start + chunk_size, n_total)
            positions = torch.arange(start, stop)
            # Positions below n_rows * n_values are swept rows, and the last n_rows are the unchanged cohort.
            is_swept = positions < n_rows * n_values
            row_index = torch.where(is_swept, positions // n_values, positions - n_rows * n_values)
            batch = {name: tensor[row_index] for name, tensor in inputs.items()}
            batch[field] = torch.where(is_swept, swept[positions % n_values], batch[field])
            logits = model({name: tensor.to(device) for name, tensor in batch.items()}).double()
            values = torch.sigmoid(logits) if output_space == "probability" else logits
            outputs[start:stop] = values.cpu().numpy()
            if progress is not None:
                progress(stop / n_total)

    ice = outputs[: n_rows * n_values].reshape(n_rows, n_values)
    return ice, outputs[n_rows * n_values :]
