"""Counterfactual search: the fewest field-value substitutions that move one prediction to a goal.

A counterfactual of a sample replaces the values of a few fields with other
values of their vocabularies (or points of a numeric grid) so that the
predicted click probability meets a goal:

* ``above`` / ``below``: the probability is at least / at most a threshold;
* ``change``: the probability moves by at least ``value`` (up when positive,
  down when negative);
* ``flip``: the probability crosses the threshold ``value``: up to at least
  it when the sample is below, down to at most it otherwise (a decision flip);
* ``rank_top`` / ``rank_drop``: the sample's rank by predicted probability
  within a cohort of rows becomes ``value`` or better / worse than ``value``.
  Rank 1 is the highest prediction, and ties count in the sample's favour.

Every goal becomes a threshold on the probability, and the search measures
progress as the margin in logit units (``logit(p) - logit(threshold)`` when
raising), so candidates near 0 and near 1 compare fairly.

The search is a beam search over fields. Level 1 scores every allowed value
of every mutable field as a single change, in batches. Fields are tried in
the order of the sample's attribution against the goal, the field pulling
hardest the wrong way first. A budget that runs out has then spent its
evaluations on the fields most likely to matter. Each later level extends the ``beam_width``
most promising states by one more field, trying per field the values that
scored best as single changes. Solutions are not extended, so a
counterfactual never contains a smaller one.

Constraints: ``immutable`` fields are never changed, and at most
``max_changes`` fields change. A new value must have been seen at least
``min_count`` times in training (the vocabulary counts). ``together`` lists
field pairs whose combination must have been seen in the reference data,
such as an item with its category. Sequence and dense fields are not
substituted (see :mod:`workbench.sequence_edits` for histories).

The search is deterministic. ``random_state`` only seeds the attribution
that orders the fields when the model has more than 16 players and that
attribution is sampled.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.data import CTRDataset
from workbench.explain.api import explain, resolve_method
from workbench.schema import Field, decode_value
from workbench.whatif import forward_logits

GOAL_KINDS: dict[str, str] = {
    "above": "predicted CTR at least the value (a probability in (0, 1))",
    "below": "predicted CTR at most the value (a probability in (0, 1))",
    "change": "predicted CTR moves by at least the value (positive: up, negative: down)",
    "flip": "predicted CTR crosses the value: up to at least it from below, down to at most it from above",
    "rank_top": "rank within the cohort becomes the value or better (1 = highest predicted CTR)",
    "rank_drop": "rank within the cohort becomes worse than the value",
}
SEARCHABLE_KINDS = ("categorical", "numeric")
DEFAULT_NUMERIC_POINTS = 9
MAX_STORED_SOLUTIONS = 10_000
_EPSILON = 1e-12


class CounterfactualError(ValueError):
    """Raised when a goal or a constraint of a counterfactual search is invalid."""


@dataclass(frozen=True)
class Goal:
    """The target of a counterfactual search: a kind from :data:`GOAL_KINDS` and its value."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in GOAL_KINDS:
            msg = f"unknown goal {self.kind!r}; valid: {', '.join(GOAL_KINDS)}"
            raise CounterfactualError(msg)
        value = float(self.value)
        if not np.isfinite(value):
            msg = f"goal {self.kind}: the value must be a finite number; got {self.value!r}"
            raise CounterfactualError(msg)
        if self.kind in ("above", "below", "flip") and not 0 < value < 1:
            msg = f"goal {self.kind}: the threshold is a probability and must lie strictly between 0 and 1; got {value}"
            raise CounterfactualError(msg)
        if self.kind == "change" and (value == 0 or not -1 < value < 1):
            msg = f"goal change: the change of CTR must be non-zero and between -1 and 1; got {value}"
            raise CounterfactualError(msg)
        if self.kind in ("rank_top", "rank_drop") and (value != int(value) or value < 1):
            msg = f"goal {self.kind}: the rank must be an integer >= 1; got {self.value!r}"
            raise CounterfactualError(msg)

    def describe(self) -> str:
        """Return the goal in words, such as ``"predicted CTR >= 0.30"``."""
        if self.kind == "above":
            return f"predicted CTR >= {self.value:.4g}"
        if self.kind == "below":
            return f"predicted CTR <= {self.value:.4g}"
        if self.kind == "change":
            return f"predicted CTR {'+' if self.value > 0 else '-'}{abs(self.value):.4g} or more"
        if self.kind == "flip":
            return f"predicted CTR across {self.value:.4g}"
        if self.kind == "rank_top":
            return f"rank {int(self.value)} or better in the cohort"
        return f"rank worse than {int(self.value)} in the cohort"


def parse_goal(text: str) -> Goal:
    """Parse ``KIND:VALUE``, for example ``above:0.3``, ``change:-0.05`` or ``rank_top:10``."""
    kind, separator, value = str(text).partition(":")
    if not separator:
        msg = f"goal {text!r} must be written KIND:VALUE, such as above:0.3; kinds: {', '.join(GOAL_KINDS)}"
        raise CounterfactualError(msg)
    try:
        number = float(value)
    except ValueError:
        msg = f"goal {text!r}: {value!r} is not a number"
        raise CounterfactualError(msg) from None
    return Goal(kind.strip(), number)


