"""Small DeepCTR-Torch models trained with the library's own ``fit``, for the DeepCTR adapter tests.

Import with ``from deepctr_fixtures import ...``. Data comes from the shared
samples next to the repository (``../shared/data``), prepared as DeepCTR's
Criteo example does: categorical cells filled with ``"-1"`` and label-encoded
(sorted unique values to ``0 .. n - 1``), numeric cells filled with 0,
``log(1 + x)`` of their positive part and min-max scaled to [0, 1]. DIN is
trained on Alimama ad clicks with a history of ad categories.

Each trained model is saved as ``torch.save(model.state_dict(), path)`` with
its column spec and vocabularies as JSON, the files a user would have.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.adapters.deepctr import columns_to_spec, import_deepctr, label_encoder_vocabulary

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"
CRITEO_FILE = DATA_ROOT / "criteo-sample" / "criteo_sampled_data_10k.csv"
ALIMAMA_FILE = DATA_ROOT / "behaviour-sequence" / "paddlerec_dmr_alimama_sampled_train.txt"

CRITEO_ROWS = 2_000
"""Training rows; the vocabularies are fitted on these rows, so every value in them is known."""
DENSE = [f"I{i}" for i in range(1, 14)]
SPARSE = [f"C{i}" for i in range(1, 27)]
EMBEDDING_DIM = 4

CRITEO_MODELS: dict[str, dict[str, Any]] = {
    "DeepFM": {"dnn_hidden_units": [16, 8]},
    "AutoInt": {"att_layer_num": 2, "att_head_num": 2, "dnn_hidden_units": [16]},
    "DCN": {"cross_num": 2, "cross_parameterization": "matrix", "dnn_hidden_units": [16]},
    "DCNMix": {"cross_num": 2, "low_rank": 4, "num_experts": 2, "dnn_hidden_units": [16]},
    "xDeepFM": {"cin_layer_size": [8, 8], "dnn_hidden_units": [16]},
    "FiBiNET": {"dnn_hidden_units": [16]},
    "WDL": {"dnn_hidden_units": [16]},
    "NFM": {"dnn_hidden_units": [16]},
    "PNN": {"dnn_hidden_units": [16]},
}
"""Constructor options of each Criteo model (JSON, as a bundle recipe stores them)."""

HISTORY_LENGTH = 8
ALIMAMA_HISTORY = slice(50, 100)  # category of each past behaviour
ALIMAMA_HISTORY_MASK = slice(150, 200)  # 1 where the step is a real behaviour
ALIMAMA_COLUMNS = {"final_gender_code": 253, "age_level": 254, "pid": 265, "cate_id": 260}
ALIMAMA_PRICE, ALIMAMA_LABEL = 264, 266
DIN_PARAMS: dict[str, Any] = {
    "history_feature_list": ["cate_id"],
    "dnn_hidden_units": [16],
    "att_hidden_size": [8],
    "att_activation": "relu",
    "init_std": 0.05,
}
DIN_EPOCHS = 10
"""500 rows make two batches an epoch; ten epochs move the predictions apart enough to compare."""


@dataclass
class TrainedModel:
    """One trained DeepCTR model and the files saved for it."""

    model_class: str
    model: torch.nn.Module
    params: dict[str, Any]
    spec: dict[str, list[dict[str, Any]]]
    weights_path: Path
    spec_path: Path
    vocabularies_path: Path


@dataclass
class DeepCTRSample:
    """A prepared data set, its vocabularies and the models trained on it."""

    frame: pd.DataFrame
    """Raw values as the workbench reads them: categorical cells as strings, numeric cells already scaled, a ``label``."""
    model_input: dict[str, np.ndarray]
    """DeepCTR's input per feature (ids and scaled values) for the rows of ``frame``; only in-vocabulary rows."""
    vocabularies: dict[str, list[str | None]]
    models: dict[str, TrainedModel] = field(default_factory=dict)


