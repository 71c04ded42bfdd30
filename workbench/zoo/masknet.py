"""MaskNet (Wang, She and Zhang, DLP-KDD 2021): MaskBlocks with instance-guided masks.

A MaskBlock multiplies its input ``V_in`` by a mask computed from the
flattened field embeddings ``V_emb``,
``V_mask = W_2 ReLU(W_1 V_emb + b_1) + b_2`` (real-valued, no sigmoid), and
returns ``ReLU(LN(W_h (V_mask * V_in)))``, with the layer norm only when
``net_layernorm`` is set, then dropout. The aggregation layer ``W_1`` has
``reduction_ratio`` times as many units as ``V_in`` has.

* ``parallel`` (ParaMaskNet): ``parallel_num_blocks`` blocks all read
  ``V_in = V_emb``, layer-normalised per field when ``emb_layernorm`` is set.
  Their outputs are concatenated and fed to a DNN that ends in one logit.
* ``serial`` (SerMaskNet): block ``k > 0`` reads the output of block
  ``k - 1``, and its mask maps ``V_emb`` to that block's input width. A linear
  layer maps the last block's output to the logit. ``hidden_units`` and
  ``batch_norm`` are not used.

Defaults are the BARS Frappe_x1 settings of ParallelMaskNet (run
``MaskNet_frappe_x1_028_015da53e``). ``serial_block_dims`` has no BARS
Frappe value; ``[64, 64, 64]`` is a plain choice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from workbench.probes import Probe, field_contiguous_bits
from workbench.schema import Schema
from workbench.zoo.base import CTRModel
from workbench.zoo.layers import MLP, check_sizes, slot_layer

MODEL_TYPES = ("parallel", "serial")


def _field_bits(model: MaskNet) -> np.ndarray:
    """Field of each mask bit: a field-aligned mask covers the flattened embeddings, ``D`` bits per field."""
    return field_contiguous_bits(model.n_fields, model.embedding_width)


class FieldLayerNorm(nn.Module):
    """Layer norm over the ``D`` entries of each field, with its own scale and shift per field: ``(B, F, D)``."""

    def __init__(self, n_fields: int, embedding_dim: int) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.ones(n_fields, embedding_dim))
        self.bias = nn.Parameter(torch.zeros(n_fields, embedding_dim))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        normalised = nn.functional.layer_norm(embeddings, (self.embedding_dim,))
        return normalised * self.weight + self.bias


class MaskBlock(nn.Module):
    """One MaskBlock: ``dropout(ReLU(LN(W_h (V_mask * V_in))))`` with ``V_mask`` computed from ``V_emb``.

    The mask is the output of the ``mask_output`` submodule, where a forward
    hook can read it. ``W_h`` has a bias only when there is no layer norm,
    because the layer norm's shift takes its place.
    """

    def __init__(
        self,
        mask_input_dim: int,
        input_dim: int,
        output_dim: int,
        *,
        reduction_ratio: float,
        dropout: float,
        layernorm: bool,
    ) -> None:
        super().__init__()
        aggregation_dim = max(1, round(reduction_ratio * input_dim))
        self.mask_hidden = nn.Linear(mask_input_dim, aggregation_dim)
        self.mask_output = nn.Linear(aggregation_dim, input_dim)
        self.hidden = nn.Linear(input_dim, output_dim, bias=not layernorm)
        self.norm = nn.LayerNorm(output_dim) if layernorm else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(
        self, mask_input: torch.Tensor, block_input: torch.Tensor, first_output: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Map ``V_emb`` and ``V_in`` to the block output.

        ``first_output``, when given, replaces ``W_1 V_emb + b_1``.
        """
        aggregated = self.mask_hidden(mask_input) if first_output is None else first_output
        mask = self.mask_output(torch.relu(aggregated))
        return self.dropout(torch.relu(self.norm(self.hidden(mask * block_input))))


