"""Provenance of an analysis result: which model, which data, which method and which library versions.

:func:`provenance` returns a flat, JSON-safe dict that a report section keeps
next to its figure and tables. From it, a reader of an exported report can tell
which bundle (by SHA-256 fingerprint), data file, rows and explainer settings
produced the numbers. The module imports neither Streamlit
nor the app.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bundle import MANIFEST_NAME, WEIGHTS_NAME, Bundle, json_safe, library_versions
from workbench.data import CTRDataset

REPORT_LIBRARIES = ("plotly", "streamlit")
"""Libraries that draw or serve the figures; their versions are recorded next to :func:`~workbench.bundle.library_versions`."""

_BLOCK_BYTES = 1 << 20


class ProvenanceError(ValueError):
    """Raised when a provenance record cannot be built from the given values."""


@lru_cache(maxsize=64)
def _cached_fingerprint(paths: tuple[str, ...], stamps: tuple[tuple[int, int], ...]) -> str:
    """Return the SHA-256 of the files' bytes read one after another.

    ``stamps`` (size and modification time of each file) is part of the cache
    key only, so a file that changes on disk is hashed again.
    """
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(_BLOCK_BYTES), b""):
                digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return (status.st_size, status.st_mtime_ns)


def bundle_fingerprint(bundle: Bundle) -> str:
    """Return the SHA-256 (hex) of a bundle's manifest bytes followed by its weights bytes.

    Parameters
    ----------
    bundle : Bundle
        A loaded bundle; its files are read from ``bundle.path``.

    Returns
    -------
    str
        64 hexadecimal digits. Two bundle folders with byte-identical
        ``manifest.json`` and ``weights.safetensors`` get the same fingerprint.

    Raises
    ------
    ProvenanceError
        When the bundle folder no longer contains one of the two files.
    """
    folder = Path(bundle.path)
    paths = (folder / MANIFEST_NAME, folder / WEIGHTS_NAME)
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        msg = (
            f"bundle folder {str(folder)!r} has no {' or '.join(missing)}; "
            "it was moved or deleted after loading, so load the bundle again"
        )
        raise ProvenanceError(msg)
    return _cached_fingerprint(tuple(str(path) for path in paths), tuple(_stamp(path) for path in paths))


def _data_fingerprint(source: str) -> str | None:
    """Return the SHA-256 of a data file, or None when ``source`` names no existing file."""
    if not source or not os.path.isfile(source):
        return None
    path = Path(source)
    # Same digest as workbench.data.file_fingerprint, cached by size and modification time.
    return _cached_fingerprint((str(path),), (_stamp(path),))


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def report_library_versions() -> dict[str, str]:
    """Return :func:`workbench.bundle.library_versions` plus the plotly and Streamlit versions.

    Versions are read from the installed package metadata, so Streamlit is not imported.
    """
    versions = dict(library_versions())
    for name in REPORT_LIBRARIES:
        versions[name] = _package_version(name)
    return versions


def _plain(value: Any, where: str) -> Any:
    """Convert numpy scalars and arrays, paths and tuples to JSON types; reject other objects."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                msg = f"{where} has a key {key!r} of type {type(key).__name__}; keys must be strings"
                raise ProvenanceError(msg)
            plain[key] = _plain(item, f"{where}[{key!r}]")
        return plain
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(item, f"{where}[{index}]") for index, item in enumerate(items)]
    msg = (
        f"{where} is a {type(value).__name__}, which a JSON provenance record cannot hold; "
        "pass numbers, strings, booleans, None, lists or dicts"
    )
    raise ProvenanceError(msg)


def _check_dict(value: Any, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        msg = f"{name} must be a dict or None; got {type(value).__name__}"
        raise ProvenanceError(msg)
    return _plain(value, name)


def _check_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"{name} must be a string or None; got {value!r} of type {type(value).__name__}"
        raise ProvenanceError(msg)
    return value


def provenance(
    bundle: Bundle,
    dataset: CTRDataset,
    *,
    cohort: dict[str, Any] | None = None,
    method: str | None = None,
    baseline: str | None = None,
    output_space: str | None = None,
    parameters: dict[str, Any] | None = None,
    rows: int | None = None,
) -> dict[str, Any]:
    """Build the provenance record of one analysis result.

    Parameters
    ----------
    bundle : Bundle
        The model bundle that produced the result.
    dataset : CTRDataset
        The encoded data the result was computed on; ``dataset.source`` is its file.
    cohort : dict or None, default=None
        The row filter that selected the analysed rows (for example
        ``{"device": "mobile"}``). None means all rows of the data.
    method, baseline, output_space : str or None, default=None
        Explainer name, baseline name and output space (``"logit"`` or
        ``"probability"``) of the result, where they apply.
    parameters : dict or None, default=None
        Further settings of the analysis (budget, seed, number of steps).
    rows : int or None, default=None
        Number of rows the result covers.

    Returns
    -------
    dict
        JSON-safe (no NaN, only str keys). The keys are ``bundle_name``,
        ``bundle_architecture``, ``bundle_path``, ``bundle_fingerprint``
        (:func:`bundle_fingerprint`, None when the bundle files are gone),
        ``data_name``, ``data_path`` (None for data not read from a file),
        ``data_fingerprint`` (SHA-256 of the data file, None when the file does
        not exist), ``data_rows``, ``cohort``, ``rows``, ``method``,
        ``baseline``, ``output_space``, ``parameters``, ``library_versions``
        (package name → version) and ``created`` (UTC, ISO 8601).

    Raises
    ------
    ProvenanceError
        When an option has the wrong type or holds a value JSON cannot hold.
    """
    if rows is not None and (isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 0):
        msg = f"rows must be a non-negative integer or None; got {rows!r}"
        raise ProvenanceError(msg)
    try:
        fingerprint = bundle_fingerprint(bundle)
    except ProvenanceError:
        fingerprint = None
    source = str(dataset.source or "")
    record = {
        "bundle_name": bundle.name,
        "bundle_architecture": bundle.architecture,
        "bundle_path": str(bundle.path),
        "bundle_fingerprint": fingerprint,
        "data_name": dataset.name or (Path(source).name if source else None),
        "data_path": source or None,
        "data_fingerprint": _data_fingerprint(source),
        "data_rows": len(dataset),
        "cohort": _check_dict(cohort, "cohort"),
        "rows": None if rows is None else int(rows),
        "method": _check_text(method, "method"),
        "baseline": _check_text(baseline, "baseline"),
        "output_space": _check_text(output_space, "output_space"),
        "parameters": _check_dict(parameters, "parameters"),
        "library_versions": report_library_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return json_safe(record)

