"""Metrics: gAUC and ECE against hand-computed values, reliability bins against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss, roc_auc_score

from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.metrics import (
    calibration_table,
    expected_calibration_error,
    gauc,
    metrics_table,
    prediction_metrics,
    sigmoid,
    user_field,
    value_calibration,
)
from workbench.training import predict_logits

from conftest import AD_CLICKS_DIR, REPO_ROOT

# Four users. u1: the click outranks both non-clicks (AUC 1). u2: 3 of 4 pairs in order (AUC 0.75).
# u3 has no click, so it has no AUC and is left out. u4: the click is ranked below (AUC 0).
# gAUC = (3 · 1 + 4 · 0.75 + 2 · 0) / (3 + 4 + 2) = 6 / 9.
USERS = np.array(["u1", "u1", "u1", "u2", "u2", "u2", "u2", "u3", "u3", "u4", "u4"])
LABELS = np.array([1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0])
SCORES = np.array([0.9, 0.2, 0.5, 0.3, 0.4, 0.8, 0.1, 0.7, 0.6, 0.2, 0.6])


def test_gauc_hand_computed():
    result = gauc(LABELS, SCORES, USERS)
    assert result["gauc"] == pytest.approx(6 / 9)
    assert result["groups_used"] == 3
    assert result["groups_total"] == 4
    assert result["rows_used"] == 9


def test_gauc_one_group_equals_auc():
    generator = np.random.default_rng(0)
    labels = generator.integers(0, 2, 300)
    scores = generator.random(300)
    assert gauc(labels, scores, np.zeros(300))["gauc"] == pytest.approx(roc_auc_score(labels, scores))


def test_gauc_without_mixed_groups_is_nan():
    result = gauc(np.array([1, 1, 0]), np.array([0.2, 0.3, 0.4]), np.array(["a", "a", "b"]))
    assert np.isnan(result["gauc"])
    assert result["groups_used"] == 0


def test_ece_hand_computed():
    # Two uniform bins. Below 0.5: mean prediction 0.2, click rate 1/3. From 0.5: mean 2.2/3, click rate 2/3.
    # ECE = 3/6 · |1/3 − 0.2| + 3/6 · |2/3 − 2.2/3| = 0.5 · 2/15 + 0.5 · 1/15 = 0.1.
    probabilities = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    labels = np.array([0, 0, 1, 1, 0, 1])
    assert expected_calibration_error(labels, probabilities, n_bins=2) == pytest.approx(0.1)
    table = calibration_table(labels, probabilities, n_bins=2)
    assert table["count"].tolist() == [3, 3]
    assert table["mean_predicted"].tolist() == pytest.approx([0.2, 2.2 / 3])
    assert table["observed_rate"].tolist() == pytest.approx([1 / 3, 2 / 3])


def test_perfect_calibration_has_zero_ece():
    # Each bin's click rate equals its only prediction.
    probabilities = np.repeat([0.25, 0.75], 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(labels, probabilities, n_bins=4) == pytest.approx(0.0)


@pytest.mark.parametrize("n_bins", [5, 10, 20])
def test_uniform_bins_match_sklearn(n_bins):
    generator = np.random.default_rng(n_bins)
    probabilities = generator.beta(1, 6, 5_000)
    labels = (generator.random(5_000) < probabilities).astype(int)
    table = calibration_table(labels, probabilities, n_bins=n_bins)
    observed, predicted = calibration_curve(labels, probabilities, n_bins=n_bins, strategy="uniform")
    assert table["observed_rate"].to_numpy() == pytest.approx(observed)
    assert table["mean_predicted"].to_numpy() == pytest.approx(predicted)
    assert table["count"].sum() == 5_000


def test_quantile_bins_hold_equal_counts():
    probabilities = np.linspace(0.001, 0.3, 1_000)
    labels = np.zeros(1_000)
    table = calibration_table(labels, probabilities, n_bins=10, strategy="quantile")
    assert table["count"].tolist() == [100] * 10


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="labels must be 0 or 1; found 2"):
        calibration_table(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="differ in length"):
        expected_calibration_error(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError, match="no rows"):
        prediction_metrics(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="unknown bin strategy 'equal'"):
        calibration_table(LABELS, SCORES, strategy="equal")
    with pytest.raises(ValueError, match="between 0 and 1"):
        calibration_table(np.array([0, 1]), np.array([0.1, np.nan]))


def test_prediction_metrics_of_bundled_model():
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_deepfm")
    dataset = load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.schema, max_rows=5_000)
    logits = predict_logits(bundle.model, dataset)
    field = user_field(bundle.schema.field_names)
    assert field == "user_id"
    users = dataset.raw[field].to_numpy()
    metrics = prediction_metrics(dataset.labels, logits, groups=users)
    probabilities = sigmoid(logits)
    assert metrics["auc"] == pytest.approx(roc_auc_score(dataset.labels, probabilities))
    assert metrics["logloss"] == pytest.approx(log_loss(dataset.labels, probabilities))
    assert metrics["gauc"] == pytest.approx(gauc(dataset.labels, probabilities, users)["gauc"])
    assert 0.5 < metrics["gauc"] < 1.0
    assert metrics["ece"] == pytest.approx(expected_calibration_error(dataset.labels, probabilities))
    table = metrics_table({"deepfm": metrics, "copy": metrics})
    assert list(table.index) == ["deepfm", "copy"]
    assert list(table.columns[:4]) == ["auc", "gauc", "logloss", "ece"]


def test_value_calibration_per_device():
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_deepfm")
    dataset = load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.schema, max_rows=3_000)
    probabilities = sigmoid(predict_logits(bundle.model, dataset))
    table = value_calibration(dataset, probabilities, "device")
    assert table["count"].sum() == len(dataset)
    assert table["count"].is_monotonic_decreasing
    for line in table.itertuples():
        chosen = dataset.raw["device"].astype(str).to_numpy() == line.raw_value
        assert line.count == chosen.sum()
        assert line.observed_rate == pytest.approx(dataset.labels[chosen].mean())
        assert line.mean_predicted == pytest.approx(probabilities[chosen].mean())
    with pytest.raises(KeyError, match="unknown field 'devise'"):
        value_calibration(dataset, probabilities, "devise")
