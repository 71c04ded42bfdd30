"""The sidebar's selection, cached loading and cached attributions, shared by all pages.

Cache rules:

* Bundles are loaded with ``st.cache_resource``, keyed by folder and manifest
  modification time, so one model object is shared by all sessions and a
  re-saved bundle is loaded again. The app never changes a shared model.
* Data sets, metrics, decoded values, attributions and interactions use
  ``st.cache_data`` keyed by a :data:`SourceKey` (bundle folder, manifest
  time, data file, file time, row limit) plus the computation's parameters
  (an :class:`AttributionSettings`), so changing an unrelated widget reuses
  the cached result.
* Counterfactual edits of a sequence model's history are not cached: each
  session keeps its own list of edits per data set row in ``st.session_state``.
* The Counterfactuals page caches what-if edits by (data key, row, field
  changes, history edits, attribution settings), searches by (data key, row,
  search request), and sweeps and faithfulness comparisons by their options.
* When ``WORKBENCH_CACHE_DIR`` names a folder, sample and row attributions
  and exact indices are also kept there by :mod:`workbench.result_cache`,
  keyed by the bundle and data file bytes and the same parameters, so they
  survive a restart of the app. The in-memory caches are consulted first.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from workbench.app import rows, sources
from workbench.app.counterfactual_views import ATTENTION_EXPLAINER, FaithfulnessRequest, HistoryEdits, SearchRequest
from workbench.bundle import Bundle, BundleError, load_bundle
from workbench.cohorts import Cohort, CohortError, restrict, select_rows
from workbench.counterfactual import CounterfactualSearch, find_counterfactuals
from workbench.data import CTRDataset, DataError, load_dataset
from workbench.explain import METHODS, Attribution, background_sample, explain, groups_from_json
from workbench.explain.behaviours import BehaviourAttribution, behaviour_labels, explain_behaviours
from workbench.explain.exact import ExactResult, exact_indices
from workbench.explain.game import BACKGROUND_BASELINES
from workbench.explain.integrated_gradients import DEFAULT_N_STEPS
from workbench.faithfulness import FaithfulnessResult, attention_field_scores, compare_explainers
from workbench.metrics import calibration_table, prediction_metrics, sigmoid
from workbench.probes import ProbeCapture, capture_probes
from workbench.result_cache import cache_from_environment, result_key
from workbench.schema import PAD_INDEX, SchemaError
from workbench.sequence_edits import SequenceEdit, apply_edit, paired_values
from workbench.sweeps import FieldSweep, sweep_field
from workbench.training import evaluate, predict_logits
from workbench.whatif import WhatIf, apply_changes, compare

LOAD_ERRORS = (BundleError, CohortError, DataError, SchemaError, ValueError, KeyError, IndexError, OSError)
"""Exceptions a user-driven load can raise. Pages turn them into ``st.error``."""

SELECTION_KEY = "workbench_selection"
RANDOM_ROW_KEY = "explorer_random_row"
SEQUENCE_EDITS_KEY = "sequence_edits"
DEFAULT_MAX_ROWS = 200_000

SourceKey = tuple[str, int, str, int, int, str]
"""Cache key of a loaded data set.

(bundle folder, manifest mtime in ns, data file, data file mtime in ns, row limit,
cohort as JSON text or "" for all rows)
"""


@dataclass(frozen=True)
class Selection:
    """The bundle folder, data file and row limit chosen in the sidebar (None when nothing is available)."""

    bundle_path: Path | None
    data_path: Path | None
    max_rows: int = DEFAULT_MAX_ROWS
    cohort: Cohort = field(default_factory=Cohort)


@dataclass(frozen=True)
class LoadedData:
    """A loaded bundle with a data set encoded by its schema, and the key that finds both in the caches."""

    bundle: Bundle
    dataset: CTRDataset
    key: SourceKey


def set_selection(selection: Selection) -> None:
    st.session_state[SELECTION_KEY] = selection


def get_selection() -> Selection:
    """Return the sidebar's selection of this run (an empty one before the sidebar ran)."""
    return st.session_state.get(SELECTION_KEY, Selection(None, None))


# --- cached loaders --------------------------------------------------------------------------------


@st.cache_resource(max_entries=8, show_spinner="Loading the model bundle…")
def _load_bundle(path: str, manifest_mtime_ns: int) -> Bundle:
    del manifest_mtime_ns  # only part of the cache key
    return load_bundle(path)


