"""Exact Shapley values and interaction indices: axioms, brute-force definitions, closed forms and oracles.

The reference implementations below follow each index's original definition
over marginal contributions (no Möbius transform), so they check the Möbius
weights in ``workbench.explain.exact`` independently.
"""

from __future__ import annotations

import itertools
from math import comb, factorial

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import synthetic_splits
from test_game import FIELDS, scrambled_model, tiny_inputs, tiny_schema
from workbench.explain import exact as exact_module
from workbench.explain.exact import exact_indices, indices_from_values, moebius_transform
from workbench.explain.game import EmbeddingGame, all_coalitions
from workbench.explain.interaction import Interaction

# --- brute-force references from the definitions ------------------------------


def _code(players) -> int:
    return sum(1 << p for p in players)


def _subsets(players):
    for size in range(len(players) + 1):
        yield from itertools.combinations(players, size)


def _delta(v, pair, subset) -> float:
    """Discrete second derivative δ_ij(S) = v(S ∪ {i,j}) − v(S ∪ {i}) − v(S ∪ {j}) + v(S)."""
    i, j = pair
    return v[_code((*subset, i, j))] - v[_code((*subset, i))] - v[_code((*subset, j))] + v[_code(subset)]


def naive_shapley(v, n):
    phi = np.zeros(n)
    for i in range(n):
        others = [p for p in range(n) if p != i]
        for subset in _subsets(others):
            s = len(subset)
            weight = factorial(s) * factorial(n - s - 1) / factorial(n)
            phi[i] += weight * (v[_code((*subset, i))] - v[_code(subset)])
    return phi


def naive_banzhaf(v, n):
    beta = np.zeros(n)
    for i in range(n):
        others = [p for p in range(n) if p != i]
        beta[i] = sum(v[_code((*subset, i))] - v[_code(subset)] for subset in _subsets(others)) / 2 ** (n - 1)
    return beta


def naive_pairs(v, n, weight):
    """Σ_{S ⊆ N \\ {i,j}} weight(|S|) δ_ij(S) for every pair, as a symmetric matrix with zero diagonal."""
    pairs = np.zeros((n, n))
    for i, j in itertools.combinations(range(n), 2):
        others = [p for p in range(n) if p not in (i, j)]
        total = sum(weight(len(subset)) * _delta(v, (i, j), subset) for subset in _subsets(others))
        pairs[i, j] = pairs[j, i] = total
    return pairs


def naive_sii(v, n):
    return naive_pairs(v, n, lambda s: factorial(s) * factorial(n - s - 2) / factorial(n - 1))


def naive_bii(v, n):
    return naive_pairs(v, n, lambda s: 1.0 / 2 ** (n - 2))


def naive_stii(v, n):
    """Shapley-Taylor of order 2: singletons v({i}) − v(∅); pairs (2/n) Σ_S δ_ij(S) / C(n − 1, |S|)."""
    main = np.array([v[_code((i,))] - v[0] for i in range(n)])
    return main, naive_pairs(v, n, lambda s: 2.0 / n / comb(n - 1, s))


def naive_fsii(v, n):
    """Faith-Shap of order 2 as the constrained weighted least-squares fit, solved through its KKT system."""
    terms = [(), *[(i,) for i in range(n)], *itertools.combinations(range(n), 2)]
    design, target, weights = [], [], []
    for code in range(1, 2**n - 1):
        members = {p for p in range(n) if code >> p & 1}
        design.append([float(set(term) <= members) for term in terms])
        target.append(v[code])
        size = len(members)
        weights.append((n - 1) / (comb(n, size) * size * (n - size)))
    design, target, weights = np.array(design), np.array(target), np.diag(weights)
    constraints = np.zeros((2, len(terms)))
    constraints[0, 0] = 1.0  # E(∅) = v(∅)
    constraints[1, :] = 1.0  # Σ_T E(T) = v(N)
    kkt = np.block([[2 * design.T @ weights @ design, constraints.T], [constraints, np.zeros((2, 2))]])
    rhs = np.concatenate([2 * design.T @ weights @ target, [v[0], v[-1]]])
    solution = np.linalg.solve(kkt, rhs)[: len(terms)]
    main = solution[1 : n + 1]
    pairs = np.zeros((n, n))
    for value, (i, j) in zip(solution[n + 1 :], itertools.combinations(range(n), 2), strict=True):
        pairs[i, j] = pairs[j, i] = value
    return main, pairs


