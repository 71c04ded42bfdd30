"""GDCN and FCN: shapes, probes against hand-computed gates, masks and block norms, Tri-BCE, guards and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import (
    build_tiny_model,
    run_cli,
    set_weights,
    synthetic_frame,
    synthetic_splits,
    write_csv,
    write_schema_json,
)
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from test_game import scrambled_model, tiny_inputs, tiny_schema
from workbench.bundle import read_manifest
from workbench.explain.exact import exact_indices
from workbench.probes import capture_probes
from workbench.zoo import build_model
from workbench.zoo.fcn import FCN, fcn_bit_fields, fcn_input, fcn_slot_positions, tri_bce_loss
from workbench.zoo.gdcn import GDCN

EMBEDDING_DIM = 4  # TINY_HYPERPARAMETERS for both architectures


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=300, n_valid=100, n_test=40, seed=7)


@pytest.fixture(scope="module")
def inputs(splits):
    return splits.test.tensors()


def _embeddings(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.field_embedding(inputs)


# --- both architectures ---------------------------------------------------------


@pytest.mark.parametrize("architecture", ["gdcn", "fcn"])
def test_forward_shape(splits, inputs, architecture):
    model = build_tiny_model(architecture, splits.schema).eval()

    logits = model(inputs)

    assert logits.shape == (len(splits.test),)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize(
    ("architecture", "overrides"),
    [("gdcn", {}), ("gdcn", {"structure": "stacked"}), ("gdcn", {"n_cross_layers": 1}), ("fcn", {}),
     ("fcn", {"n_deep_cross_layers": 1, "n_shallow_cross_layers": 3})],
)
def test_probes_keep_logits(splits, inputs, architecture, overrides):
    model = scrambled_model(architecture, splits.schema, **overrides)

    capture = capture_probes(model, inputs)

    with torch.no_grad():
        expected = model(inputs).numpy()
    np.testing.assert_array_equal(capture.logits, expected)


@pytest.mark.parametrize("architecture", ["gdcn", "fcn"])
def test_exact_shapley_efficiency(architecture):
    schema = tiny_schema()
    inputs = tiny_inputs(schema, 5, seed=3)
    model = scrambled_model(architecture, schema)

    structured = exact_indices(model, inputs)
    plain = exact_indices(model, inputs, use_structure=False, deduplicate=False)

    with torch.no_grad():
        outputs = model(inputs).double().numpy()
    shapley = structured.shapley
    np.testing.assert_allclose(shapley.values.sum(axis=1) + shapley.base_values, outputs, rtol=0, atol=1e-5)
    assert shapley.completeness_gap.max() < 1e-5
    # The first-layer speed-up (first_layers) gives the same game as running every coalition row.
    np.testing.assert_allclose(shapley.values, plain.shapley.values, rtol=0, atol=1e-5)


# --- GDCN -----------------------------------------------------------------------


@pytest.mark.parametrize("structure", ["parallel", "stacked"])
def test_gdcn_structures(splits, inputs, structure):
    model = build_tiny_model("gdcn", splits.schema, structure=structure).eval()
    cross_dim = len(splits.schema) * EMBEDDING_DIM

    logits = model(inputs)

    assert logits.shape == (len(splits.test),)
    assert model.head.in_features == (8 + cross_dim if structure == "parallel" else 8)
    assert model.hyperparameters["structure"] == structure


def test_gdcn_defaults(splits):
    model = GDCN(splits.schema)

    assert model.hyperparameters == {
        "embedding_dim": 10,
        "n_cross_layers": 3,
        "structure": "parallel",
        "hidden_units": [400, 400, 400],
        "dropout": 0.2,
        "batch_norm": True,
    }
    assert len(model.cross_net.layers) == 3


def test_gdcn_probe_shapes(splits, inputs):
    model = scrambled_model("gdcn", splits.schema)
    n_fields = len(splits.schema)

    capture = capture_probes(model, inputs)

    gates = capture["cross_gates"]
    assert gates.probe.kind == "gate"
    assert gates.probe.axes == ("layer", "field")
    assert gates.probe.value_range == (0.0, 1.0)
    assert gates.values.shape == (len(splits.test), 2, n_fields)
    assert gates.bits.shape == (len(splits.test), 2, n_fields * EMBEDDING_DIM)
    np.testing.assert_array_equal(gates.bit_fields, np.repeat(np.arange(n_fields), EMBEDDING_DIM))
    norms = capture["cross_weight_norms"]
    assert norms.probe.kind == "pair_weight"
    assert norms.probe.axes == ("layer", "field", "field")
    assert not norms.probe.per_sample
    assert norms.values.shape == (2, n_fields, n_fields)


def test_gdcn_single_layer_keeps_layer_axis(splits, inputs):
    model = scrambled_model("gdcn", splits.schema, n_cross_layers=1)

    gates = capture_probes(model, inputs, names=["cross_gates"])["cross_gates"]

    assert gates.values.shape == (len(splits.test), 1, len(splits.schema))


def test_gdcn_gates_match_hand_computation(splits, inputs):
    model = scrambled_model("gdcn", splits.schema)
    first, second = model.cross_net.layers

    capture = capture_probes(model, inputs, names=["cross_gates"])

    c0 = _embeddings(model, inputs).flatten(start_dim=1)
    with torch.no_grad():
        gate0 = torch.sigmoid(c0 @ first.gate_projection.weight.T)
        cross0 = c0 @ first.cross.weight.T + first.cross.bias
        c1 = c0 * cross0 * gate0 + c0
        gate1 = torch.sigmoid(c1 @ second.gate_projection.weight.T)
    bits = capture["cross_gates"].bits
    np.testing.assert_allclose(bits[:, 0], gate0.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bits[:, 1], gate1.numpy(), rtol=1e-5, atol=1e-6)
    # The field value is the mean of the field's bits.
    field_means = gate1.numpy().reshape(len(splits.test), len(splits.schema), EMBEDDING_DIM).mean(axis=2)
    np.testing.assert_allclose(capture["cross_gates"].values[:, 1], field_means, rtol=1e-5, atol=1e-6)


def test_gdcn_zero_gate_weights_halve_dcnv2(splits, inputs):
    """With W^g = 0 every gate is 0.5, so GDCN is DCN-V2 with W^c and b halved."""
    gdcn = scrambled_model("gdcn", splits.schema)
    for layer in gdcn.cross_net.layers:
        set_weights(layer.gate_projection.weight, torch.zeros_like(layer.gate_projection.weight))
    dcnv2 = build_tiny_model("dcnv2", splits.schema).eval()
    dcnv2.field_embedding.load_state_dict(gdcn.field_embedding.state_dict())
    dcnv2.dnn.load_state_dict(gdcn.dnn.state_dict())
    dcnv2.head.load_state_dict(gdcn.head.state_dict())
    for gated, plain in zip(gdcn.cross_net.layers, dcnv2.cross_net.cross_layers, strict=True):
        set_weights(plain.weight, 0.5 * gated.cross.weight.detach())
        set_weights(plain.bias, 0.5 * gated.cross.bias.detach())

    capture = capture_probes(gdcn, inputs, names=["cross_gates"])

    np.testing.assert_array_equal(capture["cross_gates"].bits, 0.5)
    with torch.no_grad():
        torch.testing.assert_close(gdcn(inputs), dcnv2(inputs), rtol=1e-5, atol=1e-6)
        c0 = gdcn.field_embedding(inputs).flatten(start_dim=1)
        torch.testing.assert_close(gdcn.cross_net(c0), dcnv2.cross_net(c0), rtol=1e-5, atol=1e-6)


def test_gdcn_block_norm_matches_hand(splits):
    model = scrambled_model("gdcn", splits.schema)
    weight = model.cross_net.layers[1].cross.weight.detach().double()

    norms = capture_probes(model, splits.test.tensors([0]), names=["cross_weight_norms"])["cross_weight_norms"]

    # Block (i, j) = (2, 4): output bits of field 2, input bits of field 4.
    block = weight[2 * EMBEDDING_DIM : 3 * EMBEDDING_DIM, 4 * EMBEDDING_DIM : 5 * EMBEDDING_DIM]
    assert norms.values[1, 2, 4] == pytest.approx(block.pow(2).sum().sqrt().item(), rel=1e-6)
    assert norms.values[1, 4, 2] != pytest.approx(norms.values[1, 2, 4], rel=1e-3)


def test_gdcn_zero_embedding_field(splits, inputs):
    """A field with an all-zero table has a zero cross term, finite gates, and no effect on the output."""
    model = scrambled_model("gdcn", splits.schema)
    city = splits.schema.field_names.index("city")
    table = model.field_embedding.tables["city"].weight
    set_weights(table, torch.zeros_like(table))
    city_bits = slice(city * EMBEDDING_DIM, (city + 1) * EMBEDDING_DIM)
    first = model.cross_net.layers[0]

    capture = capture_probes(model, inputs, names=["cross_gates"])

    c0 = _embeddings(model, inputs).flatten(start_dim=1)
    with torch.no_grad():
        gate0 = torch.sigmoid(c0 @ first.gate_projection.weight.T)
        cross_term = c0 * (c0 @ first.cross.weight.T + first.cross.bias) * gate0
    gates = capture["cross_gates"].bits
    assert np.isfinite(gates).all()
    np.testing.assert_allclose(gates[:, 0, city_bits], gate0[:, city_bits].numpy(), rtol=1e-5, atol=1e-6)
    assert torch.all(cross_term[:, city_bits] == 0)
    assert torch.any(cross_term[:, city_bits.stop :] != 0)
    changed = dict(inputs)
    changed["city"] = (inputs["city"] % (len(splits.schema.fields[city].vocabulary) - 1)) + 1
    assert torch.any(changed["city"] != inputs["city"])
    with torch.no_grad():
        torch.testing.assert_close(model(changed), model(inputs), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"structure": "serial"}, "structure must be 'parallel' or 'stacked'; got 'serial'"),
        ({"n_cross_layers": 0}, "n_cross_layers must be >= 1; got 0"),
        ({"hidden_units": [8, 0]}, r"hidden_units must be >= 1; got \[8, 0\]"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\); got 1.0"),
        ({"embedding_dim": 0}, "embedding_dim must be >= 1; got 0"),
    ],
)
def test_gdcn_bad_hyperparameters(splits, hyperparameters, message):
    with pytest.raises(ValueError, match=message):
        build_model("gdcn", splits.schema, **hyperparameters)


# --- FCN ------------------------------------------------------------------------


def test_fcn_bit_fields_layout():
    n_fields, embedding_dim = 3, 6
    # Field f is filled with the value f, so every position of x0 shows its own field.
    embeddings = torch.arange(n_fields, dtype=torch.float32)[None, :, None].expand(2, n_fields, embedding_dim)

    x0 = fcn_input(embeddings)

    np.testing.assert_array_equal(x0[0].numpy(), fcn_bit_fields(n_fields, embedding_dim))
    np.testing.assert_array_equal(fcn_bit_fields(n_fields, embedding_dim), [0, 0, 0, 1, 1, 1, 2, 2, 2] * 2)


def test_fcn_slot_positions_invert_layout():
    n_fields, embedding_dim = 3, 4
    embeddings = torch.randn(5, n_fields, embedding_dim, generator=torch.Generator().manual_seed(0))

    x0 = fcn_input(embeddings)

    positions = torch.from_numpy(fcn_slot_positions(n_fields, embedding_dim))
    torch.testing.assert_close(x0[:, positions], embeddings, rtol=0, atol=0)
    # Column 3 of field 1 is in the second half: d/2 + 1 * D/2 + (3 - D/2).
    assert positions[1, 3] == 6 + 2 + 1


def test_fcn_defaults(splits):
    model = FCN(splits.schema)

    assert model.hyperparameters == {
        "embedding_dim": 10,
        "n_deep_cross_layers": 4,
        "n_shallow_cross_layers": 4,
        "deep_net_dropout": 0.1,
        "shallow_net_dropout": 0.3,
    }
    assert len(model.ecn.layers) == 4
    assert len(model.lcn.layers) == 4
    assert model.ecn.layers[0].projection.weight.shape == (25, 50)


def test_fcn_probe_shapes(splits, inputs):
    model = scrambled_model("fcn", splits.schema, n_deep_cross_layers=1, n_shallow_cross_layers=3)
    n_fields = len(splits.schema)
    half = n_fields * EMBEDDING_DIM // 2

    capture = capture_probes(model, inputs)

    probe_names = ("self_mask", "mask_density", "cross_weight_norms")
    assert set(capture.probes) == {f"{branch}_{probe}" for branch in ("ecn", "lcn") for probe in probe_names}
    for branch, n_layers in (("ecn", 1), ("lcn", 3)):
        for name in (f"{branch}_self_mask", f"{branch}_mask_density"):
            values = capture[name]
            assert values.probe.kind == "mask"
            assert values.probe.axes == ("layer", "field")
            assert values.values.shape == (len(splits.test), n_layers, n_fields)
            assert values.bits.shape == (len(splits.test), n_layers, half)
            np.testing.assert_array_equal(values.bit_fields, np.repeat(np.arange(n_fields), EMBEDDING_DIM // 2))
        norms = capture[f"{branch}_cross_weight_norms"]
        assert norms.probe.kind == "pair_weight"
        assert norms.probe.axes == ("layer", "field", "field")
        assert norms.values.shape == (n_layers, n_fields, n_fields)
    assert capture["ecn_mask_density"].probe.value_range == (0.0, 1.0)


def _hand_mask(layer, x: torch.Tensor) -> torch.Tensor:
    """ReLU(LayerNorm(W x)) written out: biased variance, the layer's eps, scale and shift."""
    h = x @ layer.projection.weight.T
    centred = h - h.mean(dim=1, keepdim=True)
    variance = centred.pow(2).mean(dim=1, keepdim=True)
    normalised = centred / torch.sqrt(variance + layer.layer_norm.eps)
    return torch.clamp(normalised * layer.layer_norm.weight + layer.layer_norm.bias, min=0.0)