@st.cache_resource(max_entries=8)
def _model_lock(path: str, manifest_mtime_ns: int) -> threading.Lock:
    # captum registers hooks on the shared model while it attributes, and every
    # explainer switches it to eval mode and back, so two sessions must not
    # explain with one model at the same time.
    del path, manifest_mtime_ns
    return threading.Lock()


def _bundle_of(key: SourceKey) -> Bundle:
    return _load_bundle(key[0], key[1])


@st.cache_data(max_entries=4, show_spinner="Reading and encoding the data set…")
def _load_file(key: SourceKey) -> CTRDataset:
    _, _, data_path, _, max_rows, _ = key
    return load_dataset(data_path, _bundle_of(key).schema, max_rows=max_rows)


def _whole_file(key: SourceKey) -> SourceKey:
    return (*key[:5], "")


@st.cache_data(max_entries=8, show_spinner="Scoring the data set…")
def _file_logits(key: SourceKey) -> np.ndarray:
    with _model_lock(key[0], key[1]):
        return predict_logits(_bundle_of(key).model, _load_file(_whole_file(key)))


@st.cache_data(max_entries=8, show_spinner="Selecting the cohort's rows…")
def _cohort_rows(key: SourceKey) -> np.ndarray:
    cohort = Cohort.from_dict(json.loads(key[5]))
    logits = _file_logits(_whole_file(key)) if cohort.needs_scores else None
    return select_rows(cohort, _load_file(_whole_file(key)), logits=logits)


@st.cache_data(max_entries=4, show_spinner=False)
def _load_dataset(key: SourceKey) -> CTRDataset:
    """Return the data set of ``key``: the file's rows, or only the cohort's rows renumbered from 0."""
    dataset = _load_file(_whole_file(key))
    if not key[5]:
        return dataset
    cohort = Cohort.from_dict(json.loads(key[5]))
    return restrict(dataset, _cohort_rows(key), name=f"{dataset.name} · cohort {cohort.name}")


@st.cache_data(max_entries=8, show_spinner="Scoring the data set…")
def _evaluation(key: SourceKey) -> dict[str, float]:
    with _model_lock(key[0], key[1]):
        return evaluate(_bundle_of(key).model, _load_dataset(key))


@st.cache_data(max_entries=4, show_spinner="Decoding field values…")
def _displayed_values(key: SourceKey) -> pd.DataFrame:
    return _load_dataset(key).raw_values()


@dataclass(frozen=True)
class AttributionSettings:
    """The choices besides rows that determine an attribution or interaction result.

    Options a method does not use are set to 0 or None by :meth:`normalised`,
    so that changing them does not miss the cache.
    """

    method: str = "integrated_gradients"
    baseline: str = "zero"
    output_space: str = "logit"
    n_steps: int = 50
    """Integration points per sample, used by Integrated Gradients only."""
    background_rows: int = 100
    """Background rows drawn from the data set, used by the "mean" and "expectation" baselines only."""
    groups: str | None = None
    """Field groups as JSON text (see ``workbench.explain.groups_from_json``), or None for one player per field."""

    def normalised(self) -> AttributionSettings:
        return AttributionSettings(
            method=self.method,
            baseline=self.baseline,
            output_space=self.output_space,
            n_steps=int(self.n_steps) if self.method == "integrated_gradients" else 0,
            background_rows=int(self.background_rows) if self.baseline in BACKGROUND_BASELINES else 0,
            groups=self.groups,
        )

    def method_options(self) -> dict[str, int]:
        return {"n_steps": self.n_steps} if self.method == "integrated_gradients" else {}


def parse_groups(text: str) -> str | None:
    """Check field groups typed as JSON and return them as canonical JSON text, or None when the text is empty.

    Raises ValueError with the reason when the text is not a JSON object of group name to field names.
    """
    if not text.strip():
        return None
    return json.dumps(groups_from_json(text))


def _progress_bar(label: str) -> tuple[Callable[[float], None], Callable[[], None]]:
    """Show a progress bar and return the callback that advances it and the one that removes it.

    Only cached functions call this, because Streamlit replays a cached
    function's elements on a cache hit and cannot replay writes into a
    container created outside of it.
    """
    bar = st.progress(0.0, text=f"{label}…")

    def report(fraction: float) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=f"{label}: {fraction:.0%}")

    return report, bar.empty


def _background(key: SourceKey, settings: AttributionSettings, seed: int) -> dict | None:
    if settings.baseline not in BACKGROUND_BASELINES:
        return None
    return background_sample(_load_dataset(key), settings.background_rows, seed=seed)


