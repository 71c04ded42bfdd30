"""Figure builders: the drawn numbers, labels and hover texts match the attribution they come from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench import figures
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain import Attribution, Interaction, integrated_gradients, summaries
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


# --- probability space and non-efficient methods ------------------------------------


def test_waterfall_probability_space_uses_values_as_ctr():
    logit = make_attribution()
    attribution = Attribution(
        **{
            **logit.__dict__,
            "values": logit.values / 10,
            "base_values": np.full(4, 0.3),
            "predictions": 0.3 + logit.values.sum(axis=1) / 10,
            "output_space": "probability",
        }
    )

    trace = figures.waterfall(attribution, 0).data[0]

    assert trace.y[0] == "base value: 30.00 %"
    assert trace.y[-1] == f"prediction: {figures.format_ctr(attribution.predictions[0])}"
    assert figures.waterfall(attribution, 0).layout.xaxis.title.text == "probability"


def test_importance_bar_notes_not_efficient():
    attribution = Attribution(**{**make_attribution().__dict__, "method": "exact_banzhaf", "parameters": {"efficient": False}})

    subtitle = figures.importance_bar(attribution).layout.title.subtitle.text

    assert "method: exact_banzhaf" in subtitle
    assert "not efficient: values need not add up to prediction − base value" in subtitle
    assert "not efficient" not in figures.importance_bar(make_attribution()).layout.title.subtitle.text


# --- comparing two methods and per-value effects ----------------------------------


def test_importance_comparison_bars_equal_mean_abs():
    first = make_attribution()
    second = Attribution(**{**first.__dict__, "method": "exact_shapley", "values": first.values[:, [2, 0, 1]] * 2})

    figure = figures.importance_comparison_bar(first, second)
    order = list(first.mean_abs().index)

    assert [trace.name for trace in figure.data] == ["integrated_gradients", "exact_shapley"]
    assert list(figure.data[0].y) == order
    np.testing.assert_allclose(figure.data[0].x, first.mean_abs().to_numpy())
    np.testing.assert_allclose(figure.data[1].x, second.mean_abs().reindex(order).to_numpy())
    subtitle = figure.layout.title.subtitle.text
    correlation = summaries.rank_correlation(first, second)
    assert f"Spearman ρ = {correlation['spearman']:.3f}" in subtitle
    assert f"Kendall τ = {correlation['kendall']:.3f}" in subtitle
    assert first.describe() in subtitle
    assert second.describe() in subtitle


def test_importance_comparison_rejects_other_fields():
    first = make_attribution()
    other = Attribution(**{**first.__dict__, "field_names": ("city", "device", "age")})

    with pytest.raises(ValueError, match="different fields"):
        figures.importance_comparison_bar(first, other)


def test_value_effects_bar_values_and_counts():
    attribution = make_attribution()

    trace = figures.value_effects_bar(attribution, "city").data[0]

    # city: Berlin 0.5 and -1.0 (mean -0.25, 2 rows), Madrid 0.2, <OOV> 0.05
    assert list(trace.y) == ["Madrid", "<OOV>", "Berlin"]
    np.testing.assert_allclose(trace.x, [0.2, 0.05, -0.25])
    assert list(trace.text) == ["n = 1", "n = 1", "n = 2"]
    assert list(trace.marker.color) == [figures.POSITIVE_COLOR, figures.POSITIVE_COLOR, figures.NEGATIVE_COLOR]


def test_value_effects_bar_keeps_extremes():
    attribution = make_attribution()

    figure = figures.value_effects_bar(attribution, "history", max_values=2)

    np.testing.assert_allclose(figure.data[0].x, [0.4, -0.6])
    assert "2 values with smaller means not shown" in figure.layout.title.subtitle.text


# --- interactions --------------------------------------------------------------------


def make_interaction() -> Interaction:
    """Two samples, three players, hand-written symmetric pairs."""
    pairs = np.zeros((2, 3, 3))
    for sample, (ab, ac, bc) in enumerate([(0.3, -0.1, 0.05), (-0.5, 0.2, 0.0)]):
        pairs[sample, 0, 1] = pairs[sample, 1, 0] = ab
        pairs[sample, 0, 2] = pairs[sample, 2, 0] = ac
        pairs[sample, 1, 2] = pairs[sample, 2, 1] = bc
    return Interaction(
        main_effects=np.array([[0.4, -0.2, 0.1], [0.0, 0.3, -0.6]]),
        pairs=pairs,
        base_values=np.array([-1.0, -1.0]),
        predictions=np.array([-0.5, -2.0]),
        player_names=("city", "device", "history"),
        rows=np.array([7, 9]),
        index="SII",
        baseline="zero",
        raw_values=pd.DataFrame({"city": ["Berlin", "Rome"], "device": ["mobile", "tablet"], "history": ["", "news"]}),
    )


def test_interaction_heatmap_equals_mean_abs():
    interaction = make_interaction()

    figure = figures.interaction_heatmap(interaction, "mean_abs")
    heatmap, markers = figure.data

    np.testing.assert_allclose(np.asarray(heatmap.z), interaction.mean_abs().to_numpy())
    np.testing.assert_allclose(np.asarray(heatmap.z)[0, 1], 0.4)
    assert list(heatmap.x) == list(heatmap.y) == ["city", "device", "history"]
    assert heatmap.zmin == 0.0
    assert "index: SII · baseline: zero · output: logit" in figure.layout.title.subtitle.text
    assert figure.layout.clickmode == "event+select"
    # One marker per off-diagonal cell, at (x = second player, y = first player).
    cells = {(int(i), int(j)) for i, j in markers.customdata}
    assert cells == {(i, j) for i in range(3) for j in range(3) if i != j}
    for (i, j), x, y in zip(markers.customdata, markers.x, markers.y, strict=True):
        assert (y, x) == (interaction.player_names[i], interaction.player_names[j])


def test_interaction_heatmap_signed_mean_is_symmetric_scale():
    interaction = make_interaction()

    heatmap = figures.interaction_heatmap(interaction, "mean").data[0]

    np.testing.assert_allclose(np.asarray(heatmap.z), interaction.mean().to_numpy())
    np.testing.assert_allclose(np.asarray(heatmap.z)[0, 1], -0.1)
    assert heatmap.zmin == -heatmap.zmax
    assert heatmap.zmax == pytest.approx(0.1)
    with pytest.raises(ValueError, match="statistic must be one of mean_abs, mean"):
        figures.interaction_heatmap(interaction, "max")


def test_sample_interaction_heatmap_values_and_labels():
    interaction = make_interaction()

    figure = figures.sample_interaction_heatmap(interaction, 1)
    heatmap = figure.data[0]

    np.testing.assert_allclose(np.asarray(heatmap.z), interaction.pairs[1])
    assert list(heatmap.y) == ["city = Rome", "device = tablet", "history = news"]
    assert list(heatmap.x) == ["city", "device", "history"]
    assert figure.layout.title.text == "Pair interactions for row 9"
    assert heatmap.text[0][1].startswith("city = Rome × device = tablet<br>SII: -0.5000 logit")
    assert "main effect: +0.0000 logit (no pair)" in heatmap.text[0][0]
    with pytest.raises(IndexError, match="out of range"):
        figures.sample_interaction_heatmap(interaction, 2)


def test_interaction_heatmap_noise_floor():
    from workbench.explain.interaction import Interaction

    names = ("a", "b", "c")
    pairs = np.zeros((2, 3, 3))
    pairs[:, 0, 1] = pairs[:, 1, 0] = 3e-8  # float32 rounding of a model without interactions
    interaction = Interaction(
        pairs=pairs,
        main_effects=np.zeros((2, 3)),
        base_values=np.zeros(2),
        predictions=np.zeros(2),
        player_names=names,
        rows=np.arange(2),
        index="SII",
        baseline="zero",
    )
    figure = figures.interaction_heatmap(interaction)
    assert figure.data[0].zmax == figures.PAIR_NOISE_FLOOR
    assert "no interactions beyond float32 rounding" in figure.layout.title.subtitle.text
    assert "click a cell" in figure.layout.title.subtitle.text
    assert "click a cell" not in figures.interaction_heatmap(interaction, clickable=False).layout.title.subtitle.text
