"""The Counterfactuals page through ``AppTest``, and its Streamlit-free helpers and figures.

Expected values come from the library (``what_if``, ``compare``,
``find_counterfactuals``, ``sweep_field``) run on the same bundle and rows,
or are worked out by hand for the helpers.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import array, build_tiny_model, point_app_at, synthetic_splits
from sequence_fixtures import build_sequence_bundles
from workbench import counterfactual_figures, figures
from workbench.app import counterfactual_sections, counterfactual_views, rows
from workbench.app.counterfactual_views import HistoryEdits, SearchRequest
from workbench.bundle import load_bundle
from workbench.counterfactual import Change, Counterfactual, CounterfactualSearch, Goal, find_counterfactuals
from workbench.data import encode, load_dataset
from workbench.explain import explain
from workbench.explain.result import Attribution
from workbench.faithfulness import compare_explainers, has_pair_attention
from workbench.schema import Field, Schema, fit_schema
from workbench.sequence_edits import drop_behaviours, insert_behaviour, item_labels, move_to_recent, paired_values
from workbench.sweeps import sweep_field
from workbench.whatif import WhatIf, apply_changes, compare, what_if

REPO_ROOT = Path(__file__).resolve().parents[1]
GROUPS_PATH = REPO_ROOT / "sample_data" / "ad_clicks" / "groups.json"
APP_PATH = REPO_ROOT / "app.py"
PAGE = "workbench/app/pages/counterfactuals.py"
TIMEOUT_S = 120
SWEEP_ROWS = 100
ROW = 7


@pytest.fixture
def app_env(monkeypatch, tiny_models_dir, tiny_data_dir):
    yield from point_app_at(monkeypatch, tiny_models_dir, tiny_data_dir)


@pytest.fixture(scope="module")
def tiny(tiny_bundle_path, tiny_data_dir):
    """The tiny DeepFM bundle and the tiny test file encoded by its schema."""
    bundle = load_bundle(tiny_bundle_path)
    return bundle, load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema)


@pytest.fixture(scope="module")
def sequence_bundles(tmp_path_factory):
    return build_sequence_bundles(tmp_path_factory.mktemp("sequence"), architectures=("din",))


@pytest.fixture
def sequence_env(monkeypatch, sequence_bundles):
    yield from point_app_at(monkeypatch, sequence_bundles.models_dir, sequence_bundles.data_dir)


@pytest.fixture
def bundled_env(monkeypatch):
    yield from point_app_at(monkeypatch, REPO_ROOT / "models", REPO_ROOT / "sample_data")


def open_page(**session_state) -> AppTest:
    """Run the app, switch to the Counterfactuals page and run it, with ``session_state`` seeded first."""
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["cf_sweep_cohort_rows"] = SWEEP_ROWS
    for key, value in session_state.items():
        app.session_state[key] = value
    app.run()
    app.switch_page(PAGE)
    app.run()
    return app


def no_problems(app: AppTest) -> None:
    assert not app.exception
    assert [e.value for e in app.error] == []


def metric(app: AppTest, label: str):
    found = [m for m in app.metric if m.label == label]
    assert found, f"no metric labelled {label!r}; metrics: {[m.label for m in app.metric]}"
    return found[0]


def specs(app: AppTest) -> dict[str, dict]:
    return {chart.proto.id.rsplit("-", 1)[-1]: json.loads(chart.proto.spec) for chart in app.get("plotly_chart")}


def frame_with(app: AppTest, column: str) -> pd.DataFrame:
    """The first table shown with ``column`` (AppTest does not expose a table's key)."""
    frames = [d.value for d in app.dataframe if column in d.value.columns]
    assert frames, f"no table with a column {column!r}"
    return frames[0]


def other_value(field: Field, current: str) -> str:
    """The most frequent vocabulary value of ``field`` that differs from ``current``."""
    order = np.argsort(-np.asarray(field.vocabulary.counts), kind="stable")
    return next(field.vocabulary.values[i] for i in order if field.vocabulary.values[i] != current)


# --- page: editor -----------------------------------------------------------------------------------


def test_page_renders_on_tiny_bundle(app_env, tiny):
    bundle, dataset = tiny
    app = open_page(cf_row=ROW)

    no_problems(app)
    logit = float(compare(bundle.model, dataset.tensors([ROW]), dataset.tensors([ROW]), method=None).logit_before)
    assert metric(app, "Predicted CTR").value == figures.format_ctr(figures.sigmoid(logit))
    assert metric(app, "Changed fields").value == "0"
    assert metric(app, "Predicted CTR after").proto.delta == ""
    for field in bundle.schema.fields:
        key = counterfactual_sections.field_key(field.name)
        if field.kind == "categorical":
            assert app.selectbox(key=key).value == dataset.raw_values([ROW])[field.name].iloc[0]
            assert len(app.selectbox(key=key).options) == field.cardinality + 2
        elif field.kind == "numeric":
            assert app.slider(key=key).value == pytest.approx(float(dataset.raw[field.name].iloc[ROW]))
        else:
            assert app.text_input(key=key).value == dataset.raw_values([ROW])[field.name].iloc[0]
    city = bundle.schema["city"]
    top = other_value(city, "")
    assert f"{top} (seen {city.vocabulary.counts[city.vocabulary.values.index(top)]:,}×)" in app.selectbox(
        key="cf_field_city"
    ).options
    assert any("Change a field value above" in i.value for i in app.info)
    assert app.multiselect(key="cf_immutable").value == ["user_id"]
    assert "cf_sweep_chart" in specs(app)


def test_edit_matches_what_if(app_env, tiny):
    bundle, dataset = tiny
    city = other_value(bundle.schema["city"], dataset.raw_values([ROW])["city"].iloc[0])
    app = open_page(cf_row=ROW)
    app.selectbox(key="cf_field_city").set_value(city).run()
    app.slider(key="cf_field_bid_price").set_value(2.0).run()

    no_problems(app)
    expected = what_if(bundle.model, dataset, ROW, {"city": city, "bid_price": 2.0}, method="auto")
    after = metric(app, "Predicted CTR after")
    assert after.value == figures.format_ctr(expected.prediction_after)
    assert after.proto.delta == f"{100 * expected.delta:+.2f} pp"
    assert f"click probability {expected.prediction_after:.6f}" in after.proto.help
    assert metric(app, "Changed fields").value == "2"
    assert expected.changed_fields == ["city", "bid_price"]

    chart = specs(app)["cf_attribution_comparison"]
    frame = expected.comparison_frame()
    order = np.argsort(-np.maximum(frame["attribution_before"].abs(), frame["attribution_after"].abs()), kind="stable")
    np.testing.assert_allclose(array(chart["data"][0]["x"]), frame["attribution_before"].iloc[order], rtol=1e-6)
    np.testing.assert_allclose(array(chart["data"][1]["x"]), frame["attribution_after"].iloc[order], rtol=1e-6)
    assert "<b>city ✎</b>" in chart["data"][0]["y"]
    table = frame_with(app, "attribution_change")
    pd.testing.assert_frame_equal(table.reset_index(drop=True), frame, check_exact=False, rtol=1e-6)


def test_history_text_and_unknown_values(app_env, tiny):
    bundle, dataset = tiny
    items = bundle.schema["history_categories"].vocabulary.values[:2]
    app = open_page(cf_row=ROW)
    app.text_input(key="cf_field_history_categories").set_value("|".join(items)).run()
    app.selectbox(key="cf_field_city").set_value("<OOV>").run()

    no_problems(app)
    expected = what_if(bundle.model, dataset, ROW, {"history_categories": items, "city": "<OOV>"}, method=None)
    assert metric(app, "Predicted CTR after").value == figures.format_ctr(expected.prediction_after)

    app.text_input(key="cf_field_history_categories").set_value("not-a-category").run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 1
    assert errors[0].startswith(f"Cannot apply this edit to row {ROW}: history 'history_categories': 'not-a-category'")


def test_reset_restores_row_values(app_env, tiny):
    bundle, dataset = tiny
    own = dataset.raw_values([ROW])["city"].iloc[0]
    app = open_page(cf_row=ROW, cf_field_city=other_value(bundle.schema["city"], own))
    assert metric(app, "Changed fields").value == "1"

    app.button(key="cf_reset").click().run()

    no_problems(app)
    assert metric(app, "Changed fields").value == "0"
    assert app.selectbox(key="cf_field_city").value == own
    assert metric(app, "Predicted CTR after").value == metric(app, "Predicted CTR before").value
    assert metric(app, "Predicted CTR after").proto.delta == ""


# --- page: search ---------------------------------------------------------------------------------


SEARCH_DEFAULTS = {
    "max_changes": 3,
    "min_count": 1,
    "n_counterfactuals": 5,
    "beam_width": 10,
    "values_per_field": 50,
    "max_evaluations": 50_000,
    "time_limit": None,
    "random_state": 0,
}


IMMUTABLE = ["user_id", "city", "hour"]


@pytest.fixture(scope="module")
def reachable_change(tiny) -> float:
    """Half the largest rise of row ``ROW``'s CTR by one substitution that keeps :data:`IMMUTABLE`.

    The tiny model's weights are initialised before training seeds torch, so
    its predictions vary between test sessions. A goal taken from its own
    single changes is reachable in every session.
    """
    bundle, dataset = tiny
    probe = find_counterfactuals(bundle.model, dataset, ROW, "change:0.000001", immutable=IMMUTABLE, **SEARCH_DEFAULTS)
    best = float(probe.single_changes["prediction"].max()) - probe.prediction_before
    assert best > 0
    return round(best / 2, 8)


@pytest.mark.parametrize("goal_kind", ["change", "rank_top"])
def test_search_matches_library(app_env, tiny, reachable_change, goal_kind):
    bundle, dataset = tiny
    goal_value = reachable_change if goal_kind == "change" else 20.0
    app = open_page(
        cf_row=ROW,
        cf_goal_kind=goal_kind,
        cf_goal_value=goal_value,
        cf_immutable=IMMUTABLE,
        cf_time_limit=0.0,
        cf_cohort_rows=300,
        cf_cohort_seed=3,
    )
    app.button(key="cf_search_submit").click().run()

    no_problems(app)
    cohort = rows.sample_rows(len(dataset), 300, 3) if goal_kind == "rank_top" else None
    expected = find_counterfactuals(
        bundle.model, dataset, ROW, f"{goal_kind}:{goal_value!r}", immutable=IMMUTABLE, cohort_rows=cohort,
        **SEARCH_DEFAULTS,
    )  # fmt: skip
    messages = [s.value for s in app.success] + [w.value for w in app.warning]
    assert messages == [expected.message]
    summaries = [m.value for m in app.markdown if m.value.startswith("Cohort of ")]
    if goal_kind == "rank_top":
        assert summaries == [counterfactual_views.rank_summary(expected)]
        assert f"Cohort of {expected.parameters['cohort_size']:,} rows" in summaries[0]
        assert f"the row ranks {expected.parameters['rank_before']:,} now" in summaries[0]
    else:
        assert summaries == []
    if goal_kind == "rank_top" and not expected.found:
        pytest.skip(f"row {ROW} of this session's tiny model has no rank counterfactual: {expected.message}")
    assert expected.found
    table = frame_with(app, "changes")
    assert list(table["changes"]) == [c.describe() for c in expected.counterfactuals]
    np.testing.assert_allclose(table["prediction"], [c.prediction for c in expected.counterfactuals], rtol=1e-9)
    np.testing.assert_array_equal(table["n_changes"], [c.n_changes for c in expected.counterfactuals])
    if goal_kind == "rank_top":
        assert list(table["rank_after"]) == [c.rank for c in expected.counterfactuals]
        assert all(c.rank <= 20 for c in expected.counterfactuals)
    else:
        assert "rank_after" not in table.columns
    changed = {change.field for c in expected.counterfactuals for change in c.changes}
    assert changed.isdisjoint(IMMUTABLE)
    assert set(table.columns).isdisjoint(IMMUTABLE)
    single = frame_with(app, "meets_goal")
    assert list(single["field"]) == list(expected.single_changes["field"])
    chart = specs(app)["cf_counterfactuals_chart"]
    np.testing.assert_allclose(array(chart["data"][0]["x"]), table["prediction"], rtol=1e-9)
    # The labels of the reference lines sit above the plot area, where no bar is drawn.
    assert [(a["yref"], a["y"], a["yanchor"]) for a in chart["layout"]["annotations"]] == [("paper", 1.0, "bottom")] * 2


def test_open_in_editor_loads_changes(app_env, tiny, reachable_change):
    bundle, dataset = tiny
    app = open_page(cf_row=ROW, cf_goal_kind="change", cf_goal_value=reachable_change, cf_time_limit=0.0)
    app.button(key="cf_search_submit").click().run()
    expected = find_counterfactuals(
        bundle.model, dataset, ROW, f"change:{reachable_change!r}", immutable=["user_id"], **SEARCH_DEFAULTS
    )
    assert len(expected.counterfactuals) >= 2
    chosen = expected.counterfactuals[1]
    app.selectbox(key="cf_open_choice").set_value(2).run()
    app.button(key="cf_open").click().run()

    no_problems(app)
    values = counterfactual_views.editor_values(chosen, bundle.schema)
    for name, value in values.items():
        key = counterfactual_sections.field_key(name)
        widget = app.slider(key=key) if bundle.schema[name].kind == "numeric" else app.selectbox(key=key)
        assert widget.value == value
    opened = what_if(bundle.model, dataset, ROW, values, method=None)
    assert metric(app, "Predicted CTR after").value == figures.format_ctr(opened.prediction_after)
    assert metric(app, "Changed fields").value == str(chosen.n_changes)
    assert any(i.value.startswith("The editor shows counterfactual 2: ") for i in app.info)


def test_new_search_resets_choice_to_open(app_env, tiny, reachable_change):
    """A new search starts the "Counterfactual to open" choice at its first result, not the old choice."""
    app = open_page(cf_row=ROW, cf_goal_kind="change", cf_goal_value=reachable_change, cf_time_limit=0.0)
    app.button(key="cf_search_submit").click().run()
    app.selectbox(key="cf_open_choice").set_value(2).run()
    assert app.selectbox(key="cf_open_choice").value == 2

    app.number_input(key="cf_max_changes").set_value(2)
    app.button(key="cf_search_submit").click().run()

    no_problems(app)
    assert app.selectbox(key="cf_open_choice").value == 1


def test_search_already_met_says_nothing_searched(app_env, tiny):
    bundle, dataset = tiny
    logit = float(compare(bundle.model, dataset.tensors([ROW]), dataset.tensors([ROW]), method=None).logit_before)
    prediction = figures.sigmoid(logit)
    threshold = round(float((1 + prediction) / 2), 6)
    app = open_page(cf_row=ROW, cf_goal_kind="below", cf_goal_value=threshold, cf_time_limit=0.0)
    app.button(key="cf_search_submit").click().run()

    no_problems(app)
    expected = find_counterfactuals(
        bundle.model, dataset, ROW, f"below:{threshold!r}", immutable=["user_id"], **SEARCH_DEFAULTS
    )
    assert expected.already_met
    assert expected.evaluations == 0
    assert [i.value for i in app.info if i.value.startswith(f"Row {ROW} ")] == [expected.message]
    assert [w.value for w in app.warning] == []
    assert "The row already meets the goal; nothing was searched." in [c.value for c in app.caption]
    assert not any("evaluated every allowed combination" in c.value for c in app.caption)
    assert not any("fields tried in the order" in c.value for c in app.caption)
    assert not any("changes" in d.value.columns for d in app.dataframe)


def test_search_nothing_found_and_bad_goal(app_env, tiny):
    bundle, dataset = tiny
    immutable = [name for name in counterfactual_views.searchable_fields(bundle.schema) if name != "gender"]
    app = open_page(
        cf_row=ROW, cf_goal_kind="above", cf_goal_value=0.999, cf_immutable=immutable, cf_max_changes=1,
        cf_time_limit=0.0,
    )  # fmt: skip
    app.button(key="cf_search_submit").click().run()

    no_problems(app)
    expected = find_counterfactuals(
        bundle.model, dataset, ROW, "above:0.999", immutable=immutable, **{**SEARCH_DEFAULTS, "max_changes": 1}
    )
    assert not expected.found
    assert [w.value for w in app.warning] == [expected.message]
    assert "every allowed combination was evaluated" in expected.message
    assert not any("changes" in d.value.columns for d in app.dataframe)

    # Form widgets take new values only on submit, so the value is set in the same run as the click.
    app.number_input(key="cf_goal_value").set_value(1.5)
    app.button(key="cf_search_submit").click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 1
    assert errors[0].startswith("The counterfactual search failed: goal above: the threshold is a probability")


# --- page: sweep ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "n_values"), [("city", 5), ("bid_price", 6)])
def test_sweep_matches_library(app_env, tiny, field, n_values):
    bundle, dataset = tiny
    app = open_page(cf_row=ROW, cf_sweep_field=field, cf_sweep_top_k=n_values, cf_sweep_cohort_seed=2)

    no_problems(app)
    cohort = rows.sample_rows(len(dataset), SWEEP_ROWS, 2)
    expected = sweep_field(bundle.model, dataset, cohort, field, top_k=n_values, grid_points=n_values)
    table = frame_with(app, "partial_dependence").reset_index(drop=True)
    unused = "training_count" if field == "bid_price" else "numeric_value"
    assert unused not in table.columns
    pd.testing.assert_frame_equal(table, expected.to_frame().drop(columns=[unused]), check_exact=False, rtol=1e-6)
    partial_dependence = specs(app)["cf_sweep_chart"]["data"][2]
    assert sorted(array(partial_dependence["y"])) == pytest.approx(sorted(expected.partial_dependence), rel=1e-6)


# --- page: faithfulness ---------------------------------------------------------------------------


def test_faithfulness_explainers_offered():
    model = build_tiny_model("lr", synthetic_splits(n_train=200, n_valid=10, n_test=10).schema)
    offered, default = counterfactual_views.faithfulness_explainers(model, 5)
    assert offered == ["exact_shapley", "permutation_shapley", "integrated_gradients"]
    assert default == ["exact_shapley", "integrated_gradients"]
    offered, default = counterfactual_views.faithfulness_explainers(model, 17)
    assert "exact_shapley" not in offered
    assert default == ["permutation_shapley", "integrated_gradients"]
    attention_model = build_tiny_model("autoint+", synthetic_splits(n_train=200, n_valid=10, n_test=10).schema)
    assert has_pair_attention(attention_model)
    assert counterfactual_views.faithfulness_explainers(attention_model, 5)[1][-1] == "attention"


def test_faithfulness_matches_library(app_env, tiny):
    bundle, dataset = tiny
    groups = GROUPS_PATH.read_text(encoding="utf-8")
    app = open_page(
        cf_row=ROW, cf_faith_rows=8, cf_faith_seed=1, cf_faith_groups=groups, cf_faith_random=4,
        cf_faith_perturbations=20,
    )  # fmt: skip
    assert app.multiselect(key="cf_faith_explainers").value == ["exact_shapley", "integrated_gradients"]
    app.button(key="cf_faith_submit").click().run()

    no_problems(app)
    cohort = rows.sample_rows(len(dataset), 8, 1)
    players = json.loads(groups)
    scores = {
        name: explain(bundle.model, dataset, cohort, method=name, players=players)
        for name in ("exact_shapley", "integrated_gradients")
    }
    expected = compare_explainers(
        bundle.model, dataset, cohort, scores, players=players, n_random=4, random_state=1, with_infidelity=True,
        n_perturbations=20,
    )  # fmt: skip
    pd.testing.assert_frame_equal(
        frame_with(app, "auc_mean").reset_index(drop=True), expected.to_frame(), check_exact=False, rtol=1e-6
    )
    deletion = specs(app)["cf_deletion_chart"]["data"]
    np.testing.assert_allclose(array(deletion[1]["y"]), expected.mean_curve("exact_shapley", "deletion"), rtol=1e-6)
    np.testing.assert_allclose(array(deletion[3]["y"]), expected.mean_curve("random", "deletion"), rtol=1e-6)

    # Invalid groups after a comparison: only the new error, not the old result under it.
    app.text_area(key="cf_faith_groups").set_value("{not json")
    app.button(key="cf_faith_submit").click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 1
    assert errors[0].startswith("The field groups are not valid: ")
    assert "cf_deletion_chart" not in specs(app)
    assert not any("auc_mean" in d.value.columns for d in app.dataframe)

    app.text_area(key="cf_faith_groups").set_value(groups)
    app.multiselect(key="cf_faith_explainers").set_value([])
    app.button(key="cf_faith_submit").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "The faithfulness comparison failed: choose at least one explainer to compare with the random orders"
    ]

    # Invalid groups after a failed comparison: the old error goes.
    app.text_area(key="cf_faith_groups").set_value("{not json")
    app.button(key="cf_faith_submit").click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 1
    assert errors[0].startswith("The field groups are not valid: ")


