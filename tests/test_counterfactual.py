"""Counterfactual search: minimal changes against closed forms and exhaustive checks, constraints, budgets, seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import AD_CLICKS_DIR, REPO_ROOT
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.bundle import load_bundle
from workbench.counterfactual import (
    CounterfactualError,
    Goal,
    find_counterfactuals,
    goal_threshold,
    parse_goal,
)
from workbench.data import encode, load_dataset
from workbench.schema import Field, Schema, fit_schema
from workbench.whatif import apply_changes, forward_logits
from workbench.zoo import build_model

N_ROWS = 1_500


@pytest.fixture(scope="module")
def lr():
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_lr")
    data = load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.model.schema, max_rows=N_ROWS)
    return bundle.model, data


@pytest.fixture(scope="module")
def deepfm():
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_deepfm")
    data = load_dataset(AD_CLICKS_DIR / "test.parquet", bundle.model.schema, max_rows=N_ROWS)
    return bundle.model, data


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _logit(p):
    return float(np.log(p) - np.log1p(-p))


def _lr_single_gains(model, data, row, immutable, min_count=1):
    """Best logit gain per mutable field from the LR weights: slot(new value) - slot(current value)."""
    schema = model.schema
    sample = data.tensors(np.asarray([row]))
    with torch.no_grad():
        current = model.field_embedding(sample)[0, :, 0].double().numpy()
    gains = {}
    for index, field in enumerate(schema.fields):
        if field.name in immutable or field.kind not in ("categorical", "numeric"):
            continue
        if field.kind == "categorical":
            counts = np.asarray(field.vocabulary.counts)
            ids = np.arange(1, len(counts) + 1)
            ids = ids[(counts >= min_count) & (ids != int(sample[field.name][0]))]
            candidates = torch.from_numpy(ids)
        else:
            column = np.asarray(data.inputs[field.name], dtype=np.float64)
            points = np.unique(np.quantile(column, np.linspace(0.05, 0.95, 9), method="nearest").astype(np.float32))
            candidates = torch.from_numpy(points[~np.isclose(points, float(sample[field.name][0]), atol=1e-6)])
        batch = {name: x.repeat_interleave(len(candidates), dim=0) for name, x in sample.items()}
        batch[field.name] = candidates.to(batch[field.name].dtype)
        with torch.no_grad():
            slots = model.field_embedding(batch)[:, index, 0].double().numpy()
        gains[field.name] = (slots - current[index]).max()
    return gains


def _minimal_changes(gains, needed, max_changes):
    """Fewest fields whose best gains add up to ``needed`` (greedy is optimal for an additive model)."""
    total = 0.0
    for k, gain in enumerate(sorted(gains.values(), reverse=True)[:max_changes], start=1):
        if gain <= 0:
            return None
        total += gain
        if total >= needed:
            return k
    return None


# --- goals ----------------------------------------------------------------------------


def test_parse_goal_kinds():
    assert parse_goal("above:0.3") == Goal("above", 0.3)
    assert parse_goal("change:-0.05") == Goal("change", -0.05)
    assert parse_goal("rank_top:10") == Goal("rank_top", 10)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("above", "KIND:VALUE"),
        ("above:x", "not a number"),
        ("above:1.2", "strictly between 0 and 1"),
        ("below:0", "strictly between 0 and 1"),
        ("flip:1", "strictly between 0 and 1"),
        ("change:0", "non-zero"),
        ("rank_top:0", "integer >= 1"),
        ("rank_drop:2.5", "integer >= 1"),
        ("upwards:0.3", "unknown goal"),
    ],
)
def test_parse_goal_rejects(text, message):
    with pytest.raises(CounterfactualError, match=message):
        parse_goal(text)


def test_goal_threshold_closed_forms():
    others = np.asarray([0.9, 0.5, 0.7, 0.2])
    assert goal_threshold(Goal("above", 0.3), 0.1) == (0.3, "up")
    assert goal_threshold(Goal("below", 0.3), 0.5) == (0.3, "down")
    assert goal_threshold(Goal("flip", 0.5), 0.2) == (0.5, "up")
    assert goal_threshold(Goal("flip", 0.5), 0.7) == (0.5, "down")
    threshold, direction = goal_threshold(Goal("change", -0.1), 0.4)
    assert threshold == pytest.approx(0.3)
    assert direction == "down"
    # Rank 2 or better: reaching the 2nd highest other prediction (0.7) leaves only 0.9 above.
    assert goal_threshold(Goal("rank_top", 2), 0.1, others) == (0.7, "up")
    # Worse than rank 2: two others must be strictly above, so the prediction must fall below 0.7.
    threshold, direction = goal_threshold(Goal("rank_drop", 2), 0.95, others)
    assert threshold < 0.7
    assert threshold == pytest.approx(0.7)
    assert direction == "down"
    with pytest.raises(CounterfactualError, match="outside"):
        goal_threshold(Goal("change", 0.5), 0.6)
    with pytest.raises(CounterfactualError, match="only 5 rows"):
        goal_threshold(Goal("rank_top", 5), 0.1, others)


# --- minimality ------------------------------------------------------------------------


@pytest.mark.parametrize("needed", [0.5, 1.5, 2.5, 3.5])
def test_lr_fewest_changes_match_closed_form(lr, needed):
    model, data = lr
    immutable = ["user_id"]
    for row in (0, 7, 21):
        logit = float(forward_logits(model, data.tensors(np.asarray([row])))[0])
        threshold = float(_sigmoid(logit + needed))
        expected = _minimal_changes(_lr_single_gains(model, data, row, immutable), needed, max_changes=4)
        result = find_counterfactuals(model, data, row, Goal("above", threshold), immutable=immutable, max_changes=4)
        if expected is None:
            assert not result.found
            continue
        assert result.found, result.message
        assert result.counterfactuals[0].n_changes == expected
        for counterfactual in result.counterfactuals:
            assert counterfactual.prediction >= threshold - 1e-9
            assert "user_id" not in counterfactual.changed_fields


def test_lr_min_count_limits_values(lr):
    model, data = lr
    result = find_counterfactuals(model, data, 0, Goal("change", 0.1), min_count=500, n_counterfactuals=20)
    assert result.found
    counts = [change.training_count for cf in result.counterfactuals for change in cf.changes]
    assert min(count for count in counts if count is not None) >= 500


def test_position_is_decisive(deepfm):
    """The planted position effect (+0.9 at 1, -0.9 at 5) makes position -> 1 the one change that suffices."""
    model, data = deepfm
    raw = data.raw_values()
    rows = np.flatnonzero(raw["position"].to_numpy() == "5")[:5]
    assert rows.size == 5
    immutable = ["user_id", "item_id", "advertiser", "category", "site"]
    for row in rows:
        sample = data.tensors(np.asarray([row]))
        moved = forward_logits(model, apply_changes(model.schema, sample, {"position": "1"}))[0]
        logit = forward_logits(model, sample)[0]
        # Just below what moving to position 1 gives, so only that single change (or nothing single) reaches it.
        threshold = float(_sigmoid(logit + 0.95 * (moved - logit)))
        result = find_counterfactuals(model, data, int(row), Goal("above", threshold), immutable=immutable)
        singles = [cf for cf in result.counterfactuals if cf.n_changes == 1]
        assert [cf.changes[0].after for cf in singles if cf.changed_fields == ("position",)] == ["1"]
        assert all(cf.changed_fields == ("position",) for cf in singles)
        for counterfactual in result.counterfactuals:
            assert not set(counterfactual.changed_fields) & set(immutable)


def _reaches_with_one_change(model, data, row, immutable, threshold):
    """Exhaustively try every single substitution of the mutable categorical and numeric fields."""
    sample = data.tensors(np.asarray([row]))
    best = -np.inf
    for field in model.schema.fields:
        if field.name in immutable or field.kind not in ("categorical", "numeric"):
            continue
        if field.kind == "categorical":
            values = torch.arange(1, field.cardinality + 1)
        else:
            column = np.asarray(data.inputs[field.name], dtype=np.float64)
            values = torch.from_numpy(
                np.unique(np.quantile(column, np.linspace(0.05, 0.95, 9), method="nearest").astype(np.float32))
            )
        batch = {name: x.repeat_interleave(len(values), dim=0) for name, x in sample.items()}
        batch[field.name] = values.to(batch[field.name].dtype)
        best = max(best, float(forward_logits(model, batch).max()))
    return best >= _logit(threshold)


def test_immutable_position_needs_two_changes(deepfm):
    """Tablet rows in the morning: without position, +1.2 logit takes device and hour together (planted +1.0)."""
    model, data = deepfm
    raw = data.raw_values()
    morning = raw["hour"].isin(["05", "06", "07", "08"]).to_numpy()
    rows = np.flatnonzero((raw["device"].to_numpy() == "tablet") & morning)[:4]
    assert rows.size == 4
    immutable = ["position", "user_id", "item_id", "advertiser", "category", "site"]
    fewest_seen = []
    for row in rows:
        sample = data.tensors(np.asarray([row]))
        logit = float(forward_logits(model, sample)[0])
        threshold = float(_sigmoid(logit + 1.2))
        result = find_counterfactuals(model, data, int(row), Goal("above", threshold), immutable=immutable)
        assert result.found, result.message
        fewest = result.counterfactuals[0].n_changes
        fewest_seen.append(fewest)
        # The fewest is minimal: an exhaustive check of every single change agrees.
        assert _reaches_with_one_change(model, data, int(row), immutable, threshold) == (fewest == 1)
        if fewest == 2:
            pairs = [set(cf.changed_fields) for cf in result.counterfactuals if cf.n_changes == 2]
            assert {"device", "hour"} in pairs
        for counterfactual in result.counterfactuals:
            assert not set(counterfactual.changed_fields) & set(immutable)
            edited = apply_changes(
                model.schema, sample, {change.field: change.after for change in counterfactual.changes}
            )
            # The reported prediction is the model's prediction for the reported changes.
            reported = counterfactual.prediction
            assert float(_sigmoid(forward_logits(model, edited)[0])) == pytest.approx(reported, abs=1e-6)
    assert 2 in fewest_seen


def test_solutions_contain_no_smaller_solution(deepfm):
    model, data = deepfm
    result = find_counterfactuals(model, data, 3, "above:0.5", n_counterfactuals=10)
    sets = [frozenset((c.field, c.after) for c in cf.changes) for cf in result.counterfactuals]
    for first in sets:
        for second in sets:
            assert not (first < second)
    assert [cf.n_changes for cf in result.counterfactuals] == sorted(cf.n_changes for cf in result.counterfactuals)


# --- constraints -----------------------------------------------------------------------


def test_together_keeps_seen_pairs(deepfm):
    model, data = deepfm
    raw = data.raw_values()
    seen = set(zip(raw["item_id"], raw["category"], strict=True))
    result = find_counterfactuals(
        model, data, 5, Goal("change", 0.15), together={"item_id": ["category"]}, n_counterfactuals=10
    )
    assert result.found, result.message
    for counterfactual in result.counterfactuals:
        values = dict(raw.iloc[5])
        values.update({change.field: change.after for change in counterfactual.changes})
        if {"item_id", "category"} & set(counterfactual.changed_fields):
            assert (values["item_id"], values["category"]) in seen


def test_together_rejects_bad_links(lr):
    model, data = lr
    with pytest.raises(CounterfactualError, match="only categorical"):
        find_counterfactuals(model, data, 0, "above:0.5", together={"item_id": ["bid_price"]})
    with pytest.raises(CounterfactualError, match="unknown field"):
        find_counterfactuals(model, data, 0, "above:0.5", together=[("item_id", "colour")])
    with pytest.raises(CounterfactualError, match="itself"):
        find_counterfactuals(model, data, 0, "above:0.5", together=[("item_id", "item_id")])


def test_constraint_errors(lr):
    model, data = lr
    with pytest.raises(CounterfactualError, match="unknown field"):
        find_counterfactuals(model, data, 0, "above:0.5", immutable=["colour"])
    with pytest.raises(CounterfactualError, match="no field may change"):
        find_counterfactuals(model, data, 0, "above:0.5", immutable=model.schema.field_names)
    with pytest.raises(CounterfactualError, match="max_changes"):
        find_counterfactuals(model, data, 0, "above:0.5", max_changes=0)
    with pytest.raises(CounterfactualError, match="time_limit"):
        find_counterfactuals(model, data, 0, "above:0.5", time_limit=-1)
    with pytest.raises(IndexError, match="row must be"):
        find_counterfactuals(model, data, len(data), "above:0.5")


# --- messages, budgets, seeds ----------------------------------------------------------


def test_already_met_goal(lr):
    model, data = lr
    result = find_counterfactuals(model, data, 0, "above:0.0001")
    assert not result.found
    assert result.already_met
    assert "already meets" in result.message
    assert result.evaluations == 0


def test_impossible_goal_is_exhaustive(lr):
    model, data = lr
    result = find_counterfactuals(model, data, 0, "above:0.999", max_changes=1)
    assert not result.found
    assert result.exhaustive
    assert "No counterfactual exists" in result.message
    assert result.closest is not None
    assert result.closest.prediction < 0.999
    # Every allowed value of every mutable field was evaluated once.
    schema = model.schema
    expected = sum(f.cardinality - 1 for f in schema.fields if f.kind == "categorical")
    numeric = sum(1 for f in schema.fields if f.kind == "numeric")
    assert expected <= result.evaluations <= expected + 9 * numeric


def test_budget_stops_search(lr):
    model, data = lr
    result = find_counterfactuals(model, data, 0, "above:0.999", max_evaluations=50)
    assert result.stopped == "evaluations"
    assert result.evaluations == 50
    assert not result.exhaustive
    assert "budget of 50 evaluations" in result.message


def test_time_limit_stops_search(lr):
    model, data = lr
    result = find_counterfactuals(model, data, 0, "above:0.999", max_changes=3, time_limit=1e-9)
    assert result.stopped == "time"
    assert "time limit" in result.message


def test_rank_goal_reaches_rank(deepfm):
    model, data = deepfm
    cohort = np.arange(200)
    row = 11
    result = find_counterfactuals(model, data, row, Goal("rank_top", 20), cohort_rows=cohort)
    assert result.found, result.message
    others = _sigmoid(forward_logits(model, data.tensors(cohort[cohort != row])))
    prediction = result.counterfactuals[0].prediction
    assert 1 + int(np.sum(others > prediction)) <= 20
    assert result.counterfactuals[0].rank == 1 + int(np.sum(others > prediction))
    assert result.to_frame()["rank_after"].iloc[0] == result.counterfactuals[0].rank
    assert result.parameters["rank_before"] == 1 + int(np.sum(others > result.prediction_before))


def _wide_model(n_fields=18):
    """A DeepFM on 18 random categorical fields, so the field order comes from sampled Shapley values."""
    generator = np.random.default_rng(3)
    frame = pd.DataFrame({f"f{i}": generator.integers(0, 6, 400).astype(str) for i in range(n_fields)})
    frame["label"] = generator.integers(0, 2, 400)
    schema = fit_schema(frame, Schema([Field(f"f{i}", "categorical") for i in range(n_fields)]))
    torch.manual_seed(0)
    model = build_model("deepfm", schema, embedding_dim=4, hidden_units=[8], dropout=0.0)
    return model, encode(frame, schema)


def test_seed_reproducible_with_sampled_order():
    model, data = _wide_model()
    first = find_counterfactuals(model, data, 0, Goal("change", 0.02), random_state=5, max_changes=2)
    second = find_counterfactuals(model, data, 0, Goal("change", 0.02), random_state=5, max_changes=2)
    assert first.parameters["attribution_method"] == "permutation_shapley"
    assert first.field_order == second.field_order
    pd.testing.assert_frame_equal(first.to_frame(), second.to_frame())
    pd.testing.assert_frame_equal(first.single_changes, second.single_changes)


def test_to_frame_lines(deepfm):
    model, data = deepfm
    result = find_counterfactuals(model, data, 3, "above:0.5", n_counterfactuals=3)
    frame = result.to_frame()
    assert len(frame) == sum(cf.n_changes for cf in result.counterfactuals)
    assert sorted(frame["counterfactual"].unique().tolist()) == [1, 2, 3]
    assert (frame["value_before"] != frame["value_after"]).all()


def test_linked_fields_change_together(deepfm):
    """With item and category linked, a new category comes with an item of that category."""
    model, data = deepfm
    raw = data.raw_values()
    seen = set(zip(raw["item_id"], raw["category"], strict=True))
    immutable = [name for name in model.schema.field_names if name not in ("item_id", "category")]
    result = find_counterfactuals(
        model, data, 0, Goal("change", 0.02), immutable=immutable, together={"item_id": ["category"]},
        max_changes=2, n_counterfactuals=10,
    )  # fmt: skip
    assert result.found, result.message
    both = [cf for cf in result.counterfactuals if set(cf.changed_fields) == {"item_id", "category"}]
    assert both
    for counterfactual in result.counterfactuals:
        values = dict(raw.iloc[0])
        values.update({change.field: change.after for change in counterfactual.changes})
        assert (values["item_id"], values["category"]) in seen
    # The category alone never changes: the row's item was seen with its own category only.
    assert all(cf.changed_fields != ("category",) for cf in result.counterfactuals)


def test_results_are_distinct(deepfm):
    model, data = deepfm
    for goal in ("above:0.5", "flip:0.3"):
        result = find_counterfactuals(model, data, 3, goal, n_counterfactuals=10)
        keys = [frozenset((change.field, change.after) for change in cf.changes) for cf in result.counterfactuals]
        assert len(keys) == len(set(keys))


def test_unreachable_change_goal_returns_message(lr):
    model, data = lr
    result = find_counterfactuals(model, data, 0, Goal("change", 0.99))
    assert not result.found
    assert "outside (0, 1)" in result.message
    assert result.evaluations == 0


def test_no_allowed_value_message(lr):
    model, data = lr
    numeric = [f.name for f in model.schema.fields if f.kind == "numeric"]
    result = find_counterfactuals(model, data, 0, "above:0.9", min_count=10**9, immutable=numeric)
    assert not result.found
    assert "seen at least 1,000,000,000 times" in result.message
    assert result.evaluations == 0


def test_single_changes_respect_links(deepfm):
    """A new category alone breaks the item-category link, so it is not a best single change."""
    model, data = deepfm
    result = find_counterfactuals(model, data, 0, Goal("change", 0.02), together={"item_id": ["category"]})
    raw = data.raw_values()
    seen = set(zip(raw["item_id"], raw["category"], strict=True))
    for line in result.single_changes.itertuples():
        values = dict(raw.iloc[0])
        values[line.field] = line.value
        assert (values["item_id"], values["category"]) in seen


def test_already_met_rank_message(deepfm):
    model, data = deepfm
    # Rank worse than 1: every row but the single highest of the cohort meets it already.
    result = find_counterfactuals(model, data, 0, Goal("rank_drop", 1), cohort_rows=np.arange(300))
    assert result.parameters["rank_before"] > 1
    assert result.already_met
    assert f"already meets the goal: its rank is {result.parameters['rank_before']:,} of 300" in result.message


def test_cohort_rows_checked(lr):
    model, data = lr
    with pytest.raises(CounterfactualError, match="cohort_rows must lie"):
        find_counterfactuals(model, data, 0, "above:0.3", cohort_rows=[len(data)])
    with pytest.raises(CounterfactualError, match="only row 3 itself"):
        find_counterfactuals(model, data, 3, "rank_top:1", cohort_rows=[3])
