"""Training with early stopping on validation AUC, and evaluation with scikit-learn metrics.

The recipe follows what FuxiCTR uses for the BARS benchmarks. It uses Adam,
binary cross-entropy on the logit and L2 regularisation of the embedding tables
(``embedding_regularizer``, added to the gradient like Adam's ``weight_decay``).
After an epoch without a better validation AUC the learning rate is divided by
10. Training stops after ``patience`` such epochs, and the best weights are
restored.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from workbench.data import CTRDataset
from workbench.zoo.base import CTRModel

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, dict[str, float]], None]


@dataclass
class TrainConfig:
    """Training settings; units are given per field."""

    epochs: int = 30
    """Maximum number of passes over the training data."""
    batch_size: int = 4096
    """Rows per optimisation step."""
    learning_rate: float = 1e-3
    """Initial Adam learning rate."""
    embedding_regularizer: float = 1e-3
    """L2 coefficient on embedding tables."""
    net_regularizer: float = 0.0
    """L2 coefficient on all other weights."""
    patience: int = 2
    """Epochs without a better validation AUC before training stops."""
    seed: int = 2024
    """Seed of parameter initialisation, shuffling and dropout."""
    eval_batch_size: int = 16384
    """Rows per forward pass during evaluation."""


@dataclass
class TrainResult:
    """Training outcome: per-epoch history, the best epoch and its validation metrics."""

    best_epoch: int
    valid_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that training is repeatable on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def predict_logits(model: nn.Module, dataset: CTRDataset, *, batch_size: int = 16384) -> np.ndarray:
    """Return the model's logits for every row of ``dataset``, shape ``(n_rows,)``.

    The model runs in eval mode; its previous mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        out = []
        for start in range(0, len(dataset), batch_size):
            rows = slice(start, start + batch_size)
            out.append(model(dataset.tensors(rows)).float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def metrics_from_logits(labels: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    """AUC and log loss (natural log) of predicted probabilities sigmoid(logits)."""
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    out = {"logloss": float(log_loss(labels, probabilities, labels=[0, 1])), "n_rows": float(len(labels))}
    out["auc"] = float(roc_auc_score(labels, probabilities)) if len(np.unique(labels)) == 2 else float("nan")
    # float64: the mean of float32 labels prints 0.04 as 0.03999999910593033.
    out["positive_rate"] = float(np.mean(labels, dtype=np.float64)) if len(labels) else float("nan")
    return out


def evaluate(model: nn.Module, dataset: CTRDataset, *, batch_size: int = 16384) -> dict[str, float]:
    """Return AUC, log loss, row count and positive rate of ``model`` on ``dataset``."""
    if len(dataset) == 0:
        msg = (
            f"cannot evaluate on an empty data set ({dataset.source or dataset.name or 'unnamed'}): it has no rows; "
            "choose a data file with rows below its header"
        )
        raise ValueError(msg)
    return metrics_from_logits(dataset.labels, predict_logits(model, dataset, batch_size=batch_size))


def _optimizer(model: CTRModel, config: TrainConfig) -> torch.optim.Optimizer:
    embedding_ids = {id(p) for p in model.field_embedding.parameters()}
    embedding = [p for p in model.parameters() if id(p) in embedding_ids]
    others = [p for p in model.parameters() if id(p) not in embedding_ids]
    groups = [
        {"params": embedding, "weight_decay": config.embedding_regularizer},
        {"params": others, "weight_decay": config.net_regularizer},
    ]
    return torch.optim.Adam(groups, lr=config.learning_rate)


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Split shuffled row numbers into batches; a last batch of one row joins the previous one.

    Batch normalisation cannot normalise a batch of one row in training mode.
    """
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        last = batches.pop()
        batches[-1] = np.concatenate([batches[-1], last])
    return batches


def train(
    model: CTRModel,
    train_set: CTRDataset,
    valid_set: CTRDataset,
    config: TrainConfig | None = None,
    *,
    show_progress: bool = True,
    on_epoch_end: ProgressCallback | None = None,
) -> TrainResult:
    """Train ``model`` in place and leave it with the weights of its best validation epoch."""
    config = config or TrainConfig()
    if len(train_set) == 0 or len(valid_set) == 0:
        msg = "training needs non-empty training and validation data"
        raise ValueError(msg)
    if len(np.unique(valid_set.labels)) < 2:
        msg = (
            f"the validation data ({valid_set.name or 'unnamed'}) has only one label value, so AUC is undefined "
            "and early stopping cannot work; use a validation split with clicks and non-clicks"
        )
        raise ValueError(msg)
    seed_everything(config.seed)
    optimizer = _optimizer(model, config)
    generator = np.random.default_rng(config.seed)
    labels = torch.from_numpy(train_set.labels)
    best_auc = -np.inf
    best_state = copy.deepcopy(model.state_dict())
    best_epoch = 0
    best_metrics: dict[str, float] = {}
    history: list[dict[str, float]] = []
    epochs_without_gain = 0
    start_time = time.perf_counter()

    for epoch in range(1, config.epochs + 1):
        model.train()
        batches = _batches(generator.permutation(len(train_set)), config.batch_size)
        total_loss = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch}", disable=not show_progress, leave=False)
        for batch in bar:
            rows = np.sort(batch)
            optimizer.zero_grad()
            loss = model.training_loss(train_set.tensors(rows), labels[rows])
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(rows)
            bar.set_postfix(loss=f"{loss.item():.4f}")

        metrics = evaluate(model, valid_set, batch_size=config.eval_batch_size)
        record = {
            "epoch": float(epoch),
            "train_loss": total_loss / len(train_set),
            "valid_auc": metrics["auc"],
            "valid_logloss": metrics["logloss"],
            "learning_rate": optimizer.param_groups[0]["lr"],
        }
        history.append(record)
        logger.info("epoch %d: train loss %.5f, valid AUC %.5f, valid logloss %.5f", epoch,
                    record["train_loss"], metrics["auc"], metrics["logloss"])
        if show_progress:
            tqdm.write(
                f"epoch {epoch}: train loss {record['train_loss']:.5f}  valid AUC {metrics['auc']:.5f}"
                f"  valid logloss {metrics['logloss']:.5f}"
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, config.epochs, record)

        if metrics["auc"] > best_auc:
            best_auc = metrics["auc"]
            best_state = copy.deepcopy(model.state_dict())
            best_epoch = epoch
            best_metrics = metrics
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= config.patience:
                break
            for group in optimizer.param_groups:
                group["lr"] *= 0.1

    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        best_epoch=best_epoch,
        valid_metrics=best_metrics,
        history=history,
        seconds=time.perf_counter() - start_time,
        config=asdict(config),
    )
