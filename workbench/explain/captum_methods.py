"""captum's perturbation methods on field embeddings, and the methods that cannot explain id inputs.

:func:`captum_feature_ablation` and :func:`captum_shapley_sampling` run captum
0.9's ``FeatureAblation`` and ``ShapleyValueSampling`` on the field-embedding
tensor of shape (n_samples, n_fields, width), not on the ids. Their forward
function is ``model.logit_from_embeddings``, their baseline is the
:class:`~workbench.explain.game.EmbeddingGame`'s baseline slots and their
feature mask gives every field (or field group) one feature index over its
whole slot. Removing a feature then means exactly what an absent player means
in the game, for every baseline. Working on ids with per-field baseline ids
would reach the same numbers only for the ``"zero"``, ``"pad"`` and ``"oov"``
baselines, and not for ``"mean"`` or ``"expectation"``, which have no id.

Methods that need to differentiate or add noise to their inputs cannot run on
integer ids; :func:`unsupported_method_message` explains each of them and
names a method that works.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import FeatureAblation, ShapleyValueSampling

from workbench.data import CTRDataset
from workbench.explain.game import DEFAULT_CHUNK_SIZE, _eval_mode
from workbench.explain.result import Attribution
from workbench.explain.sampling import (
    DEFAULT_BUDGET,
    RandomState,
    _attribution,
    _block_progress,
    _check_budget,
    _end_values,
    _prepare,
    _seed_entropy,
    _Setup,
)
from workbench.zoo.base import CTRModel

SHAPLEY_SAMPLING_RUNS = 16
"""Independent captum runs whose spread gives the standard error of :func:`captum_shapley_sampling`."""


# --- running captum on the game's embeddings ------------------------------------


class _EmbeddingForward:
    """``model.logit_from_embeddings`` in the game's output space, counting the rows it forwards."""

    def __init__(self, setup: _Setup) -> None:
        self.model = setup.game.model
        self.probability = setup.game.output_space == "probability"
        self.rows = 0

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        self.rows += int(embeddings.shape[0])
        output = self.model.logit_from_embeddings(embeddings).to(torch.float64)
        return torch.sigmoid(output) if self.probability else output


def _feature_mask(setup: _Setup) -> torch.Tensor:
    """Feature index of every slot element, shape (1, n_fields, width): the player that owns the field."""
    game = setup.game
    owner = torch.from_numpy(game.membership.argmax(axis=0)).to(game.device)  # (n_fields,)
    width = game.embeddings.shape[2]
    return owner[None, :, None].expand(1, -1, width).contiguous()


def _player_values(attributions: torch.Tensor, setup: _Setup) -> np.ndarray:
    """Return one value per player from captum's (n, n_fields, width) output, equal over a feature's elements."""
    first_field = setup.game.membership.argmax(axis=1)  # first field of each player
    return attributions[:, first_field, 0].detach().to("cpu", torch.float64).numpy()


