"""Sequence counterfactuals: edit one sample's behaviour history and measure the change of the prediction.

The edits work on the encoded history of a sequence model (``din``, ``dien``,
``qin``) and change every paired history at the same positions, so a
behaviour keeps its item and genre together:

* ``drop``: remove behaviours at chosen positions; later behaviours move up.
* ``drop_top_k``: remove the ``k`` behaviours with the largest attribution.
* ``insert``: add a behaviour as the most recent one (the oldest drops out
  when the history is full).
* ``move_to_recent``: make a chosen behaviour the most recent one.
* ``reverse``: reverse the order of the history.

Positions count from 0 = the oldest behaviour kept; the most recent is last.
A model without order, such as DIN, predicts the same after ``reverse`` and
``move_to_recent``; a recurrent one such as DIEN does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.data import CTRDataset
from workbench.schema import PAD_INDEX
from workbench.whatif import forward_logits

SEQUENCE_ACTIONS = {
    "drop": "remove the behaviours at the chosen positions",
    "drop_top_k": "remove the k behaviours with the largest attribution",
    "insert": "add a behaviour as the most recent one",
    "move_to_recent": "make the chosen behaviour the most recent one",
    "reverse": "reverse the order of the history",
}


@dataclass
class SequenceEdit:
    """One edited history of one sample and the model's predictions before and after (probabilities)."""

    action: str
    description: str
    items_before: list[str]
    items_after: list[str]
    logit_before: float
    logit_after: float

    @property
    def prediction_before(self) -> float:
        return float(1 / (1 + np.exp(-self.logit_before)))

    @property
    def prediction_after(self) -> float:
        return float(1 / (1 + np.exp(-self.logit_after)))

    @property
    def delta(self) -> float:
        """Change of the predicted click probability (after − before)."""
        return self.prediction_after - self.prediction_before

    def as_row(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "edit": self.description,
            "prediction_before": self.prediction_before,
            "prediction_after": self.prediction_after,
            "delta": self.delta,
            "history_after": " | ".join(self.items_after),
        }


def _check_model(model: Any) -> None:
    if not hasattr(model, "pairs") or not hasattr(model, "history_length"):
        architecture = getattr(model, "architecture", type(model).__name__)
        msg = f"{architecture} has no behaviour history to edit; sequence edits need din, dien or qin"
        raise ValueError(msg)


