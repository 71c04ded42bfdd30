"""FuxiCTR models trained with the real ``fuxictr`` package, opened as workbench models.

Each model of ``tests/fuxictr_zoo`` is trained by FuxiCTR's own ``fit`` on
FuxiCTR's tiny sample, ``tiny_parquet`` (``tiny_seq`` for DIN). FuxiCTR's
``save_weights`` writes the checkpoint, and the trained model is wrapped in a
:class:`ModuleAdapter`. The tests check
the adapter against FuxiCTR's own ``predict``, exact Shapley efficiency, and
each probe recipe of ``workbench.adapters.fuxictr_probes`` against the model
equations computed by hand from the trained weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fuxictr_fixtures import (
    TINY_DIR,
    TINY_MODELS,
    ZOO_DIR,
    cached,
    frappe_gdcn,
    require_frappe,
    train_tiny,
)
from workbench.adapters.fuxictr import (
    field_sources,
    load_config,
    load_fuxictr_model,
    load_processed_split,
    resolve_model_class,
)
from workbench.adapters.fuxictr_probes import ProbeRecipeError, fuxictr_probes
from workbench.data import encode
from workbench.explain.api import explain
from workbench.probes import capture_probes

TINY_FLAT = [key for key in TINY_MODELS if key != "DIN"]


def open_run(run):
    """Open a FuxiCTR run as a user does: config, model class from the zoo folder, checkpoint from disk."""
    params = load_config(run.config_dir, run.expid)
    model_class = resolve_model_class(params["model"], ZOO_DIR)
    return load_fuxictr_model(model_class, run.feature_map, run.checkpoint, params)


class Tiny:
    """A tiny run with the adapter loaded from its files and its encoded test split."""

    def __init__(self, run):
        self.run = run
        self.adapter = open_run(run)
        self.module = self.adapter.module
        self.schema = self.adapter.schema
        self.data = load_processed_split(run.test_data, self.schema)

    def batch(self, rows) -> dict[str, torch.Tensor]:
        """FuxiCTR's own batch of test rows: a dict of tensors keyed by feature name."""
        return {name: torch.from_numpy(values[rows]) for name, values in self.run.test_columns.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    if not TINY_DIR.is_dir():
        pytest.skip(f"no FuxiCTR sample data at {str(TINY_DIR)!r}")

    def build(root):
        return {key: Tiny(train_tiny(root, key)) for key in TINY_MODELS}

    torch.set_num_threads(1)
    return cached("tiny_runs", tmp_path_factory, build)


# ----- predictions and explanations -------------------------------------------------------------


@pytest.mark.parametrize("key", list(TINY_MODELS))
def test_adapter_matches_fuxictr_predict(tiny, key):
    case = tiny[key]
    with torch.no_grad():
        logits = case.adapter(case.data.tensors()).double()
    assert logits.shape == (len(case.run.predictions),)
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), case.run.predictions, rtol=0, atol=1e-6)
    # The trained model is not trivial: FuxiCTR's own predictions differ between rows.
    assert case.run.predictions.std() > 1e-4


@pytest.mark.parametrize("key", list(TINY_MODELS))
def test_adapter_ids_are_fuxictr_indices(tiny, key):
    case = tiny[key]
    for name, values in case.run.test_columns.items():
        if name in case.schema.field_names:
            np.testing.assert_array_equal(case.data.inputs[name], values.astype(np.int64))


def test_checkpoint_is_fuxictr_state_dict(tiny):
    run = tiny["GDCN"].run
    state = torch.load(run.checkpoint, map_location="cpu", weights_only=True)
    assert set(state) == set(run.module.state_dict())
    assert "cross_net.wg.0.weight" in state
    assert "embedding_layer.embedding_layer.embedding_layers.userid.weight" in state


@pytest.mark.parametrize("key", TINY_FLAT)
def test_exact_shapley_efficiency(tiny, key):
    case = tiny[key]
    attribution = explain(case.adapter, case.data, rows=[0, 1, 2], method="exact_shapley")
    assert attribution.values.shape == (3, len(case.schema.fields))
    with torch.no_grad():
        logits = case.adapter(case.data.tensors(np.arange(3))).double().numpy()
    np.testing.assert_allclose(attribution.predictions, logits, atol=1e-5)
    np.testing.assert_allclose(attribution.values.sum(axis=1), logits - attribution.base_values, atol=1e-5)


