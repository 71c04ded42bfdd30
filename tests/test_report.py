"""Report export: provenance records, section round trips, standalone HTML, PDF printing and table files."""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly
import plotly.graph_objects as go
import plotly.offline
import pytest

from workbench import report as report_module
from workbench.bundle import load_bundle
from workbench.data import encode, file_fingerprint, load_dataset, read_frame
from workbench.explain import explain
from workbench.figures import importance_bar
from workbench.provenance import ProvenanceError, bundle_fingerprint, provenance
from workbench.report import (
    Report,
    ReportError,
    ReportSection,
    chromium_path,
    numbers_zip_bytes,
    to_html,
    write_html,
    write_numbers_zip,
    write_pdf,
    write_tables,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLE_DIR = REPO_ROOT / "models" / "ad_clicks_deepfm"
TEST_FILE = REPO_ROOT / "sample_data" / "ad_clicks" / "test.parquet"
SYSTEM_CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not SYSTEM_CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")

SCRIPT_TAG = "<script>window.__pwned=1</script>"
ATTRIBUTE_BREAKOUT = '" onmouseover="window.__pwned=2'
PLOTLYJS_MARKER = plotly.offline.get_plotlyjs()[:120]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(BUNDLE_DIR)


@pytest.fixture(scope="module")
def dataset(bundle):
    return load_dataset(TEST_FILE, bundle.schema)


@pytest.fixture(scope="module")
def importance_section(bundle, dataset) -> ReportSection:
    """Field importance of exact Shapley values on the first 50 test rows of the bundled DeepFM."""
    attribution = explain(bundle.model, dataset, np.arange(50), method="exact_shapley")
    record = provenance(bundle, dataset, method="exact_shapley", baseline="zero", rows=50)
    importance = attribution.mean_abs()
    table = pd.DataFrame({"field": list(importance.index), "mean_abs": importance.to_numpy()})
    return ReportSection(
        "Field importance",
        importance_bar(attribution),
        record,
        {"importance": table},
        text="Mean |attribution| per field, exact Shapley values, zero baseline.",
    )


def bar_figure(labels: list[str], values: list[float], title: str = "Bars") -> go.Figure:
    figure = go.Figure(go.Bar(x=labels, y=values))
    figure.update_layout(title=title, height=400)
    return figure


def mixed_table() -> pd.DataFrame:
    """Int, float with NaN, string and bool columns, with a named non-default index."""
    frame = pd.DataFrame(
        {
            "count": np.array([3, 1, 4], dtype=np.int64),
            "share": [0.1, np.nan, 1 / 3],
            "value": ["a", "b & c", SCRIPT_TAG],
            "flag": [True, False, True],
        },
        index=pd.Index([10, 20, 30], name="row"),
    )
    return frame


def hostile_section() -> ReportSection:
    """A section whose title, caption, provenance, table and figure labels hold HTML and script."""
    return ReportSection(
        f"Hostile {SCRIPT_TAG}",
        bar_figure([SCRIPT_TAG, ATTRIBUTE_BREAKOUT, "plain"], [1.0, 2.0, 3.0], title=f"Title {SCRIPT_TAG}"),
        {"method": SCRIPT_TAG, "note": ATTRIBUTE_BREAKOUT, "cohort": {"device": SCRIPT_TAG}},
        {"cells": pd.DataFrame({"text": [SCRIPT_TAG, ATTRIBUTE_BREAKOUT], "number": [1.5, 2.5]})},
        text=f"Caption {ATTRIBUTE_BREAKOUT}",
        key="hostile",
    )


def small_report() -> Report:
    report = Report("Small <report>")
    report.add(ReportSection("First chart", bar_figure(["a", "b"], [1.0, 2.0]), {"method": "exact_shapley"}, {"bars": mixed_table()}))
    report.add(hostile_section())
    report.add(ReportSection("Tables only", None, {"rows": 3}, {"numbers": pd.DataFrame({"x": [1, 2, 3]})}))
    return report


# ---------------------------------------------------------------- provenance


def test_bundle_fingerprint_hashes_manifest_then_weights(bundle):
    expected = hashlib.sha256((BUNDLE_DIR / "manifest.json").read_bytes() + (BUNDLE_DIR / "weights.safetensors").read_bytes())
    assert bundle_fingerprint(bundle) == expected.hexdigest()


def test_provenance_records_bundle_data_and_versions(bundle, dataset):
    before = datetime.now(UTC).replace(microsecond=0)
    record = provenance(
        bundle,
        dataset,
        cohort={"device": "mobile", "hour": np.int64(7)},
        method="exact_shapley",
        baseline="zero",
        output_space="logit",
        parameters={"budget": np.int32(512), "weights": np.array([0.5, 1.5]), "tolerance": float("nan")},
        rows=np.int64(50),
    )

    assert record["bundle_name"] == bundle.name
    assert record["bundle_architecture"] == "deepfm"
    assert record["bundle_path"] == str(BUNDLE_DIR)
    assert record["bundle_fingerprint"] == bundle_fingerprint(bundle)
    assert record["data_name"] == "test.parquet"
    assert record["data_path"] == str(TEST_FILE)
    assert record["data_fingerprint"] == file_fingerprint(TEST_FILE)
    assert record["data_rows"] == 20_000
    assert record["cohort"] == {"device": "mobile", "hour": 7}
    assert record["rows"] == 50
    assert record["method"] == "exact_shapley"
    assert record["baseline"] == "zero"
    assert record["output_space"] == "logit"
    assert record["parameters"] == {"budget": 512, "weights": [0.5, 1.5], "tolerance": None}
    assert record["library_versions"]["plotly"] == plotly.__version__
    assert record["library_versions"]["numpy"] == np.__version__
    assert set(record["library_versions"]) >= {"workbench", "python", "torch", "numpy", "scikit-learn", "plotly", "streamlit"}
    created = datetime.fromisoformat(record["created"])
    assert created.utcoffset().total_seconds() == 0
    assert before <= created <= datetime.now(UTC)
    assert all(re.fullmatch(r"[a-z][a-z_]*", key) for key in record)
    json.dumps(record, allow_nan=False)


def test_provenance_without_file_or_cohort(bundle):
    frame = read_frame(TEST_FILE, max_rows=7)
    in_memory = encode(frame, bundle.schema, name="seven rows", source="")
    missing_file = encode(frame, bundle.schema, name="", source="/nonexistent/rows.parquet")

    record = provenance(bundle, in_memory)
    assert record["data_path"] is None
    assert record["data_fingerprint"] is None
    assert record["data_name"] == "seven rows"
    assert record["data_rows"] == 7
    assert record["cohort"] is None
    assert record["method"] is None

    record = provenance(bundle, missing_file)
    assert record["data_path"] == "/nonexistent/rows.parquet"
    assert record["data_fingerprint"] is None
    assert record["data_name"] == "rows.parquet"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rows": -1}, "rows must be a non-negative integer"),
        ({"rows": 2.5}, "rows must be a non-negative integer"),
        ({"cohort": ["device"]}, "cohort must be a dict"),
        ({"parameters": {"model": object()}}, r"parameters\['model'\] is a object"),
        ({"parameters": {1: "a"}}, "keys must be strings"),
        ({"method": 3}, "method must be a string"),
    ],
)
def test_provenance_rejects_bad_options(bundle, dataset, options, message):
    with pytest.raises(ProvenanceError, match=message):
        provenance(bundle, dataset, **options)


