"""Building blocks shared by the native models."""

from __future__ import annotations

from collections.abc import Sequence

from typing import Any

import torch
from torch import nn


def check_sizes(**sizes: Any) -> None:
    """Raise ValueError when a size (or any size in a list) is below 1; keyword names appear in the message."""
    for name, value in sizes.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if any(int(v) < 1 for v in values):
            msg = f"{name} must be >= 1; got {value!r}"
            raise ValueError(msg)


def slot_layer(linear: nn.Linear, n_fields: int, width: int, used: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """View a linear layer over flattened field slots as ``(weight (out, F, width), bias)``.

    ``used`` is the number of leading slot columns the layer reads (all when
    ``None``); the columns after them get zero weight.
    """
    used = width if used is None else used
    weight = linear.weight.reshape(linear.out_features, n_fields, used)
    if used < width:
        weight = torch.nn.functional.pad(weight, (0, width - used))
    bias = linear.bias if linear.bias is not None else weight.new_zeros(linear.out_features)
    return weight, bias


def fm_pairwise(v: torch.Tensor) -> torch.Tensor:
    """Sum of all pair terms <v_i, v_j> over i < j, for ``v`` of shape ``(B, F, D)``."""
    square_of_sum = v.sum(dim=1).pow(2)
    sum_of_squares = v.pow(2).sum(dim=1)
    return 0.5 * (square_of_sum - sum_of_squares).sum(dim=1)


class MLP(nn.Module):
    """Fully connected layers with ReLU, optional batch norm and dropout.

    Maps ``(batch_size, input_dim)`` to ``(batch_size, hidden_units[-1])``, or to
    ``(batch_size, output_dim)`` when ``output_dim`` is given (a final linear
    layer without activation).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_units: Sequence[int],
        *,
        dropout: float = 0.0,
        batch_norm: bool = False,
        output_dim: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            msg = f"dropout must be in [0, 1); got {dropout}"
            raise ValueError(msg)
        layers: list[nn.Module] = []
        width = input_dim
        for units in hidden_units:
            layers.append(nn.Linear(width, units))
            if batch_norm:
                layers.append(nn.BatchNorm1d(units))
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = units
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        self.output_dim = width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, first_output: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the layers; with ``first_output``, start from that output of the first linear layer instead."""
        if first_output is None:
            return self.layers(x)
        return self.layers[1:](first_output)

    @property
    def first_linear(self) -> nn.Linear | None:
        """The linear layer that reads the input, or ``None`` for an MLP without layers."""
        return self.layers[0] if len(self.layers) else None


class CrossNetV2(nn.Module):
    """DCN-V2 cross layers: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` with full-rank ``W_l``."""

    def __init__(self, input_dim: int, n_layers: int) -> None:
        super().__init__()
        self.cross_layers = nn.ModuleList(nn.Linear(input_dim, input_dim) for _ in range(n_layers))

    def forward(self, x0: torch.Tensor, first_output: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the cross layers; ``first_output``, when given, replaces ``W_0 x_0 + b_0``."""
        x = x0
        for position, layer in enumerate(self.cross_layers):
            linear = first_output if position == 0 and first_output is not None else layer(x)
            x = x0 * linear + x
        return x


class MultiHeadSelfAttention(nn.Module):
    """AutoInt interacting layer over fields: ``(B, F, D_in)`` to ``(B, F, attention_dim)``.

    The attention weights ``softmax(Q K^T / sqrt(d_head))``, shape
    ``(B, n_heads, F, F)`` with the query field on the rows, are the output of
    the ``softmax`` submodule, where a forward hook can read them.
    """

    def __init__(
        self, input_dim: int, attention_dim: int, n_heads: int, *, use_scale: bool = True, use_residual: bool = True
    ) -> None:
        super().__init__()
        if n_heads < 1:
            msg = f"n_heads must be >= 1; got {n_heads}"
            raise ValueError(msg)
        if attention_dim % n_heads != 0:
            msg = f"attention_dim ({attention_dim}) must be divisible by n_heads ({n_heads})"
            raise ValueError(msg)
        self.n_heads = n_heads
        self.head_dim = attention_dim // n_heads
        self.use_scale = use_scale
        self.query = nn.Linear(input_dim, attention_dim, bias=False)
        self.key = nn.Linear(input_dim, attention_dim, bias=False)
        self.value = nn.Linear(input_dim, attention_dim, bias=False)
        self.residual = nn.Linear(input_dim, attention_dim, bias=False) if use_residual else None
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_size, n_fields, _ = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch_size, n_fields, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = split_heads(self.query(x)), split_heads(self.key(x)), split_heads(self.value(x))
        scores = q @ k.transpose(-1, -2)
        if self.use_scale:
            scores = scores / self.head_dim**0.5
        attention = self.softmax(scores)
        out = (attention @ v).transpose(1, 2).reshape(batch_size, n_fields, -1)
        if self.residual is not None:
            out = out + self.residual(x)
        return torch.relu(out)
