"""``workbench import deepctr`` on DeepCTR-Torch models trained with the real package, and the bundles it writes.

The models are the DeepFM and AutoInt of ``deepctr_fixtures`` (one epoch on
2,000 Criteo rows). The data file the workbench reads is those rows as
Parquet: categorical cells as the raw strings, numeric cells already scaled,
as DeepCTR saw them.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score
from streamlit.testing.v1 import AppTest

from deepctr_fixtures import CRITEO_FILE, DENSE, SPARSE, DeepCTRSample, TrainedModel, train_criteo
from helpers import point_app_at
from workbench import cli
from workbench.adapters.deepctr import build_deepctr_model
from workbench.bundle import load_bundle
from workbench.data import load_dataset

pytestmark = pytest.mark.skipif(
    not CRITEO_FILE.is_file(), reason="the shared Criteo sample is not next to the repository"
)

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
IMPORTANCE_PAGE = "workbench/app/pages/importance.py"
APP_TIMEOUT_S = 120
IMPORTANCE_ROWS = 50
N_ROWS = 256
"""Rows compared with ``model.predict``."""
PROBES = {"DeepFM": ["fm_pair_products"], "AutoInt": ["attention"]}
GROUPS = {
    "C1-C5": SPARSE[:5],
    "C6-C10": SPARSE[5:10],
    "C11-C15": SPARSE[10:15],
    "C16-C20": SPARSE[15:20],
    "C21-C26": SPARSE[20:],
    "I1-I6": DENSE[:6],
    "I7-I13": DENSE[6:],
}
"""Seven players for exact Shapley values (39 fields are too many for all coalitions)."""


@pytest.fixture(scope="session")
def criteo_models(tmp_path_factory: pytest.TempPathFactory) -> DeepCTRSample:
    """DeepFM and AutoInt trained with DeepCTR's ``fit``, with their saved weights, column spec and vocabularies."""
    return train_criteo(tmp_path_factory.mktemp("deepctr_cli"), ("DeepFM", "AutoInt"))