def _game_options(key: SourceKey, settings: AttributionSettings, seed: int, progress: Callable[[float], None]) -> dict:
    """Keyword arguments that ``explain`` and ``exact_indices`` share: baseline, players, output space, background."""
    return {
        "baseline": settings.baseline,
        "players": None if settings.groups is None else json.loads(settings.groups),
        "output_space": settings.output_space,
        "background": _background(key, settings, seed),
        "progress": progress,
    }


def _attribution(key: SourceKey, row_numbers: np.ndarray, settings: AttributionSettings, seed: int) -> Attribution:
    report, done = _progress_bar(f"{settings.method} on {row_numbers.size:,} rows")
    # The bar goes away on failure too, so that a rejected setting does not leave a bar at 0 %.
    try:
        with _model_lock(key[0], key[1]):
            return explain(
                _bundle_of(key).model,
                _load_dataset(key),
                row_numbers,
                method=settings.method,
                **_game_options(key, settings, seed, report),
                **settings.method_options(),
            )
    finally:
        done()


def _disk_cached(key: SourceKey, kind: str, parameters: dict, compute: Callable[[], object]) -> object:
    """Return ``compute()``, through the result cache folder when ``WORKBENCH_CACHE_DIR`` is set.

    The parameters are those of the in-memory cache besides the file times: the
    row limit, the cohort and the computation's own. The cache key adds the
    bundle and data file bytes. Sampled methods are not stored, because the app
    runs them unseeded.
    """
    cache = cache_from_environment()
    method = METHODS.get(str(parameters.get("method")))
    if cache is None or (method is not None and "random_state" in (method.options or ())):
        return compute()
    parameters = {**parameters, "max_rows": key[4], "cohort": key[5]}
    return cache.get_or_compute(result_key(kind, bundle=key[0], data=key[2], parameters=parameters), compute)


@st.cache_data(max_entries=16, show_spinner=False)
def _sample_attribution(key: SourceKey, n_rows: int, seed: int, settings: AttributionSettings) -> Attribution:
    row_numbers = rows.sample_rows(len(_load_dataset(key)), n_rows, seed)
    parameters = {"n_rows": n_rows, "seed": seed, **dataclasses.asdict(settings)}
    return _disk_cached(
        key, "app.sample_attribution", parameters, lambda: _attribution(key, row_numbers, settings, seed)
    )


@st.cache_data(max_entries=64, show_spinner=False)
def _row_attribution(key: SourceKey, row: int, settings: AttributionSettings) -> Attribution:
    parameters = {"row": row, **dataclasses.asdict(settings)}
    return _disk_cached(
        key, "app.row_attribution", parameters, lambda: _attribution(key, np.asarray([row]), settings, seed=0)
    )


# Each entry keeps four (rows, players, players) float64 arrays, so fewer entries than for attributions.
@st.cache_data(max_entries=4, show_spinner=False)
def _sample_exact(key: SourceKey, n_rows: int, seed: int, settings: AttributionSettings) -> ExactResult:
    # One evaluation of all coalitions gives Shapley values and all four pair indices,
    # so the page switches index without computing again.
    row_numbers = rows.sample_rows(len(_load_dataset(key)), n_rows, seed)

    def compute() -> ExactResult:
        report, done = _progress_bar(f"all coalitions of {row_numbers.size:,} rows")
        try:
            with _model_lock(key[0], key[1]):
                return exact_indices(
                    _bundle_of(key).model, _load_dataset(key), row_numbers, **_game_options(key, settings, seed, report)
                )
        finally:
            done()

    parameters = {"n_rows": n_rows, "seed": seed, **dataclasses.asdict(settings)}
    return _disk_cached(key, "app.sample_exact", parameters, compute)


@st.cache_data(max_entries=16, show_spinner="Reading the model's gates, masks and attention…")
def _probe_capture(key: SourceKey, row_numbers: tuple[int, ...], aggregation: str) -> ProbeCapture:
    with _model_lock(key[0], key[1]):
        inputs = _load_dataset(key).tensors(np.asarray(row_numbers, dtype=np.int64))
        return capture_probes(_bundle_of(key).model, inputs, aggregation=aggregation)


