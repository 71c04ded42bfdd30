"""The sidebar's selection, cached loading and cached attributions, shared by all pages.

Cache rules:

* Bundles are loaded with ``st.cache_resource``, keyed by folder and manifest
  modification time, so one model object is shared by all sessions and a
  re-saved bundle is loaded again. The app never changes a shared model.
* Data sets, metrics, decoded values and attributions use ``st.cache_data``
  keyed by a :data:`SourceKey` (bundle folder, manifest time, data file, file
  time, row limit) plus the computation's parameters, so changing an unrelated
  widget reuses the cached result.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from workbench.app import rows, sources
from workbench.bundle import Bundle, BundleError, load_bundle
from workbench.data import CTRDataset, DataError, load_dataset
from workbench.explain import Attribution, integrated_gradients
from workbench.schema import SchemaError
from workbench.training import evaluate

LOAD_ERRORS = (BundleError, DataError, SchemaError, ValueError, KeyError, IndexError, OSError)
"""Exceptions a user-driven load can raise. Pages turn them into ``st.error``."""

SELECTION_KEY = "workbench_selection"
RANDOM_ROW_KEY = "explorer_random_row"
DEFAULT_MAX_ROWS = 200_000

SourceKey = tuple[str, int, str, int, int]
"""Cache key of a loaded data set.

(bundle folder, manifest mtime in ns, data file, data file mtime in ns, row limit)
"""


@dataclass(frozen=True)
class Selection:
    """The bundle folder, data file and row limit chosen in the sidebar (None when nothing is available)."""

    bundle_path: Path | None
    data_path: Path | None
    max_rows: int = DEFAULT_MAX_ROWS


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
    # captum registers hooks on the shared model while it attributes, so two
    # sessions must not run Integrated Gradients on one model at the same time.
    del path, manifest_mtime_ns
    return threading.Lock()


def _bundle_of(key: SourceKey) -> Bundle:
    return _load_bundle(key[0], key[1])


@st.cache_data(max_entries=4, show_spinner="Reading and encoding the data set…")
def _load_dataset(key: SourceKey) -> CTRDataset:
    _, _, data_path, _, max_rows = key
    return load_dataset(data_path, _bundle_of(key).schema, max_rows=max_rows)


@st.cache_data(max_entries=8, show_spinner="Scoring the data set…")
def _evaluation(key: SourceKey) -> dict[str, float]:
    with _model_lock(key[0], key[1]):
        return evaluate(_bundle_of(key).model, _load_dataset(key))


@st.cache_data(max_entries=4, show_spinner="Decoding field values…")
def _displayed_values(key: SourceKey) -> pd.DataFrame:
    return _load_dataset(key).raw_values()


def _integrated_gradients(key: SourceKey, row_numbers: np.ndarray, baseline: str, n_steps: int) -> Attribution:
    # The progress bar is created inside the cached functions that call this,
    # because Streamlit replays a cached function's elements on a cache hit and
    # cannot replay writes into a container created outside of it.
    bar = st.progress(0.0, text=f"Integrated Gradients on {row_numbers.size:,} rows, {n_steps} steps…")

    def report(fraction: float) -> None:
        bar.progress(fraction, text=f"Integrated Gradients on {row_numbers.size:,} rows: {fraction:.0%}")

    with _model_lock(key[0], key[1]):
        attribution = integrated_gradients(
            _bundle_of(key).model,
            _load_dataset(key),
            row_numbers,
            baseline=baseline,
            n_steps=n_steps,
            progress=report,
        )
    bar.empty()
    return attribution


@st.cache_data(max_entries=16, show_spinner=False)
def _sample_attribution(key: SourceKey, n_rows: int, seed: int, baseline: str, n_steps: int) -> Attribution:
    row_numbers = rows.sample_rows(len(_load_dataset(key)), n_rows, seed)
    return _integrated_gradients(key, row_numbers, baseline, n_steps)


@st.cache_data(max_entries=64, show_spinner=False)
def _row_attribution(key: SourceKey, row: int, baseline: str, n_steps: int) -> Attribution:
    return _integrated_gradients(key, np.asarray([row]), baseline, n_steps)


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


def current_data(bundle: Bundle) -> LoadedData | None:
    """Load the data file chosen in the sidebar with ``bundle``'s schema, or show ``st.error`` and return None."""
    selection = get_selection()
    path = selection.data_path
    if path is None:
        st.info(
            f"No data file was found in `{sources.data_dir()}` or in the bundle's manifest. Type the path "
            f"of a Parquet, CSV or libfm file in the sidebar, or set {sources.DATA_DIR_ENV}."
        )
        return None
    key: SourceKey = (
        str(bundle.path),
        sources.manifest_mtime_ns(bundle.path),
        str(path),
        sources.mtime_ns(path),
        selection.max_rows,
    )
    try:
        dataset = _load_dataset(key)
    except LOAD_ERRORS as err:
        st.error(
            f"Could not load the data file `{path}` with the schema of bundle `{bundle.name}`: {err}\n\n"
            f"Choose a data file with the columns this bundle was trained on "
            f"({', '.join(bundle.schema.field_names)} and the label {bundle.schema.label!r})."
        )
        return None
    if len(dataset) == 0:
        st.error(f"The data file `{path}` has no rows. Choose another data file in the sidebar.")
        return None
    return LoadedData(bundle=bundle, dataset=dataset, key=key)


def require_data() -> LoadedData:
    """Return the selected bundle and data set, or stop the page after showing why they are not available."""
    bundle = current_bundle()
    data = current_data(bundle) if bundle is not None else None
    if data is None:
        st.stop()
    st.caption(
        f"Bundle **{bundle.name}** ({bundle.architecture}) · "
        f"data **{data.dataset.name}**, {len(data.dataset):,} rows"
    )
    return data


def evaluation(data: LoadedData) -> dict[str, float]:
    """Return AUC, log loss, row count and positive rate of the bundle's model on the data set (cached)."""
    return _evaluation(data.key)


def displayed_values(data: LoadedData) -> pd.DataFrame:
    """Return every row's field values as the model saw them, as display strings (cached)."""
    return _displayed_values(data.key)


def sample_attribution(data: LoadedData, n_rows: int, seed: int, baseline: str, n_steps: int) -> Attribution:
    """Run Integrated Gradients on a seeded random sample of ``n_rows`` rows (cached, with a progress bar)."""
    return _sample_attribution(data.key, int(n_rows), int(seed), baseline, int(n_steps))


def row_attribution(data: LoadedData, row: int, baseline: str, n_steps: int) -> Attribution:
    """Run Integrated Gradients on one data set row (cached)."""
    return _row_attribution(data.key, int(row), baseline, int(n_steps))


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
