"""The sequence-model views through ``AppTest``: target attention, the Sequence explorer and its edits.

Tiny DIN and DIEN bundles are trained on synthetic histories (see
``sequence_fixtures``), and a QIN-style bundle gets random weights. Expected
values come from the library (``capture_probes``, ``explain_behaviours``,
``apply_edit``) or from the raw history strings of the test file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import array, one_torch_thread, point_app_at  # noqa: F401 (autouse fixture)
from sequence_fixtures import build_sequence_bundles
from workbench.app import probe_views, rows
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain.behaviours import explain_behaviours
from workbench.probes import capture_probes
from workbench.sequence_edits import apply_edit, paired_values

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
PAGES = {
    "overview": "workbench/app/pages/overview.py",
    "importance": "workbench/app/pages/importance.py",
    "explorer": "workbench/app/pages/explorer.py",
    "interactions": "workbench/app/pages/interactions.py",
    "gates": "workbench/app/pages/gates.py",
    "attention": "workbench/app/pages/attention.py",
    "intrinsic": "workbench/app/pages/intrinsic.py",
}
TIMEOUT_S = 120
COHORT_ROWS = 200
IMPORTANCE_ROWS = 100
N_STEPS = 50


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return build_sequence_bundles(tmp_path_factory.mktemp("sequence"))


@pytest.fixture
def app_env(monkeypatch, bundles):
    yield from point_app_at(monkeypatch, bundles.models_dir, bundles.data_dir)


@pytest.fixture(scope="module")
def loaded(bundles):
    """Each bundle with the synthetic test file encoded by its schema."""
    out = {}
    for architecture in ("din", "dien", "qin", "dnn"):
        bundle = load_bundle(bundles.bundle(architecture))
        out[architecture] = (bundle, load_dataset(bundles.test_path, bundle.schema))
    return out


def raw_histories(dataset) -> list[tuple[list[str], list[str]]]:
    """Items and genres of every row, from the strings of the test file."""
    out = []
    for items, genres in zip(dataset.raw["history_items"], dataset.raw["history_genres"], strict=True):
        out.append((items.split("|") if items else [], genres.split("|") if genres else []))
    return out


def row_with(dataset, n_behaviours: int) -> int:
    """The first row whose history contains exactly ``n_behaviours`` behaviours."""
    return next(r for r, (items, _) in enumerate(raw_histories(dataset)) if len(items) == n_behaviours)


def open_page(page: str, architecture: str, bundles, **session_state) -> AppTest:
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["attention_cohort_rows"] = COHORT_ROWS
    app.session_state["importance_rows"] = IMPORTANCE_ROWS
    for key, value in session_state.items():
        app.session_state[key] = value
    app.run()
    app.sidebar.selectbox(key="bundle_choice").set_value(str(bundles.bundle(architecture))).run()
    app.switch_page(PAGES[page])
    app.run()
    return app


def specs(app: AppTest) -> dict[str, dict]:
    return {chart.proto.id.rsplit("-", 1)[-1]: json.loads(chart.proto.spec) for chart in app.get("plotly_chart")}


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def frame_with(app: AppTest, column: str) -> pd.DataFrame:
    """The first table shown with ``column`` (AppTest does not expose a table's key)."""
    return next(d.value for d in app.dataframe if column in d.value.columns)


def no_problems(app: AppTest) -> None:
    assert not app.exception
    assert [e.value for e in app.error] == []


# --- Attention page -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("architecture", "note"), [("din", "not normalised"), ("dien", "softmax-normalised"), ("qin", "not normalised")]
)
def test_attention_strip_shows_captured_weights(app_env, bundles, loaded, architecture, note):
    bundle, dataset = loaded[architecture]
    row = row_with(dataset, 4)
    app = open_page("attention", architecture, bundles, attention_row=row)

    no_problems(app)
    strip = specs(app)["attention_strip"]
    weights = capture_probes(bundle.model, dataset.tensors(np.array([row])))["target_attention"].values[0]
    items, genres = raw_histories(dataset)[row]
    labels = [f"{p}: {item} · {genre}" for p, (item, genre) in enumerate(zip(items, genres, strict=True))]
    assert strip["data"][0]["x"] == labels
    np.testing.assert_allclose(array(strip["data"][0]["y"]), weights[:4], rtol=1e-6, atol=1e-7)
    assert len(strip["data"]) == 1
    notes = [i.value for i in app.info]
    assert any(note in text and f"{weights.sum():.4f}" in text for text in notes)
    if architecture == "dien":
        assert weights.sum() == pytest.approx(1.0, abs=1e-5)


