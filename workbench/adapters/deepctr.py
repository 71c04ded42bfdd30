"""Open models trained with DeepCTR-Torch (PyPI ``deepctr-torch``, read at version 0.3.0) in the workbench.

A DeepCTR-Torch model takes one 2-D float tensor ``X``: the columns of every
feature side by side, in the order of ``model.feature_index``. Categorical
features hold DeepCTR ids, numeric features their (already scaled) values and
behaviour histories ``maxlen`` ids padded with 0. The model saves neither its
feature columns nor the raw value of each id, so the user supplies both:

* a column spec, the JSON form of the ``SparseFeat``, ``DenseFeat`` and
  ``VarLenSparseFeat`` lists the model was built with
  (:func:`columns_to_spec`, :func:`spec_to_columns`), as
  ``{"linear": [...], "dnn": [...]}``;
* vocabularies: per feature, the raw value of each DeepCTR id. A JSON list
  gives the raw value at each id, with ``null`` for an id that stands for no
  value (the padding id 0 of a history). A JSON object maps raw values to ids.
  DeepCTR's examples encode with scikit-learn's ``LabelEncoder`` (sorted unique
  values to ``0 .. n - 1``, :func:`label_encoder_vocabulary`) after filling
  missing cells with ``"-1"``.

:func:`adapt_deepctr` wraps the model in a
:class:`workbench.adapters.module.ModuleAdapter`, so that explainers, probes
and the app treat it as a native model.

``import deepctr_torch`` starts a thread that requests the latest version
from pypi.org. :func:`import_deepctr` loads the package's modules without running
its ``__init__``, so nothing leaves the machine; use it instead of a plain import.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from workbench.adapters.bundle import check_state_dict
from workbench.adapters.files import read_json_file
from workbench.adapters.module import AdapterError, EmbeddingSource, ModuleAdapter
from workbench.probes import Probe, block_norms
from workbench.schema import PAD_INDEX, Field, Schema, SchemaError, Vocabulary

PACKAGE = "deepctr_torch"
SUBMODULES = ("inputs", "layers", "models")
MODEL_CLASSES = ("DeepFM", "DCN", "DCNMix", "AutoInt", "xDeepFM", "FiBiNET", "DIN", "WDL", "NFM", "PNN")
"""Classes of ``deepctr_torch.models`` that :func:`build_deepctr_model` builds; no other class is ever imported."""
DNN_ONLY_CLASSES = ("DIN", "PNN")
"""Classes whose constructor takes only ``dnn_feature_columns`` (no linear part)."""
COLUMN_TYPES = ("sparse", "dense", "varlen")
COMBINERS = ("mean", "sum", "max")
DTYPES = ("int32", "int64", "float32", "float64")
MAX_EXACT_ID = 2**24
"""DeepCTR passes ids inside a float32 tensor, which represents every whole number up to 2**24 exactly."""


# ----- importing the package -------------------------------------------------------------------


def import_deepctr() -> ModuleType:
    """Import ``deepctr_torch.inputs``, ``.layers`` and ``.models`` without running the package's ``__init__``.

    The package ``__init__`` of deepctr-torch 0.3.0 starts a thread that calls
    ``https://pypi.python.org/pypi/deepctr-torch/json``. Here the package module
    is created from its import spec and registered in ``sys.modules`` unexecuted,
    so importing the submodules neither starts that thread nor opens a connection.
    When the package was already imported in full elsewhere, that import stays.

    Returns
    -------
    ModuleType
        The ``deepctr_torch`` package module, with ``inputs``, ``layers`` and
        ``models`` loaded.

    Raises
    ------
    AdapterError
        When deepctr-torch is not installed or one of its modules fails to import.
    """
    package = sys.modules.get(PACKAGE)
    registered_here = False
    if package is None:
        spec = importlib.util.find_spec(PACKAGE)
        if spec is None or spec.submodule_search_locations is None:
            msg = (
                "deepctr-torch is not installed; install the workbench's optional adapters "
                "(pip install '.[adapters]', which pins deepctr-torch==0.3.0)"
            )
            raise AdapterError(msg)
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        registered_here = True
    try:
        for name in SUBMODULES:
            setattr(package, name, importlib.import_module(f"{PACKAGE}.{name}"))
    except ImportError as err:
        if registered_here:
            sys.modules.pop(PACKAGE, None)
        msg = f"could not import {PACKAGE}: {type(err).__name__}: {err}"
        raise AdapterError(msg) from err
    return package


# ----- feature columns as JSON -----------------------------------------------------------------


def columns_to_spec(columns: Sequence[Any]) -> list[dict[str, Any]]:
    """Describe DeepCTR feature columns as JSON-compatible dicts, in their order.

    Parameters
    ----------
    columns : sequence of SparseFeat, DenseFeat or VarLenSparseFeat

    Returns
    -------
    list of dict
        ``{"type": "sparse", "name", "vocabulary_size", "embedding_dim",
        "embedding_name", "dtype", "group_name"}``, ``{"type": "dense", "name",
        "dimension", "dtype"}`` or ``{"type": "varlen", "sparse": {...},
        "maxlen", "combiner", "length_name"}``.

    Raises
    ------
    AdapterError
        For an object that is not a DeepCTR feature column, or a ``SparseFeat``
        with ``use_hash=True`` (deepctr-torch 0.3.0 does not hash).
    """
    inputs = import_deepctr().inputs
    spec = []
    for column in columns:
        if isinstance(column, inputs.SparseFeat):
            spec.append(_sparse_to_spec(column))
        elif isinstance(column, inputs.DenseFeat):
            spec.append({"type": "dense", "name": column.name, "dimension": int(column.dimension), "dtype": column.dtype})
        elif isinstance(column, inputs.VarLenSparseFeat):
            spec.append(
                {
                    "type": "varlen",
                    "sparse": _sparse_to_spec(column.sparsefeat),
                    "maxlen": int(column.maxlen),
                    "combiner": column.combiner,
                    "length_name": column.length_name,
                }
            )
        else:
            msg = f"not a DeepCTR feature column: {type(column).__name__}; expected SparseFeat, DenseFeat or VarLenSparseFeat"
            raise AdapterError(msg)
    return spec


def _sparse_to_spec(column: Any) -> dict[str, Any]:
    if column.use_hash:
        msg = f"SparseFeat {column.name!r} sets use_hash=True, which deepctr-torch does not implement; it cannot be described"
        raise AdapterError(msg)
    return {
        "type": "sparse",
        "name": column.name,
        "vocabulary_size": int(column.vocabulary_size),
        "embedding_dim": int(column.embedding_dim),
        "embedding_name": column.embedding_name,
        "dtype": column.dtype,
        "group_name": column.group_name,
    }


def spec_to_columns(spec: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Build DeepCTR feature columns from :func:`columns_to_spec` output, checking every entry.

    Raises
    ------
    AdapterError
        When an entry is not a JSON object, has an unknown ``type``, or a value
        has the wrong type or range; the message names the column and the key.
    """
    if not isinstance(spec, list):
        msg = f"a column spec must be a JSON list of feature columns; got {type(spec).__name__}"
        raise AdapterError(msg)
    inputs = import_deepctr().inputs
    columns = []
    for position, entry in enumerate(spec):
        if not isinstance(entry, Mapping):
            msg = f"column {position} of the spec must be a JSON object; got {str(entry)[:80]}"
            raise AdapterError(msg)
        kind = entry.get("type")
        if kind == "sparse":
            columns.append(_spec_to_sparse(entry, inputs))
        elif kind == "dense":
            name = _spec_name(entry)
            dtype = _spec_choice(entry, "dtype", DTYPES, "float32")
            columns.append(inputs.DenseFeat(name, _spec_count(entry, "dimension", name), dtype))
        elif kind == "varlen":
            name = _spec_name(entry.get("sparse", {})) if isinstance(entry.get("sparse"), Mapping) else None
            if name is None:
                msg = f"varlen column {position} needs a 'sparse' object describing its SparseFeat"
                raise AdapterError(msg)
            sparse = _spec_to_sparse(entry["sparse"], inputs)
            length_name = entry.get("length_name")
            if length_name is not None and (not isinstance(length_name, str) or not length_name):
                msg = f"varlen column {name!r} has 'length_name' {length_name!r}; give a column name or null"
                raise AdapterError(msg)
            combiner = _spec_choice(entry, "combiner", COMBINERS, "mean")
            columns.append(inputs.VarLenSparseFeat(sparse, _spec_count(entry, "maxlen", name), combiner, length_name))
        else:
            msg = f"column {position} has type {kind!r}; valid types: {', '.join(COLUMN_TYPES)}"
            raise AdapterError(msg)
    return columns


