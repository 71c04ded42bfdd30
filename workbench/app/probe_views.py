"""Helpers the probe pages share: choosing probes, labelling fields with a row's raw values.

This module does not import Streamlit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench.figures import MAX_LABEL_CHARS, field_value_label
from workbench.probes import Probe, model_probes

ARCHITECTURES_WITH = {
    "gates": "GDCN (cross gates), FinalMLP (feature gates), FCN (self-masks), MaskNet (instance masks), "
    "FiBiNET (SENET field weights), FM and DeepFM (first-order weights)",
    "attention": "AutoInt+ (self-attention over fields)",
    "target_attention": "DIN, DIEN and the QIN-style model (target attention over past behaviours)",
    "pairs": "FM and DeepFM (pair products), DCNv2, GDCN and FCN (cross-matrix blocks), AutoInt+ (attention), "
    "FiBiNET (bilinear pairs), xDeepFM (first CIN layer)",
}
ADAPTED_NOTE = (
    " Models imported from FuxiCTR or DeepCTR-Torch have the probes listed in docs/adapters.md; "
    "in-house models have the probes their adapter declares."
)
"""Sentence added to the notes of the probe pages: imported models are not in the lists of architectures."""
SEQUENCE_NOTE = (
    " This model weighs past behaviours instead (target attention): the Attention page shows the weights, "
    "and the Sequence explorer of the Sample explorer compares them with per-behaviour attribution."
)
"""Sentence added to the notes of the field-level probe pages when the model is a behaviour-sequence model."""


def field_probes(model: object) -> list[Probe]:
    """Probes with one value per field (gates, masks, field weights), not pair maps."""
    return [p for p in model_probes(model) if p.axes and p.axes[-1] == "field" and not p.is_pair_map]


def attention_probes(model: object) -> list[Probe]:
    """Attention probes over fields."""
    return [p for p in model_probes(model) if p.kind == "attention" and p.is_pair_map]


def pair_probes(model: object) -> list[Probe]:
    """Probes that give a field x field map: pair weights and attention."""
    return [p for p in model_probes(model) if p.is_pair_map]


def probe_label(probe: Probe) -> str:
    """Select box label of a probe: name, kind and whether it varies per sample."""
    scope = "per sample" if probe.per_sample else "weights, same for every sample"
    return f"{probe.name} ({probe.kind}, {scope})"


def field_labels(displayed: pd.DataFrame, row: int, field_names: list[str]) -> list[str]:
    """``field = raw value`` labels of one data set row, shortened for axes."""
    values = displayed.iloc[row]
    return [field_value_label(name, values[name], MAX_LABEL_CHARS) for name in field_names]


FLAT_SPREAD = 0.01
"""A signal whose values span less than this share of their range (or of their mean size) counts as nearly constant."""


def flat_signal_note(values: np.ndarray, value_range: tuple[float, float] | None, manifest: dict[str, Any]) -> str | None:
    """Explain a nearly constant probe signal, or return None when its values vary enough to read.

    The span of the values is compared with the width of ``value_range`` for
    bounded signals (gates, attention), and otherwise with their mean absolute
    value.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return None
    low, high = float(finite.min()), float(finite.max())
    scale = value_range[1] - value_range[0] if value_range is not None else float(np.abs(finite).mean())
    if scale <= 0 or (high - low) >= FLAT_SPREAD * scale:
        return None
    regularizer = manifest.get("training", {}).get("config", {}).get("embedding_regularizer")
    trained = f" It was trained with an embedding L2 of {regularizer:g}." if isinstance(regularizer, (int, float)) else ""
    return (
        f"These values span only {low:.5g} to {high:.5g}, so this signal is nearly constant for this model.{trained} "
        "Small embeddings make attention close to uniform and gates close to neutral, and the prediction then "
        "comes from the model's other paths; the Interactions and Field importance pages show what drives it."
    )
