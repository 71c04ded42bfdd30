"""FinalMLP, FiBiNET, MaskNet and xDeepFM: shapes, probes, closed forms, guards and exact Shapley efficiency."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from helpers import TINY_HYPERPARAMETERS, build_tiny_model, set_weights
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from test_game import FIELDS, scrambled_model, tiny_inputs, tiny_schema
from workbench.explain.exact import exact_indices
from workbench.explain.game import EmbeddingGame, all_coalitions
from workbench.probes import capture_probes
from workbench.schema import Field, Schema, Vocabulary
from workbench.zoo import build_model
from workbench.zoo.xdeepfm import CompressedInteractionNetwork

N_FIELDS = len(FIELDS)
N_ROWS = 5

# (architecture, overrides): every structural variant of the four models.
VARIANTS = [
    ("finalmlp", {}),
    ("finalmlp", {"fs1_context": ["user"], "fs2_context": ["item", "vec"]}),
    ("finalmlp", {"use_fs": False}),
    ("fibinet", {}),
    ("fibinet", {"bilinear_type": "field_each", "excitation": "sigmoid"}),
    ("fibinet", {"bilinear_type": "field_interaction"}),
    ("masknet", {}),
    ("masknet", {"model_type": "serial", "serial_block_dims": [5, 3]}),
    ("masknet", {"emb_layernorm": True, "net_layernorm": False}),
    ("xdeepfm", {}),
]
VARIANT_IDS = [f"{a}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'tiny'}" for a, o in VARIANTS]

# Probe name -> axes, for each variant (same order as VARIANTS).
EXPECTED_PROBES = [
    {"stream1_gate": ("field",), "stream2_gate": ("field",)},
    {"stream1_gate": ("field",), "stream2_gate": ("field",)},
    {},
    {
        "senet_weights": ("field",),
        "bilinear_pair_norms": ("field", "field"),
        "senet_bilinear_pair_norms": ("field", "field"),
    },
    {
        "senet_weights": ("field",),
        "bilinear_pair_norms": ("field", "field"),
        "senet_bilinear_pair_norms": ("field", "field"),
    },
    {
        "senet_weights": ("field",),
        "bilinear_pair_norms": ("field", "field"),
        "senet_bilinear_pair_norms": ("field", "field"),
        "bilinear_weight_norms": ("field", "field"),
    },
    {"block_masks": ("block", "field")},
    {"first_block_mask": ("field",)},
    {"block_masks": ("block", "field")},
    {"cin_pair_weights": ("field", "field")},
]


@pytest.fixture(scope="module")
def schema() -> Schema:
    return tiny_schema()


@pytest.fixture(scope="module")
def inputs(schema) -> dict[str, torch.Tensor]:
    return tiny_inputs(schema, N_ROWS, seed=3)


def _embeddings(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model.field_embedding(inputs)


# --- shapes, probes and efficiency on every variant -----------------------------


@pytest.mark.parametrize(("architecture", "overrides"), VARIANTS, ids=VARIANT_IDS)
def test_forward_shape(schema, inputs, architecture, overrides):
    model = scrambled_model(architecture, schema, **overrides)

    with torch.no_grad():
        logits = model(inputs)

    assert logits.shape == (N_ROWS,)
    assert torch.isfinite(logits).all()
    assert _embeddings(model, inputs).shape == (N_ROWS, N_FIELDS, model.embedding_width)


def test_embedding_widths(schema):
    names = ("finalmlp", "fibinet", "masknet", "xdeepfm")
    widths = {name: build_tiny_model(name, schema).embedding_width for name in names}

    # FiBiNET and xDeepFM keep the first-order weight in an extra slot column.
    assert widths == {"finalmlp": 4, "fibinet": 5, "masknet": 4, "xdeepfm": 5}


@pytest.mark.parametrize(
    ("architecture", "overrides", "expected"),
    [(a, o, e) for (a, o), e in zip(VARIANTS, EXPECTED_PROBES, strict=True)],
    ids=VARIANT_IDS,
)
def test_probes_shapes_and_logits(schema, inputs, architecture, overrides, expected):
    model = scrambled_model(architecture, schema, **overrides)

    capture = capture_probes(model, inputs)
    with torch.no_grad():
        logits = model(inputs).numpy()

    np.testing.assert_array_equal(capture.logits, logits)
    assert {name: values.probe.axes for name, values in capture.probes.items()} == expected
    for name, values in capture.probes.items():
        sizes = {"field": N_FIELDS, "block": model.hyperparameters.get("parallel_num_blocks")}
        shape = tuple(sizes[axis] for axis in values.probe.axes)
        assert values.values.shape == ((N_ROWS, *shape) if values.probe.per_sample else shape), name
        assert np.isfinite(values.values).all(), name


def test_probes_do_not_change_training_mode(schema, inputs):
    model = scrambled_model("fibinet", schema).train()

    capture_probes(model, inputs)

    assert model.training


@pytest.mark.parametrize(("architecture", "overrides"), VARIANTS, ids=VARIANT_IDS)
def test_exact_shapley_efficiency(schema, inputs, architecture, overrides):
    model = scrambled_model(architecture, schema, **overrides)

    result = exact_indices(model, inputs)
    with torch.no_grad():
        logits = model(inputs).double().numpy()

    total = result.shapley.values.sum(axis=1) + result.shapley.base_values
    np.testing.assert_allclose(total, logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.shapley.predictions, logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("architecture", "overrides", "n_layers"),
    [("masknet", {}, 2), ("masknet", {"model_type": "serial", "serial_block_dims": [5, 3]}, 2), ("xdeepfm", {}, 1)],
)
def test_first_layers_reproduce_the_model(schema, inputs, architecture, overrides, n_layers):
    model = scrambled_model(architecture, schema, **overrides)
    layers = model.first_layers()
    embeddings = _embeddings(model, inputs)

    with torch.no_grad():
        outputs = [torch.einsum("bfw,ofw->bo", embeddings, weight) + bias for weight, bias in layers]
        expected = model.logit_from_embeddings(embeddings)
        got = model.logit_from_embeddings(embeddings, first_layer_outputs=outputs)
        shifted = model.logit_from_embeddings(embeddings, first_layer_outputs=[o + 1.0 for o in outputs])

    assert len(layers) == n_layers
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6, atol=1e-5)
    assert not torch.allclose(shifted, expected)


@pytest.mark.parametrize("architecture", ["masknet", "xdeepfm"])
def test_structured_game_matches_plain(schema, inputs, architecture):
    model = scrambled_model(architecture, schema)
    coalitions = all_coalitions(N_FIELDS)

    fast = EmbeddingGame(model, inputs, use_structure=True).values(coalitions)
    plain = EmbeddingGame(model, inputs).values(coalitions)

    np.testing.assert_allclose(fast, plain, rtol=1e-6, atol=1e-5)


def test_xdeepfm_first_layer_ignores_first_order_column(schema):
    model = scrambled_model("xdeepfm", schema)

    weight, _ = model.first_layers()[0]

    assert weight.shape == (8, N_FIELDS, 5)
    assert torch.all(weight[..., -1] == 0)


@pytest.mark.parametrize(
    ("architecture", "expected"),
    [
        (
            "finalmlp",
            {
                "mlp1_hidden_units": [8],
                "mlp1_dropout": 0.4,
                "mlp1_batch_norm": True,
                "mlp2_hidden_units": [6],
                "mlp2_dropout": 0.4,
                "mlp2_batch_norm": True,
                "use_fs": True,
                "fs_hidden_units": [8],
                "fs1_context": [],
                "fs2_context": [],
                "num_heads": 2,
            },
        ),
        (
            "fibinet",
            {
                "bilinear_type": "field_all",
                "reduction_ratio": 2,
                "excitation": "relu",
                "hidden_units": [8],
                "dropout": 0.1,
                "batch_norm": True,
            },
        ),
        (
            "masknet",
            {
                "model_type": "parallel",
                "parallel_num_blocks": 2,
                "parallel_block_dim": 6,
                "serial_block_dims": [64, 64, 64],
                "reduction_ratio": 2,
                "hidden_units": [8],
                "dropout": 0.1,
                "batch_norm": False,
                "net_layernorm": True,
                "emb_layernorm": False,
            },
        ),
        (
            "xdeepfm",
            {"cin_hidden_units": [3, 2], "hidden_units": [8], "dropout": 0.1, "batch_norm": True},
        ),
    ],
)
def test_hyperparameters_recorded(schema, architecture, expected):
    model = build_tiny_model(architecture, schema)

    assert model.hyperparameters == {"embedding_dim": 4, **expected}


@pytest.mark.parametrize(
    ("architecture", "expected"),
    [
        (
            "finalmlp",
            {"mlp1_hidden_units": [400], "mlp2_hidden_units": [100], "fs_hidden_units": [400], "num_heads": 5},
        ),
        ("fibinet", {"bilinear_type": "field_all", "hidden_units": [400, 400, 400], "dropout": 0.3}),
        ("masknet", {"parallel_num_blocks": 3, "parallel_block_dim": 50, "dropout": 0.1, "net_layernorm": True}),
        ("xdeepfm", {"cin_hidden_units": [64], "hidden_units": [400, 400, 400], "dropout": 0.2}),
    ],
)
def test_bars_frappe_defaults(schema, architecture, expected):
    model = build_model(architecture, schema)

    assert model.embedding_dim == 10
    assert {name: model.hyperparameters[name] for name in expected} == expected


# --- FinalMLP ---------------------------------------------------------------------


def _mlp_by_hand(layers: torch.nn.Sequential, x: np.ndarray) -> np.ndarray:
    """Linear, ReLU, Linear (the gate MLP with one hidden layer) in numpy."""
    w1, b1 = layers[0].weight.detach().numpy(), layers[0].bias.detach().numpy()
    w2, b2 = layers[2].weight.detach().numpy(), layers[2].bias.detach().numpy()
    return np.maximum(x @ w1.T + b1, 0.0) @ w2.T + b2


def test_finalmlp_gate_closed_form(schema, inputs):
    model = scrambled_model("finalmlp", schema, fs1_context=["user", "price"], fs_hidden_units=[3])
    embeddings = _embeddings(model, inputs).numpy()

    capture = capture_probes(model, inputs)

    context = embeddings[:, [FIELDS.index("user"), FIELDS.index("price")]].reshape(N_ROWS, -1)
    gate = 2.0 / (1.0 + np.exp(-_mlp_by_hand(model.stream1_gating.mlp.layers, context)))
    values = capture["stream1_gate"]
    np.testing.assert_allclose(values.bits, gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values.values, gate.reshape(N_ROWS, N_FIELDS, 4).mean(axis=2), rtol=1e-5, atol=1e-6)
    assert values.bits.min() > 0.0
    assert values.bits.max() < 2.0
    assert values.probe.value_range == (0.0, 2.0)
    assert values.probe.kind == "gate"
    # The context differs between rows, so the gate does too.
    assert np.ptp(values.values, axis=0).max() > 1e-3


def test_finalmlp_gate_without_context_is_shared(schema, inputs):
    model = scrambled_model("finalmlp", schema, fs_hidden_units=[3])

    values = capture_probes(model, inputs)["stream2_gate"]

    bias = model.stream2_gating.context_bias.detach().numpy()
    gate = 2.0 / (1.0 + np.exp(-_mlp_by_hand(model.stream2_gating.mlp.layers, bias)))
    # Without context the gate depends on the weights alone, so it is a static probe with no row axis.
    assert not values.probe.per_sample
    assert values.values.shape == (N_FIELDS,)
    np.testing.assert_allclose(values.bits, gate[0], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        gated = model.stream2_gating(model.field_embedding(inputs))
        flat = model.field_embedding(inputs).flatten(start_dim=1)
    np.testing.assert_allclose(gated.numpy(), (torch.from_numpy(values.bits).float() * flat).numpy(), rtol=1e-5, atol=1e-6)


def test_finalmlp_gate_scales_mlp_input(schema, inputs):
    """Stream 1's MLP reads gate * e: a gate recomputed by hand reproduces the MLP input."""
    model = scrambled_model("finalmlp", schema)
    seen = []
    handle = model.mlp1.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    try:
        values = capture_probes(model, inputs)["stream1_gate"]
    finally:
        handle.remove()

    flat = _embeddings(model, inputs).flatten(start_dim=1).numpy()
    np.testing.assert_allclose(seen[0].numpy(), values.bits * flat, rtol=1e-5, atol=1e-6)


