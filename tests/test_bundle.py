"""Bundles: save/load round trip, manifest contents and the checks on load."""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import numpy as np
import pytest
import sklearn
import torch
from safetensors.torch import load_file, save_file

import workbench
from helpers import TINY_HYPERPARAMETERS, build_tiny_model, synthetic_splits
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.bundle import (
    BUNDLE_FORMAT,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    BundleError,
    find_bundles,
    load_bundle,
    read_manifest,
    save_bundle,
)
from workbench.training import TrainConfig, predict_logits, train

ALL_ARCHITECTURES = sorted(TINY_HYPERPARAMETERS)
METRICS = {"valid": {"auc": 0.75, "logloss": 0.5}, "test": {"auc": 0.7, "logloss": 0.55}}


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=1500, n_valid=500, n_test=1000, seed=11)


@pytest.fixture(scope="module")
def trained_models(splits):
    """One briefly trained tiny model per architecture (batch-norm statistics are no longer trivial)."""
    models = {}
    for architecture in ALL_ARCHITECTURES:
        model = build_tiny_model(architecture, splits.schema)
        config = TrainConfig(epochs=1, batch_size=128, learning_rate=1e-2, seed=0)
        train(model, splits.train, splits.valid, config, show_progress=False)
        models[architecture] = model
    return models


@pytest.fixture
def saved(trained_models, tmp_path):
    """A DeepFM bundle folder written to tmp_path."""
    return save_bundle(trained_models["deepfm"], tmp_path / "deepfm", metrics=METRICS)


def _manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))


