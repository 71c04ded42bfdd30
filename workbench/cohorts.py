"""Cohorts: named subsets of a data set's rows, defined by field values, scores, labels and value frequency.

A :class:`Cohort` is a plain description that can be saved as JSON and reused
in comparisons and reports. :func:`select_rows` turns it into row numbers of
one data set. Conditions combine with AND. Within one field, the listed values
combine with OR.

Conditions:

* ``values``: categorical fields and the raw values to keep, as the model saw
  them (``<OOV>`` matches values it did not know).
* ``ranges``: numeric fields and a closed interval of raw values (missing values are outside).
* ``score_range``: predicted CTR (probability) in a closed interval.
* ``label``: 0 or 1.
* ``correct``: the prediction ``CTR >= threshold`` equals the label (True) or
  not (False).
* ``oov``: ``"with"`` keeps rows with at least one OOV value in
  ``oov_fields`` (every categorical and sequence field when empty),
  ``"without"`` keeps rows with none.
* ``frequency_field`` with ``frequency_buckets``: keep rows whose value of that
  categorical field is in the head, torso or tail of its training frequency
  (see :func:`frequency_buckets`).

Score and correctness conditions need the model's logits for every row.
Nothing here imports Streamlit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.data import CTRDataset
from workbench.schema import OOV_TOKEN, PAD_INDEX, Field, Schema

FREQUENCY_BUCKETS = ("head", "torso", "tail")
DEFAULT_FREQUENCY_CUTS = (0.5, 0.8)
"""Cumulative shares of training occurrences where the head ends and the torso ends."""

OOV_OPTIONS = ("any", "with", "without")
ALL_ROWS = "all rows"


class CohortError(ValueError):
    """Raised when a cohort definition is invalid for a data set, or selects no rows where rows are needed."""


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


@dataclass(frozen=True)
class Cohort:
    """A named row filter. The default cohort keeps every row."""

    name: str = ALL_ROWS
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Categorical field to the raw values to keep."""
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    """Numeric field to a closed interval ``(low, high)`` of raw values."""
    score_range: tuple[float, float] | None = None
    """Closed interval of predicted CTR, 0 to 1."""
    label: int | None = None
    correct: bool | None = None
    threshold: float = 0.5
    """Predicted CTR at and above which a row counts as a predicted click, for ``correct``."""
    oov: str = "any"
    oov_fields: tuple[str, ...] = ()
    frequency_field: str | None = None
    frequency_buckets: tuple[str, ...] = ()
    frequency_cuts: tuple[float, float] = DEFAULT_FREQUENCY_CUTS

    def __post_init__(self) -> None:
        # Freeze the containers so that a cohort can be a cache key.
        object.__setattr__(self, "values", {k: tuple(str(v) for v in vs) for k, vs in dict(self.values).items()})
        object.__setattr__(self, "ranges", {k: (float(lo), float(hi)) for k, (lo, hi) in dict(self.ranges).items()})
        object.__setattr__(self, "oov_fields", tuple(self.oov_fields))
        object.__setattr__(self, "frequency_buckets", tuple(self.frequency_buckets))
        object.__setattr__(self, "frequency_cuts", tuple(float(c) for c in self.frequency_cuts))
        if self.score_range is not None:
            object.__setattr__(self, "score_range", (float(self.score_range[0]), float(self.score_range[1])))
        self._check()

    def _check(self) -> None:
        if not str(self.name).strip():
            msg = "a cohort needs a non-empty name"
            raise CohortError(msg)
        for name, chosen in self.values.items():
            if not chosen:
                msg = f"cohort {self.name!r}: field {name!r} lists no values; list at least one or drop the field"
                raise CohortError(msg)
        for name, (low, high) in self.ranges.items():
            if not low <= high:
                msg = f"cohort {self.name!r}: the range of {name!r} is empty ({low} > {high}); give low <= high"
                raise CohortError(msg)
        if self.score_range is not None:
            low, high = self.score_range
            if not 0.0 <= low <= high <= 1.0:
                msg = (
                    f"cohort {self.name!r}: the score range ({low}, {high}) must satisfy 0 <= low <= high <= 1 "
                    "(scores are predicted CTRs)"
                )
                raise CohortError(msg)
        if self.label not in (None, 0, 1):
            msg = f"cohort {self.name!r}: label must be 0, 1 or None; got {self.label!r}"
            raise CohortError(msg)
        if not 0.0 < self.threshold < 1.0:
            msg = f"cohort {self.name!r}: the correctness threshold must be between 0 and 1; got {self.threshold}"
            raise CohortError(msg)
        if self.oov not in OOV_OPTIONS:
            msg = f"cohort {self.name!r}: oov must be one of {', '.join(OOV_OPTIONS)}; got {self.oov!r}"
            raise CohortError(msg)
        unknown = sorted(set(self.frequency_buckets) - set(FREQUENCY_BUCKETS))
        if unknown:
            msg = f"cohort {self.name!r}: unknown frequency bucket(s) {unknown}; use {', '.join(FREQUENCY_BUCKETS)}"
            raise CohortError(msg)
        if bool(self.frequency_buckets) != (self.frequency_field is not None):
            msg = f"cohort {self.name!r}: give frequency_field and frequency_buckets together"
            raise CohortError(msg)
        head, torso = self.frequency_cuts
        if not 0.0 < head < torso < 1.0:
            msg = f"cohort {self.name!r}: frequency cuts must satisfy 0 < head < torso < 1; got {self.frequency_cuts}"
            raise CohortError(msg)

    @property
    def needs_scores(self) -> bool:
        """Whether selecting rows needs the model's predictions."""
        return self.score_range is not None or self.correct is not None

    @property
    def is_everything(self) -> bool:
        """Whether the cohort has no condition."""
        return not (
            self.values
            or self.ranges
            or self.needs_scores
            or self.label is not None
            or self.oov != "any"
            or self.frequency_field is not None
        )

    def describe(self) -> str:
        """Return the conditions as one line of text, such as ``device ∈ {mobile} · label = 1``."""
        parts = [f"{name} ∈ {{{', '.join(chosen)}}}" for name, chosen in self.values.items()]
        parts += [f"{low:g} ≤ {name} ≤ {high:g}" for name, (low, high) in self.ranges.items()]
        if self.score_range is not None:
            parts.append(f"{self.score_range[0]:g} ≤ predicted CTR ≤ {self.score_range[1]:g}")
        if self.label is not None:
            parts.append(f"label = {self.label}")
        if self.correct is not None:
            parts.append(f"{'correct' if self.correct else 'wrong'} at threshold {self.threshold:g}")
        if self.oov != "any":
            where = ", ".join(self.oov_fields) if self.oov_fields else "any field"
            parts.append(f"{self.oov} OOV values in {where}")
        if self.frequency_field is not None:
            parts.append(f"{self.frequency_field} in the {' or '.join(self.frequency_buckets)}")
        return " · ".join(parts) if parts else "all rows"

    def to_dict(self) -> dict[str, Any]:
        """Return the cohort as plain JSON data; :meth:`from_dict` reads it back."""
        return {
            "name": self.name,
            "values": {k: list(v) for k, v in self.values.items()},
            "ranges": {k: list(v) for k, v in self.ranges.items()},
            "score_range": None if self.score_range is None else list(self.score_range),
            "label": self.label,
            "correct": self.correct,
            "threshold": self.threshold,
            "oov": self.oov,
            "oov_fields": list(self.oov_fields),
            "frequency_field": self.frequency_field,
            "frequency_buckets": list(self.frequency_buckets),
            "frequency_cuts": list(self.frequency_cuts),
        }

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Cohort:
        """Build a cohort from :meth:`to_dict` output; unknown keys are rejected with the list of known ones."""
        if not isinstance(spec, Mapping):
            msg = f"a cohort must be a JSON object; got {type(spec).__name__}"
            raise CohortError(msg)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(spec) - known)
        if unknown:
            msg = f"unknown cohort key(s) {unknown}; known keys: {', '.join(sorted(known))}"
            raise CohortError(msg)
        try:
            return cls(**_typed_spec(spec))
        except (TypeError, ValueError, OverflowError) as err:
            # OverflowError: float() of an integer beyond the float range, such as 10**400 in a range.
            if isinstance(err, CohortError):
                raise
            msg = f"invalid cohort {spec.get('name', ALL_ROWS)!r}: {err}"
            raise CohortError(msg) from err