def test_din_exact_shapley_history_player(tiny):
    case = tiny["DIN"]
    rows = [89, 0]  # histories of 2 behaviours and of none
    attribution = explain(case.adapter, case.data, rows=rows, method="exact_shapley")
    assert "click_sequence" in attribution.field_names
    with torch.no_grad():
        logits = case.adapter(case.data.tensors(np.asarray(rows))).double().numpy()
    np.testing.assert_allclose(attribution.values.sum(axis=1), logits - attribution.base_values, atol=1e-5)


def test_deepfm_slot_has_first_order(tiny):
    case = tiny["DeepFM"]
    module = case.module
    inputs = case.data.tensors(np.arange(4))
    with torch.no_grad():
        slots = case.adapter.field_embedding(inputs)
        logits = case.adapter.logit_from_embeddings(slots)
    field = "brand"
    position = case.schema.field_names.index(field)
    tables = field_sources(module, case.schema)[field]
    assert len(tables) == 2
    assert tables[1].startswith("fm.lr_layer.")
    weights = module.get_submodule(tables[1]).weight[inputs[field]].squeeze(-1)
    embedding_dim = module.get_submodule(tables[0]).embedding_dim
    # The slot is [embedding | first-order weight]; the weight is the field's FM linear term.
    torch.testing.assert_close(slots[:, position, embedding_dim], weights, rtol=0, atol=0)
    without = slots.clone()
    without[:, position, embedding_dim] = 0.0
    with torch.no_grad():
        changed = case.adapter.logit_from_embeddings(without)
    torch.testing.assert_close(logits - changed, weights, rtol=0, atol=1e-5)


def test_dcnv2_mixture_single_row(tiny):
    case = tiny["DCNv2_MoE"]
    with torch.no_grad():
        batch = case.adapter(case.data.tensors(np.arange(5)))
        single = case.adapter(case.data.tensors(np.asarray([3])))
    assert single.shape == (1,)
    torch.testing.assert_close(single, batch[3:4], rtol=0, atol=1e-6)
    capture = capture_probes(case.adapter, case.data.tensors(np.asarray([3])))
    gates = capture["expert_gates"].values
    assert gates.shape == (1, 2, 3)
    np.testing.assert_allclose(gates.sum(axis=-1), 1.0, atol=1e-6)
    together = capture_probes(case.adapter, case.data.tensors(np.arange(5)))["expert_gates"].values
    np.testing.assert_allclose(gates[0], together[3], atol=1e-6)


# ----- probes against the model equations ---------------------------------------------------------


def flat_embeddings(module, batch) -> torch.Tensor:
    with torch.no_grad():
        return module.embedding_layer(module.get_inputs(batch), flatten_emb=True)


@pytest.mark.parametrize("key", list(TINY_MODELS))
def test_probes_keep_predictions(tiny, key):
    case = tiny[key]
    inputs = case.data.tensors(np.arange(8))
    names = [probe.name for probe in case.adapter.probes()]
    assert names, f"no probe recipe fits {key}"
    capture = capture_probes(case.adapter, inputs)
    assert set(capture.probes) == set(names)
    with torch.no_grad():
        logits = case.adapter(inputs).numpy()
        fuxi = case.module(case.batch(np.arange(8)))["y_pred"].reshape(-1).numpy()
    np.testing.assert_array_equal(capture.logits, logits)
    np.testing.assert_allclose(fuxi, case.run.predictions[:8], rtol=0, atol=1e-7)


def test_gdcn_gate_probe_by_hand(tiny):
    case = tiny["GDCN"]
    module = case.module
    rows = np.asarray([0, 7])
    capture = capture_probes(case.adapter, case.data.tensors(rows), names=["cross_gates"])
    gates = capture["cross_gates"]
    cross_net = module.cross_net
    x0 = flat_embeddings(module, case.batch(rows))
    x = x0
    expected = []
    with torch.no_grad():
        for layer in range(len(cross_net.wg)):
            gate = torch.sigmoid(x @ cross_net.wg[layer].weight.T)
            expected.append(gate)
            x = x0 * (x @ cross_net.w[layer].weight.T + cross_net.b[layer]) * gate + x
    expected = torch.stack(expected, dim=1).numpy()
    assert gates.bits.shape == (2, 3, 14 * 4)
    np.testing.assert_allclose(gates.bits, expected, atol=1e-6)
    # Field f's gate is the mean of its 4 bits (feature map order = schema order here).
    np.testing.assert_allclose(gates.values, expected.reshape(2, 3, 14, 4).mean(axis=-1), atol=1e-6)
    assert gates.values.std() > 1e-3


