"""Probes: the model's own gates, masks, attention and pair weights, read per sample and mapped to fields.

A native model declares its probes with :meth:`CTRModel.probes`. Each
:class:`Probe` names the signal's kind (``kind``), which axes one sample's value
has once mapped to fields (``axes``, e.g. ``("layer", "field")``), and how to
read it. There are three ways to read a probe:

* ``modules``: forward hooks on submodules, one per layer. A hook only records;
  it returns nothing, so the prediction is the one the model makes without
  probes. Only calls from the capturing thread are recorded, so another
  session using the same model object at the same time adds nothing.
* ``compute``: a closed form of the field embeddings that the model itself
  uses, such as the FM inner products ``<v_i, v_j>``.
* ``static``: a function of the parameters alone, such as the field blocks of
  a DCN-V2 cross matrix. Its value is the same for every sample.

Per-bit signals (a gate or mask over the flattened embedding of width
``n_fields * embedding_dim``) come with ``bit_fields``, the field of each bit;
:func:`capture_probes` averages the bits of each field (``mean``) or their
absolute values (``mean_abs``), and keeps the bits as well. Layouts that are
not field-contiguous, such as FCN's split of each embedding in halves, are
handled by their ``bit_fields``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

PROBE_KINDS = ("gate", "mask", "attention", "pair_weight", "field_weight", "target_attention")
FIELD_AGGREGATIONS = ("mean", "mean_abs")
DEFAULT_CHUNK_SIZE = 4096


@dataclass(frozen=True)
class ProbeInfo:
    """Description of a probe without the functions that read it, so that results can be pickled and cached."""

    name: str
    kind: str
    axes: tuple[str, ...]
    description: str
    per_sample: bool
    value_range: tuple[float, float] | None = None

    @property
    def is_pair_map(self) -> bool:
        """Whether the last two axes are field x field, so the probe gives an intrinsic interaction map."""
        return self.axes[-2:] == ("field", "field")


@dataclass(frozen=True)
class Probe:
    """One inspectable signal of a model.

    ``axes`` names the axes of one sample's value after mapping to fields, for
    example ``("layer", "field")`` for per-layer field gates or
    ``("layer", "head", "field", "field")`` for attention. The axis names are
    ``layer``, ``head``, ``block``, ``field`` and ``position`` (a position in a
    behaviour history, for target attention). Exactly one of ``modules``,
    ``compute`` and ``static`` is set.
    """

    name: str
    kind: str
    axes: tuple[str, ...]
    description: str
    modules: tuple[str, ...] = ()
    """Dotted paths of the hooked submodules, one per layer or block; their outputs are stacked on the probe's first axis."""
    read_output: Callable[[Any], torch.Tensor] | None = None
    """Turns one hooked module's output into a tensor of shape ``(batch_size, ...)``; identity by default."""
    compute: Callable[[Any, torch.Tensor], torch.Tensor] | None = None
    """``compute(model, field_embeddings)`` returns ``(batch_size, *axes)``."""
    static: Callable[[Any], torch.Tensor] | None = None
    """``static(model)`` returns an array of shape ``axes``."""
    bit_fields: Callable[[Any], np.ndarray] | None = None
    """For per-bit signals: the field index of each bit of the last axis of the read tensor."""
    value_range: tuple[float, float] | None = None
    """The range the values can take (e.g. ``(0, 1)`` for a sigmoid gate), for colour scales; ``None`` if unbounded."""

    def __post_init__(self) -> None:
        if self.kind not in PROBE_KINDS:
            msg = f"probe {self.name!r}: kind must be one of {', '.join(PROBE_KINDS)}; got {self.kind!r}"
            raise ValueError(msg)
        ways = sum([bool(self.modules), self.compute is not None, self.static is not None])
        if ways != 1:
            msg = f"probe {self.name!r}: set exactly one of modules, compute and static (got {ways})"
            raise ValueError(msg)

    @property
    def per_sample(self) -> bool:
        """Whether the value differs between samples (``False`` for parameter-only probes)."""
        return self.static is None

    @property
    def is_pair_map(self) -> bool:
        """Whether the last two axes are field x field, so the probe gives an intrinsic interaction map."""
        return self.axes[-2:] == ("field", "field")

    @property
    def info(self) -> ProbeInfo:
        return ProbeInfo(self.name, self.kind, self.axes, self.description, self.per_sample, self.value_range)


