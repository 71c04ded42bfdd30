"""workbench prepare: MovieLens-100k and the Alimama DMR sample as behaviour-sequence CTR data.

The real-data tests read ``../shared/data`` next to the repository, or the
folder named by ``WORKBENCH_SHARED_DATA``, and are skipped only when that
folder is absent. They check the prepared rows against the raw files, parsed
here with the csv module and numpy rather than with workbench.prepare. The
small hand-made sources in ``tmp_path`` have expected values worked out by
hand in the comments.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import REPO_ROOT, run_cli
from workbench.data import DataError, encode, read_frame, read_schema_spec
from workbench.prepare import (
    PREPARED_NAME,
    dmr_field_names,
    movielens_field_names,
    prepare_movielens,
    prepare_taobao,
    read_dmr_sample,
    read_movielens,
    split_sizes,
)
from workbench.schema import fit_schema

SHARED_DATA = Path(os.environ.get("WORKBENCH_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
MOVIELENS_DIR = SHARED_DATA / "movielens-100k"
DMR_FILE = SHARED_DATA / "behaviour-sequence" / "paddlerec_dmr_alimama_sampled_train.txt"
OUTPUT_FILES = ("train.parquet", "valid.parquet", "test.parquet", "schema.json", PREPARED_NAME)

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"no shared data folder at {str(SHARED_DATA)!r}; set WORKBENCH_SHARED_DATA"
)


def items_of(cell: str) -> list[str]:
    return cell.split("|") if cell else []


def read_splits(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(folder / f"{name}.parquet") for name in ("train", "valid", "test")}


# --- hand-made MovieLens files ------------------------------------------------

USER_LINES = [
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token",
    "1\t24\tM\ttechnician\t85711",
    "2\t53\tF\tother\tT8H1N",
]
ITEM_LINES = [
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
    "10\tAlpha\t1995\tAnimation Children's Comedy",
    "20\tBeta\tunknown\tDrama",
    "30\tGamma\t1997\tFilm-Noir Thriller",
    "40\tDelta (1995)\tV\tSci-Fi",
]
BASE = 881250949  # 1997-12-04 15:55:49 UTC, a Thursday
# File line (header = line 1): user, movie, rating, timestamp offset from BASE.
INTER_ROWS = [
    ("1", "10", "5", 1000),  # line 2
    ("1", "20", "3", 900),  # line 3
    ("2", "30", "4", 1000),  # line 4
    ("1", "30", "4", 1000),  # line 5: same second as line 2
    ("1", "40", "2", 2000),  # line 6
    ("2", "10", "1", 500),  # line 7
    ("1", "10", "4", 3000),  # line 8
    ("2", "20", "5", 4000),  # line 9
    ("2", "40", "3", 4000),  # line 10: same second as line 9
    ("1", "20", "4", 90000),  # line 11: the next day, 16:56:49 UTC on a Friday
]
# Rows sorted by (timestamp, line): 7, 3, 2, 4, 5, 6, 8, 9, 10, 11.
EXPECTED_LINES = [7, 3, 2, 4, 5, 6, 8, 9, 10, 11]
EXPECTED_HISTORIES = [
    "",  # line 7: user 2's first rating
    "",  # line 3: user 1's first rating
    "20",  # line 2
    "10",  # line 4: user 2 saw movie 10 (line 7)
    "20",  # line 5: line 2 has the same timestamp, so it is not in the history
    "20|10|30",  # line 6: lines 3, 2, 5 in (timestamp, line) order
    "20|10|30|40",  # line 8
    "10|30",  # line 9
    "10|30",  # line 10: line 9 has the same timestamp
    "20|10|30|40|10",  # line 11
]
GENRES = {"10": "Animation", "20": "Drama", "30": "Film-Noir", "40": "Sci-Fi"}
# Movie 20 ("unknown") and movie 40 ("V") have no four-digit year, so their label is the title alone.
LABELS = {"10": "Alpha (1995)", "20": "Beta", "30": "Gamma (1997)", "40": "Delta (1995)"}


def labelled(history: str) -> str:
    """Replace each movie id of a ``|``-joined history with its label from ``LABELS``."""
    return "|".join(LABELS[movie] for movie in items_of(history))


def write_movielens(folder: Path, *, inter: list[str] | None = None, users: list[str] | None = None,
                    items: list[str] | None = None) -> Path:
    """Write the three atomic files into ``folder`` (the hand-made ones unless replaced) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    if inter is None:
        inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
        inter += [f"{user}\t{movie}\t{rating}\t{BASE + offset}" for user, movie, rating, offset in INTER_ROWS]
    for name, lines in (("ml-100k.inter", inter), ("ml-100k.user", users or USER_LINES), ("ml-100k.item", items or ITEM_LINES)):
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_movielens_small_histories(tmp_path):
    frame = read_movielens(write_movielens(tmp_path / "ml"))

    offsets = [INTER_ROWS[line - 2][3] for line in EXPECTED_LINES]
    assert frame["timestamp"].tolist() == [BASE + offset for offset in offsets]
    assert frame["history_movies"].tolist() == [labelled(h) for h in EXPECTED_HISTORIES]
    assert frame["movie_id"].tolist() == [LABELS[INTER_ROWS[line - 2][1]] for line in EXPECTED_LINES]
    expected_genres = ["|".join(GENRES[m] for m in items_of(h)) for h in EXPECTED_HISTORIES]
    assert frame["history_genres"].tolist() == expected_genres