def test_attention_cohort_by_position_and_item(app_env, bundles, loaded):
    bundle, dataset = loaded["din"]
    app = open_page("attention", "din", bundles)
    cohort_rows = rows.sample_rows(len(dataset), COHORT_ROWS, 0)
    weights = capture_probes(bundle.model, dataset.tensors(cohort_rows))["target_attention"].values
    histories = [raw_histories(dataset)[r] for r in cohort_rows]
    stored = pd.DataFrame(
        [(p, weights[i, p], item, genre, len(items) - 1 - p)
         for i, (items, genres) in enumerate(histories)
         for p, (item, genre) in enumerate(zip(items, genres, strict=True))],
        columns=["position", "weight", "item", "genre", "back"],
    )  # fmt: skip

    no_problems(app)
    charts = specs(app)
    by_position = stored.groupby("position")["weight"].agg(["mean", "size"])
    np.testing.assert_array_equal(array(charts["attention_by_position"]["data"][0]["x"]), by_position.index)
    np.testing.assert_allclose(array(charts["attention_by_position"]["data"][0]["y"]), by_position["mean"], rtol=1e-6)
    np.testing.assert_array_equal(array(charts["attention_by_position"]["data"][1]["y"]), by_position["size"])
    counts = stored["item"].value_counts()
    top = sorted(counts.index, key=lambda item: (-counts[item], item))[:20]
    by_item = charts["attention_by_item"]["data"][0]
    assert by_item["y"] == top
    np.testing.assert_allclose(array(by_item["x"]), stored.groupby("item")["weight"].mean()[top], rtol=1e-6)
    np.testing.assert_array_equal(array(by_item["customdata"]), counts[top])

    app.radio(key="attention_position_origin").set_value("recent").run()
    app.selectbox(key="attention_item_history").set_value("history_genres").run()

    no_problems(app)
    charts = specs(app)
    by_recency = stored.groupby("back")["weight"].mean()
    np.testing.assert_allclose(array(charts["attention_by_position"]["data"][0]["y"]), by_recency, rtol=1e-6)
    assert "most recent" in charts["attention_by_position"]["layout"]["xaxis"]["title"]["text"]
    by_genre = stored.groupby("genre")["weight"].mean()
    by_genre_chart = charts["attention_by_item"]["data"][0]
    genre_means = dict(zip(by_genre_chart["y"], array(by_genre_chart["x"]), strict=True))
    assert set(genre_means) == {"drama", "comedy", "action"}
    for genre, value in genre_means.items():
        assert value == pytest.approx(by_genre[genre], rel=1e-6)


def test_attention_row_with_empty_history(app_env, bundles, loaded):
    _, dataset = loaded["din"]
    row = row_with(dataset, 0)
    app = open_page("attention", "din", bundles, attention_row=row)

    no_problems(app)
    assert any(f"Row {row} has an empty history" in i.value for i in app.info)
    assert "attention_strip" not in specs(app)
    assert "attention_by_position" in specs(app)


def test_attention_page_for_field_model(app_env, bundles):
    app = open_page("attention", "dnn", bundles)

    no_problems(app)
    assert any("no attention over fields or past behaviours" in i.value and "DIN, DIEN" in i.value for i in app.info)


# --- Sample explorer: attribution -----------------------------------------------------------------


