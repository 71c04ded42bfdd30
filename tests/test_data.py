"""Readers (CSV, Parquet, libfm), encoding into CTRDataset and the OOV accounting."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import FRAPPE_FIELDS, FRAPPE_WEATHER, require_frappe, spec_schema, synthetic_frame, write_csv
from workbench.data import (
    DataError,
    data_format,
    encode,
    file_fingerprint,
    infer_schema_spec,
    load_dataset,
    read_feature_map,
    read_frame,
    read_schema_spec,
)
from workbench.schema import OOV_TOKEN, PAD_TOKEN, Field, Schema, SchemaError, fit_schema

FEATURE_MAP = "index\tfield\traw_value\n3\tcity\tBerlin\n4\tcity\tParis\n7\tdevice\tmobile\n8\tdevice\ttablet\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --- data_format ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", "csv"),
        ("a.TSV", "csv"),
        ("a.csv.gz", "csv"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
        ("a.libfm", "libfm"),
        ("a.libsvm.gz", "libfm"),
        ("a.libffm", "libfm"),
        ("a.svm", "libfm"),
    ],
)
def test_data_format_from_name(name, expected):
    assert data_format(name) == expected


def test_data_format_unknown_extension():
    with pytest.raises(DataError, match=r"cannot tell the format of 'clicks\.txt'.*use \.csv, \.tsv, \.parquet or \.libfm"):
        data_format("clicks.txt")


# --- CSV and Parquet ------------------------------------------------------


def test_csv_reads_strings_and_missing(tmp_path):
    path = _write(tmp_path / "a.csv", "label,city,price\n1,Berlin,1.5\n0,,2.5\n1,Paris,\n")

    frame = read_frame(path)

    assert list(frame.columns) == ["label", "city", "price"]
    assert frame["city"].tolist()[0] == "Berlin"
    assert frame["price"].tolist()[0] == "1.5"
    assert frame["city"].isna().tolist() == [False, True, False]
    assert frame["price"].isna().tolist() == [False, False, True]


def test_csv_keeps_na_strings(tmp_path):
    path = _write(tmp_path / "a.csv", "label,city\n1,NA\n0,null\n")

    frame = read_frame(path)

    assert frame["city"].tolist() == ["NA", "null"]


def test_csv_max_rows(tmp_path):
    path = _write(tmp_path / "a.csv", "label,city\n1,a\n0,b\n1,c\n")

    frame = read_frame(path, max_rows=2)

    assert frame["city"].tolist() == ["a", "b"]


def test_tsv_reader(tmp_path):
    path = _write(tmp_path / "a.tsv", "label\tcity\n1\tNew York, NY\n")

    frame = read_frame(path)

    assert frame["city"].tolist() == ["New York, NY"]


def test_csv_gz_reader(tmp_path):
    path = tmp_path / "a.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("label,city\n1,Berlin\n0,Rome\n")

    frame = read_frame(path)

    assert frame["city"].tolist() == ["Berlin", "Rome"]


def test_parquet_reader(tmp_path):
    path = tmp_path / "a.parquet"
    pd.DataFrame({"label": [1, 0, 1], "city": ["x", None, "z"], "vec": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}).to_parquet(
        path
    )

    frame = read_frame(path, max_rows=2)

    assert len(frame) == 2
    assert frame["label"].tolist() == [1, 0]
    assert frame["city"].isna().tolist() == [False, True]
    assert list(frame["vec"][1]) == [3.0, 4.0]


def test_corrupt_parquet(tmp_path):
    path = _write(tmp_path / "bad.parquet", "not parquet")

    with pytest.raises(DataError, match=r"could not read '.*bad\.parquet' as parquet"):
        read_frame(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"data file not found: '.*nope\.csv'"):
        read_frame(tmp_path / "nope.csv")


def test_unknown_extension_file(tmp_path):
    path = _write(tmp_path / "clicks.txt", "label,city\n1,a\n")

    with pytest.raises(DataError, match=r"cannot tell the format of '.*clicks\.txt'"):
        read_frame(path)


# --- libfm ----------------------------------------------------------------


def test_libfm_labels_to_binary(tmp_path):
    path = _write(tmp_path / "a.libfm", "1 0:3:1\n-1 0:4:1\n0 0:3:1\n1.0 0:3:1\n-1.0 0:3:1\n")

    frame = read_frame(path)

    assert frame["label"].tolist() == [1, 0, 0, 1, 0]


def test_libfm_three_part_tokens(tmp_path):
    path = _write(tmp_path / "a.libfm", "1 0:3:1 1:7:1\n\n0 0:4:1 1:7:1\n1 0:3:1\n")

    frame = read_frame(path)

    assert list(frame.columns) == ["label", "field_0", "field_1"]
    assert frame["field_0"].tolist() == ["3", "4", "3"]
    assert frame["field_1"].tolist()[:2] == ["7", "7"]
    assert frame["field_1"].isna().tolist() == [False, False, True]


def test_libfm_two_part_with_feature_map(tmp_path):
    path = _write(tmp_path / "a.libfm", "1 3:1 7:1\n-1 4:1 8:1.0\n")
    feature_map = _write(tmp_path / "map.tsv", FEATURE_MAP)

    frame = read_frame(path, feature_map=feature_map)

    assert list(frame.columns) == ["label", "city", "device"]
    assert frame["city"].tolist() == ["Berlin", "Paris"]
    assert frame["device"].tolist() == ["mobile", "tablet"]


def test_libfm_feature_map_next_to_file(tmp_path):
    _write(tmp_path / "feature_map.tsv", FEATURE_MAP)
    path = _write(tmp_path / "a.libfm", "1 4:1 7:1\n")

    frame = read_frame(path)

    assert frame["city"].tolist() == ["Paris"]


def test_libfm_three_part_named_by_map(tmp_path):
    path = _write(tmp_path / "a.libfm", "1 0:3:1 1:8:1\n")
    feature_map = _write(tmp_path / "map.tsv", FEATURE_MAP)

    frame = read_frame(path, feature_map=feature_map)

    assert frame.iloc[0].to_dict() == {"label": 1, "city": "Berlin", "device": "tablet"}


def test_libfm_gz(tmp_path):
    _write(tmp_path / "feature_map.tsv", FEATURE_MAP)
    path = tmp_path / "a.libfm.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("1 3:1 7:1\n-1 4:1 8:1\n")

    frame = read_frame(path)

    assert frame["label"].tolist() == [1, 0]
    assert frame["city"].tolist() == ["Berlin", "Paris"]


def test_libfm_max_rows(tmp_path):
    path = _write(tmp_path / "a.libfm", "1 0:3:1\n0 0:4:1\n1 0:5:1\n")

    frame = read_frame(path, max_rows=2)

    assert frame["field_0"].tolist() == ["3", "4"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("2 3:1", r"line 2: label '2' is not -1, 0 or 1"),
        ("yes 3:1", r"line 2: label 'yes' is not -1, 0 or 1"),
        ("1 3:x", r"line 2: token '3:x' is not 'field:index:value' or 'index:value'"),
        ("1 a:b:c:d", r"line 2: token 'a:b:c:d' is not 'field:index:value' or 'index:value'"),
        ("1 3:2", r"line 2: token '3:2' has value 2; only one-hot libfm \(value 1\) is supported"),
        ("1 0:3:0.5", r"line 2: token '0:3:0.5' has value 0.5"),
        ("1 99:1", r"line 2: index 99 is not in the feature map"),
    ],
)
def test_libfm_errors(tmp_path, line, message):
    path = _write(tmp_path / "bad.libfm", f"1 3:1\n{line}\n")
    feature_map = _write(tmp_path / "map.tsv", FEATURE_MAP)

    with pytest.raises(DataError, match=message):
        read_frame(path, feature_map=feature_map)


def test_libfm_error_names_file(tmp_path):
    path = _write(tmp_path / "bad.libfm", "2 3:1\n")
    feature_map = _write(tmp_path / "map.tsv", FEATURE_MAP)

    with pytest.raises(DataError, match=r"^'.*bad\.libfm' line 1"):
        read_frame(path, feature_map=feature_map)


def test_libfm_two_part_without_map(tmp_path):
    path = _write(tmp_path / "a.libfm", "1 3:1\n")

    with pytest.raises(DataError, match=r"line 1: token '3:1' has no field; give a feature map"):
        read_frame(path)


def test_libfm_empty_file(tmp_path):
    path = _write(tmp_path / "a.libfm", "\n\n")

    with pytest.raises(DataError, match=r"'.*a\.libfm' has no libfm rows"):
        read_frame(path)


def test_feature_map_missing(tmp_path):
    path = _write(tmp_path / "a.libfm", "1 3:1\n")

    with pytest.raises(DataError, match=r"feature map not found: '.*nomap\.tsv'"):
        read_frame(path, feature_map=tmp_path / "nomap.tsv")


def test_feature_map_wrong_columns(tmp_path):
    path = _write(tmp_path / "a.libfm", "1 3:1\n")
    feature_map = _write(tmp_path / "map.tsv", "id\tname\n3\tcity\n")

    with pytest.raises(DataError, match=r"needs the columns index, field, raw_value; found \['id', 'name'\]"):
        read_frame(path, feature_map=feature_map)


def test_feature_map_reader(tmp_path):
    feature_map = _write(tmp_path / "map.tsv", FEATURE_MAP)

    names = read_feature_map(feature_map)

    assert names == {3: ("city", "Berlin"), 4: ("city", "Paris"), 7: ("device", "mobile"), 8: ("device", "tablet")}


# --- encode and CTRDataset ------------------------------------------------


def _city_device_schema(train: pd.DataFrame) -> Schema:
    return fit_schema(train, Schema([Field("city", "categorical"), Field("device", "categorical")]))


def test_encode_counts_oov_per_field():
    train = pd.DataFrame({"label": [1, 0], "city": ["Berlin", "Rome"], "device": ["mobile", "tablet"]})
    test = pd.DataFrame(
        {"label": [1, 0, 1], "city": ["Oslo", "Rome", "Lima"], "device": ["mobile", "watch", None]}
    )
    schema = _city_device_schema(train)

    dataset = encode(test, schema)

    assert dataset.oov_counts == {"city": 2, "device": 1}
    assert dataset.inputs["city"].tolist() == [3, 2, 3]
    assert dataset.inputs["device"].tolist() == [1, 3, 0]


def test_raw_values_show_oov_and_pad():
    train = pd.DataFrame({"label": [1, 0], "city": ["Berlin", "Rome"], "device": ["mobile", "tablet"]})
    test = pd.DataFrame({"label": [1, 0], "city": ["Oslo", "Rome"], "device": [None, "tablet"]})
    dataset = encode(test, _city_device_schema(train))

    raw = dataset.raw_values()

    assert raw["city"].tolist() == [OOV_TOKEN, "Rome"]
    assert raw["device"].tolist() == [PAD_TOKEN, "tablet"]


def test_raw_values_selected_rows():
    frame = synthetic_frame(10, seed=3)
    dataset = encode(frame, fit_schema(frame, spec_schema()))

    raw = dataset.raw_values(np.array([7, 2]))

    assert raw.index.tolist() == [7, 2]
    assert raw["city"].tolist() == frame["city"].iloc[[7, 2]].tolist()
    assert raw["history"].tolist() == [
        "|".join(frame["history"].iloc[i].split("|")[-3:]) for i in (7, 2)
    ]
    assert raw["age"].tolist() == [f"{frame['age'].iloc[i]:.4g}" for i in (7, 2)]


def test_encode_labels_to_binary():
    frame = pd.DataFrame({"label": ["-1", "1", "0", "1.0"], "city": ["a", "a", "a", "a"], "device": ["m"] * 4})

    dataset = encode(frame, _city_device_schema(frame))

    assert dataset.labels.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert dataset.labels.dtype == np.float32


def test_encode_non_numeric_label():
    frame = pd.DataFrame({"label": ["1", "click"], "city": ["a", "b"], "device": ["m", "m"]})

    with pytest.raises(DataError, match=r"label column 'label' has a non-numeric value 'click'"):
        encode(frame, _city_device_schema(frame))


def test_encode_unfitted_schema():
    frame = pd.DataFrame({"label": [1], "city": ["a"]})

    with pytest.raises(SchemaError, match="no vocabularies yet; fit it on the training data first"):
        encode(frame, Schema([Field("city", "categorical")]))


def test_encode_missing_label_column():
    frame = pd.DataFrame({"click": [1], "city": ["a"], "device": ["m"]})
    schema = _city_device_schema(frame)

    with pytest.raises(SchemaError, match=r"no column\(s\) 'label'"):
        encode(frame, schema)


def test_encode_bad_dense_names_field():
    frame = pd.DataFrame({"label": [1], "vec": ["1,2,3"]})
    schema = Schema([Field("vec", "dense", dim=2)])

    with pytest.raises(DataError, match=r"could not encode field 'vec': dense field 'vec' expects vectors of length 2"):
        encode(frame, schema)


def test_dataset_tensor_shapes():
    frame = synthetic_frame(5, seed=1)
    dataset = encode(frame, fit_schema(frame, spec_schema()))

    tensors = dataset.tensors(np.array([0, 2, 4]))

    assert len(dataset) == 5
    assert tensors["city"].shape == (3,)
    assert tensors["city"].dtype == torch.int64
    assert tensors["age"].dtype == torch.float32
    assert tensors["history"].shape == (3, 3)
    assert tensors["vec"].shape == (3, 2)
    assert tensors["vec"].dtype == torch.float32


def test_csv_round_trip_all_kinds(tmp_path):
    frame = synthetic_frame(20, seed=4)
    schema = fit_schema(frame, spec_schema())
    write_csv(frame, tmp_path / "a.csv")

    from_csv = load_dataset(tmp_path / "a.csv", schema)
    in_memory = encode(frame, schema)

    for name in schema.field_names:
        np.testing.assert_allclose(from_csv.inputs[name], in_memory.inputs[name], atol=1e-6)
    np.testing.assert_array_equal(from_csv.labels, in_memory.labels)
    assert from_csv.name == "a.csv"


def test_load_dataset_libfm_label_rename(tmp_path):
    _write(tmp_path / "feature_map.tsv", FEATURE_MAP)
    path = _write(tmp_path / "a.libfm", "1 3:1 7:1\n-1 4:1 8:1\n1 4:1 7:1\n")
    schema = Schema.from_dict(
        {
            "label": "click",
            "fields": [
                {"name": "city", "kind": "categorical", "vocabulary": ["Berlin"]},
                {"name": "device", "kind": "categorical", "vocabulary": ["mobile", "tablet"]},
            ],
        }
    )

    dataset = load_dataset(path, schema, max_rows=2)

    assert dataset.labels.tolist() == [1.0, 0.0]
    assert dataset.oov_counts == {"city": 1, "device": 0}
    assert dataset.raw_values()["city"].tolist() == ["Berlin", OOV_TOKEN]


# --- schema helpers -------------------------------------------------------


def test_infer_schema_kinds():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "label": rng.integers(0, 2, 200).astype(str),
            "price": rng.normal(size=200).astype(str),
            "hour": rng.integers(0, 24, 200).astype(str),
            "city": rng.choice(["a", "b"], 200),
        }
    )

    schema = infer_schema_spec(frame, "label")

    assert [(f.name, f.kind) for f in schema.fields] == [
        ("price", "numeric"),
        ("hour", "categorical"),
        ("city", "categorical"),
    ]


def test_infer_schema_missing_label():
    with pytest.raises(DataError, match=r"label column 'click' not found; columns: label, city"):
        infer_schema_spec(pd.DataFrame({"label": [1], "city": ["a"]}), "click")


def test_read_schema_spec(tmp_path):
    path = _write(tmp_path / "schema.json", json.dumps(spec_schema("click").to_dict()))

    schema = read_schema_spec(path)

    assert schema.label == "click"
    assert schema.field_names == ["city", "device", "age", "history", "vec"]


def test_read_schema_spec_missing(tmp_path):
    with pytest.raises(DataError, match=r"schema file not found: '.*none\.json'"):
        read_schema_spec(tmp_path / "none.json")


def test_read_schema_spec_invalid_json(tmp_path):
    path = _write(tmp_path / "schema.json", "{fields: [")

    with pytest.raises(DataError, match=r"schema file '.*schema\.json' is not valid JSON"):
        read_schema_spec(path)


def test_file_fingerprint(tmp_path):
    path = _write(tmp_path / "a.csv", "label,city\n1,a\n")

    assert file_fingerprint(path) == hashlib.sha256(b"label,city\n1,a\n").hexdigest()


# --- Frappe ---------------------------------------------------------------


@pytest.mark.frappe
def test_frappe_raw_values_from_feature_map():
    folder = require_frappe()

    frame = read_frame(folder / "frappe.test.libfm", max_rows=200)

    assert len(frame) == 200
    assert list(frame.columns) == ["label", *FRAPPE_FIELDS]
    assert set(frame["label"]) == {0, 1}
    assert set(frame["weather"]) <= FRAPPE_WEATHER
    assert set(frame["cost"]) <= {"free", "paid"}
    assert set(frame["isweekend"]) <= {"weekend", "workday"}


@pytest.mark.frappe
def test_frappe_first_row_mapping():
    folder = require_frappe()
    with (folder / "frappe.test.libfm").open(encoding="utf-8") as handle:
        first_line = handle.readline().split()
    feature_map = read_feature_map(folder / "feature_map.tsv")
    expected = dict(feature_map[int(token.split(":")[0])] for token in first_line[1:])

    frame = read_frame(folder / "frappe.test.libfm", max_rows=1)

    assert frame.iloc[0].drop("label").to_dict() == expected
    assert frame["label"].iloc[0] == (1 if first_line[0] == "1" else 0)
    assert feature_map[5060] == ("weather", "sunny")
    assert feature_map[5046] == ("weekday", "sunday")