@dataclass(frozen=True)
class Change:
    """One substituted field of a counterfactual: raw values before and after, and the new value's training count."""

    field: str
    before: str
    after: str
    training_count: int | None
    """Training rows with the new value; None for numeric fields."""


@dataclass(frozen=True)
class Counterfactual:
    """A set of substitutions that meets the goal, with the model's prediction for it."""

    changes: tuple[Change, ...]
    logit: float
    margin: float
    """How far past the threshold the logit is, in logit units (>= 0)."""
    rank: int | None = None
    """The rank in the cohort with these changes (1 = highest predicted CTR), for the rank goals; else None."""

    @property
    def prediction(self) -> float:
        return float(1 / (1 + np.exp(-self.logit)))

    @property
    def n_changes(self) -> int:
        return len(self.changes)

    @property
    def changed_fields(self) -> tuple[str, ...]:
        return tuple(change.field for change in self.changes)

    @property
    def plausibility(self) -> float:
        """The smallest training count among the new categorical values (infinite when only numbers change)."""
        counts = [change.training_count for change in self.changes if change.training_count is not None]
        return float(min(counts)) if counts else float("inf")

    def describe(self) -> str:
        """Return the substitutions as ``field: before -> after`` joined by ``; ``."""
        return "; ".join(f"{change.field}: {change.before} → {change.after}" for change in self.changes)


@dataclass(frozen=True)
class CounterfactualSearch:
    """The result of :func:`find_counterfactuals` for one sample.

    ``counterfactuals`` are ranked by number of changes, then by
    plausibility (larger training counts first), then by margin. An empty
    tuple means none was found, and ``message`` gives the reason and what to try.
    """

    row: int
    goal: Goal
    threshold: float
    """The probability the goal was turned into."""
    direction: str
    """``"up"`` when the prediction must reach at least ``threshold``, ``"down"`` when at most."""
    logit_before: float
    counterfactuals: tuple[Counterfactual, ...]
    single_changes: pd.DataFrame
    """Per mutable field, the best single substitution allowed on its own: field, value, prediction and margin.

    A field whose every single change breaks a ``together`` link is left out.
    """
    field_order: tuple[str, ...]
    """Mutable fields in the order they were tried, by attribution against the goal."""
    evaluations: int
    seconds: float
    stopped: str | None
    """``"evaluations"`` or ``"time"`` when a budget ended the search early, else None."""
    exhaustive: bool
    """True when every allowed combination up to ``max_changes`` fields was evaluated."""
    message: str
    parameters: dict[str, Any] = field(default_factory=dict)
    closest: Counterfactual | None = None
    """When nothing met the goal: the evaluated state with the largest margin (negative)."""
    already_met: bool = False
    """True when the sample met the goal before any change, so nothing was searched."""

    @property
    def prediction_before(self) -> float:
        return float(1 / (1 + np.exp(-self.logit_before)))

    @property
    def found(self) -> bool:
        return bool(self.counterfactuals)

    def to_frame(self) -> pd.DataFrame:
        """Return one line per (counterfactual, changed field), with the counterfactual's rank and prediction."""
        lines = []
        for rank, counterfactual in enumerate(self.counterfactuals, start=1):
            for change in counterfactual.changes:
                lines.append(
                    {
                        "row": self.row,
                        "counterfactual": rank,
                        "n_changes": counterfactual.n_changes,
                        "field": change.field,
                        "value_before": change.before,
                        "value_after": change.after,
                        "training_count": change.training_count,
                        "prediction_before": self.prediction_before,
                        "prediction_after": counterfactual.prediction,
                        "rank_after": counterfactual.rank,
                        "goal": self.goal.describe(),
                    }
                )
        columns = [
            "row", "counterfactual", "n_changes", "field", "value_before", "value_after",
            "training_count", "prediction_before", "prediction_after", "rank_after", "goal",
        ]  # fmt: skip
        return pd.DataFrame(lines, columns=columns)


# --- goals as thresholds ----------------------------------------------------------


def _logit(probability: float) -> float:
    probability = min(max(probability, _EPSILON), 1 - _EPSILON)
    return float(np.log(probability) - np.log1p(-probability))


