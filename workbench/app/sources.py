"""Locations of the model bundles and data files the app offers. This module does not import Streamlit.

Bundles are the folders under ``WORKBENCH_MODELS_DIR`` (default ``<repo>/models``).
Data files are every Parquet, CSV and libfm file under ``WORKBENCH_DATA_DIR``
(default ``<repo>/sample_data``), plus the validation and test files a bundle's
manifest records under ``data.<split>.path`` when those files exist.

Paths typed in the sidebar or given in the URL are checked by
:func:`check_user_path`: they must lie, after ``~`` expansion and resolving
``..`` and links, under one of :func:`allowed_roots`. These are the working
folder, the bundle and data folders above and the folders listed in
``WORKBENCH_ALLOWED_ROOTS``.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from workbench.bundle import MANIFEST_NAME, find_bundles

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR_ENV = "WORKBENCH_MODELS_DIR"
DATA_DIR_ENV = "WORKBENCH_DATA_DIR"
DATA_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".libfm", ".libfm.gz")
MANIFEST_SPLITS = ("test", "valid")
"""Splits whose recorded data files are offered, in this order."""
ALLOWED_ROOTS_ENV = "WORKBENCH_ALLOWED_ROOTS"
"""Environment variable with more folders (separated by ``os.pathsep``) whose paths the app may open."""


class UserPathError(ValueError):
    """Raised when a path typed in the app or given in its URL is outside the allowed folders, missing or of the wrong type."""


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


def allowed_roots() -> list[Path]:
    """Return the resolved folders under which typed and URL paths may lie, without duplicates.

    They are the working folder, :func:`models_dir`, :func:`data_dir` and each
    folder listed in :data:`ALLOWED_ROOTS_ENV`.
    """
    listed = [part.strip() for part in os.environ.get(ALLOWED_ROOTS_ENV, "").split(os.pathsep)]
    candidates = [Path.cwd(), models_dir(), data_dir(), *(Path(part) for part in listed if part)]
    roots: list[Path] = []
    for candidate in candidates:
        root = candidate.expanduser().resolve()
        if root not in roots:
            roots.append(root)
    return roots


def check_user_path(text: str, *, expect: Literal["folder", "file"], also_allowed: Collection[Path] = ()) -> Path:
    """Resolve a path typed in the app or given in its URL, and check it before anything reads it.

    Parameters
    ----------
    text : str
        The path as typed. Surrounding spaces and quotes are removed, ``~`` is
        expanded, a relative path is taken from the working folder, and ``..``
        and symbolic links are resolved.
    expect : {"folder", "file"}
        ``"folder"`` for a bundle folder, ``"file"`` for a data file.
    also_allowed : collection of Path
        Resolved paths that are allowed outside the roots, such as the data
        files that a listed bundle's manifest records.

    Returns
    -------
    Path
        The resolved path.

    Raises
    ------
    UserPathError
        When the resolved path is under none of :func:`allowed_roots` (checked
        first, so the message does not tell whether a path outside exists), does
        not exist, or is a file where a folder is expected or the reverse. The
        message names the path and the fix.
    """
    path = user_path(text)
    shown = f"`{text.strip()}`" if str(path) == text.strip() else f"`{text.strip()}` (resolved to `{path}`)"
    roots = allowed_roots()
    if path not in also_allowed and not any(path.is_relative_to(root) for root in roots):
        msg = (
            f"The path {shown} is outside the folders this app may open: "
            f"{', '.join(f'`{root}`' for root in roots)}. To open it, start the app with "
            f"`workbench serve --allow-root FOLDER`, or add FOLDER to the {ALLOWED_ROOTS_ENV} environment "
            f"variable (folders separated by `{os.pathsep}`) before starting it."
        )
        raise UserPathError(msg)
    if not path.exists():
        if expect == "folder":
            msg = f"Bundle folder not found: {shown}. Type the path of a folder that contains {MANIFEST_NAME} and weights.safetensors."
        else:
            msg = f"Data file not found: {shown}. Type the path of an existing Parquet, CSV or libfm file."
        raise UserPathError(msg)
    if expect == "folder" and not path.is_dir():
        msg = (
            f"The path {shown} is a file, but a bundle is a folder. Type the path of the folder that "
            f"contains {MANIFEST_NAME} and weights.safetensors."
        )
        raise UserPathError(msg)
    if expect == "file" and not path.is_file():
        msg = f"The path {shown} is a folder. Type the path of a Parquet, CSV or libfm file."
        raise UserPathError(msg)
    return path


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
