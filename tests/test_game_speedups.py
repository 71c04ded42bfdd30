"""The game's two speed-ups: first layers summed from per-field terms, and repeated rows forwarded once.

Both must leave the values unchanged up to float32 rounding. The tiny models
have weights of standard deviation 0.5, so their hidden activations reach
tens of units while some logits are near 0.1. A float32 sum in another order
moves an activation of 30 by about 30 * 1.2e-7 = 4e-6, hence an absolute
tolerance of 1e-5 (and 1e-6 relative) below.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import build_tiny_model
from test_game import scrambled_model, tiny_inputs, tiny_schema
from workbench.explain import game as game_module
from workbench.explain.exact import exact_indices
from workbench.explain.game import EmbeddingGame, all_coalitions
from workbench.schema import Field, Schema, Vocabulary

ARCHITECTURES = [
    ("lr", {}),
    ("fm", {}),
    ("deepfm", {}),
    ("dcnv2", {}),
    ("dcnv2", {"structure": "stacked"}),
    ("autoint+", {}),
]
FIRST_LAYER_COUNTS = {"lr": 0, "fm": 0, "deepfm": 1, "dcnv2": 2, "dcnv2-stacked": 1, "autoint+": 1}
TOLERANCE = {"rtol": 1e-6, "atol": 1e-5}


def _model(architecture: str, overrides: dict, schema):
    return scrambled_model(architecture, schema, **overrides)


def _key(architecture: str, overrides: dict) -> str:
    return architecture + ("-stacked" if overrides.get("structure") == "stacked" else "")


@pytest.fixture(autouse=True)
def small_jobs_deduplicate(monkeypatch):
    """Let the tiny games here use deduplication, which normally waits for 65,536 rows and 32 samples."""
    monkeypatch.setattr(game_module, "MIN_ROWS_TO_DEDUPLICATE", 0)
    monkeypatch.setattr(game_module, "MIN_SAMPLES_TO_DEDUPLICATE", 0)


@pytest.fixture(scope="module")
def schema():
    return tiny_schema()


@pytest.fixture(scope="module")
def inputs(schema):
    return tiny_inputs(schema, 7, seed=2)


@pytest.fixture(scope="module")
def background(schema):
    return tiny_inputs(schema, 3, seed=5)


# --- first layers ------------------------------------------------------------


@pytest.mark.parametrize(("architecture", "overrides"), ARCHITECTURES)
def test_first_layers_reproduce_the_model(architecture, overrides, schema, inputs):
    """Feeding the per-field sums of first_layers() back gives the model's own logit."""
    model = _model(architecture, overrides, schema)
    layers = model.first_layers()
    assert len(layers) == FIRST_LAYER_COUNTS[_key(architecture, overrides)]
    with torch.no_grad():
        embeddings = model.field_embedding(inputs)
        outputs = [torch.einsum("bfw,ofw->bo", embeddings, weight) + bias for weight, bias in layers]
        expected = model.logit_from_embeddings(embeddings)
        got = model.logit_from_embeddings(embeddings, first_layer_outputs=outputs or None)
    for weight, bias in layers:
        assert weight.shape[1:] == (len(schema.fields), model.embedding_width)
        assert bias.shape == (weight.shape[0],)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), **TOLERANCE)


def test_first_layers_outputs_are_used(schema, inputs):
    """A wrong first-layer output changes the logit, so the model does not recompute the layer."""
    model = _model("dcnv2", {}, schema)
    with torch.no_grad():
        embeddings = model.field_embedding(inputs)
        outputs = [torch.einsum("bfw,ofw->bo", embeddings, w) + b for w, b in model.first_layers()]
        shifted = [outputs[0], outputs[1] + 1.0]
        assert not torch.allclose(
            model.logit_from_embeddings(embeddings, first_layer_outputs=shifted),
            model.logit_from_embeddings(embeddings),
        )


def test_deepfm_first_layer_ignores_first_order_column(schema):
    model = _model("deepfm", {}, schema)
    weight, _ = model.first_layers()[0]
    assert torch.all(weight[..., -1] == 0)
    assert weight.shape[-1] == model.embedding_dim + 1


