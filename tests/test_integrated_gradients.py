"""Field-level Integrated Gradients: completeness, closed forms, equivalences and guards."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from captum.attr import IntegratedGradients

from helpers import build_tiny_model, set_weights, synthetic_splits
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.explain import BASELINES, Attribution, integrated_gradients
from workbench.explain.baselines import baseline_inputs
from workbench.explain.integrated_gradients import DEFAULT_N_STEPS
from workbench.training import TrainConfig, predict_logits, train


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=3000, n_valid=1000, n_test=500, seed=21)


@pytest.fixture(scope="module")
def deepfm(splits):
    """A DeepFM (dropout 0.3, batch norm) trained for a few epochs on the synthetic data."""
    model = build_tiny_model("deepfm", splits.schema, hidden_units=[16, 16], dropout=0.3)
    config = TrainConfig(epochs=4, batch_size=128, learning_rate=1e-2, seed=0)
    result = train(model, splits.train, splits.valid, config, show_progress=False)
    assert result.valid_metrics["auc"] > 0.8
    return model


@pytest.fixture(scope="module")
def deepfm_attribution(deepfm, splits):
    return integrated_gradients(deepfm, splits.test)


def _randomised(architecture: str, splits, seed: int, **hyperparameters):
    """A model whose embedding tables and bias hold O(1) values (PAD rows stay zero)."""
    model = build_tiny_model(architecture, splits.schema, **hyperparameters).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))
        for table in model.field_embedding.tables.values():
            table.weight[0].zero_()
    return model


# --- Completeness ---------------------------------------------------------


def test_completeness_trained_deepfm(deepfm_attribution):
    assert deepfm_attribution.parameters["n_steps"] == DEFAULT_N_STEPS
    assert deepfm_attribution.completeness_gap_share < 0.01


def test_predictions_match_model(deepfm, deepfm_attribution, splits):
    expected = predict_logits(deepfm, splits.test)

    np.testing.assert_allclose(deepfm_attribution.predictions, expected, rtol=0, atol=1e-5)


def test_base_values_match_baseline_inputs(deepfm, splits):
    rows = np.arange(10)
    inputs = splits.test.tensors(rows)

    attribution = integrated_gradients(deepfm, splits.test, rows, baseline="oov")
    with torch.no_grad():
        expected = deepfm(baseline_inputs(deepfm.schema, inputs, "oov")).numpy()

    np.testing.assert_allclose(attribution.base_values, expected, rtol=0, atol=1e-6)


def test_completeness_gap_definition(deepfm_attribution):
    attribution = deepfm_attribution
    expected = np.abs(attribution.values.sum(axis=1) - (attribution.predictions - attribution.base_values))

    np.testing.assert_array_equal(attribution.completeness_gap, expected)
    assert attribution.completeness_gap_share == pytest.approx(
        expected.mean() / np.abs(attribution.predictions - attribution.base_values).mean()
    )


# --- Closed forms ---------------------------------------------------------


def test_lr_equals_field_contributions(splits):
    model = _randomised("lr", splits, seed=1)
    rows = np.arange(50)

    attribution = integrated_gradients(model, splits.test, rows)
    with torch.no_grad():
        contributions = model.field_embedding(splits.test.tensors(rows)).sum(dim=-1).numpy()

    np.testing.assert_allclose(attribution.values, contributions, rtol=0, atol=1e-5)


def test_lr_completeness_exact(splits):
    model = _randomised("lr", splits, seed=2)

    attribution = integrated_gradients(model, splits.test, np.arange(50), n_steps=2)

    assert float(attribution.completeness_gap.max()) < 1e-5


def test_fm_shares_pairs_equally(splits):
    model = _randomised("fm", splits, seed=3)
    rows = np.arange(20)

    attribution = integrated_gradients(model, splits.test, rows, n_steps=2)
    with torch.no_grad():
        slots = model.field_embedding(splits.test.tensors(rows)).numpy()

    factors, weights = slots[..., :-1], slots[..., -1]
    n_fields = slots.shape[1]
    expected = weights.copy()
    for i, j in itertools.permutations(range(n_fields), 2):
        expected[:, i] += 0.5 * np.einsum("bd,bd->b", factors[:, i], factors[:, j])
    np.testing.assert_allclose(attribution.values, expected, rtol=0, atol=1e-5)


def test_equals_ig_on_precomputed_embeddings(deepfm, splits):
    rows = np.arange(25)
    inputs = splits.test.tensors(rows)
    deepfm.eval()
    with torch.no_grad():
        embeddings = deepfm.field_embedding(inputs)
        baseline = deepfm.field_embedding(baseline_inputs(deepfm.schema, inputs, "zero"))

    reference = IntegratedGradients(deepfm.logit_from_embeddings).attribute(
        embeddings, baselines=baseline, n_steps=DEFAULT_N_STEPS, method="gausslegendre"
    )
    attribution = integrated_gradients(deepfm, splits.test, rows)

    np.testing.assert_allclose(attribution.values, reference.sum(dim=-1).numpy(), rtol=0, atol=1e-5)


# --- Baselines ------------------------------------------------------------


def test_zero_baseline_base_value_is_bias(splits):
    model = _randomised("lr", splits, seed=4)

    attribution = integrated_gradients(model, splits.test, np.arange(5), baseline="zero")

    np.testing.assert_allclose(attribution.base_values, np.full(5, model.bias.item()), rtol=0, atol=1e-6)


def test_oov_baseline_base_value(splits):
    model = _randomised("lr", splits, seed=5)
    tables = model.field_embedding.tables
    oov_weights = sum(
        tables[f.name].weight[f.vocabulary.oov_index, 0].item() for f in splits.schema.fields if f.kind == "categorical"
    )

    attribution = integrated_gradients(model, splits.test, np.arange(5), baseline="oov")

    np.testing.assert_allclose(attribution.base_values, np.full(5, model.bias.item() + oov_weights), rtol=0, atol=1e-5)


def test_oov_baseline_categorical_shift(splits):
    model = _randomised("lr", splits, seed=6)
    rows = np.arange(5)
    position = splits.schema.field_names.index("city")
    oov_weight = model.field_embedding.tables["city"].weight[splits.schema["city"].vocabulary.oov_index, 0].item()

    zero = integrated_gradients(model, splits.test, rows, baseline="zero")
    oov = integrated_gradients(model, splits.test, rows, baseline="oov")

    np.testing.assert_allclose(oov.values[:, position], zero.values[:, position] - oov_weight, rtol=0, atol=1e-5)
    assert oov.baseline == "oov"
    assert zero.baseline == "zero"


def test_oov_baseline_keeps_other_kinds(splits):
    model = _randomised("lr", splits, seed=7)
    rows = np.arange(5)
    others = [i for i, f in enumerate(splits.schema.fields) if f.kind != "categorical"]

    zero = integrated_gradients(model, splits.test, rows, baseline="zero")
    oov = integrated_gradients(model, splits.test, rows, baseline="oov")

    np.testing.assert_allclose(oov.values[:, others], zero.values[:, others], rtol=0, atol=1e-6)


def test_baseline_inputs_encoding(splits):
    inputs = splits.test.tensors(np.arange(3))

    oov = baseline_inputs(splits.schema, inputs, "oov")
    zero = baseline_inputs(splits.schema, inputs, "zero")

    assert oov["city"].tolist() == [splits.schema["city"].vocabulary.oov_index] * 3
    assert zero["city"].tolist() == [0, 0, 0]
    assert oov["history"].tolist() == [[0, 0, 0]] * 3
    assert oov["age"].tolist() == [0.0] * 3
    assert oov["vec"].shape == (3, 2)
    assert torch.count_nonzero(oov["vec"]) == 0


def test_baselines_registry():
    assert set(BASELINES) == {"zero", "oov"}


# --- Batching and modes ---------------------------------------------------


def test_batch_size_invariance(deepfm, splits):
    rows = np.arange(7)

    results = [integrated_gradients(deepfm, splits.test, rows, batch_size=size) for size in (1, 2, 3)]

    for result in results[1:]:
        np.testing.assert_allclose(result.values, results[0].values, rtol=0, atol=1e-6)
        np.testing.assert_allclose(result.base_values, results[0].base_values, rtol=0, atol=1e-6)
        np.testing.assert_allclose(result.predictions, results[0].predictions, rtol=0, atol=1e-6)


def test_train_mode_restored(deepfm, splits):
    deepfm.train()

    integrated_gradients(deepfm, splits.test, np.arange(3))

    assert deepfm.training
    deepfm.eval()


def test_train_mode_same_as_eval(deepfm, splits):
    rows = np.arange(10)
    deepfm.train()
    from_train_mode = integrated_gradients(deepfm, splits.test, rows)
    deepfm.eval()

    from_eval_mode = integrated_gradients(deepfm, splits.test, rows)

    np.testing.assert_array_equal(from_train_mode.values, from_eval_mode.values)
    np.testing.assert_array_equal(from_train_mode.predictions, from_eval_mode.predictions)


def test_eval_mode_kept(deepfm, splits):
    deepfm.eval()

    integrated_gradients(deepfm, splits.test, np.arange(3))

    assert not deepfm.training


def test_mode_restored_after_error(deepfm, splits):
    deepfm.train()

    with pytest.raises(ValueError, match="unknown baseline"):
        integrated_gradients(deepfm, splits.test, np.arange(3), baseline="mean")

    assert deepfm.training
    deepfm.eval()


def test_row_subset_order(deepfm, deepfm_attribution, splits):
    rows = np.array([40, 3, 17])

    subset = integrated_gradients(deepfm, splits.test, rows)

    np.testing.assert_allclose(subset.values, deepfm_attribution.values[rows], rtol=0, atol=1e-6)
    assert subset.rows.tolist() == [40, 3, 17]


def test_progress_reports_fractions(deepfm, splits):
    fractions = []

    integrated_gradients(deepfm, splits.test, np.arange(10), batch_size=4, progress=fractions.append)

    assert fractions == [0.4, 0.8, 1.0]


# --- Provenance -----------------------------------------------------------


def test_result_provenance(deepfm_attribution, splits):
    attribution = deepfm_attribution

    assert attribution.method == "integrated_gradients"
    assert attribution.output_space == "logit"
    assert attribution.field_names == tuple(splits.schema.field_names)
    assert attribution.values.shape == (len(splits.test), len(splits.schema))
    assert attribution.rows.tolist() == list(range(len(splits.test)))
    assert attribution.parameters == {"n_steps": 50, "rule": "gausslegendre", "layer": "field_embedding.output"}
    np.testing.assert_array_equal(attribution.labels, splits.test.labels)
    pd.testing.assert_frame_equal(attribution.raw_values, splits.test.raw_values().reset_index(drop=True))


def test_describe_caption(deepfm_attribution):
    assert deepfm_attribution.describe() == "method: integrated_gradients · baseline: zero · output: logit · steps: 50"


def test_sample_frame(deepfm_attribution, splits):
    frame = deepfm_attribution.sample(2)

    assert frame["field"].tolist() == splits.schema.field_names
    assert frame["raw_value"].tolist() == splits.test.raw_values(np.array([2])).iloc[0].tolist()
    np.testing.assert_array_equal(frame["attribution"].to_numpy(), deepfm_attribution.values[2])


def test_sample_out_of_range(deepfm_attribution):
    with pytest.raises(IndexError, match=r"sample position 500 is out of range \(0\.\.499\)"):
        deepfm_attribution.sample(500)


def test_position_of_row(deepfm, splits):
    attribution = integrated_gradients(deepfm, splits.test, np.array([9, 4]))

    assert attribution.position_of_row(4) == 1
    with pytest.raises(KeyError, match="row 5 is not among the 2 attributed rows"):
        attribution.position_of_row(5)


def test_mean_abs_sorted(deepfm_attribution):
    importance = deepfm_attribution.mean_abs()

    assert importance.is_monotonic_decreasing
    assert importance["city"] == pytest.approx(np.abs(deepfm_attribution.values[:, 0]).mean())


def test_attribution_shape_checks():
    with pytest.raises(ValueError, match="values have 2 columns but there are 3 field names"):
        Attribution(np.zeros((4, 2)), np.zeros(4), np.zeros(4), ("a", "b", "c"), np.arange(4), "m", "zero")
    with pytest.raises(ValueError, match=r"predictions must have shape \(4,\); got \(3,\)"):
        Attribution(np.zeros((4, 2)), np.zeros(4), np.zeros(3), ("a", "b"), np.arange(4), "m", "zero")


# --- Parquet --------------------------------------------------------------


def test_to_parquet_round_trip(deepfm, splits, tmp_path):
    rows = np.array([5, 0, 11])
    attribution = integrated_gradients(deepfm, splits.test, rows)
    n_fields = len(splits.schema)

    path = attribution.to_parquet(tmp_path / "ig.parquet")
    frame = pd.read_parquet(path)

    assert len(frame) == 3 * n_fields
    assert frame["row"].tolist() == np.repeat(rows, n_fields).tolist()
    assert frame["field"].tolist() == splits.schema.field_names * 3
    np.testing.assert_array_equal(frame["attribution"].to_numpy(), attribution.values.reshape(-1))
    np.testing.assert_array_equal(frame["base_value"].to_numpy(), np.repeat(attribution.base_values, n_fields))
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), np.repeat(attribution.predictions, n_fields))
    np.testing.assert_array_equal(frame["label"].to_numpy(), np.repeat(splits.test.labels[rows], n_fields))
    assert frame["raw_value"].tolist() == splits.test.raw_values(rows).to_numpy().reshape(-1).tolist()
    assert set(frame["method"]) == {"integrated_gradients"}
    assert set(frame["baseline"]) == {"zero"}
    assert set(frame["output_space"]) == {"logit"}


def test_to_parquet_metadata(deepfm_attribution, tmp_path):
    path = deepfm_attribution.to_parquet(tmp_path / "ig.parquet")

    metadata = json.loads(pq.read_schema(path).metadata[b"workbench.attribution"])

    assert metadata == {
        "method": "integrated_gradients",
        "baseline": "zero",
        "output_space": "logit",
        "parameters": {"n_steps": 50, "rule": "gausslegendre", "layer": "field_embedding.output"},
        "field_names": list(deepfm_attribution.field_names),
    }


# --- Guards ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"n_steps": 1}, ValueError, "n_steps must be >= 2; got 1"),
        ({"batch_size": 0}, ValueError, "batch_size must be >= 1; got 0"),
        ({"rows": np.array([], dtype=np.int64)}, ValueError, "no rows to explain"),
        ({"rows": np.array([0, 500])}, IndexError, r"rows must lie in 0\.\.499; got 0\.\.500"),
        ({"rows": np.array([-1, 3])}, IndexError, r"rows must lie in 0\.\.499; got -1\.\.3"),
        ({"baseline": "mean"}, ValueError, "unknown baseline 'mean'; available: zero, oov"),
    ],
)
def test_bad_arguments(deepfm, splits, arguments, error, message):
    arguments = {"rows": np.arange(3), **arguments}
    rows = arguments.pop("rows")

    with pytest.raises(error, match=message):
        integrated_gradients(deepfm, splits.test, rows, **arguments)