@dataclass(frozen=True)
class Histories:
    """The behaviour histories of some data set rows, as a sequence model reads them.

    ``present`` and ``labels`` have shape ``(n_rows, max_length)``: position
    ``l`` of each history, 0 = oldest kept and most recent last. ``labels``
    joins the raw values of the paired histories (``"item · genre"``), and
    ``items`` keeps each paired history's raw values apart. Empty positions
    are ``""``.
    """

    rows: np.ndarray
    present: np.ndarray
    labels: np.ndarray
    items: dict[str, np.ndarray]


@st.cache_data(max_entries=16, show_spinner=False)
def _histories(key: SourceKey, row_numbers: tuple[int, ...]) -> Histories:
    model = _bundle_of(key).model
    rows_array = np.asarray(row_numbers, dtype=np.int64)
    inputs = _load_dataset(key).tensors(rows_array)
    # The model's own mask (any non-zero slot), the one its attention and the attribution games use.
    with _model_lock(key[0], key[1]), torch.no_grad():
        present = model.split_behaviours(model.field_embedding(inputs))[2].cpu().numpy()
    items = {}
    for history, _ in model.pairs:
        ids = np.asarray(inputs[history])
        decoded = np.asarray(model.schema[history].vocabulary.decode(ids.reshape(-1)), dtype=object).reshape(ids.shape)
        items[history] = np.where(ids == PAD_INDEX, "", decoded)
    return Histories(rows=rows_array, present=present, labels=behaviour_labels(model, inputs), items=items)


@st.cache_data(max_entries=64, show_spinner="Attributing the prediction to single behaviours…")
def _row_behaviours(
    key: SourceKey, row: int, method: str, rest: str, baseline: str, n_steps: int
) -> BehaviourAttribution:
    with _model_lock(key[0], key[1]):
        return explain_behaviours(
            _bundle_of(key).model,
            _load_dataset(key),
            [row],
            method=method,
            rest=rest,
            baseline=baseline,
            n_steps=n_steps,
            random_state=0,
        )


@st.cache_data(max_entries=256, show_spinner=False)
def _completed_behaviour(key: SourceKey, value: str) -> dict[str, str]:
    return paired_values(_bundle_of(key).model, _load_dataset(key), value)


# --- what pages call --------------------------------------------------------------------------------


def try_bundle(path: Path | None) -> Bundle | None:
    """Return the bundle at ``path`` from the cache, or None when it cannot be loaded (without showing an error)."""
    if path is None:
        return None
    try:
        return _load_bundle(str(path), sources.manifest_mtime_ns(path))
    except LOAD_ERRORS:
        return None


def current_bundle() -> Bundle | None:
    """Load the bundle chosen in the sidebar, or show ``st.error`` and return None when loading fails."""
    path = get_selection().bundle_path
    if path is None:
        st.info(
            f"No model bundle was found in `{sources.models_dir()}`. Type the path of a bundle folder "
            f"in the sidebar, or set {sources.MODELS_DIR_ENV} to a folder that contains bundles."
        )
        return None
    try:
        return _load_bundle(str(path), sources.manifest_mtime_ns(path))
    except LOAD_ERRORS as err:
        st.error(
            f"Could not load the model bundle `{path}`: {err}\n\n"
            "Pick a bundle in the sidebar, or type the path of a folder that contains "
            "manifest.json and weights.safetensors."
        )
        return None


def current_data(bundle: Bundle, *, cohort: Cohort | None = None) -> LoadedData | None:
    """Load the data file chosen in the sidebar with ``bundle``'s schema, or show ``st.error`` and return None.

    The rows are those of the sidebar's cohort, or of ``cohort`` when given.
    """
    selection = get_selection()
    if cohort is not None:
        selection = Selection(selection.bundle_path, selection.data_path, selection.max_rows, cohort)
    path = selection.data_path
    if path is None:
        st.info(
            f"No data file was found in `{sources.data_dir()}` or in the bundle's manifest. Type the path "
            f"of a Parquet, CSV or libfm file in the sidebar, or set {sources.DATA_DIR_ENV}."
        )
        return None
    key = source_key(bundle, path, selection.max_rows, selection.cohort)
    try:
        _load_file(_whole_file(key))
    except LOAD_ERRORS as err:
        st.error(
            f"Could not load the data file `{path}` with the schema of bundle `{bundle.name}`: {err}\n\n"
            f"Choose a data file with the columns this bundle was trained on "
            f"({', '.join(bundle.schema.field_names)} and the label {bundle.schema.label!r})."
        )
        return None
    try:
        dataset = _load_dataset(key)
    except LOAD_ERRORS as err:
        st.error(f"Could not apply the cohort **{selection.cohort.name}**: {err}\n\nChoose another cohort in the sidebar.")
        return None
    if len(dataset) == 0:
        st.error(f"The data file `{path}` has no rows. Choose another data file in the sidebar.")
        return None
    return LoadedData(bundle=bundle, dataset=dataset, key=key)


