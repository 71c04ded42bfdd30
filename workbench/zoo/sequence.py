"""Behaviour-sequence models (DIN, DIEN and a QIN-style model) with one embedding slot per history position.

A behaviour history is a sequence field paired with the categorical target
field whose values it holds, such as ``history_movies`` with ``movie_id``.
Several paired histories of the same length, such as movie ids and their
genres, describe the same behaviours position by position: behaviour ``l`` is
the concatenation of their items at position ``l``. The history items are
embedded with the target field's table (raw values are matched between the two
vocabularies), so that a behaviour and a candidate of the same item have the
same vector.

The embedding tensor has one slot per ordinary field (target fields included)
and then, for each paired history, one slot per position, named
``field[position]``. A behaviour is present when any of its slots is non-zero:
the PAD item embeds to zero, and a coalition game that removes a behaviour sets
its slots to zero (:meth:`SequenceCTRModel.removal_slots`). Removing a
behaviour therefore takes it out of the history: it leaves the attention
weights, the pooling and the recurrent states, so every explainer that works
on slots can attribute a prediction to single behaviours. Sequence fields that
are not paired keep the mean-pooled single slot of the other models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.probes import Probe
from workbench.schema import PAD_INDEX, Schema
from workbench.zoo.base import CTRModel
from workbench.zoo.embedding import FieldEmbedding
from workbench.zoo.layers import MLP, check_sizes

MIN_PAIR_OVERLAP = 0.5
"""Share of a sequence field's values that a categorical field must also hold to be paired with it by default."""


def infer_behaviour_pairs(schema: Schema) -> list[tuple[str, str]]:
    """Pair each sequence field with the categorical field that shares most of its values.

    A pair needs at least :data:`MIN_PAIR_OVERLAP` of the sequence field's
    vocabulary in the categorical field's vocabulary; sequence fields without
    such a partner stay unpaired.
    """
    pairs = []
    categorical = [f for f in schema.fields if f.kind == "categorical" and f.vocabulary is not None]
    for f in schema.fields:
        if f.kind != "sequence" or f.vocabulary is None or not f.vocabulary.values:
            continue
        items = set(f.vocabulary.values)
        best, best_share = None, 0.0
        for target in categorical:
            share = len(items.intersection(target.vocabulary.values)) / len(items)
            if share > best_share:
                best, best_share = target.name, share
        if best is not None and best_share >= MIN_PAIR_OVERLAP:
            pairs.append((f.name, best))
    return pairs


def check_behaviour_pairs(schema: Schema, pairs: Sequence[Sequence[str]] | None) -> list[tuple[str, str]]:
    """Check ``[[history_field, target_field], ...]`` against the schema, or infer the pairs when ``None``."""
    if pairs is None:
        checked = infer_behaviour_pairs(schema)
        if not checked:
            sequences = [f.name for f in schema.fields if f.kind == "sequence"]
            msg = (
                "a behaviour-sequence model needs a sequence field paired with the categorical field of its items; "
                + (
                    f"no categorical field shares at least {MIN_PAIR_OVERLAP:.0%} of the values of "
                    f"{', '.join(sequences)}. Name the pairs with behaviour_pairs=[[\"history\", \"item\"]]"
                    if sequences
                    else "the data has no sequence field"
                )
            )
            raise ValueError(msg)
        return _same_length(schema, checked)
    checked = []
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2:
            msg = f"each behaviour pair must be [history_field, target_field]; got {pair!r}"
            raise ValueError(msg)
        history, target = (str(name) for name in pair)
        for name, kind in ((history, "sequence"), (target, "categorical")):
            if name not in schema.field_names:
                msg = f"behaviour pair {list(pair)}: no field named {name!r}; fields: {', '.join(schema.field_names)}"
                raise ValueError(msg)
            if schema[name].kind != kind:
                msg = f"behaviour pair {list(pair)}: {name!r} is a {schema[name].kind} field; it must be {kind}"
                raise ValueError(msg)
        if history in (h for h, _ in checked):
            msg = f"the history field {history!r} appears in two behaviour pairs"
            raise ValueError(msg)
        items, targets = schema[history].vocabulary, schema[target].vocabulary
        if items is not None and targets is not None and not set(items.values).intersection(targets.values):
            msg = (
                f"behaviour pair {list(pair)}: {history!r} and {target!r} share no values, so every history item "
                "would embed as the target's OOV; pair the history with the field of its items"
            )
            raise ValueError(msg)
        checked.append((history, target))
    if not checked:
        msg = "behaviour_pairs is empty; give at least one [history_field, target_field] pair, or None to infer them"
        raise ValueError(msg)
    return _same_length(schema, checked)


