"""Models on the same rows: loading, metrics, attributions and pair maps for a comparison or a report.

The CLI's ``workbench report`` and the app's Model comparison page both call
these functions, so a report contains the numbers the page shows for the same
inputs. Every model reads the data file with its own schema, so row ``i`` is
the same impression for all of them. A cohort is applied with the first
model's schema and predictions, and the same rows are then kept for the
others. Nothing here imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.bundle import Bundle, load_bundle
from workbench.cohorts import Cohort, restrict, select_rows
from workbench.data import CTRDataset, DataError, load_dataset
from workbench.explain import Attribution, background_sample, explain
from workbench.explain.api import count_players, resolve_method
from workbench.explain.exact import exact_indices
from workbench.explain.game import BACKGROUND_BASELINES
from workbench.explain.interaction import Interaction
from workbench.metrics import calibration_table, metrics_table, prediction_metrics, sigmoid, user_field
from workbench.schema import SchemaError
from workbench.training import predict_logits

MAX_EXACT_PLAYERS = 16
"""Largest number of fields for which pair maps are computed exactly (2**16 coalitions per row)."""


@dataclass(frozen=True)
class ComparedModel:
    """One model of a comparison: its bundle, the compared rows read with its schema, and its logits on them."""

    name: str
    bundle: Bundle
    dataset: CTRDataset
    logits: np.ndarray


def unique_names(bundles: Sequence[Bundle]) -> list[str]:
    """Return one label per bundle: its name, with ``(2)``, ``(3)``… added when names repeat."""
    names: list[str] = []
    for bundle in bundles:
        name = bundle.name
        counter = 2
        while name in names:
            name = f"{bundle.name} ({counter})"
            counter += 1
        names.append(name)
    return names


def align_models(
    bundles: Sequence[Bundle],
    datasets: Sequence[CTRDataset],
    logits: Sequence[np.ndarray],
    *,
    cohort: Cohort | None = None,
) -> list[ComparedModel]:
    """Restrict every model's data set and logits to the cohort's rows, chosen with the first model.

    ``datasets[i]`` is the same data file read with ``bundles[i]``'s schema
    and ``logits[i]`` the model's logits on all of its rows.

    Raises
    ------
    ValueError
        Without a model, or when the data sets differ in length (they then
        come from different files or row limits).
    """
    if not bundles:
        msg = "no model given; pass at least one bundle"
        raise ValueError(msg)
    if not len(bundles) == len(datasets) == len(logits):
        msg = f"got {len(bundles)} bundles, {len(datasets)} data sets and {len(logits)} logit arrays; give one of each per model"
        raise ValueError(msg)
    lengths = {len(dataset) for dataset in datasets}
    if len(lengths) != 1:
        msg = f"the models' data sets differ in length ({sorted(lengths)}); read the same file with the same row limit"
        raise ValueError(msg)
    cohort = cohort or Cohort()
    if cohort.is_everything:
        rows = None
    else:
        rows = select_rows(cohort, datasets[0], logits=np.asarray(logits[0]))
    models = []
    for name, bundle, dataset, model_logits in zip(unique_names(bundles), bundles, datasets, logits, strict=True):
        if rows is not None:
            dataset = restrict(dataset, rows, name=f"{dataset.name} · cohort {cohort.name}")
            model_logits = np.asarray(model_logits)[rows]
        models.append(ComparedModel(name=name, bundle=bundle, dataset=dataset, logits=np.asarray(model_logits)))
    return models


def load_models(
    bundle_paths: Sequence[str | Path],
    data_path: str | Path,
    *,
    max_rows: int | None = None,
    cohort: Cohort | None = None,
) -> list[ComparedModel]:
    """Load the bundles, read ``data_path`` with each one's schema, score it and apply ``cohort``."""
    bundles = [load_bundle(path) for path in bundle_paths]
    datasets = []
    for bundle in bundles:
        try:
            datasets.append(load_dataset(data_path, bundle.schema, max_rows=max_rows))
        except (DataError, SchemaError) as err:
            msg = (
                f"bundle {bundle.name!r} ({bundle.path}) cannot read {str(data_path)!r}: {err}. "
                "Every model needs the columns of its fields in the data file; leave this bundle out or use its data"
            )
            raise DataError(msg) from err
    logits = [predict_logits(bundle.model, dataset) for bundle, dataset in zip(bundles, datasets, strict=True)]
    return align_models(bundles, datasets, logits, cohort=cohort)


