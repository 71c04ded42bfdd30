"""Report export: sections with a figure, its numbers and its provenance, written as HTML, PDF or tables.

A :class:`ReportSection` is one result: a title, a plotly figure, the tables
behind it, a caption and the provenance record from
:func:`workbench.provenance.provenance`. A :class:`Report` is an ordered list
of sections. Sections convert to plain JSON (:meth:`ReportSection.to_dict`) so
an app can keep them in its session state.

Exports:

- :func:`to_html` / :func:`write_html`: one standalone HTML file that works
  offline. plotly.js is embedded once, and every text from data or files is
  HTML-escaped.
- :func:`write_pdf`: the HTML printed by headless Chromium.
- :func:`write_tables` / :func:`write_numbers_zip` / :func:`numbers_zip_bytes`:
  the tables as Parquet or CSV files plus ``provenance.json``.

Every file is written to a temporary file in the target folder and then
renamed, and an existing file is only replaced with ``overwrite=True``. The
module imports neither Streamlit nor the app.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import plotly.offline

TableFormat = Literal["parquet", "csv"]
TABLE_FORMATS: tuple[str, ...] = ("parquet", "csv")

TABLE_PREVIEW_ROWS = 20
WIDE_TABLE_COLUMNS = 8
"""Tables with more columns print in a smaller font, so that they fit the page width."""
"""Rows of each table shown in the HTML report. The table files contain all rows."""

FIGURE_MAX_HEIGHT_PX = 900
"""Tallest figure in the HTML report, so a figure and its heading fit on one A4 or Letter page (about 1,000 px at 96 dpi)."""

FIGURE_DEFAULT_HEIGHT_PX = 450
"""Height of a figure whose layout sets none (plotly's own default)."""

PRINT_WINDOW_SIZE = (720, 1000)
"""Chromium window size (px) for PDF printing. Figures are laid out at this width minus the body padding, which is below the printable width of A4 (703 px) and Letter (725 px) with 12 mm margins."""

PROVENANCE_FILE = "provenance.json"
DEFAULT_REPORT_TITLE = "CTR Workbench report"
CHROMIUM_ENV = "WORKBENCH_CHROMIUM"
CHROMIUM_DEFAULT = "/usr/bin/chromium"
CHROMIUM_NAMES = ("chromium", "chromium-browser")

PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

_KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")
_TABLE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
_STDERR_TAIL_CHARS = 2_000


class ReportError(ValueError):
    """Raised when a report cannot be built or written."""


# ---------------------------------------------------------------- sections


def slugify(text: str, *, max_chars: int = 40) -> str:
    """Return ``text`` in lower case with runs of other characters than a-z and 0-9 replaced by ``-``.

    An empty result becomes ``"section"``.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:max_chars].strip("-")
    return slug or "section"


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not _KEY_PATTERN.match(key):
        msg = (
            f"invalid section key {key!r}: use 1 to 80 characters a-z, 0-9, '-' or '_', starting with a letter or digit "
            "(keys name files and HTML ids)"
        )
        raise ReportError(msg)


def _check_table_name(name: str, section: str) -> None:
    if not isinstance(name, str) or not _TABLE_NAME_PATTERN.match(name):
        msg = (
            f"invalid table name {name!r} in section {section!r}: use 1 to 80 characters A-Z, a-z, 0-9, '-' or '_', "
            "starting with a letter or digit (table names become file names)"
        )
        raise ReportError(msg)


def _check_provenance(record: Any, section: str) -> None:
    if not isinstance(record, dict):
        msg = f"provenance of section {section!r} must be a dict; got {type(record).__name__}"
        raise ReportError(msg)
    try:
        json.dumps(record, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as err:
        msg = (
            f"provenance of section {section!r} is not plain JSON ({err}); "
            "build it with workbench.provenance.provenance or use only str, int, float, bool, None, list and dict"
        )
        raise ReportError(msg) from err


def _json_cell(value: Any) -> Any:
    """Convert one table cell to a JSON value: NaN and NaT become None, timestamps ISO strings."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)):
        return value
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    return str(value)


def _check_table_layout(frame: pd.DataFrame, where: str) -> None:
    """Reject what the JSON form and the Parquet files cannot keep: a MultiIndex and column names other than strings."""
    if isinstance(frame.columns, pd.MultiIndex) or isinstance(frame.index, pd.MultiIndex):
        msg = f"table {where} has a MultiIndex; call reset_index() or flatten the columns first"
        raise ReportError(msg)
    for column in frame.columns:
        if not isinstance(column, str):
            msg = f"table {where} has a column name {column!r} of type {type(column).__name__}; rename the columns to strings"
            raise ReportError(msg)


def _table_to_dict(frame: pd.DataFrame, where: str) -> dict[str, Any]:
    """Convert a frame to plain JSON: column names, dtypes, index and values column by column.

    Floats keep every bit, because ``json`` writes the shortest repr that reads back exactly.
    """
    _check_table_layout(frame, where)
    if isinstance(frame.index, pd.RangeIndex):
        index: dict[str, Any] = {"range": [frame.index.start, frame.index.stop, frame.index.step]}
    else:
        index = {"values": [_json_cell(item) for item in frame.index], "dtype": str(frame.index.dtype)}
    index["name"] = _json_cell(frame.index.name)
    return {
        "columns": list(frame.columns),
        "dtypes": [str(dtype) for dtype in frame.dtypes],
        "data": [[_json_cell(item) for item in frame[column].tolist()] for column in frame.columns],
        "index": index,
    }


def _restore_column(values: list[Any], dtype: str) -> pd.Series:
    if not isinstance(values, list) or not isinstance(dtype, str):
        msg = f"a column needs a list of values and a dtype name; got {type(values).__name__} and {dtype!r}"
        raise TypeError(msg)
    series = pd.Series(values, dtype=object)
    if dtype == "object":
        return series
    if dtype.startswith("datetime64"):
        return pd.to_datetime(series).astype(dtype)
    return series.astype(dtype)


def _table_from_dict(spec: Any, where: str) -> pd.DataFrame:
    try:
        columns = spec["columns"]
        dtypes = spec["dtypes"]
        data = spec["data"]
        index_spec = spec["index"]
        frame = pd.DataFrame(
            {column: _restore_column(values, dtype) for column, dtype, values in zip(columns, dtypes, data, strict=True)},
            columns=columns,
        )
        if "range" in index_spec:
            start, stop, step = index_spec["range"]
            frame.index = pd.RangeIndex(start, stop, step)
        else:
            frame.index = pd.Index(_restore_column(index_spec["values"], index_spec["dtype"]))
        frame.index.name = index_spec.get("name")
    except (KeyError, TypeError, ValueError, OverflowError) as err:
        # OverflowError: pandas and numpy raise it for integers beyond int64, in a column or a RangeIndex.
        msg = f"table {where} in the stored section is malformed ({type(err).__name__}: {err}); build the section again"
        raise ReportError(msg) from err
    return frame


def _decode_typed_arrays(value: Any) -> Any:
    """Replace plotly.js typed-array specs (``{"dtype": "f8", "bdata": base64}``) by numpy arrays.

    ``Figure.to_json`` writes numpy arrays in this form and ``plotly.io.from_json``
    keeps them as dicts, so without this step a restored figure's ``x`` or ``y``
    would be a dict instead of numbers.
    """
    if isinstance(value, dict):
        if set(value) <= {"dtype", "bdata", "shape"} and {"dtype", "bdata"} <= set(value):
            # plotly.js codes are little-endian; "u1c" is its clamped uint8.
            dtype = np.dtype("<" + str(value["dtype"]).removesuffix("c"))
            array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=dtype)
            shape = value.get("shape")
            if shape:
                array = array.reshape(tuple(int(size) for size in str(shape).split(",")))
            return array.copy()
        return {key: _decode_typed_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_typed_arrays(item) for item in value]
    return value