def test_movielens_small_max_length(tmp_path):
    frame = read_movielens(write_movielens(tmp_path / "ml"), max_length=3)

    assert frame["history_movies"].tolist()[-4:] == [
        "Alpha (1995)|Gamma (1997)|Delta (1995)",
        "Alpha (1995)|Gamma (1997)",
        "Alpha (1995)|Gamma (1997)",
        "Gamma (1997)|Delta (1995)|Alpha (1995)",
    ]
    assert frame["history_genres"].iloc[-1] == "Film-Noir|Sci-Fi|Animation"


def test_movielens_small_fields(tmp_path):
    frame = read_movielens(write_movielens(tmp_path / "ml"))
    first, last = frame.iloc[0], frame.iloc[-1]  # lines 7 and 11

    assert list(frame.columns) == [*movielens_field_names(), "click", "timestamp"]
    assert frame["click"].tolist() == [0, 0, 1, 1, 1, 0, 1, 1, 0, 1]
    assert (first["user_id"], first["gender"], first["age"], first["occupation"]) == ("2", "F", 53, "other")
    assert first["zip_prefix"] == "T"
    assert (first["movie_id"], first["genre"], first["release_year"]) == ("Alpha (1995)", "Animation", "1995")
    assert (first["hour"], first["weekday"]) == ("16", "Thu")
    assert (last["hour"], last["weekday"]) == ("16", "Fri")
    assert last["zip_prefix"] == "8"
    assert set(frame.loc[frame["movie_id"].isin(["Beta", "Delta (1995)"]), "release_year"]) == {""}
    assert "rating" not in frame.columns


def test_movielens_small_split(tmp_path):
    prepare_movielens(write_movielens(tmp_path / "ml"), tmp_path / "out")
    splits = read_splits(tmp_path / "out")

    assert [len(part) for part in splits.values()] == [8, 1, 1]
    assert splits["valid"]["timestamp"].tolist() == [BASE + 4000]
    assert splits["test"]["history_movies"].tolist() == ["Beta|Alpha (1995)|Gamma (1997)|Delta (1995)|Alpha (1995)"]
    assert splits["test"]["movie_id"].tolist() == ["Beta"]


def test_movielens_small_label_collisions(tmp_path):
    # Movies 50 and 10 are both "Alpha (1995)", and movie 70 ("Gamma (1997)" with
    # no valid year) collides with movie 30 ("Gamma" from 1997). Those four get
    # their id appended. Movie 60 is "Alpha" from another year and keeps its
    # plain label, and so do movies 20 and 40.
    items = [
        *ITEM_LINES,
        "50\tAlpha\t1995\tDrama",
        "60\tAlpha\t1990\tDrama",
        "70\tGamma (1997)\tunknown\tDrama",
    ]
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    movies = ["10", "20", "30", "40", "50", "60", "70"]
    inter = [header, *(f"1\t{movie}\t4\t{BASE + i}" for i, movie in enumerate(movies))]
    frame = read_movielens(write_movielens(tmp_path / "ml", inter=inter, items=items))

    assert frame["movie_id"].tolist() == [
        "Alpha (1995) [id 10]",
        "Beta",
        "Gamma (1997) [id 30]",
        "Delta (1995)",
        "Alpha (1995) [id 50]",
        "Alpha (1990)",
        "Gamma (1997) [id 70]",
    ]
    assert frame["history_movies"].iloc[-1] == "|".join(frame["movie_id"].iloc[:-1])
    assert frame["history_genres"].iloc[-1] == "Animation|Drama|Film-Noir|Sci-Fi|Drama|Drama"