def _typed_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Check the JSON types of a cohort spec before the dataclass converts them."""
    out = dict(spec)

    for key in ("name", "oov"):
        if key in out and not isinstance(out[key], str):
            msg = f"cohort key {key!r} must be a string; got {out[key]!r}"
            raise CohortError(msg)
    if out.get("frequency_field") is not None and not isinstance(out["frequency_field"], str):
        msg = f"cohort key 'frequency_field' must be a field name or null; got {out['frequency_field']!r}"
        raise CohortError(msg)

    for key in ("oov_fields", "frequency_buckets"):
        items = out.get(key, [])
        if not isinstance(items, (list, tuple)) or not all(isinstance(item, str) for item in items):
            msg = f"cohort key {key!r} must be a list of strings; got {out[key]!r}"
            raise CohortError(msg)

    for key in ("values", "ranges"):
        if key in out and not isinstance(out[key], Mapping):
            msg = f"cohort key {key!r} must be an object of field name to {'values' if key == 'values' else '[low, high]'}"
            raise CohortError(msg)
    for name, chosen in dict(out.get("values", {})).items():
        if isinstance(chosen, str) or not isinstance(chosen, Sequence):
            msg = f"cohort values of field {name!r} must be a list of raw values; got {chosen!r}"
            raise CohortError(msg)
    for name, bounds in dict(out.get("ranges", {})).items():
        if not isinstance(bounds, Sequence) or len(bounds) != 2 or isinstance(bounds, str):
            msg = f"cohort range of field {name!r} must be [low, high]; got {bounds!r}"
            raise CohortError(msg)
    if out.get("score_range") is not None:
        bounds = out["score_range"]
        if not isinstance(bounds, Sequence) or len(bounds) != 2 or isinstance(bounds, str):
            msg = f"cohort score_range must be [low, high] in predicted CTR; got {bounds!r}"
            raise CohortError(msg)
    if out.get("correct") is not None and not isinstance(out["correct"], bool):
        msg = f"cohort key 'correct' must be true, false or null; got {out['correct']!r}"
        raise CohortError(msg)
    if isinstance(out.get("label"), bool):
        msg = f"cohort label must be 0, 1 or null; got {out['label']!r}"
        raise CohortError(msg)
    return out


def parse_cohort(text: str) -> Cohort:
    """Read a cohort from JSON text, or from a JSON file when ``text`` is the path of one.

    A file may also hold a list of cohorts, as the app's cohort download does:
    ``FILE#NAME`` picks the cohort ``NAME`` from it, and a list of one cohort
    needs no name.
    """
    name = None
    path_text = ""
    if not text.lstrip().startswith("{"):
        path_text, _, name = text.partition("#") if not _is_file(text) else (text, "", "")
        candidate = Path(path_text)
        if not _is_file(path_text):
            msg = f"cohort {text[:200]!r} is neither JSON text nor an existing JSON file; give a path or a JSON object"
            raise CohortError(msg)
        try:
            text = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            msg = f"could not read the cohort file {path_text!r} as UTF-8 text: {err}"
            raise CohortError(msg) from err
    try:
        spec = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        msg = f"the cohort is not valid JSON: {err}"
        raise CohortError(msg) from err
    if isinstance(spec, list):
        cohorts = {cohort.name: cohort for cohort in load_cohorts(text)}
        if name:
            if name not in cohorts:
                msg = f"the cohort file has no cohort named {name!r}; its cohorts: {', '.join(cohorts)}"
                raise CohortError(msg)
            return cohorts[name]
        if len(cohorts) != 1:
            example = f"{path_text or 'cohorts.json'}#{next(iter(cohorts), 'NAME')}"
            msg = (
                f"the cohort file holds {len(cohorts)} cohorts ({', '.join(cohorts)}); "
                f"pick one with FILE#NAME, for example {example}"
            )
            raise CohortError(msg)
        return next(iter(cohorts.values()))
    if name:
        msg = f"#{name} picks a cohort from a file with a list of cohorts, but this file holds a single cohort"
        raise CohortError(msg)
    return Cohort.from_dict(spec)


def _is_file(text: str) -> bool:
    """Check whether ``text`` names an existing file; text that cannot be a path (NUL byte, too long) names none."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def save_cohorts(cohorts: Sequence[Cohort]) -> str:
    """Return a list of cohorts as JSON text that :func:`load_cohorts` reads back."""
    return json.dumps([cohort.to_dict() for cohort in cohorts], indent=2)


