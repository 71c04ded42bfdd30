"""Property-based fuzz tests of the adapter parsers: each input is parsed or rejected with the project's error.

The parsers read files and JSON that come with models trained elsewhere:
FuxiCTR feature maps, vocabularies, params and YAML configs, DeepCTR-Torch
column specs and vocabularies, and the ``adapter`` entry of an adapted
bundle's manifest. Each test starts from a valid input (FuxiCTR's own tiny
feature maps, a real DeepCTR spec, a saved adapted bundle). Hypothesis
mutates it or replaces it by junk, and the test feeds it to the parser. The
only exceptions allowed are the parser's own error types
(:class:`~workbench.adapters.fuxictr.FuxiCTRError`,
:class:`~workbench.adapters.AdapterError`,
:class:`~workbench.bundle.BundleError`). Any other exception fails the test
with the input that caused it.

The bundle test also checks the safety rule of adapted bundles: a manifest
cannot make the workbench import code from a folder the user did not allow.

The runs are derandomized, so every run checks the same inputs.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

import workbench.adapters.fuxictr as fx
from test_fuzz_parsers import (
    FUZZ,
    JUNK,
    SCALARS,
    dump_json,
    file_contents,
    mutated,
    mutated_text,
    parse_or_reject,
    write_bytes_or_text,
)
from workbench.adapters import AdapterError
from workbench.adapters.bundle import CODE_FOLDERS_ENV, save_adapted_bundle
from workbench.adapters.deepctr import (
    ModelColumns,
    adapt_deepctr,
    build_deepctr_model,
    deepctr_schema,
    label_encoder_vocabulary,
    load_deepctr,
    recipe_for,
    spec_to_columns,
)
from workbench.bundle import MANIFEST_NAME, BundleError, load_bundle
from workbench.schema import Schema

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_DIR = REPO_ROOT.parent / "shared" / "data" / "fuxictr_tiny"
needs_tiny = pytest.mark.skipif(not TINY_DIR.is_dir(), reason=f"no FuxiCTR sample data at {str(TINY_DIR)!r}")


def _real_feature_maps() -> list[dict[str, Any]]:
    """FuxiCTR's own feature maps of the tiny samples (v2.0-2.1 and v2.2+ dialects, with and without histories)."""
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(TINY_DIR.glob("*/feature_map.json"))]


FEATURE_MAPS = _real_feature_maps() if TINY_DIR.is_dir() else []
V1_FEATURE_MAP = {
    "dataset_id": "tiny_v1",
    "num_fields": 3,
    "num_features": 12,
    "feature_specs": {
        "userid": {"source": "user", "type": "categorical", "vocab_size": 6, "oov_idx": 5},
        "price": {"source": "item", "type": "numeric"},
        "clicks": {"source": "user", "type": "sequence", "vocab_size": 6, "max_len": 3, "splitter": "^"},
    },
    "label_name": "clk",
}
"""A FuxiCTR 1.x feature map (a ``feature_specs`` object), written by hand after FuxiCTR 1.x's layout."""
FEATURE_VALUES = st.sampled_from(
    [
        "categorical",
        "sequence",
        "numeric",
        "embedding",
        "meta",
        "MaskedAveragePooling()",
        "layers.MaskedSumPooling()",
        "__import__('os').system('true')",
        "np.float32",
        "str",
        "pre",
        "post",
        "^",
        "vocab_size",
        "max_len",
        "oov_idx",
        "pretrain_dim",
        "share_embedding",
    ]
)
FEATURE_JUNK = st.one_of(JUNK, FEATURE_VALUES, st.integers(-3, 30))


