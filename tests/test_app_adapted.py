"""Bundles imported from FuxiCTR in the app: the probe pages read the imported models' gates and attention."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fuxictr_fixtures import TINY_DIR, ZOO_DIR, train_tiny
from helpers import array, point_app_at, run_cli
from workbench.adapters.bundle import CODE_FOLDERS_ENV
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.probes import capture_probes

APP_PATH = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT_S = 120
COHORT_ROWS = 60


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A models folder with FuxiCTR GDCN and AutoInt bundles, and a data folder with the test split."""
    root = tmp_path_factory.mktemp("imported")
    models, data = root / "models", root / "data"
    data.mkdir()
    test_copy = data / "tiny_test.parquet"
    shutil.copyfile(TINY_DIR / "tiny_parquet" / "test.parquet", test_copy)
    for key in ("GDCN", "AutoInt"):
        run = train_tiny(root / "runs", key, epochs=1)
        argv = [
            "import", "fuxictr", "--config", str(run.config_dir), "--expid", run.expid,
            "--checkpoint", str(run.checkpoint), "--model-zoo", str(ZOO_DIR), "--data-dir", str(run.data_dir),
            "--out", str(models / key.lower()),
        ]  # fmt: skip
        status, _, stderr = run_cli(argv)
        assert status == 0, stderr
    return models, test_copy


@pytest.fixture
def app_env(monkeypatch, imported):
    models, test_copy = imported
    monkeypatch.setenv(CODE_FOLDERS_ENV, str(ZOO_DIR))
    yield from point_app_at(monkeypatch, models, test_copy.parent)


def open_page(page: str, bundle: Path, data: Path, **session_state) -> AppTest:
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    for key, value in session_state.items():
        app.session_state[key] = value
    app.run()
    app.sidebar.selectbox(key="bundle_choice").set_value(str(bundle)).run()
    app.switch_page(f"workbench/app/pages/{page}.py")
    app.run()
    return app


def heatmaps(app: AppTest) -> dict[str, dict]:
    return {chart.proto.id.rsplit("-", 1)[-1]: json.loads(chart.proto.spec) for chart in app.get("plotly_chart")}


def z_matrix(spec: dict) -> np.ndarray:
    value = spec["data"][0]["z"]
    if isinstance(value, dict):  # plotly's typed-array form
        return array(value)
    return np.array([[np.nan if v is None else v for v in line] for line in value], dtype=float)


def test_overview_names_the_fuxictr_class(app_env, imported):
    models, test_copy = imported
    app = open_page("overview", models / "gdcn", test_copy)

    assert not app.exception
    assert [e.value for e in app.error] == []
    architecture = next(metric for metric in app.metric if metric.label == "Architecture")
    assert architecture.value == "fuxictr:GDCN"
    hyper = app.dataframe[0].value
    values = dict(zip(hyper["hyper-parameter"], hyper["value"], strict=True))
    assert values["num_cross_layers"] == "3"
    assert values["embedding_dim"] == "4"


def test_gates_page_reads_gdcn_gates(app_env, imported):
    models, test_copy = imported
    app = open_page("gates", models / "gdcn", test_copy, gates_cohort_rows=COHORT_ROWS, gates_probe="cross_gates")

    assert not app.exception
    assert [e.value for e in app.error] == []
    cohort = z_matrix(heatmaps(app)["gates_cohort_heatmap"])
    bundle = load_bundle(models / "gdcn")
    dataset = load_dataset(test_copy, bundle.schema)
    from workbench.app import rows

    sampled = rows.sample_rows(len(dataset), COHORT_ROWS, 0)
    expected = capture_probes(bundle.model, dataset.tensors(sampled))["cross_gates"].cohort_mean()
    np.testing.assert_allclose(cohort, expected, rtol=1e-5, atol=1e-6)


def test_attention_page_reads_autoint_attention(app_env, imported):
    models, test_copy = imported
    app = open_page("attention", models / "autoint", test_copy, attention_cohort_rows=COHORT_ROWS, attention_row=3)

    assert not app.exception
    assert [e.value for e in app.error] == []
    row_map = z_matrix(heatmaps(app)["attention_row_map"])
    assert row_map.shape == (14, 14)
    np.testing.assert_allclose(np.nansum(row_map, axis=1), 1.0, atol=1e-5)