def test_finalmlp_fusion_closed_form(schema, inputs):
    model = scrambled_model("finalmlp", schema, use_fs=False)
    embeddings = _embeddings(model, inputs)

    with torch.no_grad():
        flat = embeddings.flatten(start_dim=1)
        stream1, stream2 = model.mlp1(flat).numpy(), model.mlp2(flat).numpy()
        logits = model.logit_from_embeddings(embeddings).numpy()

    fusion = model.fusion
    bilinear = fusion.bilinear.detach().numpy()
    for row in range(N_ROWS):
        expected = float(fusion.linear1.bias.detach()) + stream1[row] @ fusion.linear1.weight.detach().numpy()[0]
        expected += stream2[row] @ fusion.linear2.weight.detach().numpy()[0]
        for head in range(2):
            heads1 = stream1[row, head * 4 : (head + 1) * 4]
            heads2 = stream2[row, head * 3 : (head + 1) * 3]
            expected += heads1 @ bilinear[head] @ heads2
        assert logits[row] == pytest.approx(expected, abs=1e-5), f"row {row}"


def test_finalmlp_without_fs_has_no_gates(schema):
    model = build_tiny_model("finalmlp", schema, use_fs=False)

    assert model.probes() == []
    assert model.stream1_gating is None
    assert model.stream2_gating is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"fs1_context": ["nope"]},
            r"fs1_context names unknown field\(s\) 'nope'; choose from the schema's fields: user, item,",
        ),
        ({"fs2_context": ["item", "city"]}, r"fs2_context names unknown field\(s\) 'city'"),
        ({"fs1_context": ["user", "user"]}, r"fs1_context lists field\(s\) 'user' more than once"),
        ({"fs1_context": "user"}, r"fs1_context must be a list of field names; got the string 'user'"),
        ({"num_heads": 3}, r"num_heads \(3\) must divide the output width of both streams; mlp1 outputs 8 units"),
        ({"num_heads": 0}, r"num_heads must be >= 1; got 0"),
        ({"mlp2_hidden_units": [0]}, r"mlp2_hidden_units must be >= 1; got \[0\]"),
        ({"mlp1_dropout": 1.0}, r"dropout must be in \[0, 1\); got 1.0"),
    ],
)
def test_finalmlp_invalid_hyperparameters(schema, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_model("finalmlp", schema, **overrides)


# --- FiBiNET ----------------------------------------------------------------------


def test_fibinet_senet_closed_form(schema, inputs):
    model = scrambled_model("fibinet", schema)
    factors = model.split_slots(_embeddings(model, inputs))[0].numpy()

    values = capture_probes(model, inputs)["senet_weights"]

    squeezed = factors.mean(axis=2)
    w1 = model.senet.excitation[0].weight.detach().numpy()
    w2 = model.senet.excitation[2].weight.detach().numpy()
    assert w1.shape == (N_FIELDS // 2, N_FIELDS)
    expected = np.maximum(np.maximum(squeezed @ w1.T, 0.0) @ w2.T, 0.0)
    np.testing.assert_allclose(values.values, expected, rtol=1e-5, atol=1e-6)
    assert values.probe.kind == "field_weight"


def test_fibinet_sigmoid_excitation(schema, inputs):
    model = scrambled_model("fibinet", schema, excitation="sigmoid")

    values = capture_probes(model, inputs)["senet_weights"].values

    assert isinstance(model.senet.excitation[3], torch.nn.Sigmoid)
    assert values.min() > 0.0
    assert values.max() < 1.0


def _pair_vector(model_layer, factors: np.ndarray, i: int, j: int) -> np.ndarray:
    """``(e_i W) * e_j`` for one pair, for all rows, with the weight the bilinear type picks."""
    weight = model_layer.weight.detach().numpy()
    if model_layer.bilinear_type == "field_all":
        matrix = weight
    elif model_layer.bilinear_type == "field_each":
        matrix = weight[i]
    else:
        matrix = weight[list(itertools.combinations(range(N_FIELDS), 2)).index((i, j))]
    return (factors[:, i] @ matrix) * factors[:, j]


@pytest.mark.parametrize("bilinear_type", ["field_all", "field_each", "field_interaction"])
def test_fibinet_pair_norms_closed_form(schema, inputs, bilinear_type):
    model = scrambled_model("fibinet", schema, bilinear_type=bilinear_type)
    factors = model.split_slots(_embeddings(model, inputs))[0].numpy()

    capture = capture_probes(model, inputs)

    senet = capture["senet_weights"].values
    i, j = 1, 4
    plain = np.linalg.norm(_pair_vector(model.bilinear, factors, i, j), axis=1)
    weighted = np.linalg.norm(_pair_vector(model.senet_bilinear, factors * senet[..., None], i, j), axis=1)
    for name, expected in (("bilinear_pair_norms", plain), ("senet_bilinear_pair_norms", weighted)):
        pairs = capture[name].values
        np.testing.assert_allclose(pairs[:, i, j], expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(pairs, pairs.transpose(0, 2, 1))
        np.testing.assert_array_equal(np.diagonal(pairs, axis1=1, axis2=2), 0.0)


@pytest.mark.parametrize(
    ("bilinear_type", "shape"),
    [("field_all", (4, 4)), ("field_each", (N_FIELDS, 4, 4)), ("field_interaction", (15, 4, 4))],
)
def test_fibinet_bilinear_weight_shapes(schema, bilinear_type, shape):
    model = build_tiny_model("fibinet", schema, bilinear_type=bilinear_type)

    assert model.bilinear.weight.shape == shape
    assert model.senet_bilinear.weight.shape == shape
    assert model.dnn.first_linear.in_features == 2 * 15 * 4


def test_fibinet_weight_norms_closed_form(schema, inputs):
    model = scrambled_model("fibinet", schema, bilinear_type="field_interaction")

    norms = capture_probes(model, inputs)["bilinear_weight_norms"].values

    weight = model.bilinear.weight.detach().numpy()
    for pair, (i, j) in enumerate(itertools.combinations(range(N_FIELDS), 2)):
        assert norms[i, j] == pytest.approx(np.linalg.norm(weight[pair]), rel=1e-5)
        assert norms[j, i] == norms[i, j]
    np.testing.assert_array_equal(np.diag(norms), 0.0)


def test_fibinet_zero_field(schema, inputs):
    """A field whose embedding is zero squeezes to 0 and gives zero pair vectors."""
    model = scrambled_model("fibinet", schema)
    table = model.field_embedding.tables["user"].weight
    set_weights(table, torch.zeros_like(table))
    squeezed = []
    handle = model.senet.excitation.register_forward_hook(lambda _m, args, _out: squeezed.append(args[0].detach()))
    try:
        capture = capture_probes(model, inputs)
    finally:
        handle.remove()

    user = FIELDS.index("user")
    assert torch.all(squeezed[0][:, user] == 0)
    assert torch.any(squeezed[0][:, user + 1] != 0)
    for name in ("bilinear_pair_norms", "senet_bilinear_pair_norms"):
        pairs = capture[name].values
        np.testing.assert_array_equal(pairs[:, user, :], 0.0)
        np.testing.assert_array_equal(pairs[:, :, user], 0.0)
        others = np.delete(np.delete(pairs, user, axis=1), user, axis=2)
        assert others.max() > 0.0


def test_fibinet_logit_decomposition(schema, inputs):
    model = scrambled_model("fibinet", schema)
    embeddings = _embeddings(model, inputs)

    with torch.no_grad():
        factors, weights = model.split_slots(embeddings)
        pairs = torch.cat([model.bilinear(factors), model.senet_bilinear(model.senet(factors))], dim=1)
        expected = model.bias + weights.sum(dim=1) + model.dnn(pairs.flatten(start_dim=1)).squeeze(-1)
        logits = model.logit_from_embeddings(embeddings)

    torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"bilinear_type": "field_pair"},
            r"bilinear_type must be one of 'field_all', 'field_each', 'field_interaction'; got 'field_pair'",
        ),
        ({"excitation": "tanh"}, r"excitation must be one of 'relu', 'sigmoid'; got 'tanh'"),
        ({"reduction_ratio": 0}, r"reduction_ratio must be >= 1; got 0"),
        ({"reduction_ratio": 1.5}, r"hyper-parameter reduction_ratio of fibinet must be an int such as 2; got 1.5"),
        ({"hidden_units": [8, 0]}, r"hidden_units must be >= 1"),
    ],
)
def test_fibinet_invalid_hyperparameters(schema, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_model("fibinet", schema, **overrides)


def test_fibinet_single_field_rejected():
    schema = Schema([Field("user", "categorical", vocabulary=Vocabulary(["a", "b"]))])

    with pytest.raises(ValueError, match="FiBiNET needs at least 2 fields to form field pairs; the schema has 1"):
        build_model("fibinet", schema)


# --- MaskNet ----------------------------------------------------------------------


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    variance = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + eps) * weight + bias


