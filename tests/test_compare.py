"""Tests of the model comparison engine and its figures, on hand-made attributions and on the bundled models."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from workbench import compare, compare_figures
from workbench.bundle import load_bundle
from workbench.data import load_dataset, read_frame, read_schema_spec
from workbench.explain import Attribution, explain
from workbench.explain.exact import exact_indices
from workbench.schema import Schema, fit_schema
from workbench.training import TrainConfig, predict_logits, train
from workbench.zoo import build_model

REPO_ROOT = Path(__file__).resolve().parents[1]
AD_CLICKS_DIR = REPO_ROOT / "sample_data" / "ad_clicks"
TEST_PATH = AD_CLICKS_DIR / "test.parquet"
N_ROWS = 100
DROPPED_FIELD = "os"


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(values, dtype=np.float64)))


def make_attribution(
    values: np.ndarray | list,
    field_names: tuple[str, ...] = ("f0", "f1", "f2", "f3"),
    *,
    rows: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    output_space: str = "logit",
    method: str = "exact_shapley",
    baseline: str = "zero",
    labels: np.ndarray | None = None,
) -> Attribution:
    values = np.asarray(values, dtype=np.float64)
    n_samples = values.shape[0]
    return Attribution(
        values=values,
        base_values=np.zeros(n_samples),
        predictions=values.sum(axis=1) if predictions is None else np.asarray(predictions, dtype=np.float64),
        field_names=field_names,
        rows=np.arange(n_samples) if rows is None else np.asarray(rows),
        method=method,
        baseline=baseline,
        output_space=output_space,
        labels=labels,
    )


# Three samples of four fields. Hand-computed:
# sample 0: B reverses A's order, so rho = tau = -1; top-2 by |.|: {f0, f1} and {f2, f3}, overlap 0.
# sample 1: same ranks (f1 < f3 < f0 < f2), rho = tau = 1; top-2 {f2, f1} and {f2, f0}, overlap 1/2.
# sample 2: A ranks (2.5, 2.5, 1, 4), B ranks (3, 2, 1, 4): rho = 4.5 / sqrt(4.5 * 5) = 3 / sqrt(10);
#   5 concordant pairs, 0 discordant, one tie in A: tau-b = 5 / sqrt(5 * 6);
#   top-2 of A {f3, f2}; of B f3, then f0 and f2 tie at 1 and f0 comes first: {f3, f0}, overlap 1/2.
HAND_FIRST = [[4.0, 3.0, 2.0, 1.0], [1.0, -2.0, 3.0, 0.0], [0.5, 0.5, -1.0, 2.0]]
HAND_SECOND = [[1.0, 2.0, 3.0, 4.0], [2.0, -1.0, 3.0, 1.0], [1.0, 0.0, -1.0, 2.0]]
HAND_SPEARMAN = [-1.0, 1.0, 3.0 / np.sqrt(10.0)]
HAND_KENDALL = [-1.0, 1.0, 5.0 / np.sqrt(30.0)]
HAND_TOP2 = [0.0, 0.5, 0.5]


@pytest.fixture(scope="module")
def groups() -> dict[str, list[str]]:
    return json.loads((AD_CLICKS_DIR / "groups.json").read_text())


@pytest.fixture(scope="module")
def bundled(groups):
    """Exact indices on the field groups and logits of DeepFM and DCNv2, on the first 100 test rows."""
    out = {}
    for name in ("ad_clicks_deepfm", "ad_clicks_dcnv2"):
        bundle = load_bundle(REPO_ROOT / "models" / name)
        dataset = load_dataset(TEST_PATH, bundle.schema, max_rows=N_ROWS)
        exact = exact_indices(bundle.model, dataset, np.arange(N_ROWS), players=groups)
        out[name] = (exact, predict_logits(bundle.model, dataset), bundle, dataset)
    return out


@pytest.fixture(scope="module")
def reduced_lr(tmp_path_factory):
    """An LR trained for one epoch on 4,000 training rows copied without the ``os`` column."""
    folder = tmp_path_factory.mktemp("reduced")
    spec = read_schema_spec(AD_CLICKS_DIR / "schema.json")
    spec = Schema(fields=[f for f in spec.fields if f.name != DROPPED_FIELD], label=spec.label)
    train_frame = read_frame(AD_CLICKS_DIR / "train.parquet", max_rows=4_000).drop(columns=[DROPPED_FIELD])
    valid_frame = read_frame(AD_CLICKS_DIR / "valid.parquet", max_rows=1_000).drop(columns=[DROPPED_FIELD])
    train_frame.to_parquet(folder / "train.parquet", index=False)
    valid_frame.to_parquet(folder / "valid.parquet", index=False)
    schema = fit_schema(train_frame, spec)
    model = build_model("lr", schema)
    train_set = load_dataset(folder / "train.parquet", schema)
    valid_set = load_dataset(folder / "valid.parquet", schema)
    train(model, train_set, valid_set, TrainConfig(epochs=1, batch_size=512), show_progress=False)
    model.eval()
    return model


# --- common fields --------------------------------------------------------------------


def test_common_fields_identical():
    fields, note = compare.common_fields(["a", "b", "c"], ["c", "a", "b"])
    assert fields == ["a", "b", "c"]
    assert note == ""


def test_common_fields_note_names_both_sides():
    fields, note = compare.common_fields(["a", "city", "b"], ["b", "os", "a"], names=("DeepFM", "LR"))
    assert fields == ["a", "b"]
    assert note == "compared on 2 common fields; left out: city (DeepFM only), os (LR only)"


def test_common_fields_rejects_equal_names():
    with pytest.raises(ValueError, match="must differ"):
        compare.common_fields(["a"], ["a"], names=("A", "A"))


# --- attribution agreement: hand-made values ----------------------------------------


def test_agreement_hand_example():
    agreement = compare.attribution_agreement(
        make_attribution(HAND_FIRST), make_attribution(HAND_SECOND), k=2
    )
    np.testing.assert_allclose(agreement.spearman, HAND_SPEARMAN, atol=1e-12)
    np.testing.assert_allclose(agreement.kendall, HAND_KENDALL, atol=1e-12)
    np.testing.assert_allclose(agreement.top_k_overlap, HAND_TOP2)
    assert agreement.note == ""
    assert agreement.k == 2


def test_agreement_hand_example_matches_scipy():
    agreement = compare.attribution_agreement(make_attribution(HAND_FIRST), make_attribution(HAND_SECOND), k=2)
    for position, (first, second) in enumerate(zip(HAND_FIRST, HAND_SECOND, strict=True)):
        assert agreement.spearman[position] == pytest.approx(stats.spearmanr(first, second).statistic)
        assert agreement.kendall[position] == pytest.approx(stats.kendalltau(first, second).statistic)


def test_agreement_hand_means_and_tables():
    first, second = make_attribution(HAND_FIRST), make_attribution(HAND_SECOND)
    agreement = compare.attribution_agreement(first, second, k=2, names=("M1", "M2"))
    np.testing.assert_allclose(agreement.mean_first, np.mean(HAND_FIRST, axis=0))
    np.testing.assert_allclose(agreement.mean_abs_second, np.abs(HAND_SECOND).mean(axis=0))

    table = agreement.field_table()
    # Mean |A| per field: f0 5.5/3, f1 5.5/3, f2 6/3, f3 3/3, so f2 leads and f0, f1 tie at rank 2.
    assert list(table.index) == ["f2", "f0", "f1", "f3"]
    assert table.loc["f0", "mean M1"] == pytest.approx(5.5 / 3)
    assert table.loc["f0", "difference"] == pytest.approx(5.5 / 3 - 4.0 / 3)
    assert list(table["rank M1"]) == [1, 2, 2, 4]
    assert table.loc["f3", "rank M2"] == 1

    samples = agreement.sample_table()
    assert list(samples.columns) == ["row", "spearman", "kendall", "top_k_overlap"]
    np.testing.assert_allclose(samples["kendall"], HAND_KENDALL, atol=1e-12)

    summary = agreement.summary()
    assert summary["mean_spearman"] == pytest.approx(np.mean(HAND_SPEARMAN))
    assert summary["median_kendall"] == pytest.approx(np.median(HAND_KENDALL))
    assert summary["mean_top_k_overlap"] == pytest.approx(1.0 / 3)
    assert summary["n_samples"] == 3
    assert summary["undefined_spearman"] == 0


def test_agreement_constant_row_is_nan():
    second = [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, -1.0, 2.0]]
    agreement = compare.attribution_agreement(make_attribution(HAND_FIRST), make_attribution(second), k=2)
    assert np.isnan(agreement.spearman[1])
    assert np.isnan(agreement.kendall[1])
    summary = agreement.summary()
    assert summary["undefined_spearman"] == 1
    assert summary["undefined_kendall"] == 1
    assert summary["mean_spearman"] == pytest.approx((-1.0 + 3.0 / np.sqrt(10.0)) / 2)


def test_agreement_drops_fields_of_one_model():
    first = make_attribution(np.array(HAND_FIRST)[:, [0, 1, 2]], ("f0", "f1", "city"))
    second = make_attribution(np.array(HAND_SECOND)[:, [1, 0]], ("f1", "f0"))
    agreement = compare.attribution_agreement(first, second, k=1)
    assert agreement.field_names == ("f0", "f1")
    assert agreement.note == "compared on 2 common fields; left out: city (A only)"
    np.testing.assert_allclose(agreement.mean_second, np.mean(HAND_SECOND, axis=0)[[0, 1]])


def test_agreement_notes_baseline_and_groups():
    first = replace(make_attribution(HAND_FIRST), parameters={"players": {"f0": ["x", "y"]}})
    second = make_attribution(HAND_SECOND, baseline="mean", method="kernel_shap")
    agreement = compare.attribution_agreement(first, second, k=2)
    assert "f0 = x, y in A but f0 in B" in agreement.note
    assert "different baselines: zero (A) and mean (B)" in agreement.note
    assert agreement.method == "exact_shapley / kernel_shap"


# --- attribution agreement: bad inputs ----------------------------------------------


def test_agreement_rejects_different_rows():
    second = make_attribution(HAND_SECOND, rows=np.array([0, 1, 5]))
    with pytest.raises(ValueError, match="different data rows .*position 2, A has row 2 and B row 5"):
        compare.attribution_agreement(make_attribution(HAND_FIRST), second, k=2)
    with pytest.raises(ValueError, match="A has 3 rows and B has 2"):
        compare.attribution_agreement(make_attribution(HAND_FIRST), make_attribution(HAND_SECOND[:2]), k=2)


def test_agreement_rejects_different_spaces():
    second = make_attribution(HAND_SECOND, output_space="probability")
    with pytest.raises(ValueError, match="different output spaces: logit .A. versus probability .B."):
        compare.attribution_agreement(make_attribution(HAND_FIRST), second, k=2)


def test_agreement_rejects_no_common_field():
    second = make_attribution(HAND_SECOND, ("g0", "g1", "g2", "g3"))
    with pytest.raises(ValueError, match="share no field"):
        compare.attribution_agreement(make_attribution(HAND_FIRST), second, k=2)


@pytest.mark.parametrize("k", [0, -1, 5, True, 2.0])
def test_agreement_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must be"):
        compare.attribution_agreement(make_attribution(HAND_FIRST), make_attribution(HAND_SECOND), k=k)


# --- bundled models -------------------------------------------------------------------


def test_identical_attributions_agree_fully(bundled):
    shapley = bundled["ad_clicks_deepfm"][0].shapley
    agreement = compare.attribution_agreement(shapley, shapley, k=3)
    np.testing.assert_allclose(agreement.spearman, 1.0)
    np.testing.assert_allclose(agreement.kendall, 1.0)
    np.testing.assert_array_equal(agreement.top_k_overlap, 1.0)


def test_negated_attributions_disagree_fully(bundled):
    shapley = bundled["ad_clicks_deepfm"][0].shapley
    negated = replace(shapley, values=-shapley.values)
    agreement = compare.attribution_agreement(shapley, negated, k=3)
    np.testing.assert_allclose(agreement.spearman, -1.0)
    np.testing.assert_allclose(agreement.kendall, -1.0)
    # Top-k uses |attribution|, which negation keeps.
    np.testing.assert_array_equal(agreement.top_k_overlap, 1.0)


def test_bundles_agreement_equals_scipy(bundled):
    first = bundled["ad_clicks_deepfm"][0].shapley
    second = bundled["ad_clicks_dcnv2"][0].shapley
    agreement = compare.attribution_agreement(first, second, k=3, names=("DeepFM", "DCNv2"))
    assert agreement.field_names == first.field_names
    assert agreement.note == ""
    expected_spearman = [stats.spearmanr(a, b).statistic for a, b in zip(first.values, second.values, strict=True)]
    expected_kendall = [stats.kendalltau(a, b).statistic for a, b in zip(first.values, second.values, strict=True)]
    np.testing.assert_allclose(agreement.spearman, expected_spearman, atol=1e-12)
    np.testing.assert_allclose(agreement.kendall, expected_kendall, atol=1e-12)
    # The models differ, so the check is not trivial.
    assert agreement.spearman.min() < 0.9

    top_first = np.argsort(-np.abs(first.values), axis=1, kind="stable")[:, :3]
    top_second = np.argsort(-np.abs(second.values), axis=1, kind="stable")[:, :3]
    expected_overlap = [len(set(a) & set(b)) / 3 for a, b in zip(top_first, top_second, strict=True)]
    np.testing.assert_allclose(agreement.top_k_overlap, expected_overlap)


def test_bundles_field_table_means(bundled):
    first = bundled["ad_clicks_deepfm"][0].shapley
    second = bundled["ad_clicks_dcnv2"][0].shapley
    table = compare.attribution_agreement(first, second).field_table().loc[list(first.field_names)]
    np.testing.assert_allclose(table["mean A"], first.values.mean(axis=0))
    np.testing.assert_allclose(table["mean B"], second.values.mean(axis=0))
    np.testing.assert_allclose(table["mean |.| A"], np.abs(first.values).mean(axis=0))
    np.testing.assert_allclose(table["difference"], first.values.mean(axis=0) - second.values.mean(axis=0))


def test_bundles_disagreements_by_prediction(bundled):
    first, logits_first = bundled["ad_clicks_deepfm"][:2]
    second, logits_second = bundled["ad_clicks_dcnv2"][:2]
    frame = compare.disagreements(first.shapley, second.shapley, by="prediction", n=20)

    gaps = np.abs(sigmoid(logits_first) - sigmoid(logits_second))
    expected = np.argsort(-gaps, kind="stable")
    # No near tie among the 21 largest gaps, so float32 rounding cannot reorder them.
    assert np.min(-np.diff(gaps[expected[:21]])) > 1e-5
    np.testing.assert_array_equal(frame["row"], expected[:20])
    np.testing.assert_allclose(frame["CTR A"], sigmoid(logits_first[expected[:20]]), atol=1e-6)
    deltas = sigmoid(logits_first) - sigmoid(logits_second)
    np.testing.assert_allclose(frame["delta"], deltas[expected[:20]], atol=1e-6)
    np.testing.assert_array_equal(frame["label"], first.shapley.labels[expected[:20]])
    assert list(frame.columns) == ["row", "CTR A", "CTR B", "delta", "spearman", "kendall", "top_k_overlap", "label"]


def test_bundles_disagreements_by_agreement(bundled):
    first = bundled["ad_clicks_deepfm"][0].shapley
    second = bundled["ad_clicks_dcnv2"][0].shapley
    agreement = compare.attribution_agreement(first, second, k=2, names=("DeepFM", "DCNv2"))
    frame = compare.disagreements(first, second, agreement, by="agreement", n=10)
    expected = np.argsort(agreement.spearman, kind="stable")[:10]
    np.testing.assert_array_equal(frame["row"], first.rows[expected])
    np.testing.assert_allclose(frame["spearman"], agreement.spearman[expected])
    np.testing.assert_allclose(frame["top_k_overlap"], agreement.top_k_overlap[expected])
    assert "CTR DeepFM" in frame.columns


def test_prediction_disagreements_whole_set(bundled):
    logits_first, _, dataset = bundled["ad_clicks_deepfm"][1:]
    logits_second = bundled["ad_clicks_dcnv2"][1]
    rows = np.arange(len(dataset))
    frame = compare.prediction_disagreements(rows, logits_first, logits_second, dataset.labels, n=5)
    gaps = sigmoid(logits_first) - sigmoid(logits_second)
    expected = np.argsort(-np.abs(gaps), kind="stable")[:5]
    np.testing.assert_array_equal(frame["row"], expected)
    np.testing.assert_allclose(frame["delta"], gaps[expected])
    np.testing.assert_array_equal(frame["label"], dataset.labels[expected])
    assert len(compare.prediction_disagreements(rows, logits_first, logits_second, n=None)) == len(rows)


def test_prediction_disagreements_bad_inputs():
    with pytest.raises(ValueError, match=r"logits_second must have one value per row, shape \(3,\); got \(2,\)"):
        compare.prediction_disagreements([0, 1, 2], [0.0, 1.0, 2.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="logits_first has 1 values that are not finite, the first at row 7"):
        compare.prediction_disagreements([5, 6, 7], [0.0, 1.0, np.nan], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="n must be an integer >= 1 or None; got 0"):
        compare.prediction_disagreements([0], [0.0], [1.0], n=0)


def test_disagreements_probability_space():
    first = make_attribution([[0.1, 0.2]], ("a", "b"), predictions=[0.7], output_space="probability")
    second = make_attribution([[0.2, 0.1]], ("a", "b"), predictions=[0.4], output_space="probability")
    frame = compare.disagreements(first, second)
    assert frame.loc[0, "CTR A"] == pytest.approx(0.7)
    assert frame.loc[0, "delta"] == pytest.approx(0.3)
    assert "label" not in frame.columns


def test_disagreements_bad_inputs():
    first, second = make_attribution(HAND_FIRST), make_attribution(HAND_SECOND)
    with pytest.raises(ValueError, match="by must be 'prediction' or 'agreement'; got 'ctr'"):
        compare.disagreements(first, second, by="ctr")
    other = compare.attribution_agreement(make_attribution(HAND_FIRST[:2]), make_attribution(HAND_SECOND[:2]))
    with pytest.raises(ValueError, match="attributions and the agreement cover different data rows"):
        compare.disagreements(first, second, other)


# --- different schemas ----------------------------------------------------------------


def test_reduced_schema_fields(reduced_lr):
    full = load_bundle(REPO_ROOT / "models" / "ad_clicks_deepfm")
    rows = np.arange(50)
    data_full = load_dataset(TEST_PATH, full.schema, max_rows=50)
    data_reduced = load_dataset(TEST_PATH, reduced_lr.schema, max_rows=50)
    first = explain(full.model, data_full, rows, method="integrated_gradients")
    second = explain(reduced_lr, data_reduced, rows, method="integrated_gradients")
    agreement = compare.attribution_agreement(first, second, k=3, names=("DeepFM", "LR"))

    assert agreement.note == "compared on 14 common fields; left out: os (DeepFM only)"
    assert DROPPED_FIELD not in agreement.field_names
    kept = [first.field_names.index(name) for name in agreement.field_names]
    np.testing.assert_allclose(agreement.mean_first, first.values[:, kept].mean(axis=0))
    np.testing.assert_allclose(agreement.mean_second, second.values.mean(axis=0))
    expected = [stats.spearmanr(a, b).statistic for a, b in zip(first.values[:, kept], second.values, strict=True)]
    np.testing.assert_allclose(agreement.spearman, expected, atol=1e-12)


def test_reduced_schema_groups(reduced_lr, groups, bundled):
    reduced_groups = {name: [f for f in fields if f != DROPPED_FIELD] for name, fields in groups.items()}
    dataset = load_dataset(TEST_PATH, reduced_lr.schema, max_rows=N_ROWS)
    second = exact_indices(reduced_lr, dataset, np.arange(N_ROWS), players=reduced_groups)
    first = bundled["ad_clicks_deepfm"][0]
    agreement = compare.attribution_agreement(first.shapley, second.shapley, names=("DeepFM", "LR"))
    expected = "groups with the same name cover different fields: device = device, os in DeepFM but device in LR"
    assert agreement.note == expected
    difference = compare.interaction_difference(first.sii, second.sii, names=("DeepFM", "LR"))
    assert "device = device, os in DeepFM but device in LR" in difference.note


# --- interaction maps -----------------------------------------------------------------


@pytest.mark.parametrize("statistic", ["mean_abs", "mean"])
def test_interaction_difference_values(bundled, statistic):
    first = bundled["ad_clicks_deepfm"][0].sii
    second = bundled["ad_clicks_dcnv2"][0].sii
    difference = compare.interaction_difference(first, second, statistic=statistic)
    reduce = np.abs if statistic == "mean_abs" else (lambda values: values)
    expected = reduce(first.pairs).mean(axis=0) - reduce(second.pairs).mean(axis=0)
    np.testing.assert_allclose(difference.difference.to_numpy(), expected)
    assert list(difference.difference.index) == list(first.player_names)
    assert difference.note == ""
    assert difference.index == "SII"


def test_interaction_difference_common_players(bundled):
    first = bundled["ad_clicks_deepfm"][0].sii
    second = bundled["ad_clicks_dcnv2"][0].sii
    keep = [0, 2, 3]
    fewer = replace(
        second,
        main_effects=second.main_effects[:, keep],
        pairs=second.pairs[:, keep][:, :, keep],
        player_names=tuple(second.player_names[i] for i in keep),
    )
    difference = compare.interaction_difference(first, fewer, statistic="mean")
    names = list(fewer.player_names)
    assert list(difference.difference.index) == names
    expected = first.mean().loc[names, names].to_numpy() - second.pairs[:, keep][:, :, keep].mean(axis=0)
    np.testing.assert_allclose(difference.difference.to_numpy(), expected)
    assert difference.note.startswith("compared on 3 common players; left out: history (A only)")


def test_interaction_difference_bad_inputs(bundled):
    exact = bundled["ad_clicks_deepfm"][0]
    other = bundled["ad_clicks_dcnv2"][0]
    with pytest.raises(ValueError, match="different indices: SII .A. versus STII .B."):
        compare.interaction_difference(exact.sii, other.stii)
    shifted = replace(other.sii, rows=other.sii.rows + 1)
    with pytest.raises(ValueError, match="interactions cover different data rows"):
        compare.interaction_difference(exact.sii, shifted)
    with pytest.raises(ValueError, match="statistic must be one of mean_abs, mean; got 'max'"):
        compare.interaction_difference(exact.sii, other.sii, statistic="max")
    renamed = replace(other.sii, player_names=tuple(f"x{i}" for i in range(other.sii.n_players)))
    with pytest.raises(ValueError, match="share no player"):
        compare.interaction_difference(exact.sii, renamed)


# --- figures ----------------------------------------------------------------------------


def test_scatter_traces_hold_means():
    agreement = compare.attribution_agreement(make_attribution(HAND_FIRST), make_attribution(HAND_SECOND), k=2)
    figure = compare_figures.field_attribution_scatter(agreement)
    np.testing.assert_allclose(figure.data[0].x, agreement.mean_first)
    np.testing.assert_allclose(figure.data[0].y, agreement.mean_second)
    assert list(figure.data[0].text) == ["f0", "f1", "f2", "f3"]
    assert figure.data[1].x[0] == figure.data[1].y[0]
    assert figure.layout.title.text == "Mean attribution per field: A versus B"
    assert figure.layout.xaxis.title.text == "mean attribution by A (logit)"


def test_scatter_subtitle_has_note():
    first = make_attribution(np.array(HAND_FIRST)[:, :3], ("f0", "f1", "city"))
    agreement = compare.attribution_agreement(first, make_attribution(HAND_SECOND), k=1)
    figure = compare_figures.field_attribution_scatter(agreement)
    assert "left out: city (A only), f2 (B only), f3 (B only)" in figure.layout.title.subtitle.text


def test_histogram_traces_hold_defined_values():
    second = [[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, -1.0, 2.0]]
    agreement = compare.attribution_agreement(make_attribution(HAND_FIRST), make_attribution(second), k=2)
    figure = compare_figures.agreement_histogram(agreement)
    np.testing.assert_allclose(figure.data[0].x, agreement.spearman[[0, 2]])
    np.testing.assert_allclose(figure.data[1].x, agreement.kendall[[0, 2]])
    np.testing.assert_allclose(figure.data[2].x, agreement.top_k_overlap)
    assert figure.data[2].xbins.size == pytest.approx(0.5)
    assert "1 samples with a constant attribution vector" in figure.layout.title.subtitle.text


def test_heatmap_is_difference_and_symmetric(bundled):
    difference = compare.interaction_difference(
        bundled["ad_clicks_deepfm"][0].sii, bundled["ad_clicks_dcnv2"][0].sii, statistic="mean", names=("D", "C")
    )
    trace = compare_figures.interaction_difference_heatmap(difference).data[0]
    np.testing.assert_allclose(np.asarray(trace.z), difference.difference.to_numpy())
    assert trace.zmin == -trace.zmax
    assert trace.zmax == pytest.approx(np.abs(difference.difference.to_numpy()).max())
    assert trace.text[0][1].startswith("user × history<br>D: ")


def test_disagreement_bar_traces():
    frame = pd.DataFrame({"row": [4, 2], "CTR M": [0.3, 0.1], "CTR N": [0.1, 0.25], "delta": [0.2, -0.15]})
    trace = compare_figures.disagreement_bar(frame, names=("M", "N")).data[0]
    np.testing.assert_allclose(trace.x, [20.0, -15.0])
    assert list(trace.y) == ["row 4", "row 2"]
    assert "CTR M: 30.00 %" in trace.hovertext[0]
    with pytest.raises(KeyError, match="no column CTR A, CTR B"):
        compare_figures.disagreement_bar(frame)


def test_ctr_scatter_marks_largest():
    frame = compare.prediction_disagreements(
        np.arange(5), np.array([0.0, 1.0, -1.0, 2.0, 0.5]), np.zeros(5), n=None
    )
    figure = compare_figures.ctr_scatter(frame, n_marked=2)
    np.testing.assert_array_equal(figure.data[1].customdata, [3, 1])
    np.testing.assert_allclose(figure.data[1].x, sigmoid([2.0, 1.0]))
    np.testing.assert_array_equal(sorted(figure.data[0].customdata), [0, 2, 4])
    np.testing.assert_allclose(figure.data[0].y, 0.5)


def test_histogram_all_rows_undefined():
    constant = np.ones((2, 4))
    agreement = compare.attribution_agreement(make_attribution(HAND_FIRST[:2]), make_attribution(constant), k=1)
    figure = compare_figures.agreement_histogram(agreement)
    assert len(figure.data[0].x) == 0
    assert "mean rho undefined, mean tau undefined" in figure.layout.title.subtitle.text
    assert "2 samples with a constant attribution vector" in figure.layout.title.subtitle.text