@pytest.mark.parametrize("method", ["auto", "integrated_gradients"])
def test_explorer_attributes_single_behaviours(app_env, bundles, loaded, method):
    bundle, dataset = loaded["dien"]
    row = row_with(dataset, 5)
    app = open_page("explorer", "dien", bundles, explorer_row=row, sequence_method=method)

    no_problems(app)
    expected = explain_behaviours(bundle.model, dataset, [row], method=method, n_steps=N_STEPS, random_state=0)
    strip = specs(app)["sequence_strip"]
    assert [trace["name"] for trace in strip["data"]] == ["attention", "attribution"]
    np.testing.assert_allclose(array(strip["data"][0]["y"]), expected.attention[0, :5], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(array(strip["data"][1]["y"]), expected.values[0, :5], rtol=1e-5, atol=1e-6)
    assert strip["data"][1]["x"][0].startswith("0: ")
    assert metric(app, "Behaviours") == "5"
    assert metric(app, "|Attention| vs |attribution|") == f"{expected.attention_agreement()[0]:+.3f}"
    table = frame_with(app, "rank")
    pd.testing.assert_frame_equal(table.reset_index(drop=True), expected.for_sample(0), check_exact=False, rtol=1e-5)


def test_explorer_rest_per_field(app_env, bundles, loaded):
    bundle, dataset = loaded["din"]
    row = row_with(dataset, 3)
    app = open_page("explorer", "din", bundles, explorer_row=row, sequence_rest="fields")

    no_problems(app)
    expected = explain_behaviours(bundle.model, dataset, [row], rest="fields", random_state=0)
    assert expected.rest_names == ("user", "item", "genre", "price")
    caption = next(c.value for c in app.caption if c.value.startswith("Method:"))
    for name, value in zip(expected.rest_names, expected.rest_values[0], strict=True):
        assert f"{name} {value:+.4f}" in caption


def test_explorer_has_no_sequence_section_for_field_model(app_env, bundles):
    app = open_page("explorer", "dnn", bundles, explorer_row=3)

    no_problems(app)
    assert "Sequence explorer" not in [h.value for h in app.header]
    assert "sequence_strip" not in specs(app)


# --- Sample explorer: counterfactual edits ---------------------------------------------------------


def apply(app: AppTest, action: str, **widgets) -> AppTest:
    app.selectbox(key="sequence_action").set_value(action).run()
    for key, value in widgets.items():
        _set(app, key, value)
    app.button(key="sequence_apply").click().run()
    return app


def _set(app: AppTest, key: str, value) -> None:
    for finder in (app.multiselect, app.selectbox, app.number_input, app.text_input):
        try:
            widget = finder(key=key)
        except KeyError:
            continue
        widget.set_value(value).run()
        return
    msg = f"no widget with key {key!r}"
    raise KeyError(msg)


def test_explorer_edits_match_the_library(app_env, bundles, loaded):
    bundle, dataset = loaded["dien"]
    model = bundle.model
    row = row_with(dataset, 5)
    app = open_page("explorer", "dien", bundles, explorer_row=row)
    attribution = explain_behaviours(model, dataset, [row], random_state=0)
    completed = paired_values(model, dataset, "m07")
    expected = [
        apply_edit(model, dataset, row, "drop", positions=[1, 3]),
        apply_edit(model, dataset, row, "reverse"),
        apply_edit(model, dataset, row, "move_to_recent", positions=[0]),
        apply_edit(model, dataset, row, "drop_top_k", k=2, attribution=attribution),
        apply_edit(model, dataset, row, "insert", values=completed),
    ]

    apply(app, "drop", sequence_drop_positions=[1, 3])
    no_problems(app)
    assert metric(app, "Change") == f"{100 * expected[0].delta:+.2f} pp"
    assert metric(app, "Predicted CTR after") == f"{100 * expected[0].prediction_after:.2f} %"
    apply(app, "reverse")
    apply(app, "move_to_recent", sequence_move_position=0)
    apply(app, "drop_top_k", sequence_top_k=2)
    app.selectbox(key="sequence_action").set_value("insert").run()
    app.selectbox(key="sequence_insert_item").set_value("m07").run()
    # The genre box is filled from the item, as paired_values completes it.
    assert app.text_input(key="sequence_insert_history_genres").value == completed["history_genres"]
    app.button(key="sequence_apply").click().run()

    no_problems(app)
    assert metric(app, "Change") == f"{100 * expected[4].delta:+.2f} pp"
    deltas = specs(app)["sequence_edit_deltas"]["data"][0]
    np.testing.assert_allclose(array(deltas["x"]), [edit.delta for edit in expected], rtol=1e-6, atol=1e-9)
    assert deltas["y"][0] == "1. " + expected[0].description
    table = frame_with(app, "history_after")
    assert list(table["edit"]) == [edit.description for edit in expected]
    np.testing.assert_allclose(table["delta"], [edit.delta for edit in expected], rtol=1e-6, atol=1e-9)
    assert table["history_after"].iloc[4].endswith("m07 · " + completed["history_genres"])
    # DIEN reads the order of the history: reversing it changes the prediction.
    assert expected[1].delta != 0


def test_explorer_edits_are_kept_per_row(app_env, bundles, loaded):
    _, dataset = loaded["din"]
    first, second = row_with(dataset, 5), row_with(dataset, 2)
    app = open_page("explorer", "din", bundles, explorer_row=first)
    apply(app, "drop", sequence_drop_positions=[4])
    assert len(frame_with(app, "history_after")) == 1

    # Position 4 does not exist in the second row, so the kept choice must not reach its select box.
    app.number_input(key="explorer_row").set_value(second).run()

    no_problems(app)
    assert "sequence_edit_deltas" not in specs(app)
    assert app.multiselect(key="sequence_drop_positions").value == []
    app.number_input(key="explorer_row").set_value(first).run()
    assert len(frame_with(app, "history_after")) == 1
    app.button(key="sequence_clear").click().run()
    assert "sequence_edit_deltas" not in specs(app)


def test_explorer_rejects_bad_edits(app_env, bundles, loaded):
    _, dataset = loaded["din"]
    row = row_with(dataset, 3)
    app = open_page("explorer", "din", bundles, explorer_row=row)

    app.button(key="sequence_apply").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == [f"Cannot apply this edit to row {row}: drop: choose at least one position"]

    app.selectbox(key="sequence_action").set_value("insert").run()
    app.text_input(key="sequence_insert_history_genres").set_value("western").run()
    app.button(key="sequence_apply").click().run()
    assert not app.exception
    errors = [e.value for e in app.error]
    assert len(errors) == 1
    assert "'western' is not a known value of 'history_genres'" in errors[0]
    assert "sequence_edit_deltas" not in specs(app)


def test_explorer_empty_history(app_env, bundles, loaded):
    _, dataset = loaded["din"]
    row = row_with(dataset, 0)
    app = open_page("explorer", "din", bundles, explorer_row=row)

    no_problems(app)
    assert any(f"Row {row} has an empty history" in i.value for i in app.info)
    apply(app, "drop_top_k")
    assert not app.exception
    assert [e.value for e in app.error] == [f"Cannot apply this edit to row {row}: drop_top_k: this sample's history is empty"]
    apply(app, "move_to_recent")
    assert [e.value for e in app.error] == [
        f"Cannot apply this edit to row {row}: move_to_recent: choose exactly one position"
    ]


# --- other pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["overview", "importance", "interactions", "gates", "intrinsic"])
def test_field_pages_render_for_sequence_model(app_env, bundles, page):
    app = open_page(page, "din", bundles)

    no_problems(app)
    if page in ("gates", "intrinsic"):
        assert any(probe_views.SEQUENCE_NOTE.strip() in i.value for i in app.info)