# --- page: sequence models and a bundled model ----------------------------------------------------------


def test_sequence_model_history_edits(sequence_env, sequence_bundles):
    bundle = load_bundle(sequence_bundles.bundle("din"))
    dataset = load_dataset(sequence_bundles.test_path, bundle.schema)
    model = bundle.model
    row = next(r for r, items in enumerate(dataset.raw["history_items"]) if len(items.split("|")) == 4)
    app = open_page(cf_row=row)
    no_problems(app)
    labels = item_labels(model, dataset.tensors([row]))
    assert app.multiselect(key="cf_history_drop").options == [f"position {p}: {label}" for p, label in enumerate(labels)]
    read_only = [t.label for t in app.text_input if t.proto.disabled]
    assert read_only == ["history_items", "history_genres"]

    app.multiselect(key="cf_history_drop").set_value([1]).run()
    app.selectbox(key="cf_history_insert").set_value("m07").run()
    app.slider(key="cf_field_price").set_value(5.0).run()

    no_problems(app)
    before = dataset.tensors([row])
    after = apply_changes(bundle.schema, before, {"price": 5.0})
    after = insert_behaviour(model, drop_behaviours(model, after, [1]), paired_values(model, dataset, "m07"))
    expected = compare(model, before, after, row=row, method=None)
    assert metric(app, "Predicted CTR after").value == figures.format_ctr(expected.prediction_after)
    caption = next(c.value for c in app.caption if c.value.startswith("Edit:"))
    assert "history: drop position(s) 1; insert m07 · " in caption
    assert "cf_attribution_comparison" in specs(app)

    app.selectbox(key="cf_history_move").set_value(1).run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        f"Cannot apply this edit to row {row}: position 1 cannot be both dropped and moved to the most recent place"
    ]

    # The search substitutes field values of the row as stored; history edits are the editor's only.
    app.number_input(key="cf_goal_value").set_value(0.999)
    app.number_input(key="cf_time_limit").set_value(0.0)
    app.button(key="cf_search_submit").click().run()
    assert not app.exception
    expected = find_counterfactuals(model, dataset, row, "above:0.999", immutable=["user"], **SEARCH_DEFAULTS)
    messages = [s.value for s in app.success] + [w.value for w in app.warning] + [i.value for i in app.info]
    assert expected.message in messages
    # The seconds differ from the library run, so the caption is matched up to them.
    status = next(c.value for c in app.caption if " evaluations in " in c.value)
    assert status.startswith(f"{expected.evaluations:,} evaluations in ")
    assert status.endswith(" · not substituted: history_items, history_genres")

    app.number_input(key="cf_goal_value").set_value(7.0)
    app.button(key="cf_search_submit").click().run()
    assert not app.exception
    assert [e.value for e in app.error if e.value.startswith("The counterfactual search")] == [
        "The counterfactual search failed: goal above: the threshold is a probability and must lie strictly "
        "between 0 and 1; got 7.0"
    ]


