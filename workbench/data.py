"""Data readers (CSV, Parquet, libfm) and the encoded data set the models consume.

``read_frame`` turns a file into a pandas frame of raw values, one column per
field plus the label. ``encode`` turns such a frame into a :class:`CTRDataset`
with model inputs per field, labels in {0, 1} and the per-field OOV counts.

libfm rows look like ``label token token ...`` with labels -1/0/1. A token is
either ``field:index:value`` (libffm style) or ``index:value``. Indices are
named through a feature map, a TSV file with the columns ``index``, ``field``
and ``raw_value`` (Frappe ships one as ``feature_map.tsv``). Without a feature
map the raw value of a token is its index. Two-part tokens then name no field,
so the reader stops with an error.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench.schema import Field, Schema, SchemaError, _check_columns, decode_value, encode_field

LIBFM_SUFFIXES = (".libfm", ".libsvm", ".libffm", ".svm")
FEATURE_MAP_NAME = "feature_map.tsv"
MAX_DATA_MB_ENV = "WORKBENCH_MAX_DATA_MB"
"""Environment variable with the largest data file, in MB, that ``read_frame`` reads whole."""
DEFAULT_MAX_DATA_MB = 2048.0
MISSING_MARKERS = frozenset({"", "nan", "na", "n/a", "null", "none"})
"""Cell texts that a numeric field reads as missing (compared in lower case)."""


class DataError(ValueError):
    """Raised when a data file cannot be read or does not match its schema."""


def data_format(path: str | Path) -> str:
    """Return ``csv``, ``parquet`` or ``libfm`` from a file name (``.gz`` allowed)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    if name.endswith(LIBFM_SUFFIXES):
        return "libfm"
    msg = (
        f"cannot tell the format of {str(path)!r} from its name; "
        "use .csv, .tsv, .parquet or .libfm (optionally with .gz)"
    )
    raise DataError(msg)


def read_frame(
    path: str | Path,
    *,
    feature_map: str | Path | None = None,
    label: str = "label",
    max_rows: int | None = None,
) -> pd.DataFrame:
    """Read a CSV, Parquet or libfm file into a frame of raw values.

    For libfm files the label column is named ``label`` and mapped to {0, 1};
    ``feature_map`` defaults to ``feature_map.tsv`` next to the file when present.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"data file not found: {str(path)!r}"
        raise DataError(msg)
    kind = data_format(path)
    _check_size(path, kind, max_rows)
    if kind in ("csv", "libfm"):
        _check_text(path, kind)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
            if max_rows is not None:
                frame = frame.iloc[:max_rows]
        elif kind == "csv":
            sep = "\t" if path.name.lower().removesuffix(".gz").endswith(".tsv") else ","
            frame = pd.read_csv(path, sep=sep, nrows=max_rows, dtype=str, keep_default_na=False)
            frame = frame.replace({"": None})
            _check_delimiter(path, frame, sep)
        else:
            if feature_map is None and (path.parent / FEATURE_MAP_NAME).is_file():
                feature_map = path.parent / FEATURE_MAP_NAME
            frame = read_libfm(path, feature_map=feature_map, max_rows=max_rows)
    except UnicodeDecodeError as err:
        raise DataError(_not_utf8_message(path)) from err
    except (OSError, ValueError, EOFError, zlib.error) as err:
        # EOFError and zlib.error: a .gz file that is cut short or corrupt.
        if isinstance(err, DataError):
            raise
        msg = f"could not read {str(path)!r} as {kind}: {err}"
        raise DataError(msg) from err
    return frame.reset_index(drop=True)


def max_data_mb() -> float:
    """Return the size limit for data files in MB: ``WORKBENCH_MAX_DATA_MB``, or 2048 when it is unset."""
    text = os.environ.get(MAX_DATA_MB_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_DATA_MB
    try:
        limit = float(text)
    except ValueError:
        limit = float("nan")
    if not limit > 0 or limit == float("inf"):
        msg = f"{MAX_DATA_MB_ENV} must be a positive number of MB such as 2048; got {text!r}"
        raise DataError(msg)
    return limit


def _check_size(path: Path, kind: str, max_rows: int | None) -> None:
    """Reject a file above the size limit before reading it, unless only its first rows are read."""
    if max_rows is not None and kind in ("csv", "libfm"):
        # pandas and read_libfm stop after max_rows rows of CSV or libfm, so the file size does not matter.
        return
    limit = max_data_mb()
    size_mb = path.stat().st_size / 1e6
    if size_mb <= limit:
        return
    if kind == "parquet":
        advice = "split it into smaller Parquet files"
    else:
        advice = "read only its first rows (--max-rows on the command line, Rows to load in the app)"
    msg = (
        f"{str(path)!r} is {size_mb:,.1f} MB, above the limit of {limit:,.6g} MB; {advice}, "
        f"or raise the limit with {MAX_DATA_MB_ENV}=<MB>"
    )
    raise DataError(msg)


def _check_text(path: Path, kind: str) -> None:
    """Reject an empty file and a UTF-16 or UTF-32 text file, which pandas would misread."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(4)
    except (OSError, EOFError, zlib.error) as err:
        msg = f"could not read {str(path)!r} as {kind}: {err}"
        raise DataError(msg) from err
    if not head:
        msg = f"{str(path)!r} is empty (0 bytes); choose a {kind} file with a header and data rows"
        raise DataError(msg)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        msg = f"{str(path)!r} is UTF-16 or UTF-32 text (it starts with a byte order mark); save the file as UTF-8"
        raise DataError(msg)


