"""Helpers of the Counterfactuals page: editor choices, history edits, search requests and result tables.

This module does not import Streamlit, so every helper can be tested on its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.counterfactual import SEARCHABLE_KINDS, Counterfactual, CounterfactualSearch
from workbench.data import CTRDataset
from workbench.explain.api import AUTO_EXACT_MAX_PLAYERS
from workbench.faithfulness import has_pair_attention
from workbench.schema import OOV_TOKEN, PAD_INDEX, PAD_TOKEN, Field, Schema, decode_value
from workbench.sequence_edits import drop_behaviours, insert_behaviour, move_to_recent, reverse_history
from workbench.sweeps import FieldSweep
from workbench.whatif import value_choices

MAX_VALUE_CHOICES = 5_000
"""Largest number of vocabulary values one editor select box offers (the most frequent in training)."""

SPECIAL_VALUES = {OOV_TOKEN: "unknown value", PAD_TOKEN: "missing value"}
"""Inputs a categorical field can take besides its vocabulary, with their meaning."""

SLIDER_STEPS = 100
"""A numeric slider moves in steps of about 1/SLIDER_STEPS of the observed range, rounded to a power of ten."""

PAIR_SEPARATOR = " ↔ "

UNCHANGED_TOLERANCE = 1e-6
"""Changes of click probability below this count as no change. Forwarding a row alone or in another batch moves
its float32 prediction by about 1e-8 (measured on models/ad_clicks_deepfm, row 3)."""

USER_ID_NAMES = frozenset({"user", "uid", "userid", "customerid", "memberid", "visitorid"})
"""Field names (lower case, separators removed) that the search keeps fixed by default: a counterfactual that
swaps the user answers no question about the impression."""


# --- editor choices -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoricalChoices:
    """The values an editor select box offers for one categorical field, with their training counts.

    ``values`` lists vocabulary values by training count (most frequent
    first), then values added on purpose (the row's own value and values
    loaded from a counterfactual) when the cap left them out, then
    ``<OOV>`` and ``<PAD>``.
    """

    values: list[str]
    counts: dict[str, int]
    n_vocabulary: int
    n_offered: int
    """Vocabulary values offered because of their frequency (at most the cap)."""

    @property
    def capped(self) -> bool:
        return self.n_offered < self.n_vocabulary

    def label(self, value: str) -> str:
        """Format one choice for the select box, such as ``Berlin (seen 4,120×)``."""
        if value in SPECIAL_VALUES:
            return f"{value} ({SPECIAL_VALUES[value]})"
        return f"{value} (seen {self.counts.get(value, 0):,}×)"


def categorical_choices(
    field: Field, current: str, *, extra: Sequence[str] = (), limit: int = MAX_VALUE_CHOICES
) -> CategoricalChoices:
    """List the editor's choices for ``field``: its ``limit`` most frequent values plus ``current`` and ``extra``.

    ``current`` is the row's value decoded from the model input (``<OOV>``
    and ``<PAD>`` included). Values of ``extra`` that are not in the vocabulary
    are left out.
    """
    frame = value_choices(field, min_count=0)
    counts = dict(zip(frame["value"].astype(str), frame["training_count"].astype(int), strict=True))
    offered = [str(value) for value in frame["value"].iloc[:limit]]
    listed = set(offered)
    added = []
    for value in (current, *extra):
        value = str(value)
        if value in counts and value not in listed:
            added.append(value)
            listed.add(value)
    specials = list(SPECIAL_VALUES)
    return CategoricalChoices(
        values=offered + added + specials, counts=counts, n_vocabulary=len(frame), n_offered=len(offered)
    )


@dataclass(frozen=True)
class NumericRange:
    """Slider bounds of one numeric field in raw units, and the row's value."""

    low: float
    high: float
    step: float
    value: float

    @property
    def format(self) -> str:
        """Return the slider's printf format, with as many decimals as the step has (``%.0f`` for integers)."""
        return f"%.{max(0, -math.floor(math.log10(self.step)))}f"