def _quiet_fit(model: torch.nn.Module, x: dict[str, np.ndarray], y: np.ndarray, *, epochs: int = 1) -> None:
    # deepctr-torch prints the device and a summary line; verbose=0 hides only the progress bar.
    model.compile("adam", "binary_crossentropy")
    with contextlib.redirect_stdout(io.StringIO()):
        model.fit(x, y, batch_size=256, epochs=epochs, verbose=0, shuffle=False)
    model.eval()


def _save(folder: Path, name: str, model: torch.nn.Module, spec: dict, vocabularies: dict) -> tuple[Path, Path, Path]:
    weights = folder / f"{name}.pt"
    spec_path = folder / f"{name}.columns.json"
    vocabularies_path = folder / f"{name}.vocabularies.json"
    torch.save(model.state_dict(), weights)
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    vocabularies_path.write_text(json.dumps(vocabularies), encoding="utf-8")
    return weights, spec_path, vocabularies_path


def prepare_criteo(n_rows: int = CRITEO_ROWS) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict]:
    """Read and prepare the first ``n_rows`` of the Criteo sample: the frame, DeepCTR inputs and vocabularies."""
    frame = pd.read_csv(CRITEO_FILE, nrows=n_rows, dtype={name: str for name in SPARSE})
    frame[SPARSE] = frame[SPARSE].fillna("-1")
    frame[DENSE] = frame[DENSE].fillna(0.0)
    logged = np.log1p(frame[DENSE].clip(lower=0.0).astype(float))
    low, high = logged.min(), logged.max()
    frame[DENSE] = ((logged - low) / (high - low).replace(0.0, 1.0)).astype(np.float32)
    vocabularies = {name: label_encoder_vocabulary(frame[name]) for name in SPARSE}
    model_input: dict[str, np.ndarray] = {name: frame[name].to_numpy(np.float32) for name in DENSE}
    for name in SPARSE:
        ids = {value: index for index, value in enumerate(vocabularies[name])}
        model_input[name] = frame[name].map(ids).to_numpy(np.int64)
    return frame, model_input, vocabularies


def criteo_columns(vocabularies: dict[str, list]) -> list[Any]:
    """The feature columns of the Criteo models: 26 SparseFeat, then 13 DenseFeat."""
    inputs = import_deepctr().inputs
    sparse = [inputs.SparseFeat(name, len(vocabularies[name]), embedding_dim=EMBEDDING_DIM) for name in SPARSE]
    return sparse + [inputs.DenseFeat(name, 1) for name in DENSE]


def build_criteo_model(model_class: str, columns: list[Any]) -> torch.nn.Module:
    models = import_deepctr().models
    cls = getattr(models, model_class)
    params = CRITEO_MODELS[model_class]
    if model_class == "PNN":
        return cls(columns, **params)
    return cls(columns, columns, **params)


def train_criteo(folder: Path, model_classes: tuple[str, ...] = tuple(CRITEO_MODELS)) -> DeepCTRSample:
    """Train each Criteo model for one epoch with ``model.fit`` and save its files under ``folder``."""
    frame, model_input, vocabularies = prepare_criteo()
    sample = DeepCTRSample(frame, model_input, vocabularies)
    columns = criteo_columns(vocabularies)
    labels = frame["label"].to_numpy(np.float32)
    for model_class in model_classes:
        model = build_criteo_model(model_class, columns)
        _quiet_fit(model, dict(model_input), labels)
        linear = [] if model_class == "PNN" else columns_to_spec(columns)
        spec = {"linear": linear, "dnn": columns_to_spec(columns)}
        paths = _save(folder, model_class, model, spec, vocabularies)
        sample.models[model_class] = TrainedModel(model_class, model, dict(CRITEO_MODELS[model_class]), spec, *paths)
    return sample


