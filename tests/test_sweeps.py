"""Field sweeps: ICE values against hand-edited inputs, LR closed forms, planted effects, counts, errors, figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import synthetic_splits
from sequence_fixtures import SEQUENCE_HYPERPARAMETERS, SPEC, sequence_frame
from workbench.bundle import load_bundle
from workbench.data import CTRDataset, encode, load_dataset, read_frame, read_schema_spec
from workbench.schema import PAD_INDEX, Schema, fit_schema
from workbench.sweep_figures import ice_figure
from workbench.sweeps import GRID_QUANTILE_RANGE, FieldSweep, sweep_field
from workbench.zoo import CTRModel, build_model

from conftest import AD_CLICKS_DIR, REPO_ROOT

SCHEMA_ROWS = 300
COHORT_ROWS = 200
PLANTED_ROWS = 500
POSITIONS = ("1", "2", "3", "4", "5")


def randomise(model: CTRModel, seed: int = 0) -> CTRModel:
    """Give every parameter seeded Normal(0, 0.3) values, keeping PAD rows at zero, and return the model in eval mode.

    At their initial scale (embeddings of std 1e-4) the models predict nearly
    the same for every input, which would make equality checks weak.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
            if "tables" in name:
                parameter[PAD_INDEX] = 0.0
    return model.eval()


def predict(model: CTRModel, inputs: dict[str, torch.Tensor], output_space: str = "probability") -> np.ndarray:
    """The model's output on ``inputs`` in eval mode, computed here without the sweep code."""
    model.eval()
    with torch.no_grad():
        logits = model(inputs).double()
    values = torch.sigmoid(logits) if output_space == "probability" else logits
    return values.numpy()


@pytest.fixture(scope="module")
def ad_clicks() -> tuple[Schema, pd.DataFrame, CTRDataset]:
    """A schema fitted on the first 300 training rows, those raw rows, and the first 200 test rows encoded."""
    train_frame = read_frame(AD_CLICKS_DIR / "train.parquet", max_rows=SCHEMA_ROWS)
    schema = fit_schema(train_frame, read_schema_spec(AD_CLICKS_DIR / "schema.json"))
    test = encode(read_frame(AD_CLICKS_DIR / "test.parquet", max_rows=COHORT_ROWS), schema)
    return schema, train_frame, test


@pytest.fixture(scope="module")
def deepfm(ad_clicks) -> CTRModel:
    torch.manual_seed(0)
    return randomise(build_model("deepfm", ad_clicks[0], embedding_dim=4, hidden_units=[8]))


@pytest.fixture(scope="module")
def lr(ad_clicks) -> CTRModel:
    torch.manual_seed(0)
    return randomise(build_model("lr", ad_clicks[0]), seed=1)


@pytest.fixture(scope="module")
def planted() -> dict[str, tuple[CTRModel, CTRDataset]]:
    """The bundled LR and DeepFM, each with the first 500 test rows encoded with its schema."""
    out = {}
    for name in ("ad_clicks_lr", "ad_clicks_deepfm"):
        bundle = load_bundle(REPO_ROOT / "models" / name)
        data = load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.schema, max_rows=PLANTED_ROWS)
        out[name] = (bundle.model, data)
    return out


# --- ICE values against hand-edited inputs ----------------------------------------------


