"""The Interactions page and the method, baseline, output-space and comparison selectors of the importance page.

Every number on a page is checked against the library function that computes
it on the same rows, through ``AppTest``.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from helpers import array
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from streamlit.testing.v1 import AppTest
from test_app import APP_PATH, TIMEOUT_S, app_env, errors, metric, open_page, plotly_specs  # noqa: F401 (app_env is a fixture)
from workbench.app import rows, state, tables
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain import explain, interactions
from workbench.explain.summaries import pair_examples, rank_correlation, top_pairs, value_effects

N_ROWS = 30
"""Rows the Interactions page explains in these tests; each costs 2**15 forward passes of the tiny model."""
N_IMPORTANCE_ROWS = 40


@pytest.fixture(scope="module")
def library(tiny_bundle_path, tiny_data_dir):
    """The tiny bundle's model, the tiny test set and the sample rows the pages draw with seed 0."""
    bundle = load_bundle(tiny_bundle_path)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema)
    return {
        "model": bundle.model,
        "dataset": dataset,
        "rows": rows.sample_rows(len(dataset), N_ROWS, 0),
        "importance_rows": rows.sample_rows(len(dataset), N_IMPORTANCE_ROWS, 0),
    }


@pytest.fixture(scope="module")
def sii(library):
    return interactions(library["model"], library["dataset"], library["rows"], index="SII")


def open_interactions(**session_state):
    return open_page("interactions", interactions_rows=N_ROWS, **session_state)


def table_with(app, column: str) -> pd.DataFrame:
    """The first data frame on the page that has ``column``."""
    frames = [frame.value for frame in app.dataframe if column in frame.value.columns]
    assert frames, f"no table with column {column!r}"
    return frames[0]


# --- Interactions page ------------------------------------------------------------


def test_interactions_page_runs(app_env):
    app = open_interactions()

    assert not app.exception
    assert errors(app) == []
    assert set(plotly_specs(app)) == {"interactions_heatmap", "interactions_sample", "interactions_value_effects"}
    assert metric(app, "Rows explained") == f"{N_ROWS}"
    assert metric(app, "Players") == "15"
    assert metric(app, "Coalitions per row") == "32,768"


def test_heatmap_equals_library_mean_abs(app_env, sii):
    app = open_interactions()
    spec = plotly_specs(app)["interactions_heatmap"]

    np.testing.assert_allclose(array(spec["data"][0]["z"]), sii.mean_abs().to_numpy(), rtol=0, atol=1e-12)
    assert spec["data"][0]["x"] == list(sii.player_names)
    assert "index: SII · baseline: zero · output: logit" in spec["layout"]["title"]["subtitle"]["text"]


@pytest.mark.parametrize("index", ["STII", "FSII", "BII"])
def test_heatmap_follows_index_and_statistic(app_env, library, index):
    expected = interactions(library["model"], library["dataset"], library["rows"], index=index)
    app = open_interactions()
    app.radio(key="interactions_index").set_value(index).run()
    app.radio(key="interactions_statistic").set_value("mean").run()

    assert not app.exception
    heatmap = plotly_specs(app)["interactions_heatmap"]["data"][0]
    np.testing.assert_allclose(array(heatmap["z"]), expected.mean().to_numpy(), rtol=0, atol=1e-12)
    assert heatmap["zmin"] == -heatmap["zmax"]


def test_pair_defaults_to_top_pair(app_env, sii):
    app = open_interactions()
    top = top_pairs(sii, 1).iloc[0]

    assert app.selectbox(key="interactions_pair").value == tables.pair_label(top.player_i, top.player_j)
    assert app.selectbox(key="interactions_pair").options == list(tables.pair_options(sii))


def test_selecting_pair_shows_examples(app_env, sii):
    app = open_interactions()
    label, (player_i, player_j) = list(tables.pair_options(sii).items())[4]
    app.selectbox(key="interactions_pair").set_value(label).run()

    assert not app.exception
    page_table = table_with(app, "interaction")
    expected = pair_examples(sii, player_i, player_j, 10)
    pd.testing.assert_frame_equal(page_table.reset_index(drop=True), expected, check_dtype=False)
    assert [m.value for m in app.markdown if f"largest |SII| of {label}" in m.value]


def test_top_pairs_table(app_env, sii):
    app = open_interactions()
    app.number_input(key="interactions_top_k").set_value(5).run()

    page_table = table_with(app, "example")
    pd.testing.assert_frame_equal(page_table.reset_index(drop=True), top_pairs(sii, 5), check_dtype=False)