# ---------------------------------------------------------------- sections and reports


def test_section_round_trip_keeps_figure_and_tables():
    section = ReportSection(
        "Round trip",
        bar_figure(["x", "y", "z"], [0.1, 1 / 3, 2.0]),
        {"method": "exact_shapley", "parameters": {"budget": 10}},
        {"mixed": mixed_table(), "plain": pd.DataFrame({"score": np.linspace(0.0, 1.0, 7)})},
        text="caption",
    )
    stored = json.loads(json.dumps(section.to_dict(), allow_nan=False))
    restored = ReportSection.from_dict(stored)

    assert restored.key == "round-trip"
    assert restored.title == "Round trip"
    assert restored.text == "caption"
    assert restored.provenance == section.provenance
    assert restored.figure.to_json() == section.figure.to_json()
    assert list(restored.figure.data[0].x) == ["x", "y", "z"]
    assert list(restored.figure.data[0].y) == [0.1, 1 / 3, 2.0]
    assert list(restored.tables) == ["mixed", "plain"]
    pd.testing.assert_frame_equal(restored.tables["mixed"], section.tables["mixed"])
    pd.testing.assert_frame_equal(restored.tables["plain"], section.tables["plain"])


def test_section_copies_figure():
    figure = bar_figure(["a", "b"], [1.0, 2.0], title="Before")
    section = ReportSection("Copy", figure)
    figure.update_layout(title="After")
    assert section.figure.layout.title.text == "Before"
    assert list(section.figure.data[0].y) == [1.0, 2.0]


