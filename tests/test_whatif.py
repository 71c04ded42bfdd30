"""What-if edits: encoded changes equal hand-built inputs, and both attributions equal separate explanations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import AD_CLICKS_DIR, REPO_ROOT
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain import explain
from workbench.sequence_edits import drop_behaviours
from workbench.whatif import apply_changes, compare, encode_change, value_choices, what_if


@pytest.fixture(scope="module")
def deepfm():
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_deepfm")
    return bundle.model, load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.model.schema, max_rows=300)


@pytest.fixture(scope="module")
def din():
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_din")
    return bundle.model, load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.model.schema, max_rows=300)


def test_value_choices_by_training_count(deepfm):
    model, _ = deepfm
    field = model.schema["device"]
    choices = value_choices(field)
    assert choices["training_count"].tolist() == sorted(field.vocabulary.counts, reverse=True)
    for value, index, count in choices.itertuples(index=False):
        assert field.vocabulary.index_of(value) == index
        assert field.vocabulary.counts[index - 1] == count
    rare = value_choices(model.schema["user_id"], min_count=100)
    assert (rare["training_count"] >= 100).all()
    assert len(rare) < model.schema["user_id"].cardinality


def test_encode_change_by_kind(deepfm):
    model, _ = deepfm
    schema = model.schema
    assert encode_change(schema["device"], "mobile").tolist() == [schema["device"].vocabulary.index_of("mobile")]
    assert encode_change(schema["device"], "<OOV>").tolist() == [schema["device"].vocabulary.oov_index]
    bid = schema["bid_price"]
    assert encode_change(bid, "1.5")[0] == pytest.approx((1.5 - bid.mean) / bid.std, rel=1e-6)
    history = schema["history_categories"]
    encoded = encode_change(history, ["sports", "travel"])
    assert encoded.shape == (1, history.max_length)
    assert history.vocabulary.decode(encoded[0, :2]) == ["sports", "travel"]
    assert (encoded[0, 2:] == 0).all()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("device", "fridge", "not a known value"),
        ("bid_price", "cheap", "not a number"),
        ("bid_price", float("nan"), "finite"),
        ("history_categories", ["sports", "knitting"], "'knitting' is not in its vocabulary"),
        ("history_categories", "sports,travel", "items are joined by '|'"),
        ("history_categories", 5, "needs a list of items"),
        ("bid_price", True, "boolean"),
        ("bid_price", 1e9, "standard deviations from the training mean"),
    ],
)
def test_encode_change_rejects(deepfm, field, value, message):
    model, _ = deepfm
    with pytest.raises(ValueError, match=message):
        encode_change(model.schema[field], value)


def test_apply_changes_unknown_field(deepfm):
    model, data = deepfm
    with pytest.raises(ValueError, match="no field named 'colour'"):
        apply_changes(model.schema, data.tensors(np.asarray([0])), {"colour": "red"})
    with pytest.raises(TypeError, match="must map field names"):
        apply_changes(model.schema, data.tensors(np.asarray([0])), [("os", "ios")])


def test_what_if_matches_hand_edit(deepfm):
    model, data = deepfm
    row = 4
    hour = "03" if data.raw_values([row]).iloc[0]["hour"] != "03" else "04"
    position = "1" if data.raw_values([row]).iloc[0]["position"] != "1" else "2"
    result = what_if(model, data, row, {"position": position, "hour": hour})
    inputs = data.tensors(np.asarray([row]))
    hand = dict(inputs)
    hand["position"] = torch.tensor([model.schema["position"].vocabulary.index_of(position)])
    hand["hour"] = torch.tensor([model.schema["hour"].vocabulary.index_of(hour)])
    model.eval()
    with torch.no_grad():
        assert result.logit_before == pytest.approx(float(model(inputs)[0]), abs=1e-6)
        assert result.logit_after == pytest.approx(float(model(hand)[0]), abs=1e-6)
    assert result.delta == pytest.approx(result.prediction_after - result.prediction_before)
    assert result.changed_fields == ["hour", "position"]


def test_what_if_attributions_equal_separate_explain(deepfm):
    model, data = deepfm
    row = 9
    result = what_if(model, data, row, {"device": "desktop"}, method="exact_shapley", baseline="zero")
    before = explain(model, data, [row], method="exact_shapley", baseline="zero")
    after_inputs = apply_changes(model.schema, data.tensors(np.asarray([row])), {"device": "desktop"})
    after = explain(model, after_inputs, None, method="exact_shapley", baseline="zero")
    np.testing.assert_allclose(result.before.values, before.values, atol=1e-6)
    np.testing.assert_allclose(result.after.values, after.values, atol=1e-6)
    # Exact Shapley values are efficient: they add up to prediction - base value, before and after.
    for attribution in (result.before, result.after):
        gap = attribution.values.sum() - (attribution.predictions[0] - attribution.base_values[0])
        assert abs(gap) < 1e-4
    assert result.after.predictions[0] == pytest.approx(result.logit_after, abs=1e-6)
    frame = result.comparison_frame()
    assert frame.loc[frame["changed"], "field"].tolist() == ["device"]
    assert frame.set_index("field").loc["device", "value_after"] == "desktop"
    assert result.after.rows.tolist() == [row]


def test_what_if_grouped_players(deepfm):
    model, data = deepfm
    groups = {
        "user": ["user_id", "gender", "user_age", "history_categories"],
        "context": ["device", "os", "city", "site", "hour", "weekday", "position"],
        "ad": ["item_id", "advertiser", "category", "bid_price"],
    }
    os_value = "linux" if data.raw_values([2]).iloc[0]["os"] != "linux" else "ios"
    result = what_if(model, data, 2, {"os": os_value}, method="exact_shapley", players=groups)
    assert result.before.field_names == ("user", "context", "ad")
    frame = result.comparison_frame()
    assert frame["changed"].tolist() == [False, True, False]
    assert f"os={os_value}" in frame.set_index("field").loc["context", "value_after"]


def test_what_if_without_method(deepfm):
    model, data = deepfm
    result = what_if(model, data, 0, {"weekday": "Sun"}, method=None)
    assert result.before is None
    assert result.comparison_frame().loc[lambda f: f["changed"], "field"].tolist() == (
        [] if data.raw_values([0]).iloc[0]["weekday"] == "Sun" else ["weekday"]
    )


def test_what_if_row_out_of_range(deepfm):
    model, data = deepfm
    with pytest.raises(IndexError, match="row must be"):
        what_if(model, data, len(data), {"os": "ios"})


def test_compare_sequence_edit(din):
    model, data = din
    row = int(np.flatnonzero((data.inputs["history_categories"] != 0).sum(axis=1) >= 3)[0])
    before = data.tensors(np.asarray([row]))
    after = drop_behaviours(model, before, [0])
    result = compare(model, before, after, row=row, method="exact_shapley")
    assert result.changed_fields == ["history_categories"]
    model.eval()
    with torch.no_grad():
        assert result.logit_after == pytest.approx(float(model(after)[0]), abs=1e-6)
    assert result.after.values.sum() == pytest.approx(result.after.predictions[0] - result.after.base_values[0], abs=1e-4)


def test_compare_rejects_many_rows(deepfm):
    model, data = deepfm
    with pytest.raises(ValueError, match="exactly one row"):
        compare(model, data.tensors(np.asarray([0, 1])), data.tensors(np.asarray([0])))
