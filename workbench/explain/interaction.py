"""The pairwise interaction result: order-1 and order-2 values of one interaction index per sample."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

INTERACTION_INDICES: dict[str, str] = {
    "SII": "Shapley interaction index (Grabisch and Roubens); main effects are the Shapley values",
    "STII": "Shapley-Taylor interaction index of order 2; main effects are v({i}) - v(∅)",
    "FSII": "Faith-Shap interaction index of order 2; the order-2 additive fit closest to the game",
    "BII": "Banzhaf interaction index; main effects are the Banzhaf values",
}

EFFICIENT_INDICES = frozenset({"STII", "FSII"})
"""Indices whose main effects plus pairs (i < j) add up to ``prediction - base value``."""


@dataclass(frozen=True)
class Interaction:
    """Main effects and pair interactions of a set of samples under one interaction index.

    ``main_effects[s, i]`` is the index's order-1 value of player ``i`` for
    sample ``s`` and ``pairs[s, i, j]`` its order-2 value of the pair
    ``{i, j}``, both in the units of ``output_space`` (``"logit"``: log-odds).
    ``pairs`` is symmetric with a zero diagonal, so each pair's value appears
    twice; sums over pairs must use ``i < j`` only. Players are fields or
    named groups of fields (``parameters["players"]`` maps each group to its
    fields). For STII and FSII, the main effects plus the pairs ``i < j``
    add up to ``predictions - base_values``; SII and BII carry no such
    guarantee.
    """

    main_effects: np.ndarray
    pairs: np.ndarray
    base_values: np.ndarray
    predictions: np.ndarray
    player_names: tuple[str, ...]
    rows: np.ndarray
    index: str
    baseline: str
    output_space: str = "logit"
    parameters: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None
    raw_values: pd.DataFrame | None = None
    main_effect_errors: np.ndarray | None = None
    """Standard errors of ``main_effects`` for sampled estimators (same shape); None when exact."""
    pair_errors: np.ndarray | None = None
    """Standard errors of ``pairs`` for sampled estimators (same shape); None when exact."""

    def __post_init__(self) -> None:
        if self.main_effects.ndim != 2:
            msg = f"main_effects must have shape (n_samples, n_players); got {self.main_effects.shape}"
            raise ValueError(msg)
        n_samples, n_players = self.main_effects.shape
        if n_players != len(self.player_names):
            msg = f"main_effects have {n_players} columns but there are {len(self.player_names)} player names"
            raise ValueError(msg)
        if self.pairs.shape != (n_samples, n_players, n_players):
            msg = f"pairs must have shape ({n_samples}, {n_players}, {n_players}); got {self.pairs.shape}"
            raise ValueError(msg)
        for name in ("base_values", "predictions", "rows"):
            if getattr(self, name).shape != (n_samples,):
                msg = f"{name} must have shape ({n_samples},); got {getattr(self, name).shape}"
                raise ValueError(msg)
        if np.any(np.diagonal(self.pairs, axis1=1, axis2=2) != 0):
            msg = "pairs must have a zero diagonal; put order-1 values in main_effects"
            raise ValueError(msg)
        if not np.array_equal(self.pairs, np.swapaxes(self.pairs, 1, 2)):
            msg = "pairs must be symmetric: pairs[s, i, j] == pairs[s, j, i]"
            raise ValueError(msg)

    @property
    def n_samples(self) -> int:
        return int(self.main_effects.shape[0])

    @property
    def n_players(self) -> int:
        return int(self.main_effects.shape[1])

    @property
    def is_efficient(self) -> bool:
        """Whether the index guarantees that main effects plus pairs add up to the prediction."""
        return self.index in EFFICIENT_INDICES

    @property
    def completeness_gap(self) -> np.ndarray:
        """``|sum of main effects + sum over i < j of pairs - (prediction - base value)|`` per sample.

        About 0 for STII and FSII. For SII and BII the gap is a property of the
        index, not a numerical error.
        """
        upper = np.triu_indices(self.n_players, k=1)
        total = self.main_effects.sum(axis=1) + self.pairs[:, upper[0], upper[1]].sum(axis=1)
        return np.abs(total - (self.predictions - self.base_values))

    def position_of_row(self, row: int) -> int:
        """Return the position of data set row ``row`` in this result."""
        hits = np.flatnonzero(self.rows == row)
        if hits.size == 0:
            msg = f"row {row} is not among the {self.n_samples} explained rows"
            raise KeyError(msg)
        return int(hits[0])

    def to_frame(self) -> pd.DataFrame:
        """Long format: one line per (sample, player) and per (sample, pair ``i < j``).

        Columns are ``row``, ``player_i``, ``player_j``, ``order`` and
        ``value``, then ``index``, ``baseline`` and ``output_space``. A main
        effect is written as the line with ``player_i == player_j`` and order 1.
        """
        n_players = self.n_players
        names = np.asarray(self.player_names, dtype=object)
        upper_i, upper_j = np.triu_indices(n_players, k=1)
        n_pairs = upper_i.size
        per_sample = n_players + n_pairs

        first = np.concatenate([np.arange(n_players), upper_i])
        second = np.concatenate([np.arange(n_players), upper_j])
        values = np.concatenate([self.main_effects, self.pairs[:, upper_i, upper_j]], axis=1)
        frame = pd.DataFrame(
            {
                "row": np.repeat(self.rows, per_sample),
                "player_i": np.tile(names[first], self.n_samples),
                "player_j": np.tile(names[second], self.n_samples),
                "order": np.tile(np.r_[np.ones(n_players, dtype=np.int64), np.full(n_pairs, 2)], self.n_samples),
                "value": values.reshape(-1),
            }
        )
        frame["index"] = self.index
        frame["baseline"] = self.baseline
        frame["output_space"] = self.output_space
        return frame

    def mean_abs(self, *, include_main_effects: bool = False) -> pd.DataFrame:
        """Global pair importance: mean |pair value| over samples, a players × players frame.

        The diagonal is 0 unless ``include_main_effects`` is set, in which case
        it contains the mean |main effect| of each player.
        """
        matrix = np.abs(self.pairs).mean(axis=0)
        if include_main_effects:
            np.fill_diagonal(matrix, np.abs(self.main_effects).mean(axis=0))
        return pd.DataFrame(matrix, index=list(self.player_names), columns=list(self.player_names))

    def mean(self, *, include_main_effects: bool = False) -> pd.DataFrame:
        """Signed mean pair value over samples, a players × players frame (diagonal as in :meth:`mean_abs`)."""
        matrix = self.pairs.mean(axis=0)
        if include_main_effects:
            np.fill_diagonal(matrix, self.main_effects.mean(axis=0))
        return pd.DataFrame(matrix, index=list(self.player_names), columns=list(self.player_names))

    def describe(self) -> str:
        """Return one line naming index, baseline, output space and cost, for figure captions."""
        parts = [f"index: {self.index}", f"baseline: {self.baseline}", f"output: {self.output_space}"]
        if "n_coalitions" in self.parameters:
            parts.append(f"coalitions: {self.parameters['n_coalitions']}")
        return " · ".join(parts)
