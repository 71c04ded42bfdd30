"""The embedding-space coalition game: players, baselines, chunking, model state and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import build_tiny_model
from workbench.explain.baselines import baseline_inputs
from workbench.explain.game import EmbeddingGame, all_coalitions, resolve_players
from workbench.schema import Field, Schema, Vocabulary
from workbench.zoo import CTRModel

FIELDS = ("user", "item", "hour", "price", "history", "vec")


def tiny_schema() -> Schema:
    """Six fields of all four kinds, so a game has 64 coalitions."""
    return Schema(
        [
            Field("user", "categorical", vocabulary=Vocabulary(["u1", "u2", "u3", "u4"])),
            Field("item", "categorical", vocabulary=Vocabulary(["i1", "i2", "i3", "i4", "i5"])),
            Field("hour", "categorical", vocabulary=Vocabulary(["morning", "noon", "night"])),
            Field("price", "numeric", mean=3.0, std=2.0),
            Field("history", "sequence", vocabulary=Vocabulary(["a", "b", "c"]), max_length=3),
            Field("vec", "dense", dim=2),
        ]
    )


def tiny_inputs(schema: Schema, n_rows: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random model inputs, PAD and OOV ids included."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for f in schema.fields:
        if f.kind == "categorical":
            inputs[f.name] = torch.randint(0, len(f.vocabulary), (n_rows,), generator=generator)
        elif f.kind == "sequence":
            inputs[f.name] = torch.randint(0, len(f.vocabulary), (n_rows, f.max_length), generator=generator)
        elif f.kind == "numeric":
            inputs[f.name] = torch.randn(n_rows, generator=generator)
        else:
            inputs[f.name] = torch.randn(n_rows, f.dim, generator=generator)
    return inputs


def scrambled_model(architecture: str, schema: Schema, seed: int = 0, **overrides) -> CTRModel:
    """A tiny model with weights of standard deviation 0.5, so games are far from trivial; PAD rows stay zero."""
    model = build_tiny_model(architecture, schema, seed=seed, **overrides)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
        for table in model.field_embedding.tables.values():
            table.weight[0].zero_()
    return model.eval()


@pytest.fixture(scope="module")
def schema() -> Schema:
    return tiny_schema()


@pytest.fixture(scope="module")
def inputs(schema) -> dict[str, torch.Tensor]:
    return tiny_inputs(schema, 5)


@pytest.fixture(scope="module")
def deepfm(schema) -> CTRModel:
    return scrambled_model("deepfm", schema)


def _logits(model: CTRModel, embeddings: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model.logit_from_embeddings(embeddings).double().numpy()


# --- coalitions and players -----------------------------------------------


def test_all_coalitions_bitmask_order():
    expected = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 1]]
    coalitions = all_coalitions(3)
    assert coalitions.dtype == bool
    np.testing.assert_array_equal(coalitions, np.array(expected, dtype=bool))


def test_all_coalitions_no_players():
    assert all_coalitions(0).shape == (1, 0)


def test_resolve_players_default_one_per_field():
    names, groups, membership = resolve_players(FIELDS, None)
    assert names == FIELDS
    assert groups["price"] == ("price",)
    np.testing.assert_array_equal(membership, np.eye(len(FIELDS), dtype=bool))


def test_resolve_players_groups():
    players = {"context": ["hour", "price"], "user_side": ["user", "history"], "ad": ["item", "vec"]}
    names, groups, membership = resolve_players(FIELDS, players)
    assert names == ("context", "user_side", "ad")
    assert groups["ad"] == ("item", "vec")
    assert membership.shape == (3, 6)
    np.testing.assert_array_equal(membership.sum(axis=0), np.ones(6))
    assert membership[0, FIELDS.index("price")]


@pytest.mark.parametrize(
    ("players", "message"),
    [
        ({"a": ["user", "item", "hour"], "b": ["price", "history"]}, r"fields missing from the groups: vec"),
        (
            {"a": ["user", "item", "hour"], "b": ["price", "history", "vec", "user"]},
            r"field 'user' of group 'b' is also in group 'a'",
        ),
        ({"a": ["user", "user", "item", "hour", "price", "history", "vec"]}, r"field 'user' .* twice in that group"),
        ({"a": ["user", "item", "hour", "price", "history", "vec", "city"]}, r"unknown field 'city'"),
        ({"a": [], "b": list(FIELDS)}, r"group 'a' has no fields"),
        ({"a": "user"}, r"group 'a' must list field names"),
        ({}, r"players is an empty mapping"),
    ],
)
def test_resolve_players_invalid_groups(players, message):
    with pytest.raises(ValueError, match=message):
        resolve_players(FIELDS, players)


# --- values against direct model calls --------------------------------------


def test_grand_coalition_is_prediction(deepfm, inputs):
    game = EmbeddingGame(deepfm, inputs)
    values = game.values(all_coalitions(game.n_players))
    with torch.no_grad():
        prediction = deepfm(inputs).double().numpy()
    np.testing.assert_allclose(values[:, -1], prediction, rtol=1e-6, atol=1e-6)


def test_values_match_masked_embeddings(deepfm, inputs):
    game = EmbeddingGame(deepfm, inputs)
    coalitions = np.array([[1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 1, 0]], dtype=bool)
    values = game.values(coalitions)
    with torch.no_grad():
        embeddings = deepfm.field_embedding(inputs)
    for c, coalition in enumerate(coalitions):
        masked = embeddings * torch.from_numpy(coalition).float()[None, :, None]
        np.testing.assert_allclose(values[:, c], _logits(deepfm, masked), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("architecture", ["fm", "deepfm"])
def test_empty_coalition_is_bias_only_logit(architecture, schema, inputs):
    """With the first-order weight inside each slot, masking every slot leaves the bias terms alone."""
    model = scrambled_model(architecture, schema)
    game = EmbeddingGame(model, inputs, baseline="zero")
    empty = game.values(np.zeros((1, len(FIELDS)), dtype=bool))[:, 0]
    with torch.no_grad():
        bias_only = model.bias.double()
        if architecture == "deepfm":
            bias_only = bias_only + model.dnn(torch.zeros(1, len(FIELDS) * model.embedding_dim)).double().squeeze(-1)
    np.testing.assert_allclose(empty, np.full(len(empty), bias_only.item()), rtol=1e-6, atol=1e-6)


def test_pad_baseline_equals_zero(deepfm, inputs):
    coalitions = all_coalitions(len(FIELDS))
    zero = EmbeddingGame(deepfm, inputs, baseline="zero").values(coalitions)
    pad = EmbeddingGame(deepfm, inputs, baseline="pad").values(coalitions)
    np.testing.assert_allclose(pad, zero, rtol=0, atol=1e-6)


@pytest.mark.parametrize("baseline", ["pad", "oov"])
def test_empty_coalition_is_baseline_inputs(baseline, deepfm, inputs, schema):
    game = EmbeddingGame(deepfm, inputs, baseline=baseline)
    empty = game.values(np.zeros((1, len(FIELDS)), dtype=bool))[:, 0]
    encoded = baseline_inputs(schema, inputs, "zero" if baseline == "pad" else "oov")
    with torch.no_grad():
        expected = deepfm(encoded).double().numpy()
    np.testing.assert_allclose(empty, expected, rtol=1e-6, atol=1e-6)


def test_oov_baseline_differs_from_zero(deepfm, inputs):
    empty = np.zeros((1, len(FIELDS)), dtype=bool)
    zero = EmbeddingGame(deepfm, inputs, baseline="zero").values(empty)
    oov = EmbeddingGame(deepfm, inputs, baseline="oov").values(empty)
    assert np.abs(oov - zero).max() > 1e-3


def test_mean_baseline_embedding(deepfm, inputs, schema):
    background = tiny_inputs(schema, 9, seed=5)
    game = EmbeddingGame(deepfm, inputs, baseline="mean", background=background)
    empty = game.values(np.zeros((1, len(FIELDS)), dtype=bool))[:, 0]
    with torch.no_grad():
        mean_embedding = deepfm.field_embedding(background).mean(dim=0, keepdim=True)
    assert game.n_background == 1
    np.testing.assert_allclose(empty, np.full(len(inputs["user"]), _logits(deepfm, mean_embedding)[0]), atol=1e-6)


@pytest.mark.parametrize("output_space", ["logit", "probability"])
def test_expectation_averages_single_row_games(output_space, deepfm, inputs, schema):
    """By linearity, v(S) with K background rows is the mean of the K games with one background row each."""
    background = tiny_inputs(schema, 4, seed=7)
    coalitions = all_coalitions(len(FIELDS))
    game = EmbeddingGame(deepfm, inputs, baseline="expectation", background=background, output_space=output_space)
    values = game.values(coalitions)
    single = [
        EmbeddingGame(
            deepfm,
            inputs,
            baseline="mean",
            background={name: x[k : k + 1] for name, x in background.items()},
            output_space=output_space,
        ).values(coalitions)
        for k in range(4)
    ]
    assert game.n_background == 4
    # The model runs in float32, and batches of other sizes may round differently (a few ulps).
    np.testing.assert_allclose(values, np.mean(single, axis=0), rtol=1e-6, atol=1e-7)


def test_probability_is_sigmoid_of_logit(deepfm, inputs):
    coalitions = all_coalitions(len(FIELDS))
    logit = EmbeddingGame(deepfm, inputs).values(coalitions)
    probability = EmbeddingGame(deepfm, inputs, output_space="probability").values(coalitions)
    np.testing.assert_allclose(probability, 1.0 / (1.0 + np.exp(-logit)), rtol=1e-12)


# --- field groups ------------------------------------------------------------


def test_single_field_groups_equal_ungrouped(deepfm, inputs):
    coalitions = all_coalitions(len(FIELDS))
    ungrouped = EmbeddingGame(deepfm, inputs).values(coalitions)
    grouped = EmbeddingGame(deepfm, inputs, players={name: [name] for name in FIELDS}).values(coalitions)
    np.testing.assert_array_equal(grouped, ungrouped)


def test_group_moves_its_fields_together(deepfm, inputs):
    """A grouped coalition takes the value of the field coalition with every member present or absent."""
    players = {"context": ["hour", "price"], "user_side": ["user", "history"], "ad": ["item", "vec"]}
    grouped_game = EmbeddingGame(deepfm, inputs, players=players)
    field_game = EmbeddingGame(deepfm, inputs)
    coalitions = all_coalitions(3)
    expanded = coalitions @ grouped_game.membership
    np.testing.assert_array_equal(grouped_game.values(coalitions), field_game.values(expanded))


# --- chunking, sample selection, accounting ----------------------------------


@pytest.mark.parametrize("baseline", ["zero", "expectation"])
def test_chunk_size_keeps_values(baseline, deepfm, inputs, schema):
    background = tiny_inputs(schema, 3, seed=2)
    coalitions = all_coalitions(len(FIELDS))
    results = [
        EmbeddingGame(deepfm, inputs, baseline=baseline, background=background, chunk_size=size).values(coalitions)
        for size in (1, 7, 1_000_000)
    ]
    np.testing.assert_allclose(results[0], results[2], rtol=0, atol=1e-6)
    np.testing.assert_allclose(results[1], results[2], rtol=0, atol=1e-6)


def test_model_evaluations_are_counted(deepfm, inputs, schema):
    coalitions = all_coalitions(len(FIELDS))
    game = EmbeddingGame(deepfm, inputs, chunk_size=100)
    game.values(coalitions)
    assert game.n_model_evaluations == 5 * 64
    game.values(coalitions[:3], samples=[0, 2])
    assert game.n_model_evaluations == 5 * 64 + 2 * 3

    background = tiny_inputs(schema, 4, seed=3)
    expectation = EmbeddingGame(deepfm, inputs, baseline="expectation", background=background)
    expectation.values(coalitions)
    assert expectation.n_model_evaluations == 5 * 64 * 4


def test_sample_selection(deepfm, inputs):
    game = EmbeddingGame(deepfm, inputs)
    coalitions = all_coalitions(len(FIELDS))
    everything = game.values(coalitions)
    np.testing.assert_array_equal(game.values(coalitions, samples=[3, 1]), everything[[3, 1]])
    np.testing.assert_array_equal(game.values(coalitions, samples=slice(1, 4)), everything[1:4])


def test_integer_coalitions_accepted(deepfm, inputs):
    game = EmbeddingGame(deepfm, inputs)
    coalitions = all_coalitions(len(FIELDS))
    np.testing.assert_array_equal(game.values(coalitions.astype(int)), game.values(coalitions))


def test_progress_reaches_one(deepfm, inputs):
    seen = []
    EmbeddingGame(deepfm, inputs, chunk_size=50).values(all_coalitions(len(FIELDS)), progress=seen.append)
    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    assert len(seen) == 7  # 320 rows in chunks of 50


# --- model state -------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_model_mode_restored(training, schema, inputs):
    model = scrambled_model("deepfm", schema)
    model.train(training)
    game = EmbeddingGame(model, inputs)
    assert model.training is training
    game.values(all_coalitions(len(FIELDS)))
    assert model.training is training


def test_train_mode_model_runs_in_eval(schema, inputs):
    """Dropout and batch statistics stay off, so a model left in train mode gives eval-mode values."""
    model = scrambled_model("deepfm", schema)
    coalitions = all_coalitions(len(FIELDS))
    expected = EmbeddingGame(model, inputs).values(coalitions)
    model.train()
    np.testing.assert_array_equal(EmbeddingGame(model, inputs).values(coalitions), expected)


def test_no_gradient_leak(schema, inputs):
    model = scrambled_model("deepfm", schema)
    game = EmbeddingGame(model, inputs)
    values = game.values(all_coalitions(len(FIELDS)))
    assert isinstance(values, np.ndarray)
    assert values.dtype == np.float64
    assert not game.embeddings.requires_grad
    assert not game.baseline_embeddings.requires_grad
    assert all(parameter.grad is None for parameter in model.parameters())
    assert torch.is_grad_enabled()


# --- errors ------------------------------------------------------------------


def test_unknown_baseline(deepfm, inputs):
    with pytest.raises(ValueError, match=r"unknown baseline 'median'; available: zero, pad, oov, mean, expectation"):
        EmbeddingGame(deepfm, inputs, baseline="median")


@pytest.mark.parametrize("baseline", ["mean", "expectation"])
def test_background_required(baseline, deepfm, inputs):
    with pytest.raises(ValueError, match=rf"baseline '{baseline}' needs background rows; pass background="):
        EmbeddingGame(deepfm, inputs, baseline=baseline)


def test_unknown_output_space(deepfm, inputs):
    with pytest.raises(ValueError, match=r"unknown output_space 'odds'; available: logit, probability"):
        EmbeddingGame(deepfm, inputs, output_space="odds")


@pytest.mark.parametrize("chunk_size", [0, -3, 2.5, True])
def test_invalid_chunk_size(chunk_size, deepfm, inputs):
    with pytest.raises(ValueError, match=r"chunk_size must be an integer >= 1"):
        EmbeddingGame(deepfm, inputs, chunk_size=chunk_size)


def test_inputs_missing_field(deepfm, inputs):
    partial = {name: x for name, x in inputs.items() if name != "hour"}
    with pytest.raises(ValueError, match=r"inputs is missing the fields: hour"):
        EmbeddingGame(deepfm, partial)


def test_background_missing_field(deepfm, inputs, schema):
    background = {name: x for name, x in tiny_inputs(schema, 3).items() if name != "vec"}
    with pytest.raises(ValueError, match=r"background is missing the fields: vec"):
        EmbeddingGame(deepfm, inputs, baseline="mean", background=background)


def test_coalitions_wrong_shape(deepfm, inputs):
    game = EmbeddingGame(deepfm, inputs)
    with pytest.raises(ValueError, match=r"coalitions must have shape \(n_coalitions, 6\); got \(4, 5\)"):
        game.values(np.ones((4, 5), dtype=bool))


def test_coalitions_not_binary(deepfm, inputs):
    game = EmbeddingGame(deepfm, inputs)
    with pytest.raises(ValueError, match=r"coalitions must be boolean or 0/1"):
        game.values(np.full((2, 6), 2))


def test_inputs_rows_disagree(deepfm, inputs):
    uneven = {**inputs, "price": inputs["price"][:3]}
    with pytest.raises(ValueError, match=r"inputs fields have different numbers of rows: \[3, 5\]"):
        EmbeddingGame(deepfm, uneven)
