"""The registry of native architectures: name to class, and building a model by name."""

from __future__ import annotations

import inspect

from workbench.schema import Schema
from workbench.zoo.base import CTRModel
from workbench.zoo.fcn import FCN
from workbench.zoo.fibinet import FiBiNET
from workbench.zoo.finalmlp import FinalMLP
from workbench.zoo.gdcn import GDCN
from workbench.zoo.masknet import MaskNet
from workbench.zoo.models import AutoIntPlus, DCNv2, DeepFM, FactorizationMachine, LogisticRegression
from workbench.zoo.xdeepfm import XDeepFM

ARCHITECTURES: dict[str, type[CTRModel]] = {
    cls.architecture: cls
    for cls in (
        LogisticRegression,
        FactorizationMachine,
        DeepFM,
        DCNv2,
        AutoIntPlus,
        GDCN,
        FCN,
        FinalMLP,
        FiBiNET,
        MaskNet,
        XDeepFM,
    )
}


def accepted_hyperparameters(architecture: str) -> set[str]:
    """Names of the keyword hyper-parameters an architecture's constructor takes."""
    names = {"embedding_dim"}
    for cls in ARCHITECTURES[architecture].__mro__:
        if not (isinstance(cls, type) and issubclass(cls, CTRModel)):
            continue
        for parameter in inspect.signature(cls.__init__).parameters.values():
            if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
                names.add(parameter.name)
    return names


def build_model(architecture: str, schema: Schema, **hyperparameters) -> CTRModel:
    """Build a native model by architecture name (``lr``, ``fm``, ``deepfm``, ``dcnv2``, ``autoint+``)."""
    key = architecture.lower()
    if key not in ARCHITECTURES:
        msg = f"unknown architecture {architecture!r}; available: {', '.join(ARCHITECTURES)}"
        raise ValueError(msg)
    accepted = accepted_hyperparameters(key)
    unknown = sorted(set(hyperparameters) - accepted)
    if unknown:
        msg = f"unknown hyper-parameter(s) {', '.join(unknown)} for {key}; accepted: {', '.join(sorted(accepted))}"
        raise ValueError(msg)
    try:
        return ARCHITECTURES[key](schema, **hyperparameters)
    except TypeError as err:
        msg = f"invalid hyper-parameters for {key}: {err}"
        raise ValueError(msg) from err
