"""Exact Shapley values and pairwise interaction indices from one evaluation of all coalitions.

For ``P`` players every one of the ``2**P`` coalitions is evaluated once per
sample, in bitmask order (coalition ``c`` contains player ``p`` exactly when
bit ``p`` of ``c`` is set). The Möbius transform ``m`` of the game,

    v(S) = Σ_{T ⊆ S} m(T),    m(T) = Σ_{S ⊆ T} (−1)^{|T|−|S|} v(S),

is computed in place in ``O(P · 2**P)`` per sample. Every index below is linear
in ``v`` and splits each coefficient ``m(T)`` among the players or pairs inside
``T`` with a weight that depends on ``t = |T|`` only:

==============  ===========================================  ==============================================
index           order 1 (player i)                           order 2 (pair {i, j})
==============  ===========================================  ==============================================
Shapley / SII   φ_i = Σ_{T ∋ i} m(T) / t                     SII_ij = Σ_{T ⊇ {i,j}} m(T) / (t − 1)
Banzhaf / BII   β_i = Σ_{T ∋ i} m(T) / 2^{t−1}               BII_ij = Σ_{T ⊇ {i,j}} m(T) / 2^{t−2}
STII (order 2)  m({i}) = v({i}) − v(∅)                       STII_ij = Σ_{T ⊇ {i,j}} m(T) / C(t, 2)
FSII (order 2)  Σ_{T ∋ i} m(T) · (−2 (t − 2)) / (t (t + 1))  FSII_ij = Σ_{T ⊇ {i,j}} m(T) · 6 / (t (t + 1))
==============  ===========================================  ==============================================

Shapley values and STII are efficient (their terms add up to ``v(N) − v(∅)``)
because their weights over the members of ``T`` sum to 1 for every ``T``. FSII
is efficient because ``t · (−2 (t − 2)) / (t (t + 1)) + C(t, 2) · 6 / (t (t + 1)) = 1``.
FSII of order 2 is the additive fit ``E`` of order ≤ 2 that minimises
``Σ_S μ(S) (v(S) − Σ_{T ⊆ S, |T| ≤ 2} E(T))²`` over the coalitions
``∅ ≠ S ≠ N`` with the Shapley kernel ``μ(S) = (P − 1) / (C(P, |S|) |S| (P − |S|))``,
subject to ``E(∅) = v(∅)`` and ``Σ_T E(T) = v(N)`` (Tsai, Yeh and Ravikumar,
"Faith-Shap", JMLR 2023). Its weights above are written in the Möbius basis.
``tests/test_exact.py`` checks them against a direct solve of that
least-squares problem.

The sums over supersets use the superset-sum transform, also in place and
``O(P · 2**P)`` per sample and index, so all five indices cost far less than
the ``2**P`` model evaluations they share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import comb

import numpy as np
import pandas as pd
import torch

from workbench.data import CTRDataset
from workbench.explain.game import DEFAULT_CHUNK_SIZE, EmbeddingGame, all_coalitions, model_players
from workbench.explain.interaction import Interaction
from workbench.explain.result import Attribution
from workbench.zoo.base import CTRModel

DEFAULT_MAX_PLAYERS = 16


class TooManyPlayersError(ValueError):
    """Raised when exact indices would need more coalitions than ``max_players`` allows.

    ``n_players`` and ``max_players`` let the CLI and the app name their own
    ways out (``--groups``, the field-groups box) instead of Python arguments.
    """

    def __init__(self, message: str, *, n_players: int, max_players: int) -> None:
        super().__init__(message)
        self.n_players = n_players
        self.max_players = max_players

VALUES_PER_BLOCK = 2**21
"""Maximum number of game values (float64) per block of samples, which bounds the memory of the index transforms."""


# --- index math on raw game values ------------------------------------------


def moebius_transform(values: np.ndarray) -> np.ndarray:
    """Return the Möbius transform ``m`` of games given as value tables.

    Parameters
    ----------
    values : array of shape (n_games, 2**n_players)
        ``values[g, c]`` is ``v(S)`` of game ``g`` for the coalition with bitmask ``c``.

    Returns
    -------
    ndarray of float64, shape (n_games, 2**n_players)
        ``m[g, c]`` with ``v(S) = Σ_{T ⊆ S} m(T)``; ``m(∅) = v(∅)``.
    """
    # C order, because the in-place passes below write through reshaped views.
    moebius = np.array(values, dtype=np.float64, order="C", copy=True)
    n_players = _n_players_of(moebius)
    n_games = moebius.shape[0]
    # Subtract, bit by bit, the entry of the same coalition without player p. After bit p,
    # entry c is the alternating sum over the subsets of c that differ from it in bits 0..p only.
    for p in range(n_players):
        view = moebius.reshape(n_games, -1, 2, 2**p)
        view[:, :, 1, :] -= view[:, :, 0, :]
    return moebius


def _superset_sums(weighted: np.ndarray, n_players: int) -> np.ndarray:
    """Replace each entry ``a(A)`` by ``Σ_{T ⊇ A} a(T)``, in place; shape (n_games, 2**n_players)."""
    n_games = weighted.shape[0]
    for p in range(n_players):
        view = weighted.reshape(n_games, -1, 2, 2**p)
        view[:, :, 0, :] += view[:, :, 1, :]
    return weighted


def _n_players_of(values: np.ndarray) -> int:
    if values.ndim != 2:
        msg = f"game values must have shape (n_games, 2**n_players); got {values.shape}"
        raise ValueError(msg)
    n_coalitions = values.shape[1]
    n_players = n_coalitions.bit_length() - 1
    if n_coalitions < 1 or 2**n_players != n_coalitions:
        msg = f"game values need 2**n_players columns (one per coalition); got {n_coalitions}"
        raise ValueError(msg)
    return n_players


@dataclass(frozen=True)
class IndexValues:
    """Exact indices of a batch of games, as plain arrays in the units of the game values.

    Order-1 arrays have shape (n_games, n_players); order-2 arrays have shape
    (n_games, n_players, n_players), symmetric with a zero diagonal.
    """

    empty_values: np.ndarray
    """v(∅) per game, shape (n_games,)."""
    grand_values: np.ndarray
    """v(N) per game, shape (n_games,)."""
    shapley: np.ndarray
    banzhaf: np.ndarray
    sii: np.ndarray
    bii: np.ndarray
    stii_main: np.ndarray
    stii: np.ndarray
    fsii_main: np.ndarray
    fsii: np.ndarray


def _size_weights(n_players: int, weight: Callable[[int], float]) -> np.ndarray:
    """Return ``weight(t)`` for t = 0..n_players, with 0 where the formula does not apply."""
    return np.array([weight(t) for t in range(n_players + 1)], dtype=np.float64)


def indices_from_values(values: np.ndarray) -> IndexValues:
    """Compute Shapley, Banzhaf, SII, BII, STII and FSII from full value tables.

    Parameters
    ----------
    values : array of shape (n_games, 2**n_players)
        ``values[g, c]`` is ``v(S)`` of game ``g`` for the coalition with
        bitmask ``c`` (bit ``p`` set: player ``p`` present), for example from
        :meth:`EmbeddingGame.values` on :func:`all_coalitions`.

    Returns
    -------
    IndexValues
        The formulas are in this module's docstring. The cost is one Möbius
        transform and seven superset-sum transforms, each ``O(n_players · 2**n_players)`` per game.
    """
    moebius = moebius_transform(values)
    n_players = _n_players_of(moebius)
    codes = np.arange(2**n_players)
    sizes = np.array([int(c).bit_count() for c in codes])
    singletons = 1 << np.arange(n_players)
    # pair_codes[i, j] is the bitmask of {i, j}. The diagonal reads a singleton and is set to 0 below.
    pair_codes = singletons[:, None] | singletons[None, :]
    diagonal = np.arange(n_players)

    def order_one(weight: Callable[[int], float]) -> np.ndarray:
        weighted = moebius * _size_weights(n_players, weight)[sizes]
        return _superset_sums(weighted, n_players)[:, singletons]

    def order_two(weight: Callable[[int], float]) -> np.ndarray:
        weighted = moebius * _size_weights(n_players, weight)[sizes]
        pairs = _superset_sums(weighted, n_players)[:, pair_codes]
        pairs[:, diagonal, diagonal] = 0.0
        return pairs

    # Each lambda gives the share of m(T) that one player or pair in T receives, for t = |T|.
    return IndexValues(
        empty_values=moebius[:, 0].copy(),
        grand_values=np.asarray(values, dtype=np.float64)[:, -1].copy(),
        shapley=order_one(lambda t: 1.0 / t if t >= 1 else 0.0),
        banzhaf=order_one(lambda t: 0.5 ** (t - 1) if t >= 1 else 0.0),
        sii=order_two(lambda t: 1.0 / (t - 1) if t >= 2 else 0.0),
        bii=order_two(lambda t: 0.5 ** (t - 2) if t >= 2 else 0.0),
        stii_main=moebius[:, singletons],
        stii=order_two(lambda t: 1.0 / comb(t, 2) if t >= 2 else 0.0),
        fsii_main=order_one(lambda t: -2.0 * (t - 2) / (t * (t + 1)) if t >= 1 else 0.0),
        fsii=order_two(lambda t: 6.0 / (t * (t + 1)) if t >= 2 else 0.0),
    )


# --- the model-facing entry point --------------------------------------------


@dataclass(frozen=True)
class ExactResult:
    """Every exact index of one evaluation of all coalitions.

    ``shapley`` is an :class:`Attribution` (method ``"exact_shapley"``). The
    interaction results carry each index's order-1 values as main effects:
    Shapley values for ``sii``, Banzhaf values for ``banzhaf`` (index
    ``"BII"``), ``v({i}) − v(∅)`` for ``stii`` and the FSII order-1 terms for
    ``fsii``. ``values`` contains the game values ``v(S)`` of shape
    (n_samples, 2**n_players) in bitmask order when ``keep_values`` was set.
    """

    shapley: Attribution
    banzhaf: Interaction
    sii: Interaction
    stii: Interaction
    fsii: Interaction
    values: np.ndarray | None = None

    @property
    def interactions(self) -> dict[str, Interaction]:
        """The interaction results by index name (``SII``, ``STII``, ``FSII``, ``BII``)."""
        return {result.index: result for result in (self.sii, self.stii, self.fsii, self.banzhaf)}


def exact_indices(
    model: CTRModel,
    data: CTRDataset | Mapping[str, torch.Tensor],
    rows: np.ndarray | Sequence[int] | None = None,
    *,
    baseline: str = "zero",
    players: Mapping[str, Sequence[str]] | None = None,
    output_space: str = "logit",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    background: CTRDataset | Mapping[str, torch.Tensor] | None = None,
    max_players: int = DEFAULT_MAX_PLAYERS,
    keep_values: bool = False,
    use_structure: bool = True,
    deduplicate: bool = True,
    progress: Callable[[float], None] | None = None,
) -> ExactResult:
    """Compute exact Shapley, Banzhaf, SII, STII and FSII values of fields or field groups.

    Parameters
    ----------
    model : CTRModel
        Runs in eval mode; its previous mode is restored.
    data : CTRDataset or dict of str to Tensor
        The samples: an encoded data set, or a dict of model inputs.
    rows : array of int, optional
        Rows of ``data`` to explain (default: all); the results record them.
    baseline : str
        What replaces an absent field, one of ``workbench.explain.game.GAME_BASELINES``.
    players : mapping of str to list of str, optional
        Field groups that act as one player each; default one player per field.
    output_space : ``"logit"`` (log-odds, default) or ``"probability"``.
    chunk_size : int
        Rows per forward pass; caps memory, does not change the values.
    background : CTRDataset or dict of str to Tensor, optional
        Background rows (all of them) for the ``"mean"`` and ``"expectation"`` baselines.
    max_players : int
        Largest number of players allowed (default 16), because the cost doubles with each player.
    keep_values : bool
        Keep the game values (n_samples, 2**n_players) in :attr:`ExactResult.values`.
    use_structure, deduplicate : bool
        Speed-ups of :class:`~workbench.explain.game.EmbeddingGame`, both on
        by default: sum the first layers from per-field terms, and forward
        rows that several samples share only once. They change the values
        only by float32 rounding (about 1e-6 in logit units).
    progress : called with the finished fraction in [0, 1] after each forward pass.

    Returns
    -------
    ExactResult

    Notes
    -----
    The cost is at most ``n_samples * 2**n_players`` rows through
    ``model.logit_from_embeddings``, times ``K`` background rows for the
    ``"expectation"`` baseline; ten fields and 1,000 samples make 1,024,000 rows.
    Rows repeat when samples share field values (a coalition that keeps only
    ``weekday`` has at most 7 distinct rows), and repeated rows are forwarded
    once; ``parameters["model_evaluations"]`` counts the rows forwarded.
    """
    if isinstance(max_players, bool) or not isinstance(max_players, int) or max_players < 1:
        msg = f"max_players must be an integer >= 1; got {max_players!r}"
        raise ValueError(msg)
    player_names, groups, _ = model_players(model, players)
    n_players = len(player_names)
    if n_players > max_players:
        msg = (
            f"exact indices need all 2**{n_players} = {2**n_players:,} coalitions per sample for {n_players} "
            f"players, above max_players={max_players}; group fields into at most {max_players} groups with "
            "players={group: [fields]}, use a sampled method, or raise max_players if the cost is acceptable"
        )
        raise TooManyPlayersError(msg, n_players=n_players, max_players=max_players)

    game, rows, labels, raw_values = prepare_game(
        model,
        data,
        rows,
        baseline=baseline,
        players=players,
        output_space=output_space,
        chunk_size=chunk_size,
        background=background,
        use_structure=use_structure,
        deduplicate=deduplicate,
    )

    # Evaluate all coalitions in blocks of samples so the index transforms stay within VALUES_PER_BLOCK.
    coalitions = all_coalitions(n_players)
    n_samples = game.n_samples
    block = max(1, VALUES_PER_BLOCK // coalitions.shape[0])
    parts: list[IndexValues] = []
    kept_values: list[np.ndarray] = []
    for start in range(0, n_samples, block):
        stop = min(start + block, n_samples)
        on_block = _block_progress(progress, start / n_samples, stop / n_samples)
        values = game.values(coalitions, samples=slice(start, stop), progress=on_block)
        parts.append(indices_from_values(values))
        if keep_values:
            kept_values.append(values)

    def stacked(name: str) -> np.ndarray:
        return np.concatenate([getattr(part, name) for part in parts])

    parameters = {
        "n_players": n_players,
        "n_coalitions": int(coalitions.shape[0]),
        "model_evaluations": game.n_model_evaluations,
        "n_background": game.n_background,
        "chunk_size": chunk_size,
        "use_structure": use_structure,
        "deduplicate": deduplicate,
    }
    if players is not None:
        parameters["players"] = {name: list(fields) for name, fields in groups.items()}
    common = {
        "base_values": stacked("empty_values"),
        "predictions": stacked("grand_values"),
        "rows": rows,
        "baseline": baseline,
        "output_space": output_space,
        "labels": labels,
        "raw_values": raw_values,
    }

    def interaction(index: str, main: str, pairs: str) -> Interaction:
        return Interaction(
            main_effects=stacked(main),
            pairs=stacked(pairs),
            player_names=player_names,
            index=index,
            parameters=dict(parameters),
            **common,
        )

    return ExactResult(
        shapley=Attribution(
            values=stacked("shapley"),
            field_names=player_names,
            method="exact_shapley",
            parameters=dict(parameters),
            **common,
        ),
        banzhaf=interaction("BII", "banzhaf", "bii"),
        sii=interaction("SII", "shapley", "sii"),
        stii=interaction("STII", "stii_main", "stii"),
        fsii=interaction("FSII", "fsii_main", "fsii"),
        values=np.concatenate(kept_values) if keep_values else None,
    )


def prepare_game(
    model: CTRModel,
    data: CTRDataset | Mapping[str, torch.Tensor],
    rows: np.ndarray | Sequence[int] | None,
    *,
    baseline: str,
    players: Mapping[str, Sequence[str]] | None,
    output_space: str,
    chunk_size: int,
    background: CTRDataset | Mapping[str, torch.Tensor] | None,
    use_structure: bool = False,
    deduplicate: bool = False,
) -> tuple[EmbeddingGame, np.ndarray, np.ndarray | None, pd.DataFrame | None]:
    """Select the samples and build their coalition game; return it with rows, labels and raw values.

    The exact, sampled and screening engines all start here, so one set of
    arguments always describes the same game. ``use_structure`` and
    ``deduplicate`` only choose how :meth:`EmbeddingGame.values` computes.
    """
    _, groups, _ = model_players(model, players)
    inputs, rows, labels, raw_values = _select_samples(data, rows, groups if players is not None else None)
    if isinstance(background, CTRDataset):
        background = background.tensors()
    game = EmbeddingGame(
        model,
        inputs,
        baseline=baseline,
        players=players,
        output_space=output_space,
        chunk_size=chunk_size,
        background=background,
        use_structure=use_structure,
        deduplicate=deduplicate,
    )
    return game, rows, labels, raw_values


def _block_progress(
    progress: Callable[[float], None] | None, low: float, high: float
) -> Callable[[float], None] | None:
    """Map a block's finished fraction in [0, 1] onto [low, high] of the whole run."""
    if progress is None:
        return None
    return lambda fraction: progress(low + fraction * (high - low))


