"""FiBiNET (Huang et al., RecSys 2019): SENET field weights and bilinear pair interactions.

Each field slot is ``[e_f, w_f]``: the embedding of width ``D`` followed by
the first-order weight, as in :class:`~workbench.zoo.models.FactorizationMachine`.
The SENET layer squeezes each field to ``z_f = mean(e_f)``, excites
``a = act(W_2 act(W_1 z))`` and re-weights ``v_f = a_f e_f``. A bilinear layer
turns every field pair ``i < j`` into ``p_ij = (e_i W) * e_j``, once on the
embeddings ``e`` and once (with its own weights) on the SENET output ``v``;
a DNN reads both sets of pair vectors. The logit is
``b + sum_f w_f + DNN([p; q])``.

Defaults are the BARS Frappe_x1 settings of FiBiNET (log
``FiBiNET_frappe_x1_002_aedd06a6``); the excitation activation is ReLU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.probes import Probe
from workbench.schema import Schema
from workbench.zoo.base import CTRModel, FirstOrderSlots
from workbench.zoo.layers import MLP, check_sizes

BILINEAR_TYPES = ("field_all", "field_each", "field_interaction")
EXCITATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}


class SqueezeExcitation(nn.Module):
    """SENET over fields: ``(B, F, D)`` embeddings to re-weighted embeddings ``a_f * e_f``.

    The field weights ``a`` of shape ``(B, F)`` are the output of the
    ``excitation`` submodule, where a forward hook can read them. Both
    excitation layers have no bias, so the weights depend on the squeezed
    field means alone.
    """

    def __init__(self, n_fields: int, reduction_ratio: int, excitation: str) -> None:
        super().__init__()
        reduced = max(1, n_fields // reduction_ratio)
        activation = EXCITATIONS[excitation]
        self.excitation = nn.Sequential(
            nn.Linear(n_fields, reduced, bias=False),
            activation(),
            nn.Linear(reduced, n_fields, bias=False),
            activation(),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        squeezed = embeddings.mean(dim=-1)
        weights = self.excitation(squeezed)
        return embeddings * weights.unsqueeze(-1)


class BilinearInteraction(nn.Module):
    """Pair vectors ``p_ij = (e_i W_.) * e_j`` for every field pair ``i < j``: ``(B, F, D)`` to ``(B, P, D)``.

    Pairs come in ``torch.triu_indices(F, F, 1)`` order. The weight is one
    ``D x D`` matrix shared by all pairs (``field_all``), one per field ``i``
    (``field_each``, shape ``(F, D, D)``) or one per pair (``field_interaction``,
    shape ``(P, D, D)``).
    """

    def __init__(self, n_fields: int, embedding_dim: int, bilinear_type: str) -> None:
        super().__init__()
        self.n_fields = n_fields
        self.bilinear_type = bilinear_type
        pairs = torch.triu_indices(n_fields, n_fields, 1)
        self.register_buffer("left", pairs[0], persistent=False)
        self.register_buffer("right", pairs[1], persistent=False)
        shape = {
            "field_all": (embedding_dim, embedding_dim),
            "field_each": (n_fields, embedding_dim, embedding_dim),
            "field_interaction": (pairs.shape[1], embedding_dim, embedding_dim),
        }[bilinear_type]
        self.weight = nn.Parameter(torch.empty(shape))
        nn.init.xavier_normal_(self.weight)

    @property
    def n_pairs(self) -> int:
        return int(self.left.numel())

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        left = embeddings[:, self.left]
        if self.bilinear_type == "field_all":
            projected = left @ self.weight
        elif self.bilinear_type == "field_each":
            projected = torch.einsum("bpd,pde->bpe", left, self.weight[self.left])
        else:
            projected = torch.einsum("bpd,pde->bpe", left, self.weight)
        return projected * embeddings[:, self.right]

    def pair_matrix(self, pair_values: torch.Tensor) -> torch.Tensor:
        """Scatter ``(..., P)`` values of the pairs ``i < j`` into symmetric ``(..., F, F)`` maps, diagonal 0."""
        matrix = pair_values.new_zeros(*pair_values.shape[:-1], self.n_fields, self.n_fields)
        matrix[..., self.left, self.right] = pair_values
        matrix[..., self.right, self.left] = pair_values
        return matrix

    def pair_norms(self, pair_vectors: torch.Tensor) -> torch.Tensor:
        """Return the ``(B, F, F)`` map of ``||p_ij||_2`` from the layer's output ``(B, P, D)``."""
        return self.pair_matrix(pair_vectors.norm(dim=-1))

    def weight_norms(self) -> torch.Tensor:
        """Return the ``(F, F)`` map of ``||W_ij||_F``; only ``field_interaction`` has per-pair weights."""
        if self.bilinear_type != "field_interaction":
            msg = (
                "per-pair weights exist only for bilinear_type='field_interaction'; "
                f"this layer is {self.bilinear_type!r}"
            )
            raise ValueError(msg)
        return self.pair_matrix(self.weight.detach().flatten(start_dim=1).norm(dim=-1))


