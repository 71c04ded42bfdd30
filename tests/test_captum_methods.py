"""captum FeatureAblation and ShapleyValueSampling on field embeddings, and the rejected id methods."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from captum.attr import (
    GradientShap,
    IntegratedGradients,
    LayerConductance,
    LayerGradientShap,
    LayerIntegratedGradients,
    NoiseTunnel,
)

from helpers import one_torch_thread  # noqa: F401  (autouse fixture)
from test_game import scrambled_model, tiny_inputs
from test_sampling import GROUPS_OF_SEVEN, coverage, eight_field_schema
from workbench.explain.captum_methods import (
    UNSUPPORTED_METHODS,
    captum_feature_ablation,
    captum_shapley_sampling,
    check_method_supported,
    shapley_sampling_plan,
    unsupported_method_message,
)
from workbench.explain.exact import exact_indices
from workbench.explain.game import EmbeddingGame

N_SAMPLES = 30


@pytest.fixture(scope="module")
def schema():
    return eight_field_schema()


@pytest.fixture(scope="module")
def inputs(schema):
    return tiny_inputs(schema, N_SAMPLES, seed=5)


@pytest.fixture(scope="module")
def background(schema):
    return tiny_inputs(schema, 3, seed=9)


@pytest.fixture(scope="module")
def model(schema):
    return scrambled_model("dcnv2", schema)


# --- FeatureAblation ---------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["zero", "oov", "mean", "expectation"])
@pytest.mark.parametrize("output_space", ["logit", "probability"])
def test_feature_ablation_is_leave_one_out(baseline, output_space, model, inputs, background):
    options = {"baseline": baseline, "output_space": output_space, "background": background}
    result = captum_feature_ablation(model, inputs, **options)
    game = EmbeddingGame(model, inputs, **options)
    leave_one_out = ~np.eye(8, dtype=bool)
    values = game.values(np.concatenate([np.ones((1, 8), dtype=bool), leave_one_out]))
    # float32 forward passes of other batch sizes may round differently (a few ulps).
    np.testing.assert_allclose(result.values, values[:, :1] - values[:, 1:], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.predictions, values[:, 0], rtol=0, atol=1e-12)
    assert result.method == "captum_feature_ablation"
    assert result.standard_errors is None


def test_feature_ablation_groups(model, inputs):
    result = captum_feature_ablation(model, inputs, players=GROUPS_OF_SEVEN)
    game = EmbeddingGame(model, inputs, players=GROUPS_OF_SEVEN)
    values = game.values(np.concatenate([np.ones((1, 7), dtype=bool), ~np.eye(7, dtype=bool)]))
    np.testing.assert_allclose(result.values, values[:, :1] - values[:, 1:], rtol=0, atol=1e-6)
    assert result.field_names == tuple(GROUPS_OF_SEVEN)


def test_feature_ablation_counts_evaluations(model, inputs):
    result = captum_feature_ablation(model, inputs, rows=range(4), budget=11)
    assert result.parameters["coalitions_per_sample"] == 11
    assert result.parameters["model_evaluations"] == 4 * 11
    with pytest.raises(ValueError, match=r"budget=10 is too small for feature ablation with 8 players"):
        captum_feature_ablation(model, inputs, budget=10)


# --- ShapleyValueSampling ---------------------------------------------------------------


def test_shapley_sampling_unbiased_over_seeds(model, inputs):
    """The mean over 50 seeds lies within 4 standard errors of the exact value in every cell.

    Each seed's estimate is unbiased, so the mean over R = 50 independent seeds
    has standard error s / sqrt(R), with s the spread over seeds. A t variable
    with 49 degrees of freedom exceeds 4 with probability 2e-4. captum gives
    all samples of a call the same permutations, so the 240 cells are strongly
    correlated and act like a few dozen independent ones. With 20 seeds one
    cell reached 5.5 standard errors (the spread of 20 seeds is itself noisy);
    with 50, four disjoint sets of seeds gave at most 2.6. The 1e-6 covers
    float32 accumulation.
    """
    truth = exact_indices(model, inputs).shapley.values
    runs = np.stack(
        [captum_shapley_sampling(model, inputs, budget=300, random_state=seed).values for seed in range(50)]
    )
    mean, spread = runs.mean(axis=0), runs.std(axis=0, ddof=1)
    assert np.all(np.abs(mean - truth) <= 4 * spread / np.sqrt(len(runs)) + 1e-6)


def test_shapley_sampling_efficient(model, inputs):
    """captum accumulates in float32, so the values add up to the prediction only to float32 round-off."""
    result = captum_shapley_sampling(model, inputs, budget=500, random_state=0)
    assert result.completeness_gap.max() < 1e-5


@pytest.mark.parametrize("baseline", ["zero", "mean", "expectation"])
def test_shapley_sampling_standard_errors_cover_exact(baseline, model, inputs, background):
    """Coverage averaged over 10 seeds is at least 90 %.

    captum gives all samples of a call the same permutations, so within one
    call the errors of all samples move together, and a single call's coverage
    varies widely: as low as 0.70 over 20 seeds for these 240 cells, with a
    mean of 0.93 to 0.95. The mean over seeds is what a calibrated standard
    error promises. The "mean" and "expectation" runs also check that every
    background row gets the same permutations, so that the average is the
    estimate of the averaged game.
    """
    options = {"baseline": baseline, "background": background}
    truth = exact_indices(model, inputs, **options).shapley.values
    rates = []
    for seed in range(10):
        result = captum_shapley_sampling(model, inputs, budget=2000, random_state=seed, **options)
        rates.append(coverage(result.values, result.standard_errors, truth))
    assert len(result.parameters["permutations_per_run"]) == 16
    assert np.mean(rates) >= 0.9


def test_shapley_sampling_seed_and_budget(model, inputs):
    first = captum_shapley_sampling(model, inputs, rows=range(5), budget=400, random_state=3)
    again = captum_shapley_sampling(model, inputs, rows=range(5), budget=400, random_state=3)
    np.testing.assert_array_equal(first.values, again.values)
    used = first.parameters["coalitions_per_sample"]
    assert used <= 400
    assert first.parameters["model_evaluations"] == 5 * used
    assert first.method == "captum_shapley_sampling"


def test_shapley_sampling_leaves_global_seed(model, inputs):
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    captum_shapley_sampling(model, inputs, rows=range(2), budget=100, random_state=0)
    assert torch.rand(1) == expected


@pytest.mark.parametrize(
    ("budget", "plan"), [(20, [1, 1]), (300, [3] * 3 + [2] * 13), (2000, [16] * 7 + [15] * 9)]
)
def test_shapley_sampling_plan(budget, plan):
    assert shapley_sampling_plan(8, budget) == plan
    assert 2 + len(plan) + 8 * sum(plan) <= budget


def test_shapley_sampling_small_budget_rejected(model, inputs):
    with pytest.raises(ValueError, match=r"budget=19 is too small for captum Shapley value sampling"):
        captum_shapley_sampling(model, inputs, budget=19)


# --- methods that cannot explain ids -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_METHODS))
def test_unsupported_method_raises(name):
    method = UNSUPPORTED_METHODS[name]
    with pytest.raises(ValueError, match=f"^{method.name} cannot explain a model with integer id inputs: ") as error:
        check_method_supported(method.name)
    assert method.reason in str(error.value)
    assert "Use '" in str(error.value)


@pytest.mark.parametrize(
    "name", ["captum.attr.NoiseTunnel", "shap.DeepExplainer", "layerconductance", " GradientExplainer "]
)
def test_unsupported_method_aliases(name):
    assert unsupported_method_message(name) is not None


@pytest.mark.parametrize("name", ["integrated_gradients", "LayerIntegratedGradients", "FeatureAblation", "kernel_shap"])
def test_supported_method_passes(name):
    assert unsupported_method_message(name) is None
    check_method_supported(name)


@pytest.fixture(scope="module")
def id_forward(model, inputs):
    names = model.schema.field_names

    def forward(*tensors):
        return model(dict(zip(names, tensors, strict=True)))

    ids = tuple(inputs[name][:4] for name in names)
    return forward, ids, tuple(torch.zeros_like(x) for x in ids)


@pytest.mark.parametrize(
    "method",
    ["IntegratedGradients", "NoiseTunnel", "LayerConductance", "GradientShap", "LayerGradientShap"],
)
def test_registry_claims_hold_for_captum(method, model, id_forward):
    """Each captum method the registry rejects does fail on id inputs, with the error it quotes."""
    forward, ids, baselines = id_forward
    layer = model.field_embedding.output
    runs = {
        "IntegratedGradients": lambda: IntegratedGradients(forward).attribute(ids, baselines=baselines, n_steps=4),
        "NoiseTunnel": lambda: NoiseTunnel(LayerIntegratedGradients(forward, layer)).attribute(
            ids, baselines=baselines, nt_samples=2, n_steps=4
        ),
        "LayerConductance": lambda: LayerConductance(forward, layer).attribute(ids, baselines=baselines, n_steps=4),
        "GradientShap": lambda: GradientShap(forward).attribute(ids, baselines=baselines, n_samples=2),
        "LayerGradientShap": lambda: LayerGradientShap(forward, layer).attribute(ids, baselines=baselines, n_samples=2),
    }
    with pytest.raises(RuntimeError, match="Expected tensor for argument #1 'indices'"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs[method]()


def test_registry_claims_hold_for_shap(model, inputs):
    """shap's DeepExplainer fails its additivity check and GradientExplainer gives id fields exactly 0."""
    shap = pytest.importorskip("shap")
    names = model.schema.field_names
    kinds = {f.name: f.kind for f in model.schema.fields}
    width = {}
    for f in model.schema.fields:
        if f.kind == "sequence":
            width[f.name] = f.max_length
        elif f.kind == "dense":
            width[f.name] = f.dim
        else:
            width[f.name] = 1

    class IdModel(torch.nn.Module):
        """Takes all inputs as one float matrix and casts the id columns back to integers."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, matrix: torch.Tensor) -> torch.Tensor:
            columns, start = {}, 0
            for name in names:
                part = matrix[:, start : start + width[name]]
                start += width[name]
                if kinds[name] in ("categorical", "sequence"):
                    part = part.long()
                columns[name] = part.squeeze(1) if kinds[name] in ("categorical", "numeric") else part
            return self.inner(columns).unsqueeze(-1)

    matrix = torch.cat([inputs[name].float().reshape(N_SAMPLES, -1) for name in names], dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradient_values = np.asarray(shap.GradientExplainer(IdModel(), matrix[:5]).shap_values(matrix[5:8])).squeeze(-1)
        with pytest.raises(AssertionError, match="do not sum up to the model's output"):
            shap.DeepExplainer(IdModel(), matrix[:5]).shap_values(matrix[5:8])
    id_columns = np.concatenate(
        [np.full(width[name], kinds[name] in ("categorical", "sequence")) for name in names]
    )
    assert np.all(gradient_values[:, id_columns] == 0)
    assert np.any(gradient_values[:, ~id_columns] != 0)