def goal_threshold(goal: Goal, prediction: float, cohort_predictions: np.ndarray | None = None) -> tuple[float, str]:
    """Turn a goal into a probability threshold and a direction (``"up"`` or ``"down"``).

    ``cohort_predictions`` are the predicted probabilities of the other rows
    of the cohort (without the sample), needed for the rank goals.
    """
    if goal.kind == "above":
        return float(goal.value), "up"
    if goal.kind == "below":
        return float(goal.value), "down"
    if goal.kind == "flip":
        return float(goal.value), "up" if prediction < goal.value else "down"
    if goal.kind == "change":
        target = prediction + float(goal.value)
        if not 0 < target < 1:
            msg = f"goal change:{goal.value:+g} from a prediction of {prediction:.4f} asks for a CTR outside (0, 1)"
            raise CounterfactualError(msg)
        return target, "up" if goal.value > 0 else "down"
    if cohort_predictions is None or len(cohort_predictions) == 0:
        msg = f"goal {goal.kind} needs a cohort of other rows to rank the sample in; pass cohort_rows"
        raise CounterfactualError(msg)
    others = np.sort(np.asarray(cohort_predictions, dtype=np.float64))[::-1]
    rank = int(goal.value)
    if goal.kind == "rank_top":
        # Rank <= k: at most k - 1 other rows strictly above, so reaching the k-th highest other prediction suffices.
        if rank > len(others):
            msg = f"goal rank_top:{rank}: the cohort has only {len(others) + 1} rows, so every row already ranks there"
            raise CounterfactualError(msg)
        return float(others[rank - 1]), "up"
    # Rank > k: at least k other rows strictly above, so the prediction must fall below the k-th highest other one.
    if rank > len(others):
        msg = f"goal rank_drop:{rank}: the cohort has only {len(others) + 1} rows, so no row can rank below {rank}"
        raise CounterfactualError(msg)
    return float(np.nextafter(others[rank - 1], 0.0)), "down"


# --- candidates ---------------------------------------------------------------------


@dataclass
class _FieldCandidates:
    """Allowed substitute values of one mutable field, as encoded inputs with display strings."""

    field: Field
    encoded: np.ndarray  # (n_values,) int64 ids or float32 standardised numbers
    labels: list[str]
    counts: np.ndarray | None  # training counts, None for numeric fields


def _field_candidates(
    field_spec: Field, current: Any, min_count: int, reference: CTRDataset, numeric_points: int
) -> _FieldCandidates:
    if field_spec.kind == "categorical":
        assert field_spec.vocabulary is not None
        counts = np.asarray(field_spec.vocabulary.counts, dtype=np.int64)
        ids = np.arange(1, len(counts) + 1, dtype=np.int64)
        keep = (counts >= min_count) & (ids != int(current))
        # Most frequent first, ties in vocabulary order, so truncation keeps the most plausible values.
        order = np.argsort(-counts[keep], kind="stable")
        ids, counts = ids[keep][order], counts[keep][order]
        labels = [field_spec.vocabulary.values[i - 1] for i in ids]
        return _FieldCandidates(field_spec, ids, labels, counts)
    # Numeric: quantiles of the reference rows, so every point is a value the data has around it.
    column = np.asarray(reference.inputs[field_spec.name], dtype=np.float64)
    # method="nearest" keeps the points on values that occur in the data.
    quantiles = np.quantile(column, np.linspace(0.05, 0.95, numeric_points), method="nearest")
    points = np.unique(quantiles.astype(np.float32))
    points = points[~np.isclose(points, float(current), rtol=0, atol=1e-6)]
    return _FieldCandidates(field_spec, points, [decode_value(field_spec, p) for p in points], None)


class _PairIndex:
    """Value pairs of two fields seen together in the reference data, for the ``together`` constraint."""

    def __init__(self, reference: CTRDataset, first: str, second: str) -> None:
        self.first, self.second = first, second
        a = np.asarray(reference.inputs[first]).astype(np.int64)
        b = np.asarray(reference.inputs[second]).astype(np.int64)
        self.width = int(max(a.max(initial=0), b.max(initial=0))) + 1
        self.seen = np.unique(a * self.width + b)
        self._seen_codes = set(self.seen.tolist())

    def allowed(self, values_first: np.ndarray, value_second: int) -> np.ndarray:
        """Mask over ``values_first``: True where the pair with ``value_second`` was seen."""
        codes = np.asarray(values_first, dtype=np.int64) * self.width + int(value_second)
        return np.isin(codes, self.seen)

    def allowed_second(self, value_first: int, values_second: np.ndarray) -> np.ndarray:
        """Mask over ``values_second``: True where the pair with ``value_first`` was seen."""
        codes = int(value_first) * self.width + np.asarray(values_second, dtype=np.int64)
        return np.isin(codes, self.seen)

    def seen_pair(self, value_first: int, value_second: int) -> bool:
        return int(value_first) * self.width + int(value_second) in self._seen_codes


# --- the search -----------------------------------------------------------------------


@dataclass
class _State:
    changes: dict[str, int]  # field -> position in that field's candidate list
    margin: float
    logit: float