def test_section_round_trip_real_figure(importance_section):
    restored = ReportSection.from_dict(json.loads(json.dumps(importance_section.to_dict(), allow_nan=False)))
    assert restored.figure.to_json() == importance_section.figure.to_json()
    original_bar = importance_section.figure.data[0]
    restored_bar = restored.figure.data[0]
    assert list(restored_bar.y) == list(original_bar.y)
    np.testing.assert_array_equal(np.asarray(restored_bar.x), np.asarray(original_bar.x))
    assert restored.figure.layout.title.text == importance_section.figure.layout.title.text
    pd.testing.assert_frame_equal(restored.tables["importance"], importance_section.tables["importance"])
    assert restored.provenance == importance_section.provenance


def test_section_from_dict_rejects_damaged_input():
    stored = ReportSection("T", None, {}, {"t": pd.DataFrame({"a": [1]})}).to_dict()
    with pytest.raises(ReportError, match="lacks figure"):
        ReportSection.from_dict({key: value for key, value in stored.items() if key != "figure"})
    stored["tables"]["t"]["data"] = [[1], [2]]
    with pytest.raises(ReportError, match="table t/t in the stored section is malformed"):
        ReportSection.from_dict(stored)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"title": " "}, "non-empty title"),
        ({"title": "T", "key": "Bad Key"}, "invalid section key 'Bad Key'"),
        ({"title": "T", "tables": {"a b": pd.DataFrame()}}, "invalid table name 'a b'"),
        ({"title": "T", "tables": {"t": [1, 2]}}, "must be a pandas DataFrame"),
        ({"title": "T", "tables": {"t": pd.DataFrame({0: [1]})}}, "column name 0 of type int; rename the columns to strings"),
        ({"title": "T", "tables": {"t": pd.DataFrame({"a": [1]}).set_index(["a", "a"])}}, "MultiIndex"),
        ({"title": "T", "provenance": {"x": float("nan")}}, "not plain JSON"),
        ({"title": "T", "figure": {"data": []}}, "must be a plotly.graph_objects.Figure"),
    ],
)
def test_section_rejects_bad_values(arguments, message):
    with pytest.raises(ReportError, match=message):
        ReportSection(**arguments)


def test_report_add_move_remove():
    report = Report("Order")
    first = report.add(ReportSection("Importance", None))
    second = report.add(ReportSection("Importance", None))
    third = report.add(ReportSection("Importance", None))
    other = report.add(ReportSection("Waterfall, row 42", None))
    assert [first.key, second.key, third.key, other.key] == ["importance", "importance-2", "importance-3", "waterfall-row-42"]

    assert report.move("waterfall-row-42", -2) == 1
    assert report.keys == ["importance", "waterfall-row-42", "importance-2", "importance-3"]
    assert report.move("importance", -1) == 0
    assert report.move("importance", 10) == 3
    assert report.keys == ["waterfall-row-42", "importance-2", "importance-3", "importance"]

    removed = report.remove("importance-2")
    assert removed is second
    assert report.keys == ["waterfall-row-42", "importance-3", "importance"]
    with pytest.raises(ReportError, match="no section with key 'importance-2'"):
        report.remove("importance-2")

    restored = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert restored.title == "Order"
    assert restored.keys == report.keys


# ---------------------------------------------------------------- HTML


def test_html_embeds_plotlyjs_once_and_no_remote_scripts():
    document = to_html(small_report())
    assert document.count(PLOTLYJS_MARKER) == 1
    assert document.count("Plotly.newPlot(") == 2
    script_tags = re.findall(r"<script\b[^>]*>", document, flags=re.IGNORECASE)
    assert all(tag.lower() == "<script>" for tag in script_tags)
    assert re.search(r"src\s*=\s*[\"']?\s*(https?:)?//", document, flags=re.IGNORECASE) is None
    assert "mathjax" not in document.lower().split("</head>")[1]
    assert "Content-Security-Policy" in document