def _spec_to_sparse(entry: Mapping[str, Any], inputs: ModuleType) -> Any:
    name = _spec_name(entry)
    embedding_name = entry.get("embedding_name", name)
    group_name = entry.get("group_name", "default_group")
    for key, value in (("embedding_name", embedding_name), ("group_name", group_name)):
        if not isinstance(value, str) or not value:
            msg = f"sparse column {name!r} has {key!r} {value!r}; it must be a non-empty string"
            raise AdapterError(msg)
    return inputs.SparseFeat(
        name,
        _spec_count(entry, "vocabulary_size", name),
        embedding_dim=_spec_count(entry, "embedding_dim", name),
        dtype=_spec_choice(entry, "dtype", DTYPES, "int32"),
        embedding_name=embedding_name,
        group_name=group_name,
    )


def _spec_name(entry: Mapping[str, Any]) -> str:
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        msg = f"each column needs a non-empty string 'name'; got {str(dict(entry))[:120]}"
        raise AdapterError(msg)
    return name


def _spec_count(entry: Mapping[str, Any], key: str, name: str) -> int:
    value = entry.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        msg = f"column {name!r} has {key!r} {value!r}; it must be a whole number >= 1"
        raise AdapterError(msg)
    return value


def _spec_choice(entry: Mapping[str, Any], key: str, choices: Sequence[str], default: str) -> str:
    value = entry.get(key, default)
    if value not in choices:
        msg = f"column {entry.get('name')!r} has {key!r} {value!r}; valid values: {', '.join(choices)}"
        raise AdapterError(msg)
    return value


@dataclass(frozen=True)
class ModelColumns:
    """The linear and DNN feature columns of one model, as DeepCTR objects, and their spec."""

    linear: list[Any]
    dnn: list[Any]

    @classmethod
    def from_spec(cls, spec: Any) -> ModelColumns:
        """Read ``{"linear": [...], "dnn": [...]}``; a plain list is used for both parts."""
        if isinstance(spec, list):
            columns = spec_to_columns(spec)
            return cls(columns, list(columns))
        if not isinstance(spec, Mapping) or not set(spec) <= {"linear", "dnn"} or "dnn" not in spec:
            keys = sorted(spec) if isinstance(spec, Mapping) else type(spec).__name__
            msg = f"the column spec must be a list or an object with 'dnn' and optionally 'linear'; got {keys}"
            raise AdapterError(msg)
        return cls(spec_to_columns(spec.get("linear", [])), spec_to_columns(spec["dnn"]))

    def to_spec(self) -> dict[str, list[dict[str, Any]]]:
        return {"linear": columns_to_spec(self.linear), "dnn": columns_to_spec(self.dnn)}

    def all_columns(self) -> list[Any]:
        """Return every column once, in ``build_input_features`` order (linear first, the first entry of a name wins)."""
        seen: dict[str, Any] = {}
        for column in self.linear + self.dnn:
            seen.setdefault(column.name, column)
        return list(seen.values())