class _Evaluator:
    """Forwards batches of substituted copies of one sample and counts the rows against the budget."""

    def __init__(
        self,
        model: Any,
        sample: Mapping[str, torch.Tensor],
        candidates: dict[str, _FieldCandidates],
        *,
        direction: str,
        threshold_logit: float,
        max_evaluations: int,
        deadline: float | None,
        chunk_size: int,
    ) -> None:
        self.model = model
        self.sample = {name: np.asarray(x) for name, x in sample.items()}
        self.candidates = candidates
        self.sign = 1.0 if direction == "up" else -1.0
        self.threshold_logit = threshold_logit
        self.max_evaluations = max_evaluations
        self.deadline = deadline
        self.chunk_size = chunk_size
        self.evaluations = 0
        self.stopped: str | None = None

    def margin(self, logits: np.ndarray) -> np.ndarray:
        return self.sign * (np.asarray(logits) - self.threshold_logit)

    def evaluate(self, blocks: list[tuple[dict[str, int], str, np.ndarray]]) -> list[np.ndarray]:
        """Return the logits of each block: the state's changes plus ``field`` set to each listed candidate.

        Blocks beyond the budget are cut short (their arrays are shorter than
        requested), and :attr:`stopped` names the budget that ran out.
        """
        results: list[np.ndarray] = []
        pending: list[tuple[int, dict[str, np.ndarray]]] = []
        pending_rows = 0

        def flush() -> None:
            nonlocal pending, pending_rows
            if not pending:
                return
            merged = {
                name: torch.from_numpy(np.concatenate([inputs[name] for _, inputs in pending]))
                for name in self.sample
            }
            logits = forward_logits(self.model, merged, chunk_size=self.chunk_size)
            start = 0
            for index, inputs in pending:
                n = len(next(iter(inputs.values())))
                results[index] = logits[start : start + n]
                start += n
            self.evaluations += pending_rows
            pending, pending_rows = [], 0

        for changes, field_name, positions in blocks:
            if self.stopped is None and self.deadline is not None and time.monotonic() > self.deadline:
                self.stopped = "time"
            room = self.max_evaluations - self.evaluations - pending_rows
            if self.stopped is not None or room <= 0:
                self.stopped = self.stopped or "evaluations"
                results.append(np.empty(0))
                continue
            if room < len(positions):
                self.stopped = "evaluations"
                positions = positions[:room]
            results.append(np.empty(0))
            pending.append((len(results) - 1, self._inputs(changes, field_name, positions)))
            pending_rows += len(positions)
            if pending_rows >= self.chunk_size:
                flush()
        flush()
        return results

    def _inputs(self, changes: dict[str, int], field_name: str, positions: np.ndarray) -> dict[str, np.ndarray]:
        n = len(positions)
        out = {}
        for name, value in self.sample.items():
            column = np.repeat(value, n, axis=0)
            if name in changes:
                column[:] = self.candidates[name].encoded[changes[name]]
            if name == field_name:
                column[:] = self.candidates[name].encoded[positions].astype(column.dtype)
            out[name] = column
        return out


def _check_fields(names: Sequence[str], schema_names: Sequence[str], what: str) -> None:
    unknown = [name for name in names if name not in schema_names]
    if unknown:
        msg = f"{what} names unknown field(s) {', '.join(map(repr, unknown))}; fields: {', '.join(schema_names)}"
        raise CounterfactualError(msg)


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        msg = f"{name} must be an integer >= 1; got {value!r}"
        raise CounterfactualError(msg)
    return int(value)


def _links(together: Mapping[str, Sequence[str]] | Sequence[Sequence[str]] | None, schema_names: Sequence[str], fields: Mapping[str, Field]) -> list[tuple[str, str]]:
    """Normalise ``together`` (a mapping field -> linked fields, or a list of pairs) into unique pairs."""
    if not together:
        return []
    if isinstance(together, Mapping):
        pairs = [(str(a), str(b)) for a, linked in together.items() for b in ([linked] if isinstance(linked, str) else linked)]
    else:
        pairs = []
        for pair in together:
            if isinstance(pair, str) or len(pair) != 2:
                msg = f"together: each entry must be a pair of field names; got {pair!r}"
                raise CounterfactualError(msg)
            pairs.append((str(pair[0]), str(pair[1])))
    out: list[tuple[str, str]] = []
    for a, b in pairs:
        _check_fields([a, b], schema_names, "together")
        if a == b:
            msg = f"together: a field cannot be linked to itself ({a!r})"
            raise CounterfactualError(msg)
        for name in (a, b):
            if fields[name].kind != "categorical":
                msg = f"together: {name!r} is {fields[name].kind}; only categorical fields can be linked"
                raise CounterfactualError(msg)
        if (a, b) not in out and (b, a) not in out:
            out.append((a, b))
    return out


