"""Exact methods on a model with more fields than players allowed: the CLI and the page name their own fixes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import point_app_at, run_cli
from workbench.bundle import save_bundle
from workbench.schema import Field, Schema, fit_schema
from workbench.zoo import build_model

APP_PATH = Path(__file__).resolve().parents[1] / "app.py"
N_FIELDS = 17


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("wide")
    generator = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": generator.choice(["a", "b", "c"], 40) for i in range(N_FIELDS)})
    frame["label"] = generator.integers(0, 2, 40)
    data = root / "data"
    data.mkdir()
    frame.to_csv(data / "wide.csv", index=False)
    spec = Schema([Field(f"f{i}", "categorical") for i in range(N_FIELDS)], label="label")
    model = build_model("lr", fit_schema(frame, spec))
    models = root / "models"
    save_bundle(model.eval(), models / "wide_lr")
    return models, data


def test_cli_names_groups_option(wide, tmp_path):
    models, data = wide
    status, stdout, stderr = run_cli(
        ["explain", str(models / "wide_lr"), str(data / "wide.csv"), "--method", "exact_shapley",
         "--out", str(tmp_path / "out.parquet")]
    )  # fmt: skip
    assert status == 2
    assert stdout == ""
    assert stderr.count("\n") == 1
    assert "2**17 = 131,072 coalitions per sample for 17 fields" in stderr
    assert "--groups FILE" in stderr
    assert "players=" not in stderr
    assert "max_players" not in stderr


def test_interactions_page_asks_for_groups(wide, monkeypatch):
    models, data = wide
    generator = point_app_at(monkeypatch, models, data)
    next(generator)
    app = AppTest.from_file(str(APP_PATH), default_timeout=120)
    app.run()
    app.switch_page("workbench/app/pages/interactions.py")
    app.run()

    assert not app.exception
    warnings = [warning.value for warning in app.warning]
    assert any("more than the limit of 16 players" in text and "field groups box" in text for text in warnings)
    assert not any("Press **Compute interactions**" in info.value for info in app.info)