def _feature_map_text(data: st.DataObject) -> str | bytes:
    base = data.draw(st.sampled_from([*FEATURE_MAPS, V1_FEATURE_MAP]))
    choice = data.draw(st.sampled_from(["mutated", "mutated", "spec", "text", "junk"]))
    if choice == "mutated":
        return dump_json(data.draw(mutated(base)))
    if choice == "spec":
        # One feature's spec replaced by plausible keys with plausible and wrong values.
        value = json.loads(json.dumps(base))
        spec = data.draw(st.dictionaries(FEATURE_VALUES, FEATURE_JUNK, max_size=6))
        if "features" in value:
            position = data.draw(st.integers(0, len(value["features"]) - 1))
            name = next(iter(value["features"][position]))
            value["features"][position] = {name: spec}
        else:
            value["feature_specs"][data.draw(st.sampled_from(sorted(value["feature_specs"])))] = spec
        return dump_json(value)
    if choice == "text":
        return data.draw(file_contents(dump_json(base)))
    return dump_json(data.draw(JUNK))


# ---------------------------------------------------------------- FuxiCTR feature maps


@needs_tiny
@FUZZ
@given(data=st.data())
def test_fuxictr_read_feature_map_fuzzed(tmp_path_factory, data: st.DataObject) -> None:
    folder = tmp_path_factory.getbasetemp() / "fuzz-fuxictr-map"
    folder.mkdir(exist_ok=True)
    content = _feature_map_text(data)
    path = write_bytes_or_text(folder / "feature_map.json", content)
    info = parse_or_reject(lambda: fx.read_feature_map(path), fx.FuxiCTRError)
    if info is None:
        return
    assert info.dialect in ("v1", "v2.0-2.1", "v2.2+")
    assert all(isinstance(f.name, str) and f.name for f in info.features)
    # The parsed map goes on to the schema builder, which must accept it or raise the same error type.
    schema = parse_or_reject(lambda: fx.build_schema(info), fx.FuxiCTRError)
    if schema is not None:
        assert schema.field_names == [f.name for f in info.fields]


@needs_tiny
@FUZZ
@given(content=st.one_of(st.sampled_from(FEATURE_MAPS).flatmap(mutated), mutated(V1_FEATURE_MAP), JUNK))
def test_fuxictr_read_feature_map_mapping_fuzzed(content: Any) -> None:
    # A bundle recipe stores the feature map as parsed JSON, which read_feature_map takes directly.
    if not isinstance(content, dict):
        content = {"features": content}
    info = parse_or_reject(lambda: fx.read_feature_map(content), fx.FuxiCTRError)
    if info is None:
        return
    assert info.fields


def _seq_info() -> fx.FeatureMapInfo:
    return fx.read_feature_map(TINY_DIR / "tiny_seq" / "feature_map.json")


FEATURE_PARAMS_BASE = {
    "use_features": ["userid", "adgroup_id", "pid", "click_sequence"],
    "feature_specs": [
        {"name": "userid", "embedding_dim": 8},
        {"name": ["adgroup_id", "pid"], "feature_encoder": "MaskedAveragePooling()"},
        {"name": "click_sequence", "feature_encoder": None, "max_len": 5},
    ],
}


@needs_tiny
@FUZZ
@given(params=st.one_of(mutated(FEATURE_PARAMS_BASE, max_mutations=4), st.dictionaries(FEATURE_VALUES | st.text(max_size=6), JUNK)))
def test_fuxictr_apply_feature_params_fuzzed(params: dict[str, Any]) -> None:
    info = _seq_info()
    updated = parse_or_reject(lambda: fx.apply_feature_params(info, params), fx.FuxiCTRError)
    if updated is None:
        return
    assert updated.dialect == info.dialect
    assert set(updated.content["features"][0]) <= {f.name for f in info.features}


# ---------------------------------------------------------------- FuxiCTR vocabularies


def _vocabulary_for(info: fx.FeatureMapInfo) -> dict[str, dict[str, int]]:
    """A feature_vocab.json that fits ``info``: PAD 0, tokens ``v1 .. v(n-2)``, OOV ``n - 1``."""
    vocab = {}
    for feature in info.fields:
        if feature.type in ("categorical", "sequence"):
            size = feature.vocab_size
            tokens = {f"v{index}": index for index in range(1, size - 1)}
            vocab[feature.name] = {"__PAD__": 0, **tokens, "__OOV__": size - 1}
    return vocab


