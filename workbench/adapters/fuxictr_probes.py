"""Probe recipes for FuxiCTR models: the gates, masks and attention that FuxiCTR's model classes compute.

:func:`fuxictr_probes` looks at a FuxiCTR model object (a subclass of
``fuxictr.pytorch.models.BaseModel``) and returns the
:class:`workbench.probes.Probe` objects that fit its structure. A recipe is
keyed by the attribute names and layer types of FuxiCTR's ``model_zoo``
classes, so a user's own copy of those classes gets the same probes:

=========  ==========================================  ===============================================
model      attribute                                   probe
=========  ==========================================  ===============================================
GDCN       ``cross_net.activation`` (once per layer)   ``cross_gates``: sigmoid(W^g_l c_l) per field
GDCN       ``cross_net.w[l].weight``                   ``cross_weight_norms``: field block norms
DCNv2      ``crossnet.cross_layers[l].weight``         ``cross_weight_norms`` (CrossNetV2)
DCNv2      ``crossnet.gating[e]``                      ``expert_gates``: softmax over experts (CrossNetMix)
AutoInt    ``self_attention[l].dot_attention``         ``attention``: (layer, head, field, field)
FinalMLP   ``fs_module.fs1_gate`` / ``fs2_gate``       ``stream1_gate`` / ``stream2_gate``: 2 * sigmoid
FiBiNET    ``senet_layer.excitation``                  ``senet_weights``: one weight per field
FiBiNET    ``bilinear_interaction1`` / ``2``           pair vector norms (field x field)
MaskNet    ``mask_net.mask_blocks[k].mask_layer``      instance-guided masks per field
DIN        ``attention_layers[i]``                     ``target_attention``: one weight per position
FM-based   input of ``fm.fm_layer``                    ``fm_pair_products``: <v_i, v_j>
=========  ==========================================  ===============================================

Per-sample signals are ``compute`` probes: they rerun the adapter once on
the slots with forward hooks that only record (see :class:`_Calls`), so the
prediction is the one the model makes without probes. Parameter-only
signals are ``static`` probes.

Field order: field x field maps and per-field weights come in the order of
the model's ``feature_map``, which is the order in which FuxiCTR concatenates
the embeddings, unless ``field_names`` gives the schema's order. Per-bit
signals are mapped to fields by name through ``bit_fields`` in any order.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.probes import Probe, block_norms

class ProbeRecipeError(ValueError):
    """Raised when a FuxiCTR model's structure does not match what a probe recipe reads."""


# ----- the layout of the flattened embeddings ------------------------------------------------------


def _feature_widths(module: nn.Module) -> list[tuple[str, int]] | None:
    """``(feature, width)`` in the order FuxiCTR concatenates the embeddings of ``module.embedding_layer``.

    ``None`` when the model has no ``feature_map`` or no FuxiCTR embedding
    layer at ``embedding_layer`` (FFM, LR). The width is the embedding dimension of the feature's table (or its
    encoder's output), which is what ``FeatureEmbedding(flatten_emb=True)``
    puts side by side.
    """
    feature_map = getattr(module, "feature_map", None)
    layer = getattr(module, "embedding_layer", None)
    table_dict = getattr(layer, "embedding_layer", layer)
    tables = getattr(table_dict, "embedding_layers", None)
    if feature_map is None or tables is None:
        return None
    encoders = getattr(table_dict, "feature_encoders", {})
    widths = []
    for name, spec in feature_map.features.items():
        if spec.get("type") == "meta" or name not in tables:
            continue
        width = spec.get("emb_output_dim")
        if width is None:
            width = _output_width(encoders[name]) if name in encoders else None
        if width is None:
            width = _output_width(tables[name])
        if width is None:
            width = spec.get("embedding_dim", feature_map.default_emb_dim)
        widths.append((name, int(width)))
    return widths


def _output_width(layer: nn.Module) -> int | None:
    if isinstance(layer, nn.Embedding):
        return layer.embedding_dim
    if isinstance(layer, nn.Linear):
        return layer.out_features
    return None


