"""Native architectures: shapes, the embedding/logit split, closed forms and guards."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
import torch

from helpers import TINY_HYPERPARAMETERS, build_tiny_model, set_weights, synthetic_splits
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.probes import capture_probes
from workbench.schema import Field, Schema, Vocabulary
from workbench.training import TrainConfig, train
from workbench.zoo import ARCHITECTURES, build_model
from workbench.zoo.embedding import FieldEmbedding
from workbench.zoo.layers import CrossNetV2, MultiHeadSelfAttention
from workbench.zoo.models import FactorizationMachine

ALL_ARCHITECTURES = sorted(TINY_HYPERPARAMETERS)


@pytest.fixture(scope="module")
def splits():
    return synthetic_splits(n_train=600, n_valid=200, n_test=64, seed=5)


def _pad_inputs(schema: Schema, batch_size: int) -> dict[str, torch.Tensor]:
    inputs = {}
    for f in schema.fields:
        if f.kind == "categorical":
            inputs[f.name] = torch.zeros(batch_size, dtype=torch.int64)
        elif f.kind == "sequence":
            inputs[f.name] = torch.zeros(batch_size, f.max_length, dtype=torch.int64)
        elif f.kind == "numeric":
            inputs[f.name] = torch.zeros(batch_size)
        else:
            inputs[f.name] = torch.zeros(batch_size, f.dim)
    return inputs


SEQUENCE_ARCHITECTURES = {"din", "dien", "qin"}
"""Tested in test_zoo_sequence.py: they need a history paired with a target field, which this schema lacks."""


def test_registry_covers_architectures():
    assert set(ARCHITECTURES) == set(TINY_HYPERPARAMETERS) | SEQUENCE_ARCHITECTURES


@pytest.mark.parametrize("architecture", ALL_ARCHITECTURES)
def test_output_shape(splits, architecture):
    model = build_tiny_model(architecture, splits.schema).eval()

    logits = model(splits.test.tensors())

    assert logits.shape == (len(splits.test),)
    assert logits.dtype == torch.float32


@pytest.mark.parametrize("architecture", ALL_ARCHITECTURES)
def test_embedding_shape(splits, architecture):
    model = build_tiny_model(architecture, splits.schema)

    embeddings = model.field_embedding(splits.test.tensors())

    assert embeddings.shape == (len(splits.test), len(splits.schema), model.embedding_width)


@pytest.mark.parametrize("architecture", ALL_ARCHITECTURES)
def test_forward_is_split_composition(splits, architecture):
    model = build_tiny_model(architecture, splits.schema).eval()
    inputs = splits.test.tensors()

    with torch.no_grad():
        direct = model(inputs)
        composed = model.logit_from_embeddings(model.field_embedding(inputs))

    torch.testing.assert_close(direct, composed, rtol=0, atol=0)


@pytest.mark.parametrize("architecture", ALL_ARCHITECTURES)
def test_pad_inputs_zero_embedding_after_training(splits, architecture):
    model = build_tiny_model(architecture, splits.schema)
    config = TrainConfig(epochs=1, batch_size=64, learning_rate=1e-2, seed=0)
    train(model, splits.train, splits.valid, config, show_progress=False)

    with torch.no_grad():
        embeddings = model.field_embedding(_pad_inputs(splits.schema, 3))

    for position, name in enumerate(splits.schema.field_names):
        assert torch.count_nonzero(embeddings[:, position]) == 0, name


def test_width_per_architecture(splits):
    widths = {name: build_tiny_model(name, splits.schema).embedding_width for name in ALL_ARCHITECTURES}

    # Models with a first-order weight per feature keep it in an extra slot column.
    assert widths == {
        "lr": 1, "fm": 5, "dnn": 4, "deepfm": 5, "dcnv2": 4, "autoint+": 4, "gdcn": 4, "fcn": 4,
        "finalmlp": 4, "fibinet": 5, "masknet": 4, "xdeepfm": 5,
    }


def test_hyperparameters_recorded(splits):
    model = build_tiny_model("dcnv2", splits.schema)

    assert model.hyperparameters == {
        "embedding_dim": 4,
        "n_cross_layers": 2,
        "structure": "parallel",
        "hidden_units": [8],
        "dropout": 0.1,
        "batch_norm": True,
    }


def test_lr_ignores_embedding_dim(splits):
    model = build_model("lr", splits.schema, embedding_dim=8)

    assert model.embedding_width == 1
    assert model.hyperparameters == {"embedding_dim": 1}


def test_build_model_case_insensitive(splits):
    model = build_model("DeepFM", splits.schema, **TINY_HYPERPARAMETERS["deepfm"])

    assert model.architecture == "deepfm"


def test_dcnv2_stacked_shape(splits):
    model = build_tiny_model("dcnv2", splits.schema, structure="stacked").eval()

    assert model(splits.test.tensors()).shape == (len(splits.test),)
    assert model.head.in_features == 8


# --- Closed forms ---------------------------------------------------------


def _mixed_schema() -> Schema:
    """Two categorical fields, a numeric, a sequence and a dense field, all fitted by hand."""
    return Schema(
        [
            Field("city", "categorical", vocabulary=Vocabulary(["a", "b", "c"])),
            Field("device", "categorical", vocabulary=Vocabulary(["m", "t"])),
            Field("age", "numeric", mean=0.0, std=1.0),
            Field("history", "sequence", vocabulary=Vocabulary(["x", "y", "z"]), max_length=3),
            Field("vec", "dense", dim=2),
        ]
    )


def _mixed_inputs() -> dict[str, torch.Tensor]:
    return {
        "city": torch.tensor([1, 3, 0, 4]),
        "device": torch.tensor([2, 1, 3, 0]),
        "age": torch.tensor([0.5, -1.25, 2.0, 0.0]),
        "history": torch.tensor([[1, 2, 0], [3, 3, 1], [0, 0, 0], [2, 0, 0]]),
        "vec": torch.tensor([[1.0, -2.0], [0.5, 0.25], [0.0, 0.0], [3.0, 1.0]]),
    }


def _randomise_embeddings(embedding: FieldEmbedding, seed: int) -> None:
    """Give every embedding parameter O(1) values, keeping the PAD rows at zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for table in embedding.tables.values():
            table.weight.copy_(torch.randn(table.weight.shape, generator=generator))
            table.weight[0].zero_()
        for vector in embedding.numeric_vectors.values():
            vector.copy_(torch.randn(vector.shape, generator=generator))
        for projection in embedding.projections.values():
            projection.weight.copy_(torch.randn(projection.weight.shape, generator=generator))


