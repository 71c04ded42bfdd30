"""FinalMLP (Mao et al., AAAI 2023): two MLP streams with feature gates, fused by a multi-head bilinear layer.

Each stream ``k`` gates the flattened field embeddings ``e`` bit by bit:
``h_k = g_k * e`` with ``g_k = 2 * sigmoid(MLP_k(x_k))``. The context ``x_k``
is the concatenated embeddings of chosen context fields. Without context it is
a learned vector, so the gate is the same for every sample. The stream MLPs
give ``o_1`` and ``o_2``, both split into ``num_heads`` heads, and the logit
is ``b + w_1^T o_1 + w_2^T o_2 + sum_j o_1j^T W_j o_2j``.

Defaults are the BARS Frappe_x1 settings of FinalMLP (log
``FinalMLP_frappe_x1_004_e1ab402f``), except the gate contexts: that run used
``fs1_context=["user"]`` and ``fs2_context=["item"]``, which only fit schemas
with those fields, so the defaults here are empty contexts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import nn

from workbench.probes import Probe, field_contiguous_bits
from workbench.schema import Schema
from workbench.zoo.base import CTRModel
from workbench.zoo.layers import MLP, check_sizes


class ScaledSigmoid(nn.Module):
    """FinalMLP's gate activation ``scale * sigmoid(x)``, a module of its own so that a forward hook reads the gate."""

    def __init__(self, scale: float = 2.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.sigmoid(x)


class FeatureGating(nn.Module):
    """One stream's feature selection: ``g * e`` with ``g = 2 * sigmoid(MLP(context))`` of width ``n_fields * D``.

    ``context_fields`` are the positions of the context fields in the field
    embedding tensor. When it is empty, the context is a learned vector of
    width ``D`` (initialised to zero), so the gate does not depend on the sample.
    """

    def __init__(
        self, n_fields: int, embedding_dim: int, context_fields: Sequence[int], hidden_units: Sequence[int]
    ) -> None:
        super().__init__()
        self.context_fields = tuple(context_fields)
        if self.context_fields:
            self.context_bias = None
            input_dim = len(self.context_fields) * embedding_dim
        else:
            self.context_bias = nn.Parameter(torch.zeros(1, embedding_dim))
            input_dim = embedding_dim
        self.mlp = MLP(input_dim, hidden_units, output_dim=n_fields * embedding_dim)
        self.gate = ScaledSigmoid(2.0)

    def constant_gate(self) -> torch.Tensor:
        """Return the gate of a stream without context, shape ``(F * D,)``: the same for every sample."""
        if self.context_bias is None:
            msg = "this stream has context fields, so its gate differs between samples; read it with a forward hook"
            raise ValueError(msg)
        return self.gate(self.mlp(self.context_bias))[0]

    def forward(self, field_embeddings: torch.Tensor) -> torch.Tensor:
        """Return the gated flattened embeddings ``(B, F * D)`` of ``(B, F, D)`` embeddings."""
        if self.context_bias is None:
            context = field_embeddings[:, list(self.context_fields)].flatten(start_dim=1)
        else:
            context = self.context_bias.expand(field_embeddings.shape[0], -1)
        return self.gate(self.mlp(context)) * field_embeddings.flatten(start_dim=1)


class MultiHeadBilinearFusion(nn.Module):
    """FinalMLP's stream fusion: ``b + w_1^T o_1 + w_2^T o_2 + sum_j o_1j^T W_j o_2j`` over ``num_heads`` heads.

    ``o_1`` of width ``d1`` and ``o_2`` of width ``d2`` are split into heads
    of ``d1 / num_heads`` and ``d2 / num_heads`` units. ``W_j`` is the
    bilinear matrix of head ``j``.
    """

    def __init__(self, dim1: int, dim2: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.linear1 = nn.Linear(dim1, 1)
        self.linear2 = nn.Linear(dim2, 1, bias=False)
        self.bilinear = nn.Parameter(torch.empty(num_heads, dim1 // num_heads, dim2 // num_heads))
        nn.init.xavier_normal_(self.bilinear)

    def forward(self, stream1: torch.Tensor, stream2: torch.Tensor) -> torch.Tensor:
        """Map ``(B, d1)`` and ``(B, d2)`` to logits of shape ``(B,)``."""
        heads1 = stream1.view(stream1.shape[0], self.num_heads, -1)
        heads2 = stream2.view(stream2.shape[0], self.num_heads, -1)
        bilinear = torch.einsum("bki,kij,bkj->b", heads1, self.bilinear, heads2)
        return self.linear1(stream1).squeeze(-1) + self.linear2(stream2).squeeze(-1) + bilinear


def _context_positions(schema: Schema, names: Sequence[str], parameter: str) -> list[int]:
    """Positions of the context fields ``names`` in the schema, or ValueError naming the unknown or repeated ones."""
    field_names = list(schema.field_names)
    unknown = [name for name in names if name not in field_names]
    if unknown:
        msg = (
            f"{parameter} names unknown field(s) {', '.join(map(repr, unknown))}; "
            f"choose from the schema's fields: {', '.join(field_names)}"
        )
        raise ValueError(msg)
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        msg = f"{parameter} lists field(s) {', '.join(map(repr, repeated))} more than once; list each field once"
        raise ValueError(msg)
    return [field_names.index(name) for name in names]


class FinalMLP(CTRModel):
    """FinalMLP: two gated MLP streams fused by multi-head bilinear pooling.

    ``use_fs=False`` drops the feature gates, so both streams read the plain
    embeddings. ``num_heads`` must divide the output width of both streams
    (the last of ``mlp1_hidden_units`` and ``mlp2_hidden_units``, or
    ``n_fields * embedding_dim`` for a stream without hidden layers).
    """

    architecture = "finalmlp"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        mlp1_hidden_units: Sequence[int] = (400,),
        mlp1_dropout: float = 0.4,
        mlp1_batch_norm: bool = True,
        mlp2_hidden_units: Sequence[int] = (100,),
        mlp2_dropout: float = 0.4,
        mlp2_batch_norm: bool = True,
        use_fs: bool = True,
        fs_hidden_units: Sequence[int] = (400,),
        fs1_context: Sequence[str] = (),
        fs2_context: Sequence[str] = (),
        num_heads: int = 5,
        **hyperparameters,
    ) -> None:
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            mlp1_hidden_units=list(mlp1_hidden_units),
            mlp1_dropout=mlp1_dropout,
            mlp1_batch_norm=mlp1_batch_norm,
            mlp2_hidden_units=list(mlp2_hidden_units),
            mlp2_dropout=mlp2_dropout,
            mlp2_batch_norm=mlp2_batch_norm,
            use_fs=use_fs,
            fs_hidden_units=list(fs_hidden_units),
            fs1_context=list(fs1_context),
            fs2_context=list(fs2_context),
            num_heads=num_heads,
            **hyperparameters,
        )
        check_sizes(
            mlp1_hidden_units=mlp1_hidden_units,
            mlp2_hidden_units=mlp2_hidden_units,
            fs_hidden_units=fs_hidden_units,
            num_heads=num_heads,
        )
        for name, context in (("fs1_context", fs1_context), ("fs2_context", fs2_context)):
            if isinstance(context, str):
                msg = f"{name} must be a list of field names; got the string {context!r}; write {json.dumps([context])}"
                raise ValueError(msg)
        context1 = _context_positions(schema, fs1_context, "fs1_context")
        context2 = _context_positions(schema, fs2_context, "fs2_context")

        input_dim = self.n_fields * embedding_dim
        self.use_fs = use_fs
        self.stream1_gating = FeatureGating(self.n_fields, embedding_dim, context1, fs_hidden_units) if use_fs else None
        self.stream2_gating = FeatureGating(self.n_fields, embedding_dim, context2, fs_hidden_units) if use_fs else None
        self.mlp1 = MLP(input_dim, mlp1_hidden_units, dropout=mlp1_dropout, batch_norm=mlp1_batch_norm)
        self.mlp2 = MLP(input_dim, mlp2_hidden_units, dropout=mlp2_dropout, batch_norm=mlp2_batch_norm)
        for stream, width in (("mlp1", self.mlp1.output_dim), ("mlp2", self.mlp2.output_dim)):
            if width % num_heads != 0:
                msg = (
                    f"num_heads ({num_heads}) must divide the output width of both streams; {stream} outputs "
                    f"{width} units; change num_heads or {stream}_hidden_units"
                )
                raise ValueError(msg)
        self.fusion = MultiHeadBilinearFusion(self.mlp1.output_dim, self.mlp2.output_dim, num_heads)

    def probes(self) -> list[Probe]:
        if not self.use_fs:
            return []
        probes = []
        for stream, context in ((1, self.hyperparameters["fs1_context"]), (2, self.hyperparameters["fs2_context"])):
            scope = f"computed from {', '.join(context)}" if context else "the same for every sample (no context)"
            # Without context the gate is a function of the weights alone, so it is read as a static probe.
            how = (
                {"modules": (f"stream{stream}_gating.gate",)}
                if context
                else {"static": lambda model, stream=stream: getattr(model, f"stream{stream}_gating").constant_gate()}
            )
            probes.append(
                Probe(
                    f"stream{stream}_gate",
                    "gate",
                    ("field",),
                    f"feature gate 2 * sigmoid(.) of MLP stream {stream}, {scope}; 1 leaves a bit unchanged, "
                    "values above 1 amplify it",
                    bit_fields=lambda model: field_contiguous_bits(model.n_fields, model.embedding_width),
                    value_range=(0.0, 2.0),
                    **how,
                )
            )
        return probes

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        if self.stream1_gating is None or self.stream2_gating is None:
            flat = field_embeddings.flatten(start_dim=1)
            input1, input2 = flat, flat
        else:
            input1 = self.stream1_gating(field_embeddings)
            input2 = self.stream2_gating(field_embeddings)
        return self.fusion(self.mlp1(input1), self.mlp2(input2))
