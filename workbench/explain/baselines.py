"""Baselines expressed as model inputs: what an "absent" field is replaced with."""

from __future__ import annotations

import torch

from workbench.schema import PAD_INDEX, Schema

BASELINES = {
    "zero": "zero embedding: PAD id, numeric value at its training mean, empty history, zero vector",
    "oov": "OOV id for categorical fields; other fields as in 'zero'",
}


def baseline_inputs(schema: Schema, inputs: dict[str, torch.Tensor], baseline: str) -> dict[str, torch.Tensor]:
    """Return inputs shaped like ``inputs`` that encode ``baseline`` for every sample."""
    if baseline not in BASELINES:
        msg = f"unknown baseline {baseline!r}; available: {', '.join(BASELINES)}"
        raise ValueError(msg)
    out = {}
    for f in schema.fields:
        x = inputs[f.name]
        if f.kind == "categorical" and baseline == "oov":
            assert f.vocabulary is not None
            out[f.name] = torch.full_like(x, f.vocabulary.oov_index)
        elif f.kind in ("categorical", "sequence"):
            out[f.name] = torch.full_like(x, PAD_INDEX)
        else:
            out[f.name] = torch.zeros_like(x)
    return out