def find_counterfactuals(
    model: Any,
    data: CTRDataset,
    row: int,
    goal: Goal | str,
    *,
    immutable: Sequence[str] = (),
    max_changes: int = 3,
    min_count: int = 1,
    together: Mapping[str, Sequence[str]] | Sequence[Sequence[str]] | None = None,
    reference: CTRDataset | None = None,
    cohort_rows: Sequence[int] | np.ndarray | None = None,
    n_counterfactuals: int = 5,
    beam_width: int = 10,
    values_per_field: int = 50,
    max_values_per_field: int | None = None,
    numeric_points: int = DEFAULT_NUMERIC_POINTS,
    max_evaluations: int = 200_000,
    time_limit: float | None = None,
    method: str = "auto",
    baseline: str = "zero",
    random_state: int = 0,
    chunk_size: int = 4_096,
) -> CounterfactualSearch:
    """Search for the fewest field substitutions that bring one sample's prediction to ``goal``.

    Parameters
    ----------
    model : CTRModel
    data : CTRDataset
        The data that contains the sample (and the cohort for rank goals).
    row : int
        The sample's row in ``data``.
    goal : Goal or str
        A :class:`Goal` or its text form (see :func:`parse_goal`).
    immutable : list of str
        Fields that must keep their value, such as the user id or the country.
    max_changes : int
        The maximum number of fields one counterfactual may change.
    min_count : int
        A new categorical value must have been seen at least this many times
        in training (the vocabulary counts stored with the model).
    together : mapping of field to fields, or list of field pairs
        Linked categorical fields: when either field of a pair changes, the
        counterfactual's pair of values must occur in ``reference``. Example:
        ``{"item_id": ["category"]}`` keeps a new item within a category it
        was seen with.
    reference : CTRDataset, optional
        Rows that define which value pairs occur together and where the
        numeric grid lies; default ``data``. Pass the training data when it is
        loaded.
    cohort_rows : array of int, optional
        Rows of ``data`` that form the cohort of the rank goals (default: all).
    n_counterfactuals : int
        How many to return. Different sets of changed fields come first; the
        remaining places go to the best other solutions.
    beam_width : int
        States kept from one level to the next. At most two kept states share
        the same set of changed fields, for diversity.
    values_per_field : int
        Values tried per field when extending a state beyond level 1: those
        that scored best as single changes (for a linked field, the allowed
        values in order of single-change score, then training count).
    max_values_per_field : int, optional
        Cap on the values of one field tried at level 1 (the most frequent in
        training); default all allowed values.
    numeric_points : int
        Grid points for numeric fields: quantiles 5 % .. 95 % of ``reference``.
    max_evaluations : int
        Budget of model evaluations (forwarded rows) of the search. The
        attribution that orders the fields comes on top of it (``2**n_players``
        coalitions for exact Shapley values).
    time_limit : float, optional
        Budget in seconds of the search, checked between batches of
        candidates; the ordering attribution runs before the first check.
    method, baseline : str
        The attribution that orders the fields (``workbench.explain.explain``).
    random_state : int
        Seed of that attribution when it is sampled.
    chunk_size : int
        Rows per forward pass.

    Returns
    -------
    CounterfactualSearch
        With ``message`` explaining an empty result.

    Raises
    ------
    CounterfactualError
        For an invalid goal or constraint, or when no field may change.
    """
    started = time.monotonic()
    goal = parse_goal(goal) if isinstance(goal, str) else goal
    if not isinstance(goal, Goal):
        msg = f"goal must be a Goal or text such as 'above:0.3'; got {type(goal).__name__}"
        raise CounterfactualError(msg)
    if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= int(row) < len(data):
        msg = f"row must be an integer in 0..{len(data) - 1} of {data.name or 'the data'}; got {row!r}"
        raise IndexError(msg)
    row = int(row)
    max_changes = _check_positive_int(max_changes, "max_changes")
    n_counterfactuals = _check_positive_int(n_counterfactuals, "n_counterfactuals")
    beam_width = _check_positive_int(beam_width, "beam_width")
    values_per_field = _check_positive_int(values_per_field, "values_per_field")
    max_evaluations = _check_positive_int(max_evaluations, "max_evaluations")
    numeric_points = _check_positive_int(numeric_points, "numeric_points")
    if max_values_per_field is not None:
        max_values_per_field = _check_positive_int(max_values_per_field, "max_values_per_field")
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 0:
        msg = f"min_count must be an integer >= 0; got {min_count!r}"
        raise CounterfactualError(msg)
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and time_limit > 0):
        msg = f"time_limit must be a number of seconds > 0; got {time_limit!r}"
        raise CounterfactualError(msg)
    schema = model.schema
    fields = {f.name: f for f in schema.fields}
    immutable = [str(name) for name in ([immutable] if isinstance(immutable, str) else immutable)]
    _check_fields(immutable, schema.field_names, "immutable")
    links = _links(together, schema.field_names, fields)
    reference = data if reference is None else reference
    missing = [name for name in schema.field_names if name not in reference.inputs]
    if missing:
        msg = f"the reference data lacks the field(s) {', '.join(missing)} of the model"
        raise CounterfactualError(msg)

    sample = data.tensors(np.asarray([row]))
    logit_before = float(forward_logits(model, sample)[0])
    prediction_before = float(1 / (1 + np.exp(-logit_before)))
    cohort_predictions = None
    if cohort_rows is not None:
        cohort = np.asarray(cohort_rows).reshape(-1)
        if cohort.size == 0 or not np.issubdtype(cohort.dtype, np.integer):
            msg = f"cohort_rows must be a non-empty list of row numbers; got {cohort_rows!r}"
            raise CounterfactualError(msg)
        if cohort.min() < 0 or cohort.max() >= len(data):
            msg = f"cohort_rows must lie in 0..{len(data) - 1}; got {int(cohort.min())}..{int(cohort.max())}"
            raise CounterfactualError(msg)
    if goal.kind in ("rank_top", "rank_drop"):
        cohort = np.arange(len(data)) if cohort_rows is None else np.asarray(cohort_rows, dtype=np.int64).reshape(-1)
        cohort = cohort[cohort != row]
        if cohort.size == 0:
            msg = f"goal {goal.kind}: the cohort holds only row {row} itself; give other rows to rank it among"
            raise CounterfactualError(msg)
        cohort_logits = forward_logits(model, data.tensors(cohort), chunk_size=chunk_size)
        cohort_predictions = 1 / (1 + np.exp(-cohort_logits))
    unreachable = None
    try:
        threshold, direction = goal_threshold(goal, prediction_before, cohort_predictions)
    except CounterfactualError as err:
        if goal.kind != "change":
            raise
        # Unreachable for this row only (a CTR outside (0, 1)): a batch goes on with the other rows.
        unreachable = f"No counterfactual can exist for row {row}: {err}."
        threshold, direction = float("nan"), "up" if goal.value > 0 else "down"
    threshold_logit = _logit(threshold) if unreachable is None else float("nan")

    parameters = {
        "immutable": immutable,
        "max_changes": max_changes,
        "min_count": int(min_count),
        "together": [list(pair) for pair in links],
        "n_counterfactuals": n_counterfactuals,
        "beam_width": beam_width,
        "values_per_field": values_per_field,
        "max_values_per_field": max_values_per_field,
        "numeric_points": numeric_points,
        "max_evaluations": max_evaluations,
        "time_limit": time_limit,
        "method": method,
        "baseline": baseline,
        "random_state": random_state,
        "not_searched": [f.name for f in schema.fields if f.kind not in SEARCHABLE_KINDS],
    }
    if cohort_predictions is not None:
        parameters["cohort_size"] = int(len(cohort_predictions) + 1)
        parameters["rank_before"] = int(1 + np.sum(cohort_predictions > prediction_before))

    mutable = [f.name for f in schema.fields if f.kind in SEARCHABLE_KINDS and f.name not in immutable]
    if not mutable:
        msg = (
            "no field may change: every categorical or numeric field is immutable "
            f"({', '.join(immutable) or 'none'}), and histories and dense vectors are not substituted"
        )
        raise CounterfactualError(msg)

    def result(**values: Any) -> CounterfactualSearch:
        base = {
            "row": row,
            "goal": goal,
            "threshold": threshold,
            "direction": direction,
            "logit_before": logit_before,
            "counterfactuals": (),
            "single_changes": pd.DataFrame(columns=["field", "value", "prediction", "margin"]),
            "field_order": tuple(mutable),
            "evaluations": 0,
            "seconds": time.monotonic() - started,
            "stopped": None,
            "exhaustive": False,
            "parameters": parameters,
        }
        base.update(values)
        return CounterfactualSearch(**base)

    if unreachable is not None:
        return result(message=unreachable, exhaustive=True)
    sign = 1.0 if direction == "up" else -1.0
    if sign * (logit_before - threshold_logit) >= 0:
        where = f"predicted CTR is {prediction_before:.4f}"
        if "rank_before" in parameters:
            where = f"rank is {parameters['rank_before']:,} of {parameters['cohort_size']:,} ({where})"
        return result(
            message=f"Row {row} already meets the goal: its {where}; goal: {goal.describe()}.",
            exhaustive=True,
            already_met=True,
        )

    # Order the mutable fields by how hard their attribution pulls against the goal.
    attribution = explain(model, sample, None, method=method, baseline=baseline, **_seed_option(method, model, random_state))
    player_values = dict(zip(attribution.field_names, attribution.values[0], strict=True))
    field_order = sorted(mutable, key=lambda name: (sign * player_values.get(name, 0.0), schema.field_names.index(name)))
    parameters["attribution_method"] = attribution.method

    candidates = {
        name: _field_candidates(fields[name], np.asarray(sample[name])[0], int(min_count), reference, numeric_points)
        for name in field_order
    }
    if not any(len(candidate.encoded) for candidate in candidates.values()):
        return result(
            message=(
                f"No field of row {row} has an allowed new value: no categorical value was seen at least "
                f"{int(min_count):,} times in training, and no numeric field may change. Lower the minimum count or "
                "allow more fields to change."
            ),
            field_order=tuple(field_order),
            exhaustive=True,
        )
    pair_index = {(a, b): _PairIndex(reference, a, b) for a, b in links}
    deadline = None if time_limit is None else started + float(time_limit)
    evaluator = _Evaluator(
        model,
        sample,
        candidates,
        direction=direction,
        threshold_logit=threshold_logit,
        max_evaluations=max_evaluations,
        deadline=deadline,
        chunk_size=chunk_size,
    )
    current = {name: np.asarray(sample[name])[0] for name in schema.field_names}

    def encoded_value(state_changes: dict[str, int], name: str) -> Any:
        if name in state_changes:
            return candidates[name].encoded[state_changes[name]]
        return current[name]

    def allowed_positions(state_changes: dict[str, int], name: str) -> np.ndarray:
        """Positions in the candidate list of ``name`` that respect its links to values that are settled.

        A linked field that may still change does not filter: a new category
        and then an item of that category is how a linked pair changes
        together. Such an intermediate state is never a solution (see
        ``consistent``), but it can be extended.
        """
        positions = np.arange(len(candidates[name].encoded))
        for (a, b), index in pair_index.items():
            other = b if name == a else a
            if name not in (a, b) or (other in mutable and other not in state_changes):
                continue
            if name == a:
                mask = index.allowed(candidates[name].encoded[positions], int(encoded_value(state_changes, b)))
            elif name == b:
                mask = index.allowed_second(int(encoded_value(state_changes, a)), candidates[name].encoded[positions])
            positions = positions[mask]
        return positions

    def consistent(state_changes: dict[str, int]) -> bool:
        for (a, b), index in pair_index.items():
            if (a in state_changes or b in state_changes) and not index.seen_pair(
                int(encoded_value(state_changes, a)), int(encoded_value(state_changes, b))
            ):
                return False
        return True

    solutions: list[_State] = []
    solution_keys: set[frozenset[tuple[str, int]]] = set()
    best_single: dict[str, tuple[int, float, float]] = {}  # field -> (position, margin, logit)
    single_scores: dict[str, np.ndarray] = {}  # field -> margin per candidate position (NaN when not scored)
    closest: _State | None = None
    frontier = [_State({}, sign * (logit_before - threshold_logit), logit_before)]
    exhaustive = max_values_per_field is None
    seen_states: set[frozenset[tuple[str, int]]] = set()

    for level in range(1, max_changes + 1):
        blocks: list[tuple[dict[str, int], str, np.ndarray]] = []
        planned: set[frozenset[tuple[str, int]]] = set()
        for state in frontier:
            for name in field_order:
                if name in state.changes:
                    continue
                if level == 1:
                    positions = allowed_positions(state.changes, name)
                    if max_values_per_field is not None:
                        positions = positions[:max_values_per_field]
                else:
                    positions = allowed_positions(state.changes, name)
                    scores = single_scores.get(name)
                    if scores is not None:
                        # Best single-change scores first; unscored values (linked fields) by training count.
                        order_key = np.where(np.isnan(scores[positions]), -np.inf, scores[positions])
                        positions = positions[np.argsort(-order_key, kind="stable")]
                    if len(positions) > values_per_field:
                        exhaustive = False
                        positions = positions[:values_per_field]
                # A combination reached through another order, or from two states of this level, is evaluated once.
                fresh = []
                for position in positions:
                    key = frozenset({**state.changes, name: int(position)}.items())
                    if key not in seen_states and key not in planned:
                        planned.add(key)
                        fresh.append(position)
                if len(fresh):
                    blocks.append((state.changes, name, np.asarray(fresh, dtype=np.int64)))
        if not blocks:
            break
        results = evaluator.evaluate(blocks)

        new_states: list[_State] = []
        for (changes, name, positions), logits in zip(blocks, results, strict=True):
            positions = positions[: len(logits)]
            margins = evaluator.margin(logits)
            if level == 1:
                scores = np.full(len(candidates[name].encoded), np.nan)
                scores[positions] = margins
                single_scores[name] = scores
                # Only substitutions allowed on their own count: a new category without a matching item does not.
                allowed = np.asarray([consistent({name: int(position)}) for position in positions], dtype=bool)
                if allowed.any():
                    best = int(np.flatnonzero(allowed)[np.argmax(margins[allowed])])
                    best_single[name] = (int(positions[best]), float(margins[best]), float(logits[best]))
            for position, margin, logit in zip(positions, margins, logits, strict=True):
                state_changes = {**changes, name: int(position)}
                key = frozenset(state_changes.items())
                seen_states.add(key)
                state = _State(state_changes, float(margin), float(logit))
                if closest is None or state.margin > closest.margin:
                    closest = state
                if margin >= 0 and consistent(state_changes):
                    if _contains_solution(key, solution_keys):
                        continue
                    if len(solutions) < MAX_STORED_SOLUTIONS:
                        solutions.append(state)
                        solution_keys.add(key)
                else:
                    new_states.append(state)
        if evaluator.stopped is not None:
            exhaustive = False
            break
        if len(solutions) >= n_counterfactuals or level == max_changes:
            if level < max_changes:
                exhaustive = False
            break
        frontier = _beam(new_states, beam_width)
        if len(new_states) > len(frontier):
            exhaustive = False

    def as_counterfactual(state: _State) -> Counterfactual:
        changes = []
        for name in schema.field_names:
            if name not in state.changes:
                continue
            candidate = candidates[name]
            position = state.changes[name]
            changes.append(
                Change(
                    field=name,
                    before=decode_value(fields[name], current[name]),
                    after=candidate.labels[position],
                    training_count=None if candidate.counts is None else int(candidate.counts[position]),
                )
            )
        rank = None
        if cohort_predictions is not None:
            rank = int(1 + np.sum(cohort_predictions > 1 / (1 + np.exp(-state.logit))))
        return Counterfactual(tuple(changes), state.logit, state.margin, rank)

    chosen = _diverse([as_counterfactual(state) for state in solutions], n_counterfactuals)
    single = pd.DataFrame(
        [
            {
                "field": name,
                "value": candidates[name].labels[position],
                "prediction": float(1 / (1 + np.exp(-logit))),
                "margin": margin,
            }
            for name, (position, margin, logit) in best_single.items()
        ],
        columns=["field", "value", "prediction", "margin"],
    )
    if len(single):
        single = single.sort_values("margin", ascending=False, kind="stable").reset_index(drop=True)
    message = _message(
        goal, threshold, prediction_before, chosen, evaluator, exhaustive, max_changes, beam_width,
        None if closest is None else as_counterfactual(closest),
    )  # fmt: skip
    return result(
        counterfactuals=tuple(chosen),
        single_changes=single,
        field_order=tuple(field_order),
        evaluations=evaluator.evaluations,
        seconds=time.monotonic() - started,
        stopped=evaluator.stopped,
        exhaustive=exhaustive,
        message=message,
        closest=None if chosen or closest is None else as_counterfactual(closest),
    )


