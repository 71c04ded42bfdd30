"""Sections of the Report page: order the basket's sections and export the report as HTML, PDF and tables."""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from workbench.app import basket
from workbench.report import Report, ReportError, chromium_path, numbers_zip_bytes, to_html, write_pdf

PDF_TIMEOUT_S = 120


def _move(key: str, offset: int) -> None:
    current = basket.report()
    current.move(key, offset)
    basket.store(current)


def _remove(key: str) -> None:
    current = basket.report()
    current.remove(key)
    basket.store(current)


def section_list(report: Report) -> None:
    """List the sections with buttons to move them up or down and to remove them."""
    for position, section in enumerate(report.sections):
        with st.container(border=True):
            title, up, down, remove = st.columns([8, 1, 1, 1], vertical_alignment="center")
            title.markdown(f"**{position + 1}. {section.title}**")
            record = section.provenance
            cohort = record.get("cohort")
            cohort_name = cohort.get("name", "unnamed") if isinstance(cohort, dict) else "all rows"
            parts = (record.get("bundle_name"), record.get("data_name"), f"cohort {cohort_name}", record.get("method"))
            details = " · ".join(str(part) for part in parts if part)
            count = len(section.tables)
            title.caption(f"{details} · {count} table{'' if count == 1 else 's'}")
            up.button("↑", key=f"report_up_{section.key}", on_click=_move, args=(section.key, -1), disabled=position == 0, help="Move up")
            down.button(
                "↓",
                key=f"report_down_{section.key}",
                on_click=_move,
                args=(section.key, 1),
                disabled=position == len(report.sections) - 1,
                help="Move down",
            )
            remove.button("✕", key=f"report_remove_{section.key}", on_click=_remove, args=(section.key,), help="Remove")


def _pdf_bytes(report: Report) -> bytes:
    with tempfile.TemporaryDirectory(prefix="workbench-report-") as folder:
        pdf_path = Path(folder) / "report.pdf"
        write_pdf(report, pdf_path, timeout_s=PDF_TIMEOUT_S)
        return pdf_path.read_bytes()


def export_section(report: Report) -> None:
    """Offer the report as a standalone HTML file, a PDF and a zip of its tables."""
    st.header("Export")
    html = to_html(report)
    left, middle, right = st.columns(3)
    left.download_button(
        "Download HTML",
        html.encode("utf-8"),
        file_name="report.html",
        mime="text/html",
        key="report_download_html",
        help="One file that works offline: plotly.js is inside it, and each figure has its provenance block.",
    )
    table_format = right.radio("Table format", ["parquet", "csv"], horizontal=True, key="report_table_format")
    right.download_button(
        "Download tables (zip)",
        numbers_zip_bytes(report, format=table_format),
        file_name="report-tables.zip",
        mime="application/zip",
        key="report_download_tables",
        help="The numbers behind every figure, one file per table, with provenance.json.",
    )
    if chromium_path() is None:
        middle.info(
            "PDF export needs Chromium, which is not installed on the machine that runs the app "
            "(`apt-get install chromium`, or set WORKBENCH_CHROMIUM to its path). The HTML report works without it."
        )
        return
    if middle.button("Make PDF", key="report_make_pdf"):
        try:
            st.session_state["report_pdf"] = _pdf_bytes(report)
        except ReportError as err:
            middle.error(f"The PDF could not be made: {err}")
    pdf = st.session_state.get("report_pdf")
    if pdf is not None:
        middle.download_button("Download PDF", pdf, file_name="report.pdf", mime="application/pdf", key="report_download_pdf")