def test_fcn_self_mask_matches_hand(splits, inputs):
    model = scrambled_model("fcn", splits.schema)

    capture = capture_probes(model, inputs)

    x0 = fcn_input(_embeddings(model, inputs))
    with torch.no_grad():
        for branch in ("ecn", "lcn"):
            layer = getattr(model, branch).layers[0]
            expected = _hand_mask(layer, x0)
            bits = capture[f"{branch}_self_mask"].bits
            np.testing.assert_allclose(bits[:, 0], expected.numpy(), rtol=1e-5, atol=1e-5)
            density = capture[f"{branch}_mask_density"].values[:, 0]
            kept = (expected > 0).double().numpy().reshape(len(splits.test), len(splits.schema), -1).mean(axis=2)
            np.testing.assert_allclose(density, kept)
        # Layer 1 of the ECN reads x_1 = x0 * ([h || h * m] + b) + x0.
        first, second = model.ecn.layers
        h = x0 @ first.projection.weight.T
        x1 = x0 * (torch.cat([h, h * _hand_mask(first, x0)], dim=1) + first.bias) + x0
        expected = _hand_mask(second, x1)
    np.testing.assert_allclose(capture["ecn_self_mask"].bits[:, 1], expected.numpy(), rtol=1e-4, atol=1e-4)
    assert 0 < capture["ecn_mask_density"].values.mean() < 1