def _write_manifest(path: Path, manifest: dict) -> None:
    (path / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")


def _replace_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Write new weights and record their SHA-256, so only the tensor check can object."""
    save_file(state, path / WEIGHTS_NAME)
    manifest = _manifest(path)
    manifest["weights"]["sha256"] = hashlib.sha256((path / WEIGHTS_NAME).read_bytes()).hexdigest()
    _write_manifest(path, manifest)


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- Round trip -----------------------------------------------------------


@pytest.mark.parametrize("architecture", ALL_ARCHITECTURES)
def test_round_trip_predictions(trained_models, splits, tmp_path, architecture):
    model = trained_models[architecture]
    save_bundle(model, tmp_path / architecture)

    bundle = load_bundle(tmp_path / architecture)
    before = predict_logits(model, splits.test)
    after = predict_logits(bundle.model, splits.test)

    assert len(splits.test) == 1000
    assert float(np.max(np.abs(before - after))) <= 1e-6


@pytest.mark.parametrize("architecture", ALL_ARCHITECTURES)
def test_round_trip_state(trained_models, tmp_path, architecture):
    model = trained_models[architecture]
    save_bundle(model, tmp_path / architecture)

    loaded = load_bundle(tmp_path / architecture).model.state_dict()

    assert set(loaded) == set(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_loaded_model_eval_mode(saved):
    bundle = load_bundle(saved)

    assert not bundle.model.training


def test_loaded_schema_equal(saved, splits):
    bundle = load_bundle(saved)

    assert bundle.schema.to_dict() == splits.schema.to_dict()


def test_bundle_properties(saved, trained_models):
    bundle = load_bundle(saved)

    assert bundle.name == "deepfm"
    assert bundle.architecture == "deepfm"
    assert bundle.metrics == METRICS
    assert bundle.n_parameters == sum(p.numel() for p in trained_models["deepfm"].parameters())
    assert bundle.path == saved.resolve()


# --- Manifest -------------------------------------------------------------


def test_manifest_contents(saved, trained_models, splits):
    manifest = _manifest(saved)
    model = trained_models["deepfm"]

    assert manifest["format"] == BUNDLE_FORMAT
    assert manifest["format_version"] == 1
    assert manifest["name"] == "deepfm"
    assert manifest["architecture"] == "deepfm"
    assert manifest["hyperparameters"] == {"embedding_dim": 4, **TINY_HYPERPARAMETERS["deepfm"]}
    assert manifest["schema"] == splits.schema.to_dict()
    assert manifest["metrics"] == METRICS
    assert manifest["weights"]["file"] == WEIGHTS_NAME
    assert manifest["weights"]["n_parameters"] == sum(p.numel() for p in model.parameters())
    assert manifest["weights"]["tensors"] == {k: list(v.shape) for k, v in model.state_dict().items()}


def test_manifest_vocabularies(saved, splits):
    fields = {f["name"]: f for f in _manifest(saved)["schema"]["fields"]}

    assert fields["city"]["vocabulary"] == splits.schema["city"].vocabulary.values
    assert fields["history"]["vocabulary"] == splits.schema["history"].vocabulary.values
    assert fields["age"]["mean"] == pytest.approx(splits.schema["age"].mean)
    assert fields["vec"]["dim"] == 2


def test_manifest_weights_sha256(saved):
    digest = hashlib.sha256((saved / WEIGHTS_NAME).read_bytes()).hexdigest()

    assert _manifest(saved)["weights"]["sha256"] == digest


def test_manifest_versions(saved):
    versions = _manifest(saved)["versions"]

    assert versions == {
        "workbench": workbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def test_manifest_name_training_data(trained_models, tmp_path):
    path = save_bundle(
        trained_models["lr"],
        tmp_path / "folder",
        name="My LR",
        training={"best_epoch": 1},
        data={"train": {"rows": 10}},
    )

    manifest = read_manifest(path)

    assert manifest["name"] == "My LR"
    assert manifest["training"] == {"best_epoch": 1}
    assert manifest["data"] == {"train": {"rows": 10}}


def test_manifest_created_timestamp(saved):
    created = _manifest(saved)["created"]

    assert created.endswith("+00:00")
    assert len(created) == len("2024-01-01T00:00:00+00:00")


def test_manifest_strict_json_nan_metric(trained_models, tmp_path):
    path = save_bundle(trained_models["lr"], tmp_path / "nan", metrics={"test": {"auc": float("nan")}})

    def reject(token):
        msg = f"non-standard JSON token {token}"
        raise ValueError(msg)

    json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"), parse_constant=reject)


# --- Save guards ----------------------------------------------------------


def test_save_refuses_existing_folder(trained_models, tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "notes.txt").write_text("keep me", encoding="utf-8")
    before = _listing(target)

    with pytest.raises(BundleError, match=r"'.*existing' already exists; choose another output folder or pass overwrite=True"):
        save_bundle(trained_models["fm"], target)

    assert _listing(target) == before


def test_save_refuses_existing_bundle(trained_models, saved):
    before = _listing(saved)

    with pytest.raises(BundleError, match="already exists"):
        save_bundle(trained_models["fm"], saved)

    assert _listing(saved) == before


def test_save_overwrite_replaces(trained_models, saved):
    (saved / "stale.txt").write_text("old", encoding="utf-8")

    save_bundle(trained_models["fm"], saved, overwrite=True)

    assert load_bundle(saved).architecture == "fm"
    assert not (saved / "stale.txt").exists()


def test_save_leaves_no_staging(trained_models, tmp_path):
    save_bundle(trained_models["fm"], tmp_path / "a")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_save_creates_parents(trained_models, tmp_path):
    path = save_bundle(trained_models["lr"], tmp_path / "x" / "y" / "lr")

    assert (path / MANIFEST_NAME).is_file()
    assert (path / WEIGHTS_NAME).is_file()


def test_find_bundles(trained_models, tmp_path):
    save_bundle(trained_models["lr"], tmp_path / "b_lr")
    save_bundle(trained_models["fm"], tmp_path / "a_fm")
    (tmp_path / "not_a_bundle").mkdir()

    assert [p.name for p in find_bundles(tmp_path)] == ["a_fm", "b_lr"]
    assert find_bundles(tmp_path / "missing") == []


# --- Load errors ----------------------------------------------------------


def test_load_missing_folder(tmp_path):
    with pytest.raises(BundleError, match=r"bundle folder not found: '.*nowhere'"):
        load_bundle(tmp_path / "nowhere")


def test_load_missing_manifest(tmp_path):
    (tmp_path / "empty").mkdir()

    with pytest.raises(BundleError, match=r"'.*empty' is not a bundle: manifest\.json is missing"):
        load_bundle(tmp_path / "empty")


def test_load_invalid_json(saved):
    (saved / MANIFEST_NAME).write_text("{not json", encoding="utf-8")

    with pytest.raises(BundleError, match=r"manifest\.json' is not valid JSON"):
        load_bundle(saved)


def test_load_foreign_manifest(saved):
    _write_manifest(saved, {"format": "something-else"})

    with pytest.raises(BundleError, match=r"is not a CTR Workbench manifest \(expected format 'ctr-workbench-bundle'\)"):
        load_bundle(saved)


def test_load_wrong_format_version(saved):
    manifest = _manifest(saved)
    manifest["format_version"] = 2
    _write_manifest(saved, manifest)

    with pytest.raises(BundleError, match="has format_version 2; this workbench reads version 1"):
        load_bundle(saved)


def test_load_manifest_without_schema(saved):
    manifest = _manifest(saved)
    del manifest["schema"]
    _write_manifest(saved, manifest)

    with pytest.raises(BundleError, match="has no 'schema' entry"):
        load_bundle(saved)


def test_load_missing_weights(saved):
    (saved / WEIGHTS_NAME).unlink()

    with pytest.raises(BundleError, match=r"has no weights\.safetensors"):
        load_bundle(saved)


def test_load_tampered_weights(saved):
    data = bytearray((saved / WEIGHTS_NAME).read_bytes())
    data[-1] ^= 0xFF
    (saved / WEIGHTS_NAME).write_bytes(bytes(data))

    with pytest.raises(BundleError, match=r"does not match its manifest \(SHA-256 differs\)"):
        load_bundle(saved)


def test_load_unreadable_weights(saved):
    (saved / WEIGHTS_NAME).write_bytes(b"garbage")
    manifest = _manifest(saved)
    manifest["weights"]["sha256"] = hashlib.sha256(b"garbage").hexdigest()
    _write_manifest(saved, manifest)

    with pytest.raises(BundleError, match="is not a readable safetensors file"):
        load_bundle(saved)


def test_load_weights_missing_tensor(saved):
    state = load_file(saved / WEIGHTS_NAME)
    del state["bias"]
    _replace_weights(saved, state)

    with pytest.raises(BundleError, match=r"do not match the architecture in the manifest: missing \['bias'\], unexpected \[\]"):
        load_bundle(saved)


def test_load_weights_extra_tensor(saved):
    state = load_file(saved / WEIGHTS_NAME)
    state["extra.weight"] = torch.zeros(2)
    _replace_weights(saved, state)

    with pytest.raises(BundleError, match=r"missing \[\], unexpected \['extra\.weight'\]"):
        load_bundle(saved)


def test_load_weights_wrong_shape(saved):
    manifest = _manifest(saved)
    manifest["hyperparameters"]["hidden_units"] = [16]
    _write_manifest(saved, manifest)

    with pytest.raises(BundleError, match=r"dnn\.layers\.0\.weight has shape \(8, 20\), the manifest's model needs \(16, 20\)"):
        load_bundle(saved)


def test_load_unknown_architecture(saved):
    manifest = _manifest(saved)
    manifest["architecture"] = "pnn"
    _write_manifest(saved, manifest)

    with pytest.raises(BundleError, match="cannot rebuild the model described in .*unknown architecture 'pnn'"):
        load_bundle(saved)


def test_load_invalid_schema(saved):
    manifest = _manifest(saved)
    manifest["schema"]["fields"][0]["kind"] = "text"
    _write_manifest(saved, manifest)

    with pytest.raises(BundleError, match="cannot rebuild the model described in .*unknown kind 'text'"):
        load_bundle(saved)


@pytest.mark.parametrize("name", ["weights.safetensors", "manifest.json"])
def test_bundle_file_linked_outside_is_rejected(tmp_path, name):
    import shutil

    from workbench.bundle import BundleError, load_bundle

    source = Path(__file__).resolve().parents[1] / "models" / "ad_clicks_lr"
    bundle = tmp_path / "bundle"
    shutil.copytree(source, bundle)
    outside = tmp_path / f"outside-{name}"
    (bundle / name).rename(outside)
    (bundle / name).symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle folder"):
        load_bundle(bundle)
