"""Faithfulness of explainers: deletion and insertion curves, their areas, and infidelity.

An explainer ranks the players (fields, or field groups) of a sample by its
scores. The curves replay that ranking on the coalition game of the Shapley
explainers (:class:`~workbench.explain.game.EmbeddingGame`), so an absent
player takes the game's baseline (zero, PAD, OOV, mean embedding or the
expectation over background rows), exactly as in the Shapley computations.

* **Deletion** starts from all ``P`` players present and removes them in order
  of decreasing score. Point ``k`` is ``v(N minus the top k players)``, from
  ``v(N)`` (the prediction) at ``k = 0`` to ``v(∅)`` (the base value) at ``k = P``.
  A faithful ranking removes the players that raise the output first, so the
  curve drops early and its area is small: **lower deletion AUC is better**.
* **Insertion** starts from all players absent and adds them in the same order.
  Point ``k`` is ``v(top k players)``, from ``v(∅)`` to ``v(N)``. A faithful
  ranking makes the curve rise early: **higher insertion AUC is better**.

Petsiuk, Das and Saenko ("RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018) defined both curves for image pixels. Here the
units of the curve are those of the game (logit or probability). Equal scores
are broken by player order: a stable sort keeps the player that comes first in
the game's player order first. The area under a curve is the trapezoid rule
over ``x = k / P`` in ``[0, 1]`` (:func:`curve_auc`), and
:func:`relative_auc` puts areas of samples with different spans on one scale.

**Infidelity** (Yeh, Hsieh, Suggala, Inouye and Ravikumar, "On the (In)fidelity
and Sensitivity of Explanations", NeurIPS 2019) is the expected squared error

    INFD(φ, x) = E_I [ (Σ_p I_p φ_p − (v(N) − v(N minus D_I)))² ],

where ``I`` is a random 0/1 vector over the players, ``D_I`` is the set of
players with ``I_p = 1`` (each dropped independently with ``drop_probability``),
and a dropped player takes the game's baseline. Lower is better, and 0 means
that the attribution predicts the effect of dropping every such set exactly.
An additive game (logistic regression in logit space with a zero baseline)
gives 0 for its exact Shapley values. :func:`infidelity` computes it with
``captum.metrics.infidelity``, which averages ``n_perturbations`` draws per
sample.

:func:`compare_explainers` runs everything for several explainers and for
random rankings on the same samples and returns a :class:`FaithfulnessResult`.
:func:`attention_field_scores` turns a model's own attention (AutoInt+) into
per-field scores that can be compared like any other explainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.metrics import infidelity as captum_infidelity

from workbench.data import CTRDataset
from workbench.explain.exact import _select_samples, prepare_game
from workbench.explain.game import DEFAULT_CHUNK_SIZE, EmbeddingGame, model_players
from workbench.explain.result import Attribution
from workbench.probes import capture_probes, model_probes
from workbench.zoo.base import CTRModel

Data = CTRDataset | Mapping[str, torch.Tensor]
"""Samples: an encoded data set, or a dict of model inputs (field name to tensor)."""

Players = Mapping[str, Sequence[str]] | None
"""``None`` for one player per field, or a mapping from group name to the fields of that group."""

Scores = Attribution | np.ndarray
"""An explainer's scores: an :class:`Attribution`, or an array of shape (n_samples, n_players)."""

ABLATION_MODES: dict[str, str] = {
    "deletion": "remove players from the full sample in order of decreasing score; lower AUC is more faithful",
    "insertion": "add players to the baseline in order of decreasing score; higher AUC is more faithful",
}
RANDOM_NAME = "random"
"""Name of the random-order reference in a :class:`FaithfulnessResult`; no explainer may use it."""

DEFAULT_N_RANDOM = 10
DEFAULT_N_PERTURBATIONS = 100
DEFAULT_DROP_PROBABILITY = 0.5
"""With 0.5 every set of dropped players is equally likely."""

PAIR_ATTENTION_ARCHITECTURES = ("autoint+",)
"""Architectures whose probes include a field x field attention map (kind ``"attention"``)."""


# --- areas under curves ----------------------------------------------------------


