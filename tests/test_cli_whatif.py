"""``workbench counterfactuals`` and ``workbench sweep``: files equal the library's results, bad requests get one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli
from workbench.bundle import load_bundle
from workbench.counterfactual import find_counterfactuals
from workbench.data import load_dataset
from workbench.explain import background_sample, explain
from workbench.faithfulness import compare_explainers
from workbench.sweeps import sweep_field

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_FILE = REPO_ROOT / "sample_data" / "ad_clicks" / "test.parquet"
DEEPFM = REPO_ROOT / "models" / "ad_clicks_deepfm"


def test_counterfactuals_file_equals_library(tmp_path):
    out = tmp_path / "cf.parquet"

    status, stdout, stderr = run_cli(
        [
            "counterfactuals", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--row-ids", "3,8",
            "--goal", "flip:0.3", "--immutable", "user_id,position", "--together", "item_id:category",
            "--max-changes", "2", "--n-counterfactuals", "3",
        ]
    )  # fmt: skip

    assert status == 0, stderr
    frame = pd.read_parquet(out)
    bundle = load_bundle(DEEPFM)
    dataset = load_dataset(TEST_FILE, bundle.schema)
    found = 0
    for row in (3, 8):
        expected = find_counterfactuals(
            bundle.model, dataset, row, "flip:0.3", immutable=["user_id", "position"],
            together=[("item_id", "category")], max_changes=2, n_counterfactuals=3,
        )  # fmt: skip
        lines = frame[frame["row"] == row].reset_index(drop=True)
        if expected.found:
            found += 1
            table = expected.to_frame()
            pd.testing.assert_frame_equal(lines[table.columns], table, check_dtype=False)
        else:
            assert lines["message"].tolist() == [expected.message]
    assert not frame["field"].isin(["user_id", "position"]).any()
    summary = json.loads(stdout)
    assert summary["rows"] == 2
    assert summary["found"] == found
    assert summary["success_rate"] == found / (2 - summary["already_met"])


def test_counterfactuals_reports_rows_without_result(tmp_path):
    out = tmp_path / "cf.parquet"

    status, stdout, _ = run_cli(
        ["counterfactuals", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--rows", "2", "--goal", "above:0.999",
         "--max-changes", "1"]
    )  # fmt: skip

    assert status == 0
    frame = pd.read_parquet(out)
    assert frame["row"].tolist() == [0, 1]
    assert frame["field"].isna().all()
    assert frame["message"].str.contains("No counterfactual exists").all()
    assert json.loads(stdout)["success_rate"] == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--goal", "above:2"], "strictly between 0 and 1"),
        (["--goal", "sideways:0.3"], "unknown goal"),
        (["--goal", "above:0.5", "--immutable", "colour"], "unknown field(s) 'colour'"),
        (["--goal", "above:0.5", "--together", "item_id"], "two fields joined by ':'"),
        (["--goal", "above:0.5", "--min-count", "-1"], "--min-count must be >= 0"),
        (["--goal", "above:0.5", "--time-limit", "0"], "seconds > 0"),
    ],
)
def test_counterfactuals_errors(tmp_path, options, message):
    status, _, stderr = run_cli(
        ["counterfactuals", str(DEEPFM), str(TEST_FILE), "--out", str(tmp_path / "cf.parquet"), "--rows", "3", *options]
    )

    assert status == 2
    assert message in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "cf.parquet").exists()


def test_counterfactuals_rows_do_not_shrink_cohort(tmp_path):
    """--rows picks the rows to search; the cohort of a rank goal is still the whole file."""
    outputs = []
    for selection in (["--rows", "4"], ["--row-ids", "0,1,2,3"]):
        out = tmp_path / f"cf{len(outputs)}.parquet"
        status, _, stderr = run_cli(
            ["counterfactuals", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--goal", "rank_top:200", *selection]
        )
        assert status == 0, stderr
        outputs.append(pd.read_parquet(out))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
    ranks = outputs[0]["rank_after"].dropna()
    assert len(ranks)
    assert (ranks <= 200).all()


def test_counterfactuals_batch_goes_on_after_unreachable_row(tmp_path):
    out = tmp_path / "cf.parquet"

    status, stdout, stderr = run_cli(
        ["counterfactuals", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--rows", "8", "--goal", "change:+0.7"]
    )

    assert status == 0, stderr
    frame = pd.read_parquet(out)
    assert sorted(frame["row"].unique()) == list(range(8))
    assert frame["message"].str.contains("outside \\(0, 1\\)").any()
    assert json.loads(stdout)["rows"] == 8


def test_counterfactuals_counts_already_met(tmp_path):
    status, stdout, _ = run_cli(
        ["counterfactuals", str(DEEPFM), str(TEST_FILE), "--out", str(tmp_path / "cf.parquet"), "--rows", "3",
         "--goal", "above:0.001"]
    )  # fmt: skip
    assert status == 0
    summary = json.loads(stdout)
    assert summary["already_met"] == 3
    assert summary["found"] == 0
    assert summary["success_rate"] is None


def test_sweep_file_equals_library(tmp_path):
    out, ice = tmp_path / "sweep.parquet", tmp_path / "ice.parquet"

    status, stdout, stderr = run_cli(
        ["sweep", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--ice", str(ice), "--rows", "200",
         "--field", "position"]
    )  # fmt: skip

    assert status == 0, stderr
    bundle = load_bundle(DEEPFM)
    dataset = load_dataset(TEST_FILE, bundle.schema)
    expected = sweep_field(bundle.model, dataset, np.arange(200), "position")
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected.to_frame(), check_dtype=False)
    lines = pd.read_parquet(ice)
    assert len(lines) == 200 * expected.n_values
    first = lines[(lines["row"] == 17) & (lines["value"] == expected.values[2])]
    assert first["output"].item() == pytest.approx(expected.ice[17, 2])
    summary = json.loads(stdout)
    assert list(summary["partial_dependence"]) == list(expected.values)
    position_one = expected.values.index("1")
    assert summary["partial_dependence"]["1"] == pytest.approx(expected.partial_dependence[position_one], abs=1e-6)


def test_sweep_numeric_values(tmp_path):
    out = tmp_path / "sweep.parquet"

    status, stdout, stderr = run_cli(
        ["sweep", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--rows", "50", "--field", "bid_price",
         "--values", "0.2,0.5,1.5", "--output-space", "logit"]
    )  # fmt: skip

    assert status == 0, stderr
    partial = json.loads(stdout)["partial_dependence"]
    assert len(partial) == 3
    values = list(partial.values())
    # The planted bid effect is +0.4 * ln(bid / 0.5): higher bids raise the logit.
    assert values[0] < values[1] < values[2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--field", "colour"], "colour"),
        (["--field", "history_categories"], "sequence"),
        (["--field", "device", "--values", "fridge"], "fridge"),
        (["--field", "bid_price", "--values", "cheap"], "must be numbers"),
    ],
)
def test_sweep_errors(tmp_path, options, message):
    status, _, stderr = run_cli(
        ["sweep", str(DEEPFM), str(TEST_FILE), "--out", str(tmp_path / "sweep.parquet"), "--rows", "20", *options]
    )

    assert status == 2
    assert message in stderr
    assert "Traceback" not in stderr


def test_sweep_grid_points(tmp_path):
    status, stdout, stderr = run_cli(
        ["sweep", str(DEEPFM), str(TEST_FILE), "--out", str(tmp_path / "s.parquet"), "--rows", "30",
         "--field", "user_age", "--grid-points", "3"]
    )  # fmt: skip
    assert status == 0, stderr
    assert len(json.loads(stdout)["partial_dependence"]) == 3


def test_sweep_rejects_same_output_files(tmp_path):
    out = tmp_path / "sweep.parquet"
    status, _, stderr = run_cli(
        ["sweep", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--ice", str(out), "--field", "os"]
    )
    assert status == 2
    assert "different files" in stderr
    assert not out.exists()


def test_faithfulness_file_equals_library(tmp_path):
    out, curves = tmp_path / "faithfulness.parquet", tmp_path / "curves.parquet"

    status, stdout, stderr = run_cli(
        ["faithfulness", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--curves", str(curves), "--rows", "20",
         "--methods", "exact_shapley,permutation_shapley", "--random-orders", "4", "--infidelity",
         "--perturbations", "20"]
    )  # fmt: skip

    assert status == 0, stderr
    bundle = load_bundle(DEEPFM)
    dataset = load_dataset(TEST_FILE, bundle.schema, max_rows=20)
    rows = np.arange(20)
    scores = {
        "exact_shapley": explain(bundle.model, dataset, rows, method="exact_shapley"),
        "permutation_shapley": explain(bundle.model, dataset, rows, method="permutation_shapley", random_state=0),
    }
    expected = compare_explainers(
        bundle.model, dataset, rows, scores, n_random=4, random_state=0, with_infidelity=True, n_perturbations=20
    )
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected.to_frame(), check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(curves), expected.curve_frame(), check_dtype=False)
    summary = json.loads(stdout)
    assert summary["infidelity_normalised"] is False
    shapley = summary["auc"]["exact_shapley deletion"]["mean"]
    assert shapley == pytest.approx(expected.auc_mean("exact_shapley", "deletion"), abs=1e-5)
    # Exact Shapley orders remove the fields that raise the logit first: a lower deletion AUC than random orders.
    assert shapley < summary["auc"]["random deletion"]["mean"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--methods", "lime"], "unknown method 'lime'"),
        (["--methods", "attention"], "has no field attention"),
        (["--methods", "exact_shapley,exact_shapley"], "twice"),
        (["--methods", "integrated_gradients", "--baseline", "pad"], "supports the baselines zero, oov"),
        (["--methods", ""], "--methods is empty"),
        (["--background-rows", "10"], "only with --baseline mean or expectation"),
    ],
)
def test_faithfulness_errors(tmp_path, options, message):
    status, _, stderr = run_cli(
        ["faithfulness", str(DEEPFM), str(TEST_FILE), "--out", str(tmp_path / "f.parquet"), "--rows", "5", *options]
    )

    assert status == 2
    assert message in stderr
    assert "Traceback" not in stderr


def test_faithfulness_mean_baseline(tmp_path):
    out = tmp_path / "f.parquet"
    status, stdout, stderr = run_cli(
        ["faithfulness", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--rows", "10", "--methods",
         "exact_shapley", "--baseline", "mean", "--background-rows", "50", "--random-orders", "3"]
    )  # fmt: skip
    assert status == 0, stderr
    bundle = load_bundle(DEEPFM)
    everything = load_dataset(TEST_FILE, bundle.schema)
    dataset = load_dataset(TEST_FILE, bundle.schema, max_rows=10)
    background = background_sample(everything, 50, seed=0)
    shapley = explain(bundle.model, dataset, None, method="exact_shapley", baseline="mean", background=background)
    expected = compare_explainers(
        bundle.model, dataset, None, {"exact_shapley": shapley}, baseline="mean", background=background, n_random=3
    )
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected.to_frame(), check_dtype=False)
    summary = json.loads(stdout)
    assert summary["baseline"] == "mean"
    minus_random = summary["auc"]["exact_shapley deletion"]["minus_random_mean"]
    assert minus_random == pytest.approx(expected.to_frame().iloc[0]["auc_minus_random_mean"], abs=1e-5)


def test_rows_beyond_file_noted(tmp_path):
    status, _, stderr = run_cli(
        ["sweep", str(DEEPFM), str(TEST_FILE), "--out", str(tmp_path / "s.parquet"), "--rows", "999999", "--field", "os"]
    )
    assert status == 0
    assert "note: --rows 999,999" in stderr
    assert "has 20,000 rows; using all of them" in stderr


def test_faithfulness_default_methods_follow_baseline(tmp_path):
    out = tmp_path / "f.parquet"
    status, _, stderr = run_cli(
        ["faithfulness", str(DEEPFM), str(TEST_FILE), "--out", str(out), "--rows", "5", "--baseline", "mean",
         "--background-rows", "20", "--random-orders", "2"]
    )  # fmt: skip
    assert status == 0, stderr
    assert set(pd.read_parquet(out)["explainer"]) == {"exact_shapley", "random"}
