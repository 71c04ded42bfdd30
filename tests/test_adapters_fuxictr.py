"""FuxiCTR artifacts read by ``workbench.adapters.fuxictr`` and imported with ``workbench import fuxictr``.

The data are FuxiCTR's own tiny samples (``../shared/data/fuxictr_tiny``).
Vocabularies and the feature processor pickle come from running the real
``fuxictr`` package's ``FeatureProcessor.fit`` on ``tiny_csv``. Models are
trained with FuxiCTR's own ``fit`` (``tests/fuxictr_fixtures.py``), and the
reference predictions are FuxiCTR's own ``predict``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from fuxictr_fixtures import TINY_DIR, TINY_MODELS, ZOO_DIR, cached, import_zoo_class, train_tiny
from workbench import cli
from workbench.adapters import AdapterError
from workbench.adapters import fuxictr as fx
from workbench.cli_import import register
from workbench.data import DataError, load_dataset

pytestmark = pytest.mark.skipif(not TINY_DIR.is_dir(), reason=f"no FuxiCTR sample data at {str(TINY_DIR)!r}")

CSV_DIR = TINY_DIR / "tiny_csv"
CATEGORICAL = [
    "userid", "adgroup_id", "pid", "cate_id", "campaign_id", "customer", "brand", "cms_segid", "cms_group_id",
    "final_gender_code", "age_level", "pvalue_level", "shopping_level", "occupation",
]  # fmt: skip
EVIL = "__import__('pathlib').Path({marker!r}).touch()"


# --- helpers ---------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    """Run ``workbench`` with the import command registered, through the CLI's own error handling."""
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "import" not in commands.choices:
        register(commands)
    original = cli.build_parser
    cli.build_parser = lambda: parser
    try:
        return cli.main(argv)
    finally:
        cli.build_parser = original


def write_map(folder: Path, features: list[dict], *, labels=("clk",), dataset_id: str = "hand") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    content = {"dataset_id": dataset_id, "num_fields": len(features), "labels": list(labels), "features": features}
    path = folder / "feature_map.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def fit_tiny_csv(root: Path) -> dict:
    """Run the real FuxiCTR FeatureProcessor on tiny_csv; return the data folder and FuxiCTR's own test encoding."""
    from fuxictr.preprocess import FeatureProcessor

    columns = [
        {"name": CATEGORICAL, "active": True, "dtype": "str", "type": "categorical"},
        {"name": "price", "active": True, "dtype": "float", "type": "numeric", "normalizer": "StandardScaler"},
        {
            "name": "click_sequence", "active": True, "dtype": "str", "type": "sequence", "splitter": "^",
            "max_len": 5, "share_embedding": "adgroup_id",
        },
    ]  # fmt: skip
    processor = FeatureProcessor(
        feature_cols=columns, label_col={"name": "clk", "dtype": "float"}, dataset_id="tiny_csv_fit", data_root=str(root)
    )
    train = processor.preprocess(processor.read_data(str(CSV_DIR / "train_sample.csv"), data_format="csv"))
    processor.fit(train, min_categr_count=1)
    test = processor.preprocess(processor.read_data(str(CSV_DIR / "test_sample.csv"), data_format="csv")).collect()
    encoded = processor.transform({name: test[name].to_numpy() for name in test.columns})
    return {"data_dir": root / "tiny_csv_fit", "encoded": {k: np.asarray(v) for k, v in encoded.items()}}


