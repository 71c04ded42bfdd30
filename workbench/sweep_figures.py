"""Plotly figure of a field sweep: ICE lines, the partial-dependence curve and the counts behind each value.

:func:`ice_figure` takes a :class:`~workbench.sweeps.FieldSweep`. Outputs are
drawn in the sweep's output space (``"probability"``: predicted CTR;
``"logit"``: log-odds of a click). Bars against the right y axis show how
many cohort rows have each value, so a point that rests on few rows is
visible as such.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import plotly.graph_objects as go

from workbench.figures import MAX_LABEL_CHARS, NEGATIVE_COLOR, _title, display_value
from workbench.sweeps import FieldSweep

IceSort = Literal["partial_dependence", "frequency"]
ICE_SORTS: dict[str, str] = {
    "partial_dependence": "highest partial dependence first",
    "frequency": "most frequent in training first",
}
"""Orders of categorical values on the x axis, with their descriptions."""

ICE_COLOR = "#9a9a9a"
COUNT_COLOR = "#c9c9c9"
DEFAULT_MAX_LINES = 100


def _units_title(output_space: str) -> str:
    return "predicted CTR" if output_space == "probability" else "logit (log-odds of a click)"


def _value_order(sweep: FieldSweep, sort: str) -> np.ndarray:
    """Return the positions of the swept values in drawing order."""
    if sweep.kind == "numeric":
        assert sweep.numeric_values is not None
        return np.argsort(sweep.numeric_values, kind="stable")
    if sort == "partial_dependence":
        return np.argsort(-sweep.partial_dependence, kind="stable")
    assert sweep.training_counts is not None
    return np.argsort(-sweep.training_counts, kind="stable")


def _category_labels(values: list[str]) -> list[str]:
    """Shorten long values for the axis, unless two values would then share a label."""
    short = [display_value(value, MAX_LABEL_CHARS) for value in values]
    if len(set(short)) < len(short):
        return [display_value(value) for value in values]
    return short


def _line_rows(n_rows: int, max_lines: int, seed: int) -> np.ndarray:
    """Positions of the cohort rows whose ICE lines are drawn: all, or a seeded random subset in row order."""
    if n_rows <= max_lines:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, max_lines, replace=False))


def ice_figure(
    sweep: FieldSweep,
    *,
    max_lines: int = DEFAULT_MAX_LINES,
    sort: IceSort = "partial_dependence",
    seed: int = 0,
) -> go.Figure:
    """Build the ICE and partial-dependence figure of one field sweep.

    Trace 0 is the bar chart of cohort counts per value, on the first y axis
    (drawn on the right). Trace 1 contains the thin grey ICE lines, one per drawn
    row, separated by ``None`` gaps. Trace 2 is the thick partial-dependence
    line with markers, whose hover text gives the value, the training count
    and the cohort count. Both line traces use the second y axis (``yaxis2``,
    drawn on the left), titled with the output units.
    With more than ``max_lines`` rows, a seeded random subset of
    ``max_lines`` rows is drawn and the subtitle notes it. The partial
    dependence is always the mean over all rows of the sweep.

    Categorical values are ordered by ``sort``: ``"partial_dependence"``
    (highest first) or ``"frequency"`` (most frequent in training first).
    A numeric field gets a numeric x axis in increasing order, and ``sort``
    does not apply there.
    """
    if sort not in ICE_SORTS:
        msg = f"ice_figure: sort must be one of {', '.join(ICE_SORTS)}; got {sort!r}"
        raise ValueError(msg)
    if isinstance(max_lines, bool) or not isinstance(max_lines, (int, np.integer)) or max_lines < 0:
        msg = f"ice_figure: max_lines must be an integer >= 0; got {max_lines!r}"
        raise ValueError(msg)

    order = _value_order(sweep, sort)
    numeric = sweep.kind == "numeric"
    full_values = [sweep.values[i] for i in order]
    if numeric:
        assert sweep.numeric_values is not None
        x = list(sweep.numeric_values[order])
    else:
        x = _category_labels(full_values)
    units = "predicted CTR" if sweep.output_space == "probability" else "logit"
    cohort_counts = sweep.cohort_counts[order]
    training_counts = (
        [f"{int(count):,}" for count in sweep.training_counts[order]]
        if sweep.training_counts is not None
        else ["n/a (numeric field)"] * len(order)
    )
    count_label = "cohort rows nearest to this grid point" if numeric else "cohort rows with this value"
    value_hover = [f"{sweep.field} = {display_value(value)}" for value in full_values]
    customdata_rows = [
        [hover, training, f"{int(count):,}"]
        for hover, training, count in zip(value_hover, training_counts, cohort_counts, strict=True)
    ]
    customdata = np.array(customdata_rows, dtype=object).reshape(len(order), 3)

    figure = go.Figure()
    figure.add_trace(
        go.Bar(
            x=x,
            y=cohort_counts,
            marker_color=COUNT_COLOR,
            opacity=0.5,
            name=count_label,
            customdata=customdata,
            hovertemplate=(
                "%{customdata[0]}<br>training rows: %{customdata[1]}<br>"
                + count_label
                + ": %{customdata[2]}<extra></extra>"
            ),
        )
    )

    line_rows = _line_rows(sweep.n_rows, max_lines, seed)
    line_x: list[object] = []
    line_y: list[float | None] = []
    line_text: list[str] = []
    for position in line_rows:
        row = int(sweep.rows[position])
        own = display_value(sweep.original_values[position], MAX_LABEL_CHARS)
        line_x.extend([*x, None])
        line_y.extend([*(float(v) for v in sweep.ice[position, order]), None])
        line_text.extend([f"row {row} (own value {own})<br>{hover}" for hover in value_hover] + [""])
    figure.add_trace(
        go.Scatter(
            x=line_x,
            y=line_y,
            mode="lines",
            yaxis="y2",
            line={"color": ICE_COLOR, "width": 0.7},
            opacity=0.6,
            name="ICE line of one row",
            text=line_text,
            hovertemplate="%{text}<br>" + units + ": %{y:.4f}<extra></extra>",
            connectgaps=False,
        )
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=sweep.partial_dependence[order],
            mode="lines+markers",
            yaxis="y2",
            line={"color": NEGATIVE_COLOR, "width": 3.5},
            marker={"size": 8, "color": NEGATIVE_COLOR},
            name="partial dependence (mean of all ICE lines)",
            customdata=customdata,
            hovertemplate=(
                "%{customdata[0]}<br>partial dependence: %{y:.4f} "
                + units
                + "<br>training rows: %{customdata[1]}<br>"
                + count_label
                + ": %{customdata[2]}<extra></extra>"
            ),
        )
    )

    subtitle = f"{sweep.describe()} · ICE lines of "
    if line_rows.size < sweep.n_rows:
        subtitle += f"{line_rows.size:,} of {sweep.n_rows:,} rows (random subset, seed {seed})"
    else:
        subtitle += f"all {sweep.n_rows:,} rows"
    subtitle += f" · bars: {count_label}"
    x_title = f"{sweep.field} (swept value)" if numeric else f"{sweep.field} (swept value, {ICE_SORTS[sort]})"
    figure.update_layout(
        title=_title(f"ICE lines and partial dependence of {sweep.field}", subtitle),
        xaxis={"title": x_title, "type": "linear" if numeric else "category"},
        # The count bars sit on the first y axis, because plotly draws the overlaying axis's traces on top.
        # Their range is three times the largest count, so the bars fill the lower third of the plot.
        yaxis={
            "title": count_label,
            "side": "right",
            "showgrid": False,
            "range": [0.0, 3.0 * max(float(cohort_counts.max()), 1.0)],
        },
        yaxis2={"title": _units_title(sweep.output_space), "side": "left", "overlaying": "y", "tickmode": "auto"},
        height=520,
        margin={"l": 10, "r": 10, "t": 100, "b": 50},
        # Placed against the bottom of the figure, so that slanted tick labels never run into it.
        legend={"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0, "x": 0.0},
        hovermode="closest",
    )
    return figure