@needs_tiny
@FUZZ
@given(data=st.data())
def test_fuxictr_read_vocab_fuzzed(tmp_path_factory, data: st.DataObject) -> None:
    folder = tmp_path_factory.getbasetemp() / "fuzz-fuxictr-vocab"
    folder.mkdir(exist_ok=True)
    info = _seq_info()
    base = _vocabulary_for(info)
    choice = data.draw(st.sampled_from(["mutated", "mutated", "indices", "text", "junk"]))
    if choice == "mutated":
        content: str | bytes = dump_json(data.draw(mutated(base, max_mutations=4)))
    elif choice == "indices":
        # Indices out of range, repeated, negative or of the wrong type, on one feature.
        name = data.draw(st.sampled_from(sorted(base)))
        tokens = st.sampled_from(["__PAD__", "__OOV__", "v1", "v2", "<unused 3>", ""]) | st.text(max_size=4)
        entries = data.draw(st.dictionaries(tokens, st.integers(-2, 200) | SCALARS))
        content = dump_json({**base, name: {**base[name], **entries}})
    elif choice == "text":
        content = data.draw(file_contents(dump_json({name: base[name] for name in list(base)[:2]})))
    else:
        content = dump_json(data.draw(JUNK))
    path = write_bytes_or_text(folder / "feature_vocab.json", content)
    vocab = parse_or_reject(lambda: fx.read_vocab(path), fx.FuxiCTRError)
    if vocab is None:
        return
    schema = parse_or_reject(lambda: fx.build_schema(info, vocab), fx.FuxiCTRError)
    if schema is None:
        return
    for f in schema.fields:
        if f.kind in ("categorical", "sequence"):
            assert len(f.vocabulary) == info[f.name].vocab_size


# ---------------------------------------------------------------- FuxiCTR params and configs


PARAMS_BASE = {
    "model": "DeepFM",
    "dataset_id": "tiny_parquet",
    "task": "binary_classification",
    "loss": "binary_crossentropy",
    "metrics": ["logloss", "AUC"],
    "optimizer": "adam",
    "embedding_initializer": "torch.nn.init.normal_(std=1e-4)",
    "embedding_dim": 4,
    "hidden_units": [16, 8],
    "hidden_activations": "relu",
    "net_regularizer": 0,
    "embedding_regularizer": 1e-8,
    "net_dropout": 0,
    "batch_norm": False,
}


@FUZZ
@given(params=st.one_of(mutated(PARAMS_BASE, max_mutations=4), st.dictionaries(st.text(max_size=20), JUNK, max_size=6), JUNK))
def test_fuxictr_check_params_fuzzed(params: dict[str, Any]) -> None:
    safe = parse_or_reject(lambda: fx.check_params(params), fx.FuxiCTRError)
    if safe is None:
        return
    assert safe["loss"] == "binary_crossentropy"
    assert safe["optimizer"] == "Adam"
    assert isinstance(safe["embedding_dim"], int)


@FUZZ
@given(
    text=st.one_of(
        mutated_text("embedding_dim=16"),
        mutated_text("hidden_units=[64, 32]"),
        mutated_text("hidden_activations=relu"),
        st.text(max_size=40),
        st.just("x=!!python/object/apply:os.system ['true']"),
        st.just("x=" + "[" * 5000 + "]" * 5000),
        st.just("x=&a [*a]"),
    )
)
def test_fuxictr_parse_param_fuzzed(text: str) -> None:
    parsed = parse_or_reject(lambda: fx.parse_param(text), fx.FuxiCTRError)
    if parsed is None:
        return
    name, _ = parsed
    assert name.isidentifier()


