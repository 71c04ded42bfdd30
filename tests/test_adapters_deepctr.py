"""DeepCTR-Torch models, trained with the real package's ``fit``, opened through ``workbench.adapters.deepctr``.

The models are tiny (embedding size 4, one epoch on 2,000 Criteo rows or 500
Alimama rows), so the tests check that the adapter reproduces the package's
own numbers, not model quality.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from deepctr_fixtures import (
    ALIMAMA_FILE,
    CRITEO_FILE,
    CRITEO_MODELS,
    DENSE,
    EMBEDDING_DIM,
    SPARSE,
    DeepCTRSample,
    criteo_columns,
    train_criteo,
    train_din,
)
from workbench.adapters import AdapterError
from workbench.adapters.bundle import save_adapted_bundle
from workbench.adapters.deepctr import (
    MODEL_CLASSES,
    ModelColumns,
    adapt_deepctr,
    build_deepctr_model,
    columns_to_spec,
    deepctr_schema,
    import_deepctr,
    label_encoder_vocabulary,
    load_deepctr,
    rebuild,
    recipe_for,
    spec_to_columns,
)
from workbench.bundle import load_bundle
from workbench.data import encode
from workbench.explain.api import explain
from workbench.probes import capture_probes

REPO_ROOT = Path(__file__).resolve().parents[1]
needs_criteo = pytest.mark.skipif(not CRITEO_FILE.is_file(), reason="the shared Criteo sample is not next to the repository")
needs_alimama = pytest.mark.skipif(not ALIMAMA_FILE.is_file(), reason="the shared Alimama sample is not next to the repository")

N_ROWS = 256
"""Rows compared with ``model.predict``."""
CRITEO_GROUPS = {
    "C1-C5": SPARSE[:5],
    "C6-C10": SPARSE[5:10],
    "C11-C15": SPARSE[10:15],
    "C16-C20": SPARSE[15:20],
    "C21-C26": SPARSE[20:],
    "I1-I6": DENSE[:6],
    "I7-I13": DENSE[6:],
}
"""Seven players for exact Shapley values (39 fields are too many for all coalitions)."""


@pytest.fixture(scope="session")
def criteo(tmp_path_factory: pytest.TempPathFactory) -> DeepCTRSample:
    if not CRITEO_FILE.is_file():
        pytest.skip("the shared Criteo sample is not next to the repository")
    return train_criteo(tmp_path_factory.mktemp("deepctr_criteo"))


@pytest.fixture(scope="session")
def din(tmp_path_factory: pytest.TempPathFactory) -> DeepCTRSample:
    if not ALIMAMA_FILE.is_file():
        pytest.skip("the shared Alimama sample is not next to the repository")
    return train_din(tmp_path_factory.mktemp("deepctr_din"))


def _adapter(sample: DeepCTRSample, model_class: str):
    trained = sample.models[model_class]
    return adapt_deepctr(trained.model, trained.spec, sample.vocabularies)


def _deepctr_probabilities(sample: DeepCTRSample, model: torch.nn.Module, n_rows: int = N_ROWS) -> np.ndarray:
    x = {name: values[:n_rows] for name, values in sample.model_input.items()}
    return model.predict(x, batch_size=100).reshape(-1)


def _adapter_probabilities(adapter, sample: DeepCTRSample, n_rows: int = N_ROWS) -> np.ndarray:
    dataset = encode(sample.frame.iloc[:n_rows], adapter.schema)
    with torch.no_grad():
        return torch.sigmoid(adapter(dataset.tensors())).double().numpy()


# ----- importing without the network --------------------------------------------------------------

NETWORK_GUARD = textwrap.dedent(
    """
    import sys, threading
    import requests
    calls, started = [], []
    def reject_call(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("network call")
    requests.get = reject_call
    original_start = threading.Thread.start
    def record_start(self):
        started.append(self.name)
        return original_start(self)
    threading.Thread.start = record_start
    {body}
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join(timeout=5)
    print(len(calls), len(started), "deepctr_torch.models" in sys.modules)
    """
)


def _run_guarded(body: str) -> list[str]:
    script = NETWORK_GUARD.format(body=body)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    return result.stdout.split()[-3:]


def test_import_deepctr_makes_no_network_call() -> None:
    calls, threads, loaded = _run_guarded("from workbench.adapters.deepctr import import_deepctr; import_deepctr()")
    assert loaded == "True"
    assert calls == "0"
    assert threads == "0"


def test_plain_import_would_call_pypi() -> None:
    # The guard above catches the call it is meant to catch: a plain import calls requests.get from a thread.
    calls, threads, _ = _run_guarded("import deepctr_torch")
    assert calls == "1"
    assert threads == "1"


def test_import_deepctr_returns_models() -> None:
    package = import_deepctr()
    for name in MODEL_CLASSES:
        assert hasattr(package.models, name)


# ----- column specs and vocabularies --------------------------------------------------------------


def test_columns_round_trip_through_json() -> None:
    inputs = import_deepctr().inputs
    columns = [
        inputs.SparseFeat("user", 10, embedding_dim=4),
        inputs.SparseFeat("item", 20, embedding_dim=4, embedding_name="items", dtype="int64"),
        inputs.DenseFeat("price", 1),
        inputs.DenseFeat("picture", 3),
        inputs.VarLenSparseFeat(
            inputs.SparseFeat("history", 20, embedding_dim=4, embedding_name="items"), 5, "sum", "history_length"
        ),
    ]
    spec = json.loads(json.dumps(columns_to_spec(columns)))
    assert spec_to_columns(spec) == columns
    assert spec[4] == {
        "type": "varlen",
        "sparse": {
            "type": "sparse",
            "name": "history",
            "vocabulary_size": 20,
            "embedding_dim": 4,
            "embedding_name": "items",
            "dtype": "int32",
            "group_name": "default_group",
        },
        "maxlen": 5,
        "combiner": "sum",
        "length_name": "history_length",
    }


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"type": "wide", "name": "a"}, "type 'wide'"),
        ({"type": "sparse", "name": "a", "vocabulary_size": 0, "embedding_dim": 4}, "'vocabulary_size' 0"),
        ({"type": "sparse", "name": "a", "vocabulary_size": 3, "embedding_dim": "auto"}, "'embedding_dim' 'auto'"),
        ({"type": "dense", "name": "", "dimension": 1}, "non-empty string 'name'"),
        ({"type": "dense", "name": "a", "dimension": 1, "dtype": "object"}, "'dtype' 'object'"),
        ({"type": "varlen", "maxlen": 3}, "needs a 'sparse' object"),
        (
            {"type": "varlen", "sparse": {"type": "sparse", "name": "h", "vocabulary_size": 3, "embedding_dim": 2},
             "maxlen": 3, "combiner": "attention"},
            "'combiner' 'attention'",
        ),
    ],
)
def test_spec_rejects_bad_columns(entry: dict, message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        spec_to_columns([entry])


def test_label_encoder_vocabulary_sorts_values() -> None:
    assert label_encoder_vocabulary(["b", "a", "b", "c"]) == ["a", "b", "c"]
    assert label_encoder_vocabulary([3, 1], reserve_padding=True) == [None, "1", "3"]


def test_schema_and_lookups_from_vocabularies() -> None:
    spec = [
        {"type": "sparse", "name": "city", "vocabulary_size": 4, "embedding_dim": 2},
        {"type": "dense", "name": "price", "dimension": 1},
        {"type": "varlen", "sparse": {"type": "sparse", "name": "hist", "vocabulary_size": 4, "embedding_dim": 2,
                                      "embedding_name": "city"}, "maxlen": 3, "length_name": "hist_len"},
    ]
    # city as raw value -> id (an object); the history shares city's table and has no vocabulary of its own.
    schema, lookups = deepctr_schema(spec, {"city": {"paris": 2, "rome": 1, "oslo": 3}})
    assert schema.field_names == ["city", "price", "hist"]
    assert [f.kind for f in schema.fields] == ["categorical", "numeric", "sequence"]
    assert schema["city"].vocabulary.values == ["rome", "paris", "oslo"]
    # PAD, rome, paris, oslo, OOV
    assert lookups["city"].tolist() == [0, 1, 2, 3, 0]
    assert schema["hist"].max_length == 3
    assert schema["price"].mean == 0.0
    assert schema["price"].std == 1.0
    assert schema.label == "label"
    assert deepctr_schema(spec, {"city": {"rome": 1}}, label="click")[0].label == "click"
    with pytest.raises(AdapterError, match="label column 'city' cannot also be a field"):
        deepctr_schema(spec, {"city": {"rome": 1}}, label="city")


@pytest.mark.parametrize(
    ("vocabularies", "message"),
    [
        ({}, "no vocabulary for feature 'city'"),
        ({"city": ["a", "b", "c", "d", "e"]}, "id 4; ids must be whole numbers in 0..3"),
        ({"city": {"a": 1, "b": 1}}, "gives two raw values the same id"),
        ({"city": "a,b"}, "must be a JSON list"),
        ({"city": ["a", "b"], "hist": ["x"]}, "gives 'x' id 0, which DeepCTR reads as padding"),
    ],
)
def test_schema_rejects_bad_vocabularies(vocabularies: dict, message: str) -> None:
    spec = [
        {"type": "sparse", "name": "city", "vocabulary_size": 4, "embedding_dim": 2},
        {"type": "varlen", "sparse": {"type": "sparse", "name": "hist", "vocabulary_size": 4, "embedding_dim": 2,
                                      "embedding_name": "city"}, "maxlen": 3},
    ]
    with pytest.raises(AdapterError, match=message):
        deepctr_schema(spec, vocabularies)


# ----- predictions --------------------------------------------------------------------------------


@needs_criteo
@pytest.mark.parametrize("model_class", list(CRITEO_MODELS))
def test_criteo_predictions_match_deepctr(criteo: DeepCTRSample, model_class: str) -> None:
    adapter = _adapter(criteo, model_class)
    expected = _deepctr_probabilities(criteo, criteo.models[model_class].model)
    assert np.ptp(expected) > 1e-3  # the rows differ, so equal outputs are not a constant
    np.testing.assert_allclose(_adapter_probabilities(adapter, criteo), expected, atol=1e-6, rtol=0)


@needs_alimama
def test_din_predictions_match_deepctr(din: DeepCTRSample) -> None:
    adapter = _adapter(din, "DIN")
    expected = _deepctr_probabilities(din, din.models["DIN"].model)
    assert np.ptp(expected) > 1e-4
    np.testing.assert_allclose(_adapter_probabilities(adapter, din), expected, atol=1e-6, rtol=0)


@needs_criteo
def test_dcnmix_single_row_matches_batch(criteo: DeepCTRSample) -> None:
    # CrossNetMix squeezes the batch axis, so DeepCTR itself cannot predict one row; the adapter pads it.
    adapter = _adapter(criteo, "DCNMix")
    dataset = encode(criteo.frame.iloc[:2], adapter.schema)
    with torch.no_grad():
        both = adapter(dataset.tensors())
        first = adapter(dataset.tensors(np.array([0])))
    assert first.shape == (1,)
    assert first.item() == pytest.approx(both[0].item(), abs=1e-6)


@needs_criteo
def test_prediction_bias_is_in_the_logit(criteo: DeepCTRSample) -> None:
    # PredictionLayer adds its bias in place after the adapter takes its input; a large bias must still show.
    model = copy.deepcopy(criteo.models["DeepFM"].model)
    with torch.no_grad():
        model.out.bias.fill_(1.5)
    adapter = adapt_deepctr(model, criteo.models["DeepFM"].spec, criteo.vocabularies)
    expected = _deepctr_probabilities(criteo, model, 32)
    np.testing.assert_allclose(_adapter_probabilities(adapter, criteo, 32), expected, atol=1e-6, rtol=0)


@needs_criteo
def test_unknown_value_is_oov_with_zero_embedding(criteo: DeepCTRSample) -> None:
    trained = criteo.models["DeepFM"]
    adapter = _adapter(criteo, "DeepFM")
    rows = criteo.frame.iloc[:2].copy()
    rows.loc[1, "C3"] = "never-seen"
    dataset = encode(rows, adapter.schema)
    assert dataset.oov_counts["C3"] == 1
    assert dataset.inputs["C3"][1] == adapter.schema["C3"].vocabulary.oov_index

    embeddings = adapter.field_embedding(dataset.tensors())
    c3 = adapter.schema.field_names.index("C3")
    assert torch.count_nonzero(embeddings[1, c3]) == 0
    assert torch.count_nonzero(embeddings[0, c3]) > 0

    # DeepCTR itself, with id 0 of C3's tables set to zero, gives the same prediction for the row.
    model = copy.deepcopy(trained.model)
    with torch.no_grad():
        model.embedding_dict["C3"].weight[0] = 0.0
        model.linear_model.embedding_dict["C3"].weight[0] = 0.0
    x = {name: values[:2].copy() for name, values in criteo.model_input.items()}
    x["C3"][1] = 0
    expected = model.predict(x, batch_size=2).reshape(-1)
    with torch.no_grad():
        got = torch.sigmoid(adapter(dataset.tensors())).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


@needs_alimama
def test_unknown_history_item_acts_as_removed(din: DeepCTRSample) -> None:
    adapter = _adapter(din, "DIN")
    rows = din.frame.iloc[[5]].copy()  # row 5 keeps 6 behaviours
    items = rows.iloc[0]["hist_cate_id"].split("|")
    assert len(items) == 6
    rows.iloc[0, rows.columns.get_loc("hist_cate_id")] = "|".join([*items[:2], "never-seen", *items[3:]])
    dataset = encode(rows, adapter.schema)
    assert dataset.oov_counts["hist_cate_id"] == 1
    with torch.no_grad():
        got = torch.sigmoid(adapter(dataset.tensors())).double().numpy()

    # DeepCTR on the history without that behaviour: unnormalised DIN attention gives a zero key no weight.
    x = {name: values[5:6].copy() for name, values in din.model_input.items()}
    history = x["hist_cate_id"][0]
    x["hist_cate_id"][0] = np.concatenate([history[:2], history[3:], [0]])
    x["seq_length"][0] = 5
    expected = din.models["DIN"].model.predict(x, batch_size=1).reshape(-1)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_adapt_rejects_model_it_cannot_reproduce() -> None:
    # ONN looks each field up in a field-aware table per other field as well, which the adapter does not hook.
    models = import_deepctr().models
    inputs = import_deepctr().inputs
    columns = [inputs.SparseFeat(name, 4, embedding_dim=2) for name in ("a", "b", "c")]
    model = models.ONN(columns, columns, dnn_hidden_units=[16], init_std=0.5)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # Untrained field-aware tables are near zero, so the missed lookups would change nothing yet.
        for table in model.second_order_embedding_dict.parameters():
            table.copy_(torch.randn(table.shape, generator=generator))
    vocabularies = {name: ["w", "x", "y", "z"] for name in ("a", "b", "c")}
    with pytest.raises(AdapterError, match="does not reproduce the model's own predictions"):
        adapt_deepctr(model, columns_to_spec(columns), vocabularies)


def test_adapt_rejects_regression_task() -> None:
    spec = [{"type": "sparse", "name": "a", "vocabulary_size": 3, "embedding_dim": 2}]
    model = build_deepctr_model("DeepFM", spec, {"task": "regression", "dnn_hidden_units": [4]})
    with pytest.raises(AdapterError, match="task='regression'"):
        adapt_deepctr(model, spec, {"a": ["x", "y", "z"]})


# ----- explanations -------------------------------------------------------------------------------


@needs_criteo
@pytest.mark.parametrize("model_class", ["DeepFM", "AutoInt"])
def test_exact_shapley_is_efficient(criteo: DeepCTRSample, model_class: str) -> None:
    adapter = _adapter(criteo, model_class)
    dataset = encode(criteo.frame.iloc[:4], adapter.schema)
    attribution = explain(adapter, dataset, method="exact_shapley", players=CRITEO_GROUPS)
    assert attribution.values.shape == (4, len(CRITEO_GROUPS))
    gap = attribution.values.sum(axis=1) - (attribution.predictions - attribution.base_values)
    np.testing.assert_allclose(gap, 0.0, atol=1e-5)
    with torch.no_grad():
        logits = adapter(dataset.tensors()).double().numpy()
    np.testing.assert_allclose(attribution.predictions, logits, atol=1e-6)


@needs_alimama
def test_din_exact_shapley_is_efficient(din: DeepCTRSample) -> None:
    adapter = _adapter(din, "DIN")
    dataset = encode(din.frame.iloc[:4], adapter.schema)
    attribution = explain(adapter, dataset, method="exact_shapley")
    assert attribution.values.shape == (4, 6)
    gap = attribution.values.sum(axis=1) - (attribution.predictions - attribution.base_values)
    np.testing.assert_allclose(gap, 0.0, atol=1e-5)


@needs_criteo
def test_integrated_gradients_runs(criteo: DeepCTRSample) -> None:
    adapter = _adapter(criteo, "DeepFM")
    dataset = encode(criteo.frame.iloc[:4], adapter.schema)
    attribution = explain(adapter, dataset, method="integrated_gradients", n_steps=64)
    assert attribution.values.shape == (4, 39)
    assert np.isfinite(attribution.values).all()
    # The dense fields enter as values: their gradients must reach the inputs.
    dense = [adapter.schema.field_names.index(name) for name in DENSE]
    assert np.abs(attribution.values[:, dense]).sum() > 0
    assert attribution.completeness_gap.max() < 1e-2


# ----- probes -------------------------------------------------------------------------------------


def _interacting_layer_by_hand(layer: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the attention ``(B, head, F, F)`` and output of one deepctr-torch InteractingLayer, from its weights."""
    heads, size = layer.head_num, layer.att_embedding_size
    attention, outputs = [], []
    for head in range(heads):
        columns = slice(head * size, (head + 1) * size)
        q = x @ layer.W_Query[:, columns]
        k = x @ layer.W_key[:, columns]
        v = x @ layer.W_Value[:, columns]
        weights = torch.softmax(q @ k.transpose(1, 2), dim=-1)
        attention.append(weights)
        outputs.append(weights @ v)
    out = torch.cat(outputs, dim=-1) + x @ layer.W_Res
    return torch.stack(attention, dim=1), torch.relu(out)


@needs_criteo
def test_autoint_attention_probe_matches_hand_computation(criteo: DeepCTRSample) -> None:
    adapter = _adapter(criteo, "AutoInt")
    model = criteo.models["AutoInt"].model
    dataset = encode(criteo.frame.iloc[:2], adapter.schema)
    capture = capture_probes(adapter, dataset.tensors(), names=["attention"])
    values = capture["attention"].values  # (2, layer, head, 39, 39)
    assert values.shape == (2, 2, 2, 39, 39)

    sparse = [adapter.schema.field_names.index(name) for name in SPARSE]
    dense = [adapter.schema.field_names.index(name) for name in DENSE]
    with torch.no_grad():
        x = torch.cat(
            [model.embedding_dict[name](torch.tensor(criteo.model_input[name][:2]).reshape(2, 1)) for name in SPARSE],
            dim=1,
        )
        for layer_number, layer in enumerate(model.int_layers):
            attention, x = _interacting_layer_by_hand(layer, x)
            got = values[:, layer_number][:, :, sparse][:, :, :, sparse]
            np.testing.assert_allclose(got, attention.numpy(), atol=1e-6)
    one_row_chunks = capture_probes(adapter, dataset.tensors(), names=["attention"], chunk_size=1)["attention"].values
    np.testing.assert_allclose(one_row_chunks, values, atol=1e-6)
    assert np.abs(values[..., dense, :]).max() == 0.0
    assert np.abs(values[..., dense]).max() == 0.0
    np.testing.assert_allclose(values[..., sparse, :].sum(axis=-1), 1.0, atol=1e-5)


@needs_criteo
def test_dcn_cross_probe_folds_matrix_to_field_blocks(criteo: DeepCTRSample) -> None:
    adapter = _adapter(criteo, "DCN")
    model = criteo.models["DCN"].model
    dataset = encode(criteo.frame.iloc[:2], adapter.schema)
    norms = capture_probes(adapter, dataset.tensors(), names=["cross_weight_norms"])["cross_weight_norms"].values
    assert norms.shape == (2, 39, 39)
    names = adapter.schema.field_names
    kernels = model.crossnet.kernels.detach().double()
    d = EMBEDDING_DIM
    # The cross input is the 26 embeddings (4 bits each), then the 13 dense values.
    c2, c7, i4 = names.index("C2"), names.index("C7"), names.index("I4")
    expected_sparse = kernels[1, 1 * d : 2 * d, 6 * d : 7 * d].norm().item()
    expected_dense = kernels[0, 26 * d + 3, 1 * d : 2 * d].norm().item()
    assert norms[1, c2, c7] == pytest.approx(expected_sparse, rel=1e-6)
    assert norms[0, i4, c2] == pytest.approx(expected_dense, rel=1e-6)


def test_dcn_vector_probe_gives_field_norms() -> None:
    inputs = import_deepctr().inputs
    columns = [inputs.SparseFeat("a", 3, embedding_dim=2), inputs.SparseFeat("b", 4, embedding_dim=2), inputs.DenseFeat("c", 1)]
    spec = columns_to_spec(columns)
    model = build_deepctr_model("DCN", spec, {"cross_num": 2, "cross_parameterization": "vector", "dnn_hidden_units": [4]})
    adapter = adapt_deepctr(model, spec, {"a": ["x", "y", "z"], "b": ["p", "q", "r", "s"]})
    rows = {"a": torch.tensor([1, 2]), "b": torch.tensor([3, 4]), "c": torch.tensor([0.5, -1.0])}
    norms = capture_probes(adapter, rows, names=["cross_weight_norms"])["cross_weight_norms"].values
    kernels = model.crossnet.kernels.detach().double()[..., 0]  # (layer, 5 bits): a a b b c
    assert adapter.probes()[0].kind == "field_weight"
    assert norms.shape == (2, 3)
    assert norms[1, 0] == pytest.approx(kernels[1, 0:2].norm().item(), rel=1e-6)
    assert norms[0, 1] == pytest.approx(kernels[0, 2:4].norm().item(), rel=1e-6)
    assert norms[0, 2] == pytest.approx(abs(kernels[0, 4].item()), rel=1e-6)


@needs_criteo
def test_dcnmix_expert_probe_shape(criteo: DeepCTRSample) -> None:
    adapter = _adapter(criteo, "DCNMix")
    model = criteo.models["DCNMix"].model
    dataset = encode(criteo.frame.iloc[:2], adapter.schema)
    norms = capture_probes(adapter, dataset.tensors(), names=["cross_expert_norms"])["cross_expert_norms"].values
    assert norms.shape == (2, 2, 39, 39)
    net = model.crossnet
    jacobian = (net.U_list[0][1] @ net.C_list[0][1] @ net.V_list[0][1].t()).detach().double()
    c1 = adapter.schema.field_names.index("C1")
    assert norms[0, 1, c1, c1] == pytest.approx(jacobian[:EMBEDDING_DIM, :EMBEDDING_DIM].norm().item(), rel=1e-6)


@needs_criteo
def test_fibinet_senet_probe_matches_hand_computation(criteo: DeepCTRSample) -> None:
    adapter = _adapter(criteo, "FiBiNET")
    model = criteo.models["FiBiNET"].model
    dataset = encode(criteo.frame.iloc[:2], adapter.schema)
    values = capture_probes(adapter, dataset.tensors(), names=["senet_weights"])["senet_weights"].values
    sparse = [adapter.schema.field_names.index(name) for name in SPARSE]
    first, second = model.SE.excitation[0].weight, model.SE.excitation[2].weight
    with torch.no_grad():
        z = torch.stack(
            [model.embedding_dict[name](torch.tensor(criteo.model_input[name][:2])).mean(dim=-1) for name in SPARSE],
            dim=1,
        )
        expected = torch.relu(torch.relu(z @ first.t()) @ second.t())
    np.testing.assert_allclose(values[:, sparse], expected.numpy(), atol=1e-6)
    assert np.abs(np.delete(values, sparse, axis=1)).max() == 0.0


@needs_alimama
def test_din_attention_probe_matches_local_activation(din: DeepCTRSample) -> None:
    adapter = _adapter(din, "DIN")
    model = din.models["DIN"].model
    dataset = encode(din.frame.iloc[:3], adapter.schema)
    values = capture_probes(adapter, dataset.tensors(), names=["target_attention"])["target_attention"].values
    with torch.no_grad():
        query = model.embedding_dict["cate_id"](torch.tensor(din.model_input["cate_id"][:3]).reshape(3, 1))
        keys = model.embedding_dict["cate_id"](torch.tensor(din.model_input["hist_cate_id"][:3]))
        scores = model.attention.local_att(query, keys).squeeze(-1)
    lengths = din.model_input["seq_length"][:3]
    assert lengths.tolist() == [1, 2, 3]
    mask = np.arange(keys.shape[1])[None, :] < lengths[:, None]
    np.testing.assert_allclose(values, scores.numpy() * mask, atol=1e-6)


@needs_criteo
def test_deepfm_fm_probe_matches_inner_products(criteo: DeepCTRSample) -> None:
    adapter = _adapter(criteo, "DeepFM")
    model = criteo.models["DeepFM"].model
    dataset = encode(criteo.frame.iloc[:2], adapter.schema)
    values = capture_probes(adapter, dataset.tensors(), names=["fm_pair_products"])["fm_pair_products"].values
    names = adapter.schema.field_names
    with torch.no_grad():
        c4 = model.embedding_dict["C4"](torch.tensor(criteo.model_input["C4"][:2]))
        c9 = model.embedding_dict["C9"](torch.tensor(criteo.model_input["C9"][:2]))
    np.testing.assert_allclose(values[:, names.index("C4"), names.index("C9")], (c4 * c9).sum(-1).numpy(), atol=1e-7)


# ----- loading, rebuilding and bundles ------------------------------------------------------------


@needs_criteo
def test_load_deepctr_from_saved_files(criteo: DeepCTRSample) -> None:
    trained = criteo.models["AutoInt"]
    adapter = load_deepctr(
        trained.weights_path, trained.spec_path, trained.vocabularies_path, model_class="AutoInt", params=trained.params
    )
    assert adapter.architecture == "deepctr:AutoInt"
    np.testing.assert_allclose(
        _adapter_probabilities(adapter, criteo), _deepctr_probabilities(criteo, trained.model), atol=1e-6, rtol=0
    )


@needs_criteo
def test_load_rejects_weights_of_other_embedding_size(criteo: DeepCTRSample, tmp_path: Path) -> None:
    trained = criteo.models["DeepFM"]
    spec = json.loads(trained.spec_path.read_text())
    for part in spec.values():
        for column in part:
            if column["type"] == "sparse":
                column["embedding_dim"] = 8
    wide = build_deepctr_model("DeepFM", spec, trained.params)
    weights = tmp_path / "wide.pt"
    torch.save(wide.state_dict(), weights)
    with pytest.raises(AdapterError) as error:
        load_deepctr(weights, trained.spec_path, trained.vocabularies_path, model_class="DeepFM", params=trained.params)
    message = str(error.value)
    assert "embedding_dict.C1.weight" in message
    assert f"({len(criteo.vocabularies['C1'])}, 8) vs ({len(criteo.vocabularies['C1'])}, 4)" in message


@needs_criteo
def test_load_rejects_weights_of_other_columns(criteo: DeepCTRSample, tmp_path: Path) -> None:
    trained = criteo.models["DeepFM"]
    columns = [c for c in criteo_columns(criteo.vocabularies) if c.name != "C26"]
    fewer = build_deepctr_model("DeepFM", columns_to_spec(columns), trained.params)
    weights = tmp_path / "fewer.pt"
    torch.save(fewer.state_dict(), weights)
    with pytest.raises(AdapterError) as error:
        load_deepctr(weights, trained.spec_path, trained.vocabularies_path, model_class="DeepFM", params=trained.params)
    message = str(error.value)
    assert "missing" in message
    assert "embedding_dict.C26.weight" in message
    assert "linear_model.embedding_dict.C26.weight" in message


@needs_criteo
def test_load_rejects_pickled_objects(criteo: DeepCTRSample, tmp_path: Path) -> None:
    trained = criteo.models["DeepFM"]
    weights = tmp_path / "model.pt"
    # The whole module, pickled, as some users save it: weights_only loading rejects it.
    torch.save(build_deepctr_model("DeepFM", trained.spec, trained.params), weights)
    with pytest.raises(AdapterError, match="save it with torch.save\\(model.state_dict\\(\\), path\\)"):
        load_deepctr(weights, trained.spec_path, trained.vocabularies_path, model_class="DeepFM", params=trained.params)


@pytest.mark.parametrize(
    ("model_class", "params", "message"),
    [
        ("Linear", {}, "model_class 'Linear' is not supported"),
        ("os.system", {}, "model_class 'os.system' is not supported"),
        ("DeepFM", {"dnn_layers": 2}, "DeepFM takes no option dnn_layers"),
    ],
)
def test_build_rejects_bad_class_or_option(model_class: str, params: dict, message: str) -> None:
    spec = [{"type": "sparse", "name": "a", "vocabulary_size": 3, "embedding_dim": 2}]
    with pytest.raises(AdapterError, match=message):
        build_deepctr_model(model_class, spec, params)


def test_build_keeps_global_random_state() -> None:
    spec = [{"type": "sparse", "name": "a", "vocabulary_size": 3, "embedding_dim": 2}]
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build_deepctr_model("DeepFM", spec, {"dnn_hidden_units": [4]})
    assert torch.equal(torch.rand(3), expected)


@needs_criteo
def test_adapt_rejects_spec_of_other_model(criteo: DeepCTRSample) -> None:
    trained = criteo.models["DeepFM"]
    spec = json.loads(json.dumps(trained.spec))
    spec["dnn"][0]["embedding_dim"] = 8
    with pytest.raises(AdapterError, match="dnn table 'C1' is \\(\\d+, 4\\), spec says \\(\\d+, 8\\)"):
        adapt_deepctr(trained.model, spec, criteo.vocabularies)


@needs_criteo
@pytest.mark.parametrize("model_class", ["DeepFM", "DCN"])
def test_bundle_round_trip(criteo: DeepCTRSample, tmp_path: Path, model_class: str) -> None:
    trained = criteo.models[model_class]
    adapter = _adapter(criteo, model_class)
    recipe = recipe_for(model_class, trained.spec, trained.params, criteo.vocabularies)
    path = save_adapted_bundle(adapter, tmp_path / "bundle", kind="deepctr", recipe=json.loads(json.dumps(recipe)))
    bundle = load_bundle(path)
    assert bundle.model.architecture == f"deepctr:{model_class}"
    np.testing.assert_allclose(
        _adapter_probabilities(bundle.model, criteo), _deepctr_probabilities(criteo, trained.model), atol=1e-6, rtol=0
    )
    assert [p.name for p in bundle.model.probes()] == [p.name for p in adapter.probes()]


@needs_alimama
def test_din_bundle_round_trip(din: DeepCTRSample, tmp_path: Path) -> None:
    trained = din.models["DIN"]
    recipe = recipe_for("DIN", trained.spec, trained.params, din.vocabularies)
    path = save_adapted_bundle(_adapter(din, "DIN"), tmp_path / "din", kind="deepctr", recipe=recipe)
    bundle = load_bundle(path)
    np.testing.assert_allclose(
        _adapter_probabilities(bundle.model, din), _deepctr_probabilities(din, trained.model), atol=1e-6, rtol=0
    )


@needs_criteo
def test_rebuild_rejects_other_schema(criteo: DeepCTRSample) -> None:
    trained = criteo.models["DeepFM"]
    recipe = recipe_for("DeepFM", trained.spec, trained.params, criteo.vocabularies)
    other = dict(criteo.vocabularies)
    other["C5"] = list(reversed(other["C5"]))
    stored = deepctr_schema(ModelColumns.from_spec(trained.spec), other)[0]
    with pytest.raises(AdapterError, match="fields \\['C5'\\] differ"):
        rebuild(recipe, stored)


def test_rebuild_rejects_incomplete_recipe() -> None:
    with pytest.raises(AdapterError, match="lacks columns, vocabularies"):
        rebuild({"model_class": "DeepFM"})
