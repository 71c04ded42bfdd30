"""A bundle trained on real Frappe data opens in the app with raw field values on every page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from helpers import frappe_run  # noqa: F401  (session fixture)
from streamlit.testing.v1 import AppTest

from workbench.app import sources
from workbench.data import read_feature_map

pytestmark = pytest.mark.frappe

APP_PATH = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT_S = 120
WEATHER_VALUES = {"sunny", "cloudy", "rainy", "unknown", "foggy", "stormy", "snowy", "drizzle", "sleet"}


@pytest.fixture
def frappe_app_env(monkeypatch, frappe_run):  # noqa: F811
    monkeypatch.setenv(sources.MODELS_DIR_ENV, str(frappe_run.bundle.parent))
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(frappe_run.data))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield frappe_run
    st.cache_data.clear()
    st.cache_resource.clear()


def _open(page: str | None) -> AppTest:
    app = AppTest.from_file(APP_PATH, default_timeout=TIMEOUT_S)
    app.session_state["importance_rows"] = 200
    app.run()
    if page is not None:
        app.switch_page(page)
        app.run()
    return app


def _spec(app: AppTest, key: str) -> dict:
    for chart in app.get("plotly_chart"):
        if chart.proto.id.endswith(key):
            return json.loads(chart.proto.spec)
    msg = f"no chart with key {key!r}"
    raise AssertionError(msg)


def test_frappe_overview_lists_fields(frappe_app_env):
    app = _open(None)

    assert not app.exception
    assert not app.error
    page_text = " ".join(str(frame.value.to_csv()) for frame in app.dataframe)
    for field in ("user", "item", "weather", "city"):
        assert field in page_text


def test_frappe_importance_shows_raw_values(frappe_app_env):
    raw_weather = {value for field, value in read_feature_map(frappe_app_env.feature_map).values() if field == "weather"}

    app = _open("workbench/app/pages/importance.py")

    assert not app.exception
    assert not app.error
    beeswarm = _spec(app, "importance_beeswarm")
    hover = json.dumps(beeswarm["data"])
    assert any(f"weather = {value}" in hover for value in raw_weather)


def test_frappe_explorer_waterfall_has_raw_values(frappe_app_env):
    app = _open("workbench/app/pages/explorer.py")

    assert not app.exception
    assert not app.error
    waterfall = _spec(app, "explorer_waterfall")
    labels = " ".join(map(str, waterfall["data"][0]["y"] + waterfall["data"][0].get("x", [])))
    assert any(f"weather = {value}" in labels for value in WEATHER_VALUES)
    assert "daytime = " in labels
