"""`workbench probes` on an imported FuxiCTR model, including probes without a field axis."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fuxictr_fixtures import ZOO_DIR, train_tiny
from helpers import run_cli


@pytest.fixture(scope="module")
def moe_bundle(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("moe")
    run = train_tiny(root, "DCNv2_MoE", epochs=1)
    out = root / "bundle"
    argv = [
        "import", "fuxictr", "--config", str(run.config_dir), "--expid", run.expid, "--checkpoint", str(run.checkpoint),
        "--model-zoo", str(ZOO_DIR), "--data-dir", str(run.data_dir), "--out", str(out),
    ]  # fmt: skip
    code, _, err = run_cli(argv)
    assert code == 0, err
    return run, out


def test_expert_gates_summarised(moe_bundle, tmp_path, monkeypatch):
    run, bundle = moe_bundle
    monkeypatch.setenv("WORKBENCH_MODEL_ZOO", str(ZOO_DIR))
    out = tmp_path / "probes.parquet"
    code, stdout, stderr = run_cli(["probes", str(bundle), str(run.test_data), "--rows", "20", "--out", str(out)])
    assert code == 0, stderr
    summary = json.loads(stdout)
    gates = next(entry for entry in summary["probes"].values() if entry["axes"] == ["layer", "block"])
    mean = np.asarray(gates["mean"])
    assert mean.shape == (2, 3)  # two cross layers, three experts
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-5)
    assert out.is_file()