def test_page_renders_on_bundled_model(bundled_env):
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["max_rows"] = 2_000
    app.session_state["cf_sweep_cohort_rows"] = SWEEP_ROWS
    app.run()
    app.sidebar.selectbox(key="bundle_choice").set_value(str(REPO_ROOT / "models" / "ad_clicks_din")).run()
    app.switch_page(PAGE)
    app.run()

    no_problems(app)
    assert [h.value for h in app.main.header] == [
        "What-if editor", "Counterfactual search", "Field sweep", "Faithfulness of explainers",
    ]  # fmt: skip
    assert [t.label for t in app.text_input if t.proto.disabled] == ["history_categories"]
    assert len(app.multiselect(key="cf_history_drop").options) > 0
    assert app.multiselect(key="cf_immutable").value == ["user_id"]


# --- helpers ------------------------------------------------------------------------------------------


def small_dataset() -> tuple[Schema, object]:
    frame = pd.DataFrame(
        {
            "label": [0, 1, 0, 1, 0],
            "city": ["b", "a", "b", "c", "b"],
            "age": [18.0, 30.0, np.nan, 24.0, 21.0],
            "price": [0.5, 1.25, 3.0, 2.0, 0.75],
        }
    )
    spec = Schema([Field("city", "categorical"), Field("age", "numeric"), Field("price", "numeric")])
    schema = fit_schema(frame, spec)
    return schema, encode(frame, schema)


