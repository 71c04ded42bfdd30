"""The Streamlit app through ``AppTest``: every page, row picking, bad inputs and caching.

Also tests the Streamlit-free helpers of ``workbench.app`` (sources, tables, rows) directly.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import point_app_at
from workbench import figures
from workbench.app import rows, sources, state, tables
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.training import metrics_from_logits, predict_logits

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
PAGES = {
    "overview": "workbench/app/pages/overview.py",
    "importance": "workbench/app/pages/importance.py",
    "explorer": "workbench/app/pages/explorer.py",
    "interactions": "workbench/app/pages/interactions.py",
}
TIMEOUT_S = 60
IMPORTANCE_ROWS = 150
INTERACTIONS_ROWS = 30


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


def open_page(page: str, **session_state) -> AppTest:
    """Run the app, switch to ``page`` and run it again, with ``session_state`` seeded before the first run."""
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["importance_rows"] = IMPORTANCE_ROWS
    app.session_state["interactions_rows"] = INTERACTIONS_ROWS
    for key, value in session_state.items():
        app.session_state[key] = value
    app.run()
    if page != "overview":
        app.switch_page(PAGES[page])
        app.run()
    if page == "interactions":
        # The page waits for its Compute button before it evaluates any coalition.
        app.button(key="interactions_submit").click().run()
    return app


def metric(app: AppTest, label: str) -> str:
    values = [m.value for m in app.metric if m.label == label]
    assert values, f"no metric labelled {label!r}; metrics: {[m.label for m in app.metric]}"
    return values[0]


def plotly_specs(app: AppTest) -> dict[str, dict]:
    """The plotly figures on the page, keyed by the end of their element id (the chart's ``key``)."""
    return {chart.proto.id.rsplit("-", 1)[-1]: json.loads(chart.proto.spec) for chart in app.get("plotly_chart")}


def errors(app: AppTest) -> list[str]:
    return [e.value for e in app.error]


# --- every page -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", list(PAGES))
def test_page_runs_without_exception(app_env, page):
    app = open_page(page)

    assert not app.exception
    assert errors(app) == []
    assert "tiny-deepfm" in app.sidebar.selectbox(key="bundle_choice").value


def test_overview_shows_model_card(app_env, tiny_bundle_path):
    app = open_page("overview")
    bundle = load_bundle(tiny_bundle_path)

    assert metric(app, "Architecture") == "deepfm"
    assert metric(app, "Parameters") == f"{bundle.n_parameters:,}"
    assert metric(app, "Rows") == "2,000"
    schema = next(df.value for df in app.dataframe if "OOV count" in df.value.columns)
    assert list(schema["field"]) == bundle.schema.field_names
    assert schema.set_index("field").loc["city", "cardinality"] == bundle.schema["city"].cardinality


def test_overview_metrics_match_evaluate(app_env, tiny_bundle_path, tiny_data_dir, tiny_logits):
    app = open_page("overview")
    bundle = load_bundle(tiny_bundle_path)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema)
    expected = tables.metrics_table({"test": metrics_from_logits(dataset.labels, tiny_logits)})

    assert metric(app, "AUC") == f"{expected.loc['test', 'AUC']:.4f}"
    assert metric(app, "Log loss") == f"{expected.loc['test', 'log loss']:.4f}"
    assert metric(app, "Positive rate") == figures.format_ctr(dataset.labels.mean())


def test_importance_page_shows_both_figures(app_env):
    app = open_page("importance")
    specs = plotly_specs(app)

    assert set(specs) == {"importance_bar", "importance_beeswarm"}
    assert specs["importance_bar"]["data"][0]["type"] == "bar"
    assert "output: logit" in specs["importance_bar"]["layout"]["title"]["subtitle"]["text"]
    assert metric(app, "Rows explained") == f"{IMPORTANCE_ROWS:,}"
    assert any("method: integrated_gradients" in c.value for c in app.caption)


def test_explorer_shows_waterfall(app_env):
    app = open_page("explorer")
    specs = plotly_specs(app)

    assert [c.value for c in app.caption if c.value == "Waterfall of field attributions"]
    assert specs["explorer_waterfall"]["data"][0]["type"] == "waterfall"
    assert specs["explorer_waterfall"]["layout"]["title"]["text"] == "Field attributions for row 0"