def _slots_by_hand(embedding: FieldEmbedding, inputs: dict[str, torch.Tensor]) -> list[list[np.ndarray]]:
    """Field slot vectors per sample, computed with plain loops: ``slots[sample][field]``."""
    tables = {name: table.weight.detach().numpy() for name, table in embedding.tables.items()}
    slots = []
    for i in range(inputs["city"].shape[0]):
        row = [
            tables["city"][int(inputs["city"][i])],
            tables["device"][int(inputs["device"][i])],
            float(inputs["age"][i]) * embedding.numeric_vectors["age"].detach().numpy(),
        ]
        items = [int(j) for j in inputs["history"][i] if int(j) != 0]
        history = np.zeros(embedding.width, dtype=np.float32)
        for j in items:
            history = history + tables["history"][j]
        row.append(history / max(len(items), 1))
        row.append(embedding.projections["vec"].weight.detach().numpy() @ inputs["vec"][i].numpy())
        slots.append(row)
    return slots


def test_fm_closed_form():
    model = build_model("fm", _mixed_schema(), embedding_dim=3)
    _randomise_embeddings(model.field_embedding, seed=1)
    set_weights(model.bias, [0.3])
    inputs = _mixed_inputs()

    with torch.no_grad():
        logits = model(inputs).numpy()

    for i, slots in enumerate(_slots_by_hand(model.field_embedding, inputs)):
        factors = [slot[:-1] for slot in slots]
        first_order = sum(float(slot[-1]) for slot in slots)
        pairs = sum(float(factors[a] @ factors[b]) for a, b in itertools.combinations(range(len(slots)), 2))
        assert logits[i] == pytest.approx(0.3 + first_order + pairs, abs=1e-5), f"sample {i}"