def test_categorical_choices_cap_and_labels():
    schema, _ = small_dataset()
    city = schema["city"]
    choices = counterfactual_views.categorical_choices(city, "a")
    assert choices.values == ["b", "a", "c", "<OOV>", "<PAD>"]
    assert choices.label("b") == "b (seen 3×)"
    assert choices.label("<OOV>") == "<OOV> (unknown value)"
    assert not choices.capped

    capped = counterfactual_views.categorical_choices(city, "c", extra=["a", "zzz"], limit=1)
    assert capped.values == ["b", "c", "a", "<OOV>", "<PAD>"]
    assert capped.capped
    assert capped.n_offered == 1
    assert capped.n_vocabulary == 3


def test_numeric_range_in_raw_units():
    schema, dataset = small_dataset()
    age = counterfactual_views.numeric_range(dataset, schema["age"], 2)
    # Row 2 has no age, so the model saw the training mean (18 + 30 + 24 + 21) / 4.
    assert age == counterfactual_views.NumericRange(low=18.0, high=30.0, step=1.0, value=23.25)
    assert age.format == "%.0f"
    price = counterfactual_views.numeric_range(dataset, schema["price"], 1)
    assert price.step == pytest.approx(0.01)
    assert price.low == pytest.approx(0.5)
    assert price.high == pytest.approx(3.0)
    assert price.value == 1.25
    assert price.format == "%.2f"


