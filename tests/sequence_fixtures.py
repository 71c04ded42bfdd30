"""Synthetic behaviour histories and tiny trained sequence bundles, shared by the sequence app tests.

Import with ``from sequence_fixtures import ...``. The data has two paired
histories of one behaviour each (``history_items`` with ``item``,
``history_genres`` with ``genre``). The click logit is ``-1 + 2 * (share of
the target's genre in the history) + 1 * (target item in the history)``, so
histories matter and a trained model's attention is not flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from helpers import single_torch_thread
from workbench.bundle import save_bundle
from workbench.data import encode
from workbench.schema import PAD_INDEX, Field, Schema, fit_schema
from workbench.training import TrainConfig, train
from workbench.zoo import build_model

ITEMS = tuple(f"m{i:02d}" for i in range(12))
GENRES = ("drama", "comedy", "action")
GENRE_OF = {item: GENRES[i % len(GENRES)] for i, item in enumerate(ITEMS)}
HISTORY_LENGTH = 6
DATA_FOLDER = "sequence"
TEST_FILE = "test.parquet"
SEQUENCE_HYPERPARAMETERS = {
    "din": {"embedding_dim": 4, "attention_hidden_units": [8], "hidden_units": [16]},
    "dien": {"embedding_dim": 4, "auxiliary_hidden_units": [8], "hidden_units": [16]},
    "qin": {"embedding_dim": 4, "attention_dim": 8, "n_layers": 2, "rank": 2, "dropout": 0.0},
}
TRAINED = ("din", "dien")
"""Architectures trained for a few epochs; the others get seeded random weights."""

SPEC = Schema(
    [
        Field("user", "categorical"),
        Field("item", "categorical"),
        Field("genre", "categorical"),
        Field("history_items", "sequence", max_length=HISTORY_LENGTH, separator="|"),
        Field("history_genres", "sequence", max_length=HISTORY_LENGTH, separator="|"),
        Field("price", "numeric"),
    ],
    label="click",
)


def sequence_frame(n_rows: int, seed: int) -> pd.DataFrame:
    """Raw rows with histories of 0 to 6 behaviours drawn from the known click model."""
    rng = np.random.default_rng(seed)
    targets = rng.choice(ITEMS, size=n_rows)
    lengths = rng.integers(0, HISTORY_LENGTH + 1, size=n_rows)
    histories = [list(rng.choice(ITEMS, size=length)) for length in lengths]
    genre_share = np.array(
        [sum(GENRE_OF[i] == GENRE_OF[t] for i in h) / len(h) if h else 0.0 for t, h in zip(targets, histories, strict=True)]
    )
    seen = np.array([t in h for t, h in zip(targets, histories, strict=True)], dtype=float)
    logit = -1.0 + 2.0 * genre_share + 1.0 * seen
    clicks = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame(
        {
            "click": clicks,
            "user": rng.choice(["u1", "u2", "u3", "u4"], size=n_rows),
            "item": targets,
            "genre": [GENRE_OF[t] for t in targets],
            "history_items": ["|".join(h) for h in histories],
            "history_genres": ["|".join(GENRE_OF[i] for i in h) for h in histories],
            "price": rng.uniform(1.0, 9.0, size=n_rows).round(2),
        }
    )


@dataclass
class SequenceBundles:
    """A models folder with one bundle per architecture, and a data folder with their test file."""

    models_dir: Path
    data_dir: Path

    @property
    def test_path(self) -> Path:
        return self.data_dir / DATA_FOLDER / TEST_FILE

    def bundle(self, architecture: str) -> Path:
        return self.models_dir / bundle_name(architecture)


def bundle_name(architecture: str) -> str:
    return f"seq-{architecture}"


def build_sequence_bundles(root: Path, architectures: tuple[str, ...] = ("din", "dien", "qin", "dnn")) -> SequenceBundles:
    """Fit the schema on 3,000 synthetic rows, train DIN and DIEN for up to 10 epochs, and save every bundle under ``root``.

    ``dnn`` is a plain (non-sequence) model on the same data, for checking
    that the sequence views stay away from it.
    """
    data_dir, models_dir = root / "data", root / "models"
    (data_dir / DATA_FOLDER).mkdir(parents=True)
    train_frame, valid_frame, test_frame = sequence_frame(3_000, 1), sequence_frame(500, 2), sequence_frame(600, 3)
    test_frame.to_parquet(data_dir / DATA_FOLDER / TEST_FILE, index=False)
    schema = fit_schema(train_frame, SPEC)
    train_set, valid_set = encode(train_frame, schema), encode(valid_frame, schema)
    config = TrainConfig(epochs=10, batch_size=256, learning_rate=1e-2, embedding_regularizer=0.0, seed=0)
    for architecture in architectures:
        torch.manual_seed(0)
        hyperparameters = SEQUENCE_HYPERPARAMETERS.get(architecture, {"embedding_dim": 4, "hidden_units": [8]})
        model = build_model(architecture, schema, **hyperparameters)
        if architecture in TRAINED:
            with single_torch_thread():
                train(model, train_set, valid_set, config, show_progress=False)
        else:
            # Random weights of a useful size: at its initial scale the QIN-style attention is 0 everywhere.
            # The PAD row of each embedding table stays zero, because a zero slot marks an empty position.
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    parameter.copy_(torch.randn_like(parameter) * 0.3)
                    if "tables" in name:
                        parameter[PAD_INDEX] = 0.0
        save_bundle(
            model.eval(),
            models_dir / bundle_name(architecture),
            data={"test": {"path": str(data_dir / DATA_FOLDER / TEST_FILE)}},
        )
    return SequenceBundles(models_dir=models_dir, data_dir=data_dir)
