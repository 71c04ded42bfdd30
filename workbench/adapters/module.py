"""Wrap any torch CTR module so that the workbench can explain and probe it like a native model.

A native model (:class:`workbench.zoo.CTRModel`) is split in two at its field
embeddings: ``field_embedding`` maps encoded rows to one slot per field and
``logit_from_embeddings`` maps slots to logits. A module written elsewhere
(FuxiCTR, DeepCTR-Torch, an in-house model) has no such split, but it looks up
each field in some embedding modules. :class:`ModuleAdapter` puts forward
hooks on those modules and runs the foreign module in one of two modes:

* capture (``field_embedding``): the module runs on the real batch and the
  hooks record what each embedding module returns. The outputs of one field
  are flattened and concatenated into that field's slot. The run stops as soon
  as every slot is recorded.
* replace (``logit_from_embeddings``): the module runs on a placeholder batch
  and each hook returns the slot's values instead of its own output, so the
  rest of the module computes the logit from the given slots.

Everything a field contributes must pass through the listed modules, or be
the numeric input itself (``EmbeddingSource(value=True)``): then the coalition
games, gradients and probes of the workbench see the whole model. Listing a
field's every table matters: FM-style models keep a first-order table apart
from the embedding table.

A history (a sequence field) has one slot per position, named
``field[position]``. Each ends with a presence column, 1 where the position
contains a behaviour and 0 for PAD. In replace mode the placeholder batch has
id 1 where the presence is non-zero and PAD elsewhere, so masks the module
computes from ids agree with the slots, and an all-zero slot is a removed
behaviour.

Three things describe a module (see ``docs/adapters.md``): which submodules
produce each field's embedding (``sources``), how a batch is built from the
workbench's encoded rows (``build_input``) and where the logit is (``logit``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.probes import Probe
from workbench.schema import PAD_INDEX, Schema
from workbench.zoo.base import CTRModel

LOGIT_PLACES = ("output", "probability")
"""Values of ``logit`` besides ``"input:<submodule path>"``."""


class AdapterError(ValueError):
    """Raised when a foreign module cannot be wrapped, loaded or run as described."""


class _CaptureDone(Exception):
    """Raised inside a hook once every slot is recorded, to skip the rest of the forward pass."""


@dataclass(frozen=True)
class EmbeddingSource:
    """Where one field enters the wrapped module.

    Parameters
    ----------
    field : str
        A field of the schema.
    modules : tuple of str
        Dotted paths, relative to the wrapped module, of the submodules whose
        outputs are this field's embedding: the embedding table and any other
        table the field is looked up in (a first-order weight table). Their
        outputs are flattened and concatenated, in this order, into the
        field's slot. A module shared by several fields may be listed by each.
    value : bool, default=False
        The field's slot is its numeric input itself (width 1, or the vector
        width of a dense field); ``build_input`` writes the slot back into the
        batch. For libraries that read numeric columns directly from the input.
    """

    field: str
    modules: tuple[str, ...] = ()
    value: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.modules, str):
            object.__setattr__(self, "modules", (self.modules,))
        if bool(self.modules) == self.value:
            msg = f"field {self.field!r}: give either the modules that embed it or value=True, not both or neither"
            raise AdapterError(msg)


@dataclass(frozen=True)
class _Part:
    """One module output inside a field's slot: columns ``offset .. offset + width`` of the slot."""

    field: str
    module: str
    offset: int
    width: int


class _SlotEmbedding(nn.Module):
    """The adapter's ``field_embedding``: records the embedding modules' outputs into slots."""

    def __init__(self, owner: ModuleAdapter) -> None:
        super().__init__()
        # A plain reference: registering the owner as a submodule would make a cycle.
        object.__setattr__(self, "_owner", owner)
        # A hook point that receives and returns the slot tensor, as layer attribution methods (captum) need.
        self.output = nn.Identity()

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.output(self._owner._capture(inputs))