def test_changed_values_and_editable_fields():
    defaults = {"city": "b", "age": 18.0, "price": 0.5}
    assert counterfactual_views.changed_values(defaults, {"city": "b", "age": 19.0, "price": 0.5}) == {"age": 19.0}
    assert counterfactual_views.changed_values(defaults, dict(defaults)) == {}
    schema = Schema(
        [Field("u", "categorical"), Field("h", "sequence", max_length=3), Field("v", "dense", dim=2)]
    )
    assert counterfactual_views.editable_fields(schema, sequence_model=False) == ["u", "h"]
    assert counterfactual_views.editable_fields(schema, sequence_model=True) == ["u"]


def test_default_immutable_and_pairs():
    schema = Schema(
        [Field("user_id", "categorical"), Field("item", "categorical"), Field("UID", "categorical"),
         Field("user_age", "numeric"), Field("category", "categorical")]
    )  # fmt: skip
    assert counterfactual_views.default_immutable(schema) == ["user_id", "UID"]
    pairs = counterfactual_views.pair_options(schema)
    assert pairs["item ↔ category"] == ("item", "category")
    assert len(pairs) == 6


def test_history_edits_apply_in_order(sequence_bundles):
    bundle = load_bundle(sequence_bundles.bundle("din"))
    dataset = load_dataset(sequence_bundles.test_path, bundle.schema)
    model = bundle.model
    row = next(r for r, items in enumerate(dataset.raw["history_items"]) if len(items.split("|")) == 4)
    inputs = dataset.tensors([row])
    labels = item_labels(model, inputs)

    edits = HistoryEdits(drop=(1,), move_to_recent=2, reverse=True)
    # Drop position 1, move the behaviour that was at position 2 to the end, then reverse.
    expected = [labels[2], labels[3], labels[0]]
    assert item_labels(model, edits.apply(model, inputs)) == expected
    assert edits.describe() == "drop position(s) 1; move position 2 to the most recent; reverse the order"
    moved = move_to_recent(model, drop_behaviours(model, inputs, [1]), 1)
    assert item_labels(model, HistoryEdits(drop=(1,), move_to_recent=2).apply(model, inputs)) == item_labels(model, moved)
    assert HistoryEdits().apply(model, inputs).keys() == inputs.keys()
    with pytest.raises(ValueError, match="position 1 cannot be both dropped and moved"):
        HistoryEdits(drop=(1,), move_to_recent=1).apply(model, inputs)
    with pytest.raises(ValueError, match="holds no behaviour"):
        HistoryEdits(drop=(5,)).apply(model, inputs)