def _schema_positions(model: Any, names: Sequence[str]) -> np.ndarray:
    """Position of each FuxiCTR feature in the adapter's schema."""
    field_names = list(model.schema.field_names)
    missing = [name for name in names if name not in field_names]
    if missing:
        msg = f"the model's features {missing} are not fields of the schema ({', '.join(field_names)})"
        raise ProbeRecipeError(msg)
    return np.asarray([field_names.index(name) for name in names], dtype=np.int64)


def _bit_fields(widths: list[tuple[str, int]]) -> Callable[[Any], np.ndarray]:
    """``bit_fields`` for a signal over the flattened embeddings: each bit's field in the adapter's schema."""

    def read(model: Any) -> np.ndarray:
        positions = _schema_positions(model, [name for name, _ in widths])
        return np.repeat(positions, [width for _, width in widths])

    return read


def _field_order(widths: list[tuple[str, int]], field_names: Sequence[str] | None) -> torch.Tensor | None:
    """Indices that put per-field values from the feature map's order into ``field_names`` order (None: as is)."""
    names = [name for name, _ in widths]
    if field_names is None or list(field_names) == names:
        return None
    if sorted(field_names) != sorted(names):
        msg = f"field_names {list(field_names)} must list the model's features {names} in some order"
        raise ProbeRecipeError(msg)
    return torch.as_tensor([names.index(name) for name in field_names])


def _reorder(values: torch.Tensor, order: torch.Tensor | None, axes: Sequence[int]) -> torch.Tensor:
    if order is None:
        return values
    for axis in axes:
        values = values.index_select(axis, order.to(values.device))
    return values


def _static_block_norms(
    weights: Callable[[nn.Module], list[torch.Tensor]], widths: list[tuple[str, int]]
) -> Callable[[Any], np.ndarray]:
    """``static`` of a field x field map: block norms of square matrices over the flattened embeddings."""

    def read(model: Any) -> np.ndarray:
        bits = _bit_fields(widths)(model)
        n_fields = len(model.schema.field_names)
        return np.stack([block_norms(weight, bits, bits, n_fields) for weight in weights(model.module)])

    return read


# ----- reading hooked calls ----------------------------------------------------------------------


class _Calls:
    """Every call of some submodules in one replace-mode run of the adapter, shared by the probes of one model.

    The probes read their signals from a run of ``logit_from_embeddings`` on
    the slots that :func:`workbench.probes.capture_probes` passes to
    ``compute``, with forward hooks that only record. This reads modules that
    run several times in one forward pass, such as GDCN's sigmoid shared by
    all layers and CrossNetMix's expert gates. It also reads modules that
    FuxiCTR models call before their first-order tables: the recorder of
    ``capture_probes`` would see those calls twice, once while the adapter
    captures the embeddings and once in the replace run. All probes of one
    model read the same run, made once per slot tensor and thread.
    """

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = tuple(dict.fromkeys(paths))
        # Per thread: (weak reference to the slot tensor, weak reference to the adapter, tensor version, records).
        self.entries: dict[int, tuple[Any, Any, int, dict[str, list[tuple[tuple[Any, ...], Any]]]]] = {}

    def of(self, model: Any, embeddings: torch.Tensor) -> dict[str, list[tuple[tuple[Any, ...], Any]]]:
        """Return ``{path: [(args, output), ...]}`` in call order for the run on ``embeddings``."""
        thread = threading.get_ident()
        entry = self.entries.get(thread)
        if entry is not None and entry[0]() is embeddings and entry[1]() is model and entry[2] == embeddings._version:
            return entry[3]
        records: dict[str, list[tuple[tuple[Any, ...], Any]]] = {path: [] for path in self.paths}
        handles = []
        for path in self.paths:

            def record(_module: nn.Module, args: tuple[Any, ...], output: Any, path: str = path) -> None:
                if threading.get_ident() == thread:
                    records[path].append((args, output))

            handles.append(model.module.get_submodule(path).register_forward_hook(record))
        try:
            model.logit_from_embeddings(embeddings)
        finally:
            for handle in handles:
                handle.remove()

        def forget(dead: Any) -> None:
            # The records go away with the slot tensor they were made from.
            current = self.entries.get(thread)
            if current is not None and current[0] is dead:
                self.entries.pop(thread, None)

        self.entries[thread] = (weakref.ref(embeddings, forget), weakref.ref(model), embeddings._version, records)
        return records


