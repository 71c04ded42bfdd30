"""``workbench serve`` becomes the Streamlit server, so stopping it stops the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def test_serve_stops_with_its_process(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    workbench = Path(sys.executable).parent / "workbench"
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "HOME": str(tmp_path)}
    server = subprocess.Popen(
        [str(workbench), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not healthy(url):
            assert server.poll() is None, f"workbench serve exited with {server.returncode}"
            assert time.monotonic() < deadline, f"no answer at {url} within {STARTUP_TIMEOUT_S} s"
            time.sleep(0.3)

        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

        assert not healthy(url)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)


@pytest.mark.parametrize(
    ("options", "address", "upload_mb"),
    [([], "127.0.0.1", "10"), (["--address", "0.0.0.0", "--max-upload-mb", "3"], "0.0.0.0", "3")],
)
def test_serve_passes_address_and_upload_limit(monkeypatch, options, address, upload_mb):
    from workbench import cli

    started = {}

    def fake_execve(path, argv, env):
        started["argv"] = argv
        raise SystemExit(0)

    monkeypatch.setattr(cli.os, "execve", fake_execve)
    with pytest.raises(SystemExit):
        cli.main(["serve", "--port", "8999", *options])
    argv = started["argv"]
    assert argv[argv.index("--server.address") + 1] == address
    assert argv[argv.index("--server.maxUploadSize") + 1] == upload_mb


def test_serve_allow_root_sets_environment(monkeypatch, tmp_path):
    from workbench import cli
    from workbench.app.sources import ALLOWED_ROOTS_ENV

    first, second = tmp_path / "team", tmp_path / "shared data"
    first.mkdir()
    second.mkdir()
    (tmp_path / "link").symlink_to(second, target_is_directory=True)
    monkeypatch.setenv(ALLOWED_ROOTS_ENV, "/srv/earlier")
    monkeypatch.chdir(tmp_path)
    started = {}

    def fake_execve(path, argv, env):
        started["env"] = env
        raise SystemExit(0)

    monkeypatch.setattr(cli.os, "execve", fake_execve)
    with pytest.raises(SystemExit):
        cli.main(["serve", "--allow-root", str(first), "--allow-root", "link"])

    roots = started["env"][ALLOWED_ROOTS_ENV].split(os.pathsep)
    assert roots == ["/srv/earlier", str(first.resolve()), str(second.resolve())]


def test_serve_allow_root_must_exist(monkeypatch, tmp_path, capsys):
    from workbench import cli

    monkeypatch.setattr(cli.os, "execve", lambda *args: pytest.fail("the server must not start"))
    status = cli.main(["serve", "--allow-root", str(tmp_path / "absent")])

    assert status == 2
    error = capsys.readouterr().err
    assert f"--allow-root '{tmp_path / 'absent'}' is not an existing folder" in error


def test_serve_model_zoo_sets_environment(monkeypatch, tmp_path):
    from workbench import cli
    from workbench.adapters.bundle import CODE_FOLDERS_ENV

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    monkeypatch.setenv(CODE_FOLDERS_ENV, "/srv/models")
    started = {}

    def fake_execve(path, argv, env):
        started["env"] = env
        raise SystemExit(0)

    monkeypatch.setattr(cli.os, "execve", fake_execve)
    with pytest.raises(SystemExit):
        cli.main(["serve", "--model-zoo", str(zoo)])

    assert started["env"][CODE_FOLDERS_ENV].split(os.pathsep) == ["/srv/models", str(zoo.resolve())]


def test_serve_model_zoo_must_exist(monkeypatch, tmp_path, capsys):
    from workbench import cli

    monkeypatch.setattr(cli.os, "execve", lambda *args: pytest.fail("the server must not start"))
    status = cli.main(["serve", "--model-zoo", str(tmp_path / "absent")])

    assert status == 2
    assert f"--model-zoo '{tmp_path / 'absent'}' is not an existing folder" in capsys.readouterr().err
