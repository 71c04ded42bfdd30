"""The coalition game on field embeddings that Shapley-style explainers evaluate.

Players are fields, or named groups of fields. A coalition ``S`` keeps the
embedding slots of the fields in ``S`` and replaces every other slot by a
baseline slot, and ``v(S)`` is the model output (logit or probability) of that
mixed embedding tensor. Because native models keep everything a field
contributes inside its slot (FM and DeepFM store the first-order weight in the
slot's last column), an absent field contributes nothing beyond its baseline.

Coalitions are boolean rows of a matrix of shape ``(n_coalitions, n_players)``.
:func:`all_coalitions` lists the ``2**n_players`` coalitions in bitmask order:
coalition ``c`` contains player ``p`` exactly when bit ``p`` of ``c`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from workbench.explain.baselines import baseline_inputs
from workbench.zoo.base import CTRModel

GAME_BASELINES: dict[str, str] = {
    "zero": "every absent field at the zero embedding",
    "pad": "every absent field at the embedding of its PAD input (PAD id, value 0, empty history, zero vector)",
    "oov": "absent categorical fields at the embedding of their OOV id; other fields as in 'pad'",
    "mean": "every absent field at its mean embedding over the background rows",
    "expectation": "v(S) averaged over the background rows, each row filling the absent fields in turn",
}
BACKGROUND_BASELINES = frozenset({"mean", "expectation"})
OUTPUT_SPACES = ("logit", "probability")

MIN_SHARED_ROWS = 0.05
"""Share of repeated rows above which :meth:`EmbeddingGame.values` forwards each distinct row only once."""

MIN_ROWS_TO_DEDUPLICATE = 65_536
"""Smallest number of rows (samples x coalitions) for which :meth:`EmbeddingGame.values` looks for repeats.

Grouping the samples costs one ``np.unique`` per coalition, about 40 ms for 1,024 coalitions. Below this
size that costs more than the rows it saves: on 20 Frappe rows, the exact game took 1.19 times as long."""

MIN_SAMPLES_TO_DEDUPLICATE = 32
"""Minimum number of samples for which :meth:`EmbeddingGame.values` looks for repeats.

