"""GDCN: the Gated Deep Cross Network (Wang et al., CIKM 2023, arXiv 2311.04635).

Each gated cross layer multiplies the DCN-V2 cross term by a bit-wise
information gate computed from the layer's own input::

    c_{l+1} = c_0 * (W^c_l c_l + b_l) * sigmoid(W^g_l c_l) + c_l

with full ``d x d`` matrices ``W^c_l`` and ``W^g_l`` over the flattened field
embeddings (``d = n_fields * embedding_dim``, field ``f`` in bits
``[f * D, (f + 1) * D)``). A gate of 1 everywhere would give DCN-V2's cross
layer back. The gates depend on the sample, so they are the model's own
per-sample view of which bits (and, averaged, which fields) matter in each
layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workbench.probes import Probe, field_contiguous_bits, layer_block_norms
from workbench.zoo.layers import slot_layer
from workbench.zoo.models import DCNv2


class GatedCrossLayer(nn.Module):
    """One gated cross layer over vectors of width ``input_dim``.

    ``cross`` contains ``W^c_l`` and ``b_l``, and ``gate_projection`` contains
    ``W^g_l`` (no bias). ``gate`` is the sigmoid whose output, shape
    ``(batch_size, input_dim)``, is the gate exactly as the layer uses it.
    """

    def __init__(self, input_dim: int) -> None:
        super().__init__()
        self.cross = nn.Linear(input_dim, input_dim)
        self.gate_projection = nn.Linear(input_dim, input_dim, bias=False)
        self.gate = nn.Sigmoid()

    def forward(
        self,
        c0: torch.Tensor,
        c: torch.Tensor,
        cross_output: torch.Tensor | None = None,
        gate_input: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return ``c0 * cross(c) * gate(gate_projection(c)) + c``.

        ``cross_output`` and ``gate_input``, when given, replace ``cross(c)``
        and ``gate_projection(c)``.
        """
        crossed = self.cross(c) if cross_output is None else cross_output
        projected = self.gate_projection(c) if gate_input is None else gate_input
        return c0 * crossed * self.gate(projected) + c


class GatedCrossNet(nn.Module):
    """A stack of :class:`GatedCrossLayer`: ``(batch_size, input_dim)`` to the same shape."""

    def __init__(self, input_dim: int, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(GatedCrossLayer(input_dim) for _ in range(n_layers))

    def forward(self, c0: torch.Tensor, first_outputs: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Apply the layers; ``first_outputs``, when given, is ``(W^c_0 c0 + b_0, W^g_0 c0)``."""
        c = c0
        for position, layer in enumerate(self.layers):
            if position == 0 and first_outputs is not None:
                c = layer(c0, c, cross_output=first_outputs[0], gate_input=first_outputs[1])
            else:
                c = layer(c0, c)
        return c


class GDCN(DCNv2):
    """GDCN: gated cross layers plus a DNN; ``structure`` is ``parallel`` (GDCN-P) or ``stacked`` (GDCN-S).

    Parallel: ``logit = head([c_L ; DNN(c_0)])``. Stacked:
    ``logit = head(DNN(c_L))``.

    The defaults of three gated cross layers and a 400-400-400 DNN follow the
    GDCN paper's setting as third-party notes on the paper report it. BARS
    has no Frappe setting for GDCN, so embedding size 10, dropout 0.2 and
    batch normalisation are the values the other models of this workbench
    use on Frappe.
    """

    architecture = "gdcn"

    @staticmethod
    def build_cross_net(input_dim: int, n_layers: int) -> nn.Module:
        return GatedCrossNet(input_dim, n_layers)

    def probes(self) -> list[Probe]:
        n_layers = len(self.cross_net.layers)
        return [
            Probe(
                "cross_gates",
                "gate",
                ("layer", "field"),
                "information gate sigmoid(W^g_l c_l) of each gated cross layer, averaged over each field's bits: "
                "how much of the field's cross term the layer lets through for this sample (0.5 is neutral)",
                modules=tuple(f"cross_net.layers.{layer}.gate" for layer in range(n_layers)),
                bit_fields=lambda model: field_contiguous_bits(model.n_fields, model.embedding_width),
                value_range=(0.0, 1.0),
            ),
            Probe(
                "cross_weight_norms",
                "pair_weight",
                ("layer", "field", "field"),
                "Frobenius norm of block (i, j) of each cross matrix W^c_l: how strongly field j enters the "
                "cross term of field i before gating; the same for every sample",
                static=lambda model: layer_block_norms(
                    [layer.cross.weight for layer in model.cross_net.layers], model.n_fields, model.embedding_width
                ),
            ),
        ]

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # The first layer's cross and gate projections always read c0; the DNN reads it only in the parallel structure.
        first = self.cross_net.layers[0]
        layers = [
            slot_layer(first.cross, self.n_fields, self.embedding_width),
            slot_layer(first.gate_projection, self.n_fields, self.embedding_width),
        ]
        if self.structure == "parallel" and self.dnn.first_linear is not None:
            layers.append(slot_layer(self.dnn.first_linear, self.n_fields, self.embedding_width))
        return layers

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        c0 = field_embeddings.flatten(start_dim=1)
        outputs = list(first_layer_outputs) if first_layer_outputs else []
        crossed = self.cross_net(c0, first_outputs=outputs[:2] if len(outputs) >= 2 else None)
        if self.structure == "parallel":
            deep = self.dnn(c0, first_output=outputs[2] if len(outputs) > 2 else None)
            final = torch.cat([crossed, deep], dim=1)
        else:
            final = self.dnn(crossed)
        return self.head(final).squeeze(-1)
