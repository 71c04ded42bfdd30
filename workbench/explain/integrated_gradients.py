"""Field-level Integrated Gradients on the field embedding layer (captum).

IG integrates the gradient of the logit along the straight path from the
baseline's field embeddings to the sample's, so it needs a differentiable
input. Integer ids are not, which is why the path runs over the output of the
embedding layer (captum ``LayerIntegratedGradients``) and the per-field result
is the sum over that field's embedding slot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients

from workbench.data import CTRDataset
from workbench.explain.baselines import baseline_inputs
from workbench.explain.game import model_players
from workbench.explain.result import Attribution
from workbench.zoo.base import CTRModel

DEFAULT_N_STEPS = 50


def integrated_gradients(
    model: CTRModel,
    dataset: CTRDataset,
    rows: np.ndarray | None = None,
    *,
    baseline: str = "zero",
    n_steps: int = DEFAULT_N_STEPS,
    batch_size: int = 128,
    players: Mapping[str, Sequence[str]] | None = None,
    progress: Callable[[float], None] | None = None,
) -> Attribution:
    """Attribute each sample's logit to its fields with Integrated Gradients.

    Parameters
    ----------
    model : the model; it runs in eval mode and its previous mode is restored.
    dataset : encoded data; ``rows`` selects samples (default: all).
    baseline : ``"zero"`` (every field at its zero embedding: PAD id, value 0,
        empty history, zero vector) or ``"oov"`` (categorical fields at OOV).
    n_steps : points of the Gauss-Legendre rule along the path. The cost is
        ``n_steps`` forward and backward passes per sample.
    batch_size : samples per call, so one call evaluates ``batch_size * n_steps`` rows.
    players : groups of fields or slots whose attributions are summed (one
        player per field by default). Because IG is additive over the elements
        of the embedding tensor, a group's value is the sum of its slots' values,
        so single history positions (``field[position]``) can be players.
    progress : called with the finished fraction in [0, 1] after each batch.
    """
    if n_steps < 2:
        msg = f"n_steps must be >= 2; got {n_steps}"
        raise ValueError(msg)
    if batch_size < 1:
        msg = f"batch_size must be >= 1; got {batch_size}"
        raise ValueError(msg)
    rows = np.arange(len(dataset)) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        msg = "no rows to explain"
        raise ValueError(msg)
    if rows.min() < 0 or rows.max() >= len(dataset):
        msg = f"rows must lie in 0..{len(dataset) - 1}; got {rows.min()}..{rows.max()}"
        raise IndexError(msg)

    names = model.schema.field_names
    player_names, _, membership = model_players(model, players)
    membership = membership.astype(np.float64)

    def forward(*tensors: torch.Tensor) -> torch.Tensor:
        return model(dict(zip(names, tensors, strict=True)))

    was_training = model.training
    model.eval()
    values, base_values, predictions = [], [], []
    try:
        explainer = LayerIntegratedGradients(forward, model.field_embedding.output)
        for start in range(0, rows.size, batch_size):
            chunk = rows[start : start + batch_size]
            inputs = dataset.tensors(chunk)
            baselines = baseline_inputs(model.schema, inputs, baseline)
            ordered = tuple(inputs[n] for n in names)
            ordered_baselines = tuple(baselines[n] for n in names)
            attributions = explainer.attribute(
                ordered, baselines=ordered_baselines, n_steps=n_steps, method="gausslegendre"
            )
            # (batch, n_slots) summed into players: one per field, whatever number of slots it has
            values.append(attributions.sum(dim=-1).detach().double().numpy() @ membership.T)
            with torch.no_grad():
                predictions.append(forward(*ordered).numpy())
                base_values.append(forward(*ordered_baselines).numpy())
            if progress is not None:
                progress(min(1.0, (start + len(chunk)) / rows.size))
    finally:
        model.train(was_training)

    return Attribution(
        values=np.concatenate(values).astype(np.float64),
        base_values=np.concatenate(base_values).astype(np.float64),
        predictions=np.concatenate(predictions).astype(np.float64),
        field_names=tuple(player_names),
        rows=rows,
        method="integrated_gradients",
        baseline=baseline,
        output_space="logit",
        parameters={"n_steps": n_steps, "rule": "gausslegendre", "layer": "field_embedding.output"},
        labels=dataset.labels[rows].astype(np.float64),
        raw_values=dataset.raw_values(rows).reset_index(drop=True),
    )
