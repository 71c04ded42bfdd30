"""``workbench probes``: the Parquet table equals the captured probes, and bad requests get clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import run_cli
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.probes import capture_probes

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_FILE = REPO_ROOT / "sample_data" / "ad_clicks" / "test.parquet"


def probes_argv(bundle: str, out: Path, *options: str) -> list[str]:
    return ["probes", str(REPO_ROOT / "models" / bundle), str(TEST_FILE), "--out", str(out), *options]


def test_probes_writes_per_sample_values(tmp_path):
    out = tmp_path / "attention.parquet"

    status, stdout, stderr = run_cli(probes_argv("ad_clicks_autoint_plus", out, "--row-ids", "7,3"))

    assert status == 0, stderr
    bundle = load_bundle(REPO_ROOT / "models" / "ad_clicks_autoint_plus")
    dataset = load_dataset(TEST_FILE, bundle.schema, max_rows=10)
    expected = capture_probes(bundle.model, dataset.tensors(np.array([7, 3])))["attention"].values
    frame = pd.read_parquet(out)
    assert list(frame.columns) == ["row", "probe", "kind", "layer", "head", "field_i", "field_j", "value"]
    assert sorted(frame["row"].unique()) == [3, 7]
    fields = bundle.schema.field_names
    line = frame[(frame.row == 3) & (frame.layer == 1) & (frame["head"] == 0)]
    line = line[(line.field_i == fields[2]) & (line.field_j == fields[5])]
    assert line["value"].item() == pytest.approx(expected[1, 1, 0, 2, 5], rel=1e-6)
    assert len(frame) == expected.size
    summary = json.loads(stdout)
    assert summary["rows"] == 2
    assert summary["probes"]["attention"]["axes"] == ["layer", "head", "field", "field"]


def test_probes_writes_static_weights_once(tmp_path):
    out = tmp_path / "cross.parquet"

    status, stdout, stderr = run_cli(probes_argv("ad_clicks_dcnv2", out, "--rows", "50"))

    assert status == 0, stderr
    frame = pd.read_parquet(out)
    n_fields = len(load_bundle(REPO_ROOT / "models" / "ad_clicks_dcnv2").schema.field_names)
    assert frame["row"].isna().all()
    assert len(frame) == 3 * n_fields * n_fields
    ranked = json.loads(stdout)["probes"]["cross_weight_norms"]["fields_by_mean_value"]
    assert list(ranked.values()) == sorted(ranked.values(), reverse=True)


@pytest.mark.parametrize(
    ("bundle", "options", "message"),
    [
        ("ad_clicks_lr", (), "declares no probes"),
        ("ad_clicks_dcnv2", ("--probe", "gates"), "has no probe named 'gates'; available: cross_weight_norms"),
        ("ad_clicks_dcnv2", ("--row-ids", "5,99999999"), "--row-ids contains 99999999"),
    ],
)
def test_probes_rejects_bad_requests(tmp_path, bundle, options, message):
    status, _, stderr = run_cli(probes_argv(bundle, tmp_path / "x.parquet", *options))

    assert status != 0
    assert message in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "x.parquet").exists()


def test_probes_keeps_existing_output(tmp_path):
    out = tmp_path / "kept.parquet"
    out.write_bytes(b"user data")

    status, _, stderr = run_cli(probes_argv("ad_clicks_dcnv2", out))

    assert status != 0
    assert "already exists" in stderr
    assert out.read_bytes() == b"user data"
