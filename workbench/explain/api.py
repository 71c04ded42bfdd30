"""One entry point for field attributions and one for pair interactions, with the registries behind them.

:func:`explain` returns an :class:`Attribution` and :func:`interactions` an
:class:`Interaction`. Both take the same leading arguments (model, data, rows)
and the same keyword options for what an absent field is replaced with
(``baseline``), which fields act together (``players``) and the unit of the
values (``output_space``). Each looks its method up by name in a registry, so
the CLI and the app list the methods from one place.

Every registered attribution function has the signature::

    fn(model, data, rows, *, baseline, players, output_space, background,
       chunk_size, progress, **method_options) -> Attribution

``method_options`` are the method's own keywords, for example ``n_steps`` for
Integrated Gradients or ``budget`` and ``random_state`` for a sampled method,
whose result also carries ``standard_errors``. Registering a method is one
call of :func:`register_method`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch

from workbench.explain.captum_methods import captum_feature_ablation, captum_shapley_sampling
from workbench.explain.sampling import kernel_shap, permutation_sii, permutation_shapley
from workbench.data import CTRDataset
from workbench.explain.exact import DEFAULT_MAX_PLAYERS, _group_raw_values, exact_indices
from workbench.explain.game import (
    BACKGROUND_BASELINES,
    DEFAULT_CHUNK_SIZE,
    GAME_BASELINES,
    OUTPUT_SPACES,
    model_players,
)
from workbench.explain.integrated_gradients import DEFAULT_N_STEPS, integrated_gradients
from workbench.explain.interaction import INTERACTION_INDICES, Interaction
from workbench.explain.result import Attribution
from workbench.zoo.base import CTRModel

Data = CTRDataset | Mapping[str, torch.Tensor]
"""Samples to explain: an encoded data set, or a dict of model inputs (field name to tensor)."""

Players = Mapping[str, Sequence[str]] | None
"""``None`` for one player per field, or a mapping from group name to the fields of that group."""

AUTO_METHOD = "auto"
AUTO_EXACT_MAX_PLAYERS = 16
"""``method="auto"`` computes exact Shapley values up to this many players (2**16 coalitions per sample)."""
AUTO_SAMPLED_METHOD = "permutation_shapley"
"""The method ``method="auto"`` uses above :data:`AUTO_EXACT_MAX_PLAYERS` players, once it is registered."""


class AttributionFunction(Protocol):
    """The signature every registered attribution method implements."""

    def __call__(
        self,
        model: CTRModel,
        data: Data,
        rows: np.ndarray | Sequence[int] | None,
        *,
        baseline: str,
        players: Players,
        output_space: str,
        background: Data | None,
        chunk_size: int,
        progress: Callable[[float], None] | None,
        **method_options: Any,
    ) -> Attribution: ...


@dataclass(frozen=True)
class AttributionMethod:
    """A registered attribution method and what it supports."""

    name: str
    function: AttributionFunction
    summary: str
    """One line for help texts and selectors."""
    baselines: tuple[str, ...] = tuple(GAME_BASELINES)
    output_spaces: tuple[str, ...] = OUTPUT_SPACES
    efficient: bool = True
    """Whether the values add up to ``prediction - base value`` (up to numerical error)."""
    sampled: bool = False
    """Whether the values are estimates with ``standard_errors``."""
    options: tuple[str, ...] | None = None
    """Names of the method's own keyword options. None accepts any keyword."""


METHODS: dict[str, AttributionMethod] = {}
"""Registered attribution methods by name, in registration order."""