def test_lr_closed_form():
    model = build_model("lr", _mixed_schema())
    _randomise_embeddings(model.field_embedding, seed=2)
    set_weights(model.bias, [-0.7])
    inputs = _mixed_inputs()

    with torch.no_grad():
        logits = model(inputs).numpy()

    for i, slots in enumerate(_slots_by_hand(model.field_embedding, inputs)):
        expected = -0.7 + sum(float(slot[0]) for slot in slots)
        assert logits[i] == pytest.approx(expected, abs=1e-6), f"sample {i}"


def test_lr_pad_logit_is_bias():
    model = build_model("lr", _mixed_schema())
    _randomise_embeddings(model.field_embedding, seed=3)
    set_weights(model.bias, [0.25])

    with torch.no_grad():
        logits = model(_pad_inputs(model.schema, 2))

    torch.testing.assert_close(logits, torch.tensor([0.25, 0.25]))


def test_deepfm_is_fm_plus_dnn(splits):
    model = build_tiny_model("deepfm", splits.schema).eval()

    with torch.no_grad():
        embeddings = model.field_embedding(splits.test.tensors())
        fm_part = FactorizationMachine.logit_from_embeddings(model, embeddings)
        deep_part = model.dnn(embeddings[..., :-1].flatten(start_dim=1)).squeeze(-1)
        total = model.logit_from_embeddings(embeddings)

    torch.testing.assert_close(total, fm_part + deep_part)


def test_sequence_mean_pooling():
    schema = Schema([Field("history", "sequence", vocabulary=Vocabulary(["x", "y", "z"]), max_length=3)])
    embedding = FieldEmbedding(schema, 2)
    set_weights(embedding.tables["history"].weight, [[0, 0], [1, 2], [3, 4], [5, 9], [7, 7]])

    vectors = embedding({"history": torch.tensor([[1, 2, 0], [3, 0, 0], [1, 2, 3], [0, 0, 0], [4, 4, 1]])})

    expected = torch.tensor([[2.0, 3.0], [5.0, 9.0], [3.0, 5.0], [0.0, 0.0], [5.0, 16 / 3]])
    torch.testing.assert_close(vectors[:, 0], expected)


def test_numeric_embedding_scales_vector():
    schema = Schema([Field("age", "numeric")])
    embedding = FieldEmbedding(schema, 3)
    set_weights(embedding.numeric_vectors["age"], [1.0, -2.0, 0.5])

    vectors = embedding({"age": torch.tensor([2.0, 0.0, -1.0])})

    torch.testing.assert_close(vectors[:, 0], torch.tensor([[2.0, -4.0, 1.0], [0.0, 0.0, 0.0], [-1.0, 2.0, -0.5]]))