def random_games(n_players: int, n_games: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n_games, 2**n_players))


def _upper_sum(pairs: np.ndarray) -> np.ndarray:
    upper = np.triu_indices(pairs.shape[-1], k=1)
    return pairs[:, upper[0], upper[1]].sum(axis=1)


# --- index math on value tables ------------------------------------------------


@pytest.mark.parametrize("n_players", [1, 2, 3, 5])
def test_moebius_reconstructs_values(n_players):
    values = random_games(n_players)
    moebius = moebius_transform(values)
    for code in range(2**n_players):
        subsets = [sub for sub in range(2**n_players) if sub & code == sub]
        np.testing.assert_allclose(moebius[:, subsets].sum(axis=1), values[:, code], atol=1e-12)


def test_moebius_leaves_input_unchanged():
    values = np.asfortranarray(random_games(4))
    before = values.copy()
    moebius_transform(values)
    np.testing.assert_array_equal(values, before)


@pytest.mark.parametrize("n_players", [2, 3, 4, 6])
def test_indices_match_definitions(n_players):
    values = random_games(n_players, n_games=2, seed=n_players)
    result = indices_from_values(values)
    for g, v in enumerate(values):
        np.testing.assert_allclose(result.shapley[g], naive_shapley(v, n_players), atol=1e-10)
        np.testing.assert_allclose(result.banzhaf[g], naive_banzhaf(v, n_players), atol=1e-10)
        np.testing.assert_allclose(result.sii[g], naive_sii(v, n_players), atol=1e-10)
        np.testing.assert_allclose(result.bii[g], naive_bii(v, n_players), atol=1e-10)
        stii_main, stii_pairs = naive_stii(v, n_players)
        np.testing.assert_allclose(result.stii_main[g], stii_main, atol=1e-10)
        np.testing.assert_allclose(result.stii[g], stii_pairs, atol=1e-10)
        fsii_main, fsii_pairs = naive_fsii(v, n_players)
        np.testing.assert_allclose(result.fsii_main[g], fsii_main, atol=1e-9)
        np.testing.assert_allclose(result.fsii[g], fsii_pairs, atol=1e-9)


@pytest.mark.parametrize("n_players", [1, 3, 7])
def test_efficiency(n_players):
    values = random_games(n_players, n_games=4, seed=11)
    result = indices_from_values(values)
    span = values[:, -1] - values[:, 0]
    np.testing.assert_allclose(result.empty_values, values[:, 0])
    np.testing.assert_allclose(result.grand_values, values[:, -1])
    np.testing.assert_allclose(result.shapley.sum(axis=1), span, atol=1e-6)
    np.testing.assert_allclose(result.stii_main.sum(axis=1) + _upper_sum(result.stii), span, atol=1e-6)
    np.testing.assert_allclose(result.fsii_main.sum(axis=1) + _upper_sum(result.fsii), span, atol=1e-6)


def test_symmetry():
    """Players 0 and 2 enter the game only through how many of them are present, so they get equal values."""
    n = 4
    rng = np.random.default_rng(3)
    table = rng.normal(size=(3, 2, 2))  # indexed by (count of {0, 2}, player 1, player 3)
    values = np.array(
        [[table[(c & 1) + (c >> 2 & 1), c >> 1 & 1, c >> 3 & 1] for c in range(2**n)]]
    )
    result = indices_from_values(values)
    for main in (result.shapley, result.banzhaf, result.stii_main, result.fsii_main):
        assert main[0, 0] == pytest.approx(main[0, 2], abs=1e-12)
    for pairs in (result.sii, result.bii, result.stii, result.fsii):
        assert pairs[0, 0, 1] == pytest.approx(pairs[0, 2, 1], abs=1e-12)
        assert pairs[0, 0, 3] == pytest.approx(pairs[0, 2, 3], abs=1e-12)