def _not_utf8_message(path: Path) -> str:
    """Describe the first line of ``path`` that is not UTF-8."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for line_number, line in enumerate(handle, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as err:
                    return (
                        f"{str(path)!r} is not UTF-8 text: line {line_number} contains the byte "
                        f"0x{line[err.start]:02x} (near {line[max(err.start - 10, 0) : err.start + 10]!r}), "
                        "as Latin-1 or Windows-1252 files do; save the file as UTF-8 and load it again"
                    )
    except (OSError, EOFError, zlib.error):
        # A .gz file can decode its first lines and then turn out to be cut short.
        pass
    return f"{str(path)!r} is not UTF-8 text; save the file as UTF-8 and load it again"


def _check_delimiter(path: Path, frame: pd.DataFrame, sep: str) -> None:
    """Reject a CSV or TSV file whose single column name contains another delimiter."""
    if len(frame.columns) != 1:
        return
    header = str(frame.columns[0])
    kind, expected = ("TSV", "a tab") if sep == "\t" else ("CSV", "','")
    for other, name in ((";", "';'"), ("\t", "a tab"), (",", "','")):
        if other != sep and other in header:
            msg = (
                f"{str(path)!r} has one column {header[:80]!r}: the file seems to separate columns with {name}, "
                f"but a {kind} file must use {expected}; save it with {expected} between columns"
                + (" or name it .tsv" if other == "\t" else "")
            )
            raise DataError(msg)


def read_feature_map(path: str | Path) -> dict[int, tuple[str, str]]:
    """Read a libfm feature map (TSV: index, field, raw_value) into {index: (field, raw value)}."""
    path = Path(path)
    if not path.is_file():
        msg = f"feature map not found: {str(path)!r}"
        raise DataError(msg)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        msg = f"could not read the feature map {str(path)!r} as UTF-8 TSV with the columns index, field, raw_value: {err}"
        raise DataError(msg) from err
    needed = {"index", "field", "raw_value"}
    if not needed.issubset(table.columns):
        msg = f"feature map {str(path)!r} needs the columns index, field, raw_value; found {list(table.columns)}"
        raise DataError(msg)
    names = {}
    for row, (index, field_name, raw_value) in enumerate(
        zip(table["index"], table["field"], table["raw_value"], strict=True), start=2
    ):
        try:
            names[int(index)] = (field_name, raw_value)
        except ValueError:
            msg = f"feature map {str(path)!r} line {row}: index {index!r} is not a whole number; fix or remove the line"
            raise DataError(msg) from None
    return names


def read_libfm(
    path: str | Path, *, feature_map: str | Path | None = None, max_rows: int | None = None
) -> pd.DataFrame:
    """Read a libfm / libffm file into raw values per field (label in {0, 1})."""
    names = read_feature_map(feature_map) if feature_map is not None else None
    opener = gzip.open if str(path).endswith(".gz") else open
    rows: list[dict[str, Any]] = []
    field_order: dict[str, None] = {}
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if max_rows is not None and len(rows) >= max_rows:
                break
            tokens = line.split()
            if not tokens:
                continue
            row = {"label": _libfm_label(tokens[0], path, line_number)}
            for token in tokens[1:]:
                field_name, raw_value = _libfm_token(token, names, path, line_number)
                if field_name in row:
                    msg = (
                        f"{str(path)!r} line {line_number}: field {field_name!r} appears twice "
                        f"({row[field_name]!r} and {raw_value!r}); multi-valued fields are not supported in libfm"
                    )
                    raise DataError(msg)
                field_order.setdefault(field_name, None)
                row[field_name] = raw_value
            rows.append(row)
    if not rows:
        msg = f"{str(path)!r} has no libfm rows"
        raise DataError(msg)
    return pd.DataFrame(rows, columns=["label", *field_order])


def _libfm_label(token: str, path: str | Path, line_number: int) -> int:
    try:
        value = float(token)
    except ValueError:
        value = None
    if value not in (-1.0, 0.0, 1.0):
        msg = f"{str(path)!r} line {line_number}: label {token!r} is not -1, 0 or 1"
        raise DataError(msg)
    return 1 if value == 1.0 else 0


def _libfm_token(
    token: str, names: dict[int, tuple[str, str]] | None, path: str | Path, line_number: int
) -> tuple[str, str]:
    parts = token.split(":")
    try:
        if len(parts) == 3:
            field_id, index, value = parts[0], int(parts[1]), float(parts[2])
        elif len(parts) == 2:
            field_id, index, value = None, int(parts[0]), float(parts[1])
        else:
            raise ValueError(token)
    except ValueError:
        msg = f"{str(path)!r} line {line_number}: token {token!r} is not 'field:index:value' or 'index:value'"
        raise DataError(msg) from None
    if value != 1.0:
        msg = (
            f"{str(path)!r} line {line_number}: token {token!r} has value {value:g}; only one-hot libfm "
            "(value 1) is supported, so convert numeric features to CSV or Parquet"
        )
        raise DataError(msg)
    if names is not None:
        if index not in names:
            msg = f"{str(path)!r} line {line_number}: index {index} is not in the feature map"
            raise DataError(msg)
        return names[index]
    if field_id is None:
        msg = (
            f"{str(path)!r} line {line_number}: token {token!r} has no field; give a feature map "
            f"({FEATURE_MAP_NAME} with index, field, raw_value) or use field:index:value tokens"
        )
        raise DataError(msg)
    return f"field_{field_id}", str(index)


def infer_schema_spec(frame: pd.DataFrame, label: str) -> Schema:
    """Guess field kinds: numeric columns become numeric fields, everything else categorical."""
    if label not in frame.columns:
        msg = f"label column {label!r} not found; columns: {', '.join(map(str, frame.columns))}"
        raise DataError(msg)
    fields = []
    for name in frame.columns:
        if name == label:
            continue
        column = frame[name]
        numeric = pd.to_numeric(column, errors="coerce")
        is_float = numeric.notna().mean() > 0.99 and not _looks_like_ids(numeric)
        fields.append(Field(str(name), "numeric" if is_float else "categorical"))
    return Schema(fields, label=label)


def _looks_like_ids(values: pd.Series) -> bool:
    finite = values.dropna()
    return bool(len(finite)) and bool((finite == finite.round()).all()) and finite.nunique() < 0.5 * len(finite)


def read_schema_spec(path: str | Path) -> Schema:
    """Read a schema spec JSON (``{"label": ..., "fields": [{"name", "kind", ...}]}``)."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"schema file not found: {str(path)!r}"
        raise DataError(msg) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        msg = f"schema file {str(path)!r} is not valid JSON (UTF-8 text): {err}"
        raise DataError(msg) from err
    except OSError as err:
        msg = f"could not read the schema file {str(path)!r}: {err}"
        raise DataError(msg) from err
    return Schema.from_dict(spec)