def test_movielens_small_labels_deterministic(tmp_path):
    # The same movies listed in reverse file order get the same labels.
    items = [*ITEM_LINES, "50\tAlpha\t1995\tDrama"]
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    inter = [header, f"1\t10\t4\t{BASE}", f"1\t50\t4\t{BASE + 1}"]
    forward = read_movielens(write_movielens(tmp_path / "forward", inter=inter, items=items))
    backward = read_movielens(write_movielens(tmp_path / "backward", inter=inter, items=[items[0], *items[:0:-1]]))

    assert forward["movie_id"].tolist() == ["Alpha (1995) [id 10]", "Alpha (1995) [id 50]"]
    assert backward["movie_id"].tolist() == forward["movie_id"].tolist()
    assert backward["history_movies"].tolist() == ["", "Alpha (1995) [id 10]"]


# --- real MovieLens-100k ------------------------------------------------------


@pytest.fixture(scope="module")
def movielens_out(tmp_path_factory) -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data folder at {str(SHARED_DATA)!r}")
    out = tmp_path_factory.mktemp("prepared") / "movielens"
    prepare_movielens(MOVIELENS_DIR, out)
    return out


@pytest.fixture(scope="module")
def movielens_splits(movielens_out) -> dict[str, pd.DataFrame]:
    return read_splits(movielens_out)


@pytest.fixture(scope="module")
def movielens_rows(movielens_splits) -> pd.DataFrame:
    return pd.concat(movielens_splits.values(), ignore_index=True)