def _figure_from_json(text: str, key: str) -> go.Figure:
    """Rebuild a figure from ``Figure.to_json`` text with numpy arrays in place of typed-array specs."""
    try:
        spec = json.loads(text)
        return go.Figure(_decode_typed_arrays(spec))
    except (TypeError, ValueError, RecursionError) as err:
        # RecursionError: JSON nested deeper than Python's recursion limit.
        msg = f"figure of stored section {key!r} is not valid plotly JSON: {err}"
        raise ReportError(msg) from err


@dataclass
class ReportSection:
    """One result in a report: a figure, the tables behind it, a caption and its provenance.

    Attributes
    ----------
    title : str
        Heading of the section.
    figure : plotly.graph_objects.Figure or None
        The chart; None for a section of tables only. The section keeps a
        copy, so later changes to the figure passed in do not reach it.
    provenance : dict
        JSON-safe record of what produced the result, usually from
        :func:`workbench.provenance.provenance`.
    tables : dict of str to pandas.DataFrame
        The numbers behind the figure, by name. Names become file names, so
        they use letters, digits, ``-`` and ``_`` only. Column names are strings.
    text : str
        A short caption in plain text.
    key : str
        Stable id of the section in its report, used in file names and HTML
        ids. Empty means the slug of the title; :meth:`Report.add` appends a
        counter when the key is taken.
    """

    title: str
    figure: go.Figure | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    text: str = ""
    key: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            msg = f"a report section needs a non-empty title; got {self.title!r}"
            raise ReportError(msg)
        if not self.key:
            self.key = slugify(self.title)
        _check_key(self.key)
        if self.figure is not None and not isinstance(self.figure, go.Figure):
            msg = f"figure of section {self.key!r} must be a plotly.graph_objects.Figure or None; got {type(self.figure).__name__}"
            raise ReportError(msg)
        if self.figure is not None:
            # A copy rebuilt from JSON, as from_dict rebuilds it: later changes to the caller's figure do not
            # reach the report, and figure.to_json() is the same string before and after a to_dict round trip.
            self.figure = _figure_from_json(self.figure.to_json(), self.key)
        if not isinstance(self.text, str):
            msg = f"text of section {self.key!r} must be a string; got {type(self.text).__name__}"
            raise ReportError(msg)
        _check_provenance(self.provenance, self.key)
        if not isinstance(self.tables, dict):
            msg = f"tables of section {self.key!r} must be a dict of name to DataFrame; got {type(self.tables).__name__}"
            raise ReportError(msg)
        for name, frame in self.tables.items():
            _check_table_name(name, self.key)
            if not isinstance(frame, pd.DataFrame):
                msg = f"table {name!r} of section {self.key!r} must be a pandas DataFrame; got {type(frame).__name__}"
                raise ReportError(msg)
            _check_table_layout(frame, f"{self.key}/{name}")

    def to_dict(self) -> dict[str, Any]:
        """Return the section as plain JSON types: the figure as plotly JSON text, tables column by column."""
        return {
            "key": self.key,
            "title": self.title,
            "text": self.text,
            "figure": None if self.figure is None else self.figure.to_json(),
            "provenance": self.provenance,
            "tables": {name: _table_to_dict(frame, f"{self.key}/{name}") for name, frame in self.tables.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportSection:
        """Rebuild a section from :meth:`to_dict` output.

        Raises
        ------
        ReportError
            When a key is missing or the figure or a table cannot be read back.
        """
        if not isinstance(data, dict):
            msg = f"a stored report section must be a dict; got {type(data).__name__}"
            raise ReportError(msg)
        missing = [name for name in ("key", "title", "figure", "provenance", "tables") if name not in data]
        if missing:
            msg = f"stored report section {data.get('key')!r} lacks {', '.join(missing)}; build the section again"
            raise ReportError(msg)
        figure = None if data["figure"] is None else _figure_from_json(data["figure"], str(data["key"]))
        tables_spec = data["tables"]
        if not isinstance(tables_spec, dict):
            msg = f"tables of stored section {data['key']!r} must be a dict; got {type(tables_spec).__name__}"
            raise ReportError(msg)
        tables = {name: _table_from_dict(spec, f"{data['key']}/{name}") for name, spec in tables_spec.items()}
        return cls(
            title=data["title"],
            figure=figure,
            provenance=data["provenance"],
            tables=tables,
            text=data.get("text", ""),
            key=data["key"],
        )


@dataclass
class Report:
    """An ordered list of sections with a title."""

    title: str = DEFAULT_REPORT_TITLE
    sections: list[ReportSection] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            msg = f"a report needs a non-empty title; got {self.title!r}"
            raise ReportError(msg)
        keys = [section.key for section in self.sections]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            msg = f"section keys must be unique in a report; repeated: {', '.join(duplicates)}"
            raise ReportError(msg)

    @property
    def keys(self) -> list[str]:
        """Section keys in report order."""
        return [section.key for section in self.sections]

    def _position(self, key: str) -> int:
        for position, section in enumerate(self.sections):
            if section.key == key:
                return position
        msg = f"no section with key {key!r} in the report; its keys are {self.keys}"
        raise ReportError(msg)

    def get(self, key: str) -> ReportSection:
        """Return the section with ``key``."""
        return self.sections[self._position(key)]

    def add(self, section: ReportSection) -> ReportSection:
        """Append ``section`` and return it.

        When its key is already taken, the key gets the first free suffix
        ``-2``, ``-3``, … (the section object is changed in place).
        """
        if not isinstance(section, ReportSection):
            msg = f"Report.add takes a ReportSection; got {type(section).__name__}"
            raise ReportError(msg)
        used_keys = set(self.keys)
        if section.key in used_keys:
            base = section.key[:70]
            counter = 2
            while f"{base}-{counter}" in used_keys:
                counter += 1
            section.key = f"{base}-{counter}"
        self.sections.append(section)
        return section

    def move(self, key: str, offset: int) -> int:
        """Move a section by ``offset`` positions (negative: towards the top) and return its new position.

        The position is clipped to the first and last place, so moving the top
        section up leaves it where it is.
        """
        if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
            msg = f"offset must be an integer (negative moves up); got {offset!r}"
            raise ReportError(msg)
        position = self._position(key)
        section = self.sections.pop(position)
        target = min(max(position + int(offset), 0), len(self.sections))
        self.sections.insert(target, section)
        return target

    def remove(self, key: str) -> ReportSection:
        """Remove the section with ``key`` and return it."""
        return self.sections.pop(self._position(key))

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON types."""
        return {"title": self.title, "sections": [section.to_dict() for section in self.sections]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict` output."""
        if not isinstance(data, dict) or not isinstance(data.get("sections"), list):
            msg = "a stored report must be a dict with 'title' and a list of 'sections'; build the report again"
            raise ReportError(msg)
        return cls(title=data.get("title", DEFAULT_REPORT_TITLE), sections=[ReportSection.from_dict(item) for item in data["sections"]])


# ---------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1000px; margin: 2rem auto; padding: 0 1rem; line-height: 1.4; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.3rem; border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; }
h3 { font-size: 1rem; margin: 1rem 0 0.3rem; }
h4 { font-size: 0.9rem; margin: 0.8rem 0 0.2rem; font-family: ui-monospace, monospace; }
.meta, .note { color: #666; font-size: 0.85rem; }
.caption { white-space: pre-line; }
.figure { width: 100%; margin: 0.5rem 0; }
nav.toc ol { padding-left: 1.5rem; }
dl.provenance { display: grid; grid-template-columns: max-content 1fr; gap: 1px 1rem; font-size: 0.8rem; margin: 0; }
dl.provenance dt { font-weight: 600; }
dl.provenance dd { margin: 0; overflow-wrap: anywhere; font-family: ui-monospace, monospace; }
dl.provenance dl.provenance { grid-template-columns: max-content 1fr; }
.table-wrap { overflow-x: auto; }
table.numbers { border-collapse: collapse; font-size: 0.8rem; }
table.numbers th, table.numbers td { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: right;
                                     white-space: nowrap; max-width: 24rem; overflow: hidden; text-overflow: ellipsis; }
table.numbers th { background: #f4f4f4; }
@page { margin: 12mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10pt; }
  section.report-section { page-break-before: always; break-before: page; }
  section.report-section:first-of-type { page-break-before: auto; break-before: auto; }
  .figure, h2, h3, h4 { page-break-inside: avoid; break-inside: avoid; }
  h2, h3, h4 { page-break-after: avoid; break-after: avoid; }
  .figure { max-width: 100%; overflow: hidden; }
  .modebar-container { display: none !important; }
  tr { page-break-inside: avoid; break-inside: avoid; }
  .table-wrap { overflow: visible; }
  /* Wide tables shrink and wrap on paper instead of running off the page. */
  table.numbers { table-layout: fixed; width: 100%; font-size: 6.5pt; }
  table.numbers.wide { font-size: 5pt; }
  table.numbers th, table.numbers td { white-space: normal; padding: 1px 2px; max-width: none; }
  /* Headers may break anywhere, numbers only where they can (never inside a number). */
  table.numbers th { overflow-wrap: anywhere; }
  table.numbers td { overflow-wrap: normal; }
}
"""

# The page may run only inline scripts and may fetch nothing from any host.
_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:; connect-src 'none'"
)


def _script_safe(text: str) -> str:
    """Escape ``<``, ``>``, ``&`` and the JavaScript line separators in JSON text.

    The JSON then cannot close its ``<script>`` element or open a comment,
    whatever strings the figure holds, and it still parses to the same values.
    """
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _plotly_js() -> str:
    """Return the plotly.js bundle of the installed plotly package, safe to place inside ``<script>``."""
    script = plotly.offline.get_plotlyjs()
    # The bundle of plotly 7.1 contains no "</script". The substitution keeps another version from ending the element early.
    return re.sub(r"</(script)", r"<\\/\1", script, flags=re.IGNORECASE)


def _report_figure(figure: go.Figure) -> tuple[go.Figure, int]:
    """Return a copy laid out for the report: page width, at most :data:`FIGURE_MAX_HEIGHT_PX` high."""
    copy = go.Figure(figure)
    # Inside a Streamlit app, figures get Streamlit's template, whose placeholder colours only the app's
    # browser code fills in and which turns off the axis margins. A report is drawn by plain plotly.js,
    # so such figures (and figures without a template) get plotly's own template.
    template = copy.layout.template.to_plotly_json()
    streamlit_template = pio.templates["streamlit"].to_plotly_json() if "streamlit" in pio.templates else None
    if not template or template == streamlit_template:
        copy.update_layout(template=pio.templates["plotly"])
    height = copy.layout.height or FIGURE_DEFAULT_HEIGHT_PX
    height = int(min(height, FIGURE_MAX_HEIGHT_PX))
    copy.layout.width = None
    copy.layout.height = height
    copy.layout.autosize = True
    return copy, height


def _figure_html(figure: go.Figure, div_id: str) -> str:
    """Return a ``<div>`` and the inline script that draws ``figure`` into it with the page's plotly.js."""
    copy, height = _report_figure(figure)
    spec = json.loads(copy.to_json())
    spec["config"] = PLOTLY_CONFIG
    payload = _script_safe(json.dumps(spec, separators=(",", ":")))
    return (
        f'<div id="{div_id}" class="plotly-graph-div" style="width:100%;height:{height}px;"></div>\n'
        f"<script>Plotly.newPlot({json.dumps(div_id)}, {payload});</script>"
    )


def _format_cell(value: Any) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, (float, np.floating)):
        return "NaN" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _table_html(frame: pd.DataFrame, max_rows: int) -> str:
    preview = frame.head(max_rows)
    with_index = not isinstance(frame.index, pd.RangeIndex)
    header = "".join(f"<th>{html.escape(str(column))}</th>" for column in preview.columns)
    if with_index:
        header = f"<th>{html.escape(str(frame.index.name or ''))}</th>" + header
    wide = " wide" if preview.shape[1] + int(with_index) > WIDE_TABLE_COLUMNS else ""
    lines = [f'<div class="table-wrap"><table class="numbers{wide}"><thead><tr>{header}</tr></thead><tbody>']
    for label, row in zip(preview.index, preview.itertuples(index=False, name=None), strict=True):
        cells = "".join(f"<td>{html.escape(_format_cell(value))}</td>" for value in row)
        if with_index:
            cells = f"<th>{html.escape(_format_cell(label))}</th>" + cells
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</tbody></table></div>")
    if len(frame) > max_rows:
        lines.append(f'<p class="note">First {max_rows:,} of {len(frame):,} rows. The table files contain all rows.</p>')
    return "\n".join(lines)


def _provenance_value_html(key: str, value: Any) -> str:
    if isinstance(value, dict):
        if not value:
            return "(none)"
        return _provenance_html(value)
    if value is None:
        return "all rows" if key == "cohort" else "(none)"
    if isinstance(value, list):
        if value and all(isinstance(item, dict) for item in value):
            return "".join(_provenance_html(item) for item in value)
        return html.escape(", ".join(json.dumps(item, ensure_ascii=False) if not isinstance(item, str) else item for item in value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return html.escape(str(value))


def _provenance_html(record: dict[str, Any]) -> str:
    items = "".join(
        f"<dt>{html.escape(str(key))}</dt><dd>{_provenance_value_html(str(key), value)}</dd>" for key, value in record.items()
    )
    return f'<dl class="provenance">{items}</dl>'


def _section_html(section: ReportSection, number: int, max_rows: int) -> str:
    parts = [f'<section class="report-section" id="section-{section.key}">', f"<h2>{number}. {html.escape(section.title)}</h2>"]
    if section.text:
        parts.append(f'<p class="caption">{html.escape(section.text)}</p>')
    if section.figure is not None:
        parts.append(f'<div class="figure">{_figure_html(section.figure, f"figure-{section.key}")}</div>')
    parts.append("<h3>Provenance</h3>")
    parts.append(_provenance_html(section.provenance) if section.provenance else '<p class="note">No provenance recorded.</p>')
    if section.tables:
        parts.append("<h3>Tables</h3>")
        for name, frame in section.tables.items():
            parts.append(f"<h4>{html.escape(name)}</h4>")
            stem = html.escape(f"{section.key}__{name}")
            shown = min(len(frame), max_rows)
            parts.append(
                f'<p class="note">{len(frame):,} rows × {frame.shape[1]:,} columns, the first {shown:,} shown. '
                f"The exported tables (workbench report --tables, or Download tables on the Report page) "
                f"have all rows in {stem}.parquet or .csv.</p>"
            )
            parts.append(_table_html(frame, max_rows))
    parts.append("</section>")
    return "\n".join(parts)


def to_html(report: Report, *, max_rows: int = TABLE_PREVIEW_ROWS) -> str:
    """Render ``report`` as one standalone HTML document that works offline.

    plotly.js is embedded once in an inline ``<script>``, each figure is drawn
    by an inline script, and a Content-Security-Policy keeps the page from
    fetching anything. Titles, captions, provenance values and table cells are
    HTML-escaped, and figure JSON is escaped so that no string in it can end its
    ``<script>`` element.

    Parameters
    ----------
    report : Report
        The sections to render, in order.
    max_rows : int, default=20
        Rows of each table shown; the table files hold all rows.

    Returns
    -------
    str
        The HTML document.
    """
    if not isinstance(report, Report):
        msg = f"to_html takes a Report; got {type(report).__name__}"
        raise ReportError(msg)
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
        msg = f"max_rows must be a non-negative integer; got {max_rows!r}"
        raise ReportError(msg)
    created = datetime.now(UTC).isoformat(timespec="seconds")
    title = html.escape(report.title)
    toc_items = "".join(
        f'<li><a href="#section-{section.key}">{html.escape(section.title)}</a></li>' for section in report.sections
    )
    sections = "\n".join(_section_html(section, number, max_rows) for number, section in enumerate(report.sections, start=1))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n"
        f"<script>{_plotly_js()}</script>\n"
        "</head>\n<body>\n"
        f"<header><h1>{title}</h1>"
        f'<p class="meta">Written {created} (UTC) · {len(report.sections)} sections · CTR Workbench</p></header>\n'
        f'<nav class="toc"><h2>Contents</h2><ol>{toc_items}</ol></nav>\n'
        f"{sections}\n</body>\n</html>\n"
    )


# ---------------------------------------------------------------- files


def _check_writable(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        msg = f"{str(path)!r} is a folder; give a file path"
        raise ReportError(msg)
    if path.exists() and not overwrite:
        msg = f"{str(path)!r} already exists; choose another file name or pass overwrite=True"
        raise ReportError(msg)


def _write_atomic(path: Path, data: bytes, *, overwrite: bool) -> Path:
    """Write ``data`` to a temporary file next to ``path``, then rename it to ``path``.

    NOTE: a file that another process creates at ``path`` between the existence check and the rename is replaced.
    """
    path = Path(path)
    _check_writable(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        _apply_umask(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def _apply_umask(path: Path) -> None:
    """Give a file from ``mkstemp`` (owner-only) the permissions of a normally created file."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def write_html(report: Report, path: str | Path, *, overwrite: bool = False, max_rows: int = TABLE_PREVIEW_ROWS) -> Path:
    """Write :func:`to_html` of ``report`` to ``path`` and return the path.

    Raises
    ------
    ReportError
        When ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    _check_writable(path, overwrite)
    return _write_atomic(path, to_html(report, max_rows=max_rows).encode("utf-8"), overwrite=overwrite)


def _check_format(format: str) -> str:
    if format not in TABLE_FORMATS:
        msg = f"table format must be one of {', '.join(TABLE_FORMATS)}; got {format!r}"
        raise ReportError(msg)
    return format


def table_file_name(section_key: str, table_name: str, format: str) -> str:
    """Return the file name of one table: ``<section key>__<table name>.<format>``."""
    return f"{section_key}__{table_name}.{format}"


def _table_bytes(frame: pd.DataFrame, format: str, where: str) -> bytes:
    if format == "csv":
        keep_index = not isinstance(frame.index, pd.RangeIndex)
        return frame.to_csv(index=keep_index).encode("utf-8")
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer)
    except (TypeError, ValueError, ImportError) as err:
        msg = f"table {where} cannot be written as Parquet ({err}); write it as CSV instead (format='csv')"
        raise ReportError(msg) from err
    return buffer.getvalue()


def _provenance_bytes(report: Report, format: str) -> bytes:
    records = [
        {
            "key": section.key,
            "title": section.title,
            "tables": [table_file_name(section.key, name, format) for name in section.tables],
            "provenance": section.provenance,
        }
        for section in report.sections
    ]
    return (json.dumps(records, indent=1, allow_nan=False) + "\n").encode("utf-8")


def _numbers_files(report: Report, format: str) -> dict[str, bytes]:
    """Return file name → bytes of every table and of ``provenance.json``."""
    if not isinstance(report, Report):
        msg = f"expected a Report; got {type(report).__name__}"
        raise ReportError(msg)
    _check_format(format)
    files = {}
    for section in report.sections:
        for name, frame in section.tables.items():
            files[table_file_name(section.key, name, format)] = _table_bytes(frame, format, f"{section.key}/{name}")
    files[PROVENANCE_FILE] = _provenance_bytes(report, format)
    return files


def write_tables(report: Report, folder: str | Path, *, format: TableFormat = "parquet", overwrite: bool = False) -> list[Path]:
    """Write every section's tables and ``provenance.json`` into ``folder``.

    Tables are named ``<section key>__<table name>.parquet`` (or ``.csv``).
    ``provenance.json`` is a list with one entry per section: key, title, table
    file names and the provenance record. Parquet files keep the index; CSV
    files have an index column only when the index is not the default
    0, 1, 2, ….

    Returns
    -------
    list of Path
        The files written, ``provenance.json`` last.

    Raises
    ------
    ReportError
        When one of the files exists and ``overwrite`` is false (before any is written).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        msg = f"{str(folder)!r} is a file; give a folder for the tables"
        raise ReportError(msg)
    files = _numbers_files(report, format)
    for name in files:
        _check_writable(folder / name, overwrite)
    return [_write_atomic(folder / name, data, overwrite=overwrite) for name, data in files.items()]


def numbers_zip_bytes(report: Report, *, format: TableFormat = "parquet") -> bytes:
    """Return a zip archive of the files :func:`write_tables` writes, as bytes (for a download button)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in _numbers_files(report, format).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write_numbers_zip(report: Report, path: str | Path, *, format: TableFormat = "parquet", overwrite: bool = False) -> Path:
    """Write :func:`numbers_zip_bytes` to ``path`` and return the path."""
    path = Path(path)
    _check_writable(path, overwrite)
    return _write_atomic(path, numbers_zip_bytes(report, format=format), overwrite=overwrite)


# ---------------------------------------------------------------- PDF


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def chromium_path() -> str | None:
    """Return the Chromium executable :func:`write_pdf` uses, or None when there is none.

    The order is: the ``WORKBENCH_CHROMIUM`` environment variable (when it names
    an executable file), ``/usr/bin/chromium``, then ``chromium`` or
    ``chromium-browser`` on ``PATH``.
    """
    configured = os.environ.get(CHROMIUM_ENV)
    if configured and _executable(configured):
        return configured
    if _executable(CHROMIUM_DEFAULT):
        return CHROMIUM_DEFAULT
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


_INSTALL_HINT = (
    f"install it (Debian/Ubuntu: apt-get install chromium) or set {CHROMIUM_ENV} to a Chromium executable; "
    "the HTML report (write_html) works without it and prints to PDF from any browser"
)


def _resolve_chromium(chromium: str | None) -> str:
    if chromium is not None:
        if not _executable(chromium):
            msg = f"Chromium executable {chromium!r} not found or not executable; {_INSTALL_HINT}"
            raise ReportError(msg)
        return chromium
    configured = os.environ.get(CHROMIUM_ENV)
    if configured and not _executable(configured):
        msg = f"{CHROMIUM_ENV}={configured!r} is not an executable file; {_INSTALL_HINT}"
        raise ReportError(msg)
    found = chromium_path()
    if found is None:
        msg = f"Chromium is not installed, so the report cannot be printed to PDF; {_INSTALL_HINT}"
        raise ReportError(msg)
    return found


def _run_chromium(command: list[str], timeout_s: float) -> None:
    """Run Chromium in its own process group, and kill the whole group on timeout."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        tail = stderr.decode("utf-8", "replace")[-_STDERR_TAIL_CHARS:]
        msg = f"Chromium timed out after {timeout_s} s while printing the PDF; stderr ends with:\n{tail}"
        raise ReportError(msg) from None
    if process.returncode != 0:
        tail = stderr.decode("utf-8", "replace")[-_STDERR_TAIL_CHARS:]
        msg = f"Chromium failed with exit code {process.returncode} while printing the PDF; stderr ends with:\n{tail}"
        raise ReportError(msg)


def write_pdf(
    report_or_html_path: Report | str | Path,
    pdf_path: str | Path,
    *,
    chromium: str | None = None,
    timeout_s: float = 120,
    overwrite: bool = False,
) -> Path:
    """Print a report (or an HTML report file) to PDF with headless Chromium.

    Chromium opens the HTML from a ``file://`` URL with background networking
    off, runs the figure scripts, and prints with
    ``--run-all-compositor-stages-before-draw`` and a virtual time budget so
    the figures are drawn before the page is printed.

    Parameters
    ----------
    report_or_html_path : Report or path
        A report (written to a temporary HTML file first) or an HTML file from :func:`write_html`.
    pdf_path : path
        The PDF to write.
    chromium : str or None, default=None
        Chromium executable; None means :func:`chromium_path`.
    timeout_s : float, default=120
        Seconds Chromium may take before it is killed.
    overwrite : bool, default=False
        Replace an existing ``pdf_path``.

    Returns
    -------
    Path
        ``pdf_path``.

    Raises
    ------
    ReportError
        When Chromium is missing (the message gives the install command), times
        out, exits with an error or writes no PDF, or when ``pdf_path`` exists
        and ``overwrite`` is false.
    """
    pdf_path = Path(pdf_path)
    _check_writable(pdf_path, overwrite)
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        msg = f"timeout_s must be a positive number of seconds; got {timeout_s!r}"
        raise ReportError(msg)
    executable = _resolve_chromium(chromium)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="workbench-pdf-") as scratch:
        if isinstance(report_or_html_path, Report):
            html_path = Path(scratch) / "report.html"
            html_path.write_text(to_html(report_or_html_path), encoding="utf-8")
        else:
            html_path = Path(report_or_html_path)
            if not html_path.is_file():
                msg = f"HTML report {str(html_path)!r} not found; write it with write_html first or pass the Report"
                raise ReportError(msg)
        handle, temporary = tempfile.mkstemp(prefix=f".{pdf_path.name}.", suffix=".tmp.pdf", dir=pdf_path.parent)
        os.close(handle)
        width, height = PRINT_WINDOW_SIZE
        command = [
            executable,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            f"--user-data-dir={Path(scratch) / 'profile'}",
            f"--window-size={width},{height}",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=10000",
            f"--print-to-pdf={temporary}",
            html_path.resolve().as_uri(),
        ]
        try:
            _run_chromium(command, timeout_s)
            with open(temporary, "rb") as stream:
                head = stream.read(5)
            if head != b"%PDF-":
                msg = f"Chromium exited without writing a PDF to {temporary!r}; run it by hand to see why: {' '.join(command)}"
                raise ReportError(msg)
            _check_writable(pdf_path, overwrite)
            _apply_umask(Path(temporary))
            os.replace(temporary, pdf_path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return pdf_path