def load_cohorts(text: str) -> list[Cohort]:
    """Read JSON text written by :func:`save_cohorts` (a list of cohort objects); names must be unique."""
    try:
        specs = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        msg = f"the cohort file is not valid JSON: {err}"
        raise CohortError(msg) from err
    if not isinstance(specs, list):
        msg = "a cohort file must contain a JSON list of cohort objects"
        raise CohortError(msg)
    if not specs:
        msg = "the cohort file holds an empty list; it needs at least one cohort object"
        raise CohortError(msg)
    cohorts = [Cohort.from_dict(spec) for spec in specs]
    names = [cohort.name for cohort in cohorts]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        msg = f"cohort names must be unique; repeated: {', '.join(duplicated)}"
        raise CohortError(msg)
    return cohorts


# --- frequency buckets -------------------------------------------------------------------------------


def frequency_buckets(f: Field, cuts: tuple[float, float] = DEFAULT_FREQUENCY_CUTS) -> np.ndarray:
    """Give every index of a categorical field's vocabulary its training-frequency bucket.

    Values are sorted by training count, most frequent first. The head contains
    the most frequent values until they cover ``cuts[0]`` of all training
    occurrences (the value that crosses the cut included), the torso the next
    values up to ``cuts[1]``, and the tail the rest. PAD and OOV fall in the
    tail, since the model saw no (or too few) training rows with them.

    Returns
    -------
    ndarray of str, shape (len(vocabulary),)
        ``"head"``, ``"torso"`` or ``"tail"`` per index.
    """
    if f.kind != "categorical" or f.vocabulary is None:
        msg = f"frequency buckets need a categorical field; {f.name!r} is {f.kind}"
        raise CohortError(msg)
    counts = np.asarray(f.vocabulary.counts, dtype=np.float64)
    buckets = np.full(len(f.vocabulary), "tail", dtype=object)
    total = counts.sum()
    if total <= 0:
        msg = f"field {f.name!r} has no training counts in its vocabulary, so it has no frequency buckets"
        raise CohortError(msg)
    order = np.argsort(-counts, kind="stable")
    # Share of occurrences covered before each value, so the value that crosses a cut stays on the upper side.
    covered_before = (np.cumsum(counts[order]) - counts[order]) / total
    value_buckets = np.where(covered_before < cuts[0], "head", np.where(covered_before < cuts[1], "torso", "tail"))
    buckets[order + 1] = value_buckets  # vocabulary values take indices 1..n
    return buckets