Grouping costs one ``np.unique`` per coalition whatever the number of samples, about as much as forwarding 8
rows, and a coalition saves at most one row per sample. An estimate, from one measurement: the two rows of a
what-if comparison on the 15-field ad-click DeepFM (32,768 coalitions) took 610 ms with grouping and 76 ms
without."""

DEFAULT_CHUNK_SIZE = 4_096
"""Rows per forward pass. On CPUs, chunks whose activations fit in the caches run fastest: a Frappe DCNv2
(DNN 400-400-400) took 5.2 microseconds per row in chunks of 2,048 or 4,096 rows and 10.4 in chunks of
32,768, on 2 cores (bench/exact_frappe.py, docs/benchmarks.md)."""


def all_coalitions(n_players: int) -> np.ndarray:
    """Return every coalition of ``n_players`` players in bitmask order.

    Returns
    -------
    ndarray of bool, shape (2**n_players, n_players)
        Row ``c`` has ``True`` in column ``p`` exactly when bit ``p`` of ``c`` is set.
    """
    if n_players < 0:
        msg = f"n_players must be >= 0; got {n_players}"
        raise ValueError(msg)
    codes = np.arange(2**n_players, dtype=np.int64)
    return ((codes[:, None] >> np.arange(n_players, dtype=np.int64)) & 1).astype(bool)


def resolve_players(
    field_names: Sequence[str], players: Mapping[str, Sequence[str]] | None
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], np.ndarray]:
    """Check a field grouping and return player names, the grouping and the membership matrix.

    Parameters
    ----------
    field_names : the model's fields, in slot order.
    players : ``None`` for one player per field, or a mapping from group name
        to the names of its fields. Every field must be in exactly one group.

    Returns
    -------
    names : tuple of str, the player names in order.
    groups : dict mapping each player name to its field names.
    membership : ndarray of bool, shape (n_players, n_fields); ``membership[p, f]``
        is ``True`` when field ``f`` belongs to player ``p``.
    """
    field_names = list(field_names)
    if players is None:
        groups = {name: (name,) for name in field_names}
    else:
        if not isinstance(players, Mapping):
            msg = f"players must be None or a mapping from group name to field names; got {type(players).__name__}"
            raise TypeError(msg)
        if not players:
            msg = "players is an empty mapping; give at least one group, or None for one player per field"
            raise ValueError(msg)
        groups = {}
        owner: dict[str, str] = {}
        for group, members in players.items():
            if isinstance(members, str):
                msg = f"group {group!r} must list field names; got the string {members!r} (write [{members!r}])"
                raise ValueError(msg)
            members = tuple(members)
            if not members:
                msg = f"group {group!r} has no fields; every group needs at least one"
                raise ValueError(msg)
            for name in members:
                if name not in field_names:
                    msg = f"group {group!r} names the unknown field {name!r}; fields: {', '.join(field_names)}"
                    raise ValueError(msg)
                if name in owner:
                    where = "twice in that group" if owner[name] == group else f"also in group {owner[name]!r}"
                    msg = f"field {name!r} of group {group!r} is {where}; each field must be in exactly one group"
                    raise ValueError(msg)
                owner[name] = str(group)
            groups[str(group)] = members
        missing = [name for name in field_names if name not in owner]
        if missing:
            msg = f"fields missing from the groups: {', '.join(missing)}; each field must be in exactly one group"
            raise ValueError(msg)

    names = tuple(groups)
    membership = np.zeros((len(names), len(field_names)), dtype=bool)
    for p, name in enumerate(names):
        for member in groups[name]:
            membership[p, field_names.index(member)] = True
    return names, groups, membership


def model_players(
    model: CTRModel, players: Mapping[str, Sequence[str]] | None
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], np.ndarray]:
    """Resolve players over a model's slots; return names, the grouping as given and the slot membership.

    A group may list fields and slots. A field stands for all of its slots, so
    a behaviour history is one player unless its positions (slots named
    ``field[position]``) are listed one by one. ``None`` gives one player per
    field. The membership matrix has shape ``(n_players, n_slots)``.
    """
    slot_names = tuple(getattr(model, "slot_names", model.schema.field_names))
    field_slots = model.field_slots() if hasattr(model, "field_slots") else {n: (n,) for n in slot_names}
    if players is None:
        groups = {name: (name,) for name in field_slots}
        expanded = {name: slots for name, slots in field_slots.items()}
    else:
        if not isinstance(players, Mapping):
            msg = f"players must be None or a mapping from group name to field names; got {type(players).__name__}"
            raise TypeError(msg)
        groups = {}
        expanded = {}
        for group, members in players.items():
            if isinstance(members, str):
                msg = f"group {group!r} must list field names; got the string {members!r} (write [{members!r}])"
                raise ValueError(msg)
            members = tuple(members)
            unknown = [name for name in members if name not in field_slots and name not in slot_names]
            if unknown:
                msg = f"group {group!r} names the unknown field {unknown[0]!r}; fields: {', '.join(field_slots)}"
                raise ValueError(msg)
            groups[str(group)] = members
            expanded[str(group)] = tuple(slot for name in members for slot in field_slots.get(name, (name,)))
    names, _, membership = resolve_players(slot_names, expanded if expanded else players)
    return names, groups, membership


class EmbeddingGame:
    """The value function ``v(S)`` of a batch of samples, one game per sample.

    Parameters
    ----------
    model : CTRModel
        Runs in eval mode during each call; its previous mode is restored.
    inputs : dict of str to Tensor
        Model inputs of ``n_samples`` samples, as from ``CTRDataset.tensors(rows)``.
    baseline : str
        What replaces an absent field's slot, one of :data:`GAME_BASELINES`.
        ``"zero"`` and ``"pad"`` give the same numbers for native models,
        because their PAD inputs embed to zero. ``"pad"`` stays separate for
        models whose PAD embedding is not zero.
    players : mapping of str to list of str, optional
        Field groups that act as one player each; default one player per field.
    output_space : ``"logit"`` (log-odds, default) or ``"probability"`` (sigmoid of the logit).
    chunk_size : int
        Rows per forward pass of ``model.logit_from_embeddings``; caps memory.
    background : dict of str to Tensor, optional
        Model inputs of the ``K`` background rows; required by ``"mean"`` and
        ``"expectation"`` and not used by the other baselines.
    use_structure : bool
        Use the model's :meth:`~workbench.zoo.base.CTRModel.first_layers` in
        :meth:`values` (default ``False``; :func:`~workbench.explain.exact.exact_indices`
        turns it on). A layer that reads the whole embedding tensor is
        a sum of one term per field, so its output for a coalition is the sum
        of the sample's terms for the present fields and the baseline's terms
        for the absent ones. The game computes those terms once per sample and
        adds them up with one matrix product per block of samples instead of
        running the layer on every coalition row. The values agree with
        ``use_structure=False`` up to float32 rounding (about 1e-6).
    deduplicate : bool
        In :meth:`values`, forward each distinct row once (default ``False``;
        :func:`~workbench.explain.exact.exact_indices` turns it on).
        Samples that share the values of the fields a coalition keeps give
        the same row for that coalition: on 1,000 Frappe test rows, 21 % of
        the 1,024,000 rows of the exact game repeat. Used when at least
        :data:`MIN_SHARED_ROWS` of the rows repeat and a call has at least
        :data:`MIN_ROWS_TO_DEDUPLICATE` rows; the structured path is used
        otherwise.

    Notes
    -----
    Evaluating ``C`` coalitions for ``n`` samples forwards ``n * C`` rows, or
    ``n * C * K`` rows for the ``"expectation"`` baseline, in chunks of
    ``chunk_size`` (fewer with ``deduplicate``). The field embeddings of the samples and of the background
    are computed once, at construction. :attr:`n_model_evaluations` counts the
    rows forwarded through ``logit_from_embeddings`` so far.
    """

    def __init__(
        self,
        model: CTRModel,
        inputs: Mapping[str, torch.Tensor],
        *,
        baseline: str = "zero",
        players: Mapping[str, Sequence[str]] | None = None,
        output_space: str = "logit",
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        background: Mapping[str, torch.Tensor] | None = None,
        use_structure: bool = False,
        deduplicate: bool = False,
    ) -> None:
        if baseline not in GAME_BASELINES:
            msg = f"unknown baseline {baseline!r}; available: {', '.join(GAME_BASELINES)}"
            raise ValueError(msg)
        if output_space not in OUTPUT_SPACES:
            msg = f"unknown output_space {output_space!r}; available: {', '.join(OUTPUT_SPACES)}"
            raise ValueError(msg)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            msg = f"chunk_size must be an integer >= 1; got {chunk_size!r}"
            raise ValueError(msg)
        if baseline in BACKGROUND_BASELINES and background is None:
            msg = f"baseline {baseline!r} needs background rows; pass background= as a model inputs dict"
            raise ValueError(msg)

        self.model = model
        self.baseline = baseline
        self.output_space = output_space
        self.chunk_size = chunk_size
        self.input_names: tuple[str, ...] = tuple(model.schema.field_names)
        # The slots of the embedding tensor: one per field, or one per history position in sequence models.
        self.field_names: tuple[str, ...] = tuple(getattr(model, "slot_names", self.input_names))
        self.player_names, self.player_fields, self.membership = model_players(model, players)
        self.n_model_evaluations = 0
        self.deduplicate = deduplicate

        # NOTE: only the CPU path has been run. On a GPU, rows are built and forwarded
        # on the model's device, and the values are gathered on the CPU.
        try:
            self.device = next(model.parameters()).device
        except StopIteration:
            self.device = torch.device("cpu")
        inputs = self._check_inputs(inputs, "inputs")
        background = self._check_inputs(background, "background") if baseline in BACKGROUND_BASELINES else None

        with _eval_mode(self.model):
            # (n_samples, n_fields, width)
            self.embeddings = model.field_embedding(inputs).detach()
            # (1, n_fields, width), or (K, n_fields, width) for "expectation"
            self.baseline_embeddings = self._baseline_embeddings(inputs, background).detach()
            # (weight (out, n_fields, width), bias (out,)) of each layer that reads the embeddings directly
            layers = model.first_layers() if use_structure else []
            self.first_layers = [(weight.detach(), bias.detach()) for weight, bias in layers]
            # Per layer: the baseline's per-field terms (K, n_fields, out) and their sum plus the bias (K, out).
            self._baseline_terms = [
                torch.einsum("kfw,ofw->kfo", self.baseline_embeddings, weight) for weight, _ in self.first_layers
            ]
            self._baseline_outputs = [
                terms.sum(dim=1) + bias
                for terms, (_, bias) in zip(self._baseline_terms, self.first_layers, strict=True)
            ]

    # --- public --------------------------------------------------------------

    @property
    def n_samples(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def n_players(self) -> int:
        return len(self.player_names)

    @property
    def n_background(self) -> int:
        """Background rows averaged per coalition: K for ``"expectation"``, else 1."""
        return int(self.baseline_embeddings.shape[0])

    def values(
        self,
        coalitions: np.ndarray,
        *,
        samples: np.ndarray | slice | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> np.ndarray:
        """Evaluate ``v(S)`` for every coalition and every selected sample.

        Parameters
        ----------
        coalitions : array of bool, shape (n_coalitions, n_players)
            ``coalitions[c, p]`` is ``True`` when player ``p`` is present in coalition ``c``.
        samples : positions of the samples to evaluate (default: all).
        progress : called with the finished fraction in [0, 1] after each forward pass.

        Returns
        -------
        ndarray of float64, shape (n_selected_samples, n_coalitions)
            Values in the units of ``output_space``. The model computes in its
            own dtype (float32 for native models); averaging and the sigmoid
            run in float64.
        """
        coalitions = np.asarray(coalitions)
        if coalitions.ndim != 2 or coalitions.shape[1] != self.n_players:
            msg = f"coalitions must have shape (n_coalitions, {self.n_players}); got {coalitions.shape}"
            raise ValueError(msg)
        if coalitions.dtype != bool:
            if not np.isin(coalitions, (0, 1)).all():
                msg = "coalitions must be boolean or 0/1"
                raise ValueError(msg)
            coalitions = coalitions.astype(bool)

        embeddings = self.embeddings
        if samples is not None:
            positions = np.atleast_1d(np.arange(self.n_samples)[samples])
            embeddings = embeddings[torch.from_numpy(positions).to(self.device)]
        n_selected, n_coalitions = embeddings.shape[0], coalitions.shape[0]
        # (n_coalitions, n_fields): which slots each coalition keeps
        field_masks = torch.from_numpy(coalitions @ self.membership).to(self.device)
        with _eval_mode(self.model):
            distinct = self._distinct_rows(embeddings, field_masks) if self.deduplicate else None
            if distinct is not None:
                # Forward each distinct row once and copy its value to every (sample, coalition) pair that has it.
                first_pairs, pair_of_distinct = distinct
                values = self._forward_pairs(
                    embeddings,
                    field_masks,
                    first_pairs.numel(),
                    progress,
                    pair_samples=first_pairs % n_selected,
                    pair_masks=first_pairs // n_selected,
                )
                return values[pair_of_distinct].reshape(n_coalitions, n_selected).T.contiguous().numpy()
            if self.first_layers and self.n_background <= self.chunk_size:
                return self._forward_structured(embeddings, field_masks, progress).numpy()
            values = self._forward_pairs(embeddings, field_masks, n_selected * n_coalitions, progress)
        return values.reshape(n_selected, n_coalitions).numpy()

    def values_per_sample(
        self,
        coalitions: np.ndarray,
        *,
        samples: np.ndarray | slice | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> np.ndarray:
        """Evaluate a different set of coalitions for each sample.

        Parameters
        ----------
        coalitions : array of bool, shape (n_selected_samples, n_coalitions, n_players)
            ``coalitions[s, c, p]`` is ``True`` when player ``p`` is in coalition ``c`` of selected sample ``s``.
        samples : positions of the selected samples (default: all).
        progress : called with the finished fraction in [0, 1] after each forward pass.

        Returns
        -------
        ndarray of float64, shape (n_selected_samples, n_coalitions)
            Values in the units of ``output_space``.
        """
        coalitions = np.asarray(coalitions, dtype=bool)
        positions = np.atleast_1d(np.arange(self.n_samples)[slice(None) if samples is None else samples])
        if coalitions.ndim != 3 or coalitions.shape[0] != positions.size or coalitions.shape[2] != self.n_players:
            msg = (
                f"coalitions must have shape ({positions.size}, n_coalitions, {self.n_players}) for the selected "
                f"samples; got {coalitions.shape}"
            )
            raise ValueError(msg)
        n_selected, n_coalitions, _ = coalitions.shape
        if n_coalitions == 0:
            return np.zeros((n_selected, 0))
        field_masks = np.matmul(coalitions, self.membership).reshape(n_selected * n_coalitions, -1)
        masks = torch.from_numpy(np.ascontiguousarray(field_masks)).to(self.device)
        embeddings = self.embeddings[torch.from_numpy(positions).to(self.device)]
        n_pairs = n_selected * n_coalitions
        with _eval_mode(self.model):
            # Pair p is sample p // n_coalitions with mask row p.
            values = self._forward_pairs(
                embeddings, masks, n_pairs, progress, pairs_per_sample=n_coalitions, pair_masks=None
            )
        return values.reshape(n_selected, n_coalitions).numpy()

    __call__ = values

    # --- private -------------------------------------------------------------

    def _forward_pairs(
        self,
        embeddings: torch.Tensor,
        field_masks: torch.Tensor,
        n_pairs: int,
        progress: Callable[[float], None] | None,
        *,
        pair_samples: torch.Tensor | None = None,
        pair_masks: torch.Tensor | None = None,
        pairs_per_sample: int | None = None,
    ) -> torch.Tensor:
        """Evaluate ``n_pairs`` (sample, mask) pairs, averaged over the background rows; return (n_pairs,) float64.

        Pair ``p`` mixes ``embeddings[pair_samples[p]]`` with the baseline under
        ``field_masks[pair_masks[p]]``. Without index tensors, pair ``p`` is
        sample ``p // pairs_per_sample`` (default: the number of mask rows)
        with mask row ``p % len(field_masks)``. Rows are forwarded in chunks of
        ``chunk_size``.
        """
        n_background = self.n_background
        n_masks = field_masks.shape[0]
        per_sample = n_masks if pairs_per_sample is None else pairs_per_sample
        n_rows = n_pairs * n_background
        sums = torch.zeros(n_pairs, dtype=torch.float64)
        baseline = self.baseline_embeddings

        for start in range(0, n_rows, self.chunk_size):
            stop = min(start + self.chunk_size, n_rows)
            # Row r stands for pair r // K and background row r % K.
            row = torch.arange(start, stop, device=self.device)
            pair = row // n_background
            sample = pair // per_sample if pair_samples is None else pair_samples[pair]
            mask = pair % n_masks if pair_masks is None else pair_masks[pair]
            keep = field_masks[mask].unsqueeze(-1)  # (chunk, n_fields, 1)
            filler = baseline if n_background == 1 else baseline[row % n_background]
            mixed = torch.where(keep, embeddings[sample], filler)

            output = self._outputs(mixed)
            if n_background == 1:
                sums[start:stop] = output
            else:
                sums.index_add_(0, pair.cpu(), output)
            self.n_model_evaluations += stop - start
            if progress is not None:
                progress(stop / n_rows)

        if n_background > 1:
            sums /= n_background
        return sums

    def _outputs(
        self, mixed: torch.Tensor, first_layer_outputs: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Forward mixed rows and return their values in ``output_space`` as float64 on the CPU."""
        if first_layer_outputs is None:
            # Models written against the one-argument form of logit_from_embeddings keep working.
            output = self.model.logit_from_embeddings(mixed)
        else:
            output = self.model.logit_from_embeddings(mixed, first_layer_outputs=first_layer_outputs)
        output = output.to(device="cpu", dtype=torch.float64)
        return torch.sigmoid(output) if self.output_space == "probability" else output

    def _distinct_rows(
        self, embeddings: torch.Tensor, field_masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Find the (coalition, sample) pairs whose mixed rows are identical.

        Two pairs give the same row when their coalitions keep the same
        fields and the samples agree on every kept slot. Pairs are numbered
        ``coalition * n_samples + sample``. Returns one pair number per
        distinct row and, for every pair, the position of its distinct row.
        Returns ``None`` when fewer than :data:`MIN_SHARED_ROWS` of the rows
        repeat, or when there are fewer than :data:`MIN_ROWS_TO_DEDUPLICATE` rows or
        :data:`MIN_SAMPLES_TO_DEDUPLICATE` samples.
        """
        n_samples, n_fields = embeddings.shape[0], embeddings.shape[1]
        if n_samples < max(2, MIN_SAMPLES_TO_DEDUPLICATE) or n_samples * field_masks.shape[0] < MIN_ROWS_TO_DEDUPLICATE:
            return None
        # codes[f]: rank of each sample's slot f among the distinct slot vectors of field f.
        slots = embeddings.detach().cpu().numpy()
        codes = [np.unique(slots[:, f], axis=0, return_inverse=True)[1].reshape(-1) for f in range(n_fields)]
        masks = field_masks.cpu().numpy()

        # Group the samples of each coalition by their kept slots, one field at a time. The groups of a
        # coalition refine those of the coalition without its last kept field. That parent is usually
        # grouped already (always for all_coalitions), so most coalitions cost one np.unique.
        groups: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        everyone = (np.zeros(1, dtype=np.int64), np.zeros(n_samples, dtype=np.int64))

        def grouping(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Return (first sample of each group, group of each sample) for a field mask."""
            key = mask.tobytes()
            if key not in groups:
                kept = np.flatnonzero(mask)
                if kept.size == 0:
                    groups[key] = everyone
                else:
                    parent_mask = mask.copy()
                    parent_mask[kept[-1]] = False
                    _, parent = grouping(parent_mask)
                    field_codes = codes[kept[-1]]
                    combined = parent * (int(field_codes.max()) + 1) + field_codes
                    _, first, group = np.unique(combined, return_index=True, return_inverse=True)
                    groups[key] = (first, group.reshape(-1))
            return groups[key]

        firsts, positions = [], []
        offset = 0
        for c, mask in enumerate(masks):
            first, group = grouping(mask)
            firsts.append(c * n_samples + first)
            positions.append(offset + group)
            offset += first.size
        n_pairs = masks.shape[0] * n_samples
        if n_pairs - offset < MIN_SHARED_ROWS * n_pairs:
            return None
        device = embeddings.device
        first_pairs = torch.from_numpy(np.concatenate(firsts)).to(device)
        pair_of_distinct = torch.from_numpy(np.concatenate(positions)).to(device)
        return first_pairs, pair_of_distinct

    def _forward_structured(
        self, embeddings: torch.Tensor, field_masks: torch.Tensor, progress: Callable[[float], None] | None
    ) -> torch.Tensor:
        """Evaluate all (sample, coalition) pairs like :meth:`_forward_pairs`, with first layers from field terms.

        Each block holds whole samples when all their (coalition, background
        row) pairs fit in one chunk, else one sample and a slice of the
        coalitions. Rows within a block run in coalition, sample, background
        order, so that each first layer's output is one matrix product of the
        coalition masks with the samples' per-field differences.
        """
        n_samples, n_coalitions, n_background = embeddings.shape[0], field_masks.shape[0], self.n_background
        n_rows = n_samples * n_coalitions * n_background
        per_sample = n_coalitions * n_background
        samples_per_block = max(1, self.chunk_size // per_sample)
        coalitions_per_block = n_coalitions if per_sample <= self.chunk_size else self.chunk_size // n_background
        sums = torch.zeros(n_samples, n_coalitions, dtype=torch.float64)
        baseline = self.baseline_embeddings
        masks = field_masks.to(embeddings.dtype)
        done = 0

        for first_sample in range(0, n_samples, samples_per_block):
            sample_embeddings = embeddings[first_sample : first_sample + samples_per_block]
            n_block = sample_embeddings.shape[0]
            # Per layer: present minus absent term of every field as (n_fields, n_block * K * out),
            # and the all-absent output repeated for each sample as (n_block * K * out,).
            differences, offsets = [], []
            for (weight, _), terms, base in zip(
                self.first_layers, self._baseline_terms, self._baseline_outputs, strict=True
            ):
                present = torch.einsum("sfw,ofw->sfo", sample_embeddings, weight)
                difference = present.unsqueeze(1) - terms.unsqueeze(0)  # (n_block, K, n_fields, out)
                differences.append(difference.permute(2, 0, 1, 3).reshape(difference.shape[2], -1))
                offsets.append(base.repeat(n_block, 1).reshape(-1))
            for first_coalition in range(0, n_coalitions, coalitions_per_block):
                block = slice(first_coalition, first_coalition + coalitions_per_block)
                keep = field_masks[block]
                n_kept = keep.shape[0]
                # (n_kept, n_block, K, n_fields, width) flattened to rows
                mixed = torch.where(
                    keep[:, None, None, :, None], sample_embeddings[None, :, None], baseline[None, None]
                ).reshape(-1, *baseline.shape[1:])
                outputs = [
                    torch.addmm(offset, masks[block], difference).reshape(mixed.shape[0], -1)
                    for difference, offset in zip(differences, offsets, strict=True)
                ]
                values = self._outputs(mixed, first_layer_outputs=outputs)
                values = values.reshape(n_kept, n_block, n_background).mean(dim=2)
                sums[first_sample : first_sample + n_block, block] = values.T
                self.n_model_evaluations += mixed.shape[0]
                done += mixed.shape[0]
                if progress is not None:
                    progress(done / n_rows)
        return sums

    def _check_inputs(self, inputs: Mapping[str, torch.Tensor], argument: str) -> dict[str, torch.Tensor]:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            msg = f"{argument} is missing the fields: {', '.join(missing)}"
            raise ValueError(msg)
        checked = {name: torch.as_tensor(inputs[name]).to(self.device) for name in self.input_names}
        sizes = {int(x.shape[0]) for x in checked.values()}
        if len(sizes) != 1:
            msg = f"{argument} fields have different numbers of rows: {sorted(sizes)}"
            raise ValueError(msg)
        if sizes == {0}:
            msg = f"{argument} has no rows"
            raise ValueError(msg)
        return checked

    def _baseline_embeddings(
        self, inputs: dict[str, torch.Tensor], background: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        baseline = self._baseline_slots(inputs, background)
        removal = getattr(self.model, "removal_slots", None)
        if removal is not None and removal().any():
            # An absent behaviour leaves the history, whatever the baseline of the other fields.
            baseline = baseline.clone()
            baseline[:, torch.from_numpy(removal()).to(baseline.device)] = 0
        return baseline

    def _baseline_slots(
        self, inputs: dict[str, torch.Tensor], background: dict[str, torch.Tensor] | None
    ) -> torch.Tensor:
        n_fields, width = self.embeddings.shape[1], self.embeddings.shape[2]
        if self.baseline == "zero":
            return self.embeddings.new_zeros((1, n_fields, width))
        if self.baseline in ("pad", "oov"):
            first_row = {name: x[:1] for name, x in inputs.items()}
            encoded = baseline_inputs(self.model.schema, first_row, "zero" if self.baseline == "pad" else "oov")
            return self.model.field_embedding(encoded)
        assert background is not None
        background_embeddings = self.model.field_embedding(background)
        if self.baseline == "mean":
            return background_embeddings.mean(dim=0, keepdim=True)
        return background_embeddings


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the body in eval mode without autograd, then restore the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