def _select_samples(
    data: CTRDataset | Mapping[str, torch.Tensor],
    rows: np.ndarray | Sequence[int] | None,
    groups: dict[str, tuple[str, ...]] | None,
) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray | None, pd.DataFrame | None]:
    """Return the inputs, row numbers, labels and per-player raw values of the selected rows."""
    if isinstance(data, CTRDataset):
        n_rows = len(data)
    else:
        sizes = {int(torch.as_tensor(x).shape[0]) for x in data.values()}
        if len(sizes) != 1:
            msg = f"the input tensors have different numbers of rows: {sorted(sizes)}"
            raise ValueError(msg)
        n_rows = sizes.pop()
    rows = np.arange(n_rows) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    if rows.size == 0:
        msg = "no rows to explain"
        raise ValueError(msg)
    if rows.min() < 0 or rows.max() >= n_rows:
        msg = f"rows must lie in 0..{n_rows - 1}; got {rows.min()}..{rows.max()}"
        raise IndexError(msg)

    if not isinstance(data, CTRDataset):
        selection = torch.from_numpy(rows)
        return {name: torch.as_tensor(x)[selection] for name, x in data.items()}, rows, None, None

    raw = data.raw_values(rows).reset_index(drop=True)
    if groups is not None:
        raw = _group_raw_values(raw, groups)
    return data.tensors(rows), rows, data.labels[rows].astype(np.float64), raw


def _group_raw_values(raw: pd.DataFrame, groups: dict[str, tuple[str, ...]]) -> pd.DataFrame:
    """Return one display column per group: the value of a one-field group, ``field=value, ...`` otherwise."""
    columns = {}
    for name, members in groups.items():
        # Slots of a history (``field[position]``) have no raw column; the group shows its fields only.
        fields = [member for member in members if member in raw.columns]
        if not fields:
            columns[name] = pd.Series("", index=raw.index)
        elif len(fields) == 1:
            columns[name] = raw[fields[0]].astype(str)
        else:
            parts = [field + "=" + raw[field].astype(str) for field in fields]
            joined = parts[0]
            for part in parts[1:]:
                joined = joined + ", " + part
            columns[name] = joined
    return pd.DataFrame(columns, index=raw.index)