def test_search_request_options():
    request = SearchRequest(goal_kind="above", goal_value=0.3, immutable=("user_id",), together=(("a", "b"),), time_limit=0.0)
    assert request.goal == "above:0.3"
    assert not request.needs_cohort
    options = request.options()
    assert options["time_limit"] is None
    assert options["together"] == [["a", "b"]]
    assert options["immutable"] == ["user_id"]
    assert SearchRequest(goal_kind="rank_drop", goal_value=5.0, time_limit=2.5).options()["time_limit"] == 2.5


def hand_search() -> CounterfactualSearch:
    """A search result with two counterfactuals, built by hand."""
    first = Counterfactual((Change("city", "b", "a", 12),), logit=0.0, margin=0.4)
    second = Counterfactual(
        (Change("city", "b", "c", 3), Change("price", "0.5", "2", None)), logit=float(np.log(3.0)), margin=1.5
    )
    numeric_only = Counterfactual((Change("price", "0.5", "3", None),), logit=-0.5, margin=0.1)
    single = pd.DataFrame(
        {"field": ["city", "price"], "value": ["a", "3"], "prediction": [0.5, 0.3775], "margin": [0.4, -0.2]}
    )
    return CounterfactualSearch(
        row=4,
        goal=Goal("above", 0.4),
        threshold=0.4,
        direction="up",
        logit_before=float(np.log(0.25)),
        counterfactuals=(first, second, numeric_only),
        single_changes=single,
        field_order=("city", "price"),
        evaluations=1_234,
        seconds=0.5,
        stopped=None,
        exhaustive=True,
        message="Found 3.",
    )