def _histories(model: Any, inputs: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Return the paired histories of one sample as ``(n_histories, max_length)`` ids."""
    return np.stack([np.asarray(inputs[history]).reshape(-1) for history, _ in model.pairs])


def _present(ids: np.ndarray) -> np.ndarray:
    return (ids != PAD_INDEX).any(axis=0)


def _with_histories(model: Any, inputs: Mapping[str, torch.Tensor], ids: np.ndarray) -> dict[str, torch.Tensor]:
    out = dict(inputs)
    for channel, (history, _) in enumerate(model.pairs):
        out[history] = torch.from_numpy(np.ascontiguousarray(ids[channel])).reshape(1, -1).to(inputs[history].dtype)
    return out


def _compact(ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Keep the positions in ``keep`` in order, then pad with PAD at the end."""
    out = np.full_like(ids, PAD_INDEX)
    kept = ids[:, keep]
    out[:, : kept.shape[1]] = kept
    return out


def item_labels(model: Any, inputs: Mapping[str, torch.Tensor]) -> list[str]:
    """Raw values of one sample's present behaviours, oldest first, ``"item · genre"`` over paired histories."""
    ids = _histories(model, inputs)
    labels = []
    for position in np.flatnonzero(_present(ids)):
        parts = []
        for channel, (history, _) in enumerate(model.pairs):
            vocabulary = model.schema[history].vocabulary
            if ids[channel, position] != PAD_INDEX:
                parts.append(vocabulary.decode([int(ids[channel, position])])[0])
        labels.append(" · ".join(parts))
    return labels


def _positions(ids: np.ndarray, positions: Sequence[int], action: str) -> list[int]:
    present = np.flatnonzero(_present(ids))
    chosen = [int(p) for p in positions]
    wrong = [p for p in chosen if p not in set(present.tolist())]
    if wrong:
        msg = (
            f"{action}: position {wrong[0]} holds no behaviour; this history has behaviours at positions "
            f"0..{len(present) - 1}" if len(present) else f"{action}: this sample's history is empty"
        )
        raise ValueError(msg)
    return chosen


def drop_behaviours(model: Any, inputs: Mapping[str, torch.Tensor], positions: Sequence[int]) -> dict[str, torch.Tensor]:
    """Remove the behaviours at ``positions`` from one sample's history."""
    _check_model(model)
    ids = _histories(model, inputs)
    chosen = set(_positions(ids, positions, "drop"))
    keep = np.asarray([p for p in np.flatnonzero(_present(ids)) if p not in chosen], dtype=np.int64)
    return _with_histories(model, inputs, _compact(ids, keep))


def move_to_recent(model: Any, inputs: Mapping[str, torch.Tensor], position: int) -> dict[str, torch.Tensor]:
    """Make the behaviour at ``position`` the most recent one."""
    _check_model(model)
    ids = _histories(model, inputs)
    (chosen,) = _positions(ids, [position], "move_to_recent")
    order = [p for p in np.flatnonzero(_present(ids)) if p != chosen] + [chosen]
    return _with_histories(model, inputs, _compact(ids, np.asarray(order, dtype=np.int64)))


def reverse_history(model: Any, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reverse the order of one sample's behaviours (the oldest becomes the most recent)."""
    _check_model(model)
    ids = _histories(model, inputs)
    return _with_histories(model, inputs, _compact(ids, np.flatnonzero(_present(ids))[::-1].copy()))


def insert_behaviour(
    model: Any, inputs: Mapping[str, torch.Tensor], values: Mapping[str, str]
) -> dict[str, torch.Tensor]:
    """Add a behaviour as the most recent one; ``values`` gives its raw value for each paired history.

    When the history is full, its oldest behaviour drops out, as it would in
    the data. Values unknown to a history's vocabulary are rejected, since the
    model would see them as OOV.
    """
    _check_model(model)
    histories = [history for history, _ in model.pairs]
    missing = [history for history in histories if history not in values]
    if missing:
        msg = f"insert: give a value for every paired history; missing: {', '.join(missing)}"
        raise ValueError(msg)
    ids = _histories(model, inputs)
    new = []
    for history in histories:
        vocabulary = model.schema[history].vocabulary
        value = str(values[history])
        index = vocabulary.index_of(value)
        if index == vocabulary.oov_index:
            msg = (
                f"insert: {value!r} is not a known value of {history!r} (the model would see it as OOV); "
                "choose a value from the training data"
            )
            raise ValueError(msg)
        new.append(index)
    present = np.flatnonzero(_present(ids))
    kept = ids[:, present]
    if kept.shape[1] == ids.shape[1]:
        kept = kept[:, 1:]
    combined = np.concatenate([kept, np.asarray(new, dtype=ids.dtype).reshape(-1, 1)], axis=1)
    out = np.full_like(ids, PAD_INDEX)
    out[:, : combined.shape[1]] = combined
    return _with_histories(model, inputs, out)


def paired_values(model: Any, data: CTRDataset, value: str) -> dict[str, str]:
    """Complete a behaviour from its first history's raw value, using the target fields of ``data``.

    For ``history_movies`` paired with ``movie_id`` and ``history_genres``
    with ``genre``, the genre of a movie is the genre most often seen with it
    as a target. Raises ValueError when the value never appears as a target.
    """
    _check_model(model)
    (first_history, first_target), *others = model.pairs
    raw = data.raw_values()
    matches = raw[raw[first_target] == str(value)]
    if matches.empty:
        msg = (
            f"{value!r} never appears as {first_target!r} in {data.name or 'the data'}, so the values of the other "
            "histories cannot be completed; give them explicitly"
        )
        raise ValueError(msg)
    out = {first_history: str(value)}
    for history, target in others:
        out[history] = str(matches[target].value_counts().index[0])
    return out


def apply_edit(
    model: Any,
    data: CTRDataset,
    row: int,
    action: str,
    *,
    positions: Sequence[int] = (),
    k: int = 1,
    values: Mapping[str, str] | None = None,
    attribution: Any = None,
    sample: int | None = None,
) -> SequenceEdit:
    """Apply one action of :data:`SEQUENCE_ACTIONS` to data row ``row`` and predict before and after.

    ``drop`` takes ``positions``, ``move_to_recent`` one position in
    ``positions``, ``insert`` the ``values`` of the new behaviour, and
    ``drop_top_k`` ``k`` with a
    :class:`~workbench.explain.behaviours.BehaviourAttribution` that explains
    this row (``sample`` is the row's position in it; found from its rows when
    omitted).
    """
    _check_model(model)
    if action not in SEQUENCE_ACTIONS:
        msg = f"unknown sequence action {action!r}; available: {', '.join(SEQUENCE_ACTIONS)}"
        raise ValueError(msg)
    if not 0 <= int(row) < len(data):
        msg = f"row {row} is outside the data (0..{len(data) - 1})"
        raise IndexError(msg)
    inputs = data.tensors(np.asarray([int(row)]))
    if action == "drop":
        if not positions:
            msg = "drop: choose at least one position"
            raise ValueError(msg)
        edited = drop_behaviours(model, inputs, positions)
        description = f"drop position(s) {', '.join(map(str, positions))}"
    elif action == "drop_top_k":
        if attribution is None:
            msg = "drop_top_k needs the per-behaviour attribution of this row (explain_behaviours)"
            raise ValueError(msg)
        if k < 1:
            msg = f"drop_top_k: k must be >= 1; got {k}"
            raise ValueError(msg)
        if sample is None:
            found = np.flatnonzero(np.asarray(attribution.rows) == int(row))
            if not found.size:
                msg = f"drop_top_k: row {row} is not among the explained rows"
                raise ValueError(msg)
            sample = int(found[0])
        top = attribution.top_positions(sample, k)
        if top.size == 0:
            msg = "drop_top_k: this sample's history is empty"
            raise ValueError(msg)
        edited = drop_behaviours(model, inputs, top.tolist())
        description = f"drop the {len(top)} most influential behaviour(s) (positions {', '.join(map(str, top))})"
    elif action == "insert":
        if not values:
            msg = "insert: give the new behaviour's values"
            raise ValueError(msg)
        edited = insert_behaviour(model, inputs, values)
        description = "insert " + " · ".join(str(values[h]) for h, _ in model.pairs) + " as the most recent"
    elif action == "move_to_recent":
        if len(positions) != 1:
            msg = "move_to_recent: choose exactly one position"
            raise ValueError(msg)
        edited = move_to_recent(model, inputs, positions[0])
        description = f"move position {positions[0]} to the most recent"
    else:
        edited = reverse_history(model, inputs)
        description = "reverse the order of the history"
    return SequenceEdit(
        action=action,
        description=description,
        items_before=item_labels(model, inputs),
        items_after=item_labels(model, edited),
        logit_before=float(forward_logits(model, inputs)[0]),
        logit_after=float(forward_logits(model, edited)[0]),
    )


def edits_table(edits: Sequence[SequenceEdit]) -> pd.DataFrame:
    """Return one line per edit: action, description, predictions before and after, their difference and the new history."""
    return pd.DataFrame([edit.as_row() for edit in edits])