def _calls_of(calls: _Calls, model: Any, embeddings: torch.Tensor, path: str, expected: int) -> list[tuple[Any, Any]]:
    found = calls.of(model, embeddings)[path]
    if len(found) != expected:
        msg = f"{path} ran {len(found)} times in one forward pass of {type(model.module).__name__}; expected {expected}"
        raise ProbeRecipeError(msg)
    return found


def _per_call(
    calls: _Calls, path: str, n_calls: int, read: Callable[[tuple[Any, ...], Any], torch.Tensor]
) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """``compute`` that stacks ``read(args, output)`` of each call of ``path`` on axis 1 (one call: no new axis).

    The adapter runs a single row as two copies, so the rows are cut back to
    the number of slot rows.
    """

    def compute(model: Any, embeddings: torch.Tensor) -> torch.Tensor:
        values = [read(args, output) for args, output in _calls_of(calls, model, embeddings, path, n_calls)]
        stacked = values[0] if n_calls == 1 else torch.stack(values, dim=1)
        return stacked[: embeddings.shape[0]]

    return compute


def _per_module(
    calls: _Calls, paths: Sequence[str], read: Callable[[tuple[Any, ...], Any], torch.Tensor]
) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """``compute`` that stacks ``read(args, output)`` of the single call of each of ``paths`` on axis 1."""

    def compute(model: Any, embeddings: torch.Tensor) -> torch.Tensor:
        values = [read(*_calls_of(calls, model, embeddings, path, 1)[0]) for path in paths]
        return torch.stack(values, dim=1)[: embeddings.shape[0]]

    return compute


def _output(_args: tuple[Any, ...], output: Any) -> torch.Tensor:
    return output


# ----- the recipes -------------------------------------------------------------------------------


def _gdcn_probes(module: nn.Module, widths: list[tuple[str, int]]) -> list[Probe]:
    n_layers = len(module.cross_net.wg)
    calls = _Calls(["cross_net.activation"])
    return [
        Probe(
            "cross_gates",
            "gate",
            ("layer", "field"),
            "information gate sigmoid(W^g_l c_l) of each gated cross layer, averaged over each field's bits: "
            "how much of the field's cross term the layer lets through for this sample (0.5 is neutral)",
            # One sigmoid module is shared by all layers and runs once per layer, in layer order.
            compute=_per_call(calls, "cross_net.activation", n_layers, _output)
            if n_layers > 1
            else _per_module(calls, ["cross_net.activation"], _output),
            bit_fields=_bit_fields(widths),
            value_range=(0.0, 1.0),
        ),
        Probe(
            "cross_weight_norms",
            "pair_weight",
            ("layer", "field", "field"),
            "Frobenius norm of block (i, j) of each cross matrix W^c_l: how strongly field j enters the "
            "cross term of field i before gating; the same for every sample",
            static=_static_block_norms(lambda m: [layer.weight for layer in m.cross_net.w], widths),
        ),
    ]


def _mixture_gates(n_layers: int, n_experts: int) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """``compute`` of CrossNetMix's expert weights: per layer, the softmax over experts of ``gating[e](x_l)``."""
    paths = [f"crossnet.gating.{expert}" for expert in range(n_experts)]
    calls = _Calls(paths)

    def compute(model: Any, embeddings: torch.Tensor) -> torch.Tensor:
        # Each gating[e] runs once per layer; its output is a (batch, 1) score.
        scores = [[output for _, output in _calls_of(calls, model, embeddings, path, n_layers)] for path in paths]
        layers = [torch.cat([scores[expert][layer] for expert in range(n_experts)], dim=-1) for layer in range(n_layers)]
        return torch.stack(layers, dim=1).softmax(dim=-1)[: embeddings.shape[0]]

    return compute