def test_html_escapes_every_hostile_value():
    document = to_html(small_report())
    assert SCRIPT_TAG not in document
    assert ATTRIBUTE_BREAKOUT not in document
    escaped_script = html.escape(SCRIPT_TAG)
    assert f"<h2>2. Hostile {escaped_script}</h2>" in document
    assert f'<a href="#section-hostile">Hostile {escaped_script}</a>' in document
    assert f"<dd>{escaped_script}</dd>" in document
    assert f"<dd>{html.escape(ATTRIBUTE_BREAKOUT)}</dd>" in document
    assert f"<td>{escaped_script}</td>" in document
    assert f"<title>Small &lt;report&gt;</title>" in document
    # The figure JSON carries the label with <, > and & as \u escapes, which JSON reads back unchanged.
    assert json.loads('"\\u003cscript\\u003ewindow.__pwned=1\\u003c/script\\u003e"') == SCRIPT_TAG
    assert "\\u003cscript\\u003ewindow.__pwned=1\\u003c/script\\u003e" in document


def test_html_shows_provenance_tables_and_toc(importance_section):
    report = Report("Importance report")
    report.add(importance_section)
    document = to_html(report, max_rows=5)
    record = importance_section.provenance

    for key in ("bundle_fingerprint", "data_fingerprint", "bundle_path", "created", "method", "baseline"):
        assert f"<dt>{key}</dt><dd>{html.escape(str(record[key]))}</dd>" in document
    assert f"<dt>bundle_name</dt><dd>{html.escape(record['bundle_name'])}</dd>" in document
    assert "<dt>cohort</dt><dd>all rows</dd>" in document
    assert f"<dt>plotly</dt><dd>{plotly.__version__}</dd>" in document
    assert "<dt>scikit-learn</dt>" in document
    assert '<nav class="toc"><h2>Contents</h2><ol><li><a href="#section-field-importance">Field importance</a></li></ol></nav>' in document

    table = importance_section.tables["importance"]
    top_field = table.iloc[0]["field"]
    assert f"<td>{top_field}</td><td>{table.iloc[0]['mean_abs']:.6g}</td>" in document
    sixth_field = table.iloc[5]["field"]
    assert f"<td>{sixth_field}</td>" not in document
    assert f"First 5 of {len(table)} rows" in document


def test_write_html_keeps_existing_file(tmp_path):
    path = tmp_path / "report.html"
    write_html(small_report(), path)
    first = path.read_text(encoding="utf-8")
    assert first.startswith("<!DOCTYPE html>")
    with pytest.raises(ReportError, match=re.escape(f"{str(path)!r} already exists")):
        write_html(Report("Other"), path)
    assert path.read_text(encoding="utf-8") == first
    write_html(Report("Other"), path, overwrite=True)
    assert "<title>Other</title>" in path.read_text(encoding="utf-8")
    assert sorted(item.name for item in tmp_path.iterdir()) == ["report.html"]


# ---------------------------------------------------------------- table files


@pytest.mark.parametrize("format", ["parquet", "csv"])
def test_write_tables_read_back_equal(tmp_path, format):
    report = small_report()
    written = write_tables(report, tmp_path / "numbers", format=format)

    names = [path.name for path in written]
    assert names == [
        f"first-chart__bars.{format}",
        f"hostile__cells.{format}",
        f"tables-only__numbers.{format}",
        "provenance.json",
    ]
    assert sorted(item.name for item in (tmp_path / "numbers").iterdir()) == sorted(names)
    for section in report.sections:
        for name, frame in section.tables.items():
            path = tmp_path / "numbers" / f"{section.key}__{name}.{format}"
            if format == "parquet":
                read = pd.read_parquet(path)
            elif isinstance(frame.index, pd.RangeIndex):
                read = pd.read_csv(path)
            else:
                read = pd.read_csv(path, index_col=0)
            pd.testing.assert_frame_equal(read, frame)

    records = json.loads((tmp_path / "numbers" / "provenance.json").read_text(encoding="utf-8"))
    assert [record["key"] for record in records] == ["first-chart", "hostile", "tables-only"]
    assert records[1]["provenance"] == report.sections[1].provenance
    assert records[1]["tables"] == [f"hostile__cells.{format}"]


def test_write_tables_checks_before_writing(tmp_path):
    report = small_report()
    (tmp_path / "provenance.json").write_text("keep", encoding="utf-8")
    with pytest.raises(ReportError, match="provenance.json' already exists"):
        write_tables(report, tmp_path, format="csv")
    assert [item.name for item in tmp_path.iterdir()] == ["provenance.json"]
    assert (tmp_path / "provenance.json").read_text(encoding="utf-8") == "keep"
    with pytest.raises(ReportError, match="table format must be one of parquet, csv; got 'xlsx'"):
        write_tables(report, tmp_path / "other", format="xlsx")