def curve_auc(curves: np.ndarray) -> np.ndarray:
    """Return the area under each curve by the trapezoid rule over ``x = k / P`` in [0, 1].

    Parameters
    ----------
    curves : ndarray of shape (n_samples, P + 1)
        Curve values at ``k = 0..P``, as :func:`ablation_curves` returns them.

    Returns
    -------
    ndarray of float64, shape (n_samples,)
        ``(Σ_k c_k − (c_0 + c_P) / 2) / P``, in the units of the curves.
    """
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[1] < 2:
        msg = f"curves must have shape (n_samples, n_players + 1) with at least one player; got {curves.shape}"
        raise ValueError(msg)
    n_players = curves.shape[1] - 1
    return (curves.sum(axis=1) - (curves[:, 0] + curves[:, -1]) / 2) / n_players


def relative_auc(areas: np.ndarray, full_values: np.ndarray, empty_values: np.ndarray) -> np.ndarray:
    """Express each sample's area above its base value as a share of the cohort's mean span.

    Returns ``(AUC_i − v_i(∅)) / mean_j |v_j(N) − v_j(∅)|`` for each sample ``i``.

    The per-sample ratio ``(AUC_i − v_i(∅)) / (v_i(N) − v_i(∅))`` reads well
    (0: the curve is at the base value from the first step, 1: it stays at
    the prediction until the last step), but it is unstable. Samples whose
    prediction is close to their base value divide by a number near 0, and
    one such sample can dominate a mean. This summary divides by the mean
    absolute span of the samples instead, like the completeness gap share of
    :class:`~workbench.explain.result.Attribution`, so each sample weighs in
    proportion to how much its prediction differs from the base value.

    When every sample has the same positive span, it equals the per-sample
    ratio. For two explainers on the same samples it is the same affine map
    of the raw AUC, so it keeps their ranking and scales their paired
    differences by one constant. Neither form is bounded by [0, 1]. A
    deletion curve that removes the players that raise the output first can
    pass below the base value before it returns there, and then the value is negative.

    Parameters
    ----------
    areas, full_values, empty_values : ndarray of shape (n_samples,)
        Per-sample AUCs, ``v(N)`` and ``v(∅)``, all in the same units.

    Returns
    -------
    ndarray of float64, shape (n_samples,)
        All NaN when every sample has ``v(N) == v(∅)``, because there is no span to compare with.
    """
    areas = np.asarray(areas, dtype=np.float64)
    full_values = np.asarray(full_values, dtype=np.float64)
    empty_values = np.asarray(empty_values, dtype=np.float64)
    if not (areas.shape == full_values.shape == empty_values.shape) or areas.ndim != 1:
        msg = (
            "areas, full_values and empty_values must be 1-D arrays of one length; "
            f"got shapes {areas.shape}, {full_values.shape} and {empty_values.shape}"
        )
        raise ValueError(msg)
    scale = float(np.abs(full_values - empty_values).mean()) if areas.size else 0.0
    if scale == 0.0:
        return np.full(areas.shape, np.nan)
    return (areas - empty_values) / scale