def source_key(bundle: Bundle, data_path: Path, max_rows: int, cohort: Cohort) -> SourceKey:
    """Return the cache key of ``bundle`` on the first ``max_rows`` rows of ``data_path``, restricted to ``cohort``."""
    cohort_text = "" if cohort.is_everything else json.dumps(cohort.to_dict(), sort_keys=True)
    return (
        str(bundle.path),
        sources.manifest_mtime_ns(bundle.path),
        str(data_path),
        sources.mtime_ns(data_path),
        int(max_rows),
        cohort_text,
    )


def require_data() -> LoadedData:
    """Return the selected bundle and data set, or stop the page after showing why they are not available."""
    bundle = current_bundle()
    data = current_data(bundle) if bundle is not None else None
    if data is None:
        st.stop()
    cohort = get_selection().cohort
    restricted = "" if cohort.is_everything else f" · cohort **{cohort.name}** ({cohort.describe()})"
    st.caption(
        f"Bundle **{bundle.name}** ({bundle.architecture}) · "
        f"data **{Path(data.dataset.source).name}**, {len(data.dataset):,} rows{restricted}"
    )
    return data


def file_rows(data: LoadedData, rows: np.ndarray | list[int]) -> np.ndarray:
    """Map row numbers of ``data.dataset`` (cohort rows count from 0) to row numbers of the data file."""
    rows = np.asarray(rows, dtype=np.int64)
    source = data.dataset.source_rows
    return rows if source is None else source[rows]


def evaluation(data: LoadedData) -> dict[str, float]:
    """Return AUC, log loss, row count and positive rate of the bundle's model on the data set (cached)."""
    return _evaluation(data.key)


def file_data(key: SourceKey) -> tuple[CTRDataset, np.ndarray]:
    """Return the data file's rows read with the schema of the bundle in ``key``, and its logits (cached, no cohort)."""
    whole = _whole_file(key)
    return _load_file(whole), _file_logits(whole)


def bundle_at(path: Path) -> Bundle:
    """Load the bundle at ``path`` through the shared cache; raises the loader's errors."""
    return _load_bundle(str(path), sources.manifest_mtime_ns(path))


def model_lock(key: SourceKey) -> threading.Lock:
    """Return the lock that serialises explanations with the bundle of ``key`` across sessions."""
    return _model_lock(key[0], key[1])


def file_dataset(data: LoadedData) -> CTRDataset:
    """Return the data file's rows before the cohort filter (cached)."""
    return _load_file(_whole_file(data.key))


def file_logits(data: LoadedData) -> np.ndarray:
    """Return the model's logits for every row of the data file, before the cohort filter (cached)."""
    return _file_logits(_whole_file(data.key))


def _dataset_logits(key: SourceKey, dataset: CTRDataset) -> np.ndarray:
    whole = _file_logits(_whole_file(key))
    return whole if dataset.source_rows is None else whole[dataset.source_rows]


def logits(data: LoadedData) -> np.ndarray:
    """Return the model's logits for every row of ``data.dataset`` (the cohort's rows when one is chosen; cached)."""
    return _dataset_logits(data.key, data.dataset)


@st.cache_data(max_entries=16, show_spinner="Computing metrics…")
def _metrics(key: SourceKey, group_field: str | None, n_bins: int, strategy: str) -> tuple[dict, pd.DataFrame]:
    dataset = _load_dataset(key)
    scores = _dataset_logits(key, dataset)
    # Raw file values, as the report groups them: users the model does not know keep their own group
    # instead of sharing one <OOV> group.
    groups = None if group_field is None else dataset.raw[group_field].astype(str).to_numpy()
    values = prediction_metrics(dataset.labels, scores, groups=groups, n_bins=n_bins, strategy=strategy)
    table = calibration_table(dataset.labels, sigmoid(scores), n_bins=n_bins, strategy=strategy)
    return values, table


def metrics(data: LoadedData, *, group_field: str | None, n_bins: int, strategy: str) -> tuple[dict, pd.DataFrame]:
    """Return the model's metrics on ``data`` (AUC, gAUC by ``group_field``, log loss, ECE) and its reliability table."""
    return _metrics(data.key, group_field, int(n_bins), strategy)


