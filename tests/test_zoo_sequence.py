"""Behaviour-sequence models (DIN, DIEN, QIN-style): slots per position, removal semantics, attention probes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.data import encode
from workbench.explain.game import EmbeddingGame, model_players
from workbench.probes import capture_probes
from workbench.schema import Field, Schema, fit_schema
from workbench.training import TrainConfig, train
from workbench.zoo import build_model
from workbench.zoo.sequence import check_behaviour_pairs, infer_behaviour_pairs, masked_softmax

SEQUENCE_ARCHITECTURES = ("din", "dien", "qin")
ITEMS = [f"item{i}" for i in range(8)]
GENRE = {item: ("odd" if i % 2 else "even") for i, item in enumerate(ITEMS)}
LENGTH = 5
TINY = {
    "din": {"embedding_dim": 4, "attention_hidden_units": [6], "hidden_units": [8]},
    "dien": {"embedding_dim": 4, "auxiliary_hidden_units": [6], "hidden_units": [8]},
    "qin": {"embedding_dim": 4, "attention_dim": 6, "n_layers": 2, "rank": 2, "dropout": 0.0},
}


def sequence_frame(n_rows: int, seed: int) -> pd.DataFrame:
    """Rows whose click logit is -1 + 2.5 if the target item is in the history, plus a small user effect."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(ITEMS, size=n_rows)
    lengths = rng.integers(0, LENGTH + 1, size=n_rows)
    histories = [list(rng.choice(ITEMS, size=length)) for length in lengths]
    users = rng.choice(["u1", "u2", "u3"], size=n_rows)
    hit = np.array([t in h for t, h in zip(targets, histories, strict=True)])
    logit = -1.0 + 2.5 * hit + np.where(users == "u1", 0.3, 0.0)
    labels = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame(
        {
            "label": labels,
            "user": users,
            "item": targets,
            "genre": [GENRE[t] for t in targets],
            "history": ["|".join(h) for h in histories],
            "history_genres": ["|".join(GENRE[i] for i in h) for h in histories],
            "score": rng.normal(size=n_rows),
        }
    )


SPEC = Schema(
    [
        Field("user", "categorical"),
        Field("item", "categorical"),
        Field("genre", "categorical"),
        Field("history", "sequence", max_length=LENGTH),
        Field("history_genres", "sequence", max_length=LENGTH),
        Field("score", "numeric"),
    ]
)


@pytest.fixture(scope="module")
def data():
    train_frame, valid_frame = sequence_frame(3000, 1), sequence_frame(800, 2)
    schema = fit_schema(train_frame, SPEC)
    return schema, encode(train_frame, schema), encode(valid_frame, schema)


def tiny(architecture: str, schema: Schema, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = build_model(architecture, schema, **{**TINY[architecture], **overrides})
    # Random weights large enough that every position changes the output.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "tables" in name:
                parameter[1:].normal_(0, 0.5)
    return model.eval()


def test_pairs_are_inferred_from_shared_values(data):
    schema, _, _ = data
    assert infer_behaviour_pairs(schema) == [("history", "item"), ("history_genres", "genre")]


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([["history", "item"], ["history", "item"]], "appears in two behaviour pairs"),
        ([["history_genres", "item"]], "'history_genres' and 'item' share no values"),
        ([["nope", "item"]], "no field named 'nope'"),
        ([["item", "history"]], "'item' is a categorical field; it must be sequence"),
        ([["history"]], "must be \\[history_field, target_field\\]"),
        ([], "behaviour_pairs is empty"),
    ],
)
def test_bad_pairs_are_named(data, pairs, message):
    schema, _, _ = data
    with pytest.raises(ValueError, match=message):
        check_behaviour_pairs(schema, pairs)


def test_schema_without_pairable_history_is_refused():
    frame = pd.DataFrame({"label": [0, 1], "a": ["x", "y"], "h": ["p|q", "q"]})
    schema = fit_schema(frame, Schema([Field("a", "categorical"), Field("h", "sequence", max_length=3)]))
    with pytest.raises(ValueError, match="no categorical field shares at least 50% of the values of h"):
        build_model("din", schema)


def test_pairs_of_different_lengths_are_refused(data):
    schema, _, _ = data
    fields = [f if f.name != "history_genres" else Field(f.name, f.kind, f.vocabulary, max_length=3) for f in schema.fields]
    with pytest.raises(ValueError, match="need one max_length; got history: 5, history_genres: 3"):
        check_behaviour_pairs(Schema(fields), None)