def test_dummy_player_gets_zero():
    """Player 2 never changes the value, so it gets 0 Shapley and Banzhaf values and 0 in every pair."""
    n, dummy = 5, 2
    base = random_games(n - 1, n_games=2, seed=4)
    codes = np.arange(2**n)
    without_dummy = (codes & ((1 << dummy) - 1)) | ((codes >> (dummy + 1)) << dummy)
    values = base[:, without_dummy]
    result = indices_from_values(values)
    for main in (result.shapley, result.banzhaf, result.stii_main, result.fsii_main):
        np.testing.assert_allclose(main[:, dummy], 0.0, atol=1e-12)
    for pairs in (result.sii, result.bii, result.stii, result.fsii):
        np.testing.assert_allclose(pairs[:, dummy, :], 0.0, atol=1e-12)
        np.testing.assert_allclose(pairs[:, :, dummy], 0.0, atol=1e-12)


def test_linearity():
    v, w = random_games(5, seed=5), random_games(5, seed=6)
    left = indices_from_values(2.0 * v + w)
    right_v, right_w = indices_from_values(v), indices_from_values(w)
    for name in ("shapley", "banzhaf", "sii", "bii", "stii_main", "stii", "fsii_main", "fsii"):
        expected = 2.0 * getattr(right_v, name) + getattr(right_w, name)
        np.testing.assert_allclose(getattr(left, name), expected, atol=1e-10)


def test_order_two_game_pairs_equal_moebius():
    """For a game with interactions of order ≤ 2 every pair index equals the pair's Möbius coefficient."""
    n = 5
    rng = np.random.default_rng(8)
    bias, linear, quadratic = rng.normal(), rng.normal(size=n), np.triu(rng.normal(size=(n, n)), k=1)
    coalitions = all_coalitions(n).astype(float)
    values = (bias + coalitions @ linear + np.einsum("ci,ij,cj->c", coalitions, quadratic, coalitions))[None]
    result = indices_from_values(values)
    symmetric = quadratic + quadratic.T
    for pairs in (result.sii, result.bii, result.stii, result.fsii):
        np.testing.assert_allclose(pairs[0], symmetric, atol=1e-12)
    np.testing.assert_allclose(result.shapley[0], linear + symmetric.sum(axis=1) / 2, atol=1e-12)


def test_pairs_symmetric_with_zero_diagonal():
    result = indices_from_values(random_games(4))
    for pairs in (result.sii, result.bii, result.stii, result.fsii):
        np.testing.assert_array_equal(pairs, np.swapaxes(pairs, 1, 2))
        np.testing.assert_array_equal(np.diagonal(pairs, axis1=1, axis2=2), 0.0)


@pytest.mark.parametrize("shape", [(3, 6), (8,), (2, 0)])
def test_value_table_wrong_shape(shape):
    with pytest.raises(ValueError, match=r"game values"):
        indices_from_values(np.zeros(shape))


# --- models: closed forms ------------------------------------------------------


@pytest.fixture(scope="module")
def schema():
    return tiny_schema()


@pytest.fixture(scope="module")
def inputs(schema):
    return tiny_inputs(schema, 6, seed=1)


def test_fm_closed_form(schema, inputs):
    """FM, logit space, zero baseline: SII_ij = <v_i, v_j> and φ_i = w_i + ½ Σ_{j≠i} <v_i, v_j>."""
    model = scrambled_model("fm", schema)
    result = exact_indices(model, inputs)
    with torch.no_grad():
        factors, weights = model.split_slots(model.field_embedding(inputs))
    dots = torch.einsum("bid,bjd->bij", factors, factors).double().numpy()
    off_diagonal = dots * (1.0 - np.eye(len(FIELDS)))
    weights = weights.double().numpy()

    np.testing.assert_allclose(result.sii.pairs, off_diagonal, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.shapley.values, weights + off_diagonal.sum(axis=2) / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.stii.pairs, off_diagonal, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.fsii.pairs, off_diagonal, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.stii.main_effects, weights, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.shapley.base_values, model.bias.item(), rtol=1e-6)


def test_lr_has_no_interactions(schema, inputs):
    model = scrambled_model("lr", schema)
    result = exact_indices(model, inputs)
    with torch.no_grad():
        slots = model.field_embedding(inputs)[..., 0].double().numpy()
    np.testing.assert_allclose(result.shapley.values, slots, atol=1e-6)
    for interaction in result.interactions.values():
        np.testing.assert_allclose(interaction.pairs, 0.0, atol=1e-6)


