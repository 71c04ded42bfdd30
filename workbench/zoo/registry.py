"""The registry of native architectures: name to class, and building a model by name."""

from __future__ import annotations

import inspect
import json
from typing import Any

from workbench.schema import Schema
from workbench.zoo.base import CTRModel
from workbench.zoo.fcn import FCN
from workbench.zoo.fibinet import FiBiNET
from workbench.zoo.finalmlp import FinalMLP
from workbench.zoo.gdcn import GDCN
from workbench.zoo.masknet import MaskNet
from workbench.zoo.models import DNN, AutoIntPlus, DCNv2, DeepFM, FactorizationMachine, LogisticRegression
from workbench.zoo.sequence import DIEN, DIN, QINStyle
from workbench.zoo.xdeepfm import XDeepFM

ARCHITECTURES: dict[str, type[CTRModel]] = {
    cls.architecture: cls
    for cls in (
        LogisticRegression,
        FactorizationMachine,
        DNN,
        DeepFM,
        DCNv2,
        AutoIntPlus,
        GDCN,
        FCN,
        FinalMLP,
        FiBiNET,
        MaskNet,
        XDeepFM,
        DIN,
        DIEN,
        QINStyle,
    )
}


def _keyword_defaults(architecture: str) -> dict[str, Any]:
    """Default value of every keyword-only constructor argument, the subclass's default first."""
    defaults: dict[str, Any] = {}
    for cls in ARCHITECTURES[architecture].__mro__:
        if not (isinstance(cls, type) and issubclass(cls, CTRModel)):
            continue
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                defaults.setdefault(parameter.name, parameter.default)
    return defaults


def accepted_hyperparameters(architecture: str) -> set[str]:
    """Names of the keyword hyper-parameters an architecture's constructor takes."""
    return {"embedding_dim", *_keyword_defaults(architecture)}


def _matches(value: Any, default: Any) -> bool:
    """Check whether ``value`` has the type of ``default``. An int counts as a float, and a list matches a tuple."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            return False
        return not default or all(_matches(item, default[0]) for item in value)
    return True


def _check_types(architecture: str, hyperparameters: dict[str, Any]) -> None:
    """Raise ValueError for a hyper-parameter whose value does not have the type of its default.

    Values from a manifest or from ``--param`` are JSON, so a typo such as
    ``"high"`` for a dropout or ``[1.5]`` for layer sizes would otherwise fail
    deep inside a layer with a message that does not name the hyper-parameter.
    """
    defaults = _keyword_defaults(architecture)
    for name, value in hyperparameters.items():
        default = defaults.get(name, inspect.Parameter.empty)
        # An empty default list (FinalMLP's context fields) gives no element type; the class checks those itself.
        unknown_type = default is None or (isinstance(default, (list, tuple)) and not default)
        if default is inspect.Parameter.empty or unknown_type or _matches(value, default):
            continue
        # Examples are written as JSON (true, "parallel"), the form --param and manifests use.
        if isinstance(default, (list, tuple)):
            expected = f"a list of {type(default[0]).__name__}s such as {json.dumps(list(default))}"
        else:
            kind = type(default).__name__
            expected = f"{'an' if kind == 'int' else 'a'} {kind} such as {json.dumps(default)}"
        msg = f"hyper-parameter {name} of {architecture} must be {expected}; got {value!r}"
        raise ValueError(msg)


def build_model(architecture: str, schema: Schema, **hyperparameters) -> CTRModel:
    """Build a native model by architecture name (a key of :data:`ARCHITECTURES`), checking the hyper-parameters."""
    key = architecture.lower()
    if key not in ARCHITECTURES:
        msg = f"unknown architecture {architecture!r}; available: {', '.join(ARCHITECTURES)}"
        raise ValueError(msg)
    accepted = accepted_hyperparameters(key)
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        msg = f"unknown hyper-parameter(s) {', '.join(unknown)} for {key}; accepted: {', '.join(sorted(accepted))}"
        raise ValueError(msg)
    _check_types(key, hyperparameters)
    try:
        return ARCHITECTURES[key](schema, **hyperparameters)
    except TypeError as err:
        msg = f"invalid hyper-parameters for {key}: {err}"
        raise ValueError(msg) from err