def _dcnv2_probes(module: nn.Module, widths: list[tuple[str, int]]) -> list[Probe]:
    crossnet = module.crossnet
    if hasattr(crossnet, "cross_layers"):
        return [
            Probe(
                "cross_weight_norms",
                "pair_weight",
                ("layer", "field", "field"),
                "Frobenius norm of block (i, j) of each cross matrix W_l: how strongly field j enters the "
                "cross term of field i; the same for every sample",
                static=_static_block_norms(lambda m: [layer.weight for layer in m.crossnet.cross_layers], widths),
            )
        ]
    if hasattr(crossnet, "gating") and hasattr(crossnet, "U_list"):
        # NOTE: this probe has no field axis, so the app's probe pages (field and field-pair probes only) do not
        # show it. `workbench probes` writes and summarises it.
        return [
            Probe(
                "expert_gates",
                "gate",
                ("layer", "block"),
                "weight of each low-rank expert (a block) in each cross layer for this sample; softmax over the "
                "experts, so each layer's weights sum to 1",
                compute=_mixture_gates(len(crossnet.U_list), len(crossnet.gating)),
                value_range=(0.0, 1.0),
            )
        ]
    return []


def _autoint_probes(module: nn.Module, order: torch.Tensor | None) -> list[Probe]:
    paths = [f"self_attention.{layer}.dot_attention" for layer in range(len(module.self_attention))]
    return [
        Probe(
            "attention",
            "attention",
            ("layer", "head", "field", "field"),
            "self-attention weights over fields; row = query field, each row sums to 1",
            # ScaledDotProductAttention returns (output, attention) with attention (batch, heads, F, F).
            compute=_per_module(_Calls(paths), paths, lambda _args, output: _reorder(output[1], order, (-2, -1))),
            value_range=(0.0, 1.0),
        )
    ]


def _finalmlp_probes(module: nn.Module, widths: list[tuple[str, int]]) -> list[Probe]:
    fs = module.fs_module
    calls = _Calls([f"fs_module.fs{stream}_gate" for stream in (1, 2)])
    probes = []
    for stream in (1, 2):
        context = list(getattr(fs, f"fs{stream}_context", None) or [])
        scope = f"computed from {', '.join(context)}" if context else "the same for every sample (no context)"
        if context:
            # The gate block ends in a sigmoid; FeatureSelection doubles its output.
            how = {"compute": _per_call(calls, f"fs_module.fs{stream}_gate", 1, lambda _args, output: 2 * output)}
        else:
            # Without context the gate input is a learned bias, so the gate is a function of the weights alone.
            def constant_gate(model: Any, stream: int = stream) -> torch.Tensor:
                fs_module = model.module.fs_module
                bias = getattr(fs_module, f"fs{stream}_ctx_bias")
                return 2 * getattr(fs_module, f"fs{stream}_gate")(bias)[0]

            how = {"static": constant_gate}
        probes.append(
            Probe(
                f"stream{stream}_gate",
                "gate",
                ("field",),
                f"feature gate 2 * sigmoid(.) of MLP stream {stream}, {scope}; 1 leaves a bit unchanged, "
                "values above 1 amplify it",
                bit_fields=_bit_fields(widths),
                value_range=(0.0, 2.0),
                **how,
            )
        )
    return probes


def _pair_norms(n_fields: int, order: torch.Tensor | None) -> Callable[[tuple[Any, ...], Any], torch.Tensor]:
    """Turn bilinear pair vectors ``(batch, n_pairs, dim)`` (pairs i < j in row order) into symmetric norm maps."""
    rows, columns = torch.triu_indices(n_fields, n_fields, offset=1)

    def read(_args: tuple[Any, ...], pairs: torch.Tensor) -> torch.Tensor:
        norms = pairs.norm(dim=-1)
        maps = norms.new_zeros(norms.shape[0], n_fields, n_fields)
        maps[:, rows, columns] = norms
        maps[:, columns, rows] = norms
        return _reorder(maps, order, (-2, -1))

    return read