def _step(span: float, integers: bool) -> float:
    if integers:
        return 1.0
    if span <= 0:
        return 1.0
    return float(10.0 ** math.floor(math.log10(span / SLIDER_STEPS)))


def numeric_range(dataset: CTRDataset, field: Field, row: int) -> NumericRange:
    """Return the slider of ``field``: the observed range of the loaded data and the row's value, in raw units.

    The range comes from the raw column of the data file. The row's value is
    its raw number, or the number the model saw (the training mean) when the
    file left it empty. Integer-valued columns get a step of 1.
    """
    column = pd.to_numeric(dataset.raw[field.name], errors="coerce").to_numpy(dtype=np.float64)
    finite = column[np.isfinite(column)]
    raw_value = column[row]
    value = float(raw_value) if np.isfinite(raw_value) else float(decode_value(field, dataset.inputs[field.name][row]))
    if finite.size == 0:
        low = high = value
        integers = False
    else:
        low, high = float(finite.min()), float(finite.max())
        integers = bool(np.all(finite == np.round(finite)))
    low, high = min(low, value), max(high, value)
    step = _step(high - low, integers)
    if high <= low:
        # A constant column: a slider needs a range, so give one step on each side.
        low, high = low - step, high + step
    if not integers:
        low = math.floor(low / step) * step
        high = math.ceil(high / step) * step
    return NumericRange(low=float(low), high=float(high), step=float(step), value=value)


def editable_fields(schema: Schema, *, sequence_model: bool) -> list[str]:
    """Return the fields the editor lets the user change: categorical, numeric and (outside sequence models) histories.

    A sequence model's histories are edited with the history actions, because
    they are paired position by position; dense vectors are shown read-only.
    """
    kinds = {"categorical", "numeric"} if sequence_model else {"categorical", "numeric", "sequence"}
    return [f.name for f in schema.fields if f.kind in kinds]