# --- selecting rows ---------------------------------------------------------------------------------


def _field(schema: Schema, name: str, kinds: tuple[str, ...], condition: str) -> Field:
    if name not in schema.field_names:
        msg = f"cohort condition on unknown field {name!r}; fields: {', '.join(schema.field_names)}"
        raise CohortError(msg)
    f = schema[name]
    if f.kind not in kinds:
        msg = f"{condition} need a {' or '.join(kinds)} field; {name!r} is {f.kind}"
        raise CohortError(msg)
    return f


def _value_mask(dataset: CTRDataset, f: Field, chosen: tuple[str, ...]) -> np.ndarray:
    assert f.vocabulary is not None
    indices = {f.vocabulary.oov_index if value == OOV_TOKEN else f.vocabulary.index_of(value) for value in chosen}
    unknown = [value for value in chosen if value != OOV_TOKEN and f.vocabulary.index_of(value) == f.vocabulary.oov_index]
    if unknown:
        msg = (
            f"field {f.name!r} has no value(s) {', '.join(map(repr, unknown[:5]))} in its vocabulary; "
            f"pick values the model knows, or {OOV_TOKEN} for unknown ones"
        )
        raise CohortError(msg)
    return np.isin(dataset.inputs[f.name], list(indices))


def _oov_mask(dataset: CTRDataset, cohort: Cohort) -> np.ndarray:
    schema = dataset.schema
    names = cohort.oov_fields or tuple(f.name for f in schema.fields if f.kind in ("categorical", "sequence"))
    found = np.zeros(len(dataset), dtype=bool)
    for name in names:
        f = _field(schema, name, ("categorical", "sequence"), "OOV conditions")
        assert f.vocabulary is not None
        encoded = dataset.inputs[name] == f.vocabulary.oov_index
        found |= encoded if encoded.ndim == 1 else encoded.any(axis=1)
    return found if cohort.oov == "with" else ~found


