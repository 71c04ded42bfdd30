"""An on-disk cache of expensive results (attributions, interaction maps), keyed by content hashes.

A result is found by its *slot* and checked against its *key*:

* The slot is the SHA-256 of the result kind, the bundle folder and data file
  paths and the canonical JSON of every parameter. It names the entry's files,
  so one bundle, data file and set of parameters has one entry.
* The key is the SHA-256 of the slot's inputs, the versions of the workbench,
  torch and numpy, and the SHA-256 of the content of each input file. These
  files are the bundle's ``manifest.json`` and ``weights.safetensors``, the
  data file and any other file that shapes the result, such as a libfm
  feature map.

An entry is two files in the cache folder: ``<slot>.npz`` with the arrays
(read with ``allow_pickle=False``) and ``<slot>.json`` with the key, the
result's structure and the SHA-256 of both (``payload_sha256``). Each file is
written to a temporary file and renamed, the JSON file last. On read, a missing
file, invalid JSON, a checksum that differs (a truncated or edited file, or the
two files of two different writes) or a key that differs (the model, the data
or a library changed) makes the entry invalid: it is ignored with a
:class:`ResultCacheWarning`, the result is computed again and replaces it.

Nothing is unpickled. Results are rebuilt only from the dataclasses listed in
:data:`RESULT_TYPES`, with numpy arrays, pandas frames of strings or numbers,
and plain JSON values.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from workbench.bundle import MANIFEST_NAME, WEIGHTS_NAME, library_versions
from workbench.data import file_fingerprint
from workbench.explain.exact import ExactResult
from workbench.explain.interaction import Interaction
from workbench.explain.result import Attribution

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "WORKBENCH_CACHE_DIR"
"""Environment variable that names the app's result cache folder. The app caches nothing on disk when it is unset."""

ENTRY_FORMAT = 1
"""Version of the entry layout. An entry of another version is invalid and computed again."""

KEY_LIBRARIES = ("workbench", "torch", "numpy")
"""Libraries whose versions are part of the key, because a new version can change the numbers."""

RESULT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (Attribution, Interaction, ExactResult)}
"""The dataclasses an entry may contain. Decoding builds no other class."""

T = TypeVar("T")


class ResultCacheError(ValueError):
    """Raised when a cache folder cannot be used or a value cannot be stored without pickle."""


class ResultCacheWarning(UserWarning):
    """Warned when a cache entry is missing a file, corrupted or stale and is computed again, or cannot be written."""


@dataclass(frozen=True)
class CacheKey:
    """A result's storage name (``slot``) and the content hash its entry must record (``key``), both SHA-256 hex."""

    slot: str
    key: str
    kind: str


def _canonical_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        msg = f"result cache: {what} must be plain JSON values (str, int, finite float, bool, None, list, dict): {err}"
        raise ResultCacheError(msg) from err


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_hash(path: Path, what: str) -> str:
    try:
        return file_fingerprint(path)
    except OSError as err:
        msg = f"result cache: cannot read the {what} {str(path)!r} to hash it: {err}"
        raise ResultCacheError(msg) from err


def result_key(
    kind: str,
    *,
    bundle: str | Path,
    data: str | Path,
    parameters: Mapping[str, Any],
    extra_files: Sequence[str | Path] = (),
) -> CacheKey:
    """Compute the slot and the content key of a result.

    Parameters
    ----------
    kind : str
        What the result is, such as ``"cli.explain"``; results of different
        kinds never share an entry.
    bundle : str or Path
        Bundle folder. Its ``manifest.json`` and ``weights.safetensors`` bytes
        are hashed every time, so a changed byte always gives a new key.
    data : str or Path
        Data file the result was computed on. Its bytes are hashed every time.
    parameters : Mapping
        Every choice that shapes the result (method, baseline, rows, output
        space, budget, seed, cohort...), as plain JSON values.
    extra_files : sequence of str or Path
        Other files whose content shapes the result, such as a libfm feature map.

    Returns
    -------
    CacheKey

    Raises
    ------
    ResultCacheError
        When ``parameters`` are not plain JSON values, or a file cannot be read.
    """
    bundle_path = Path(bundle).expanduser().resolve()
    data_path = Path(data).expanduser().resolve()
    extra_paths = [Path(path).expanduser().resolve() for path in extra_files]
    where = {
        "kind": kind,
        "bundle": str(bundle_path),
        "data": str(data_path),
        "extra_files": [str(path) for path in extra_paths],
        "parameters": parameters,
    }
    slot_text = _canonical_json(where, "the parameters")
    versions = library_versions()
    content = {
        "slot": slot_text,
        "manifest_sha256": _file_hash(bundle_path / MANIFEST_NAME, "bundle manifest"),
        "weights_sha256": _file_hash(bundle_path / WEIGHTS_NAME, "bundle weights"),
        "data_sha256": _file_hash(data_path, "data file"),
        "extra_sha256": [_file_hash(path, "file") for path in extra_paths],
        "versions": {name: versions[name] for name in KEY_LIBRARIES},
    }
    return CacheKey(slot=_sha256_text(slot_text), key=_sha256_text(_canonical_json(content, "the key")), kind=kind)


