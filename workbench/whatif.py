"""What-if edits of one sample: set fields to other raw values and compare prediction and attribution.

A change maps a field to a raw value as a user would write it in the data
file: a vocabulary value for a categorical field, a number for a numeric
field, a list of items (or a string with the field's separator) for a
behaviour history and a vector for a dense field. :func:`apply_changes`
encodes the changes into model inputs, and :func:`compare` forwards the
sample before and after, explaining both in one call, so the two
attributions come from the same method, baseline and players.

Histories can also be edited with the actions of
:mod:`workbench.sequence_edits`, which take and return model inputs; pass
their output to :func:`compare` as ``after``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.data import CTRDataset
from workbench.explain.api import Players, explain, restored_modes
from workbench.explain.result import Attribution
from workbench.schema import OOV_TOKEN, PAD_TOKEN, Field, Schema, decode_value, encode_field


MAX_STANDARD_DEVIATIONS = 1_000
"""Numeric what-if values further than this from the training mean are rejected.

The bound only stops absurd inputs (1e308 gives a NaN prediction): anything
beyond a few standard deviations is already an extrapolation."""


def value_choices(field: Field, *, min_count: int = 1) -> pd.DataFrame:
    """List the values a categorical or sequence field can take, most frequent in training first.

    Returns
    -------
    DataFrame with the columns ``value`` (raw value), ``index`` (the id the
    model receives) and ``training_count`` (rows of the training data that fitted
    the vocabulary), for the values seen at least ``min_count`` times. Ties keep
    the vocabulary order.
    """
    if field.vocabulary is None:
        msg = f"field {field.name!r} is {field.kind} and has no vocabulary; only categorical and sequence fields do"
        raise ValueError(msg)
    vocabulary = field.vocabulary
    frame = pd.DataFrame(
        {
            "value": vocabulary.values,
            "index": np.arange(1, len(vocabulary.values) + 1, dtype=np.int64),
            "training_count": np.asarray(vocabulary.counts, dtype=np.int64),
        }
    )
    frame = frame[frame["training_count"] >= min_count]
    return frame.sort_values("training_count", ascending=False, kind="stable").reset_index(drop=True)


def encode_change(field: Field, raw: Any) -> np.ndarray:
    """Encode one raw value of ``field`` as the model input of one row.

    Categorical values must be in the vocabulary, or be ``<OOV>`` or
    ``<PAD>`` to ask for those ids on purpose. A value the model would only
    see as OOV is rejected, so that a typo does not silently become "unknown".
    Numbers must be finite. Histories keep their most recent ``max_length``
    items, and each item must be known.

    Returns
    -------
    ndarray of shape (1,) for categorical and numeric fields,
    (1, max_length) for sequence fields and (1, dim) for dense fields.
    """
    if field.kind == "categorical":
        assert field.vocabulary is not None
        text = str(raw)
        if text == PAD_TOKEN:
            return np.zeros(1, dtype=np.int64)
        if text == OOV_TOKEN:
            return np.asarray([field.vocabulary.oov_index], dtype=np.int64)
        index = field.vocabulary.index_of(text)
        if index == field.vocabulary.oov_index:
            msg = (
                f"{text!r} is not a known value of field {field.name!r} (the model would see it as OOV); "
                f"choose a value from its vocabulary of {field.cardinality:,} values, or {OOV_TOKEN!r} on purpose"
            )
            raise ValueError(msg)
        return np.asarray([index], dtype=np.int64)
    if field.kind == "numeric":
        if isinstance(raw, (bool, np.bool_)):
            msg = f"field {field.name!r} is numeric; got the boolean {raw!r}, give a number"
            raise ValueError(msg)
        try:
            number = float(raw)
        except (TypeError, ValueError):
            msg = f"field {field.name!r} is numeric; {raw!r} is not a number"
            raise ValueError(msg) from None
        if not np.isfinite(number):
            msg = f"field {field.name!r} needs a finite number; got {raw!r}"
            raise ValueError(msg)
        encoded, _ = encode_field(field, pd.Series([number]))
        if abs(float(encoded[0])) > MAX_STANDARD_DEVIATIONS:
            msg = (
                f"field {field.name!r}: {number:g} lies {abs(float(encoded[0])):,.0f} standard deviations from the "
                f"training mean {field.mean:.4g}; the model never saw anything like it. Give a value within "
                f"{MAX_STANDARD_DEVIATIONS:,} standard deviations ({field.std:.4g} each)"
            )
            raise ValueError(msg)
        return encoded
    if field.kind == "sequence":
        assert field.vocabulary is not None
        if not isinstance(raw, (str, list, tuple, np.ndarray)):
            msg = (
                f"history {field.name!r} needs a list of items or a string of items joined by "
                f"{field.separator!r}; got {type(raw).__name__} {raw!r}"
            )
            raise ValueError(msg)
        items = raw if isinstance(raw, str) else list(raw)
        encoded, n_oov = encode_field(field, pd.Series([items], dtype=object))
        if n_oov:
            known = set(field.vocabulary.values)
            unknown = [item for item in _items(items, field.separator) if item not in known]
            msg = (
                f"history {field.name!r}: {', '.join(map(repr, unknown[:5]))} "
                f"{'is' if len(unknown) == 1 else 'are'} not in its vocabulary (the model would see OOV)"
            )
            if isinstance(items, str) and field.separator not in items and any(mark in items for mark in ",;"):
                msg += f"; items are joined by {field.separator!r}"
            raise ValueError(msg)
        return encoded
    try:
        encoded, _ = encode_field(field, pd.Series([raw], dtype=object))
    except (TypeError, ValueError) as err:
        msg = f"field {field.name!r}: {err}"
        raise ValueError(msg) from err
    return encoded


def _items(items: str | Sequence[Any], separator: str) -> list[str]:
    if isinstance(items, str):
        return [item for item in items.split(separator) if item]
    return [str(item) for item in items]


def apply_changes(schema: Schema, inputs: Mapping[str, torch.Tensor], changes: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Return a copy of ``inputs`` (any number of rows) with each changed field set to its raw value in every row."""
    if not isinstance(changes, Mapping):
        msg = f"changes must map field names to raw values, such as {{'device': 'mobile'}}; got {type(changes).__name__}"
        raise TypeError(msg)
    out = dict(inputs)
    for name, raw in changes.items():
        if name not in schema.field_names:
            msg = f"no field named {name!r}; fields: {', '.join(schema.field_names)}"
            raise ValueError(msg)
        encoded = torch.from_numpy(encode_change(schema[name], raw))
        original = inputs[name]
        out[name] = encoded.to(original.dtype).expand_as(original).clone()
    return out


