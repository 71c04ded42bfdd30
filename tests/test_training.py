"""Training loop, early stopping, repeatability and metrics."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from helpers import build_tiny_model, synthetic_splits
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.data import encode
from workbench.training import (
    TrainConfig,
    evaluate,
    metrics_from_logits,
    predict_logits,
    seed_everything,
    train,
)

FAST = TrainConfig(epochs=3, batch_size=128, learning_rate=1e-2, seed=0)


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=3000, n_valid=1000, n_test=1000, seed=0)


@pytest.fixture(scope="module")
def trained(splits):
    """A DeepFM trained until early stopping ended it after a non-improving epoch."""
    model = build_tiny_model("deepfm", splits.schema)
    config = TrainConfig(epochs=30, batch_size=64, learning_rate=3e-2, patience=1, seed=0)
    result = train(model, splits.train, splits.valid, config, show_progress=False)
    return model, result


def _train_fresh(splits, seed: int):
    seed_everything(seed)
    model = build_tiny_model("deepfm", splits.schema, seed=seed)
    result = train(model, splits.train, splits.valid, dataclasses.replace(FAST, seed=seed), show_progress=False)
    return model, result


def test_train_learns_signal(trained, splits):
    model, result = trained

    assert result.valid_metrics["auc"] > 0.8
    assert evaluate(model, splits.test)["auc"] > 0.8


def test_train_beats_first_epoch_loss(trained):
    _, result = trained

    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_train_repeatable_same_seed(splits):
    first, first_result = _train_fresh(splits, seed=3)
    second, second_result = _train_fresh(splits, seed=3)

    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert first_result.history == second_result.history


def test_train_seed_changes_weights(splits):
    first, _ = _train_fresh(splits, seed=3)
    second, _ = _train_fresh(splits, seed=4)

    differs = [not torch.equal(v, second.state_dict()[k]) for k, v in first.state_dict().items()]

    assert any(differs)


def test_best_weights_restored(trained, splits):
    model, result = trained
    best = result.history[result.best_epoch - 1]

    assert len(result.history) > result.best_epoch
    assert best["valid_auc"] == max(h["valid_auc"] for h in result.history)
    assert evaluate(model, splits.valid)["auc"] == best["valid_auc"]
    assert result.valid_metrics["auc"] == best["valid_auc"]
    assert result.history[-1]["valid_auc"] != best["valid_auc"]


def test_patience_stops_training(trained):
    _, result = trained

    assert len(result.history) == result.best_epoch + 1


def test_learning_rate_divided_after_no_gain(splits):
    model = build_tiny_model("fm", splits.schema)
    config = TrainConfig(epochs=6, batch_size=64, learning_rate=5e-2, patience=3, seed=1)

    result = train(model, splits.train, splits.valid, config, show_progress=False)

    best = -math.inf
    expected_rate = config.learning_rate
    for record in result.history:
        assert record["learning_rate"] == pytest.approx(expected_rate), f"epoch {record['epoch']}"
        if record["valid_auc"] > best:
            best = record["valid_auc"]
        else:
            expected_rate *= 0.1


def test_train_result_fields(trained):
    _, result = trained

    assert result.config["patience"] == 1
    assert result.config["batch_size"] == 64
    assert [h["epoch"] for h in result.history] == [float(i) for i in range(1, len(result.history) + 1)]
    assert result.seconds > 0


def test_on_epoch_end_callback(splits):
    calls = []
    model = build_tiny_model("lr", splits.schema)
    config = dataclasses.replace(FAST, epochs=2)

    def record_call(epoch, total, record):
        calls.append((epoch, total, record))

    result = train(model, splits.train, splits.valid, config, show_progress=False, on_epoch_end=record_call)

    assert [(epoch, total) for epoch, total, _ in calls] == [(1, 2), (2, 2)]
    assert [record for _, _, record in calls] == result.history


def test_metrics_match_sklearn(trained, splits):
    model, _ = trained
    logits = predict_logits(model, splits.test)
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))

    metrics = metrics_from_logits(splits.test.labels, logits)

    assert metrics["auc"] == pytest.approx(roc_auc_score(splits.test.labels, logits), abs=1e-12)
    assert metrics["logloss"] == pytest.approx(log_loss(splits.test.labels, probabilities), abs=1e-12)
    assert metrics["n_rows"] == len(splits.test)
    assert metrics["positive_rate"] == pytest.approx(float(splits.test.labels.mean()))


def test_metrics_logloss_by_hand():
    labels = np.array([1.0, 0.0, 1.0])
    logits = np.array([0.0, math.log(3.0), -math.log(4.0)])
    expected = -(math.log(0.5) + math.log(0.25) + math.log(0.2)) / 3

    metrics = metrics_from_logits(labels, logits)

    assert metrics["logloss"] == pytest.approx(expected, abs=1e-12)
    assert metrics["auc"] == 0.0


def test_metrics_single_class_auc_nan():
    metrics = metrics_from_logits(np.zeros(4), np.array([0.1, -0.2, 0.3, 0.0]))

    assert math.isnan(metrics["auc"])
    assert metrics["positive_rate"] == 0.0


def test_evaluate_equals_metrics(trained, splits):
    model, _ = trained

    evaluated = evaluate(model, splits.test, batch_size=97)
    direct = metrics_from_logits(splits.test.labels, predict_logits(model, splits.test))

    assert evaluated == pytest.approx(direct)


def test_predict_restores_train_mode(trained, splits):
    model, _ = trained
    model.train()

    predict_logits(model, splits.test)

    assert model.training
    model.eval()


def test_predict_keeps_eval_mode(trained, splits):
    model, _ = trained
    model.eval()

    predict_logits(model, splits.test)

    assert not model.training


def test_predict_runs_in_eval_mode(trained, splits):
    model, _ = trained
    model.train()

    from_train_mode = predict_logits(model, splits.test)
    model.eval()
    from_eval_mode = predict_logits(model, splits.test)

    np.testing.assert_array_equal(from_train_mode, from_eval_mode)


def test_predict_batch_size_independent(trained, splits):
    model, _ = trained

    small = predict_logits(model, splits.test, batch_size=7)
    large = predict_logits(model, splits.test, batch_size=100_000)

    assert small.shape == (len(splits.test),)
    np.testing.assert_allclose(small, large, rtol=0, atol=1e-6)


def test_evaluate_empty_dataset(splits):
    empty = encode(splits.test.raw.iloc[:0], splits.schema, name="empty.csv")
    model = build_tiny_model("lr", splits.schema)

    with pytest.raises(ValueError, match=r"cannot evaluate on an empty data set \(empty\.csv\)"):
        evaluate(model, empty)


def test_train_empty_dataset(splits):
    empty = encode(splits.train.raw.iloc[:0], splits.schema)
    model = build_tiny_model("lr", splits.schema)

    with pytest.raises(ValueError, match="training needs non-empty training and validation data"):
        train(model, empty, splits.valid, FAST, show_progress=False)


def test_train_single_class_validation(splits):
    valid = copy.copy(splits.valid)
    valid.labels = np.zeros_like(splits.valid.labels)
    model = build_tiny_model("fm", splits.schema)

    with pytest.raises(ValueError, match="valid"):
        train(model, splits.train, valid, FAST, show_progress=False)


def test_train_last_batch_of_one():
    splits = synthetic_splits(n_train=257, n_valid=100, n_test=10, seed=2)
    model = build_tiny_model("deepfm", splits.schema)
    config = TrainConfig(epochs=1, batch_size=256, seed=0)

    result = train(model, splits.train, splits.valid, config, show_progress=False)

    assert result.best_epoch == 1