# --- encoding without pickle ------------------------------------------------------------------------


class _Encoder:
    """Turn a result into a JSON tree and a dict of numpy arrays, and back."""

    def __init__(self, arrays: dict[str, np.ndarray] | None = None) -> None:
        self.arrays: dict[str, np.ndarray] = {} if arrays is None else arrays

    def _add_array(self, array: np.ndarray) -> str:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = array
        return name

    def encode(self, value: Any) -> Any:  # noqa: PLR0911 - one branch per supported type
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, np.generic):
            return {"$scalar": value.dtype.str, "value": self.encode(value.item())}
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, np.ndarray):
            return self._encode_array(value)
        if isinstance(value, (list, tuple)):
            items = [self.encode(item) for item in value]
            return items if isinstance(value, list) else {"$tuple": items}
        if isinstance(value, dict):
            return {"$dict": [[self.encode(k), self.encode(v)] for k, v in value.items()]}
        if isinstance(value, pd.DataFrame):
            return self._encode_frame(value)
        if dataclasses.is_dataclass(value) and RESULT_TYPES.get(type(value).__name__) is type(value):
            fields = {field.name: self.encode(getattr(value, field.name)) for field in dataclasses.fields(value)}
            return {"$dataclass": type(value).__name__, "fields": fields}
        msg = f"result cache: cannot store a value of type {type(value).__name__} without pickle"
        raise ResultCacheError(msg)

    def _encode_array(self, array: np.ndarray) -> dict[str, Any]:
        if array.dtype.hasobject:
            if not all(isinstance(item, str) for item in array.reshape(-1)):
                msg = "result cache: cannot store an object array whose items are not all strings"
                raise ResultCacheError(msg)
            return {"$object_strings": self._add_array(array.astype(str))}
        return {"$array": self._add_array(array)}

    def _encode_frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        if not all(isinstance(name, str) for name in frame.columns):
            msg = "result cache: cannot store a frame whose column names are not all strings"
            raise ResultCacheError(msg)
        index = frame.index
        plain_index = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
        columns = []
        for name in frame.columns:
            column = frame[name]
            missing = column.isna().to_numpy()
            if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
                values = self._encode_array(column.to_numpy())
            else:
                texts = column.astype(object).where(~missing, "").to_numpy()
                values = self._encode_array(np.asarray([str(item) for item in texts], dtype=str))
            columns.append(
                {"name": name, "dtype": str(column.dtype), "values": values, "missing": self._encode_array(missing)}
            )
        return {
            "$frame": columns,
            "index": None if plain_index else self._encode_array(index.to_numpy()),
            "n_rows": len(frame),
        }

    def decode(self, tree: Any) -> Any:  # noqa: PLR0911 - one branch per supported tag
        if tree is None or isinstance(tree, (bool, int, float, str)):
            return tree
        if isinstance(tree, list):
            return [self.decode(item) for item in tree]
        if not isinstance(tree, dict) or len(tree) == 0:
            msg = f"unexpected JSON value {tree!r}"
            raise ValueError(msg)
        if "$scalar" in tree:
            return np.dtype(str(tree["$scalar"])).type(self.decode(tree["value"]))
        if "$float" in tree:
            return float(str(tree["$float"]))
        if "$array" in tree:
            return self._array(tree["$array"])
        if "$object_strings" in tree:
            return self._array(tree["$object_strings"]).astype(object)
        if "$tuple" in tree:
            return tuple(self.decode(item) for item in tree["$tuple"])
        if "$dict" in tree:
            return {self.decode(k): self.decode(v) for k, v in tree["$dict"]}
        if "$frame" in tree:
            return self._decode_frame(tree)
        if "$dataclass" in tree:
            cls = RESULT_TYPES.get(str(tree["$dataclass"]))
            if cls is None:
                msg = f"unknown result type {tree['$dataclass']!r}"
                raise ValueError(msg)
            return cls(**{str(name): self.decode(value) for name, value in tree["fields"].items()})
        msg = f"unexpected JSON object with keys {sorted(tree)}"
        raise ValueError(msg)

    def _array(self, name: Any) -> np.ndarray:
        if name not in self.arrays:
            msg = f"the arrays file has no array {name!r}"
            raise ValueError(msg)
        return self.arrays[name]

    def _decode_frame(self, tree: dict[str, Any]) -> pd.DataFrame:
        data = {}
        for column in tree["$frame"]:
            values = self.decode(column["values"])
            missing = self.decode(column["missing"]).astype(bool)
            dtype = str(column["dtype"])
            if values.dtype.kind == "U":
                series = pd.Series(values.astype(object))
                series[missing] = None
                data[column["name"]] = series.astype(dtype)
            else:
                data[column["name"]] = pd.Series(values).astype(dtype)
        index = None if tree["index"] is None else self.decode(tree["index"])
        frame = pd.DataFrame(data, index=pd.RangeIndex(int(tree["n_rows"])) if index is None else None)
        if index is not None:
            frame.index = index
        return frame