class ModuleAdapter(CTRModel):
    """A foreign torch module presented as a :class:`CTRModel`.

    Parameters
    ----------
    module : nn.Module
        The model to wrap. It becomes the submodule ``module`` and is put in
        eval mode.
    schema : Schema
        The fitted schema of the model's fields; its field order is the order
        of the players.
    sources : sequence of EmbeddingSource
        One entry per field of ``schema``.
    build_input : callable
        ``build_input(inputs)`` turns a dict of encoded rows (as
        ``CTRDataset.tensors`` returns them: PAD 0, known values ``1..n``, OOV
        ``n + 1``) into what ``module`` takes. Numeric inputs must stay
        differentiable.
    logit : str, default="output"
        Where the logit is: ``"output"`` (the module returns it),
        ``"probability"`` (the module returns the click probability) or
        ``"input:<path>"`` (the first input of that submodule, such as the
        sigmoid at the end of the model; this gives exact logits).
    read_output : callable, default=None
        Takes the module's output to a tensor of shape ``(batch_size,)`` or
        ``(batch_size, 1)``, for modules that return a dict or a tuple.
    name : str, default="module"
        Shown as the model's architecture.
    probes : sequence of Probe, default=()
        The module's gates, masks and attention. Module paths are relative to
        the wrapped module.
    zero_ids : mapping of str to sequence of int, default=None
        Encoded ids per field whose embedding is set to zero, for libraries
        without PAD or OOV rows.
    """

    architecture = "adapted"

    def __init__(
        self,
        module: nn.Module,
        schema: Schema,
        *,
        sources: Sequence[EmbeddingSource],
        build_input: Callable[[dict[str, torch.Tensor]], Any],
        logit: str = "output",
        read_output: Callable[[Any], torch.Tensor] | None = None,
        name: str = "module",
        probes: Sequence[Probe] = (),
        zero_ids: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        by_field = _check_sources(schema, sources)
        _check_logit_place(module, logit)
        module.eval()
        parts, widths = _measure_parts(module, schema, by_field, build_input)
        width = max([1, *widths.values()])
        super().__init__(schema, embedding_dim=width)
        self.module = module
        self.architecture = name
        # Not the wrapped model's own hyper-parameters: the width of the widest field slot and the adapter's name.
        self.hyperparameters = {"slot_width": width, "adapter": name}
        self._sources = by_field
        self._parts = parts
        self._presence = {f.name: widths[f.name] - 1 for f in schema.fields if f.kind == "sequence"}
        self._build_input = build_input
        self._logit_place = logit
        self._read_output = read_output
        self._probes = tuple(_prefixed(p) for p in probes)
        self._zero_ids = _check_zero_ids(schema, zero_ids or {})
        self._local = threading.local()
        self._hooks = _install_hooks(self)
        self.eval()

    def release(self) -> nn.Module:
        """Remove the adapter's hooks from the wrapped module and return it.

        The hooks are closures, so a module that still has them cannot be
        pickled with ``torch.save(module)``. The adapter does not work after this.
        """
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        return self.module

    # ----- the CTRModel contract -------------------------------------------------------------

    def build_field_embedding(self) -> nn.Module:
        return _SlotEmbedding(self)

    @property
    def slot_names(self) -> tuple[str, ...]:
        names: list[str] = [f.name for f in self.schema.fields if f.kind != "sequence"]
        for f in self.schema.fields:
            if f.kind == "sequence":
                names.extend(f"{f.name}[{position}]" for position in range(f.max_length))
        return tuple(names)

    def field_slots(self) -> dict[str, tuple[str, ...]]:
        return {
            f.name: tuple(f"{f.name}[{p}]" for p in range(f.max_length)) if f.kind == "sequence" else (f.name,)
            for f in self.schema.fields
        }

    def removal_slots(self) -> np.ndarray:
        # Behaviour slots follow the other fields' slots (see slot_names); a zero behaviour slot is a removed behaviour.
        n_single = sum(f.kind != "sequence" for f in self.schema.fields)
        mask = np.zeros(len(self.slot_names), dtype=bool)
        mask[n_single:] = True
        return mask

    def probes(self) -> list[Probe]:
        return list(self._probes)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.logit_from_embeddings(self.field_embedding(inputs))

    def logit_from_embeddings(
        self, field_embeddings: torch.Tensor, first_layer_outputs: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        if first_layer_outputs is not None:
            msg = "an adapted module offers no first layers to precompute"
            raise AdapterError(msg)
        n_rows = field_embeddings.shape[0]
        if n_rows == 1:
            # Some layers squeeze the batch axis (FuxiCTR's CrossNetMix); run two copies and keep one.
            return self.logit_from_embeddings(field_embeddings.expand(2, -1, -1))[:1]
        batch = self._build_input(self._placeholder_inputs(field_embeddings))
        state = self._local
        state.mode, state.slots, state.calls, state.logit = "replace", field_embeddings, {}, None
        try:
            output = self.module(batch)
        finally:
            state.mode, state.slots = None, None
        logit, state.logit = state.logit, None
        return self._to_logit(output, logit, n_rows)

    # ----- capture and replace ---------------------------------------------------------------

    def slot_index(self) -> dict[str, int]:
        """Map each field (for a history: its first position) to its slot index."""
        names = self.slot_names
        index = {name: i for i, name in enumerate(names)}
        return {f.name: index[f"{f.name}[0]" if f.kind == "sequence" else f.name] for f in self.schema.fields}

    def _capture(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        n_rows = len(next(iter(inputs.values())))
        if n_rows == 1:
            doubled = {name: torch.cat([tensor, tensor]) for name, tensor in inputs.items()}
            return self._capture(doubled)[:1]
        state = self._local
        state.mode, state.records, state.calls = "capture", {}, {}
        state.expected = {(part.field, part.module) for part in self._parts}
        try:
            self.module(self._build_input(inputs))
        except _CaptureDone:
            pass
        finally:
            state.mode = None
        records, state.records = state.records, {}
        missing = sorted(state.expected - set(records))
        if missing:
            listed = ", ".join(f"{module} for {field}" for field, module in missing)
            msg = f"the wrapped module never called {listed}; check the sources of these fields"
            raise AdapterError(msg)
        return self._assemble(inputs, records, n_rows)

    def _assemble(
        self, inputs: dict[str, torch.Tensor], records: dict[tuple[str, str], torch.Tensor], n_rows: int
    ) -> torch.Tensor:
        slots = torch.zeros(n_rows, len(self.slot_names), self.embedding_width)
        starts = self.slot_index()
        for f in self.schema.fields:
            start = starts[f.name]
            if self._sources[f.name].value:
                value = inputs[f.name].to(slots.dtype).reshape(n_rows, -1)
                slots[:, start, : value.shape[1]] = value
                continue
            for part in (p for p in self._parts if p.field == f.name):
                out = records[(part.field, part.module)].to(slots.dtype)
                if f.kind == "sequence":
                    slots[:, start : start + f.max_length, part.offset : part.offset + part.width] = out.reshape(
                        n_rows, f.max_length, part.width
                    )
                else:
                    slots[:, start, part.offset : part.offset + part.width] = out.reshape(n_rows, part.width)
            if f.kind == "sequence":
                slots[:, start : start + f.max_length, self._presence[f.name]] = (inputs[f.name] != PAD_INDEX).to(
                    slots.dtype
                )
            if f.name in self._zero_ids:
                zero = torch.isin(inputs[f.name], self._zero_ids[f.name])
                if f.kind == "sequence":
                    slots[:, start : start + f.max_length][zero] = 0.0
                else:
                    slots[zero, start] = 0.0
        return slots

    def _placeholder_inputs(self, slots: torch.Tensor) -> dict[str, torch.Tensor]:
        """Build a placeholder batch: embedded fields at PAD (their outputs get replaced), value fields from the slots."""
        n_rows = slots.shape[0]
        starts = self.slot_index()
        inputs: dict[str, torch.Tensor] = {}
        for f in self.schema.fields:
            start = starts[f.name]
            if self._sources[f.name].value:
                width = f.dim if f.kind == "dense" else 1
                value = slots[:, start, :width]
                inputs[f.name] = value.reshape(n_rows) if f.kind != "dense" else value
            elif f.kind == "sequence":
                # Id 1 where a behaviour is present, so that masks computed from the ids match the slots. A
                # removed behaviour (an all-zero slot) has presence 0, like PAD.
                present = slots[:, start : start + f.max_length, self._presence[f.name]].detach() != 0
                inputs[f.name] = present.long()
            elif f.kind == "categorical":
                inputs[f.name] = torch.full((n_rows,), PAD_INDEX, dtype=torch.long)
            elif f.kind == "dense":
                inputs[f.name] = torch.zeros(n_rows, f.dim)
            else:
                inputs[f.name] = torch.zeros(n_rows)
        return inputs

    def _to_logit(self, output: Any, captured: torch.Tensor | None, n_rows: int) -> torch.Tensor:
        place = self._logit_place
        if place.startswith("input:"):
            if captured is None:
                msg = f"the wrapped module never called {place[len('input:') :]!r}, where the logit should be"
                raise AdapterError(msg)
            value = captured
        else:
            value = self._read_output(output) if self._read_output is not None else output
            if not isinstance(value, torch.Tensor):
                msg = f"the wrapped module returned {type(value).__name__}; pass read_output to pick the prediction"
                raise AdapterError(msg)
            if place == "probability":
                value = torch.log(value) - torch.log1p(-value)
        if value.numel() != n_rows:
            msg = f"the logit has shape {tuple(value.shape)}; expected one value per row ({n_rows})"
            raise AdapterError(msg)
        return value.reshape(n_rows)


# ----- construction helpers --------------------------------------------------------------------


def _check_sources(schema: Schema, sources: Sequence[EmbeddingSource]) -> dict[str, EmbeddingSource]:
    by_field: dict[str, EmbeddingSource] = {}
    for source in sources:
        if not isinstance(source, EmbeddingSource):
            msg = f"sources must be EmbeddingSource objects; got {type(source).__name__}"
            raise AdapterError(msg)
        if source.field in by_field:
            msg = f"field {source.field!r} has two sources; list all its modules in one EmbeddingSource"
            raise AdapterError(msg)
        by_field[source.field] = source
    names = list(schema.field_names)
    missing = [n for n in names if n not in by_field]
    extra = [n for n in by_field if n not in names]
    if missing or extra:
        msg = f"the sources must cover the schema's fields exactly; missing {missing}, not in the schema {extra}"
        raise AdapterError(msg)
    for f in schema.fields:
        if by_field[f.name].value and f.kind not in ("numeric", "dense"):
            msg = f"field {f.name!r} is {f.kind}; only numeric and dense fields can be value fields"
            raise AdapterError(msg)
    return by_field


def _check_zero_ids(schema: Schema, zero_ids: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """Check that ``zero_ids`` names categorical or history fields and ids inside their vocabularies; return tensors."""
    if not isinstance(zero_ids, Mapping):
        msg = f"zero_ids must map field names to lists of ids; got {type(zero_ids).__name__}"
        raise AdapterError(msg)
    unknown = sorted(str(name) for name in set(zero_ids) - set(schema.field_names))
    if unknown:
        msg = f"zero_ids names fields that are not in the schema: {', '.join(unknown)}"
        raise AdapterError(msg)
    checked: dict[str, torch.Tensor] = {}
    for name, ids in zero_ids.items():
        f = schema[name]
        if f.kind not in ("categorical", "sequence"):
            msg = f"zero_ids: field {name!r} is {f.kind}; only categorical fields and histories have ids"
            raise AdapterError(msg)
        values = list(ids) if isinstance(ids, (list, tuple, range, np.ndarray, torch.Tensor)) else None
        bad = [i for i in values or [] if isinstance(i, bool) or not isinstance(i, (int, np.integer, torch.Tensor))]
        bad += [i for i in values or [] if isinstance(i, torch.Tensor) and (i.numel() != 1 or i.is_floating_point())]
        if values is None or bad:
            shown = repr(ids) if values is None else repr(bad[:3])
            msg = f"zero_ids of field {name!r} must be a list of integer ids; got {shown}"
            raise AdapterError(msg)
        size = len(f.vocabulary)
        outside = sorted({int(i) for i in values if not 0 <= int(i) < size})
        if outside:
            msg = (
                f"zero_ids: {outside} are not ids of field {name!r}, whose ids run from 0 (PAD) to {size - 1} "
                f"(OOV); the known values are 1..{size - 2}"
            )
            raise AdapterError(msg)
        checked[name] = torch.as_tensor([int(i) for i in values], dtype=torch.long)
    return checked


def _submodule(module: nn.Module, path: str) -> nn.Module:
    try:
        return module.get_submodule(path)
    except AttributeError as err:
        msg = f"the wrapped {type(module).__name__} has no submodule {path!r}: {err}"
        raise AdapterError(msg) from err


def _check_logit_place(module: nn.Module, place: str) -> None:
    if place.startswith("input:"):
        _submodule(module, place[len("input:") :])
    elif place not in LOGIT_PLACES:
        msg = f"logit must be one of {', '.join(LOGIT_PLACES)} or 'input:<submodule path>'; got {place!r}"
        raise AdapterError(msg)


def _prefixed(probe: Probe) -> Probe:
    """Make a probe's module paths relative to the adapter, where the wrapped module is ``module``."""
    if not probe.modules:
        return probe
    return replace(probe, modules=tuple(f"module.{path}" for path in probe.modules))


def _owners(by_field: dict[str, EmbeddingSource]) -> dict[str, list[str]]:
    """Map each listed module path to the fields that list it, in schema order."""
    owners: dict[str, list[str]] = {}
    for field, source in by_field.items():
        for path in source.modules:
            owners.setdefault(path, []).append(field)
    return owners


def _example_inputs(schema: Schema, n_rows: int = 2) -> dict[str, torch.Tensor]:
    """Rows of a known value per field (id 1), for measuring the module's output shapes."""
    inputs: dict[str, torch.Tensor] = {}
    for f in schema.fields:
        if f.kind == "categorical":
            inputs[f.name] = torch.ones(n_rows, dtype=torch.long)
        elif f.kind == "sequence":
            inputs[f.name] = torch.ones(n_rows, f.max_length, dtype=torch.long)
        elif f.kind == "dense":
            inputs[f.name] = torch.zeros(n_rows, f.dim)
        else:
            inputs[f.name] = torch.zeros(n_rows)
    return inputs


def _measure_parts(
    module: nn.Module,
    schema: Schema,
    by_field: dict[str, EmbeddingSource],
    build_input: Callable[[dict[str, torch.Tensor]], Any],
) -> tuple[list[_Part], dict[str, int]]:
    """Run the module once on example rows and read the width of each listed module's output per field."""
    kinds = {f.name: f for f in schema.fields}
    owners = _owners(by_field)
    shapes: dict[tuple[str, str], tuple[int, ...]] = {}
    counters: dict[str, int] = {}
    handles = []

    def hook_for(path: str) -> Callable[..., None]:
        def record(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            field = _call_owner(path, owners[path], args, kinds, counters)
            if isinstance(output, torch.Tensor):
                shapes.setdefault((field, path), tuple(output.shape))

        return record

    for path in owners:
        handles.append(_submodule(module, path).register_forward_hook(hook_for(path)))
    try:
        with torch.no_grad():
            module(build_input(_example_inputs(schema)))
    except AdapterError:
        raise
    except Exception as err:  # the foreign module's own error, with its type, for the user to act on
        msg = f"the wrapped {type(module).__name__} failed on example rows: {type(err).__name__}: {err}"
        raise AdapterError(msg) from err
    finally:
        for handle in handles:
            handle.remove()

    parts: list[_Part] = []
    widths: dict[str, int] = {}
    for field, source in by_field.items():
        f = kinds[field]
        if source.value:
            widths[field] = f.dim if f.kind == "dense" else 1
            continue
        offset = 0
        for path in source.modules:
            shape = shapes.get((field, path))
            if shape is None:
                msg = f"the wrapped module did not call {path!r} for field {field!r} (or it returned no tensor)"
                raise AdapterError(msg)
            per_row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            if f.kind == "sequence":
                if per_row % f.max_length:
                    msg = (
                        f"{path!r} returns shape {shape} for the history {field!r}; expected "
                        f"(batch, {f.max_length}, width)"
                    )
                    raise AdapterError(msg)
                per_row //= f.max_length
            parts.append(_Part(field, path, offset, per_row))
            offset += per_row
        # A history's slots end with a presence column: 1 where the position has a behaviour, 0 for PAD.
        widths[field] = offset + 1 if f.kind == "sequence" else offset
    return parts, widths


def _call_owner(
    path: str, fields: list[str], args: tuple[Any, ...], kinds: Mapping[str, Any], counters: dict[str, int]
) -> str:
    """Decide which field one call of a (possibly shared) module is for: by input shape, then in listing order."""
    if len(fields) == 1:
        return fields[0]
    x = args[0] if args and isinstance(args[0], torch.Tensor) else None
    if x is not None:
        history_like = [
            f for f in fields if kinds[f].kind == "sequence" and x.dim() >= 2 and x.shape[-1] == kinds[f].max_length
        ]
        matching = history_like or [f for f in fields if kinds[f].kind != "sequence"] or fields
    else:
        matching = fields
    key = f"{path}|{'/'.join(matching)}"
    count = counters.get(key, 0)
    counters[key] = count + 1
    return matching[count % len(matching)]


def _install_hooks(adapter: ModuleAdapter) -> list[Any]:
    """Hooks that only act while this thread's adapter is in capture or replace mode."""
    kinds = {f.name: f for f in adapter.schema.fields}
    owners = _owners(adapter._sources)
    parts = {(p.field, p.module): p for p in adapter._parts}
    starts = adapter.slot_index()
    local = adapter._local

    def hook_for(path: str) -> Callable[..., Any]:
        def on_call(_module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            mode = getattr(local, "mode", None)
            if mode is None:
                return None
            field = _call_owner(path, owners[path], args, kinds, local.calls)
            key = (field, path)
            if mode == "capture":
                local.records.setdefault(key, output.detach())
                if len(local.records) == len(local.expected):
                    raise _CaptureDone
                return None
            part = parts[key]
            f = kinds[field]
            start = starts[field]
            slots = local.slots
            if f.kind == "sequence":
                value = slots[:, start : start + f.max_length, part.offset : part.offset + part.width]
            else:
                value = slots[:, start, part.offset : part.offset + part.width]
            return value.reshape(output.shape).to(output.dtype)

        return on_call

    handles = [_submodule(adapter.module, path).register_forward_hook(hook_for(path)) for path in owners]
    place = adapter._logit_place
    if place.startswith("input:"):

        def take_logit(_module: nn.Module, args: tuple[Any, ...]) -> None:
            if getattr(local, "mode", None) == "replace":
                # Keep the tensor itself, not a copy: DeepCTR-Torch's PredictionLayer adds its bias to its input
                # in place, and that bias is part of the logit.
                local.logit = args[0]

        handles.append(_submodule(adapter.module, place[len("input:") :]).register_forward_pre_hook(take_logit))
    return handles