def changed_values(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the fields whose widget value differs from the row's own value, in the order of ``defaults``."""
    return {name: values[name] for name, default in defaults.items() if name in values and values[name] != default}


# --- history edits of sequence models -------------------------------------------------------------


@dataclass(frozen=True)
class HistoryEdits:
    """Edits of a sequence model's behaviour history, applied after the field edits in a fixed order.

    The order is: drop the behaviours at ``drop``, move the behaviour at
    ``move_to_recent`` to the most recent place, reverse the order, and
    insert the behaviour ``insert`` (history name, raw value pairs) as the
    most recent one. Positions refer to the row's own history
    (0 = the oldest kept).
    """

    drop: tuple[int, ...] = ()
    move_to_recent: int | None = None
    reverse: bool = False
    insert: tuple[tuple[str, str], ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.drop and self.move_to_recent is None and not self.reverse and not self.insert

    def describe(self) -> str:
        """Return the edits in words, joined by ``; `` (empty when there is none)."""
        parts = []
        if self.drop:
            parts.append(f"drop position(s) {', '.join(map(str, self.drop))}")
        if self.move_to_recent is not None:
            parts.append(f"move position {self.move_to_recent} to the most recent")
        if self.reverse:
            parts.append("reverse the order")
        if self.insert:
            parts.append("insert " + " · ".join(value for _, value in self.insert) + " as the most recent")
        return "; ".join(parts)

    def apply(self, model: Any, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return one row's model inputs with the edits applied (a copy of ``inputs`` when there is none).

        Raises ValueError when a position contains no behaviour, when one
        behaviour is both dropped and moved, or when an inserted value is not
        in its history's vocabulary.
        """
        out = dict(inputs)
        if self.is_empty:
            return out
        if self.move_to_recent is not None and self.move_to_recent in self.drop:
            msg = f"position {self.move_to_recent} cannot be both dropped and moved to the most recent place"
            raise ValueError(msg)
        present = _present_positions(model, out)
        if self.drop:
            out = drop_behaviours(model, out, list(self.drop))
        if self.move_to_recent is not None:
            # Dropping compacts the history, so the moved behaviour's position is its place among those kept.
            remaining = [p for p in present if p not in set(self.drop)]
            position = (
                remaining.index(self.move_to_recent) if self.move_to_recent in remaining else self.move_to_recent
            )
            out = move_to_recent(model, out, position)
        if self.reverse:
            out = reverse_history(model, out)
        if self.insert:
            out = insert_behaviour(model, out, dict(self.insert))
        return out


def _present_positions(model: Any, inputs: Mapping[str, torch.Tensor]) -> list[int]:
    """Positions of one row's history that hold a behaviour in any paired history."""
    ids = np.stack([np.asarray(inputs[history]).reshape(-1) for history, _ in model.pairs])
    return [int(p) for p in np.flatnonzero((ids != PAD_INDEX).any(axis=0))]


# --- counterfactual search ------------------------------------------------------------------------


def pair_options(schema: Schema) -> dict[str, tuple[str, str]]:
    """Return the pairs of categorical fields the search can keep together, keyed by their label ``a ↔ b``."""
    names = [f.name for f in schema.fields if f.kind == "categorical"]
    return {f"{a}{PAIR_SEPARATOR}{b}": (a, b) for a, b in combinations(names, 2)}


def default_immutable(schema: Schema) -> list[str]:
    """Return the searchable fields that name a user id (``user_id``, ``user``, ``uid``...), fixed by default."""
    return [
        name for name in searchable_fields(schema) if re.sub(r"[^a-z0-9]", "", name.lower()) in USER_ID_NAMES
    ]


def searchable_fields(schema: Schema) -> list[str]:
    """Return the fields the counterfactual search substitutes (categorical and numeric)."""
    return [f.name for f in schema.fields if f.kind in SEARCHABLE_KINDS]


@dataclass(frozen=True)
class SearchRequest:
    """The options of one counterfactual search as the form submitted them; hashable, so it keys the cache.

    ``cohort_rows`` and ``cohort_seed`` draw the cohort of the rank goals;
    ``time_limit`` is in seconds, 0 for none.
    """

    goal_kind: str
    goal_value: float
    immutable: tuple[str, ...] = ()
    max_changes: int = 3
    min_count: int = 1
    together: tuple[tuple[str, str], ...] = ()
    n_counterfactuals: int = 5
    beam_width: int = 10
    values_per_field: int = 50
    max_evaluations: int = 50_000
    time_limit: float = 30.0
    random_state: int = 0
    cohort_rows: int = 1_000
    cohort_seed: int = 0

    @property
    def goal(self) -> str:
        """Return the goal as ``KIND:VALUE`` text (``workbench.counterfactual.parse_goal``)."""
        return f"{self.goal_kind}:{self.goal_value!r}"

    @property
    def needs_cohort(self) -> bool:
        return self.goal_kind in ("rank_top", "rank_drop")

    def options(self) -> dict[str, Any]:
        """Return the keyword arguments of ``find_counterfactuals`` besides the cohort rows."""
        return {
            "immutable": list(self.immutable),
            "max_changes": int(self.max_changes),
            "min_count": int(self.min_count),
            "together": [list(pair) for pair in self.together],
            "n_counterfactuals": int(self.n_counterfactuals),
            "beam_width": int(self.beam_width),
            "values_per_field": int(self.values_per_field),
            "max_evaluations": int(self.max_evaluations),
            "time_limit": float(self.time_limit) if self.time_limit > 0 else None,
            "random_state": int(self.random_state),
        }


def plausibility_value(counterfactual: Counterfactual) -> float:
    """Return the smallest training count of the new categorical values, NaN when only numbers change."""
    plausibility = counterfactual.plausibility
    return float("nan") if math.isinf(plausibility) else plausibility


RANK_GOALS = ("rank_top", "rank_drop")
"""Goal kinds that rank the row within a cohort of other rows."""

_TABLE_COLUMNS = (
    "counterfactual", "n_changes", "prediction", "change", "rank_after", "plausibility", "margin", "changes",
)  # fmt: skip
"""Columns of :func:`counterfactual_table` before the per-field columns; ``rank_after`` for rank goals only."""


def is_rank_search(search: CounterfactualSearch) -> bool:
    return search.goal.kind in RANK_GOALS


def counterfactual_table(search: CounterfactualSearch, field_order: Sequence[str]) -> pd.DataFrame:
    """Build one line per counterfactual, with one column per field that any of them changes.

    Columns: ``counterfactual`` (rank, 1 = best), ``n_changes``,
    ``prediction`` (click probability), ``change`` (prediction minus the
    row's, in probability), ``rank_after`` (rank goals only: the row's rank
    in the cohort with these changes, 1 = highest predicted CTR),
    ``plausibility`` (smallest training count of the new values, NaN when
    only numeric fields change), ``margin`` (logit units past the goal),
    ``changes`` (the substitutions in words) and, per changed field in
    ``field_order``, ``before → after`` (empty where that counterfactual
    keeps the field).
    """
    changed = {change.field for counterfactual in search.counterfactuals for change in counterfactual.changes}
    fields = [name for name in field_order if name in changed]
    lines = []
    for rank, counterfactual in enumerate(search.counterfactuals, start=1):
        by_field = {change.field: f"{change.before} → {change.after}" for change in counterfactual.changes}
        line = {
            "counterfactual": rank,
            "n_changes": counterfactual.n_changes,
            "prediction": counterfactual.prediction,
            "change": counterfactual.prediction - search.prediction_before,
            "rank_after": counterfactual.rank,
            "plausibility": plausibility_value(counterfactual),
            "margin": counterfactual.margin,
            "changes": counterfactual.describe(),
        }
        line.update({name: by_field.get(name, "") for name in fields})
        lines.append(line)
    columns = [c for c in _TABLE_COLUMNS if c != "rank_after" or is_rank_search(search)]
    return pd.DataFrame(lines, columns=[*columns, *fields])


def changed_field_columns(table: pd.DataFrame) -> list[str]:
    """Return the per-field columns of :func:`counterfactual_table`."""
    return [column for column in table.columns if column not in _TABLE_COLUMNS]


def rank_summary(search: CounterfactualSearch) -> str | None:
    """Describe the cohort of a rank goal: its size, the row's rank now and the ranks the counterfactuals reach.

    Returns None for goals on the predicted CTR and for a result without the
    ``cohort_size`` and ``rank_before`` parameters.
    """
    cohort_size = search.parameters.get("cohort_size")
    rank_before = search.parameters.get("rank_before")
    if not is_rank_search(search) or cohort_size is None or rank_before is None:
        return None
    text = (
        f"Cohort of {int(cohort_size):,} rows, this row included (rank 1 = highest predicted CTR): "
        f"the row ranks {int(rank_before):,} now"
    )
    reached = sorted({c.rank for c in search.counterfactuals if c.rank is not None})
    if len(reached) == 1:
        text += f"; the counterfactuals reach rank {reached[0]:,}"
    elif reached:
        text += f"; the counterfactuals reach ranks {reached[0]:,} to {reached[-1]:,}"
    return text + "."


def single_change_table(search: CounterfactualSearch) -> pd.DataFrame:
    """Return the best single substitution per field, with the change of prediction and whether it meets the goal."""
    frame = search.single_changes.copy()
    frame["change"] = frame["prediction"].astype(float) - search.prediction_before
    frame["meets_goal"] = frame["margin"].astype(float) >= 0
    return frame[["field", "value", "prediction", "change", "margin", "meets_goal"]]


def editor_values(counterfactual: Counterfactual, schema: Schema) -> dict[str, Any]:
    """Return a counterfactual's new values as editor widget values: text for categorical, float for numeric fields."""
    out: dict[str, Any] = {}
    for change in counterfactual.changes:
        out[change.field] = float(change.after) if schema[change.field].kind == "numeric" else change.after
    return out


def search_status(search: CounterfactualSearch) -> str:
    """Describe how the search ended: budget, completeness, evaluations and seconds."""
    if search.already_met:
        return "The row already meets the goal; nothing was searched."
    if search.evaluations == 0:
        # The goal is unreachable or no value is allowed, and the search's message gives the reason.
        return f"Nothing was searched (0 evaluations in {search.seconds:.2f} s)."
    if search.stopped == "time":
        end = "stopped at the time limit"
    elif search.stopped == "evaluations":
        end = "stopped at the evaluation budget"
    elif search.exhaustive:
        end = "evaluated every allowed combination"
    else:
        end = "beam search (not every combination evaluated)"
    return f"{search.evaluations:,} evaluations in {search.seconds:.2f} s · {end}"


def ctr_delta_options(delta: float, *, edited: bool) -> dict[str, Any]:
    """Return the ``delta`` options of ``st.metric`` for a change of click probability, in percentage points.

    Without an edit there is no delta. A change smaller than
    :data:`UNCHANGED_TOLERANCE` (float32 noise between two forward passes)
    is shown as a grey ``0.00 pp`` without an arrow. A real change too small
    for two decimals keeps two significant digits instead of reading
    ``+0.00 pp``.
    """
    if not edited:
        return {"delta": None}
    if abs(delta) < UNCHANGED_TOLERANCE:
        return {"delta": "0.00 pp", "delta_color": "off", "delta_arrow": "off"}
    points = 100 * delta
    text = f"{points:+.2f}"
    if float(text) == 0:
        text = f"{points:+.2g}"
    return {"delta": f"{text} pp"}


# --- field sweep ----------------------------------------------------------------------------------


def sweep_table(sweep: FieldSweep) -> pd.DataFrame:
    """Return the sweep's table without the column that does not apply to its kind of field.

    A categorical sweep has no ``numeric_value`` and a numeric sweep no
    ``training_count``; both would show only empty cells.
    """
    frame = sweep.to_frame()
    unused = "training_count" if sweep.kind == "numeric" else "numeric_value"
    return frame.drop(columns=[unused])


# --- faithfulness ---------------------------------------------------------------------------------

ATTENTION_EXPLAINER = "attention"
"""Name of the model's own field x field attention among the explainers compared for faithfulness."""

FAITHFULNESS_EXPLAINERS = {
    "exact_shapley": "exact Shapley values (at most 16 players)",
    "permutation_shapley": "sampled Shapley values from antithetic permutations",
    "integrated_gradients": "Integrated Gradients (logit space, zero or OOV baseline)",
    ATTENTION_EXPLAINER: "the attention each field receives in the model's own field x field attention",
}
"""Explainers the faithfulness section can compare, with their descriptions."""


def faithfulness_explainers(model: Any, n_players: int) -> tuple[list[str], list[str]]:
    """Return the explainers this model can offer and those selected by default.

    Exact Shapley values need at most 16 players, and attention needs a
    field x field attention probe. The default compares the exact (or else
    permutation) Shapley values with Integrated Gradients and, when present,
    attention.
    """
    offered = [
        name
        for name in FAITHFULNESS_EXPLAINERS
        if (name != "exact_shapley" or n_players <= AUTO_EXACT_MAX_PLAYERS)
        and (name != ATTENTION_EXPLAINER or has_pair_attention(model))
    ]
    shapley = "exact_shapley" if "exact_shapley" in offered else "permutation_shapley"
    default = [shapley, "integrated_gradients", *([ATTENTION_EXPLAINER] if ATTENTION_EXPLAINER in offered else [])]
    return offered, default


@dataclass(frozen=True)
class FaithfulnessRequest:
    """The options of one faithfulness comparison as the form submitted them; hashable, so it keys the cache.

    ``n_rows`` rows are drawn with ``seed``, which also seeds the random
    orders, the sampled explainers and the infidelity's drop sets.
    ``groups`` is canonical JSON of field groups, or None for one player per field.
    """

    explainers: tuple[str, ...]
    n_rows: int = 20
    seed: int = 0
    baseline: str = "zero"
    output_space: str = "logit"
    background_rows: int = 100
    groups: str | None = None
    n_random: int = 10
    with_infidelity: bool = True
    n_perturbations: int = 100
    normalize_infidelity: bool = False
