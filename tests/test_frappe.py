"""End to end on Frappe: a DCNv2 trained through the CLI, its bundle, and IG on its predictions.

The bundle is trained once per session by the ``frappe_run`` fixture from
helpers.py (40,000 train rows, 10,000 valid rows, 5,000 test rows, 2 epochs).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import FRAPPE_FIELDS, FRAPPE_TEST_ROWS, FRAPPE_WEATHER, run_cli
from helpers import frappe_run, one_torch_thread  # noqa: F401 (fixtures)
from workbench.bundle import load_bundle, save_bundle
from workbench.counterfactual import find_counterfactuals
from workbench.data import load_dataset, read_frame
from workbench.explain import integrated_gradients
from workbench.schema import OOV_TOKEN
from workbench.training import predict_logits
from workbench.whatif import forward_logits

pytestmark = pytest.mark.frappe


@pytest.fixture(scope="module")
def bundle(frappe_run):
    return load_bundle(frappe_run.bundle)


@pytest.fixture(scope="module")
def test_set(frappe_run, bundle):
    return load_dataset(frappe_run.data / "test.libfm", bundle.schema)


@pytest.fixture(scope="module")
def attribution(bundle, test_set):
    return integrated_gradients(bundle.model, test_set, np.arange(500))


def test_frappe_schema_fields(bundle):
    assert tuple(bundle.schema.field_names) == FRAPPE_FIELDS
    assert {f.kind for f in bundle.schema.fields} == {"categorical"}


def test_frappe_test_auc(bundle):
    metrics = bundle.metrics["test"]

    assert metrics["n_rows"] == FRAPPE_TEST_ROWS
    assert metrics["auc"] > 0.9


def test_frappe_training_recorded(frappe_run, bundle):
    training = bundle.manifest["training"]

    assert bundle.architecture == "dcnv2"
    assert len(training["history"]) == 2
    assert frappe_run.summary["metrics"]["test"]["auc"] == bundle.metrics["test"]["auc"]
    assert bundle.manifest["data"]["train"]["rows"] == 40_000
    assert bundle.manifest["data"]["valid"]["rows"] == 10_000


def test_frappe_evaluate_matches_manifest(frappe_run, bundle):
    status, stdout, stderr = run_cli(["evaluate", str(frappe_run.bundle), str(frappe_run.data / "test.libfm")])

    assert status == 0, stderr
    assert json.loads(stdout)["auc"] == pytest.approx(bundle.metrics["test"]["auc"], abs=1e-9)


def test_frappe_bundle_round_trip(frappe_run, bundle, tmp_path):
    subset = load_dataset(frappe_run.data / "test.libfm", bundle.schema, max_rows=1000)

    save_bundle(bundle.model, tmp_path / "copy")
    reloaded = load_bundle(tmp_path / "copy")
    before = predict_logits(bundle.model, subset)
    after = predict_logits(reloaded.model, subset)

    assert len(subset) == 1000
    assert float(np.max(np.abs(before - after))) <= 1e-6


def test_frappe_ig_completeness(attribution):
    assert attribution.n_samples == 500
    assert attribution.parameters["n_steps"] == 50
    assert attribution.completeness_gap_share < 0.01


def test_frappe_ig_weather_values(attribution):
    weather = attribution.raw_values["weather"]
    known = weather[weather != OOV_TOKEN]

    assert set(known) <= FRAPPE_WEATHER
    assert len(known) >= 0.9 * len(weather)
    assert {"sunny", "cloudy"} <= set(known)


def test_frappe_ig_raw_values_match_file(frappe_run, attribution):
    frame = read_frame(frappe_run.data / "test.libfm", max_rows=500)

    for name in ("daytime", "weekday", "weather", "country", "city", "item"):
        displayed = attribution.raw_values[name].to_numpy()
        in_file = frame[name].astype(str).to_numpy()
        known = displayed != OOV_TOKEN
        assert (displayed[known] == in_file[known]).all(), name


def test_frappe_counterfactuals_flip_within_budget(bundle, test_set):
    """A batch of Frappe rows: with the user fixed, every row's decision at 0.5 flips within the budget."""
    rows = np.random.default_rng(0).choice(len(test_set), size=20, replace=False)
    logits = forward_logits(bundle.model, test_set.tensors(rows))
    for row, logit in zip(rows, logits, strict=True):
        result = find_counterfactuals(
            bundle.model, test_set, int(row), "flip:0.5", immutable=["user"], max_evaluations=50_000
        )
        assert result.found, result.message
        assert result.evaluations <= 50_000
        assert result.stopped is None
        for counterfactual in result.counterfactuals:
            assert "user" not in counterfactual.changed_fields
            # The prediction lands on the other side of 0.5 from where the row started.
            assert (counterfactual.prediction >= 0.5) == (logit < 0)