def test_categorical_ice_equals_edited_predictions(ad_clicks, deepfm):
    schema, _, test = ad_clicks
    rows = np.arange(0, COHORT_ROWS, 3)
    values = ["Berlin", "Paris", schema["city"].vocabulary.values[-1]]
    sweep = sweep_field(deepfm, test, rows, "city", values=values)

    for position, value in enumerate(values):
        inputs = test.tensors(rows)
        inputs["city"] = torch.full_like(inputs["city"], schema["city"].vocabulary.index_of(value))
        np.testing.assert_allclose(sweep.ice[:, position], predict(deepfm, inputs), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sweep.original, predict(deepfm, test.tensors(rows)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sweep.partial_dependence, sweep.ice.mean(axis=0))
    assert sweep.values == tuple(values)
    assert sweep.original_values == tuple(test.raw_values(rows)["city"])


def test_numeric_ice_equals_edited_predictions(ad_clicks, deepfm):
    schema, _, test = ad_clicks
    rows = np.arange(50)
    values = [0.1, 0.5, 2.0]
    sweep = sweep_field(deepfm, test, rows, "bid_price", values=values, output_space="logit")

    mean, std = schema["bid_price"].mean, schema["bid_price"].std
    for position, value in enumerate(values):
        inputs = test.tensors(rows)
        inputs["bid_price"] = torch.full_like(inputs["bid_price"], (value - mean) / std)
        np.testing.assert_allclose(sweep.ice[:, position], predict(deepfm, inputs, "logit"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sweep.original, predict(deepfm, test.tensors(rows), "logit"), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(sweep.numeric_values, values)
    assert sweep.values == ("0.1", "0.5", "2")
    assert sweep.training_counts is None


def test_sweep_restores_train_mode_and_ignores_dropout(ad_clicks):
    schema, _, test = ad_clicks
    torch.manual_seed(0)
    model = randomise(build_model("deepfm", schema, embedding_dim=4, hidden_units=[8], dropout=0.5))
    model.train()
    model.field_embedding.eval()
    first = sweep_field(model, test, np.arange(20), "device")
    second = sweep_field(model, test, np.arange(20), "device")

    np.testing.assert_array_equal(first.ice, second.ice)
    assert model.training
    assert not model.field_embedding.training
    assert all(module.training for name, module in model.named_modules() if not name.startswith("field_embedding"))


def test_chunk_size_does_not_change_values(ad_clicks, deepfm):
    test = ad_clicks[2]
    rows = np.arange(37)
    whole = sweep_field(deepfm, test, rows, "hour", top_k=6)
    chunked = sweep_field(deepfm, test, rows, "hour", top_k=6, chunk_size=7)
    fractions = []
    sweep_field(deepfm, test, rows, "hour", top_k=6, chunk_size=50, progress=fractions.append)

    np.testing.assert_allclose(chunked.ice, whole.ice, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(chunked.original, whole.original, rtol=1e-6, atol=1e-7)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert len(fractions) == int(np.ceil(37 * 7 / 50))


# --- LR: ICE lines are parallel in logit space --------------------------------------------


def test_lr_categorical_ice_closed_form(ad_clicks, lr):
    schema, _, test = ad_clicks
    rows = np.arange(COHORT_ROWS)
    sweep = sweep_field(lr, test, rows, "city", top_k=8, output_space="logit")

    # logit = b + sum_f w_f[x_f], so setting city to v changes the logit by w_city[v] - w_city[own city].
    weights = lr.field_embedding.tables["city"].weight[:, 0].detach().double().numpy()
    own = test.inputs["city"][rows]
    expected = sweep.original[:, None] + weights[sweep.encoded_values][None, :] - weights[own][:, None]
    np.testing.assert_allclose(sweep.ice, expected, rtol=0, atol=1e-5)

    shifts = sweep.ice - sweep.original[:, None]
    for value in np.unique(own):
        same = shifts[own == value]
        assert np.ptp(same, axis=0).max() < 1e-5, f"rows with city index {value} do not shift alike"
    steps = sweep.ice - sweep.ice[:, :1]
    assert np.ptp(steps, axis=0).max() < 1e-5


def test_lr_numeric_ice_closed_form(ad_clicks, lr):
    schema, _, test = ad_clicks
    rows = np.arange(COHORT_ROWS)
    sweep = sweep_field(lr, test, rows, "user_age", values=[20, 35, 60], output_space="logit")

    # A numeric slot is z * w with z the standardised value, so the change is w * (z_v - z_own).
    weight = float(lr.field_embedding.numeric_vectors["user_age"].detach()[0])
    own = test.inputs["user_age"][rows].astype(np.float64)
    z_swept = (np.array([20.0, 35.0, 60.0]) - schema["user_age"].mean) / schema["user_age"].std
    expected = sweep.original[:, None] + weight * (z_swept[None, :] - own[:, None])
    np.testing.assert_allclose(sweep.ice, expected, rtol=0, atol=1e-5)


# --- planted effects in the bundled models ------------------------------------------------


@pytest.mark.parametrize("name", ["ad_clicks_lr", "ad_clicks_deepfm"])
def test_planted_position_effect_decreases(planted, name):
    model, data = planted[name]
    rows = np.arange(PLANTED_ROWS)
    position = sweep_field(model, data, rows, "position", values=list(POSITIONS), output_space="logit")
    os_sweep = sweep_field(model, data, rows, "os", output_space="logit")

    # Planted position effects: +0.9, +0.4, 0, -0.4, -0.9 (a span of 1.8); os has no planted effect.
    assert np.all(np.diff(position.partial_dependence) < 0)
    position_span = float(position.partial_dependence[0] - position.partial_dependence[-1])
    os_span = float(np.ptp(os_sweep.partial_dependence))
    assert 1.2 < position_span < 2.4
    assert os_span < position_span / 8
    probability = sweep_field(model, data, rows, "position", values=list(POSITIONS))
    assert np.all(np.diff(probability.partial_dependence) < 0)


# --- default values and counts ------------------------------------------------------------


def test_default_values_are_top_k_by_training_count(ad_clicks, deepfm):
    _, train_frame, test = ad_clicks
    counts = train_frame["city"].value_counts()
    first_seen = {value: i for i, value in enumerate(pd.unique(train_frame["city"]))}
    expected = sorted(counts.index, key=lambda value: (-counts[value], first_seen[value]))[:12]
    sweep = sweep_field(deepfm, test, None, "city", top_k=12)

    assert sweep.values == tuple(expected)
    np.testing.assert_array_equal(sweep.training_counts, [counts[value] for value in expected])
    assert len(set(sweep.training_counts)) < 12, "the check needs tied counts to test their order"
    cohort = test.raw["city"]
    np.testing.assert_array_equal(sweep.cohort_counts, [(cohort == value).sum() for value in expected])
    np.testing.assert_array_equal(sweep.rows, np.arange(COHORT_ROWS))


def test_top_k_beyond_cardinality_keeps_all_values(ad_clicks, deepfm):
    _, train_frame, test = ad_clicks
    sweep = sweep_field(deepfm, test, np.arange(10), "position")

    assert sorted(sweep.values) == sorted(train_frame["position"].unique())
    assert sweep.ice.shape == (10, 5)
    assert sweep.cohort_counts.sum() == 10


def test_default_numeric_grid_and_encoding(ad_clicks, deepfm):
    schema, _, test = ad_clicks
    sweep = sweep_field(deepfm, test, np.arange(10), "bid_price", grid_points=7)

    raw = test.raw["bid_price"].to_numpy(dtype=np.float64)
    grid = sweep.numeric_values
    assert np.all(np.diff(grid) > 0)
    assert grid.size <= 7
    assert grid[0] == pytest.approx(np.quantile(raw, GRID_QUANTILE_RANGE[0]))
    assert grid[-1] == pytest.approx(np.quantile(raw, GRID_QUANTILE_RANGE[1]))
    assert sweep.encoded_values.dtype == np.float32
    expected = ((grid - schema["bid_price"].mean) / schema["bid_price"].std).astype(np.float32)
    np.testing.assert_array_equal(sweep.encoded_values, expected)
    assert sweep.values == tuple(f"{value:.4g}" for value in grid)


def test_numeric_grid_drops_repeated_quantiles(ad_clicks, deepfm):
    schema, _, _ = ad_clicks
    frame = read_frame(AD_CLICKS_DIR / "test.parquet", max_rows=100)
    frame["bid_price"] = [0.5] * 90 + [1.0] * 10
    data = encode(frame, schema)
    sweep = sweep_field(deepfm, data, np.arange(100), "bid_price", grid_points=20)

    # The 5 % to 85 % quantiles all equal 0.5; the 90 % and 95 % quantiles interpolate towards 1.0.
    assert sweep.numeric_values[0] == 0.5
    assert np.count_nonzero(sweep.numeric_values == 0.5) == 1
    assert np.all(np.diff(sweep.numeric_values) > 0)
    np.testing.assert_array_equal(sweep.cohort_counts[[0, -1]], [90, 10])


def test_numeric_cohort_counts_nearest_grid_point(ad_clicks, deepfm):
    test = ad_clicks[2]
    sweep = sweep_field(deepfm, test, None, "bid_price", values=[0.3, 1.01])

    # Prices have two decimals, so none sits on the midpoint 0.655.
    raw = test.raw["bid_price"].to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(sweep.cohort_counts, [(raw < 0.655).sum(), (raw > 0.655).sum()])
    assert sweep.cohort_counts.sum() == COHORT_ROWS


def test_to_frame_columns_and_values(ad_clicks, deepfm):
    test = ad_clicks[2]
    categorical = sweep_field(deepfm, test, np.arange(40), "device").to_frame()
    numeric_sweep = sweep_field(deepfm, test, np.arange(40), "bid_price", values=[0.2, 0.8])
    numeric = numeric_sweep.to_frame()

    assert list(categorical.columns) == [
        "field", "value", "numeric_value", "training_count", "cohort_count", "partial_dependence",
        "ice_min", "ice_q10", "ice_q25", "ice_q50", "ice_q75", "ice_q90", "ice_max", "output_space",
    ]
    assert categorical["training_count"].notna().all()
    assert categorical["cohort_count"].sum() <= 40
    np.testing.assert_allclose(numeric["partial_dependence"], numeric_sweep.ice.mean(axis=0))
    np.testing.assert_allclose(numeric["ice_q50"], np.median(numeric_sweep.ice, axis=0))
    np.testing.assert_allclose(numeric["ice_max"], numeric_sweep.ice.max(axis=0))
    np.testing.assert_array_equal(numeric["numeric_value"], [0.2, 0.8])
    assert numeric["training_count"].isna().all()
    assert (numeric["output_space"] == "probability").all()


# --- sequence models ------------------------------------------------------------------------


def test_din_bundle_sweeps_its_target_field():
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_din")
    data = load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.schema, max_rows=60)
    rows = np.arange(60)
    sweep = sweep_field(bundle.model, data, rows, "category", top_k=5, output_space="logit")

    for position, value in enumerate(sweep.values):
        inputs = data.tensors(rows)
        inputs["category"] = torch.full_like(inputs["category"], bundle.schema["category"].vocabulary.index_of(value))
        np.testing.assert_allclose(sweep.ice[:, position], predict(bundle.model, inputs, "logit"), rtol=1e-5, atol=1e-5)
    assert np.ptp(sweep.partial_dependence) > 0.1


@pytest.mark.parametrize("architecture", ["din", "dien", "qin"])
def test_sequence_model_sweep_equals_edited_predictions(architecture):
    frame = sequence_frame(200, 5)
    schema = fit_schema(frame, SPEC)
    data = encode(frame, schema)
    torch.manual_seed(0)
    model = randomise(build_model(architecture, schema, **SEQUENCE_HYPERPARAMETERS[architecture]))
    rows = np.arange(0, 200, 5)
    sweep = sweep_field(model, data, rows, "item", values=["m00", "m05", "m11"], chunk_size=32)

    for position, value in enumerate(sweep.values):
        inputs = data.tensors(rows)
        inputs["item"] = torch.full_like(inputs["item"], schema["item"].vocabulary.index_of(value))
        np.testing.assert_allclose(sweep.ice[:, position], predict(model, inputs), rtol=1e-5, atol=1e-6)
    assert np.ptp(sweep.ice) > 1e-3


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "options", "match"),
    [
        ("town", {}, r"no field 'town'; fields: user_id, gender"),
        ("history_categories", {}, r"behaviour sequence.*workbench\.sequence_edits"),
        ("city", {"values": ["Berln"]}, r"'Berln' is not a known value of field 'city'.*'Berlin'"),
        ("city", {"values": ["Berlin", "Berlin"]}, r"repeat 'Berlin'"),
        ("city", {"values": []}, r"values is empty"),
        ("city", {"top_k": 0}, r"top_k must be an integer >= 1; got 0"),
        ("bid_price", {"grid_points": 0}, r"grid_points must be an integer >= 1"),
        ("bid_price", {"values": [0.5, "cheap"]}, r"numeric field 'bid_price' needs finite numbers; got 'cheap'"),
        ("bid_price", {"values": [float("nan")]}, r"needs finite numbers; got nan"),
        ("city", {"output_space": "ctr"}, r"output_space must be one of probability, logit; got 'ctr'"),
        ("city", {"chunk_size": 0}, r"chunk_size must be an integer >= 1"),
    ],
)
def test_sweep_errors(ad_clicks, deepfm, field, options, match):
    with pytest.raises(ValueError, match=match):
        sweep_field(deepfm, ad_clicks[2], np.arange(5), field, **options)


def test_unknown_value_suggests_frequent_values(ad_clicks, deepfm):
    _, train_frame, test = ad_clicks
    counts = train_frame["position"].value_counts()
    first_seen = {value: i for i, value in enumerate(pd.unique(train_frame["position"]))}
    expected = sorted(counts.index, key=lambda value: (-counts[value], first_seen[value]))
    listed = ", ".join(f"'{value}'" for value in expected)
    with pytest.raises(ValueError, match=f"most frequent known values: {listed}$"):
        sweep_field(deepfm, test, np.arange(5), "position", values=["first"])


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([], r"rows is empty"),
        ([0, COHORT_ROWS], rf"row {COHORT_ROWS} is out of range; the data has rows 0\.\.{COHORT_ROWS - 1}"),
        ([-1], r"row -1 is out of range"),
        ([0.5], r"integer row numbers"),
    ],
)
def test_sweep_row_errors(ad_clicks, deepfm, rows, match):
    with pytest.raises(ValueError, match=match):
        sweep_field(deepfm, ad_clicks[2], rows, "city")