def _standard_error(values: np.ndarray) -> float:
    """Standard error of the mean, NaN for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    return float(values.std(ddof=1) / np.sqrt(values.size))


# --- rankings and curves -----------------------------------------------------------


def ranking_order(scores: np.ndarray) -> np.ndarray:
    """Return each sample's players in order of decreasing score, ties broken by player order.

    Parameters
    ----------
    scores : ndarray of shape (n_samples, n_players)

    Returns
    -------
    ndarray of int64, shape (n_samples, n_players)
        ``order[s, j]`` is the player at rank ``j`` of sample ``s``. Of two
        players with equal scores the one with the smaller index ranks first
        (a stable sort of the negated scores).
    """
    scores = np.asarray(scores, dtype=np.float64)
    # Adding 0.0 turns -0.0 into 0.0, so both signs of zero count as a tie.
    return np.argsort(-scores + 0.0, axis=1, kind="stable")


def _coalitions_for_orders(orders: np.ndarray, mode: str) -> np.ndarray:
    """Build the coalitions a curve visits: shape (n_samples, P + 1, P), row ``k`` after ``k`` steps."""
    n_samples, n_players = orders.shape
    ranks = np.empty_like(orders)
    ranks[np.arange(n_samples)[:, None], orders] = np.arange(n_players)
    steps = np.arange(n_players + 1)[None, :, None]
    if mode == "insertion":
        return ranks[:, None, :] < steps
    return ranks[:, None, :] >= steps


def _curves_for_orders(game: EmbeddingGame, orders: np.ndarray, modes: Sequence[str]) -> dict[str, np.ndarray]:
    """Evaluate the curves of one order per sample, shape (n_samples, n_players), with one call of the game.

    Returns one array of shape (n_samples, P + 1) per mode.
    """
    n_samples, n_players = orders.shape
    coalitions = np.concatenate([_coalitions_for_orders(orders, mode) for mode in modes], axis=1)
    values = game.values_per_sample(coalitions).reshape(n_samples, len(modes), n_players + 1)
    return {mode: values[:, position] for position, mode in enumerate(modes)}


def _check_mode(mode: str, function: str) -> None:
    if mode not in ABLATION_MODES:
        msg = f"{function}: unknown mode {mode!r}; valid: {', '.join(ABLATION_MODES)}"
        raise ValueError(msg)


def _preview(rows: np.ndarray, limit: int = 6) -> str:
    """Describe row numbers briefly: count and the first few."""
    first_rows = ", ".join(str(int(row)) for row in rows[:limit])
    more = ", ..." if rows.size > limit else ""
    return f"{rows.size} rows [{first_rows}{more}]"


def _score_matrix(name: str, scores: Scores, game: EmbeddingGame, rows: np.ndarray, model: CTRModel) -> np.ndarray:
    """Check an explainer's scores against the game's rows and players; return them as (n_samples, n_players)."""
    if isinstance(scores, Attribution):
        got_rows = np.asarray(scores.rows)
        if got_rows.shape != rows.shape or not np.array_equal(got_rows, rows):
            msg = (
                f"explainer {name!r}: its attribution covers {_preview(got_rows)}, but the comparison uses "
                f"{_preview(rows)}; explain the same rows in the same order"
            )
            raise ValueError(msg)
        expected = tuple(game.player_names)
        if tuple(scores.field_names) != expected:
            msg = (
                f"explainer {name!r}: its players are {', '.join(scores.field_names)}; the game's players are "
                f"{', '.join(expected)}. Explain with the same players= grouping as the comparison"
            )
            raise ValueError(msg)
        grouping = scores.parameters.get("players")
        _, _, membership = model_players(model, grouping)
        if membership.shape != game.membership.shape or not np.array_equal(membership, game.membership):
            game_groups = {player: list(fields) for player, fields in game.player_fields.items()}
            msg = (
                f"explainer {name!r}: its player groups {grouping} contain other fields than the game's groups "
                f"{game_groups}; explain with the same players= grouping as the comparison"
            )
            raise ValueError(msg)
        values = np.asarray(scores.values, dtype=np.float64)
    else:
        values = np.asarray(scores, dtype=np.float64)
        expected_shape = (rows.size, game.n_players)
        if values.shape != expected_shape:
            msg = (
                f"explainer {name!r}: scores must have shape (n_samples, n_players) = {expected_shape} for "
                f"{_preview(rows)} and the players {', '.join(game.player_names)}; got {values.shape}"
            )
            raise ValueError(msg)
    if not np.isfinite(values).all():
        bad = np.argwhere(~np.isfinite(values))[0]
        msg = (
            f"explainer {name!r}: the score of player {game.player_names[bad[1]]!r} for row {int(rows[bad[0]])} "
            f"is {values[bad[0], bad[1]]}; scores must be finite"
        )
        raise ValueError(msg)
    return values


def ablation_curves(
    model: CTRModel,
    data: Data,
    rows: np.ndarray | Sequence[int] | None,
    scores: Scores,
    *,
    mode: str = "deletion",
    baseline: str = "zero",
    players: Players = None,
    output_space: str = "logit",
    background: Data | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Compute the deletion or insertion curve of each sample for the ranking given by ``scores``.

    Parameters
    ----------
    model : CTRModel
        Runs in eval mode; its previous mode is restored.
    data : CTRDataset or dict of str to Tensor
        The samples.
    rows : array of int, optional
        Rows of ``data`` (default: all). An :class:`Attribution` must cover
        the same rows in the same order.
    scores : Attribution or ndarray of shape (n_samples, n_players)
        The explainer's scores. Players are ranked by decreasing score, and
        equal scores keep the game's player order.
    mode : ``"deletion"`` or ``"insertion"``
        See :data:`ABLATION_MODES`.
    baseline, players, output_space, background, chunk_size
        The coalition game, as in :func:`workbench.explain.explain`. An
        :class:`Attribution` must have the same players (names and fields).

    Returns
    -------
    ndarray of float64, shape (n_samples, n_players + 1)
        Point ``k`` is the game value after ``k`` steps, in the units of
        ``output_space``. Deletion runs from ``v(N)`` to ``v(∅)``, insertion
        from ``v(∅)`` to ``v(N)``.

    Notes
    -----
    The cost is ``n_samples * (n_players + 1)`` rows through
    ``model.logit_from_embeddings``, times ``K`` background rows for the
    ``"expectation"`` baseline.
    """
    _check_mode(mode, "ablation_curves")
    game, rows, _, _ = prepare_game(
        model,
        data,
        rows,
        baseline=baseline,
        players=players,
        output_space=output_space,
        chunk_size=chunk_size,
        background=background,
    )
    values = _score_matrix("scores", scores, game, rows, model)
    return _curves_for_orders(game, ranking_order(values), (mode,))[mode]


