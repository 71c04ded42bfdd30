"""Paths typed in the sidebar or given in the URL must lie under the allowed folders, through ``AppTest``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from helpers import point_app_at
from workbench.app import sources, state

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "app.py"
TIMEOUT_S = 60


@pytest.fixture
def folders(monkeypatch, tmp_path, tiny_models_dir, tiny_data_dir, tiny_bundle_path):
    """Point the app at the tiny folders, work in an empty folder and copy a bundle and 250 rows outside every root."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    outside = tmp_path / "outside"
    bundle = outside / "copied-bundle"
    shutil.copytree(tiny_bundle_path, bundle)
    data = outside / "rows.parquet"
    pd.read_parquet(tiny_data_dir / "ad_clicks" / "test.parquet").head(250).to_parquet(data, index=False)
    setup = point_app_at(monkeypatch, tiny_models_dir, tiny_data_dir)
    next(setup)
    # Only the default roots apply, even where the shared helper or the shell allows more folders.
    monkeypatch.delenv(sources.ALLOWED_ROOTS_ENV, raising=False)
    yield
    next(setup, None)


@pytest.fixture
def paths(tmp_path, folders):
    """The working folder, the bundle copy outside the roots and the data file outside the roots."""
    return tmp_path / "work", tmp_path / "outside" / "copied-bundle", tmp_path / "outside" / "rows.parquet"


def open_app(**params: str) -> AppTest:
    app = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT_S)
    for name, value in params.items():
        app.query_params[name] = value
    app.run()
    return app


def selection(app: AppTest) -> state.Selection:
    return app.session_state[state.SELECTION_KEY]


def errors(app: AppTest) -> list[str]:
    assert not app.exception, [e.value for e in app.exception]
    return [e.value for e in app.error]


def assert_outside_error(message: str, shown: str) -> None:
    assert f"`{shown}`" in message
    assert "is outside the folders this app may open" in message
    assert "workbench serve --allow-root FOLDER" in message
    assert sources.ALLOWED_ROOTS_ENV in message
    assert "The previous selection is kept." in message


# --- the allow-list ---------------------------------------------------------------------------------


def test_default_roots(paths, tiny_models_dir, tiny_data_dir):
    work, _, _ = paths
    assert sources.allowed_roots() == [work.resolve(), tiny_models_dir.resolve(), tiny_data_dir.resolve()]


def test_env_roots_are_added(paths, monkeypatch, tmp_path):
    work, bundle, _ = paths
    monkeypatch.setenv(sources.ALLOWED_ROOTS_ENV, f"{bundle.parent}{os.pathsep}{os.pathsep}~/")
    roots = sources.allowed_roots()
    assert roots[-2:] == [bundle.parent.resolve(), Path("~").expanduser().resolve()]
    assert len(roots) == 5


def test_typed_bundle_outside_roots(paths, tiny_bundle_path):
    _, bundle, _ = paths
    app = open_app()
    app.sidebar.text_input(key="bundle_typed").input(str(bundle)).run()

    messages = errors(app)
    assert len(messages) == 1
    assert_outside_error(messages[0], str(bundle))
    assert selection(app).bundle_path == tiny_bundle_path.resolve()


def test_typed_data_outside_roots_keeps_previous(paths):
    work, _, data = paths
    inside = work / "inside.parquet"
    pd.read_parquet(data).head(120).to_parquet(inside, index=False)
    app = open_app()
    app.sidebar.text_input(key="data_typed").input("inside.parquet").run()
    assert errors(app) == []
    assert selection(app).data_path == inside.resolve()

    app.sidebar.text_input(key="data_typed").input(str(data)).run()

    messages = errors(app)
    assert len(messages) == 1
    assert_outside_error(messages[0], str(data))
    assert selection(app).data_path == inside.resolve()
    assert [m.value for m in app.metric if m.label == "Rows"] == ["120"]


def test_dot_dot_escape_rejected(paths, tiny_models_dir, tiny_bundle_path):
    _, bundle, _ = paths
    escape = f"{tiny_models_dir}/../{bundle.parent.parent.name}/outside/copied-bundle"
    app = open_app()
    app.sidebar.text_input(key="bundle_typed").input(escape).run()

    messages = errors(app)
    assert len(messages) == 1
    assert f"`{escape}` (resolved to `{bundle.resolve()}`)" in messages[0]
    assert "is outside the folders this app may open" in messages[0]
    assert selection(app).bundle_path == tiny_bundle_path.resolve()


