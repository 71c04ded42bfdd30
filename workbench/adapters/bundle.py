"""Bundles of adapted models: the wrapped module's weights plus a recipe that rebuilds the module.

An adapted bundle is an ordinary bundle folder (``manifest.json`` and
``weights.safetensors``) whose manifest has an ``adapter`` entry::

    "adapter": {"kind": "fuxictr", "recipe": {...}}

The weights are the wrapped module's ``state_dict`` in safetensors, so
loading them never unpickles. The recipe describes how to build the module before
the weights are loaded. It names a class, never code: each kind's
``rebuild(recipe, schema)`` imports classes only from an installed package
(DeepCTR-Torch, fuxictr) or from a code folder the user allows (see
:func:`allowed_code_folder`), so a manifest alone cannot make the workbench
run code from an arbitrary place.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.adapters.module import AdapterError, ModuleAdapter
from workbench.schema import Schema

KIND_PACKAGES = {"fuxictr": "fuxictr", "deepctr": "deepctr-torch"}
"""Adapter kind → the distribution whose version an adapted bundle records."""

ADAPTER_KINDS = {
    "fuxictr": "workbench.adapters.fuxictr",
    "deepctr": "workbench.adapters.deepctr",
    "module": "workbench.adapters.factory",
}
"""Adapter kind → the workbench module whose ``rebuild(recipe, schema)`` builds it. Nothing else is imported."""

CODE_FOLDERS_ENV = "WORKBENCH_MODEL_ZOO"
"""Environment variable listing the folders (``os.pathsep``-separated) whose model code bundles may import."""


def allowed_code_folder(folder: str | Path, *, explicit: bool = False) -> Path:
    """Return ``folder`` resolved, if the user allowed code to be imported from it.

    Parameters
    ----------
    folder : str or Path
        A folder of model code (a FuxiCTR ``model_zoo``, an in-house package).
    explicit : bool, default=False
        The user named this folder in the current command (``--model-zoo``),
        which allows it. Otherwise it must be one of the folders in
        ``WORKBENCH_MODEL_ZOO``, or inside one of them.

    Raises
    ------
    AdapterError
        When the folder is missing or not allowed. The message explains how to allow it.
    """
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        msg = f"model code folder {str(folder)!r} does not exist; pass the folder that holds the model classes"
        raise AdapterError(msg)
    if explicit:
        return path
    allowed = [Path(item).expanduser().resolve() for item in os.environ.get(CODE_FOLDERS_ENV, "").split(os.pathsep) if item]
    if any(path == root or path.is_relative_to(root) for root in allowed):
        return path
    msg = (
        f"this bundle imports model code from {str(path)!r}, which is not an allowed model code folder; "
        f"if you trust that code, add the folder to {CODE_FOLDERS_ENV} (folders separated by {os.pathsep!r}), "
        "or start the app with `workbench serve --model-zoo FOLDER`"
    )
    raise AdapterError(msg)


def check_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Raise :class:`AdapterError` naming every tensor where ``state`` does not fit ``module``.

    Lists the tensors the module needs that ``state`` lacks, the ones it does
    not know, and the ones whose shapes differ (the checkpoint's shape against
    the module's), at most eight of each.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{key} {tuple(state[key].shape)} vs {tuple(tensor.shape)}"
        for key, tensor in expected.items()
        if key in state and tuple(state[key].shape) != tuple(tensor.shape)
    ]
    if not (missing or unexpected or shapes):
        return
    problems = []
    for label, items in (("missing", missing), ("not in the model", unexpected), ("shape (file vs model)", shapes)):
        if items:
            more = f" and {len(items) - 8} more" if len(items) > 8 else ""
            problems.append(f"{label}: {', '.join(items[:8])}{more}")
    msg = (
        f"the weights in {str(source)!r} do not fit the rebuilt {type(module).__name__}; "
        f"{'; '.join(problems)}. Check that the model class, its parameters and the feature description "
        "(FuxiCTR's feature map, DeepCTR-Torch's feature columns) are the ones the checkpoint was trained with"
    )
    raise AdapterError(msg)


def rebuild_adapter(manifest: Mapping[str, Any], schema: Schema) -> ModuleAdapter:
    """Build the adapter a manifest's ``adapter`` entry describes, with untrained weights."""
    entry = manifest.get("adapter")
    if not isinstance(entry, Mapping) or not isinstance(entry.get("recipe"), Mapping):
        msg = "the manifest's 'adapter' entry must be an object with 'kind' and 'recipe'"
        raise AdapterError(msg)
    kind = entry.get("kind")
    if kind not in ADAPTER_KINDS:
        msg = f"unknown adapter kind {kind!r}; this workbench opens {', '.join(ADAPTER_KINDS)}"
        raise AdapterError(msg)
    try:
        builder = importlib.import_module(ADAPTER_KINDS[kind])
    except ImportError as err:
        msg = f"opening a {kind} bundle needs the optional packages: pip install 'ctr-workbench[adapters]' ({err})"
        raise AdapterError(msg) from err
    adapter = builder.rebuild(dict(entry["recipe"]), schema)
    if not isinstance(adapter, ModuleAdapter):
        msg = f"the {kind} adapter built a {type(adapter).__name__}, not a ModuleAdapter"
        raise AdapterError(msg)
    return adapter


def save_adapted_bundle(
    adapter: ModuleAdapter,
    path: str | Path,
    *,
    kind: str,
    recipe: Mapping[str, Any],
    name: str | None = None,
    metrics: dict[str, dict[str, float]] | None = None,
    data: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an adapted model as a bundle folder; ``recipe`` must let ``rebuild`` of ``kind`` build it again.

    The folder is written like a native bundle (staged, then renamed into
    place) and opens with :func:`workbench.bundle.load_bundle`.
    """
    from workbench.bundle import write_bundle

    if kind not in ADAPTER_KINDS:
        msg = f"unknown adapter kind {kind!r}; use one of {', '.join(ADAPTER_KINDS)}"
        raise AdapterError(msg)
    # Copies: safetensors refuses tensors that share memory, and shared embedding tables appear under two names.
    state = {key: value.detach().cpu().clone().contiguous() for key, value in adapter.module.state_dict().items()}
    return write_bundle(
        path,
        state,
        architecture=adapter.architecture,
        hyperparameters=dict(adapter.hyperparameters),
        schema=adapter.schema,
        n_parameters=sum(p.numel() for p in adapter.module.parameters()),
        extra={"adapter": {"kind": kind, "recipe": dict(recipe)}},
        versions=_package_versions(kind),
        name=name,
        metrics=metrics,
        data=data,
        overwrite=overwrite,
    )


def _package_versions(kind: str) -> dict[str, str]:
    """Return the installed version of the library an adapter kind reads, if there is one."""
    package = KIND_PACKAGES.get(kind)
    if package is None:
        return {}
    try:
        return {package: importlib.metadata.version(package)}
    except importlib.metadata.PackageNotFoundError:
        return {}