def select_rows(
    cohort: Cohort,
    dataset: CTRDataset,
    *,
    logits: np.ndarray | None = None,
    allow_empty: bool = False,
) -> np.ndarray:
    """Return the row numbers of ``dataset`` in ``cohort``, ascending.

    Parameters
    ----------
    cohort : Cohort
    dataset : CTRDataset
    logits : ndarray of shape (len(dataset),), optional
        The model's logits for every row; required when ``cohort.needs_scores``.
    allow_empty : bool
        Return an empty array when no row matches, instead of raising.

    Raises
    ------
    CohortError
        On a condition that does not fit the data set's schema, missing logits,
        or (unless ``allow_empty``) when no row matches.
    """
    schema = dataset.schema
    keep = np.ones(len(dataset), dtype=bool)
    for name, chosen in cohort.values.items():
        keep &= _value_mask(dataset, _field(schema, name, ("categorical",), "value conditions"), chosen)
    for name, (low, high) in cohort.ranges.items():
        _field(schema, name, ("numeric",), "range conditions")
        # The raw column, not the float32 encoding, so that values on an edge stay on their side.
        # Missing values are NaN and fall outside every range.
        raw = pd.to_numeric(dataset.raw[name], errors="coerce").to_numpy(dtype=np.float64)
        keep &= (raw >= low) & (raw <= high)
    if cohort.label is not None:
        keep &= dataset.labels == cohort.label
    if cohort.needs_scores:
        if logits is None or np.shape(logits) != (len(dataset),):
            msg = (
                f"cohort {cohort.name!r} filters on predictions, so it needs the model's logits for all "
                f"{len(dataset):,} rows"
            )
            raise CohortError(msg)
        scores = _sigmoid(logits)
        if cohort.score_range is not None:
            keep &= (scores >= cohort.score_range[0]) & (scores <= cohort.score_range[1])
        if cohort.correct is not None:
            right = (scores >= cohort.threshold) == (dataset.labels == 1)
            keep &= right if cohort.correct else ~right
    if cohort.oov != "any":
        keep &= _oov_mask(dataset, cohort)
    if cohort.frequency_field is not None:
        f = _field(schema, cohort.frequency_field, ("categorical",), "frequency conditions")
        buckets = frequency_buckets(f, cohort.frequency_cuts)[dataset.inputs[f.name]]
        keep &= np.isin(buckets, list(cohort.frequency_buckets))
    rows = np.flatnonzero(keep)
    if rows.size == 0 and not allow_empty:
        msg = (
            f"cohort {cohort.name!r} ({cohort.describe()}) matches none of the {len(dataset):,} rows of "
            f"{dataset.name or 'the data set'}; widen its conditions or load more rows"
        )
        raise CohortError(msg)
    return rows


def restrict(dataset: CTRDataset, rows: np.ndarray, *, name: str | None = None) -> CTRDataset:
    """Return the rows ``rows`` of ``dataset`` as a data set of their own, renumbered from 0.

    ``source_rows`` of the result gives each new row's number in ``dataset``'s
    file, so results on a cohort can point back to the file's rows.
    """
    rows = np.asarray(rows, dtype=np.int64)
    source_rows = dataset.source_rows[rows] if dataset.source_rows is not None else rows
    return CTRDataset(
        schema=dataset.schema,
        inputs={key: array[rows] for key, array in dataset.inputs.items()},
        labels=dataset.labels[rows],
        raw=dataset.raw.iloc[rows].reset_index(drop=True),
        name=name or dataset.name,
        source=dataset.source,
        oov_counts={
            key: int((array[rows] == dataset.schema[key].vocabulary.oov_index).sum())
            for key, array in dataset.inputs.items()
            if dataset.schema[key].vocabulary is not None
        },
        source_rows=source_rows,
    )


def value_options(dataset: CTRDataset, name: str, limit: int = 500) -> list[tuple[str, int]]:
    """List a categorical field's values in ``dataset`` with their row counts, most frequent first.

    These are the values a cohort can select, as the model saw them (``<OOV>``
    for unknown ones, PAD left out).
    """
    f = _field(dataset.schema, name, ("categorical",), "value conditions")
    assert f.vocabulary is not None
    indices, counts = np.unique(dataset.inputs[name], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    out = []
    for position in order[:limit]:
        index = int(indices[position])
        if index == PAD_INDEX:
            continue
        out.append((f.vocabulary.decode([index])[0], int(counts[position])))
    return out