@pytest.mark.parametrize("architecture", ["deepfm", "dcnv2", "autoint+"])
def test_completeness_on_deep_models(architecture, schema, inputs):
    model = scrambled_model(architecture, schema)
    result = exact_indices(model, inputs)
    assert result.shapley.method == "exact_shapley"
    assert result.shapley.completeness_gap.max() < 1e-6
    assert result.stii.completeness_gap.max() < 1e-6
    assert result.fsii.completeness_gap.max() < 1e-6
    assert result.stii.is_efficient
    assert not result.sii.is_efficient


# --- oracle: shap's ExactExplainer on the same game ----------------------------


@pytest.mark.slow  # about 15 s, nearly all of it numba compiling shap's exact kernels
def test_shapley_matches_shap_exact(schema, inputs):
    shap = pytest.importorskip("shap")
    model = scrambled_model("deepfm", schema)
    n = len(FIELDS)
    values = EmbeddingGame(model, inputs).values(all_coalitions(n))
    result = indices_from_values(values)
    powers = 1 << np.arange(n)

    for g in range(2):
        # The masker fills absent players with 0, so shap passes 0/1 vectors that are coalition masks.
        def game(masks, g=g):
            return values[g, (np.asarray(masks) > 0.5).astype(np.int64) @ powers]

        explainer = shap.explainers.Exact(game, shap.maskers.Independent(np.zeros((1, n))))
        explanation = explainer(np.ones((1, n)))
        np.testing.assert_allclose(explanation.values[0], result.shapley[g], atol=1e-5)
        assert explanation.base_values[0] == pytest.approx(values[g, 0], abs=1e-9)

        # shap's interactions=2 output: STII main effects on the diagonal, half of each STII pair off it.
        pairs = explainer(np.ones((1, n)), interactions=2).values[0]
        np.testing.assert_allclose(np.diag(pairs), result.stii_main[g], atol=1e-5)
        np.testing.assert_allclose(2.0 * (pairs - np.diag(np.diag(pairs))), result.stii[g], atol=1e-5)


# --- field groups ----------------------------------------------------------------


def test_single_field_groups_equal_ungrouped(schema, inputs):
    model = scrambled_model("deepfm", schema)
    ungrouped = exact_indices(model, inputs)
    grouped = exact_indices(model, inputs, players={name: [name] for name in FIELDS})
    np.testing.assert_array_equal(grouped.shapley.values, ungrouped.shapley.values)
    np.testing.assert_array_equal(grouped.fsii.pairs, ungrouped.fsii.pairs)
    assert grouped.shapley.parameters["players"] == {name: [name] for name in FIELDS}
    assert "players" not in ungrouped.shapley.parameters


def test_groups_restrict_field_game(schema, inputs):
    """Group indices equal the indices of the field game restricted to all-in or all-out coalitions."""
    model = scrambled_model("deepfm", schema)
    players = {"context": ["hour", "price"], "user_side": ["user", "history"], "ad": ["item", "vec"]}
    grouped = exact_indices(model, inputs, players=players, keep_values=True, use_structure=False, deduplicate=False)
    membership = EmbeddingGame(model, inputs, players=players).membership
    restricted = EmbeddingGame(model, inputs).values(all_coalitions(3) @ membership)
    expected = indices_from_values(restricted)

    assert grouped.shapley.field_names == ("context", "user_side", "ad")
    np.testing.assert_array_equal(grouped.values, restricted)
    np.testing.assert_allclose(grouped.shapley.values, expected.shapley, atol=1e-12)
    np.testing.assert_allclose(grouped.sii.pairs, expected.sii, atol=1e-12)
    assert grouped.shapley.completeness_gap.max() < 1e-6
    assert grouped.fsii.completeness_gap.max() < 1e-6
    assert grouped.stii.completeness_gap.max() < 1e-6


# --- baselines, output spaces, blocks --------------------------------------------


def test_expectation_averages_single_row_results(schema, inputs):
    model = scrambled_model("deepfm", schema)
    background = tiny_inputs(schema, 3, seed=9)
    expectation = exact_indices(model, inputs, baseline="expectation", background=background)
    singles = [
        exact_indices(model, inputs, baseline="mean", background={name: x[k : k + 1] for name, x in background.items()})
        for k in range(3)
    ]
    # The model runs in float32, and batches of other sizes may round differently (a few ulps).
    np.testing.assert_allclose(
        expectation.shapley.values, np.mean([r.shapley.values for r in singles], axis=0), atol=1e-7
    )
    np.testing.assert_allclose(expectation.fsii.pairs, np.mean([r.fsii.pairs for r in singles], axis=0), atol=1e-7)
    assert expectation.shapley.parameters["n_background"] == 3
    assert expectation.shapley.parameters["model_evaluations"] == 6 * 64 * 3


