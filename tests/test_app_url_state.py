"""The sidebar's selection and the Sample explorer's row in the URL query string, through ``AppTest``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import point_app_at
from workbench import figures
from workbench.app import sources, url_state
from workbench.bundle import load_bundle
from workbench.cohorts import Cohort
from workbench.data import load_dataset
from workbench.training import predict_logits

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
EXPLORER_PAGE = "workbench/app/pages/explorer.py"
TIMEOUT_S = 60
MOBILE_COHORT = '{"name":"mobile","values":{"device":["mobile"]}}'


@pytest.fixture
def app_env(monkeypatch, tiny_models_dir, tiny_data_dir):
    """Point the app at the tiny bundle and data folders and start from empty caches."""
    yield from point_app_at(monkeypatch, tiny_models_dir, tiny_data_dir)


@pytest.fixture(scope="module")
def tiny_logits(tiny_bundle_path, tiny_data_dir):
    """The tiny model's logits on every row of the tiny test file."""
    bundle = load_bundle(tiny_bundle_path)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema)
    return predict_logits(bundle.model, dataset)


def open_url(page: str | None = None, **params: str) -> AppTest:
    """Run the app as a browser opening a URL with ``params`` as query string, then switch to ``page``."""
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    for name, value in params.items():
        app.query_params[name] = value
    app.run()
    if page is not None:
        app.switch_page(page)
        app.run()
    return app


def data_caption(app: AppTest) -> str:
    captions = [c.value for c in app.caption if c.value.startswith("Bundle **")]
    assert len(captions) == 1, f"expected one data caption; captions: {[c.value for c in app.caption]}"
    return captions[0]


def metric(app: AppTest, label: str) -> str:
    values = [m.value for m in app.metric if m.label == label]
    assert values, f"no metric labelled {label!r}; metrics: {[m.label for m in app.metric]}"
    return values[0]


def link_params(app: AppTest) -> dict[str, list[str]]:
    """The query parameters of the link shown under "Copy link to this view"."""
    codes = [c.value for c in app.sidebar.code]
    assert len(codes) == 1, f"expected one link in the sidebar; code blocks: {codes}"
    assert codes[0].startswith("?")  # AppTest has no browser URL, so only the query string is shown
    return parse_qs(codes[0][1:])


# --- a full link ------------------------------------------------------------------------------------


def test_url_opens_same_view(app_env, tiny_bundle_path, tiny_data_dir, tiny_logits):
    data_path = tiny_data_dir / "ad_clicks" / "test.parquet"
    app = open_url(
        EXPLORER_PAGE, bundle=str(tiny_bundle_path), data=str(data_path), rows="500", cohort=MOBILE_COHORT, row="7"
    )

    assert not app.exception
    assert [w.value for w in app.warning] == []
    assert [e.value for e in app.error] == []
    assert app.sidebar.selectbox(key="bundle_choice").value == str(tiny_bundle_path.resolve())
    assert app.sidebar.text_input(key="bundle_typed").value == ""
    assert app.sidebar.selectbox(key="data_choice").value == str(data_path.resolve())
    assert app.sidebar.text_input(key="data_typed").value == ""
    assert app.sidebar.number_input(key="max_rows").value == 500
    assert app.sidebar.selectbox(key="cohort_choice").value == "mobile"

    # The cohort contains the mobile rows among the first 500 rows of the file, and row 7 is its eighth one.
    head = pd.read_parquet(data_path).head(500)
    mobile_rows = head.index[head["device"] == "mobile"].to_numpy()
    assert f"{len(mobile_rows):,} rows · cohort **mobile** (device ∈ {{mobile}})" in data_caption(app)
    assert app.number_input(key="explorer_row").value == 7
    assert metric(app, "Row") == "7"
    expected_ctr = figures.format_ctr(figures.sigmoid(tiny_logits[mobile_rows[7]]))
    assert metric(app, "Predicted CTR") == expected_ctr