def group_column(models: Sequence[ComparedModel], field: str | None) -> np.ndarray | None:
    """Return the raw values of the file column ``field`` for the compared rows, for gAUC (None when ``field`` is None)."""
    if field is None:
        return None
    raw = models[0].dataset.raw
    if field not in raw.columns:
        msg = f"gAUC group column {field!r} is not in the data file; columns: {', '.join(map(str, raw.columns))}"
        raise KeyError(msg)
    return raw[field].astype(str).to_numpy()


def default_group_field(models: Sequence[ComparedModel]) -> str | None:
    """Return the user column for gAUC: the first model's user field (see ``workbench.metrics.user_field``)."""
    return user_field(models[0].bundle.schema.field_names)


def compare_metrics(
    models: Sequence[ComparedModel],
    *,
    group_field: str | None = None,
    n_bins: int = 10,
    strategy: str = "uniform",
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Return the metrics table (one line per model) and each model's reliability table, on the same rows."""
    groups = group_column(models, group_field)
    results = {}
    reliability = {}
    for model in models:
        results[model.name] = prediction_metrics(
            model.dataset.labels, model.logits, groups=groups, n_bins=n_bins, strategy=strategy
        )
        reliability[model.name] = calibration_table(
            model.dataset.labels, sigmoid(model.logits), n_bins=n_bins, strategy=strategy
        )
    return metrics_table(results), reliability


def explain_models(
    models: Sequence[ComparedModel],
    rows: np.ndarray,
    *,
    method: str = "auto",
    baseline: str = "zero",
    output_space: str = "logit",
    background_rows: int = 100,
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    method_options: Mapping[str, int] | None = None,
) -> dict[str, Attribution]:
    """Attribute the same rows with the same method and baseline in every model.

    ``method_options`` go to the method, such as ``n_steps`` for Integrated Gradients.
    """
    out = {}
    for position, model in enumerate(models):
        background = (
            background_sample(model.dataset, background_rows, seed=seed) if baseline in BACKGROUND_BASELINES else None
        )
        out[model.name] = explain(
            model.bundle.model,
            model.dataset,
            rows,
            method=method,
            baseline=baseline,
            output_space=output_space,
            background=background,
            **({"random_state": seed} if "random_state" in (resolve_method(method, model.bundle.model).options or ()) else {}),
            **dict(method_options or {}),
        )
        if progress is not None:
            progress((position + 1) / len(models))
    return out


def interaction_models(
    models: Sequence[ComparedModel],
    rows: np.ndarray,
    *,
    baseline: str = "zero",
    output_space: str = "logit",
    background_rows: int = 100,
    seed: int = 0,
) -> tuple[dict[str, Interaction], list[str]]:
    """Compute exact SII pair maps of the same rows for every model with at most 16 fields.

    Returns the maps by model name and a note per model left out.
    """
    maps = {}
    notes = []
    for model in models:
        players = count_players(model.bundle.model, None)
        if players > MAX_EXACT_PLAYERS:
            notes.append(
                f"{model.name}: {players} fields is more than {MAX_EXACT_PLAYERS}, too many for exact pair maps; "
                "use field groups on the Interactions page"
            )
            continue
        background = (
            background_sample(model.dataset, background_rows, seed=seed) if baseline in BACKGROUND_BASELINES else None
        )
        maps[model.name] = exact_indices(
            model.bundle.model, model.dataset, rows, baseline=baseline, output_space=output_space, background=background
        ).sii
    return maps, notes


def overview_table(models: Sequence[ComparedModel]) -> pd.DataFrame:
    """Return one line per model: architecture, parameters, fields, compared rows and the bundle folder."""
    return pd.DataFrame(
        [
            {
                "model": model.name,
                "architecture": model.bundle.architecture,
                "parameters": model.bundle.n_parameters,
                "fields": len(model.bundle.schema),
                "rows": len(model.dataset),
                "bundle": str(model.bundle.path),
            }
            for model in models
        ]
    )
