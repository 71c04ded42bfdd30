"""A shared link in a real Chromium: ``streamlit run app.py`` on 127.0.0.1, driven with Playwright."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from workbench import figures
from workbench.app import sources
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.training import predict_logits

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT_S = 90
PAGE_TIMEOUT_MS = 90_000
LINK_ROW = 5
NEW_ROW = 9


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    """Poll Streamlit's health endpoint until it returns ``ok``, and fail early when the server exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stdout.read() if server.stdout else ""
            pytest.fail(f"streamlit exited with code {server.returncode} before answering:\n{output}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"streamlit did not answer at {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def app_url(tiny_models_dir, tiny_data_dir, tmp_path_factory):
    """URL of a ``streamlit run app.py`` server configured with the tiny bundle and data folders."""
    port = free_port()
    env = {
        **os.environ,
        sources.MODELS_DIR_ENV: str(tiny_models_dir),
        sources.DATA_DIR_ENV: str(tiny_data_dir),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        "HOME": str(tmp_path_factory.mktemp("home")),
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "app.py"),
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--server.headless", "true",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, STARTUP_TIMEOUT_S)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# Streamlit's plotly theme wraps titles in <b> tags, so titles are matched with includes().
WATERFALL_TITLES_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(plot => (plot.data || []).some(trace => trace.type === 'waterfall'))
    .map(plot => plot.layout.title.text)
"""


def wait_for_waterfall(page, row: int) -> None:
    """Wait until the only waterfall on the page is the one of ``row`` (a rerun can leave the old one for a while)."""
    page.wait_for_function(
        f"() => {{ const titles = ({WATERFALL_TITLES_JS})();"
        f" return titles.length === 1 && titles[0].includes('Field attributions for row {row}'); }}"
    )


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def test_link_opens_explorer_row_in_browser(app_url, browser, tiny_bundle_path, tiny_data_dir):
    data_path = tiny_data_dir / "ad_clicks" / "test.parquet"
    bundle = load_bundle(tiny_bundle_path)
    logits = predict_logits(bundle.model, load_dataset(data_path, bundle.schema))
    params = {"bundle": str(tiny_bundle_path), "data": str(data_path), "row": LINK_ROW}

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{app_url}/explorer?{urlencode(params)}")
    page.get_by_role("heading", name="Sample explorer").wait_for()
    wait_for_waterfall(page, LINK_ROW)

    assert page.get_by_role("spinbutton", name="Row number").input_value() == str(LINK_ROW)
    assert page.locator("[data-testid='stMetric']").filter(has_text="Row").last.inner_text().endswith(str(LINK_ROW))
    page.get_by_text(figures.format_ctr(figures.sigmoid(logits[LINK_ROW])), exact=True).first.wait_for()
    assert page.locator("[data-testid='stAlertContentWarning']").count() == 0
    # The sidebar completed the URL with the row limit it used.
    page.wait_for_function("() => new URLSearchParams(window.location.search).get('rows') === '200000'")
    assert query(page.url)["bundle"] == [str(tiny_bundle_path.resolve())]
    assert query(page.url)["row"] == [str(LINK_ROW)]

    row_input = page.get_by_role("spinbutton", name="Row number")
    row_input.fill(str(NEW_ROW))
    row_input.press("Enter")
    wait_for_waterfall(page, NEW_ROW)
    page.wait_for_function(f"() => new URLSearchParams(window.location.search).get('row') === '{NEW_ROW}'")
    assert f"row={NEW_ROW}" in page.url
    assert urlsplit(page.url).path == "/explorer"

    # The link in the sidebar reopens the same view in a new browser session.
    page.get_by_text("Copy link to this view").click()
    link = page.locator("[data-testid='stSidebar'] [data-testid='stCode']").inner_text().strip()
    assert link.startswith(f"{app_url}/explorer?")
    assert query(link)["row"] == [str(NEW_ROW)]
    copy = browser.new_page(viewport={"width": 1400, "height": 900})
    copy.set_default_timeout(PAGE_TIMEOUT_MS)
    copy.goto(link)
    copy.get_by_role("heading", name="Sample explorer").wait_for()
    wait_for_waterfall(copy, NEW_ROW)
    copy.get_by_text(figures.format_ctr(figures.sigmoid(logits[NEW_ROW])), exact=True).first.wait_for()
    copy.close()

    # Another page keeps the selection in its URL. The row parameter belongs to the explorer only.
    page.get_by_role("link", name="Overview", exact=True).click()
    page.get_by_role("heading", name="Model overview").wait_for()
    page.wait_for_function("() => !new URLSearchParams(window.location.search).has('row')")
    assert query(page.url)["bundle"] == [str(tiny_bundle_path.resolve())]
    assert query(page.url)["data"] == [str(data_path.resolve())]
    assert query(page.url)["rows"] == ["200000"]
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()