def register_method(
    name: str,
    function: AttributionFunction,
    summary: str,
    *,
    baselines: Sequence[str] = tuple(GAME_BASELINES),
    output_spaces: Sequence[str] = OUTPUT_SPACES,
    efficient: bool = True,
    sampled: bool = False,
    options: Sequence[str] | None = None,
) -> AttributionMethod:
    """Add an attribution method to :data:`METHODS` and return its entry.

    Raises
    ------
    ValueError
        When ``name`` is taken, is ``"auto"``, or lists a baseline or output
        space that the coalition game does not define.
    """
    if name == AUTO_METHOD or name in METHODS:
        msg = f"the method name {name!r} is already taken; registered: {', '.join(METHODS)}"
        raise ValueError(msg)
    unknown = [b for b in baselines if b not in GAME_BASELINES] + [s for s in output_spaces if s not in OUTPUT_SPACES]
    if unknown:
        msg = f"method {name!r} lists unknown baselines or output spaces: {', '.join(unknown)}"
        raise ValueError(msg)
    entry = AttributionMethod(
        name=name,
        function=function,
        summary=summary,
        baselines=tuple(baselines),
        output_spaces=tuple(output_spaces),
        efficient=efficient,
        sampled=sampled,
        options=None if options is None else tuple(options),
    )
    METHODS[name] = entry
    return entry


def method_names(*, include_auto: bool = False) -> list[str]:
    """Return the registered method names in registration order, optionally with ``"auto"`` first."""
    return ([AUTO_METHOD] if include_auto else []) + list(METHODS)


# --- methods that cannot work on integer ids ------------------------------------

_WORKING_ALTERNATIVE = (
    "Use method='integrated_gradients', which integrates along the field embeddings, "
    "or method='exact_shapley', which replaces whole field embeddings."
)
UNSUPPORTED_METHODS: dict[str, str] = {
    "integratedgradients": (
        "Integrated Gradients on the model inputs would interpolate between integer ids, "
        "and ids between two categories do not exist and have no gradient"
    ),
    "noisetunnel": "NoiseTunnel adds Gaussian noise to the inputs, and noisy integer ids are not valid ids",
    "layerconductance": (
        "LayerConductance interpolates the model inputs between baseline and sample, "
        "which is undefined for integer ids"
    ),
    "layergradientshap": (
        "LayerGradientShap draws random points between baseline and sample in input space, "
        "which is undefined for integer ids"
    ),
    "deepexplainer": (
        "shap's DeepExplainer propagates gradients back to float inputs, "
        "and an embedding lookup passes no gradient to its integer ids"
    ),
    "gradientexplainer": (
        "shap's GradientExplainer averages gradients at points between background and sample in input space, "
        "which is undefined for integer ids"
    ),
}
"""Methods that are not offered, keyed by normalised name (lower case, letters and digits only), with the reason."""


def _unsupported_reason(name: str) -> str | None:
    normalised = re.sub(r"[^a-z0-9]", "", name.lower())
    for prefix in ("", "captumattr", "captum", "shap"):
        if normalised.startswith(prefix) and normalised[len(prefix) :] in UNSUPPORTED_METHODS:
            return UNSUPPORTED_METHODS[normalised[len(prefix) :]]
    return None


# --- checks shared by both entry points -------------------------------------------


def _check_choice(value: str, allowed: Sequence[str], what: str, function: str) -> None:
    if value not in allowed:
        msg = f"{function}: unknown {what} {value!r}; valid: {', '.join(allowed)}"
        raise ValueError(msg)


def _check_background(baseline: str, background: Data | None, function: str) -> None:
    if baseline in BACKGROUND_BASELINES and background is None:
        msg = (
            f"{function}: baseline {baseline!r} needs background rows; pass background= as a CTRDataset or a dict "
            "of model inputs, for example background_sample(dataset, 100)"
        )
        raise ValueError(msg)


def count_players(model: CTRModel, players: Players) -> int:
    """Return the number of players: the model's fields, or the groups of ``players`` after checking them."""
    names, _, _ = model_players(model, players)
    return len(names)


@contextmanager
def restored_modes(model: torch.nn.Module) -> Iterator[None]:
    """Run the body, then put every submodule back in its previous train or eval mode, also after an error."""
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield
    finally:
        for module, training in modes:
            module.train(training)


# --- attributions -------------------------------------------------------------


