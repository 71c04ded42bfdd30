"""``workbench report`` and the Model comparison page: the same inputs give the same numbers in both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import REPO_ROOT, point_app_at, run_cli
from streamlit.testing.v1 import AppTest

from workbench import cli_report
from workbench.bundle import load_bundle
from workbench.cohorts import Cohort, CohortError
from workbench.compare import attribution_agreement
from workbench.data import load_dataset, sample_rows
from workbench.explain import explain
from workbench.metrics import prediction_metrics
from workbench.model_comparison import align_models, load_models
from workbench.training import predict_logits

DEEPFM = REPO_ROOT / "models" / "ad_clicks_deepfm"
LR = REPO_ROOT / "models" / "ad_clicks_lr"
MAX_ROWS = 1_500
EXPLAIN_ROWS = 30
PAIR_ROWS = 5
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def report_run(tmp_path_factory, tiny_data_dir):
    """One ``workbench report`` run on DeepFM and LR with its tables written next to the HTML."""
    out = tmp_path_factory.mktemp("report")
    argv = [
        "report",
        "--models", str(DEEPFM), str(LR),
        "--data", str(tiny_data_dir / "ad_clicks" / "test.parquet"),
        "--max-rows", str(MAX_ROWS),
        "--rows", str(EXPLAIN_ROWS),
        "--interaction-rows", str(PAIR_ROWS),
        "--out", str(out / "report.html"),
        "--tables", str(out / "tables"),
        "--table-format", "csv",
    ]  # fmt: skip
    status, stdout, stderr = run_cli(argv)
    assert status == 0, stderr
    return out, json.loads(stdout)


def _table(out: Path, suffix: str) -> pd.DataFrame:
    matches = sorted((out / "tables").glob(f"*__{suffix}.csv"))
    assert matches, f"no table *__{suffix}.csv in {sorted(p.name for p in (out / 'tables').iterdir())}"
    return pd.read_csv(matches[0])


def test_report_lists_default_sections(report_run):
    out, summary = report_run
    titles = summary["sections"]
    assert titles[:2] == ["Models", "Metrics and calibration"]
    assert "Field importance of DeepFM · ad clicks" in titles
    assert "Pair interactions of LR · ad clicks" in titles
    assert "Probe first_order_weights (field weight) of DeepFM · ad clicks" in titles
    assert "Pair interaction difference: DeepFM · ad clicks − LR · ad clicks" in titles
    assert summary["rows"] == MAX_ROWS
    html = (out / "report.html").read_text(encoding="utf-8")
    for title in titles:
        assert title in html
    provenance = json.loads((out / "tables" / "provenance.json").read_text())
    assert len(provenance) == len(titles)


def test_report_metrics_equal_direct_computation(report_run, tiny_data_dir):
    out, _ = report_run
    metrics = _table(out, "metrics").set_index("model")
    for path, name in ((DEEPFM, "DeepFM · ad clicks"), (LR, "LR · ad clicks")):
        bundle = load_bundle(path)
        dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema, max_rows=MAX_ROWS)
        users = dataset.raw["user_id"].astype(str).to_numpy()
        expected = prediction_metrics(dataset.labels, predict_logits(bundle.model, dataset), groups=users)
        for key in ("auc", "gauc", "logloss", "ece", "mean_predicted"):
            assert metrics.loc[name, key] == pytest.approx(expected[key], rel=1e-9), key


def test_report_importance_and_agreement_equal_library(report_run, tiny_data_dir):
    out, _ = report_run
    rows = sample_rows(MAX_ROWS, EXPLAIN_ROWS, 0)
    attributions = {}
    for path in (DEEPFM, LR):
        bundle = load_bundle(path)
        dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema, max_rows=MAX_ROWS)
        attributions[bundle.name] = explain(bundle.model, dataset, rows, method="exact_shapley")
    importance = _table(out, "importance").set_index("field")["mean_abs_attribution"]
    expected = attributions["DeepFM · ad clicks"].mean_abs()
    assert importance.reindex(expected.index).to_numpy() == pytest.approx(expected.to_numpy(), abs=1e-9)
    agreement = attribution_agreement(
        attributions["DeepFM · ad clicks"], attributions["LR · ad clicks"], names=("DeepFM · ad clicks", "LR · ad clicks")
    )
    samples = _table(out, "samples")
    assert samples["row"].tolist() == rows.tolist()
    assert samples["spearman"].to_numpy() == pytest.approx(agreement.spearman, abs=1e-9, nan_ok=True)
    # LR has no pair interactions, so its SII map is zero and the difference is DeepFM's own map.
    difference = _table(out, "difference").set_index("player")
    assert (difference.to_numpy() >= -1e-9).all()


def test_cohort_rows_are_chosen_with_first_model(tiny_data_dir):
    cohort = Cohort(name="tablet clicks", values={"device": ["tablet"]}, label=1)
    models = load_models([DEEPFM, LR], tiny_data_dir / "ad_clicks" / "test.parquet", max_rows=MAX_ROWS, cohort=cohort)
    raw = pd.read_parquet(tiny_data_dir / "ad_clicks" / "test.parquet").iloc[:MAX_ROWS]
    expected = np.flatnonzero((raw["device"] == "tablet").to_numpy() & (raw["click"] == 1).to_numpy())
    for model in models:
        assert model.dataset.source_rows.tolist() == expected.tolist()
        assert len(model.logits) == expected.size
    assert models[0].name != models[1].name


def test_align_models_rejects_bad_input(tiny_data_dir):
    bundle = load_bundle(DEEPFM)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema, max_rows=100)
    short = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema, max_rows=50)
    logits = predict_logits(bundle.model, dataset)
    with pytest.raises(ValueError, match="no model given"):
        align_models([], [], [])
    with pytest.raises(ValueError, match="differ in length"):
        align_models([bundle, bundle], [dataset, short], [logits, logits[:50]])
    models = align_models([bundle, bundle], [dataset, dataset], [logits, logits])
    assert [m.name for m in models] == ["DeepFM · ad clicks", "DeepFM · ad clicks (2)"]
    with pytest.raises(CohortError, match="matches none"):
        align_models([bundle, bundle], [dataset, dataset], [logits, logits], cohort=Cohort(name="x", ranges={"bid_price": (1e6, 1e7)}))


def test_report_command_errors(tmp_path, tiny_data_dir, monkeypatch):
    data = str(tiny_data_dir / "ad_clicks" / "test.parquet")
    base = ["report", "--models", str(DEEPFM), str(LR), "--data", data, "--rows", "10"]
    status, _, stderr = run_cli([*base, "--out", str(tmp_path / "report.txt")])
    assert status == 2
    assert "--out must end in .html" in stderr
    existing = tmp_path / "old.html"
    existing.write_text("keep me")
    status, _, stderr = run_cli([*base, "--out", str(existing)])
    assert status == 2
    assert "already exists" in stderr
    assert existing.read_text() == "keep me"
    status, _, stderr = run_cli([*base, "--out", str(tmp_path / "a.html"), "--cohort", '{"name": "x", "label": 3}'])
    assert status == 2
    assert "label must be 0, 1 or None" in stderr
    status, _, stderr = run_cli([*base, "--out", str(tmp_path / "b.html"), "--cohort", str(tmp_path / "none.json")])
    assert status == 2
    assert "neither JSON text nor an existing JSON file" in stderr
    monkeypatch.setattr(cli_report, "chromium_path", lambda: None)
    status, _, stderr = run_cli([*base, "--out", str(tmp_path / "c.html"), "--pdf"])
    assert status == 2
    assert "--pdf needs Chromium" in stderr
    assert not (tmp_path / "c.html").exists()
    status, stdout, stderr = run_cli(
        ["report", "--models", str(DEEPFM), "--data", data, "--rows", "10", "--interaction-rows", "5", "--out", str(tmp_path / "d.html")]
    )
    assert status == 0, stderr
    titles = json.loads(stdout)["sections"]
    assert titles[:3] == ["Models", "Metrics and calibration", "Field importance of DeepFM · ad clicks"]
    assert not any(" vs " in title for title in titles)


def test_report_names_bundle_that_cannot_read_data(tmp_path, tiny_data_dir):
    frame = pd.read_parquet(tiny_data_dir / "ad_clicks" / "test.parquet").drop(columns=["os"])
    data = tmp_path / "without_os.csv"
    frame.to_csv(data, index=False)
    status, _, stderr = run_cli(
        ["report", "--models", str(DEEPFM), str(LR), "--data", str(data), "--out", str(tmp_path / "r.html")]
    )
    assert status == 2
    assert "bundle 'DeepFM · ad clicks'" in stderr
    assert "'os'" in stderr
    assert "leave this bundle out or use its data" in stderr


@pytest.fixture
def comparison_app(monkeypatch, tmp_path, tiny_data_dir):
    models_dir = tmp_path / "models"
    for path in (DEEPFM, LR):
        shutil.copytree(path, models_dir / path.name)
    yield from point_app_at(monkeypatch, models_dir, tiny_data_dir)


def test_comparison_page_equals_report(comparison_app, report_run, tiny_data_dir, tmp_path):
    out, _ = report_run
    app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S)
    app.session_state["max_rows"] = MAX_ROWS
    app.session_state["bundle_choice"] = str((tmp_path / "models" / DEEPFM.name).resolve())
    app.session_state["data_typed"] = str(tiny_data_dir / "ad_clicks" / "test.parquet")
    app.run()
    app.switch_page("workbench/app/pages/compare.py")
    app.run()
    app.multiselect(key="compare_bundles").set_value([str((tmp_path / "models" / LR.name).resolve())])
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert not app.error, [e.value for e in app.error]
    shown = app.dataframe[0].value.set_index("model")
    reported = _table(out, "metrics").set_index("model")
    for column in ("auc", "gauc", "logloss", "ece"):
        assert shown[column].to_numpy() == pytest.approx(reported.loc[shown.index, column].to_numpy(), rel=1e-9)

    app.number_input(key="compare_rows").set_value(EXPLAIN_ROWS)
    app.number_input(key="compare_pair_rows").set_value(PAIR_ROWS)
    app.button(key="compare_submit").click()
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    app.button(key="compare_scatter_LR · ad clicks_add_to_report").click()
    app.run()
    app.button(key="compare_pairs_LR · ad clicks_add_to_report").click()
    app.run()
    basket = app.session_state["report_basket"]
    assert [section["title"] for section in basket] == [
        "Mean attribution per field: DeepFM · ad clicks vs LR · ad clicks",
        "Pair interaction difference: DeepFM · ad clicks − LR · ad clicks",
    ]
    from workbench.report import ReportSection

    fields = ReportSection.from_dict(basket[0]).tables["fields"]
    reported_fields = _table(out, "fields")
    assert fields["field"].tolist() == reported_fields["field"].tolist()
    assert fields.iloc[:, 1].to_numpy() == pytest.approx(reported_fields.iloc[:, 1].to_numpy(), abs=1e-9)
    difference = ReportSection.from_dict(basket[1]).tables["difference"].set_index("player")
    reported_difference = _table(out, "difference").set_index("player")
    assert difference.to_numpy() == pytest.approx(reported_difference.loc[difference.index, difference.columns].to_numpy(), abs=1e-9)
