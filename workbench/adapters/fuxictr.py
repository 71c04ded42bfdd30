"""Read FuxiCTR artifacts and wrap a FuxiCTR checkpoint as a workbench model.

FuxiCTR (PyPI ``fuxictr``) writes these files into each data set folder:

* ``feature_map.json``: fields, vocabulary sizes and sequence lengths.
* ``feature_vocab.json``: raw token to index, per categorical and sequence feature.
* ``feature_processor.pkl``: the whole preprocessing object, numeric normalisers included.
* the index-encoded splits: h5 up to v2.1, npz in v2.2, parquet from v2.3.

A trained model is a plain ``state_dict`` saved as ``<expid>.model``.

This module

* parses the three ``feature_map.json`` dialects (:func:`read_feature_map`),
* builds a workbench :class:`~workbench.schema.Schema` whose ids equal
  FuxiCTR's ids (:func:`build_schema`): PAD 0, known values 1..n in index
  order and OOV n + 1 is FuxiCTR's layout too,
* reads processed splits and raw CSV into a :class:`~workbench.data.CTRDataset`
  (:func:`load_processed_split`, :func:`load_raw_csv`, :func:`load_dataset`),
* rebuilds a model class with a checked ``FeatureMap`` and params and loads its
  weights with ``torch.load(weights_only=True)`` (:func:`load_fuxictr_model`,
  :func:`rebuild`).

FuxiCTR runs ``eval`` on several strings while it builds a model
(``feature_encoder``, ``embedding_initializer``, loss names) and on ``dtype`` in
its preprocessing. Nothing here passes such a string through: known values are
mapped explicitly, the rest is rejected with :class:`FuxiCTRError`, and the
pickle is opened only through :func:`workbench.untrusted.load_pickle` when the
caller opts in.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.adapters.files import read_json_file
from workbench.adapters.module import AdapterError
from workbench.data import CTRDataset, DataError
from workbench.schema import OOV_TOKEN, PAD_TOKEN, Field, Schema, SchemaError, Vocabulary, decode_value

FEATURE_TYPES = ("categorical", "numeric", "sequence", "embedding", "meta")
KNOWN_FEATURE_ENCODERS = {
    "layers.MaskedAveragePooling()": "layers.MaskedAveragePooling()",
    "layers.MaskedSumPooling()": "layers.MaskedSumPooling()",
    "MaskedAveragePooling()": "layers.MaskedAveragePooling()",
    "MaskedSumPooling()": "layers.MaskedSumPooling()",
}
"""Pooling encoders accepted in ``feature_encoder``, mapped to the string FuxiCTR receives. Nothing else is passed on."""
NO_ENCODER = (None, "null", "None", "none", "")
KNOWN_DTYPES = frozenset({"str", "int", "float", "np.int32", "np.int64", "np.float32", "np.float64"})
"""``dtype`` strings of FuxiCTR feature columns that are accepted (FuxiCTR's preprocessing evaluates them)."""
KNOWN_ACTIVATIONS = frozenset(
    {"relu", "sigmoid", "tanh", "softmax", "prelu", "dice", "leakyrelu", "elu", "selu", "gelu", "identity", "silu"}
    | {"linear"}
)
"""Activation names accepted in model params (compared in lower case); FuxiCTR looks other names up in ``torch.nn``."""
FORCED_PARAMS = {
    "optimizer": "Adam",
    "loss": "binary_crossentropy",
    "metrics": ["logloss", "AUC"],
    "verbose": 0,
    "gpu": -1,
    "embedding_regularizer": None,
    "net_regularizer": None,
}
"""Training-only params replaced before construction: FuxiCTR evaluates loss names and metric names."""
SPLIT_SUFFIXES = (".parquet", ".npz", ".h5")


class FuxiCTRError(AdapterError):
    """Raised when a FuxiCTR artifact cannot be read or does not match the model."""


@dataclass
class FeatureSpec:
    """One feature of a FuxiCTR feature map: its name, type and the spec keys the workbench uses."""

    name: str
    type: str
    spec: dict[str, Any]

    @property
    def vocab_size(self) -> int:
        return int(self.spec["vocab_size"])

    @property
    def max_len(self) -> int:
        return int(self.spec.get("max_len", 0))


@dataclass
class FeatureMapInfo:
    """A parsed ``feature_map.json``: dialect, features in field order and labels.

    ``dialect`` is ``"v1"`` (FuxiCTR 1.x, a ``feature_specs`` dict),
    ``"v2.0-2.1"`` (``oov_idx`` on every categorical and sequence feature) or
    ``"v2.2+"``. ``content`` is the feature map in the v2 layout (a list of
    single-key dicts), which :class:`fuxictr.features.FeatureMap` reads.
    """

    dataset_id: str
    dialect: str
    features: list[FeatureSpec]
    labels: list[str]
    content: dict[str, Any] = field(default_factory=dict)

    @property
    def fields(self) -> list[FeatureSpec]:
        """Features that are model inputs (every type but ``meta``), in field order."""
        return [f for f in self.features if f.type != "meta"]

    def __getitem__(self, name: str) -> FeatureSpec:
        for feature in self.features:
            if feature.name == name:
                return feature
        msg = f"the FuxiCTR feature map has no feature {name!r}; features: {', '.join(f.name for f in self.features)}"
        raise KeyError(msg)


# ---------------------------------------------------------------------------------------------
# feature_map.json and feature_vocab.json


def read_feature_map(path: str | Path | Mapping[str, Any]) -> FeatureMapInfo:
    """Parse a FuxiCTR ``feature_map.json`` of any dialect and check every feature spec.

    Parameters
    ----------
    path : str, Path or mapping
        The file, or its parsed JSON content (as a bundle stores it).

    Returns
    -------
    FeatureMapInfo
        Features in the file's order (which is FuxiCTR's field order), labels and dialect.

    Raises
    ------
    FuxiCTRError
        For an unknown feature type, a pretrained embedding (not supported yet), a
        ``feature_encoder`` that is not a known pooling layer, a ``dtype`` that is not a
        plain type name, or a categorical or sequence feature without ``vocab_size``.
    """
    where = "the feature map"
    if isinstance(path, Mapping):
        content = dict(path)
    else:
        where = f"feature map {str(path)!r}"
        content = read_json_file(Path(path), "feature map", error=FuxiCTRError)
    if not isinstance(content, dict):
        msg = f"{where} must be a JSON object with 'features'; got {type(content).__name__}"
        raise FuxiCTRError(msg)
    if isinstance(content.get("feature_specs"), dict):
        dialect = "v1"
        items = list(content["feature_specs"].items())
        labels = content.get("labels") or ([content["label_name"]] if isinstance(content.get("label_name"), str) else [])
    elif isinstance(content.get("features"), list):
        items = []
        for entry in content["features"]:
            if not isinstance(entry, dict) or len(entry) != 1:
                msg = (
                    f"{where}: each entry of 'features' must be an object with one key (the feature name); got "
                    f"{str(entry)[:120]}"
                )
                raise FuxiCTRError(msg)
            items.extend(entry.items())
        with_oov = [
            spec for _, spec in items if isinstance(spec, dict) and spec.get("type") in ("categorical", "sequence")
        ]
        all_oov = bool(with_oov) and all("oov_idx" in spec for spec in with_oov)
        some_pretrained = any("pretrained_emb" in spec for spec in with_oov)
        dialect = "v2.0-2.1" if all_oov and not some_pretrained else "v2.2+"
        labels = content.get("labels", [])
    else:
        msg = (
            f"{where} has neither 'features' (FuxiCTR 2.x) nor 'feature_specs' (FuxiCTR 1.x); is it a FuxiCTR "
            "feature_map.json?"
        )
        raise FuxiCTRError(msg)
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        msg = f"{where}: 'labels' must be a list of column names; got {str(labels)[:80]}"
        raise FuxiCTRError(msg)
    dataset_id = content.get("dataset_id", "")
    if not isinstance(dataset_id, str):
        msg = f"{where}: 'dataset_id' must be a string; got {dataset_id!r}"
        raise FuxiCTRError(msg)
    features = [_check_feature(name, spec, where) for name, spec in items]
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        msg = f"{where} lists a feature twice: {sorted({n for n in names if names.count(n) > 1})}"
        raise FuxiCTRError(msg)
    # A share_embedding target that is not a feature (dropped by use_features) is allowed: FuxiCTR then gives
    # the feature a table of its own.
    if not any(f.type != "meta" for f in features):
        msg = f"{where} has no input features (only meta features)"
        raise FuxiCTRError(msg)
    v2_content = {
        "dataset_id": dataset_id,
        "num_fields": sum(f.type != "meta" for f in features),
        "total_features": content.get("total_features", content.get("num_features", 0)),
        "input_length": content.get("input_length", 0),
        "labels": list(labels),
        "features": [{f.name: f.spec} for f in features],
    }
    return FeatureMapInfo(dataset_id, dialect, features, list(labels), v2_content)


def _check_feature(name: Any, spec: Any, where: str) -> FeatureSpec:
    if not isinstance(name, str) or not name:
        msg = f"{where}: feature names must be non-empty strings; got {name!r}"
        raise FuxiCTRError(msg)
    if not isinstance(spec, dict):
        msg = f"{where}: feature {name!r} must map to an object of spec keys; got {str(spec)[:80]}"
        raise FuxiCTRError(msg)
    spec = copy.deepcopy(spec)
    kind = spec.get("type")

    if kind not in FEATURE_TYPES:
        msg = (
            f"{where}: feature {name!r} has unknown type {str(kind)[:40]!r}; FuxiCTR types are "
            f"{', '.join(FEATURE_TYPES)}"
        )
        raise FuxiCTRError(msg)
    if "pretrained_emb" in spec:
        msg = (
            f"{where}: feature {name!r} uses a pretrained embedding ({str(spec['pretrained_emb'])[:60]!r}); "
            "models with pretrained_emb features are not supported yet"
        )
        raise FuxiCTRError(msg)
    if "dtype" in spec:
        spec["dtype"] = check_dtype(spec["dtype"], name)
    if "feature_encoder" in spec:
        encoder = check_feature_encoder(spec["feature_encoder"], name)
        if encoder is None:
            del spec["feature_encoder"]
        else:
            spec["feature_encoder"] = encoder

    if kind in ("categorical", "sequence"):
        size = spec.get("vocab_size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 2:
            msg = (
                f"{where}: {kind} feature {name!r} needs 'vocab_size', a whole number >= 2 (PAD, values, OOV); "
                f"got {size!r}"
            )
            raise FuxiCTRError(msg)
        padding = spec.get("padding_idx", 0)
        if padding not in (0, None):
            msg = (
                f"{where}: feature {name!r} has padding_idx {padding!r}; the workbench needs PAD at index 0, as "
                "FuxiCTR writes it"
            )
            raise FuxiCTRError(msg)
        oov = spec.get("oov_idx")
        if oov is not None and oov != size - 1 and "share_embedding" not in spec:
            msg = (
                f"{where}: feature {name!r} has oov_idx {oov!r}; the workbench needs OOV = vocab_size - 1 = "
                f"{size - 1}"
            )
            raise FuxiCTRError(msg)

    if kind == "sequence":
        max_len = spec.get("max_len")
        if not isinstance(max_len, int) or isinstance(max_len, bool) or max_len < 1:
            msg = f"{where}: sequence feature {name!r} needs 'max_len', a whole number >= 1; got {max_len!r}"
            raise FuxiCTRError(msg)
        padding_side = spec.get("padding", "post")
        if padding_side not in ("pre", "post"):
            msg = f"{where}: sequence feature {name!r} has padding {padding_side!r}; it must be 'pre' or 'post'"
            raise FuxiCTRError(msg)
        splitter = spec.get("splitter", "^")
        if not isinstance(splitter, str) or not splitter:
            msg = (
                f"{where}: sequence feature {name!r} has splitter {splitter!r}; it must be a non-empty string "
                "such as '^'"
            )
            raise FuxiCTRError(msg)

    if kind == "embedding":
        dim = spec.get("pretrain_dim")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            msg = f"{where}: embedding feature {name!r} needs 'pretrain_dim', a whole number >= 1; got {dim!r}"
            raise FuxiCTRError(msg)
    for key in ("embedding_dim", "emb_output_dim"):
        value = spec.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            msg = f"{where}: feature {name!r} has {key} {value!r}; it must be a whole number >= 1"
            raise FuxiCTRError(msg)
    return FeatureSpec(name, kind, spec)


def check_feature_encoder(value: Any, name: str) -> str | list[str] | None:
    """Return the known pooling encoder that ``value`` names, None for no encoder; reject anything else.

    FuxiCTR evaluates this string as Python, so only the exact names in
    ``KNOWN_FEATURE_ENCODERS`` pass; the string is never evaluated here.
    """
    if value in NO_ENCODER:
        return None
    if isinstance(value, list) and value:
        return [_known_encoder(item, name) for item in value]
    return _known_encoder(value, name)


def _known_encoder(value: Any, name: str) -> str:
    key = value.replace(" ", "") if isinstance(value, str) else None
    if key not in KNOWN_FEATURE_ENCODERS:
        msg = (
            f"feature {name!r} has feature_encoder {str(value)[:80]!r}, which is not a known pooling layer; "
            f"accepted: {', '.join(sorted(set(KNOWN_FEATURE_ENCODERS.values())))} or null. "
            "FuxiCTR would run this string as Python code, so the workbench does not"
        )
        raise FuxiCTRError(msg)
    return KNOWN_FEATURE_ENCODERS[key]


def check_dtype(value: Any, name: str) -> str:
    """Return a FuxiCTR column ``dtype`` if it is a plain type name; reject anything else (FuxiCTR evaluates it)."""
    if isinstance(value, str) and value.strip() in KNOWN_DTYPES:
        return value.strip()
    msg = (
        f"feature {name!r} has dtype {str(value)[:80]!r}; accepted: {', '.join(sorted(KNOWN_DTYPES))}. "
        "FuxiCTR would run this string as Python code, so the workbench does not"
    )
    raise FuxiCTRError(msg)


def read_vocab(path: str | Path) -> dict[str, dict[str, int]]:
    """Read ``feature_vocab.json``: for each categorical and sequence feature, raw token to FuxiCTR index.

    Raises
    ------
    FuxiCTRError
        When the file is not a JSON object of objects mapping strings to whole numbers.
    """
    path = Path(path)
    content = read_json_file(path, "feature vocabulary", error=FuxiCTRError)
    if not isinstance(content, dict):
        msg = f"feature vocabulary {str(path)!r} must be a JSON object keyed by feature name"
        raise FuxiCTRError(msg)
    out: dict[str, dict[str, int]] = {}
    for feature, vocab in content.items():
        valid = isinstance(vocab, dict) and all(
            isinstance(index, int) and not isinstance(index, bool) and index >= 0 for index in vocab.values()
        )
        if not valid:
            msg = f"feature vocabulary {str(path)!r}: {feature!r} must map tokens to whole numbers >= 0"
            raise FuxiCTRError(msg)
        out[str(feature)] = {str(token): int(index) for token, index in vocab.items()}
    return out


def apply_feature_params(info: FeatureMapInfo, params: Mapping[str, Any]) -> FeatureMapInfo:
    """Apply FuxiCTR's ``use_features`` (subset and order) and ``feature_specs`` (overrides) params, then recheck.

    FuxiCTR's ``FeatureMap.load`` does the same; doing it here first means the
    overridden specs go through the same checks as the file's.
    """
    if not isinstance(params, Mapping):
        msg = f"the model params must be a mapping of param names to values; got {type(params).__name__}"
        raise FuxiCTRError(msg)
    features = {f.name: copy.deepcopy(f.spec) for f in info.features}
    order = [f.name for f in info.features]
    use = params.get("use_features")
    if use:
        if not isinstance(use, list) or any(not isinstance(name, str) or name not in features for name in use):
            msg = f"param use_features {str(use)[:120]} must list features of the feature map: {', '.join(order)}"
            raise FuxiCTRError(msg)
        order = list(use)
    overrides = params.get("feature_specs")
    if overrides:
        if not isinstance(overrides, list):
            msg = f"param feature_specs must be a list of objects with a 'name'; got {str(overrides)[:120]}"
            raise FuxiCTRError(msg)
        for override in overrides:
            names = override.get("name") if isinstance(override, dict) else None
            names = names if isinstance(names, list) else [names]
            for name in names:
                if not isinstance(name, str) or name not in features:
                    msg = f"param feature_specs names {name!r}, which is not a feature; features: {', '.join(order)}"
                    raise FuxiCTRError(msg)
                features[name].update({k: v for k, v in override.items() if k != "name"})
    content = dict(info.content)
    content["features"] = [{name: features[name]} for name in order]
    updated = read_feature_map(content)
    updated.dialect = info.dialect
    return updated


# ---------------------------------------------------------------------------------------------
# Schema


def _vocabulary_values(feature: FeatureSpec, vocab: Mapping[str, int] | None) -> tuple[list[str], bool]:
    """Return the raw values of indices 1..vocab_size-2 and whether they came from ``feature_vocab.json``."""
    size = feature.vocab_size
    if vocab is None:
        return [str(index) for index in range(1, size - 1)], False
    pad = vocab.get("__PAD__")
    oov = vocab.get("__OOV__")
    if pad != 0 or oov != size - 1:
        msg = (
            f"feature_vocab.json: feature {feature.name!r} has __PAD__ {pad!r} and __OOV__ {oov!r}, but the feature map "
            f"gives vocab_size {size}, so PAD must be 0 and OOV {size - 1}; are the two files from the same data set?"
        )
        raise FuxiCTRError(msg)
    by_index: dict[int, str] = {}
    for token, index in vocab.items():
        if token in ("__PAD__", "__OOV__"):
            continue
        if not 1 <= index <= size - 2:
            msg = (
                f"feature_vocab.json: feature {feature.name!r} maps {token[:40]!r} to {index}, outside 1..{size - 2} "
                f"(vocab_size {size}); are the feature map and the vocabulary from the same data set?"
            )
            raise FuxiCTRError(msg)
        if index in by_index:
            msg = (
                f"feature_vocab.json: feature {feature.name!r} maps both {by_index[index][:40]!r} and "
                f"{token[:40]!r} to {index}"
            )
            raise FuxiCTRError(msg)
        by_index[index] = token
    # remap=False vocabularies keep the raw ids as indices and so can have gaps; a gap gets a placeholder value.
    values = [by_index.get(index, f"<unused {index}>") for index in range(1, size - 1)]
    if len(set(values)) != len(values):
        msg = f"feature_vocab.json: feature {feature.name!r} has a token that equals a placeholder '<unused N>'"
        raise FuxiCTRError(msg)
    return values, True


def build_schema(
    info: FeatureMapInfo,
    vocab: Mapping[str, Mapping[str, int]] | None = None,
    *,
    normalizers: Mapping[str, tuple[float, float]] | None = None,
    numeric_raw: bool = False,
    label: str | None = None,
) -> Schema:
    """Build a workbench schema whose encoded ids equal FuxiCTR's ids.

    Parameters
    ----------
    info : FeatureMapInfo
        The parsed feature map; its non-meta features become the fields, in order.
    vocab : mapping, optional
        ``feature_vocab.json`` content. Without it, the values of a field are the
        index numbers as strings (``"1"``, ``"2"``, ...), and ``schema.extra`` records that.
    normalizers : mapping, optional
        ``{feature: (offset, scale)}`` of numeric features, so that the processed value
        is ``(raw - offset) / scale`` (StandardScaler: mean and std; MinMaxScaler: min and
        range). Features without one keep the processed values as they are.
    numeric_raw : bool, default=False
        True when ``normalizers`` is complete (read from the pickle), so raw CSV numeric
        values can be encoded; False means only processed numeric values are known.
    label : str, optional
        Label column; default the feature map's first label (``"label"`` if it has none).

    Returns
    -------
    Schema
        ``extra["fuxictr"]`` records the dataset id, the dialect and where the values came from.
    """
    normalizers = dict(normalizers or {})
    fields = []
    from_vocab: list[str] = []
    for feature in info.fields:
        if feature.type in ("categorical", "sequence"):
            entry = None
            if vocab is not None:
                entry = vocab.get(feature.name)
                if entry is None and feature.spec.get("share_embedding") in vocab:
                    entry = vocab[feature.spec["share_embedding"]]
                if entry is None:
                    msg = f"feature_vocab.json has no entry for feature {feature.name!r}; is it from the same data set?"
                    raise FuxiCTRError(msg)
            values, found = _vocabulary_values(feature, entry)
            if found:
                from_vocab.append(feature.name)
            vocabulary = Vocabulary(values)
            if feature.type == "categorical":
                fields.append(Field(feature.name, "categorical", vocabulary=vocabulary))
            else:
                fields.append(
                    Field(
                        feature.name,
                        "sequence",
                        vocabulary=vocabulary,
                        max_length=feature.max_len,
                        separator=feature.spec.get("splitter", "^"),
                    )
                )
        elif feature.type == "numeric":
            offset, scale = normalizers.get(feature.name, (0.0, 1.0))
            fields.append(Field(feature.name, "numeric", mean=float(offset), std=float(scale)))
        else:
            fields.append(Field(feature.name, "dense", dim=int(feature.spec["pretrain_dim"])))
    label = label or (info.labels[0] if info.labels else "label")
    extra = {
        "fuxictr": {
            "dataset_id": info.dataset_id,
            "dialect": info.dialect,
            "vocabulary_from": "feature_vocab.json" if vocab is not None else "index numbers (no feature_vocab.json)",
            "normalised_numeric": sorted(normalizers),
            "numeric_values": "raw" if numeric_raw else "processed",
            "feature_map": info.content,
        },
        "dataset_loader": "fuxictr",
    }
    try:
        return Schema(fields, label=label, extra=extra)
    except SchemaError as err:
        msg = f"the FuxiCTR feature map does not fit a workbench schema: {err}"
        raise FuxiCTRError(msg) from err


def read_normalizers(
    path: str | Path, info: FeatureMapInfo, *, allow_pickle: bool = False
) -> dict[str, tuple[float, float]]:
    """Read the numeric normalisers of ``feature_processor.pkl`` as ``{feature: (offset, scale)}``.

    The statistics exist only in the pickle, and unpickling runs code named in
    the file, so ``allow_pickle=True`` is required (the CLI's ``--allow-pickle``).

    Raises
    ------
    FuxiCTRError
        Without ``allow_pickle``, or when a normaliser is not a StandardScaler or MinMaxScaler.
    """
    path = Path(path)
    if not allow_pickle:
        msg = (
            f"the numeric normalisers of this FuxiCTR data set are stored only in the pickle {str(path)!r}; "
            "loading a pickle runs code from the file, so pass allow_pickle=True (--allow-pickle) only for a "
            "file you trust, or give already processed data (parquet, npz or h5)"
        )
        raise FuxiCTRError(msg)
    if not path.is_file():
        msg = f"feature processor pickle not found: {str(path)!r}"
        raise FuxiCTRError(msg)
    from workbench.untrusted import load_pickle

    processor = load_pickle(path, allow_code=True)
    processors = getattr(processor, "processor_dict", None)
    if not isinstance(processors, dict):
        msg = f"{str(path)!r} does not contain a FuxiCTR FeatureProcessor (no processor_dict)"
        raise FuxiCTRError(msg)
    out = {}
    for feature in info.fields:
        if feature.type != "numeric":
            continue
        normalizer = processors.get(f"{feature.name}::normalizer")
        if normalizer is None:
            continue
        scaler = getattr(normalizer, "normalizer", normalizer)
        # fuxictr 2.3.10 stores the bound method scaler.transform; GitHub main stores the scaler.
        scaler = getattr(scaler, "__self__", scaler)
        out[feature.name] = _scaler_offset_scale(scaler, feature.name)
    return out


def _scaler_offset_scale(scaler: Any, name: str) -> tuple[float, float]:
    kind = type(scaler).__name__
    try:
        if kind == "StandardScaler":
            offset = float(np.asarray(scaler.mean_).reshape(-1)[0])
            scale = float(np.asarray(scaler.scale_).reshape(-1)[0])
        elif kind == "MinMaxScaler":
            offset = float(np.asarray(scaler.data_min_).reshape(-1)[0])
            scale = float(np.asarray(scaler.data_range_).reshape(-1)[0])
            if tuple(getattr(scaler, "feature_range", (0, 1))) != (0, 1):
                raise ValueError("feature_range")
        else:
            raise ValueError(kind)
    except (AttributeError, IndexError, ValueError) as err:
        msg = (
            f"numeric feature {name!r}: normaliser {kind} is not a fitted StandardScaler or MinMaxScaler with "
            f"range (0, 1) ({err})"
        )
        raise FuxiCTRError(msg) from err
    if not (math.isfinite(offset) and math.isfinite(scale) and scale > 0):
        msg = (
            f"numeric feature {name!r}: normaliser {kind} has offset {offset} and scale {scale}; the scale must "
            "be finite and above 0"
        )
        raise FuxiCTRError(msg)
    return offset, scale


def load_data_dir(
    data_dir: str | Path, *, allow_pickle: bool = False, label: str | None = None
) -> tuple[FeatureMapInfo, Schema]:
    """Read ``feature_map.json`` and, where present, ``feature_vocab.json`` and the numeric normalisers of a data folder.

    Numeric normalisers are read from ``feature_processor.pkl`` only with
    ``allow_pickle``. Without it the numeric fields take FuxiCTR's processed
    values as they are (``schema.extra["fuxictr"]["normalised_numeric"]`` is empty).
    """
    data_dir = Path(data_dir)
    info = read_feature_map(data_dir / "feature_map.json")
    vocab_path = data_dir / "feature_vocab.json"
    vocab = read_vocab(vocab_path) if vocab_path.is_file() else None
    normalizers: dict[str, tuple[float, float]] = {}
    pickle_path = data_dir / "feature_processor.pkl"
    if allow_pickle and any(f.type == "numeric" for f in info.fields):
        normalizers = read_normalizers(pickle_path, info, allow_pickle=True)
    return info, build_schema(info, vocab, normalizers=normalizers, numeric_raw=allow_pickle, label=label)


# ---------------------------------------------------------------------------------------------
# Data


def read_processed_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read a processed FuxiCTR split (parquet file or folder of parts, npz, h5) into one array per column.

    Sequence (list) columns become 2-D arrays; a ragged list column is an error.
    """
    path = Path(path)
    if path.is_dir():
        parts = sorted(p for p in path.iterdir() if p.suffix in SPLIT_SUFFIXES and p.is_file())
        suffixes = {p.suffix for p in parts}
        if not parts or len(suffixes) > 1:
            msg = (
                f"{str(path)!r} must be a folder of .parquet, .npz or .h5 parts of one format; found "
                f"{sorted(suffixes) or 'none'}"
            )
            raise DataError(msg)
        arrays = [read_processed_arrays(p) for p in parts]
        columns = list(arrays[0])
        for part, array in zip(parts, arrays, strict=True):
            if list(array) != columns:
                msg = f"part {str(part)!r} has columns {list(array)[:20]}, unlike the first part's {columns[:20]}"
                raise DataError(msg)
        return {name: np.concatenate([a[name] for a in arrays]) for name in columns}
    if not path.is_file():
        msg = f"data file not found: {str(path)!r}"
        raise DataError(msg)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {name: np.asarray(npz[name]) for name in npz.files}
        if suffix == ".h5":
            import h5py

            with h5py.File(path, "r") as handle:
                return {name: np.asarray(handle[name][()]) for name in handle if isinstance(handle[name], h5py.Dataset)}
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            return {name: _arrow_column(table.column(name), name, path) for name in table.column_names}
    except (OSError, ValueError, KeyError) as err:
        if isinstance(err, DataError):
            raise
        msg = f"could not read {str(path)!r} as a processed FuxiCTR split: {err}"
        raise DataError(msg) from err
    msg = f"{str(path)!r}: processed FuxiCTR splits are .parquet, .npz or .h5 (or a folder of parts)"
    raise DataError(msg)


def _arrow_column(column: Any, name: str, path: Path) -> np.ndarray:
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type) or pa.types.is_fixed_size_list(column.type):
        lengths = np.asarray(column.value_lengths().fill_null(0))
        if len(lengths) and (lengths != lengths[0]).any():
            msg = (
                f"{str(path)!r}: list column {name!r} has rows of different lengths "
                f"({lengths.min()}..{lengths.max()})"
            )
            raise DataError(msg)
        width = int(lengths[0]) if len(lengths) else 0
        return np.asarray(column.flatten()).reshape(len(column), width)
    return column.to_numpy(zero_copy_only=False)


def dataset_from_arrays(
    arrays: Mapping[str, np.ndarray],
    schema: Schema,
    *,
    name: str = "",
    source: str = "",
    raw: pd.DataFrame | None = None,
    oov_counts: Mapping[str, int] | None = None,
) -> CTRDataset:
    """Build a dataset from FuxiCTR-encoded columns; the ids pass through unchanged, after a range check.

    ``raw`` defaults to the values decoded from the ids (``<OOV>`` for the OOV index).
    ``oov_counts`` defaults to the count of OOV ids per field (for a sequence field,
    its OOV items), as the workbench counts OOV when it encodes raw data.
    """
    where = f"{source or name or 'the data'}"
    missing = [f.name for f in schema.fields if f.name not in arrays]
    if schema.label not in arrays:
        missing.append(schema.label)
    if missing:
        msg = f"{where} has no column(s) {', '.join(map(repr, missing))}; columns found: {', '.join(list(arrays)[:30])}"
        raise DataError(msg)
    n_rows = len(arrays[schema.label])
    inputs: dict[str, np.ndarray] = {}
    for f in schema.fields:
        array = np.asarray(arrays[f.name])
        if len(array) != n_rows:
            msg = f"{where}: column {f.name!r} has {len(array)} rows, the label {n_rows}"
            raise DataError(msg)
        if f.kind in ("categorical", "sequence"):
            if not np.issubdtype(array.dtype, np.number):
                msg = (
                    f"{where}: column {f.name!r} has {array.dtype} values, but processed FuxiCTR data holds "
                    "index numbers"
                )
                raise DataError(msg)
            ids = array.astype(np.int64)
            if not np.array_equal(ids, array):
                msg = (
                    f"{where}: column {f.name!r} holds non-whole numbers, but processed FuxiCTR data holds index "
                    "numbers"
                )
                raise DataError(msg)
            expected_ndim = 1 if f.kind == "categorical" else 2
            if ids.ndim != expected_ndim or (f.kind == "sequence" and ids.shape[1] != f.max_length):
                shape = "(rows,)" if f.kind == "categorical" else f"(rows, {f.max_length})"
                msg = f"{where}: column {f.name!r} has shape {ids.shape}; the feature map needs {shape}"
                raise DataError(msg)
            top = len(f.vocabulary) - 1 if f.vocabulary is not None else 0
            bad = (ids < 0) | (ids > top)
            if bad.any():
                msg = (
                    f"{where}: column {f.name!r} contains index {int(ids[bad][0])} ({int(bad.sum())} such value(s)), "
                    f"outside 0..{top} of its vocab_size; is the data from the same data set as the feature map?"
                )
                raise DataError(msg)
            inputs[f.name] = ids
        elif f.kind == "numeric":
            values = array.astype(np.float32).reshape(n_rows)
            if not np.isfinite(values).all():
                msg = f"{where}: numeric column {f.name!r} contains NaN or infinite values"
                raise DataError(msg)
            inputs[f.name] = values
        else:
            values = array.astype(np.float32).reshape(n_rows, -1)
            if values.shape[1] != f.dim:
                msg = (
                    f"{where}: column {f.name!r} has vectors of length {values.shape[1]}; the feature map needs "
                    f"{f.dim}"
                )
                raise DataError(msg)
            inputs[f.name] = values
    labels = np.asarray(arrays[schema.label], dtype=float).reshape(n_rows)
    if not np.isin(labels, (0.0, 1.0)).all():
        bad = labels[~np.isin(labels, (0.0, 1.0))]
        msg = f"{where}: label column {schema.label!r} has the value {bad[0]!r}; labels must be 0 or 1"
        raise DataError(msg)
    if raw is None:
        raw = pd.DataFrame({f.name: _decoded_column(f, inputs[f.name]) for f in schema.fields})
        raw[schema.label] = labels
    if oov_counts is None:
        oov_counts = {f.name: _oov_ids(f, inputs[f.name]) for f in schema.fields}
    return CTRDataset(
        schema, inputs, labels.astype(np.float32), raw, name=name, source=source, oov_counts=dict(oov_counts)
    )


def _oov_ids(f: Field, ids: np.ndarray) -> int:
    """Return how many ids of a processed column equal FuxiCTR's OOV index (0 for numeric and dense fields).

    FuxiCTR encodes unknown and missing categorical values alike as OOV, so a
    processed split cannot tell them apart and both are counted.
    """
    if f.kind not in ("categorical", "sequence"):
        return 0
    assert f.vocabulary is not None
    return int((ids == f.vocabulary.oov_index).sum())


def _decoded_column(f: Field, values: np.ndarray) -> list[Any] | np.ndarray:
    """Return the raw values behind one encoded column: tokens, numbers before normalisation, or joined histories."""
    if f.kind == "categorical":
        assert f.vocabulary is not None
        tokens = np.asarray([PAD_TOKEN, *f.vocabulary.values, OOV_TOKEN], dtype=object)
        return tokens[values]
    if f.kind == "numeric":
        return values.astype(np.float64) * f.std + f.mean
    return [decode_value(f, row) for row in values]


def load_processed_split(path: str | Path, schema: Schema, *, max_rows: int | None = None) -> CTRDataset:
    """Read a processed split (parquet file or folder, npz, h5) whose ids FuxiCTR already encoded."""
    arrays = read_processed_arrays(path)
    if max_rows is not None:
        arrays = {name: array[:max_rows] for name, array in arrays.items()}
    return dataset_from_arrays(arrays, schema, name=Path(path).name, source=str(path))


def encode_raw_frame(
    frame: pd.DataFrame, schema: Schema, info: FeatureMapInfo
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Encode raw values with FuxiCTR's rules; return the arrays and the OOV count per field.

    Categorical: the token's index, OOV for unknown and missing values (FuxiCTR
    fills a missing string with ``""``, which is not in the vocabulary).
    Sequence: split on the feature's splitter, empty items become PAD, then
    padded and truncated on the feature's ``padding`` side (``post`` by default,
    which keeps the first ``max_len`` items). Numeric: missing becomes 0.0, then
    ``(value - offset) / scale`` with the schema field's mean and std.
    """
    arrays: dict[str, np.ndarray] = {}
    oov_counts: dict[str, int] = {}
    for f in schema.fields:
        column = frame[f.name]
        spec = info[f.name].spec
        if f.kind == "categorical":
            assert f.vocabulary is not None
            tokens = column.map(_token)
            ids = tokens.map(lambda token, v=f.vocabulary: v.index_of(token) if token != "" else v.oov_index)
            arrays[f.name] = ids.to_numpy(dtype=np.int64)
            oov_counts[f.name] = int(((arrays[f.name] == f.vocabulary.oov_index) & (tokens != "").to_numpy()).sum())
        elif f.kind == "sequence":
            assert f.vocabulary is not None
            out = np.zeros((len(column), f.max_length), dtype=np.int64)
            n_oov = 0
            padding = spec.get("padding", "post")
            for row, cell in enumerate(column):
                items = [] if _token(cell) == "" else _token(cell).split(f.separator)
                ids = [f.vocabulary.index_of(item) if item != "" else 0 for item in items]
                oov = f.vocabulary.oov_index
                n_oov += sum(1 for item, index in zip(items, ids, strict=True) if item != "" and index == oov)
                kept = ids[: f.max_length] if padding == "post" else ids[-f.max_length :]
                if padding == "post":
                    out[row, : len(kept)] = kept
                elif kept:
                    out[row, -len(kept) :] = kept
            arrays[f.name] = out
            oov_counts[f.name] = n_oov
        elif f.kind == "numeric":
            values = pd.to_numeric(column, errors="coerce").astype(float)
            bad = values.isna() & column.notna() & (column.astype(str).str.strip() != "")
            if bad.any():
                msg = f"numeric field {f.name!r} contains {column[bad].iloc[0]!r}, which is not a number"
                raise DataError(msg)
            values = values.fillna(0.0).to_numpy()
            arrays[f.name] = ((values - f.mean) / f.std).astype(np.float32)
            oov_counts[f.name] = 0
        else:
            msg = f"field {f.name!r} is a FuxiCTR 'embedding' feature; read it from processed parquet, not CSV"
            raise DataError(msg)
    return arrays, oov_counts


def _token(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def load_raw_csv(
    path: str | Path, schema: Schema, info: FeatureMapInfo, *, max_rows: int | None = None
) -> CTRDataset:
    """Read a raw CSV file through the FuxiCTR vocabulary (see :func:`encode_raw_frame`).

    Numeric fields need the normalisers from the pickle unless they had none
    (see :func:`load_data_dir`); this function applies what the schema holds.
    """
    from workbench.data import read_frame

    frame = read_frame(path, label=schema.label, max_rows=max_rows)
    missing = [name for name in [*schema.field_names, schema.label] if name not in frame.columns]
    if missing:
        msg = (
            f"{str(path)!r} has no column(s) {', '.join(map(repr, missing))}; columns found: "
            f"{', '.join(map(str, frame.columns[:30]))}"
        )
        raise DataError(msg)
    arrays, oov_counts = encode_raw_frame(frame, schema, info)
    arrays[schema.label] = pd.to_numeric(frame[schema.label], errors="coerce").to_numpy(dtype=float)
    return dataset_from_arrays(arrays, schema, name=Path(path).name, source=str(path), raw=frame, oov_counts=oov_counts)


def load_dataset(path: str | Path, schema: Schema, *, max_rows: int | None = None, **_: Any) -> CTRDataset:
    """Read data for a schema built by :func:`build_schema`, keeping processed ids and encoding raw CSV.

    ``.parquet`` files and folders, ``.npz`` and ``.h5`` are read as processed
    (FuxiCTR-encoded) splits; ``.csv`` and ``.tsv`` files as raw values. This is the
    reader :func:`workbench.data.load_dataset` calls for such schemas.
    """
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".csv", ".tsv")):
        details = schema.extra.get("fuxictr", {})
        _check_raw_vocabulary(path, schema)
        info = read_feature_map(details.get("feature_map") or _info_from_schema(schema))
        numeric = [f.name for f in schema.fields if f.kind == "numeric"]
        if numeric and details.get("numeric_values") != "raw":
            msg = (
                f"{str(path)!r} is raw CSV, but the numeric field(s) {', '.join(map(repr, numeric))} need "
                "FuxiCTR's normaliser statistics, which exist only in feature_processor.pkl; import with "
                "--allow-pickle (only for a pickle you trust), or give the processed split (parquet, npz or h5)"
            )
            raise DataError(msg)
        return load_raw_csv(path, schema, info, max_rows=max_rows)
    return load_processed_split(path, schema, max_rows=max_rows)


def _check_raw_vocabulary(path: Path, schema: Schema) -> None:
    """Reject raw values for a schema whose categorical values are FuxiCTR's index numbers.

    Without ``feature_vocab.json`` the schema's values are ``"1"``, ``"2"``, and so on.
    Raw codes read as those numbers would give wrong ids without any error.
    """
    source = schema.extra.get("fuxictr", {}).get("vocabulary_from", "feature_vocab.json")
    coded = [f.name for f in schema.fields if f.kind in ("categorical", "sequence")]
    if source == "feature_vocab.json" or not coded:
        return
    msg = (
        f"{str(path)!r} contains raw values, but the model's schema has no vocabulary of raw values for "
        f"{', '.join(map(repr, coded[:5]))}{' ...' if len(coded) > 5 else ''} (the bundle was imported without "
        "feature_vocab.json, so its values are FuxiCTR's index numbers); read a processed split (parquet, npz or "
        "h5) instead, or import the model again with a --data-dir that contains feature_vocab.json"
    )
    raise DataError(msg)


def _info_from_schema(schema: Schema) -> dict[str, Any]:
    """Rebuild a minimal v2 feature map from a schema (enough to encode raw CSV)."""
    features = []
    for f in schema.fields:
        if f.kind == "categorical":
            features.append({f.name: {"type": "categorical", "vocab_size": len(f.vocabulary)}})
        elif f.kind == "sequence":
            spec = {"type": "sequence", "vocab_size": len(f.vocabulary), "max_len": f.max_length, "splitter": f.separator}
            features.append({f.name: spec})
        elif f.kind == "numeric":
            features.append({f.name: {"type": "numeric"}})
        else:
            features.append({f.name: {"type": "embedding", "pretrain_dim": f.dim}})
    return {"dataset_id": "", "labels": [schema.label], "features": features}


# ---------------------------------------------------------------------------------------------
# Model classes


INSTALLED_ZOO = "model_zoo"
"""The package the fuxictr wheel installs (``model_zoo.LongCTR``); the one installed package a bundle may name."""


def resolve_model_class(name: str, model_zoo: str | Path | None, *, explicit: bool = True) -> type:
    """Import a FuxiCTR model class from a model-zoo folder or an installed package.

    Parameters
    ----------
    name : str
        Class name, such as ``"DeepFM"``.
    model_zoo : str or Path or None
        A folder in FuxiCTR's layout (``<zoo>/<name>/src/__init__.py`` exporting the
        class), a model folder (``<folder>/src/__init__.py``), a package folder whose
        ``__init__.py`` exports the class, or the dotted name of an installed package
        such as ``model_zoo.LongCTR``.
    explicit : bool, default=True
        True when the user named ``model_zoo`` directly (a CLI option). False for a
        folder read from a bundle: it must then be listed in ``WORKBENCH_MODEL_ZOO``.

    Returns
    -------
    type
        The class, a subclass of ``fuxictr.pytorch.models.BaseModel``.

    Raises
    ------
    FuxiCTRError
        When ``model_zoo`` is missing or not allowed, or the class is not found there.
    """
    if not isinstance(name, str) or not name.isidentifier():
        msg = f"model class name {name!r} must be a Python identifier such as 'DeepFM'"
        raise FuxiCTRError(msg)
    if model_zoo is None or str(model_zoo) == "":
        msg = (
            f"FuxiCTR model classes live in a model-zoo folder, not in the fuxictr package; give the folder that "
            f"holds {name}/src/ (--model-zoo DIR), or the installed package model_zoo.LongCTR"
        )
        raise FuxiCTRError(msg)
    if not isinstance(model_zoo, (str, Path)):
        msg = f"the model zoo must be a folder path or a package name; got {type(model_zoo).__name__} {model_zoo!r:.60}"
        raise FuxiCTRError(msg)
    text = str(model_zoo)
    folder = Path(text).expanduser()
    try:
        exists = folder.exists()
    except (OSError, ValueError) as err:  # a name too long for the file system, or a NUL byte
        msg = f"model-zoo folder {text[:80]!r} is not a usable path: {err}"
        raise FuxiCTRError(msg) from err
    if not exists and all(part.isidentifier() for part in text.split(".")):
        # Importing a module runs its code. A name read from a bundle may only name the model_zoo package that the
        # fuxictr wheel installs; any other installed package must be named by the user in the command.
        if not explicit and text != INSTALLED_ZOO and not text.startswith(INSTALLED_ZOO + "."):
            msg = (
                f"this bundle imports its model class from the installed package {text!r}; bundles may import "
                f"only from {INSTALLED_ZOO} or from folders listed in WORKBENCH_MODEL_ZOO, so re-import the model "
                "with workbench import fuxictr --model-zoo naming that package"
            )
            raise FuxiCTRError(msg)
        module = _import_installed(text)
        return _class_from(module, name, text)
    if not folder.is_dir():
        msg = f"model-zoo folder not found: {text!r}"
        raise FuxiCTRError(msg)
    from workbench.adapters.bundle import allowed_code_folder

    folder = allowed_code_folder(folder, explicit=explicit)
    for package in (folder / name / "src", folder / "src", folder):
        if (package / "__init__.py").is_file():
            return _class_from(_import_folder(package), name, str(package))
    msg = f"no {name}/src/__init__.py, src/__init__.py or __init__.py under the model-zoo folder {str(folder)!r}"
    raise FuxiCTRError(msg)


def _import_installed(dotted: str) -> Any:
    try:
        return importlib.import_module(dotted)
    except ImportError as err:
        msg = f"cannot import the package {dotted!r}: {err}"
        raise FuxiCTRError(msg) from err


def _import_folder(package: Path) -> Any:
    """Import a zoo's package folder under a name unique to its path, so two zoos' ``src`` packages do not clash."""
    from workbench.adapters.factory import import_unique

    return import_unique(package, what="the model-zoo package", error=FuxiCTRError)


def _class_from(module: Any, name: str, where: str) -> type:
    from fuxictr.pytorch.models import BaseModel, MultiTaskModel

    cls = getattr(module, name, None)
    if cls is None:
        exported = sorted(k for k, v in vars(module).items() if isinstance(v, type) and not k.startswith("_"))
        msg = f"{where!r} does not export a class {name!r}; it exports: {', '.join(exported) or 'no classes'}"
        raise FuxiCTRError(msg)
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        msg = f"{name!r} from {where!r} is not a FuxiCTR model (a subclass of fuxictr.pytorch.models.BaseModel)"
        raise FuxiCTRError(msg)
    if issubclass(cls, MultiTaskModel):
        msg = (
            f"{name!r} from {where!r} is a multi-task model (one prediction per label); the workbench explains "
            "one click-through prediction, so multi-task models are not supported"
        )
        raise FuxiCTRError(msg)
    return cls


# ---------------------------------------------------------------------------------------------
# Params and construction


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Return model params safe to pass to a FuxiCTR constructor.

    Training-only params FuxiCTR evaluates or looks up by name (optimizer, loss,
    metrics, regularisers) are replaced (``FORCED_PARAMS``), the embedding
    initializer becomes a callable (the checkpoint overwrites the weights), the
    task must be ``binary_classification``, and activation names must be known.
    """
    if not isinstance(params, Mapping):
        msg = f"the model params must be a mapping of param names to values; got {type(params).__name__}"
        raise FuxiCTRError(msg)
    out = dict(params)
    task = out.get("task", "binary_classification")
    if task != "binary_classification":
        msg = f"param task is {task!r}; the workbench explains click-through models (task binary_classification)"
        raise FuxiCTRError(msg)
    for key, value in out.items():
        if "activation" in key.lower():
            for item in value if isinstance(value, list) else [value]:
                if item is not None and not (isinstance(item, str) and item.lower() in KNOWN_ACTIVATIONS):
                    msg = (
                        f"param {key} has {str(item)[:60]!r}; accepted activation names: "
                        f"{', '.join(sorted(KNOWN_ACTIVATIONS))}"
                    )
                    raise FuxiCTRError(msg)
    embedding_dim = out.get("embedding_dim")
    if not isinstance(embedding_dim, int) or isinstance(embedding_dim, bool) or embedding_dim < 1:
        msg = f"param embedding_dim must be a whole number >= 1 (the model's embedding size); got {embedding_dim!r}"
        raise FuxiCTRError(msg)
    out.update(copy.deepcopy(FORCED_PARAMS))
    out.pop("use_features", None)
    out.pop("feature_specs", None)
    out.pop("model_root", None)
    return out


def _normal_initializer(weight: Any) -> Any:
    import torch

    return torch.nn.init.normal_(weight, std=1e-4)


def build_module(model_class: type, info: FeatureMapInfo, params: Mapping[str, Any]) -> Any:
    """Construct a FuxiCTR model on a checked ``FeatureMap`` (random weights, eval mode)."""
    from fuxictr.features import FeatureMap

    if info.dialect == "v1":
        msg = (
            "this feature map is from FuxiCTR 1.x, whose models take (X, y) tensors and are not the fuxictr 2 classes; "
            "v1 models are not supported, but their data and vocabulary can be read"
        )
        raise FuxiCTRError(msg)
    info = apply_feature_params(info, params)
    safe = check_params(params)
    with tempfile.TemporaryDirectory(prefix="workbench-fuxictr-") as tmp:
        map_path = Path(tmp) / "feature_map.json"
        map_path.write_text(json.dumps(info.content), encoding="utf-8")
        feature_map = FeatureMap(info.dataset_id, tmp)
        feature_map.load(str(map_path), {"embedding_dim": safe["embedding_dim"], "group_id": safe.get("group_id")})
        safe["model_root"] = tmp
        safe["embedding_initializer"] = _normal_initializer
        model_id = str(safe.pop("model_id", model_class.__name__))
        safe.pop("model", None)
        try:
            module = model_class(feature_map, model_id=model_id, **safe)
        except FuxiCTRError:
            raise
        except (TypeError, KeyError, ValueError, AssertionError, NotImplementedError, RuntimeError) as err:
            msg = f"building {model_class.__name__} from the feature map and params failed: {type(err).__name__}: {err}"
            raise FuxiCTRError(msg) from err
    module.eval()
    return module


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a FuxiCTR checkpoint (a plain ``state_dict``) with ``torch.load(weights_only=True)``."""
    import torch

    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint not found: {str(path)!r}"
        raise FuxiCTRError(msg)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError or others for a file it rejects.
        msg = (
            f"could not load {str(path)!r} as a weights-only PyTorch checkpoint: {type(err).__name__}: "
            f"{str(err)[:300]}"
        )
        raise FuxiCTRError(msg) from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        msg = (
            f"{str(path)!r} is not a FuxiCTR checkpoint: it must hold a state_dict (names to tensors), as "
            "BaseModel.save_weights writes"
        )
        raise FuxiCTRError(msg)
    return state


def _check_state(module: Any, state: Mapping[str, Any], source: str) -> None:
    from workbench.adapters.bundle import check_state_dict

    check_state_dict(module, state, source)


def field_sources(module: Any, schema: Schema) -> dict[str, list[str]]:
    """Return, per field, the paths of every embedding-table entry the module holds for it.

    Walks the module for ``FeatureEmbeddingDict`` instances (the main embedding
    layer, first-order tables such as ``lr_layer``, context embeddings) and takes
    each one's ``embedding_layers.<field>``.
    """
    from fuxictr.pytorch.layers import FeatureEmbeddingDict

    # A shared table (share_embedding) is one module under two names. The adapter assigns its calls to fields
    # only when every field lists it under the same path, so each module is listed under its first name.
    canonical = {id(sub): path for path, sub in module.named_modules()}
    sources: dict[str, list[str]] = {f.name: [] for f in schema.fields}
    for _, sub in module.named_modules():
        if not isinstance(sub, FeatureEmbeddingDict):
            continue
        for name, table in sub.embedding_layers.items():
            if name in sources and canonical[id(table)] not in sources[name]:
                sources[name].append(canonical[id(table)])
    return sources


def make_adapter(module: Any, schema: Schema, *, name: str, probes: Any = None) -> Any:
    """Wrap a FuxiCTR module as a workbench ``ModuleAdapter`` (sources, input builder, logit hook)."""
    from workbench.adapters.module import EmbeddingSource, ModuleAdapter

    if type(module).__module__.startswith("model_zoo.LongCTR"):
        msg = (
            f"{type(module).__name__} from model_zoo.LongCTR takes (batch, item, mask) tuples from FuxiCTR's LongCTR "
            "data loader, not a dict of features; LongCTR models are not supported yet"
        )
        raise FuxiCTRError(msg)
    sources = field_sources(module, schema)
    unused = [field_name for field_name, paths in sources.items() if not paths]
    if unused:
        msg = (
            f"the model has no embedding table for field(s) {', '.join(map(repr, unused))}; "
            "drop them with the param use_features, or check that the feature map is the one the model was trained with"
        )
        raise FuxiCTRError(msg)
    kinds = {f.name: f.kind for f in schema.fields}

    def build_input(inputs: Mapping[str, Any]) -> dict[str, Any]:
        batch = {}
        for key, tensor in inputs.items():
            if key not in kinds:
                continue
            batch[key] = tensor.long() if kinds[key] in ("categorical", "sequence") else tensor.float()
        if batch:
            # BaseModel.get_inputs moves every input to module.device, fixed at construction (the CPU here);
            # follow the batch so that the adapter can be moved to another device.
            # NOTE: only run on the CPU so far; no test moves an adapter to a GPU.
            module.device = next(iter(batch.values())).device
        return batch

    if probes is None:
        probes = _default_probes(module, schema)
    return ModuleAdapter(
        module,
        schema,
        sources=[EmbeddingSource(field_name, modules=tuple(paths)) for field_name, paths in sources.items()],
        build_input=build_input,
        logit="input:output_activation",
        read_output=_read_y_pred,
        name=name,
        probes=tuple(probes),
    )


def _read_y_pred(out: Any) -> Any:
    return out["y_pred"]


def _default_probes(module: Any, schema: Schema) -> list[Any]:
    from workbench.adapters.fuxictr_probes import fuxictr_probes

    return list(fuxictr_probes(module, field_names=schema.field_names))


def load_fuxictr_model(
    model_class: type,
    feature_map: str | Path | FeatureMapInfo,
    checkpoint: str | Path,
    params: Mapping[str, Any],
    *,
    schema: Schema | None = None,
    allow_pickle: bool = False,
) -> Any:
    """Rebuild a trained FuxiCTR model and wrap it as a workbench model.

    Parameters
    ----------
    model_class : type
        The model class (see :func:`resolve_model_class`).
    feature_map : str, Path or FeatureMapInfo
        ``feature_map.json`` or its data folder (which also gives ``feature_vocab.json``
        and the pickle), or a parsed feature map.
    checkpoint : str or Path
        The ``<expid>.model`` file FuxiCTR saved.
    params : mapping
        The training params (``embedding_dim`` and the model's hyper-parameters).
    schema : Schema, optional
        Default: built from the feature map and the vocabulary next to it.
    allow_pickle : bool, default=False
        Read numeric normalisers from ``feature_processor.pkl`` (runs code from the file).

    Returns
    -------
    ModuleAdapter
        In eval mode; its logit is the input of the model's output sigmoid.

    Raises
    ------
    FuxiCTRError
        For a bad feature map or params, or a checkpoint whose tensors do not match
        (the message names them).
    """
    if isinstance(feature_map, FeatureMapInfo):
        info = feature_map
        if schema is None:
            schema = build_schema(info)
    else:
        path = Path(feature_map)
        if path.is_dir():
            path = path / "feature_map.json"
        if path.name == "feature_map.json":
            info, default_schema = load_data_dir(path.parent, allow_pickle=allow_pickle)
        else:
            info = read_feature_map(path)
            default_schema = build_schema(info)
        schema = schema or default_schema
    info = apply_feature_params(info, params)
    schema = _restrict_schema(schema, info)
    module = build_module(model_class, info, params)
    state = load_checkpoint(checkpoint)
    _check_state(module, state, str(checkpoint))
    module.load_state_dict(state, strict=True)
    module.eval()
    adapter = make_adapter(module, schema, name=f"fuxictr:{model_class.__name__}")
    adapter.fuxictr_info = info
    return adapter


def _restrict_schema(schema: Schema, info: FeatureMapInfo) -> Schema:
    """Keep the schema fields that are model fields after ``use_features``, in the model's order."""
    names = [f.name for f in info.fields]
    if schema.field_names == names:
        return schema
    try:
        fields = [schema[name] for name in names]
    except KeyError as err:
        msg = f"the schema has no field for feature {err.args[0]}"
        raise FuxiCTRError(msg) from err
    return Schema(fields, label=schema.label, extra=dict(schema.extra))


def recipe_for(adapter: Any, model_class: type, model_zoo: str | Path, params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the bundle recipe that :func:`rebuild` reads (class, zoo folder, params, feature map content)."""
    zoo = str(model_zoo)
    if Path(zoo).expanduser().exists():
        zoo = str(Path(zoo).expanduser().resolve())
    dropped = {*FORCED_PARAMS, "model_root", "use_features", "feature_specs"}
    kept = {k: v for k, v in params.items() if k not in dropped}
    return {
        "model_class": model_class.__name__,
        "model_zoo": zoo,
        "params": json.loads(json.dumps(kept, default=str)),
        "feature_map": adapter.fuxictr_info.content,
    }


def rebuild(recipe: Mapping[str, Any], schema: Schema, *, explicit: bool = False) -> Any:
    """Rebuild an adapted FuxiCTR model from a bundle recipe (untrained weights; the bundle loads its own).

    The recipe's ``model_zoo`` folder must be listed in ``WORKBENCH_MODEL_ZOO``
    unless ``explicit`` (the user named it in the current command); an
    installed package name such as ``model_zoo.LongCTR`` is always allowed.
    """
    for key in ("model_class", "model_zoo", "params", "feature_map"):
        if key not in recipe:
            msg = f"the bundle's FuxiCTR recipe has no {key!r}; import the model again with `workbench import fuxictr`"
            raise FuxiCTRError(msg)
    if not isinstance(recipe["params"], dict) or not isinstance(recipe["feature_map"], dict):
        msg = "the bundle's FuxiCTR recipe must have 'params' and 'feature_map' objects"
        raise FuxiCTRError(msg)
    model_class = resolve_model_class(recipe["model_class"], recipe["model_zoo"], explicit=explicit)
    info = read_feature_map(recipe["feature_map"])
    module = build_module(model_class, info, recipe["params"])
    adapter = make_adapter(module, _restrict_schema(schema, info), name=f"fuxictr:{model_class.__name__}")
    adapter.fuxictr_info = info
    return adapter


def parse_param(text: str) -> tuple[str, Any]:
    """Parse ``NAME=VALUE`` with the value read as YAML (``64``, ``[400, 400]``, ``relu``, ``null``)."""
    import yaml

    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier():
        msg = f"--param {text!r} must look like NAME=VALUE, such as embedding_dim=16 or dnn_hidden_units=[64,32]"
        raise FuxiCTRError(msg)
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as err:
        msg = f"--param {text!r}: the value is not valid YAML: {err}"
        raise FuxiCTRError(msg) from err
    except RecursionError as err:
        msg = f"--param {text[:80]!r}...: the value is nested too deeply to read; give a flat list or a number"
        raise FuxiCTRError(msg) from err
    return name, parsed


def load_config(config_dir: str | Path, expid: str) -> dict[str, Any]:
    """Read FuxiCTR's ``model_config.yaml`` and ``dataset_config.yaml`` with ``yaml.safe_load``.

    The ``Base`` block is merged first, then the ``expid`` block, then the
    dataset block named by its ``dataset_id``; ``model_id`` is set to ``expid``.
    Files may also be ``model_config/*.yaml`` and ``dataset_config/*.yaml``.
    """
    config_dir = Path(config_dir)
    model_blocks = _yaml_blocks(config_dir, "model_config")
    if expid not in model_blocks:
        msg = (
            f"experiment id {expid!r} not found in {str(config_dir)!r}; experiment ids there: "
            f"{', '.join(k for k in model_blocks if k != 'Base')[:400]}"
        )
        raise FuxiCTRError(msg)
    params: dict[str, Any] = {}
    for key in ("Base", expid):
        block = model_blocks.get(key) or {}
        if not isinstance(block, dict):
            msg = f"block {key!r} of the model config must be a mapping of params"
            raise FuxiCTRError(msg)
        params.update(block)
    params["model_id"] = expid
    dataset_id = params.get("dataset_id")
    if not isinstance(dataset_id, str):
        msg = f"experiment {expid!r} has no dataset_id"
        raise FuxiCTRError(msg)
    dataset_blocks = _yaml_blocks(config_dir, "dataset_config")
    block = dataset_blocks.get(dataset_id)
    if not isinstance(block, dict):
        msg = f"dataset_id {dataset_id!r} not found in the dataset config of {str(config_dir)!r}"
        raise FuxiCTRError(msg)
    params.update(block)
    params["dataset_id"] = dataset_id
    columns = params.get("feature_cols") or []
    if not isinstance(columns, list):
        msg = (
            f"dataset {dataset_id!r} has feature_cols {str(columns)[:80]!r}; it must be a list of column "
            "specs such as {name: userid, dtype: str, type: categorical}"
        )
        raise FuxiCTRError(msg)
    for column in columns:
        if isinstance(column, dict) and "dtype" in column:
            check_dtype(column["dtype"], str(column.get("name")))
    return params


def _yaml_blocks(config_dir: Path, stem: str) -> dict[str, Any]:
    import yaml

    single = config_dir / f"{stem}.yaml"
    files = [single] if single.is_file() else sorted((config_dir / stem).glob("*.yaml"))
    if not files:
        msg = f"no {stem}.yaml (or {stem}/*.yaml) in {str(config_dir)!r}"
        raise FuxiCTRError(msg)
    blocks: dict[str, Any] = {}
    for path in files:
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            msg = f"{str(path)!r} is not valid YAML: {err}"
            raise FuxiCTRError(msg) from err
        except RecursionError as err:
            msg = f"{str(path)!r} is nested too deeply to read as YAML; check the file for runaway brackets"
            raise FuxiCTRError(msg) from err
        if not isinstance(content, dict):
            msg = f"{str(path)!r} must be a mapping keyed by experiment or dataset id"
            raise FuxiCTRError(msg)
        for key, value in content.items():
            blocks.setdefault(str(key), value)
    return blocks


def predict_probabilities(module: Any, dataset: CTRDataset, *, batch_size: int = 1024) -> np.ndarray:
    """Return FuxiCTR's own ``y_pred`` for a dataset's rows (used to check an import)."""
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            rows = np.arange(start, min(start + batch_size, len(dataset)))
            batch = {}
            for f in dataset.schema.fields:
                tensor = torch.from_numpy(np.ascontiguousarray(dataset.inputs[f.name][rows]))
                batch[f.name] = tensor.long() if f.kind in ("categorical", "sequence") else tensor.float()
            outputs.append(module(batch)["y_pred"].reshape(-1).double().numpy())
    return np.concatenate(outputs) if outputs else np.zeros(0)