def test_data_with_another_schema_is_rejected(ad_clicks, deepfm):
    schema, train_frame, _ = ad_clicks
    other_schema = fit_schema(train_frame.iloc[:100], read_schema_spec(AD_CLICKS_DIR / "schema.json"))
    other = encode(read_frame(AD_CLICKS_DIR / "test.parquet", max_rows=20), other_schema)

    with pytest.raises(ValueError, match=r"field 'city' of the data has another vocabulary"):
        sweep_field(deepfm, other, np.arange(5), "city")
    with pytest.raises(ValueError, match=r"field 'bid_price' of the data has another vocabulary or mean"):
        sweep_field(deepfm, other, np.arange(5), "bid_price")


def test_numeric_labels_keep_close_values_apart(ad_clicks, deepfm):
    sweep = sweep_field(deepfm, ad_clicks[2], np.arange(5), "bid_price", values=[0.5, 0.50001, 2])

    assert sweep.values == ("0.5", "0.50001", "2")


def test_dense_field_is_rejected():
    splits = synthetic_splits(n_train=200, n_valid=10, n_test=20)
    model = build_model("dnn", splits.schema, embedding_dim=4, hidden_units=[8])
    with pytest.raises(ValueError, match=r"field 'vec' is a dense vector"):
        sweep_field(model, splits.test, np.arange(5), "vec")


