"""Per-behaviour attribution: which past behaviours of a history drove a sequence model's prediction.

The players are the behaviours present in a sample's history and the rest of
the sample. A behaviour is one position, made of the slots of every paired
history at that position. The rest is all other fields as one player
(``rest="grouped"``) or one player per field (``rest="fields"``). An absent behaviour leaves the history,
because sequence models mask zero behaviour slots out (see
``workbench.zoo.sequence``); absent fields take the chosen baseline.

Empty positions are zero whether their player is present or not, so they are
null players. They are folded into the first player of the rest, which keeps
the number of players, and the cost of exact values, down to the behaviours a
sample really has. Samples with the same set of present positions share one
game.

The result compares the attribution of each behaviour with the model's own
target attention, by Spearman rank correlation over the present behaviours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from workbench.data import CTRDataset
from workbench.explain.exact import exact_indices
from workbench.explain.game import DEFAULT_CHUNK_SIZE
from workbench.explain.integrated_gradients import DEFAULT_N_STEPS, integrated_gradients
from workbench.explain.sampling import DEFAULT_BUDGET, permutation_shapley
from workbench.probes import capture_probes, model_probes
from workbench.schema import PAD_INDEX

BEHAVIOUR_METHODS = {
    "auto": "exact Shapley values when a sample has at most max_exact_players players, else permutation sampling",
    "exact_shapley": "exact Shapley values from all coalitions of the present behaviours and the rest",
    "permutation_shapley": "Shapley values estimated by antithetic permutation sampling",
    "integrated_gradients": "Integrated Gradients summed over each behaviour's slots (one pass for all samples)",
}
REST_MODES = ("grouped", "fields")
REST_PLAYER = "other fields"
DEFAULT_MAX_EXACT_PLAYERS = 14
"""Largest number of players explained exactly by ``method="auto"``: 16,384 coalitions per sample."""


@dataclass
class BehaviourAttribution:
    """Attributions of each sample's behaviours and of the rest of its fields.

    ``values``, ``present`` and ``items`` have shape ``(n_samples, max_length)``:
    position ``l`` of the history (0 = oldest kept, most recent last).
    ``values`` is 0 at empty positions. ``rest_values`` has one column per
    player of the rest (``rest_names``). Per sample, ``values.sum() +
    rest_values.sum()`` equals ``predictions - base_values`` for the Shapley
    methods; IG's gap is in :attr:`completeness_gap`.
    """

    values: np.ndarray
    present: np.ndarray
    items: np.ndarray
    rest_values: np.ndarray
    rest_names: tuple[str, ...]
    base_values: np.ndarray
    predictions: np.ndarray
    rows: np.ndarray
    method: str
    baseline: str
    output_space: str
    histories: tuple[str, ...]
    attention: np.ndarray | None = None
    """The model's target attention weight of each position, shape like ``values``; None without such a probe."""
    standard_errors: np.ndarray | None = None
    """Standard errors of ``values`` for sampled estimates; None for exact values and IG."""
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

    @property
    def completeness_gap(self) -> np.ndarray:
        """``|sum of all values - (prediction - base value)|`` per sample."""
        total = self.values.sum(axis=1) + self.rest_values.sum(axis=1)
        return np.abs(total - (self.predictions - self.base_values))

    def _position(self, sample: int) -> int:
        if not 0 <= sample < self.n_samples:
            msg = f"sample {sample} is outside the {self.n_samples} explained samples"
            raise IndexError(msg)
        return sample

    def for_sample(self, sample: int) -> pd.DataFrame:
        """Return one line per present behaviour of a sample, most influential first.

        Columns: ``position``, ``item``, ``attribution``, ``attention`` (when the
        model has target attention) and ``rank`` (1 = largest attribution).
        """
        sample = self._position(sample)
        positions = np.flatnonzero(self.present[sample])
        frame = pd.DataFrame(
            {
                "position": positions,
                "item": self.items[sample, positions],
                "attribution": self.values[sample, positions],
            }
        )
        if self.attention is not None:
            frame["attention"] = self.attention[sample, positions]
        frame = frame.sort_values("attribution", ascending=False, kind="stable").reset_index(drop=True)
        frame["rank"] = np.arange(1, len(frame) + 1)
        return frame

    def top_positions(self, sample: int, k: int) -> np.ndarray:
        """Positions of the ``k`` behaviours with the largest attribution (fewer when the history is shorter)."""
        if k < 0:
            msg = f"k must be >= 0; got {k}"
            raise ValueError(msg)
        return self.for_sample(sample)["position"].to_numpy()[:k]

    def attention_agreement(self) -> np.ndarray:
        """Compute the Spearman correlation of |attention| with |attribution| over each sample's present behaviours.

        Both sides are absolute values: DIN's unnormalised weights can be
        negative, and a large negative weight still makes a behaviour matter.
        NaN where the model has no target attention, a sample has fewer than
        three behaviours, or either side is constant over them.
        """
        out = np.full(self.n_samples, np.nan)
        if self.attention is None:
            return out
        for sample in range(self.n_samples):
            positions = np.flatnonzero(self.present[sample])
            attention = np.abs(self.attention[sample, positions])
            strength = np.abs(self.values[sample, positions])
            if len(positions) < 3 or np.ptp(attention) == 0 or np.ptp(strength) == 0:
                continue
            out[sample] = spearmanr(attention, strength).statistic
        return out

    def to_frame(self) -> pd.DataFrame:
        """Return a long table: one line per (sample, present behaviour), with the row and the prediction.

        ``rest_attribution`` is the sample's total for the other fields, so the
        attributions of a row plus it add up to ``prediction - base_value``.
        """
        samples, positions = np.nonzero(self.present)
        frame = pd.DataFrame(
            {
                "row": self.rows[samples],
                "position": positions,
                "item": self.items[samples, positions],
                "attribution": self.values[samples, positions],
                "rest_attribution": self.rest_values.sum(axis=1)[samples],
                "prediction": self.predictions[samples],
                "base_value": self.base_values[samples],
                "output_space": self.output_space,
            }
        )
        if self.standard_errors is not None:
            frame["standard_error"] = self.standard_errors[samples, positions]
        if self.attention is not None:
            frame["attention"] = self.attention[samples, positions]
        return frame


