"""Cohorts: each condition selects exactly the rows a direct computation selects, and bad definitions fail clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import AD_CLICKS_DIR, REPO_ROOT

from workbench.bundle import load_bundle
from workbench.cohorts import (
    Cohort,
    CohortError,
    frequency_buckets,
    load_cohorts,
    parse_cohort,
    restrict,
    save_cohorts,
    select_rows,
    value_options,
)
from workbench.data import load_dataset
from workbench.metrics import sigmoid
from workbench.schema import OOV_TOKEN
from workbench.training import predict_logits

N_ROWS = 4_000


@pytest.fixture(scope="module")
def loaded():
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_deepfm")
    dataset = load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.schema, max_rows=N_ROWS)
    return bundle, dataset, predict_logits(bundle.model, dataset)


def test_everything_cohort_keeps_all_rows(loaded):
    _, dataset, _ = loaded
    cohort = Cohort()
    assert cohort.is_everything
    assert select_rows(cohort, dataset).tolist() == list(range(N_ROWS))


def test_values_and_label(loaded):
    _, dataset, _ = loaded
    cohort = Cohort(name="mobile or tablet clicks", values={"device": ["mobile", "tablet"]}, label=1)
    expected = np.flatnonzero(dataset.raw["device"].isin(["mobile", "tablet"]).to_numpy() & (dataset.labels == 1))
    assert expected.size > 0
    assert select_rows(cohort, dataset).tolist() == expected.tolist()


def test_numeric_range(loaded):
    _, dataset, _ = loaded
    cohort = Cohort(name="cheap bids", ranges={"bid_price": (0.0, 1.0)})
    raw = dataset.raw["bid_price"].astype(float).to_numpy()
    expected = np.flatnonzero((raw >= 0.0) & (raw <= 1.0))
    selected = select_rows(cohort, dataset)
    assert selected.tolist() == expected.tolist()
    assert 0 < selected.size < N_ROWS


def test_score_range_and_correctness(loaded):
    _, dataset, logits = loaded
    scores = sigmoid(logits)
    low, high = np.quantile(scores, [0.25, 0.75])
    cohort = Cohort(name="middle half", score_range=(low, high))
    assert cohort.needs_scores
    expected = np.flatnonzero((scores >= low) & (scores <= high))
    assert select_rows(cohort, dataset, logits=logits).tolist() == expected.tolist()

    wrong = Cohort(name="wrong", correct=False, threshold=0.3)
    predicted = scores >= 0.3
    expected_wrong = np.flatnonzero(predicted != (dataset.labels == 1))
    assert select_rows(wrong, dataset, logits=logits).tolist() == expected_wrong.tolist()
    right = select_rows(Cohort(name="right", correct=True, threshold=0.3), dataset, logits=logits)
    assert right.size + expected_wrong.size == N_ROWS

    with pytest.raises(CohortError, match="needs the model's logits"):
        select_rows(cohort, dataset)


def test_oov_presence(loaded):
    _, dataset, _ = loaded
    vocabulary = dataset.schema["item_id"].vocabulary
    oov_items = dataset.inputs["item_id"] == vocabulary.oov_index
    with_oov = select_rows(Cohort(name="new items", oov="with", oov_fields=("item_id",)), dataset, allow_empty=True)
    assert with_oov.tolist() == np.flatnonzero(oov_items).tolist()
    without = select_rows(Cohort(name="known items", oov="without", oov_fields=("item_id",)), dataset)
    assert without.size == N_ROWS - with_oov.size
    # With no fields named, any categorical or sequence field counts.
    anywhere = select_rows(Cohort(name="any OOV", oov="with"), dataset, allow_empty=True)
    assert set(with_oov) <= set(anywhere)
    by_value = select_rows(Cohort(name="OOV item", values={"item_id": [OOV_TOKEN]}), dataset, allow_empty=True)
    assert by_value.tolist() == with_oov.tolist()


def test_frequency_buckets_split_training_mass(loaded):
    bundle, dataset, _ = loaded
    f = bundle.schema["item_id"]
    buckets = frequency_buckets(f)
    counts = np.asarray(f.vocabulary.counts, dtype=float)
    share = {name: counts[buckets[1:-1] == name].sum() / counts.sum() for name in ("head", "torso", "tail")}
    # The head stops at the value that crosses 50 % of training occurrences, the torso at 80 %.
    assert share["head"] >= 0.5
    assert share["head"] + share["torso"] >= 0.8
    assert share["tail"] > 0
    head_counts = counts[buckets[1:-1] == "head"]
    tail_counts = counts[buckets[1:-1] == "tail"]
    assert head_counts.min() >= tail_counts.max()
    assert buckets[f.vocabulary.oov_index] == "tail"

    cohort = Cohort(name="tail items", frequency_field="item_id", frequency_buckets=("tail",))
    expected = np.flatnonzero(buckets[dataset.inputs["item_id"]] == "tail")
    assert select_rows(cohort, dataset).tolist() == expected.tolist()


def test_restrict_keeps_rows_and_source_numbers(loaded):
    _, dataset, _ = loaded
    rows = select_rows(Cohort(name="mobile", values={"device": ["mobile"]}), dataset)
    subset = restrict(dataset, rows)
    assert len(subset) == rows.size
    assert subset.source_rows.tolist() == rows.tolist()
    assert (subset.inputs["city"] == dataset.inputs["city"][rows]).all()
    assert (subset.raw["device"] == "mobile").all()
    again = restrict(subset, np.array([0, 2]))
    assert again.source_rows.tolist() == rows[[0, 2]].tolist()


def test_json_round_trip(tmp_path):
    cohort = Cohort(
        name="evening tail",
        values={"hour": ["18", "19"]},
        ranges={"bid_price": (0.5, 2.0)},
        score_range=(0.1, 0.9),
        label=0,
        correct=True,
        threshold=0.2,
        oov="without",
        frequency_field="item_id",
        frequency_buckets=("tail", "torso"),
    )
    assert Cohort.from_dict(json.loads(json.dumps(cohort.to_dict()))) == cohort
    path = tmp_path / "cohort.json"
    path.write_text(json.dumps(cohort.to_dict()))
    assert parse_cohort(str(path)) == cohort
    assert parse_cohort(json.dumps(cohort.to_dict())) == cohort
    assert load_cohorts(save_cohorts([cohort, Cohort()])) == [cohort, Cohort()]
    assert "hour ∈ {18, 19}" in cohort.describe()
    assert "label = 0" in cohort.describe()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": ""}, "non-empty name"),
        ({"name": "a", "values": {"device": []}}, "lists no values"),
        ({"name": "a", "values": {"device": "mobile"}}, "must be a list of raw values"),
        ({"name": "a", "ranges": {"bid_price": [2, 1]}}, "range of 'bid_price' is empty"),
        ({"name": "a", "score_range": [0.5, 1.5]}, "0 <= low <= high <= 1"),
        ({"name": "a", "label": 2}, "label must be 0, 1 or None"),
        ({"name": "a", "label": True}, "label must be 0, 1 or null"),
        ({"name": "a", "correct": "yes"}, "'correct' must be true, false or null"),
        ({"name": "a", "oov": "some"}, "oov must be one of any, with, without"),
        ({"name": "a", "frequency_field": "item_id", "frequency_buckets": ["middle"]}, "unknown frequency bucket"),
        ({"name": "a", "frequency_field": "item_id"}, "together"),
        ({"name": "a", "devices": ["x"]}, r"unknown cohort key\(s\) \['devices'\]"),
    ],
)
def test_invalid_definitions(spec, message):
    with pytest.raises(CohortError, match=message):
        Cohort.from_dict(spec)


def test_conditions_that_do_not_fit_the_schema(loaded):
    _, dataset, _ = loaded
    with pytest.raises(CohortError, match="unknown field 'devise'"):
        select_rows(Cohort(name="a", values={"devise": ["mobile"]}), dataset)
    with pytest.raises(CohortError, match="value conditions need a categorical field; 'bid_price' is numeric"):
        select_rows(Cohort(name="a", values={"bid_price": ["1"]}), dataset)
    with pytest.raises(CohortError, match="no value\\(s\\) 'phone'"):
        select_rows(Cohort(name="a", values={"device": ["phone"]}), dataset)
    with pytest.raises(CohortError, match="frequency conditions need a categorical field"):
        select_rows(Cohort(name="a", frequency_field="user_age", frequency_buckets=("head",)), dataset)
    with pytest.raises(CohortError, match="matches none of the 4,000 rows"):
        select_rows(Cohort(name="none", values={"device": ["mobile"]}, ranges={"bid_price": (1e6, 1e7)}), dataset)
    assert select_rows(Cohort(name="none", ranges={"bid_price": (1e6, 1e7)}), dataset, allow_empty=True).size == 0


def test_parse_errors(tmp_path):
    with pytest.raises(CohortError, match="neither JSON text nor an existing JSON file"):
        parse_cohort(str(tmp_path / "missing.json"))
    with pytest.raises(CohortError, match="not valid JSON"):
        parse_cohort("{name: x}")
    with pytest.raises(CohortError, match="must contain a JSON list"):
        load_cohorts('{"name": "x"}')
    with pytest.raises(CohortError, match="repeated: x"):
        load_cohorts('[{"name": "x"}, {"name": "x", "label": 1}]')


def test_value_options_count_rows(loaded):
    _, dataset, _ = loaded
    options = dict(value_options(dataset, "device"))
    assert options == dataset.raw["device"].value_counts().to_dict()


def test_parse_cohort_from_list_file(tmp_path):
    mobile = Cohort(name="mobile", values={"device": ["mobile"]})
    clicks = Cohort(name="clicks", label=1)
    both = tmp_path / "cohorts.json"
    both.write_text(save_cohorts([mobile, clicks]))
    assert parse_cohort(f"{both}#clicks") == clicks
    assert parse_cohort(f"{both}#mobile") == mobile
    with pytest.raises(CohortError, match="holds 2 cohorts \\(mobile, clicks\\); pick one with FILE#NAME"):
        parse_cohort(str(both))
    with pytest.raises(CohortError, match="no cohort named 'tablets'"):
        parse_cohort(f"{both}#tablets")
    single = tmp_path / "single.json"
    single.write_text(save_cohorts([clicks]))
    assert parse_cohort(str(single)) == clicks
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(mobile.to_dict()))
    with pytest.raises(CohortError, match="holds a single cohort"):
        parse_cohort(f"{plain}#mobile")