# --- figure ---------------------------------------------------------------------------------------


def make_sweep(*, kind: str = "categorical", n_rows: int = 4, output_space: str = "probability") -> FieldSweep:
    """A hand-written sweep of three values; the third categorical value is longer than an axis label."""
    ice = np.arange(n_rows * 3, dtype=np.float64).reshape(n_rows, 3) / (n_rows * 3)
    ice[:, 1] += 0.5
    numeric = kind == "numeric"
    values = ("2.5", "0.5", "1") if numeric else ("Berlin", "Paris", "x" * 60)
    return FieldSweep(
        field="price" if numeric else "city",
        kind=kind,
        values=values,
        encoded_values=np.array([0.9, -0.3, 0.0]) if numeric else np.array([1, 2, 3]),
        numeric_values=np.array([2.5, 0.5, 1.0]) if numeric else None,
        ice=ice,
        partial_dependence=ice.mean(axis=0),
        original=ice[:, 0],
        original_values=tuple(values[i % 3] for i in range(n_rows)),
        training_counts=None if numeric else np.array([5, 30, 12]),
        cohort_counts=np.array([2, 1, 1]) if n_rows == 4 else np.array([n_rows, 0, 0]),
        rows=np.arange(100, 100 + n_rows),
        output_space=output_space,
    )