# ----- vocabularies ----------------------------------------------------------------------------


def label_encoder_vocabulary(values: Sequence[Any], *, reserve_padding: bool = False) -> list[str | None]:
    """Return the vocabulary list that scikit-learn's ``LabelEncoder`` gives: sorted unique values at ids ``0 .. n - 1``.

    With ``reserve_padding`` the ids start at 1 and id 0 is ``None``, as
    DeepCTR's history examples do so that 0 can pad a history.
    """
    unique = sorted({str(value) for value in values})
    return ([None] if reserve_padding else []) + unique


def _read_vocabulary(name: str, raw: Any, size: int) -> tuple[list[str], np.ndarray]:
    """Return the raw values of one feature and their DeepCTR ids, sorted by id."""
    if isinstance(raw, list):
        pairs = [(value, index) for index, value in enumerate(raw) if value is not None]
    elif isinstance(raw, Mapping):
        pairs = list(raw.items())
    else:
        msg = f"the vocabulary of {name!r} must be a JSON list (raw value at each id) or an object (raw value to id)"
        raise AdapterError(msg)
    for value, index in pairs:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            msg = f"the vocabulary of {name!r} has the raw value {value!r}; raw values must be strings or numbers"
            raise AdapterError(msg)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < size:
            msg = (
                f"the vocabulary of {name!r} maps {value!r} to id {index!r}; ids must be whole numbers in "
                f"0..{size - 1} (the feature's vocabulary_size is {size})"
            )
            raise AdapterError(msg)
    values = [str(value) for value, _ in pairs]
    ids = np.asarray([index for _, index in pairs], dtype=np.int64)
    if len(set(values)) != len(values):
        duplicates = sorted({v for v in values if values.count(v) > 1})[:5]
        msg = f"the vocabulary of {name!r} lists these raw values twice: {duplicates}"
        raise AdapterError(msg)
    if len(set(ids.tolist())) != len(ids):
        msg = f"the vocabulary of {name!r} gives two raw values the same id"
        raise AdapterError(msg)
    order = np.argsort(ids, kind="stable")
    return [values[i] for i in order], ids[order]


def _vocabulary_for(column: Any, vocabularies: Mapping[str, Any]) -> Any:
    """Return the vocabulary entry of a column: under its own name, else under its embedding name (shared tables)."""
    for key in (column.name, column.embedding_name):
        if key in vocabularies:
            return vocabularies[key]
    msg = (
        f"no vocabulary for feature {column.name!r} (nor for its embedding {column.embedding_name!r}); "
        "DeepCTR saves none, so add the raw value of each id, e.g. the LabelEncoder classes used in training"
    )
    raise AdapterError(msg)


def deepctr_schema(
    spec: Any, vocabularies: Mapping[str, Any], *, label: str = "label"
) -> tuple[Schema, dict[str, torch.Tensor]]:
    """Build the workbench schema of a DeepCTR model and the id lookup of each embedded field.

    Field order is the model's input order (``build_input_features``): sparse
    features become ``categorical`` fields, histories ``sequence`` fields,
    ``DenseFeat`` of dimension 1 ``numeric`` and wider ones ``dense``. Numeric
    fields have mean 0 and standard deviation 1, so the workbench passes their
    values unchanged: give the data as DeepCTR saw it (already scaled). A
    history's ``length_name`` column is no field, because it is computed
    from the history.

    The workbench numbers a field's known values ``1..n`` in DeepCTR id order,
    with PAD 0 and OOV ``n + 1``. ``lookup[field][workbench_id]`` is the DeepCTR
    id. PAD and OOV have no row in DeepCTR's tables, so both map to id 0 and
    :func:`adapt_deepctr` sets their embedding to zero.

    Parameters
    ----------
    spec : list or dict
        The column spec (see :class:`ModelColumns`).
    vocabularies : mapping of str to list or dict
        Per feature (or per shared embedding name), the raw value of each id.
    label : str, default="label"
        The label column of the data.

    Returns
    -------
    schema : Schema
    lookups : dict of str to Tensor
        For each categorical and sequence field, a long tensor of length ``n + 2``.

    Raises
    ------
    AdapterError
        For a missing or invalid vocabulary, or a history whose vocabulary uses
        id 0, which DeepCTR reads as padding.
    """
    columns = spec if isinstance(spec, ModelColumns) else ModelColumns.from_spec(spec)
    if not isinstance(vocabularies, Mapping):
        msg = f"vocabularies must be a JSON object of feature name to vocabulary; got {type(vocabularies).__name__}"
        raise AdapterError(msg)
    inputs = import_deepctr().inputs
    fields: list[Field] = []
    lookups: dict[str, torch.Tensor] = {}
    for column in columns.all_columns():
        if isinstance(column, inputs.DenseFeat):
            if column.dimension == 1:
                fields.append(Field(column.name, "numeric", mean=0.0, std=1.0))
            else:
                fields.append(Field(column.name, "dense", dim=int(column.dimension)))
            continue
        size = int(column.vocabulary_size)
        if size > MAX_EXACT_ID:
            msg = f"feature {column.name!r} has vocabulary_size {size}; ids above 2**24 do not survive DeepCTR's float input"
            raise AdapterError(msg)
        values, ids = _read_vocabulary(column.name, _vocabulary_for(column, vocabularies), size)
        history = isinstance(column, inputs.VarLenSparseFeat)
        if history and len(ids) and ids[0] == 0:
            msg = (
                f"the vocabulary of the history {column.name!r} gives {values[0]!r} id 0, which DeepCTR reads as "
                "padding; histories need their ids to start at 1 (list null first)"
            )
            raise AdapterError(msg)
        vocabulary = Vocabulary(values)
        lookups[column.name] = torch.from_numpy(np.concatenate([[0], ids, [0]]).astype(np.int64))
        if history:
            fields.append(Field(column.name, "sequence", vocabulary=vocabulary, max_length=int(column.maxlen)))
        else:
            fields.append(Field(column.name, "categorical", vocabulary=vocabulary))
    length_names = {c.length_name for c in columns.all_columns() if isinstance(c, inputs.VarLenSparseFeat)}
    clashes = sorted(length_names & {f.name for f in fields})
    if clashes:
        msg = f"{', '.join(clashes)} is both a feature and a history's length_name; rename one"
        raise AdapterError(msg)
    try:
        return Schema(fields, label=label), lookups
    except SchemaError as err:
        raise AdapterError(str(err)) from err


