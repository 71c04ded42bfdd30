"""Opt-in loading of files that can run code: pickles, whole pickled torch modules and TorchScript archives.

The workbench reads model weights with safetensors (and elsewhere state dicts
with ``torch.load(weights_only=True)``), which cannot run code. Some formats
of other tools can: unpickling calls any function the file names, and a
TorchScript archive contains the model's code. The loaders here raise
:class:`UnsafeLoadError` unless the caller passes ``allow_code=True`` for that
file, and then warn with :class:`UnsafeLoadWarning` before loading.

:func:`detect_file_kind` recognises a file's format from its bytes without
running anything, so that error messages can name a file's format.
"""

from __future__ import annotations

import json
import pickle
import pickletools
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

PICKLE = "pickle"
TORCH_ARCHIVE = "torch_archive"
TORCHSCRIPT = "torchscript"
SAFETENSORS = "safetensors"
ZIP = "zip"
UNKNOWN = "unknown"

KIND_DESCRIPTIONS = {
    PICKLE: "a Python pickle (loading it can run any code the file names)",
    TORCH_ARCHIVE: "a torch.save zip archive with a pickled data.pkl (loading it whole can run code)",
    TORCHSCRIPT: "a TorchScript archive (it contains code that runs when the model is called)",
    SAFETENSORS: "a safetensors file (tensors only, no code)",
    ZIP: "a zip archive that is neither a torch.save nor a TorchScript archive",
    UNKNOWN: "not a pickle, torch archive, TorchScript archive or safetensors file",
}
"""Description of each kind :func:`detect_file_kind` returns, for error messages."""

PICKLE_SCAN_BYTES = 1 << 20
"""Bytes after which :func:`detect_file_kind` stops parsing pickle opcodes and calls the file a pickle."""

_SAFETENSORS_MAX_HEADER = 100 << 20


class UnsafeLoadError(ValueError):
    """Raised when a file that can run code is loaded without opt-in, or is not of the kind a loader reads."""


class UnsafeLoadWarning(UserWarning):
    """Warned before a file that can run code is loaded with ``allow_code=True``."""


def _is_pickle(path: Path) -> bool:
    """Return True when the file starts with valid pickle opcodes. ``pickletools.genops`` parses and runs nothing.

    Parsing stops at the first STOP opcode, or once :data:`PICKLE_SCAN_BYTES` were read without an invalid opcode.
    """
    with open(path, "rb") as handle:
        try:
            for opcode, _, _ in pickletools.genops(handle):
                if opcode.name == "STOP" or handle.tell() >= PICKLE_SCAN_BYTES:
                    return True
        except (ValueError, EOFError, struct.error, UnicodeDecodeError):
            return False
    return False


def _is_safetensors(path: Path, size: int) -> bool:
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            return False
        (header_size,) = struct.unpack("<Q", prefix)
        if header_size < 2 or header_size > min(size - 8, _SAFETENSORS_MAX_HEADER):
            return False
        header = handle.read(header_size)
    try:
        return isinstance(json.loads(header.decode("utf-8")), dict)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return UNKNOWN
    parts = [name.split("/") for name in names]
    # torch.save and torch.jit.save put everything under one top folder: <name>/data.pkl, <name>/code/...
    if any(len(part) >= 3 and part[1] == "code" for part in parts):
        return TORCHSCRIPT
    if any(part[-1] == "data.pkl" for part in parts):
        return TORCH_ARCHIVE
    return ZIP


def detect_file_kind(path: str | Path) -> str:
    """Recognise a file's format from its bytes, without loading or running it.

    Parameters
    ----------
    path : str or Path
        The file to inspect.

    Returns
    -------
    str
        One of :data:`TORCHSCRIPT` (a zip with ``code/`` entries),
        :data:`TORCH_ARCHIVE` (a zip with ``data.pkl``, as ``torch.save``
        writes), :data:`ZIP` (another zip), :data:`PICKLE` (the start of the
        file parses as pickle opcodes, which includes the legacy
        ``torch.save`` format), :data:`SAFETENSORS` (an 8-byte header length
        followed by a JSON header) or :data:`UNKNOWN`.
        :data:`KIND_DESCRIPTIONS` describes each.

    Raises
    ------
    UnsafeLoadError
        When ``path`` is not an existing file.
    """
    path = _existing_file(path)
    if zipfile.is_zipfile(path):
        return _zip_kind(path)
    size = path.stat().st_size
    if _is_safetensors(path, size):
        return SAFETENSORS
    return PICKLE if _is_pickle(path) else UNKNOWN