def cohort_key(data: LoadedData, cohort: Cohort) -> SourceKey:
    """Return the cache key of ``data``'s bundle and file restricted to ``cohort`` instead of the chosen one."""
    return source_key(data.bundle, Path(data.key[2]), data.key[4], cohort)


def metrics_of_cohort(
    data: LoadedData, cohort: Cohort, *, group_field: str | None, n_bins: int, strategy: str
) -> tuple[dict, pd.DataFrame]:
    """Like :func:`metrics` for another cohort of the same bundle and file."""
    return _metrics(cohort_key(data, cohort), group_field, int(n_bins), strategy)


def displayed_values(data: LoadedData) -> pd.DataFrame:
    """Return every row's field values as the model saw them, as display strings (cached)."""
    return _displayed_values(data.key)


def sample_attribution(
    data: LoadedData, n_rows: int, seed: int, settings: AttributionSettings | None = None
) -> Attribution:
    """Attribute a seeded random sample of ``n_rows`` rows (cached, with a progress bar), with IG by default."""
    settings = (settings or AttributionSettings()).normalised()
    return _sample_attribution(data.key, int(n_rows), int(seed), settings)


def row_attribution(data: LoadedData, row: int, baseline: str, n_steps: int) -> Attribution:
    """Run Integrated Gradients on one data set row (cached)."""
    settings = AttributionSettings(method="integrated_gradients", baseline=baseline, n_steps=int(n_steps))
    return _row_attribution(data.key, int(row), settings.normalised())


def sample_exact(data: LoadedData, n_rows: int, seed: int, settings: AttributionSettings) -> ExactResult:
    """Compute exact Shapley values and pair indices of a seeded random sample of rows (cached, with a progress bar).

    ``settings.method`` and ``settings.n_steps`` are not used.
    """
    settings = AttributionSettings(
        method="exact",
        baseline=settings.baseline,
        output_space=settings.output_space,
        background_rows=settings.background_rows,
        groups=settings.groups,
    ).normalised()
    return _sample_exact(data.key, int(n_rows), int(seed), settings)


def probe_capture(data: LoadedData, row_numbers: np.ndarray | list[int], aggregation: str = "mean") -> ProbeCapture:
    """Read every probe of the bundle's model on the given data set rows, in their order (cached)."""
    return _probe_capture(data.key, tuple(int(r) for r in row_numbers), aggregation)


def sample_probe_capture(data: LoadedData, n_rows: int, seed: int, aggregation: str = "mean") -> tuple[np.ndarray, ProbeCapture]:
    """Read the probes on a seeded random sample of rows; returns the row numbers and the capture (cached)."""
    row_numbers = rows.sample_rows(len(data.dataset), int(n_rows), int(seed))
    return row_numbers, probe_capture(data, row_numbers, aggregation)


def random_row(n_total: int) -> int:
    """Return the explorer's current random row, drawing a new one when none is stored or it is out of range."""
    stored = st.session_state.get(RANDOM_ROW_KEY)
    if stored is None or not 0 <= stored < n_total:
        stored = draw_random_row(n_total)
    return stored


def draw_random_row(n_total: int) -> int:
    """Draw a new random row for the explorer and store it in the session."""
    st.session_state[RANDOM_ROW_KEY] = rows.random_row(n_total)
    return st.session_state[RANDOM_ROW_KEY]


# --- sequence models ---------------------------------------------------------------------------------


def histories(data: LoadedData, row_numbers: np.ndarray | list[int]) -> Histories:
    """Return which history positions of the given rows hold a behaviour, and their raw values (cached)."""
    return _histories(data.key, tuple(int(r) for r in row_numbers))


def row_attention(data: LoadedData, row: int, probe_name: str) -> tuple[np.ndarray, float, Histories]:
    """Return one row's target attention weights ``(max_length,)``, its logit and its history (cached)."""
    capture = probe_capture(data, [row])
    return capture[probe_name].values[0], float(capture.logits[0]), histories(data, [row])


def cohort_attention(data: LoadedData, n_rows: int, seed: int, probe_name: str) -> tuple[np.ndarray, Histories]:
    """Return the target attention ``(n_rows, max_length)`` of a seeded random sample and its histories (cached)."""
    row_numbers, capture = sample_probe_capture(data, n_rows, seed)
    return capture[probe_name].values, histories(data, row_numbers)


