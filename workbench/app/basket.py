"""The report basket: every figure in the app can be added to this session's report.

The basket is a list of ``workbench.report.ReportSection`` dictionaries in
``st.session_state``, so it belongs to one browser session and survives
page changes. The Report page orders and exports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from workbench.app import state
from workbench.provenance import provenance
from workbench.report import Report, ReportSection

BASKET_KEY = "report_basket"
TITLE_KEY = "report_title"
DEFAULT_TITLE = "CTR Workbench report"


def _figure_title(figure: go.Figure) -> str:
    title = figure.layout.title.text if figure.layout.title is not None else None
    # Figure titles may carry a subtitle after <br> and HTML tags such as <b>.
    text = str(title or "Figure").split("<br>")[0]
    for tag in ("<b>", "</b>", "<i>", "</i>", "<sup>", "</sup>"):
        text = text.replace(tag, "")
    return text.strip() or "Figure"


def report() -> Report:
    """Return this session's report: its title and the sections added so far, in their order."""
    sections = [ReportSection.from_dict(item) for item in st.session_state.get(BASKET_KEY, [])]
    return Report(title=st.session_state.get(TITLE_KEY, DEFAULT_TITLE), sections=sections)


def store(updated: Report) -> None:
    """Keep ``updated`` as this session's report."""
    st.session_state[BASKET_KEY] = [section.to_dict() for section in updated.sections]
    st.session_state[TITLE_KEY] = updated.title


def add_section(section: ReportSection) -> bool:
    """Append ``section`` to the basket; return False when an equal figure is already in it."""
    current = report()
    new_figure = section.figure.to_json() if section.figure is not None else None
    for existing in current.sections:
        if existing.figure is None:
            same = section.figure is None and existing.title == section.title
        else:
            same = existing.figure.to_json() == new_figure
        if same and existing.provenance.get("cohort") == section.provenance.get("cohort"):
            return False
    current.add(section)
    store(current)
    return True


def section_for(
    figure: go.Figure | None,
    data: state.LoadedData,
    *,
    title: str | None = None,
    method: str | None = None,
    baseline: str | None = None,
    output_space: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
    text: str = "",
) -> ReportSection:
    """Build a report section of ``figure`` with the provenance of the bundle, data and cohort of ``data``."""
    cohort = state.get_selection().cohort
    record = provenance(
        data.bundle,
        data.dataset,
        cohort=None if cohort.is_everything else cohort.to_dict(),
        method=method,
        baseline=baseline,
        output_space=output_space,
        parameters=dict(parameters or {}),
        rows=len(data.dataset),
    )
    name = title or (_figure_title(figure) if figure is not None else "Table")
    return ReportSection(
        title=name,
        figure=figure,
        provenance=record,
        tables=dict(tables or {}),
        text=text,
    )


def chart(
    figure: go.Figure,
    *,
    key: str,
    data: state.LoadedData,
    container: Any = None,
    chart_options: Mapping[str, Any] | None = None,
    **details: Any,
) -> Any:
    """Show ``figure`` with an "Add to report" button below it, and return what ``st.plotly_chart`` returns.

    ``chart_options`` go to ``st.plotly_chart`` (for example ``on_select``).
    ``details`` are the keyword arguments of :func:`section_for` (method,
    baseline, output space, parameters, tables, text) that the report's
    provenance block shows.
    """
    target = container if container is not None else st
    event = target.plotly_chart(figure, key=key, **dict(chart_options or {}))
    if target.button("Add to report", key=f"{key}_add_to_report", icon=":material/note_add:", type="tertiary"):
        _announce(add_section(section_for(figure, data, **details)), _figure_title(figure))
    return event


def _announce(added: bool, title: str) -> None:
    if not added:
        st.toast("This figure is already in the report.")
        return
    count = len(st.session_state[BASKET_KEY])
    st.toast(f"Added “{title}” to the report ({count} section{'' if count == 1 else 's'}).")


def section_chart(section: ReportSection, *, key: str, container: Any = None) -> None:
    """Show a ready report section's figure with an "Add to report" button that adds that very section.

    Pages that draw sections from ``workbench.report_builder`` use this, so the
    report contains exactly the figure, tables and provenance shown.
    """
    target = container if container is not None else st
    if section.figure is not None:
        target.plotly_chart(section.figure, key=key)
    if section.text:
        target.caption(section.text)
    if target.button("Add to report", key=f"{key}_add_to_report", icon=":material/note_add:", type="tertiary"):
        _announce(add_section(ReportSection.from_dict(section.to_dict())), section.title)
