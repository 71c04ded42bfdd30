"""Model bundles: a folder with ``manifest.json`` and ``weights.safetensors``.

The manifest records everything needed to rebuild the model without running
code from the bundle: architecture name (looked up in the native registry),
hyper-parameters, the fitted schema with vocabularies, metrics, the training
configuration, fingerprints of the data it was trained on and the library
versions. Weights are read with safetensors only, so loading never unpickles.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import workbench
from workbench.data import file_fingerprint
from workbench.schema import Schema, SchemaError
from workbench.zoo import ARCHITECTURES, CTRModel, build_model

MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "weights.safetensors"
BUNDLE_FORMAT = "ctr-workbench-bundle"
BUNDLE_FORMAT_VERSION = 1


class BundleError(ValueError):
    """Raised when a bundle folder is missing, malformed or inconsistent."""


@dataclass
class Bundle:
    """A loaded model (in eval mode) with its manifest and folder."""

    model: CTRModel
    manifest: dict[str, Any]
    path: Path

    @property
    def schema(self) -> Schema:
        return self.model.schema

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def architecture(self) -> str:
        return str(self.manifest["architecture"])

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return dict(self.manifest.get("metrics", {}))

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities by None so that the result is strict JSON."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a model's numbers."""
    import sklearn

    return {
        "workbench": workbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def save_bundle(
    model: CTRModel,
    path: str | Path,
    *,
    name: str | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    training: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a bundle folder at ``path`` and return the path.

    An existing folder is only replaced when ``overwrite`` is true. The bundle
    is written to a temporary folder first, so a failed save leaves nothing half
    written. The old folder is renamed aside and removed after the new one is
    in place.

    NOTE: a process killed between those two renames leaves the old bundle as
    ``.<name>.previous-<pid>`` next to the target, not at the target.
    """
    if model.architecture not in ARCHITECTURES:
        msg = f"only native architectures can be bundled; got {type(model).__name__}"
        raise BundleError(msg)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    return write_bundle(
        path,
        state,
        architecture=model.architecture,
        hyperparameters=model.hyperparameters,
        schema=model.schema,
        n_parameters=sum(p.numel() for p in model.parameters()),
        name=name,
        metrics=metrics,
        training=training,
        data=data,
        overwrite=overwrite,
    )


def write_bundle(
    path: str | Path,
    state: dict[str, torch.Tensor],
    *,
    architecture: str,
    hyperparameters: dict[str, Any],
    schema: Schema,
    n_parameters: int,
    extra: dict[str, Any] | None = None,
    versions: dict[str, str] | None = None,
    name: str | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    training: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle folder from a state dict and the manifest's entries; see :func:`save_bundle`.

    ``extra`` adds entries to the manifest, such as the ``adapter`` entry of
    an adapted model (``workbench.adapters.bundle``), and ``versions`` adds
    library versions to the recorded ones.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"{str(path)!r} already exists; choose another output folder or pass overwrite=True (--overwrite)"
        raise BundleError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=path.parent))
    try:
        save_file(state, staging / WEIGHTS_NAME, metadata={"format": BUNDLE_FORMAT})
        manifest = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_FORMAT_VERSION,
            "name": name or path.name,
            "architecture": architecture,
            "hyperparameters": hyperparameters,
            "schema": schema.to_dict(),
            **(extra or {}),
            "metrics": metrics or {},
            "training": training or {},
            "data": data or {},
            "versions": {**library_versions(), **(versions or {})},
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "weights": {
                "file": WEIGHTS_NAME,
                "sha256": file_fingerprint(staging / WEIGHTS_NAME),
                "n_parameters": int(n_parameters),
                "tensors": {key: list(value.shape) for key, value in state.items()},
            },
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(json_safe(manifest), indent=1, allow_nan=False) + "\n", encoding="utf-8")
        _apply_umask(staging)
        # Move the old bundle aside instead of deleting it first: the old folder is only removed once the
        # new one is in place, so an interrupted overwrite cannot lose both.
        previous = path.with_name(f".{path.name}.previous-{os.getpid()}") if path.exists() else None
        if previous is not None:
            path.rename(previous)
        staging.rename(path)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return path


def _apply_umask(folder: Path) -> None:
    """Give a staged bundle the permissions of a normally created folder.

    ``tempfile.mkdtemp`` creates folders readable by the owner only, which
    would hide the bundle from an app server that runs as another user.
    """
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for item in folder.iterdir():
        item.chmod(0o666 & ~umask)


def _check_inside(file: Path, folder: Path) -> None:
    # A symbolic link could make a bundle read a file elsewhere on the machine.
    if not file.resolve().is_relative_to(folder.resolve()):
        msg = (
            f"{str(file)!r} is a link to {str(file.resolve())!r}, outside the bundle folder; "
            "copy the file into the folder as a plain file"
        )
        raise BundleError(msg)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read and check a bundle's manifest without loading weights."""
    path = Path(path)
    if not path.is_dir():
        msg = f"bundle folder not found: {str(path)!r} (a bundle is a folder with {MANIFEST_NAME} and {WEIGHTS_NAME})"
        raise BundleError(msg)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        msg = f"{str(path)!r} is not a bundle: {MANIFEST_NAME} is missing"
        raise BundleError(msg)
    _check_inside(manifest_path, path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        msg = f"{str(manifest_path)!r} is not valid JSON: {err}"
        raise BundleError(msg) from err
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        msg = f"{str(manifest_path)!r} is not a CTR Workbench manifest (expected format {BUNDLE_FORMAT!r})"
        raise BundleError(msg)
    version = manifest.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        msg = (
            f"{str(manifest_path)!r} has format_version {version!r}; this workbench reads version "
            f"{BUNDLE_FORMAT_VERSION}, so upgrade the workbench or re-export the bundle"
        )
        raise BundleError(msg)
    for key in ("architecture", "hyperparameters", "schema", "weights"):
        if key not in manifest:
            msg = f"{str(manifest_path)!r} has no {key!r} entry"
            raise BundleError(msg)
    if not isinstance(manifest["architecture"], str):
        msg = (
            f"{str(manifest_path)!r} has architecture {manifest['architecture']!r}; it must be the name of a "
            f"native architecture ({', '.join(ARCHITECTURES)})"
        )
        raise BundleError(msg)
    for key in ("hyperparameters", "schema", "weights"):
        if not isinstance(manifest[key], dict):
            msg = f"{str(manifest_path)!r} has a {key!r} entry of type {type(manifest[key]).__name__}; it must be a JSON object"
            raise BundleError(msg)
    return manifest


def load_bundle(path: str | Path) -> Bundle:
    """Rebuild a bundle's model from its manifest and load its weights (eval mode)."""
    path = Path(path).resolve()
    manifest = read_manifest(path)
    weights_path = path / WEIGHTS_NAME
    if not weights_path.is_file():
        msg = f"{str(path)!r} has no {WEIGHTS_NAME}"
        raise BundleError(msg)
    _check_inside(weights_path, path)
    expected_hash = manifest["weights"].get("sha256")
    if expected_hash and file_fingerprint(weights_path) != expected_hash:
        msg = (
            f"{str(weights_path)!r} does not match its manifest (SHA-256 differs); the weights were changed "
            "or belong to another bundle"
        )
        raise BundleError(msg)
    try:
        schema = Schema.from_dict(manifest["schema"])
        unfitted = [f.name for f in schema.fields if f.kind in ("categorical", "sequence") and f.vocabulary is None]
        if unfitted:
            msg = f"the schema has no vocabulary for the field(s) {', '.join(unfitted)}"
            raise BundleError(msg)
        if "adapter" in manifest:
            from workbench.adapters.bundle import rebuild_adapter

            model = rebuild_adapter(manifest, schema)
        else:
            model = build_model(manifest["architecture"], schema, **manifest["hyperparameters"])
    except (SchemaError, ValueError, TypeError, OverflowError, RuntimeError) as err:
        # torch raises RuntimeError when a layer size overflows, such as embedding_dim 2**62 for a DNN.
        msg = f"cannot rebuild the model described in {str(path / MANIFEST_NAME)!r}: {err}"
        raise BundleError(msg) from err
    try:
        state = load_file(weights_path)
    except (SafetensorError, OSError) as err:
        msg = f"{str(weights_path)!r} is not a readable safetensors file: {err}"
        raise BundleError(msg) from err
    if "adapter" in manifest:
        from workbench.adapters.bundle import check_state_dict

        try:
            check_state_dict(model.module, state, weights_path)
        except ValueError as err:
            raise BundleError(str(err)) from err
        model.module.load_state_dict(state, strict=True)
    else:
        _check_state(model, state, path)
        model.load_state_dict(state, strict=True)
    model.eval()
    return Bundle(model=model, manifest=manifest, path=path)


def _check_state(model: CTRModel, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        msg = (
            f"weights in {str(path)!r} do not match the architecture in the manifest: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
        raise BundleError(msg)
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            msg = (
                f"weights in {str(path)!r} do not match the manifest: {key} has shape "
                f"{tuple(state[key].shape)}, the manifest's model needs {tuple(tensor.shape)}"
            )
            raise BundleError(msg)


def find_bundles(root: str | Path) -> list[Path]:
    """Return the bundle folders directly under ``root`` (sorted by name)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / MANIFEST_NAME).is_file())