def _run_per_baseline(
    setup: _Setup,
    attribute: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    progress: Callable[[float], None] | None,
) -> np.ndarray:
    """Run ``attribute(inputs, baselines, mask)`` on blocks of samples, once per background row, and average.

    captum takes one baseline per call, so the ``"expectation"`` baseline with
    ``K`` background rows costs ``K`` runs. Both methods are linear in ``v``, so
    the mean of the attributions against the ``K`` rows is the attribution of
    the averaged game. For Shapley sampling this needs the same permutations
    in every run, which the caller ensures by reseeding before each call.
    """
    game = setup.game
    mask = _feature_mask(setup)
    n_samples, n_background = game.n_samples, game.n_background
    block = max(1, game.chunk_size // max(1, game.n_players))
    total = np.zeros((n_samples, game.n_players))
    steps = n_background * len(range(0, n_samples, block))
    done = 0
    with _eval_mode(game.model):
        for k in range(n_background):
            baseline = game.baseline_embeddings[k : k + 1]
            for start in range(0, n_samples, block):
                inputs = game.embeddings[start : start + block]
                baselines = baseline.expand_as(inputs).contiguous()
                total[start : start + block] += _player_values(attribute(inputs, baselines, mask), setup)
                done += 1
                if progress is not None:
                    progress(done / steps)
    return total / n_background


# --- the two methods ---------------------------------------------------------------


def captum_feature_ablation(
    model: CTRModel,
    data: CTRDataset | Mapping[str, torch.Tensor],
    rows: np.ndarray | Sequence[int] | None = None,
    *,
    baseline: str = "zero",
    players: Mapping[str, Sequence[str]] | None = None,
    output_space: str = "logit",
    budget: int | None = None,
    random_state: RandomState = None,
    background: CTRDataset | Mapping[str, torch.Tensor] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[float], None] | None = None,
) -> Attribution:
    """Attribute each field by captum ``FeatureAblation``: ``v(N) - v(N \\ {i})``.

    Parameters
    ----------
    model, data, rows, baseline, players, output_space, background, chunk_size, progress
        As for :func:`workbench.explain.sampling.permutation_shapley`.
    budget : int, optional
        Only checked, because the method always costs ``P + 3`` coalitions per
        sample: captum's ``v(N)`` and ``P`` ablations, plus ``v(∅)`` and ``v(N)``
        for the base value and prediction. A smaller budget raises ValueError.
    random_state : ignored, because the method is deterministic.

    Returns
    -------
    Attribution
        Method ``"captum_feature_ablation"``, no standard errors. The values
        do not add up to ``prediction - base value`` unless the game is additive.
    """
    # The method is deterministic. random_state only keeps the signature of the sampled methods.
    del random_state
    setup = _prepare(
        model, data, rows, baseline=baseline, players=players, output_space=output_space,
        chunk_size=chunk_size, background=background,
    )
    n_players = setup.n_players
    cost = n_players + 3
    if budget is not None:
        _check_budget(budget, cost, "feature ablation", n_players, "one ablation per player")
    forward = _EmbeddingForward(setup)
    explainer = FeatureAblation(forward)

    def attribute(inputs: torch.Tensor, baselines: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return explainer.attribute(
            inputs, baselines=baselines, feature_mask=mask, perturbations_per_eval=n_players
        )

    values = _run_per_baseline(setup, attribute, progress)
    empty, grand = _end_values(setup)
    setup.game.n_model_evaluations += forward.rows
    parameters = setup.parameters(budget if budget is not None else cost, cost, None)
    parameters["captum_class"] = "FeatureAblation"
    return Attribution(
        values=values,
        base_values=empty,
        predictions=grand,
        field_names=setup.game.player_names,
        rows=setup.rows,
        method="captum_feature_ablation",
        baseline=setup.game.baseline,
        output_space=setup.game.output_space,
        parameters=parameters,
        labels=setup.labels,
        raw_values=setup.raw_values,
    )


def shapley_sampling_plan(n_players: int, budget: int) -> list[int]:
    """Split ``budget`` into independent captum runs and return the number of permutations of each run.

    One run of ``k`` permutations costs ``1 + k P`` coalitions per sample
    (captum evaluates the baseline, then adds the players one by one), and
    ``v(∅)`` and ``v(N)`` for the result cost 2 more. Up to
    :data:`SHAPLEY_SAMPLING_RUNS` runs are used, and their sizes differ by at most one.
    """
    _check_budget(budget, 2 + 2 * (1 + n_players), "captum Shapley value sampling", n_players, "two runs")
    n_runs = min(SHAPLEY_SAMPLING_RUNS, (budget - 2) // (1 + n_players))
    n_permutations = (budget - 2 - n_runs) // n_players
    smaller, larger_runs = divmod(n_permutations, n_runs)
    return [smaller + 1] * larger_runs + [smaller] * (n_runs - larger_runs)


def captum_shapley_sampling(
    model: CTRModel,
    data: CTRDataset | Mapping[str, torch.Tensor],
    rows: np.ndarray | Sequence[int] | None = None,
    *,
    baseline: str = "zero",
    players: Mapping[str, Sequence[str]] | None = None,
    output_space: str = "logit",
    budget: int = DEFAULT_BUDGET,
    random_state: RandomState = None,
    background: CTRDataset | Mapping[str, torch.Tensor] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[float], None] | None = None,
) -> Attribution:
    """Estimate Shapley values with captum ``ShapleyValueSampling`` on the field embeddings.

    Parameters
    ----------
    model, data, rows, baseline, players, output_space, background, chunk_size, progress
        As for :func:`workbench.explain.sampling.permutation_shapley`.
    budget : int
        Coalitions per sample, at least ``2 P + 4``. See :func:`shapley_sampling_plan`.
    random_state : int, numpy Generator or None
        Seeds captum's permutations (drawn with ``torch.randperm`` inside a
        forked RNG, so the global torch seed is left alone), recorded in
        ``parameters["random_state"]``.

    Returns
    -------
    Attribution
        Method ``"captum_shapley_sampling"`` with standard errors.

    Notes
    -----
    captum draws one permutation for all samples of a call, so the errors of
    different samples are correlated. It accumulates in float32, so the values
    add up to ``prediction - base value`` only to float32 round-off (below 1e-5
    in the tests, for logits of order 1 to 10).
    The permutations are not antithetic, which makes this estimator noisier
    than :func:`workbench.explain.sampling.permutation_shapley` at the same
    budget. The estimate is the mean over all permutations, that is the mean
    of the independent runs' means weighted by their sizes ``k_r``. Its
    standard error is the usual one for means of clusters of unequal size,
    ``sqrt(R / (R - 1) · Σ_r (k_r / K)² (x_r - x)²)`` for ``R`` runs of
    ``K`` permutations in all.
    """
    setup = _prepare(
        model, data, rows, baseline=baseline, players=players, output_space=output_space,
        chunk_size=chunk_size, background=background,
    )
    n_players = setup.n_players
    entropy = _seed_entropy(random_state)
    run_sizes = shapley_sampling_plan(n_players, budget)
    n_runs = len(run_sizes)
    forward = _EmbeddingForward(setup)
    explainer = ShapleyValueSampling(forward)

    runs = []
    for run, n_permutations in enumerate(run_sizes):
        seed = int(np.random.SeedSequence([entropy, run]).generate_state(1, np.uint64)[0] >> np.uint64(1))

        def attribute(
            inputs: torch.Tensor,
            baselines: torch.Tensor,
            mask: torch.Tensor,
            seed: int = seed,
            n_permutations: int = n_permutations,
        ) -> torch.Tensor:
            # Every block of samples and every background row starts from this seed, so all get the same permutations.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return explainer.attribute(
                    inputs,
                    baselines=baselines,
                    feature_mask=mask,
                    n_samples=n_permutations,
                    perturbations_per_eval=n_players,
                )

        on_run = _block_progress(progress, run / n_runs, (run + 1) / n_runs)
        runs.append(_run_per_baseline(setup, attribute, on_run))

    runs_array = np.stack(runs)  # (n_runs, n_samples, n_players)
    weights = np.array(run_sizes, dtype=np.float64)[:, None, None] / sum(run_sizes)
    estimates = (weights * runs_array).sum(axis=0)
    variance = n_runs / (n_runs - 1) * (weights**2 * (runs_array - estimates) ** 2).sum(axis=0)
    empty, grand = _end_values(setup)
    setup.game.n_model_evaluations += forward.rows
    used = 2 + n_runs + sum(run_sizes) * n_players
    parameters = setup.parameters(budget, used, entropy)
    parameters["captum_class"] = "ShapleyValueSampling"
    parameters["permutations_per_run"] = run_sizes
    parameters["standard_error"] = "spread of the independent runs' means, weighted by their sizes"
    return _attribution(setup, estimates, np.sqrt(variance), empty, grand, "captum_shapley_sampling", parameters)


