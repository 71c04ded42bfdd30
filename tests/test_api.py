"""The one interface: method registry, dispatch against direct calls, error texts, model mode, groups and spaces.

Also tests the summaries the CLI and the app show (top pairs, pair examples,
per-value effects, comparison of two importances).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from helpers import synthetic_splits
from test_game import scrambled_model
from workbench.explain import api, summaries
from workbench.explain.api import (
    METHODS,
    background_sample,
    check_method_name,
    explain,
    groups_from_json,
    interactions,
    method_names,
    register_method,
)
from workbench.explain.exact import exact_indices, indices_from_values
from workbench.explain.game import EmbeddingGame, all_coalitions
from workbench.explain.integrated_gradients import integrated_gradients
from workbench.explain.result import Attribution
from workbench.schema import Field, Schema, Vocabulary
from workbench.zoo import build_model

ROWS = np.array([3, 0, 17, 8, 11])
GROUPS = {"place": ["city", "device"], "person": ["age", "history"], "vector": ["vec"]}
UNSUPPORTED = [
    ("IntegratedGradients", "interpolate between integer ids"),
    ("captum.attr.NoiseTunnel", "noisy integer ids"),
    ("noise_tunnel", "noisy integer ids"),
    ("LayerConductance", "interpolates the model inputs"),
    ("LayerGradientShap", "random points between baseline and sample"),
    ("shap.DeepExplainer", "DeepExplainer propagates gradients"),
    ("GradientExplainer", "GradientExplainer averages gradients"),
]


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=400, n_valid=10, n_test=40, seed=5)


@pytest.fixture(scope="module")
def dataset(splits):
    return splits.test


@pytest.fixture(scope="module")
def model(splits):
    return scrambled_model("deepfm", splits.schema, seed=3)


def wide_model(n_fields: int = 17):
    """An LR over ``n_fields`` categorical fields, more than ``method="auto"`` computes exactly."""
    schema = Schema([Field(f"f{i}", "categorical", vocabulary=Vocabulary(["a", "b"])) for i in range(n_fields)])
    torch.manual_seed(0)
    model = build_model("lr", schema)
    inputs = {f"f{i}": torch.randint(0, 4, (3,)) for i in range(n_fields)}
    return model, inputs


def assert_same_attribution(actual: Attribution, expected: Attribution) -> None:
    np.testing.assert_allclose(actual.values, expected.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(actual.base_values, expected.base_values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(actual.predictions, expected.predictions, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(actual.rows, expected.rows)
    assert actual.field_names == expected.field_names


# --- registry ---------------------------------------------------------------------


def test_registry_lists_methods():
    assert list(METHODS) == [
        "integrated_gradients",
        "exact_shapley",
        "exact_banzhaf",
        "permutation_shapley",
        "kernel_shap",
        "captum_feature_ablation",
        "captum_shapley_sampling",
    ]
    assert [name for name, entry in METHODS.items() if entry.sampled] == [
        "permutation_shapley",
        "kernel_shap",
        "captum_shapley_sampling",
    ]
    assert method_names(include_auto=True) == ["auto", *METHODS]
    assert METHODS["integrated_gradients"].baselines == ("zero", "oov")
    assert METHODS["integrated_gradients"].output_spaces == ("logit",)
    assert METHODS["exact_shapley"].baselines == ("zero", "pad", "oov", "mean", "expectation")
    assert METHODS["exact_banzhaf"].efficient is False
    assert METHODS["captum_feature_ablation"].efficient is False


def test_registered_method_dispatches(monkeypatch, model, dataset):
    """A sampled method registers with one call and receives the shared keywords plus its own options."""
    monkeypatch.setattr(api, "METHODS", dict(api.METHODS))
    calls = []

    def fake_sampler(model, data, rows, *, baseline, players, output_space, background, chunk_size, progress,
                     budget=100, random_state=None):
        calls.append({"baseline": baseline, "budget": budget, "random_state": random_state, "chunk": chunk_size})
        exact = api.METHODS["exact_shapley"].function(
            model, data, rows, baseline=baseline, players=players, output_space=output_space,
            background=background, chunk_size=chunk_size, progress=progress,
        )
        return Attribution(**{**exact.__dict__, "method": "fake", "standard_errors": np.zeros_like(exact.values)})

    register_method("fake", fake_sampler, "test double", sampled=True, options=("budget", "random_state"))
    result = explain(model, dataset, ROWS, method="fake", baseline="oov", budget=7, random_state=1, chunk_size=64)

    assert calls == [{"baseline": "oov", "budget": 7, "random_state": 1, "chunk": 64}]
    assert result.standard_errors is not None
    with pytest.raises(ValueError, match="method 'fake' has no option n_steps; its options: budget, random_state"):
        explain(model, dataset, ROWS, method="fake", n_steps=3)


@pytest.mark.parametrize("name", ["auto", "exact_shapley"])
def test_register_rejects_taken_names(name):
    with pytest.raises(ValueError, match=f"the method name '{name}' is already taken"):
        register_method(name, lambda *args, **kwargs: None, "x")


def test_register_rejects_unknown_baseline():
    with pytest.raises(ValueError, match="lists unknown baselines or output spaces: median"):
        register_method("new_method", lambda *args, **kwargs: None, "x", baselines=("zero", "median"))
    assert "new_method" not in METHODS


# --- dispatch equals direct calls -----------------------------------------------


def test_integrated_gradients_dispatch(model, dataset):
    direct = integrated_gradients(model, dataset, ROWS, baseline="oov", n_steps=16, batch_size=2)
    dispatched = explain(model, dataset, ROWS, method="integrated_gradients", baseline="oov", n_steps=16, batch_size=2)

    assert_same_attribution(dispatched, direct)
    assert dispatched.method == "integrated_gradients"
    assert dispatched.parameters["n_steps"] == 16


@pytest.mark.parametrize("baseline", ["zero", "pad", "oov"])
def test_exact_shapley_dispatch(model, dataset, baseline):
    direct = exact_indices(model, dataset, ROWS, baseline=baseline).shapley
    dispatched = explain(model, dataset, ROWS, method="exact_shapley", baseline=baseline)

    assert_same_attribution(dispatched, direct)
    assert dispatched.method == "exact_shapley"
    pd.testing.assert_frame_equal(dispatched.raw_values, direct.raw_values)


def test_exact_banzhaf_says_not_efficient(model, dataset):
    direct = exact_indices(model, dataset, ROWS).banzhaf
    dispatched = explain(model, dataset, ROWS, method="exact_banzhaf")

    np.testing.assert_allclose(dispatched.values, direct.main_effects, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dispatched.predictions, direct.predictions, rtol=0, atol=1e-12)
    assert dispatched.method == "exact_banzhaf"
    assert dispatched.parameters["efficient"] is False
    assert "not efficient" in dispatched.parameters["note"]
    assert dispatched.completeness_gap.max() > 1e-6


@pytest.mark.parametrize("index", ["SII", "STII", "FSII", "BII"])
def test_interactions_dispatch(model, dataset, index):
    direct = exact_indices(model, dataset, ROWS).interactions[index]
    dispatched = interactions(model, dataset, ROWS, index=index.lower())

    assert dispatched.index == index
    np.testing.assert_allclose(dispatched.main_effects, direct.main_effects, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dispatched.pairs, direct.pairs, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(dispatched.rows, ROWS)


def test_auto_uses_exact_shapley(model, dataset):
    auto = explain(model, dataset, ROWS, method="auto")

    assert_same_attribution(auto, exact_indices(model, dataset, ROWS).shapley)
    assert auto.method == "exact_shapley"
    assert auto.parameters["requested_method"] == "auto"


def test_auto_above_16_players_samples():
    model, inputs = wide_model(17)

    result = explain(model, inputs, method="auto", budget=400, random_state=0)

    assert result.method == "permutation_shapley"
    assert result.standard_errors is not None
    np.testing.assert_allclose(result.values.sum(axis=1), result.predictions - result.base_values, atol=1e-6)


def test_auto_above_16_without_sampler_suggests_groups(monkeypatch):
    model, inputs = wide_model(17)
    monkeypatch.setattr(api, "METHODS", {k: v for k, v in api.METHODS.items() if k != api.AUTO_SAMPLED_METHOD})

    with pytest.raises(ValueError, match=r"at most 16 players, and there are 17") as caught:
        explain(model, inputs, method="auto")
    assert "players={group: [fields]}" in str(caught.value)
    assert "no sampled Shapley method is registered yet" in str(caught.value)


def test_auto_groups_bring_players_under_16():
    model, inputs = wide_model(17)
    groups = {"first": [f"f{i}" for i in range(9)], "second": [f"f{i}" for i in range(9, 17)]}

    result = explain(model, inputs, method="auto", players=groups)

    assert result.field_names == ("first", "second")
    np.testing.assert_allclose(result.values.sum(axis=1), result.predictions - result.base_values, atol=1e-6)


# --- error texts -----------------------------------------------------------------


def test_unknown_method_lists_valid_names(model, dataset):
    with pytest.raises(ValueError) as caught:
        explain(model, dataset, ROWS, method="lime")
    message = str(caught.value)

    assert "unknown method 'lime'" in message
    assert "valid: auto, integrated_gradients, exact_shapley, exact_banzhaf" in message


@pytest.mark.parametrize(("name", "reason"), UNSUPPORTED)
def test_id_methods_rejected_with_reason(model, dataset, name, reason):
    with pytest.raises(ValueError) as caught:
        explain(model, dataset, ROWS, method=name)
    message = str(caught.value)

    assert f"method {name!r} is not offered" in message
    assert reason in message
    assert "method='integrated_gradients'" in message


def test_check_method_name_accepts_registered():
    for name in method_names(include_auto=True):
        assert check_method_name(name) == name
    with pytest.raises(TypeError, match="method must be a method name"):
        check_method_name(3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"baseline": "median"}, "unknown baseline 'median'; valid: zero, pad, oov, mean, expectation"),
        ({"output_space": "odds"}, "unknown output_space 'odds'; valid: logit, probability"),
        (
            {"method": "integrated_gradients", "baseline": "mean"},
            "method 'integrated_gradients' supports the baselines zero, oov; got 'mean'",
        ),
        (
            {"method": "integrated_gradients", "output_space": "probability"},
            "method 'integrated_gradients' works in logit space only; got output_space='probability'. "
            "Methods for 'probability': exact_shapley, exact_banzhaf",
        ),
        ({"method": "exact_shapley", "n_steps": 5}, "has no option n_steps; its options: max_players"),
        ({"method": "exact_shapley", "baseline": "mean"}, "baseline 'mean' needs background rows"),
        ({"method": "exact_shapley", "players": {"a": ["city"]}}, "fields missing from the groups"),
    ],
)
def test_explain_errors(model, dataset, options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        explain(model, dataset, ROWS, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"index": "XII"}, "unknown index 'XII'; valid: SII, STII, FSII, BII"),
        ({"method": "sampled"}, "unknown method 'sampled'; valid: exact"),
        ({"baseline": "median"}, "unknown baseline 'median'"),
        ({"output_space": "odds"}, "unknown output_space 'odds'"),
        ({"n_steps": 4}, "method 'exact' has no option n_steps; its options: max_players"),
        ({"baseline": "expectation"}, "baseline 'expectation' needs background rows"),
    ],
)
def test_interactions_errors(model, dataset, options, message):
    with pytest.raises(ValueError, match=message):
        interactions(model, dataset, ROWS, **options)


def test_integrated_gradients_needs_dataset(model, dataset):
    with pytest.raises(TypeError, match="needs a CTRDataset"):
        explain(model, dataset.tensors(ROWS), method="integrated_gradients")


# --- the caller's model mode ---------------------------------------------------


def _modes(model: torch.nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
def test_explain_restores_mode(splits, dataset, method, mode):
    model = scrambled_model("deepfm", splits.schema, seed=3)
    model.train(mode != "eval")
    if mode == "mixed":
        model.field_embedding.eval()
    before = _modes(model)

    explain(model, dataset, ROWS, method=method)

    assert _modes(model) == before


@pytest.mark.parametrize("method", list(METHODS))
def test_explain_restores_mode_after_error(splits, dataset, method):
    model = scrambled_model("deepfm", splits.schema, seed=3).train()

    def fail(fraction: float) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        explain(model, dataset, ROWS, method=method, progress=fail)

    assert all(_modes(model))


def test_interactions_restore_mode(splits, dataset):
    model = scrambled_model("deepfm", splits.schema, seed=3).train()

    interactions(model, dataset, ROWS, index="FSII")

    assert all(_modes(model))


def test_train_mode_gives_eval_results(model, splits, dataset):
    """Dropout and batch norm are off while explaining, so a model left in train mode gives the same values."""
    training = scrambled_model("deepfm", splits.schema, seed=3).train()

    result = explain(training, dataset, ROWS, method="exact_shapley")

    assert_same_attribution(result, explain(model, dataset, ROWS, method="exact_shapley"))


# --- groups and output spaces -----------------------------------------------------


def test_exact_shapley_groups(model, dataset):
    direct = exact_indices(model, dataset, ROWS, players=GROUPS).shapley
    dispatched = explain(model, dataset, ROWS, method="exact_shapley", players=GROUPS)

    assert_same_attribution(dispatched, direct)
    assert dispatched.field_names == ("place", "person", "vector")
    assert dispatched.parameters["players"] == GROUPS


def test_integrated_gradients_groups_sum_fields(model, dataset):
    fields = explain(model, dataset, ROWS, method="integrated_gradients", n_steps=8)
    grouped = explain(model, dataset, ROWS, method="integrated_gradients", n_steps=8, players=GROUPS)
    columns = {name: i for i, name in enumerate(fields.field_names)}

    assert grouped.field_names == ("place", "person", "vector")
    for position, members in enumerate(GROUPS.values()):
        expected = fields.values[:, [columns[m] for m in members]].sum(axis=1)
        np.testing.assert_allclose(grouped.values[:, position], expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(grouped.completeness_gap, fields.completeness_gap, atol=1e-12)
    raw = dataset.raw_values(ROWS).reset_index(drop=True)
    assert grouped.raw_values["place"].tolist() == [
        f"city={city}, device={device}" for city, device in zip(raw["city"], raw["device"], strict=True)
    ]
    assert grouped.raw_values["vector"].tolist() == raw["vec"].tolist()


def test_probability_space_is_sigmoid_game(model, dataset):
    # use_structure as in exact_indices, so that both sides round alike
    game = EmbeddingGame(model, dataset.tensors(ROWS), output_space="logit", use_structure=True)
    logit_values = game.values(all_coalitions(game.n_players))
    expected = indices_from_values(1.0 / (1.0 + np.exp(-logit_values)))

    result = explain(model, dataset, ROWS, method="exact_shapley", output_space="probability")

    assert result.output_space == "probability"
    np.testing.assert_allclose(result.values, expected.shapley, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.predictions, 1.0 / (1.0 + np.exp(-logit_values[:, -1])), atol=1e-12)
    np.testing.assert_allclose(result.values.sum(axis=1), result.predictions - result.base_values, atol=1e-12)


def test_probability_interactions_are_sigmoid_game(model, dataset):
    game = EmbeddingGame(model, dataset.tensors(ROWS), output_space="logit", use_structure=True)
    expected = indices_from_values(1.0 / (1.0 + np.exp(-game.values(all_coalitions(game.n_players)))))

    result = interactions(model, dataset, ROWS, index="SII", output_space="probability")

    np.testing.assert_allclose(result.pairs, expected.sii, rtol=0, atol=1e-12)


@pytest.mark.parametrize("baseline", ["mean", "expectation"])
def test_background_baselines(model, dataset, baseline):
    background = background_sample(dataset, 6, seed=2)
    direct = exact_indices(model, dataset, ROWS, baseline=baseline, background=background).shapley

    dispatched = explain(model, dataset, ROWS, method="exact_shapley", baseline=baseline, background=background)

    assert_same_attribution(dispatched, direct)
    assert dispatched.parameters["n_background"] == (6 if baseline == "expectation" else 1)


def test_background_sample_seeded(dataset):
    first = background_sample(dataset, 5, seed=4)
    again = background_sample(dataset, 5, seed=4)
    other = background_sample(dataset, 5, seed=5)

    for name in first:
        torch.testing.assert_close(first[name], again[name])
    assert any(not torch.equal(first[name], other[name]) for name in first)
    assert len(background_sample(dataset, 10_000)["city"]) == len(dataset)
    with pytest.raises(ValueError, match="integer >= 1; got 0"):
        background_sample(dataset, 0)


def test_groups_from_json():
    assert groups_from_json('{"a": ["x", "y"], "b": ["z"]}') == {"a": ["x", "y"], "b": ["z"]}
    with pytest.raises(ValueError, match="not valid JSON"):
        groups_from_json('{"a": ["x"]')
    with pytest.raises(ValueError, match="non-empty JSON object"):
        groups_from_json('[["x"]]')
    with pytest.raises(ValueError, match="non-empty JSON object"):
        groups_from_json("{}")
    with pytest.raises(ValueError, match='group \'a\' must be a list of field names; got "x"'):
        groups_from_json('{"a": "x"}')
    with pytest.raises(ValueError, match=r"group 'a' must be a list of field names; got \[1\]"):
        groups_from_json('{"a": [1]}')


# --- summaries ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def sii(model, dataset):
    return interactions(model, dataset, np.arange(20), index="SII")


def test_top_pairs_match_mean_abs(sii):
    table = summaries.top_pairs(sii)
    matrix = sii.mean_abs()
    n = sii.n_players

    assert len(table) == n * (n - 1) // 2
    assert table["mean_abs_value"].is_monotonic_decreasing
    for pair in table.itertuples():
        assert pair.mean_abs_value == pytest.approx(matrix.loc[pair.player_i, pair.player_j], abs=1e-15)
        assert pair.mean_value == pytest.approx(sii.mean().loc[pair.player_i, pair.player_j], abs=1e-15)
    assert len(summaries.top_pairs(sii, 3)) == 3
    with pytest.raises(ValueError, match="k must be >= 1"):
        summaries.top_pairs(sii, 0)


def test_top_pairs_example_is_strongest_row(sii):
    first = summaries.top_pairs(sii, 1).iloc[0]
    i, j = sii.player_names.index(first.player_i), sii.player_names.index(first.player_j)
    position = int(np.argmax(np.abs(sii.pairs[:, i, j])))
    raw = sii.raw_values.iloc[position]

    assert first.example == (
        f"row {sii.rows[position]}: {first.player_i} = {raw[first.player_i]}, "
        f"{first.player_j} = {raw[first.player_j]} ({sii.pairs[position, i, j]:+.4f})"
    )


def test_pair_examples_sorted_with_raw_values(sii, dataset):
    table = summaries.pair_examples(sii, "vec", "city", n=5)
    i, j = sii.player_names.index("vec"), sii.player_names.index("city")
    expected = np.sort(np.abs(sii.pairs[:, i, j]))[::-1][:5]

    assert list(table.columns) == ["row", "vec value", "city value", "interaction", "prediction"]
    np.testing.assert_allclose(np.abs(table["interaction"]), expected)
    raw = dataset.raw_values(table["row"].to_numpy())
    assert table["city value"].tolist() == raw["city"].tolist()
    with pytest.raises(KeyError, match="unknown player 'town'"):
        summaries.pair_examples(sii, "town", "city")
    with pytest.raises(ValueError, match="two different players"):
        summaries.pair_examples(sii, "city", "city")


def test_value_effects_average_per_value(model, dataset):
    attribution = explain(model, dataset, np.arange(30), method="exact_shapley")
    table = summaries.value_effects(attribution, "city")
    frame = pd.DataFrame({"value": attribution.raw_values["city"], "x": attribution.values[:, 0]})
    expected = frame.groupby("value")["x"].agg(["mean", "size"])

    assert table["mean_attribution"].is_monotonic_decreasing
    assert table["count"].sum() == 30
    for line in table.itertuples():
        assert line.mean_attribution == pytest.approx(expected.loc[line.raw_value, "mean"], abs=1e-15)
        assert line.count == expected.loc[line.raw_value, "size"]
    assert (summaries.value_effects(attribution, "city", min_count=4)["count"] >= 4).all()
    with pytest.raises(KeyError, match="unknown field 'town'"):
        summaries.value_effects(attribution, "town")


def test_rank_correlation_of_importances(model, dataset):
    shapley = explain(model, dataset, ROWS, method="exact_shapley")
    reversed_order = Attribution(
        **{**shapley.__dict__, "method": "other", "values": shapley.values[:, ::-1].copy()}
    )

    assert summaries.rank_correlation(shapley, shapley) == {"spearman": pytest.approx(1.0), "kendall": pytest.approx(1.0)}
    table = summaries.importance_comparison(shapley, reversed_order)
    assert list(table.columns) == ["exact_shapley", "other", "rank by exact_shapley", "rank by other"]
    assert table["rank by exact_shapley"].tolist() == [1, 2, 3, 4, 5]
    same = summaries.importance_comparison(shapley, shapley)
    assert list(same.columns[:2]) == ["exact_shapley (1)", "exact_shapley (2)"]
