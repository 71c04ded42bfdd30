"""Deletion and insertion curves, their areas, infidelity, attention scores and the figures.

Curves are checked point by point against the coalition game, areas against
hand computations, infidelity against the closed form of an additive model,
against a numpy recomputation on captum's own draws and against the exact
expectation over all drop sets. One acceptance test runs on the bundled DeepFM.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY_HYPERPARAMETERS, array, build_tiny_model, one_torch_thread  # noqa: F401
from test_game import scrambled_model, tiny_inputs
from test_game import tiny_schema as six_field_schema
from workbench import faithfulness
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.explain import explain
from workbench.explain.exact import exact_indices
from workbench.explain.game import EmbeddingGame
from workbench.faithfulness import (
    PAIR_ATTENTION_ARCHITECTURES,
    RANDOM_NAME,
    ablation_curves,
    attention_field_scores,
    compare_explainers,
    curve_auc,
    infidelity,
    ranking_order,
    relative_auc,
)
from workbench.faithfulness_figures import AXIS_SPACE, LEGEND_ROW_HEIGHT, ablation_curve_figure, auc_bar
from workbench.probes import capture_probes
from workbench.schema import Field, Schema, Vocabulary

REPO_ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("user", "item", "hour", "price")


def four_field_schema() -> Schema:
    return Schema(
        [
            Field("user", "categorical", vocabulary=Vocabulary(["u1", "u2", "u3", "u4"])),
            Field("item", "categorical", vocabulary=Vocabulary(["i1", "i2", "i3", "i4", "i5"])),
            Field("hour", "categorical", vocabulary=Vocabulary(["morning", "noon", "night"])),
            Field("price", "numeric", mean=3.0, std=2.0),
        ]
    )


@pytest.fixture(scope="module")
def schema() -> Schema:
    return four_field_schema()


@pytest.fixture(scope="module")
def inputs(schema) -> dict[str, torch.Tensor]:
    return tiny_inputs(schema, 5, seed=3)


@pytest.fixture(scope="module")
def deepfm(schema):
    return scrambled_model("deepfm", schema)


@pytest.fixture(scope="module")
def lr(schema):
    return scrambled_model("lr", schema, seed=2)


def _coalition(members: set[int]) -> np.ndarray:
    return np.array([[p in members for p in range(len(FIELDS))]])


# --- rankings and areas -------------------------------------------------------------


def test_ranking_breaks_ties_by_player_order():
    scores = np.array([[1.0, 2.0, 2.0, 0.0], [0.0, -0.0, 0.0, 3.0], [-1.0, -1.0, -1.0, -1.0]])
    np.testing.assert_array_equal(ranking_order(scores), [[1, 2, 0, 3], [3, 0, 1, 2], [0, 1, 2, 3]])


def test_ranking_ties_stable_for_many_players():
    """With 100 players numpy's default sort is not stable, so this fails unless the sort is."""
    scores = np.tile([1.0, 0.0, 2.0, 1.0], 25)[None]
    players = np.arange(100)
    expected = np.concatenate([players[scores[0] == 2.0], players[scores[0] == 1.0], players[scores[0] == 0.0]])
    np.testing.assert_array_equal(ranking_order(scores)[0], expected)


def test_curve_auc_by_hand():
    curves = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0], [2.0, 2.0, 2.0]])
    # P = 2: (sum - (first + last) / 2) / 2
    np.testing.assert_allclose(curve_auc(curves), [0.25, 0.5, 2.0])


def test_curve_auc_rejects_single_column():
    with pytest.raises(ValueError, match="at least one player"):
        curve_auc(np.zeros((3, 1)))


def test_relative_auc_equals_ratio_for_equal_spans():
    areas = np.array([0.5, 1.5, 1.0])
    full = np.array([2.0, 3.0, 0.0])
    empty = np.array([0.0, 1.0, -2.0])
    np.testing.assert_allclose(relative_auc(areas, full, empty), (areas - empty) / (full - empty))


