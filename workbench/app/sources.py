"""Locations of the model bundles and data files the app offers. This module does not import Streamlit.

Bundles are the folders under ``WORKBENCH_MODELS_DIR`` (default ``<repo>/models``).
Data files are every Parquet, CSV and libfm file under ``WORKBENCH_DATA_DIR``
(default ``<repo>/sample_data``), plus the validation and test files a bundle's
manifest records under ``data.<split>.path`` when those files exist.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.bundle import MANIFEST_NAME, find_bundles

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR_ENV = "WORKBENCH_MODELS_DIR"
DATA_DIR_ENV = "WORKBENCH_DATA_DIR"
DATA_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".libfm", ".libfm.gz")
MANIFEST_SPLITS = ("test", "valid")
"""Splits whose recorded data files are offered, in this order."""


def models_dir() -> Path:
    """Return the folder searched for bundles."""
    return Path(os.environ.get(MODELS_DIR_ENV) or REPO_ROOT / "models").expanduser()


def data_dir() -> Path:
    """Return the folder searched for data files."""
    return Path(os.environ.get(DATA_DIR_ENV) or REPO_ROOT / "sample_data").expanduser()


def bundle_paths(root: Path | None = None) -> list[Path]:
    """Return the bundle folders directly under ``root`` (default: :func:`models_dir`), sorted by name."""
    return [path.resolve() for path in find_bundles(models_dir() if root is None else root)]


def user_path(text: str) -> Path:
    """Turn a path typed by the user into an absolute path (``~`` expanded, relative to the working folder)."""
    return Path(text.strip().strip('"').strip("'")).expanduser().resolve()


def is_data_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(DATA_SUFFIXES)


@dataclass(frozen=True)
class DataOption:
    """A data file the sidebar offers, with the label shown for it."""

    path: Path
    label: str


def data_options(manifest: dict[str, Any] | None, root: Path | None = None) -> list[DataOption]:
    """List the data files to offer for a bundle: its recorded test and validation files first, then ``root``'s.

    ``root`` defaults to :func:`data_dir`. A file recorded in the manifest that
    no longer exists is left out, and a file is offered only once.
    """
    root = data_dir() if root is None else root
    options: list[DataOption] = []
    seen: set[Path] = set()
    recorded = (manifest or {}).get("data") or {}
    for split in MANIFEST_SPLITS:
        entry = recorded.get(split)
        if not isinstance(entry, dict) or not entry.get("path"):
            continue
        path = Path(str(entry["path"])).expanduser()
        if path.is_file() and path.resolve() not in seen:
            seen.add(path.resolve())
            options.append(DataOption(path.resolve(), f"{path.name} (this bundle's {split} split)"))
    if root.is_dir():
        for path in sorted(p for p in root.rglob("*") if is_data_file(p)):
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            options.append(DataOption(path.resolve(), str(path.relative_to(root))))
    return options


def mtime_ns(path: Path) -> int:
    """Return a file's modification time in nanoseconds, or -1 when it does not exist."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def manifest_mtime_ns(bundle_path: Path) -> int:
    """Return the modification time of a bundle's manifest (-1 when missing), used as a cache key."""
    return mtime_ns(bundle_path / MANIFEST_NAME)
