"""Bundles of in-house models: a function in an allowed code folder builds the adapter.

The recipe of a ``module`` bundle names a Python file in a folder the user
allows (``WORKBENCH_MODEL_ZOO``), a function in it and JSON arguments::

    {"folder": "/home/me/ctr_models", "file": "tower.py", "function": "make_adapter",
     "args": {"embedding_dim": 16}}

Loading the bundle imports that file and calls ``make_adapter(schema, **args)``,
which must return a :class:`ModuleAdapter` with untrained weights; the
bundle's weights are then loaded into its ``module``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from workbench.adapters.bundle import allowed_code_folder
from workbench.adapters.module import AdapterError, ModuleAdapter
from workbench.schema import Schema


def import_file(folder: Path, file: str) -> Any:
    """Import ``folder/file`` as a module under a name unique to its path, so equal file names do not clash."""
    path = (folder / file).resolve()
    if not path.is_relative_to(folder) or path.suffix != ".py" or not path.is_file():
        msg = f"{file!r} must be a .py file inside {str(folder)!r}"
        raise AdapterError(msg)
    return import_unique(path)


def import_unique(path: Path, *, what: str = "", error: type[AdapterError] = AdapterError) -> Any:
    """Import a ``.py`` file, or a package folder's ``__init__.py``, under a name unique to its path.

    Two model folders may both hold ``src/__init__.py`` or ``model.py``; a
    plain import would return whichever came first. ``what`` names the thing
    in the error message, and ``error`` is the exception type raised.
    """
    package = path.is_dir()
    name = "workbench_user_code_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    if package:
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py", submodule_search_locations=[str(path)]
        )
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot import {str(path)!r}"
        raise error(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        label = f"{what} {str(path)!r}" if what else repr(str(path))
        msg = f"importing {label} failed: {type(err).__name__}: {err}"
        raise error(msg) from err
    return module


def rebuild(recipe: dict[str, Any], schema: Schema, *, explicit: bool = False) -> ModuleAdapter:
    """Build the adapter of a ``module`` bundle from its recipe (see the module docstring)."""
    for key, kind in (("folder", str), ("file", str), ("function", str)):
        if not isinstance(recipe.get(key), kind):
            msg = f"the adapter recipe needs a string {key!r}; got {recipe.get(key)!r}"
            raise AdapterError(msg)
    args = recipe.get("args", {})
    if not isinstance(args, dict):
        msg = f"the adapter recipe's 'args' must be a JSON object; got {type(args).__name__}"
        raise AdapterError(msg)
    folder = allowed_code_folder(recipe["folder"], explicit=explicit)
    module = import_file(folder, recipe["file"])
    function = getattr(module, recipe["function"], None)
    if not callable(function):
        msg = f"{recipe['file']!r} in {str(folder)!r} has no function {recipe['function']!r}"
        raise AdapterError(msg)
    adapter = function(schema, **args)
    if not isinstance(adapter, ModuleAdapter):
        msg = f"{recipe['function']}() returned {type(adapter).__name__}; it must return a ModuleAdapter"
        raise AdapterError(msg)
    return adapter