def _fibinet_probes(module: nn.Module, n_fields: int, order: torch.Tensor | None) -> list[Probe]:
    paths = ["senet_layer.excitation", "bilinear_interaction1", "bilinear_interaction2"]
    calls = _Calls(paths)
    return [
        Probe(
            "senet_weights",
            "field_weight",
            ("field",),
            "SENET weight a_f that scales field f's embedding before the second bilinear layer",
            compute=_per_call(calls, paths[0], 1, lambda _args, output: _reorder(output, order, (-1,))),
        ),
        Probe(
            "bilinear_pair_norms",
            "pair_weight",
            ("field", "field"),
            "L2 norm of the bilinear pair vector (e_i W) * e_j on the embeddings; symmetric, the diagonal is 0",
            compute=_per_call(calls, paths[1], 1, _pair_norms(n_fields, order)),
        ),
        Probe(
            "senet_bilinear_pair_norms",
            "pair_weight",
            ("field", "field"),
            "L2 norm of the bilinear pair vector (v_i W) * v_j on the SENET-weighted embeddings v; "
            "symmetric, the diagonal is 0",
            compute=_per_call(calls, paths[2], 1, _pair_norms(n_fields, order)),
        ),
    ]


def _masknet_probes(module: nn.Module, widths: list[tuple[str, int]]) -> list[Probe]:
    n_blocks = len(module.mask_net.mask_blocks)
    description = (
        "instance-guided mask V_mask = W_2 ReLU(W_1 V_emb) of {}, multiplied bit by bit into the embeddings; "
        "real-valued, 0 removes a bit"
    )
    if type(module.mask_net).__name__ == "ParallelMaskNet":
        paths = [f"mask_net.mask_blocks.{k}.mask_layer" for k in range(n_blocks)]
        return [
            Probe(
                "block_masks",
                "mask",
                ("block", "field"),
                description.format("each MaskBlock"),
                compute=_per_module(_Calls(paths), paths, _output),
                bit_fields=_bit_fields(widths),
            )
        ]
    # Later serial blocks mask the previous block's hidden units, which belong to no field.
    path = "mask_net.mask_blocks.0.mask_layer"
    return [
        Probe(
            "first_block_mask",
            "mask",
            ("field",),
            description.format("the first MaskBlock"),
            compute=_per_call(_Calls([path]), path, 1, _output),
            bit_fields=_bit_fields(widths),
        )
    ]


def _target_attention(calls: _Calls, index: int, use_softmax: bool) -> Callable[[Any, torch.Tensor], torch.Tensor]:
    """``compute`` of DIN's attention weights over the history, as ``DIN_Attention`` applies them.

    The MLP score of each position is multiplied by the history's mask (0 at
    PAD) and, with ``use_softmax``, normalised over the present positions.
    """
    layer_path = f"attention_layers.{index}"
    score_path = f"{layer_path}.attention_layer"

    def compute(model: Any, embeddings: torch.Tensor) -> torch.Tensor:
        ((args, _pooled),) = _calls_of(calls, model, embeddings, layer_path, 1)
        ((_, scores),) = _calls_of(calls, model, embeddings, score_path, 1)
        history = args[1]
        weights = scores.reshape(history.shape[0], history.shape[1])
        mask = args[2] if len(args) > 2 else None
        if mask is not None:
            weights = weights * mask.float()
        if use_softmax:
            if mask is not None:
                weights = weights - 1.0e9 * (1 - mask.float())
            weights = weights.softmax(dim=-1)
        return weights[: embeddings.shape[0]]

    return compute