@pytest.fixture(scope="module")
def raw_ratings() -> list[tuple[str, str, int, int, int]]:
    """(user, movie, rating, timestamp, file line) of every line of ml-100k.inter, read with the csv module."""
    with open(MOVIELENS_DIR / "ml-100k.inter", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        return [(u, m, int(r), int(t), line) for line, (u, m, r, t) in enumerate(reader, start=2)]


@pytest.fixture(scope="module")
def raw_items() -> dict[str, tuple[str, str, str]]:
    """(title, release year, class) of every movie id in ml-100k.item, read with the csv module."""
    with open(MOVIELENS_DIR / "ml-100k.item", newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        return {movie: (title, year, genres) for movie, title, year, genres in reader}


@pytest.fixture(scope="module")
def first_genres(raw_items) -> dict[str, str]:
    return {movie: genres.split()[0] for movie, (_, _, genres) in raw_items.items()}


@pytest.fixture(scope="module")
def raw_labels(raw_items) -> dict[str, str]:
    """Expected label of every movie id: "Title (year)", plus " [id N]" where the label is shared."""
    plain = {
        movie: f"{title} ({year})" if re.fullmatch(r"\d{4}", year) else title
        for movie, (title, year, _) in raw_items.items()
    }
    shared = {label for label, count in Counter(plain.values()).items() if count > 1}
    return {movie: f"{label} [id {movie}]" if label in shared else label for movie, label in plain.items()}


@pytest.fixture(scope="module")
def movie_of_label(raw_labels) -> dict[str, str]:
    return {label: movie for movie, label in raw_labels.items()}


@needs_shared_data
def test_movielens_row_counts(movielens_splits):
    assert [len(part) for part in movielens_splits.values()] == [80_000, 10_000, 10_000]
    assert split_sizes(100_000) == (80_000, 10_000, 10_000)


@needs_shared_data
def test_movielens_positive_rate(movielens_rows, raw_ratings):
    assert int(movielens_rows["click"].sum()) == 55_375
    assert int(movielens_rows["click"].sum()) == sum(rating >= 4 for _, _, rating, _, _ in raw_ratings)


@needs_shared_data
def test_movielens_schema_json(movielens_out, movielens_splits):
    spec = read_schema_spec(movielens_out / "schema.json")
    sequences = [f for f in spec.fields if f.kind == "sequence"]

    assert spec.label == "click"
    assert spec.field_names == list(movielens_field_names())
    assert [(f.name, f.max_length, f.separator) for f in sequences] == [
        ("history_movies", 20, "|"),
        ("history_genres", 20, "|"),
    ]
    assert spec["age"].kind == "numeric"
    assert list(movielens_splits["train"].columns) == [*spec.field_names, "click", "timestamp"]


@needs_shared_data
def test_movielens_user_196_by_hand(movielens_rows):
    # User 196 rated movies 242, 286 and 269 in the same second (file lines 2,
    # 13735 and 78789), then 306 at 881251021 and 340 at 881251045. Their
    # titles, years and first genres in ml-100k.item: 242 Kolya 1996 Comedy,
    # 286 English Patient, The 1996 Drama, 269 Full Monty, The 1997 Comedy,
    # 306 Mrs. Brown (Her Majesty, Mrs. Brown) 1997 Drama, 340 Boogie Nights 1997.
    rows = movielens_rows[movielens_rows["user_id"] == "196"].set_index("movie_id")
    same_second = ["Kolya (1996)", "English Patient, The (1996)", "Full Monty, The (1997)"]
    mrs_brown = "Mrs. Brown (Her Majesty, Mrs. Brown) (1997)"

    assert rows.loc[same_second, "history_movies"].tolist() == ["", "", ""]
    assert rows.loc[mrs_brown, "history_movies"] == "|".join(same_second)
    assert rows.loc["Boogie Nights (1997)", "history_movies"] == "|".join([*same_second, mrs_brown])
    assert rows.loc["Boogie Nights (1997)", "history_genres"] == "Comedy|Drama|Comedy|Drama"
    assert rows.loc[mrs_brown, "click"] == 1
    assert rows.loc["Boogie Nights (1997)", "click"] == 0


@needs_shared_data
@pytest.mark.parametrize("user", ["1", "13", "181", "196", "405", "655"])
def test_movielens_history_from_raw(movielens_rows, raw_ratings, raw_labels, user):
    ratings = sorted((t, line, m) for u, m, _, t, line in raw_ratings if u == user)
    rows = movielens_rows[movielens_rows["user_id"] == user]
    by_movie = dict(zip(rows["movie_id"], rows["history_movies"], strict=True))

    assert len(rows) == len(ratings)
    for timestamp, _, movie in ratings:
        earlier = [raw_labels[m] for t, _, m in ratings if t < timestamp]
        assert by_movie[raw_labels[movie]] == "|".join(earlier[-20:]), (user, movie)


@pytest.fixture(scope="module")
def prepared_labels(movielens_rows, raw_ratings) -> dict[str, set[str]]:
    """Every ``movie_id`` value written for each raw movie id (rows and ratings share their order)."""
    raw_movies = [movie for _, movie, _, _, _ in sorted(raw_ratings, key=lambda r: (r[3], r[4]))]
    labels = defaultdict(set)
    for movie, label in zip(raw_movies, movielens_rows["movie_id"], strict=True):
        labels[movie].add(label)
    return labels


@needs_shared_data
def test_movielens_target_labels_all_rows(prepared_labels, raw_labels):
    assert len(prepared_labels) == 1_682
    assert {movie: labels for movie, labels in prepared_labels.items() if len(labels) != 1} == {}
    assert {movie: min(labels) for movie, labels in prepared_labels.items()} == raw_labels


@needs_shared_data
def test_movielens_labels_by_hand(prepared_labels):
    # Titles and years read off ml-100k.item by hand.
    assert prepared_labels["1"] == {"Toy Story (1995)"}
    assert prepared_labels["242"] == {"Kolya (1996)"}
    assert prepared_labels["543"] == {"Misérables, Les (1995)"}
    assert prepared_labels["1633"] == {"Á köldum klaka (Cold Fever) (1994)"}
    # Movie 267 is titled "unkonwn" with year "unkonwn", and movie 1412 has year "V".
    assert prepared_labels["267"] == {"unkonwn"}
    assert prepared_labels["1412"] == {"Land Before Time III: The Time of the Great Giving (1995)"}


@needs_shared_data
def test_movielens_labels_unique(movielens_rows, raw_items):
    labels = set(movielens_rows["movie_id"])
    history_labels = {label for cell in movielens_rows["history_movies"] for label in items_of(cell)}

    assert len(raw_items) == 1_682
    assert len(labels) == 1_682
    assert history_labels <= labels
    assert not any("|" in label for label in labels)


@needs_shared_data
def test_movielens_labels_collisions(prepared_labels, raw_items):
    # ml-100k.item gives 22 titles to more than one movie id. Five of them differ
    # by year (Sabrina 1954 and 1995, for example), so 18 "Title (year)" labels
    # are shared, each by two ids, and those 36 movies get their id appended.
    titles = Counter(title for title, _, _ in raw_items.values())
    suffixed = {movie for movie, labels in prepared_labels.items() if min(labels).endswith(f" [id {movie}]")}

    assert sum(count > 1 for count in titles.values()) == 22
    assert len(suffixed) == 36
    assert prepared_labels["246"] == {"Chasing Amy (1997) [id 246]"}
    assert prepared_labels["268"] == {"Chasing Amy (1997) [id 268]"}
    assert prepared_labels["878"] == {"That Darn Cat! (1997) [id 878]"}
    assert prepared_labels["1003"] == {"That Darn Cat! (1997) [id 1003]"}
    assert prepared_labels["1444"] == {"That Darn Cat! (1965)"}
    assert (prepared_labels["486"], prepared_labels["274"]) == ({"Sabrina (1954)"}, {"Sabrina (1995)"})
    assert (prepared_labels["673"], prepared_labels["218"]) == ({"Cape Fear (1962)"}, {"Cape Fear (1991)"})


@needs_shared_data
def test_movielens_history_lengths_all_rows(movielens_rows, raw_ratings):
    timestamps = defaultdict(list)
    for user, _, _, timestamp, _ in raw_ratings:
        timestamps[user].append(timestamp)
    sorted_times = {user: np.sort(values) for user, values in timestamps.items()}
    n_earlier = [
        int(np.searchsorted(sorted_times[user], timestamp, side="left"))
        for user, timestamp in zip(movielens_rows["user_id"], movielens_rows["timestamp"], strict=True)
    ]
    lengths = movielens_rows["history_movies"].map(lambda cell: len(items_of(cell)))

    assert lengths.tolist() == [min(n, 20) for n in n_earlier]
    assert int((lengths == 0).sum()) > 943  # every user's first second, plus ties in it


@needs_shared_data
def test_movielens_parallel_genres(movielens_rows, first_genres, movie_of_label):
    movies = movielens_rows["history_movies"].map(items_of)
    genres = movielens_rows["history_genres"].map(items_of)

    assert (movies.map(len) == genres.map(len)).all()
    assert all(
        [first_genres[movie_of_label[label]] for label in label_list] == genre_list
        for label_list, genre_list in zip(movies, genres, strict=True)
    )
    assert movielens_rows["genre"].tolist() == [first_genres[movie_of_label[m]] for m in movielens_rows["movie_id"]]


@needs_shared_data
def test_movielens_split_by_time(movielens_splits):
    train, valid, test = movielens_splits.values()

    for part in (train, valid, test):
        assert part["timestamp"].is_monotonic_increasing
    assert train["timestamp"].max() <= valid["timestamp"].min()
    assert valid["timestamp"].max() <= test["timestamp"].min()
    assert (train["timestamp"].min(), test["timestamp"].max()) == (874724710, 893286638)


@needs_shared_data
def test_movielens_release_year_missing(movielens_rows):
    # Movie 267 has release year "unkonwn" and movie 1412 has "V" in the RecBole file.
    years = movielens_rows.drop_duplicates("movie_id").set_index("movie_id")["release_year"]

    assert years["unkonwn"] == ""
    assert years["Land Before Time III: The Time of the Great Giving (1995)"] == ""
    assert years["Toy Story (1995)"] == "1995"
    assert set(years[years != ""].str.len()) == {4}


@needs_shared_data
def test_movielens_encodes_with_schema(movielens_out):
    spec = read_schema_spec(movielens_out / "schema.json")
    train = read_frame(movielens_out / "train.parquet", label="click", max_rows=5_000)
    valid = read_frame(movielens_out / "valid.parquet", label="click", max_rows=2_000)
    schema = fit_schema(train, spec)
    dataset = encode(valid, schema)
    lengths = valid["history_movies"].map(lambda cell: min(len(items_of(cell)), 20)).to_numpy()

    assert dataset.inputs["history_movies"].shape == (2_000, 20)
    assert ((dataset.inputs["history_movies"] != 0).sum(axis=1) == lengths).all()
    assert ((dataset.inputs["history_genres"] != 0).sum(axis=1) == lengths).all()
    assert dataset.labels.sum() == valid["click"].sum()


@needs_shared_data
def test_movielens_deterministic_bytes(movielens_out, tmp_path):
    again = tmp_path / "again"
    prepare_movielens(MOVIELENS_DIR, again)

    for name in ("train.parquet", "valid.parquet", "test.parquet", "schema.json"):
        assert (again / name).read_bytes() == (movielens_out / name).read_bytes(), name
    first = (movielens_out / PREPARED_NAME).read_text(encoding="utf-8")
    second = (again / PREPARED_NAME).read_text(encoding="utf-8")
    assert second == first.replace(str(movielens_out), str(again))


@needs_shared_data
def test_movielens_prepared_record(movielens_out):
    text = (movielens_out / PREPARED_NAME).read_text(encoding="utf-8")

    assert "a8a8c3f165aedc53f63b5dc0a0463b14" in text  # ml-100k.inter md5
    assert "| train | 80,000 | 44,072 | 0.5509 |" in text
    assert f"--out {movielens_out}" in text


# --- MovieLens errors -----------------------------------------------------------


def test_movielens_missing_folder(tmp_path):
    with pytest.raises(DataError, match="source folder not found"):
        read_movielens(tmp_path / "absent")


def test_movielens_missing_file(tmp_path):
    source = write_movielens(tmp_path / "ml")
    (source / "ml-100k.item").unlink()

    with pytest.raises(DataError, match=r"ml-100k\.item not found in"):
        read_movielens(source)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("user_id\titem_id\trating\ttimestamp", r"header cell 'user_id' is not 'name:type'"),
        ("user_id:token\titem_id:token\trating:float\ttime:float", r"line 1: the header has no column 'timestamp'"),
        ("user_id:token\titem_id:token\trating:float\ttimestamp:date", r"header cell 'timestamp:date'"),
    ],
)
def test_movielens_bad_header(tmp_path, header, message):
    source = write_movielens(tmp_path / "ml", inter=[header, f"1\t10\t4\t{BASE}"])

    with pytest.raises(DataError, match=message) as caught:
        read_movielens(source)
    assert "ml-100k.inter" in str(caught.value)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1\t10\t4", r"line 3: 3 tab-separated cells, but the header has 4"),
        ("1\t10\t4\tyesterday", r"line 3: timestamp 'yesterday' is not a whole number"),
        (f"1\t10\tfive\t{BASE}", r"line 3: rating 'five' is not a number"),
        (f"9\t10\t4\t{BASE}", r"line 3: user_id '9' is not in ml-100k.user"),
        (f"1\t99\t4\t{BASE}", r"line 3: item_id '99' is not in ml-100k.item"),
    ],
)
def test_movielens_bad_row(tmp_path, row, message):
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    source = write_movielens(tmp_path / "ml", inter=[header, f"2\t20\t3\t{BASE}", row])

    with pytest.raises(DataError, match=message) as caught:
        read_movielens(source)
    assert "ml-100k.inter" in str(caught.value)