def check_method_name(method: str) -> str:
    """Return ``method`` when it is ``"auto"`` or registered, else raise ValueError.

    For a method that cannot work on integer ids, the message gives the
    reason and names methods that work. For other unknown names it lists the
    valid ones.
    """
    if not isinstance(method, str):
        msg = f"explain: method must be a method name; got {type(method).__name__}"
        raise TypeError(msg)
    if method == AUTO_METHOD or method in METHODS:
        return method
    reason = _unsupported_reason(method)
    if reason is not None:
        msg = f"explain: method {method!r} is not offered: {reason}. {_WORKING_ALTERNATIVE}"
        raise ValueError(msg)
    msg = f"explain: unknown method {method!r}; valid: {', '.join(method_names(include_auto=True))}"
    raise ValueError(msg)


def resolve_method(method: str, model: CTRModel, players: Players = None) -> AttributionMethod:
    """Return the registered method that ``method`` names, resolving ``"auto"`` by the number of players.

    Raises
    ------
    ValueError
        For a name :func:`check_method_name` rejects, and for ``"auto"`` above
        :data:`AUTO_EXACT_MAX_PLAYERS` players while no sampled Shapley
        method is registered.
    """
    check_method_name(method)
    if method != AUTO_METHOD:
        return METHODS[method]
    n_players = count_players(model, players)
    if n_players <= AUTO_EXACT_MAX_PLAYERS:
        return METHODS["exact_shapley"]
    if AUTO_SAMPLED_METHOD in METHODS:
        return METHODS[AUTO_SAMPLED_METHOD]
    msg = (
        f"explain: method='auto' computes exact Shapley values for at most {AUTO_EXACT_MAX_PLAYERS} players, "
        f"and there are {n_players}; no sampled Shapley method is registered yet. Group the fields into at most "
        f"{AUTO_EXACT_MAX_PLAYERS} players with players={{group: [fields]}} (--groups in the CLI), "
        "or use method='integrated_gradients'"
    )
    raise ValueError(msg)


def explain(
    model: CTRModel,
    data: Data,
    rows: np.ndarray | Sequence[int] | None = None,
    *,
    method: str = "integrated_gradients",
    baseline: str = "zero",
    players: Players = None,
    output_space: str = "logit",
    background: Data | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[float], None] | None = None,
    **method_options: Any,
) -> Attribution:
    """Attribute each sample's prediction to its fields, or to groups of fields, with a registered method.

    Parameters
    ----------
    model : CTRModel
        The model. Every submodule is back in its previous train or eval mode
        when this returns or raises.
    data : CTRDataset or dict of str to Tensor
        The samples. Integrated Gradients needs a CTRDataset.
    rows : array of int, optional
        Rows of ``data`` to explain (default: all). The result records them.
    method : str
        A name from :data:`METHODS`, or ``"auto"``: exact Shapley values up to
        :data:`AUTO_EXACT_MAX_PLAYERS` players, else :data:`AUTO_SAMPLED_METHOD`
        once it is registered.
    baseline : str
        What an absent field is replaced with, one of
        ``workbench.explain.game.GAME_BASELINES``. Each method lists the ones it supports.
    players : mapping of str to list of str, optional
        Field groups that act as one player each. Every field must be in exactly one group.
    output_space : ``"logit"`` (log-odds, default) or ``"probability"`` (sigmoid of the logit).
    background : CTRDataset or dict of str to Tensor, optional
        Background rows, all of them used, for the ``"mean"`` and ``"expectation"``
        baselines (see :func:`background_sample`).
    chunk_size : int
        Rows per forward pass of the coalition game; caps memory and does not
        change the values. Integrated Gradients batches by its own ``batch_size``.
    progress : callable, optional
        Called with the finished fraction in [0, 1].
    **method_options
        The method's own options, for example ``n_steps`` and ``batch_size``
        for Integrated Gradients or ``max_players`` for the exact methods.

    Returns
    -------
    Attribution
        ``values`` of shape (n_samples, n_players) in the units of ``output_space``.
        With ``method="auto"``, ``parameters["requested_method"]`` is ``"auto"``
        and ``method`` names the method that ran.

    Raises
    ------
    ValueError
        For an unknown or unsupported method, baseline, output space or option,
        with the valid names in the message.
    """
    entry = resolve_method(method, model, players)
    _check_choice(baseline, tuple(GAME_BASELINES), "baseline", "explain")
    _check_choice(output_space, OUTPUT_SPACES, "output_space", "explain")
    if baseline not in entry.baselines:
        working = [name for name, other in METHODS.items() if baseline in other.baselines]
        msg = (
            f"explain: method {entry.name!r} supports the baselines {', '.join(entry.baselines)}; got {baseline!r}. "
            f"Choose one of those, or a method that supports {baseline!r}: {', '.join(working) or 'none registered'}"
        )
        raise ValueError(msg)
    if output_space not in entry.output_spaces:
        working = [name for name, other in METHODS.items() if output_space in other.output_spaces]
        msg = (
            f"explain: method {entry.name!r} works in {' and '.join(entry.output_spaces)} space only; got "
            f"output_space={output_space!r}. Methods for {output_space!r}: {', '.join(working) or 'none registered'}"
        )
        raise ValueError(msg)
    if entry.options is not None:
        unknown = sorted(set(method_options) - set(entry.options))
        if unknown:
            valid = ", ".join(entry.options) or "none"
            msg = f"explain: method {entry.name!r} has no option {', '.join(unknown)}; its options: {valid}"
            raise ValueError(msg)
    _check_background(baseline, background, "explain")

    with restored_modes(model):
        attribution = entry.function(
            model,
            data,
            rows,
            baseline=baseline,
            players=players,
            output_space=output_space,
            background=background,
            chunk_size=chunk_size,
            progress=progress,
            **method_options,
        )
    if method == AUTO_METHOD:
        attribution = replace(attribution, parameters={**attribution.parameters, "requested_method": AUTO_METHOD})
    return attribution