def test_relative_auc_stays_finite_for_zero_span():
    areas = np.array([0.3, 1.0])
    full = np.array([0.2 + 1e-15, 2.0])
    empty = np.array([0.2, 0.0])
    relative = relative_auc(areas, full, empty)
    mean_span = (1e-15 + 2.0) / 2
    np.testing.assert_allclose(relative, [(0.3 - 0.2) / mean_span, 1.0 / mean_span])
    assert np.all(np.abs(relative) < 1.0)


def test_relative_auc_nan_without_any_span():
    assert np.isnan(relative_auc(np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([1.0, 2.0]))).all()


def test_relative_auc_keeps_paired_differences_proportional():
    rng = np.random.default_rng(0)
    full, empty = rng.normal(size=20), rng.normal(size=20)
    first, second = rng.normal(size=20), rng.normal(size=20)
    scale = np.abs(full - empty).mean()
    difference = relative_auc(first, full, empty) - relative_auc(second, full, empty)
    np.testing.assert_allclose(difference, (first - second) / scale)


# --- curves by hand -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_curve_points_equal_game_values(mode, deepfm, inputs):
    scores = np.array(
        [
            [0.5, 2.0, 0.5, -1.0],  # order 1, 0, 2, 3 (the tie 0/2 keeps player order)
            [-3.0, 1.0, 2.0, 0.0],  # order 2, 1, 3, 0
            [0.0, 0.0, 0.0, 0.0],  # order 0, 1, 2, 3
            [4.0, 3.0, 2.0, 1.0],
            [1.0, 2.0, 3.0, 4.0],
        ]
    )
    orders = [[1, 0, 2, 3], [2, 1, 3, 0], [0, 1, 2, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    curves = ablation_curves(deepfm, inputs, None, scores, mode=mode)
    game = EmbeddingGame(deepfm, inputs)
    assert curves.shape == (5, len(FIELDS) + 1)
    for sample, order in enumerate(orders):
        for k in range(len(FIELDS) + 1):
            acted = set(order[:k])
            present = acted if mode == "insertion" else set(range(len(FIELDS))) - acted
            expected = game.values(_coalition(present), samples=[sample])[0, 0]
            assert curves[sample, k] == pytest.approx(expected, abs=1e-6), (sample, k)


def test_curve_endpoints_are_prediction_and_base_value(deepfm, inputs):
    scores = np.random.default_rng(1).normal(size=(5, len(FIELDS)))
    exact = exact_indices(deepfm, inputs).shapley
    deletion = ablation_curves(deepfm, inputs, None, scores, mode="deletion")
    insertion = ablation_curves(deepfm, inputs, None, scores, mode="insertion")
    np.testing.assert_allclose(deletion[:, 0], exact.predictions, atol=1e-6)
    np.testing.assert_allclose(deletion[:, -1], exact.base_values, atol=1e-6)
    np.testing.assert_allclose(insertion[:, 0], exact.base_values, atol=1e-6)
    np.testing.assert_allclose(insertion[:, -1], exact.predictions, atol=1e-6)


def test_curves_use_game_baseline(deepfm, inputs, schema):
    """An absent field takes the 'expectation' baseline: the endpoint is the exact base value for it."""
    background = tiny_inputs(schema, 4, seed=9)
    exact = exact_indices(deepfm, inputs, baseline="expectation", background=background).shapley
    deletion = ablation_curves(
        deepfm, inputs, None, exact, mode="deletion", baseline="expectation", background=background
    )
    np.testing.assert_allclose(deletion[:, -1], exact.base_values, atol=1e-6)
    np.testing.assert_allclose(deletion[:, 0], exact.predictions, atol=1e-6)


def test_curves_with_groups_and_probability(deepfm, inputs):
    groups = {"who": ["user"], "what": ["item", "price"], "when": ["hour"]}
    scores = np.array([[1.0, 3.0, 2.0]] * 5)  # order what, when, who
    curves = ablation_curves(deepfm, inputs, None, scores, mode="insertion", players=groups, output_space="probability")
    game = EmbeddingGame(deepfm, inputs, players=groups, output_space="probability")
    expected = game.values(np.array([[0, 0, 0], [0, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=bool))
    np.testing.assert_allclose(curves, expected, atol=1e-7)


def test_additive_shapley_deletion_is_steepest(lr, inputs):
    """For LR (additive), the exact Shapley order has the lowest deletion and highest insertion AUC of all 24 orders."""
    shapley = exact_indices(lr, inputs).shapley
    best_deletion = curve_auc(ablation_curves(lr, inputs, None, shapley, mode="deletion"))
    best_insertion = curve_auc(ablation_curves(lr, inputs, None, shapley, mode="insertion"))
    n_samples = shapley.n_samples
    for order in itertools.permutations(range(len(FIELDS))):
        scores = np.zeros((n_samples, len(FIELDS)))
        scores[:, list(order)] = np.arange(len(FIELDS), 0, -1)
        deletion = curve_auc(ablation_curves(lr, inputs, None, scores, mode="deletion"))
        insertion = curve_auc(ablation_curves(lr, inputs, None, scores, mode="insertion"))
        assert np.all(best_deletion <= deletion + 1e-9), order
        assert np.all(best_insertion >= insertion - 1e-9), order
    spread = np.ptp(shapley.values, axis=1)
    assert spread.min() > 0.1  # the orders differ, so the check above is not trivial


# --- input checks ---------------------------------------------------------------------


def test_unknown_mode(deepfm, inputs):
    with pytest.raises(ValueError, match="unknown mode 'sideways'; valid: deletion, insertion"):
        ablation_curves(deepfm, inputs, None, np.zeros((5, 4)), mode="sideways")


def test_scores_wrong_shape(deepfm, inputs):
    with pytest.raises(ValueError, match=r"explainer 'scores'.*\(5, 4\).*got \(5, 3\)"):
        ablation_curves(deepfm, inputs, None, np.zeros((5, 3)))


def test_scores_not_finite(deepfm, inputs):
    scores = np.zeros((5, 4))
    scores[2, 1] = np.nan
    with pytest.raises(ValueError, match="player 'item' for row 2 is nan"):
        ablation_curves(deepfm, inputs, None, scores)


def test_mismatched_rows_name_explainer(deepfm, inputs):
    shapley = exact_indices(deepfm, inputs, [0, 1, 2]).shapley
    with pytest.raises(ValueError, match=r"explainer 'shap'.*3 rows \[0, 1, 2\].*2 rows \[0, 2\]"):
        compare_explainers(deepfm, inputs, [0, 2], {"shap": shapley})


def test_mismatched_players_name_explainer(deepfm, inputs):
    grouped = exact_indices(deepfm, inputs, players={"a": ["user", "item"], "b": ["hour", "price"]}).shapley
    with pytest.raises(ValueError, match=r"explainer 'grouped': its players are a, b; .*user, item, hour, price"):
        compare_explainers(deepfm, inputs, None, {"grouped": grouped})


def test_same_names_other_groups_rejected(deepfm, inputs):
    first = exact_indices(deepfm, inputs, players={"a": ["user", "item"], "b": ["hour", "price"]}).shapley
    with pytest.raises(ValueError, match="explainer 'x': its player groups .* contain other fields"):
        compare_explainers(deepfm, inputs, None, {"x": first}, players={"a": ["user"], "b": ["item", "hour", "price"]})


def test_reserved_random_name(deepfm, inputs):
    with pytest.raises(ValueError, match="'random' is reserved"):
        compare_explainers(deepfm, inputs, None, {RANDOM_NAME: np.zeros((5, 4))})


def test_empty_attributions(deepfm, inputs):
    with pytest.raises(ValueError, match="non-empty mapping"):
        compare_explainers(deepfm, inputs, None, {})


@pytest.mark.parametrize("n_random", [0, 1.5, True])
def test_invalid_n_random(n_random, deepfm, inputs):
    with pytest.raises(ValueError, match="n_random must be an integer >= 1"):
        compare_explainers(deepfm, inputs, None, {"zeros": np.zeros((5, 4))}, n_random=n_random)


# --- comparing explainers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def comparison(deepfm, inputs):
    shapley = exact_indices(deepfm, inputs).shapley
    reversed_scores = -shapley.values
    return compare_explainers(
        deepfm,
        inputs,
        None,
        {"exact_shapley": shapley, "reversed": reversed_scores},
        n_random=6,
        random_state=4,
        with_infidelity=True,
        n_perturbations=20,
    )


def test_comparison_curves_match_ablation_curves(comparison, deepfm, inputs):
    shapley = exact_indices(deepfm, inputs).shapley
    for mode in ("deletion", "insertion"):
        single = ablation_curves(deepfm, inputs, None, shapley, mode=mode)
        np.testing.assert_allclose(comparison.curves[mode]["exact_shapley"], single, atol=1e-9)
        np.testing.assert_allclose(comparison.aucs[mode]["exact_shapley"], curve_auc(single), atol=1e-9)


def test_random_curve_is_mean_of_seeded_orders(comparison, deepfm, inputs):
    generator = np.random.default_rng(4)
    orders = np.argsort(generator.random((6, 5, len(FIELDS))), axis=2)
    draws = []
    for draw in orders:
        scores = np.zeros((5, len(FIELDS)))
        np.put_along_axis(scores, draw, np.arange(len(FIELDS), 0, -1)[None].repeat(5, axis=0), axis=1)
        draws.append(ablation_curves(deepfm, inputs, None, scores, mode="deletion"))
    draws = np.stack(draws)
    np.testing.assert_allclose(comparison.curves["deletion"][RANDOM_NAME], draws.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(comparison.random_draw_curves["deletion"], draws.mean(axis=1), atol=1e-9)
    low, high = comparison.random_range("deletion")
    np.testing.assert_allclose(low, draws.mean(axis=1).min(axis=0), atol=1e-9)
    np.testing.assert_allclose(high, draws.mean(axis=1).max(axis=0), atol=1e-9)


def test_comparison_frame_values(comparison):
    frame = comparison.to_frame().set_index(["explainer", "mode"])
    assert list(comparison.explainers) == ["exact_shapley", "reversed", RANDOM_NAME]
    assert len(frame) == 6
    for (explainer, mode), line in frame.iterrows():
        aucs = comparison.aucs[mode][explainer]
        assert line["auc_mean"] == pytest.approx(aucs.mean())
        assert line["auc_se"] == pytest.approx(aucs.std(ddof=1) / np.sqrt(5))
        assert line["n_samples"] == 5
        difference = aucs - comparison.aucs[mode][RANDOM_NAME]
        assert line["auc_minus_random_mean"] == pytest.approx(difference.mean())
    assert np.isnan(frame.loc[(RANDOM_NAME, "deletion"), "infidelity_mean"])
    assert frame.loc[("exact_shapley", "deletion"), "infidelity_mean"] == pytest.approx(
        comparison.infidelities["exact_shapley"].mean()
    )
    # Reversing the Shapley ranking must not beat it.
    assert frame.loc[("exact_shapley", "deletion"), "auc_mean"] < frame.loc[("reversed", "deletion"), "auc_mean"]
    assert frame.loc[("exact_shapley", "insertion"), "auc_mean"] > frame.loc[("reversed", "insertion"), "auc_mean"]


def test_curve_frame_values(comparison):
    frame = comparison.curve_frame()
    assert len(frame) == 3 * 2 * (len(FIELDS) + 1)
    line = frame[(frame["explainer"] == "reversed") & (frame["mode"] == "insertion") & (frame["k"] == 2)].iloc[0]
    assert line["fraction"] == pytest.approx(0.5)
    assert line["mean"] == pytest.approx(comparison.curves["insertion"]["reversed"][:, 2].mean())
    assert np.isnan(line["random_min"])
    random_line = frame[(frame["explainer"] == RANDOM_NAME) & (frame["mode"] == "deletion") & (frame["k"] == 1)]
    assert random_line["random_min"].iloc[0] == pytest.approx(comparison.random_range("deletion")[0][1])


def test_comparison_endpoints(comparison, deepfm, inputs):
    shapley = exact_indices(deepfm, inputs).shapley
    np.testing.assert_allclose(comparison.full_values, shapley.predictions, atol=1e-6)
    np.testing.assert_allclose(comparison.empty_values, shapley.base_values, atol=1e-6)
    for explainer in comparison.explainers:
        np.testing.assert_allclose(comparison.curves["insertion"][explainer][:, -1], shapley.predictions, atol=1e-6)


def test_comparison_seed_reproducible(deepfm, inputs):
    scores = {"ones": np.ones((5, 4))}
    options = {"n_random": 3, "with_infidelity": True, "n_perturbations": 8}
    first = compare_explainers(deepfm, inputs, None, scores, random_state=11, **options)
    second = compare_explainers(deepfm, inputs, None, scores, random_state=11, **options)
    other = compare_explainers(deepfm, inputs, None, scores, random_state=12, **options)
    for mode in ("deletion", "insertion"):
        np.testing.assert_array_equal(first.curves[mode][RANDOM_NAME], second.curves[mode][RANDOM_NAME])
        assert not np.array_equal(first.curves[mode][RANDOM_NAME], other.curves[mode][RANDOM_NAME])
    np.testing.assert_array_equal(first.infidelities["ones"], second.infidelities["ones"])
    assert not np.array_equal(first.infidelities["ones"], other.infidelities["ones"])


def test_result_unknown_explainer(comparison):
    with pytest.raises(KeyError, match="no explainer named 'ig'"):
        comparison.mean_curve("ig", "deletion")


# --- infidelity ----------------------------------------------------------------------------


def test_infidelity_zero_for_additive_shapley(lr, inputs):
    shapley = exact_indices(lr, inputs).shapley
    values = infidelity(lr, inputs, None, shapley, n_perturbations=50, random_state=0)
    assert values.shape == (5,)
    assert values.max() <= 1e-10


def test_infidelity_positive_for_wrong_values(lr, inputs):
    shapley = exact_indices(lr, inputs).shapley
    values = infidelity(lr, inputs, None, 2.0 * shapley.values, n_perturbations=50, random_state=0)
    assert values.min() > 1e-3


def test_infidelity_matches_numpy_on_captum_draws(schema, inputs, monkeypatch):
    """Record the masks captum forwards and recompute E[(I·φ − (v(N) − v(N minus D)))²] with numpy.

    The model runs in float64, so that forwarding a row alone or in a batch gives the same value.
    """
    deepfm = scrambled_model("deepfm", schema).double()
    recorded: list[tuple[np.ndarray, np.ndarray]] = []
    real_infidelity = faithfulness.captum_infidelity

    def recording_infidelity(forward, perturb, mask, attributions, **options):
        def recording_forward(batch_mask, sample):
            recorded.append((batch_mask.numpy().copy(), sample.numpy().copy()))
            return forward(batch_mask, sample)

        return real_infidelity(recording_forward, perturb, mask, attributions, **options)

    monkeypatch.setattr(faithfulness, "captum_infidelity", recording_infidelity)
    scores = np.random.default_rng(5).normal(size=(5, len(FIELDS)))
    values = infidelity(deepfm, inputs, None, scores, n_perturbations=30, drop_probability=0.4, random_state=2)

    game = EmbeddingGame(deepfm, inputs)
    full = game.values(np.ones((1, len(FIELDS)), dtype=bool))[:, 0]
    perturbed_masks, perturbed_samples = recorded[0]
    assert perturbed_masks.shape == (5 * 30, len(FIELDS))
    errors = np.zeros(5)
    counts = np.zeros(5)
    for mask, sample in zip(perturbed_masks, perturbed_samples, strict=True):
        dropped = 1.0 - mask
        present = game.values(mask[None].astype(bool), samples=[sample])[0, 0]
        errors[sample] += (dropped @ scores[sample] - (full[sample] - present)) ** 2
        counts[sample] += 1
    np.testing.assert_array_equal(counts, 30)
    np.testing.assert_allclose(values, errors / counts, rtol=1e-10, atol=1e-12)


def test_infidelity_monte_carlo_matches_enumeration(deepfm, inputs):
    """Captum's mean over 4,000 draws lies within 4 standard errors of the exact expectation over all 16 drop sets."""
    p, n_draws = 0.3, 4000
    scores = np.random.default_rng(6).normal(size=(5, len(FIELDS)))
    values = infidelity(deepfm, inputs, None, scores, n_perturbations=n_draws, drop_probability=p, random_state=3)

    game = EmbeddingGame(deepfm, inputs)
    drop_sets = np.array(list(itertools.product([0.0, 1.0], repeat=len(FIELDS))))
    probabilities = p ** drop_sets.sum(axis=1) * (1 - p) ** (len(FIELDS) - drop_sets.sum(axis=1))
    game_values = game.values((1.0 - drop_sets).astype(bool))  # (n_samples, 16)
    full = game.values(np.ones((1, len(FIELDS)), dtype=bool))
    squared = (drop_sets @ scores.T - (full - game_values).T) ** 2  # (16, n_samples)
    expected = probabilities @ squared
    # The mean of n i.i.d. squared errors has standard error sqrt(Var[e²] / n).
    standard_error = np.sqrt((probabilities @ squared**2 - expected**2) / n_draws)
    assert np.all(standard_error > 0)
    assert np.all(np.abs(values - expected) <= 4 * standard_error), (values, expected, standard_error)


def test_infidelity_seeded_and_global_rng_untouched(deepfm, inputs):
    scores = np.random.default_rng(7).normal(size=(5, len(FIELDS)))
    state = torch.get_rng_state()
    first = infidelity(deepfm, inputs, None, scores, n_perturbations=10, random_state=5)
    assert torch.equal(torch.get_rng_state(), state)
    second = infidelity(deepfm, inputs, None, scores, n_perturbations=10, random_state=5)
    np.testing.assert_array_equal(first, second)


def test_infidelity_normalize_ignores_scale(deepfm, inputs):
    scores = np.random.default_rng(8).normal(size=(5, len(FIELDS)))
    plain = infidelity(deepfm, inputs, None, scores, n_perturbations=20, normalize=True)
    scaled = infidelity(deepfm, inputs, None, 3.0 * scores, n_perturbations=20, normalize=True)
    np.testing.assert_allclose(plain, scaled, rtol=1e-9)


def test_infidelity_rejects_other_units(deepfm, inputs):
    shapley = exact_indices(deepfm, inputs, output_space="probability").shapley
    with pytest.raises(ValueError, match="'attribution' has values in probability units but the game runs in logit"):
        infidelity(deepfm, inputs, None, shapley)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_perturbations": 0}, "n_perturbations must be an integer >= 1"),
        ({"drop_probability": 0.0}, r"drop_probability must be in \(0, 1\]"),
        ({"drop_probability": "half"}, "drop_probability must be a number"),
        ({"random_state": -1}, "random_state must be an integer >= 0"),
    ],
)
def test_infidelity_invalid_options(options, message, deepfm, inputs):
    with pytest.raises(ValueError, match=message):
        infidelity(deepfm, inputs, None, np.zeros((5, 4)), **options)


# --- attention ----------------------------------------------------------------------------


def test_attention_scores_are_mean_received_attention(schema, inputs):
    model = scrambled_model("autoint+", schema, attention_layers=2)
    scores = attention_field_scores(model, inputs, [0, 3, 4])
    selected = {name: tensor[[0, 3, 4]] for name, tensor in inputs.items()}
    weights = capture_probes(model, selected, names=["attention"])["attention"].values  # (3, 2, 2, 4, 4)
    expected = np.stack([[weights[s, :, :, :, j].mean() for j in range(len(FIELDS))] for s in range(3)])
    np.testing.assert_allclose(scores, expected, atol=1e-7)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)


def test_attention_scores_sum_groups(schema, inputs):
    model = scrambled_model("autoint+", schema)
    per_field = attention_field_scores(model, inputs)
    grouped = attention_field_scores(model, inputs, players={"a": ["user", "price"], "b": ["item", "hour"]})
    np.testing.assert_allclose(grouped[:, 0], per_field[:, 0] + per_field[:, 3], atol=1e-12)
    np.testing.assert_allclose(grouped[:, 1], per_field[:, 1] + per_field[:, 2], atol=1e-12)


def test_attention_rejects_model_without_probe(deepfm, inputs):
    expected = r"deepfm has no field x field attention probe.*architectures with one: autoint\+"
    with pytest.raises(ValueError, match=expected):
        attention_field_scores(deepfm, inputs)


@pytest.mark.parametrize("architecture", sorted(TINY_HYPERPARAMETERS))
def test_pair_attention_architectures_complete(architecture):
    model = build_tiny_model(architecture, six_field_schema())
    has_probe = any(probe.kind == "attention" and probe.is_pair_map for probe in model.probes())
    assert has_probe == (architecture in PAIR_ATTENTION_ARCHITECTURES)


# --- figures --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_curve_figure_traces(mode, comparison):
    figure = ablation_curve_figure(comparison, mode)
    band, *lines = figure.data
    assert band.fill == "toself"
    assert [trace.name.split(" · ")[0] for trace in lines] == list(comparison.explainers)
    for trace, explainer in zip(lines, comparison.explainers, strict=True):
        np.testing.assert_allclose(array(trace.y), comparison.mean_curve(explainer, mode))
        assert f"AUC {comparison.auc_mean(explainer, mode):.3f}" in trace.name
        assert trace.line.dash == ("dash" if explainer == RANDOM_NAME else "solid")
    low, high = comparison.random_range(mode)
    np.testing.assert_allclose(array(band.y), np.concatenate([high, low[::-1]]))
    assert figure.layout.yaxis.title.text == "mean model output (logit)"
    assert ("lower AUC" if mode == "deletion" else "higher AUC") in figure.layout.title.subtitle.text


@pytest.mark.parametrize("builder", [ablation_curve_figure, auc_bar])
def test_figure_legend_below_axis_title(builder, comparison):
    figure = builder(comparison)
    legend = figure.layout.legend
    # Anchored to the figure's bottom edge, below a margin with room for the x title and one row per entry.
    assert (legend.yref, legend.y, legend.yanchor) == ("container", 0.0, "bottom")
    assert figure.layout.margin.b == AXIS_SPACE + LEGEND_ROW_HEIGHT * len(figure.data)
    plot_height = figure.layout.height - figure.layout.margin.t - figure.layout.margin.b
    assert plot_height >= 150


def test_curve_figure_subtitle_fits_half_width(comparison):
    subtitle = ablation_curve_figure(comparison, "deletion").layout.title.subtitle.text
    lines = subtitle.split("<br>")
    assert len(lines) == 2
    # About 80 characters of the subtitle font fit a chart half the page wide.
    assert max(len(line) for line in lines) <= 80
    assert lines[1].endswith("lower AUC is more faithful")


def test_curve_figure_unknown_mode(comparison):
    with pytest.raises(ValueError, match="unknown mode 'both'"):
        ablation_curve_figure(comparison, "both")


def test_auc_bar_values(comparison):
    figure = auc_bar(comparison)
    deletion, insertion = figure.data
    assert list(deletion.y) == list(comparison.explainers)
    np.testing.assert_allclose(
        array(insertion.x), [comparison.auc_mean(name, "insertion") for name in comparison.explainers]
    )
    assert figure.layout.xaxis.title.text == "mean AUC (logit)"


# --- acceptance on the bundled DeepFM ----------------------------------------------------


def test_bundled_deepfm_shapley_beats_random():
    """On 100 test rows, exact Shapley orders delete faster and insert faster than random orders."""
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_deepfm")
    data = load_dataset(REPO_ROOT / "sample_data" / "ad_clicks" / "test.parquet", bundle.schema, max_rows=100)
    shapley = explain(bundle.model, data, None, method="exact_shapley")
    result = compare_explainers(bundle.model, data, None, {"exact_shapley": shapley}, n_random=10, random_state=0)
    frame = result.to_frame().set_index(["explainer", "mode"])
    deletion = frame.loc[("exact_shapley", "deletion")]
    insertion = frame.loc[("exact_shapley", "insertion")]
    assert deletion["auc_mean"] <= frame.loc[(RANDOM_NAME, "deletion"), "auc_mean"]
    assert insertion["auc_mean"] >= frame.loc[(RANDOM_NAME, "insertion"), "auc_mean"]
    # The paired difference is far outside its standard error, not a close call.
    assert deletion["auc_minus_random_mean"] < -5 * deletion["auc_minus_random_se"]
    assert insertion["auc_minus_random_mean"] > 5 * insertion["auc_minus_random_se"]