@pytest.mark.parametrize(("architecture", "overrides"), ARCHITECTURES)
@pytest.mark.parametrize("baseline", ["zero", "oov", "mean", "expectation"])
@pytest.mark.parametrize("chunk_size", [5, 64, 100_000])
def test_structured_values_match_plain(architecture, overrides, baseline, chunk_size, schema, inputs, background):
    model = _model(architecture, overrides, schema)
    players = {"a": ["user", "item"], "b": ["hour"], "c": ["price", "history", "vec"]} if chunk_size == 5 else None
    options = {"baseline": baseline, "background": background, "chunk_size": chunk_size, "players": players}
    fast = EmbeddingGame(model, inputs, use_structure=True, **options)
    plain = EmbeddingGame(model, inputs, **options)
    coalitions = all_coalitions(fast.n_players)
    np.testing.assert_allclose(fast.values(coalitions), plain.values(coalitions), **TOLERANCE)
    assert fast.n_model_evaluations == plain.n_model_evaluations == 7 * coalitions.shape[0] * fast.n_background
    assert (len(fast.first_layers) > 0) == (FIRST_LAYER_COUNTS[_key(architecture, overrides)] > 0)


def test_structured_probability_space(schema, inputs):
    model = _model("dcnv2", {}, schema)
    coalitions = all_coalitions(len(schema.fields))
    fast = EmbeddingGame(model, inputs, output_space="probability", use_structure=True).values(coalitions)
    plain = EmbeddingGame(model, inputs, output_space="probability").values(coalitions)
    np.testing.assert_allclose(fast, plain, **TOLERANCE)


# --- repeated rows -------------------------------------------------------------


def _repeating_inputs(schema, n_rows: int) -> dict[str, torch.Tensor]:
    """Rows drawn from three distinct rows, with 'hour' varying freely: many coalition rows repeat."""
    base = tiny_inputs(schema, 3, seed=8)
    picks = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1][:n_rows])
    repeated = {name: x[picks] for name, x in base.items()}
    repeated["hour"] = torch.tensor([1, 2, 3, 1, 1, 2, 3, 1, 2][:n_rows])
    return repeated


def _distinct_row_count(game: EmbeddingGame, coalitions: np.ndarray) -> int:
    """Count distinct mixed rows by brute force: (kept fields, kept slot vectors) per (sample, coalition)."""
    masks = coalitions @ game.membership
    seen = set()
    embeddings = game.embeddings.numpy()
    for mask in masks:
        for sample in embeddings:
            seen.add((tuple(mask), tuple(np.where(mask[:, None], sample, 0.0).ravel())))
    return len(seen)


@pytest.mark.parametrize("baseline", ["zero", "mean", "expectation"])
def test_deduplicated_values_match_plain(baseline, schema, background):
    model = _model("deepfm", {}, schema)
    inputs = _repeating_inputs(schema, 9)
    options = {"baseline": baseline, "background": background, "chunk_size": 50}
    fast = EmbeddingGame(model, inputs, deduplicate=True, **options)
    plain = EmbeddingGame(model, inputs, **options)
    coalitions = all_coalitions(len(schema.fields))
    np.testing.assert_allclose(fast.values(coalitions), plain.values(coalitions), **TOLERANCE)
    distinct = _distinct_row_count(fast, coalitions)
    assert distinct < 9 * 64
    assert fast.n_model_evaluations == distinct * fast.n_background
    assert plain.n_model_evaluations == 9 * 64 * fast.n_background


def test_deduplication_with_groups_and_sample_selection(schema):
    model = _model("dcnv2", {}, schema)
    inputs = _repeating_inputs(schema, 9)
    players = {"who": ["user", "history"], "what": ["item", "price", "vec"], "when": ["hour"]}
    fast = EmbeddingGame(model, inputs, players=players, deduplicate=True)
    plain = EmbeddingGame(model, inputs, players=players)
    coalitions = all_coalitions(3)
    np.testing.assert_allclose(
        fast.values(coalitions, samples=[8, 0, 3, 4]), plain.values(coalitions, samples=[8, 0, 3, 4]), **TOLERANCE
    )


