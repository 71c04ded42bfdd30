"""Prepare behaviour-sequence CTR data sets: MovieLens-100k and the Alimama DMR sample.

Each preparer reads the raw files and builds one row per impression with the
label ``click``. MovieLens movies appear as readable labels, ``"Title (year)"``,
rather than as numeric ids. Behaviour histories become sequence fields, stored
as strings joined with ``|`` and ordered oldest first, most recent last (the order
:func:`workbench.schema.encode_field` expects when it keeps the last
``max_length`` items). The rows are split 80/10/10 in a fixed order and written
to a new folder as ``train.parquet``, ``valid.parquet``, ``test.parquet``,
``schema.json`` (the spec that ``workbench train`` reads next to the training
file) and ``PREPARED.md`` (command, source md5 sums, row counts, positive
rates). The same inputs and options give byte-identical files with the same
versions of pandas and pyarrow. docs/sequences.md describes every field.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import shlex
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow

from workbench.data import DataError

LABEL = "click"
SEQUENCE_SEPARATOR = "|"
DEFAULT_MAX_LENGTH = 20
"""Most recent history items kept per MovieLens row when --max-length is not given."""
SCHEMA_NAME = "schema.json"
PREPARED_NAME = "PREPARED.md"

MOVIELENS_COLUMNS = {
    "ml-100k.inter": ("user_id", "item_id", "rating", "timestamp"),
    "ml-100k.user": ("user_id", "age", "gender", "occupation", "zip_code"),
    "ml-100k.item": ("item_id", "movie_title", "release_year", "class"),
}
"""The RecBole atomic files the MovieLens preparer reads and the columns it needs from each."""
CLICK_MIN_RATING = 4.0
"""A rating at or above this value is a click (label 1)."""
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
YEAR_PATTERN = re.compile(r"\d{4}")
MOVIE_ID_SUFFIX = " [id {movie_id}]"
"""Appended to every movie label that the title and year alone would give to more than one movie."""

DMR_HISTORY_LENGTH = 50
DMR_N_COLUMNS = 267
DMR_HISTORY_STARTS = {"history_btag": 0, "history_cate": 50, "history_brand": 100}
"""First column (0-based) of each 50-step history block in the DMR file."""
DMR_MASK_START = 150
"""First column of the history mask (1 = real step, 0 = padding)."""
DMR_USER_COLUMNS = (
    "user_id",
    "cms_segid",
    "cms_group_id",
    "final_gender_code",
    "age_level",
    "pvalue_level",
    "shopping_level",
    "occupation",
    "new_user_class_level",
)
"""User profile columns, in file order from column 250."""
DMR_AD_COLUMNS = ("adgroup_id", "cate_id", "campaign_id", "customer", "brand")
"""Target ad columns, in file order from column 259."""
DMR_USER_START = 250
DMR_AD_START = 259
DMR_PRICE_COLUMN = 264
DMR_PID_COLUMN = 265
DMR_LABEL_COLUMN = 266
DMR_ZERO_IS_MISSING = ("pvalue_level", "new_user_class_level", "brand")
"""Columns where 0 is written for an empty or NULL cell and is no coded value, so 0 becomes missing."""


# ---------------------------------------------------------------------------
# Output folder


def split_sizes(n_rows: int) -> tuple[int, int, int]:
    """Return the train, valid and test row counts of an 80/10/10 split of ``n_rows`` ordered rows."""
    n_train = n_rows * 8 // 10
    n_valid = n_rows // 10
    return n_train, n_valid, n_rows - n_train - n_valid


def split_frame(frame: pd.DataFrame, *, source: str | Path) -> dict[str, pd.DataFrame]:
    """Split ordered rows into the first 80 % (train), the next 10 % (valid) and the rest (test).

    Raises DataError when a split would be empty (fewer than 10 rows).
    """
    n_train, n_valid, n_test = split_sizes(len(frame))
    if min(n_train, n_valid, n_test) == 0:
        msg = f"{str(source)!r} gives only {len(frame)} rows; the 80/10/10 split needs at least 10"
        raise DataError(msg)
    bounds = {"train": (0, n_train), "valid": (n_train, n_train + n_valid), "test": (n_train + n_valid, len(frame))}
    return {name: frame.iloc[start:stop].reset_index(drop=True) for name, (start, stop) in bounds.items()}


def check_out_folder(out: str | Path, *, overwrite: bool) -> Path:
    """Return ``out`` as a Path when it may be written, else raise DataError.

    ``out`` may be written when it does not exist, or with ``overwrite`` when
    it is a folder from an earlier prepare run. A folder without ``PREPARED.md`` is never replaced, so ``--overwrite`` cannot
    delete a folder of other files by a typo in ``--out``.
    """
    out = Path(out)
    if not out.exists():
        return out
    if not overwrite:
        msg = f"output folder {str(out)!r} already exists; choose another --out or pass --overwrite"
        raise DataError(msg)
    if not out.is_dir():
        msg = f"--out {str(out)!r} is a file, not a folder; choose another --out"
        raise DataError(msg)
    if not (out / PREPARED_NAME).is_file():
        msg = (
            f"--out {str(out)!r} was not written by workbench prepare (it has no {PREPARED_NAME}), so it is not "
            "replaced even with --overwrite; choose another --out or remove the folder yourself"
        )
        raise DataError(msg)
    return out


def write_prepared(
    out: str | Path,
    splits: dict[str, pd.DataFrame],
    spec: dict[str, Any],
    record: str,
    *,
    overwrite: bool = False,
) -> Path:
    """Write the splits, ``schema.json`` and ``PREPARED.md`` into a new folder, then move it to ``out``.

    The files are written into a hidden folder next to ``out`` and renamed into
    place at the end, so a failed run leaves no half-written ``out``. With
    ``overwrite`` an earlier prepare folder at ``out`` is replaced.
    """
    out = check_out_folder(out, overwrite=overwrite).resolve()
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        partial = parent / f".{out.name}.partial-{secrets.token_hex(4)}"
        partial.mkdir()
    except OSError as err:
        msg = f"could not create a folder next to --out {str(out)!r}: {err}"
        raise DataError(msg) from err
    try:
        for name, frame in splits.items():
            frame.to_parquet(partial / f"{name}.parquet", index=False, engine="pyarrow")
        (partial / SCHEMA_NAME).write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
        (partial / PREPARED_NAME).write_text(record, encoding="utf-8")
        _move_into_place(partial, out)
    except OSError as err:
        msg = f"could not write the prepared data to {str(out)!r}: {err}"
        raise DataError(msg) from err
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return out


def _move_into_place(partial: Path, out: Path) -> None:
    """Rename ``partial`` to ``out``. An existing ``out`` is moved aside first and restored if the rename fails."""
    if not out.exists():
        partial.rename(out)
        return
    previous = out.parent / f".{out.name}.previous-{secrets.token_hex(4)}"
    out.rename(previous)
    try:
        partial.rename(out)
    except OSError:
        previous.rename(out)
        raise
    shutil.rmtree(previous)


def file_md5(path: str | Path) -> str:
    """Return the MD5 of a file's bytes (hex), to compare a source with the checksum its publisher lists."""
    digest = hashlib.md5()  # noqa: S324 (a checksum, not a security measure)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sequence_spec(name: str, max_length: int) -> dict[str, Any]:
    return {"name": name, "kind": "sequence", "max_length": max_length, "separator": SEQUENCE_SEPARATOR}


