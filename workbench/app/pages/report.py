"""Report page: the figures added with "Add to report", in order, exported as HTML, PDF and tables."""

import streamlit as st

from workbench.app import basket, report_sections

st.title("Report")
st.caption(
    "The report lives in this browser tab's session: reloading the page or opening a link starts a new, "
    "empty one. Export it below to keep it."
)
report = basket.report()
title = st.text_input("Report title", value=report.title, key="report_title_input")
if title.strip() and title.strip() != report.title:
    report.title = title.strip()
    basket.store(report)
if not report.sections:
    st.info(
        "The report is empty. Every figure in the app has an **Add to report** button below it; "
        "the figures you add appear here in order."
    )
    st.stop()
report_sections.section_list(report)
report_sections.export_section(report)