def test_probability_output(schema, inputs):
    model = scrambled_model("deepfm", schema)
    result = exact_indices(model, inputs, output_space="probability")
    with torch.no_grad():
        probability = torch.sigmoid(model(inputs)).double().numpy()
    np.testing.assert_allclose(result.shapley.predictions, probability, rtol=1e-6)
    assert result.shapley.output_space == "probability"
    assert result.fsii.output_space == "probability"
    assert result.shapley.completeness_gap.max() < 1e-9


def test_sample_blocks_keep_results(schema, inputs, monkeypatch):
    model = scrambled_model("deepfm", schema)
    whole = exact_indices(model, inputs, keep_values=True)
    monkeypatch.setattr(exact_module, "VALUES_PER_BLOCK", 100)  # one sample (64 coalitions) per block
    seen = []
    blocked = exact_indices(model, inputs, keep_values=True, progress=seen.append)
    # Smaller blocks share fewer repeated rows, so rows meet different float32 batches: rounding only.
    np.testing.assert_allclose(blocked.values, whole.values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(blocked.sii.pairs, whole.sii.pairs, rtol=0, atol=1e-6)
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1.0)


def test_chunk_size_keeps_results(schema, inputs):
    model = scrambled_model("deepfm", schema)
    results = [exact_indices(model, inputs, chunk_size=size) for size in (1, 7, 1_000_000)]
    for result in results[:2]:
        np.testing.assert_allclose(result.shapley.values, results[2].shapley.values, atol=1e-6)
        np.testing.assert_allclose(result.fsii.pairs, results[2].fsii.pairs, atol=1e-6)


# --- data sets, rows and provenance -------------------------------------------------


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=300, n_valid=50, n_test=50)


def test_dataset_rows_labels_and_raw_values(splits):
    model = scrambled_model("deepfm", splits.schema)
    rows = np.array([4, 0, 17])
    result = exact_indices(model, splits.test, rows, baseline="oov")
    shapley = result.shapley
    assert shapley.baseline == "oov"
    np.testing.assert_array_equal(shapley.rows, rows)
    np.testing.assert_array_equal(shapley.labels, splits.test.labels[rows])
    assert list(shapley.raw_values.columns) == splits.schema.field_names
    assert shapley.parameters["n_coalitions"] == 32
    assert shapley.parameters["model_evaluations"] == 3 * 32
    assert shapley.sample(1)["raw_value"].tolist() == splits.test.raw_values(np.array([0])).iloc[0].tolist()
    assert result.stii.position_of_row(17) == 2


def test_dataset_groups_join_raw_values(splits):
    model = scrambled_model("deepfm", splits.schema)
    players = {"place": ["city"], "user": ["device", "age", "history"], "ad": ["vec"]}
    result = exact_indices(model, splits.test, [3], players=players)
    raw = splits.test.raw_values(np.array([3])).iloc[0]
    grouped = result.sii.raw_values.iloc[0]
    assert grouped["place"] == raw["city"]
    assert grouped["user"] == f"device={raw['device']}, age={raw['age']}, history={raw['history']}"
    assert result.shapley.to_frame().shape[0] == 3


def test_dict_inputs_select_rows(schema, inputs):
    model = scrambled_model("deepfm", schema)
    everything = exact_indices(model, inputs)
    selected = exact_indices(model, inputs, [5, 2])
    np.testing.assert_array_equal(selected.shapley.rows, [5, 2])
    np.testing.assert_allclose(selected.shapley.values, everything.shapley.values[[5, 2]], atol=1e-12)
    assert selected.shapley.labels is None
    assert selected.shapley.raw_values is None


# --- the Interaction result ------------------------------------------------------------