def test_fcn_block_norm_matches_hand(splits):
    model = scrambled_model("fcn", splits.schema)
    weight = model.lcn.layers[1].projection.weight.detach().double()
    n_fields, half = len(splits.schema), EMBEDDING_DIM // 2

    norms = capture_probes(model, splits.test.tensors([0]), names=["lcn_cross_weight_norms"])
    values = norms["lcn_cross_weight_norms"].values

    # Block (i, j) = (1, 3): rows of field 1 in h_l, columns of both halves of field 3 in x_l.
    rows = weight[1 * half : 2 * half]
    columns = list(range(3 * half, 4 * half)) + list(range(n_fields * half + 3 * half, n_fields * half + 4 * half))
    assert values[1, 1, 3] == pytest.approx(rows[:, columns].pow(2).sum().sqrt().item(), rel=1e-6)


def test_fcn_logit_is_branch_mean(splits, inputs):
    model = scrambled_model("fcn", splits.schema)

    with torch.no_grad():
        ecn_logit, lcn_logit = model.branch_logits(model.field_embedding(inputs))
        torch.testing.assert_close(model(inputs), (ecn_logit + lcn_logit) / 2, rtol=0, atol=0)
    assert not torch.allclose(ecn_logit, lcn_logit)


def test_fcn_zeroed_branch_head_contributes_nothing(splits, inputs):
    model = scrambled_model("fcn", splits.schema)
    set_weights(model.ecn.head.weight, torch.zeros_like(model.ecn.head.weight))
    set_weights(model.ecn.head.bias, torch.zeros_like(model.ecn.head.bias))

    with torch.no_grad():
        ecn_logit, lcn_logit = model.branch_logits(model.field_embedding(inputs))
        before = model(inputs)
        for layer in model.ecn.layers:
            layer.projection.weight.mul_(3.0)
            layer.bias.add_(1.0)
        after = model(inputs)

    torch.testing.assert_close(ecn_logit, torch.zeros_like(ecn_logit), rtol=0, atol=0)
    torch.testing.assert_close(before, lcn_logit / 2, rtol=0, atol=0)
    torch.testing.assert_close(after, before, rtol=0, atol=0)