def file_fingerprint(path: str | Path) -> str:
    """Return the SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class CTRDataset:
    """Encoded model inputs, labels and raw values of one data split.

    ``inputs[name]`` has shape ``(n_rows,)`` for categorical (int64) and numeric
    (float32, standardised) fields, ``(n_rows, max_length)`` for sequence fields
    and ``(n_rows, dim)`` for dense fields. ``raw`` keeps the raw values as read.
    """

    schema: Schema
    inputs: dict[str, np.ndarray]
    labels: np.ndarray
    raw: pd.DataFrame
    name: str = ""
    source: str = ""
    oov_counts: dict[str, int] = field(default_factory=dict)
    source_rows: np.ndarray | None = None
    """Each row's number in the file it was read from, when this is a subset (see ``workbench.cohorts.restrict``)."""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def tensors(self, rows: np.ndarray | slice | None = None) -> dict[str, torch.Tensor]:
        """Return the model inputs of ``rows`` (all rows when None) as tensors."""
        selection = slice(None) if rows is None else rows
        return {name: torch.from_numpy(np.ascontiguousarray(array[selection])) for name, array in self.inputs.items()}

    def raw_values(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """Return raw field values of ``rows`` as display strings, decoded from the model inputs.

        Values the model saw as OOV show as ``<OOV>``, so a plot shows what the
        model received, not only what the file held.
        """
        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        columns = {}
        for f in self.schema.fields:
            array = self.inputs[f.name][rows]
            columns[f.name] = [decode_value(f, value) for value in array]
        return pd.DataFrame(columns, index=rows)


def encode(frame: pd.DataFrame, schema: Schema, *, name: str = "", source: str = "") -> CTRDataset:
    """Encode a raw frame with a fitted schema."""
    if not schema.is_fitted():
        msg = "the schema has no vocabularies yet; fit it on the training data first (workbench.schema.fit_schema)"
        raise SchemaError(msg)
    where, in_file = "", ""
    if source:
        where, in_file = f"{source!r}: ", f" in {source!r}"
    elif name:
        where, in_file = f"{name}: ", f" in {name}"
    try:
        _check_columns(frame, schema, need_label=True)
    except SchemaError as err:
        msg = f"{err}{in_file}; add the missing columns or choose a data file with the fields this model was trained on"
        raise SchemaError(msg) from err
    inputs = {}
    oov_counts = {}
    for f in schema.fields:
        if f.kind == "numeric":
            _check_numeric(frame[f.name], f.name, where)
        try:
            inputs[f.name], oov_counts[f.name] = encode_field(f, frame[f.name])
        except (TypeError, ValueError) as err:
            msg = f"{where}could not encode field {f.name!r}: {err}"
            raise DataError(msg) from err
    labels = _labels(frame[schema.label], schema.label, where)
    return CTRDataset(schema, inputs, labels, frame, name=name, source=source, oov_counts=oov_counts)


def _first_bad(mask: np.ndarray, column: pd.Series) -> tuple[int, Any, int]:
    """Return the 0-based row, the value and the count of the rows that ``mask`` flags."""
    positions = np.flatnonzero(mask)
    value = column.iloc[positions[0]]
    return int(positions[0]), value.item() if isinstance(value, np.generic) else value, len(positions)


def _check_numeric(column: pd.Series, field_name: str, where: str) -> None:
    """Reject text and infinite values in a numeric field. Empty cells and NaN stay missing (the training mean)."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    missing = np.isnan(values)
    if missing.any():
        unparsed = column.notna().to_numpy() & missing
        if unparsed.any():
            texts = column[unparsed].astype(str).str.strip().str.lower()
            unparsed[unparsed] = ~texts.isin(MISSING_MARKERS).to_numpy()
        if unparsed.any():
            row, value, count = _first_bad(unparsed, column)
            msg = (
                f"{where}numeric field {field_name!r} contains {value!r} in row {row} (0-based; {count} such row(s)), "
                "which is not a number; correct the value, or leave the cell empty so that it counts as missing "
                "and takes the training mean"
            )
            raise DataError(msg)
    infinite = np.isinf(values)
    if infinite.any():
        row, value, count = _first_bad(infinite, column)
        msg = (
            f"{where}numeric field {field_name!r} contains {value!r} in row {row} (0-based; {count} such row(s)); "
            "numeric values must be finite, so replace it with a number or leave the cell empty (missing, "
            "which takes the training mean)"
        )
        raise DataError(msg)


def _labels(column: pd.Series, label: str, where: str) -> np.ndarray:
    """Return labels in {0, 1} from a column of 0/1 or -1/1 values, and reject any other value."""
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isin(values, (-1.0, 0.0, 1.0))
    if bad.any():
        row, value, count = _first_bad(bad, column)
        value_kind = "a non-numeric value" if np.isnan(values[row]) else "the value"
        msg = (
            f"{where}label column {label!r} has {value_kind} {value!r} in row {row} (0-based; {count} such row(s)); "
            "labels must be 0/1 (or -1/1, read as 0/1), so recode the labels or choose another label column"
        )
        raise DataError(msg)
    return np.where(values > 0, 1.0, 0.0).astype(np.float32)


DATASET_LOADERS = {"fuxictr": "workbench.adapters.fuxictr"}
"""``schema.extra["dataset_loader"]`` value → the module whose ``load_dataset(path, schema, max_rows=...)`` reads data
for that schema (an adapted model whose data files hold another library's encoded ids). Nothing else is imported."""


def load_dataset(
    path: str | Path,
    schema: Schema,
    *,
    feature_map: str | Path | None = None,
    max_rows: int | None = None,
) -> CTRDataset:
    """Read and encode a data file with a fitted schema (for example a bundle's).

    A schema whose ``extra["dataset_loader"]`` names an entry of :data:`DATASET_LOADERS`
    is read by that module instead.
    """
    loader = schema.extra.get("dataset_loader")
    if loader is not None:
        if not isinstance(loader, str) or loader not in DATASET_LOADERS:
            msg = f"the schema names the data reader {str(loader)[:40]!r}; known readers: {', '.join(DATASET_LOADERS)}"
            raise DataError(msg)
        import importlib

        return importlib.import_module(DATASET_LOADERS[loader]).load_dataset(path, schema, max_rows=max_rows)
    frame = read_frame(path, feature_map=feature_map, label=schema.label, max_rows=max_rows)
    if data_format(path) == "libfm" and schema.label != "label":
        frame = frame.rename(columns={"label": schema.label})
    return encode(frame, schema, name=Path(path).name, source=str(path))


def sample_rows(n_total: int, n_rows: int, seed: int) -> np.ndarray:
    """Return ``min(n_rows, n_total)`` distinct row numbers drawn with ``seed``, in ascending order."""
    if n_rows < 1:
        msg = f"the number of rows to sample must be at least 1; got {n_rows}"
        raise ValueError(msg)
    generator = np.random.default_rng(seed)
    return np.sort(generator.choice(n_total, size=min(n_rows, n_total), replace=False))