def test_url_rows_limit_caption(app_env, tiny_bundle_path, tiny_data_dir):
    data_path = tiny_data_dir / "ad_clicks" / "test.parquet"
    app = open_url(EXPLORER_PAGE, bundle=str(tiny_bundle_path), data=str(data_path), rows="500")

    assert not app.exception
    assert data_caption(app).endswith("data **test.parquet**, 500 rows")
    assert "cohort" not in app.query_params
    # The sidebar wrote the URL before the page drew the row widget. A link without a row opens row 0 too.
    assert "row" not in app.query_params
    app.number_input(key="explorer_row").set_value(4).run()
    assert app.query_params["row"] == "4"


def test_url_keeps_data_of_other_bundle(app_env, tiny_bundle_path, tiny_data_dir, tmp_path, monkeypatch):
    # Two bundles record the same test file. The link chooses the second bundle and another file.
    models = tmp_path / "models"
    shutil.copytree(tiny_bundle_path, models / "a-first")
    shutil.copytree(tiny_bundle_path, models / "b-second")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    other = data_dir / "other.parquet"
    pd.read_parquet(tiny_data_dir / "ad_clicks" / "test.parquet").head(300).to_parquet(other, index=False)
    monkeypatch.setenv(sources.MODELS_DIR_ENV, str(models))
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(data_dir))

    app = open_url(EXPLORER_PAGE, bundle=str(models / "b-second"), data=str(other))

    assert not app.exception
    assert app.sidebar.selectbox(key="bundle_choice").value == str((models / "b-second").resolve())
    # Without the URL's data the sidebar would start the new bundle on its recorded test file.
    assert app.sidebar.selectbox(key="data_choice").value == str(other.resolve())
    assert data_caption(app).endswith("data **other.parquet**, 300 rows")


def test_url_paths_outside_lists_are_typed(app_env, tiny_bundle_path, tiny_data_dir, tmp_path):
    bundle_copy = tmp_path / "elsewhere" / "my-bundle"
    shutil.copytree(tiny_bundle_path, bundle_copy)
    data_copy = tmp_path / "rows.parquet"
    pd.read_parquet(tiny_data_dir / "ad_clicks" / "test.parquet").head(250).to_parquet(data_copy, index=False)

    app = open_url(EXPLORER_PAGE, bundle=str(bundle_copy), data=str(data_copy))

    assert not app.exception
    assert [w.value for w in app.warning] == []
    assert app.sidebar.text_input(key="bundle_typed").value == str(bundle_copy.resolve())
    assert app.sidebar.text_input(key="data_typed").value == str(data_copy.resolve())
    assert data_caption(app).endswith("data **rows.parquet**, 250 rows")
    assert app.query_params["bundle"] == str(bundle_copy.resolve())
    assert app.query_params["data"] == str(data_copy.resolve())


# --- writing the URL --------------------------------------------------------------------------------


def test_widget_changes_update_url(app_env, tiny_bundle_path, tiny_data_dir):
    app = open_url(EXPLORER_PAGE, rows="500", row="3")
    assert app.query_params["rows"] == "500"

    app.sidebar.number_input(key="max_rows").set_value(700).run()
    assert app.query_params["rows"] == "700"
    app.number_input(key="explorer_row").set_value(11).run()
    assert app.query_params["row"] == "11"

    assert not app.exception
    # The restore ran once: the rerun kept the user's 700, not the link's 500.
    assert app.sidebar.number_input(key="max_rows").value == 700
    assert app.query_params["bundle"] == str(tiny_bundle_path.resolve())
    assert app.query_params["data"] == str((tiny_data_dir / "ad_clicks" / "test.parquet").resolve())
    assert "cohort" not in app.query_params
    assert link_params(app) == {
        "bundle": [app.query_params["bundle"]],
        "data": [app.query_params["data"]],
        "rows": ["700"],
        "row": ["11"],
    }


def test_url_without_params_writes_defaults(app_env, tiny_bundle_path):
    app = open_url()

    assert not app.exception
    assert app.query_params["bundle"] == str(tiny_bundle_path.resolve())
    assert app.query_params["rows"] == "200000"
    assert "row" not in app.query_params  # the overview has no explorer row
    assert "cohort" not in app.query_params