def test_movielens_bad_item_file(tmp_path):
    items = [*ITEM_LINES, "50\tEpsilon\t1990\t"]
    source = write_movielens(tmp_path / "ml", items=items)

    with pytest.raises(DataError, match=r"ml-100k\.item' line 6: movie '50' has no genre"):
        read_movielens(source)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("50\tA|B\t1990\tDrama", r"line 6: movie_title 'A\|B \(1990\)' contains '\|', the separator"),
        ("50\t \t1990\tDrama", r"line 6: movie '50' has an empty movie_title; give every movie a title"),
        # Movie 60 makes movie 10's label "Alpha (1995)" ambiguous, so 10 becomes
        # "Alpha (1995) [id 10]", which is already movie 50's own title.
        (
            "50\tAlpha (1995) [id 10]\tunknown\tDrama\n60\tAlpha\t1995\tDrama",
            r"line 6: movie '50' gets the label 'Alpha \(1995\) \[id 10\]', which the movie on line 2 already has",
        ),
    ],
)
def test_movielens_bad_title(tmp_path, line, message):
    source = write_movielens(tmp_path / "ml", items=[*ITEM_LINES, *line.split("\n")])

    with pytest.raises(DataError, match=message) as caught:
        read_movielens(source)
    assert "ml-100k.item" in str(caught.value)