@pytest.fixture(scope="module")
def fitted_csv(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return cached("fitted_tiny_csv", tmp_path_factory, fit_tiny_csv)


@pytest.fixture(scope="module")
def deepfm_run(tmp_path_factory: pytest.TempPathFactory):
    return cached("tiny_DeepFM", tmp_path_factory, lambda root: train_tiny(root, "DeepFM", epochs=2))


@pytest.fixture(scope="module")
def din_run(tmp_path_factory: pytest.TempPathFactory):
    return cached("tiny_DIN", tmp_path_factory, lambda root: train_tiny(root, "DIN", epochs=2))


# --- feature map dialects --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "dialect", "dataset_id", "n_fields"),
    [
        ("tiny_parquet", "v2.2+", "tiny_parquet", 14),
        ("tiny_npz", "v2.2+", "tiny_npz", 14),
        ("tiny_seq", "v2.2+", "tiny_seq", 15),
        ("tiny_h5_v2.1", "v2.0-2.1", "tiny_h5", 14),
    ],
)
def test_read_feature_map_dialects(folder, dialect, dataset_id, n_fields):
    path = TINY_DIR / folder / "feature_map.json"
    info = fx.read_feature_map(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert info.dialect == dialect
    assert info.dataset_id == dataset_id
    assert info.labels == ["clk"]
    assert [f.name for f in info.fields] == [next(iter(entry)) for entry in raw["features"]]
    assert len(info.fields) == n_fields
    schema = fx.build_schema(info)
    assert schema.field_names == [f.name for f in info.fields]
    assert schema.label == "clk"
    # The ids equal FuxiCTR's: the table has vocab_size rows, OOV is the last one.
    assert len(schema["userid"].vocabulary) == 26
    assert schema["userid"].vocabulary.oov_index == 25
    assert schema["userid"].vocabulary.values[:3] == ["1", "2", "3"]
    assert schema.extra["fuxictr"]["vocabulary_from"].startswith("index numbers")


def test_sequence_feature_of_tiny_seq():
    info = fx.read_feature_map(TINY_DIR / "tiny_seq" / "feature_map.json")
    schema = fx.build_schema(info)
    history = schema["click_sequence"]
    assert (history.kind, history.max_length, history.separator, len(history.vocabulary)) == ("sequence", 5, "^", 96)
    assert info["click_sequence"].spec["share_embedding"] == "adgroup_id"


def test_v1_feature_map_written_by_hand(tmp_path):
    content = {
        "dataset_id": "old",
        "num_fields": 3,
        "num_features": 12,
        "input_length": 3,
        "feature_specs": {
            "item": {"source": "item", "type": "categorical", "vocab_size": 6, "index": 0},
            "user": {"source": "user", "type": "categorical", "vocab_size": 4, "index": 1, "padding_idx": 0},
            "price": {"source": "item", "type": "numeric", "index": 2},
        },
    }
    path = tmp_path / "feature_map.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    info = fx.read_feature_map(path)
    assert info.dialect == "v1"
    assert [f.name for f in info.fields] == ["item", "user", "price"]
    schema = fx.build_schema(info, label="click")
    assert [f.kind for f in schema.fields] == ["categorical", "categorical", "numeric"]
    assert len(schema["item"].vocabulary) == 6
    assert schema.label == "click"
    with pytest.raises(fx.FuxiCTRError, match=r"FuxiCTR 1\.x"):
        fx.build_module(object, info, {"embedding_dim": 4})


def test_meta_features_are_not_fields(tmp_path):
    path = write_map(
        tmp_path,
        [
            {"group_id": {"type": "meta"}},
            {"user": {"type": "categorical", "vocab_size": 5, "padding_idx": 0, "oov_idx": 4, "source": "user"}},
            {"item": {"type": "categorical", "vocab_size": 7, "padding_idx": 0, "oov_idx": 6, "source": "item"}},
        ],
    )
    info = fx.read_feature_map(path)
    assert info.dialect == "v2.0-2.1"
    assert [f.name for f in info.fields] == ["user", "item"]
    assert fx.build_schema(info).field_names == ["user", "item"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "categoric", "vocab_size": 5}, "unknown type 'categoric'"),
        ({"type": "categorical"}, "needs 'vocab_size'"),
        ({"type": "categorical", "vocab_size": "12"}, "needs 'vocab_size'"),
        ({"type": "sequence", "vocab_size": 5}, "needs 'max_len'"),
        ({"type": "categorical", "vocab_size": 5, "pretrained_emb": "pretrained_u.npz"}, "not supported yet"),
        ({"type": "categorical", "vocab_size": 5, "oov_idx": 2}, "oov_idx 2"),
        ({"type": "sequence", "vocab_size": 5, "max_len": 3, "padding": "middle"}, "'pre' or 'post'"),
    ],
)
def test_bad_feature_specs_are_rejected(tmp_path, spec, message):
    path = write_map(tmp_path, [{"user": spec}])
    with pytest.raises(fx.FuxiCTRError, match=message):
        fx.read_feature_map(path)


def test_evil_strings_are_rejected_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran.txt"
    evil = EVIL.format(marker=str(marker))
    for spec, key in (
        ({"type": "sequence", "vocab_size": 5, "max_len": 3, "feature_encoder": evil}, "feature_encoder"),
        ({"type": "sequence", "vocab_size": 5, "max_len": 3, "feature_encoder": ["layers.MaskedSumPooling()", evil]}, "feature_encoder"),
        ({"type": "categorical", "vocab_size": 5, "dtype": evil}, "dtype"),
    ):
        path = write_map(tmp_path / key, [{"user": spec}])
        with pytest.raises(fx.FuxiCTRError, match=f"has {key} .*not"):
            fx.read_feature_map(path)
    # The same strings through the params FuxiCTR applies on top of the file.
    info = fx.read_feature_map(write_map(tmp_path / "ok", [{"user": {"type": "categorical", "vocab_size": 5}}]))
    with pytest.raises(fx.FuxiCTRError, match="feature_encoder"):
        fx.apply_feature_params(info, {"feature_specs": [{"name": "user", "feature_encoder": evil}]})
    with pytest.raises(fx.FuxiCTRError, match="activation"):
        fx.check_params({"embedding_dim": 4, "hidden_activations": evil})
    # A config whose feature column dtype is code.
    config = tmp_path / "config"
    config.mkdir()
    (config / "model_config.yaml").write_text("Base: {embedding_dim: 4}\nexp1: {model: DeepFM, dataset_id: d}\n", encoding="utf-8")
    (config / "dataset_config.yaml").write_text(
        json.dumps({"d": {"feature_cols": [{"name": "user", "type": "categorical", "dtype": evil}]}}), encoding="utf-8"
    )
    with pytest.raises(fx.FuxiCTRError, match="dtype"):
        fx.load_config(config, "exp1")
    assert not marker.exists()


