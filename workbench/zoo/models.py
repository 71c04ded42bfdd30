"""Native architectures: LR, FM, DNN, DeepFM, DCNv2 and AutoInt+.

Defaults follow the usual BARS settings for Frappe (embedding size 10, DNN of
three layers of 400 units); the training recipe lives in ``workbench.training``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.probes import Probe, layer_block_norms
from workbench.schema import Schema
from workbench.zoo.base import CTRModel, FirstOrderSlots
from workbench.zoo.layers import MLP, CrossNetV2, MultiHeadSelfAttention, check_sizes, fm_pairwise, slot_layer


def _fm_pair_products(model: FactorizationMachine, field_embeddings: torch.Tensor) -> torch.Tensor:
    """``(B, F, F)`` matrix of ``<v_i, v_j>`` with a zero diagonal: the FM pair terms of each sample."""
    factors, _ = model.split_slots(field_embeddings)
    products = factors @ factors.transpose(1, 2)
    return products - torch.diag_embed(torch.diagonal(products, dim1=1, dim2=2))


class LogisticRegression(CTRModel):
    """LR: ``logit = b + sum_f w_f``; each field slot is its one-dimensional weight."""

    architecture = "lr"

    def __init__(self, schema: Schema, **hyperparameters) -> None:
        hyperparameters.pop("embedding_dim", None)
        super().__init__(schema, embedding_dim=1, **hyperparameters)
        self.bias = nn.Parameter(torch.zeros(1))

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        return field_embeddings.sum(dim=(1, 2)) + self.bias


class DNN(CTRModel):
    """A plain MLP over the concatenated field embeddings; the reference that sequence models must beat."""

    architecture = "dnn"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.2,
        batch_norm: bool = True,
        **hyperparameters,
    ) -> None:
        check_sizes(hidden_units=hidden_units)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            **hyperparameters,
        )
        self.dnn = MLP(
            self.n_fields * embedding_dim, hidden_units, dropout=dropout, batch_norm=batch_norm, output_dim=1
        )

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        linear = self.dnn.first_linear
        return [] if linear is None else [slot_layer(linear, self.n_fields, self.embedding_width)]

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        first = first_layer_outputs[0] if first_layer_outputs else None
        return self.dnn(field_embeddings.flatten(start_dim=1), first_output=first).squeeze(-1)


class FactorizationMachine(FirstOrderSlots, CTRModel):
    """FM: ``logit = b + sum_f w_f + sum_{i<j} <v_i, v_j>``.

    Each field slot is ``[v_f, w_f]``: the factor vector followed by the first-order weight.
    """

    architecture = "fm"

    def __init__(self, schema: Schema, *, embedding_dim: int = 10, **hyperparameters) -> None:
        super().__init__(schema, embedding_dim=embedding_dim, **hyperparameters)
        self.bias = nn.Parameter(torch.zeros(1))

    def probes(self) -> list[Probe]:
        return [
            Probe(
                "fm_pair_products",
                "pair_weight",
                ("field", "field"),
                "FM pair term <v_i, v_j> of each sample, in logits; the diagonal is 0",
                compute=_fm_pair_products,
            ),
            Probe(
                "first_order_weights",
                "field_weight",
                ("field",),
                "first-order weight w_f of each field's value, in logits",
                compute=lambda model, embeddings: model.split_slots(embeddings)[1],
            ),
        ]

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        factors, weights = self.split_slots(field_embeddings)
        return self.bias + weights.sum(dim=1) + fm_pairwise(factors)


class DeepFM(FactorizationMachine):
    """DeepFM: the FM logit plus an MLP over the concatenated factor vectors."""

    architecture = "deepfm"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.2,
        batch_norm: bool = True,
        **hyperparameters,
    ) -> None:
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            **hyperparameters,
        )
        check_sizes(hidden_units=hidden_units)
        self.dnn = MLP(
            self.n_fields * embedding_dim, hidden_units, dropout=dropout, batch_norm=batch_norm, output_dim=1
        )

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        linear = self.dnn.first_linear
        if linear is None:
            return []
        # The DNN reads the factor vectors only, not the first-order weight in each slot's last column.
        return [slot_layer(linear, self.n_fields, self.embedding_width, used=self.embedding_dim)]

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        factors, _ = self.split_slots(field_embeddings)
        first = first_layer_outputs[0] if first_layer_outputs else None
        deep = self.dnn(factors.flatten(start_dim=1), first_output=first).squeeze(-1)
        return super().logit_from_embeddings(field_embeddings) + deep


class DCNv2(CTRModel):
    """DCN-V2 with full-rank cross layers; ``structure`` is ``parallel`` or ``stacked``."""

    architecture = "dcnv2"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        n_cross_layers: int = 3,
        structure: str = "parallel",
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.2,
        batch_norm: bool = True,
        **hyperparameters,
    ) -> None:
        if structure not in ("parallel", "stacked"):
            msg = f"structure must be 'parallel' or 'stacked'; got {structure!r}"
            raise ValueError(msg)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            n_cross_layers=n_cross_layers,
            structure=structure,
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            **hyperparameters,
        )
        check_sizes(n_cross_layers=n_cross_layers, hidden_units=hidden_units)
        input_dim = self.n_fields * embedding_dim
        self.structure = structure
        self.cross_net = self.build_cross_net(input_dim, n_cross_layers)
        dnn_input = input_dim
        self.dnn = MLP(dnn_input, hidden_units, dropout=dropout, batch_norm=batch_norm)
        head_input = self.dnn.output_dim + (input_dim if structure == "parallel" else 0)
        self.head = nn.Linear(head_input, 1)

    @staticmethod
    def build_cross_net(input_dim: int, n_layers: int) -> nn.Module:
        """Build the cross network over flattened embeddings of width ``input_dim``; GDCN swaps in its gated one."""
        return CrossNetV2(input_dim, n_layers)

    def probes(self) -> list[Probe]:
        return [
            Probe(
                "cross_weight_norms",
                "pair_weight",
                ("layer", "field", "field"),
                "Frobenius norm of block (i, j) of each cross matrix W_l: how strongly field j enters the "
                "cross term of field i; the same for every sample",
                static=lambda model: layer_block_norms(
                    [layer.weight for layer in model.cross_net.cross_layers], model.n_fields, model.embedding_width
                ),
            )
        ]

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # The first cross layer always reads x0; the DNN reads it only in the parallel structure.
        layers = [slot_layer(self.cross_net.cross_layers[0], self.n_fields, self.embedding_width)]
        if self.structure == "parallel" and self.dnn.first_linear is not None:
            layers.append(slot_layer(self.dnn.first_linear, self.n_fields, self.embedding_width))
        return layers

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        x0 = field_embeddings.flatten(start_dim=1)
        outputs = list(first_layer_outputs) if first_layer_outputs else [None, None]
        crossed = self.cross_net(x0, first_output=outputs[0])
        if self.structure == "parallel":
            final = torch.cat([crossed, self.dnn(x0, first_output=outputs[1] if len(outputs) > 1 else None)], dim=1)
        else:
            final = self.dnn(crossed)
        return self.head(final).squeeze(-1)


class AutoIntPlus(CTRModel):
    """AutoInt+: multi-head self-attention over fields plus a parallel DNN; logits are summed."""

    architecture = "autoint+"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        attention_layers: int = 2,
        n_heads: int = 2,
        attention_dim: int = 40,
        use_scale: bool = True,
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.2,
        batch_norm: bool = True,
        **hyperparameters,
    ) -> None:
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            attention_layers=attention_layers,
            n_heads=n_heads,
            attention_dim=attention_dim,
            use_scale=use_scale,
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            **hyperparameters,
        )
        check_sizes(
            attention_layers=attention_layers, n_heads=n_heads, attention_dim=attention_dim, hidden_units=hidden_units
        )
        layers = []
        width = embedding_dim
        for _ in range(attention_layers):
            layers.append(MultiHeadSelfAttention(width, attention_dim, n_heads, use_scale=use_scale))
            width = attention_dim
        self.attention = nn.ModuleList(layers)
        self.attention_head = nn.Linear(self.n_fields * width, 1)
        self.dnn = MLP(
            self.n_fields * embedding_dim, hidden_units, dropout=dropout, batch_norm=batch_norm, output_dim=1
        )

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        linear = self.dnn.first_linear
        return [] if linear is None else [slot_layer(linear, self.n_fields, self.embedding_width)]

    def probes(self) -> list[Probe]:
        return [
            Probe(
                "attention",
                "attention",
                ("layer", "head", "field", "field"),
                "self-attention weights over fields; row = query field, each row sums to 1",
                modules=tuple(f"attention.{layer}.softmax" for layer in range(len(self.attention))),
                value_range=(0.0, 1.0),
            )
        ]

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        x = field_embeddings
        for layer in self.attention:
            x = layer(x)
        attention_logit = self.attention_head(x.flatten(start_dim=1)).squeeze(-1)
        first = first_layer_outputs[0] if first_layer_outputs else None
        deep_logit = self.dnn(field_embeddings.flatten(start_dim=1), first_output=first).squeeze(-1)
        return attention_logit + deep_logit
