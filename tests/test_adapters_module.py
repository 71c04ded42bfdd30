"""The torch-module adapter: a hand-written in-house model explained and probed like a native one."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from test_game import tiny_inputs, tiny_schema
from workbench.adapters import AdapterError, EmbeddingSource, ModuleAdapter
from workbench.adapters.bundle import CODE_FOLDERS_ENV, check_state_dict, save_adapted_bundle
from workbench.bundle import BundleError, load_bundle
from workbench.data import CTRDataset
from workbench.explain.exact import exact_indices
from workbench.explain.integrated_gradients import integrated_gradients
from workbench.probes import Probe, capture_probes, field_contiguous_bits

DIM = 3

# The model below, as the file a user keeps in their own code folder; the bundle tests import it from there.
MODEL_SOURCE = '''
import torch
from torch import nn


class InHouseCTR(nn.Module):
    """An in-house model: its own input names, a first-order table, a history sharing the item table."""

    def __init__(self, n_users, n_items, n_hours, dim):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim, padding_idx=0)  # also embeds the history's items
        self.hour = nn.Embedding(n_hours, dim)
        self.user_bias = nn.Embedding(n_users, 1)
        self.price = nn.Linear(1, dim, bias=False)
        self.vec = nn.Linear(2, 1)  # reads the dense input directly
        self.gate = nn.Sequential(nn.Linear(5 * dim + 2, 5 * dim + 2), nn.Sigmoid())
        self.mlp = nn.Sequential(nn.Linear(5 * dim + 2, 8), nn.ReLU(), nn.Linear(8, 1))
        self.to_probability = nn.Sigmoid()

    def forward(self, batch):
        hist = self.item(batch["hist_ids"])  # (B, L, d)
        mask = (batch["hist_ids"] != 0).unsqueeze(-1).float()
        pooled = (hist * mask).sum(1) / mask.sum(1).clamp(min=1)
        x = torch.cat(
            [self.user(batch["uid"]), self.item(batch["iid"]), self.hour(batch["h"]),
             self.price(batch["price"].unsqueeze(-1)), pooled, batch["vec"]],
            dim=1,
        )
        logit = self.mlp(x * self.gate(x)) + self.user_bias(batch["uid"]) + self.vec(batch["vec"])
        return {"p": self.to_probability(logit)}


HISTORY_OFFSET = 5  # history ids are placed after the item ids in the shared table


def build_input(inputs):
    hist = inputs["history"]
    return {
        "uid": inputs["user"], "iid": inputs["item"], "h": inputs["hour"], "price": inputs["price"],
        "vec": inputs["vec"], "hist_ids": torch.where(hist > 0, hist + HISTORY_OFFSET, hist),
    }


def make_adapter(schema, dim=3, seed=0):
    from workbench.adapters import EmbeddingSource, ModuleAdapter

    torch.manual_seed(seed)
    module = InHouseCTR(len(schema["user"].vocabulary), 5 + len(schema["history"].vocabulary),
                        len(schema["hour"].vocabulary), dim)
    sources = [
        EmbeddingSource("user", modules=("user", "user_bias")),
        EmbeddingSource("item", modules=("item",)),
        EmbeddingSource("hour", modules=("hour",)),
        EmbeddingSource("price", modules=("price",)),
        EmbeddingSource("history", modules=("item",)),
        EmbeddingSource("vec", value=True),
    ]
    return ModuleAdapter(module, schema, sources=sources, build_input=build_input, logit="input:to_probability",
                         read_output=lambda out: out["p"], name="in-house")
'''


@pytest.fixture(scope="module")
def code_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("code")
    (folder / "inhouse.py").write_text(textwrap.dedent(MODEL_SOURCE), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def user_code(code_folder: Path):
    from workbench.adapters.factory import import_file

    return import_file(code_folder.resolve(), "inhouse.py")


@pytest.fixture(scope="module")
def schema():
    return tiny_schema()


@pytest.fixture(scope="module")
def adapter(user_code, schema) -> ModuleAdapter:
    return user_code.make_adapter(schema)


@pytest.fixture(scope="module")
def inputs(schema) -> dict[str, torch.Tensor]:
    return tiny_inputs(schema, 40, seed=3)


def own_logits(adapter: ModuleAdapter, user_code, inputs) -> torch.Tensor:
    """The model's logit computed by the model itself, without the adapter's hooks."""
    with torch.no_grad():
        p = adapter.module(user_code.build_input(inputs))["p"].reshape(-1).double()
    return torch.log(p) - torch.log1p(-p)


def test_logits_equal_the_model_own(adapter, user_code, inputs):
    with torch.no_grad():
        logits = adapter(inputs).double()
    # The adapter reads the logit before the sigmoid; the model's probability loses precision near 0 and 1.
    np.testing.assert_allclose(logits.numpy(), own_logits(adapter, user_code, inputs).numpy(), atol=1e-4)


def test_slots_hold_every_table(adapter, inputs, schema):
    assert adapter.slot_names == ("user", "item", "hour", "price", "vec", "history[0]", "history[1]", "history[2]")
    assert adapter.removal_slots().tolist() == [False] * 5 + [True] * 3
    with torch.no_grad():
        slots = adapter.field_embedding(inputs)
        # user: the embedding then the first-order weight, so the slot is DIM + 1 wide
        np.testing.assert_array_equal(slots[:, 0, :DIM].numpy(), adapter.module.user(inputs["user"]).numpy())
        np.testing.assert_array_equal(slots[:, 0, DIM].numpy(), adapter.module.user_bias(inputs["user"])[:, 0].numpy())
        np.testing.assert_array_equal(slots[:, 4, :2].numpy(), inputs["vec"].numpy())
        hist = inputs["history"]
        expected = adapter.module.item(torch.where(hist > 0, hist + 5, hist))
        np.testing.assert_array_equal(slots[:, 5:8, :DIM].numpy(), expected.numpy())
        assert adapter.embedding_width == DIM + 1
        np.testing.assert_allclose(
            adapter.logit_from_embeddings(slots).numpy(), adapter(inputs).numpy(), rtol=0, atol=1e-6
        )


def test_zero_behaviour_slot_is_removal(adapter, user_code, inputs):
    cut = {name: tensor.clone() for name, tensor in inputs.items()}
    cut["history"][:, 1] = 0
    with torch.no_grad():
        slots = adapter.field_embedding(inputs)
        slots[:, 6] = 0.0
        by_slot = adapter.logit_from_embeddings(slots)
        by_input = adapter(cut)
    np.testing.assert_allclose(by_slot.numpy(), by_input.numpy(), atol=1e-6)


def test_exact_shapley_efficiency(adapter, inputs, schema):
    result = exact_indices(adapter, inputs, baseline="zero")
    shapley = result.shapley
    gaps = shapley.values.sum(axis=1) - (shapley.predictions - shapley.base_values)
    assert np.abs(gaps).max() < 1e-5
    # The zero baseline is the all-zero slot tensor, so the base value is the logit of zero slots.
    with torch.no_grad():
        zero = adapter.logit_from_embeddings(torch.zeros(1, len(adapter.slot_names), adapter.embedding_width))
    np.testing.assert_allclose(shapley.base_values, zero.item(), atol=1e-6)


def test_ig_completeness_on_a_dataset(adapter, schema):
    inputs = tiny_inputs(schema, 12, seed=5)
    data = CTRDataset(
        schema=schema,
        inputs={name: tensor.numpy() for name, tensor in inputs.items()},
        labels=np.zeros(12, dtype=np.float32),
        raw=pd.DataFrame(index=range(12)),
    )
    attribution = integrated_gradients(adapter, data, n_steps=64, baseline="zero")
    gap = attribution.values.sum(axis=1) - (attribution.predictions - attribution.base_values)
    assert np.abs(gap).max() < 2e-3


def test_single_row_and_threads_agree(adapter, inputs):
    with torch.no_grad():
        batch = adapter(inputs).numpy()
        single = adapter({name: tensor[4:5] for name, tensor in inputs.items()}).numpy()
    np.testing.assert_allclose(single, batch[4:5], atol=1e-6)

    results: dict[int, np.ndarray] = {}

    def run(index: int) -> None:
        rows = slice(index * 10, index * 10 + 10)
        with torch.no_grad():
            for _ in range(20):
                results[index] = adapter({name: tensor[rows] for name, tensor in inputs.items()}).numpy()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    np.testing.assert_allclose(np.concatenate([results[i] for i in range(4)]), batch, atol=1e-6)


def test_gate_probe_reads_module_output(user_code, schema, inputs):
    gate = Probe(
        name="gate",
        kind="gate",
        axes=("field",),
        description="sigmoid gate on the concatenated embeddings",
        modules=("gate",),
        bit_fields=lambda model: np.concatenate([field_contiguous_bits(5, DIM), [5, 5]]),
        value_range=(0.0, 1.0),
    )
    base = user_code.make_adapter(schema)
    probed = ModuleAdapter(
        base.module,
        schema,
        sources=[base._sources[name] for name in schema.field_names],
        build_input=user_code.build_input,
        logit="input:to_probability",
        read_output=lambda out: out["p"],
        probes=[gate],
    )
    with torch.no_grad():
        before = probed(inputs).numpy()
    capture = capture_probes(probed, inputs)
    np.testing.assert_allclose(capture.logits, before, atol=1e-6)
    module = base.module
    batch = user_code.build_input(inputs)
    with torch.no_grad():
        hist = module.item(batch["hist_ids"])
        mask = (batch["hist_ids"] != 0).unsqueeze(-1).float()
        pooled = (hist * mask).sum(1) / mask.sum(1).clamp(min=1)
        x = torch.cat(
            [module.user(batch["uid"]), module.item(batch["iid"]), module.hour(batch["h"]),
             module.price(batch["price"].unsqueeze(-1)), pooled, batch["vec"]],
            dim=1,
        )
        bits = module.gate(x).numpy()
    values = capture.probes["gate"].values
    np.testing.assert_allclose(values[:, 0], bits[:, :DIM].mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(values[:, 4], bits[:, 4 * DIM : 5 * DIM].mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(values[:, 5], bits[:, 5 * DIM :].mean(axis=1), atol=1e-6)


def test_zero_ids_give_zero_embeddings(user_code, schema, inputs):
    base = user_code.make_adapter(schema)
    zeroed = ModuleAdapter(
        base.module,
        schema,
        sources=[base._sources[name] for name in schema.field_names],
        build_input=user_code.build_input,
        logit="input:to_probability",
        read_output=lambda out: out["p"],
        zero_ids={"item": [1]},
    )
    with torch.no_grad():
        slots = zeroed.field_embedding(inputs)
    rows = inputs["item"] == 1
    others = inputs["item"] > 1  # id 0 is PAD, whose row of the item table is zero anyway
    assert rows.any()
    assert others.any()
    assert torch.all(slots[rows, 1] == 0)
    assert torch.all(slots[others, 1, :DIM].abs().sum(dim=1) > 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s[:-1], "missing \\['vec'\\]"),
        (lambda s: [*s, EmbeddingSource("nope", modules=("user",))], "not in the schema \\['nope'\\]"),
        (lambda s: [EmbeddingSource("user", modules=("usr",)), *s[1:]], "has no submodule 'usr'"),
        (lambda s: [EmbeddingSource("user", value=True), *s[1:]], "only numeric and dense fields"),
        (lambda s: [*s, EmbeddingSource("user", modules=("hour",))], "field 'user' has two sources"),
    ],
)
def test_bad_sources_are_named(user_code, schema, change, message):
    base = user_code.make_adapter(schema)
    sources = [base._sources[name] for name in schema.field_names]
    with pytest.raises(AdapterError, match=message):
        ModuleAdapter(base.module, schema, sources=change(sources), build_input=user_code.build_input)


def test_bad_logit_places_are_named(user_code, schema):
    base = user_code.make_adapter(schema)
    sources = [base._sources[name] for name in schema.field_names]
    with pytest.raises(AdapterError, match="logit must be one of"):
        ModuleAdapter(base.module, schema, sources=sources, build_input=user_code.build_input, logit="sigmoid")
    with pytest.raises(AdapterError, match="has no submodule 'head'"):
        ModuleAdapter(base.module, schema, sources=sources, build_input=user_code.build_input, logit="input:head")
    dict_output = ModuleAdapter(base.module, schema, sources=sources, build_input=user_code.build_input)
    with pytest.raises(AdapterError, match="pass read_output"):
        dict_output(tiny_inputs(schema, 3))


def test_check_state_dict_names_the_tensors(adapter):
    state = dict(adapter.module.state_dict())
    state["user.weight"] = torch.zeros(9, DIM)
    del state["hour.weight"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(AdapterError) as error:
        check_state_dict(adapter.module, state, "model.pt")
    text = str(error.value)
    assert "missing: hour.weight" in text
    assert "not in the model: extra.weight" in text
    assert "user.weight (9, 3) vs (6, 3)" in text


def test_bundle_round_trip_needs_the_code_folder_allowed(adapter, user_code, code_folder, inputs, tmp_path, monkeypatch):
    recipe = {"folder": str(code_folder), "file": "inhouse.py", "function": "make_adapter", "args": {"seed": 7}}
    path = save_adapted_bundle(adapter, tmp_path / "inhouse", kind="module", recipe=recipe)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["architecture"] == "in-house"
    assert manifest["adapter"]["kind"] == "module"

    monkeypatch.delenv(CODE_FOLDERS_ENV, raising=False)
    with pytest.raises(BundleError, match=f"not an allowed model code folder.*{CODE_FOLDERS_ENV}"):
        load_bundle(path)

    monkeypatch.setenv(CODE_FOLDERS_ENV, str(code_folder))
    bundle = load_bundle(path)
    with torch.no_grad():
        np.testing.assert_allclose(bundle.model(inputs).numpy(), adapter(inputs).numpy(), atol=1e-6)


def test_bundle_bad_kind_or_weights_rejected(adapter, code_folder, tmp_path, monkeypatch):
    monkeypatch.setenv(CODE_FOLDERS_ENV, str(code_folder))
    recipe = {"folder": str(code_folder), "file": "inhouse.py", "function": "make_adapter", "args": {"dim": 4}}
    path = save_adapted_bundle(adapter, tmp_path / "wrong", kind="module", recipe=recipe)
    with pytest.raises(BundleError, match=r"user.weight \(6, 3\) vs \(6, 4\)"):
        load_bundle(path)

    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["adapter"]["kind"] = "os.system"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown adapter kind 'os.system'"):
        load_bundle(path)
    with pytest.raises(AdapterError, match="unknown adapter kind"):
        save_adapted_bundle(adapter, tmp_path / "other", kind="pickle", recipe={})


def test_docs_example_runs_and_blanks_oov():
    text = (Path(__file__).parents[1] / "docs" / "adapters.md").read_text(encoding="utf-8")
    namespace: dict = {}
    exec(text.split("```python\n", 1)[1].split("```", 1)[0], namespace)  # the first example of the page
    adapter = namespace["adapter"]
    inputs = {
        "user": torch.tensor([1, 2, 3, 4]),  # 4 is OOV
        "ad": torch.tensor([1, 2, 1, 2]),
        "bid": torch.tensor([0.5, 1.0, -1.0, 2.0]),
    }
    with torch.no_grad():
        slots = adapter.field_embedding(inputs)
        logits = adapter(inputs)
        model = adapter.module
        p = model({"user": torch.tensor([0, 1, 2]), "ad": torch.tensor([0, 1, 0]), "bid": inputs["bid"][:3]})
    assert torch.all(slots[3, 0] == 0)
    np.testing.assert_allclose(logits[:3].numpy(), torch.logit(p.reshape(-1)).numpy(), atol=1e-5)
    result = exact_indices(adapter, inputs)
    assert result.shapley.values[3, 0] == 0.0


def test_release_removes_hooks(user_code, schema, inputs):
    adapter = user_code.make_adapter(schema)
    module = adapter.release()
    batch = user_code.build_input(inputs)
    assert not module._forward_hooks
    assert not module.user._forward_hooks
    assert not module.to_probability._forward_pre_hooks
    with torch.no_grad():
        assert module(batch)["p"].shape == (40, 1)


@pytest.mark.parametrize(
    ("zero_ids", "message"),
    [
        ({"user": [0, 99, -5]}, r"zero_ids: \[-5, 99\] are not ids of field 'user', whose ids run from 0 \(PAD\) to 5"),
        ({"price": [0]}, "field 'price' is numeric"),
        ({"nope": [0]}, "not in the schema: nope"),
    ],
)
def test_zero_ids_outside_vocabulary_rejected(user_code, schema, zero_ids, message):
    base = user_code.make_adapter(schema)
    sources = [base._sources[name] for name in schema.field_names]
    with pytest.raises(AdapterError, match=message):
        ModuleAdapter(base.module, schema, sources=sources, build_input=user_code.build_input, zero_ids=zero_ids)


def test_docs_make_adapter_rebuilds_example():
    text = (Path(__file__).parents[1] / "docs" / "adapters.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    namespace: dict = {}
    exec(blocks[0], namespace)
    exec(next(block for block in blocks if block.startswith("def make_adapter")), namespace)
    rebuilt = namespace["make_adapter"](namespace["schema"])
    rebuilt.module.load_state_dict(namespace["adapter"].module.state_dict())
    inputs = {"user": torch.tensor([1, 4]), "ad": torch.tensor([2, 3]), "bid": torch.tensor([0.5, -1.0])}
    with torch.no_grad():
        np.testing.assert_allclose(rebuilt(inputs).numpy(), namespace["adapter"](inputs).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("zero_ids", "message"),
    [
        ({"user": [1.5]}, r"must be a list of integer ids; got \[1.5\]"),
        ({"user": ["u1"]}, r"must be a list of integer ids; got \['u1'\]"),
        ({"user": 0}, "must be a list of integer ids; got 0"),
        ({"user": [True]}, r"must be a list of integer ids; got \[True\]"),
        ([("user", [0])], "must map field names to lists of ids"),
    ],
)
def test_zero_ids_must_be_integer_lists(user_code, schema, zero_ids, message):
    base = user_code.make_adapter(schema)
    sources = [base._sources[name] for name in schema.field_names]
    with pytest.raises(AdapterError, match=message):
        ModuleAdapter(base.module, schema, sources=sources, build_input=user_code.build_input, zero_ids=zero_ids)