class MaskNet(CTRModel):
    """MaskNet in its parallel (ParaMaskNet) or serial (SerMaskNet) form; see the module docstring."""

    architecture = "masknet"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        model_type: str = "parallel",
        parallel_num_blocks: int = 3,
        parallel_block_dim: int = 50,
        serial_block_dims: Sequence[int] = (64, 64, 64),
        reduction_ratio: float = 2.0,
        hidden_units: Sequence[int] = (400, 400, 400),
        dropout: float = 0.1,
        batch_norm: bool = False,
        net_layernorm: bool = True,
        emb_layernorm: bool = False,
        **hyperparameters,
    ) -> None:
        if model_type not in MODEL_TYPES:
            msg = f"model_type must be 'parallel' or 'serial'; got {model_type!r}"
            raise ValueError(msg)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            model_type=model_type,
            parallel_num_blocks=parallel_num_blocks,
            parallel_block_dim=parallel_block_dim,
            serial_block_dims=list(serial_block_dims),
            reduction_ratio=reduction_ratio,
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            net_layernorm=net_layernorm,
            emb_layernorm=emb_layernorm,
            **hyperparameters,
        )
        check_sizes(
            parallel_num_blocks=parallel_num_blocks,
            parallel_block_dim=parallel_block_dim,
            serial_block_dims=serial_block_dims,
            hidden_units=hidden_units,
        )
        if model_type == "serial" and len(serial_block_dims) == 0:
            msg = "serial_block_dims must list at least one block width for model_type='serial'; got []"
            raise ValueError(msg)
        if isinstance(reduction_ratio, bool) or not isinstance(reduction_ratio, (int, float)) or reduction_ratio <= 0:
            msg = f"reduction_ratio must be a number > 0; got {reduction_ratio!r}"
            raise ValueError(msg)
        if not 0.0 <= dropout < 1.0:
            msg = f"dropout must be in [0, 1); got {dropout}"
            raise ValueError(msg)

        self.model_type = model_type
        input_dim = self.n_fields * embedding_dim
        self.emb_norm = FieldLayerNorm(self.n_fields, embedding_dim) if emb_layernorm else None
        options = {"reduction_ratio": reduction_ratio, "dropout": dropout, "layernorm": net_layernorm}
        if model_type == "parallel":
            self.blocks = nn.ModuleList(
                MaskBlock(input_dim, input_dim, parallel_block_dim, **options) for _ in range(parallel_num_blocks)
            )
            self.head = MLP(
                parallel_num_blocks * parallel_block_dim,
                hidden_units,
                dropout=dropout,
                batch_norm=batch_norm,
                output_dim=1,
            )
        else:
            widths = [input_dim, *serial_block_dims]
            self.blocks = nn.ModuleList(
                MaskBlock(input_dim, widths[k], widths[k + 1], **options) for k in range(len(serial_block_dims))
            )
            self.head = MLP(widths[-1], [], output_dim=1)

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        # Every block's mask starts with an affine layer on V_emb, the flattened field slots.
        return [slot_layer(block.mask_hidden, self.n_fields, self.embedding_width) for block in self.blocks]

    def probes(self) -> list[Probe]:
        if self.model_type == "parallel":
            return [
                Probe(
                    "block_masks",
                    "mask",
                    ("block", "field"),
                    "instance-guided mask V_mask of each MaskBlock, multiplied bit by bit into the embeddings; "
                    "real-valued, 0 removes a bit",
                    modules=tuple(f"blocks.{k}.mask_output" for k in range(len(self.blocks))),
                    bit_fields=_field_bits,
                )
            ]
        # Later serial blocks mask the previous block's hidden units, which belong to no field.
        return [
            Probe(
                "first_block_mask",
                "mask",
                ("field",),
                "instance-guided mask V_mask of the first MaskBlock, multiplied bit by bit into the embeddings; "
                "real-valued, 0 removes a bit",
                modules=("blocks.0.mask_output",),
                bit_fields=_field_bits,
            )
        ]

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        mask_input = field_embeddings.flatten(start_dim=1)
        normalised = field_embeddings if self.emb_norm is None else self.emb_norm(field_embeddings)
        block_input = normalised.flatten(start_dim=1)
        firsts = list(first_layer_outputs) if first_layer_outputs else [None] * len(self.blocks)
        if self.model_type == "parallel":
            outputs = [block(mask_input, block_input, first) for block, first in zip(self.blocks, firsts, strict=True)]
            hidden = torch.cat(outputs, dim=1)
        else:
            hidden = block_input
            for block, first in zip(self.blocks, firsts, strict=True):
                hidden = block(mask_input, hidden, first)
        return self.head(hidden).squeeze(-1)