def test_dense_embedding_projection():
    schema = Schema([Field("vec", "dense", dim=2)])
    embedding = FieldEmbedding(schema, 3)
    set_weights(embedding.projections["vec"].weight, [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    vectors = embedding({"vec": torch.tensor([[2.0, 3.0], [0.0, 0.0]])})

    torch.testing.assert_close(vectors[:, 0], torch.tensor([[2.0, 3.0, 5.0], [0.0, 0.0, 0.0]]))


def test_categorical_pad_row_zero_at_init():
    schema = Schema([Field("city", "categorical", vocabulary=Vocabulary(["a", "b"]))])
    embedding = FieldEmbedding(schema, 4)

    assert torch.count_nonzero(embedding.tables["city"].weight[0]) == 0
    assert torch.count_nonzero(embedding.tables["city"].weight[1:]) > 0
    assert embedding.tables["city"].weight.shape == (4, 4)


def test_cross_layer_closed_form():
    cross = CrossNetV2(2, 1)
    set_weights(cross.cross_layers[0].weight, [[1.0, 2.0], [0.0, -1.0]])
    set_weights(cross.cross_layers[0].bias, [0.5, 1.0])
    x0 = torch.tensor([[1.0, 3.0]])

    out = cross(x0)

    # W x0 + b is [7.5, -2.0], so x0 * (W x0 + b) + x0 is [8.5, -3.0].
    torch.testing.assert_close(out, torch.tensor([[8.5, -3.0]]))


def test_autoint_attention_rows_sum_to_one(splits):
    model = build_tiny_model("autoint+", splits.schema, attention_layers=2, n_heads=2).eval()

    values = capture_probes(model, splits.test.tensors(), names=["attention"])["attention"].values

    n_fields = len(splits.schema)
    assert values.shape == (len(splits.test), 2, 2, n_fields, n_fields)
    for position in range(len(model.attention)):
        attention = torch.from_numpy(values[:, position])
        assert attention.shape == (len(splits.test), 2, n_fields, n_fields)
        torch.testing.assert_close(attention.sum(dim=-1), torch.ones(len(splits.test), 2, n_fields))
        assert bool((attention >= 0).all())


# --- Guards ---------------------------------------------------------------


def test_build_model_unknown_architecture(splits):
    with pytest.raises(ValueError, match=r"unknown architecture 'pnn'; available: lr, fm, dnn, deepfm, dcnv2, autoint\+, gdcn"):
        build_model("pnn", splits.schema)


def test_build_model_embedding_dim_zero(splits):
    with pytest.raises(ValueError, match="embedding_dim must be >= 1; got 0"):
        build_model("fm", splits.schema, embedding_dim=0)


def test_build_model_bad_structure(splits):
    with pytest.raises(ValueError, match="structure must be 'parallel' or 'stacked'; got 'serial'"):
        build_model("dcnv2", splits.schema, structure="serial")


def test_build_model_heads_not_dividing(splits):
    with pytest.raises(ValueError, match=r"attention_dim \(10\) must be divisible by n_heads \(3\)"):
        build_model("autoint+", splits.schema, attention_dim=10, n_heads=3)


def test_attention_layer_heads_not_dividing():
    with pytest.raises(ValueError, match="must be divisible"):
        MultiHeadSelfAttention(4, 6, 4)


def test_build_model_bad_dropout(splits):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        build_model("deepfm", splits.schema, dropout=1.5)


def test_build_model_unknown_hyperparameter(splits):
    with pytest.raises(ValueError, match="hiden_units"):
        build_model("deepfm", splits.schema, hiden_units=[8])


def test_build_model_zero_heads(splits):
    with pytest.raises(ValueError, match="n_heads"):
        build_model("autoint+", splits.schema, n_heads=0)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
@pytest.mark.parametrize(
    ("architecture", "hyperparameters"),
    [("dcnv2", {"n_cross_layers": -1}), ("deepfm", {"hidden_units": [0]})],
)
def test_build_model_non_positive_sizes(splits, architecture, hyperparameters):
    with pytest.raises(ValueError, match=next(iter(hyperparameters))):
        build_model(architecture, splits.schema, **hyperparameters)


@pytest.mark.parametrize(
    ("architecture", "name", "value", "message"),
    [
        ("finalmlp", "mlp1_hidden_units", [1.5], "must be a list of ints such as [400]; got [1.5]"),
        ("finalmlp", "mlp1_dropout", "high", "must be a float such as 0.4; got 'high'"),
        ("finalmlp", "use_fs", "yes", "must be a bool such as true; got 'yes'"),
        ("gdcn", "n_cross_layers", 2.5, "must be an int such as 3; got 2.5"),
        ("dcnv2", "structure", 1, 'must be a str such as "parallel"; got 1'),
        ("deepfm", "batch_norm", 1, "must be a bool such as true; got 1"),
    ],
)
def test_build_model_rejects_wrong_types(splits, architecture, name, value, message):
    with pytest.raises(ValueError, match=re.escape(f"hyper-parameter {name} of {architecture} {message}")):
        build_model(architecture, splits.schema, **{name: value})


def test_build_model_accepts_compatible_types(splits):
    model = build_model("deepfm", splits.schema, embedding_dim=4, dropout=0, hidden_units=[8, 4])

    assert model.hyperparameters["dropout"] == 0
    assert model.hyperparameters["hidden_units"] == [8, 4]