def _sequence_model(model: Any) -> None:
    if not hasattr(model, "behaviour_players"):
        architecture = getattr(model, "architecture", type(model).__name__)
        msg = (
            f"{architecture} does not read behaviour histories position by position; per-behaviour attribution "
            "needs a sequence model (din, dien, qin)"
        )
        raise ValueError(msg)


def behaviour_labels(model: Any, inputs: Mapping[str, torch.Tensor]) -> np.ndarray:
    """Raw values of every history position, ``"item · genre"`` over paired histories; ``""`` when empty.

    Returns an object array of shape ``(n_samples, max_length)``.
    """
    parts = []
    for history, _ in model.pairs:
        f = model.schema[history]
        ids = np.asarray(inputs[history])
        decoded = np.asarray(
            [["" if i == PAD_INDEX else value for i, value in zip(row, f.vocabulary.decode(row), strict=True)] for row in ids],
            dtype=object,
        ).reshape(ids.shape)
        parts.append(decoded)
    labels = parts[0]
    for part in parts[1:]:
        labels = np.where((labels != "") & (part != ""), labels + " · " + part, labels + part)
    return labels


def _players(model: Any, positions: np.ndarray, rest: str) -> dict[str, list[str]]:
    """Build the players of one game: the present positions, then the rest (which also contains the empty positions' slots)."""
    behaviour = model.behaviour_players()
    names = list(behaviour)
    players: dict[str, list[str]] = {names[p]: list(behaviour[names[p]]) for p in positions}
    histories = {history for history, _ in model.pairs}
    fields = [name for name in model.schema.field_names if name not in histories]
    empty = [slot for p in range(model.history_length) if p not in set(positions) for slot in behaviour[names[p]]]
    if rest == "grouped":
        players[REST_PLAYER] = fields + empty
    else:
        players.update({name: [name] for name in fields})
        players[fields[0]] = players[fields[0]] + empty
    return players