MODEL_CONFIG = """Base:
    model_root: './checkpoints/'
    num_workers: 3
    verbose: 1
    early_stop_patience: 2

DeepFM_test:
    model: DeepFM
    dataset_id: tiny_parquet
    loss: 'binary_crossentropy'
    metrics: ['logloss', 'AUC']
    task: binary_classification
    optimizer: adam
    learning_rate: 1.0e-3
    embedding_regularizer: 1.e-8
    embedding_dim: 4
    hidden_units: [16, 8]
    hidden_activations: relu
    batch_norm: False
"""
DATASET_CONFIG = """tiny_parquet:
    data_root: ../data/
    data_format: csv
    train_data: ../data/tiny_csv/train_sample.csv
    feature_cols:
        - {name: ["userid", "adgroup_id", "pid"], active: True, dtype: str, type: categorical}
        - {name: price, active: True, dtype: float, type: numeric}
        - {name: clicks, active: True, dtype: str, type: sequence, splitter: ^, max_len: 5}
    label_col: {name: clk, dtype: float}
"""
YAML_PIECES = st.sampled_from(
    [
        "dtype: eval('1')",
        "feature_cols: 5",
        "feature_cols: [1, 2]",
        "- {dtype: np.int32}",
        "!!python/name:os.system",
        "&a [*a]",
        "? [a]\n: b",
        "dataset_id: [x]",
        "Base: 3",
        "{",
        "\t",
        ": ",
    ]
)


YAML_VALUES = st.sampled_from([5, "eval('1')", [1, 2], [{"dtype": "np.int32"}], [{"name": "x", "dtype": ["str"]}], {"a": 1}])


@st.composite
def yaml_text(draw: Callable[[Any], Any], base: str) -> str:
    """``base`` with characters changed, or a line replaced by a YAML piece that parsers handle badly."""
    choice = draw(st.sampled_from(["text", "text", "line", "value", "value", "dump", "junk"]))
    if choice == "value":
        # One param of one block set to a wrong value, written as JSON (which is YAML). Half of the changes hit
        # the params that load_config reads itself.
        content = _yaml_as_json(base)
        block = content[draw(st.sampled_from(sorted(content)))]
        key = draw(st.sampled_from(sorted(block)) | st.sampled_from(["feature_cols", "dataset_id", "hidden_activations"]))
        block[key] = draw(YAML_VALUES | JUNK)
        return dump_json(content)
    if choice == "text":
        return draw(mutated_text(base))
    if choice == "line":
        lines = base.splitlines()
        position = draw(st.integers(0, len(lines) - 1))
        indent = draw(st.sampled_from(["", "    ", "        "]))
        lines[position] = indent + draw(YAML_PIECES)
        return "\n".join(lines)
    if choice == "dump":
        return dump_json(draw(mutated(_yaml_as_json(base), max_mutations=4)))
    return draw(st.text(max_size=120))


