"""Figure builders: the drawn numbers, labels and hover texts match the attribution they come from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench import figures
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain import Attribution, integrated_gradients
from workbench.training import predict_logits


def make_attribution(*, exact: bool = True) -> Attribution:
    """Four samples, three fields, hand-written values; with ``exact`` the values add up to prediction - base."""
    values = np.array(
        [
            [0.5, -0.2, 0.1],
            [-1.0, 0.3, 0.0],
            [0.2, 0.2, -0.6],
            [0.05, -0.7, 0.4],
        ]
    )
    base_values = np.array([-1.0, -1.0, -1.0, -1.0])
    predictions = base_values + values.sum(axis=1)
    if not exact:
        predictions = predictions + np.array([0.01, -0.02, 0.0, 0.03])
    raw = pd.DataFrame(
        {
            "city": ["Berlin", "Berlin", "Madrid", "<OOV>"],
            "device": ["mobile", "desktop", "mobile", "mobile"],
            "history": ["sports|travel|" + "x" * 60, "", "news", "sports"],
        }
    )
    return Attribution(
        values=values,
        base_values=base_values,
        predictions=predictions,
        field_names=("city", "device", "history"),
        rows=np.array([10, 11, 12, 13]),
        method="integrated_gradients",
        baseline="zero",
        output_space="logit",
        parameters={"n_steps": 50},
        labels=np.array([1.0, 0.0, 0.0, 1.0]),
        raw_values=raw,
    )


def test_sigmoid_and_format_ctr():
    assert figures.sigmoid(0.0) == pytest.approx(0.5)
    assert figures.sigmoid(np.log(3.0)) == pytest.approx(0.75)
    assert figures.format_ctr(0.0421) == "4.21 %"


def test_field_value_label_empty_and_long_values():
    assert figures.field_value_label("city", "Berlin") == "city = Berlin"
    assert figures.field_value_label("history", "") == "history = (empty)"
    label = figures.field_value_label("history", "a" * 50, max_chars=10)
    assert label == "history = " + "a" * 9 + "…"


def test_importance_bar_heights_equal_mean_abs():
    attribution = make_attribution()
    figure = figures.importance_bar(attribution)
    expected = attribution.mean_abs()

    bar = figure.data[0]
    assert bar.type == "bar"
    assert list(bar.y) == list(expected.index)
    np.testing.assert_allclose(bar.x, expected.to_numpy())
    assert figure.layout.yaxis.autorange == "reversed"


def test_importance_bar_titles_carry_provenance():
    attribution = make_attribution()
    figure = figures.importance_bar(attribution)

    subtitle = figure.layout.title.subtitle.text
    assert attribution.describe() in subtitle
    assert "output: logit" in subtitle
    assert "baseline: zero" in subtitle
    assert "logit" in figure.layout.xaxis.title.text


def test_importance_bar_max_fields_keeps_top_fields():
    attribution = make_attribution()
    figure = figures.importance_bar(attribution, max_fields=2)

    assert list(figure.data[0].y) == list(attribution.mean_abs().index[:2])
    assert "1 less important fields not shown" in figure.layout.title.subtitle.text


def test_beeswarm_points_match_values_and_hover():
    attribution = make_attribution()
    figure = figures.attribution_beeswarm(attribution)
    scatter = figure.data[0]
    order = list(attribution.mean_abs().index)

    assert list(figure.layout.yaxis.ticktext) == order
    assert len(scatter.x) == attribution.n_samples * len(order)
    for level, name in enumerate(order):
        block = slice(level * attribution.n_samples, (level + 1) * attribution.n_samples)
        column = attribution.field_names.index(name)
        np.testing.assert_allclose(scatter.x[block], attribution.values[:, column])
        assert np.all(np.abs(np.asarray(scatter.y[block]) - level) <= 0.4 + 1e-12)
        for text, raw, row in zip(scatter.text[block], attribution.raw_values[name], attribution.rows, strict=True):
            assert text.startswith(f"{name} = {figures.display_value(raw)}<br>")
            assert text.endswith(f"row {row}")


def test_beeswarm_frequency_colors():
    attribution = make_attribution()
    figure = figures.attribution_beeswarm(attribution, color_by="frequency")
    order = list(attribution.mean_abs().index)
    level = order.index("city")
    block = slice(level * 4, (level + 1) * 4)

    # city is Berlin, Berlin, Madrid, <OOV>: Berlin is in 2 of the 4 samples.
    np.testing.assert_allclose(figure.data[0].marker.color[block], [0.5, 0.5, 0.25, 0.25])
    assert figure.data[0].marker.cmin == 0.0
    assert figure.data[0].marker.cmax == 1.0


def test_beeswarm_attribution_colors_are_symmetric():
    attribution = make_attribution()
    figure = figures.attribution_beeswarm(attribution, color_by="attribution")
    marker = figure.data[0].marker

    np.testing.assert_allclose(marker.color, figure.data[0].x)
    assert marker.cmin == pytest.approx(-np.abs(attribution.values).max())
    assert marker.cmax == pytest.approx(np.abs(attribution.values).max())


def test_beeswarm_subsets_large_samples():
    attribution = make_attribution()
    figure = figures.attribution_beeswarm(attribution, max_samples=2, seed=1)

    assert len(figure.data[0].x) == 2 * len(attribution.field_names)
    assert "random subset of 4" in figure.layout.title.subtitle.text


def test_beeswarm_rejects_unknown_color():
    with pytest.raises(ValueError, match="color_by must be"):
        figures.attribution_beeswarm(make_attribution(), color_by="label")


def test_waterfall_steps_sum_to_prediction():
    attribution = make_attribution()
    for position in range(attribution.n_samples):
        trace = figures.waterfall(attribution, position).data[0]
        measures = list(trace.measure)
        x = np.asarray(trace.x, dtype=float)

        assert trace.type == "waterfall"
        assert measures[0] == "absolute"
        assert measures[-1] == "total"
        assert set(measures[1:-1]) == {"relative"}
        assert "completeness gap" not in trace.y
        assert x[0] == pytest.approx(attribution.base_values[position])
        assert x[0] + x[1:-1].sum() == pytest.approx(attribution.predictions[position], abs=figures.GAP_TOLERANCE)
        assert x[-1] == pytest.approx(attribution.predictions[position])


def test_waterfall_labels_sorted_by_magnitude():
    attribution = make_attribution()
    trace = figures.waterfall(attribution, 1).data[0]

    # Sample 1: city -1.0 (Berlin), device +0.3 (desktop), history 0.0 (empty).
    assert list(trace.y[1:4]) == ["city = Berlin", "device = desktop", "history = (empty)"]
    np.testing.assert_allclose(trace.x[1:4], [-1.0, 0.3, 0.0])
    assert "completeness gap" not in trace.y


def test_waterfall_hover_keeps_full_raw_value():
    attribution = make_attribution()
    trace = figures.waterfall(attribution, 0).data[0]
    history = "sports|travel|" + "x" * 60

    label = next(y for y in trace.y if y.startswith("history = "))
    assert len(label) == len("history = ") + figures.MAX_LABEL_CHARS
    assert any(text.startswith(f"history = {history}<br>") for text in trace.hovertext)
    assert any(text.startswith("city = Berlin<br>") for text in trace.hovertext)


def test_waterfall_shows_completeness_gap_step():
    attribution = make_attribution(exact=False)
    trace = figures.waterfall(attribution, 3).data[0]

    gap_position = list(trace.y).index("completeness gap")
    assert gap_position == len(trace.y) - 2
    assert trace.x[gap_position] == pytest.approx(0.03)
    x = np.asarray(trace.x, dtype=float)
    assert x[0] + x[1:-1].sum() == pytest.approx(attribution.predictions[3], abs=figures.GAP_TOLERANCE)


def test_waterfall_merges_small_fields():
    attribution = make_attribution()
    trace = figures.waterfall(attribution, 3, max_fields=1).data[0]

    # Sample 3: device -0.7 is largest; city +0.05 and history +0.4 merge into one step.
    assert list(trace.y[1:3]) == ["device = mobile", "2 other fields"]
    assert trace.x[2] == pytest.approx(0.45)
    x = np.asarray(trace.x, dtype=float)
    assert x[0] + x[1:-1].sum() == pytest.approx(attribution.predictions[3], abs=figures.GAP_TOLERANCE)


def test_waterfall_annotates_probabilities():
    attribution = make_attribution()
    figure = figures.waterfall(attribution, 2)
    base_ctr = figures.format_ctr(figures.sigmoid(-1.0))
    prediction_ctr = figures.format_ctr(figures.sigmoid(attribution.predictions[2]))

    assert figure.data[0].y[0] == f"base value: {base_ctr}"
    assert figure.data[0].y[-1] == f"prediction: {prediction_ctr}"
    assert figure.layout.title.text == "Field attributions for row 12"
    subtitle = figure.layout.title.subtitle.text
    assert attribution.describe() in subtitle
    assert f"CTR {base_ctr}" in subtitle
    assert f"CTR {prediction_ctr}" in subtitle


def test_waterfall_rejects_bad_position():
    with pytest.raises(IndexError, match="out of range"):
        figures.waterfall(make_attribution(), 4)


def test_figures_from_trained_model(tiny_bundle_path, tiny_data_dir):
    bundle = load_bundle(tiny_bundle_path)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema, max_rows=200)
    rows = np.array([3, 17, 150])
    attribution = integrated_gradients(bundle.model, dataset, rows, n_steps=16)
    logits = predict_logits(bundle.model, dataset)

    for position, row in enumerate(rows):
        trace = figures.waterfall(attribution, position).data[0]
        x = np.asarray(trace.x, dtype=float)
        assert x[-1] == pytest.approx(logits[row], abs=1e-5)
        assert x[0] + x[1:-1].sum() == pytest.approx(logits[row], abs=1e-5)
        city = dataset.raw_values(np.array([row]))["city"].iloc[0]
        assert f"city = {city}" in trace.y
    bar = figures.importance_bar(attribution).data[0]
    np.testing.assert_allclose(bar.x, attribution.mean_abs().to_numpy())
    texts = figures.attribution_beeswarm(attribution).data[0].text
    assert len(texts) == 3 * len(bundle.schema)