def _bce(logit: torch.Tensor, labels: torch.Tensor) -> float:
    probability = torch.sigmoid(logit.double())
    return float(-(labels * torch.log(probability) + (1 - labels) * torch.log(1 - probability)).mean())


def test_tri_bce_matches_formula():
    generator = torch.Generator().manual_seed(3)
    labels = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    logit, ecn_logit, lcn_logit = (torch.randn(6, generator=generator) for _ in range(3))

    loss = tri_bce_loss(logit, ecn_logit, lcn_logit, labels)

    fused, deep, shallow = _bce(logit, labels), _bce(ecn_logit, labels), _bce(lcn_logit, labels)
    expected = fused + max(0.0, deep - fused) * deep + max(0.0, shallow - fused) * shallow
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_tri_bce_equal_logits_is_bce():
    logit = torch.tensor([0.3, -1.2, 2.0, 0.0])
    labels = torch.tensor([1.0, 0.0, 0.0, 1.0])

    loss = tri_bce_loss(logit, logit.clone(), logit.clone(), labels)

    assert loss.item() == pytest.approx(_bce(logit, labels), rel=1e-6)


def test_tri_bce_weights_are_constants():
    labels = torch.tensor([1.0, 0.0, 1.0])
    logit = torch.tensor([2.0, -2.0, 2.0], requires_grad=True)  # good fit: L is small
    ecn_logit = torch.tensor([-1.0, 1.0, -1.0], requires_grad=True)  # poor fit: w_D > 0
    lcn_logit = torch.tensor([3.0, -3.0, 3.0], requires_grad=True)  # better than the fusion: w_S = 0

    tri_bce_loss(logit, ecn_logit, lcn_logit, labels).backward()

    fused, deep = _bce(logit.detach(), labels), _bce(ecn_logit.detach(), labels)
    bce_gradient = (torch.sigmoid(ecn_logit.detach()) - labels) / len(labels)
    # Only the L_D term reaches the ECN logit, scaled by the constant w_D = L_D - L.
    torch.testing.assert_close(ecn_logit.grad, (deep - fused) * bce_gradient)
    torch.testing.assert_close(lcn_logit.grad, torch.zeros(3))
    torch.testing.assert_close(logit.grad, (torch.sigmoid(logit.detach()) - labels) / len(labels))