def test_movielens_duplicate_user(tmp_path):
    source = write_movielens(tmp_path / "ml", users=[*USER_LINES, "1\t30\tF\twriter\t10001"])

    with pytest.raises(DataError, match=r"line 4: id '1' already appears on line 2"):
        read_movielens(source)


@pytest.mark.parametrize("max_length", [0, -3, 2.5, True])
def test_movielens_bad_max_length(tmp_path, max_length):
    with pytest.raises(DataError, match="max_length must be a whole number >= 1"):
        read_movielens(write_movielens(tmp_path / "ml"), max_length=max_length)


def test_movielens_too_few_rows(tmp_path):
    header = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    source = write_movielens(tmp_path / "ml", inter=[header, *(f"1\t10\t4\t{BASE + i}" for i in range(9))])

    with pytest.raises(DataError, match="gives only 9 rows; the 80/10/10 split needs at least 10"):
        prepare_movielens(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- output folder ------------------------------------------------------------


def test_out_exists_without_overwrite(tmp_path):
    source = write_movielens(tmp_path / "ml")
    prepare_movielens(source, tmp_path / "out")
    before = {name: (tmp_path / "out" / name).read_bytes() for name in OUTPUT_FILES}

    with pytest.raises(DataError, match="already exists; choose another --out or pass --overwrite"):
        prepare_movielens(source, tmp_path / "out", max_length=2)
    assert {name: (tmp_path / "out" / name).read_bytes() for name in OUTPUT_FILES} == before


def test_out_overwrite_replaces_prepared(tmp_path):
    source = write_movielens(tmp_path / "ml")
    prepare_movielens(source, tmp_path / "out")
    prepare_movielens(source, tmp_path / "out", max_length=2, overwrite=True)

    spec = read_schema_spec(tmp_path / "out" / "schema.json")
    assert spec["history_movies"].max_length == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUT_FILES)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_out_overwrite_keeps_other_folder(tmp_path):
    source = write_movielens(tmp_path / "ml")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")

    with pytest.raises(DataError, match="was not written by workbench prepare"):
        prepare_movielens(source, tmp_path / "mine", overwrite=True)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_out_failed_write_leaves_nothing(tmp_path, monkeypatch):
    source = write_movielens(tmp_path / "ml")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail)
    with pytest.raises(DataError, match="could not write the prepared data to .*disk full"):
        prepare_movielens(source, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml"]


# --- command line -------------------------------------------------------------


def test_cli_prepare_movielens(tmp_path):
    source = write_movielens(tmp_path / "ml")
    status, stdout, stderr = run_cli(["prepare", "movielens", "--source", str(source), "--out", str(tmp_path / "out"),
                                      "--max-length", "3"])

    assert status == 0, stderr
    assert '"rows": 8' in stdout
    assert read_schema_spec(tmp_path / "out" / "schema.json")["history_genres"].max_length == 3
    prepared = (tmp_path / "out" / PREPARED_NAME).read_text(encoding="utf-8")
    assert f"workbench prepare movielens --source {source} --out {tmp_path / 'out'} --max-length 3" in prepared


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["movielens", "--source", "{tmp}/absent"], "error: source folder not found"),
        (["movielens", "--source", "{tmp}/ml", "--max-length", "0"], "error: --max-length must be a whole number >= 1; got '0'"),
        (["movielens", "--source", "{tmp}/ml", "--max-length", "ten"], "error: --max-length must be a whole number >= 1"),
        (["movielens", "--source", "{tmp}/ml", "--out", "{tmp}/ml", "--overwrite"], "was not written by workbench prepare"),
        (["movielens", "--source", "{tmp}/ml/ml-100k.inter"], "is a file; pass the folder"),
        (["taobao", "--source", "{tmp}/ml"], "error: --source '.*/ml' is a folder"),
        (["taobao", "--source", "{tmp}/absent.txt"], "error: source file not found"),
    ],
)
def test_cli_prepare_errors(tmp_path, arguments, message):
    write_movielens(tmp_path / "ml")
    argv = ["prepare", *(a.format(tmp=tmp_path) for a in arguments)]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    status, stdout, stderr = run_cli(argv)

    assert status == 2
    assert stdout == ""
    assert len(stderr.strip().splitlines()) == 1
    assert re.search(message, stderr), stderr


