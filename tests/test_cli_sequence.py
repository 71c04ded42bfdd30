"""The CLI with sequence models: train a DIN, read its attention, attribute to behaviours, reload the bundle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from test_zoo_sequence import SPEC, sequence_frame
from workbench.bundle import load_bundle
from workbench.cli import main
from workbench.data import load_dataset
from workbench.explain.behaviours import explain_behaviours


@pytest.fixture(scope="module")
def din_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sequence")
    for name, rows, seed in (("train", 1500, 1), ("valid", 300, 2), ("test", 200, 3)):
        sequence_frame(rows, seed).to_parquet(folder / f"{name}.parquet", index=False)
    spec = {"label": "label", "fields": [f.to_dict() for f in SPEC.fields]}
    (folder / "schema.json").write_text(json.dumps(spec))
    code = main(
        [
            "train", "--arch", "din", "--train", str(folder / "train.parquet"), "--valid", str(folder / "valid.parquet"),
            "--out", str(folder / "din"), "--epochs", "2", "--embedding-dim", "4", "--hidden-units", "8",
            "--param", "attention_hidden_units=[6]", "--param", 'behaviour_pairs=[["history", "item"], ["history_genres", "genre"]]',
            "--quiet",
        ]
    )
    assert code == 0
    return folder


def test_bundle_records_pairs_and_reloads_the_same_predictions(din_bundle):
    bundle = load_bundle(din_bundle / "din")
    assert bundle.manifest["hyperparameters"]["behaviour_pairs"] == [["history", "item"], ["history_genres", "genre"]]
    dataset = load_dataset(din_bundle / "test.parquet", bundle.schema)
    again = load_bundle(din_bundle / "din")
    np.testing.assert_array_equal(
        bundle.model(dataset.tensors()).detach().numpy(), again.model(dataset.tensors()).detach().numpy()
    )


def test_behaviours_command_writes_the_library_values(din_bundle, tmp_path, capsys):
    out = tmp_path / "behaviours.parquet"
    code = main(["behaviours", str(din_bundle / "din"), str(din_bundle / "test.parquet"), "--out", str(out), "--rows", "20"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    frame = pd.read_parquet(out)
    bundle = load_bundle(din_bundle / "din")
    expected = explain_behaviours(bundle.model, load_dataset(din_bundle / "test.parquet", bundle.schema), np.arange(20))
    np.testing.assert_allclose(frame["attribution"].to_numpy(), expected.to_frame()["attribution"].to_numpy(), atol=1e-12)
    assert list(frame.columns) == [
        "row", "position", "item", "attribution", "rest_attribution", "prediction", "base_value", "output_space",
        "standard_error", "attention",
    ]
    totals = frame.groupby("row").agg(
        behaviours=("attribution", "sum"), rest=("rest_attribution", "first"),
        gap=("prediction", "first"), base=("base_value", "first"),
    )
    np.testing.assert_allclose(totals["behaviours"] + totals["rest"], totals["gap"] - totals["base"], atol=1e-9)
    assert summary["behaviours"] == int(expected.present.sum()) == len(frame)
    assert summary["max_completeness_gap"] < 1e-9


def test_probes_command_summarises_attention_by_position(din_bundle, tmp_path, capsys):
    out = tmp_path / "probes.parquet"
    assert main(["probes", str(din_bundle / "din"), str(din_bundle / "test.parquet"), "--out", str(out), "--rows", "30"]) == 0
    summary = json.loads(capsys.readouterr().out)
    frame = pd.read_parquet(out)
    assert set(frame.columns) >= {"row", "probe", "position", "value"}
    means = frame.groupby("position")["value"].mean().to_numpy()
    np.testing.assert_allclose(summary["probes"]["target_attention"]["mean_by_position"], means, atol=1e-6)


def test_behaviours_command_refuses_models_without_histories(tmp_path, capsys):
    code = main(["behaviours", "models/ad_clicks_deepfm", "sample_data/ad_clicks/test.parquet", "--out", str(tmp_path / "x.parquet")])
    assert code == 2
    assert "deepfm does not read behaviour histories" in capsys.readouterr().err


def test_bad_behaviour_pair_is_a_one_line_error(din_bundle, tmp_path, capsys):
    code = main(
        [
            "train", "--arch", "dien", "--train", str(din_bundle / "train.parquet"), "--valid", str(din_bundle / "valid.parquet"),
            "--out", str(tmp_path / "dien"), "--epochs", "1", "--param", 'behaviour_pairs=[["history", "item"], ["item", "genre"]]',
            "--quiet",
        ]
    )
    assert code == 2
    assert "'item' is a categorical field; it must be sequence" in capsys.readouterr().err