def test_numbers_zip_matches_table_files(tmp_path):
    report = small_report()
    archive = zipfile.ZipFile(io.BytesIO(numbers_zip_bytes(report, format="parquet")))
    write_tables(report, tmp_path / "files")
    assert sorted(archive.namelist()) == sorted(item.name for item in (tmp_path / "files").iterdir())
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(archive.read("first-chart__bars.parquet"))), mixed_table())

    path = write_numbers_zip(report, tmp_path / "numbers.zip", format="csv")
    assert sorted(zipfile.ZipFile(path).namelist()) == [
        "first-chart__bars.csv",
        "hostile__cells.csv",
        "provenance.json",
        "tables-only__numbers.csv",
    ]
    with pytest.raises(ReportError, match="numbers.zip' already exists"):
        write_numbers_zip(report, path)


# ---------------------------------------------------------------- PDF without a browser


def test_write_pdf_without_chromium(tmp_path, monkeypatch):
    monkeypatch.delenv(report_module.CHROMIUM_ENV, raising=False)
    monkeypatch.setattr(report_module, "CHROMIUM_DEFAULT", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert chromium_path() is None
    with pytest.raises(ReportError, match="Chromium is not installed") as raised:
        write_pdf(small_report(), tmp_path / "report.pdf")
    assert "apt-get install chromium" in str(raised.value)
    assert "WORKBENCH_CHROMIUM" in str(raised.value)
    assert "write_html" in str(raised.value)

    monkeypatch.setenv(report_module.CHROMIUM_ENV, str(tmp_path / "missing"))
    with pytest.raises(ReportError, match="WORKBENCH_CHROMIUM=.*missing' is not an executable file"):
        write_pdf(small_report(), tmp_path / "report.pdf")
    with pytest.raises(ReportError, match="not found or not executable; install it"):
        write_pdf(small_report(), tmp_path / "report.pdf", chromium=str(tmp_path / "other"))
    assert list(tmp_path.iterdir()) == []


def fake_chromium(folder: Path, body: str) -> str:
    script = folder / "fake-chromium"
    script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def test_write_pdf_reports_chromium_failures(tmp_path):
    out = tmp_path / "out"
    failing = fake_chromium(tmp_path, "echo 'cannot open display' >&2\nexit 3")
    with pytest.raises(ReportError, match=r"exit code 3 while printing the PDF; stderr ends with:\ncannot open display"):
        write_pdf(small_report(), out / "report.pdf", chromium=failing)

    silent = fake_chromium(tmp_path, "exit 0")
    with pytest.raises(ReportError, match="exited without writing a PDF"):
        write_pdf(small_report(), out / "report.pdf", chromium=silent)

    hanging = fake_chromium(tmp_path, "echo 'still loading' >&2\nexec sleep 60")
    with pytest.raises(ReportError, match=r"timed out after 1 s.*\nstill loading"):
        write_pdf(small_report(), out / "report.pdf", chromium=hanging, timeout_s=1)
    assert list(out.iterdir()) == []

    (out / "report.pdf").write_bytes(b"old")
    with pytest.raises(ReportError, match="report.pdf' already exists"):
        write_pdf(small_report(), out / "report.pdf", chromium=failing)
    assert (out / "report.pdf").read_bytes() == b"old"


# ---------------------------------------------------------------- real Chromium


@pytest.mark.browser
@needs_chromium
def test_write_pdf_draws_figures(tmp_path, importance_section):
    pypdfium2 = pytest.importorskip("pypdfium2")
    report = Report("PDF")
    report.add(importance_section)
    report.add(ReportSection("Bars", bar_figure(["a", "b", "c"], [3.0, 1.0, 2.0]), {"method": "none"}))
    html_path = write_html(report, tmp_path / "report.html")

    pdf_path = write_pdf(html_path, tmp_path / "report.pdf", chromium=str(SYSTEM_CHROMIUM))
    data = pdf_path.read_bytes()
    assert data.startswith(b"%PDF-")
    assert sorted(item.name for item in tmp_path.iterdir()) == ["report.html", "report.pdf"]
    document = pypdfium2.PdfDocument(data)
    try:
        n_pages = len(document)
        # Page 1 contains the title, the contents and the importance bar chart.
        first_page = document[0].render(scale=1, rev_byteorder=True).to_numpy()[..., :3].copy()
    finally:
        document.close()

    assert n_pages >= 2
    non_white = (first_page.min(axis=-1) < 245).mean()
    assert non_white > 0.01, f"page 1 is almost blank ({non_white:.2%} non-white)"
    assert len(np.unique(first_page.reshape(-1, 3), axis=0)) > 2
    bar_colour = np.all(np.abs(first_page.astype(int) - [0x2F, 0x6D, 0xB5]) <= 8, axis=-1)
    assert bar_colour.mean() > 0.005, f"page 1 has {bar_colour.mean():.2%} pixels in the bar colour #2f6db5"

    with pytest.raises(ReportError, match="already exists"):
        write_pdf(html_path, pdf_path, chromium=str(SYSTEM_CHROMIUM))
    write_pdf(report, pdf_path, chromium=str(SYSTEM_CHROMIUM), overwrite=True)
    assert pdf_path.read_bytes().startswith(b"%PDF-")


@pytest.mark.browser
@needs_chromium
def test_html_renders_offline_without_running_injected_script(tmp_path, importance_section):
    from playwright.sync_api import sync_playwright

    report = small_report()
    report.add(importance_section)
    path = write_html(report, tmp_path / "report.html")
    n_figures = sum(section.figure is not None for section in report.sections)
    blocked: list[str] = []
    page_errors: list[str] = []

    def route(request_route):
        if request_route.request.url.startswith("file://"):
            request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(SYSTEM_CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            context.route("**/*", route)
            context.set_offline(True)
            page = context.new_page()
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(path.resolve().as_uri())
            # Plotly adds the class js-plotly-plot to a figure's div when it starts drawing it.
            page.wait_for_function(
                f"[...document.querySelectorAll('.js-plotly-plot')].length === {n_figures}"
                " && [...document.querySelectorAll('.js-plotly-plot')].every(div => div.querySelector('svg.main-svg .bars .point'))",
                timeout=30_000,
            )
            plots = page.locator(".js-plotly-plot")
            assert plots.count() == n_figures
            for index in range(n_figures):
                assert plots.nth(index).locator("svg.main-svg").count() >= 1
            assert page.locator("#figure-field-importance svg.main-svg .bars .point").count() == len(importance_section.tables["importance"])
            hostile_labels = page.evaluate("document.getElementById('figure-hostile').data[0].x")
            tick_texts = page.locator("#figure-hostile .xtick text").all_text_contents()
            pwned = page.evaluate("typeof window.__pwned")
            title = page.locator("#section-hostile h2").text_content()
            cells = page.locator("#section-hostile table.numbers td").all_text_contents()
            provenance_text = page.locator("#section-hostile > dl.provenance").text_content()
            caption = page.locator("#section-hostile .caption").text_content()
        finally:
            browser.close()

    assert blocked == []
    assert page_errors == []
    assert pwned == "undefined"
    assert hostile_labels == [SCRIPT_TAG, ATTRIBUTE_BREAKOUT, "plain"]
    assert any("window.__pwned=1" in text for text in tick_texts)
    assert any("window.__pwned=2" in text for text in tick_texts)
    assert title == f"2. Hostile {SCRIPT_TAG}"
    assert SCRIPT_TAG in cells
    assert ATTRIBUTE_BREAKOUT in cells
    assert SCRIPT_TAG in provenance_text
    assert ATTRIBUTE_BREAKOUT in provenance_text
    assert caption == f"Caption {ATTRIBUTE_BREAKOUT}"
    assert os.path.getsize(path) > len(plotly.offline.get_plotlyjs())


def test_streamlit_template_replaced_in_html():
    import json as json_module

    import plotly.io as pio
    import streamlit  # noqa: F401 (registers Streamlit's plotly template)

    figure = bar_figure(["a", "b"], [1.0, 2.0])
    figure.update_layout(template=pio.templates["streamlit"])
    html_text = to_html(Report("template", [ReportSection("Bars", figure, {})]))
    plotly_template = json_module.dumps(pio.templates["plotly"].layout.yaxis.automargin)
    assert plotly_template == "true"
    # Streamlit's template has placeholder colours such as #000011 that only the app's browser code replaces.
    assert "#000011" not in html_text
    assert '"automargin":true' in html_text.replace(" ", "")