def explain_behaviours(
    model: Any,
    data: CTRDataset,
    rows: np.ndarray | Sequence[int] | None = None,
    *,
    method: str = "auto",
    rest: str = "grouped",
    baseline: str = "zero",
    output_space: str = "logit",
    max_exact_players: int = DEFAULT_MAX_EXACT_PLAYERS,
    budget: int = DEFAULT_BUDGET,
    n_steps: int = DEFAULT_N_STEPS,
    random_state: int | None = 0,
    background: CTRDataset | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[float], None] | None = None,
) -> BehaviourAttribution:
    """Attribute sequence-model predictions to single past behaviours and to the rest of the fields.

    Parameters
    ----------
    model : a sequence model (``din``, ``dien``, ``qin``).
    data : the encoded data set; ``rows`` selects samples (default: all).
    method : one of :data:`BEHAVIOUR_METHODS`.
    rest : ``"grouped"`` (all other fields as one player) or ``"fields"`` (one player per field).
    baseline : what absent fields take, as for ``workbench.explain.game.EmbeddingGame``; absent
        behaviours always leave the history. Integrated Gradients takes ``"zero"`` or ``"oov"``.
    output_space : ``"logit"`` or ``"probability"``; Integrated Gradients explains logits only.
    max_exact_players : with ``"auto"``, games with more players are sampled.
    budget : coalition evaluations per sample for permutation sampling.
    n_steps : integration points of Integrated Gradients.
    random_state : seed of permutation sampling, so results are reproducible.
    background : background rows for the ``"mean"`` and ``"expectation"`` baselines.
    chunk_size : rows per forward pass.
    progress : called with the finished fraction in [0, 1].

    Returns
    -------
    BehaviourAttribution
    """
    _sequence_model(model)
    if method not in BEHAVIOUR_METHODS:
        msg = f"unknown method {method!r} for per-behaviour attribution; available: {', '.join(BEHAVIOUR_METHODS)}"
        raise ValueError(msg)
    if rest not in REST_MODES:
        msg = f"rest must be one of {', '.join(REST_MODES)}; got {rest!r}"
        raise ValueError(msg)
    if method == "integrated_gradients" and output_space != "logit":
        msg = "Integrated Gradients explains logits only; use output_space='logit' or a Shapley method"
        raise ValueError(msg)
    rows = np.arange(len(data)) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        msg = "no rows to explain; choose at least one sample"
        raise ValueError(msg)
    if rows.min() < 0 or rows.max() >= len(data):
        msg = f"rows must lie in 0..{len(data) - 1}; got {rows.min()}..{rows.max()}"
        raise IndexError(msg)

    inputs = data.tensors(rows)
    with torch.no_grad():
        present = model.split_behaviours(model.field_embedding(inputs))[2].cpu().numpy()
    length = model.history_length
    values = np.zeros((rows.size, length))
    errors = np.full((rows.size, length), np.nan) if method in ("auto", "permutation_shapley") else None
    base_values = np.zeros(rows.size)
    predictions = np.zeros(rows.size)
    histories = {history for history, _ in model.pairs}
    fields = [name for name in model.schema.field_names if name not in histories]
    rest_names = (REST_PLAYER,) if rest == "grouped" else tuple(fields)
    rest_values = np.zeros((rows.size, len(rest_names)))
    methods_used: set[str] = set()

    if method == "integrated_gradients":
        players = _players(model, np.arange(length), rest)
        result = integrated_gradients(model, data, rows, baseline=baseline, n_steps=n_steps, players=players)
        names = list(result.field_names)
        values[:] = result.values[:, :length] * present
        rest_values[:] = result.values[:, [names.index(name) for name in rest_names]]
        base_values[:], predictions[:] = result.base_values, result.predictions
        methods_used.add(method)
    else:
        patterns, pattern_of = np.unique(present, axis=0, return_inverse=True)
        pattern_of = pattern_of.reshape(-1)
        for number, pattern in enumerate(patterns):
            samples = np.flatnonzero(pattern_of == number)
            positions = np.flatnonzero(pattern)
            players = _players(model, positions, rest)
            chosen = method
            if method == "auto":
                chosen = "exact_shapley" if len(players) <= max_exact_players else "permutation_shapley"
            elif method == "exact_shapley" and len(players) > max_exact_players:
                shown = ", ".join(str(row) for row in rows[samples][:5]) + (", ..." if len(samples) > 5 else "")
                msg = (
                    f"exact per-behaviour values of row(s) {shown} need 2**{len(players)} coalitions each "
                    f"({len(positions)} behaviours and {len(players) - len(positions)} other player(s)), above "
                    f"max_exact_players={max_exact_players}; use the method auto (exact where it fits, sampled "
                    "elsewhere) or permutation_shapley"
                    + (", or group the other fields (rest grouped)" if rest == "fields" else "")
                )
                raise ValueError(msg)
            game = {
                "baseline": baseline,
                "players": players,
                "output_space": output_space,
                "background": background,
                "chunk_size": chunk_size,
            }
            selected = {name: tensor[torch.from_numpy(samples)] for name, tensor in inputs.items()}
            if chosen == "exact_shapley":
                result = exact_indices(
                    model, selected, max_players=max_exact_players, **game
                ).shapley
            else:
                result = permutation_shapley(model, selected, budget=budget, random_state=random_state, **game)
            methods_used.add(chosen)
            names = list(result.field_names)
            columns = [names.index(name) for name in list(players)[: len(positions)]]
            values[np.ix_(samples, positions)] = result.values[:, columns]
            if errors is not None and result.standard_errors is not None:
                errors[np.ix_(samples, positions)] = result.standard_errors[:, columns]
            elif errors is not None:
                errors[np.ix_(samples, positions)] = 0.0
            rest_values[samples] = result.values[:, [names.index(name) for name in rest_names]]
            base_values[samples], predictions[samples] = result.base_values, result.predictions
            if progress is not None:
                progress((number + 1) / len(patterns))

    attention = None
    if any(probe.name == "target_attention" for probe in model_probes(model)):
        attention = capture_probes(model, inputs, names=["target_attention"], chunk_size=chunk_size)[
            "target_attention"
        ].values.astype(np.float64)
    return BehaviourAttribution(
        values=values,
        present=present,
        items=behaviour_labels(model, inputs),
        rest_values=rest_values,
        rest_names=rest_names,
        base_values=base_values,
        predictions=predictions,
        rows=rows,
        method=method if method != "auto" else "auto: " + ", ".join(sorted(methods_used)),
        baseline=baseline,
        output_space=output_space,
        histories=tuple(history for history, _ in model.pairs),
        attention=attention,
        standard_errors=errors,
        parameters={"rest": rest, "max_exact_players": max_exact_players, "budget": budget, "n_steps": n_steps},
    )