def prepare_alimama() -> tuple[pd.DataFrame, dict[str, np.ndarray], dict]:
    """Read the Alimama sample: target features, price, the last 1 to ``HISTORY_LENGTH`` categories and the label."""
    table = np.loadtxt(ALIMAMA_FILE, delimiter=",", dtype=np.float64)
    histories = []
    for number, row in enumerate(table):
        steps = row[ALIMAMA_HISTORY][row[ALIMAMA_HISTORY_MASK] > 0].astype(np.int64)
        # Almost every row has 50 steps; keeping 1 to 8 of them gives histories of every length.
        kept = 1 + number % HISTORY_LENGTH
        histories.append([str(item) for item in steps[-kept:]])
    frame = pd.DataFrame({name: table[:, column].astype(np.int64).astype(str) for name, column in ALIMAMA_COLUMNS.items()})
    frame["price"] = table[:, ALIMAMA_PRICE].astype(np.float32)
    frame["hist_cate_id"] = ["|".join(items) for items in histories]
    frame["label"] = table[:, ALIMAMA_LABEL].astype(np.int64)

    categories = set(frame["cate_id"]) | {item for items in histories for item in items}
    vocabularies: dict[str, list] = {
        name: label_encoder_vocabulary(frame[name]) for name in ("final_gender_code", "age_level", "pid")
    }
    vocabularies["cate_id"] = label_encoder_vocabulary(categories, reserve_padding=True)
    ids = {value: index for index, value in enumerate(vocabularies["cate_id"])}
    model_input: dict[str, np.ndarray] = {}
    for name in ("final_gender_code", "age_level", "pid"):
        lookup = {value: index for index, value in enumerate(vocabularies[name])}
        model_input[name] = frame[name].map(lookup).to_numpy(np.int64)
    model_input["cate_id"] = frame["cate_id"].map(ids).to_numpy(np.int64)
    model_input["price"] = frame["price"].to_numpy(np.float32)
    padded = np.zeros((len(frame), HISTORY_LENGTH), dtype=np.int64)
    for row, items in enumerate(histories):
        padded[row, : len(items)] = [ids[item] for item in items]
    model_input["hist_cate_id"] = padded
    model_input["seq_length"] = np.asarray([len(items) for items in histories], dtype=np.int64)
    return frame, model_input, vocabularies


def din_columns(vocabularies: dict[str, list]) -> list[Any]:
    inputs = import_deepctr().inputs
    size = len(vocabularies["cate_id"])
    sparse = [
        inputs.SparseFeat(name, len(vocabularies[name]), embedding_dim=EMBEDDING_DIM)
        for name in ("final_gender_code", "age_level", "pid")
    ]
    target = inputs.SparseFeat("cate_id", size, embedding_dim=EMBEDDING_DIM)
    history = inputs.VarLenSparseFeat(
        inputs.SparseFeat("hist_cate_id", size, embedding_dim=EMBEDDING_DIM, embedding_name="cate_id"),
        maxlen=HISTORY_LENGTH,
        length_name="seq_length",
    )
    return [*sparse, target, inputs.DenseFeat("price", 1), history]


def train_din(folder: Path) -> DeepCTRSample:
    """Train a DIN for ``DIN_EPOCHS`` epochs with ``model.fit`` on the Alimama sample and save its files under ``folder``."""
    frame, model_input, vocabularies = prepare_alimama()
    sample = DeepCTRSample(frame, model_input, vocabularies)
    columns = din_columns(vocabularies)
    model = import_deepctr().models.DIN(columns, **DIN_PARAMS)
    _quiet_fit(model, dict(model_input), frame["label"].to_numpy(np.float32), epochs=DIN_EPOCHS)
    spec = {"linear": [], "dnn": columns_to_spec(columns)}
    paths = _save(folder, "DIN", model, spec, vocabularies)
    sample.models["DIN"] = TrainedModel("DIN", model, dict(DIN_PARAMS), spec, *paths)
    return sample
