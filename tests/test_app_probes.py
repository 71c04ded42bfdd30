"""The Gates & masks, Attention and Intrinsic vs post-hoc pages through ``AppTest``, on several architectures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from streamlit.testing.v1 import AppTest

from helpers import array, point_app_at
from workbench.app import probe_views, rows, sources
from workbench.bundle import load_bundle, save_bundle
from workbench.data import load_dataset, read_frame, read_schema_spec
from workbench.explain.exact import exact_indices
from workbench.probes import capture_probes, pair_map, pair_map_agreement
from workbench.schema import fit_schema
from workbench.zoo import build_model

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
AD_CLICKS_DIR = REPO_ROOT / "sample_data" / "ad_clicks"
PAGES = {
    "gates": "workbench/app/pages/gates.py",
    "attention": "workbench/app/pages/attention.py",
    "intrinsic": "workbench/app/pages/intrinsic.py",
}
TIMEOUT_S = 120
COHORT_ROWS = 300
INTRINSIC_ROWS = 10
# Small versions of each architecture; the pages only need the probes, not a trained model.
ARCHITECTURES = {
    "fm": {"embedding_dim": 4},
    "dcnv2": {"embedding_dim": 4, "n_cross_layers": 2, "hidden_units": [8]},
    "autoint+": {"embedding_dim": 4, "attention_layers": 2, "n_heads": 2, "attention_dim": 8, "hidden_units": [8]},
    "lr": {},
    "gdcn": {"embedding_dim": 4, "n_cross_layers": 2, "hidden_units": [8]},
    "fcn": {"embedding_dim": 4, "n_deep_cross_layers": 2, "n_shallow_cross_layers": 2},
    "finalmlp": {"embedding_dim": 4, "mlp1_hidden_units": [8], "mlp2_hidden_units": [8], "fs_hidden_units": [8],
                 "fs1_context": ["user_id"], "num_heads": 2},
    "fibinet": {"embedding_dim": 4, "hidden_units": [8]},
    "masknet": {"embedding_dim": 4, "parallel_num_blocks": 2, "parallel_block_dim": 8, "hidden_units": [8]},
    "xdeepfm": {"embedding_dim": 4, "cin_hidden_units": [4], "hidden_units": [8]},
}


def bundle_name(architecture: str) -> str:
    return "probe-" + architecture.replace("+", "-plus")


@pytest.fixture(scope="module")
def probe_models_dir(tmp_path_factory, tiny_data_dir) -> Path:
    """One randomly initialised bundle per architecture, with random (not near-zero) weights."""
    root = tmp_path_factory.mktemp("probe_models")
    schema = fit_schema(read_frame(AD_CLICKS_DIR / "train.parquet", max_rows=3_000), read_schema_spec(AD_CLICKS_DIR / "schema.json"))
    test_path = tiny_data_dir / "ad_clicks" / "test.parquet"
    for architecture, hyperparameters in ARCHITECTURES.items():
        torch.manual_seed(0)
        model = build_model(architecture, schema, **hyperparameters)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                parameter.copy_(torch.randn_like(parameter) * 0.3)
        save_bundle(model.eval(), root / bundle_name(architecture), data={"test": {"path": str(test_path)}})
    return root


@pytest.fixture
def app_env(monkeypatch, probe_models_dir, tiny_data_dir):
    yield from point_app_at(monkeypatch, probe_models_dir, tiny_data_dir)


@pytest.fixture(scope="module")
def loaded(probe_models_dir, tiny_data_dir):
    """Each bundle with the tiny test data set encoded by its schema."""
    out = {}
    for architecture in ARCHITECTURES:
        bundle = load_bundle(probe_models_dir / bundle_name(architecture))
        out[architecture] = (bundle, load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema))
    return out


def open_page(page: str, architecture: str, probe_models_dir: Path, **session_state) -> AppTest:
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["gates_cohort_rows"] = COHORT_ROWS
    app.session_state["attention_cohort_rows"] = COHORT_ROWS
    app.session_state["intrinsic_rows"] = INTRINSIC_ROWS
    for key, value in session_state.items():
        app.session_state[key] = value
    app.run()
    app.sidebar.selectbox(key="bundle_choice").set_value(str(probe_models_dir / bundle_name(architecture))).run()
    app.switch_page(PAGES[page])
    app.run()
    return app


def specs(app: AppTest) -> dict[str, dict]:
    return {chart.proto.id.rsplit("-", 1)[-1]: json.loads(chart.proto.spec) for chart in app.get("plotly_chart")}


def z(spec: dict, trace: int = 0) -> np.ndarray:
    """The z matrix of a heatmap trace (plain lists with None for blank cells, or a typed array)."""
    value = spec["data"][trace]["z"]
    if isinstance(value, dict):
        return array(value)
    return np.array([[np.nan if v is None else v for v in line] for line in value], dtype=float)


def test_gates_page_shows_cohort_and_samples(app_env, probe_models_dir, loaded):
    app = open_page("gates", "fm", probe_models_dir, gates_row_a=5, gates_row_b=7, gates_probe="first_order_weights")

    assert not app.exception
    assert [e.value for e in app.error] == []
    charts = specs(app)
    assert set(charts) == {"gates_cohort_heatmap", "gates_ranking", "gates_histogram", "gates_sample_0", "gates_sample_1"}
    bundle, dataset = loaded["fm"]
    cohort_rows = rows.sample_rows(len(dataset), COHORT_ROWS, 0)
    expected = capture_probes(bundle.model, dataset.tensors(cohort_rows))["first_order_weights"]
    np.testing.assert_allclose(z(charts["gates_cohort_heatmap"])[0], expected.cohort_mean(), rtol=1e-5, atol=1e-6)
    sample = capture_probes(bundle.model, dataset.tensors(np.array([5])))["first_order_weights"]
    np.testing.assert_allclose(z(charts["gates_sample_0"])[0], sample.for_row(0), rtol=1e-5, atol=1e-6)
    assert "Row 5" in charts["gates_sample_0"]["layout"]["title"]["text"]
    # The x axis of a sample shows the row's raw values.
    assert charts["gates_sample_0"]["data"][0]["x"][0].startswith(bundle.schema.field_names[0] + " = ")


@pytest.mark.parametrize(
    ("architecture", "probe", "lines"),
    [("gdcn", "cross_gates", 2), ("fcn", "lcn_self_mask", 2), ("finalmlp", "stream1_gate", 1), ("masknet", "block_masks", 2),
     ("fibinet", "senet_weights", 1), ("finalmlp", "stream2_gate", 1)],
)
def test_gates_page_for_each_gated_architecture(app_env, probe_models_dir, loaded, architecture, probe, lines):
    app = open_page("gates", architecture, probe_models_dir, gates_probe=probe, gates_aggregation="mean_abs")

    assert not app.exception
    assert [e.value for e in app.error] == []
    heatmap = specs(app)["gates_cohort_heatmap"]
    bundle, dataset = loaded[architecture]
    cohort_rows = rows.sample_rows(len(dataset), COHORT_ROWS, 0)
    expected = capture_probes(bundle.model, dataset.tensors(cohort_rows), aggregation="mean_abs")[probe]
    assert z(heatmap).shape == (lines, len(bundle.schema.field_names))
    scope = "mean over" if expected.probe.per_sample else "the same for every sample"
    assert scope in heatmap["layout"]["title"]["text"]
    np.testing.assert_allclose(z(heatmap), expected.cohort_mean().reshape(lines, -1), rtol=1e-5, atol=1e-6)


def test_gates_page_explains_models_without_gates(app_env, probe_models_dir):
    app = open_page("gates", "dcnv2", probe_models_dir)

    assert not app.exception
    assert any("declares no gates, masks or field weights" in i.value for i in app.info)


def test_attention_page_matches_the_captured_attention(app_env, probe_models_dir, loaded):
    app = open_page("attention", "autoint+", probe_models_dir, attention_row=11)
    app.selectbox(key="attention_layer").set_value(1).run()
    app.selectbox(key="attention_head").set_value(0).run()

    assert not app.exception
    assert [e.value for e in app.error] == []
    charts = specs(app)
    bundle, dataset = loaded["autoint+"]
    values = capture_probes(bundle.model, dataset.tensors(np.array([11])))["attention"]
    np.testing.assert_allclose(z(charts["attention_row_map"]), values.for_row(0)[1, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z(charts["attention_row_map"]).sum(axis=1), 1.0, rtol=1e-5)
    assert "layer 2, head 1" in charts["attention_row_map"]["layout"]["title"]["text"]
    cohort_rows = rows.sample_rows(len(dataset), COHORT_ROWS, 0)
    cohort = capture_probes(bundle.model, dataset.tensors(cohort_rows))["attention"]
    np.testing.assert_allclose(
        z(charts["attention_cohort_map"]), pair_map(cohort, select={"layer": 1, "head": 0}), rtol=1e-5, atol=1e-6
    )


def test_attention_page_explains_models_without_attention(app_env, probe_models_dir):
    app = open_page("attention", "fm", probe_models_dir)

    assert not app.exception
    assert any("no attention over fields" in i.value for i in app.info)


@pytest.mark.parametrize(
    ("architecture", "probe"),
    [("fm", "fm_pair_products"), ("dcnv2", "cross_weight_norms"), ("autoint+", "attention"),
     ("fibinet", "bilinear_pair_norms"), ("xdeepfm", "cin_pair_weights")],
)
def test_intrinsic_page_reports_the_rank_correlation(app_env, probe_models_dir, loaded, architecture, probe):
    app = open_page("intrinsic", architecture, probe_models_dir, intrinsic_probe=probe)
    app.button(key="intrinsic_submit").click().run()

    assert not app.exception
    assert [e.value for e in app.error] == []
    bundle, dataset = loaded[architecture]
    sample = rows.sample_rows(len(dataset), INTRINSIC_ROWS, 0)
    sii = exact_indices(bundle.model, dataset, sample).sii
    values = capture_probes(bundle.model, dataset.tensors(sample))[probe]
    expected = pair_map_agreement(pair_map(values, absolute=True), sii.mean_abs().to_numpy())["spearman"]
    shown = next(m.value for m in app.metric if m.label == "Spearman (global maps)")
    assert shown == f"{expected:+.3f}"
    charts = specs(app)
    maps = charts["intrinsic_maps"]
    np.testing.assert_allclose(z(maps, 1)[~np.eye(15, dtype=bool)], sii.mean_abs().to_numpy()[~np.eye(15, dtype=bool)])
    assert ("intrinsic_per_row" in charts) == values.probe.per_sample


def test_intrinsic_page_waits_for_the_button(app_env, probe_models_dir):
    app = open_page("intrinsic", "fm", probe_models_dir)

    assert not app.exception
    assert any("Press **Compare** to start" in i.value for i in app.info)
    assert "intrinsic_maps" not in specs(app)


def test_intrinsic_page_waits_again_for_another_bundle(app_env, probe_models_dir):
    app = open_page("intrinsic", "fm", probe_models_dir)
    app.button(key="intrinsic_submit").click().run()
    assert "intrinsic_maps" in specs(app)

    app.sidebar.selectbox(key="bundle_choice").set_value(str(probe_models_dir / bundle_name("dcnv2"))).run()

    assert not app.exception
    assert any("Press **Compare** to start" in i.value for i in app.info)
    assert "intrinsic_maps" not in specs(app)


def test_flat_signal_note_flags_uniform_attention():
    manifest = {"training": {"config": {"embedding_regularizer": 0.5}}}
    uniform = np.full((10, 4, 4), 0.25) + np.random.default_rng(0).normal(scale=1e-6, size=(10, 4, 4))

    note = probe_views.flat_signal_note(uniform, (0.0, 1.0), manifest)

    assert note is not None
    assert "nearly constant" in note
    assert "embedding L2 of 0.5" in note
    assert probe_views.flat_signal_note(np.array([0.1, 0.4, 0.9]), (0.0, 1.0), manifest) is None
    assert probe_views.flat_signal_note(np.array([2.0, 2.001]), None, {}) is not None
    assert probe_views.flat_signal_note(np.array([-2.0, 2.0]), None, {}) is None


def test_lr_has_no_probe_pages_content(app_env, probe_models_dir):
    for page in PAGES:
        app = open_page(page, "lr", probe_models_dir)
        assert not app.exception
        assert [e.value for e in app.error] == []
        assert app.info, page


def test_attention_page_warns_about_uniform_attention(monkeypatch, tiny_data_dir):
    # The bundled AutoInt+ was trained with an embedding L2 of 0.5: its attention is uniform to 1e-4.
    monkeypatch.setenv(sources.MODELS_DIR_ENV, str(REPO_ROOT / "models"))
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tiny_data_dir))
    st.cache_data.clear()
    st.cache_resource.clear()
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["attention_cohort_rows"] = COHORT_ROWS
    app.run()
    app.sidebar.selectbox(key="bundle_choice").set_value(str(REPO_ROOT / "models" / "ad_clicks_autoint_plus")).run()
    app.switch_page(PAGES["attention"])
    app.run()

    assert not app.exception
    warnings = [w.value for w in app.warning]
    assert any("nearly constant" in w and "embedding L2 of 0.5" in w for w in warnings)
    st.cache_data.clear()
    st.cache_resource.clear()
