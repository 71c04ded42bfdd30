"""The workbench command: train, evaluate, explain and interactions on files written here, plus its error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from helpers import REPO_ROOT, run_cli, synthetic_frame, write_csv, write_schema_json
from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from workbench.bundle import MANIFEST_NAME, load_bundle, read_manifest
from workbench.data import file_fingerprint, load_dataset
from workbench.explain import background_sample, explain, interactions

TINY = ["--embedding-dim", "4", "--hidden-units", "8", "--epochs", "1", "--batch-size", "256", "--quiet"]
ATTRIBUTION_COLUMNS = [
    "row", "field", "raw_value", "attribution", "base_value", "prediction", "label", "method", "baseline", "output_space",
]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """CSV splits with schema.json next to them (all four field kinds)."""
    folder = tmp_path_factory.mktemp("sample")
    write_csv(synthetic_frame(2000, seed=1), folder / "train.csv")
    write_csv(synthetic_frame(500, seed=2), folder / "valid.csv")
    write_csv(synthetic_frame(300, seed=3), folder / "test.csv")
    write_schema_json(folder / "schema.json")
    return folder


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
    """The bundle that ``workbench train --arch deepfm`` wrote, with its exit status and output."""
    out = tmp_path_factory.mktemp("bundles") / "deepfm"
    argv = _train_argv("deepfm", sample / "train.csv", sample / "valid.csv", out, "--test", str(sample / "test.csv"), *TINY)

    status, stdout, stderr = run_cli(argv)
    return {"out": out, "status": status, "stdout": stdout, "stderr": stderr}


def _train_argv(architecture: str, train: Path, valid: Path, out: Path, *options: str) -> list[str]:
    return ["train", "--arch", architecture, "--train", str(train), "--valid", str(valid), "--out", str(out), *options]


def _main(argv: list[str]) -> int:
    from workbench.cli import main

    return main(argv)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


def _assert_one_error(status: int, stderr: str, message: str) -> None:
    assert status == 2
    assert "Traceback" not in stderr
    assert len(_error_lines(stderr)) == 1, stderr
    assert message in _error_lines(stderr)[0]


# --- train ----------------------------------------------------------------


def test_train_exit_status(trained):
    assert trained["status"] == 0, trained["stderr"]
    assert "Traceback" not in trained["stderr"]


def test_train_prints_summary(trained):
    summary = json.loads(trained["stdout"])

    assert summary["bundle"] == str(trained["out"])
    assert summary["best_epoch"] == 1
    assert set(summary["metrics"]) == {"valid", "test"}


def test_train_bundle_metrics(trained):
    metrics = load_bundle(trained["out"]).metrics

    assert metrics["test"]["n_rows"] == 300
    assert 0.0 <= metrics["test"]["auc"] <= 1.0
    assert metrics["valid"]["n_rows"] == 500


def test_train_bundle_hyperparameters(trained):
    manifest = read_manifest(trained["out"])

    assert manifest["architecture"] == "deepfm"
    assert manifest["hyperparameters"] == {"embedding_dim": 4, "hidden_units": [8], "dropout": 0.2, "batch_norm": True}
    assert manifest["training"]["config"]["epochs"] == 1
    assert manifest["training"]["config"]["batch_size"] == 256


def test_train_uses_schema_json(trained):
    schema = load_bundle(trained["out"]).schema

    assert [(f.name, f.kind) for f in schema.fields] == [
        ("city", "categorical"),
        ("device", "categorical"),
        ("age", "numeric"),
        ("history", "sequence"),
        ("vec", "dense"),
    ]


def test_train_records_data(trained, sample):
    data = read_manifest(trained["out"])["data"]

    assert data["format"] == "csv"
    assert data["train"] == {
        "path": str((sample / "train.csv").resolve()),
        "sha256": file_fingerprint(sample / "train.csv"),
        "rows": 2000,
    }
    assert data["test"]["rows"] == 300
    assert set(data["oov_counts"]) == {"valid", "test"}


def test_train_libfm(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "feature_map.tsv").write_text(
        "index\tfield\traw_value\n0\tcity\tBerlin\n1\tcity\tRome\n2\tdevice\tmobile\n3\tdevice\ttablet\n", encoding="utf-8"
    )
    for name, n_rows in (("train.libfm", 400), ("valid.libfm", 100)):
        cities, devices = rng.integers(0, 2, n_rows), rng.integers(2, 4, n_rows)
        labels = np.where(rng.random(n_rows) < np.where(cities == 0, 0.8, 0.2), 1, -1)
        lines = [f"{y} {c}:1 {d}:1" for y, c, d in zip(labels, cities, devices, strict=True)]
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")

    argv = _train_argv("fm", tmp_path / "train.libfm", tmp_path / "valid.libfm", tmp_path / "fm", *TINY)

    status, _, stderr = run_cli(argv)

    assert status == 0, stderr
    schema = load_bundle(tmp_path / "fm").schema
    assert [(f.name, f.kind) for f in schema.fields] == [("city", "categorical"), ("device", "categorical")]
    assert set(schema["city"].vocabulary.values) == {"Berlin", "Rome"}


def test_train_infers_schema(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"click": rng.integers(0, 2, 300), "price": rng.normal(size=300), "city": rng.choice(["a", "b", "c"], 300)}
    )
    frame.to_csv(tmp_path / "train.csv", index=False)

    argv = _train_argv("lr", tmp_path / "train.csv", tmp_path / "train.csv", tmp_path / "lr", "--label", "click", *TINY)

    status, _, stderr = run_cli(argv)

    assert status == 0, stderr
    schema = load_bundle(tmp_path / "lr").schema
    assert schema.label == "click"
    assert [(f.name, f.kind) for f in schema.fields] == [("price", "numeric"), ("city", "categorical")]


def test_train_overwrite(trained, sample, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    (out / "stale.txt").write_text("old", encoding="utf-8")

    argv = _train_argv("lr", sample / "train.csv", sample / "valid.csv", out, "--overwrite", *TINY)

    status, _, stderr = run_cli(argv)

    assert status == 0, stderr
    assert load_bundle(out).architecture == "lr"
    assert not (out / "stale.txt").exists()


# --- evaluate -------------------------------------------------------------


def test_evaluate_prints_auc(trained, sample, capsys):
    status = _main(["evaluate", str(trained["out"]), str(sample / "test.csv")])
    result = json.loads(capsys.readouterr().out)

    assert status == 0
    assert result["auc"] == pytest.approx(load_bundle(trained["out"]).metrics["test"]["auc"], abs=1e-9)
    assert result["n_rows"] == 300
    assert result["oov_counts"] == {"city": 0, "device": 0, "age": 0, "history": 0, "vec": 0}


def test_evaluate_max_rows(trained, sample):
    status, stdout, _ = run_cli(["evaluate", str(trained["out"]), str(sample / "test.csv"), "--max-rows", "100"])

    assert status == 0
    assert json.loads(stdout)["n_rows"] == 100


def test_evaluate_counts_oov(trained, tmp_path):
    frame = synthetic_frame(50, seed=9)
    frame.loc[:4, "city"] = "Atlantis"
    write_csv(frame, tmp_path / "odd.csv")

    status, stdout, _ = run_cli(["evaluate", str(trained["out"]), str(tmp_path / "odd.csv")])

    assert status == 0
    assert json.loads(stdout)["oov_counts"]["city"] == 5


def test_evaluate_single_class_valid_json(trained, tmp_path):
    frame = synthetic_frame(50, seed=8)
    frame["label"] = 0
    write_csv(frame, tmp_path / "negatives.csv")

    def reject(token):
        msg = f"non-standard JSON token {token}"
        raise ValueError(msg)

    status, stdout, _ = run_cli(["evaluate", str(trained["out"]), str(tmp_path / "negatives.csv")])
    result = json.loads(stdout, parse_constant=reject)

    assert status == 0
    assert result["auc"] is None


# --- explain --------------------------------------------------------------


def test_explain_writes_parquet(trained, sample, tmp_path):
    out = tmp_path / "ig.parquet"

    argv = ["explain", str(trained["out"]), str(sample / "test.csv"), "--rows", "40", "--out", str(out)]

    status, stdout, stderr = run_cli(argv)
    frame = pd.read_parquet(out)
    summary = json.loads(stdout)

    assert status == 0, stderr
    assert list(frame.columns) == ATTRIBUTION_COLUMNS
    assert len(frame) == 40 * 5
    assert frame["row"].unique().tolist() == list(range(40))
    assert summary["rows"] == 40
    assert summary["out"] == str(out)
    assert summary["completeness_gap_share"] >= 0.0
    assert set(summary["mean_abs_attribution"]) == {"city", "device", "age", "history", "vec"}


def test_explain_raw_values(trained, sample, tmp_path):
    out = tmp_path / "ig.parquet"
    raw = pd.read_csv(sample / "test.csv")

    run_cli(["explain", str(trained["out"]), str(sample / "test.csv"), "--rows", "3", "--out", str(out)])
    cities = pd.read_parquet(out).query("field == 'city'")["raw_value"].tolist()

    assert cities == raw["city"].iloc[:3].tolist()


def test_explain_row_ids_and_baseline(trained, sample, tmp_path):
    out = tmp_path / "ig.parquet"

    argv = ["explain", str(trained["out"]), str(sample / "test.csv"), "--row-ids", "7,2", "--baseline", "oov",
            "--n-steps", "8", "--out", str(out)]

    status, _, stderr = run_cli(argv)
    frame = pd.read_parquet(out)

    assert status == 0, stderr
    assert frame["row"].unique().tolist() == [7, 2]
    assert set(frame["baseline"]) == {"oov"}


def _explain_argv(trained, sample, out, *options: str) -> list[str]:
    return ["explain", str(trained["out"]), str(sample / "test.csv"), "--out", str(out), *options]


def _library_inputs(trained, sample, n_rows):
    bundle = load_bundle(trained["out"])
    return bundle.model, load_dataset(sample / "test.csv", bundle.schema, max_rows=n_rows)


def test_explain_exact_shapley_probability(trained, sample, tmp_path):
    out = tmp_path / "shapley.parquet"

    status, stdout, stderr = run_cli(
        _explain_argv(trained, sample, out, "--rows", "12", "--method", "exact_shapley", "--output-space", "probability")
    )
    frame = pd.read_parquet(out)
    model, dataset = _library_inputs(trained, sample, 12)
    expected = explain(model, dataset, method="exact_shapley", output_space="probability")

    assert status == 0, stderr
    assert set(frame["method"]) == {"exact_shapley"}
    assert set(frame["output_space"]) == {"probability"}
    np.testing.assert_allclose(frame["attribution"].to_numpy(), expected.values.reshape(-1), rtol=0, atol=1e-12)
    sums = frame.groupby("row")["attribution"].sum()
    spans = frame.groupby("row")["prediction"].first() - frame.groupby("row")["base_value"].first()
    np.testing.assert_allclose(sums.to_numpy(), spans.to_numpy(), atol=1e-9)
    assert json.loads(stdout)["efficient"] is True


def test_explain_auto_runs_exact_shapley(trained, sample, tmp_path):
    out = tmp_path / "auto.parquet"

    status, stdout, stderr = run_cli(_explain_argv(trained, sample, out, "--rows", "5", "--method", "auto"))

    assert status == 0, stderr
    assert json.loads(stdout)["method"] == "exact_shapley"
    assert set(pd.read_parquet(out)["method"]) == {"exact_shapley"}


def test_explain_banzhaf_not_efficient(trained, sample, tmp_path):
    status, stdout, stderr = run_cli(
        _explain_argv(trained, sample, tmp_path / "b.parquet", "--rows", "5", "--method", "exact_banzhaf")
    )

    assert status == 0, stderr
    assert json.loads(stdout)["efficient"] is False


@pytest.mark.parametrize("baseline", ["mean", "expectation"])
def test_explain_background_rows(trained, sample, tmp_path, baseline):
    out = tmp_path / "background.parquet"
    argv = _explain_argv(
        trained, sample, out, "--rows", "8", "--method", "exact_shapley", "--baseline", baseline,
        "--background-rows", "5", "--seed", "3",
    )

    status, _, stderr = run_cli(argv)
    model, dataset = _library_inputs(trained, sample, 8)
    expected = explain(
        model, dataset, method="exact_shapley", baseline=baseline, background=background_sample(dataset, 5, seed=3)
    )

    assert status == 0, stderr
    frame = pd.read_parquet(out)
    assert set(frame["baseline"]) == {baseline}
    np.testing.assert_allclose(frame["attribution"].to_numpy(), expected.values.reshape(-1), rtol=0, atol=1e-12)


def test_explain_groups_file(trained, sample, tmp_path):
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"where": ["city", "device"], "who": ["age", "history", "vec"]}), encoding="utf-8")
    out = tmp_path / "groups.parquet"

    status, stdout, stderr = run_cli(
        _explain_argv(trained, sample, out, "--rows", "6", "--method", "exact_shapley", "--groups", str(groups))
    )
    frame = pd.read_parquet(out)
    raw = pd.read_csv(sample / "test.csv").iloc[:6]

    assert status == 0, stderr
    assert frame["field"].unique().tolist() == ["where", "who"]
    assert set(json.loads(stdout)["mean_abs_attribution"]) == {"where", "who"}
    expected = [f"city={c}, device={d}" for c, d in zip(raw["city"], raw["device"], strict=True)]
    assert frame.query("field == 'where'")["raw_value"].tolist() == expected


def test_explain_chunk_size_keeps_values(trained, sample, tmp_path):
    paths = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for path, chunk in zip(paths, ["7", "32768"], strict=True):
        status, _, stderr = run_cli(
            _explain_argv(trained, sample, path, "--rows", "4", "--method", "exact_shapley", "--chunk-size", chunk)
        )
        assert status == 0, stderr

    first, second = (pd.read_parquet(path)["attribution"].to_numpy() for path in paths)
    np.testing.assert_allclose(first, second, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--method", "NoiseTunnel"], "method 'NoiseTunnel' is not offered: NoiseTunnel adds Gaussian noise"),
        (["--method", "shap.DeepExplainer"], "Use method='integrated_gradients'"),
        (["--method", "lime"], "unknown method 'lime'; valid: auto, integrated_gradients, exact_shapley"),
        (["--baseline", "mean"], "method 'integrated_gradients' supports the baselines zero, oov; got 'mean'"),
        (["--output-space", "probability"], "method 'integrated_gradients' works in logit space only"),
        (["--method", "exact_shapley", "--n-steps", "5"], "--n-steps does not apply to --method exact_shapley"),
        (["--method", "exact_shapley", "--batch-size", "5"], "--batch-size does not apply to --method exact_shapley"),
        (["--background-rows", "5"], "--background-rows is used only with --baseline mean or expectation"),
        (["--baseline", "median"], "invalid choice: 'median'"),
        (["--output-space", "odds"], "invalid choice: 'odds'"),
        (["--chunk-size", "0"], "expected a number >= 1; got 0"),
        (["--groups", "missing.json"], "--groups file not found: 'missing.json'"),
    ],
)
def test_explain_bad_new_options(trained, sample, tmp_path, options, message):
    out = tmp_path / "x.parquet"

    status, _, stderr = run_cli(_explain_argv(trained, sample, out, "--rows", "3", *options))

    _assert_one_error(status, stderr, message)
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"where": ["city"]', "field groups are not valid JSON"),
        ('["city"]', "must be a non-empty JSON object"),
        ('{"where": "city"}', "group 'where' must be a list of field names"),
        ('{"where": ["city", "device"]}', "fields missing from the groups: age, history, vec"),
        ('{"a": ["city", "town"], "b": ["device", "age", "history", "vec"]}', "unknown field 'town'"),
    ],
)
def test_explain_bad_groups_file(trained, sample, tmp_path, content, message):
    groups = tmp_path / "groups.json"
    groups.write_text(content, encoding="utf-8")
    out = tmp_path / "x.parquet"

    status, _, stderr = run_cli(
        _explain_argv(trained, sample, out, "--rows", "3", "--method", "exact_shapley", "--groups", str(groups))
    )

    _assert_one_error(status, stderr, message)
    assert not out.exists()


# --- interactions ---------------------------------------------------------


def _interactions_argv(trained, sample, out, *options: str) -> list[str]:
    return ["interactions", str(trained["out"]), str(sample / "test.csv"), "--out", str(out), *options]


@pytest.mark.parametrize("index", ["SII", "STII", "FSII", "BII"])
def test_interactions_writes_frame(trained, sample, tmp_path, index):
    out = tmp_path / "pairs.parquet"

    status, stdout, stderr = run_cli(_interactions_argv(trained, sample, out, "--rows", "10", "--index", index))
    frame = pd.read_parquet(out)
    model, dataset = _library_inputs(trained, sample, 10)
    expected = interactions(model, dataset, index=index)

    assert status == 0, stderr
    pd.testing.assert_frame_equal(frame, expected.to_frame(), check_exact=False, atol=1e-12, rtol=0)
    summary = json.loads(stdout)
    assert summary["index"] == index
    assert summary["rows"] == 10
    assert summary["efficient"] is (index in ("STII", "FSII"))


def test_interactions_prints_top_pairs(trained, sample, tmp_path):
    out = tmp_path / "pairs.parquet"

    status, stdout, stderr = run_cli(
        _interactions_argv(trained, sample, out, "--rows", "10", "--index", "fsii", "--top", "3")
    )
    model, dataset = _library_inputs(trained, sample, 10)
    matrix = interactions(model, dataset, index="FSII").mean_abs()
    upper = [(matrix.index[i], matrix.columns[j], matrix.iloc[i, j]) for i in range(5) for j in range(i + 1, 5)]
    expected = sorted(upper, key=lambda pair: -pair[2])[:3]

    assert status == 0, stderr
    top = json.loads(stdout)["top_pairs"]
    assert [(p["player_i"], p["player_j"]) for p in top] == [(i, j) for i, j, _ in expected]
    for printed, (_, _, value) in zip(top, expected, strict=True):
        assert printed["mean_abs_value"] == pytest.approx(value, rel=1e-5)


def test_interactions_metadata(trained, sample, tmp_path):
    out = tmp_path / "pairs.parquet"

    status, _, stderr = run_cli(_interactions_argv(trained, sample, out, "--row-ids", "4,1", "--output-space", "probability"))
    metadata = json.loads(pq.read_schema(out).metadata[b"workbench.interaction"])

    assert status == 0, stderr
    assert metadata["index"] == "SII"
    assert metadata["output_space"] == "probability"
    assert metadata["player_names"] == ["city", "device", "age", "history", "vec"]
    assert pd.read_parquet(out)["row"].unique().tolist() == [4, 1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--index", "XII"], "invalid choice: 'XII'"),
        (["--top", "0"], "expected a number >= 1; got 0"),
        (["--baseline", "mean", "--background-rows", "0"], "expected a number >= 1; got 0"),
        (["--background-rows", "4"], "--background-rows is used only with --baseline mean or expectation"),
        (["--row-ids", "1,300"], "--row-ids contains 300, but"),
    ],
)
def test_interactions_bad_options(trained, sample, tmp_path, options, message):
    out = tmp_path / "x.parquet"

    status, _, stderr = run_cli(_interactions_argv(trained, sample, out, "--rows", "3", *options))

    _assert_one_error(status, stderr, message)
    assert not out.exists()


def test_interactions_out_not_parquet(trained, sample, tmp_path):
    status, _, stderr = run_cli(_interactions_argv(trained, sample, tmp_path / "pairs.csv"))

    _assert_one_error(status, stderr, "--out must end in .parquet")


def test_interactions_existing_out_unchanged(trained, sample, tmp_path):
    out = tmp_path / "pairs.parquet"
    out.write_bytes(b"previous result")

    status, _, stderr = run_cli(_interactions_argv(trained, sample, out, "--rows", "3"))

    _assert_one_error(status, stderr, "already exists; choose another --out or pass --overwrite")
    assert out.read_bytes() == b"previous result"


# --- errors ---------------------------------------------------------------


def test_evaluate_missing_data(trained, tmp_path):
    status, _, stderr = run_cli(["evaluate", str(trained["out"]), str(tmp_path / "none.csv")])

    _assert_one_error(status, stderr, "error: data file not found:")


def test_evaluate_missing_bundle(sample, tmp_path):
    status, _, stderr = run_cli(["evaluate", str(tmp_path / "nobundle"), str(sample / "test.csv")])

    _assert_one_error(status, stderr, "error: bundle folder not found:")


def test_train_missing_train_file(sample, tmp_path):
    argv = _train_argv("lr", tmp_path / "none.csv", sample / "valid.csv", tmp_path / "b", *TINY)

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, "error: data file not found:")
    assert not (tmp_path / "b").exists()


def test_train_existing_out_unchanged(sample, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("keep", encoding="utf-8")

    argv = _train_argv("lr", sample / "train.csv", sample / "valid.csv", out, *TINY)

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, "already exists; choose another --out or pass --overwrite")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text(encoding="utf-8") == "keep"


def test_explain_existing_out_unchanged(trained, sample, tmp_path):
    out = tmp_path / "ig.parquet"
    out.write_bytes(b"previous result")

    status, _, stderr = run_cli(["explain", str(trained["out"]), str(sample / "test.csv"), "--out", str(out)])

    _assert_one_error(status, stderr, "already exists; choose another --out or pass --overwrite")
    assert out.read_bytes() == b"previous result"


def test_explain_out_not_parquet(trained, sample, tmp_path):
    argv = ["explain", str(trained["out"]), str(sample / "test.csv"), "--out", str(tmp_path / "ig.csv")]

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, "--out must end in .parquet")
    assert not (tmp_path / "ig.csv").exists()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("8,x", "expected comma-separated integers such as 400,400,400; got '8,x'"),
        ("0", "layer sizes must be >= 1; got '0'"),
    ],
)
def test_train_bad_hidden_units(sample, tmp_path, value, message):
    argv = _train_argv("deepfm", sample / "train.csv", sample / "valid.csv", tmp_path / "b", "--hidden-units", value)

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, message)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--epochs", "0", "expected a number >= 1; got 0"),
        ("--batch-size", "many", "expected a whole number; got 'many'"),
        ("--learning-rate", "-1", "expected a number >= 0; got '-1'"),
        ("--arch", "pnn", "invalid choice: 'pnn'"),
    ],
)
def test_train_bad_options(sample, tmp_path, option, value, message):
    argv = _train_argv("lr", sample / "train.csv", sample / "valid.csv", tmp_path / "b", option, value)

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, message)


def test_train_dropout_above_one(sample, tmp_path):
    argv = _train_argv("deepfm", sample / "train.csv", sample / "valid.csv", tmp_path / "b", *TINY, "--dropout", "1.5")

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, "dropout must be in [0, 1)")
    assert not (tmp_path / "b").exists()


def test_explain_row_id_out_of_range(trained, sample, tmp_path):
    argv = ["explain", str(trained["out"]), str(sample / "test.csv"), "--row-ids", "1,300",
            "--out", str(tmp_path / "ig.parquet")]

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, "--row-ids contains 300, but")
    assert "has only 300 rows (0-based)" in stderr
    assert not (tmp_path / "ig.parquet").exists()


def test_explain_negative_row_id(trained, sample, tmp_path):
    argv = ["explain", str(trained["out"]), str(sample / "test.csv"), "--row-ids=-1", "--out", str(tmp_path / "ig.parquet")]

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, "row numbers must be >= 0; got '-1'")


def test_evaluate_columns_mismatch(trained, tmp_path):
    frame = synthetic_frame(20, seed=4).drop(columns=["device"])
    write_csv(frame, tmp_path / "partial.csv")

    status, _, stderr = run_cli(["evaluate", str(trained["out"]), str(tmp_path / "partial.csv")])

    _assert_one_error(status, stderr, "error: the data has no column(s) 'device' that the schema needs")


def test_explain_columns_mismatch(trained, tmp_path):
    frame = synthetic_frame(20, seed=4).rename(columns={"city": "town"})
    write_csv(frame, tmp_path / "renamed.csv")

    argv = ["explain", str(trained["out"]), str(tmp_path / "renamed.csv"), "--out", str(tmp_path / "ig.parquet")]

    status, _, stderr = run_cli(argv)

    _assert_one_error(status, stderr, "no column(s) 'city'")
    assert not (tmp_path / "ig.parquet").exists()


def test_evaluate_broken_bundle(trained, sample, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / MANIFEST_NAME).write_text("{", encoding="utf-8")

    status, _, stderr = run_cli(["evaluate", str(broken), str(sample / "test.csv")])

    _assert_one_error(status, stderr, "is not valid JSON")


# --- help -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "phrases"),
    [
        ("train", ["embedding size per field (default: 10)", "rows per optimisation step (default: 4096)",
                   "DNN dropout probability (default: the architecture's)", "initial Adam learning rate (default: 0.001)",
                   "comma-separated (default: the architecture's, 400,400,400 for most)", "optionally gzip-compressed"]),
        ("evaluate", ["log loss (natural log)", "score at most this many rows (default: all)"]),
        ("explain", ["logit units", "integration points per sample (default: 50)", "(default: 1000)",
                     "reference input (default: zero embedding)", "log-odds of a click", "(default: logit)",
                     "(default: integrated_gradients)", "(default: 100)", "(default: 4096)", "(default: 0)",
                     "one player per field)", "samples per backward pass (default: 128)"]),
        ("interactions", ["2**n_players", "(default: SII)", "explain the first N rows (default: 200)",
                          "number of pairs to print, by mean |value| (default: 10)", "(default: logit)",
                          "reference input (default: zero embedding)", "(default: 4096)"]),
        ("serve", ["TCP port (default: 8501)", "default: 127.0.0.1, this machine only"]),
    ],
)
def test_help_mentions_units_and_defaults(command, phrases):
    status, stdout, _ = run_cli([command, "--help"])
    text = " ".join(stdout.split())

    assert status == 0
    for phrase in phrases:
        assert phrase in text, phrase


def test_top_level_help_lists_commands():
    status, stdout, _ = run_cli(["--help"])

    assert status == 0
    for command in ("train", "evaluate", "explain", "interactions", "serve"):
        assert command in stdout


def test_no_command_is_usage_error():
    status, _, stderr = run_cli([])

    _assert_one_error(status, stderr, "the following arguments are required: COMMAND")


# --- console script -------------------------------------------------------


def _console_script() -> Path:
    return Path(sys.executable).parent / "workbench"


def test_console_script_evaluate(trained, sample):
    completed = subprocess.run(
        [str(_console_script()), "evaluate", str(trained["out"]), str(sample / "test.csv")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["auc"] == pytest.approx(load_bundle(trained["out"]).metrics["test"]["auc"])


def test_console_script_error(sample, tmp_path):
    completed = subprocess.run(
        [str(_console_script()), "evaluate", str(tmp_path / "nobundle"), str(sample / "test.csv")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )

    assert completed.returncode == 2
    assert completed.stderr.startswith("error: bundle folder not found:")
    assert len(completed.stderr.strip().splitlines()) == 1