def test_deduplication_with_shuffled_and_repeated_coalitions(schema):
    """Coalitions in any order, some twice, without their parents listed: same values as without the option."""
    model = _model("autoint+", {}, schema)
    inputs = _repeating_inputs(schema, 9)
    rng = np.random.default_rng(4)
    coalitions = all_coalitions(len(schema.fields))[rng.permutation(64)[:30]]
    coalitions = np.concatenate([coalitions, coalitions[:5]])
    fast = EmbeddingGame(model, inputs, deduplicate=True).values(coalitions)
    np.testing.assert_allclose(fast, EmbeddingGame(model, inputs).values(coalitions), **TOLERANCE)
    np.testing.assert_array_equal(fast[:, 30:], fast[:, :5])


def test_deduplication_skipped_for_small_jobs(schema, monkeypatch):
    monkeypatch.setattr(game_module, "MIN_ROWS_TO_DEDUPLICATE", 9 * 64 + 1)
    model = _model("deepfm", {}, schema)
    game = EmbeddingGame(model, _repeating_inputs(schema, 9), deduplicate=True)
    game.values(all_coalitions(len(schema.fields)))
    assert game.n_model_evaluations == 9 * 64


def test_deduplication_skipped_without_repeats(schema):
    """Distinct samples leave too few repeated rows; every row is forwarded, as without the option."""
    model = _model("deepfm", {}, schema)
    inputs = tiny_inputs(schema, 2, seed=3)
    game = EmbeddingGame(model, inputs, deduplicate=True)
    coalitions = all_coalitions(len(schema.fields))[1:]  # without the empty coalition, no two rows can agree
    game.values(coalitions)
    assert game.n_model_evaluations == 2 * 63


def test_deduplication_with_many_distinct_values(monkeypatch):
    """Eight fields of up to 300 values each (more combinations than an int64 holds) keep exact results."""
    monkeypatch.setattr(game_module, "MIN_SHARED_ROWS", 0.0)  # deduplicate even the few repeats here

    fields = [Field(f"f{i}", "categorical", vocabulary=Vocabulary([str(v) for v in range(300)])) for i in range(8)]
    wide = Schema(fields, label="label")
    model = build_tiny_model("deepfm", wide)
    generator = torch.Generator().manual_seed(0)
    inputs = {f.name: torch.randint(1, 301, (400,), generator=generator) for f in fields}
    coalitions = all_coalitions(8)
    fast = EmbeddingGame(model, inputs, deduplicate=True)
    plain = EmbeddingGame(model, inputs)
    np.testing.assert_allclose(fast.values(coalitions), plain.values(coalitions), **TOLERANCE)
    assert fast.n_model_evaluations < plain.n_model_evaluations


# --- exact indices with both speed-ups ------------------------------------------------


@pytest.mark.parametrize("architecture", ["deepfm", "dcnv2", "autoint+"])
def test_exact_indices_speedups_keep_every_index(architecture, schema):
    model = _model(architecture, {}, schema)
    inputs = _repeating_inputs(schema, 9)
    fast = exact_indices(model, inputs)
    plain = exact_indices(model, inputs, use_structure=False, deduplicate=False)
    assert fast.shapley.parameters["use_structure"] and fast.shapley.parameters["deduplicate"]
    assert fast.shapley.parameters["model_evaluations"] < plain.shapley.parameters["model_evaluations"] == 9 * 64
    np.testing.assert_allclose(fast.shapley.values, plain.shapley.values, **TOLERANCE)
    for name in ("sii", "stii", "fsii", "banzhaf"):
        np.testing.assert_allclose(getattr(fast, name).pairs, getattr(plain, name).pairs, **TOLERANCE)
        np.testing.assert_allclose(getattr(fast, name).main_effects, getattr(plain, name).main_effects, **TOLERANCE)
    assert np.abs(fast.shapley.completeness_gap).max() < 1e-6