def test_fcn_training_loss_is_tri_bce(splits):
    model = scrambled_model("fcn", splits.schema)
    rows = splits.train.tensors(list(range(64)))
    labels = torch.from_numpy(splits.train.labels[:64])

    loss = model.training_loss(rows, labels)

    with torch.no_grad():
        ecn_logit, lcn_logit = model.branch_logits(model.field_embedding(rows))
        expected = tri_bce_loss(model(rows), ecn_logit, lcn_logit, labels)
        plain = torch.nn.functional.binary_cross_entropy_with_logits(model(rows), labels)
    assert loss.requires_grad
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() > plain.item()


@pytest.mark.parametrize(
    ("hyperparameters", "message"),
    [
        ({"embedding_dim": 5}, "embedding_dim must be even and >= 2; got 5"),
        ({"embedding_dim": 1}, "embedding_dim must be even and >= 2; got 1"),
        ({"n_deep_cross_layers": 0}, "n_deep_cross_layers must be >= 1; got 0"),
        ({"n_shallow_cross_layers": -1}, "n_shallow_cross_layers must be >= 1; got -1"),
        ({"deep_net_dropout": 1.0}, r"deep_net_dropout must be in \[0, 1\); got 1.0"),
        ({"shallow_net_dropout": -0.1}, r"shallow_net_dropout must be in \[0, 1\); got -0.1"),
        ({"n_heads": 2}, "unknown hyper-parameter"),
    ],
)
def test_fcn_bad_hyperparameters(splits, hyperparameters, message):
    with pytest.raises(ValueError, match=message):
        build_model("fcn", splits.schema, **hyperparameters)