def displayed_values(schema: Schema, inputs: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Return the raw value of every field of a one-row input, as the model receives it (``<OOV>`` for unknown)."""
    return {f.name: decode_value(f, np.asarray(inputs[f.name])[0]) for f in schema.fields}


@dataclass(frozen=True)
class WhatIf:
    """One sample before and after an edit: values, predictions (logits) and attributions.

    ``before`` and ``after`` are None when the comparison ran without an
    attribution method. Their ``rows`` are the data row, or 0 for inputs
    given directly.
    """

    row: int | None
    values_before: dict[str, str]
    values_after: dict[str, str]
    logit_before: float
    logit_after: float
    before: Attribution | None = None
    after: Attribution | None = None

    @property
    def prediction_before(self) -> float:
        """Predicted click probability before the edit."""
        return float(1 / (1 + np.exp(-self.logit_before)))

    @property
    def prediction_after(self) -> float:
        return float(1 / (1 + np.exp(-self.logit_after)))

    @property
    def delta(self) -> float:
        """Change of the predicted click probability (after - before)."""
        return self.prediction_after - self.prediction_before

    @property
    def changed_fields(self) -> list[str]:
        """Fields whose displayed value differs between before and after, in field order."""
        return [name for name, value in self.values_before.items() if self.values_after[name] != value]

    def comparison_frame(self) -> pd.DataFrame:
        """Return one line per player: values before and after and, with attributions, both attributions and their change."""
        if self.before is None or self.after is None:
            names = list(self.values_before)
            return pd.DataFrame(
                {
                    "field": names,
                    "value_before": [self.values_before[n] for n in names],
                    "value_after": [self.values_after[n] for n in names],
                    "changed": [self.values_after[n] != self.values_before[n] for n in names],
                }
            )
        names = list(self.before.field_names)
        before_raw = self.before.raw_values.iloc[0] if self.before.raw_values is not None else None
        after_raw = self.after.raw_values.iloc[0] if self.after.raw_values is not None else None
        frame = pd.DataFrame(
            {
                "field": names,
                "value_before": [str(before_raw[n]) if before_raw is not None else "" for n in names],
                "value_after": [str(after_raw[n]) if after_raw is not None else "" for n in names],
                "attribution_before": self.before.values[0],
                "attribution_after": self.after.values[0],
            }
        )
        frame["attribution_change"] = frame["attribution_after"] - frame["attribution_before"]
        frame["changed"] = frame["value_before"] != frame["value_after"]
        return frame


@torch.no_grad()
def forward_logits(model: torch.nn.Module, inputs: Mapping[str, torch.Tensor], *, chunk_size: int = 4_096) -> np.ndarray:
    """Forward ``inputs`` in eval mode, ``chunk_size`` rows at a time, and return float64 logits of shape (n_rows,).

    Every submodule is back in its previous train or eval mode afterwards.
    """
    n_rows = int(next(iter(inputs.values())).shape[0])
    out = np.empty(n_rows, dtype=np.float64)
    with restored_modes(model):
        model.eval()
        for start in range(0, n_rows, chunk_size):
            chunk = {name: x[start : start + chunk_size] for name, x in inputs.items()}
            out[start : start + chunk_size] = model(chunk).reshape(-1).double().cpu().numpy()
    return out


def compare(
    model: Any,
    before: Mapping[str, torch.Tensor],
    after: Mapping[str, torch.Tensor],
    *,
    row: int | None = None,
    method: str | None = "auto",
    baseline: str = "zero",
    players: Players = None,
    output_space: str = "logit",
    background: Any = None,
    **method_options: Any,
) -> WhatIf:
    """Predict and explain one sample before and after an edit.

    Parameters
    ----------
    model : CTRModel
    before, after : dict of str to Tensor
        Model inputs of one row each, for example from ``CTRDataset.tensors([row])``
        and :func:`apply_changes`.
    row : int, optional
        The data row, recorded in the result and in the attributions' ``rows``.
    method : str or None
        An attribution method of :func:`workbench.explain.explain` (``"auto"``:
        exact Shapley values up to 16 players), or None for predictions only.
    baseline, players, output_space, background, **method_options
        As in :func:`workbench.explain.explain`. Both rows are explained in
        one call, so a sampled method draws the same way for both.
    """
    for name, inputs in (("before", before), ("after", after)):
        sizes = {int(x.shape[0]) for x in inputs.values()}
        if sizes != {1}:
            msg = f"compare: {name} must hold exactly one row; got {sorted(sizes)} rows"
            raise ValueError(msg)
    schema: Schema = model.schema
    values_before = displayed_values(schema, before)
    values_after = displayed_values(schema, after)
    both = {name: torch.cat([before[name], after[name].to(before[name].dtype)]) for name in schema.field_names}
    logits = forward_logits(model, both)
    result = WhatIf(row, values_before, values_after, float(logits[0]), float(logits[1]))
    if method is None:
        return result

    attribution = explain(
        model,
        both,
        None,
        method=method,
        baseline=baseline,
        players=players,
        output_space=output_space,
        background=background,
        **method_options,
    )
    names = list(attribution.field_names)
    if players is None:
        raw = pd.DataFrame([[values_before.get(n, "") for n in names], [values_after.get(n, "") for n in names]], columns=names)
    else:
        groups = {name: tuple(members) for name, members in players.items()}
        raw = pd.DataFrame(
            [[_group_value(values, groups[n]) for n in names] for values in (values_before, values_after)],
            columns=names,
        )
    data_row = 0 if row is None else int(row)

    def one(position: int) -> Attribution:
        return replace(
            attribution,
            values=attribution.values[position : position + 1],
            base_values=attribution.base_values[position : position + 1],
            predictions=attribution.predictions[position : position + 1],
            rows=np.asarray([data_row]),
            labels=None,
            raw_values=raw.iloc[position : position + 1].reset_index(drop=True),
            standard_errors=None
            if attribution.standard_errors is None
            else attribution.standard_errors[position : position + 1],
        )

    return replace(result, before=one(0), after=one(1))


def _group_value(values: Mapping[str, str], members: Sequence[str]) -> str:
    fields = [member for member in members if member in values]
    if len(fields) == 1:
        return values[fields[0]]
    return ", ".join(f"{name}={values[name]}" for name in fields)


def what_if(
    model: Any,
    data: CTRDataset,
    row: int,
    changes: Mapping[str, Any],
    **options: Any,
) -> WhatIf:
    """Set fields of data row ``row`` to new raw values, then predict and explain before and after.

    ``changes`` maps field names to raw values (see :func:`encode_change`).
    ``options`` are those of :func:`compare`.
    """
    if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= int(row) < len(data):
        msg = f"row must be an integer in 0..{len(data) - 1} of {data.name or 'the data'}; got {row!r}"
        raise IndexError(msg)
    before = data.tensors(np.asarray([int(row)]))
    after = apply_changes(model.schema, before, changes)
    return compare(model, before, after, row=int(row), **options)