# --- infidelity ----------------------------------------------------------------------


def _check_int(value: Any, name: str, function: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        msg = f"{function}: {name} must be an integer >= {minimum}; got {value!r}"
        raise ValueError(msg)


def _check_infidelity_options(
    n_perturbations: int, drop_probability: float, random_state: int, function: str
) -> None:
    _check_int(n_perturbations, "n_perturbations", function, 1)
    _check_int(random_state, "random_state", function, 0)
    if isinstance(drop_probability, bool) or not isinstance(drop_probability, (int, float)):
        msg = f"{function}: drop_probability must be a number in (0, 1]; got {drop_probability!r}"
        raise ValueError(msg)
    if not 0.0 < float(drop_probability) <= 1.0:
        msg = f"{function}: drop_probability must be in (0, 1]; got {drop_probability!r}"
        raise ValueError(msg)


def _game_infidelity(
    game: EmbeddingGame,
    values: np.ndarray,
    *,
    n_perturbations: int,
    drop_probability: float,
    normalize: bool,
    random_state: int,
) -> np.ndarray:
    """Run ``captum.metrics.infidelity`` on the game with field-drop perturbations; return (n_samples,).

    Captum perturbs a float presence mask of ones, shape (n_samples,
    n_players), and passes the sample index as an extra forward argument,
    so the forward function maps (mask, index) to the game value of the
    players still present. ``perturb`` returns the drop indicator ``I`` and
    the perturbed mask ``1 − I``, which makes captum's difference
    ``f(x) − f(x perturbed)`` equal to ``v(N) − v(N minus D_I)``.
    """
    generator = torch.Generator().manual_seed(int(random_state))

    def forward(mask: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        present = (mask > 0.5).numpy()[:, None, :]
        return torch.from_numpy(game.values_per_sample(present, samples=sample.numpy())[:, 0])

    def perturb(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dropped = (torch.rand(mask.shape, generator=generator, dtype=torch.float64) < drop_probability).double()
        return dropped, mask * (1.0 - dropped)

    n_samples, n_players = values.shape
    result = captum_infidelity(
        forward,
        perturb,
        torch.ones((n_samples, n_players), dtype=torch.float64),
        torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64)),
        additional_forward_args=(torch.arange(n_samples),),
        n_perturb_samples=int(n_perturbations),
        normalize=normalize,
    )
    return result.detach().cpu().numpy().astype(np.float64).reshape(n_samples)


def _check_units(name: str, scores: Scores, output_space: str, normalize: bool, function: str) -> None:
    """Reject attributions in another output space, unless captum normalises their scale per sample."""
    if isinstance(scores, Attribution) and scores.output_space != output_space and not normalize:
        msg = (
            f"{function}: explainer {name!r} has values in {scores.output_space} units but the game runs in "
            f"{output_space} units; infidelity compares them directly. Explain with output_space="
            f"{output_space!r}, or pass normalize=True to rescale the attributions per sample"
        )
        raise ValueError(msg)


def infidelity(
    model: CTRModel,
    data: Data,
    rows: np.ndarray | Sequence[int] | None,
    attribution: Scores,
    *,
    baseline: str = "zero",
    players: Players = None,
    output_space: str = "logit",
    background: Data | None = None,
    n_perturbations: int = DEFAULT_N_PERTURBATIONS,
    drop_probability: float = DEFAULT_DROP_PROBABILITY,
    normalize: bool = False,
    random_state: int = 0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Compute the infidelity of an attribution under random field drops, with ``captum.metrics.infidelity``.

    Parameters
    ----------
    model, data, rows, baseline, players, output_space, background, chunk_size
        The samples and their coalition game, as in :func:`ablation_curves`.
    attribution : Attribution or ndarray of shape (n_samples, n_players)
        The values ``φ``, in the units of ``output_space`` (an
        :class:`Attribution` in other units is rejected unless ``normalize``).
    n_perturbations : int
        Random drop sets per sample (captum's ``n_perturb_samples``).
    drop_probability : float in (0, 1]
        Chance that each player is dropped, independently.
    normalize : bool
        Passed to captum: rescale ``φ`` per sample by the least-squares
        factor ``β = E[I·φ (v(N) − v(N minus D))] / E[(I·φ)²]`` first, so the
        value does not change with the scale of the scores.
    random_state : int
        Seed of a local ``torch.Generator``. The global torch RNG is not used,
        and the same seed draws the same drop sets for every attribution.

    Returns
    -------
    ndarray of float64, shape (n_samples,)
        Mean over the draws of ``(Σ_p I_p φ_p − (v(N) − v(N minus D_I)))²``,
        in squared units of ``output_space``.

    Notes
    -----
    The cost is ``n_samples * (n_perturbations + 1)`` rows through
    ``model.logit_from_embeddings``, times ``K`` for the ``"expectation"`` baseline.
    """
    _check_infidelity_options(n_perturbations, drop_probability, random_state, "infidelity")
    _check_units("attribution", attribution, output_space, normalize, "infidelity")
    game, rows, _, _ = prepare_game(
        model,
        data,
        rows,
        baseline=baseline,
        players=players,
        output_space=output_space,
        chunk_size=chunk_size,
        background=background,
    )
    values = _score_matrix("attribution", attribution, game, rows, model)
    return _game_infidelity(
        game,
        values,
        n_perturbations=n_perturbations,
        drop_probability=drop_probability,
        normalize=normalize,
        random_state=random_state,
    )


# --- attention as an explainer -----------------------------------------------------


def _pair_attention_probes(model: CTRModel) -> list[Any]:
    return [probe for probe in model_probes(model) if probe.kind == "attention" and probe.is_pair_map]


def has_pair_attention(model: CTRModel) -> bool:
    """Return whether the model has exactly one field x field attention probe, so :func:`attention_field_scores` works."""
    return len(_pair_attention_probes(model)) == 1


def attention_field_scores(
    model: CTRModel,
    data: Data,
    rows: np.ndarray | Sequence[int] | None = None,
    *,
    players: Players = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Score each field by the attention it receives in the model's own field x field attention.

    The score of field ``j`` is the mean of ``A[layer, head, query, j]`` over
    layers, heads and query fields, from the probe of kind ``"attention"``
    whose last two axes are (query field, key field). Each query row of a
    softmax sums to 1, so a sample's scores sum to 1. With ``players``, a
    group's score is the sum of its fields' scores, the attention mass that
    lands on the group.

    Returns
    -------
    ndarray of float64, shape (n_samples, n_players)

    Raises
    ------
    ValueError
        When the model has no such probe; :data:`PAIR_ATTENTION_ARCHITECTURES` lists the architectures that have one.
    """
    architecture = getattr(model, "architecture", type(model).__name__)
    candidates = _pair_attention_probes(model)
    if not candidates:
        msg = (
            f"{architecture} has no field x field attention probe, so attention cannot score its fields; "
            f"architectures with one: {', '.join(PAIR_ATTENTION_ARCHITECTURES)}"
        )
        raise ValueError(msg)
    if len(candidates) > 1:
        names = ", ".join(probe.name for probe in candidates)
        msg = f"{architecture} has several field x field attention probes ({names}); expected one"
        raise ValueError(msg)
    probe = candidates[0]

    inputs, _, _, _ = _select_samples(data, rows, None)
    captured = capture_probes(model, inputs, names=[probe.name], chunk_size=chunk_size)[probe.name].values
    n_samples, n_fields = captured.shape[0], captured.shape[-1]
    # (n_samples, layers * heads, query, key): average the leading axes, then the query fields.
    received = captured.reshape(n_samples, -1, n_fields, n_fields).mean(axis=1).mean(axis=1).astype(np.float64)

    _, _, membership = model_players(model, players)
    if membership.shape[1] != n_fields:
        msg = (
            f"the attention probe of {architecture} covers {n_fields} fields but the players cover "
            f"{membership.shape[1]} slots; attention scores need one slot per field"
        )
        raise ValueError(msg)
    return received @ membership.T.astype(np.float64)


# --- comparing explainers ------------------------------------------------------------


@dataclass(frozen=True)
class FaithfulnessResult:
    """Deletion and insertion curves, their areas and infidelity of several explainers on the same samples.

    The explainers keep the order they were given in, and ``"random"``
    (:data:`RANDOM_NAME`) comes last. For ``"random"``, each sample's curve is
    the mean over ``parameters["n_random"]`` random orders of its players.
    All values are in the units of ``output_space``; infidelity is in squared units.
    """

    explainers: tuple[str, ...]
    player_names: tuple[str, ...]
    rows: np.ndarray
    baseline: str
    output_space: str
    curves: dict[str, dict[str, np.ndarray]]
    """``curves[mode][explainer]``: per-sample curves, shape (n_samples, n_players + 1)."""
    aucs: dict[str, dict[str, np.ndarray]]
    """``aucs[mode][explainer]``: per-sample area under the curve (:func:`curve_auc`), shape (n_samples,)."""
    random_draw_curves: dict[str, np.ndarray]
    """``random_draw_curves[mode]``: each random draw's curve averaged over samples, shape (n_random, n_players + 1)."""
    full_values: np.ndarray
    """``v(N)`` per sample (the prediction), shape (n_samples,)."""
    empty_values: np.ndarray
    """``v(∅)`` per sample (the base value), shape (n_samples,)."""
    infidelities: dict[str, np.ndarray] | None = None
    """Per-sample infidelity of each explainer (not of ``"random"``), shape (n_samples,). None when not computed."""
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.rows.size)

    @property
    def n_players(self) -> int:
        return len(self.player_names)

    def _check(self, explainer: str, mode: str) -> None:
        _check_mode(mode, "FaithfulnessResult")
        if explainer not in self.explainers:
            msg = f"no explainer named {explainer!r}; compared: {', '.join(self.explainers)}"
            raise KeyError(msg)

    def mean_curve(self, explainer: str, mode: str) -> np.ndarray:
        """Return the curve averaged over samples, shape (n_players + 1,)."""
        self._check(explainer, mode)
        return self.curves[mode][explainer].mean(axis=0)

    def curve_standard_error(self, explainer: str, mode: str) -> np.ndarray:
        """Return the standard error over samples of each point of the mean curve, shape (n_players + 1,)."""
        self._check(explainer, mode)
        curves = self.curves[mode][explainer]
        if curves.shape[0] < 2:
            return np.full(curves.shape[1], np.nan)
        return curves.std(axis=0, ddof=1) / np.sqrt(curves.shape[0])

    def random_range(self, mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Return the pointwise minimum and maximum over the random draws of their sample-mean curves."""
        _check_mode(mode, "FaithfulnessResult")
        draws = self.random_draw_curves[mode]
        return draws.min(axis=0), draws.max(axis=0)

    def auc_mean(self, explainer: str, mode: str) -> float:
        """Return the mean AUC over samples."""
        self._check(explainer, mode)
        return float(self.aucs[mode][explainer].mean())

    def auc_standard_error(self, explainer: str, mode: str) -> float:
        """Return the standard error of :meth:`auc_mean` (NaN for one sample)."""
        self._check(explainer, mode)
        return _standard_error(self.aucs[mode][explainer])

    def relative_aucs(self, explainer: str, mode: str) -> np.ndarray:
        """Return :func:`relative_auc` of each sample, shape (n_samples,)."""
        self._check(explainer, mode)
        return relative_auc(self.aucs[mode][explainer], self.full_values, self.empty_values)

    def to_frame(self) -> pd.DataFrame:
        """Return one line per (explainer, mode) with the AUC summaries and infidelity.

        Columns: ``explainer``, ``mode``, ``n_samples``, ``auc_mean``,
        ``auc_se`` (standard error over samples), ``relative_auc_mean`` and
        ``relative_auc_se`` (:func:`relative_auc`), ``auc_minus_random_mean``
        and ``auc_minus_random_se`` (the paired per-sample difference to the
        random orders), ``infidelity_mean`` and ``infidelity_se`` (NaN for
        ``"random"`` and when not computed), ``baseline`` and ``output_space``.
        """
        lines = []
        for mode in ABLATION_MODES:
            random_aucs = self.aucs[mode][RANDOM_NAME]
            for explainer in self.explainers:
                aucs = self.aucs[mode][explainer]
                relative = self.relative_aucs(explainer, mode)
                infidelity_values = (self.infidelities or {}).get(explainer)
                lines.append(
                    {
                        "explainer": explainer,
                        "mode": mode,
                        "n_samples": self.n_samples,
                        "auc_mean": float(aucs.mean()),
                        "auc_se": _standard_error(aucs),
                        "relative_auc_mean": float(relative.mean()),
                        "relative_auc_se": _standard_error(relative),
                        "auc_minus_random_mean": float((aucs - random_aucs).mean()),
                        "auc_minus_random_se": _standard_error(aucs - random_aucs),
                        "infidelity_mean": (
                            float("nan") if infidelity_values is None else float(infidelity_values.mean())
                        ),
                        "infidelity_se": (
                            float("nan") if infidelity_values is None else _standard_error(infidelity_values)
                        ),
                        "baseline": self.baseline,
                        "output_space": self.output_space,
                    }
                )
        return pd.DataFrame(lines)

    def curve_frame(self) -> pd.DataFrame:
        """Return the mean curves as a long table: one line per (explainer, mode, step).

        Columns: ``explainer``, ``mode``, ``k`` (players removed or added),
        ``fraction`` (``k / n_players``), ``mean`` and ``se`` (over samples),
        and ``random_min`` and ``random_max`` (:meth:`random_range`, NaN for
        the explainers), ``output_space``.
        """
        steps = np.arange(self.n_players + 1)
        frames = []
        for mode in ABLATION_MODES:
            low, high = self.random_range(mode)
            for explainer in self.explainers:
                is_random = explainer == RANDOM_NAME
                frames.append(
                    pd.DataFrame(
                        {
                            "explainer": explainer,
                            "mode": mode,
                            "k": steps,
                            "fraction": steps / self.n_players,
                            "mean": self.mean_curve(explainer, mode),
                            "se": self.curve_standard_error(explainer, mode),
                            "random_min": low if is_random else np.nan,
                            "random_max": high if is_random else np.nan,
                            "output_space": self.output_space,
                        }
                    )
                )
        return pd.concat(frames, ignore_index=True)


def compare_explainers(
    model: CTRModel,
    data: Data,
    rows: np.ndarray | Sequence[int] | None,
    attributions: Mapping[str, Scores],
    *,
    baseline: str = "zero",
    players: Players = None,
    output_space: str = "logit",
    background: Data | None = None,
    n_random: int = DEFAULT_N_RANDOM,
    random_state: int = 0,
    with_infidelity: bool = False,
    n_perturbations: int = DEFAULT_N_PERTURBATIONS,
    drop_probability: float = DEFAULT_DROP_PROBABILITY,
    normalize_infidelity: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> FaithfulnessResult:
    """Compare the deletion and insertion curves of several explainers with those of random orders.

    Parameters
    ----------
    model, data, rows, baseline, players, output_space, background, chunk_size
        The samples and their coalition game, as in :func:`ablation_curves`.
    attributions : mapping of str to Attribution or ndarray
        Explainer name to its scores for the same rows and players, for
        example ``{"exact_shapley": ..., "attention": attention_field_scores(...)}``.
        The name ``"random"`` is reserved.
    n_random : int
        Random orders per sample. Each sample's random curve is their mean.
    random_state : int
        Seeds the random orders (``numpy.random.default_rng``) and the drop
        sets of the infidelity. The same seed gives the same result, and
        the infidelity of every explainer uses the same drop sets.
    with_infidelity : bool
        Also compute :func:`infidelity` of every explainer with
        ``n_perturbations``, ``drop_probability`` and ``normalize_infidelity``.
        Infidelity reads the scores as contributions in output units. For
        scores in other units, such as attention shares, only
        ``normalize_infidelity=True`` gives a comparable number.

    Returns
    -------
    FaithfulnessResult

    Raises
    ------
    ValueError
        When an explainer's rows or players differ from the comparison's (the
        message names the explainer and both values), for the reserved name,
        or for invalid options.

    Notes
    -----
    The cost is ``2 * n_samples * (n_players + 1) * (n_explainers + n_random)``
    rows through ``model.logit_from_embeddings``, plus ``n_samples *
    (n_perturbations + 1)`` per explainer with ``with_infidelity``.
    """
    function = "compare_explainers"
    if not isinstance(attributions, Mapping) or not attributions:
        msg = f"{function}: attributions must be a non-empty mapping from explainer name to its scores"
        raise ValueError(msg)
    if RANDOM_NAME in attributions:
        msg = f"{function}: the explainer name {RANDOM_NAME!r} is reserved for the random orders; rename it"
        raise ValueError(msg)
    _check_int(n_random, "n_random", function, 1)
    _check_int(random_state, "random_state", function, 0)
    if with_infidelity:
        _check_infidelity_options(n_perturbations, drop_probability, random_state, function)
        for name, scores in attributions.items():
            _check_units(name, scores, output_space, normalize_infidelity, function)

    game, rows, _, _ = prepare_game(
        model,
        data,
        rows,
        baseline=baseline,
        players=players,
        output_space=output_space,
        chunk_size=chunk_size,
        background=background,
    )
    names = tuple(str(name) for name in attributions)
    values = {str(name): _score_matrix(str(name), scores, game, rows, model) for name, scores in attributions.items()}
    modes = tuple(ABLATION_MODES)

    curves: dict[str, dict[str, np.ndarray]] = {mode: {} for mode in modes}
    for name in names:
        for mode, mode_curves in _curves_for_orders(game, ranking_order(values[name]), modes).items():
            curves[mode][name] = mode_curves

    # One draw at a time, so memory does not grow with n_random.
    generator = np.random.default_rng(random_state)
    random_orders = np.argsort(generator.random((n_random, game.n_samples, game.n_players)), axis=2)
    draws: dict[str, list[np.ndarray]] = {mode: [] for mode in modes}
    for orders in random_orders:
        for mode, mode_curves in _curves_for_orders(game, orders, modes).items():
            draws[mode].append(mode_curves)
    random_draw_curves = {}
    for mode in modes:
        per_draw = np.stack(draws[mode])  # (n_random, n_samples, P + 1)
        curves[mode][RANDOM_NAME] = per_draw.mean(axis=0)
        random_draw_curves[mode] = per_draw.mean(axis=1)

    infidelities = None
    if with_infidelity:
        infidelities = {
            name: _game_infidelity(
                game,
                values[name],
                n_perturbations=n_perturbations,
                drop_probability=drop_probability,
                normalize=normalize_infidelity,
                random_state=random_state,
            )
            for name in names
        }

    deletion_curves = curves["deletion"][names[0]]
    parameters: dict[str, Any] = {"n_random": n_random, "random_state": random_state, "chunk_size": chunk_size}
    if with_infidelity:
        parameters["n_perturbations"] = n_perturbations
        parameters["drop_probability"] = drop_probability
        parameters["normalize_infidelity"] = normalize_infidelity
    if players is not None:
        parameters["players"] = {name: list(fields) for name, fields in game.player_fields.items()}
    return FaithfulnessResult(
        explainers=(*names, RANDOM_NAME),
        player_names=tuple(game.player_names),
        rows=rows,
        baseline=baseline,
        output_space=output_space,
        curves=curves,
        aucs={mode: {name: curve_auc(values) for name, values in by_name.items()} for mode, by_name in curves.items()},
        random_draw_curves=random_draw_curves,
        full_values=deletion_curves[:, 0].copy(),
        empty_values=deletion_curves[:, -1].copy(),
        infidelities=infidelities,
        parameters=parameters,
    )