def test_sample_heatmap_follows_row(app_env, sii):
    app = open_interactions()
    row = int(sii.rows[7])
    app.selectbox(key="interactions_row").set_value(row).run()

    spec = plotly_specs(app)["interactions_sample"]
    np.testing.assert_allclose(array(spec["data"][0]["z"]), sii.pairs[7], rtol=0, atol=1e-12)
    assert spec["layout"]["title"]["text"] == f"Pair interactions for row {row}"


def test_value_view_matches_library(app_env, library):
    app = open_interactions()
    app.selectbox(key="interactions_value_field").set_value("city").run()
    shapley = explain(library["model"], library["dataset"], library["rows"], method="exact_shapley")

    page_table = table_with(app, "mean_attribution")
    expected = value_effects(shapley, "city")
    pd.testing.assert_frame_equal(page_table.reset_index(drop=True), expected, check_dtype=False, rtol=0, atol=1e-12)
    bars = plotly_specs(app)["interactions_value_effects"]["data"][0]
    np.testing.assert_allclose(array(bars["x"]), expected["mean_attribution"].to_numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"user": ["user_id"]', "The field groups are not valid: field groups are not valid JSON"),
        ('{"user": "user_id"}', "group 'user' must be a list of field names"),
        ('{"user": ["user_id"]}', "fields missing from the groups"),
    ],
)
def test_bad_groups_show_error(app_env, text, message):
    app = open_interactions(interactions_groups=text)

    assert not app.exception
    assert len(errors(app)) == 1
    assert message in errors(app)[0]


def test_groups_become_players(app_env, library):
    fields = library["dataset"].schema.field_names
    groups = {"user": fields[:4], "context": fields[4:11], "ad": fields[11:]}
    app = open_interactions(interactions_groups=json.dumps(groups))

    assert not app.exception
    assert metric(app, "Players") == "3"
    heatmap = plotly_specs(app)["interactions_heatmap"]["data"][0]
    expected = interactions(library["model"], library["dataset"], library["rows"], players=groups)
    assert heatmap["x"] == ["user", "context", "ad"]
    np.testing.assert_allclose(array(heatmap["z"]), expected.mean_abs().to_numpy(), rtol=0, atol=1e-12)


def test_mean_baseline_and_probability(app_env):
    app = open_interactions(interactions_baseline="mean", interactions_space="probability", interactions_background_rows=20)

    assert not app.exception
    assert errors(app) == []
    subtitle = plotly_specs(app)["interactions_heatmap"]["layout"]["title"]["subtitle"]["text"]
    assert "baseline: mean · output: probability" in subtitle


def test_pair_from_selection():
    names = ("city", "device", "hour")

    assert tables.pair_from_selection({"points": [{"x": "city", "y": "hour"}]}, names) == ("city", "hour")
    assert tables.pair_from_selection({"points": [{"x": "hour", "y": "device"}]}, names) == ("device", "hour")
    assert tables.pair_from_selection({"points": [{"x": "city", "y": "city"}]}, names) is None
    assert tables.pair_from_selection({"points": [{"x": "town", "y": "city"}]}, names) is None
    assert tables.pair_from_selection({"points": []}, names) is None
    assert tables.pair_from_selection(None, names) is None