# ----- building X ------------------------------------------------------------------------------


def _input_builder(
    model: nn.Module, columns: ModelColumns, schema: Schema, lookups: Mapping[str, torch.Tensor]
) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """Return ``build_input``: workbench rows to DeepCTR's ``X``, columns in ``model.feature_index`` order."""
    inputs_module = import_deepctr().inputs
    kinds = {f.name: f.kind for f in schema.fields}
    history_of_length = {
        c.length_name: c.name
        for c in columns.all_columns()
        if isinstance(c, inputs_module.VarLenSparseFeat) and c.length_name is not None
    }
    order = list(model.feature_index)
    unknown = [name for name in order if name not in kinds and name not in history_of_length]
    if unknown:
        msg = f"the model reads inputs {unknown} that the column spec does not describe"
        raise AdapterError(msg)

    def build_input(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for name in order:
            if name in history_of_length:
                # Length = last present position + 1, so a behaviour removed from the middle keeps the later ones.
                present = inputs[history_of_length[name]] != PAD_INDEX
                positions = torch.arange(1, present.shape[1] + 1, device=present.device)
                parts.append((present * positions).amax(dim=1, keepdim=True).float())
            elif kinds[name] in ("categorical", "sequence"):
                ids = lookups[name][inputs[name].long()]
                parts.append(ids.float().reshape(ids.shape[0], -1))
            else:
                value = inputs[name]
                parts.append(value.float().reshape(value.shape[0], -1))
        return torch.cat(parts, dim=1)

    return build_input


# ----- probes ----------------------------------------------------------------------------------


def _module_calls(
    adapter: ModuleAdapter, embeddings: torch.Tensor, paths: Sequence[str]
) -> dict[str, list[tuple[tuple[Any, ...], Any]]]:
    """Run the adapter on ``embeddings`` and return the inputs and output of each call of the given submodules.

    Only calls from this thread are recorded, so another thread using the same
    model adds nothing.
    """
    thread = threading.get_ident()
    calls: dict[str, list[tuple[tuple[Any, ...], Any]]] = {path: [] for path in paths}
    handles = []

    def recorder(path: str) -> Callable[..., None]:
        def record(_module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if threading.get_ident() == thread:
                calls[path].append((args, output))

        return record

    for path in paths:
        handles.append(adapter.module.get_submodule(path).register_forward_hook(recorder(path)))
    try:
        with torch.no_grad():
            adapter.logit_from_embeddings(embeddings)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _pooled_fields(model: nn.Module, schema: Schema) -> list[int]:
    """Schema index of each entry of DeepCTR's ``sparse_embedding_list``: dnn sparse features, then histories."""
    inputs = import_deepctr().inputs
    names = schema.field_names
    sparse = [c.name for c in model.dnn_feature_columns if isinstance(c, inputs.SparseFeat)]
    histories = [c.name for c in model.dnn_feature_columns if isinstance(c, inputs.VarLenSparseFeat)]
    return [names.index(name) for name in sparse + histories]


def _dnn_bit_fields(model: nn.Module, schema: Schema) -> np.ndarray:
    """Field of each bit of ``combined_dnn_input``: every sparse and pooled embedding, then the dense values."""
    inputs = import_deepctr().inputs
    names = schema.field_names
    by_name = {c.name: c for c in model.dnn_feature_columns}
    bits = [np.full(by_name[names[i]].embedding_dim, i) for i in _pooled_fields(model, schema)]
    bits += [
        np.full(c.dimension, names.index(c.name)) for c in model.dnn_feature_columns if isinstance(c, inputs.DenseFeat)
    ]
    return np.concatenate(bits).astype(np.int64)


def _scatter_pairs(pairs: torch.Tensor, fields: Sequence[int], n_fields: int) -> torch.Tensor:
    """Place ``(..., k, k)`` maps over a subset of fields into ``(..., F, F)`` maps with zeros elsewhere."""
    out = pairs.new_zeros(*pairs.shape[:-2], n_fields, n_fields)
    index = torch.as_tensor(list(fields))
    out[..., index[:, None], index[None, :]] = pairs
    return out


def autoint_attention(adapter: ModuleAdapter, embeddings: torch.Tensor) -> torch.Tensor:
    """Recompute the softmax attention of every ``InteractingLayer`` from its input and its own weights.

    deepctr-torch computes the attention with ``F.softmax`` inside
    ``InteractingLayer.forward``, so no submodule returns it. Returns
    ``(batch_size, layer, head, F, F)``: row = query field. Dense fields take
    no part in the attention; their rows and columns are 0.
    """
    model = adapter.module
    paths = [f"int_layers.{i}" for i in range(len(model.int_layers))]
    calls = _module_calls(adapter, embeddings, paths)
    n_rows = embeddings.shape[0]
    layers = []
    for path, layer in zip(paths, model.int_layers, strict=True):
        x = calls[path][0][0][0][:n_rows]  # (B, k, D): the layer's input
        queries = torch.stack(torch.split(x @ layer.W_Query, layer.att_embedding_size, dim=2), dim=1)
        keys = torch.stack(torch.split(x @ layer.W_key, layer.att_embedding_size, dim=2), dim=1)
        scores = queries @ keys.transpose(-1, -2)  # (B, head, k, k)
        if layer.scaling:
            scores = scores / layer.att_embedding_size**0.5
        layers.append(torch.softmax(scores, dim=-1))
    stacked = torch.stack(layers, dim=1)
    return _scatter_pairs(stacked, _pooled_fields(model, adapter.schema), adapter.n_fields)


def fm_pair_products(adapter: ModuleAdapter, embeddings: torch.Tensor) -> torch.Tensor:
    """Return the FM pair terms ``<v_i, v_j>`` from the input of DeepFM's ``fm`` layer, ``(batch_size, F, F)``; the diagonal is 0."""
    model = adapter.module
    x = _module_calls(adapter, embeddings, ["fm"])["fm"][0][0][0][: embeddings.shape[0]]  # (B, k, D)
    products = x @ x.transpose(-1, -2)
    products = products - torch.diag_embed(torch.diagonal(products, dim1=-2, dim2=-1))
    return _scatter_pairs(products, _pooled_fields(model, adapter.schema), adapter.n_fields)


def din_attention(adapter: ModuleAdapter, embeddings: torch.Tensor) -> torch.Tensor:
    """Return DIN's attention weight of each behaviour, ``(batch_size, maxlen)``, 0 at positions past the history's length.

    The scores are the output of ``attention.local_att`` (the local activation
    unit), masked by the length as ``AttentionSequencePoolingLayer`` masks them,
    and put through a softmax when the model was built with
    ``att_weight_normalization=True``.
    """
    model = adapter.module
    calls = _module_calls(adapter, embeddings, ["attention", "attention.local_att"])
    n_rows = embeddings.shape[0]
    _query, keys, keys_length = calls["attention"][0][0][:3]
    scores = calls["attention.local_att"][0][1].squeeze(-1)[:n_rows]  # (B, T)
    positions = torch.arange(keys.shape[1])
    mask = positions[None, :] < keys_length.reshape(-1, 1)[:n_rows]
    if model.attention.weight_normalization:
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
    return scores * mask


def _cross_probes(model: nn.Module, schema: Schema) -> list[Probe]:
    bits = _dnn_bit_fields(model, schema)
    n_fields = len(schema.fields)
    crossnet = model.crossnet
    if type(crossnet).__name__ == "CrossNetMix":

        def expert_norms(adapter: ModuleAdapter) -> torch.Tensor:
            net = adapter.module.crossnet
            layers = []
            for layer in range(net.layer_num):
                experts = []
                for expert in range(net.num_experts):
                    jacobian = net.U_list[layer][expert] @ net.C_list[layer][expert] @ net.V_list[layer][expert].t()
                    experts.append(block_norms(jacobian, bits, bits, n_fields))
                layers.append(np.stack(experts))
            return torch.from_numpy(np.stack(layers))

        return [
            Probe(
                "cross_expert_norms",
                "pair_weight",
                ("layer", "block", "field", "field"),
                "Frobenius norm of block (i, j) of U C V^T for each low-rank expert (block) of each cross layer: "
                "the expert's map at x = 0, where both tanh have slope 1; the same for every sample",
                static=expert_norms,
            )
        ]
    if crossnet.parameterization == "matrix":
        return [
            Probe(
                "cross_weight_norms",
                "pair_weight",
                ("layer", "field", "field"),
                "Frobenius norm of block (i, j) of each cross matrix W_l: how strongly field j enters the cross "
                "term of field i; the same for every sample",
                static=lambda adapter: torch.from_numpy(
                    np.stack([block_norms(w, bits, bits, n_fields) for w in adapter.module.crossnet.kernels])
                ),
            )
        ]

    def vector_norms(adapter: ModuleAdapter) -> torch.Tensor:
        kernels = adapter.module.crossnet.kernels.detach().double().squeeze(-1)  # (layers, bits)
        one_hot = torch.zeros(len(bits), n_fields, dtype=torch.float64)
        one_hot[torch.arange(len(bits)), torch.from_numpy(bits)] = 1.0
        return torch.sqrt(kernels.pow(2) @ one_hot)

    return [
        Probe(
            "cross_weight_norms",
            "field_weight",
            ("layer", "field"),
            "L2 norm of each field's part of the cross vector w_l (DCN's x_0 x_l^T w_l): how strongly the field "
            "enters every cross term; the same for every sample",
            static=vector_norms,
        )
    ]


def _senet_probe(model: nn.Module, schema: Schema) -> Probe:
    fields = _pooled_fields(model, schema)
    n_fields = len(schema.fields)

    def to_fields(weights: torch.Tensor) -> torch.Tensor:
        out = weights.new_zeros(weights.shape[0], n_fields)
        out[:, fields] = weights
        return out

    return Probe(
        "senet_weights",
        "field_weight",
        ("field",),
        "SENET weight a_f that scales field f's embedding before the bilinear layer; dense fields bypass SENET (0)",
        modules=("SE.excitation",),
        read_output=to_fields,
    )


def deepctr_probes(model: nn.Module, schema: Schema) -> list[Probe]:
    """Return the probes of a DeepCTR model: AutoInt attention, DCN and DCNMix cross weights, FiBiNET SENET, DIN attention, FM pairs."""
    name = type(model).__name__
    if name == "AutoInt" and len(model.int_layers):
        return [
            Probe(
                "attention",
                "attention",
                ("layer", "head", "field", "field"),
                "self-attention weights over the embedded fields; row = query field, each row of an embedded "
                "field sums to 1; dense fields take no part (0)",
                compute=autoint_attention,
                value_range=(0.0, 1.0),
            )
        ]
    if name in ("DCN", "DCNMix") and model.cross_num > 0:
        return _cross_probes(model, schema)
    if name == "FiBiNET":
        return [_senet_probe(model, schema)]
    if name == "DIN":
        normalised = model.attention.weight_normalization
        return [
            Probe(
                "target_attention",
                "target_attention",
                ("position",),
                "DIN local activation unit score of each behaviour for the target; "
                + ("softmax over the history, so the weights sum to 1" if normalised else "not normalised")
                + "; 0 past the history's length",
                compute=din_attention,
                value_range=(0.0, 1.0) if normalised else None,
            )
        ]
    if name == "DeepFM" and model.use_fm:
        return [
            Probe(
                "fm_pair_products",
                "pair_weight",
                ("field", "field"),
                "FM pair term <v_i, v_j> of each sample, in logits; the diagonal and dense fields are 0",
                compute=fm_pair_products,
            )
        ]
    return []


# ----- the adapter -----------------------------------------------------------------------------


def _check_tables(model: nn.Module, columns: ModelColumns) -> None:
    """Check that the spec's sparse columns match the model's embedding tables (rows, width)."""
    inputs = import_deepctr().inputs
    problems = []
    for part, table_dict, found in (
        ("dnn", model.embedding_dict, columns.dnn),
        ("linear", model.linear_model.embedding_dict, columns.linear),
    ):
        for column in found:
            if isinstance(column, inputs.DenseFeat):
                continue
            table = table_dict[column.embedding_name] if column.embedding_name in table_dict else None
            width = column.embedding_dim if part == "dnn" else 1
            expected = (column.vocabulary_size, width)
            if table is None:
                problems.append(f"{part} table {column.embedding_name!r} is missing")
            elif tuple(table.weight.shape) != expected:
                problems.append(f"{part} table {column.embedding_name!r} is {tuple(table.weight.shape)}, spec says {expected}")
    missing = [name for name in model.feature_index if name not in {c.name for c in columns.all_columns()}]
    lengths = {c.length_name for c in columns.all_columns() if isinstance(c, inputs.VarLenSparseFeat)}
    missing = [name for name in missing if name not in lengths]
    if missing:
        problems.append(f"inputs {missing} are not in the spec")
    if problems:
        msg = f"the column spec does not match the {type(model).__name__}: {'; '.join(problems)}"
        raise AdapterError(msg)


def adapt_deepctr(
    model: nn.Module, spec: Any, vocabularies: Mapping[str, Any], *, label: str = "label", name: str | None = None
) -> ModuleAdapter:
    """Wrap a DeepCTR-Torch model as a workbench model.

    Each sparse feature and history is read where DeepCTR looks it up: the
    table ``embedding_dict.<embedding_name>`` and, for features of the linear
    part, ``linear_model.embedding_dict.<embedding_name>`` (a first-order weight
    in the last column of the slot). Numeric features are value slots. The
    logit is the input of ``out`` (the ``PredictionLayer``, whose in-place bias
    add runs before the adapter reads it), so ``sigmoid(adapter(inputs))``
    equals ``model.predict``.

    PAD (a missing value) and OOV (a value missing from the vocabulary) have
    no row in DeepCTR's tables. They are looked up as id 0 and then given a zero
    embedding (``zero_ids``), so an unknown value contributes nothing but the
    model's bias terms. Fill missing cells as training did (DeepCTR's examples
    use ``"-1"``), or they count as PAD.

    Parameters
    ----------
    model : nn.Module
        A model of ``deepctr_torch.models``.
    spec : list or dict
        Its column spec, ``{"linear": [...], "dnn": [...]}`` (see :func:`columns_to_spec`).
    vocabularies : mapping
        Per feature, the raw value of each DeepCTR id (see :func:`deepctr_schema`).
    label : str, default="label"
        The label column of the data.
    name : str, optional
        The architecture name shown; ``deepctr:<class>`` by default.

    Returns
    -------
    ModuleAdapter

    Raises
    ------
    AdapterError
        When the spec does not match the model's tables and inputs, or a vocabulary is invalid.
    """
    columns = spec if isinstance(spec, ModelColumns) else ModelColumns.from_spec(spec)
    if not hasattr(model, "feature_index") or not hasattr(model, "out"):
        msg = f"{type(model).__name__} is not a DeepCTR-Torch model (it has no feature_index and out layer)"
        raise AdapterError(msg)
    _check_tables(model, columns)
    schema, lookups = deepctr_schema(columns, vocabularies, label=label)
    inputs_module = import_deepctr().inputs
    by_name = {c.name: c for c in columns.all_columns()}
    dnn_names = {c.name for c in columns.dnn}
    linear_names = {c.name for c in columns.linear}
    sources = []
    zero_ids: dict[str, list[int]] = {}
    for f in schema.fields:
        column = by_name[f.name]
        if isinstance(column, inputs_module.DenseFeat):
            sources.append(EmbeddingSource(f.name, value=True))
            continue
        modules = []
        if f.name in dnn_names:
            modules.append(f"embedding_dict.{column.embedding_name}")
        if f.name in linear_names and column.embedding_name in model.linear_model.embedding_dict:
            modules.append(f"linear_model.embedding_dict.{column.embedding_name}")
        sources.append(EmbeddingSource(f.name, modules=tuple(modules)))
        assert f.vocabulary is not None
        zero_ids[f.name] = [PAD_INDEX, f.vocabulary.oov_index]
    build_input = _input_builder(model, columns, schema, lookups)
    adapter = ModuleAdapter(
        model,
        schema,
        sources=sources,
        build_input=build_input,
        logit="input:out",
        name=name or f"deepctr:{type(model).__name__}",
        probes=deepctr_probes(model, schema),
        zero_ids=zero_ids,
    )
    _check_reproduces(adapter, build_input)
    return adapter


def _check_rows(schema: Schema) -> dict[str, torch.Tensor]:
    """Two rows: every field at its last and its second-to-last known value, numeric fields at 0.5 and -1.

    The last values have the highest DeepCTR ids, which differ from id 0,
    where PAD and the placeholder batch of the adapter are looked up.
    """
    rows: dict[str, torch.Tensor] = {}
    for f in schema.fields:
        if f.kind in ("categorical", "sequence"):
            assert f.vocabulary is not None
            n_values = len(f.vocabulary.values)
            ids = torch.tensor([n_values, max(1, n_values - 1)])
            rows[f.name] = ids if f.kind == "categorical" else ids[:, None].expand(2, f.max_length).clone()
        elif f.kind == "dense":
            rows[f.name] = torch.tensor([[0.5] * f.dim, [-1.0] * f.dim])
        else:
            rows[f.name] = torch.tensor([0.5, -1.0])
    return rows


def _check_reproduces(adapter: ModuleAdapter, build_input: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> None:
    """Check that the adapter's probabilities equal the model's own on two rows.

    A model that looks a field up in a table the adapter does not list (ONN's
    field-aware tables, for one) would get PAD ids there when the adapter
    replays slots, and its predictions would drift without an error.
    """
    model = adapter.module
    if getattr(model.out, "task", "binary") != "binary":
        msg = f"the {type(model).__name__} was built with task={model.out.task!r}; the workbench explains binary click models only"
        raise AdapterError(msg)
    rows = _check_rows(adapter.schema)
    with torch.no_grad():
        own = model(build_input(rows)).reshape(-1).double()
        adapted = torch.sigmoid(adapter(rows).double())
    difference = (own - adapted).abs().max().item()
    if difference > 1e-5:
        msg = (
            f"the adapted {type(model).__name__} does not reproduce the model's own predictions (they differ by "
            f"{difference:.2g} on example rows): the model reads inputs outside the tables the adapter hooks, so it "
            f"is not supported; supported classes: {', '.join(MODEL_CLASSES)}"
        )
        raise AdapterError(msg)


# ----- rebuilding and loading ------------------------------------------------------------------


def build_deepctr_model(model_class: str, spec: Any, params: Mapping[str, Any] | None = None) -> nn.Module:
    """Build an untrained model of an allowed ``deepctr_torch.models`` class from its column spec and constructor options.

    The model is built on the CPU (``device`` and ``gpus`` are set here), and
    the global torch random state is restored afterwards, although DeepCTR's
    constructor seeds it.

    Raises
    ------
    AdapterError
        For a class outside :data:`MODEL_CLASSES`, an option the constructor
        does not take, or a constructor error.
    """
    if model_class not in MODEL_CLASSES:
        msg = f"model_class {model_class!r} is not supported; supported deepctr_torch.models classes: {', '.join(MODEL_CLASSES)}"
        raise AdapterError(msg)
    params = dict(params or {})
    columns = spec if isinstance(spec, ModelColumns) else ModelColumns.from_spec(spec)
    cls = getattr(import_deepctr().models, model_class)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "linear_feature_columns", "dnn_feature_columns"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        msg = f"{model_class} takes no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted))}"
        raise AdapterError(msg)
    params.update(device="cpu", gpus=None)
    positional = [columns.dnn] if model_class in DNN_ONLY_CLASSES else [columns.linear, columns.dnn]
    try:
        with torch.random.fork_rng(devices=[]):
            model = cls(*positional, **params)
    except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as err:
        msg = f"could not build {model_class} from the spec and options: {type(err).__name__}: {err}"
        raise AdapterError(msg) from err
    return model.eval()


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load a state dict into ``module`` after checking that every tensor name and shape matches.

    Raises
    ------
    AdapterError
        Naming the missing, unexpected and differently shaped tensors.
    """
    check_state_dict(module, state, source)
    module.load_state_dict(state)


def rebuild(recipe: Mapping[str, Any], schema: Schema | None = None) -> ModuleAdapter:
    """Rebuild an adapted DeepCTR model from a bundle recipe, with untrained weights.

    Parameters
    ----------
    recipe : mapping
        ``{"model_class": "DeepFM", "columns": {...}, "params": {...},
        "vocabularies": {...}}``; ``model_class`` must be in :data:`MODEL_CLASSES`.
    schema : Schema, optional
        The bundle's schema; when given, the rebuilt schema must have the same
        fields, kinds and vocabularies.

    Raises
    ------
    AdapterError
        For a missing key, an unsupported class, or a schema that differs from the bundle's.
    """
    if not isinstance(recipe, Mapping):
        msg = f"a DeepCTR recipe must be a JSON object; got {type(recipe).__name__}"
        raise AdapterError(msg)
    missing = [key for key in ("model_class", "columns", "vocabularies") if key not in recipe]
    if missing:
        msg = f"the DeepCTR recipe lacks {', '.join(missing)}; it needs model_class, columns, params and vocabularies"
        raise AdapterError(msg)
    params = recipe.get("params") or {}
    if not isinstance(params, Mapping):
        msg = f"the recipe's 'params' must be a JSON object of constructor options; got {type(params).__name__}"
        raise AdapterError(msg)
    columns = ModelColumns.from_spec(recipe["columns"])
    model = build_deepctr_model(str(recipe["model_class"]), columns, params)
    adapter = adapt_deepctr(model, columns, recipe["vocabularies"], label=str(recipe.get("label", "label")))
    if schema is not None:
        _check_same_schema(adapter.schema, schema)
    return adapter


def recipe_for(
    model_class: str, spec: Any, params: Mapping[str, Any], vocabularies: Mapping[str, Any], *, label: str = "label"
) -> dict[str, Any]:
    """Return the JSON recipe that :func:`rebuild` reads."""
    columns = spec if isinstance(spec, ModelColumns) else ModelColumns.from_spec(spec)
    return {
        "model_class": model_class,
        "columns": columns.to_spec(),
        "params": dict(params),
        "vocabularies": {name: vocabulary for name, vocabulary in vocabularies.items()},
        "label": label,
    }


def _check_same_schema(rebuilt: Schema, stored: Schema) -> None:
    def outline(schema: Schema) -> list[tuple[Any, ...]]:
        return [(f.name, f.kind, tuple(f.vocabulary.values) if f.vocabulary else (), f.max_length, f.dim) for f in schema.fields]

    if outline(rebuilt) != outline(stored):
        differing = [a[0] for a, b in zip(outline(rebuilt), outline(stored), strict=False) if a != b]
        msg = (
            f"the bundle's schema does not match the schema rebuilt from its DeepCTR recipe (fields "
            f"{differing or 'count'} differ); the bundle is inconsistent, save it again"
        )
        raise AdapterError(msg)


def load_deepctr(
    weights: str | Path,
    columns: str | Path,
    vocabularies: str | Path,
    *,
    model_class: str,
    params: Mapping[str, Any] | None = None,
    label: str = "label",
    allow_pickle: bool = False,
) -> ModuleAdapter:
    """Open a DeepCTR-Torch model saved with ``torch.save(model.state_dict(), path)``.

    Parameters
    ----------
    weights : path
        The state dict file, read with ``torch.load(weights_only=True)`` (no pickled code runs).
    columns : path
        JSON column spec (see :class:`ModelColumns`).
    vocabularies : path
        JSON vocabularies (see :func:`deepctr_schema`).
    model_class : str
        One of :data:`MODEL_CLASSES`.
    params : mapping, optional
        The constructor options used in training, such as ``dnn_hidden_units``.
    label : str, default="label"
        The label column of the data.
    allow_pickle : bool, default=False
        Also accept a whole model saved with ``torch.save(model, path)``. That
        file is unpickled through :func:`workbench.untrusted.load_torch_module`,
        which can run code from it, with a warning; only its weights are used.

    Raises
    ------
    AdapterError
        For unreadable files, an unsupported class, or weights that do not fit
        the rebuilt model (the message names the tensors).
    """
    weights, columns_path, vocabularies_path = Path(weights), Path(columns), Path(vocabularies)
    spec = read_json_file(columns_path, "column spec")
    vocabulary_map = read_json_file(vocabularies_path, "vocabulary file")
    model_columns = ModelColumns.from_spec(spec)
    model = build_deepctr_model(model_class, model_columns, params)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        msg = f"the weights file {str(weights)!r} does not exist"
        raise AdapterError(msg) from err
    except Exception as err:  # torch raises pickle, runtime and zip errors for files it cannot read safely
        if not allow_pickle:
            msg = (
                f"could not read {str(weights)!r} as a state dict ({type(err).__name__}: {str(err)[:200]}); "
                "save it with torch.save(model.state_dict(), path), or, for a whole model saved with "
                "torch.save(model, path) that you trust, pass --allow-pickle (allow_pickle=True), which unpickles it "
                "and can run code from the file"
            )
            raise AdapterError(msg) from err
        from workbench.untrusted import UnsafeLoadError, load_torch_module

        try:
            state = load_torch_module(weights, allow_code=True).state_dict()
        except (UnsafeLoadError, Exception) as unpickle_error:
            msg = f"could not load {str(weights)!r} as a whole model either: {str(unpickle_error)[:300]}"
            raise AdapterError(msg) from unpickle_error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        msg = f"{str(weights)!r} holds no state dict of tensors; save it with torch.save(model.state_dict(), path)"
        raise AdapterError(msg)
    load_state(model, state, weights)
    return adapt_deepctr(model, model_columns, vocabulary_map, label=label)