def _existing_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        reason = "is a folder" if path.is_dir() else "was not found"
        msg = f"{str(path)!r} {reason}; give the path of a file"
        raise UnsafeLoadError(msg)
    return path


def _check_opt_in(path: Path, kind: str, expected: tuple[str, ...], loader: str, allow_code: bool) -> None:
    """Raise unless ``kind`` is one ``loader`` reads and the caller opted in; warn when it did."""
    if kind not in expected:
        msg = (
            f"{loader}: {str(path)!r} is {KIND_DESCRIPTIONS[kind]}, "
            f"not {' or '.join(KIND_DESCRIPTIONS[name].split(' (')[0] for name in expected)}"
        )
        raise UnsafeLoadError(msg)
    if not allow_code:
        msg = (
            f"{loader}: did not load {str(path)!r}, which is {KIND_DESCRIPTIONS[kind]}. Loading it can run "
            "code from the file. If you trust where it came from, pass allow_code=True to load it."
        )
        raise UnsafeLoadError(msg)
    warnings.warn(
        f"loading {str(path)!r} ({KIND_DESCRIPTIONS[kind]}) with allow_code=True: it can run code from the file",
        UnsafeLoadWarning,
        stacklevel=3,
    )


def load_pickle(path: str | Path, *, allow_code: bool = False) -> Any:
    """Unpickle a file, only when the caller opts in for it.

    Parameters
    ----------
    path : str or Path
        A pickle file.
    allow_code : bool
        Load the file. Unpickling calls any function the file names, so pass
        True only for a file from a source you trust.

    Returns
    -------
    object
        The unpickled object.

    Raises
    ------
    UnsafeLoadError
        When ``allow_code`` is False, or the file is not a pickle (its kind is
        named in the message).

    Warns
    -----
    UnsafeLoadWarning
        Before loading, with the file's path.
    """
    path = _existing_file(path)
    _check_opt_in(path, detect_file_kind(path), (PICKLE,), "load_pickle", allow_code)
    with open(path, "rb") as handle:
        return pickle.load(handle)  # noqa: S301 - the caller opted in for this file


def load_torch_module(path: str | Path, *, allow_code: bool = False) -> Any:
    """Load a whole pickled ``torch.nn.Module`` (``torch.save(model)``) to the CPU, only when the caller opts in.

    Parameters
    ----------
    path : str or Path
        A file written by ``torch.save`` with a module object, as a zip archive
        or in the legacy pickle format.
    allow_code : bool
        Load the file with ``torch.load(weights_only=False)``, which unpickles
        it. Pass True only for a file from a source you trust.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    UnsafeLoadError
        When ``allow_code`` is False, the file is of another kind (named in
        the message), or it contains something other than a module.

    Warns
    -----
    UnsafeLoadWarning
        Before loading, with the file's path.
    """
    import torch

    path = _existing_file(path)
    _check_opt_in(path, detect_file_kind(path), (TORCH_ARCHIVE, PICKLE), "load_torch_module", allow_code)
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(loaded, torch.nn.Module):
        msg = (
            f"load_torch_module: {str(path)!r} contains a {type(loaded).__name__}, not a torch.nn.Module; "
            "a state dict loads with torch.load(weights_only=True)"
        )
        raise UnsafeLoadError(msg)
    return loaded


def load_torchscript(path: str | Path, *, allow_code: bool = False) -> Any:
    """Load a TorchScript archive (``torch.jit.save``) to the CPU, only when the caller opts in.

    Parameters
    ----------
    path : str or Path
        A TorchScript archive.
    allow_code : bool
        Load the archive. Its code runs whenever the module is called, so pass
        True only for a file from a source you trust.

    Returns
    -------
    torch.jit.ScriptModule

    Raises
    ------
    UnsafeLoadError
        When ``allow_code`` is False, or the file is not a TorchScript archive
        (its kind is named in the message).

    Warns
    -----
    UnsafeLoadWarning
        Before loading, with the file's path.
    """
    import torch

    path = _existing_file(path)
    _check_opt_in(path, detect_file_kind(path), (TORCHSCRIPT,), "load_torchscript", allow_code)
    return torch.jit.load(str(path), map_location="cpu")