# --- picking rows in the sample explorer -----------------------------------------------------------


@pytest.mark.parametrize("row", [0, 7, 1999])
def test_explorer_row_shows_model_ctr(app_env, tiny_logits, row):
    app = open_page("explorer")
    app.number_input(key="explorer_row").set_value(row).run()

    assert not app.exception
    assert metric(app, "Predicted CTR") == figures.format_ctr(figures.sigmoid(tiny_logits[row]))
    assert metric(app, "Row") == f"{row:,}"
    waterfall = plotly_specs(app)["explorer_waterfall"]["data"][0]
    assert waterfall["x"][-1] == pytest.approx(float(tiny_logits[row]), abs=1e-5)


def test_explorer_filter_picks_matching_row(app_env, tiny_logits, tiny_data_dir):
    app = open_page("explorer")
    app.radio(key="explorer_mode").set_value("filter").run()
    app.selectbox(key="explorer_filter_field").set_value("city").run()
    app.selectbox(key="explorer_filter_value").set_value("Berlin").run()
    options = app.selectbox(key="explorer_filter_row").options
    row = int(options[-1].removeprefix("row "))
    app.selectbox(key="explorer_filter_row").set_value(row).run()

    assert not app.exception
    frame = pd.read_parquet(tiny_data_dir / "ad_clicks" / "test.parquet")
    matching = frame.index[frame["city"] == "Berlin"]
    assert [int(o.removeprefix("row ")) for o in options] == list(matching)
    assert metric(app, "Predicted CTR") == figures.format_ctr(figures.sigmoid(tiny_logits[row]))
    assert "city = Berlin" in plotly_specs(app)["explorer_waterfall"]["data"][0]["y"]


def test_explorer_random_row_draws_valid_row(app_env, tiny_logits):
    app = open_page("explorer")
    app.radio(key="explorer_mode").set_value("random").run()
    app.button(key="explorer_draw").click().run()

    assert not app.exception
    row = app.session_state[state.RANDOM_ROW_KEY]
    assert 0 <= row < len(tiny_logits)
    assert metric(app, "Row") == f"{row:,}"
    assert metric(app, "Predicted CTR") == figures.format_ctr(figures.sigmoid(tiny_logits[row]))


def test_explorer_out_of_range_row_shows_error(app_env):
    app = open_page("explorer")
    app.number_input(key="explorer_row").set_value(2000).run()

    assert not app.exception
    assert len(errors(app)) == 1
    assert "row 2000 is out of range" in errors(app)[0]
    assert "0 to 1,999" in errors(app)[0]
    assert plotly_specs(app) == {}


# --- bad inputs -------------------------------------------------------------------------------------


def write_bad_bundle(root: Path, kind: str) -> Path:
    path = root / f"bad-{kind}"
    if kind == "missing":
        return path
    path.mkdir()
    if kind == "invalid-json":
        (path / "manifest.json").write_text("{not json", encoding="utf-8")
    elif kind == "other-format":
        (path / "manifest.json").write_text(json.dumps({"format": "something-else"}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "Bundle folder not found"),
        ("no-manifest", "manifest.json is missing"),
        ("invalid-json", "is not valid JSON"),
        ("other-format", "is not a CTR Workbench manifest"),
    ],
)
@pytest.mark.parametrize("page", list(PAGES))
def test_typed_bad_bundle_shows_error(app_env, tmp_path, kind, message, page):
    path = write_bad_bundle(tmp_path, kind)
    app = open_page(page)
    app.sidebar.text_input(key="bundle_typed").input(str(path)).run()

    assert not app.exception
    assert len(errors(app)) == 1
    assert str(path) in errors(app)[0]
    assert message in errors(app)[0]
    assert "manifest.json and weights.safetensors" in errors(app)[0]


def test_typed_bundle_path_loads_bundle(app_env, tiny_bundle_path, tmp_path, monkeypatch):
    monkeypatch.setenv(sources.MODELS_DIR_ENV, str(tmp_path))
    app = open_page("overview")
    assert [i.value for i in app.info if "No model bundle was found" in i.value]

    app.sidebar.text_input(key="bundle_typed").input(f"  {tiny_bundle_path}  ").run()

    assert not app.exception
    assert errors(app) == []
    assert metric(app, "Architecture") == "deepfm"