# --- methods that cannot explain integer ids -----------------------------------------


@dataclass(frozen=True)
class UnsupportedMethod:
    """A method that cannot explain a model with integer id inputs, the reason, and what to use instead."""

    name: str
    reason: str
    alternative: str


_GRADIENT_ALTERNATIVE = (
    "'integrated_gradients' (the workbench's Integrated Gradients on the field-embedding layer) "
    "or a Shapley method such as 'permutation_shapley'"
)
_SHAPLEY_ALTERNATIVE = "'permutation_shapley', 'kernel_shap' or exact Shapley values for up to 16 fields"

UNSUPPORTED_METHODS: dict[str, UnsupportedMethod] = {
    method.name.lower(): method
    for method in (
        UnsupportedMethod(
            "IntegratedGradients",
            "it scales the inputs along the path from baseline to sample, so the ids become floats, "
            "and the embedding lookup raises 'Expected tensor for argument #1 indices to have one of the "
            "following scalar types: Long, Int'",
            _GRADIENT_ALTERNATIVE,
        ),
        UnsupportedMethod(
            "NoiseTunnel",
            "it adds Gaussian noise to the inputs, so the ids become floats and the embedding lookup raises, "
            "also when it wraps LayerIntegratedGradients",
            _GRADIENT_ALTERNATIVE,
        ),
        UnsupportedMethod(
            "LayerConductance",
            "it interpolates the model inputs (the ids), not the layer's output, so the embedding lookup "
            "receives float ids and raises",
            _GRADIENT_ALTERNATIVE,
        ),
        UnsupportedMethod(
            "GradientShap",
            "it adds noise to the inputs and evaluates gradients at random points between baseline and "
            "sample, so the ids become floats and the embedding lookup raises",
            _GRADIENT_ALTERNATIVE,
        ),
        UnsupportedMethod(
            "LayerGradientShap",
            "it adds noise to the model inputs (the ids) and picks random points between baseline and sample "
            "in input space, not at the layer, so the embedding lookup receives float ids and raises",
            _GRADIENT_ALTERNATIVE,
        ),
        UnsupportedMethod(
            "DeepExplainer",
            "its attributions do not add up to the output, and shap's additivity check raises, for the "
            "FM, DeepFM, DCNv2 and AutoInt+ models, on the ids and on the field embeddings alike (shap 0.51; "
            "only LR passes), because its DeepLIFT rules do not cover products of two inputs such as the "
            "FM term, cross layers and attention",
            _SHAPLEY_ALTERNATIVE,
        ),
        UnsupportedMethod(
            "GradientExplainer",
            "gradients do not flow through integer ids, so every id field gets an attribution of exactly 0 "
            "and only numeric and dense fields are attributed, without an error",
            _GRADIENT_ALTERNATIVE,
        ),
    )
}
"""Methods that cannot explain id inputs, keyed by lower-case captum or shap class name."""


def unsupported_method_message(name: str) -> str | None:
    """Return why ``name`` cannot explain an embedding model with id inputs, or None if it is not listed.

    ``name`` is a captum or shap class name such as ``"NoiseTunnel"`` or
    ``"shap.DeepExplainer"``, in any letter case, and a ``captum.attr.`` or
    ``shap.`` prefix is ignored. The workbench's own ``"integrated_gradients"``
    is not the listed ``"IntegratedGradients"`` (captum's, on the ids), because
    it integrates over the field-embedding layer.
    """
    key = name.strip().lower()
    for prefix in ("captum.attr.", "captum.", "shap.explainers.", "shap."):
        if key.startswith(prefix):
            key = key[len(prefix) :]
            break
    method = UNSUPPORTED_METHODS.get(key)
    if method is None:
        return None
    return (
        f"{method.name} cannot explain a model with integer id inputs: {method.reason}. "
        f"Use {method.alternative} instead."
    )


def check_method_supported(name: str) -> None:
    """Raise ValueError with :func:`unsupported_method_message` when ``name`` is an unsupported method."""
    message = unsupported_method_message(name)
    if message is not None:
        raise ValueError(message)
