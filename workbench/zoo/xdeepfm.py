"""xDeepFM (Lian et al., KDD 2018): a Compressed Interaction Network (CIN) beside a DNN and a first-order term.

Each field slot is ``[e_f, w_f]``: the embedding of width ``D`` followed by
the first-order weight, as in :class:`~workbench.zoo.models.FactorizationMachine`.
With ``X^0`` the ``(F, D)`` matrix of embeddings, CIN layer ``k`` computes
``H_k`` feature maps
``X^k_h = sum_{i, j} W^{k,h}_{i,j} (X^{k-1}_i * X^0_j)`` (elementwise over
``D``, no bias and no activation). Each layer's feature maps are summed over
``D``, the pooled vectors of all layers are concatenated, and a linear layer
maps them to the CIN logit. The logit is ``b + sum_f w_f + CIN + DNN``.

Defaults are the BARS Frappe_x1 settings of xDeepFM (run
``xDeepFM_frappe_x1_005_447fa536``, ``cin_layer_units=[64]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.probes import Probe
from workbench.schema import Schema
from workbench.zoo.base import CTRModel, FirstOrderSlots
from workbench.zoo.layers import MLP, check_sizes, slot_layer


class CompressedInteractionNetwork(nn.Module):
    """CIN: ``(B, F, D)`` embeddings to the concatenated sum-pooled feature maps ``(B, sum(hidden_units))``.

    Layer ``k`` is a 1x1 convolution over the ``H_{k-1} * F`` channels of the
    products ``X^{k-1}_i * X^0_j``, with channel ``i * F + j``. Its weight has
    shape ``(H_k, H_{k-1} * F, 1)``, and ``H_0 = F``.
    """

    def __init__(self, n_fields: int, hidden_units: Sequence[int]) -> None:
        super().__init__()
        self.n_fields = n_fields
        layers = []
        previous = n_fields
        for units in hidden_units:
            layers.append(nn.Conv1d(previous * n_fields, units, kernel_size=1, bias=False))
            previous = units
        self.layers = nn.ModuleList(layers)
        self.output_dim = sum(hidden_units)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        pooled = []
        x = x0
        for layer in self.layers:
            products = torch.einsum("bhd,bmd->bhmd", x, x0).flatten(start_dim=1, end_dim=2)
            x = layer(products)
            pooled.append(x.sum(dim=-1))
        return torch.cat(pooled, dim=1)

    def first_layer_pair_weights(self) -> torch.Tensor:
        """Return the first layer's ``(F, F)`` map of ``sqrt(sum_h W^{1,h}_{i,j}^2)``.

        Entries ``(i, j)`` and ``(j, i)`` weigh the same product ``e_i * e_j``,
        so the map is made symmetric as the mean of the two.
        """
        first = self.layers[0].weight.detach()
        weights = first.reshape(first.shape[0], self.n_fields, self.n_fields)
        norms = weights.pow(2).sum(dim=0).sqrt()
        return (norms + norms.T) / 2


class XDeepFM(FirstOrderSlots, CTRModel):
    """xDeepFM: first-order term, CIN and DNN, with logits summed.

    Each field slot is ``[e_f, w_f]`` (width ``embedding_dim + 1``). The CIN
    and the DNN read the embeddings ``e_f`` only.
    """

    architecture = "xdeepfm"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        cin_hidden_units: Sequence[int] = (64,),
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.2,
        batch_norm: bool = True,
        **hyperparameters,
    ) -> None:
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            cin_hidden_units=list(cin_hidden_units),
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            **hyperparameters,
        )
        check_sizes(cin_hidden_units=cin_hidden_units, hidden_units=hidden_units)
        if len(cin_hidden_units) == 0:
            msg = "cin_hidden_units must list at least one CIN layer width; got []"
            raise ValueError(msg)
        self.bias = nn.Parameter(torch.zeros(1))
        self.cin = CompressedInteractionNetwork(self.n_fields, cin_hidden_units)
        self.cin_head = nn.Linear(self.cin.output_dim, 1)
        self.dnn = MLP(
            self.n_fields * embedding_dim, hidden_units, dropout=dropout, batch_norm=batch_norm, output_dim=1
        )

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        linear = self.dnn.first_linear
        if linear is None:
            return []
        # The DNN reads the embeddings only, not the first-order weight in each slot's last column.
        return [slot_layer(linear, self.n_fields, self.embedding_width, used=self.embedding_dim)]

    def probes(self) -> list[Probe]:
        return [
            Probe(
                "cin_pair_weights",
                "pair_weight",
                ("field", "field"),
                "first CIN layer: root of the sum over its feature maps h of W^{1,h}_ij^2, the weight on "
                "e_i * e_j; symmetric as the mean of (i, j) and (j, i); the diagonal weighs e_i * e_i; "
                "the same for every sample",
                static=lambda model: model.cin.first_layer_pair_weights(),
            )
        ]

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        embeddings, weights = self.split_slots(field_embeddings)
        cin_logit = self.cin_head(self.cin(embeddings)).squeeze(-1)
        first = first_layer_outputs[0] if first_layer_outputs else None
        deep_logit = self.dnn(embeddings.flatten(start_dim=1), first_output=first).squeeze(-1)
        return self.bias + weights.sum(dim=1) + cin_logit + deep_logit
