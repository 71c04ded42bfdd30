"""Bad inputs give one clear error, in the CLI and in the app, that names the file, the field, the value and a fix.

The CLI runs in-process (``run_cli``): a bad input must end with exit status 2
and one ``error:`` line on stderr, never a traceback. The app runs through
``AppTest``: a bad input must show ``st.error`` and raise no exception.

Decisions that the tests pin down:

- extra columns are ignored;
- labels -1/1 are read as 0/1, any other label (2, "yes") is rejected;
- NaN and empty numeric cells count as missing (the training mean, encoded 0).
  Infinite values and text in a numeric field are rejected with the row.
- unseen categorical values and sequence items map to OOV and are counted;
- sequences longer than the field's ``max_length`` keep their most recent items;
- files above ``WORKBENCH_MAX_DATA_MB`` are rejected before they are read,
  unless only the first rows of a CSV or libfm file are read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import point_app_at, run_cli
from workbench.bundle import BundleError, load_bundle
from workbench.data import DataError, load_dataset, read_frame
from workbench.schema import PAD_INDEX, SchemaError

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
MODELS = REPO_ROOT / "models"
LR = MODELS / "ad_clicks_lr"
TEST_PARQUET = REPO_ROOT / "sample_data" / "ad_clicks" / "test.parquet"
TIMEOUT_S = 60
N_ROWS = 20


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    """The first 20 rows of the ad-click test split, as read from Parquet."""
    return read_frame(TEST_PARQUET, max_rows=N_ROWS)


def write_csv(frame: pd.DataFrame, path: Path, **options) -> Path:
    frame.to_csv(path, index=False, **options)
    return path


def cli_error(argv: list[str]) -> str:
    """Run the CLI, check that it failed with one ``error:`` line and no traceback, and return that line."""
    status, stdout, stderr = run_cli(argv)
    assert status == 2, (status, stdout, stderr)
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def evaluate_error(data: Path, bundle: Path = LR, *extra: str) -> str:
    return cli_error(["evaluate", str(bundle), str(data), *extra])


def evaluate_ok(data: Path, bundle: Path = LR, *extra: str) -> dict:
    status, stdout, stderr = run_cli(["evaluate", str(bundle), str(data), *extra])
    assert status == 0, stderr
    return json.loads(stdout)


# --- 1. missing and extra columns ------------------------------------------------------


def test_missing_column_names_file(rows, tmp_path):
    path = write_csv(rows.drop(columns=["city"]), tmp_path / "no_city.csv")
    line = evaluate_error(path)
    assert str(path) in line
    assert "the data has no column(s) 'city'" in line
    assert "add the missing columns" in line
    with pytest.raises(SchemaError, match="no column"):
        load_dataset(path, load_bundle(LR).schema)


def test_missing_column_in_explain(rows, tmp_path):
    path = write_csv(rows.drop(columns=["user_age", "click"]), tmp_path / "no_age.csv")
    line = cli_error(["explain", str(LR), str(path), "--rows", "5", "--out", str(tmp_path / "out.parquet")])
    assert str(path) in line
    assert "'user_age', 'click'" in line
    assert not (tmp_path / "out.parquet").exists()


def test_extra_columns_are_ignored(rows, tmp_path):
    plain = evaluate_ok(write_csv(rows, tmp_path / "plain.csv"))
    extra = evaluate_ok(write_csv(rows.assign(note="x", score=1.5), tmp_path / "extra.csv"))
    assert extra["n_rows"] == N_ROWS
    assert extra["auc"] == plain["auc"]
    assert extra["logloss"] == plain["logloss"]


# --- 2. delimiter and encoding ---------------------------------------------------------


def test_semicolon_csv_names_delimiter(rows, tmp_path):
    path = write_csv(rows, tmp_path / "semicolons.csv", sep=";")
    line = evaluate_error(path)
    assert str(path) in line
    assert "has one column 'user_id;gender;" in line
    assert "separate columns with ';'" in line
    assert "save it with ',' between columns" in line


def test_tab_separated_csv_suggests_tsv(rows, tmp_path):
    path = write_csv(rows, tmp_path / "tabs.csv", sep="\t")
    line = evaluate_error(path)
    assert "separate columns with a tab" in line
    assert "or name it .tsv" in line


def test_latin1_csv_names_line_and_byte(rows, tmp_path):
    frame = rows.copy()
    frame.loc[1, "city"] = "Zürich"
    path = write_csv(frame, tmp_path / "latin1.csv", encoding="latin-1")
    line = evaluate_error(path)
    assert str(path) in line
    # Line 1 is the header, so data row 1 is line 3.
    assert "is not UTF-8 text: line 3 contains the byte 0xfc" in line
    assert "save the file as UTF-8" in line


def test_utf16_csv_is_rejected(rows, tmp_path):
    path = write_csv(rows, tmp_path / "utf16.csv", encoding="utf-16")
    line = evaluate_error(path)
    assert f"{str(path)!r} is UTF-16 or UTF-32 text" in line
    assert "save the file as UTF-8" in line


# --- 3. empty and header-only files ----------------------------------------------------


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    line = evaluate_error(path)
    assert f"{str(path)!r} is empty (0 bytes)" in line
    assert "with a header and data rows" in line


def test_empty_libfm_file_is_rejected(tmp_path):
    path = tmp_path / "empty.libfm"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"is empty \(0 bytes\)"):
        read_frame(path)


def test_header_only_file(rows, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text(",".join(rows.columns) + "\n", encoding="utf-8")
    line = evaluate_error(path)
    assert f"cannot evaluate on an empty data set ({path})" in line
    assert "choose a data file with rows below its header" in line
    explain = cli_error(["explain", str(LR), str(path), "--rows", "5", "--out", str(tmp_path / "out.parquet")])
    assert f"{str(path)!r} has no rows" in explain


# --- 4. labels -------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [2, "yes", -2, 0.5])
def test_label_outside_zero_one_is_rejected(rows, tmp_path, bad):
    frame = rows.astype({"click": object})
    frame.loc[7, "click"] = bad
    frame.loc[9, "click"] = bad
    path = write_csv(frame, tmp_path / "labels.csv")
    line = evaluate_error(path)
    assert str(path) in line
    value_kind = "a non-numeric value" if bad == "yes" else "the value"
    assert f"label column 'click' has {value_kind} {str(bad)!r} in row 7 (0-based; 2 such row(s))" in line
    assert "labels must be 0/1 (or -1/1, read as 0/1)" in line


def test_minus_one_labels_map_to_zero(rows, tmp_path):
    frame = rows.assign(click=np.where(rows["click"].astype(int) == 1, 1, -1))
    path = write_csv(frame, tmp_path / "signed.csv")
    dataset = load_dataset(path, load_bundle(LR).schema)
    assert dataset.labels.tolist() == rows["click"].astype(float).tolist()
    assert set(dataset.labels.tolist()) == {0.0, 1.0}
    assert evaluate_ok(path)["auc"] == evaluate_ok(write_csv(rows, tmp_path / "plain.csv"))["auc"]


# --- 5. NaN, inf and text in numeric fields --------------------------------------------


def test_nan_cells_take_training_mean(rows, tmp_path):
    frame = rows.copy()
    frame.loc[2, "user_age"] = np.nan
    frame.loc[4, "bid_price"] = np.nan
    schema = load_bundle(LR).schema
    for path in (write_csv(frame, tmp_path / "nan.csv"), tmp_path / "nan.parquet"):
        if path.suffix == ".parquet":
            frame.to_parquet(path, index=False)
        dataset = load_dataset(path, schema)
        # Inputs are standardised, so the training mean encodes as exactly 0.
        assert dataset.inputs["user_age"][2] == 0.0
        assert dataset.inputs["bid_price"][4] == 0.0
        age = schema["user_age"]
        assert dataset.inputs["user_age"][3] == pytest.approx((float(rows.loc[3, "user_age"]) - age.mean) / age.std)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_infinite_numeric_value_is_rejected(rows, tmp_path, value, suffix):
    frame = rows.copy()
    frame.loc[5, "bid_price"] = value
    path = tmp_path / f"inf{suffix}"
    if suffix == ".csv":
        write_csv(frame, path)
    else:
        frame.to_parquet(path, index=False)
    line = evaluate_error(path)
    assert str(path) in line
    # CSV cells are text, Parquet cells floats.
    shown = repr(str(value)) if suffix == ".csv" else repr(float(value))
    assert f"numeric field 'bid_price' contains {shown} in row 5" in line
    assert "in row 5 (0-based; 1 such row(s))" in line
    assert "numeric values must be finite" in line
    assert "leave the cell empty" in line


# --- 6. unseen categorical values ------------------------------------------------------


def unseen_city_frame(rows: pd.DataFrame) -> pd.DataFrame:
    frame = rows.copy()
    frame.loc[[0, 3, 8], "city"] = ["Atlantis", "El Dorado", "Atlantis"]
    return frame


def test_unseen_categories_map_to_oov_and_are_counted(rows, tmp_path):
    bundle = load_bundle(LR)
    path = write_csv(unseen_city_frame(rows), tmp_path / "unseen.csv")
    dataset = load_dataset(path, bundle.schema)
    plain = load_dataset(write_csv(rows, tmp_path / "plain.csv"), bundle.schema)
    oov = bundle.schema["city"].vocabulary.oov_index
    assert dataset.oov_counts["city"] == plain.oov_counts["city"] + 3
    assert dataset.inputs["city"][[0, 3, 8]].tolist() == [oov, oov, oov]
    assert evaluate_ok(path)["oov_counts"]["city"] == dataset.oov_counts["city"]


# --- 7. sequences ----------------------------------------------------------------------


def test_long_sequences_keep_recent_items(rows, tmp_path):
    schema = load_bundle(LR).schema
    f = schema["history_categories"]
    known = list(f.vocabulary.decode([1, 2, 3]))
    # 25 items: 21 known, then 'mystery', then three known ones. max_length is 20, so 'mystery' is kept.
    items = [known[i % 3] for i in range(21)] + ["mystery"] + known
    frame = rows.iloc[:2].copy()
    frame["history_categories"] = ["|".join(items), "mystery|unknown-too"]
    dataset = load_dataset(write_csv(frame, tmp_path / "long.csv"), schema)
    oov = f.vocabulary.oov_index

    assert f.max_length == 20
    expected, _ = f.vocabulary.encode(items[-20:])
    assert dataset.inputs["history_categories"][0].tolist() == expected.tolist()
    assert f.vocabulary.decode(dataset.inputs["history_categories"][0].tolist())[-4:] == ["<OOV>", *known]
    assert dataset.inputs["history_categories"][1].tolist() == [oov, oov] + [PAD_INDEX] * 18
    # One unknown item in row 0 and two in row 1.
    assert dataset.oov_counts["history_categories"] == 3


# --- 8. broken bundles -----------------------------------------------------------------


def copy_bundle(source: Path, target: Path, *, keep_hash: bool = True) -> Path:
    shutil.copytree(source, target)
    if not keep_hash:
        manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
        manifest["weights"].pop("sha256", None)
        (target / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return target


@pytest.mark.parametrize("keep_hash", [True, False])
def test_truncated_weights(tmp_path, keep_hash):
    bundle = copy_bundle(LR, tmp_path / "cut", keep_hash=keep_hash)
    weights = bundle / "weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    line = evaluate_error(TEST_PARQUET, bundle, "--max-rows", "10")
    assert str(weights) in line
    if keep_hash:
        assert "does not match its manifest (SHA-256 differs)" in line
    else:
        assert "is not a readable safetensors file" in line


@pytest.mark.parametrize("keep_hash", [True, False])
def test_junk_weights(tmp_path, keep_hash):
    bundle = copy_bundle(LR, tmp_path / "junk", keep_hash=keep_hash)
    (bundle / "weights.safetensors").write_bytes(b"these are not weights\n" * 50)
    with pytest.raises(BundleError, match="weights.safetensors"):
        load_bundle(bundle)
    line = evaluate_error(TEST_PARQUET, bundle, "--max-rows", "10")
    assert str(bundle / "weights.safetensors") in line


def test_newer_format_version_says_upgrade(tmp_path):
    bundle = copy_bundle(LR, tmp_path / "newer")
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    line = evaluate_error(TEST_PARQUET, bundle, "--max-rows", "10")
    assert str(bundle / "manifest.json") in line
    assert "format_version 99" in line
    assert "upgrade the workbench" in line


def test_swapped_weights_fail_hash(tmp_path):
    bundle = copy_bundle(LR, tmp_path / "swapped")
    shutil.copyfile(MODELS / "ad_clicks_fm" / "weights.safetensors", bundle / "weights.safetensors")
    line = evaluate_error(TEST_PARQUET, bundle, "--max-rows", "10")
    assert "SHA-256 differs" in line
    assert "belong to another bundle" in line


def test_swapped_weights_list_tensors(tmp_path):
    lr = load_bundle(LR).model.state_dict()
    deepfm = load_bundle(MODELS / "ad_clicks_deepfm").model.state_dict()
    bundle = copy_bundle(LR, tmp_path / "swapped", keep_hash=False)
    shutil.copyfile(MODELS / "ad_clicks_deepfm" / "weights.safetensors", bundle / "weights.safetensors")
    line = evaluate_error(TEST_PARQUET, bundle, "--max-rows", "10")
    assert "do not match the architecture in the manifest" in line
    missing = sorted(set(lr) - set(deepfm))
    unexpected = sorted(set(deepfm) - set(lr))
    assert missing or unexpected
    assert f"missing {missing[:5]}, unexpected {unexpected[:5]}" in line


# --- 9. data that does not fit the model's schema --------------------------------------


def test_numeric_field_holding_text_is_rejected(rows, tmp_path):
    frame = rows.astype({"user_age": object})
    frame.loc[6, "user_age"] = "thirty"
    path = write_csv(frame, tmp_path / "text_age.csv")
    line = evaluate_error(path)
    assert str(path) in line
    assert "numeric field 'user_age' contains 'thirty' in row 6" in line
    assert "which is not a number" in line


@pytest.mark.parametrize("marker", ["NaN", "nan", "NULL", "n/a"])
def test_missing_markers_count_as_missing(rows, tmp_path, marker):
    frame = rows.astype({"user_age": object})
    frame.loc[6, "user_age"] = marker
    dataset = load_dataset(write_csv(frame, tmp_path / "marker.csv"), load_bundle(LR).schema)
    assert dataset.inputs["user_age"][6] == 0.0


def test_data_of_another_model(tmp_path):
    frame = pd.DataFrame({"label": [0, 1], "age": [30, 40], "city": ["Paris", "Rome"]})
    path = write_csv(frame, tmp_path / "other.csv")
    line = evaluate_error(path)
    assert str(path) in line
    assert "'user_id', 'gender', 'user_age'" in line
    assert "columns found: label, age, city" in line


# --- 10. size limit --------------------------------------------------------------------


def sparse_csv(rows: pd.DataFrame, path: Path, size: int) -> Path:
    """Write ``rows`` as CSV, then extend the file to ``size`` bytes with a hole (no disk space used)."""
    write_csv(rows, path)
    with open(path, "r+b") as handle:
        handle.truncate(size)
    return path


def test_huge_file_is_rejected_before_reading(rows, tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_MAX_DATA_MB", raising=False)
    path = sparse_csv(rows, tmp_path / "huge.csv", 2_200_000_000)
    line = evaluate_error(path)
    assert f"{str(path)!r} is 2,200.0 MB, above the limit of 2,048 MB" in line
    assert "--max-rows" in line
    assert "WORKBENCH_MAX_DATA_MB" in line


def test_huge_csv_with_max_rows(rows, tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_MAX_DATA_MB", raising=False)
    path = sparse_csv(rows, tmp_path / "huge.csv", 2_200_000_000)
    result = evaluate_ok(path, LR, "--max-rows", "10")
    assert result["n_rows"] == 10
    small = evaluate_ok(write_csv(rows.iloc[:10], tmp_path / "first10.csv"))
    assert result["auc"] == small["auc"]


def test_limit_from_environment(rows, tmp_path, monkeypatch):
    path = tmp_path / "rows.parquet"
    rows.to_parquet(path, index=False)
    size_mb = path.stat().st_size / 1e6
    monkeypatch.setenv("WORKBENCH_MAX_DATA_MB", "0.001")
    line = evaluate_error(path)
    assert f"is {size_mb:,.1f} MB, above the limit of 0.001 MB" in line
    assert "split it into smaller Parquet files" in line
    # A Parquet file is read whole, so --max-rows does not lift the limit.
    assert "above the limit" in evaluate_error(path, LR, "--max-rows", "5")
    monkeypatch.setenv("WORKBENCH_MAX_DATA_MB", str(size_mb * 2))
    assert evaluate_ok(path)["n_rows"] == N_ROWS


@pytest.mark.parametrize("text", ["lots", "0", "-5"])
def test_bad_limit_setting(rows, tmp_path, monkeypatch, text):
    monkeypatch.setenv("WORKBENCH_MAX_DATA_MB", text)
    line = evaluate_error(write_csv(rows, tmp_path / "rows.csv"))
    assert f"WORKBENCH_MAX_DATA_MB must be a positive number of MB such as 2048; got {text!r}" in line


# --- the app ---------------------------------------------------------------------------


@pytest.fixture
def app_env(monkeypatch, tiny_models_dir, tiny_data_dir):
    yield from point_app_at(monkeypatch, tiny_models_dir, tiny_data_dir)


def open_app(page: str | None = None, data: Path | None = None, **session_state) -> AppTest:
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    app.session_state["importance_rows"] = 50
    for key, value in session_state.items():
        app.session_state[key] = value
    if data is not None:
        app.session_state["data_typed"] = str(data)
    app.run()
    if page is not None:
        app.switch_page(page)
        app.run()
    return app


def page_errors(app: AppTest) -> list[str]:
    assert not app.exception, [e.value for e in app.exception]
    return [e.value for e in app.error]


BAD_FILES = {
    "semicolon": ("separate columns with ';'", lambda rows, path: write_csv(rows, path, sep=";")),
    "latin1": ("is not UTF-8 text: line 2 contains", lambda rows, path: write_csv(rows.assign(city="Zürich"), path, encoding="latin-1")),
    "label": ("label column 'click' has the value '2' in row 0", lambda rows, path: write_csv(rows.assign(click=2), path)),
    "inf": ("numeric field 'bid_price' contains 'inf' in row 0", lambda rows, path: write_csv(rows.assign(bid_price=np.inf), path)),
    "missing": ("the data has no column(s) 'city'", lambda rows, path: write_csv(rows.drop(columns=["city"]), path)),
    "empty": ("is empty (0 bytes)", lambda rows, path: path.write_bytes(b"")),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_app_shows_bad_data_errors(app_env, rows, tmp_path, case):
    message, make = BAD_FILES[case]
    path = tmp_path / f"{case}.csv"
    make(rows, path)
    app = open_app()
    app.sidebar.text_input(key="data_typed").input(str(path)).run()
    errors = page_errors(app)
    assert len(errors) == 1
    assert str(path) in errors[0]
    assert message in errors[0]


def test_app_rejects_file_above_limit(app_env, rows, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_DATA_MB", "0.001")
    path = tmp_path / "rows.parquet"
    rows.to_parquet(path, index=False)
    errors = page_errors(open_app(data=path))
    assert len(errors) == 1
    assert "above the limit of 0.001 MB" in errors[0]
    assert "WORKBENCH_MAX_DATA_MB" in errors[0]


def test_app_overview_counts_unseen_values(app_env, rows, tmp_path, tiny_bundle_path):
    path = write_csv(unseen_city_frame(rows), tmp_path / "unseen.csv")
    app = open_app(data=path)
    assert not page_errors(app)
    dataset = load_dataset(path, load_bundle(tiny_bundle_path).schema)
    schema = next(df.value for df in app.dataframe if "OOV count" in df.value.columns).set_index("field")
    assert schema.loc["city", "OOV count"] == dataset.oov_counts["city"]
    assert schema.loc["city", "OOV count"] >= 3


def test_app_cohort_matching_no_rows(app_env):
    app = open_app()
    app.session_state["workbench_cohorts"] = {"nobody": {"name": "nobody", "ranges": {"bid_price": [1e9, 2e9]}}}
    app.session_state["cohort_pending_choice"] = "nobody"
    app.run()
    app.switch_page("workbench/app/pages/importance.py")
    app.run()
    errors = page_errors(app)
    assert any("cohort 'nobody'" in e and "matches none of the 2,000 rows" in e for e in errors), errors
    assert any("widen its conditions or load more rows" in e for e in errors)