# --- Alimama DMR sample -------------------------------------------------------


@pytest.fixture(scope="module")
def raw_dmr() -> np.ndarray:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data folder at {str(SHARED_DATA)!r}")
    return np.loadtxt(DMR_FILE, delimiter=",", dtype=np.float64)


@pytest.fixture(scope="module")
def dmr_frame(raw_dmr) -> pd.DataFrame:
    return read_dmr_sample(DMR_FILE)


@needs_shared_data
def test_dmr_rows_and_clicks(dmr_frame):
    assert len(dmr_frame) == 500
    assert int(dmr_frame["click"].sum()) == 210
    assert list(dmr_frame.columns) == [*dmr_field_names(), "click"]


@needs_shared_data
def test_dmr_history_lengths_match_mask(dmr_frame, raw_dmr):
    mask = raw_dmr[:, 150:200]
    expected = mask.sum(axis=1).astype(int)

    for name in ("history_cate", "history_brand", "history_btag"):
        lengths = dmr_frame[name].map(lambda cell: len(items_of(cell))).to_numpy()
        assert (lengths == expected).all(), name
    assert sorted(set(expected)) == [1, 2, 28, 48, 50]


@needs_shared_data
def test_dmr_history_values_in_file_order(dmr_frame, raw_dmr):
    for row in (0, 59, 129, 315, 499):
        real = raw_dmr[row, 150:200] == 1
        for name, start in (("history_btag", 0), ("history_cate", 50), ("history_brand", 100)):
            expected = [str(int(v)) for v in raw_dmr[row, start : start + 50][real]]
            assert items_of(dmr_frame.loc[row, name]) == expected, (row, name)
    # Row 59 has 28 real steps, and its last step is column 99 of the category block.
    assert items_of(dmr_frame.loc[59, "history_cate"])[-1] == str(int(raw_dmr[59, 99]))


