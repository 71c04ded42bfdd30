"""A cheap screen for interacting field pairs, in the style of Archipelago's ArchDetect.

The discrete mixed difference of a pair ``{i, j}`` in a context ``C`` (the
players present besides the pair) is

    δ_ij(C) = v(C ∪ {i, j}) - v(C ∪ {i}) - v(C ∪ {j}) + v(C),

which is zero in every context when no term of the game involves both ``i``
and ``j``. ArchDetect measures it in two contexts, the two ends of the game:

* the baseline context ``C = ∅``, where only ``i`` and ``j`` are taken from
  the sample. ``δ_ij(∅)`` is the Möbius coefficient ``m({i, j})``.
* the input context ``C = N \\ {i, j}``, the sample with ``i`` and ``j``
  removed. ``δ_ij(N \\ {i, j})`` is the sum of ``m(T)`` over all ``T ⊇ {i, j}``.

Its score is ``(δ_ij(∅)² + δ_ij(N \\ {i, j})²) / 2``, each difference first
divided by the distances ``|x_i - x'_i| |x_j - x'_j|`` between input and
baseline (``Archipelago.archdetect`` and ``search_feature_sets`` in
mtsang/archipelago, ``src/explainer.py``). Players here are present or
absent, so each distance is 1, as in Archipelago's mode for binary masks.
The per-sample strength is the square root of that score, which keeps it in
output units and ranks the pairs of one sample in the same order.

A pair whose interaction shows only in intermediate contexts can be missed,
for example when its terms of order three and more cancel at the input end
and it has no pair term. The screen ranks candidates for
:func:`workbench.explain.sampling.permutation_sii` or for exact indices, and
does not replace them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.data import CTRDataset
from workbench.explain.exact import prepare_game
from workbench.explain.game import DEFAULT_CHUNK_SIZE, model_players
from workbench.zoo.base import CTRModel


@dataclass(frozen=True)
class PairScreen:
    """Mixed differences of every pair of players at both ends of the game, per sample.

    Order-2 arrays have shape (n_samples, n_players, n_players), are symmetric
    and have a zero diagonal. Order-1 arrays have shape (n_samples, n_players).
    Values are in the units of ``output_space`` (``"logit"``: log-odds).
    """

    baseline_context: np.ndarray
    """``v({i, j}) - v({i}) - v({j}) + v(∅)``."""
    input_context: np.ndarray
    """``v(N) - v(N \\ {i}) - v(N \\ {j}) + v(N \\ {i, j})``."""
    single_baseline_context: np.ndarray
    """``v({i}) - v(∅)``: what player ``i`` adds to the baseline."""
    single_input_context: np.ndarray
    """``v(N) - v(N \\ {i})``: what removing player ``i`` from the sample takes away (feature ablation)."""
    base_values: np.ndarray
    """``v(∅)`` per sample, shape (n_samples,)."""
    predictions: np.ndarray
    """``v(N)`` per sample, shape (n_samples,)."""
    player_names: tuple[str, ...]
    rows: np.ndarray
    baseline: str
    output_space: str = "logit"
    parameters: dict[str, Any] = field(default_factory=dict)
    labels: np.ndarray | None = None
    raw_values: pd.DataFrame | None = None

    @property
    def n_samples(self) -> int:
        return int(self.baseline_context.shape[0])

    @property
    def n_players(self) -> int:
        return int(self.baseline_context.shape[1])

    @property
    def strength(self) -> np.ndarray:
        """Root mean square of the two mixed differences, shape (n_samples, n_players, n_players)."""
        return np.sqrt(0.5 * (self.baseline_context**2 + self.input_context**2))

    def mean_strength(self) -> pd.DataFrame:
        """Global pair strength: the mean of :attr:`strength` over samples, a players × players frame."""
        names = list(self.player_names)
        return pd.DataFrame(self.strength.mean(axis=0), index=names, columns=names)

    def ranking(self) -> pd.DataFrame:
        """Return all ``P (P - 1) / 2`` pairs ranked by mean strength over samples, strongest first.

        Columns: ``player_i``, ``player_j``, ``strength`` (mean of
        :attr:`strength`), ``mean_abs_baseline_context`` and
        ``mean_abs_input_context`` (mean |δ| per context) and
        ``mean_baseline_context`` and ``mean_input_context`` (signed means). The
        index is the rank, from 1.
        """
        upper_i, upper_j = np.triu_indices(self.n_players, k=1)
        names = np.asarray(self.player_names, dtype=object)
        frame = pd.DataFrame(
            {
                "player_i": names[upper_i],
                "player_j": names[upper_j],
                "strength": self.strength[:, upper_i, upper_j].mean(axis=0),
                "mean_abs_baseline_context": np.abs(self.baseline_context[:, upper_i, upper_j]).mean(axis=0),
                "mean_abs_input_context": np.abs(self.input_context[:, upper_i, upper_j]).mean(axis=0),
                "mean_baseline_context": self.baseline_context[:, upper_i, upper_j].mean(axis=0),
                "mean_input_context": self.input_context[:, upper_i, upper_j].mean(axis=0),
            }
        )
        # A stable sort keeps ties in (i, j) order, so the ranking is reproducible.
        frame = frame.sort_values("strength", ascending=False, kind="stable").reset_index(drop=True)
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="rank")
        return frame


def screen_coalitions(n_players: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the coalitions the screen evaluates, and where the pairs sit among them.

    Returns
    -------
    coalitions : bool, shape (2 (1 + P + P (P - 1) / 2), P)
        ``∅``, the ``P`` singletons and the pairs ``{i, j}`` (``i < j``), then
        the complements of all of them in the same order.
    upper_i, upper_j : int arrays of shape (P (P - 1) / 2,), the pairs in the order used.
    """
    upper_i, upper_j = np.triu_indices(n_players, k=1)
    singles = np.eye(n_players, dtype=bool)
    pairs = singles[upper_i] | singles[upper_j]
    low_end = np.concatenate([np.zeros((1, n_players), dtype=bool), singles, pairs])
    return np.concatenate([low_end, ~low_end]), upper_i, upper_j