def test_interaction_frames(schema, inputs):
    model = scrambled_model("deepfm", schema)
    fsii = exact_indices(model, inputs).fsii
    n = len(FIELDS)

    frame = fsii.to_frame()
    assert list(frame.columns) == ["row", "player_i", "player_j", "order", "value", "index", "baseline", "output_space"]
    assert len(frame) == 6 * (n + n * (n - 1) // 2)
    first = frame[frame["row"] == 0]
    main = first[first["order"] == 1]
    np.testing.assert_allclose(main["value"], fsii.main_effects[0])
    assert (main["player_i"] == main["player_j"]).all()
    pair = first[(first["player_i"] == "user") & (first["player_j"] == "hour")]
    assert pair["value"].item() == fsii.pairs[0, 0, 2]
    assert frame["index"].unique().tolist() == ["FSII"]

    mean_abs = fsii.mean_abs()
    assert isinstance(mean_abs, pd.DataFrame)
    assert list(mean_abs.index) == list(FIELDS)
    np.testing.assert_allclose(mean_abs.to_numpy(), np.abs(fsii.pairs).mean(axis=0))
    np.testing.assert_allclose(np.diag(fsii.mean_abs(include_main_effects=True)), np.abs(fsii.main_effects).mean(0))
    np.testing.assert_allclose(fsii.mean().to_numpy(), fsii.pairs.mean(axis=0))
    assert "index: FSII" in fsii.describe()


def test_interaction_rejects_asymmetric_pairs():
    pairs = np.zeros((1, 2, 2))
    pairs[0, 0, 1] = 1.0
    with pytest.raises(ValueError, match=r"pairs must be symmetric"):
        Interaction(
            main_effects=np.zeros((1, 2)),
            pairs=pairs,
            base_values=np.zeros(1),
            predictions=np.zeros(1),
            player_names=("a", "b"),
            rows=np.zeros(1, dtype=int),
            index="SII",
            baseline="zero",
        )


def test_interaction_rejects_nonzero_diagonal():
    with pytest.raises(ValueError, match=r"pairs must have a zero diagonal"):
        Interaction(
            main_effects=np.zeros((1, 2)),
            pairs=np.ones((1, 2, 2)),
            base_values=np.zeros(1),
            predictions=np.zeros(1),
            player_names=("a", "b"),
            rows=np.zeros(1, dtype=int),
            index="SII",
            baseline="zero",
        )


# --- errors ------------------------------------------------------------------------------


def test_too_many_players(schema, inputs):
    model = scrambled_model("deepfm", schema)
    with pytest.raises(ValueError, match=r"2\*\*6 = 64 coalitions .* above max_players=5; group fields .* sampled method"):
        exact_indices(model, inputs, max_players=5)


def test_groups_fit_under_max_players(schema, inputs):
    model = scrambled_model("deepfm", schema)
    players = {"a": ["user", "item"], "b": ["hour", "price"], "c": ["history", "vec"]}
    result = exact_indices(model, inputs, players=players, max_players=3)
    assert result.shapley.values.shape == (6, 3)


@pytest.mark.parametrize("max_players", [0, 2.5, True])
def test_invalid_max_players(max_players, schema, inputs):
    model = scrambled_model("lr", schema)
    with pytest.raises(ValueError, match=r"max_players must be an integer >= 1"):
        exact_indices(model, inputs, max_players=max_players)


def test_unknown_baseline_in_exact(schema, inputs):
    model = scrambled_model("lr", schema)
    with pytest.raises(ValueError, match=r"unknown baseline 'median'"):
        exact_indices(model, inputs, baseline="median")


def test_background_missing_in_exact(schema, inputs):
    model = scrambled_model("lr", schema)
    with pytest.raises(ValueError, match=r"baseline 'expectation' needs background rows"):
        exact_indices(model, inputs, baseline="expectation")


def test_invalid_groups_in_exact(schema, inputs):
    model = scrambled_model("lr", schema)
    with pytest.raises(ValueError, match=r"fields missing from the groups: hour, price, history, vec"):
        exact_indices(model, inputs, players={"a": ["user", "item"]})


def test_rows_out_of_range(schema, inputs):
    model = scrambled_model("lr", schema)
    with pytest.raises(IndexError, match=r"rows must lie in 0\.\.5; got 2\.\.6"):
        exact_indices(model, inputs, [2, 6])


def test_no_rows(schema, inputs):
    model = scrambled_model("lr", schema)
    with pytest.raises(ValueError, match=r"no rows to explain"):
        exact_indices(model, inputs, [])