def test_counterfactual_table_by_hand():
    search = hand_search()
    table = counterfactual_views.counterfactual_table(search, ["city", "age", "price"])
    # logit_before = log(0.25) gives a prediction of 0.25 / 1.25 = 0.2.
    assert search.prediction_before == pytest.approx(0.2)
    assert list(table.columns) == [
        "counterfactual", "n_changes", "prediction", "change", "plausibility", "margin", "changes", "city", "price",
    ]  # fmt: skip
    np.testing.assert_allclose(table["prediction"], [0.5, 0.75, 1 / (1 + np.exp(0.5))])
    np.testing.assert_allclose(table["change"], [0.3, 0.55, 1 / (1 + np.exp(0.5)) - 0.2])
    np.testing.assert_array_equal(table["plausibility"], [12.0, 3.0, np.nan])
    assert list(table["city"]) == ["b → a", "b → c", ""]
    assert list(table["price"]) == ["", "0.5 → 2", "0.5 → 3"]
    assert counterfactual_views.changed_field_columns(table) == ["city", "price"]

    single = counterfactual_views.single_change_table(search)
    np.testing.assert_allclose(single["change"], [0.3, 0.1775])
    assert list(single["meets_goal"]) == [True, False]
    schema, _ = small_dataset()
    assert counterfactual_views.editor_values(search.counterfactuals[1], schema) == {"city": "c", "price": 2.0}
    assert counterfactual_views.search_status(search) == "1,234 evaluations in 0.50 s · evaluated every allowed combination"


def test_search_status_when_nothing_searched():
    search = hand_search()
    met = dataclasses.replace(search, counterfactuals=(), evaluations=0, seconds=0.01, already_met=True)
    assert counterfactual_views.search_status(met) == "The row already meets the goal; nothing was searched."
    # An unreachable goal or no allowed value: the library returns before it evaluates anything.
    empty = dataclasses.replace(search, counterfactuals=(), evaluations=0, seconds=0.01)
    assert counterfactual_views.search_status(empty) == "Nothing was searched (0 evaluations in 0.01 s)."
    stopped = dataclasses.replace(search, stopped="time", exhaustive=False)
    assert counterfactual_views.search_status(stopped) == "1,234 evaluations in 0.50 s · stopped at the time limit"


def hand_rank_search() -> CounterfactualSearch:
    """:func:`hand_search` turned into a rank goal: rank 10 in a cohort of 50 rows, where the row ranks 30."""
    search = hand_search()
    ranks = (9, 5, 9)
    return dataclasses.replace(
        search,
        goal=Goal("rank_top", 10),
        counterfactuals=tuple(
            dataclasses.replace(counterfactual, rank=rank)
            for counterfactual, rank in zip(search.counterfactuals, ranks, strict=True)
        ),
        parameters={"cohort_size": 50, "rank_before": 30},
    )


def test_rank_goal_table_and_summary():
    search = hand_rank_search()
    table = counterfactual_views.counterfactual_table(search, ["city", "age", "price"])
    assert list(table.columns) == [
        "counterfactual", "n_changes", "prediction", "change", "rank_after", "plausibility", "margin", "changes",
        "city", "price",
    ]  # fmt: skip
    assert list(table["rank_after"]) == [9, 5, 9]
    assert counterfactual_views.changed_field_columns(table) == ["city", "price"]
    assert counterfactual_views.rank_summary(search) == (
        "Cohort of 50 rows, this row included (rank 1 = highest predicted CTR): the row ranks 30 now; "
        "the counterfactuals reach ranks 5 to 9."
    )
    first_only = dataclasses.replace(search, counterfactuals=search.counterfactuals[:1])
    assert counterfactual_views.rank_summary(first_only).endswith("ranks 30 now; the counterfactuals reach rank 9.")
    none_found = dataclasses.replace(search, counterfactuals=())
    assert counterfactual_views.rank_summary(none_found).endswith("the row ranks 30 now.")
    assert counterfactual_views.rank_summary(hand_search()) is None

    bars = counterfactual_figures.counterfactuals_bar(search)
    assert bars.layout.title.subtitle.text.endswith("3 found · now rank 30 of 50")
    assert bars.data[0].hovertext[1].endswith("· rank 5 of 50")
    assert bars.layout.annotations[1].text == "goal 40.00 % (rank 10)"


def test_ctr_delta_options():
    assert counterfactual_views.ctr_delta_options(0.3, edited=False) == {"delta": None}
    # Float32 noise between two forward passes of one row is no change.
    assert counterfactual_views.ctr_delta_options(1.6e-8, edited=True) == {
        "delta": "0.00 pp", "delta_color": "off", "delta_arrow": "off"
    }  # fmt: skip
    assert counterfactual_views.ctr_delta_options(0.0, edited=True)["delta"] == "0.00 pp"
    assert counterfactual_views.ctr_delta_options(-0.0512, edited=True) == {"delta": "-5.12 pp"}
    # 0.0000123 is 0.00123 pp: too small for two decimals, so two significant digits.
    assert counterfactual_views.ctr_delta_options(0.0000123, edited=True) == {"delta": "+0.0012 pp"}