def pair_screen(
    model: CTRModel,
    data: CTRDataset | Mapping[str, torch.Tensor],
    rows: np.ndarray | Sequence[int] | None = None,
    *,
    baseline: str = "zero",
    players: Mapping[str, Sequence[str]] | None = None,
    output_space: str = "logit",
    background: CTRDataset | Mapping[str, torch.Tensor] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[float], None] | None = None,
) -> PairScreen:
    """Measure every pair's mixed difference at the baseline and input contexts, for each sample.

    Parameters
    ----------
    model : CTRModel
        Runs in eval mode, and its previous mode is restored afterwards.
    data : CTRDataset or dict of str to Tensor
        The samples. ``rows`` selects rows (default: all).
    baseline, players, output_space, background, chunk_size
        As for :class:`~workbench.explain.game.EmbeddingGame`.
    progress : called with the finished fraction in [0, 1] after each forward pass.

    Returns
    -------
    PairScreen
        Call :meth:`PairScreen.ranking` for the global ranking of all pairs.

    Notes
    -----
    The cost is ``2 (1 + P + P (P - 1) / 2)`` coalitions per sample, the same
    for every sample, in one batched call: 1,562 for Criteo's 39 fields, where
    the exact indices would need ``2**39``. It is deterministic, so there are
    no standard errors.
    """
    _, groups, _ = model_players(model, players)
    game, rows, labels, raw_values = prepare_game(
        model,
        data,
        rows,
        baseline=baseline,
        players=players,
        output_space=output_space,
        chunk_size=chunk_size,
        background=background,
    )
    n_players = game.n_players
    coalitions, upper_i, upper_j = screen_coalitions(n_players)
    values = game.values(coalitions, progress=progress)
    n_low_end = coalitions.shape[0] // 2
    low_end, high_end = values[:, :n_low_end], values[:, n_low_end:]

    # Column 0 is ∅ (or N), columns 1 .. P the singletons (or N minus one player), then the pairs.
    def mixed_differences(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        empty, singles, pairs = table[:, 0], table[:, 1 : n_players + 1], table[:, n_players + 1 :]
        delta = np.zeros((game.n_samples, n_players, n_players))
        upper = pairs - singles[:, upper_i] - singles[:, upper_j] + empty[:, None]
        delta[:, upper_i, upper_j] = upper
        delta[:, upper_j, upper_i] = upper
        return delta, singles - empty[:, None]

    baseline_context, single_low = mixed_differences(low_end)
    # On the complements, "∅" is N, a "singleton" is N \ {i} and a "pair" is N \ {i, j}, so the same
    # formula gives v(N \ {i,j}) - v(N \ {i}) - v(N \ {j}) + v(N), the input-context difference.
    input_context, single_high = mixed_differences(high_end)

    parameters: dict[str, Any] = {
        "n_players": n_players,
        "coalitions_per_sample": int(coalitions.shape[0]),
        "model_evaluations": game.n_model_evaluations,
        "n_background": game.n_background,
        "chunk_size": chunk_size,
        "contexts": ["baseline (∅)", "input (N minus the pair)"],
    }
    if players is not None:
        parameters["players"] = {name: list(fields) for name, fields in groups.items()}
    return PairScreen(
        baseline_context=baseline_context,
        input_context=input_context,
        single_baseline_context=single_low,
        # single_high contains v(N \ {i}) - v(N), the negative of feature ablation.
        single_input_context=-single_high,
        base_values=low_end[:, 0].copy(),
        predictions=high_end[:, 0].copy(),
        player_names=game.player_names,
        rows=rows,
        baseline=baseline,
        output_space=output_space,
        parameters=parameters,
        labels=labels,
        raw_values=raw_values,
    )