def test_cohort_text_is_compact_and_round_trips():
    cohort = Cohort(name="mobile", values={"device": ["mobile"]})
    scored = Cohort(name="sure", score_range=(0.8, 1.0), label=1)

    assert url_state.cohort_text(cohort) == MOBILE_COHORT
    assert url_state.cohort_text(scored) == '{"name":"sure","score_range":[0.8,1.0],"label":1}'
    assert Cohort.from_dict(json.loads(url_state.cohort_text(scored))) == scored


def test_chosen_cohort_goes_into_url(app_env):
    app = open_url(EXPLORER_PAGE, cohort='{"name":"clicked","label":1}')

    assert not app.exception
    assert app.query_params["cohort"] == '{"name":"clicked","label":1}'
    app.sidebar.selectbox(key="cohort_choice").set_value("all rows").run()
    assert "cohort" not in app.query_params


# --- bad values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("row", "abc", "must be a whole number of at least 0"),
        ("row", "-1", "must be a whole number of at least 0"),
        ("rows", "0", "must be a whole number of at least 1"),
        ("rows", "many", "must be a whole number of at least 1"),
        ("cohort", "{bad", "it is not valid JSON"),
        ("cohort", '{"name":"x","label":3}', "label must be 0, 1 or None"),
        ("cohort", '{"name":"all rows","label":1}', "reserved for the cohort without conditions"),
    ],
)
def test_bad_param_warns_and_is_ignored(app_env, tiny_bundle_path, tiny_data_dir, name, value, reason):
    app = open_url(**{name: value})

    assert not app.exception
    warnings = [w.value for w in app.warning]
    assert len(warnings) == 1
    assert f"`{name}={value}`" in warnings[0]
    assert "was ignored" in warnings[0]
    assert reason in warnings[0]

    # The defaults apply, the explorer works and the bad value is gone from the URL.
    app.switch_page(EXPLORER_PAGE)
    app.run()
    assert not app.exception
    assert [e.value for e in app.error] == []
    assert app.sidebar.selectbox(key="bundle_choice").value == str(tiny_bundle_path.resolve())
    test_file = tiny_data_dir / "ad_clicks" / "test.parquet"
    assert app.sidebar.selectbox(key="data_choice").value == str(test_file.resolve())
    assert app.sidebar.number_input(key="max_rows").value == 200_000
    assert app.sidebar.selectbox(key="cohort_choice").value == "all rows"
    assert app.number_input(key="explorer_row").value == 0
    assert metric(app, "Row") == "0"
    assert app.query_params.get(name) != value


@pytest.mark.parametrize(
    ("name", "where", "reason"),
    [
        ("bundle", "root", "is outside the folders this app may open"),
        ("data", "root", "is outside the folders this app may open"),
        ("bundle", "models", "Bundle folder not found"),
        ("data", "data", "Data file not found"),
    ],
)
def test_bad_path_param_errors_and_is_ignored(app_env, tiny_models_dir, tiny_data_dir, name, where, reason):
    folder = {"root": Path("/"), "models": tiny_models_dir, "data": tiny_data_dir}[where]
    value = str(folder / ("nonexistent" if name == "bundle" else "nonexistent.parquet"))
    app = open_url(**{name: value})

    assert not app.exception
    assert [w.value for w in app.warning] == []
    messages = [e.value for e in app.error]
    assert len(messages) == 1
    assert f"`{name}={value}` was ignored" in messages[0]
    assert reason in messages[0]
    assert "The default value is used instead." in messages[0]
    assert app.query_params.get(name) != value


def test_bad_params_warn_each(app_env, tiny_bundle_path):
    app = open_url(row="abc", cohort="{bad", bundle="/nonexistent", rows="500")

    assert not app.exception
    warnings = [w.value for w in app.warning]
    assert len(warnings) == 2
    assert "`cohort={bad`" in warnings[0]
    assert "`row=abc`" in warnings[1]
    errors = [e.value for e in app.error]
    assert len(errors) == 1
    assert "`bundle=/nonexistent`" in errors[0]
    # The good parameter still applies.
    assert app.sidebar.number_input(key="max_rows").value == 500
    assert app.query_params["bundle"] == str(tiny_bundle_path.resolve())