def _contains_solution(key: frozenset[tuple[str, int]], solutions: set[frozenset[tuple[str, int]]]) -> bool:
    """Return whether a proper subset of the changes ``key`` is already a solution.

    A key has at most ``max_changes`` items, so its subsets are few, and each
    lookup is a set membership test instead of a scan of all solutions.
    """
    items = tuple(key)
    return any(
        frozenset(subset) in solutions for size in range(1, len(items)) for subset in itertools.combinations(items, size)
    )


def _seed_option(method: str, model: Any, random_state: int) -> dict[str, Any]:
    """Pass ``random_state`` to the ordering attribution when it resolves to a sampled method."""
    entry = resolve_method(method, model)
    return {"random_state": random_state} if entry.options is not None and "random_state" in entry.options else {}


def _beam(states: list[_State], width: int) -> list[_State]:
    """Keep the ``width`` states with the largest margins, at most two per set of changed fields."""
    kept: list[_State] = []
    per_fields: dict[frozenset[str], int] = {}
    for state in sorted(states, key=lambda s: -s.margin):
        fields_key = frozenset(state.changes)
        if per_fields.get(fields_key, 0) >= 2:
            continue
        per_fields[fields_key] = per_fields.get(fields_key, 0) + 1
        kept.append(state)
        if len(kept) == width:
            break
    return kept