@pytest.fixture(scope="session")
def criteo_data(criteo_models: DeepCTRSample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2,000 training rows as Parquet, in the raw form the bundle's schema reads."""
    path = tmp_path_factory.mktemp("deepctr_data") / "criteo.parquet"
    criteo_models.frame.to_parquet(path, index=False)
    return path


@pytest.fixture(scope="session")
def deepfm_bundle(criteo_models: DeepCTRSample, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DeepFM bundle written by ``workbench import deepctr``."""
    out = tmp_path_factory.mktemp("deepctr_bundles") / "deepfm"
    code, _, err = run_cli(import_argv(criteo_models.models["DeepFM"], out))
    assert code == 0, err
    return out


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``workbench`` through its own error handling; return the exit code, stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(argv)
    return code, stdout.getvalue(), stderr.getvalue()


def import_argv(trained: TrainedModel, out: Path, **files: Path) -> list[str]:
    """The import command for a trained model; ``files`` replaces its weights, columns or vocabularies."""
    argv = [
        "import", "deepctr",
        "--weights", str(files.get("weights", trained.weights_path)),
        "--columns", str(files.get("columns", trained.spec_path)),
        "--vocabularies", str(files.get("vocabularies", trained.vocabularies_path)),
        "--model-class", trained.model_class,
        "--out", str(out),
    ]  # fmt: skip
    for name, value in trained.params.items():
        argv += ["--param", f"{name}={json.dumps(value)}"]
    return argv


def deepctr_probabilities(sample: DeepCTRSample, model: torch.nn.Module, n_rows: int = N_ROWS) -> np.ndarray:
    x = {name: values[:n_rows] for name, values in sample.model_input.items()}
    return model.predict(x, batch_size=500).reshape(-1).astype(np.float64)


def bundle_probabilities(bundle_path: Path, data: Path, n_rows: int = N_ROWS) -> np.ndarray:
    bundle = load_bundle(bundle_path)
    dataset = load_dataset(data, bundle.schema, max_rows=n_rows)
    with torch.no_grad():
        return torch.sigmoid(bundle.model(dataset.tensors()).double()).numpy()


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert message in err


# ----- writing the bundle -------------------------------------------------------------------------


@pytest.mark.parametrize("model_class", ["DeepFM", "AutoInt"])
def test_import_writes_bundle(criteo_models, tmp_path, model_class):
    trained = criteo_models.models[model_class]
    out = tmp_path / "models" / model_class.lower()

    code, stdout, err = run_cli(import_argv(trained, out))

    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["bundle"] == str(out)
    assert summary["model"] == f"deepctr:{model_class}"
    assert summary["model_class"] == model_class
    assert summary["params"] == trained.params
    assert summary["label"] == "label"
    assert summary["fields"] == SPARSE + DENSE
    assert summary["probes"] == PROBES[model_class]
    assert "13 numeric field(s)" in err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"] == model_class.lower()
    assert manifest["adapter"]["kind"] == "deepctr"
    assert manifest["adapter"]["recipe"]["model_class"] == model_class
    assert manifest["adapter"]["recipe"]["params"] == trained.params
    assert manifest["versions"]["deepctr-torch"] == "0.3.0"


@pytest.mark.parametrize("model_class", ["DeepFM", "AutoInt"])
def test_bundle_predictions_match_deepctr(criteo_models, criteo_data, tmp_path, model_class):
    trained = criteo_models.models[model_class]
    out = tmp_path / model_class
    code, _, err = run_cli(import_argv(trained, out))
    assert code == 0, err

    expected = deepctr_probabilities(criteo_models, trained.model)
    got = bundle_probabilities(out, criteo_data)

    assert np.ptp(expected) > 1e-3  # the rows differ, so equal outputs are not one constant
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_params_file_and_param_override(criteo_models, criteo_data, tmp_path):
    trained = criteo_models.models["DeepFM"]
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps({"dnn_hidden_units": [256, 128], "dnn_activation": "relu"}), encoding="utf-8")
    argv = [a for a in import_argv(trained, tmp_path / "deepfm") if not a.startswith("dnn_hidden_units=")]
    argv.remove("--param")
    argv += ["--params", str(params_file), "--param", "dnn_hidden_units=[16, 8]", "--param", "dnn_dropout=0"]

    code, stdout, err = run_cli(argv)

    assert code == 0, err
    assert json.loads(stdout)["params"] == {"dnn_hidden_units": [16, 8], "dnn_activation": "relu", "dnn_dropout": 0}
    np.testing.assert_allclose(
        bundle_probabilities(tmp_path / "deepfm", criteo_data),
        deepctr_probabilities(criteo_models, trained.model),
        atol=1e-6,
        rtol=0,
    )


def test_help_says_class_and_params_must_match(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["import", "deepctr", "--help"])

    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--model-class and the params must be the ones used in training" in text
    assert "weights_only=True" in text


# ----- using the bundle ---------------------------------------------------------------------------


def test_evaluate_on_imported_bundle(criteo_models, criteo_data, deepfm_bundle):
    code, stdout, err = run_cli(["evaluate", str(deepfm_bundle), str(criteo_data)])

    assert code == 0, err
    metrics = json.loads(stdout)
    labels = criteo_models.frame["label"].to_numpy()
    probabilities = deepctr_probabilities(criteo_models, criteo_models.models["DeepFM"].model, len(labels))
    assert metrics["n_rows"] == 2000
    assert metrics["auc"] == pytest.approx(roc_auc_score(labels, probabilities), abs=1e-6)
    assert metrics["logloss"] == pytest.approx(log_loss(labels, probabilities), abs=1e-6)
    assert set(metrics["oov_counts"].values()) == {0}


def test_explain_exact_shapley_on_imported_bundle(criteo_models, criteo_data, deepfm_bundle, tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps(GROUPS), encoding="utf-8")
    out = tmp_path / "shapley.parquet"
    argv = [
        "explain", str(deepfm_bundle), str(criteo_data), "--method", "exact_shapley", "--groups", str(groups),
        "--rows", "4", "--out", str(out),
    ]  # fmt: skip

    code, stdout, err = run_cli(argv)

    assert code == 0, err
    assert json.loads(stdout)["efficient"] is True
    table = pd.read_parquet(out)
    assert len(table) == 4 * len(GROUPS)
    assert set(table["field"]) == set(GROUPS)
    per_row = table.groupby("row").agg(
        total=("attribution", "sum"), base=("base_value", "first"), logit=("prediction", "first")
    )
    np.testing.assert_allclose(per_row["total"], per_row["logit"] - per_row["base"], atol=1e-5)
    expected = deepctr_probabilities(criteo_models, criteo_models.models["DeepFM"].model, 4)
    np.testing.assert_allclose(per_row["logit"], np.log(expected / (1.0 - expected)), atol=1e-5)


# ----- bad inputs ---------------------------------------------------------------------------------


def _wide_weights(trained: TrainedModel, folder: Path) -> Path:
    """A DeepFM state_dict with embedding size 8 where the spec says 4."""
    spec = json.loads(trained.spec_path.read_text(encoding="utf-8"))
    for part in spec.values():
        for column in part:
            if column["type"] == "sparse":
                column["embedding_dim"] = 8
    path = folder / "wide.pt"
    torch.save(build_deepctr_model("DeepFM", spec, trained.params).state_dict(), path)
    return path


def _vocabularies_without_c7(trained: TrainedModel, folder: Path) -> Path:
    vocabularies = json.loads(trained.vocabularies_path.read_text(encoding="utf-8"))
    del vocabularies["C7"]
    path = folder / "vocabularies.json"
    path.write_text(json.dumps(vocabularies), encoding="utf-8")
    return path


def _truncated_columns(trained: TrainedModel, folder: Path) -> Path:
    path = folder / "columns.json"
    path.write_text(trained.spec_path.read_text(encoding="utf-8")[:100], encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing weights", "does not exist"),
        ("other embedding size", "embedding_dict.C1.weight"),
        ("unknown class", "model_class 'os.system' is not supported"),
        ("columns not JSON", "is not valid JSON"),
        ("vocabulary missing a field", "no vocabulary for feature 'C7'"),
        ("bad param", "--param 'dnn_hidden_units' must look like NAME=VALUE"),
    ],
)
def test_bad_input_is_one_error_line(criteo_models, tmp_path, case, message):
    trained = criteo_models.models["DeepFM"]
    out = tmp_path / "out"
    files: dict[str, Path] = {}
    if case == "missing weights":
        files["weights"] = tmp_path / "missing.pt"
    elif case == "other embedding size":
        files["weights"] = _wide_weights(trained, tmp_path)
    elif case == "columns not JSON":
        files["columns"] = _truncated_columns(trained, tmp_path)
    elif case == "vocabulary missing a field":
        files["vocabularies"] = _vocabularies_without_c7(trained, tmp_path)
    argv = import_argv(trained, out, **files)
    if case == "unknown class":
        argv[argv.index("--model-class") + 1] = "os.system"
    if case == "bad param":
        argv += ["--param", "dnn_hidden_units"]

    code, stdout, err = run_cli(argv)

    assert_one_line_error(code, err, message)
    assert stdout == ""
    assert not out.exists()
    if case == "other embedding size":
        size = len(criteo_models.vocabularies["C1"])
        assert f"({size}, 8) vs ({size}, 4)" in err
    if case == "missing weights":
        assert str(tmp_path / "missing.pt") in err


def test_existing_out_needs_overwrite(criteo_models, tmp_path):
    trained = criteo_models.models["DeepFM"]
    out = tmp_path / "deepfm"
    assert run_cli(import_argv(trained, out))[0] == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    other = criteo_models.models["AutoInt"]

    code, stdout, err = run_cli(import_argv(other, out))

    assert_one_line_error(code, err, "already exists; choose another --out or pass --overwrite")
    assert stdout == ""
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before

    code, stdout, err = run_cli([*import_argv(other, out), "--overwrite"])

    assert code == 0, err
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["architecture"] == "deepctr:AutoInt"


# ----- the app ------------------------------------------------------------------------------------


@pytest.fixture
def deepctr_app_env(monkeypatch, tmp_path, deepfm_bundle, criteo_data):
    """Point the app at a models folder with the imported DeepFM and a data folder with the Criteo rows."""
    models, data = tmp_path / "models", tmp_path / "data"
    shutil.copytree(deepfm_bundle, models / "deepctr-deepfm")
    data.mkdir()
    shutil.copy(criteo_data, data / "criteo.parquet")
    yield from point_app_at(monkeypatch, models, data)


def _open_app(page: str | None = None) -> AppTest:
    app = AppTest.from_file(str(APP_PATH), default_timeout=APP_TIMEOUT_S)
    app.session_state["importance_rows"] = IMPORTANCE_ROWS
    app.run()
    if page is not None:
        app.switch_page(page)
        app.run()
    return app


def _metric(app: AppTest, label: str) -> str:
    values = [m.value for m in app.metric if m.label == label]
    assert values, f"no metric labelled {label!r}; metrics: {[m.label for m in app.metric]}"
    return values[0]


def test_app_overview_opens_imported_bundle(deepctr_app_env, criteo_models):
    app = _open_app()

    assert not app.exception
    assert [e.value for e in app.error] == []
    assert "deepctr-deepfm" in app.sidebar.selectbox(key="bundle_choice").value
    assert _metric(app, "Architecture") == "deepctr:DeepFM"
    assert _metric(app, "Rows") == "2,000"
    labels = criteo_models.frame["label"].to_numpy()
    probabilities = deepctr_probabilities(criteo_models, criteo_models.models["DeepFM"].model, len(labels))
    assert _metric(app, "AUC") == f"{roc_auc_score(labels, probabilities):.4f}"


def test_app_importance_page_on_imported_bundle(deepctr_app_env):
    app = _open_app(IMPORTANCE_PAGE)

    assert not app.exception
    assert [e.value for e in app.error] == []
    assert _metric(app, "Rows explained") == f"{IMPORTANCE_ROWS:,}"
    charts = {chart.proto.id.rsplit("-", 1)[-1]: json.loads(chart.proto.spec) for chart in app.get("plotly_chart")}
    assert "importance_bar" in charts
    bar = charts["importance_bar"]["data"][0]
    assert set(bar["y"]) <= set(SPARSE + DENSE)
    assert len(bar["y"]) > 0


def test_whole_pickled_model_needs_allow_pickle(criteo_models, criteo_data, tmp_path):
    trained = criteo_models.models["DeepFM"]
    whole = build_deepctr_model("DeepFM", trained.spec, trained.params)
    whole.load_state_dict(torch.load(trained.weights_path, weights_only=True))
    pickled = tmp_path / "deepfm_whole.pt"
    torch.save(whole, pickled)

    code, stdout, stderr = run_cli(import_argv(trained, tmp_path / "refused", weights=pickled))
    assert code == 2
    assert "pass --allow-pickle" in stderr
    assert not (tmp_path / "refused").exists()

    with pytest.warns(UserWarning, match="deepfm_whole.pt"):
        code, _, stderr = run_cli([*import_argv(trained, tmp_path / "accepted", weights=pickled), "--allow-pickle"])
    assert code == 0, stderr
    expected = deepctr_probabilities(criteo_models, trained.model)
    np.testing.assert_allclose(bundle_probabilities(tmp_path / "accepted", criteo_data), expected, atol=1e-6, rtol=0)
    assert not list((tmp_path / "accepted").glob("*.pt"))  # the bundle keeps only safetensors weights
