"""FCN (first published as DCNv3): an Exponential and a Linear Cross Network with Self-Mask and Tri-BCE.

Li et al., "FCN: Fusing Exponential and Linear Cross Network for Click-Through
Rate Prediction", arXiv 2407.13349. Both branches read the same input ``x0``,
in which each field embedding (width ``D``, even) is split in two halves and
laid out as ``[first halves of all fields | second halves of all fields]``, so
``x0`` is not field-contiguous (see :func:`fcn_bit_fields`). Cross layer ``l``
of either branch, with ``W_l`` of shape ``(d/2, d)`` and ``d = n_fields * D``::

    h_l = W_l x_l
    m_l = ReLU(LayerNorm(h_l))                     # the Self-Mask
    c_l = [h_l || h_l * m_l]
    ECN: x_{l+1} = x_l * (c_l + b_l) + x_l         # order grows as 2^l
    LCN: x_{l+1} = x_0 * (c_l + b_l) + x_l         # order grows by one per layer

Each branch ends in ``Linear(d, 1)``; the model's logit is the mean of the
two branch logits. Training minimises Tri-BCE (:func:`tri_bce_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from workbench.probes import Probe, block_norms
from workbench.schema import Schema
from workbench.zoo.base import CTRModel
from workbench.zoo.layers import check_sizes


def fcn_bit_fields(n_fields: int, embedding_dim: int) -> np.ndarray:
    """Field of each of the ``n_fields * embedding_dim`` bits of FCN's input ``x0``.

    Bit ``p`` belongs to field ``(p mod d/2) // (D/2)``: field ``f`` occupies
    bits ``[f * D/2, (f + 1) * D/2)`` (its first half) and the same range
    shifted by ``d/2`` (its second half).
    """
    _check_even(embedding_dim)
    half_layout = np.repeat(np.arange(n_fields), embedding_dim // 2)
    return np.concatenate([half_layout, half_layout])


def fcn_slot_positions(n_fields: int, embedding_dim: int) -> np.ndarray:
    """Position in ``x0`` of column ``k`` of field ``f``'s embedding, shape ``(n_fields, embedding_dim)``."""
    _check_even(embedding_dim)
    half = embedding_dim // 2
    fields = np.arange(n_fields)[:, None]
    columns = np.arange(embedding_dim)[None, :]
    first_half = fields * half + columns
    second_half = n_fields * half + fields * half + (columns - half)
    return np.where(columns < half, first_half, second_half)


def fcn_input(field_embeddings: torch.Tensor) -> torch.Tensor:
    """Lay out ``(batch_size, n_fields, D)`` embeddings as FCN's ``x0`` of shape ``(batch_size, n_fields * D)``."""
    half = field_embeddings.shape[-1] // 2
    first = field_embeddings[..., :half].flatten(start_dim=1)
    second = field_embeddings[..., half:].flatten(start_dim=1)
    return torch.cat([first, second], dim=1)