def row_behaviours(
    data: LoadedData, row: int, *, method: str, rest: str, baseline: str, n_steps: int
) -> BehaviourAttribution:
    """Attribute one row's prediction to its past behaviours and the rest of its fields (cached).

    ``n_steps`` is used by Integrated Gradients only. Raises ValueError or
    IndexError with the reason when an option or the row is not valid.
    """
    n_steps = int(n_steps) if method == "integrated_gradients" else DEFAULT_N_STEPS
    return _row_behaviours(data.key, int(row), method, rest, baseline, n_steps)


def completed_behaviour(data: LoadedData, value: str) -> dict[str, str]:
    """Complete a behaviour from its first history's raw value with the values of the other paired histories (cached).

    Raises ValueError when the value never appears as a target in the data set.
    """
    return _completed_behaviour(data.key, str(value))


def sequence_edit(data: LoadedData, row: int, action: str, **options: object) -> SequenceEdit:
    """Apply one counterfactual action to a row's history and predict before and after.

    ``options`` are the keyword arguments of ``workbench.sequence_edits.apply_edit``.
    Raises ValueError or IndexError with the reason when the edit is not possible.
    """
    with _model_lock(data.key[0], data.key[1]):
        return apply_edit(data.bundle.model, data.dataset, int(row), action, **options)


def recorded_edits(data: LoadedData, row: int) -> list[SequenceEdit]:
    """Return the edits made in this session on ``row`` of the loaded data, oldest first."""
    return list(st.session_state.get(SEQUENCE_EDITS_KEY, {}).get((data.key, int(row)), []))


def record_edit(data: LoadedData, row: int, edit: SequenceEdit) -> None:
    """Add an edit to the session's list for ``row`` of the loaded data."""
    log = st.session_state.setdefault(SEQUENCE_EDITS_KEY, {})
    log[(data.key, int(row))] = [*log.get((data.key, int(row)), []), edit]


def clear_edits(data: LoadedData, row: int) -> None:
    """Forget the session's edits of ``row`` of the loaded data."""
    st.session_state.get(SEQUENCE_EDITS_KEY, {}).pop((data.key, int(row)), None)


# --- what-if edits, counterfactual search and field sweeps ---------------------------------------------

ChangeItems = tuple[tuple[str, object], ...]
"""Field edits as (field, raw value) pairs in field order, hashable for the caches."""


@st.cache_data(max_entries=256, show_spinner=False)
def _what_if(
    key: SourceKey, row: int, changes: ChangeItems, history: HistoryEdits, settings: AttributionSettings | None
) -> WhatIf:
    model = _bundle_of(key).model
    before = _load_dataset(key).tensors(np.asarray([row]))
    after = history.apply(model, apply_changes(model.schema, before, dict(changes)))
    with _model_lock(key[0], key[1]):
        if settings is None:
            return compare(model, before, after, row=row, method=None)
        return compare(
            model,
            before,
            after,
            row=row,
            method=settings.method,
            baseline=settings.baseline,
            players=None if settings.groups is None else json.loads(settings.groups),
            output_space=settings.output_space,
            background=_background(key, settings, seed=0),
        )