@dataclass
class ProbeValues:
    """The values of one probe for a set of rows.

    ``values`` has shape ``(n_rows, *probe.axes)`` for per-sample probes and
    ``probe.axes`` for static ones. ``bits`` keeps per-bit signals before the
    field mapping, shape ``(n_rows, *leading axes, n_bits)``, with
    ``bit_fields`` giving each bit's field.
    """

    probe: ProbeInfo
    values: np.ndarray
    field_names: list[str]
    aggregation: str = "mean"
    bits: np.ndarray | None = None
    bit_fields: np.ndarray | None = None

    @property
    def axes(self) -> tuple[str, ...]:
        return (("row",) if self.probe.per_sample else ()) + self.probe.axes

    def cohort_mean(self) -> np.ndarray:
        """Average the values over rows, giving shape ``probe.axes`` (static probes return their value)."""
        if not self.probe.per_sample:
            return self.values
        if len(self.values) == 0:
            msg = f"probe {self.probe.name!r}: no rows to average; choose a cohort with at least one row"
            raise ValueError(msg)
        return self.values.mean(axis=0)

    def for_row(self, row: int) -> np.ndarray:
        """Return the value of one row (a position in the captured rows), shape ``probe.axes``."""
        if not self.probe.per_sample:
            return self.values
        if not 0 <= row < len(self.values):
            msg = f"row {row} is outside the {len(self.values)} captured rows"
            raise IndexError(msg)
        return self.values[row]

    def field_strength(self) -> np.ndarray:
        """Mean over every axis but the field axis of a per-field probe: one number per field, shape ``(n_fields,)``.

        For pair maps the strength of field ``f`` is the mean of row ``f`` and column ``f``.
        """
        mean = self.cohort_mean()
        if self.probe.is_pair_map:
            pairs = mean.reshape(-1, mean.shape[-2], mean.shape[-1]).mean(axis=0)
            return (pairs.mean(axis=0) + pairs.mean(axis=1)) / 2
        if "field" not in self.probe.axes:
            msg = f"probe {self.probe.name!r} has no field axis (axes {self.probe.axes})"
            raise ValueError(msg)
        position = self.probe.axes.index("field")
        return np.moveaxis(mean, position, -1).reshape(-1, mean.shape[position]).mean(axis=0)


    def to_frame(self, rows: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
        """Return the values as a long table: one line per (row, leading axes, field or field pair).

        Columns: ``row``, ``probe``, ``kind``, one 0-based column per leading
        axis (``layer``, ``head``, ``block``), ``field`` (``field_i`` and
        ``field_j`` for pair maps) and ``value``. ``row`` is the data set row
        from ``rows``, else the position in the capture, and is missing for
        static probes.
        """
        import pandas as pd

        info = self.probe
        values = self.values if info.per_sample else self.values[None]
        n_rows = len(values)
        if rows is None or not info.per_sample:
            row_ids = np.arange(n_rows)
        else:
            row_ids = np.asarray(rows)
            if len(row_ids) != n_rows:
                msg = f"got {len(row_ids)} row numbers for {n_rows} captured rows"
                raise ValueError(msg)
        field_axes = 2 if info.is_pair_map else 1
        leading = info.axes[:-field_axes]
        index = np.indices(values.shape).reshape(values.ndim, -1)
        row_column = row_ids[index[0]] if info.per_sample else [None] * index.shape[1]
        frame = pd.DataFrame({"row": pd.array(row_column, dtype="Int64")})
        frame["probe"] = info.name
        frame["kind"] = info.kind
        for position, axis in enumerate(leading, start=1):
            frame[axis] = index[position]
        names = np.asarray(self.field_names, dtype=object)
        if info.is_pair_map:
            frame["field_i"] = names[index[-2]]
            frame["field_j"] = names[index[-1]]
        elif info.axes[-1] == "position":
            frame["position"] = index[-1]
        else:
            frame["field"] = names[index[-1]]
        frame["value"] = values.reshape(-1).astype(np.float64)
        return frame


@dataclass
class ProbeCapture:
    """Every requested probe for the same rows, and the logits of the forward pass that produced them."""

    logits: np.ndarray
    probes: dict[str, ProbeValues] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ProbeValues:
        if name not in self.probes:
            msg = f"no probe named {name!r} was captured; captured: {', '.join(self.probes) or 'none'}"
            raise KeyError(msg)
        return self.probes[name]


def field_contiguous_bits(n_fields: int, width: int) -> np.ndarray:
    """Field of each bit when field ``f`` occupies bits ``[f * width, (f + 1) * width)``."""
    return np.repeat(np.arange(n_fields), width)


def aggregate_bits(bits: np.ndarray, bit_fields: np.ndarray, n_fields: int, how: str = "mean") -> np.ndarray:
    """Average the last axis of ``bits`` within each field: ``(..., n_bits)`` to ``(..., n_fields)``.

    ``how`` is ``mean`` (signed mean) or ``mean_abs`` (mean of absolute values).
    """
    if how not in FIELD_AGGREGATIONS:
        msg = f"aggregation must be one of {', '.join(FIELD_AGGREGATIONS)}; got {how!r}"
        raise ValueError(msg)
    if bits.shape[-1] != len(bit_fields):
        msg = f"the signal has {bits.shape[-1]} bits but the field layout lists {len(bit_fields)}"
        raise ValueError(msg)
    values = np.abs(bits) if how == "mean_abs" else bits
    counts = np.bincount(bit_fields, minlength=n_fields).astype(np.float64)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        msg = f"the field layout gives no bit to field(s) {missing}"
        raise ValueError(msg)
    one_hot = np.zeros((len(bit_fields), n_fields))
    one_hot[np.arange(len(bit_fields)), bit_fields] = 1.0
    return (values.astype(np.float64) @ one_hot) / counts


def block_norms(weight: torch.Tensor, row_fields: np.ndarray, column_fields: np.ndarray, n_fields: int) -> np.ndarray:
    """Frobenius norm of each field block of a matrix: ``(n_out, n_in)`` to ``(n_fields, n_fields)``.

    Entry ``(i, j)`` is the norm of the weights from input bits of field ``j``
    to output bits of field ``i``, as in the DCN-V2 paper's block view.
    """
    squared = weight.detach().double().pow(2).cpu().numpy()
    rows = np.zeros((n_fields, len(row_fields)))
    rows[row_fields, np.arange(len(row_fields))] = 1.0
    columns = np.zeros((len(column_fields), n_fields))
    columns[np.arange(len(column_fields)), column_fields] = 1.0
    return np.sqrt(rows @ squared @ columns)


def layer_block_norms(weights: Sequence[torch.Tensor], n_fields: int, width: int) -> torch.Tensor:
    """``(n_layers, F, F)`` field block norms of square matrices over field-contiguous bits of ``width`` per field."""
    bits = field_contiguous_bits(n_fields, width)
    return torch.from_numpy(np.stack([block_norms(weight, bits, bits, n_fields) for weight in weights]))


def _module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        msg = f"{type(model).__name__} has no submodule {path!r} to probe"
        raise ValueError(msg) from err


class _Recorder:
    """Forward hooks that record module outputs made by one thread."""

    def __init__(self, model: nn.Module, probes: Sequence[Probe]) -> None:
        self.thread = threading.get_ident()
        self.outputs: dict[tuple[str, int], list[torch.Tensor]] = {}
        self.handles = []
        for probe in probes:
            read = probe.read_output or (lambda output: output)
            for position, path in enumerate(probe.modules):
                key = (probe.name, position)
                self.outputs[key] = []
                hook = self._hook(key, read)
                self.handles.append(_module(model, path).register_forward_hook(hook))

    def _hook(self, key: tuple[str, int], read: Callable[[Any], torch.Tensor]) -> Callable[..., None]:
        def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if threading.get_ident() == self.thread:
                self.outputs[key].append(read(output).detach().float().cpu())

        return record

    def take(self, probe: Probe) -> torch.Tensor:
        """Collect the recorded outputs of one probe for the last forward pass.

        Several modules' outputs are stacked on a new axis 1 (the probe's first
        axis, such as ``layer``). A single module's output gets that axis too
        when it has one dimension fewer than the row axis plus ``probe.axes``.
        """
        parts = []
        for position in range(len(probe.modules)):
            recorded = self.outputs[(probe.name, position)]
            if len(recorded) != 1:
                msg = (
                    f"probe {probe.name!r}: module {probe.modules[position]!r} ran {len(recorded)} times in one "
                    "forward pass; expected once"
                )
                raise RuntimeError(msg)
            parts.append(recorded.pop())
        if len(parts) > 1:
            return torch.stack(parts, dim=1)
        # One module of a per-layer probe (a one-layer model): give it its layer axis.
        return parts[0].unsqueeze(1) if parts[0].dim() == len(probe.axes) else parts[0]

    def clear(self) -> None:
        """Drop everything recorded so far."""
        for recorded in self.outputs.values():
            recorded.clear()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def model_probes(model: Any) -> list[Probe]:
    """Return the probes a model declares (an empty list for models without any)."""
    declare = getattr(model, "probes", None)
    return list(declare()) if callable(declare) else []


def _select(model: Any, names: Sequence[str] | None) -> list[Probe]:
    available = model_probes(model)
    if names is None:
        return available
    by_name = {probe.name: probe for probe in available}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        architecture = getattr(model, "architecture", type(model).__name__)
        msg = (
            f"{architecture} has no probe named {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(by_name) or 'none'}"
        )
        raise ValueError(msg)
    return [by_name[name] for name in names]


@torch.no_grad()
def capture_probes(
    model: Any,
    inputs: dict[str, torch.Tensor],
    *,
    names: Sequence[str] | None = None,
    aggregation: str = "mean",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> ProbeCapture:
    """Run the model once over ``inputs`` and read its probes.

    Parameters
    ----------
    model : CTRModel
        A native model (or any module with ``field_embedding``,
        ``logit_from_embeddings`` and ``probes()``). It runs in eval mode; its
        previous mode is restored.
    inputs : dict of str to Tensor
        Encoded rows, as ``CTRDataset.tensors`` returns them.
    names : sequence of str, default=None
        The probes to read; all the model declares when ``None``.
    aggregation : {"mean", "mean_abs"}, default="mean"
        How the bits of a field are combined for per-bit signals.
    chunk_size : int, default=4096
        Rows per forward pass.

    Returns
    -------
    ProbeCapture
        The logits of the probed forward passes, shape ``(n_rows,)``, and one
        :class:`ProbeValues` per probe.
    """
    if aggregation not in FIELD_AGGREGATIONS:
        msg = f"aggregation must be one of {', '.join(FIELD_AGGREGATIONS)}; got {aggregation!r}"
        raise ValueError(msg)
    if chunk_size < 1:
        msg = f"chunk_size must be >= 1; got {chunk_size}"
        raise ValueError(msg)
    probes = _select(model, names)
    field_names = list(model.schema.field_names)
    n_fields = len(field_names)
    n_rows = len(next(iter(inputs.values()))) if inputs else 0
    if n_rows == 0:
        msg = "there are no rows to probe; choose a sample or a cohort with at least one row"
        raise ValueError(msg)

    was_training = model.training
    model.eval()
    recorder = _Recorder(model, [p for p in probes if p.modules])
    logits: list[np.ndarray] = []
    raw: dict[str, list[np.ndarray]] = {p.name: [] for p in probes if p.per_sample}
    try:
        for start in range(0, n_rows, chunk_size):
            chunk = {name: tensor[start : start + chunk_size] for name, tensor in inputs.items()}
            embeddings = model.field_embedding(chunk)
            # An adapted module computes its embeddings by running the module (workbench.adapters). The probes
            # read the pass that computes the logit, so whatever ran before it is dropped.
            recorder.clear()
            logits.append(model.logit_from_embeddings(embeddings).float().cpu().numpy())
            for probe in probes:
                if probe.modules:
                    raw[probe.name].append(recorder.take(probe).numpy())
                elif probe.compute is not None:
                    raw[probe.name].append(probe.compute(model, embeddings).detach().float().cpu().numpy())

        static: dict[str, np.ndarray] = {}
        for probe in probes:
            if not probe.per_sample:
                value = probe.static(model)
                static[probe.name] = (
                    value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
                )
    finally:
        recorder.remove()
        model.train(was_training)

    capture = ProbeCapture(logits=np.concatenate(logits))
    for probe in probes:
        values = np.concatenate(raw[probe.name]) if probe.per_sample else static[probe.name]
        capture.probes[probe.name] = _map_to_fields(model, probe, values, field_names, n_fields, aggregation)
    return capture


def _map_to_fields(
    model: Any, probe: Probe, values: np.ndarray, field_names: list[str], n_fields: int, aggregation: str
) -> ProbeValues:
    if probe.bit_fields is None:
        return ProbeValues(probe.info, values, field_names, aggregation)
    bit_fields = np.asarray(probe.bit_fields(model), dtype=np.int64)
    mapped = aggregate_bits(values, bit_fields, n_fields, aggregation)
    return ProbeValues(probe.info, mapped, field_names, aggregation, bits=values, bit_fields=bit_fields)


def pair_map_agreement(intrinsic: np.ndarray, post_hoc: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation of two field x field maps on the absolute values of their pairs ``i < j``.

    Intrinsic maps can be asymmetric (attention: row = query field); the
    pair ``(i, j)`` then takes the mean of ``|A_ij|`` and ``|A_ji|``. Returns
    the correlation and the number of pairs; the correlation is NaN when one
    map is constant over the pairs.
    """
    intrinsic = np.asarray(intrinsic, dtype=np.float64)
    post_hoc = np.asarray(post_hoc, dtype=np.float64)
    if intrinsic.shape != post_hoc.shape or intrinsic.ndim != 2 or intrinsic.shape[0] != intrinsic.shape[1]:
        msg = f"both maps must be square and of the same shape; got {intrinsic.shape} and {post_hoc.shape}"
        raise ValueError(msg)
    upper = np.triu_indices(intrinsic.shape[0], k=1)
    a = ((np.abs(intrinsic) + np.abs(intrinsic.T)) / 2)[upper]
    b = ((np.abs(post_hoc) + np.abs(post_hoc.T)) / 2)[upper]
    n_pairs = len(a)
    if n_pairs < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return {"spearman": float("nan"), "n_pairs": float(n_pairs)}
    from scipy.stats import spearmanr

    return {"spearman": float(spearmanr(a, b).statistic), "n_pairs": float(n_pairs)}


def _reduce_leading(values: np.ndarray, leading_axes: tuple[str, ...], select: dict[str, int] | None) -> np.ndarray:
    """Take the selected index of each leading axis named in ``select`` and average the others."""
    select = select or {}
    unknown = set(select) - set(leading_axes)
    if unknown:
        msg = f"cannot select {', '.join(sorted(unknown))}: the probe's leading axes are {leading_axes or 'none'}"
        raise ValueError(msg)
    for axis in reversed(range(len(leading_axes))):
        name = leading_axes[axis]
        if name in select:
            index = select[name]
            if not 0 <= index < values.shape[axis]:
                msg = f"{name} {index} is out of range; the probe has {values.shape[axis]} (0..{values.shape[axis] - 1})"
                raise IndexError(msg)
            values = np.take(values, index, axis=axis)
        else:
            values = values.mean(axis=axis)
    return values


def pair_map(
    values: ProbeValues, *, row: int | None = None, select: dict[str, int] | None = None, absolute: bool = False
) -> np.ndarray:
    """Reduce a pair probe to one field x field map, shape ``(n_fields, n_fields)``.

    ``row`` picks one captured row (the mean over rows when ``None``).
    ``select`` picks an index on leading axes such as ``{"layer": 0, "head": 1}``,
    and the leading axes it does not name are averaged. With ``absolute``,
    absolute values are averaged, the counterpart of a mean |SII| map for
    signed per-sample maps such as FM pair products.
    """
    if not values.probe.is_pair_map:
        msg = f"probe {values.probe.name!r} is not a field x field map (axes {values.probe.axes})"
        raise ValueError(msg)
    if row is None:
        data = values.values if values.probe.per_sample else values.values[None]
        matrix = (np.abs(data) if absolute else data).mean(axis=0)
    else:
        matrix = values.for_row(row)
        matrix = np.abs(matrix) if absolute else matrix
    return _reduce_leading(matrix, values.probe.axes[:-2], select)


def field_rows(values: ProbeValues, *, row: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Lay out a per-field probe as a 2-D table: one line per index of the leading axes, one column per field.

    Returns the table, shape ``(n_lines, n_fields)``, and a label per line
    (``layer 1``, ``block 2``, ``layer 1 · head 2``; the probe name when there
    is no leading axis). ``row`` picks one captured row, and ``None`` gives the cohort mean.
    """
    axes = values.probe.axes
    if not axes or axes[-1] != "field" or values.probe.is_pair_map:
        msg = f"probe {values.probe.name!r} is not a per-field probe (axes {axes})"
        raise ValueError(msg)
    table = values.cohort_mean() if row is None else values.for_row(row)
    leading = axes[:-1]
    if not leading:
        return table.reshape(1, -1), [values.probe.name]
    shape = table.shape[:-1]
    labels = [
        " · ".join(f"{name} {index + 1}" for name, index in zip(leading, position, strict=True))
        for position in np.ndindex(*shape)
    ]
    return table.reshape(-1, table.shape[-1]), labels


def pair_agreement_per_row(
    values: ProbeValues, post_hoc_pairs: np.ndarray, *, select: dict[str, int] | None = None
) -> np.ndarray:
    """Spearman correlation of a per-sample pair probe with post-hoc pair values, row by row.

    ``post_hoc_pairs`` has shape ``(n_rows, n_fields, n_fields)`` for the same
    rows in the same order as the capture (for example ``Interaction.pairs``).
    Returns one correlation per row (NaN where either map is constant).
    """
    if not values.probe.per_sample:
        msg = f"probe {values.probe.name!r} is the same for every sample; compare its map with the cohort mean instead"
        raise ValueError(msg)
    if len(post_hoc_pairs) != len(values.values):
        msg = f"the probe has {len(values.values)} rows but the post-hoc values have {len(post_hoc_pairs)}"
        raise ValueError(msg)
    return np.asarray(
        [
            pair_map_agreement(pair_map(values, row=row, select=select), post_hoc_pairs[row])["spearman"]
            for row in range(len(post_hoc_pairs))
        ]
    )