def test_masknet_block_closed_form(schema, inputs):
    model = scrambled_model("masknet", schema)
    flat = _embeddings(model, inputs).flatten(start_dim=1).numpy()
    block = model.blocks[0]
    outputs = []
    handle = block.register_forward_hook(lambda _m, _args, out: outputs.append(out.detach()))
    try:
        values = capture_probes(model, inputs)["block_masks"]
    finally:
        handle.remove()

    def weights(layer):
        return layer.weight.detach().numpy(), layer.bias.detach().numpy()

    w1, b1 = weights(block.mask_hidden)
    w2, b2 = weights(block.mask_output)
    mask = np.maximum(flat @ w1.T + b1, 0.0) @ w2.T + b2
    assert w1.shape == (2 * N_FIELDS * 4, N_FIELDS * 4)
    np.testing.assert_allclose(values.bits[:, 0], mask, rtol=1e-5, atol=1e-5)
    field_means = mask.reshape(N_ROWS, N_FIELDS, 4).mean(axis=2)
    np.testing.assert_allclose(values.values[:, 0], field_means, rtol=1e-5, atol=1e-5)
    # Real-valued: the mask has no sigmoid, so it takes negative values too.
    assert values.bits.min() < 0.0

    hidden = (mask * flat) @ block.hidden.weight.detach().numpy().T
    norm_weight, norm_bias = weights(block.norm)
    expected = np.maximum(_layer_norm(hidden, norm_weight, norm_bias), 0.0)
    np.testing.assert_allclose(outputs[0].numpy(), expected, rtol=1e-4, atol=1e-5)