def test_data_choice_follows_bundle(app_env, tiny_bundle_path, tmp_path, monkeypatch):
    models = tmp_path / "models"
    shutil.copytree(tiny_bundle_path, models / "a-records-data")
    shutil.copytree(tiny_bundle_path, models / "b-records-nothing")
    manifest_path = models / "b-records-nothing" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["data"] = {}
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(sources.MODELS_DIR_ENV, str(models))
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "empty"))
    recorded_test = json.loads((tiny_bundle_path / "manifest.json").read_text(encoding="utf-8"))["data"]["test"]["path"]

    app = open_page("overview")
    assert app.sidebar.selectbox(key="data_choice").value == recorded_test
    app.sidebar.selectbox(key="bundle_choice").set_value(str(models / "b-records-nothing")).run()
    assert app.sidebar.selectbox(key="data_choice").value is None
    assert [i.value for i in app.info if "No data file was found" in i.value]
    app.sidebar.selectbox(key="bundle_choice").set_value(str(models / "a-records-data")).run()

    assert not app.exception
    assert app.sidebar.selectbox(key="data_choice").value == recorded_test
    assert metric(app, "Rows") == "2,000"


@pytest.mark.parametrize(
    ("file_name", "content", "message"),
    [
        ("wrong_columns.csv", "a,b,click\n1,2,0\n", "the data has no column(s)"),
        ("notes.txt", "hello\n", "cannot tell the format"),
    ],
)
@pytest.mark.parametrize("page", list(PAGES))
def test_typed_bad_data_shows_error(app_env, tmp_path, file_name, content, message, page):
    path = tmp_path / file_name
    if content is not None:
        path.write_text(content, encoding="utf-8")
    app = open_page(page)
    app.sidebar.text_input(key="data_typed").input(str(path)).run()

    assert not app.exception
    assert len(errors(app)) == 1
    assert str(path) in errors(app)[0]
    assert message in errors(app)[0]
    assert "Choose a data file with the columns this bundle was trained on" in errors(app)[0]


@pytest.mark.parametrize("page", list(PAGES))
def test_typed_missing_data_keeps_selection(app_env, tmp_path, tiny_data_dir, page):
    path = tmp_path / "missing.parquet"
    app = open_page(page)
    app.sidebar.text_input(key="data_typed").input(str(path)).run()

    assert not app.exception
    assert len(errors(app)) == 1
    assert str(path) in errors(app)[0]
    assert "Data file not found" in errors(app)[0]
    assert "The previous selection is kept." in errors(app)[0]
    selection = app.session_state["workbench_selection"]
    assert selection.data_path == (tiny_data_dir / "ad_clicks" / "test.parquet").resolve()


def test_overview_keeps_model_card_when_data_fails(app_env, tmp_path):
    path = tmp_path / "wrong_columns.csv"
    path.write_text("a,b,click\n1,2,0\n", encoding="utf-8")
    app = open_page("overview")
    app.sidebar.text_input(key="data_typed").input(str(path)).run()

    assert metric(app, "Architecture") == "deepfm"
    schema = next(df.value for df in app.dataframe if "kind" in df.value.columns)
    assert "OOV count" not in schema.columns


# --- caching ----------------------------------------------------------------------------------------