# --- the registered attribution methods ---------------------------------------


def _integrated_gradients(
    model: CTRModel,
    data: Data,
    rows: np.ndarray | Sequence[int] | None,
    *,
    baseline: str,
    players: Players,
    output_space: str,
    background: Data | None,
    chunk_size: int,
    progress: Callable[[float], None] | None,
    n_steps: int = DEFAULT_N_STEPS,
    batch_size: int = 128,
) -> Attribution:
    """Run Integrated Gradients on the field embeddings, and with ``players`` sum each group's fields."""
    # IG needs no background rows and forwards no coalitions, and explain() has checked the output space.
    del output_space, background, chunk_size
    if not isinstance(data, CTRDataset):
        msg = "explain: method 'integrated_gradients' needs a CTRDataset; got a dict of tensors"
        raise TypeError(msg)
    attribution = integrated_gradients(
        model,
        data,
        None if rows is None else np.asarray(rows, dtype=np.int64),
        baseline=baseline,
        n_steps=n_steps,
        batch_size=batch_size,
        players=players,
        progress=progress,
    )
    if players is None:
        return attribution
    # IG is additive over slots, so integrated_gradients has summed each group; the raw values follow the groups.
    _, groups, _ = model_players(model, players)
    raw = attribution.raw_values
    return replace(
        attribution,
        raw_values=None if raw is None else _group_raw_values(raw, groups),
        parameters={**attribution.parameters, "players": {name: list(fields) for name, fields in groups.items()}},
    )


def _exact_shapley(model: CTRModel, data: Data, rows: np.ndarray | Sequence[int] | None, **game: Any) -> Attribution:
    """Return exact Shapley values from all ``2**n_players`` coalitions.

    ``game`` holds the registry's shared keywords and ``max_players``, all passed on to
    :func:`exact_indices`.
    """
    return exact_indices(model, data, rows, **game).shapley


BANZHAF_NOTE = "Banzhaf values are not efficient: their sum need not equal prediction - base value"


def _exact_banzhaf(model: CTRModel, data: Data, rows: np.ndarray | Sequence[int] | None, **game: Any) -> Attribution:
    """Return exact Banzhaf values, with ``parameters["efficient"]`` set to False."""
    banzhaf = exact_indices(model, data, rows, **game).banzhaf
    return Attribution(
        values=banzhaf.main_effects,
        base_values=banzhaf.base_values,
        predictions=banzhaf.predictions,
        field_names=banzhaf.player_names,
        rows=banzhaf.rows,
        method="exact_banzhaf",
        baseline=banzhaf.baseline,
        output_space=banzhaf.output_space,
        parameters={**banzhaf.parameters, "efficient": False, "note": BANZHAF_NOTE},
        labels=banzhaf.labels,
        raw_values=banzhaf.raw_values,
    )