def test_masknet_blocks_differ(schema, inputs):
    model = scrambled_model("masknet", schema)

    values = capture_probes(model, inputs)["block_masks"]

    assert values.bits.shape == (N_ROWS, 2, N_FIELDS * 4)
    assert not np.allclose(values.bits[:, 0], values.bits[:, 1])


def test_masknet_serial_shapes(schema, inputs):
    model = scrambled_model("masknet", schema, model_type="serial", serial_block_dims=[5, 3], reduction_ratio=1.5)

    values = capture_probes(model, inputs)["first_block_mask"]

    width = N_FIELDS * 4
    assert values.bits.shape == (N_ROWS, width)
    # Every mask reads V_emb and has the width of its block's input.
    assert [tuple(b.mask_hidden.weight.shape) for b in model.blocks] == [(round(1.5 * width), width), (8, width)]
    assert [b.mask_output.out_features for b in model.blocks] == [width, 5]
    assert [b.hidden.out_features for b in model.blocks] == [5, 3]
    assert model.head.first_linear.in_features == 3


def test_masknet_serial_first_mask_closed_form(schema, inputs):
    model = scrambled_model("masknet", schema, model_type="serial", serial_block_dims=[5, 3])
    flat = _embeddings(model, inputs).flatten(start_dim=1).numpy()

    values = capture_probes(model, inputs)["first_block_mask"]

    block = model.blocks[0]
    w1, b1 = block.mask_hidden.weight.detach().numpy(), block.mask_hidden.bias.detach().numpy()
    w2, b2 = block.mask_output.weight.detach().numpy(), block.mask_output.bias.detach().numpy()
    np.testing.assert_allclose(values.bits, np.maximum(flat @ w1.T + b1, 0.0) @ w2.T + b2, rtol=1e-5, atol=1e-5)