@pytest.mark.parametrize("architecture", SEQUENCE_ARCHITECTURES)
def test_slots_and_history_share_the_target_table(data, architecture):
    schema, _, valid = data
    model = tiny(architecture, schema)
    inputs = valid.tensors(np.arange(20))

    slots = model.field_embedding(inputs)

    assert model.slot_names == (
        "user", "item", "genre", "score",
        *(f"history[{p}]" for p in range(LENGTH)), *(f"history_genres[{p}]" for p in range(LENGTH)),
    )
    assert slots.shape == (20, 4 + 2 * LENGTH, 4)
    raw = valid.raw_values(np.arange(20))
    item_table = model.field_embedding.fields.tables["item"].weight
    for row in range(20):
        items = [v for v in raw["history"].iloc[row].split("|") if v]
        for position in range(LENGTH):
            slot = slots[row, model.slot_names.index(f"history[{position}]")]
            if position < len(items):
                expected = item_table[schema["item"].vocabulary.index_of(items[position])]
                torch.testing.assert_close(slot, expected, rtol=0, atol=0)
            else:
                assert torch.count_nonzero(slot) == 0


@pytest.mark.parametrize("architecture", SEQUENCE_ARCHITECTURES)
def test_forward_is_split_composition(data, architecture):
    schema, _, valid = data
    model = tiny(architecture, schema)
    inputs = valid.tensors(np.arange(50))
    with torch.no_grad():
        torch.testing.assert_close(model(inputs), model.logit_from_embeddings(model.field_embedding(inputs)), rtol=0, atol=0)


def _compacted(inputs: dict[str, torch.Tensor], row: int, drop: int) -> dict[str, torch.Tensor]:
    """One row with the behaviour at position ``drop`` cut out of both histories."""
    out = {name: tensor[row : row + 1].clone() for name, tensor in inputs.items()}
    for name in ("history", "history_genres"):
        ids = out[name][0].tolist()
        kept = ids[:drop] + ids[drop + 1 :] + [0]
        out[name] = torch.tensor([kept])
    return out


@pytest.mark.parametrize("architecture", SEQUENCE_ARCHITECTURES)
def test_zero_behaviour_slots_equal_removing_the_behaviour(data, architecture):
    schema, _, valid = data
    model = tiny(architecture, schema)
    inputs = valid.tensors(np.arange(60))
    lengths = (inputs["history"] != 0).sum(dim=1)
    rows = [r for r in range(60) if lengths[r] >= 3][:8]
    assert len(rows) >= 5
    changes = []
    with torch.no_grad():
        for row in rows:
            for drop in (0, 1, int(lengths[row]) - 1):
                slots = model.field_embedding({n: t[row : row + 1] for n, t in inputs.items()}).clone()
                for name in ("history", "history_genres"):
                    slots[0, model.slot_names.index(f"{name}[{drop}]")] = 0
                removed = model.logit_from_embeddings(slots)
                expected = model(_compacted(inputs, row, drop))
                torch.testing.assert_close(removed, expected, rtol=1e-5, atol=1e-6)
                changes.append(abs(float(removed - model({n: t[row : row + 1] for n, t in inputs.items()}))) > 1e-6)
    # QIN's ReLU weights leave some behaviours out entirely; DIN and DIEN use every behaviour.
    assert np.mean(changes) > (0.2 if architecture == "qin" else 0.99)


@pytest.mark.parametrize("architecture", SEQUENCE_ARCHITECTURES)
def test_game_removes_behaviours_whatever_the_baseline(data, architecture):
    schema, train_set, valid = data
    model = tiny(architecture, schema)
    inputs = valid.tensors(np.arange(5))
    game = EmbeddingGame(model, inputs, baseline="mean", background=train_set.tensors(np.arange(200)))
    removal = model.removal_slots()
    assert removal.sum() == 2 * LENGTH
    assert torch.count_nonzero(game.baseline_embeddings[:, torch.from_numpy(removal)]) == 0
    assert torch.count_nonzero(game.baseline_embeddings[:, torch.from_numpy(~removal)]) > 0


def test_default_players_are_fields_and_positions_can_be_players(data):
    schema, _, _ = data
    model = tiny("din", schema)
    names, _, membership = model_players(model, None)
    assert names == tuple(schema.field_names)
    assert membership.sum(axis=1).tolist() == [1, 1, 1, LENGTH, LENGTH, 1]
    names, groups, membership = model_players(model, {"first": ["history[0]", "history_genres[0]"], "rest": [
        "user", "item", "genre", "score", *(f"history[{p}]" for p in range(1, LENGTH)),
        *(f"history_genres[{p}]" for p in range(1, LENGTH)),
    ]})
    assert names == ("first", "rest")
    assert membership[0].sum() == 2
    assert membership[1].sum() == 4 + 2 * (LENGTH - 1)


def test_din_attention_probe_matches_a_hand_computation(data):
    schema, _, valid = data
    model = tiny("din", schema)
    inputs = valid.tensors(np.arange(10))
    capture = capture_probes(model, inputs)
    weights = capture["target_attention"].values
    with torch.no_grad():
        _, behaviours, mask, target = model.split_behaviours(model.field_embedding(inputs))
        query = target.unsqueeze(1).expand_as(behaviours)
        features = torch.cat([query, behaviours, query - behaviours, query * behaviours], dim=-1)
        expected = model.attention.mlp(features).squeeze(-1) * mask
    np.testing.assert_allclose(weights, expected.numpy(), rtol=1e-6, atol=1e-7)
    assert weights.shape == (10, LENGTH)
    assert np.all(weights[~mask.numpy()] == 0)
    np.testing.assert_allclose(capture.logits, model(inputs).detach().numpy(), rtol=0, atol=0)


