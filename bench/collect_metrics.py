"""Print a Markdown table of the metrics stored in bundle manifests.

Each argument is a bundle folder (one with ``manifest.json``) or a folder whose
subfolders are bundles. The table has one row per bundle with validation and
test AUC / log loss, the best epoch, the training time and the main training
settings, all read from ``manifest.json`` as ``workbench train`` wrote it.

Usage: python bench/collect_metrics.py runs/frappe [more folders ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"

COLUMNS = (
    "bundle",
    "arch",
    "valid AUC",
    "valid logloss",
    "test AUC",
    "test logloss",
    "best epoch",
    "epochs run",
    "train s",
    "settings",
    "size MB",
)


def find_bundles(paths: list[Path]) -> list[Path]:
    """Return the bundle folders given directly or found one level below each path."""
    bundles = []
    for path in paths:
        if (path / MANIFEST_NAME).is_file():
            bundles.append(path)
        elif path.is_dir():
            bundles.extend(sorted(child for child in path.iterdir() if (child / MANIFEST_NAME).is_file()))
        else:
            print(f"warning: {str(path)!r} is neither a bundle nor a folder of bundles; skipped", file=sys.stderr)
    return bundles


def format_metric(metrics: dict[str, Any], split: str, key: str) -> str:
    value = metrics.get(split, {}).get(key)
    return "–" if value is None else f"{value:.4f}"


def describe_settings(manifest: dict[str, Any]) -> str:
    """Summarise the hyper-parameters and optimiser settings that were tuned."""
    hyper = manifest.get("hyperparameters", {})
    config = manifest.get("training", {}).get("config", {})
    parts = [f"emb {hyper.get('embedding_dim', '?')}"]
    if "hidden_units" in hyper:
        parts.append("dnn " + ",".join(str(units) for units in hyper["hidden_units"]))
        parts.append(f"dropout {hyper.get('dropout')}")
        parts.append("bn" if hyper.get("batch_norm") else "no bn")
    parts.append(f"emb_reg {config.get('embedding_regularizer')}")
    if config.get("net_regularizer"):
        parts.append(f"net_reg {config['net_regularizer']}")
    parts.append(f"batch {config.get('batch_size')}")
    parts.append(f"lr {config.get('learning_rate')}")
    return ", ".join(parts)


def bundle_row(path: Path) -> list[str]:
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    metrics = manifest.get("metrics", {})
    training = manifest.get("training", {})
    size_bytes = sum(child.stat().st_size for child in path.iterdir() if child.is_file())
    return [
        path.name,
        str(manifest.get("architecture", "?")),
        format_metric(metrics, "valid", "auc"),
        format_metric(metrics, "valid", "logloss"),
        format_metric(metrics, "test", "auc"),
        format_metric(metrics, "test", "logloss"),
        str(training.get("best_epoch", "–")),
        str(len(training.get("history", []))),
        f"{training.get('seconds', float('nan')):.0f}",
        describe_settings(manifest),
        f"{size_bytes / 1e6:.2f}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="bundle folders, or folders of bundle folders")
    args = parser.parse_args(argv)

    bundles = find_bundles(args.paths)
    if not bundles:
        print("error: no bundle folders (with manifest.json) found in the given paths", file=sys.stderr)
        return 2

    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for path in bundles:
        print("| " + " | ".join(bundle_row(path)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