def test_symlink_out_of_root_rejected(paths, tiny_bundle_path, tiny_data_dir):
    work, bundle, data = paths
    (work / "linked-bundle").symlink_to(bundle, target_is_directory=True)
    (work / "linked.parquet").symlink_to(data)
    app = open_app()

    app.sidebar.text_input(key="bundle_typed").input("linked-bundle").run()
    messages = errors(app)
    assert len(messages) == 1
    assert f"(resolved to `{bundle.resolve()}`)" in messages[0]
    assert "is outside the folders this app may open" in messages[0]
    assert selection(app).bundle_path == tiny_bundle_path.resolve()

    app.sidebar.text_input(key="bundle_typed").input("").run()
    app.sidebar.text_input(key="data_typed").input(str(work / "linked.parquet")).run()
    messages = errors(app)
    assert len(messages) == 1
    assert f"(resolved to `{data.resolve()}`)" in messages[0]
    assert selection(app).data_path == (tiny_data_dir / "ad_clicks" / "test.parquet").resolve()


def test_allowed_root_opens_paths(paths, monkeypatch):
    _, bundle, data = paths
    monkeypatch.setenv(sources.ALLOWED_ROOTS_ENV, str(bundle.parent))
    app = open_app()
    app.sidebar.text_input(key="bundle_typed").input(str(bundle)).run()
    app.sidebar.text_input(key="data_typed").input(str(data)).run()

    assert errors(app) == []
    assert selection(app).bundle_path == bundle.resolve()
    assert selection(app).data_path == data.resolve()


def test_relative_and_home_paths_open(paths, monkeypatch):
    work, _, data = paths
    shutil.copyfile(data, work / "rows.parquet")
    monkeypatch.setenv("HOME", str(work))
    app = open_app()

    app.sidebar.text_input(key="data_typed").input(" 'rows.parquet' ").run()
    assert errors(app) == []
    assert selection(app).data_path == (work / "rows.parquet").resolve()

    app.sidebar.text_input(key="data_typed").input("~/rows.parquet").run()
    assert errors(app) == []
    assert selection(app).data_path == (work / "rows.parquet").resolve()


@pytest.mark.parametrize(
    ("box", "make", "message"),
    [
        ("bundle_typed", "file", "is a file, but a bundle is a folder"),
        ("data_typed", "folder", "is a folder. Type the path of a Parquet, CSV or libfm file"),
        ("bundle_typed", None, "Bundle folder not found"),
        ("data_typed", None, "Data file not found"),
    ],
)
def test_wrong_kind_or_missing_path(paths, tiny_bundle_path, tiny_data_dir, box, make, message):
    work, _, data = paths
    target = work / "target"
    if make == "file":
        shutil.copyfile(data, target)
    elif make == "folder":
        target.mkdir()
    app = open_app()
    app.sidebar.text_input(key=box).input(str(target)).run()

    messages = errors(app)
    assert len(messages) == 1
    assert f"`{target}`" in messages[0]
    assert message in messages[0]
    assert selection(app).bundle_path == tiny_bundle_path.resolve()
    assert selection(app).data_path == (tiny_data_dir / "ad_clicks" / "test.parquet").resolve()


# --- URL parameters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bundle", "data"])
def test_url_path_outside_roots(paths, tiny_bundle_path, tiny_data_dir, name):
    _, bundle, data = paths
    value = str(bundle if name == "bundle" else data)
    app = open_app(**{name: value})

    messages = errors(app)
    assert len(messages) == 1
    assert f"The URL parameter `{name}={value}` was ignored." in messages[0]
    assert "is outside the folders this app may open" in messages[0]
    assert "The default value is used instead." in messages[0]
    assert selection(app).bundle_path == tiny_bundle_path.resolve()
    assert selection(app).data_path == (tiny_data_dir / "ad_clicks" / "test.parquet").resolve()
    assert app.query_params[name] != value


def test_url_path_inside_allowed_root(paths, monkeypatch):
    _, bundle, data = paths
    monkeypatch.setenv(sources.ALLOWED_ROOTS_ENV, str(bundle.parent))
    app = open_app(bundle=str(bundle), data=str(data))

    assert errors(app) == []
    assert [w.value for w in app.warning] == []
    assert selection(app).bundle_path == bundle.resolve()
    assert selection(app).data_path == data.resolve()


def test_url_recorded_data_file_allowed(paths, monkeypatch, tmp_path, tiny_bundle_path):
    # The sidebar offers the data files a listed bundle records, so a URL may name them even outside the roots.
    _, _, data = paths
    models = tmp_path / "models"
    shutil.copytree(tiny_bundle_path, models / "records-outside")
    manifest_path = models / "records-outside" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["data"] = {"test": {"path": str(data)}}
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    monkeypatch.setenv(sources.MODELS_DIR_ENV, str(models))
    assert not any(data.resolve().is_relative_to(root) for root in sources.allowed_roots())

    app = open_app(data=str(data))

    assert errors(app) == []
    assert selection(app).data_path == data.resolve()
    assert app.sidebar.selectbox(key="data_choice").value == str(data.resolve())
