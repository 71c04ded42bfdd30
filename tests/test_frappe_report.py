"""Two Frappe bundles (DCNv2 and DeepFM) compared in the app and in an exported HTML and PDF report.

The DCNv2 comes from the session's ``frappe_run`` fixture; a DeepFM is trained
here on the same rows with the same settings. The report must open offline in
Chromium with every figure drawn, its PDF must show figures, and the page's
metrics must equal the report's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import frappe_run, point_app_at, run_cli, single_torch_thread  # noqa: F401 (fixture)
from streamlit.testing.v1 import AppTest

from workbench.report import chromium_path

pytestmark = pytest.mark.frappe

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPLAIN_ROWS = 100
PAIR_ROWS = 20
TIMEOUT_S = 300
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def frappe_models(frappe_run, tmp_path_factory) -> Path:
    """A models folder with the session's Frappe DCNv2 and a DeepFM trained on the same rows."""
    folder = tmp_path_factory.mktemp("frappe_models")
    shutil.copytree(frappe_run.bundle, folder / "dcnv2")
    data = frappe_run.data
    argv = [
        "train", "--arch", "deepfm",
        "--train", str(data / "train.libfm"),
        "--valid", str(data / "valid.libfm"),
        "--test", str(data / "test.libfm"),
        "--out", str(folder / "deepfm"),
        "--epochs", "2", "--batch-size", "512", "--hidden-units", "200,200",
        "--seed", "2024", "--quiet",
    ]  # fmt: skip
    with single_torch_thread():
        status, _, stderr = run_cli(argv)
    assert status == 0, stderr
    return folder


@pytest.fixture(scope="module")
def frappe_report(frappe_run, frappe_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("frappe_report")
    argv = [
        "report",
        "--models", str(frappe_models / "dcnv2"), str(frappe_models / "deepfm"),
        "--data", str(frappe_run.data / "test.libfm"),
        "--rows", str(EXPLAIN_ROWS),
        "--interaction-rows", str(PAIR_ROWS),
        "--out", str(out / "report.html"),
        "--tables", str(out / "tables"),
        "--table-format", "csv",
    ]  # fmt: skip
    if chromium_path() is not None:
        argv.append("--pdf")
    with single_torch_thread():
        status, stdout, stderr = run_cli(argv)
    assert status == 0, stderr
    return out, json.loads(stdout)


def test_frappe_report_sections(frappe_report):
    _, summary = frappe_report
    titles = summary["sections"]
    assert "Metrics and calibration" in titles
    assert any(title.startswith("Pair interactions of") for title in titles)
    assert any(title.startswith("Pair interaction difference") for title in titles)
    assert any(title.startswith("Attribution agreement per sample") for title in titles)
    assert summary["rows"] == 5_000


@pytest.mark.browser
def test_frappe_report_renders_offline(frappe_report):
    if chromium_path() is None:
        pytest.skip("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    out, summary = frappe_report
    html = (out / "report.html").read_text(encoding="utf-8")
    n_figures = html.count('class="figure"')
    assert n_figures >= len(summary["sections"]) - 1  # every section but the models table has a figure
    requested: list[str] = []
    errors: list[str] = []

    def route(request_route):
        if request_route.request.url.startswith("file://"):
            request_route.continue_()
        else:
            requested.append(request_route.request.url)
            request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            context.route("**/*", route)
            context.set_offline(True)
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto((out / "report.html").resolve().as_uri())
            page.wait_for_function(
                "[...document.querySelectorAll('.js-plotly-plot')].length > 0"
                " && [...document.querySelectorAll('.js-plotly-plot')].every(div => div.querySelector('svg.main-svg'))",
                timeout=60_000,
            )
            drawn = page.evaluate(
                "[...document.querySelectorAll('.js-plotly-plot')]"
                ".map(div => div.querySelectorAll('svg.main-svg .trace, svg.main-svg .hm, svg.main-svg image').length)"
            )
        finally:
            browser.close()
    assert requested == []
    assert errors == []
    assert len(drawn) == n_figures
    assert all(count > 0 for count in drawn), drawn


def test_frappe_report_pdf_is_not_blank(frappe_report):
    if chromium_path() is None:
        pytest.skip("Chromium is not installed")
    pypdfium2 = pytest.importorskip("pypdfium2")
    out, _ = frappe_report
    document = pypdfium2.PdfDocument((out / "report.pdf").read_bytes())
    try:
        n_pages = len(document)
        pages = [document[i].render(scale=1, rev_byteorder=True).to_numpy()[..., :3].copy() for i in range(min(n_pages, 3))]
    finally:
        document.close()
    assert n_pages >= 3
    for number, image in enumerate(pages, start=1):
        non_white = (image.min(axis=-1) < 245).mean()
        assert non_white > 0.01, f"page {number} is almost blank ({non_white:.2%} non-white)"
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 8, f"page {number} has almost no colours"


def test_frappe_comparison_page_equals_report(monkeypatch, frappe_run, frappe_models, frappe_report):
    out, _ = frappe_report
    yield_from = point_app_at(monkeypatch, frappe_models, frappe_run.data)
    next(yield_from)
    try:
        app = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=TIMEOUT_S)
        app.session_state["bundle_choice"] = str((frappe_models / "dcnv2").resolve())
        app.session_state["data_typed"] = str(frappe_run.data / "test.libfm")
        app.run()
        app.switch_page("workbench/app/pages/compare.py")
        app.run()
        app.multiselect(key="compare_bundles").set_value([str((frappe_models / "deepfm").resolve())])
        app.run()
        assert not app.exception, [e.value for e in app.exception]
        assert not app.error, [e.value for e in app.error]
        shown = app.dataframe[0].value.set_index("model")
        reported = pd.read_csv(next((out / "tables").glob("*__metrics.csv"))).set_index("model")
        assert list(shown.index) == list(reported.index)
        for column in ("auc", "gauc", "logloss", "ece"):
            assert shown[column].to_numpy() == pytest.approx(reported[column].to_numpy(), rel=1e-9)
        assert (shown["auc"] > 0.9).all()
    finally:
        next(yield_from, None)
