"""Probes: capture leaves predictions unchanged, values match closed forms, field mapping and pair-map helpers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from helpers import build_tiny_model, synthetic_splits
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.probes import (
    Probe,
    ProbeInfo,
    ProbeValues,
    _Recorder,
    aggregate_bits,
    block_norms,
    capture_probes,
    field_contiguous_bits,
    field_rows,
    model_probes,
    pair_agreement_per_row,
    pair_map,
    pair_map_agreement,
)


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=200, n_valid=100, n_test=300, seed=3)


def scrambled(architecture: str, schema, seed: int = 0):
    """A tiny model with random (not near-zero) weights, so every probe has non-trivial values."""
    torch.manual_seed(seed)
    model = build_tiny_model(architecture, schema)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "running" in name:
                continue
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    return model.eval()


@pytest.mark.parametrize("architecture", ["lr", "fm", "deepfm", "dcnv2", "autoint+"])
def test_capture_probes_leaves_predictions_unchanged(splits, architecture):
    model = scrambled(architecture, splits.schema)
    inputs = splits.test.tensors(slice(0, 300))
    with torch.no_grad():
        expected = model(inputs).numpy()

    capture = capture_probes(model, inputs, chunk_size=128)

    np.testing.assert_array_equal(capture.logits, expected)
    assert set(capture.probes) == {p.name for p in model_probes(model)}
    for values in capture.probes.values():
        assert values.values.shape[0] == 300 or not values.probe.per_sample
    # The hooks are gone afterwards: no module keeps a forward hook.
    assert all(not module._forward_hooks for module in model.modules())


def test_fm_pair_products_are_the_fm_terms(splits):
    model = scrambled("fm", splits.schema)
    inputs = splits.test.tensors(slice(0, 50))

    capture = capture_probes(model, inputs)

    products = capture["fm_pair_products"].values
    weights = capture["first_order_weights"].values
    with torch.no_grad():
        factors, first_order = model.split_slots(model.field_embedding(inputs))
    i, j = 1, 3
    np.testing.assert_allclose(products[:, i, j], (factors[:, i] * factors[:, j]).sum(-1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(products, products.transpose(0, 2, 1))
    assert np.all(np.diagonal(products, axis1=1, axis2=2) == 0)
    np.testing.assert_allclose(weights, first_order.numpy())
    # The FM logit is the bias plus the first-order weights plus the pair terms over i < j.
    upper = np.triu(np.ones(products.shape[1:], dtype=bool), k=1)
    rebuilt = model.bias.item() + weights.sum(axis=1) + products[:, upper].sum(axis=1)
    np.testing.assert_allclose(rebuilt, capture.logits, rtol=1e-4, atol=1e-4)


def test_fm_field_with_zero_embedding_has_zero_pairs(splits):
    model = scrambled("fm", splits.schema)
    position = 1
    field = splits.schema.field_names[position]
    with torch.no_grad():
        model.field_embedding.tables[field].weight.zero_()

    capture = capture_probes(model, splits.test.tensors(slice(0, 40)))

    assert np.all(capture["fm_pair_products"].values[:, position, :] == 0)
    assert np.all(capture["fm_pair_products"].values[:, :, position] == 0)
    assert np.all(capture["first_order_weights"].values[:, position] == 0)
    assert capture["fm_pair_products"].field_strength()[position] == 0


def test_dcnv2_cross_weight_norms_are_block_norms(splits):
    model = scrambled("dcnv2", splits.schema)
    width = model.embedding_width

    values = capture_probes(model, splits.test.tensors(slice(0, 5)), names=["cross_weight_norms"])["cross_weight_norms"]

    assert not values.probe.per_sample
    assert values.values.shape == (len(model.cross_net.cross_layers), model.n_fields, model.n_fields)
    for layer, linear in enumerate(model.cross_net.cross_layers):
        weight = linear.weight.detach().double().numpy()
        for i, j in [(0, 0), (0, 2), (3, 1)]:
            block = weight[i * width : (i + 1) * width, j * width : (j + 1) * width]
            assert values.values[layer, i, j] == pytest.approx(np.linalg.norm(block), rel=1e-6)
    # A static probe has the same value for every row.
    np.testing.assert_array_equal(values.cohort_mean(), values.for_row(3))


def test_autoint_attention_is_the_softmax_of_scaled_scores(splits):
    model = scrambled("autoint+", splits.schema)
    inputs = splits.test.tensors(slice(0, 20))

    values = capture_probes(model, inputs)["attention"]

    n_layers, n_heads = len(model.attention), model.attention[0].n_heads
    assert values.values.shape == (20, n_layers, n_heads, model.n_fields, model.n_fields)
    np.testing.assert_allclose(values.values.sum(axis=-1), 1.0, rtol=1e-5)
    layer = model.attention[0]
    with torch.no_grad():
        x = model.field_embedding(inputs)
        q = layer.query(x).view(20, model.n_fields, n_heads, layer.head_dim).transpose(1, 2)
        k = layer.key(x).view(20, model.n_fields, n_heads, layer.head_dim).transpose(1, 2)
        expected = torch.softmax(q @ k.transpose(-1, -2) / layer.head_dim**0.5, dim=-1).numpy()
    np.testing.assert_allclose(values.values[:, 0], expected, rtol=1e-5, atol=1e-6)
    assert values.probe.axes == ("layer", "head", "field", "field")


def test_aggregate_bits_with_a_non_contiguous_layout():
    # Field 0 owns bits 0 and 2, field 1 owns bits 1 and 3 (an interleaved layout).
    bits = np.array([[1.0, -2.0, 3.0, 4.0], [-1.0, 0.0, -1.0, 2.0]])
    layout = np.array([0, 1, 0, 1])

    np.testing.assert_allclose(aggregate_bits(bits, layout, 2, "mean"), [[2.0, 1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(aggregate_bits(bits, layout, 2, "mean_abs"), [[2.0, 3.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="no bit to field"):
        aggregate_bits(bits, np.array([0, 0, 0, 0]), 2)
    with pytest.raises(ValueError, match="4 bits but the field layout lists 3"):
        aggregate_bits(bits, np.array([0, 1, 0]), 2)
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregate_bits(bits, layout, 2, "max")


def test_block_norms_with_different_row_and_column_layouts():
    rng = np.random.default_rng(0)
    weight = torch.from_numpy(rng.normal(size=(4, 6)))
    rows, columns = np.array([1, 0, 1, 0]), np.array([0, 0, 1, 1, 2, 2])

    norms = block_norms(weight, rows, columns, 3)

    w = weight.numpy()
    for i in range(2):
        for j in range(3):
            block = w[np.ix_(rows == i, columns == j)]
            assert norms[i, j] == pytest.approx(np.linalg.norm(block))
    assert np.all(norms[2] == 0)  # no output bit belongs to field 2


def test_field_contiguous_bits():
    np.testing.assert_array_equal(field_contiguous_bits(3, 2), [0, 0, 1, 1, 2, 2])


def _values(axes, array, *, per_sample=True) -> ProbeValues:
    info = ProbeInfo("p", "attention", axes, "test probe", per_sample)
    return ProbeValues(info, np.asarray(array, dtype=float), ["a", "b", "c"])


def test_pair_map_selects_or_averages_leading_axes():
    rng = np.random.default_rng(1)
    array = rng.random((4, 2, 3, 3, 3))  # rows, layer, head, field, field
    values = _values(("layer", "head", "field", "field"), array)

    np.testing.assert_allclose(pair_map(values), array.mean(axis=(0, 1, 2)))
    np.testing.assert_allclose(pair_map(values, row=2, select={"layer": 1}), array[2, 1].mean(axis=0))
    np.testing.assert_allclose(pair_map(values, select={"layer": 0, "head": 2}), array[:, 0, 2].mean(axis=0))
    with pytest.raises(IndexError, match="head 3 is out of range"):
        pair_map(values, select={"head": 3})
    with pytest.raises(ValueError, match="cannot select block"):
        pair_map(values, select={"block": 0})
    with pytest.raises(IndexError, match="outside the 4 captured rows"):
        pair_map(values, row=4)


def test_field_rows_labels_each_layer():
    array = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)  # rows, layer, field
    values = _values(("layer", "field"), array)

    table, labels = field_rows(values)
    assert labels == ["layer 1", "layer 2"]
    np.testing.assert_allclose(table, array.mean(axis=0))
    table, labels = field_rows(_values(("field",), array[:, 0]), row=1)
    assert labels == ["p"]
    np.testing.assert_allclose(table, array[1, :1])
    np.testing.assert_allclose(values.field_strength(), array.mean(axis=(0, 1)))


def test_pair_map_agreement_ranks_absolute_values():
    base = np.array([[0.0, 3.0, 1.0], [3.0, 0.0, 2.0], [1.0, 2.0, 0.0]])

    assert pair_map_agreement(base, -2 * base)["spearman"] == pytest.approx(1.0)
    reversed_ranks = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    assert pair_map_agreement(base, reversed_ranks)["spearman"] == pytest.approx(-1.0)
    # An asymmetric map counts the mean of both directions: (1 + 5) / 2 = 3 for pair (0, 1).
    asymmetric = np.array([[0.0, 1.0, 1.0], [5.0, 0.0, 2.0], [1.0, 2.0, 0.0]])
    assert pair_map_agreement(asymmetric, base)["spearman"] == pytest.approx(1.0)
    assert np.isnan(pair_map_agreement(np.ones((3, 3)), base)["spearman"])
    assert pair_map_agreement(base, base)["n_pairs"] == 3
    with pytest.raises(ValueError, match="same shape"):
        pair_map_agreement(base, np.ones((2, 2)))


def test_pair_agreement_per_row_compares_row_by_row():
    base = np.array([[0.0, 3.0, 1.0], [3.0, 0.0, 2.0], [1.0, 2.0, 0.0]])
    reversed_ranks = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    values = _values(("field", "field"), np.stack([base, base]))

    correlations = pair_agreement_per_row(values, np.stack([base, reversed_ranks]))

    np.testing.assert_allclose(correlations, [1.0, -1.0])
    with pytest.raises(ValueError, match="2 rows but the post-hoc values have 1"):
        pair_agreement_per_row(values, base[None])
    static = _values(("field", "field"), base, per_sample=False)
    with pytest.raises(ValueError, match="same for every sample"):
        pair_agreement_per_row(static, np.stack([base, base]))


def test_probe_declarations_are_checked():
    with pytest.raises(ValueError, match="kind must be one of"):
        Probe("x", "weight", ("field",), "", compute=lambda m, e: e)
    with pytest.raises(ValueError, match="exactly one of modules, compute and static"):
        Probe("x", "gate", ("field",), "")
    with pytest.raises(ValueError, match="exactly one of modules, compute and static"):
        Probe("x", "gate", ("field",), "", modules=("a",), static=lambda m: 0)


def test_capture_probes_rejects_bad_requests(splits):
    model = scrambled("dcnv2", splits.schema)
    inputs = splits.test.tensors(slice(0, 5))

    with pytest.raises(ValueError, match="no probe named 'gates'; available: cross_weight_norms"):
        capture_probes(model, inputs, names=["gates"])
    with pytest.raises(ValueError, match="no rows to probe"):
        capture_probes(model, splits.test.tensors(slice(0, 0)))
    with pytest.raises(ValueError, match="aggregation must be one of"):
        capture_probes(model, inputs, aggregation="median")
    with pytest.raises(KeyError, match="captured: cross_weight_norms"):
        capture_probes(model, inputs)["attention"]


def test_recorder_ignores_forward_passes_of_other_threads(splits):
    model = scrambled("autoint+", splits.schema)
    probe = model_probes(model)[0]
    inputs = splits.test.tensors(slice(0, 8))
    recorder = _Recorder(model, [probe])
    try:
        worker = threading.Thread(target=lambda: model(inputs))
        worker.start()
        worker.join()
        assert all(not outputs for outputs in recorder.outputs.values())
        with torch.no_grad():
            model(inputs)
        assert recorder.take(probe).shape == (8, len(model.attention), model.attention[0].n_heads, model.n_fields, model.n_fields)
    finally:
        recorder.remove()


def test_fm_pair_products_equal_exact_sii(splits):
    # With absent fields at the zero embedding, the FM logit is a pure pairwise game in the fields,
    # so its SII pair values are exactly the pair products <v_i, v_j> of each row.
    from workbench.explain.exact import exact_indices

    model = scrambled("fm", splits.schema)
    rows = np.arange(30)
    values = capture_probes(model, splits.test.tensors(rows))["fm_pair_products"]

    sii = exact_indices(model, splits.test, rows, baseline="zero").sii

    off_diagonal = ~np.eye(model.n_fields, dtype=bool)
    np.testing.assert_allclose(sii.pairs[:, off_diagonal], values.values[:, off_diagonal], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pair_agreement_per_row(values, sii.pairs), 1.0)
    global_map = pair_map(values, absolute=True)
    np.testing.assert_allclose(global_map, np.abs(values.values).mean(axis=0))
    assert pair_map_agreement(global_map, sii.mean_abs().to_numpy())["spearman"] == pytest.approx(1.0)


def test_pair_map_absolute_averages_magnitudes():
    array = np.array([[[0.0, 2.0, 0.0], [2.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    values = _values(("field", "field"), np.concatenate([array, -array]))

    np.testing.assert_allclose(pair_map(values), 0.0)
    np.testing.assert_allclose(pair_map(values, absolute=True), array[0])
    np.testing.assert_allclose(pair_map(values, row=1, absolute=True), array[0])