def test_ice_figure_partial_dependence_order_and_counts():
    sweep = make_sweep()
    figure = ice_figure(sweep)
    bars, lines, pd_line = figure.data

    order = [1, 2, 0]  # partial dependence: 0.5 + mean of column 1 is highest, then column 2, then column 0
    np.testing.assert_allclose(pd_line.y, sweep.partial_dependence[order])
    assert list(pd_line.x) == ["Paris", "x" * 39 + "…", "Berlin"]
    np.testing.assert_array_equal(bars.y, sweep.cohort_counts[order])
    assert pd_line.customdata[0].tolist() == ["city = Paris", "30", "1"]
    assert "training rows" in pd_line.hovertemplate
    assert figure.layout.yaxis2.title.text == "predicted CTR"
    assert figure.layout.xaxis.type == "category"
    assert "all 4 rows" in figure.layout.title.subtitle.text


def test_ice_figure_frequency_order_and_logit_units():
    figure = ice_figure(make_sweep(output_space="logit"), sort="frequency")

    assert list(figure.data[2].x)[0] == "Paris"
    assert list(figure.data[2].x)[1].startswith("xxx")
    assert figure.layout.yaxis2.title.text.startswith("logit")
    assert "most frequent in training first" in figure.layout.xaxis.title.text


def test_ice_figure_draws_a_seeded_subset_of_lines():
    sweep = make_sweep(n_rows=30)
    figure = ice_figure(sweep, max_lines=5, seed=3)
    again = ice_figure(sweep, max_lines=5, seed=3)
    lines = figure.data[1]

    y = list(lines.y)
    assert y.count(None) == 5
    assert y == list(again.data[1].y)
    first_line = np.array(y[:3], dtype=float)
    matches = [position for position in range(30) if np.allclose(sweep.ice[position, [1, 2, 0]], first_line)]
    assert len(matches) == 1
    assert f"row {100 + matches[0]}" in lines.text[0]
    assert "5 of 30 rows (random subset, seed 3)" in figure.layout.title.subtitle.text


def test_ice_figure_numeric_axis():
    sweep = make_sweep(kind="numeric")
    figure = ice_figure(sweep)

    assert figure.layout.xaxis.type == "linear"
    assert list(figure.data[2].x) == [0.5, 1.0, 2.5]
    np.testing.assert_allclose(figure.data[2].y, sweep.partial_dependence[[1, 2, 0]])
    assert figure.data[2].customdata[0].tolist()[1] == "n/a (numeric field)"
    assert "nearest to this grid point" in figure.layout.title.subtitle.text


@pytest.mark.parametrize(
    ("options", "match"),
    [({"sort": "name"}, r"sort must be one of partial_dependence, frequency"), ({"max_lines": -1}, r"max_lines")],
)
def test_ice_figure_errors(options, match):
    with pytest.raises(ValueError, match=match):
        ice_figure(make_sweep(), **options)