@pytest.mark.parametrize("architecture", ["dien", "din"])
def test_softmax_attention_sums_to_one_over_present_behaviours(data, architecture):
    schema, _, valid = data
    overrides = {"attention_softmax": True} if architecture == "din" else {}
    model = tiny(architecture, schema, **overrides)
    inputs = valid.tensors(np.arange(40))
    weights = capture_probes(model, inputs)["target_attention"].values
    lengths = (inputs["history"] != 0).sum(dim=1).numpy()
    np.testing.assert_allclose(weights.sum(axis=1), np.where(lengths > 0, 1.0, 0.0), atol=1e-6)


def test_qin_attention_is_sparse_and_non_negative(data):
    schema, _, valid = data
    model = tiny("qin", schema)
    weights = capture_probes(model, valid.tensors(np.arange(200)))["target_attention"].values
    assert weights.min() >= 0
    present = (valid.tensors(np.arange(200))["history"] != 0).numpy()
    # ReLU: a share of the present behaviours gets exactly zero weight.
    assert 0 < np.mean(weights[present] == 0) < 1


def test_masked_softmax_of_an_empty_row_is_zero():
    scores = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[True, False], [False, False]])
    np.testing.assert_allclose(masked_softmax(scores, mask).numpy(), [[1.0, 0.0], [0.0, 0.0]])


def test_dien_auxiliary_loss_is_part_of_training_loss(data):
    schema, train_set, _ = data
    model = tiny("dien", schema).train()
    inputs, labels = train_set.tensors(np.arange(256)), torch.from_numpy(train_set.labels[:256])
    torch.manual_seed(3)
    with_auxiliary = model.training_loss(inputs, labels)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(model(inputs), labels)
    assert float(with_auxiliary.detach()) > float(plain.detach()) + 0.1
    silent = tiny("dien", schema, auxiliary_weight=0.0).train()
    torch.testing.assert_close(
        silent.training_loss(inputs, labels),
        torch.nn.functional.binary_cross_entropy_with_logits(silent(inputs), labels),
    )


@pytest.mark.parametrize(
    ("architecture", "hyperparameters"),
    [
        # DIN is trained on the same data in test_behaviours.py, which also checks its per-behaviour ranking.
        ("qin", {"embedding_dim": 8, "attention_dim": 16, "n_layers": 2, "rank": 2, "dropout": 0.0}),
    ],
)
def test_training_learns_the_target_in_history_effect(architecture, hyperparameters):
    train_frame, valid_frame = sequence_frame(20_000, 1), sequence_frame(2_000, 2)
    schema = fit_schema(train_frame, SPEC)
    valid = encode(valid_frame, schema)
    hit = np.array([t in h.split("|") for t, h in zip(valid_frame["item"], valid_frame["history"], strict=True)])
    oracle = roc_auc_score(valid.labels, hit + 0.1 * (valid_frame["user"] == "u1").to_numpy())
    torch.manual_seed(0)
    model = build_model(architecture, schema, **hyperparameters)
    config = TrainConfig(epochs=30, batch_size=128, learning_rate=3e-3, embedding_regularizer=0.0, seed=0, patience=4)
    result = train(model, encode(train_frame, schema), valid, config, show_progress=False)
    # The oracle (the planted indicators) scores about 0.73; a model blind to the history stays near 0.52.
    assert result.valid_metrics["auc"] > oracle - 0.015, (result.valid_metrics, oracle)


def test_qin_reads_dense_fields_in_its_query():
    frame = sequence_frame(300, 4)
    rng = np.random.default_rng(0)
    frame["vec"] = [list(v) for v in rng.normal(size=(len(frame), 3))]
    schema = fit_schema(frame, Schema([*SPEC.fields, Field("vec", "dense", dim=3)]))
    data = encode(frame, schema)
    model = tiny("qin", schema)
    assert model.dense_slots == [model.slot_names.index("vec")]
    assert model.query.in_features == 2 * 4 + 4

    # The dense vector is a player like any field: with the zero or the mean baseline it changes the value.
    inputs = data.tensors(np.arange(20))
    for baseline, background in (("zero", None), ("mean", data.tensors(np.arange(300)))):
        game = EmbeddingGame(model, inputs, baseline=baseline, background=background)
        everything = np.ones((1, game.n_players), dtype=bool)
        without = everything.copy()
        without[0, game.player_names.index("vec")] = False
        difference = game.values(everything) - game.values(without)
        assert np.abs(difference).max() > 1e-4, baseline
