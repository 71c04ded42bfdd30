"""FuxiCTR models trained with the real ``fuxictr`` package, for the adapter tests.

The model classes come from ``tests/fuxictr_zoo`` (laid out as FuxiCTR's own
``model_zoo``: ``<Model>/src/<Model>.py``). Training runs FuxiCTR's own
``BaseModel.fit``. It saves the best epoch with ``save_weights`` to
``<model_root>/<dataset_id>/<expid>.model`` and reloads it. The reference
predictions are FuxiCTR's own ``predict`` on the test split.

``fit`` needs a data generator with ``__len__`` and an iterator of dicts of
tensors keyed by column name (features and the label). :class:`DictBatches`
is that, read with pandas or numpy, so no Ray data loader runs.

Tiny data: ``../shared/data/fuxictr_tiny`` (FuxiCTR's own index-encoded
samples, 100 rows per split, valid = test). Frappe: the head of the BARS
Frappe_x1 splits in ``../shared/data/frappe``, turned into a FuxiCTR data
folder by FuxiCTR's own ``FeatureProcessor`` (see :func:`write_frappe_data`).

Import with ``from fuxictr_fixtures import ...``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from workbench.data import read_libfm

REPO_ROOT = Path(__file__).resolve().parents[1]
ZOO_DIR = Path(__file__).resolve().parent / "fuxictr_zoo"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
TINY_DIR = SHARED_DATA / "fuxictr_tiny"

FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city")
FRAPPE_TRAIN_ROWS = 20_000
FRAPPE_VALID_ROWS = 2_000
FRAPPE_TEST_ROWS = 2_000

# Settings every FuxiCTR experiment passes to the model (BaseModel reads them from kwargs).
COMMON_PARAMS = {
    "loss": "binary_crossentropy",
    "metrics": ["logloss", "AUC"],
    "task": "binary_classification",
    "optimizer": "adam",
    "monitor": "AUC",
    "monitor_mode": "max",
    "verbose": 0,
    "gpu": -1,
    "seed": 2024,
}


def import_zoo_class(name: str, zoo: Path = ZOO_DIR) -> type:
    """Import ``<zoo>/<name>/src`` as a package under a name of its own and return its class ``name``.

    Every model folder has a package called ``src``, so each one is imported
    under ``fuxictr_test_zoo_<name>`` to keep them apart.
    """
    package = f"fuxictr_test_zoo_{name}"
    if package not in sys.modules:
        source = zoo / name / "src"
        spec = importlib.util.spec_from_file_location(
            package, source / "__init__.py", submodule_search_locations=[str(source)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return getattr(sys.modules[package], name)


class DictBatches:
    """Batches of a split as FuxiCTR's ``fit``, ``evaluate`` and ``predict`` take them.

    Each batch is a dict of tensors keyed by column name, one dtype per
    column (as the 2.3.10 wheel's parquet loader yields them).
    """

    def __init__(self, columns: dict[str, np.ndarray], batch_size: int, *, shuffle: bool = False, seed: int = 0):
        self.columns = columns
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.n_rows = len(next(iter(columns.values())))

    def __len__(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(self.n_rows) if self.shuffle else np.arange(self.n_rows)
        for start in range(0, self.n_rows, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield {name: torch.from_numpy(np.ascontiguousarray(array[rows])) for name, array in self.columns.items()}


def read_split(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    """Read the feature and label columns of a parquet or npz split into numpy arrays."""
    if path.suffix == ".npz":
        with np.load(path) as arrays:
            return {name: np.asarray(arrays[name]) for name in columns}
    frame = pd.read_parquet(path, columns=columns)
    out = {}
    for name in columns:
        values = frame[name].to_numpy()
        if values.dtype == object:  # list columns of sequences
            values = np.stack([np.asarray(v) for v in values])
        out[name] = values
    return out


def load_feature_map(data_dir: Path, dataset_id: str, params: dict[str, Any]):
    """FuxiCTR's own FeatureMap of ``data_dir/feature_map.json``."""
    from fuxictr.features import FeatureMap

    feature_map = FeatureMap(dataset_id, str(data_dir))
    feature_map.load(str(data_dir / "feature_map.json"), params)
    return feature_map


@dataclass
class FuxiRun:
    """One model trained by FuxiCTR, with the files a user would have."""

    model: str
    """The model class name, e.g. ``GDCN``."""
    expid: str
    dataset_id: str
    data_dir: Path
    """The FuxiCTR data folder (``feature_map.json``, splits, ``feature_vocab.json`` when there is one)."""
    config_dir: Path
    """``model_config.yaml`` and ``dataset_config.yaml`` in FuxiCTR's format."""
    checkpoint: Path
    """``<model_root>/<dataset_id>/<expid>.model``, written by FuxiCTR's ``save_weights``."""
    params: dict[str, Any]
    """Everything passed to the model's constructor (the merged experiment and data set configs)."""
    test_data: Path
    predictions: np.ndarray
    """FuxiCTR's own ``predict`` on the test split, after ``fit`` reloaded the best checkpoint."""
    module: torch.nn.Module
    """The trained model object (in eval mode)."""
    seconds: float
    """Wall time of ``fit`` alone."""
    test_columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def feature_map(self) -> Path:
        return self.data_dir / "feature_map.json"


def _spread_embeddings(model: torch.nn.Module, std: float) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for sub in model.modules():
            if isinstance(sub, torch.nn.Embedding) and sub.embedding_dim > 1:
                values = torch.randn(sub.weight[1:].shape, generator=generator) * std
                sub.weight[1:] = values


def write_config(config_dir: Path, expid: str, experiment: dict[str, Any], dataset_id: str, dataset: dict) -> None:
    """Write ``model_config.yaml`` and ``dataset_config.yaml`` as FuxiCTR's ``load_config`` reads them."""
    config_dir.mkdir(parents=True, exist_ok=True)
    with open(config_dir / "model_config.yaml", "w", encoding="utf-8") as handle:
        yaml.safe_dump({expid: experiment}, handle, sort_keys=False)
    with open(config_dir / "dataset_config.yaml", "w", encoding="utf-8") as handle:
        yaml.safe_dump({dataset_id: dataset}, handle, sort_keys=False)


def train_fuxictr(
    root: Path,
    model: str,
    *,
    data_dir: Path,
    dataset_id: str,
    split_suffix: str,
    expid: str | None = None,
    epochs: int = 3,
    batch_size: int = 16,
    embedding_std: float | None = None,
    **hyperparameters: Any,
) -> FuxiRun:
    """Train ``model`` from the test zoo with FuxiCTR's ``fit`` and return what it wrote.

    The splits are ``train``, ``valid`` and ``test`` in ``data_dir``, with
    ``split_suffix`` ``.parquet`` or ``.npz``. FuxiCTR's ``data_root`` is
    ``data_dir``'s parent, because FuxiCTR takes the folder name as the data set id.
    ``embedding_std``, when given, restarts the embedding tables (all rows
    but PAD) from a normal distribution of that standard deviation before
    training: FuxiCTR's default of 1e-4 leaves a model trained for a few
    steps with embeddings so small that attention is uniform and gates sit
    at 0.5.
    """
    expid = expid or f"{model}_{dataset_id}"
    dataset = {
        "data_root": str(data_dir.parent),
        "data_format": split_suffix.lstrip("."),
        "train_data": str(data_dir / f"train{split_suffix}"),
        "valid_data": str(data_dir / f"valid{split_suffix}"),
        "test_data": str(data_dir / f"test{split_suffix}"),
    }
    experiment = {
        "model": model,
        "dataset_id": dataset_id,
        **COMMON_PARAMS,
        "model_root": str(root / "checkpoints"),
        "epochs": epochs,
        "batch_size": batch_size,
        **hyperparameters,
    }
    config_dir = root / "config"
    write_config(config_dir, expid, experiment, dataset_id, dataset)
    params = {**dataset, **experiment, "model_id": expid}

    torch.manual_seed(params["seed"])
    np.random.seed(params["seed"])
    feature_map = load_feature_map(data_dir, dataset_id, params)
    model_class = import_zoo_class(model)
    fuxi_model = model_class(feature_map, **params)
    if embedding_std is not None:
        _spread_embeddings(fuxi_model, embedding_std)
    Path(fuxi_model.model_dir).mkdir(parents=True, exist_ok=True)

    columns = list(feature_map.features) + feature_map.labels
    train = DictBatches(read_split(Path(dataset["train_data"]), columns), batch_size, shuffle=True, seed=params["seed"])
    valid = DictBatches(read_split(Path(dataset["valid_data"]), columns), batch_size)
    test_columns = read_split(Path(dataset["test_data"]), columns)
    start = time.perf_counter()
    fuxi_model.fit(train, epochs=epochs, validation_data=valid)
    seconds = time.perf_counter() - start
    predictions = fuxi_model.predict(DictBatches(test_columns, batch_size))
    fuxi_model.eval()
    return FuxiRun(
        model=model,
        expid=expid,
        dataset_id=dataset_id,
        data_dir=data_dir,
        config_dir=config_dir,
        checkpoint=Path(fuxi_model.checkpoint),
        params=params,
        test_data=Path(dataset["test_data"]),
        predictions=predictions,
        module=fuxi_model,
        seconds=seconds,
        test_columns=test_columns,
    )


# --- the tiny data ------------------------------------------------------------------------

# Hyperparameters of the tiny runs: small, but every part of each model is present. ``embedding_std`` is the
# standard deviation the embedding tables start from (0.1 when not given), not a model parameter.
TINY_MODELS: dict[str, dict[str, Any]] = {
    "GDCN": {"model": "GDCN", "embedding_dim": 4, "num_cross_layers": 3, "dnn_hidden_units": [16]},
    "AutoInt": {
        "model": "AutoInt",
        "embedding_dim": 4,
        "attention_layers": 2,
        "num_heads": 2,
        "attention_dim": 8,
        "use_scale": True,
        "dnn_hidden_units": [16],
        "use_wide": True,
        # Wider embeddings at the start, so that the attention of the trained model is far from uniform.
        "embedding_std": 0.5,
    },
    "DeepFM": {"model": "DeepFM", "embedding_dim": 4, "hidden_units": [16]},
    "DCNv2": {
        "model": "DCNv2",
        "embedding_dim": 4,
        "model_structure": "parallel",
        "num_cross_layers": 2,
        "parallel_dnn_hidden_units": [16],
    },
    "DCNv2_MoE": {
        "model": "DCNv2",
        "embedding_dim": 4,
        "model_structure": "stacked",
        "use_low_rank_mixture": True,
        "low_rank": 8,
        "num_experts": 3,
        "num_cross_layers": 2,
        "stacked_dnn_hidden_units": [16],
    },
    "FinalMLP": {
        "model": "FinalMLP",
        "embedding_dim": 4,
        "mlp1_hidden_units": [16],
        "mlp2_hidden_units": [16],
        "fs_hidden_units": [8],
        "fs1_context": [],
        "fs2_context": ["adgroup_id", "cate_id"],
        "num_heads": 2,
    },
    "FiBiNET": {"model": "FiBiNET", "embedding_dim": 4, "hidden_units": [16], "excitation_activation": "Sigmoid"},
    "MaskNet": {"model": "MaskNet", "embedding_dim": 4, "dnn_hidden_units": [16, 8], "reduction_ratio": 1},
    "MaskNet_Parallel": {
        "model": "MaskNet",
        "embedding_dim": 4,
        "model_type": "ParallelMaskNet",
        "parallel_num_blocks": 2,
        "parallel_block_dim": 8,
        "dnn_hidden_units": [16],
    },
    "DIN": {
        "model": "DIN",
        "embedding_dim": 4,
        "dnn_hidden_units": [16],
        "attention_hidden_units": [8],
        "din_target_field": [["adgroup_id"]],
        "din_sequence_field": [["click_sequence"]],
    },
}
TINY_SEQ_MODELS = ("DIN",)


def train_tiny(root: Path, key: str, *, epochs: int = 3) -> FuxiRun:
    """Train one of :data:`TINY_MODELS` on ``tiny_parquet`` (``tiny_seq`` for DIN)."""
    settings = dict(TINY_MODELS[key])
    model = settings.pop("model")
    embedding_std = settings.pop("embedding_std", 0.1)
    if key in TINY_SEQ_MODELS:
        data_dir, suffix = TINY_DIR / "tiny_seq", ".npz"
    else:
        data_dir, suffix = TINY_DIR / "tiny_parquet", ".parquet"
    return train_fuxictr(
        root / key,
        model,
        data_dir=data_dir,
        dataset_id=data_dir.name,
        split_suffix=suffix,
        expid=f"{key}_tiny",
        epochs=epochs,
        learning_rate=5e-3,
        embedding_std=embedding_std,
        **settings,
    )


# --- Frappe ---------------------------------------------------------------------------------


def _frappe_frame(path: Path, n_rows: int) -> pd.DataFrame:
    frame = read_libfm(path, feature_map=path.parent / "feature_map.tsv", max_rows=n_rows)
    return frame[["label", *FRAPPE_FIELDS]]


def write_frappe_data(root: Path) -> Path:
    """Build a FuxiCTR data folder for the head of the Frappe splits with FuxiCTR's own ``FeatureProcessor``.

    The raw rows (field values as strings) are written as CSV. ``fit`` on the
    training rows writes ``feature_map.json``, ``feature_vocab.json`` and
    ``feature_processor.pkl``, with FuxiCTR's vocabulary order (by count, then
    token). Each split is then encoded with the processor's ``transform``, the
    function FuxiCTR's ``build_dataset`` maps over Ray batches. It is called
    here directly, so no Ray cluster starts, and the result is written as
    parquet.
    """
    from fuxictr.preprocess import FeatureProcessor

    folder = require_frappe()
    raw_dir = root / "raw"
    raw_dir.mkdir(parents=True)
    heads = {
        "train": ("frappe.train.rebuilt.libfm.gz", FRAPPE_TRAIN_ROWS),
        "valid": ("frappe.validation.libfm", FRAPPE_VALID_ROWS),
        "test": ("frappe.test.libfm", FRAPPE_TEST_ROWS),
    }
    for split, (name, n_rows) in heads.items():
        _frappe_frame(folder / name, n_rows).to_csv(raw_dir / f"{split}.csv", index=False)

    processor = FeatureProcessor(
        feature_cols=[{"name": list(FRAPPE_FIELDS), "active": True, "dtype": "str", "type": "categorical"}],
        label_col={"name": "label", "dtype": "float"},
        dataset_id="frappe_x1_head",
        data_root=str(root),
    )
    with warnings.catch_warnings():
        # fuxictr 2.3.10 passes polars' deprecated `dtypes` and leaves the pickle's file handle to the collector.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", ResourceWarning)
        processor.fit(processor.preprocess(processor.read_data(str(raw_dir / "train.csv"))), min_categr_count=1)
        frames = {
            split: processor.preprocess(processor.read_data(str(raw_dir / f"{split}.csv"))).collect() for split in heads
        }
    data_dir = Path(processor.data_dir)
    for split, frame in frames.items():
        batch = processor.transform({name: frame[name].to_numpy() for name in frame.columns})
        columns = {name: np.asarray(batch[name], dtype=np.int64) for name in FRAPPE_FIELDS}
        columns["label"] = np.asarray(batch["label"], dtype=np.float64)
        pd.DataFrame(columns).to_parquet(data_dir / f"{split}.parquet", index=False)
    return data_dir


@dataclass
class FrappeRun:
    run: FuxiRun
    test_frame: pd.DataFrame
    """Raw test rows (label and field values as strings) in the order of ``run.predictions``."""
    prepare_seconds: float
    """Wall time of writing the raw heads and of FuxiCTR's fit and transform."""


_RUNS: dict[tuple[str, str], Any] = {}


def frappe_gdcn(root: Path) -> FrappeRun:
    """A GDCN trained by FuxiCTR for one epoch (79 batches of 256) on the first 20,000 Frappe training rows."""
    start = time.perf_counter()
    data_dir = write_frappe_data(root)
    prepare_seconds = time.perf_counter() - start
    run = train_fuxictr(
        root / "gdcn",
        "GDCN",
        data_dir=data_dir,
        dataset_id=data_dir.name,
        split_suffix=".parquet",
        expid="GDCN_frappe_head",
        epochs=1,
        batch_size=256,
        learning_rate=5e-3,
        embedding_dim=10,
        num_cross_layers=3,
        dnn_hidden_units=[64, 64],
    )
    test_frame = pd.read_csv(root / "raw" / "test.csv", dtype=str, keep_default_na=False)
    test_frame["label"] = test_frame["label"].astype(float).astype(np.int64)
    return FrappeRun(run=run, test_frame=test_frame, prepare_seconds=prepare_seconds)


def cached(kind: str, root_factory: pytest.TempPathFactory, build) -> Any:
    """Build once per pytest session (keyed by the session's temporary root)."""
    key = (kind, str(root_factory.getbasetemp()))
    if key not in _RUNS:
        _RUNS[key] = build(root_factory.mktemp(f"fuxictr_{kind}"))
    return _RUNS[key]


def require_frappe() -> Path:
    """Return the Frappe folder (``WORKBENCH_SHARED_DATA`` may move it) or skip the calling test when it is absent."""
    from helpers import require_frappe as require

    return require()
