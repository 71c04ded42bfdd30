"""The app in a real Chromium: ``streamlit run app.py`` on 127.0.0.1, driven with Playwright.

Set ``WORKBENCH_SCREENSHOT`` to a file path to also save a 1400×900 screenshot
of the sample explorer with its waterfall.
"""

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

from sequence_fixtures import HISTORY_LENGTH, build_sequence_bundles
from workbench import figures
from workbench.app import sources
from workbench.bundle import load_bundle
from workbench.data import load_dataset
from workbench.probes import capture_probes
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
ROW = 42
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
    """URL of a ``streamlit run app.py`` server configured with the tiny bundle and data folders.

    The server stops after the last test of the module.
    """
    port = free_port()
    env = {
        **os.environ,
        sources.MODELS_DIR_ENV: str(tiny_models_dir),
        sources.DATA_DIR_ENV: str(tiny_data_dir),
        # Tests type paths under pytest's temporary folders, which the app's default allowed folders do not include.
        sources.ALLOWED_ROOTS_ENV: str(tmp_path_factory.getbasetemp()),
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
WATERFALL_TRACES_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(plot => (plot.data || []).some(trace => trace.type === 'waterfall'))
    .map(plot => ({title: plot.layout.title.text, x: plot.data[0].x, y: plot.data[0].y}))
"""


def test_explorer_waterfall_in_browser(app_url, browser, tiny_bundle_path, tiny_data_dir):
    bundle = load_bundle(tiny_bundle_path)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema)
    logit = float(predict_logits(bundle.model, dataset)[ROW])
    expected_ctr = figures.format_ctr(figures.sigmoid(logit))

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("heading", name="Model overview").wait_for()
    page.get_by_text("tiny-deepfm", exact=True).first.wait_for()

    page.get_by_role("link", name="Sample explorer").click()
    page.get_by_role("heading", name="Sample explorer").wait_for()
    page.get_by_text("Waterfall of field attributions").wait_for()
    row_input = page.get_by_role("spinbutton", name="Row number")
    row_input.fill(str(ROW))
    row_input.press("Enter")
    wait_for_waterfall(page, ROW)

    plots = page.evaluate(WATERFALL_TRACES_JS)
    assert len(plots) == 1
    assert plots[0]["x"][-1] == pytest.approx(logit, abs=1e-5)
    city = dataset.raw_values()["city"].iloc[ROW]
    assert f"city = {city}" in plots[0]["y"]
    page.get_by_text(expected_ctr, exact=True).first.wait_for()

    screenshot = os.environ.get("WORKBENCH_SCREENSHOT")
    if screenshot:
        page.wait_for_timeout(500)  # let plotly finish its transition before capturing
        page.screenshot(path=screenshot)
    page.close()


def test_counterfactuals_page_in_browser(app_url, browser, tiny_bundle_path, tiny_data_dir):
    bundle = load_bundle(tiny_bundle_path)
    dataset = load_dataset(tiny_data_dir / "ad_clicks" / "test.parquet", bundle.schema)
    expected_ctr = figures.format_ctr(figures.sigmoid(float(predict_logits(bundle.model, dataset)[0])))

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("heading", name="Model overview").wait_for()
    page.get_by_role("link", name="Counterfactuals").click()
    page.get_by_role("heading", name="What-if editor").wait_for()
    page.get_by_role("heading", name="Field sweep").wait_for()

    # Row 0 with no edit: the editor's "after" equals the row's own prediction.
    after = page.locator("[data-testid='stMetric']").filter(has_text="Predicted CTR after")
    after.get_by_text(expected_ctr, exact=True).wait_for()
    assert page.get_by_text("Change a field value above").count() == 1
    # The search and faithfulness forms come after the editor; wait for the last of them before listing buttons.
    page.get_by_role("button", name="Compare explainers").wait_for()
    buttons = page.get_by_role("button").all_inner_texts()
    assert "Search" in buttons
    assert "Compare explainers" in buttons
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_typed_bad_bundle_in_browser(app_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("heading", name="Model overview").wait_for()

    typed = page.get_by_role("textbox", name="…or a bundle folder path")
    typed.fill(str(tmp_path))
    typed.press("Enter")
    alert = page.locator("[data-testid='stAlertContentError']")
    alert.wait_for()

    assert "manifest.json is missing" in alert.inner_text()
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_pages_request_only_the_local_server(app_url, browser):
    """Opening every page sends no request to any host other than the app's own 127.0.0.1 server."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(app_url)
    page.get_by_role("heading", name="Model overview").wait_for()
    for link, heading in [
        ("Field importance", "Field importance"),
        ("Sample explorer", "Sample explorer"),
        ("Interactions", "Interactions"),
    ]:
        page.get_by_role("link", name=link).click()
        page.get_by_role("heading", name=heading).wait_for()
    page.wait_for_timeout(1000)
    page.close()

    outside = [url for url in requested if not url.startswith((app_url, "data:", "blob:"))]
    assert requested
    assert outside == []


HEATMAP_TITLES_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(plot => (plot.data || []).some(trace => trace.type === 'heatmap'))
    .map(plot => ({title: plot.layout.title.text, columns: plot.data[0].x.length}))
"""


def test_gates_page_draws_heatmaps_in_browser(app_url, browser, tiny_bundle_path):
    n_fields = len(load_bundle(tiny_bundle_path).schema.field_names)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("heading", name="Model overview").wait_for()

    page.get_by_role("link", name="Gates & masks").click()
    page.get_by_role("heading", name="Gates & masks").wait_for()
    page.wait_for_function(f"({HEATMAP_TITLES_JS})().length >= 3")

    heatmaps = page.evaluate(HEATMAP_TITLES_JS)
    titles = " | ".join(plot["title"] for plot in heatmaps)
    assert "mean over 1,000 rows" in titles
    assert "Row 0" in titles
    assert all(plot["columns"] == n_fields for plot in heatmaps)
    page.close()


# _fullData contains the decoded arrays, while data keeps the base64 typed arrays that plotly.py sends.
BAR_PLOTS_JS = """
() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(plot => (plot.data || []).some(trace => trace.type === 'bar'))
    .map(plot => ({title: plot.layout.title.text, x: Array.from(plot._fullData[0].x), y: Array.from(plot._fullData[0].y)}))
"""


@pytest.fixture(scope="module")
def sequence_bundles(tmp_path_factory):
    return build_sequence_bundles(tmp_path_factory.mktemp("sequence"), architectures=("din",))


def test_attention_strip_of_sequence_model_in_browser(app_url, browser, sequence_bundles):
    bundle = load_bundle(sequence_bundles.bundle("din"))
    dataset = load_dataset(sequence_bundles.test_path, bundle.schema)
    row = next(r for r, items in enumerate(dataset.raw["history_items"]) if len(items.split("|")) == HISTORY_LENGTH - 1)
    items = dataset.raw["history_items"].iloc[row].split("|")
    genres = dataset.raw["history_genres"].iloc[row].split("|")
    weights = capture_probes(bundle.model, dataset.tensors([row]))["target_attention"].values[0]

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("heading", name="Model overview").wait_for()
    typed = page.get_by_role("textbox", name="…or a bundle folder path")
    typed.fill(str(sequence_bundles.bundle("din")))
    typed.press("Enter")
    page.get_by_text("seq-din", exact=True).first.wait_for()

    page.get_by_role("link", name="Attention").click()
    page.get_by_role("heading", name="Cohort mean").wait_for()
    row_input = page.get_by_role("spinbutton", name="Row", exact=True)
    row_input.fill(str(row))
    row_input.press("Enter")
    # While Streamlit reruns, the previous row's strip can stay on the page next to the new one: wait until
    # the new strip is the only one.
    page.wait_for_function(
        f"() => {{ const strips = ({BAR_PLOTS_JS})().filter(plot => plot.title.includes('Target attention of row'));"
        f" return strips.length === 1 && strips[0].title.includes('Target attention of row {row} '); }}"
    )

    strips = [plot for plot in page.evaluate(BAR_PLOTS_JS) if "Target attention of row" in plot["title"]]
    assert len(strips) == 1
    assert strips[0]["x"] == [f"{p}: {item} · {genre}" for p, (item, genre) in enumerate(zip(items, genres, strict=True))]
    assert strips[0]["y"] == pytest.approx(weights[: len(items)].tolist(), abs=1e-6)
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def wait_for_waterfall(page, row: int) -> None:
    """Wait until the only waterfall on the page is the one of ``row`` (a rerun can leave the old one for a while)."""
    page.wait_for_function(
        f"() => {{ const plots = ({WATERFALL_TRACES_JS})();"
        f" return plots.length === 1 && plots[0].title.includes('Field attributions for row {row}'); }}"
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


def test_new_pages_open_in_browser(app_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(app_url)
    page.get_by_role("heading", name="Model overview").wait_for()
    page.get_by_role("link", name="Cohorts & metrics").click()
    page.get_by_role("heading", name="Metrics", exact=True).wait_for()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(plot => (plot.data || []).length > 1)"
    )
    # The reliability diagram and the per-value chart each have a button; the second comes a moment later.
    page.get_by_role("button", name="Add to report").nth(1).wait_for()
    assert page.get_by_role("button", name="Add to report").count() >= 2
    page.get_by_role("button", name="Add to report").first.click()
    page.get_by_text("to the report (1 section)").wait_for()
    page.get_by_role("link", name="Report").click()
    page.get_by_role("heading", name="Export").wait_for()
    # The download button comes after the report's HTML is built, a moment after the heading.
    page.get_by_role("button", name="Download HTML").wait_for()
    assert page.get_by_role("button", name="Download HTML").count() == 1
    page.get_by_role("link", name="Model comparison").click()
    page.get_by_role("heading", name="Model comparison", exact=True).wait_for()
    assert page.locator("[data-testid='stException']").count() == 0
    page.close()


def test_two_sessions_keep_their_own_state(app_url, browser, tiny_data_dir):
    """Two browser contexts (two users) choose different models, and neither gets the other's model or report."""
    lr_bundle = REPO_ROOT / "models" / "ad_clicks_lr"
    data_path = tiny_data_dir / "ad_clicks" / "test.parquet"
    first_context = browser.new_context(viewport={"width": 1400, "height": 900})
    second_context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        first = first_context.new_page()
        second = second_context.new_page()
        for page in (first, second):
            page.set_default_timeout(PAGE_TIMEOUT_MS)
        first.goto(f"{app_url}/explorer")
        first.get_by_text("Bundle tiny-deepfm", exact=False).first.wait_for()

        second.goto(f"{app_url}/explorer?{urlencode({'bundle': str(lr_bundle), 'data': str(data_path)})}")
        second.get_by_text("Bundle LR · ad clicks", exact=False).first.wait_for()
        second.get_by_role("button", name="Add to report").first.click()
        second.get_by_text("to the report (1 section)").wait_for()

        # The first user's next rerun still shows their own model, and their report is empty.
        row_input = first.get_by_role("spinbutton", name="Row number")
        row_input.fill("7")
        row_input.press("Enter")
        wait_for_waterfall(first, 7)
        assert first.get_by_text("Bundle LR · ad clicks", exact=False).count() == 0
        assert first.get_by_text("Bundle tiny-deepfm", exact=False).count() >= 1
        first.get_by_role("link", name="Report").click()
        first.get_by_text("The report is empty").wait_for()

        second.get_by_role("link", name="Report").click()
        second.get_by_role("heading", name="Export").wait_for()
        assert second.get_by_text("LR · ad clicks", exact=False).count() >= 1
    finally:
        first_context.close()
        second_context.close()


HOSTILE_CITY = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
HOSTILE_SITE = '" onmouseover="window.__pwned=3'


@pytest.fixture(scope="module")
def hostile_bundle(tmp_path_factory):
    """A tiny LR trained on ad-click rows whose city and site values are HTML and script fragments."""
    from workbench.bundle import save_bundle
    from workbench.data import encode, read_frame, read_schema_spec
    from workbench.schema import fit_schema
    from workbench.training import TrainConfig, train
    from workbench.zoo import build_model

    folder = tmp_path_factory.mktemp("hostile")
    ad_clicks = REPO_ROOT / "sample_data" / "ad_clicks"
    frame = read_frame(ad_clicks / "train.parquet", max_rows=2_000)
    frame.loc[:999, "city"] = HOSTILE_CITY
    frame.loc[:999, "site"] = HOSTILE_SITE
    schema = fit_schema(frame, read_schema_spec(ad_clicks / "schema.json"))
    dataset = encode(frame, schema)
    model = build_model("lr", schema)
    train(model, dataset, dataset, TrainConfig(epochs=1, batch_size=512), show_progress=False)
    save_bundle(model, folder / "hostile-lr")
    frame.iloc[:50].to_parquet(folder / "hostile.parquet", index=False)
    return folder / "hostile-lr", folder / "hostile.parquet"


def test_hostile_values_show_as_text_in_app(app_url, browser, hostile_bundle):
    bundle_path, data_path = hostile_bundle
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{app_url}/explorer?{urlencode({'bundle': str(bundle_path), 'data': str(data_path), 'row': 0})}")
    page.get_by_role("heading", name="Sample explorer").wait_for()
    wait_for_waterfall(page, 0)
    # The waterfall labels and the values table carry the fragments as text.
    labels = page.evaluate(f"({WATERFALL_TRACES_JS})()[0].y")
    assert f"city = {HOSTILE_CITY}"[:40] in " ".join(labels)
    page.mouse.move(700, 500)
    page.get_by_role("link", name="Overview").click()
    page.get_by_role("heading", name="Model overview").wait_for()
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("img[src='x']").count() == 0
    page.close()
