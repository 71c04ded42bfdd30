"""The report basket through ``AppTest``: the "Add to report" buttons under the figures of the pages.

Each test clicks a button and reads the basket in ``st.session_state``: the
stored figure must be the figure on the page, its tables the numbers the
library computes on the same rows, and its provenance the bundle, the data
file and the explainer settings that produced them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from helpers import array, point_app_at
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from sequence_fixtures import build_sequence_bundles
from test_app import APP_PATH, PAGES, app_env, errors, plotly_specs  # noqa: F401 (app_env is a fixture)
from test_app_probes import PAGES as PROBE_PAGES
from test_app_probes import bundle_name, probe_models_dir  # noqa: F401 (probe_models_dir is a fixture)
from workbench.app import rows
from workbench.bundle import MANIFEST_NAME, WEIGHTS_NAME, load_bundle
from workbench.data import load_dataset
from workbench.explain import explain, interactions
from workbench.report import ReportSection, slugify
from workbench.sweeps import sweep_field

TIMEOUT_S = 120
IMPORTANCE_ROWS = 40
INTERACTION_ROWS = 10
"""Rows of the Interactions page; each costs 2**15 forward passes of the tiny model."""
SWEEP_ROWS = 50
COUNTERFACTUALS_PAGE = "workbench/app/pages/counterfactuals.py"
GROUPS_PATH = Path(__file__).resolve().parents[1] / "sample_data" / "ad_clicks" / "groups.json"


@pytest.fixture(scope="module")
def library(tiny_bundle_path, tiny_data_dir):
    """The tiny bundle, its test file and the file's SHA-256, computed here with hashlib."""
    bundle = load_bundle(tiny_bundle_path)
    path = tiny_data_dir / "ad_clicks" / "test.parquet"
    dataset = load_dataset(path, bundle.schema)
    bundle_digest = hashlib.sha256(
        (tiny_bundle_path / MANIFEST_NAME).read_bytes() + (tiny_bundle_path / WEIGHTS_NAME).read_bytes()
    ).hexdigest()
    return {
        "bundle": bundle,
        "dataset": dataset,
        "path": path,
        "bundle_sha256": bundle_digest,
        "data_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def start(**session_state) -> AppTest:
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["importance_rows"] = IMPORTANCE_ROWS
    app.session_state["interactions_rows"] = INTERACTION_ROWS
    app.session_state["cf_sweep_cohort_rows"] = SWEEP_ROWS
    for key, value in session_state.items():
        app.session_state[key] = value
    app.run()
    return app


def go_to(app: AppTest, page: str) -> None:
    app.switch_page(page)
    app.run()
    if page == PAGES["interactions"]:
        app.button(key="interactions_submit").click().run()
    assert not app.exception
    assert errors(app) == []


def add(app: AppTest, chart_key: str) -> None:
    """Click the "Add to report" button under the chart ``chart_key``."""
    button = app.button(key=f"{chart_key}_add_to_report")
    assert button.label == "Add to report"
    button.click().run()
    assert not app.exception
    assert errors(app) == []


def stored(app: AppTest) -> list[dict]:
    """The basket's sections as the app keeps them: ``ReportSection.to_dict`` output, in report order."""
    return list(app.session_state["report_basket"]) if "report_basket" in app.session_state else []


def normalised(figure: str | dict) -> dict:
    """A figure's JSON as plotly writes it, so that an empty ``{}`` and a missing property compare equal.

    Streamlit serialises the page's figure itself, and on some runs keeps an
    empty ``yaxis.title`` that ``Figure.to_json`` leaves out.
    """
    spec = json.loads(figure) if isinstance(figure, str) else figure
    return json.loads(go.Figure(spec).to_json())


def table(section: dict, name: str) -> pd.DataFrame:
    return ReportSection.from_dict(section).tables[name]


def toasts(app: AppTest) -> list[str]:
    return [toast.value for toast in app.toast]


# --- Field importance ----------------------------------------------------------------------------


def test_importance_bar_goes_to_the_basket(app_env, library):
    app = start()
    go_to(app, PAGES["importance"])
    assert stored(app) == []
    add(app, "importance_bar")

    sections = stored(app)
    assert len(sections) == 1
    section = sections[0]
    page_figure = plotly_specs(app)["importance_bar"]
    assert normalised(section["figure"]) == normalised(page_figure)
    assert section["title"] == "Field importance: mean |attribution| per field"
    assert toasts(app) == ["Added “Field importance: mean |attribution| per field” to the report (1 section)."]

    # The numbers: mean |attribution| per field of Integrated Gradients on the page's 40 rows (seed 0).
    dataset = library["dataset"]
    sample = rows.sample_rows(len(dataset), IMPORTANCE_ROWS, 0)
    expected = explain(
        library["bundle"].model, dataset, sample, method="integrated_gradients", baseline="zero", n_steps=50
    ).mean_abs()
    importance = table(section, "importance")
    assert list(importance.columns) == ["field", "mean_abs_attribution"]
    assert list(importance["field"]) == list(expected.index)
    np.testing.assert_allclose(importance["mean_abs_attribution"], expected.to_numpy(), rtol=1e-5, atol=1e-8)
    bar = page_figure["data"][0]
    shown = dict(zip(bar["y"], array(bar["x"]), strict=True))
    assert {name: shown[name] for name in importance["field"]} == dict(
        zip(importance["field"], importance["mean_abs_attribution"], strict=True)
    )

    record = section["provenance"]
    assert record["bundle_name"] == "tiny-deepfm"
    assert record["bundle_architecture"] == "deepfm"
    assert record["bundle_fingerprint"] == library["bundle_sha256"]
    assert record["data_path"] == str(library["path"])
    assert record["data_name"] == "test.parquet"
    assert record["data_fingerprint"] == library["data_sha256"]
    assert record["data_rows"] == 2_000
    assert record["cohort"] is None
    assert (record["method"], record["baseline"], record["output_space"]) == ("integrated_gradients", "zero", "logit")
    assert record["parameters"]["n_steps"] == 50
    assert record["parameters"]["sample_rows"] == IMPORTANCE_ROWS
    assert record["parameters"]["sample_seed"] == 0


def test_second_click_keeps_one_section(app_env):
    app = start()
    go_to(app, PAGES["importance"])
    add(app, "importance_bar")
    first = stored(app)
    add(app, "importance_bar")

    assert len(stored(app)) == 1
    assert stored(app)[0]["figure"] == first[0]["figure"]
    assert toasts(app) == ["This figure is already in the report."]


def test_other_settings_make_a_new_section(app_env):
    app = start()
    go_to(app, PAGES["importance"])
    add(app, "importance_bar")
    app.selectbox(key="importance_baseline").set_value("oov")
    app.button(key="importance_submit").click().run()
    assert not app.exception
    assert errors(app) == []
    add(app, "importance_bar")

    sections = stored(app)
    assert [s["provenance"]["baseline"] for s in sections] == ["zero", "oov"]
    # Same title, so the report numbers the second key.
    key = slugify("Field importance: mean |attribution| per field")
    assert [s["key"] for s in sections] == [key, f"{key}-2"]


# --- three pages, one basket ---------------------------------------------------------------------


def test_sections_from_three_pages_keep_their_order(app_env, library):
    app = start()
    go_to(app, PAGES["importance"])
    add(app, "importance_beeswarm")
    shown = [plotly_specs(app)["importance_beeswarm"]]
    go_to(app, PAGES["explorer"])
    add(app, "explorer_waterfall")
    shown.append(plotly_specs(app)["explorer_waterfall"])
    go_to(app, PAGES["interactions"])
    add(app, "interactions_heatmap")
    shown.append(plotly_specs(app)["interactions_heatmap"])

    sections = stored(app)
    assert [s["title"] for s in sections] == [
        "Attribution per field and sample",
        "Field attributions for row 0",
        "Pair interactions: mean |value| of SII",
    ]
    assert [s["provenance"]["method"] for s in sections] == ["integrated_gradients", "integrated_gradients", "SII"]
    assert [normalised(s["figure"]) for s in sections] == [normalised(spec) for spec in shown]
    assert toasts(app) == ["Added “Pair interactions: mean |value| of SII” to the report (3 sections)."]

    # The waterfall's table is the row's attribution, one line per field in schema order.
    dataset = library["dataset"]
    row_attribution = explain(
        library["bundle"].model, dataset, np.array([0]), method="integrated_gradients", baseline="zero", n_steps=50
    )
    waterfall = table(sections[1], "attributions")
    assert list(waterfall["field"]) == list(row_attribution.field_names)
    np.testing.assert_allclose(waterfall["attribution"], row_attribution.values[0], rtol=1e-5, atol=1e-8)
    assert sections[1]["provenance"]["parameters"]["row"] == 0

    # The heatmap's table is the mean |SII| matrix of the page's rows, with the players as a column.
    sample = rows.sample_rows(len(dataset), INTERACTION_ROWS, 0)
    sii = interactions(library["bundle"].model, dataset, sample, index="SII")
    matrix = table(sections[2], "pairs_mean_abs")
    names = list(sii.player_names)
    assert list(matrix.columns) == ["player", *names]
    assert list(matrix["player"]) == names
    np.testing.assert_allclose(matrix[names].to_numpy(), sii.mean_abs().to_numpy(), rtol=0, atol=1e-12)
    top = table(sections[2], "top_pairs")
    assert len(top) == len(names) * (len(names) - 1) // 2
    assert top["mean_abs_value"].iloc[0] == pytest.approx(sii.mean_abs().to_numpy().max(), abs=1e-12)
    heatmap_record = sections[2]["provenance"]
    assert heatmap_record["baseline"] == "zero"
    assert heatmap_record["parameters"]["index"] == "SII"
    assert heatmap_record["parameters"]["n_coalitions"] == 2**15
    assert heatmap_record["parameters"]["sample_rows"] == INTERACTION_ROWS


# --- Counterfactuals page: field sweep -----------------------------------------------------------


def test_sweep_goes_to_the_basket(app_env, library):
    app = start(cf_row=7, cf_sweep_field="city", cf_sweep_top_k=5, cf_sweep_cohort_seed=2)
    go_to(app, COUNTERFACTUALS_PAGE)
    add(app, "cf_sweep_chart")

    sections = stored(app)
    assert len(sections) == 1
    assert normalised(sections[0]["figure"]) == normalised(plotly_specs(app)["cf_sweep_chart"])
    dataset = library["dataset"]
    cohort = rows.sample_rows(len(dataset), SWEEP_ROWS, 2)
    expected = sweep_field(library["bundle"].model, dataset, cohort, "city", top_k=5, grid_points=5)
    sweep = table(sections[0], "sweep")
    pd.testing.assert_frame_equal(
        sweep, expected.to_frame().drop(columns=["numeric_value"]), check_exact=False, rtol=1e-6
    )
    record = sections[0]["provenance"]
    assert record["method"] == "field sweep"
    assert record["output_space"] == "probability"
    assert record["parameters"] == {
        "field": "city",
        "kind": "categorical",
        "top_k": 5,
        "sort": "partial_dependence",
        "cohort_rows": SWEEP_ROWS,
        "cohort_seed": 2,
    }


# --- every button of the other pages ---------------------------------------------------------------

ADD_SUFFIX = "_add_to_report"


def click_every_add_button(app: AppTest) -> list[str]:
    """Click each "Add to report" button on the page in turn; return the chart keys, in page order.

    Each click must add exactly one section whose stored form reads back,
    with a method in its provenance and no empty table.
    """
    chart_keys = [button.key[: -len(ADD_SUFFIX)] for button in app.button if str(button.key).endswith(ADD_SUFFIX)]
    for chart_key in chart_keys:
        before = len(stored(app))
        add(app, chart_key)
        sections = stored(app)
        assert len(sections) == before + 1, f"the button under {chart_key} added {len(sections) - before} sections"
        section = ReportSection.from_dict(sections[-1])
        assert section.provenance["method"], f"no method in the provenance of {chart_key}"
        assert section.tables, f"no table behind {chart_key}"
        for name, frame in section.tables.items():
            assert len(frame) > 0, f"table {name} of {chart_key} is empty"
    return chart_keys


@pytest.fixture
def probe_env(monkeypatch, probe_models_dir, tiny_data_dir):
    yield from point_app_at(monkeypatch, probe_models_dir, tiny_data_dir)


def open_probe_page(page: str, architecture: str, probe_models_dir) -> AppTest:
    app = start(gates_cohort_rows=200, attention_cohort_rows=200, intrinsic_rows=10)
    app.sidebar.selectbox(key="bundle_choice").set_value(str(probe_models_dir / bundle_name(architecture))).run()
    go_to(app, PROBE_PAGES[page])
    return app


@pytest.mark.parametrize(
    ("page", "architecture", "expected"),
    [
        (
            "gates",
            "masknet",
            ["gates_cohort_heatmap", "gates_ranking", "gates_histogram", "gates_sample_0", "gates_sample_1"],
        ),
        ("attention", "autoint+", ["attention_row_map", "attention_cohort_map"]),
        ("intrinsic", "fm", ["intrinsic_maps", "intrinsic_per_row"]),
    ],
)
def test_probe_page_buttons_add_sections(probe_env, probe_models_dir, page, architecture, expected):
    app = open_probe_page(page, architecture, probe_models_dir)
    if page == "intrinsic":
        app.button(key="intrinsic_submit").click().run()

    assert sorted(click_every_add_button(app)) == sorted(expected)
    records = [section["provenance"] for section in stored(app)]
    assert {record["bundle_name"] for record in records} == {bundle_name(architecture)}
    assert all(record["method"].startswith("model probe") for record in records)


def test_gates_heatmap_table_is_the_cohort_mean(probe_env, probe_models_dir):
    app = open_probe_page("gates", "masknet", probe_models_dir)
    add(app, "gates_cohort_heatmap")

    section = stored(app)[0]
    heatmap = plotly_specs(app)["gates_cohort_heatmap"]["data"][0]
    values = table(section, "cohort_mean")
    assert list(values["line"]) == heatmap["y"]
    assert list(values.columns[1:]) == heatmap["x"]
    np.testing.assert_array_equal(values[heatmap["x"]].to_numpy(), array(heatmap["z"]))
    parameters = section["provenance"]["parameters"]
    assert parameters["probe"] == app.selectbox(key="gates_probe").value
    assert parameters["aggregation"] == "mean"
    assert parameters["cohort_rows"] == 200


@pytest.fixture(scope="module")
def sequence_bundles(tmp_path_factory):
    return build_sequence_bundles(tmp_path_factory.mktemp("sequence"), architectures=("din",))


@pytest.fixture
def sequence_env(monkeypatch, sequence_bundles):
    yield from point_app_at(monkeypatch, sequence_bundles.models_dir, sequence_bundles.data_dir)


def test_sequence_buttons_add_sections(sequence_env, sequence_bundles):
    # The Attention page opens on a random row and draws no strip for an empty history, so pick a row with one.
    histories = pd.read_parquet(sequence_bundles.test_path)["history_items"].fillna("")
    row_with_history = int(np.flatnonzero(histories.str.len().to_numpy() > 0)[0])
    app = start(attention_cohort_rows=100, attention_row=row_with_history)
    app.sidebar.selectbox(key="bundle_choice").set_value(str(sequence_bundles.bundle("din"))).run()
    go_to(app, PROBE_PAGES["attention"])
    assert click_every_add_button(app) == ["attention_strip", "attention_by_position", "attention_by_item"]

    go_to(app, PAGES["explorer"])
    app.number_input(key="explorer_row").set_value(3).run()
    app.selectbox(key="sequence_action").set_value("drop_top_k").run()
    app.button(key="sequence_apply").click().run()
    assert not app.exception
    assert errors(app) == []
    assert click_every_add_button(app) == ["explorer_waterfall", "sequence_strip", "sequence_edit_deltas"]

    strip = ReportSection.from_dict(stored(app)[4])
    assert strip.provenance["parameters"]["row"] == 3
    assert strip.provenance["method"] == "auto: exact_shapley"
    edits = ReportSection.from_dict(stored(app)[5]).tables["edits"]
    assert list(edits["number"]) == [1]


def test_counterfactual_buttons_add_sections(app_env, library):
    city = library["bundle"].schema["city"]
    own = library["dataset"].raw_values([7])["city"].iloc[0]
    other = next(value for value in city.vocabulary.values if value != own)
    app = start(
        cf_row=7,
        cf_field_city=other,
        cf_goal_kind="rank_top",
        cf_goal_value=20.0,
        cf_time_limit=0.0,
        cf_cohort_rows=300,
        cf_faith_rows=8,
        cf_faith_random=4,
        cf_faith_perturbations=20,
        cf_faith_groups=GROUPS_PATH.read_text(encoding="utf-8"),
    )
    go_to(app, COUNTERFACTUALS_PAGE)
    app.button(key="cf_search_submit").click().run()
    app.button(key="cf_faith_submit").click().run()
    assert not app.exception
    assert errors(app) == []

    keys = click_every_add_button(app)
    always = {"cf_attribution_comparison", "cf_sweep_chart", "cf_deletion_chart", "cf_insertion_chart", "cf_auc_chart"}
    assert always <= set(keys)
    assert {"cf_counterfactuals_chart", "cf_single_changes_chart"} & set(keys)
    by_key = dict(zip(keys, stored(app), strict=True))
    what_if = by_key["cf_attribution_comparison"]["provenance"]
    assert what_if["parameters"]["changed_fields"] == ["city"]
    assert what_if["parameters"]["row"] == 7
    faithfulness = by_key["cf_auc_chart"]["provenance"]
    assert faithfulness["method"] == "faithfulness: exact_shapley, integrated_gradients"
    assert faithfulness["parameters"]["n_rows"] == 8
    deletion = table(by_key["cf_deletion_chart"], "deletion_curves")
    assert set(deletion["mode"]) == {"deletion"}