def _din_probes(module: nn.Module) -> list[Probe]:
    layers = module.attention_layers
    paths = [path for i in range(len(layers)) for path in (f"attention_layers.{i}", f"attention_layers.{i}.attention_layer")]
    calls = _Calls(paths)
    sequences = list(getattr(module, "din_sequence_field", None) or [])
    probes = []
    for index, layer in enumerate(layers):
        use_softmax = bool(getattr(layer, "use_softmax", False))
        names = sequences[index] if index < len(sequences) else f"pair {index + 1}"
        history = names if isinstance(names, str) else names[0]
        normalised = (
            "softmax over the present behaviours, so they sum to 1"
            if use_softmax
            else "not normalised (no softmax), so their sum follows the strength of the interest"
        )
        probes.append(
            Probe(
                "target_attention" if len(layers) == 1 else f"target_attention_{history}",
                "target_attention",
                ("position",),
                f"DIN attention weight of each behaviour in {history} for the target; {normalised}; "
                "0 at empty positions",
                compute=_target_attention(calls, index, use_softmax),
                value_range=(0.0, 1.0) if use_softmax else None,
            )
        )
    return probes


def _fm_probes(order: torch.Tensor | None) -> list[Probe]:
    def products(args: tuple[Any, ...], _output: Any) -> torch.Tensor:
        # The FM layer's input is the (batch, F, dim) field embeddings.
        embeddings = args[0]
        pairs = embeddings @ embeddings.transpose(1, 2)
        pairs = pairs - torch.diag_embed(torch.diagonal(pairs, dim1=1, dim2=2))
        return _reorder(pairs, order, (-2, -1))

    return [
        Probe(
            "fm_pair_products",
            "pair_weight",
            ("field", "field"),
            "FM pair term <v_i, v_j> of each sample, in logits; the diagonal is 0",
            compute=_per_call(_Calls(["fm.fm_layer"]), "fm.fm_layer", 1, products),
        )
    ]


def fuxictr_probes(module: nn.Module, *, field_names: Sequence[str] | None = None) -> list[Probe]:
    """Return the probes that fit a FuxiCTR model's structure (an empty list when none does).

    Parameters
    ----------
    module : nn.Module
        A FuxiCTR rank model (a ``BaseModel`` subclass) as the adapter wraps it.
    field_names : sequence of str, default=None
        The schema's field order. Field x field maps and per-field weights
        come in the feature map's order when ``None``; per-bit signals are
        mapped to fields by name in any case.

    Returns
    -------
    list of Probe
        ``static``, ``compute`` and ``bit_fields`` take the
        :class:`~workbench.adapters.module.ModuleAdapter` that wraps
        ``module``.

    Raises
    ------
    ProbeRecipeError
        When ``field_names`` does not list the model's features.
    """
    widths = _feature_widths(module)
    if widths is None:
        return []
    order = _field_order(widths, field_names)
    probes: list[Probe] = []
    cross_net = getattr(module, "cross_net", None)
    if cross_net is not None and all(hasattr(cross_net, name) for name in ("w", "wg", "activation")):
        probes += _gdcn_probes(module, widths)
    if getattr(module, "crossnet", None) is not None:
        probes += _dcnv2_probes(module, widths)
    attention = getattr(module, "self_attention", None)
    if isinstance(attention, nn.Sequential) and all(hasattr(layer, "dot_attention") for layer in attention):
        probes += _autoint_probes(module, order)
    fs_module = getattr(module, "fs_module", None)
    if fs_module is not None and hasattr(fs_module, "fs1_gate") and hasattr(fs_module, "fs2_gate"):
        probes += _finalmlp_probes(module, widths)
    senet = getattr(module, "senet_layer", None)
    if senet is not None and hasattr(senet, "excitation") and hasattr(module, "bilinear_interaction2"):
        probes += _fibinet_probes(module, len(widths), order)
    mask_net = getattr(module, "mask_net", None)
    if mask_net is not None and hasattr(mask_net, "mask_blocks"):
        probes += _masknet_probes(module, widths)
    layers = getattr(module, "attention_layers", None)
    if isinstance(layers, nn.ModuleList) and all(hasattr(layer, "attention_layer") for layer in layers):
        probes += _din_probes(module)
    fm = getattr(module, "fm", None)
    if fm is not None and hasattr(fm, "fm_layer"):
        probes += _fm_probes(order)
    return probes
