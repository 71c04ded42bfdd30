"""The contract every native CTR model follows.

A model is split in two: ``field_embedding`` maps the input dict to field
embeddings of shape ``(batch_size, n_fields, embedding_width)``, and
``logit_from_embeddings`` maps those to one logit per sample. ``forward``
chains the two. Explainers mask or interpolate fields on the embedding tensor,
so everything a field contributes must pass through its slot there. Models
with a first-order weight per feature therefore keep that weight in an extra
column of the same slot rather than in a separate table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from workbench.probes import Probe
from workbench.schema import Schema
from workbench.zoo.embedding import FieldEmbedding


class CTRModel(nn.Module):
    """Base class of native models; subclasses set ``architecture`` and ``logit_from_embeddings``."""

    architecture: ClassVar[str] = ""

    def __init__(self, schema: Schema, *, embedding_dim: int = 10, **hyperparameters: Any) -> None:
        super().__init__()
        if embedding_dim < 1:
            msg = f"embedding_dim must be >= 1; got {embedding_dim}"
            raise ValueError(msg)
        self.schema = schema
        self.embedding_dim = embedding_dim
        self.hyperparameters: dict[str, Any] = {"embedding_dim": embedding_dim, **hyperparameters}
        self.field_embedding = self.build_field_embedding()

    def build_field_embedding(self) -> nn.Module:
        """Build the module that maps inputs to slots; sequence models override it (see ``workbench.zoo.sequence``)."""
        return FieldEmbedding(self.schema, self.embedding_width)

    @property
    def embedding_width(self) -> int:
        """Width W of one field slot in the embedding tensor."""
        return self.embedding_dim

    @property
    def n_fields(self) -> int:
        return len(self.schema.fields)

    @property
    def slot_names(self) -> tuple[str, ...]:
        """Names of the slots of the embedding tensor, in order: the field names, one slot per field.

        Sequence models give each position of a behaviour history its own
        slot, named ``field[position]``.
        """
        return tuple(self.schema.field_names)

    def field_slots(self) -> dict[str, tuple[str, ...]]:
        """Map each field to the names of its slots (one slot per field by default)."""
        return {name: (name,) for name in self.schema.field_names}

    def removal_slots(self) -> np.ndarray:
        """Boolean mask over slots whose absence means removal: a coalition game sets them to zero for every baseline.

        Sequence models mark their behaviour slots, because a zero behaviour
        slot is a behaviour that is not in the history. No slot by default.
        """
        return np.zeros(len(self.slot_names), dtype=bool)

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Map ``(batch_size, n_fields, embedding_width)`` to logits of shape ``(batch_size,)``.

        ``first_layer_outputs``, when given, contains the outputs of the layers
        listed by :meth:`first_layers` for these rows, computed elsewhere. The
        model then uses them instead of applying those layers itself.
        """
        raise NotImplementedError

    def first_layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Affine layers that read the embedding tensor directly, split by field slot.

        Each entry is ``(weight, bias)`` with ``weight`` of shape
        ``(out_features, n_fields, embedding_width)`` and ``bias`` of shape
        ``(out_features,)``: the layer maps embeddings ``x`` to
        ``einsum("bfw,ofw->bo", x, weight) + bias``. Because that output is a
        sum of one term per field, a coalition game can add precomputed
        per-field terms instead of running the layer on every coalition row
        (see ``workbench.explain.game.EmbeddingGame``). The default, an empty
        list, means the model offers no such layer.
        """
        return []

    def probes(self) -> list[Probe]:
        """Return the gates, masks, attention and pair weights this model exposes (see ``workbench.probes``).

        The default, an empty list, means the model declares none.
        """
        return []

    def training_loss(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Compute the loss that training minimises for one batch: binary cross-entropy on the logits by default.

        Models trained with extra terms (FCN's Tri-BCE) override this. The
        prediction is still ``forward``.
        """
        return nn.functional.binary_cross_entropy_with_logits(self(inputs), labels)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Return the logit (log-odds of a click) per sample, shape ``(batch_size,)``."""
        return self.logit_from_embeddings(self.field_embedding(inputs))


class FirstOrderSlots:
    """Mixin for models with a first-order weight per feature: each field slot is ``[v_f, w_f]``, of width ``D + 1``.

    List it before :class:`CTRModel` in the bases so that its ``embedding_width`` wins.
    """

    embedding_dim: int

    @property
    def embedding_width(self) -> int:
        return self.embedding_dim + 1

    def split_slots(self, field_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split slots into embeddings ``(B, F, D)`` and first-order weights ``(B, F)``."""
        return field_embeddings[..., :-1], field_embeddings[..., -1]