def hand_what_if() -> WhatIf:
    """A what-if of three fields with hand-made attributions; ``b`` changed."""
    names = ("a", "b", "c")

    def attribution(values: list[float], raw: list[str]) -> Attribution:
        return Attribution(
            values=np.asarray([values]),
            base_values=np.asarray([-1.0]),
            predictions=np.asarray([-1.0 + sum(values)]),
            field_names=names,
            rows=np.asarray([3]),
            method="exact_shapley",
            baseline="zero",
            raw_values=pd.DataFrame([raw], columns=list(names)),
        )

    before = attribution([0.1, -0.5, 0.2], ["x", "y", "z"])
    after = attribution([0.1, 0.7, 0.25], ["x", "w", "z"])
    return WhatIf(
        row=3,
        values_before={"a": "x", "b": "y", "c": "z"},
        values_after={"a": "x", "b": "w", "c": "z"},
        logit_before=-1.2,
        logit_after=0.05,
        before=before,
        after=after,
    )


def test_attribution_comparison_bar_by_hand():
    figure = counterfactual_figures.attribution_comparison_bar(hand_what_if())
    before, after = figure.data
    # Ordered by max(|before|, |after|): b (0.7), c (0.25), a (0.1).
    assert list(before.y) == ["<b>b ✎</b>", "c", "a"]
    np.testing.assert_allclose(before.x, [-0.5, 0.2, 0.1])
    np.testing.assert_allclose(after.x, [0.7, 0.25, 0.1])
    assert list(after.marker.line.width) == [2.0, 0.0, 0.0]
    assert "b = w" in after.hovertext[0]
    assert "changed: b" in figure.layout.title.subtitle.text

    largest_only = counterfactual_figures.attribution_comparison_bar(hand_what_if(), max_players=1)
    assert list(largest_only.data[0].y) == ["<b>b ✎</b>"]
    assert "2 smaller players not drawn" in largest_only.layout.title.subtitle.text
    with pytest.raises(ValueError, match="needs a WhatIf with attributions"):
        counterfactual_figures.attribution_comparison_bar(WhatIf(1, {"a": "x"}, {"a": "x"}, 0.0, 0.0))


def test_search_figures_by_hand():
    search = hand_search()
    bars = counterfactual_figures.counterfactuals_bar(search)
    np.testing.assert_allclose(bars.data[0].x, [0.5, 0.75, 1 / (1 + np.exp(0.5))])
    assert bars.data[0].y[1] == "2. city: b → c; price: 0.5 → 2"
    assert [shape.x0 for shape in bars.layout.shapes] == pytest.approx([0.2, 0.4])
    # The x axis reaches 8 % past the largest bar (0.75).
    assert list(bars.layout.xaxis.range) == pytest.approx([0.0, 0.81])

    # Both labels sit above the plot area (paper y = 1, anchored at their bottom), one row apart, so they
    # cover no bar and not each other. Lines left of the middle of the x range (0.405) get left-anchored labels.
    now, goal = bars.layout.annotations
    assert (now.text, goal.text) == ("now 20.00 %", "goal 40.00 %")
    assert (now.x, goal.x) == pytest.approx((0.2, 0.4))
    for label in (now, goal):
        assert (label.xref, label.yref, label.y, label.yanchor, label.showarrow) == ("x", "paper", 1.0, "bottom", False)
    assert (goal.yshift, now.yshift) == (0, counterfactual_figures.REFERENCE_LABEL_HEIGHT)
    assert (now.xanchor, goal.xanchor) == ("left", "left")
    assert bars.layout.margin.t >= 100

    # A goal line right of the middle gets a label that extends to its left, inside the figure.
    high_goal = counterfactual_figures.counterfactuals_bar(dataclasses.replace(search, threshold=0.6))
    assert high_goal.layout.annotations[1].xanchor == "right"
    # A goal past every bar widens the axis to keep its line in view, but not past 100 %.
    far_goal = counterfactual_figures.counterfactuals_bar(dataclasses.replace(search, threshold=0.95))
    assert list(far_goal.layout.xaxis.range) == pytest.approx([0.0, 1.0])

    single = counterfactual_figures.single_changes_bar(search)
    np.testing.assert_allclose(single.data[0].x, [0.5, 0.3775])
    assert list(single.data[0].y) == ["city = a", "price = 3"]
    assert list(single.data[0].marker.opacity) == [1.0, 0.45]
    assert "1 of 2 fields reach it alone" in single.layout.title.subtitle.text
    assert [(a.yref, a.y, a.yanchor) for a in single.layout.annotations] == [("paper", 1.0, "bottom")] * 2


def test_what_if_on_synthetic_model_matches_figure():
    splits = synthetic_splits(n_train=300, n_valid=10, n_test=50)
    model = build_tiny_model("lr", splits.schema)
    result = what_if(model, splits.test, 0, {"city": other_value(splits.schema["city"], splits.test.raw_values([0])["city"].iloc[0])})
    figure = counterfactual_figures.attribution_comparison_bar(result)
    total_before = float(np.sum(figure.data[0].x))
    total_after = float(np.sum(figure.data[1].x))
    # Exact Shapley values add up to prediction minus base value, before and after.
    assert total_before == pytest.approx(result.logit_before - float(result.before.base_values[0]), abs=1e-5)
    assert total_after == pytest.approx(result.logit_after - float(result.after.base_values[0]), abs=1e-5)