def test_fcn_bit_fields_reject_odd_width():
    with pytest.raises(ValueError, match="got 3"):
        fcn_bit_fields(2, 3)


# --- CLI ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def csv_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cross_csv")
    write_csv(synthetic_frame(400, seed=11), folder / "train.csv")
    write_csv(synthetic_frame(100, seed=12), folder / "valid.csv")
    write_schema_json(folder / "schema.json")
    return folder


def _train(folder, out, architecture: str, *options: str) -> tuple[int, str, str]:
    argv = [
        "train", "--arch", architecture, "--train", str(folder / "train.csv"), "--valid", str(folder / "valid.csv"),
        "--out", str(out), "--embedding-dim", "4", "--epochs", "1", "--batch-size", "128", "--quiet", *options,
    ]
    return run_cli(argv)


def test_cli_trains_gdcn(csv_folder, tmp_path):
    out = tmp_path / "gdcn"

    status, stdout, stderr = _train(
        csv_folder, out, "gdcn", "--hidden-units", "8", "--dropout", "0.1", "--no-batch-norm",
        "--cross-layers", "2", "--structure", "stacked",
    )

    assert status == 0, stderr
    assert json.loads(stdout)
    assert read_manifest(out)["hyperparameters"] == {
        "embedding_dim": 4,
        "n_cross_layers": 2,
        "structure": "stacked",
        "hidden_units": [8],
        "dropout": 0.1,
        "batch_norm": False,
    }


def test_cli_trains_fcn_with_params(csv_folder, tmp_path):
    out = tmp_path / "fcn"

    status, _, stderr = _train(
        csv_folder, out, "fcn", "--param", "n_deep_cross_layers=1", "--param", "shallow_net_dropout=0.0",
        "--hidden-units", "8",
    )

    assert status == 0, stderr
    hyperparameters = read_manifest(out)["hyperparameters"]
    assert hyperparameters["n_deep_cross_layers"] == 1
    assert hyperparameters["shallow_net_dropout"] == 0.0
    assert "hidden_units" not in hyperparameters