@needs_shared_data
def test_dmr_profile_and_ad_columns(dmr_frame, raw_dmr):
    first = dmr_frame.iloc[0]

    assert (first["user_id"], first["cms_segid"], first["adgroup_id"], first["brand"]) == ("1000043", "27", "328301", "121422")
    assert first["price"] == pytest.approx(0.98971260954681)
    assert first["pid"] == "1"
    assert (dmr_frame["brand"] == "").sum() == (raw_dmr[:, 263] == 0).sum() == 190
    assert (dmr_frame["pvalue_level"] == "").sum() == (raw_dmr[:, 255] == 0).sum()
    assert (dmr_frame["cms_segid"] == "0").sum() == (raw_dmr[:, 251] == 0).sum()
    assert dmr_frame["click"].tolist() == raw_dmr[:, 266].astype(int).tolist()


@needs_shared_data
def test_dmr_prepare_split(tmp_path):
    prepare_taobao(DMR_FILE, tmp_path / "out")
    splits = read_splits(tmp_path / "out")
    spec = read_schema_spec(tmp_path / "out" / "schema.json")

    assert [len(part) for part in splits.values()] == [400, 50, 50]
    assert sum(int(part["click"].sum()) for part in splits.values()) == 210
    assert spec.field_names == list(dmr_field_names())
    assert {f.name: f.max_length for f in spec.fields if f.kind == "sequence"} == {
        "history_cate": 50, "history_brand": 50, "history_btag": 50,
    }
    dataset = encode(splits["valid"], fit_schema(splits["train"], spec))
    assert dataset.inputs["history_cate"].shape == (50, 50)


def dmr_line(**cells: str) -> str:
    """Build one DMR line: 50 real steps, every id 7, price 0.5, label 0. ``c<k>=value`` replaces column k."""
    values = ["7"] * 150 + ["1"] * 50 + ["0"] * 50 + ["7"] * 14 + ["0.5", "1", "0"]
    for key, value in cells.items():
        values[int(key[1:])] = value
    return ",".join(values)


def test_dmr_null_and_padding(tmp_path):
    masked = {f"c{150 + step}": "0" for step in range(3)}
    lines = [dmr_line(c255="NULL", c263="", c251="", **masked, c0="", c50="0", c100="0"), dmr_line(c266="1"), ""]
    (tmp_path / "dmr.txt").write_text("\n".join(lines), encoding="utf-8")
    frame = read_dmr_sample(tmp_path / "dmr.txt")

    assert len(frame) == 2
    assert (frame.loc[0, "pvalue_level"], frame.loc[0, "brand"], frame.loc[0, "cms_segid"]) == ("", "", "0")
    assert len(items_of(frame.loc[0, "history_cate"])) == 47
    assert len(items_of(frame.loc[1, "history_cate"])) == 50
    assert frame["click"].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1,2,3", r"line 1: 3 comma-separated cells; the DMR layout has 267"),
        (dmr_line(c259="abc"), r"line 1: column 259 \(0-based\) is 'abc', not a whole number"),
        (dmr_line(c170="2"), r"line 1: column 170 \(0-based, history mask\) is '2'; expected 0 or 1"),
        (dmr_line(c266="3"), r"line 1: column 266 \(0-based, label\) is '3'; expected 0 or 1"),
        (dmr_line(c264="cheap"), r"line 1: price \(column 264\) is 'cheap', not a finite number"),
    ],
)
def test_dmr_bad_line(tmp_path, line, message):
    (tmp_path / "dmr.txt").write_text(line + "\n", encoding="utf-8")

    with pytest.raises(DataError, match=message) as caught:
        read_dmr_sample(tmp_path / "dmr.txt")
    assert "dmr.txt" in str(caught.value)


def test_dmr_empty_file(tmp_path):
    (tmp_path / "dmr.txt").write_text("\n", encoding="utf-8")

    with pytest.raises(DataError, match="has no data lines"):
        read_dmr_sample(tmp_path / "dmr.txt")