def _same_length(schema: Schema, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    lengths = {schema[h].max_length for h, _ in pairs}
    if len(lengths) != 1:
        detail = ", ".join(f"{h}: {schema[h].max_length}" for h, _ in pairs)
        msg = f"paired histories describe the same behaviours, so they need one max_length; got {detail}"
        raise ValueError(msg)
    return pairs


class BehaviourSlots(nn.Module):
    """Map inputs to ``(batch_size, n_other_fields + n_histories * max_length, width)`` slots.

    The first slots are the ordinary fields (as :class:`FieldEmbedding` embeds
    them), then each paired history's positions, embedded with its target
    field's table. ``output`` is an identity hook point on the stacked slots.
    """

    def __init__(self, schema: Schema, width: int, pairs: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.pairs = list(pairs)
        histories = [history for history, _ in self.pairs]
        others = [f for f in schema.fields if f.name not in histories]
        if not others:
            msg = "a behaviour-sequence model needs at least one field besides its histories (the target field)"
            raise ValueError(msg)
        self.fields = FieldEmbedding(Schema(others, label=schema.label), width)
        self.length = schema[histories[0]].max_length
        for position, (history, target) in enumerate(self.pairs):
            history_vocabulary, target_vocabulary = schema[history].vocabulary, schema[target].vocabulary
            assert history_vocabulary is not None and target_vocabulary is not None
            # History index -> target index of the same raw value; unknown values -> the target's OOV row.
            remap = torch.full((len(history_vocabulary),), target_vocabulary.oov_index, dtype=torch.long)
            remap[PAD_INDEX] = PAD_INDEX
            for index, value in enumerate(history_vocabulary.values, start=1):
                remap[index] = target_vocabulary.index_of(value)
            self.register_buffer(f"remap_{position}", remap, persistent=False)
        self.slot_names: tuple[str, ...] = tuple(self.fields.field_names) + tuple(
            f"{history}[{position}]" for history in histories for position in range(self.length)
        )
        self.output = nn.Identity()

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [self.fields(inputs)]
        for position, (history, target) in enumerate(self.pairs):
            items = getattr(self, f"remap_{position}")[inputs[history]]  # (B, L) target indices
            parts.append(self.fields.tables[target](items))  # (B, L, W); PAD rows are zero
        return self.output(torch.cat(parts, dim=1))


class SequenceCTRModel(CTRModel):
    """Base of the behaviour-sequence models: slots per history position and the split of the slot tensor."""

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        behaviour_pairs: Sequence[Sequence[str]] | None = None,
        **hyperparameters: Any,
    ) -> None:
        pairs = check_behaviour_pairs(schema, behaviour_pairs)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            behaviour_pairs=[list(pair) for pair in pairs],
            **hyperparameters,
        )
        self.pairs = pairs
        names = self.field_embedding.slot_names
        n_other = len(self.field_embedding.fields.field_names)
        self.n_other_slots = n_other
        self.history_length = self.field_embedding.length
        self.target_slots = [names.index(target) for _, target in pairs]

    def build_field_embedding(self) -> nn.Module:
        pairs = [tuple(pair) for pair in self.hyperparameters["behaviour_pairs"]]
        return BehaviourSlots(self.schema, self.embedding_width, pairs)

    @property
    def n_histories(self) -> int:
        return len(self.pairs)

    @property
    def behaviour_width(self) -> int:
        """Width of one behaviour: the concatenated slots of its paired histories."""
        return self.n_histories * self.embedding_width

    @property
    def slot_names(self) -> tuple[str, ...]:
        return self.field_embedding.slot_names

    def field_slots(self) -> dict[str, tuple[str, ...]]:
        slots = {}
        for f in self.schema.fields:
            if f.name in (history for history, _ in self.pairs):
                slots[f.name] = tuple(f"{f.name}[{position}]" for position in range(self.history_length))
            else:
                slots[f.name] = (f.name,)
        return slots

    def removal_slots(self) -> np.ndarray:
        mask = np.zeros(len(self.slot_names), dtype=bool)
        mask[self.n_other_slots :] = True
        return mask

    def behaviour_players(self) -> dict[str, tuple[str, ...]]:
        """Return one player per history position (all paired histories' slots at that position), keyed ``position l``."""
        histories = [history for history, _ in self.pairs]
        return {
            f"position {position}": tuple(f"{history}[{position}]" for history in histories)
            for position in range(self.history_length)
        }

    def split_behaviours(
        self, field_embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split slots into ordinary fields, behaviours, their mask and the target.

        Returns
        -------
        others : (B, n_other_slots, W), the ordinary field slots (targets included).
        behaviours : (B, L, n_histories * W), each position's history slots side by side.
        mask : (B, L) bool, positions with a behaviour (any non-zero slot).
        target : (B, n_histories * W), the target slots in the order of the pairs.
        """
        batch_size, _, width = field_embeddings.shape
        others = field_embeddings[:, : self.n_other_slots]
        histories = field_embeddings[:, self.n_other_slots :].reshape(
            batch_size, self.n_histories, self.history_length, width
        )
        behaviours = histories.permute(0, 2, 1, 3).reshape(batch_size, self.history_length, self.behaviour_width)
        mask = behaviours.ne(0).any(dim=-1)
        target = field_embeddings[:, self.target_slots].reshape(batch_size, self.behaviour_width)
        return others, behaviours, mask, target


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis restricted to ``mask``; a row without any position gives zeros."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0) * mask


class TargetAttention(nn.Module):
    """DIN's local activation unit: a weight per behaviour from an MLP on ``[q, k, q - k, q * k]``.

    The weights, shape ``(B, L)``, are zero at empty positions and are the
    output of the ``weights`` submodule, where a forward hook can read them.
    """

    def __init__(self, width: int, hidden_units: Sequence[int], *, softmax: bool) -> None:
        super().__init__()
        self.mlp = MLP(4 * width, hidden_units, output_dim=1)
        self.softmax = softmax
        self.weights = nn.Identity()

    def forward(self, target: torch.Tensor, behaviours: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        query = target.unsqueeze(1).expand_as(behaviours)
        features = torch.cat([query, behaviours, query - behaviours, query * behaviours], dim=-1)
        scores = self.mlp(features).squeeze(-1)  # (B, L)
        weights = masked_softmax(scores, mask) if self.softmax else scores * mask
        return self.weights(weights)


class DIN(SequenceCTRModel):
    """Deep Interest Network: target attention pools the behaviours, and an MLP reads the pool with the fields.

    ``attention_softmax=False`` (the default) follows the DIN paper and
    FuxiCTR's default: the weights are not normalised, so their sum can carry
    the strength of the interest. The official DIN code applies a softmax
    instead (``attention_softmax=True``).
    """

    architecture = "din"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        behaviour_pairs: Sequence[Sequence[str]] | None = None,
        attention_hidden_units: Sequence[int] = (64,),
        attention_softmax: bool = False,
        hidden_units: Sequence[int] = (200, 80),
        dropout: float = 0.0,
        batch_norm: bool = False,
        **hyperparameters: Any,
    ) -> None:
        check_sizes(attention_hidden_units=attention_hidden_units, hidden_units=hidden_units)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            behaviour_pairs=behaviour_pairs,
            attention_hidden_units=list(attention_hidden_units),
            attention_softmax=attention_softmax,
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            **hyperparameters,
        )
        self.attention = TargetAttention(self.behaviour_width, attention_hidden_units, softmax=attention_softmax)
        input_dim = self.n_other_slots * self.embedding_width + self.behaviour_width
        self.dnn = MLP(input_dim, hidden_units, dropout=dropout, batch_norm=batch_norm, output_dim=1)

    def probes(self) -> list[Probe]:
        normalised = "softmax over the present behaviours, so they sum to 1" if self.attention.softmax else (
            "not normalised (no softmax), so their sum follows the strength of the interest"
        )
        return [
            Probe(
                "target_attention",
                "target_attention",
                ("position",),
                f"DIN attention weight of each behaviour for the target; {normalised}; 0 at empty positions",
                modules=("attention.weights",),
                value_range=(0.0, 1.0) if self.attention.softmax else None,
            )
        ]

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        others, behaviours, mask, target = self.split_behaviours(field_embeddings)
        weights = self.attention(target, behaviours, mask)
        interest = (weights.unsqueeze(-1) * behaviours).sum(dim=1)
        return self.dnn(torch.cat([others.flatten(start_dim=1), interest], dim=1)).squeeze(-1)


def masked_gru(cell: nn.GRUCell, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Run a GRU cell over ``(B, L, D)`` inputs, keeping the state unchanged at positions outside ``mask``.

    Returns the states ``(B, L, hidden)``; a skipped position repeats the
    previous state, so removing a behaviour is the same as leaving it out of
    the sequence.
    """
    state = inputs.new_zeros(inputs.shape[0], cell.hidden_size)
    states = []
    for position in range(inputs.shape[1]):
        keep = mask[:, position].unsqueeze(-1).to(inputs.dtype)
        state = keep * cell(inputs[:, position], state) + (1 - keep) * state
        states.append(state)
    return torch.stack(states, dim=1)


class AUGRUCell(nn.Module):
    """GRU cell whose update gate is scaled by an attention weight (DIEN's AUGRU).

    ``u' = a * u`` and ``h = (1 - u') * h_prev + u' * h_candidate``, so a
    weight of 0 keeps the previous state.
    """

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_size = hidden_dim
        self.input_gates = nn.Linear(input_dim, 3 * hidden_dim)
        self.hidden_gates = nn.Linear(hidden_dim, 3 * hidden_dim)

    def forward(self, x: torch.Tensor, state: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        x_reset, x_update, x_new = self.input_gates(x).chunk(3, dim=-1)
        h_reset, h_update, h_new = self.hidden_gates(state).chunk(3, dim=-1)
        reset = torch.sigmoid(x_reset + h_reset)
        update = torch.sigmoid(x_update + h_update) * weight.unsqueeze(-1)
        candidate = torch.tanh(x_new + reset * h_new)
        return (1 - update) * state + update * candidate


class DIEN(SequenceCTRModel):
    """Deep Interest Evolution Network: a GRU extracts interests, AUGRU evolves them towards the target.

    The attention weight of behaviour ``t`` is a softmax over the present
    behaviours of ``h_t^T W e_target``, with ``h_t`` the extractor GRU state.
    Training adds DIEN's auxiliary loss (weight ``auxiliary_weight``): each
    state ``h_t`` must tell the next behaviour from a behaviour at the same
    position of another sample of the batch. As in the official DIEN code, the
    MLP reads the fields, the final evolved state, the sum of the behaviours and
    its element-wise product with the target.
    """

    architecture = "dien"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        behaviour_pairs: Sequence[Sequence[str]] | None = None,
        gru_hidden: int = 0,
        auxiliary_weight: float = 1.0,
        auxiliary_hidden_units: Sequence[int] = (64,),
        hidden_units: Sequence[int] = (200, 80),
        dropout: float = 0.0,
        batch_norm: bool = False,
        **hyperparameters: Any,
    ) -> None:
        check_sizes(auxiliary_hidden_units=auxiliary_hidden_units, hidden_units=hidden_units)
        if gru_hidden < 0:
            msg = f"gru_hidden must be >= 0 (0: the width of a behaviour); got {gru_hidden}"
            raise ValueError(msg)
        if auxiliary_weight < 0:
            msg = f"auxiliary_weight must be >= 0; got {auxiliary_weight}"
            raise ValueError(msg)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            behaviour_pairs=behaviour_pairs,
            gru_hidden=gru_hidden,
            auxiliary_weight=auxiliary_weight,
            auxiliary_hidden_units=list(auxiliary_hidden_units),
            hidden_units=list(hidden_units),
            dropout=dropout,
            batch_norm=batch_norm,
            **hyperparameters,
        )
        hidden = gru_hidden or self.behaviour_width
        self.extractor = nn.GRUCell(self.behaviour_width, hidden)
        self.attention_kernel = nn.Linear(hidden, self.behaviour_width, bias=False)
        if hidden == self.behaviour_width:
            with torch.no_grad():
                self.attention_kernel.weight.copy_(torch.eye(hidden))
        self.attention_weights = nn.Identity()
        self.evolution = AUGRUCell(hidden, hidden)
        self.auxiliary = MLP(hidden + self.behaviour_width, auxiliary_hidden_units, output_dim=1)
        input_dim = self.n_other_slots * self.embedding_width + hidden + 2 * self.behaviour_width
        self.dnn = MLP(input_dim, hidden_units, dropout=dropout, batch_norm=batch_norm, output_dim=1)

    def probes(self) -> list[Probe]:
        return [
            Probe(
                "target_attention",
                "target_attention",
                ("position",),
                "DIEN attention weight of each behaviour's interest state for the target (softmax over the "
                "present behaviours, sums to 1); it scales the AUGRU update gate; 0 at empty positions",
                modules=("attention_weights",),
                value_range=(0.0, 1.0),
            )
        ]

    def _interest(self, field_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return the logit, the extractor states, the behaviours and their mask."""
        others, behaviours, mask, target = self.split_behaviours(field_embeddings)
        states = masked_gru(self.extractor, behaviours, mask)  # (B, L, H)
        scores = (self.attention_kernel(states) * target.unsqueeze(1)).sum(dim=-1)
        weights = self.attention_weights(masked_softmax(scores, mask))
        evolved = states.new_zeros(states.shape[0], self.evolution.hidden_size)
        for position in range(states.shape[1]):
            evolved = self.evolution(states[:, position], evolved, weights[:, position])
        history_sum = (behaviours * mask.unsqueeze(-1)).sum(dim=1)
        features = [others.flatten(start_dim=1), evolved, history_sum, history_sum * target]
        logit = self.dnn(torch.cat(features, dim=1)).squeeze(-1)
        return logit, states, behaviours, mask

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        return self._interest(field_embeddings)[0]

    def auxiliary_loss(self, states: torch.Tensor, behaviours: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy of telling behaviour ``t + 1`` (positive) from another sample's (negative) given ``h_t``."""
        if states.shape[1] < 2:
            return states.new_zeros(())
        other = torch.randperm(states.shape[0], device=states.device)
        positive, negative = behaviours[:, 1:], behaviours[other, 1:]
        current = states[:, :-1]
        valid = mask[:, :-1] & mask[:, 1:]
        valid_negative = valid & mask[other, 1:]
        positive_logit = self.auxiliary(torch.cat([current, positive], dim=-1)).squeeze(-1)
        negative_logit = self.auxiliary(torch.cat([current, negative], dim=-1)).squeeze(-1)
        bce = nn.functional.binary_cross_entropy_with_logits
        terms = bce(positive_logit, torch.ones_like(positive_logit), reduction="none") * valid
        terms = terms + bce(negative_logit, torch.zeros_like(negative_logit), reduction="none") * valid_negative
        count = valid.sum() + valid_negative.sum()
        return terms.sum() / count.clamp(min=1)

    def training_loss(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        logit, states, behaviours, mask = self._interest(self.field_embedding(inputs))
        loss = nn.functional.binary_cross_entropy_with_logits(logit, labels)
        if self.hyperparameters["auxiliary_weight"] > 0:
            loss = loss + self.hyperparameters["auxiliary_weight"] * self.auxiliary_loss(states, behaviours, mask)
        return loss


class QuadraticLayer(nn.Module):
    """One layer of QIN's quadratic network: ``x * sum_r (W_r x + b_r)``, then batch norm, PReLU, dropout and a residual."""

    def __init__(self, width: int, rank: int, dropout: float) -> None:
        super().__init__()
        self.rank = rank
        self.linear = nn.Linear(width, rank * width)
        self.norm = nn.BatchNorm1d(width)
        self.activation = nn.PReLU()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gain = self.linear(x).view(x.shape[0], self.rank, x.shape[1]).sum(dim=1)
        return x + self.dropout(self.activation(self.norm(x * gain)))


class QINStyle(SequenceCTRModel):
    """A QIN-style model: sparse target attention with ReLU weights, then a quadratic interaction network.

    The query is the target's slots together with the dense vector fields (such
    as a text embedding of the item), projected by ``W_q``; the weights are
    ``ReLU(q K^T / sqrt(d))`` at present behaviours, unnormalised and exactly
    zero for negative scores. The pooled interest ``W_o (s V)`` plus the target
    joins the field slots as the input of ``n_layers`` quadratic layers.
    History items have no dense vectors of their own here, so the dense fields
    enter through the query and the quadratic network only.
    """

    architecture = "qin"

    def __init__(
        self,
        schema: Schema,
        *,
        embedding_dim: int = 10,
        behaviour_pairs: Sequence[Sequence[str]] | None = None,
        attention_dim: int = 32,
        n_layers: int = 3,
        rank: int = 3,
        dropout: float = 0.1,
        **hyperparameters: Any,
    ) -> None:
        check_sizes(attention_dim=attention_dim, n_layers=n_layers, rank=rank)
        if not 0.0 <= dropout < 1.0:
            msg = f"dropout must be in [0, 1); got {dropout}"
            raise ValueError(msg)
        super().__init__(
            schema,
            embedding_dim=embedding_dim,
            behaviour_pairs=behaviour_pairs,
            attention_dim=attention_dim,
            n_layers=n_layers,
            rank=rank,
            dropout=dropout,
            **hyperparameters,
        )
        names = self.slot_names
        self.dense_slots = [names.index(f.name) for f in schema.fields if f.kind == "dense"]
        query_width = self.behaviour_width + len(self.dense_slots) * self.embedding_width
        self.query = nn.Linear(query_width, attention_dim, bias=False)
        self.key = nn.Linear(self.behaviour_width, attention_dim, bias=False)
        self.value = nn.Linear(self.behaviour_width, attention_dim, bias=False)
        self.pool_output = nn.Linear(attention_dim, self.behaviour_width, bias=False)
        self.attention_weights = nn.Identity()
        width = self.n_other_slots * self.embedding_width + self.behaviour_width
        self.layers = nn.ModuleList(QuadraticLayer(width, rank, dropout) for _ in range(n_layers))
        self.head = nn.Linear(width, 1)

    def probes(self) -> list[Probe]:
        return [
            Probe(
                "target_attention",
                "target_attention",
                ("position",),
                "QIN sparse attention weight ReLU(q k / sqrt(d)) of each behaviour for the target; not normalised, "
                "0 for negative scores and at empty positions",
                modules=("attention_weights",),
            )
        ]

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        others, behaviours, mask, target = self.split_behaviours(field_embeddings)
        dense = field_embeddings[:, self.dense_slots].flatten(start_dim=1)
        query = self.query(torch.cat([target, dense], dim=1))  # (B, d)
        scores = (self.key(behaviours) * query.unsqueeze(1)).sum(dim=-1) / self.key.out_features**0.5
        weights = self.attention_weights(torch.relu(scores) * mask)
        interest = self.pool_output((weights.unsqueeze(-1) * self.value(behaviours)).sum(dim=1)) + target
        x = torch.cat([others.flatten(start_dim=1), interest], dim=1)
        for layer in self.layers:
            x = layer(x)
        return self.head(x).squeeze(-1)