def _rank_key(counterfactual: Counterfactual) -> tuple[int, float, float, str]:
    return (counterfactual.n_changes, -counterfactual.plausibility, -counterfactual.margin, counterfactual.describe())


def _diverse(found: list[Counterfactual], n: int) -> list[Counterfactual]:
    """Pick ``n`` counterfactuals, fewest changes first; within a number of changes, one per set of changed fields first."""
    ranked = sorted(found, key=_rank_key)
    chosen: list[Counterfactual] = []
    for n_changes in sorted({counterfactual.n_changes for counterfactual in ranked}):
        level = [counterfactual for counterfactual in ranked if counterfactual.n_changes == n_changes]
        used_fields: set[tuple[str, ...]] = set()
        firsts = []
        for counterfactual in level:
            if counterfactual.changed_fields not in used_fields:
                firsts.append(counterfactual)
                used_fields.add(counterfactual.changed_fields)
        rest = [counterfactual for counterfactual in level if counterfactual not in firsts]
        chosen.extend((firsts + rest)[: n - len(chosen)])
        if len(chosen) == n:
            break
    return chosen


def _message(
    goal: Goal,
    threshold: float,
    prediction: float,
    chosen: list[Counterfactual],
    evaluator: _Evaluator,
    exhaustive: bool,
    max_changes: int,
    beam_width: int,
    closest: Counterfactual | None,
) -> str:
    target = f"{goal.describe()} (CTR {'>=' if evaluator.sign > 0 else '<='} {threshold:.4f}; now {prediction:.4f})"
    if chosen:
        fewest = chosen[0].n_changes
        return f"Found {len(chosen)} counterfactual(s) for {target}; the fewest changes needed: {fewest}."
    if evaluator.stopped is not None:
        budget = "time limit" if evaluator.stopped == "time" else f"budget of {evaluator.max_evaluations:,} evaluations"
        text = (
            f"No counterfactual found for {target} before the {budget} ran out. "
            "Raise the budget, allow more changed fields or loosen the constraints."
        )
    elif exhaustive:
        text = (
            f"No counterfactual exists for {target} with at most {max_changes} changed field(s) under these "
            "constraints: every allowed combination was evaluated. Allow more changed fields, fewer immutable "
            "fields or a lower minimum count."
        )
    else:
        text = (
            f"No counterfactual found for {target} with at most {max_changes} changed field(s); the beam search "
            f"(width {beam_width}) did not evaluate every combination, so one may still exist. Widen the beam, "
            "try more values per field or allow more changed fields."
        )
    if closest is not None:
        text += f" Closest: {closest.describe()} gives CTR {closest.prediction:.4f}."
    return text