register_method(
    "integrated_gradients",
    _integrated_gradients,
    "Integrated Gradients along the field embeddings (captum LayerIntegratedGradients); baselines zero and oov, logit space only",
    baselines=("zero", "oov"),
    output_spaces=("logit",),
    options=("n_steps", "batch_size"),
)
register_method(
    "exact_shapley",
    _exact_shapley,
    "exact Shapley values from all 2**n_players coalitions (up to 16 players by default)",
    options=("max_players",),
)
register_method(
    "exact_banzhaf",
    _exact_banzhaf,
    "exact Banzhaf values from all 2**n_players coalitions; not efficient",
    efficient=False,
    options=("max_players",),
)
register_method(
    "permutation_shapley",
    permutation_shapley,
    "sampled Shapley values from antithetic permutations, with standard errors; any number of players",
    sampled=True,
    options=("budget", "random_state"),
)
register_method(
    "kernel_shap",
    kernel_shap,
    "KernelSHAP: weighted least squares over paired coalitions with efficiency enforced, with standard errors",
    sampled=True,
    options=("budget", "random_state"),
)
register_method(
    "captum_feature_ablation",
    captum_feature_ablation,
    "captum FeatureAblation on the field embeddings: v(all) - v(all but the field); not efficient",
    efficient=False,
    options=("budget",),
)
register_method(
    "captum_shapley_sampling",
    captum_shapley_sampling,
    "captum ShapleyValueSampling on the field embeddings, permutations shared by all samples",
    sampled=True,
    options=("budget", "random_state"),
)


# --- interactions -----------------------------------------------------------------


class InteractionFunction(Protocol):
    """The signature every registered interaction method implements."""

    def __call__(
        self,
        model: CTRModel,
        data: Data,
        rows: np.ndarray | Sequence[int] | None,
        *,
        index: str,
        baseline: str,
        players: Players,
        output_space: str,
        background: Data | None,
        chunk_size: int,
        progress: Callable[[float], None] | None,
        **options: Any,
    ) -> Interaction: ...


@dataclass(frozen=True)
class InteractionMethod:
    """A registered interaction method and the indices it computes."""

    name: str
    function: InteractionFunction
    summary: str
    indices: tuple[str, ...]
    options: tuple[str, ...] | None = None


INTERACTION_METHODS: dict[str, InteractionMethod] = {}
"""Registered interaction methods by name."""


def _exact_interactions(
    model: CTRModel, data: Data, rows: np.ndarray | Sequence[int] | None, *, index: str, **game: Any
) -> Interaction:
    """Return one exact interaction index; ``game`` is passed on to :func:`exact_indices`."""
    return exact_indices(model, data, rows, **game).interactions[index]


def register_interaction_method(
    name: str,
    function: InteractionFunction,
    summary: str,
    *,
    indices: Sequence[str],
    options: Sequence[str] | None = None,
) -> InteractionMethod:
    """Add an interaction method to :data:`INTERACTION_METHODS` and return its entry."""
    if name in INTERACTION_METHODS:
        msg = f"the interaction method name {name!r} is already taken"
        raise ValueError(msg)
    unknown = [index for index in indices if index not in INTERACTION_INDICES]
    if unknown:
        msg = f"interaction method {name!r} lists unknown indices: {', '.join(unknown)}"
        raise ValueError(msg)
    entry = InteractionMethod(name, function, summary, tuple(indices), None if options is None else tuple(options))
    INTERACTION_METHODS[name] = entry
    return entry


register_interaction_method(
    "exact",
    _exact_interactions,
    "exact pair indices from all 2**n_players coalitions (up to 16 players by default)",
    indices=tuple(INTERACTION_INDICES),
    options=("max_players",),
)
register_interaction_method(
    "permutation_sii",
    permutation_sii,
    "sampled Shapley interaction index of every pair from permutation walks, with standard errors",
    indices=("SII",),
    options=("budget", "random_state"),
)