@pytest.fixture
def call_counts(monkeypatch):
    """Count calls of the expensive functions the app's cached loaders wrap."""
    counts: Counter[str] = Counter()
    for name in ("explain", "load_dataset", "load_bundle", "evaluate"):
        original = getattr(state, name)

        def counted(*args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(state, name, counted)
    return counts


def test_unrelated_widget_does_not_recompute(app_env, call_counts, tiny_bundle_path):
    app = open_page("importance")
    # open_page runs the overview first, which evaluates the model once.
    expected = Counter(explain=1, load_dataset=1, load_bundle=1, evaluate=1)
    assert call_counts == expected

    app.radio(key="beeswarm_color").set_value("attribution").run()
    # Typing the folder of the bundle already chosen selects the same bundle.
    app.sidebar.text_input(key="bundle_typed").input(str(tiny_bundle_path)).run()
    app.run()

    assert not app.exception
    assert call_counts == expected
    marker = plotly_specs(app)["importance_beeswarm"]["data"][0]["marker"]
    assert marker["cmin"] < 0 < marker["cmax"]


def test_changed_parameter_recomputes(app_env, call_counts):
    app = open_page("importance")
    app.number_input(key="importance_steps").set_value(8)
    app.button(key="importance_submit").click().run()

    assert not app.exception
    assert call_counts["explain"] == 2
    assert call_counts["load_dataset"] == 1
    assert "steps: 8" in plotly_specs(app)["importance_bar"]["layout"]["title"]["subtitle"]["text"]


def test_page_switch_reuses_cached_data(app_env, call_counts):
    app = open_page("overview")
    for page in ("importance", "explorer", "overview"):
        app.switch_page(PAGES[page])
        app.run()

    assert not app.exception
    assert call_counts["load_bundle"] == 1
    assert call_counts["load_dataset"] == 1
    assert call_counts["evaluate"] == 1


# --- Streamlit-free helpers -------------------------------------------------------------------------


def test_sources_folders_follow_env(monkeypatch, tmp_path):
    monkeypatch.setenv(sources.MODELS_DIR_ENV, str(tmp_path / "m"))
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "d"))
    assert sources.models_dir() == tmp_path / "m"
    assert sources.data_dir() == tmp_path / "d"

    monkeypatch.delenv(sources.MODELS_DIR_ENV)
    monkeypatch.delenv(sources.DATA_DIR_ENV)
    assert sources.models_dir() == REPO_ROOT / "models"
    assert sources.data_dir() == REPO_ROOT / "sample_data"


def test_data_options_order_and_filter(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.parquet", "a.csv", "sub/c.libfm.gz", "sub/feature_map.tsv", "notes.md", "d.csv.gz"):
        (tmp_path / name).write_text("x", encoding="utf-8")
    recorded = tmp_path / "b.parquet"
    manifest = {
        "data": {
            "test": {"path": str(recorded)},
            "valid": {"path": str(tmp_path / "gone.parquet")},
            "train": {"path": str(tmp_path / "a.csv")},
        }
    }

    options = sources.data_options(manifest, tmp_path)

    assert [o.path.name for o in options] == ["b.parquet", "a.csv", "d.csv.gz", "c.libfm.gz"]
    assert options[0].label == "b.parquet (this bundle's test split)"
    assert options[3].label == "sub/c.libfm.gz"


def test_rows_sample_is_seeded_sorted_and_distinct():
    first = rows.sample_rows(100, 30, seed=3)
    assert np.array_equal(first, rows.sample_rows(100, 30, seed=3))
    assert np.array_equal(first, np.sort(first))
    assert len(set(first.tolist())) == 30
    assert len(rows.sample_rows(10, 30, seed=0)) == 10
    with pytest.raises(ValueError, match="at least 1"):
        rows.sample_rows(10, 0, seed=0)


def test_rows_check_row_bounds():
    assert rows.check_row(4, 5, "x.parquet") == 4
    with pytest.raises(IndexError, match="row 5 is out of range: the data set x.parquet has 5 rows"):
        rows.check_row(5, 5, "x.parquet")
    with pytest.raises(IndexError, match="out of range"):
        rows.check_row(-1, 5, "x.parquet")


def test_schema_table_counts_oov(tiny_bundle_path, tiny_data_dir):
    bundle = load_bundle(tiny_bundle_path)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema)
    table = tables.schema_table(bundle.schema, dataset).set_index("field")

    assert table.loc["user_id", "OOV count"] == dataset.oov_counts["user_id"]
    assert table.loc["user_id", "OOV count"] > 0
    assert table.loc["user_id", "OOV share of rows"] == pytest.approx(dataset.oov_counts["user_id"] / len(dataset))
    assert pd.isna(table.loc["user_age", "cardinality"])
    assert pd.isna(table.loc["history_categories", "OOV share of rows"])


def test_metrics_table_orders_known_columns():
    table = tables.metrics_table({"valid": {"n_rows": 10.0, "extra": 1.0, "auc": 0.7, "logloss": 0.4}})
    assert list(table.columns) == ["AUC", "log loss", "rows", "extra"]
    assert table.loc["valid", "rows"] == 10