def test_known_pooling_encoders_pass(tmp_path):
    path = write_map(
        tmp_path,
        [
            {"a": {"type": "sequence", "vocab_size": 5, "max_len": 3, "feature_encoder": "layers.MaskedSumPooling()"}},
            {"b": {"type": "sequence", "vocab_size": 5, "max_len": 3, "feature_encoder": None}},
        ],
    )
    info = fx.read_feature_map(path)
    assert info["a"].spec["feature_encoder"] == "layers.MaskedSumPooling()"
    assert "feature_encoder" not in info["b"].spec


def test_use_features_and_feature_specs_params():
    info = fx.read_feature_map(TINY_DIR / "tiny_seq" / "feature_map.json")
    params = {
        "use_features": ["pid", "click_sequence", "userid"],
        "feature_specs": [{"name": "click_sequence", "feature_encoder": "layers.MaskedAveragePooling()"}],
    }
    updated = fx.apply_feature_params(info, params)
    assert [f.name for f in updated.fields] == ["pid", "click_sequence", "userid"]
    assert updated["click_sequence"].spec["feature_encoder"] == "layers.MaskedAveragePooling()"
    assert "feature_encoder" not in info["click_sequence"].spec  # the parsed file is left as it was
    with pytest.raises(fx.FuxiCTRError, match="use_features"):
        fx.apply_feature_params(info, {"use_features": ["pid", "nope"]})
    with pytest.raises(fx.FuxiCTRError, match="'nope', which is not a feature"):
        fx.apply_feature_params(info, {"feature_specs": [{"name": "nope", "embedding_dim": 2}]})