def _yaml_as_json(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


@FUZZ
@given(data=st.data())
def test_fuxictr_load_config_fuzzed(tmp_path_factory, data: st.DataObject) -> None:
    folder = tmp_path_factory.getbasetemp() / "fuzz-fuxictr-config"
    folder.mkdir(exist_ok=True)
    # Mostly one file changed and the other kept valid, so that the changed one is read to its end.
    changed = data.draw(st.sampled_from(["model", "dataset", "dataset", "both"]))
    model_text = data.draw(yaml_text(MODEL_CONFIG)) if changed in ("model", "both") else MODEL_CONFIG
    dataset_text = data.draw(yaml_text(DATASET_CONFIG)) if changed in ("dataset", "both") else DATASET_CONFIG
    write_bytes_or_text(folder / "model_config.yaml", model_text)
    write_bytes_or_text(folder / "dataset_config.yaml", dataset_text)
    expid = data.draw(st.sampled_from(["DeepFM_test", "DeepFM_test", "DeepFM_test", "Base", "missing"]) | st.text(max_size=8))
    params = parse_or_reject(lambda: fx.load_config(folder, expid), fx.FuxiCTRError)
    if params is None:
        return
    assert params["model_id"] == expid
    assert isinstance(params["dataset_id"], str)


# ---------------------------------------------------------------- DeepCTR column specs and vocabularies


DEEPCTR_SPEC = {
    "linear": [
        {"type": "sparse", "name": "site", "vocabulary_size": 4, "embedding_dim": 4},
        {"type": "dense", "name": "price", "dimension": 1},
    ],
    "dnn": [
        {"type": "sparse", "name": "site", "vocabulary_size": 4, "embedding_dim": 4},
        {"type": "sparse", "name": "item", "vocabulary_size": 5, "embedding_dim": 4, "embedding_name": "item"},
        {
            "type": "varlen",
            "sparse": {"type": "sparse", "name": "history", "vocabulary_size": 5, "embedding_dim": 4, "embedding_name": "item"},
            "maxlen": 3,
            "combiner": "mean",
            "length_name": None,
        },
        {"type": "dense", "name": "price", "dimension": 1},
        {"type": "dense", "name": "vector", "dimension": 2, "dtype": "float32"},
    ],
}
DEEPCTR_VOCABULARIES = {
    "site": ["a.com", "b.com", "c.com", "d.com"],
    "item": [None, "shoe", "hat", "sock", "bag"],
}
SPEC_KEYS = st.sampled_from(
    ["type", "name", "vocabulary_size", "embedding_dim", "embedding_name", "dtype", "group_name", "dimension"]
    + ["sparse", "maxlen", "combiner", "length_name"]
)
SPEC_VALUES = st.one_of(
    JUNK,
    st.sampled_from(["sparse", "dense", "varlen", "mean", "sum", "max", "int32", "float64", "site", "item", "history"]),
    st.integers(-2, 2**25),
)
SPEC_LISTS = st.lists(st.dictionaries(SPEC_KEYS, SPEC_VALUES, max_size=6), max_size=3)


@FUZZ
@given(
    spec=st.one_of(
        mutated(DEEPCTR_SPEC, max_mutations=1),
        mutated(DEEPCTR_SPEC, max_mutations=4),
        mutated(DEEPCTR_SPEC["dnn"]),
        SPEC_LISTS,
        JUNK,
    )
)
def test_deepctr_from_spec_fuzzed(spec: Any) -> None:
    columns = parse_or_reject(lambda: ModelColumns.from_spec(spec), AdapterError)
    if columns is None:
        return
    assert all(isinstance(column.name, str) and column.name for column in columns.all_columns())
    # The spec that the columns write back is read again to the same columns.
    assert ModelColumns.from_spec(columns.to_spec()) == columns


@FUZZ
@given(spec=st.one_of(mutated(DEEPCTR_SPEC["dnn"], max_mutations=4), SPEC_LISTS))
def test_deepctr_spec_to_columns_fuzzed(spec: Any) -> None:
    columns = parse_or_reject(lambda: spec_to_columns(spec), AdapterError)
    if columns is None:
        return
    assert len(columns) == len(spec)


@FUZZ
@given(
    data=st.data(),
    vocabularies=st.one_of(
        mutated(DEEPCTR_VOCABULARIES, max_mutations=4),
        st.dictionaries(
            st.sampled_from(["site", "item", "history"]),
            st.lists(SCALARS, max_size=6) | st.dictionaries(st.text(max_size=4), SCALARS, max_size=6),
        ),
        JUNK,
    ),
)
def test_deepctr_schema_fuzzed(data: st.DataObject, vocabularies: Any) -> None:
    spec = data.draw(st.just(DEEPCTR_SPEC) | mutated(DEEPCTR_SPEC, max_mutations=2))
    result = parse_or_reject(lambda: deepctr_schema(spec, vocabularies, label="click"), AdapterError)
    if result is None:
        return
    schema, lookups = result
    assert isinstance(schema, Schema)
    for name, lookup in lookups.items():
        assert len(lookup) == len(schema[name].vocabulary)
        assert int(lookup[0]) == 0
        assert int(lookup[-1]) == 0


@FUZZ
@given(data=st.data())
@example(data=None)
def test_deepctr_load_files_fuzzed(tmp_path_factory, data: st.DataObject | None) -> None:
    # load_deepctr reads both JSON files, checks the spec and builds the model before it opens the weights, so
    # with the weights missing every input ends in an AdapterError: from a reader, the spec checks or the weights.
    folder = tmp_path_factory.getbasetemp() / "fuzz-deepctr-files"
    folder.mkdir(exist_ok=True)
    if data is None:
        spec_text: str | bytes = "[" * 100_000 + "]" * 100_000
        vocabulary_text: str | bytes = dump_json(DEEPCTR_VOCABULARIES)
    else:
        spec_text = data.draw(st.just(dump_json(DEEPCTR_SPEC)) | file_contents(dump_json(DEEPCTR_SPEC)))
        vocabulary_text = data.draw(
            st.just(dump_json(DEEPCTR_VOCABULARIES))
            | file_contents(dump_json(DEEPCTR_VOCABULARIES))
            | mutated(DEEPCTR_VOCABULARIES).map(dump_json)
        )
    spec_path = write_bytes_or_text(folder / "columns.json", spec_text)
    vocabulary_path = write_bytes_or_text(folder / "vocabularies.json", vocabulary_text)
    with pytest.raises(AdapterError) as raised:
        load_deepctr(folder / "missing.pt", spec_path, vocabulary_path, model_class="DeepFM", params={"dnn_hidden_units": [4]})
    event(f"rejected: {str(raised.value).split(' ')[1]}")


@FUZZ
@given(values=st.lists(SCALARS, max_size=8), reserve=st.booleans())
def test_deepctr_label_encoder_vocabulary_fuzzed(values: list[Any], reserve: bool) -> None:
    vocabulary = label_encoder_vocabulary(values, reserve_padding=reserve)
    known = vocabulary[1:] if reserve else vocabulary
    assert known == sorted({str(value) for value in values})
    assert (vocabulary[:1] == [None]) == reserve


# ---------------------------------------------------------------- the adapter entry of a bundle manifest


EVIL_SOURCE = """
from pathlib import Path

Path({marker!r}).write_text("imported", encoding="utf-8")


def make_adapter(schema, **kwargs):
    raise RuntimeError("code from a folder that was never allowed ran")


class DeepFM:
    pass
"""
EVIL_REJECTED = "not an allowed model code folder|must be a .py file inside|model-zoo folder not found"
ALLOWED_SOURCE = """
def make_adapter(schema, **kwargs):
    return None
"""


@pytest.fixture(scope="module")
def code_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An allowed code folder with harmless code, and a folder never allowed whose code writes a marker file."""
    root = tmp_path_factory.mktemp("fuzz-code")
    marker = root / "marker.txt"
    evil = root / "evil_zoo"
    source = EVIL_SOURCE.format(marker=str(marker))
    for package in (evil, evil / "src", evil / "DeepFM" / "src"):
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(source, encoding="utf-8")
    (evil / "evil.py").write_text(source, encoding="utf-8")
    allowed = root / "allowed"
    allowed.mkdir()
    (allowed / "harmless.py").write_text(ALLOWED_SOURCE, encoding="utf-8")
    return {"evil": evil, "allowed": allowed, "marker": marker}


@pytest.fixture(scope="module")
def deepfm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapted DeepCTR DeepFM bundle (untrained) with the fuzz spec's five fields."""
    model = build_deepctr_model("DeepFM", DEEPCTR_SPEC, {"dnn_hidden_units": (4,)})
    adapter = adapt_deepctr(model, DEEPCTR_SPEC, DEEPCTR_VOCABULARIES, label="click")
    recipe = recipe_for("DeepFM", DEEPCTR_SPEC, {"dnn_hidden_units": [4]}, DEEPCTR_VOCABULARIES, label="click")
    path = tmp_path_factory.mktemp("fuzz-adapted") / "deepfm"
    return save_adapted_bundle(adapter, path, kind="deepctr", recipe=recipe, name="fuzz DeepFM")


def test_adapted_bundle_loads(deepfm_bundle: Path) -> None:
    bundle = load_bundle(deepfm_bundle)
    assert bundle.architecture == "deepctr:DeepFM"
    assert bundle.schema.field_names == ["site", "price", "item", "history", "vector"]
    assert len(bundle.schema["item"].vocabulary) == 4 + 2


def _evil_recipes(folders: dict[str, Path], feature_map: dict[str, Any]) -> list[dict[str, Any]]:
    """Adapter entries that point at the folder that was never allowed, in every way a recipe can name code."""
    evil = folders["evil"]
    allowed = folders["allowed"]
    zoo_paths = [str(evil), str(evil / "src"), str(evil / "DeepFM" / "src"), str(allowed / ".." / evil.name), str(evil / "evil.py")]
    entries: list[dict[str, Any]] = []
    for zoo in zoo_paths:
        recipe = {"model_class": "DeepFM", "model_zoo": zoo, "params": {"embedding_dim": 4}, "feature_map": feature_map}
        entries.append({"kind": "fuxictr", "recipe": recipe})
    for folder, file in ((str(evil), "evil.py"), (str(allowed), f"../{evil.name}/evil.py"), (str(allowed), str(evil / "evil.py"))):
        recipe = {"folder": folder, "file": file, "function": "make_adapter", "args": {}}
        entries.append({"kind": "module", "recipe": recipe})
    return entries


@FUZZ
@given(data=st.data())
def test_load_bundle_fuzzed_adapter_entry(
    deepfm_bundle: Path, code_folders: dict[str, Path], tmp_path_factory, data: st.DataObject
) -> None:
    manifest = json.loads((deepfm_bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    folder = tmp_path_factory.getbasetemp() / "fuzz-adapted-entry"
    folder.mkdir(exist_ok=True)
    weights = deepfm_bundle / "weights.safetensors"
    if not (folder / weights.name).exists():
        (folder / weights.name).write_bytes(weights.read_bytes())
    feature_map = FEATURE_MAPS[0] if FEATURE_MAPS else V1_FEATURE_MAP
    choice = data.draw(st.sampled_from(["deepctr", "deepctr", "evil", "evil", "kind", "junk"]))
    if choice == "deepctr":
        entry = data.draw(mutated(manifest["adapter"], max_mutations=4))
    elif choice == "evil":
        entry = data.draw(st.sampled_from(_evil_recipes(code_folders, feature_map)).flatmap(lambda e: mutated(e, max_mutations=2)))
    elif choice == "kind":
        kind = data.draw(st.sampled_from(["fuxictr", "deepctr", "module", "FuxiCTR", "os", "workbench.adapters.factory"]) | SCALARS)
        entry = {"kind": kind, "recipe": data.draw(mutated(manifest["adapter"]["recipe"]) | JUNK)}
    else:
        entry = data.draw(JUNK)
    manifest["adapter"] = entry
    write_bytes_or_text(folder / MANIFEST_NAME, dump_json(manifest))
    # Only the harmless folder is allowed, whatever the environment allowed before.
    with mock.patch.dict(os.environ, {CODE_FOLDERS_ENV: str(code_folders["allowed"])}):
        bundle = parse_or_reject(lambda: load_bundle(folder), BundleError)
    assert not code_folders["marker"].exists(), f"the adapter entry {str(entry)[:300]} imported code from a folder never allowed"
    if bundle is None:
        return
    event(f"loaded a {bundle.architecture} bundle")
    assert bundle.architecture == "deepctr:DeepFM"


def test_adapted_bundle_code_outside_allowed_rejected(
    deepfm_bundle: Path, code_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    manifest = json.loads((deepfm_bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    folder = tmp_path_factory.mktemp("evil-entry")
    (folder / "weights.safetensors").write_bytes((deepfm_bundle / "weights.safetensors").read_bytes())
    feature_map = FEATURE_MAPS[0] if FEATURE_MAPS else V1_FEATURE_MAP
    for entry in _evil_recipes(code_folders, feature_map):
        manifest["adapter"] = entry
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
        with mock.patch.dict(os.environ, {CODE_FOLDERS_ENV: str(code_folders["allowed"])}):
            with pytest.raises(BundleError, match=EVIL_REJECTED):
                load_bundle(folder)
        assert not code_folders["marker"].exists()


# ---------------------------------------------------------------- inputs the fuzz tests found


@needs_tiny
@pytest.mark.parametrize(
    ("params", "message"),
    [
        (None, "the model params must be a mapping of param names to values; got NoneType"),
        ({"use_features": [[], "userid"]}, "param use_features [[], 'userid'] must list features of the feature map"),
        ({"feature_specs": [{"name": [["userid"]], "embedding_dim": 8}]}, "param feature_specs names ['userid'], which is not a feature"),
    ],
    ids=["params-null", "use-features-list", "feature-specs-name-list"],
)
def test_fuxictr_feature_params_wrong_type_rejected(params: Any, message: str) -> None:
    with pytest.raises(fx.FuxiCTRError, match=re.escape(message)):
        fx.apply_feature_params(_seq_info(), params)


def test_fuxictr_check_params_not_mapping_rejected() -> None:
    with pytest.raises(fx.FuxiCTRError, match="the model params must be a mapping of param names to values; got list"):
        fx.check_params([("embedding_dim", 4)])


def test_fuxictr_parse_param_deep_nesting_rejected() -> None:
    with pytest.raises(fx.FuxiCTRError, match="the value is nested too deeply to read"):
        fx.parse_param("x=" + "[" * 5000 + "]" * 5000)


def _write_config(folder: Path, dataset_text: str) -> Path:
    (folder / "model_config.yaml").write_text("Base: {}\nE1:\n    dataset_id: d1\n", encoding="utf-8")
    (folder / "dataset_config.yaml").write_text(dataset_text, encoding="utf-8")
    return folder


def test_fuxictr_load_config_feature_cols_number_rejected(tmp_path: Path) -> None:
    folder = _write_config(tmp_path, "d1:\n    feature_cols: 5\n")
    with pytest.raises(fx.FuxiCTRError, match=re.escape("dataset 'd1' has feature_cols '5'; it must be a list of column specs")):
        fx.load_config(folder, "E1")


def test_fuxictr_load_config_deep_nesting_rejected(tmp_path: Path) -> None:
    folder = _write_config(tmp_path, "d1: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(fx.FuxiCTRError, match="dataset_config.yaml' is nested too deeply to read as YAML"):
        fx.load_config(folder, "E1")


def test_deepctr_deeply_nested_file_rejected(tmp_path: Path) -> None:
    spec_path = tmp_path / "columns.json"
    spec_path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    vocabulary_path = tmp_path / "vocabularies.json"
    vocabulary_path.write_text(json.dumps(DEEPCTR_VOCABULARIES), encoding="utf-8")
    with pytest.raises(AdapterError, match="columns.json' is nested too deeply to read as JSON"):
        load_deepctr(tmp_path / "missing.pt", spec_path, vocabulary_path, model_class="DeepFM")


def test_model_zoo_that_is_no_path_is_rejected():
    from workbench.adapters import fuxictr as fx

    with pytest.raises(fx.FuxiCTRError, match="must be a folder path or a package name"):
        fx.resolve_model_class("DeepFM", 10**200, explicit=False)
    with pytest.raises(fx.FuxiCTRError, match="not a usable path"):
        fx.resolve_model_class("DeepFM", "9" * 300, explicit=False)