class FiBiNET(FirstOrderSlots, CTRModel):
    """FiBiNET: SENET field weights, bilinear pair vectors on both embeddings, a DNN and a first-order term.

    Each field slot is ``[e_f, w_f]`` (width ``embedding_dim + 1``).
    ``reduction_ratio`` sets the SENET bottleneck to ``max(1, F // ratio)``
    units; ``excitation`` is the activation of both excitation layers.
    """

    architecture = "fibinet"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        bilinear_type: str = "field_all",
        reduction_ratio: int = 2,
        excitation: str = "relu",
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.3,
        batch_norm: bool = True,
        **hyperparameters,
    ) -> None:
        if bilinear_type not in BILINEAR_TYPES:
            msg = f"bilinear_type must be one of {', '.join(map(repr, BILINEAR_TYPES))}; got {bilinear_type!r}"
            raise ValueError(msg)
        if excitation not in EXCITATIONS:
            msg = f"excitation must be one of {', '.join(map(repr, EXCITATIONS))}; got {excitation!r}"
            raise ValueError(msg)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            bilinear_type=bilinear_type,
            reduction_ratio=reduction_ratio,
            excitation=excitation,
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            **hyperparameters,
        )
        if isinstance(reduction_ratio, bool) or not isinstance(reduction_ratio, int):
            msg = f"reduction_ratio must be an integer >= 1; got {reduction_ratio!r}"
            raise ValueError(msg)
        check_sizes(reduction_ratio=reduction_ratio, hidden_units=hidden_units)
        if self.n_fields < 2:
            msg = f"FiBiNET needs at least 2 fields to form field pairs; the schema has {self.n_fields}"
            raise ValueError(msg)

        self.bias = nn.Parameter(torch.zeros(1))
        self.senet = SqueezeExcitation(self.n_fields, reduction_ratio, excitation)
        self.bilinear = BilinearInteraction(self.n_fields, embedding_dim, bilinear_type)
        self.senet_bilinear = BilinearInteraction(self.n_fields, embedding_dim, bilinear_type)
        dnn_input = 2 * self.bilinear.n_pairs * embedding_dim
        self.dnn = MLP(dnn_input, hidden_units, dropout=dropout, batch_norm=batch_norm, output_dim=1)

    def probes(self) -> list[Probe]:
        probes = [
            Probe(
                "senet_weights",
                "field_weight",
                ("field",),
                "SENET weight a_f that scales field f's embedding before the second bilinear layer",
                modules=("senet.excitation",),
            ),
            Probe(
                "bilinear_pair_norms",
                "pair_weight",
                ("field", "field"),
                "L2 norm of the bilinear pair vector (e_i W) * e_j on the embeddings; symmetric, the diagonal is 0",
                modules=("bilinear",),
                read_output=self.bilinear.pair_norms,
            ),
            Probe(
                "senet_bilinear_pair_norms",
                "pair_weight",
                ("field", "field"),
                "L2 norm of the bilinear pair vector (v_i W) * v_j on the SENET-weighted embeddings v; "
                "symmetric, the diagonal is 0",
                modules=("senet_bilinear",),
                read_output=self.senet_bilinear.pair_norms,
            ),
        ]
        if self.bilinear.bilinear_type == "field_interaction":
            probes.append(
                Probe(
                    "bilinear_weight_norms",
                    "pair_weight",
                    ("field", "field"),
                    "Frobenius norm of the pair matrix W_ij of the bilinear layer on the embeddings; "
                    "the same for every sample",
                    static=lambda model: model.bilinear.weight_norms(),
                )
            )
        return probes

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        embeddings, weights = self.split_slots(field_embeddings)
        pairs = self.bilinear(embeddings)
        senet_pairs = self.senet_bilinear(self.senet(embeddings))
        deep = self.dnn(torch.cat([pairs, senet_pairs], dim=1).flatten(start_dim=1)).squeeze(-1)
        return self.bias + weights.sum(dim=1) + deep