def test_training_params_that_fuxictr_evaluates_are_replaced(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "ran.txt"
    evil = EVIL.format(marker=str(marker))
    info = fx.read_feature_map(TINY_DIR / "tiny_parquet" / "feature_map.json")
    params = {"embedding_dim": 4, "hidden_units": [8], "loss": evil, "embedding_initializer": evil, "metrics": [evil]}
    module = fx.build_module(import_zoo_class("DeepFM"), info, params)
    assert type(module).__name__ == "DeepFM"
    assert module.embedding_layer.embedding_layer.embedding_layers["userid"].weight.shape == (26, 4)
    assert not marker.exists()
    with pytest.raises(fx.FuxiCTRError, match="binary_classification"):
        fx.check_params({"embedding_dim": 4, "task": "regression"})


# --- data ------------------------------------------------------------------------------------


def test_processed_splits_pass_ids_through():
    import pyarrow.parquet as pq

    for folder, split in (("tiny_parquet", "test.parquet"), ("tiny_npz", "test.npz"), ("tiny_seq", "train.npz"), ("tiny_h5_v2.1", "train.h5")):
        info = fx.read_feature_map(TINY_DIR / folder / "feature_map.json")
        schema = fx.build_schema(info)
        path = TINY_DIR / folder / split
        dataset = load_dataset(path, schema)  # through the data.load_dataset hook
        if path.suffix == ".parquet":
            expected = {name: np.asarray(column) for name, column in pq.read_table(path).to_pydict().items()}
        elif path.suffix == ".npz":
            with np.load(path) as npz:
                expected = {name: npz[name] for name in npz.files}
        else:
            with h5py.File(path, "r") as handle:
                expected = {name: handle[name][()] for name in handle}
        assert len(dataset) == 100
        for f in schema.fields:
            np.testing.assert_array_equal(dataset.inputs[f.name], expected[f.name])
        np.testing.assert_array_equal(dataset.labels, expected["clk"])
        # FuxiCTR's OOV id is vocab_size - 1; every occurrence counts.
        for f in schema.fields:
            assert dataset.oov_counts[f.name] == int((expected[f.name] == len(f.vocabulary) - 1).sum()), f.name


def test_parquet_oov_ids_counted():
    schema = fx.build_schema(fx.read_feature_map(TINY_DIR / "tiny_parquet" / "feature_map.json"))
    dataset = load_dataset(TINY_DIR / "tiny_parquet" / "test.parquet", schema)
    assert len(schema["pvalue_level"].vocabulary) == 4
    assert dataset.oov_counts["pvalue_level"] == 60  # 60 of 100 rows contain id 3
    assert (dataset.raw_values()["pvalue_level"] == "<OOV>").sum() == 60
    assert dataset.oov_counts["userid"] == 0


def test_npz_oov_ids_and_items_counted(tmp_path):
    path = write_map(
        tmp_path,
        [
            {"city": {"type": "categorical", "vocab_size": 4}},
            {"hist": {"type": "sequence", "vocab_size": 5, "max_len": 3}},
            {"price": {"type": "numeric"}},
        ],
        labels=("y",),
    )
    schema = fx.build_schema(fx.read_feature_map(path))
    arrays = {
        "city": np.array([3, 1, 3, 0, 2]),  # The OOV id is 3, in two rows.
        "hist": np.array([[4, 4, 1], [1, 2, 0], [4, 0, 0], [0, 0, 0], [3, 2, 1]]),  # The OOV id is 4, in three items.
        "price": np.array([4.0, 0.0, 1.5, 3.0, 3.0]),  # Numeric values are never OOV, even when they equal an OOV id.
        "y": np.array([1, 0, 0, 1, 0]),
    }
    np.savez(tmp_path / "hand.npz", **arrays)
    dataset = fx.load_processed_split(tmp_path / "hand.npz", schema)
    assert dataset.oov_counts == {"city": 2, "hist": 3, "price": 0}
    assert fx.load_processed_split(tmp_path / "hand.npz", schema, max_rows=2).oov_counts == {"city": 1, "hist": 2, "price": 0}


def test_parquet_folder_of_parts_equals_the_file(tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(TINY_DIR / "tiny_parquet" / "train.parquet")
    folder = tmp_path / "train"
    folder.mkdir()
    pq.write_table(table.slice(0, 40), folder / "part-000000.parquet")
    pq.write_table(table.slice(40), folder / "part-000001.parquet")
    schema = fx.build_schema(fx.read_feature_map(TINY_DIR / "tiny_parquet" / "feature_map.json"))
    whole = fx.load_processed_split(TINY_DIR / "tiny_parquet" / "train.parquet", schema)
    parts = fx.load_processed_split(folder, schema)
    for name in schema.field_names:
        np.testing.assert_array_equal(parts.inputs[name], whole.inputs[name])
    np.testing.assert_array_equal(parts.labels, whole.labels)


def test_out_of_range_ids_and_wrong_widths_are_rejected(tmp_path):
    schema = fx.build_schema(fx.read_feature_map(TINY_DIR / "tiny_seq" / "feature_map.json"))
    with np.load(TINY_DIR / "tiny_seq" / "test.npz") as npz:
        arrays = {name: npz[name].copy() for name in npz.files}
    bad = dict(arrays, userid=arrays["userid"].copy())
    bad["userid"][7] = 26  # vocab_size 26: ids go up to 25
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(DataError, match=r"'userid' contains index 26 .*outside 0\.\.25"):
        fx.load_processed_split(tmp_path / "bad.npz", schema)
    narrow = dict(arrays, click_sequence=arrays["click_sequence"][:, :3])
    np.savez(tmp_path / "narrow.npz", **narrow)
    with pytest.raises(DataError, match=r"'click_sequence' has shape \(100, 3\); the feature map needs \(rows, 5\)"):
        fx.load_processed_split(tmp_path / "narrow.npz", schema)


def test_vocabulary_from_feature_vocab_json_keeps_fuxictr_ids(fitted_csv):
    data_dir = fitted_csv["data_dir"]
    vocab = json.loads((data_dir / "feature_vocab.json").read_text(encoding="utf-8"))
    info, schema = fx.load_data_dir(data_dir)
    assert schema.extra["fuxictr"]["vocabulary_from"] == "feature_vocab.json"
    for name in [*CATEGORICAL, "click_sequence"]:
        vocabulary = schema[name].vocabulary
        assert len(vocabulary) == info[name].vocab_size
        assert vocabulary.oov_index == vocab[name]["__OOV__"]
        for token, index in vocab[name].items():
            if token not in ("__PAD__", "__OOV__"):
                assert vocabulary.index_of(token) == index


def test_vocabulary_that_does_not_fit_the_feature_map(fitted_csv, tmp_path):
    data_dir = tmp_path / "mixed"
    shutil.copytree(fitted_csv["data_dir"], data_dir)
    vocab = json.loads((data_dir / "feature_vocab.json").read_text(encoding="utf-8"))
    vocab["pid"]["__OOV__"] = 9
    (data_dir / "feature_vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    with pytest.raises(fx.FuxiCTRError, match=r"'pid' has __PAD__ 0 and __OOV__ 9, but the feature map gives vocab_size 4"):
        fx.load_data_dir(data_dir)


def test_raw_csv_gives_fuxictr_ids(fitted_csv):
    data_dir = fitted_csv["data_dir"]
    encoded = fitted_csv["encoded"]
    with pytest.warns(UserWarning):
        info, schema = fx.load_data_dir(data_dir, allow_pickle=True)
    dataset = load_dataset(CSV_DIR / "test_sample.csv", schema)
    for name in [*CATEGORICAL, "click_sequence"]:
        np.testing.assert_array_equal(dataset.inputs[name], encoded[name], err_msg=name)
    np.testing.assert_allclose(dataset.inputs["price"], encoded["price"], rtol=1e-6, atol=1e-6)
    # OOV counted by hand: test tokens (not empty) that the train vocabulary lacks.
    vocab = json.loads((data_dir / "feature_vocab.json").read_text(encoding="utf-8"))
    raw = pd.read_csv(CSV_DIR / "test_sample.csv", dtype=str, keep_default_na=False)
    for name in ("adgroup_id", "brand", "userid"):
        unknown = int(sum(value != "" and value not in vocab[name] for value in raw[name]))
        assert dataset.oov_counts[name] == unknown
    assert dataset.oov_counts["adgroup_id"] > 0
    # A missing categorical value is FuxiCTR's OOV, not PAD.
    empty = (raw["pvalue_level"] == "").to_numpy()
    assert empty.any()
    assert (dataset.inputs["pvalue_level"][empty] == schema["pvalue_level"].vocabulary.oov_index).all()


def test_raw_csv_without_vocabulary_rejected(tmp_path):
    schema = fx.build_schema(fx.read_feature_map(TINY_DIR / "tiny_parquet" / "feature_map.json"))
    assert schema.extra["fuxictr"]["vocabulary_from"] == "index numbers (no feature_vocab.json)"
    path = CSV_DIR / "test_sample.csv"
    with pytest.raises(DataError) as caught:
        load_dataset(path, schema)
    message = str(caught.value)
    assert str(path) in message
    assert "no vocabulary of raw values" in message
    assert "imported without feature_vocab.json" in message
    assert "processed split (parquet, npz or h5)" in message
    assert "--data-dir that contains feature_vocab.json" in message
    # Small raw codes that look like ids (final_gender_code 1 and 2) are rejected too, in .tsv as well.
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).head(3)
    assert set(frame["final_gender_code"]) <= {"1", "2"}
    frame.to_csv(tmp_path / "codes.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match="no vocabulary of raw values"):
        fx.load_dataset(tmp_path / "codes.tsv", schema)
    # A schema with only numeric fields has no values to look up, so its CSV is read.
    info = fx.read_feature_map(write_map(tmp_path / "num", [{"x": {"type": "numeric"}}]))
    numeric = fx.build_schema(info, normalizers={"x": (1.0, 2.0)}, numeric_raw=True)
    pd.DataFrame({"x": [0.5, 2.0], "clk": [0, 1]}).to_csv(tmp_path / "num.csv", index=False)
    dataset = load_dataset(tmp_path / "num.csv", numeric)
    np.testing.assert_array_equal(dataset.inputs["x"], np.array([-0.25, 0.5], dtype=np.float32))


def test_evaluate_raw_csv_without_vocabulary(deepfm_run, tmp_path, monkeypatch, capsys):
    run = deepfm_run
    out = tmp_path / "bundle"
    argv = [
        "import", "fuxictr", "--config", str(run.config_dir), "--expid", run.expid, "--checkpoint", str(run.checkpoint),
        "--model-zoo", str(ZOO_DIR), "--data-dir", str(run.data_dir), "--out", str(out),
    ]  # fmt: skip
    assert run_cli(argv) == 0
    capsys.readouterr()
    monkeypatch.setenv("WORKBENCH_MODEL_ZOO", str(ZOO_DIR))
    path = CSV_DIR / "test_sample.csv"
    assert run_cli(["evaluate", str(out), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert str(path) in err
    assert "imported without feature_vocab.json" in err
    assert "Traceback" not in err
    # The processed split of the same rows is read, and its OOV ids are counted.
    assert run_cli(["evaluate", str(out), str(run.test_data)]) == 0
    report = json.loads(capsys.readouterr().out)
    if run.test_data.name == "test.parquet" and run.test_data.parent.name == "tiny_parquet":
        assert report["oov_counts"]["pvalue_level"] == 60


def test_sequence_padding_pre_matches_fuxictr_tokenizer(tmp_path):
    from fuxictr.preprocess.tokenizer import Tokenizer

    path = write_map(
        tmp_path,
        [{"hist": {"type": "sequence", "vocab_size": 5, "max_len": 3, "padding": "pre", "splitter": "|"}}],
        labels=("y",),
    )
    info = fx.read_feature_map(path)
    vocab = {"hist": {"__PAD__": 0, "a": 1, "b": 2, "c": 3, "__OOV__": 4}}
    schema = fx.build_schema(info, vocab)
    cells = ["a|b|c|a", "b", "", "c||x", "x|a"]
    frame = pd.DataFrame({"hist": cells, "y": [0, 1, 0, 1, 0]})
    arrays, oov = fx.encode_raw_frame(frame, schema, info)
    tokenizer = Tokenizer(splitter="|", max_len=3, padding="pre")
    tokenizer.vocab = dict(vocab["hist"])
    np.testing.assert_array_equal(arrays["hist"], tokenizer.encode_sequence(cells))
    assert arrays["hist"].tolist()[0] == [2, 3, 1]
    assert oov == {"hist": 2}


def test_pickle_is_refused_without_opt_in(fitted_csv):
    data_dir = fitted_csv["data_dir"]
    info, schema = fx.load_data_dir(data_dir)
    assert schema.extra["fuxictr"]["numeric_values"] == "processed"
    with pytest.raises(fx.FuxiCTRError, match="allow_pickle=True"):
        fx.read_normalizers(data_dir / "feature_processor.pkl", info)
    with pytest.raises(DataError, match="--allow-pickle"):
        load_dataset(CSV_DIR / "test_sample.csv", schema)


# --- model classes ---------------------------------------------------------------------------


ZOO_CLASS = """
from fuxictr.pytorch.models import BaseModel

class Twin(BaseModel):
    ORIGIN = {origin!r}
"""


def test_two_zoos_with_src_packages_do_not_clash(tmp_path):
    classes = []
    for origin in ("first", "second"):
        src = tmp_path / origin / "Twin" / "src"
        src.mkdir(parents=True)
        (src / "Twin.py").write_text(ZOO_CLASS.format(origin=origin), encoding="utf-8")
        (src / "__init__.py").write_text("from .Twin import Twin\n", encoding="utf-8")
        classes.append(fx.resolve_model_class("Twin", tmp_path / origin))
    assert [c.ORIGIN for c in classes] == ["first", "second"]
    # The model folder itself also works.
    assert fx.resolve_model_class("Twin", tmp_path / "first" / "Twin").ORIGIN == "first"


def test_model_class_errors(tmp_path):
    with pytest.raises(fx.FuxiCTRError, match="--model-zoo"):
        fx.resolve_model_class("DeepFM", None)
    with pytest.raises(fx.FuxiCTRError, match="exports: DeepFM"):
        fx.resolve_model_class("Nope", ZOO_DIR / "DeepFM")
    with pytest.raises(AdapterError, match="model-zoo folder not found"):
        fx.resolve_model_class("DeepFM", tmp_path / "missing")
    src = tmp_path / "Plain" / "src"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text("class Plain:\n    pass\n", encoding="utf-8")
    with pytest.raises(fx.FuxiCTRError, match="not a FuxiCTR model"):
        fx.resolve_model_class("Plain", tmp_path)


def test_multitask_models_are_rejected(tmp_path):
    src = tmp_path / "Both" / "src"
    src.mkdir(parents=True)
    (src / "__init__.py").write_text(
        "from fuxictr.pytorch.models import MultiTaskModel\n\nclass Both(MultiTaskModel):\n    pass\n", encoding="utf-8"
    )
    with pytest.raises(fx.FuxiCTRError, match="multi-task models are not supported"):
        fx.resolve_model_class("Both", tmp_path)


def test_installed_model_zoo_package():
    from fuxictr.pytorch.models import BaseModel

    cls = fx.resolve_model_class("DIN", "model_zoo.LongCTR")
    assert issubclass(cls, BaseModel)
    assert cls.__name__ == "DIN"
    info = fx.read_feature_map(TINY_DIR / "tiny_seq" / "feature_map.json")
    params = {"embedding_dim": 4, "din_target_field": "adgroup_id", "din_sequence_field": "click_sequence"}
    module = fx.build_module(cls, info, params)
    with pytest.raises(fx.FuxiCTRError, match="LongCTR models are not supported yet"):
        fx.make_adapter(module, fx.build_schema(info), name="fuxictr:DIN")


# --- checkpoints -----------------------------------------------------------------------------


def test_load_matches_fuxictr_predict(deepfm_run):
    run = deepfm_run
    # The data folder works as well as its feature_map.json.
    adapter = fx.load_fuxictr_model(fx.resolve_model_class("DeepFM", ZOO_DIR), run.data_dir, run.checkpoint, run.params)
    sources = {s.field: s.modules for s in adapter._sources.values()}
    assert sources["userid"] == (
        "embedding_layer.embedding_layer.embedding_layers.userid",
        "fm.lr_layer.embedding_layer.embedding_layer.embedding_layers.userid",
    )
    dataset = load_dataset(run.test_data, adapter.schema)
    with torch.no_grad():
        probabilities = torch.sigmoid(adapter(dataset.tensors()).double()).numpy()
    np.testing.assert_allclose(probabilities, run.predictions, atol=1e-6, rtol=0)
    assert probabilities.std() > 0


def test_numeric_and_embedding_features_are_slots():
    """tiny_emb: two numeric features (Linear(1, d) tables) and a 96-wide embedding feature (an Identity table)."""
    content = {
        "dataset_id": "tiny_emb",
        "labels": ["label"],
        "features": [
            {"feat1": {"type": "numeric", "source": ""}},
            {"feat2": {"type": "numeric", "source": ""}},
            {"feat3": {"type": "embedding", "source": "", "pretrain_dim": 96}},
        ],
    }
    info = fx.read_feature_map(content)
    schema = fx.build_schema(info)
    assert [f.kind for f in schema.fields] == ["numeric", "numeric", "dense"]
    torch.manual_seed(0)
    params = {"embedding_dim": 4, "model_structure": "parallel", "num_cross_layers": 2, "parallel_dnn_hidden_units": [8]}
    module = fx.build_module(import_zoo_class("DCNv2"), info, params)
    adapter = fx.make_adapter(module, schema, name="fuxictr:DCNv2")
    assert {s.field: s.modules for s in adapter._sources.values()}["feat3"] == (
        "embedding_layer.embedding_layer.embedding_layers.feat3",
    )
    dataset = fx.load_processed_split(TINY_DIR / "tiny_emb" / "test.parquet", schema)
    assert dataset.inputs["feat3"].shape == (100, 96)
    with torch.no_grad():
        batch = {name: torch.from_numpy(array) for name, array in dataset.inputs.items()}
        expected = module(batch)["y_pred"].reshape(-1).double().numpy()
        probabilities = torch.sigmoid(adapter(dataset.tensors()).double()).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6, rtol=0)
    assert expected.std() > 0
    assert exact_efficiency_gap(adapter, dataset, np.arange(3)) < 1e-5


def test_wrong_embedding_size_names_the_tensors(deepfm_run):
    run = deepfm_run
    params = dict(run.params, embedding_dim=8)
    with pytest.raises(AdapterError) as caught:
        fx.load_fuxictr_model(fx.resolve_model_class("DeepFM", ZOO_DIR), run.feature_map, run.checkpoint, params)
    message = str(caught.value)
    assert "embedding_layer.embedding_layer.embedding_layers.userid.weight (26, 4) vs (26, 8)" in message
    assert str(run.checkpoint) in message


def test_checkpoint_that_is_not_a_state_dict(tmp_path, deepfm_run):
    path = tmp_path / "odd.model"
    torch.save({"epoch": 3}, path)
    with pytest.raises(fx.FuxiCTRError, match="must hold a state_dict"):
        fx.load_fuxictr_model(fx.resolve_model_class("DeepFM", ZOO_DIR), deepfm_run.feature_map, path, deepfm_run.params)
    with pytest.raises(fx.FuxiCTRError, match="checkpoint not found"):
        fx.load_checkpoint(tmp_path / "missing.model")


@pytest.mark.parametrize("key", sorted(set(TINY_MODELS) - {"DeepFM", "DIN"}))
def test_every_tiny_model_matches_fuxictr(key, tmp_path_factory):
    run = cached(f"tiny_{key}", tmp_path_factory, lambda root: train_tiny(root, key, epochs=1))
    adapter = fx.load_fuxictr_model(fx.resolve_model_class(run.model, ZOO_DIR), run.feature_map, run.checkpoint, run.params)
    dataset = load_dataset(run.test_data, adapter.schema)
    with torch.no_grad():
        probabilities = torch.sigmoid(adapter(dataset.tensors()).double()).numpy()
    np.testing.assert_allclose(probabilities, run.predictions, atol=1e-6, rtol=0)
    assert exact_efficiency_gap(adapter, dataset, np.arange(2)) < 1e-5


# --- the import command ----------------------------------------------------------------------


def exact_efficiency_gap(model, dataset, rows) -> float:
    from workbench.explain.api import explain

    attribution = explain(model, dataset, rows=rows, method="exact_shapley", baseline="zero")
    return float(np.abs(attribution.values.sum(axis=1) - (attribution.predictions - attribution.base_values)).max())


@pytest.mark.parametrize("run_name", ["deepfm_run", "din_run"])
def test_import_command_end_to_end(run_name, request, tmp_path, monkeypatch, capsys):
    run = request.getfixturevalue(run_name)
    out = tmp_path / "models" / run.model
    argv = [
        "import", "fuxictr", "--config", str(run.config_dir), "--expid", run.expid, "--checkpoint", str(run.checkpoint),
        "--model-zoo", str(ZOO_DIR), "--data-dir", str(run.data_dir), "--out", str(out),
    ]  # fmt: skip
    assert run_cli(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == f"fuxictr:{run.model}"
    assert summary["fields"][0] == "userid"

    from workbench.bundle import BundleError, load_bundle

    # Opening the bundle imports the zoo, which the user must allow.
    monkeypatch.delenv("WORKBENCH_MODEL_ZOO", raising=False)
    with pytest.raises(BundleError, match="WORKBENCH_MODEL_ZOO"):
        load_bundle(out)
    monkeypatch.setenv("WORKBENCH_MODEL_ZOO", str(ZOO_DIR))
    bundle = load_bundle(out)
    dataset = load_dataset(run.test_data, bundle.schema)
    with torch.no_grad():
        probabilities = torch.sigmoid(bundle.model(dataset.tensors()).double()).numpy()
    np.testing.assert_allclose(probabilities, run.predictions, atol=1e-6, rtol=0)
    assert exact_efficiency_gap(bundle.model, dataset, np.arange(3)) < 1e-5


def test_import_command_with_model_and_params(deepfm_run, tmp_path, capsys):
    run = deepfm_run
    out = tmp_path / "deepfm"
    argv = [
        "import", "fuxictr", "--model", "DeepFM", "--param", "embedding_dim=4", "--param", "hidden_units=[16]",
        "--checkpoint", str(run.checkpoint), "--model-zoo", str(ZOO_DIR), "--data-dir", str(run.data_dir), "--out", str(out),
    ]  # fmt: skip
    assert run_cli(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    recipe = manifest["adapter"]["recipe"]
    assert (recipe["model_class"], recipe["model_zoo"]) == ("DeepFM", str(ZOO_DIR.resolve()))
    assert recipe["params"]["hidden_units"] == [16]
    assert recipe["feature_map"]["dataset_id"] == "tiny_parquet"
    capsys.readouterr()
    # A second import to the same folder needs --overwrite.
    assert run_cli(argv) == 2
    assert run_cli([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--param", "embedding_dim=8"], "do not fit the rebuilt DeepFM"),
        (["--model", "Missing"], "no Missing/src/__init__.py"),
        (["--param", "hidden_activations=os.system"], "accepted activation names"),
        (["--param", "bad"], "NAME=VALUE"),
    ],
)
def test_import_command_errors_are_one_line(deepfm_run, tmp_path, capsys, change, message):
    run = deepfm_run
    argv = [
        "import", "fuxictr", "--model", "DeepFM", "--param", "embedding_dim=4", "--param", "hidden_units=[16]",
        "--checkpoint", str(run.checkpoint), "--model-zoo", str(ZOO_DIR), "--data-dir", str(run.data_dir),
        "--out", str(tmp_path / "out"), *change,
    ]  # fmt: skip
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_import_command_needs_embedding_dim(deepfm_run, tmp_path, capsys):
    run = deepfm_run
    argv = [
        "import", "fuxictr", "--model", "DeepFM", "--checkpoint", str(run.checkpoint), "--model-zoo", str(ZOO_DIR),
        "--data-dir", str(run.data_dir), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    assert run_cli(argv) == 2
    assert "--param embedding_dim=N" in capsys.readouterr().err


def test_raw_csv_through_an_imported_model_with_pickle_opt_in(fitted_csv, tmp_path, monkeypatch, capsys):
    """A model on the fitted tiny_csv data (numeric price, pooled history): raw CSV needs --allow-pickle."""
    from fuxictr.features import FeatureMap

    data_dir = tmp_path / "tiny_csv_fit"
    shutil.copytree(fitted_csv["data_dir"], data_dir)
    feature_map = FeatureMap("tiny_csv_fit", str(data_dir))
    params = {"embedding_dim": 4, "hidden_units": [8], "model_root": str(tmp_path), "gpu": -1, "verbose": 0}
    params.update(optimizer="adam", loss="binary_crossentropy", metrics=["logloss"])
    feature_map.load(str(data_dir / "feature_map.json"), params)
    torch.manual_seed(0)
    module = import_zoo_class("DeepFM")(feature_map, model_id="DeepFM_csv", **params)
    checkpoint = tmp_path / "DeepFM_csv.model"
    module.save_weights(str(checkpoint))
    module.eval()
    encoded = fitted_csv["encoded"]
    batch = {name: torch.from_numpy(np.asarray(encoded[name])) for name in [*CATEGORICAL, "price", "click_sequence"]}
    with torch.no_grad():
        expected = module(batch)["y_pred"].reshape(-1).double().numpy()

    base = [
        "import", "fuxictr", "--model", "DeepFM", "--param", "embedding_dim=4", "--param", "hidden_units=[8]",
        "--checkpoint", str(checkpoint), "--model-zoo", str(ZOO_DIR), "--data-dir", str(data_dir),
    ]  # fmt: skip
    from workbench.bundle import load_bundle

    monkeypatch.setenv("WORKBENCH_MODEL_ZOO", str(ZOO_DIR))
    assert run_cli([*base, "--out", str(tmp_path / "plain")]) == 0
    assert "--allow-pickle" in capsys.readouterr().err
    plain = load_bundle(tmp_path / "plain")
    with pytest.raises(DataError, match="--allow-pickle"):
        load_dataset(CSV_DIR / "test_sample.csv", plain.schema)

    with pytest.warns(UserWarning):
        assert run_cli([*base, "--out", str(tmp_path / "opted"), "--allow-pickle"]) == 0
    opted = load_bundle(tmp_path / "opted")
    price = opted.schema["price"]
    raw_price = pd.to_numeric(pd.read_csv(CSV_DIR / "train_sample.csv")["price"]).fillna(0.0)
    assert price.mean == pytest.approx(raw_price.mean(), rel=1e-9)
    assert price.std == pytest.approx(raw_price.std(ddof=0), rel=1e-9)
    dataset = load_dataset(CSV_DIR / "test_sample.csv", opted.schema)
    with torch.no_grad():
        probabilities = torch.sigmoid(opted.model(dataset.tensors()).double()).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-6, rtol=0)
    assert exact_efficiency_gap(opted.model, dataset, np.arange(2)) < 1e-5


def test_import_command_reads_data_dir_from_config(deepfm_run, tmp_path, capsys):
    run = deepfm_run
    argv = [
        "import", "fuxictr", "--config", str(run.config_dir), "--expid", run.expid, "--checkpoint", str(run.checkpoint),
        "--model-zoo", str(ZOO_DIR), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    assert run_cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["dataset_id"] == "tiny_parquet"
    assert run_cli([*argv[:4], "--checkpoint", str(run.checkpoint), "--model-zoo", str(ZOO_DIR), "--out", str(tmp_path / "x")]) == 2
    assert "--config and --expid go together" in capsys.readouterr().err


@pytest.mark.parametrize("package", ["this", "os", "json.decoder", "model_zoo_evil"])
def test_bundle_recipe_rejects_other_installed_packages(package, capsys):
    with pytest.raises(fx.FuxiCTRError, match=f"installed package '{package}'"):
        fx.resolve_model_class("DeepFM", package, explicit=False)
    # Nothing was imported: importing `this` would have printed the Zen of Python.
    assert capsys.readouterr().out == ""


def test_bundle_recipe_may_name_the_wheel_zoo():
    with pytest.raises(fx.FuxiCTRError, match="does not export a class 'NoSuchModel'"):
        fx.resolve_model_class("NoSuchModel", "model_zoo.LongCTR", explicit=False)
