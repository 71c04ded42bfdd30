"""Vocabularies, field encoders and schema validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workbench.schema import (
    OOV_TOKEN,
    PAD_INDEX,
    PAD_TOKEN,
    Field,
    Schema,
    SchemaError,
    Vocabulary,
    decode_value,
    encode_field,
    fit_schema,
    split_sequence,
)


# --- Vocabulary -----------------------------------------------------------


def test_vocabulary_fit_first_appearance_order():
    vocabulary = Vocabulary.fit(["b", "a", "b", "c", "a", "b"])

    assert vocabulary.values == ["b", "a", "c"]
    assert vocabulary.counts == [3, 2, 1]


def test_vocabulary_index_layout():
    vocabulary = Vocabulary(["x", "y", "z"])

    assert PAD_INDEX == 0
    assert [vocabulary.index_of(v) for v in ("x", "y", "z")] == [1, 2, 3]
    assert vocabulary.oov_index == 4
    assert len(vocabulary) == 5
    assert vocabulary.index_of("unseen") == 4


def test_vocabulary_fit_skips_missing():
    vocabulary = Vocabulary.fit(["a", None, float("nan"), "", "b"])

    assert vocabulary.values == ["a", "b"]


def test_vocabulary_fit_empty():
    vocabulary = Vocabulary.fit([])

    assert vocabulary.values == []
    assert vocabulary.oov_index == 1


def test_vocabulary_encode_counts_oov():
    vocabulary = Vocabulary(["a", "b"])

    indices, n_oov = vocabulary.encode(["a", "zz", "b", "yy", "zz"])

    assert indices.tolist() == [1, 3, 2, 3, 3]
    assert indices.dtype == np.int64
    assert n_oov == 3


def test_vocabulary_encode_missing_to_pad():
    vocabulary = Vocabulary(["a"])

    indices, n_oov = vocabulary.encode([None, float("nan"), "", "a"])

    assert indices.tolist() == [0, 0, 0, 1]
    assert n_oov == 0


def test_vocabulary_encode_numbers_as_strings():
    vocabulary = Vocabulary.fit([3, 7, 3])

    indices, n_oov = vocabulary.encode(["3", 7, "8"])

    assert vocabulary.values == ["3", "7"]
    assert indices.tolist() == [1, 2, 3]
    assert n_oov == 1


def test_vocabulary_decode_round_trip():
    raw = ["paris", "berlin", "rome", "berlin"]
    vocabulary = Vocabulary.fit(raw)

    indices, _ = vocabulary.encode(raw)

    assert vocabulary.decode(indices) == raw


def test_vocabulary_decode_pad_and_oov():
    vocabulary = Vocabulary(["a"])

    assert vocabulary.decode([0, 1, 2]) == [PAD_TOKEN, "a", OOV_TOKEN]


def test_vocabulary_decode_out_of_range():
    vocabulary = Vocabulary(["a"])

    with pytest.raises(SchemaError, match=r"index 5 is outside this vocabulary \(valid: 0\.\.2\)"):
        vocabulary.decode([5])


def test_vocabulary_min_count_maps_rare_to_oov():
    vocabulary = Vocabulary.fit(["a", "b", "a", "c", "a", "b"], min_count=2)

    indices, n_oov = vocabulary.encode(["a", "b", "c"])

    assert vocabulary.values == ["a", "b"]
    assert vocabulary.counts == [3, 2]
    assert indices.tolist() == [1, 2, 3]
    assert n_oov == 1


def test_vocabulary_duplicate_values():
    with pytest.raises(SchemaError, match="unique"):
        Vocabulary(["a", "b", "a"])


def test_vocabulary_counts_length_mismatch():
    with pytest.raises(SchemaError, match="2 values but 3 counts"):
        Vocabulary(["a", "b"], [1, 2, 3])


def test_vocabulary_fit_nullable_missing():
    vocabulary = Vocabulary.fit(pd.Series(["a", pd.NA, "b"], dtype="string"))

    assert vocabulary.values == ["a", "b"]


def test_vocabulary_encode_pd_na_to_pad():
    vocabulary = Vocabulary(["a"])

    indices, n_oov = vocabulary.encode([pd.NA])

    assert indices.tolist() == [PAD_INDEX]
    assert n_oov == 0


# --- Numeric fields -------------------------------------------------------


def test_numeric_fit_standardises():
    frame = pd.DataFrame({"x": ["1", "2", "3", None]})
    schema = fit_schema(frame, Schema([Field("x", "numeric")]))

    values, n_oov = encode_field(schema["x"], frame["x"])

    assert schema["x"].mean == pytest.approx(2.0)
    assert schema["x"].std == pytest.approx(1.0)
    np.testing.assert_allclose(values, [-1.0, 0.0, 1.0, 0.0])
    assert values.dtype == np.float32
    assert n_oov == 0


def test_numeric_missing_to_zero():
    field = Field("x", "numeric", mean=10.0, std=4.0)

    values, _ = encode_field(field, pd.Series([None, "not a number", float("nan"), 18.0], dtype=object))

    np.testing.assert_allclose(values, [0.0, 0.0, 0.0, 2.0])


def test_numeric_constant_column_std_one():
    schema = fit_schema(pd.DataFrame({"x": [5.0, 5.0, 5.0]}), Schema([Field("x", "numeric")]))

    assert schema["x"].mean == 5.0
    assert schema["x"].std == 1.0


def test_numeric_decode_restores_raw():
    field = Field("x", "numeric", mean=10.0, std=4.0)

    assert decode_value(field, 2.0) == "18"


# --- Sequence fields ------------------------------------------------------


def _sequence_field(max_length: int = 3, separator: str = "|") -> Field:
    return Field(
        "history", "sequence", vocabulary=Vocabulary(["a", "b", "c", "d", "e"]), max_length=max_length, separator=separator
    )


def test_sequence_pads_at_end():
    values, _ = encode_field(_sequence_field(), pd.Series(["a", "b|c"]))

    assert values.tolist() == [[1, 0, 0], [2, 3, 0]]


def test_sequence_truncation_keeps_recent():
    values, _ = encode_field(_sequence_field(), pd.Series(["a|b|c|d|e"]))

    assert values.tolist() == [[3, 4, 5]]


def test_sequence_empty_cells_all_pad():
    values, n_oov = encode_field(_sequence_field(), pd.Series(["", None, float("nan")], dtype=object))

    assert values.tolist() == [[0, 0, 0]] * 3
    assert n_oov == 0


def test_sequence_custom_separator():
    values, _ = encode_field(_sequence_field(separator=";"), pd.Series(["e;a"]))

    assert values.tolist() == [[5, 1, 0]]


def test_sequence_list_cells():
    values, _ = encode_field(_sequence_field(), pd.Series([["b", "a"], np.array(["c", "d", "e", "a"])], dtype=object))

    assert values.tolist() == [[2, 1, 0], [4, 5, 1]]


def test_sequence_counts_oov_items():
    values, n_oov = encode_field(_sequence_field(), pd.Series(["a|zz", "yy"]))

    assert values.tolist() == [[1, 6, 0], [6, 0, 0]]
    assert n_oov == 2


def test_sequence_split_skips_empty_items():
    assert split_sequence("a||b|", "|") == ["a", "b"]


def test_sequence_fit_vocabulary_from_items():
    frame = pd.DataFrame({"history": ["b|a", "", "c|b"]})
    spec = Schema([Field("history", "sequence", max_length=2)])

    schema = fit_schema(frame, spec)

    assert schema["history"].vocabulary.values == ["b", "a", "c"]
    assert schema["history"].vocabulary.counts == [2, 1, 1]
    assert schema["history"].max_length == 2


def test_sequence_decode_drops_pad():
    field = _sequence_field()

    assert decode_value(field, np.array([2, 6, 0])) == "b|<OOV>"


# --- Dense fields ---------------------------------------------------------


def test_dense_parses_strings_and_lists():
    field = Field("vec", "dense", dim=3)
    column = pd.Series(["1,2,3", "4 5 6", [7.0, 8.0, 9.0], np.array([1.5, 2.5, 3.5]), None], dtype=object)

    values, _ = encode_field(field, column)

    np.testing.assert_allclose(values, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1.5, 2.5, 3.5], [0, 0, 0]])
    assert values.dtype == np.float32


def test_dense_wrong_length():
    field = Field("vec", "dense", dim=3)

    with pytest.raises(SchemaError, match=r"dense field 'vec' expects vectors of length 3; found one of length 2"):
        encode_field(field, pd.Series(["1,2"]))


# --- Schema ---------------------------------------------------------------


def _full_spec() -> dict:
    return {
        "label": "click",
        "fields": [
            {"name": "city", "kind": "categorical", "vocabulary": ["Berlin", "Rome"], "counts": [5, 2]},
            {"name": "price", "kind": "numeric", "mean": 1.5, "std": 0.25},
            {
                "name": "history",
                "kind": "sequence",
                "vocabulary": ["a", "b"],
                "counts": [1, 1],
                "max_length": 4,
                "separator": ";",
            },
            {"name": "vec", "kind": "dense", "dim": 8},
        ],
        "extra": {"source": "unit test"},
    }


def test_schema_dict_round_trip():
    spec = _full_spec()

    schema = Schema.from_dict(spec)

    assert schema.to_dict() == spec


def test_schema_from_dict_fields():
    schema = Schema.from_dict(_full_spec())

    assert schema.field_names == ["city", "price", "history", "vec"]
    assert schema.label == "click"
    assert schema["city"].vocabulary.index_of("Rome") == 2
    assert schema["price"].std == 0.25
    assert schema["history"].separator == ";"
    assert schema["vec"].dim == 8
    assert schema.is_fitted()


def test_schema_unfitted_without_vocabulary():
    schema = Schema.from_dict({"fields": [{"name": "city", "kind": "categorical"}]})

    assert not schema.is_fitted()


def test_schema_duplicate_fields():
    spec = {"fields": [{"name": "city", "kind": "categorical"}, {"name": "city", "kind": "numeric"}]}

    with pytest.raises(SchemaError, match=r"field names must be unique.*'city', 'city'"):
        Schema.from_dict(spec)


def test_schema_unknown_kind():
    spec = {"fields": [{"name": "city", "kind": "text"}]}

    with pytest.raises(SchemaError, match=r"field 'city' has unknown kind 'text'; valid kinds: categorical"):
        Schema.from_dict(spec)


def test_schema_unknown_kind_direct():
    with pytest.raises(SchemaError, match="unknown kind 'text'"):
        Schema([Field("city", "text")])


def test_schema_label_is_field():
    spec = {"label": "city", "fields": [{"name": "city", "kind": "categorical"}]}

    with pytest.raises(SchemaError, match=r"the label column 'city' cannot also be a field"):
        Schema.from_dict(spec)


def test_schema_no_fields():
    with pytest.raises(SchemaError, match="at least one field"):
        Schema([])


def test_schema_field_without_kind():
    with pytest.raises(SchemaError, match=r"each field needs a 'name' and a 'kind'; got \{'name': 'city'\}"):
        Schema.from_dict({"fields": [{"name": "city"}]})


def test_schema_fields_not_list():
    with pytest.raises(SchemaError, match="'fields' list"):
        Schema.from_dict({"fields": "city"})


def test_schema_sequence_needs_max_length():
    with pytest.raises(SchemaError, match=r"sequence field 'history' needs 'max_length' >= 1"):
        Schema.from_dict({"fields": [{"name": "history", "kind": "sequence"}]})


def test_schema_dense_needs_dim():
    with pytest.raises(SchemaError, match=r"dense field 'vec' needs 'dim' >= 1"):
        Schema.from_dict({"fields": [{"name": "vec", "kind": "dense", "dim": 0}]})


def test_schema_missing_columns():
    frame = pd.DataFrame({"city": ["Berlin"], "label": [1]})
    spec = Schema([Field("city", "categorical"), Field("device", "categorical"), Field("age", "numeric")])

    with pytest.raises(SchemaError, match=r"the data has no column\(s\) 'device', 'age' that the schema needs"):
        fit_schema(frame, spec)


def test_schema_unknown_field_lookup():
    schema = Schema([Field("city", "categorical")])

    with pytest.raises(KeyError, match="no field named 'town'; fields: city"):
        schema["town"]


def test_fit_schema_keeps_given_vocabulary():
    existing = Vocabulary(["x"])
    spec = Schema([Field("city", "categorical", vocabulary=existing)])

    schema = fit_schema(pd.DataFrame({"city": ["a", "b"]}), spec)

    assert schema["city"].vocabulary.values == ["x"]


def test_fit_schema_min_count():
    frame = pd.DataFrame({"city": ["a", "a", "b"]})

    schema = fit_schema(frame, Schema([Field("city", "categorical")]), min_count=2)

    assert schema["city"].vocabulary.values == ["a"]


def test_decode_value_dense_preview():
    field = Field("vec", "dense", dim=6)

    assert decode_value(field, np.arange(6, dtype=np.float32)) == "[0, 1, 2, 3, …]"