def test_gdcn_static_cross_norms(tiny):
    case = tiny["GDCN"]
    values = capture_probes(case.adapter, case.data.tensors(np.arange(2)), names=["cross_weight_norms"])
    norms = values["cross_weight_norms"].values
    weight = case.module.cross_net.w[1].weight.detach().double()
    assert norms.shape == (3, 14, 14)
    np.testing.assert_allclose(norms[1, 2, 5], weight[8:12, 20:24].norm().item(), rtol=1e-6)


def test_autoint_attention_by_hand(tiny):
    case = tiny["AutoInt"]
    module = case.module
    rows = np.asarray([1, 4])
    attention = capture_probes(case.adapter, case.data.tensors(rows), names=["attention"])["attention"].values
    assert attention.shape == (2, 2, 2, 14, 14)
    np.testing.assert_allclose(attention.sum(axis=-1), 1.0, atol=1e-6)
    with torch.no_grad():
        x = module.embedding_layer(module.get_inputs(case.batch(rows)))
        expected = []
        for layer in module.self_attention:
            heads, head_dim = layer.num_heads, layer.head_dim

            def split(t, heads=heads, head_dim=head_dim):
                return t.view(t.shape[0], -1, heads, head_dim).transpose(1, 2)

            q, k, v = split(x @ layer.W_q.weight.T), split(x @ layer.W_k.weight.T), split(x @ layer.W_v.weight.T)
            weights = torch.softmax(q @ k.transpose(-1, -2) / head_dim**0.5, dim=-1)
            expected.append(weights)
            mixed = (weights @ v).transpose(1, 2).reshape(x.shape[0], -1, heads * head_dim)
            x = torch.relu(mixed + x @ layer.W_res.weight.T)
    np.testing.assert_allclose(attention, torch.stack(expected, dim=1).numpy(), atol=1e-6)
    # Far from uniform (1/14 for 14 fields), so the comparison tells heads and fields apart.
    assert attention.max() > 0.15


def test_autoint_attention_in_schema_order(tiny):
    case = tiny["AutoInt"]
    reversed_names = list(reversed(case.schema.field_names))
    probes = {p.name: p for p in fuxictr_probes(case.module, field_names=reversed_names)}
    plain = {p.name: p for p in fuxictr_probes(case.module)}
    slots = case.adapter.field_embedding(case.data.tensors(np.arange(2)))
    with torch.no_grad():
        turned = probes["attention"].compute(case.adapter, slots).numpy()
        straight = plain["attention"].compute(case.adapter, slots).numpy()
    np.testing.assert_array_equal(turned, straight[..., ::-1, ::-1])


def test_field_names_must_match_features(tiny):
    with pytest.raises(ProbeRecipeError, match="must list the model's features"):
        fuxictr_probes(tiny["AutoInt"].module, field_names=["userid", "no_such_field"])


def test_dcnv2_cross_norms_and_mixture_gates(tiny):
    case = tiny["DCNv2"]
    norms = capture_probes(case.adapter, case.data.tensors(np.arange(2)))["cross_weight_norms"].values
    weight = case.module.crossnet.cross_layers[0].weight.detach().double()
    np.testing.assert_allclose(norms[0, 13, 0], weight[52:56, 0:4].norm().item(), rtol=1e-6)

    mixture = tiny["DCNv2_MoE"]
    module = mixture.module
    rows = np.asarray([0, 1, 2])
    gates = capture_probes(mixture.adapter, mixture.data.tensors(rows))["expert_gates"].values
    crossnet = module.crossnet
    x0 = flat_embeddings(module, mixture.batch(rows))
    with torch.no_grad():
        scores = torch.cat([gate(x0) for gate in crossnet.gating], dim=-1)
    np.testing.assert_allclose(gates[:, 0], scores.softmax(dim=-1).numpy(), atol=1e-6)


def test_finalmlp_stream_gates(tiny):
    case = tiny["FinalMLP"]
    module = case.module
    rows = np.asarray([0, 5])
    capture = capture_probes(case.adapter, case.data.tensors(rows))
    fs = module.fs_module
    with torch.no_grad():
        constant = (2 * fs.fs1_gate(fs.fs1_ctx_bias))[0].numpy()
        context = fs.fs2_ctx_emb(module.get_inputs(case.batch(rows))).flatten(start_dim=1)
        per_row = (2 * fs.fs2_gate(context)).numpy()
    stream1, stream2 = capture["stream1_gate"], capture["stream2_gate"]
    assert not stream1.probe.per_sample
    np.testing.assert_allclose(stream1.bits, constant, atol=1e-6)
    np.testing.assert_allclose(stream2.bits, per_row, atol=1e-6)
    np.testing.assert_allclose(stream2.values, per_row.reshape(2, 14, 4).mean(axis=-1), atol=1e-6)
    assert ((stream2.values > 0) & (stream2.values < 2)).all()