def tri_bce_loss(
    logit: torch.Tensor, ecn_logit: torch.Tensor, lcn_logit: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Tri-BCE: ``L + w_D * L_D + w_S * L_S`` with ``w_D = max(0, L_D - L)`` and ``w_S = max(0, L_S - L)``.

    ``L``, ``L_D`` and ``L_S`` are the batch-mean binary cross-entropies of the
    fused, ECN and LCN logits. The weights are constants (detached), so a
    branch that does worse than the fusion gets extra supervision of its own
    without the weight itself being optimised.
    """
    labels = labels.to(logit.dtype)
    loss = nn.functional.binary_cross_entropy_with_logits(logit, labels)
    ecn_loss = nn.functional.binary_cross_entropy_with_logits(ecn_logit, labels)
    lcn_loss = nn.functional.binary_cross_entropy_with_logits(lcn_logit, labels)
    ecn_weight = (ecn_loss - loss).detach().clamp(min=0.0)
    lcn_weight = (lcn_loss - loss).detach().clamp(min=0.0)
    return loss + ecn_weight * ecn_loss + lcn_weight * lcn_loss


def _check_even(embedding_dim: int) -> None:
    if embedding_dim < 2 or embedding_dim % 2 != 0:
        msg = (
            f"FCN splits each field embedding in two halves, so embedding_dim must be even and >= 2; "
            f"got {embedding_dim}"
        )
        raise ValueError(msg)


def _check_dropout(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        msg = f"{name} must be in [0, 1); got {value}"
        raise ValueError(msg)


class SelfMaskCrossLayer(nn.Module):
    """One FCN cross layer over vectors of width ``input_dim`` (even).

    ``projection`` contains ``W_l`` (no bias) and ``bias`` is ``b_l`` of width
    ``input_dim``. ``self_mask`` is the ReLU whose output, shape
    ``(batch_size, input_dim / 2)``, is the Self-Mask ``m_l``.
    """

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.projection = nn.Linear(input_dim, input_dim // 2, bias=False)
        self.layer_norm = nn.LayerNorm(input_dim // 2)
        self.self_mask = nn.ReLU()
        # Uniform on [0, 1), as the official FCN code (salmon1802/FCN, src/ECN.py) initialises b_l.
        self.bias = nn.Parameter(torch.rand(input_dim))

    def forward(self, x: torch.Tensor, anchor: torch.Tensor, projected: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``anchor * ([h || h * m] + b) + x``; ``projected``, when given, replaces ``h = W x``."""
        h = self.projection(x) if projected is None else projected
        mask = self.self_mask(self.layer_norm(h))
        crossed = torch.cat([h, h * mask], dim=-1)
        return anchor * (crossed + self.bias) + x


class CrossNetwork(nn.Module):
    """The ECN (``exponential=True``, anchor ``x_l``) or LCN (anchor ``x_0``) branch, ending in its own logit.

    Maps ``x0`` of shape ``(batch_size, input_dim)`` to logits of shape
    ``(batch_size,)``; dropout follows every cross layer.
    """

    def __init__(self, input_dim: int, n_layers: int, *, exponential: bool, dropout: float) -> None:
        super().__init__()
        self.exponential = exponential
        self.layers = nn.ModuleList(SelfMaskCrossLayer(input_dim) for _ in range(n_layers))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.head = nn.Linear(input_dim, 1)

    def forward(self, x0: torch.Tensor, first_projection: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the layers and the head; ``first_projection``, when given, replaces ``W_0 x0``."""
        x = x0
        for position, layer in enumerate(self.layers):
            anchor = x if self.exponential else x0
            x = self.dropout(layer(x, anchor, first_projection if position == 0 else None))
        return self.head(x).squeeze(-1)


class FCN(CTRModel):
    """FCN / DCNv3: ``logit = (logit_ECN + logit_LCN) / 2``, trained with Tri-BCE.

    The model has one head. The official code can also split each embedding
    over several heads (``num_heads``), but most of its published
    configurations use one.

    Defaults are the constructor defaults of the FuxiCTR-style DCNv3 class:
    embedding size 10 (also the size used on Frappe here), four cross layers
    per branch, and dropout 0.1 in the ECN and 0.3 in the LCN. NOTE: these
    were read in a copy of that class, not in the official repository's file.
    """

    architecture = "fcn"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        n_deep_cross_layers: int = 4,
        n_shallow_cross_layers: int = 4,
        deep_net_dropout: float = 0.1,
        shallow_net_dropout: float = 0.3,
        **hyperparameters,
    ) -> None:
        _check_even(embedding_dim)
        check_sizes(n_deep_cross_layers=n_deep_cross_layers, n_shallow_cross_layers=n_shallow_cross_layers)
        _check_dropout("deep_net_dropout", deep_net_dropout)
        _check_dropout("shallow_net_dropout", shallow_net_dropout)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            n_deep_cross_layers=n_deep_cross_layers,
            n_shallow_cross_layers=n_shallow_cross_layers,
            deep_net_dropout=deep_net_dropout,
            shallow_net_dropout=shallow_net_dropout,
            **hyperparameters,
        )
        input_dim = self.n_fields * embedding_dim
        self.ecn = CrossNetwork(input_dim, n_deep_cross_layers, exponential=True, dropout=deep_net_dropout)
        self.lcn = CrossNetwork(input_dim, n_shallow_cross_layers, exponential=False, dropout=shallow_net_dropout)
        self.register_buffer(
            "slot_positions",
            torch.from_numpy(fcn_slot_positions(self.n_fields, embedding_dim)),
            persistent=False,
        )

    def branch_logits(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the ECN and LCN logits, each of shape ``(batch_size,)``.

        ``first_layer_outputs``, when given, is ``(W_0 x0 of the ECN, W_0 x0 of the LCN)``.
        """
        x0 = fcn_input(field_embeddings)
        outputs = list(first_layer_outputs) if first_layer_outputs else [None, None]
        return self.ecn(x0, first_projection=outputs[0]), self.lcn(x0, first_projection=outputs[1])

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        ecn_logit, lcn_logit = self.branch_logits(field_embeddings, first_layer_outputs)
        return (ecn_logit + lcn_logit) / 2

    def training_loss(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        ecn_logit, lcn_logit = self.branch_logits(self.field_embedding(inputs))
        return tri_bce_loss((ecn_logit + lcn_logit) / 2, ecn_logit, lcn_logit, labels)

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # Both branches start with W_0 x0, and x0 is a permutation of the slots, so W_0 reads every slot linearly.
        layers = []
        for branch in (self.ecn, self.lcn):
            weight = branch.layers[0].projection.weight[:, self.slot_positions]  # (d/2, F, D)
            layers.append((weight, weight.new_zeros(weight.shape[0])))
        return layers

    def mask_bit_fields(self) -> np.ndarray:
        """Field of each bit of ``h_l`` and of the Self-Mask ``m_l``: bit ``p`` lines up with bit ``p`` of ``x0``."""
        return fcn_bit_fields(self.n_fields, self.embedding_dim)[: self.n_fields * self.embedding_dim // 2]

    def cross_weight_norms(self, branch: CrossNetwork) -> torch.Tensor:
        """``(n_layers, F, F)`` Frobenius norms of the field blocks of each ``W_l`` of ``branch``.

        Rows (outputs ``h_l``) follow :meth:`mask_bit_fields`; columns (inputs
        ``x_l``, laid out as ``x0``) follow :func:`fcn_bit_fields`, so block
        ``(i, j)`` gathers both halves of field ``j``.
        """
        rows = self.mask_bit_fields()
        columns = fcn_bit_fields(self.n_fields, self.embedding_dim)
        norms = [block_norms(layer.projection.weight, rows, columns, self.n_fields) for layer in branch.layers]
        return torch.from_numpy(np.stack(norms))

    def probes(self) -> list[Probe]:
        probes = []
        for name, branch, title in (("ecn", self.ecn, "ECN"), ("lcn", self.lcn, "LCN")):
            paths = tuple(f"{name}.layers.{layer}.self_mask" for layer in range(len(branch.layers)))
            probes += [
                Probe(
                    f"{name}_self_mask",
                    "mask",
                    ("layer", "field"),
                    f"{title} Self-Mask ReLU(LayerNorm(W_l x_l)) of each cross layer, averaged over each field's "
                    "bits; 0 switches off the masked copy of a bit of W_l x_l",
                    modules=paths,
                    bit_fields=lambda model: model.mask_bit_fields(),
                ),
                Probe(
                    f"{name}_mask_density",
                    "mask",
                    ("layer", "field"),
                    f"fraction of each field's bits that the {title} Self-Mask keeps (value > 0), per cross layer",
                    modules=paths,
                    read_output=lambda output: (output > 0).float(),
                    bit_fields=lambda model: model.mask_bit_fields(),
                    value_range=(0.0, 1.0),
                ),
                Probe(
                    f"{name}_cross_weight_norms",
                    "pair_weight",
                    ("layer", "field", "field"),
                    f"Frobenius norm of block (i, j) of each {title} cross matrix W_l: how strongly field j "
                    "(both halves) enters output bits of field i; the same for every sample",
                    static=lambda model, branch_name=name: model.cross_weight_norms(getattr(model, branch_name)),
                ),
            ]
        return probes