@pytest.fixture
def exact_calls(monkeypatch):
    counts: Counter[str] = Counter()
    original = state.exact_indices

    def counted(*args, **kwargs):
        counts["exact_indices"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(state, "exact_indices", counted)
    return counts


def test_view_changes_do_not_recompute(app_env, exact_calls, sii):
    app = open_interactions()
    app.radio(key="interactions_index").set_value("FSII").run()
    app.radio(key="interactions_statistic").set_value("mean").run()
    app.selectbox(key="interactions_pair").set_value(list(tables.pair_options(sii))[1]).run()
    app.selectbox(key="interactions_row").set_value(int(sii.rows[3])).run()

    assert not app.exception
    assert exact_calls["exact_indices"] == 1

    app.number_input(key="interactions_rows").set_value(12)
    app.button(key="interactions_submit").click().run()

    assert exact_calls["exact_indices"] == 2
    assert metric(app, "Rows explained") == "12"


# --- importance page selectors ---------------------------------------------------------


def open_importance(**session_state):
    return open_page("importance", importance_rows=N_IMPORTANCE_ROWS, **session_state)


def test_importance_exact_shapley_probability(app_env, library):
    app = open_importance(importance_method="exact_shapley", importance_space="probability")
    expected = explain(
        library["model"], library["dataset"], library["importance_rows"], method="exact_shapley",
        output_space="probability",
    )

    assert not app.exception
    assert errors(app) == []
    bar = plotly_specs(app)["importance_bar"]
    np.testing.assert_allclose(array(bar["data"][0]["x"]), expected.mean_abs().to_numpy(), rtol=0, atol=1e-12)
    subtitle = bar["layout"]["title"]["subtitle"]["text"]
    assert "method: exact_shapley · baseline: zero · output: probability" in subtitle
    assert "output: probability" in plotly_specs(app)["importance_beeswarm"]["layout"]["title"]["subtitle"]["text"]
    assert any("probability units" in caption.value for caption in app.caption)


def test_importance_unsupported_baseline_shows_error(app_env):
    app = open_importance(importance_method="integrated_gradients", importance_baseline="mean")

    assert not app.exception
    assert len(errors(app)) == 1
    assert "supports the baselines zero, oov; got 'mean'" in errors(app)[0]
    assert plotly_specs(app) == {}


def test_importance_banzhaf_says_not_efficient(app_env):
    app = open_importance(importance_method="exact_banzhaf")

    assert not app.exception
    assert [i.value for i in app.info if "not efficient" in i.value]
    assert [w.value for w in app.warning] == []


def test_importance_compares_two_methods(app_env, library):
    app = open_importance(importance_steps=16, importance_compare_method="exact_shapley")
    first = explain(library["model"], library["dataset"], library["importance_rows"], n_steps=16)
    second = explain(library["model"], library["dataset"], library["importance_rows"], method="exact_shapley")

    assert not app.exception
    assert errors(app) == []
    comparison = plotly_specs(app)["importance_comparison"]
    order = list(first.mean_abs().index)
    assert [trace["name"] for trace in comparison["data"]] == ["integrated_gradients", "exact_shapley"]
    np.testing.assert_allclose(array(comparison["data"][0]["x"]), first.mean_abs().to_numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(array(comparison["data"][1]["x"]), second.mean_abs()[order].to_numpy(), rtol=0, atol=1e-12)
    correlation = rank_correlation(first, second)
    assert metric(app, "Spearman rank correlation") == f"{correlation['spearman']:.3f}"
    assert metric(app, "Kendall rank correlation") == f"{correlation['kendall']:.3f}"


def test_importance_comparison_error_keeps_first(app_env):
    app = open_importance(
        importance_method="exact_shapley", importance_baseline="pad", importance_compare_method="integrated_gradients"
    )

    assert not app.exception
    assert len(errors(app)) == 1
    assert "integrated_gradients failed" in errors(app)[0]
    assert "importance_bar" in plotly_specs(app)


def test_importance_bad_groups_show_error(app_env):
    app = open_importance(importance_method="exact_shapley", importance_groups='{"a": ["user_id"]}')

    assert not app.exception
    assert len(errors(app)) == 1
    assert "fields missing from the groups" in errors(app)[0]


def test_interactions_wait_for_compute_button(app_env):
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["interactions_rows"] = N_ROWS
    app.run()
    app.switch_page("workbench/app/pages/interactions.py")
    app.run()

    assert not app.exception
    assert any("Press **Compute interactions** to start" in info.value for info in app.info)
    assert not app.get("plotly_chart")

    app.button(key="interactions_submit").click().run()

    assert not app.exception
    assert app.get("plotly_chart")

    # Other data (here a different row limit) waits for the button again instead of computing at once.
    app.number_input(key="max_rows").set_value(1_500).run()

    assert not app.exception
    assert any("Press **Compute interactions** to start" in info.value for info in app.info)
    assert not app.get("plotly_chart")


def test_wait_message_counts_groups(app_env, library):
    fields = library["dataset"].schema.field_names
    groups = {"user": fields[:4], "rest": fields[4:]}
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["interactions_rows"] = N_ROWS
    app.session_state["interactions_groups"] = json.dumps(groups)
    app.run()
    app.switch_page("workbench/app/pages/interactions.py")
    app.run()

    assert not app.exception
    assert any("all 2**2 = 4 coalitions of each row" in info.value for info in app.info)