def test_fibinet_senet_and_pair_norms(tiny):
    case = tiny["FiBiNET"]
    module = case.module
    rows = np.asarray([2, 3])
    capture = capture_probes(case.adapter, case.data.tensors(rows))
    with torch.no_grad():
        embeddings = module.embedding_layer(module.get_inputs(case.batch(rows)))
        weights = module.senet_layer.excitation(embeddings.mean(dim=-1))
        pairs = module.bilinear_interaction1(embeddings)
    np.testing.assert_allclose(capture["senet_weights"].values, weights.numpy(), atol=1e-6)
    norms = capture["bilinear_pair_norms"].values
    assert norms.shape == (2, 14, 14)
    # Pair (0, 2) is the second pair in triu order.
    np.testing.assert_allclose(norms[:, 0, 2], pairs[:, 1].norm(dim=-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(norms[:, 2, 0], norms[:, 0, 2])
    np.testing.assert_array_equal(norms[:, np.arange(14), np.arange(14)], 0.0)


def test_masknet_first_mask(tiny):
    case = tiny["MaskNet"]
    module = case.module
    rows = np.asarray([0, 9])
    mask = capture_probes(case.adapter, case.data.tensors(rows))["first_block_mask"]
    with torch.no_grad():
        expected = module.mask_net.mask_blocks[0].mask_layer(flat_embeddings(module, case.batch(rows))).numpy()
    np.testing.assert_allclose(mask.bits, expected, atol=1e-6)
    np.testing.assert_allclose(mask.values, expected.reshape(2, 14, 4).mean(axis=-1), atol=1e-6)


def test_parallel_masknet_block_masks(tiny):
    case = tiny["MaskNet_Parallel"]
    module = case.module
    rows = np.asarray([3, 4])
    masks = capture_probes(case.adapter, case.data.tensors(rows))["block_masks"]
    flat = flat_embeddings(module, case.batch(rows))
    with torch.no_grad():
        expected = torch.stack([block.mask_layer(flat) for block in module.mask_net.mask_blocks], dim=1).numpy()
    assert masks.values.shape == (2, 2, 14)
    np.testing.assert_allclose(masks.bits, expected, atol=1e-6)
    np.testing.assert_allclose(masks.values, expected.reshape(2, 2, 14, 4).mean(axis=-1), atol=1e-6)


def test_din_target_attention_by_hand(tiny):
    case = tiny["DIN"]
    module = case.module
    rows = np.asarray([89, 12])  # histories of 2 behaviours and of 1
    attention = capture_probes(case.adapter, case.data.tensors(rows))["target_attention"].values
    batch = case.batch(rows)
    with torch.no_grad():
        table = module.embedding_layer.embedding_layers["adgroup_id"]
        target, history = table(batch["adgroup_id"].long()), table(batch["click_sequence"].long())
        target = target.unsqueeze(1).expand_as(history)
        features = torch.cat([target, history, target - history, target * history], dim=-1)
        scores = module.attention_layers[0].attention_layer(features).squeeze(-1)
        expected = scores * (batch["click_sequence"] != 0)
    assert attention.shape == (2, 5)
    np.testing.assert_allclose(attention, expected.numpy(), atol=1e-6)
    np.testing.assert_array_equal(attention[0, 2:], 0.0)
    np.testing.assert_array_equal(attention[1, 1:], 0.0)
    assert np.all(attention[0, :2] != 0)


def test_fm_pair_products(tiny):
    case = tiny["DeepFM"]
    module = case.module
    rows = np.asarray([0, 1])
    products = capture_probes(case.adapter, case.data.tensors(rows))["fm_pair_products"].values
    with torch.no_grad():
        embeddings = module.embedding_layer(module.get_inputs(case.batch(rows)))
    expected = torch.einsum("bid,bjd->bij", embeddings, embeddings).numpy()
    np.fill_diagonal(expected[0], 0.0)
    np.fill_diagonal(expected[1], 0.0)
    np.testing.assert_allclose(products, expected, atol=1e-7)
    # Half the sum of the off-diagonal terms is FuxiCTR's own FM interaction term.
    with torch.no_grad():
        fm_term = module.fm.fm_layer(embeddings).squeeze(-1).numpy()
    np.testing.assert_allclose(products.sum(axis=(1, 2)) / 2, fm_term, rtol=1e-4, atol=1e-7)


def test_module_without_recipe_has_no_probes():
    assert fuxictr_probes(torch.nn.Linear(2, 1)) == []


def test_probe_chunks_give_same_values(tiny):
    case = tiny["GDCN"]
    inputs = case.data.tensors(np.arange(8))
    whole = capture_probes(case.adapter, inputs)
    chunked = capture_probes(case.adapter, inputs, chunk_size=3)
    np.testing.assert_allclose(chunked.logits, whole.logits, atol=1e-6)
    for name in whole.probes:
        np.testing.assert_allclose(chunked[name].values, whole[name].values, atol=1e-6)


def test_imported_bundle_keeps_probes(tiny, tmp_path, monkeypatch):
    from helpers import run_cli

    from workbench.bundle import load_bundle

    case = tiny["GDCN"]
    run = case.run
    out = tmp_path / "gdcn"
    argv = [
        "import", "fuxictr", "--config", str(run.config_dir), "--expid", run.expid, "--checkpoint", str(run.checkpoint),
        "--model-zoo", str(ZOO_DIR), "--data-dir", str(run.data_dir), "--out", str(out),
    ]  # fmt: skip
    status, _, stderr = run_cli(argv)
    assert status == 0, stderr
    monkeypatch.setenv("WORKBENCH_MODEL_ZOO", str(ZOO_DIR))
    model = load_bundle(out).model
    assert [p.name for p in model.probes()] == [p.name for p in case.adapter.probes()]
    inputs = case.data.tensors(np.arange(6))
    reopened = capture_probes(model, inputs)
    direct = capture_probes(case.adapter, inputs)
    for name in direct.probes:
        np.testing.assert_allclose(reopened[name].values, direct[name].values, atol=1e-6)


# ----- Frappe ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def frappe(tmp_path_factory):
    require_frappe()
    torch.set_num_threads(1)
    run = cached("frappe_gdcn", tmp_path_factory, frappe_gdcn)
    adapter = open_run(run.run)
    data = load_processed_split(run.run.test_data, adapter.schema)
    return run, adapter, data


@pytest.mark.frappe
def test_frappe_vocabulary_round_trip(frappe):
    run, adapter, data = frappe
    vocab = json.loads((run.run.data_dir / "feature_vocab.json").read_text(encoding="utf-8"))
    for f in adapter.schema.fields:
        by_index = sorted((index, token) for token, index in vocab[f.name].items())
        assert f.vocabulary.values == [token for _, token in by_index[1:-1]]
    # Raw test rows encoded by the workbench give the ids FuxiCTR's FeatureProcessor wrote.
    raw = encode(run.test_frame, adapter.schema)
    for name in adapter.schema.field_names:
        np.testing.assert_array_equal(raw.inputs[name], data.inputs[name])


@pytest.mark.frappe
def test_frappe_gdcn_predictions(frappe):
    run, adapter, data = frappe
    with torch.no_grad():
        logits = adapter(data.tensors()).double()
    np.testing.assert_allclose(torch.sigmoid(logits).numpy(), run.run.predictions, rtol=0, atol=1e-6)
    # One epoch on 20,000 rows already ranks the test rows well above chance.
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(data.labels, run.run.predictions) > 0.8


@pytest.mark.frappe
def test_frappe_gdcn_exact_shapley(frappe):
    _, adapter, data = frappe
    rows = np.arange(50)
    attribution = explain(adapter, data, rows=rows, method="exact_shapley")
    with torch.no_grad():
        logits = adapter(data.tensors(rows)).double().numpy()
    np.testing.assert_allclose(attribution.values.sum(axis=1), logits - attribution.base_values, atol=1e-5)
    assert np.abs(attribution.values).max() > 1e-2


@pytest.mark.frappe
def test_frappe_gdcn_gate_probe(frappe):
    _, adapter, data = frappe
    gates = capture_probes(adapter, data.tensors(np.arange(20)), names=["cross_gates"])["cross_gates"]
    assert gates.values.shape == (20, 3, len(adapter.schema.fields))
    assert ((gates.values > 0) & (gates.values < 1)).all()
    # The gates depend on the sample.
    assert gates.values.std(axis=0).max() > 1e-3
