"""Helpers of the sequence-model views: which models have histories, labels of behaviours, choices for edits.

This module does not import Streamlit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from workbench.figures import MAX_LABEL_CHARS, display_value
from workbench.probes import Probe, model_probes
from workbench.sequence_edits import SEQUENCE_ACTIONS, SequenceEdit, edits_table

TARGET_ATTENTION = "target_attention"
MAX_INSERT_CHOICES = 5_000
"""Largest number of item values offered when inserting a behaviour; larger vocabularies offer their most frequent values."""

ACTION_LABELS = {
    "drop": "drop chosen behaviours",
    "drop_top_k": "drop the k most influential",
    "insert": "insert an item as the most recent",
    "move_to_recent": "move a behaviour to the most recent",
    "reverse": "reverse the order",
}
"""Short select box labels of the actions; ``SEQUENCE_ACTIONS`` gives the full descriptions."""


def is_sequence_model(model: Any) -> bool:
    """Return whether ``model`` reads paired behaviour histories position by position (din, dien, qin)."""
    return hasattr(model, "pairs") and hasattr(model, "history_length") and hasattr(model, "behaviour_players")


def target_attention_probe(model: Any) -> Probe | None:
    """Return the model's target attention probe over history positions, or None when it has none."""
    for probe in model_probes(model):
        if probe.name == TARGET_ATTENTION and probe.axes == ("position",):
            return probe
    return None


def is_softmax_normalised(probe: Probe) -> bool | None:
    """Read from the probe's description whether its weights are a softmax over the present behaviours.

    Returns None when the description states neither.
    """
    text = probe.description.lower()
    if "not normalised" in text or "no softmax" in text:
        return False
    if "softmax" in text:
        return True
    return None


def normalisation_note(probe: Probe, weights: np.ndarray, present: np.ndarray) -> str:
    """Describe whether one sample's weights sum to 1, with their measured sum over the present behaviours."""
    total = float(np.asarray(weights, dtype=np.float64)[np.asarray(present, dtype=bool)].sum())
    normalised = is_softmax_normalised(probe)
    if normalised is True:
        return (
            f"The weights are softmax-normalised over the present behaviours, so they sum to 1 per sample "
            f"(this row: {total:.4f}). A weight shows a behaviour's share of the attention."
        )
    if normalised is False:
        return (
            f"The weights are not normalised (no softmax), so they need not sum to 1 (this row: {total:.4f}). "
            "Compare weights within a sample; their scale differs between samples."
        )
    return f"This row's weights sum to {total:.4f} over its present behaviours."


def behaviour_label(position: int, item: str) -> str:
    """Select box label of one behaviour, such as ``position 3: sports``."""
    return f"position {int(position)}: {display_value(item, MAX_LABEL_CHARS)}"


def present_positions(present: np.ndarray) -> list[int]:
    return [int(p) for p in np.flatnonzero(np.asarray(present, dtype=bool))]


def insert_choices(model: Any, limit: int = MAX_INSERT_CHOICES) -> tuple[list[str], int]:
    """Values of the first paired history's vocabulary, most frequent in training first, at most ``limit`` of them.

    Returns the values and the size of the whole vocabulary.
    """
    history = model.pairs[0][0]
    vocabulary = model.schema[history].vocabulary
    order = np.argsort(-np.asarray(vocabulary.counts, dtype=np.int64), kind="stable")
    return [vocabulary.values[i] for i in order[:limit]], len(vocabulary.values)


def paired_histories(model: Any) -> list[str]:
    return [history for history, _ in model.pairs]


def edits_frame(edits: list[SequenceEdit]) -> pd.DataFrame:
    """Build the table of one row's edits, with a running number (the number on the deltas chart)."""
    frame = edits_table(edits)
    frame.insert(0, "number", np.arange(1, len(frame) + 1))
    return frame


def agreement_text(correlation: float, n_present: int) -> str:
    """Format the Spearman correlation of |attention| with |attribution|, or explain why it is undefined."""
    if np.isfinite(correlation):
        return f"{correlation:+.3f}"
    if n_present < 3:
        return "undefined (fewer than 3 behaviours)"
    return "undefined (a constant side)"
