"""Shared fixtures: a small data folder and a tiny bundle trained on the synthetic ad-click sample.

Everything is written under pytest's temporary folder, never into the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from workbench.bundle import save_bundle
from workbench.data import encode, file_fingerprint, read_frame, read_schema_spec
from workbench.schema import fit_schema
from workbench.training import TrainConfig, evaluate, train
from workbench.zoo import build_model

REPO_ROOT = Path(__file__).resolve().parents[1]
AD_CLICKS_DIR = REPO_ROOT / "sample_data" / "ad_clicks"

TINY_TRAIN_ROWS = 4_000
TINY_VALID_ROWS = 1_000
TINY_TEST_ROWS = 2_000


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with ``ad_clicks/test.parquet``: the first 2,000 rows of the ad-click test split."""
    root = tmp_path_factory.mktemp("data")
    (root / "ad_clicks").mkdir()
    frame = read_frame(AD_CLICKS_DIR / "test.parquet", max_rows=TINY_TEST_ROWS)
    frame.to_parquet(root / "ad_clicks" / "test.parquet", index=False)
    return root


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_data_dir: Path) -> Path:
    """A models folder with one bundle, ``tiny-deepfm``.

    The model is a DeepFM (embedding_dim 4, hidden_units [16]) trained for one
    epoch on 4,000 training rows. Its manifest records the 1,000 validation rows
    it was checked on and, as its test split, ``tiny_data_dir``'s test file.
    """
    root = tmp_path_factory.mktemp("models")
    spec = read_schema_spec(AD_CLICKS_DIR / "schema.json")
    train_frame = read_frame(AD_CLICKS_DIR / "train.parquet", max_rows=TINY_TRAIN_ROWS)
    valid_frame = read_frame(AD_CLICKS_DIR / "valid.parquet", max_rows=TINY_VALID_ROWS)
    schema = fit_schema(train_frame, spec)
    train_set, valid_set = encode(train_frame, schema), encode(valid_frame, schema)
    test_path = tiny_data_dir / "ad_clicks" / "test.parquet"
    test_set = encode(read_frame(test_path), schema)

    model = build_model("deepfm", schema, embedding_dim=4, hidden_units=[16], dropout=0.0)
    result = train(model, train_set, valid_set, TrainConfig(epochs=1, batch_size=512), show_progress=False)
    save_bundle(
        model,
        root / "tiny-deepfm",
        metrics={"valid": result.valid_metrics, "test": evaluate(model, test_set)},
        training={
            "best_epoch": result.best_epoch,
            "seconds": result.seconds,
            "history": result.history,
            "config": result.config,
        },
        data={
            "train": {"path": str(AD_CLICKS_DIR / "train.parquet"), "max_rows": TINY_TRAIN_ROWS},
            "valid": {"path": str(AD_CLICKS_DIR / "valid.parquet"), "max_rows": TINY_VALID_ROWS},
            "test": {"path": str(test_path), "sha256": file_fingerprint(test_path)},
        },
    )
    return root


@pytest.fixture(scope="session")
def tiny_bundle_path(tiny_models_dir: Path) -> Path:
    """The folder of the ``tiny-deepfm`` bundle."""
    return tiny_models_dir / "tiny-deepfm"