def what_if(
    data: LoadedData,
    row: int,
    changes: dict[str, object],
    history: HistoryEdits | None = None,
    settings: AttributionSettings | None = None,
) -> WhatIf:
    """Set fields of ``row`` to new raw values, edit its history, and predict before and after (cached).

    ``changes`` maps field names to raw values (``workbench.whatif.encode_change``);
    ``history`` edits a sequence model's history after them. Without
    ``settings`` only the predictions are computed, which takes milliseconds.
    With them, both rows are also explained with ``settings.method``
    (``"auto"``: exact Shapley values up to 16 players). Raises ValueError or
    IndexError with the reason when a value, an edit or the row is not valid.
    """
    # Field order makes equal edits one cache entry; apply_changes rejects unknown names, which sort last.
    order = {name: position for position, name in enumerate(data.bundle.schema.field_names)}
    items = tuple(sorted(changes.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
    return _what_if(
        data.key, int(row), items, history or HistoryEdits(), None if settings is None else settings.normalised()
    )


@st.cache_data(max_entries=32, show_spinner="Searching for counterfactuals…")
def _counterfactual_search(key: SourceKey, row: int, request: SearchRequest) -> CounterfactualSearch:
    dataset = _load_dataset(key)
    cohort = rows.sample_rows(len(dataset), request.cohort_rows, request.cohort_seed) if request.needs_cohort else None
    with _model_lock(key[0], key[1]):
        return find_counterfactuals(
            _bundle_of(key).model, dataset, row, request.goal, cohort_rows=cohort, **request.options()
        )


def counterfactual_search(data: LoadedData, row: int, request: SearchRequest) -> CounterfactualSearch:
    """Search for the fewest substitutions that bring ``row``'s prediction to the request's goal (cached).

    The data set is also the reference for linked fields and the numeric
    grid. Rank goals rank the row within ``request.cohort_rows`` rows drawn
    with ``request.cohort_seed``. Raises ``CounterfactualError`` (a
    ValueError) for an invalid goal or constraint.
    """
    return _counterfactual_search(data.key, int(row), request)


@st.cache_data(max_entries=16, show_spinner=False)
def _field_sweep(key: SourceKey, field: str, n_rows: int, seed: int, top_k: int, output_space: str) -> FieldSweep:
    dataset = _load_dataset(key)
    row_numbers = rows.sample_rows(len(dataset), n_rows, seed)
    report, done = _progress_bar(f"Sweeping {field} over {row_numbers.size:,} rows")
    try:
        with _model_lock(key[0], key[1]):
            return sweep_field(
                _bundle_of(key).model,
                dataset,
                row_numbers,
                field,
                top_k=top_k,
                grid_points=top_k,
                output_space=output_space,
                progress=report,
            )
    finally:
        done()


def field_sweep(data: LoadedData, field: str, n_rows: int, seed: int, *, top_k: int, output_space: str) -> FieldSweep:
    """Sweep ``field`` over a seeded random cohort of ``n_rows`` rows: ICE curves and partial dependence (cached).

    A categorical field takes its ``top_k`` most frequent training values; a
    numeric field a grid of ``top_k`` quantiles of the loaded data. Raises
    ValueError with the reason for a field or option the sweep rejects.
    """
    return _field_sweep(data.key, str(field), int(n_rows), int(seed), int(top_k), str(output_space))


def _explainer_scores(
    key: SourceKey, row_numbers: np.ndarray, request: FaithfulnessRequest, game: dict
) -> dict[str, Attribution | np.ndarray]:
    """Run each requested explainer on the rows; Integrated Gradients always in logit space, the only one it has."""
    model = _bundle_of(key).model
    dataset = _load_dataset(key)
    scores: dict[str, Attribution | np.ndarray] = {}
    for name in request.explainers:
        if name == ATTENTION_EXPLAINER:
            scores[name] = attention_field_scores(model, dataset, row_numbers, players=game["players"])
            continue
        options = {"random_state": request.seed} if "random_state" in (METHODS[name].options or ()) else {}
        space = "logit" if name == "integrated_gradients" else game["output_space"]
        scores[name] = explain(model, dataset, row_numbers, method=name, **{**game, "output_space": space}, **options)
    return scores


@st.cache_data(max_entries=8, show_spinner="Comparing the explainers' deletion and insertion curves…")
def _faithfulness(key: SourceKey, request: FaithfulnessRequest) -> FaithfulnessResult:
    dataset = _load_dataset(key)
    row_numbers = rows.sample_rows(len(dataset), request.n_rows, request.seed)
    settings = AttributionSettings(baseline=request.baseline, background_rows=request.background_rows)
    game = {
        "baseline": request.baseline,
        "players": None if request.groups is None else json.loads(request.groups),
        "output_space": request.output_space,
        "background": _background(key, settings, request.seed),
    }
    with _model_lock(key[0], key[1]):
        scores = _explainer_scores(key, row_numbers, request, game)
        return compare_explainers(
            _bundle_of(key).model,
            dataset,
            row_numbers,
            scores,
            **game,
            n_random=request.n_random,
            random_state=request.seed,
            with_infidelity=request.with_infidelity,
            n_perturbations=request.n_perturbations,
            normalize_infidelity=request.normalize_infidelity,
        )


def faithfulness(data: LoadedData, request: FaithfulnessRequest) -> FaithfulnessResult:
    """Compare the requested explainers' deletion and insertion curves and infidelity on a seeded cohort (cached).

    Raises ValueError with the reason for an explainer, baseline, grouping or
    option the library rejects.
    """
    if not request.explainers:
        msg = "choose at least one explainer to compare with the random orders"
        raise ValueError(msg)
    return _faithfulness(data.key, request)