def _payload_sha256(tree_text: str, npz_bytes: bytes) -> str:
    digest = hashlib.sha256(tree_text.encode("utf-8"))
    digest.update(b"\0")
    digest.update(npz_bytes)
    return digest.hexdigest()


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file next to ``path``, flush it to disk and rename it onto ``path``."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class ResultCache:
    """A folder of cached results. See the module docstring for the layout and the checks.

    Parameters
    ----------
    folder : str or Path
        The cache folder. It is created (with its parents) when missing.

    Raises
    ------
    ResultCacheError
        When ``folder`` exists but is not a folder, or cannot be created.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser().resolve()
        if self.folder.exists() and not self.folder.is_dir():
            msg = f"result cache folder {str(self.folder)!r} is a file; give the path of a folder"
            raise ResultCacheError(msg)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            msg = f"cannot create the result cache folder {str(self.folder)!r}: {err}"
            raise ResultCacheError(msg) from err

    def entry_paths(self, key: CacheKey) -> tuple[Path, Path]:
        """Return the JSON file and the arrays file of ``key``'s entry."""
        return self.folder / f"{key.slot}.json", self.folder / f"{key.slot}.npz"

    def load(self, key: CacheKey) -> Any | None:
        """Return the stored result of ``key``, or None after a warning when its entry is missing a file or invalid.

        No warning is given when neither file exists (a plain miss).
        """
        json_path, npz_path = self.entry_paths(key)
        if not json_path.exists() and not npz_path.exists():
            return None
        try:
            return self._read(key, json_path, npz_path)
        # A valid checksum over hand-made content can still fail to decode, hence the wide list.
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, EOFError, zipfile.BadZipFile) as err:
            message = (
                f"result cache entry {str(json_path.with_suffix(''))!r} (its .json and .npz files) is not used and "
                f"will be computed again: {err}"
            )
            warnings.warn(message, ResultCacheWarning, stacklevel=3)
            logger.warning(message)
            return None

    def _read(self, key: CacheKey, json_path: Path, npz_path: Path) -> Any:
        try:
            entry = json.loads(json_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            msg = f"the metadata file {json_path.name} is missing"
            raise ValueError(msg) from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            msg = f"the metadata file is not valid JSON ({err})"
            raise ValueError(msg) from err
        if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
            msg = f"the metadata file is not a format {ENTRY_FORMAT} entry"
            raise ValueError(msg)
        if entry.get("kind") != key.kind or entry.get("key") != key.key:
            msg = "the entry is stale: its key differs, so the model, the data file, another input file or a library changed"
            raise ValueError(msg)
        try:
            npz_bytes = npz_path.read_bytes()
        except FileNotFoundError:
            msg = f"the arrays file {npz_path.name} is missing"
            raise ValueError(msg) from None
        tree_text = _canonical_json(entry.get("tree"), "the stored structure")
        if _payload_sha256(tree_text, npz_bytes) != entry.get("payload_sha256"):
            msg = "the checksum differs: a file is truncated or was changed after it was written"
            raise ValueError(msg)
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        return _Encoder(arrays).decode(entry["tree"])

    def store(self, key: CacheKey, value: Any) -> Path:
        """Write ``value`` as ``key``'s entry, replacing any entry in its slot, and return the JSON file's path.

        Raises
        ------
        ResultCacheError
            When ``value`` contains a type that cannot be stored without pickle.
        OSError
            When a file cannot be written.
        """
        encoder = _Encoder()
        tree = encoder.encode(value)
        buffer = io.BytesIO()
        np.savez(buffer, **encoder.arrays)
        npz_bytes = buffer.getvalue()
        tree_text = _canonical_json(tree, "the stored structure")
        entry = {
            "format": ENTRY_FORMAT,
            "kind": key.kind,
            "key": key.key,
            "payload_sha256": _payload_sha256(tree_text, npz_bytes),
            "tree": tree,
        }
        json_path, npz_path = self.entry_paths(key)
        # The arrays go first and the JSON file last. A reader that sees the new arrays with the
        # previous JSON file finds a checksum that differs and computes the result again.
        _write_atomically(npz_path, npz_bytes)
        _write_atomically(json_path, json.dumps(entry, ensure_ascii=False).encode("utf-8"))
        return json_path

    def get_or_compute(self, key: CacheKey, compute: Callable[[], T]) -> T:
        """Return ``key``'s stored result, or call ``compute``, store what it returns and return it.

        A result that cannot be stored (a type without a pickle-free encoding, a
        full disk) is returned all the same, after a :class:`ResultCacheWarning`.
        """
        cached = self.load(key)
        if cached is not None:
            logger.info("result cache hit: %s", key.slot)
            return cached
        value = compute()
        try:
            self.store(key, value)
        except (ResultCacheError, OSError) as err:
            message = f"could not store the result in the cache folder {str(self.folder)!r}: {err}"
            warnings.warn(message, ResultCacheWarning, stacklevel=2)
            logger.warning(message)
        return value


def cache_from_environment() -> ResultCache | None:
    """Return the cache in the folder :data:`CACHE_DIR_ENV` names, or None when the variable is unset or empty."""
    folder = os.environ.get(CACHE_DIR_ENV, "").strip()
    return ResultCache(folder) if folder else None