def interactions(
    model: CTRModel,
    data: Data,
    rows: np.ndarray | Sequence[int] | None = None,
    *,
    index: str = "SII",
    baseline: str = "zero",
    players: Players = None,
    output_space: str = "logit",
    background: Data | None = None,
    method: str = "exact",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Callable[[float], None] | None = None,
    **options: Any,
) -> Interaction:
    """Compute main effects and pair interactions of fields, or of field groups, under one interaction index.

    Parameters
    ----------
    model, data, rows, baseline, players, output_space, background, chunk_size, progress
        As in :func:`explain`.
    index : str
        ``"SII"``, ``"STII"``, ``"FSII"`` or ``"BII"``
        (``workbench.explain.interaction.INTERACTION_INDICES``). Lower case is accepted.
    method : str
        A name from :data:`INTERACTION_METHODS`; ``"exact"`` evaluates all
        ``2**n_players`` coalitions per sample.
    **options
        The method's own options, for example ``max_players`` for ``"exact"``.

    Returns
    -------
    Interaction
        ``main_effects`` of shape (n_samples, n_players) and ``pairs`` of shape
        (n_samples, n_players, n_players), in the units of ``output_space``.

    Raises
    ------
    ValueError
        For an unknown index, method, baseline, output space or option, with
        the valid names in the message.
    """
    if not isinstance(index, str):
        msg = f"interactions: index must be a string such as 'SII'; got {type(index).__name__}"
        raise TypeError(msg)
    index = index.upper()
    _check_choice(method, tuple(INTERACTION_METHODS), "method", "interactions")
    entry = INTERACTION_METHODS[method]
    _check_choice(index, entry.indices, "index", "interactions")
    _check_choice(baseline, tuple(GAME_BASELINES), "baseline", "interactions")
    _check_choice(output_space, OUTPUT_SPACES, "output_space", "interactions")
    if entry.options is not None:
        unknown = sorted(set(options) - set(entry.options))
        if unknown:
            valid = ", ".join(entry.options) or "none"
            msg = f"interactions: method {method!r} has no option {', '.join(unknown)}; its options: {valid}"
            raise ValueError(msg)
    _check_background(baseline, background, "interactions")

    with restored_modes(model):
        return entry.function(
            model,
            data,
            rows,
            index=index,
            baseline=baseline,
            players=players,
            output_space=output_space,
            background=background,
            chunk_size=chunk_size,
            progress=progress,
            **options,
        )


# --- inputs from files and widgets ---------------------------------------------


def background_sample(dataset: CTRDataset, n_rows: int, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Draw ``min(n_rows, len(dataset))`` distinct rows with ``seed`` and return their model inputs.

    The rows are sorted, so the same seed gives the same background on every call.
    """
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1:
        msg = f"the number of background rows must be an integer >= 1; got {n_rows!r}"
        raise ValueError(msg)
    if len(dataset) == 0:
        msg = "the data set has no rows to draw background rows from"
        raise ValueError(msg)
    generator = np.random.default_rng(seed)
    rows = np.sort(generator.choice(len(dataset), size=min(int(n_rows), len(dataset)), replace=False))
    return dataset.tensors(rows)


def groups_from_json(text: str) -> dict[str, list[str]]:
    """Parse field groups written as a JSON object, such as ``{"user": ["user_id", "gender"], ...}``.

    Only the shape is checked here (an object of group name to a list of
    field names). Whether every field of the model is in exactly one group is
    checked when the groups are used.

    Raises
    ------
    ValueError
        When the text is not JSON, or not an object whose values are lists of strings.
    """
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as err:
        msg = f"field groups are not valid JSON: {err}"
        raise ValueError(msg) from err
    if not isinstance(parsed, dict) or not parsed:
        msg = 'field groups must be a non-empty JSON object of group name to field names, such as {"user": ["user_id"]}'
        raise ValueError(msg)
    groups = {}
    for name, members in parsed.items():
        if not isinstance(members, list) or not all(isinstance(member, str) for member in members):
            msg = f"group {name!r} must be a list of field names; got {json.dumps(members)}"
            raise ValueError(msg)
        groups[name] = members
    return groups