def test_masknet_emb_layernorm_feeds_blocks(schema, inputs):
    model = scrambled_model("masknet", schema, emb_layernorm=True)
    embeddings = _embeddings(model, inputs)
    seen = []
    handle = model.blocks[0].hidden.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    try:
        values = capture_probes(model, inputs)["block_masks"]
    finally:
        handle.remove()

    norm = model.emb_norm
    normalised = _layer_norm(embeddings.numpy(), norm.weight.detach().numpy(), norm.bias.detach().numpy())
    expected = values.bits[:, 0] * normalised.reshape(N_ROWS, -1)
    np.testing.assert_allclose(seen[0].numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model_type": "stacked"}, r"model_type must be 'parallel' or 'serial'; got 'stacked'"),
        ({"reduction_ratio": 0}, r"reduction_ratio must be a number > 0; got 0"),
        ({"model_type": "serial", "serial_block_dims": []}, r"serial_block_dims must list at least one block width"),
        ({"parallel_num_blocks": 0}, r"parallel_num_blocks must be >= 1; got 0"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\); got -0.1"),
    ],
)
def test_masknet_invalid_hyperparameters(schema, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_model("masknet", schema, **overrides)


# --- xDeepFM ----------------------------------------------------------------------


def test_cin_matches_double_loop():
    torch.manual_seed(0)
    n_fields, dim, units = 3, 4, [2, 3]
    cin = CompressedInteractionNetwork(n_fields, units)
    x0 = torch.randn(2, n_fields, dim)

    with torch.no_grad():
        got = cin(x0).numpy()

    x0 = x0.numpy()
    previous = x0
    pooled = []
    for layer, n_maps in zip(cin.layers, units, strict=True):
        weight = layer.weight.detach().numpy()[..., 0]
        current = np.zeros((2, n_maps, dim))
        for h in range(n_maps):
            for i in range(previous.shape[1]):
                for j in range(n_fields):
                    current[:, h] += weight[h, i * n_fields + j] * previous[:, i] * x0[:, j]
        pooled.append(current.sum(axis=2))
        previous = current
    np.testing.assert_allclose(got, np.concatenate(pooled, axis=1), rtol=1e-5, atol=1e-5)
    assert got.shape == (2, 5)


def test_xdeepfm_logit_decomposition(schema, inputs):
    model = scrambled_model("xdeepfm", schema)
    embeddings = _embeddings(model, inputs)

    with torch.no_grad():
        factors, weights = model.split_slots(embeddings)
        cin = model.cin_head(model.cin(factors)).squeeze(-1)
        deep = model.dnn(factors.flatten(start_dim=1)).squeeze(-1)
        logits = model.logit_from_embeddings(embeddings)

    torch.testing.assert_close(logits, model.bias + weights.sum(dim=1) + cin + deep)


def test_xdeepfm_cin_pair_weights_closed_form(schema, inputs):
    model = scrambled_model("xdeepfm", schema)

    values = capture_probes(model, inputs)["cin_pair_weights"]

    weight = model.cin.layers[0].weight.detach().numpy()[..., 0]
    assert weight.shape == (3, N_FIELDS * N_FIELDS)
    norms = np.zeros((N_FIELDS, N_FIELDS))
    for i, j in itertools.product(range(N_FIELDS), repeat=2):
        norms[i, j] = np.sqrt(sum(weight[h, i * N_FIELDS + j] ** 2 for h in range(3)))
    assert not values.probe.per_sample
    np.testing.assert_allclose(values.values, (norms + norms.T) / 2, rtol=1e-5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cin_hidden_units": []}, r"cin_hidden_units must list at least one CIN layer width; got \[\]"),
        ({"cin_hidden_units": [4, 0]}, r"cin_hidden_units must be >= 1; got \[4, 0\]"),
        ({"dropout": 2.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_xdeepfm_invalid_hyperparameters(schema, overrides, message):
    with pytest.raises(ValueError, match=message):
        build_tiny_model("xdeepfm", schema, **overrides)


def test_tiny_configurations_registered():
    assert {"finalmlp", "fibinet", "masknet", "xdeepfm"} <= set(TINY_HYPERPARAMETERS)