def _split_table(splits: dict[str, pd.DataFrame]) -> list[str]:
    lines = ["| split | rows | clicks | positive rate |", "|---|---:|---:|---:|"]
    for name, frame in splits.items():
        clicks = int(frame[LABEL].sum())
        rate = clicks / len(frame) if len(frame) else float("nan")
        lines.append(f"| {name} | {len(frame):,} | {clicks:,} | {rate:.4f} |")
    return lines


def _prepared_record(
    title: str, command: str, sources: dict[str, Path], splits: dict[str, pd.DataFrame], notes: Sequence[str]
) -> str:
    """Build the text of ``PREPARED.md``: command, versions, source md5 sums, split sizes and notes."""
    lines = [
        f"# {title}",
        "",
        "Written by:",
        "",
        "```bash",
        command,
        "```",
        "",
        f"pandas {pd.__version__}, pyarrow {pyarrow.__version__} (the Parquet bytes depend on both).",
        "",
        "| source file | md5 |",
        "|---|---|",
        *(f"| `{name}` | {file_md5(path)} |" for name, path in sources.items()),
        "",
        *_split_table(splits),
        "",
        *notes,
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------
# MovieLens-100k


def read_atomic_file(path: str | Path, columns: Sequence[str]) -> tuple[list[int], dict[str, list[str]]]:
    """Read ``columns`` of a RecBole atomic file: tab-separated, with a ``name:type`` header.

    Returns the 1-based file line of every record and the raw strings of each
    requested column. Empty lines are skipped. Raises DataError that names the
    file and line for a malformed header, a missing column or a row whose cell
    count differs from the header's.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        msg = f"{str(path)!r} is not UTF-8 text: {err}"
        raise DataError(msg) from err
    except OSError as err:
        msg = f"could not read {str(path)!r}: {err}"
        raise DataError(msg) from err
    rows = [line.removesuffix("\r") for line in text.split("\n")]
    names = _atomic_header(path, rows[0] if rows else "")
    missing = [name for name in columns if name not in names]
    if missing:
        msg = f"{str(path)!r} line 1: the header has no column {', '.join(map(repr, missing))}; found {', '.join(names)}"
        raise DataError(msg)
    positions = [names.index(name) for name in columns]
    line_numbers: list[int] = []
    values: list[list[str]] = [[] for _ in columns]
    for line_number, row in enumerate(rows[1:], start=2):
        if row == "":
            continue
        cells = row.split("\t")
        if len(cells) != len(names):
            msg = (
                f"{str(path)!r} line {line_number}: {len(cells)} tab-separated cells, but the header has "
                f"{len(names)} ({', '.join(names)})"
            )
            raise DataError(msg)
        line_numbers.append(line_number)
        for column, position in zip(values, positions, strict=True):
            column.append(cells[position])
    return line_numbers, dict(zip(columns, values, strict=True))


def _atomic_header(path: Path, header: str) -> list[str]:
    names = []
    for cell in header.split("\t"):
        name, sep, kind = cell.partition(":")
        if not sep or not name or kind not in RECBOLE_TYPES:
            msg = (
                f"{str(path)!r} line 1: header cell {cell!r} is not 'name:type' with a RecBole type "
                f"({', '.join(RECBOLE_TYPES)}), such as 'user_id:token'"
            )
            raise DataError(msg)
        if name in names:
            msg = f"{str(path)!r} line 1: column {name!r} appears twice in the header"
            raise DataError(msg)
        names.append(name)
    return names


def _parse_integer(value: str, path: Path, line_number: int, column: str) -> int:
    """Parse an integer cell. RecBole ``float`` columns such as timestamps may also contain ``881250949.0``."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not number.is_integer():
        msg = f"{str(path)!r} line {line_number}: {column} {value!r} is not a whole number"
        raise DataError(msg)
    return int(number)


def _unique_ids(path: Path, line_numbers: list[int], ids: list[str]) -> None:
    seen: dict[str, int] = {}
    for line_number, value in zip(line_numbers, ids, strict=True):
        if value in seen:
            msg = f"{str(path)!r} line {line_number}: id {value!r} already appears on line {seen[value]}"
            raise DataError(msg)
        seen[value] = line_number


def _check_separator_free(path: Path, line_number: int, column: str, value: str) -> None:
    if SEQUENCE_SEPARATOR in value:
        msg = (
            f"{str(path)!r} line {line_number}: {column} {value!r} contains {SEQUENCE_SEPARATOR!r}, the separator "
            "of the history sequences"
        )
        raise DataError(msg)


def movielens_paths(source: str | Path) -> dict[str, Path]:
    """Return the paths of the three MovieLens atomic files in ``source``, or raise DataError when one is missing."""
    source = Path(source)
    needed = ", ".join(MOVIELENS_COLUMNS)
    if not source.exists():
        msg = f"source folder not found: {str(source)!r}; pass the folder that holds {needed}"
        raise DataError(msg)
    if not source.is_dir():
        msg = f"--source {str(source)!r} is a file; pass the folder that holds {needed}"
        raise DataError(msg)
    paths = {name: source / name for name in MOVIELENS_COLUMNS}
    for name, path in paths.items():
        if not path.is_file():
            msg = f"{name} not found in {str(source)!r}; the folder needs {needed} (RecBole atomic files)"
            raise DataError(msg)
    return paths


def _read_movielens_users(path: Path) -> dict[str, tuple[int, str, str, str]]:
    """Map user id to (age, gender, occupation, zip_prefix)."""
    line_numbers, table = read_atomic_file(path, MOVIELENS_COLUMNS[path.name])
    _unique_ids(path, line_numbers, table["user_id"])
    users = {}
    for k, line_number in enumerate(line_numbers):
        age = _parse_integer(table["age"][k], path, line_number, "age")
        zip_prefix = table["zip_code"][k][:1]
        users[table["user_id"][k]] = (age, table["gender"][k], table["occupation"][k], zip_prefix)
    return users


def _read_movielens_items(path: Path) -> dict[str, tuple[str, str, str]]:
    """Map movie id to (first genre, release year or "" when it is not a four-digit year, label).

    The label is the value written for the movie in ``movie_id`` and in
    ``history_movies`` (see :func:`movie_labels`).
    """
    line_numbers, table = read_atomic_file(path, MOVIELENS_COLUMNS[path.name])
    _unique_ids(path, line_numbers, table["item_id"])
    genres_and_years = {}
    for k, line_number in enumerate(line_numbers):
        movie_id = table["item_id"][k]
        genres = table["class"][k].split()
        if not genres:
            msg = f"{str(path)!r} line {line_number}: movie {movie_id!r} has no genre in the class column"
            raise DataError(msg)
        _check_separator_free(path, line_number, "item_id", movie_id)
        _check_separator_free(path, line_number, "class", genres[0])
        year = table["release_year"][k]
        genres_and_years[movie_id] = (genres[0], year if YEAR_PATTERN.fullmatch(year) else "")
    years = [genres_and_years[movie_id][1] for movie_id in table["item_id"]]
    labels = movie_labels(path, line_numbers, table["item_id"], table["movie_title"], years)
    return {movie_id: (genre, year, labels[movie_id]) for movie_id, (genre, year) in genres_and_years.items()}


def movie_labels(
    path: str | Path, line_numbers: Sequence[int], movie_ids: Sequence[str], titles: Sequence[str], years: Sequence[str]
) -> dict[str, str]:
    """Map each movie id to a readable label that no other movie has.

    The label is ``"Title (year)"``, or the title alone when ``year`` is "".
    Spaces around the title are dropped. When several movies would get the
    same label, each of them gets ``" [id N]"`` appended, and movies with a
    label of their own keep it as it is. The labels depend only on the rows given, not on their order.

    Raises DataError, naming ``path`` and the line, for an empty title, a label
    that contains the sequence separator ``|``, or two labels that are still
    equal after the ids are appended (a title that itself ends in ``[id N]``).
    """
    path = Path(path)
    plain: dict[str, str] = {}
    movies_per_label: dict[str, int] = {}
    for line_number, movie_id, title, year in zip(line_numbers, movie_ids, titles, years, strict=True):
        title = title.strip()
        if not title:
            msg = (
                f"{str(path)!r} line {line_number}: movie {movie_id!r} has an empty movie_title; give every movie a title"
            )
            raise DataError(msg)
        label = f"{title} ({year})" if year else title
        _check_separator_free(path, line_number, "movie_title", label)
        plain[movie_id] = label
        movies_per_label[label] = movies_per_label.get(label, 0) + 1

    labels: dict[str, str] = {}
    line_of_label: dict[str, int] = {}
    for line_number, movie_id in zip(line_numbers, movie_ids, strict=True):
        label = plain[movie_id]
        if movies_per_label[label] > 1:
            label += MOVIE_ID_SUFFIX.format(movie_id=movie_id)
        if label in line_of_label:
            msg = (
                f"{str(path)!r} line {line_number}: movie {movie_id!r} gets the label {label!r}, which the movie on "
                f"line {line_of_label[label]} already has; change one of the two titles"
            )
            raise DataError(msg)
        labels[movie_id] = label
        line_of_label[label] = line_number
    return labels


def _check_max_length(max_length: Any) -> int:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        msg = f"max_length must be a whole number >= 1; got {max_length!r}"
        raise DataError(msg)
    return max_length


def read_movielens(source: str | Path, *, max_length: int = DEFAULT_MAX_LENGTH) -> pd.DataFrame:
    """Build one CTR row per MovieLens rating, sorted by (timestamp, file line).

    Parameters
    ----------
    source : str or Path
        Folder with the RecBole atomic files ``ml-100k.inter``, ``ml-100k.user``
        and ``ml-100k.item``.
    max_length : int, default=20
        Most recent history items kept per row.

    Returns
    -------
    DataFrame
        The label ``click`` (1 when the rating is at least 4), the fields of
        :func:`movielens_schema_spec` and ``timestamp`` (seconds since the Unix
        epoch, not a model field). ``movie_id`` and the items of
        ``history_movies`` are movie labels such as ``"Toy Story (1995)"``
        (see :func:`movie_labels`), not the numeric ids of the source files.
        ``history_movies`` lists the user's movies rated at a strictly earlier
        timestamp, ordered by (timestamp, file line), most recent last.
        Ratings in the same second as the row are left out, and so are the row
        itself and all later ratings.
        ``history_genres`` contains the first genre of each of those movies at the
        same positions.
    """
    max_length = _check_max_length(max_length)
    paths = movielens_paths(source)
    users = _read_movielens_users(paths["ml-100k.user"])
    items = _read_movielens_items(paths["ml-100k.item"])

    path = paths["ml-100k.inter"]
    line_numbers, table = read_atomic_file(path, MOVIELENS_COLUMNS[path.name])
    timestamps = [_parse_integer(v, path, n, "timestamp") for v, n in zip(table["timestamp"], line_numbers, strict=True)]
    clicks = [_click(v, path, n) for v, n in zip(table["rating"], line_numbers, strict=True)]
    for k, line_number in enumerate(line_numbers):
        if table["user_id"][k] not in users:
            msg = f"{str(path)!r} line {line_number}: user_id {table['user_id'][k]!r} is not in ml-100k.user"
            raise DataError(msg)
        if table["item_id"][k] not in items:
            msg = f"{str(path)!r} line {line_number}: item_id {table['item_id'][k]!r} is not in ml-100k.item"
            raise DataError(msg)

    order = sorted(range(len(line_numbers)), key=lambda k: (timestamps[k], line_numbers[k]))
    histories = _earlier_items(order, table["user_id"], table["item_id"], timestamps, max_length)
    columns: dict[str, list[Any]] = {name: [] for name in (*movielens_field_names(), LABEL, "timestamp")}
    for k, history in zip(order, histories, strict=True):
        age, gender, occupation, zip_prefix = users[table["user_id"][k]]
        genre, release_year, label = items[table["item_id"][k]]
        moment = datetime.fromtimestamp(timestamps[k], tz=timezone.utc)
        row = {
            "user_id": table["user_id"][k],
            "gender": gender,
            "age": age,
            "occupation": occupation,
            "zip_prefix": zip_prefix,
            "movie_id": label,
            "genre": genre,
            "release_year": release_year,
            "history_movies": SEQUENCE_SEPARATOR.join(items[movie][2] for movie in history),
            "history_genres": SEQUENCE_SEPARATOR.join(items[movie][0] for movie in history),
            "hour": f"{moment.hour:02d}",
            "weekday": WEEKDAYS[moment.weekday()],
            LABEL: clicks[k],
            "timestamp": timestamps[k],
        }
        for name, value in row.items():
            columns[name].append(value)
    frame = pd.DataFrame(columns)
    return frame.astype({"age": "int64", LABEL: "int64", "timestamp": "int64"})


def _click(rating: str, path: Path, line_number: int) -> int:
    try:
        value = float(rating)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        msg = f"{str(path)!r} line {line_number}: rating {rating!r} is not a number"
        raise DataError(msg)
    return int(value >= CLICK_MIN_RATING)


def _earlier_items(
    order: list[int], users: list[str], items: list[str], timestamps: list[int], max_length: int
) -> list[list[str]]:
    """Return, per rating in ``order``, the last ``max_length`` items its user rated at an earlier timestamp.

    ``order`` must sort the ratings by timestamp. Walking it once, each user's
    seen items grow in that order. ``run_start`` marks where the user's ratings
    at the current timestamp begin, so ratings in the same second never see
    each other.
    """
    seen: dict[str, list[str]] = {}
    run_start: dict[str, tuple[int, int]] = {}
    histories = []
    for k in order:
        user = users[k]
        user_items = seen.setdefault(user, [])
        run_timestamp, start = run_start.get(user, (None, 0))
        if run_timestamp != timestamps[k]:
            start = len(user_items)
            run_start[user] = (timestamps[k], start)
        histories.append(user_items[max(0, start - max_length) : start])
        user_items.append(items[k])
    return histories


def movielens_field_names() -> tuple[str, ...]:
    """Return the model fields of the MovieLens data set, in schema order."""
    return tuple(spec["name"] for spec in movielens_schema_spec()["fields"])


def movielens_schema_spec(max_length: int = DEFAULT_MAX_LENGTH) -> dict[str, Any]:
    """Return the schema spec (``schema.json`` contents) of the MovieLens sequence data set."""
    categorical = {"kind": "categorical"}
    fields = [
        {"name": "user_id", **categorical},
        {"name": "gender", **categorical},
        {"name": "age", "kind": "numeric"},
        {"name": "occupation", **categorical},
        {"name": "zip_prefix", **categorical},
        {"name": "movie_id", **categorical},
        {"name": "genre", **categorical},
        {"name": "release_year", **categorical},
        _sequence_spec("history_movies", max_length),
        _sequence_spec("history_genres", max_length),
        {"name": "hour", **categorical},
        {"name": "weekday", **categorical},
    ]
    return {"label": LABEL, "fields": fields}


def _utc(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def prepare_movielens(
    source: str | Path, out: str | Path, *, max_length: int = DEFAULT_MAX_LENGTH, overwrite: bool = False
) -> dict[str, pd.DataFrame]:
    """Write the MovieLens-100k sequence CTR data set (80/10/10 split by time) to the folder ``out``.

    The rows of :func:`read_movielens`, in (timestamp, file line) order, are
    split into the first 80 % (train), the next 10 % (valid) and the last
    10 % (test). Histories use every earlier rating of the user, whatever its
    split. Returns the three splits as written.
    """
    max_length = _check_max_length(max_length)
    check_out_folder(out, overwrite=overwrite)
    frame = read_movielens(source, max_length=max_length)
    splits = split_frame(frame, source=source)
    command = shlex.join(
        ["workbench", "prepare", "movielens", "--source", str(source), "--out", str(out), "--max-length", str(max_length)]
    )
    notes = [
        "Rows are sorted by (timestamp, line in ml-100k.inter) and split 80/10/10 in that order. "
        "Ratings that share a timestamp may fall on both sides of a split boundary.",
        "",
        "| split | first rating | last rating |",
        "|---|---|---|",
        *(
            f"| {name} | {_utc(int(part['timestamp'].iloc[0]))} | {_utc(int(part['timestamp'].iloc[-1]))} |"
            for name, part in splits.items()
            if len(part)
        ),
        "",
        f"click = 1 when the rating is at least {CLICK_MIN_RATING:g}. The rating itself is dropped. `timestamp` "
        "is kept as a column but is not a field in schema.json. History fields hold the user's movies rated at a "
        f"strictly earlier timestamp, at most {max_length}, most recent last, from all splits.",
        "",
        "movie_id and the items of history_movies are labels 'Title (year)' from ml-100k.item, or the title alone "
        "when the release year is not a four-digit year. Movies that would share a label get ' [id N]' appended, "
        "where N is the item_id.",
    ]
    sources = movielens_paths(source)
    record = _prepared_record("MovieLens-100k behaviour-sequence CTR data", command, sources, splits, notes)
    write_prepared(out, splits, movielens_schema_spec(max_length), record, overwrite=overwrite)
    return splits


# ---------------------------------------------------------------------------
# Alimama DMR sample (PaddleRec)


def _dmr_integer(cell: str, path: Path, line_number: int, column: int) -> int:
    """Parse an id cell. An empty or NULL cell reads as 0, as in PaddleRec's DMR reader."""
    token = cell.strip()
    if token == "" or token.upper() == "NULL":
        return 0
    try:
        return int(token)
    except ValueError:
        msg = f"{str(path)!r} line {line_number}: column {column} (0-based) is {cell!r}, not a whole number"
        raise DataError(msg) from None


def _dmr_flag(cell: str, path: Path, line_number: int, column: int, what: str) -> int:
    value = _dmr_integer(cell, path, line_number, column)
    if value not in (0, 1):
        msg = f"{str(path)!r} line {line_number}: column {column} (0-based, {what}) is {cell!r}; expected 0 or 1"
        raise DataError(msg)
    return value


def _dmr_price(cell: str, path: Path, line_number: int) -> float:
    token = cell.strip()
    if token == "" or token.upper() == "NULL":
        return 0.0
    try:
        value = float(token)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        msg = f"{str(path)!r} line {line_number}: price (column {DMR_PRICE_COLUMN}) is {cell!r}, not a finite number"
        raise DataError(msg)
    return value


def _dmr_row(cells: list[str], path: Path, line_number: int) -> dict[str, Any]:
    """Turn the 267 cells of one DMR line into raw field values and the label."""
    row: dict[str, Any] = {}
    for offset, name in enumerate(DMR_USER_COLUMNS):
        row[name] = _dmr_integer(cells[DMR_USER_START + offset], path, line_number, DMR_USER_START + offset)
    for offset, name in enumerate(DMR_AD_COLUMNS):
        row[name] = _dmr_integer(cells[DMR_AD_START + offset], path, line_number, DMR_AD_START + offset)
    for name in DMR_ZERO_IS_MISSING:
        row[name] = "" if row[name] == 0 else row[name]
    for name in (*DMR_USER_COLUMNS, *DMR_AD_COLUMNS):
        row[name] = str(row[name])
    row["price"] = _dmr_price(cells[DMR_PRICE_COLUMN], path, line_number)
    row["pid"] = str(_dmr_integer(cells[DMR_PID_COLUMN], path, line_number, DMR_PID_COLUMN))

    real_steps = [
        step
        for step in range(DMR_HISTORY_LENGTH)
        if _dmr_flag(cells[DMR_MASK_START + step], path, line_number, DMR_MASK_START + step, "history mask")
    ]
    for name in ("history_cate", "history_brand", "history_btag"):
        start = DMR_HISTORY_STARTS[name]
        steps = [str(_dmr_integer(cells[start + step], path, line_number, start + step)) for step in real_steps]
        row[name] = SEQUENCE_SEPARATOR.join(steps)
    row[LABEL] = _dmr_flag(cells[DMR_LABEL_COLUMN], path, line_number, DMR_LABEL_COLUMN, "label")
    return row


def read_dmr_sample(path: str | Path) -> pd.DataFrame:
    """Read the Alimama DMR sample file (PaddleRec layout) into one row per impression, in file order.

    Parameters
    ----------
    path : str or Path
        Comma-separated text file without a header, with 267 numeric columns
        per line. Columns 0-149 are the btag, category and brand histories
        of 50 steps each, 150-199 the history mask and 200-249 the match mask
        (not used). Then come nine user profile columns (250-258), five
        target ad columns (259-263), price (264), pid (265) and the click
        label (266).

    Returns
    -------
    DataFrame
        The fields of :func:`dmr_schema_spec` and the label ``click``. The
        sequence fields keep only the steps whose history mask is 1, in file
        order. An empty or NULL cell reads as 0. In ``pvalue_level``,
        ``new_user_class_level`` and ``brand`` a 0 becomes missing (an empty
        string). Blank lines are skipped.
    """
    path = Path(path)
    if not path.exists():
        msg = f"source file not found: {str(path)!r}; pass the DMR sample text file (267 comma-separated columns)"
        raise DataError(msg)
    if not path.is_file():
        msg = f"--source {str(path)!r} is a folder; pass the DMR sample text file itself"
        raise DataError(msg)
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                text = line.rstrip("\r\n")
                if text.strip() == "":
                    continue
                cells = text.split(",")
                if len(cells) != DMR_N_COLUMNS:
                    msg = (
                        f"{str(path)!r} line {line_number}: {len(cells)} comma-separated cells; the DMR layout has "
                        f"{DMR_N_COLUMNS}"
                    )
                    raise DataError(msg)
                rows.append(_dmr_row(cells, path, line_number))
    except UnicodeDecodeError as err:
        msg = f"{str(path)!r} is not UTF-8 text: {err}"
        raise DataError(msg) from err
    if not rows:
        msg = f"{str(path)!r} has no data lines"
        raise DataError(msg)
    names = [*dmr_field_names(), LABEL]
    frame = pd.DataFrame(rows, columns=names)
    return frame.astype({"price": "float64", LABEL: "int64"})


def dmr_field_names() -> tuple[str, ...]:
    """Return the model fields of the DMR data set, in schema order."""
    return tuple(spec["name"] for spec in dmr_schema_spec()["fields"])


def dmr_schema_spec() -> dict[str, Any]:
    """Return the schema spec (``schema.json`` contents) of the DMR data set."""
    fields: list[dict[str, Any]] = [{"name": name, "kind": "categorical"} for name in (*DMR_USER_COLUMNS, *DMR_AD_COLUMNS)]
    fields.append({"name": "price", "kind": "numeric"})
    fields.append({"name": "pid", "kind": "categorical"})
    fields.extend(_sequence_spec(name, DMR_HISTORY_LENGTH) for name in ("history_cate", "history_brand", "history_btag"))
    return {"label": LABEL, "fields": fields}


def prepare_taobao(source: str | Path, out: str | Path, *, overwrite: bool = False) -> dict[str, pd.DataFrame]:
    """Write the DMR sample as a CTR data set (80/10/10 split by file order) to the folder ``out``.

    The file has no timestamps, so the first 80 % of its lines are the train
    split, the next 10 % valid and the rest test. Returns the three splits as
    written.
    """
    check_out_folder(out, overwrite=overwrite)
    frame = read_dmr_sample(source)
    splits = split_frame(frame, source=source)
    command = shlex.join(["workbench", "prepare", "taobao", "--source", str(source), "--out", str(out)])
    notes = [
        "The file has no timestamps, so rows keep the file order and are split 80/10/10 in that order.",
        "",
        "History fields keep the steps whose history mask (columns 150-199) is 1, in file order. The padding "
        "sits at the start of each 50-step block, so the last step is the most recent one.",
        "",
        "An empty or NULL cell reads as 0. In pvalue_level, new_user_class_level and brand, 0 becomes missing.",
    ]
    record = _prepared_record(
        "Alimama DMR sample as behaviour-sequence CTR data", command, {Path(source).name: Path(source)}, splits, notes
    )
    write_prepared(out, splits, dmr_schema_spec(), record, overwrite=overwrite)
    return splits
