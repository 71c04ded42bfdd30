"""The Cohorts & metrics page, the sidebar cohort on other pages, the Report page and the explorer's second model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import REPO_ROOT, point_app_at
from streamlit.testing.v1 import AppTest

from workbench.bundle import load_bundle
from workbench.cohorts import Cohort, select_rows
from workbench.data import load_dataset
from workbench.explain import integrated_gradients
from workbench.metrics import calibration_table, prediction_metrics, sigmoid
from workbench.report import ReportSection
from workbench.training import predict_logits

TIMEOUT_S = 120
LR = REPO_ROOT / "models" / "ad_clicks_lr"


@pytest.fixture
def app_env(monkeypatch, tmp_path, tiny_models_dir, tiny_data_dir):
    models_dir = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models_dir)
    shutil.copytree(LR, models_dir / "lr")
    yield from point_app_at(monkeypatch, models_dir, tiny_data_dir)


@pytest.fixture(scope="module")
def tiny(tiny_bundle_path, tiny_data_dir):
    bundle = load_bundle(tiny_bundle_path)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema)
    return bundle, dataset, predict_logits(bundle.model, dataset)


def open_app(tiny_bundle_path, tiny_data_dir, page: str) -> AppTest:
    from workbench.app import sources

    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S)
    # The app lists the copies in the test's models folder, so choose the copy of the tiny bundle.
    app.session_state["bundle_choice"] = str(sources.models_dir().resolve() / tiny_bundle_path.name)
    app.session_state["data_typed"] = str(tiny_data_dir / "ad_clicks" / "test.parquet")
    app.run()
    app.switch_page(page)
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def metric(app: AppTest, label: str) -> str:
    return next(m.value for m in app.metric if m.label == label)


def test_metrics_of_whole_file(app_env, tiny_bundle_path, tiny_data_dir, tiny):
    _, dataset, logits = tiny
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/cohorts.py")
    users = dataset.raw["user_id"].astype(str).to_numpy()
    expected = prediction_metrics(dataset.labels, logits, groups=users)
    assert metric(app, "AUC") == f"{expected['auc']:.4f}"
    assert metric(app, "gAUC") == f"{expected['gauc']:.4f}"
    assert metric(app, "ECE") == f"{expected['ece']:.4f}"
    shown = app.session_state["metrics_group_field"]
    assert shown == "user_id"


def test_saved_cohort_restricts_other_pages(app_env, tiny_bundle_path, tiny_data_dir, tiny):
    _, dataset, logits = tiny
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/cohorts.py")
    app.text_input(key="cohort_name").input("mobile clicks")
    app.multiselect(key="cohort_value_fields").set_value(["device"])
    app.run()
    app.multiselect(key="cohort_values_device").set_value(["mobile"])
    app.radio(key="cohort_label").set_value("click")
    app.button(key="cohort_save").click()
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.session_state["cohort_choice"] == "mobile clicks"

    cohort = Cohort(name="mobile clicks", values={"device": ["mobile"]}, label=1)
    rows = select_rows(cohort, dataset)
    expected = prediction_metrics(dataset.labels[rows], logits[rows], groups=dataset.raw["user_id"].astype(str).to_numpy()[rows])
    assert metric(app, "Log loss") == f"{expected['logloss']:.4f}"
    assert metric(app, "AUC") == "n/a"  # one class only
    saved = app.dataframe[-1].value
    assert saved.set_index("cohort").loc["mobile clicks", "rows"] == rows.size

    app.switch_page("workbench/app/pages/explorer.py")
    app.session_state["explorer_row"] = 3
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert f"{rows.size:,} rows · cohort **mobile clicks**" in app.caption[0].value
    assert metric(app, "Label") == "click"
    bundle, _, _ = tiny
    attribution = integrated_gradients(bundle.model, dataset, rows[[3]])
    assert metric(app, "Predicted CTR") == f"{sigmoid(float(attribution.predictions[0])):.2%}".replace("%", " %")


def test_invalid_cohort_is_not_saved(app_env, tiny_bundle_path, tiny_data_dir):
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/cohorts.py")
    app.text_input(key="cohort_name").input("all rows")
    app.button(key="cohort_save").click()
    app.run()
    assert "reserved" in app.error[0].value
    app.text_input(key="cohort_name").input("impossible")
    app.multiselect(key="cohort_range_fields").set_value(["bid_price"])
    app.run()
    low, high = app.slider(key="cohort_range_bid_price").value
    app.slider(key="cohort_range_bid_price").set_value((high, high))
    app.radio(key="cohort_label").set_value("no click")
    app.radio(key="cohort_correct").set_value("correct")
    app.number_input(key="cohort_threshold").set_value(0.001)
    app.button(key="cohort_save").click()
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("matches none" in e.value for e in app.error)
    assert "workbench_cohorts" not in app.session_state or "impossible" not in app.session_state["workbench_cohorts"]


def test_cohort_file_upload_rejects_bad_json(app_env, tiny_bundle_path, tiny_data_dir):
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/cohorts.py")
    text = json.dumps([{"name": "tablets", "values": {"device": ["tablet"]}}])
    app.session_state["workbench_cohorts"] = {"tablets": json.loads(text)[0]}
    app.run()
    assert "tablets" in app.selectbox(key="cohort_choice").options
    assert app.dataframe[-1].value.set_index("cohort").loc["tablets", "conditions"] == "device ∈ {tablet}"


def test_reliability_section_goes_to_report(app_env, tiny_bundle_path, tiny_data_dir, tiny):
    _, dataset, logits = tiny
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/cohorts.py")
    app.button(key="metrics_reliability_add_to_report").click()
    app.run()
    sections = app.session_state["report_basket"]
    assert len(sections) == 1
    table = ReportSection.from_dict(sections[0]).tables["reliability"]
    expected = calibration_table(dataset.labels, sigmoid(logits))
    assert table["count"].tolist() == expected["count"].tolist()
    assert table["observed_rate"].to_numpy() == pytest.approx(expected["observed_rate"].to_numpy())

    app.switch_page("workbench/app/pages/report.py")
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any(m.value == f"**1. {sections[0]['title']}**" for m in app.markdown)
    assert [b.proto.label for b in app.get("download_button")] == ["Download HTML", "Download tables (zip)"]


def test_empty_report_page_explains(app_env, tiny_bundle_path, tiny_data_dir):
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/report.py")
    assert "The report is empty" in app.info[0].value


def test_explorer_shows_second_model(app_env, tiny_bundle_path, tiny_data_dir, tmp_path):
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/explorer.py")
    lr_path = str((tmp_path / "models" / "lr").resolve())
    app.selectbox(key="explorer_compare_bundle").set_value(lr_path)
    app.session_state["explorer_row"] = 5
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    lr = load_bundle(LR)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", lr.schema)
    ctr = sigmoid(float(predict_logits(lr.model, dataset)[5]))
    assert any(m.value == f"**LR · ad clicks**: predicted CTR {ctr:.2%}".replace("%", " %") for m in app.markdown)
    assert len(app.get("plotly_chart")) == 2
    assert np.isfinite(ctr)


def test_open_in_explorer_keeps_sidebar_model(app_env, tiny_bundle_path, tiny_data_dir):
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/compare.py")
    app.number_input(key="max_rows").set_value(1_500)
    app.run()
    from workbench.app import sources

    app.multiselect(key="compare_bundles").set_value([str(sources.models_dir().resolve() / "lr")])
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    app.number_input(key="compare_rows").set_value(10)
    app.number_input(key="compare_pair_rows").set_value(5)
    app.button(key="compare_submit").click()
    app.run()
    # Both waterfalls of the disagreement explorer can go into the report, each with its own model's provenance.
    add_lr = next(b.key for b in app.button if str(b.key).startswith("compare_waterfall_") and "_LR · ad clicks_add" in str(b.key))
    app.button(key=add_lr).click()
    app.run()
    assert [section["provenance"]["bundle_name"] for section in app.session_state["report_basket"]] == ["LR · ad clicks"]
    open_button = next(b.key for b in app.button if str(b.key).startswith("compare_open_"))
    app.button(key=open_button).click()
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert app.title[0].value == "Sample explorer"
    # The sidebar keeps its bundle and row limit across the page switch.
    assert app.caption[0].value.startswith("Bundle **tiny-deepfm**")
    assert "1,500 rows" in app.caption[0].value
    assert any(m.value.startswith("**LR · ad clicks**: predicted CTR") for m in app.markdown)


def test_field_without_values_is_rejected(app_env, tiny_bundle_path, tiny_data_dir):
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/cohorts.py")
    app.text_input(key="cohort_name").input("mobile")
    app.multiselect(key="cohort_value_fields").set_value(["device"])
    app.run()
    app.button(key="cohort_save").click()
    app.run()
    assert any("pick at least one value of device" in e.value for e in app.error)
    assert app.session_state["cohort_choice"] == "all rows"


def test_bad_cohort_keeps_editor_usable(app_env, tiny_bundle_path, tiny_data_dir):
    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/cohorts.py")
    app.session_state["workbench_cohorts"] = {"typo": {"name": "typo", "values": {"devize": ["mobile"]}}}
    app.session_state["cohort_pending_choice"] = "typo"
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert any("unknown field 'devize'" in e.value for e in app.error)
    # The editor and the list of saved cohorts still show, so the cohort can be deleted.
    assert app.button(key="cohort_save")
    app.selectbox(key="cohort_delete_choice").set_value("typo")
    app.run()
    app.button(key="cohort_delete").click()
    app.run()
    assert app.session_state["cohort_choice"] == "all rows"
    assert not app.error


def test_comparison_survives_a_page_visit(app_env, tiny_bundle_path, tiny_data_dir):
    from workbench.app import sources

    app = open_app(tiny_bundle_path, tiny_data_dir, "workbench/app/pages/compare.py")
    lr_path = str(sources.models_dir().resolve() / "lr")
    app.multiselect(key="compare_bundles").set_value([lr_path])
    app.run()
    app.switch_page("workbench/app/pages/overview.py")
    app.run()
    app.switch_page("workbench/app/pages/compare.py")
    app.run()
    assert app.multiselect(key="compare_bundles").value == [lr_path]
