"""Builders of tiny schemas, data sets and models shared by the test modules.

Import with ``from helpers import ...``: pytest puts ``tests/`` on ``sys.path``
because the folder has no ``__init__.py``.

The synthetic data has a known click model so that training tests can expect a
high AUC: ``logit = city + device + 0.08 * (age - 44) + 2 * share of 'sports' in
the history + 1.5 * vec[0] - 0.4``. It covers all four field kinds.

The Frappe helpers read ``../shared/data/frappe`` next to the repository, or the
folder named by ``WORKBENCH_SHARED_DATA`` (the shared data folder that contains
``frappe/``, or the Frappe folder itself).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.data import CTRDataset, encode
from workbench.schema import Field, Schema, fit_schema
from workbench.zoo import CTRModel, build_model

REPO_ROOT = Path(__file__).resolve().parents[1]

CITY_EFFECTS = {"Berlin": 1.5, "Paris": -1.5, "Rome": 1.0, "Oslo": -1.0, "Lima": 0.5, "Cairo": -0.5}
DEVICE_EFFECTS = {"mobile": 0.8, "desktop": 0.0, "tablet": -0.8}
TOPICS = ("sports", "travel", "news", "food", "games")
HISTORY_LENGTH = 3
VECTOR_DIM = 2

# Small hyper-parameters per architecture, so that family-wide tests stay fast.
# The registry drives the parametrised tests.
TINY_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "lr": {},
    "fm": {"embedding_dim": 4},
    "dnn": {"embedding_dim": 4, "hidden_units": [8], "dropout": 0.1, "batch_norm": True},
    "deepfm": {"embedding_dim": 4, "hidden_units": [8], "dropout": 0.1, "batch_norm": True},
    "dcnv2": {"embedding_dim": 4, "n_cross_layers": 2, "hidden_units": [8], "dropout": 0.1, "batch_norm": True},
    "autoint+": {
        "embedding_dim": 4,
        "attention_layers": 1,
        "n_heads": 2,
        "attention_dim": 8,
        "hidden_units": [8],
        "dropout": 0.1,
        "batch_norm": True,
    },
    "gdcn": {"embedding_dim": 4, "n_cross_layers": 2, "hidden_units": [8], "dropout": 0.1, "batch_norm": True},
    "fcn": {
        "embedding_dim": 4,
        "n_deep_cross_layers": 2,
        "n_shallow_cross_layers": 2,
        "deep_net_dropout": 0.1,
        "shallow_net_dropout": 0.1,
    },
    "finalmlp": {
        "embedding_dim": 4,
        "mlp1_hidden_units": [8],
        "mlp2_hidden_units": [6],
        "fs_hidden_units": [8],
        "num_heads": 2,
    },
    "fibinet": {"embedding_dim": 4, "hidden_units": [8], "dropout": 0.1, "batch_norm": True},
    "masknet": {"embedding_dim": 4, "parallel_num_blocks": 2, "parallel_block_dim": 6, "hidden_units": [8]},
    "xdeepfm": {
        "embedding_dim": 4,
        "cin_hidden_units": [3, 2],
        "hidden_units": [8],
        "dropout": 0.1,
        "batch_norm": True,
    },
}


def spec_schema(label: str = "label") -> Schema:
    """Return an unfitted schema with one field of every kind."""
    return Schema(
        [
            Field("city", "categorical"),
            Field("device", "categorical"),
            Field("age", "numeric"),
            Field("history", "sequence", max_length=HISTORY_LENGTH, separator="|"),
            Field("vec", "dense", dim=VECTOR_DIM),
        ],
        label=label,
    )


def synthetic_frame(n_rows: int, seed: int = 0) -> pd.DataFrame:
    """Return raw rows drawn from the known click model (history joined with '|', vec as lists)."""
    rng = np.random.default_rng(seed)
    cities = rng.choice(list(CITY_EFFECTS), size=n_rows)
    devices = rng.choice(list(DEVICE_EFFECTS), size=n_rows)
    ages = rng.integers(18, 71, size=n_rows).astype(float)
    lengths = rng.integers(0, 5, size=n_rows)
    histories = ["|".join(rng.choice(TOPICS, size=length)) for length in lengths]
    vectors = rng.normal(size=(n_rows, VECTOR_DIM))

    sports_share = np.array(
        [
            items.count("sports") / len(items) if items else 0.0
            for items in (h.split("|")[-HISTORY_LENGTH:] if h else [] for h in histories)
        ]
    )
    logit = (
        np.array([CITY_EFFECTS[c] for c in cities])
        + np.array([DEVICE_EFFECTS[d] for d in devices])
        + 0.08 * (ages - 44.0)
        + 2.0 * sports_share
        + 1.5 * vectors[:, 0]
        - 0.4
    )
    labels = (rng.random(n_rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame(
        {
            "label": labels,
            "city": cities,
            "device": devices,
            "age": ages,
            "history": histories,
            "vec": [list(v) for v in vectors],
        }
    )


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    """Write a synthetic frame as CSV, with each dense vector as space-separated numbers."""
    out = frame.copy()
    if "vec" in out.columns:
        out["vec"] = [" ".join(f"{x:.6f}" for x in v) for v in out["vec"]]
    out.to_csv(path, index=False)
    return path


def write_schema_json(path: Path, schema: Schema | None = None) -> Path:
    """Write the spec of ``schema`` (default: :func:`spec_schema`) as a schema JSON file."""
    schema = schema or spec_schema()
    path.write_text(json.dumps(schema.to_dict()), encoding="utf-8")
    return path


@dataclass
class Splits:
    """A fitted schema and encoded train, valid and test splits of the synthetic data."""

    schema: Schema
    train: CTRDataset
    valid: CTRDataset
    test: CTRDataset


def synthetic_splits(n_train: int = 3000, n_valid: int = 1000, n_test: int = 1000, seed: int = 0) -> Splits:
    """Return a schema fitted on the train split and the three encoded splits."""
    train_frame = synthetic_frame(n_train, seed)
    valid_frame = synthetic_frame(n_valid, seed + 1)
    test_frame = synthetic_frame(n_test, seed + 2)
    schema = fit_schema(train_frame, spec_schema())
    return Splits(
        schema=schema,
        train=encode(train_frame, schema, name="train"),
        valid=encode(valid_frame, schema, name="valid"),
        test=encode(test_frame, schema, name="test"),
    )


def build_tiny_model(architecture: str, schema: Schema, *, seed: int = 0, **overrides: Any) -> CTRModel:
    """Build ``architecture`` with :data:`TINY_HYPERPARAMETERS` and a fixed initialisation seed."""
    torch.manual_seed(seed)
    hyperparameters = {**TINY_HYPERPARAMETERS[architecture], **overrides}
    return build_model(architecture, schema, **hyperparameters)


def set_weights(parameter: torch.Tensor, values: Any) -> None:
    """Overwrite a parameter in place with ``values``."""
    with torch.no_grad():
        parameter.copy_(torch.as_tensor(values, dtype=parameter.dtype))


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the block with one intra-op torch thread, then restore the previous count.

    The models in these tests are small. On a 2-core machine shared with other
    jobs, two threads made their training about ten times slower than one
    (measured: test_training.py took 32 s instead of 3.5 s, and the Frappe
    training 47 s instead of 3.4 s).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Apply :func:`single_torch_thread` to every test of a module that imports this fixture."""
    with single_torch_thread():
        yield


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``workbench.cli.main(argv)`` in-process; return exit status, stdout and stderr.

    An argparse error raises SystemExit, which is turned into its exit status.
    """
    from workbench.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    return status, stdout.getvalue(), stderr.getvalue()


# --- Frappe ---------------------------------------------------------------

FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city")
FRAPPE_WEATHER = {"sunny", "cloudy", "unknown", "foggy", "rainy", "stormy", "drizzle", "snowy", "sleet"}
FRAPPE_TRAIN_ROWS = 40_000
FRAPPE_VALID_ROWS = 10_000
FRAPPE_TEST_ROWS = 5_000


def _shared_data_root() -> Path:
    override = os.environ.get("WORKBENCH_SHARED_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"


def frappe_dir() -> Path | None:
    """Return the Frappe folder, or None when it is absent.

    A present folder with missing files is returned as is, so the tests that
    read it fail instead of being skipped.
    """
    root = _shared_data_root()
    if (root / "frappe").is_dir():
        return root / "frappe"
    if (root / "feature_map.tsv").is_file():
        return root
    return None


def require_frappe() -> Path:
    """Return the Frappe folder or skip the calling test when it is absent."""
    folder = frappe_dir()
    if folder is None:
        pytest.skip(
            f"no Frappe folder at {str(_shared_data_root() / 'frappe')!r}; "
            "set WORKBENCH_SHARED_DATA to the folder that contains frappe/"
        )
    return folder


def _copy_head(source: Path, target: Path, n_lines: int) -> Path:
    opener = gzip.open if source.name.endswith(".gz") else open
    with opener(source, "rt", encoding="utf-8") as reader, open(target, "w", encoding="utf-8") as writer:
        for line_number, line in enumerate(reader):
            if line_number >= n_lines:
                break
            writer.write(line)
    return target


@dataclass
class FrappeRun:
    """A DCNv2 bundle trained through the CLI on the head of the Frappe splits."""

    bundle: Path
    """Bundle folder; its parent contains only this bundle, so it can serve as a models folder."""
    data: Path
    """Folder with train.libfm, valid.libfm, test.libfm and feature_map.tsv (the heads used)."""
    feature_map: Path
    summary: dict[str, Any]
    """The JSON that ``workbench train`` printed."""
    seconds: float


_FRAPPE_RUNS: dict[str, FrappeRun] = {}


def train_frappe_bundle(tmp_path_factory: pytest.TempPathFactory) -> FrappeRun:
    """Train the Frappe DCNv2 bundle once per session (cached across test modules)."""
    folder = require_frappe()
    key = str(tmp_path_factory.getbasetemp())
    if key in _FRAPPE_RUNS:
        return _FRAPPE_RUNS[key]

    data = tmp_path_factory.mktemp("frappe_data")
    _copy_head(folder / "frappe.train.rebuilt.libfm.gz", data / "train.libfm", FRAPPE_TRAIN_ROWS)
    _copy_head(folder / "frappe.validation.libfm", data / "valid.libfm", FRAPPE_VALID_ROWS)
    _copy_head(folder / "frappe.test.libfm", data / "test.libfm", FRAPPE_TEST_ROWS)
    feature_map = data / "feature_map.tsv"
    shutil.copyfile(folder / "feature_map.tsv", feature_map)

    bundle = tmp_path_factory.mktemp("frappe_bundle") / "dcnv2"
    argv = [
        "train", "--arch", "dcnv2",
        "--train", str(data / "train.libfm"),
        "--valid", str(data / "valid.libfm"),
        "--test", str(data / "test.libfm"),
        "--out", str(bundle),
        "--epochs", "2", "--batch-size", "512", "--hidden-units", "200,200",
        "--seed", "2024", "--quiet",
    ]
    start = time.perf_counter()
    with single_torch_thread():
        status, stdout, stderr = run_cli(argv)
    seconds = time.perf_counter() - start
    if status != 0:
        sys.stderr.write(stderr)
        msg = f"workbench train on Frappe exited with {status}: {stderr.strip()[-500:]}"
        raise AssertionError(msg)
    run = FrappeRun(bundle=bundle, data=data, feature_map=feature_map, summary=json.loads(stdout), seconds=seconds)
    _FRAPPE_RUNS[key] = run
    return run


@pytest.fixture(scope="session")
def frappe_run(tmp_path_factory: pytest.TempPathFactory) -> FrappeRun:
    """The trained Frappe run; import this fixture into a test module to use it."""
    return train_frappe_bundle(tmp_path_factory)


def array(value) -> np.ndarray:
    """Decode an array from a plotly JSON spec: a plain list, or a typed array ``{"dtype", "bdata", "shape"}``."""
    if not isinstance(value, dict):
        return np.asarray(value, dtype=float)
    decoded = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    if "shape" in value:
        decoded = decoded.reshape([int(size) for size in str(value["shape"]).split(",")])
    return decoded.astype(float)


def point_app_at(monkeypatch, models_dir, data_dir):
    """Point the app at a bundle folder and a data folder and empty its caches before and after a test.

    Fixtures delegate to it with ``yield from``.
    """
    import streamlit as st

    from workbench.app import sources

    monkeypatch.setenv(sources.MODELS_DIR_ENV, str(models_dir))
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(data_dir))
    # Tests type paths under pytest's temporary folders, which the app's default allowed folders do not include.
    monkeypatch.setenv(sources.ALLOWED_ROOTS_ENV, str(Path(tempfile.gettempdir()).resolve()))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()

