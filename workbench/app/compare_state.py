"""Cached computations of the Model comparison page.

The models are the sidebar's bundle plus the bundles chosen on the page, all
reading the sidebar's data file with their own schema. Results are cached by
the tuple of their :data:`state.SourceKey` values (the cohort included) and
the page's options, so switching pages and back does not compute again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import streamlit as st

from workbench.app import state
from workbench.cohorts import Cohort
from workbench.data import sample_rows
from workbench.explain import Attribution, Interaction
from workbench.model_comparison import ComparedModel, align_models, explain_models, interaction_models

ModelKeys = tuple[state.SourceKey, ...]


def model_keys(data: state.LoadedData, others: Sequence[Path]) -> ModelKeys:
    """Return the cache keys of the sidebar's model and of ``others`` on the sidebar's data file and cohort."""
    selection = state.get_selection()
    keys = [data.key]
    for path in others:
        bundle = state.bundle_at(path)
        keys.append(state.source_key(bundle, Path(data.key[2]), data.key[4], selection.cohort))
    return tuple(keys)


def _cohort(keys: ModelKeys) -> Cohort:
    return Cohort.from_dict(json.loads(keys[0][5])) if keys[0][5] else Cohort()


def models(keys: ModelKeys) -> list[ComparedModel]:
    """Return the compared models on the cohort's rows, chosen with the first model's schema and predictions."""
    bundles = [state.bundle_at(Path(key[0])) for key in keys]
    loaded = [state.file_data(key) for key in keys]
    return align_models(bundles, [dataset for dataset, _ in loaded], [logits for _, logits in loaded], cohort=_cohort(keys))


@contextlib.contextmanager
def _locked(keys: ModelKeys):
    # Each model has its own lock; take them in a fixed order so two sessions cannot deadlock.
    locks = sorted({id(state.model_lock(key)): state.model_lock(key) for key in keys}.items())
    with contextlib.ExitStack() as stack:
        for _, lock in locks:
            stack.enter_context(lock)
        yield


@st.cache_data(max_entries=8, show_spinner="Explaining the same rows with every model…")
def _attributions(keys: ModelKeys, n_rows: int, seed: int, method: str, baseline: str) -> dict[str, Attribution]:
    compared = models(keys)
    rows = sample_rows(len(compared[0].dataset), n_rows, seed)
    with _locked(keys):
        return explain_models(compared, rows, method=method, baseline=baseline, seed=seed)


def attributions(keys: ModelKeys, n_rows: int, seed: int, method: str, baseline: str) -> dict[str, Attribution]:
    """Attribute ``n_rows`` rows drawn with ``seed`` in every model, with one method and baseline (cached)."""
    return _attributions(keys, int(n_rows), int(seed), method, baseline)


@st.cache_data(max_entries=4, show_spinner="Computing exact pair interactions of every model…")
def _interactions(
    keys: ModelKeys, n_rows: int, pair_rows: int, seed: int, baseline: str
) -> tuple[dict[str, Interaction], list[str]]:
    compared = models(keys)
    rows = sample_rows(len(compared[0].dataset), n_rows, seed)[:pair_rows]
    with _locked(keys):
        return interaction_models(compared, rows, baseline=baseline, seed=seed)


def interactions(
    keys: ModelKeys, n_rows: int, pair_rows: int, seed: int, baseline: str
) -> tuple[dict[str, Interaction], list[str]]:
    """Exact SII maps of every model with at most 16 fields (cached).

    The rows are the first ``pair_rows`` of the ``n_rows`` explained rows, as in
    ``workbench.report_builder.default_report``.
    """
    return _interactions(keys, int(n_rows), int(pair_rows), int(seed), baseline)


@st.cache_data(max_entries=64, show_spinner=False)
def _row_attributions(keys: ModelKeys, row: int, method: str, baseline: str, n_steps: int) -> dict[str, Attribution]:
    compared = models(keys)
    options = {"n_steps": n_steps} if method == "integrated_gradients" else {}
    with _locked(keys):
        return explain_models(compared, np.asarray([row]), method=method, baseline=baseline, method_options=options)


def row_attributions(
    keys: ModelKeys, row: int, method: str, baseline: str, *, n_steps: int = 50
) -> dict[str, Attribution]:
    """Attribute one compared row in every model (cached), for the side-by-side waterfalls.

    ``row`` counts the cohort's rows from 0, as the other pages do.
    """
    return _row_attributions(keys, int(row), method, baseline, int(n_steps))
