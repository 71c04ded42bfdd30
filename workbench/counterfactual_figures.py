"""Plotly figures of what-if edits and counterfactual searches.

:func:`attribution_comparison_bar` takes a :class:`~workbench.whatif.WhatIf`
with attributions and draws each player's attribution before and after the
edit side by side. :func:`counterfactuals_bar` and :func:`single_changes_bar`
take a :class:`~workbench.counterfactual.CounterfactualSearch` and draw the
predicted CTR of each counterfactual, or of the best single substitution per
field, against the row's own prediction and the goal's threshold. Attributions
are drawn in their output space (``"logit"``: log-odds of a click), predictions
as click probabilities.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from workbench.counterfactual import CounterfactualSearch
from workbench.figures import (
    MAX_LABEL_CHARS,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    TOTAL_COLOR,
    _title,
    display_value,
    format_ctr,
)
from workbench.whatif import WhatIf

BEFORE_COLOR = "#9a9a9a"
AFTER_COLOR = POSITIVE_COLOR
CHANGED_OUTLINE = "#111111"
THRESHOLD_COLOR = "#2a9d5b"
CHANGED_MARK = "✎"
"""Appended to the axis label of a player whose value the edit changed."""
REFERENCE_LABEL_HEIGHT = 18
"""Pixels between the two rows of reference-line labels above the plot area."""
REFERENCE_RANGE_PAD = 1.08
"""The x axis of the search charts reaches this factor past the largest value, so no bar ends at the edge."""
TOP_MARGIN = 130
"""Top margin of the search charts in pixels: title, subtitle and two rows of reference-line labels."""


def _units(output_space: str) -> str:
    return "logit (log-odds of a click)" if output_space == "logit" else "click probability"


def player_label(player: str, changed: bool) -> str:
    """Format a player's axis label: bold with a pencil mark when the edit changed its value."""
    return f"<b>{player} {CHANGED_MARK}</b>" if changed else player


def attribution_comparison_bar(result: WhatIf, *, max_players: int | None = None) -> go.Figure:
    """Build a grouped bar chart of each player's attribution before and after a what-if edit.

    Trace 0 contains the attributions before the edit, trace 1 those after, in
    the order of the y axis: players sorted by the larger of their two
    absolute attributions, largest on top. With ``max_players`` only the
    largest are drawn, but changed players are always kept. Players whose value
    changed are labelled in bold with a pencil mark and outlined. Hover texts
    give the raw values before and after.

    Raises ValueError when ``result`` was computed without an attribution method.
    """
    if result.before is None or result.after is None:
        msg = "attribution_comparison_bar needs a WhatIf with attributions; call compare with a method"
        raise ValueError(msg)
    frame = result.comparison_frame()
    size = np.maximum(frame["attribution_before"].abs(), frame["attribution_after"].abs())
    frame = frame.assign(size=size).sort_values("size", ascending=False, kind="stable")
    n_left_out = 0
    if max_players is not None and len(frame) > max_players:
        keep = frame.index[:max_players].union(frame.index[frame["changed"]])
        n_left_out = len(frame) - len(keep)
        frame = frame.loc[[index for index in frame.index if index in keep]]

    labels = [player_label(name, changed) for name, changed in zip(frame["field"], frame["changed"], strict=True)]
    units = result.before.output_space
    outline = [2.0 if changed else 0.0 for changed in frame["changed"]]
    figure = go.Figure()
    for name, column, values_column, color in (
        ("before", "attribution_before", "value_before", BEFORE_COLOR),
        ("after", "attribution_after", "value_after", AFTER_COLOR),
    ):
        hover = [
            f"{player} = {display_value(value)}<br>{name}: {attribution:+.4f} {units}"
            for player, value, attribution in zip(frame["field"], frame[values_column], frame[column], strict=True)
        ]
        figure.add_trace(
            go.Bar(
                name=f"{name} the edit",
                x=frame[column].to_numpy(dtype=np.float64),
                y=labels,
                orientation="h",
                marker={"color": color, "line": {"color": CHANGED_OUTLINE, "width": outline}},
                hovertext=hover,
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    changed = [name for name, flag in zip(frame["field"], frame["changed"], strict=True) if flag]
    subtitle = (
        f"{result.before.describe()} · predicted CTR {format_ctr(result.prediction_before)} → "
        f"{format_ctr(result.prediction_after)} · changed: {', '.join(changed) or 'no field value'}"
    )
    if n_left_out:
        subtitle += f" · {n_left_out} smaller players not drawn"
    row = "" if result.row is None else f" of row {result.row}"
    figure.update_layout(
        title=_title(f"Attributions{row} before and after the edit", subtitle),
        barmode="group",
        xaxis_title=f"attribution ({_units(units)})",
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=160 + 44 * len(frame),
        margin={"l": 10, "r": 40, "t": 100, "b": 50},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 1.0, "xanchor": "right"},
    )
    return figure


def _goal_label(search: CounterfactualSearch) -> str:
    label = f"goal {format_ctr(search.threshold)}"
    if search.goal.kind == "rank_top":
        return f"{label} (rank {int(search.goal.value)})"
    if search.goal.kind == "rank_drop":
        return f"{label} (below rank {int(search.goal.value)})"
    return label


def _rank_now(search: CounterfactualSearch) -> str:
    """Return `` · now rank R of N`` for a rank goal, else an empty string."""
    rank_before = search.parameters.get("rank_before")
    cohort_size = search.parameters.get("cohort_size")
    if rank_before is None or cohort_size is None:
        return ""
    return f" · now rank {rank_before:,} of {cohort_size:,}"


def _x_range(search: CounterfactualSearch, predictions: np.ndarray) -> list[float]:
    """Return the x range: from 0 to 8 % past the largest bar or reference line, but at most 100 %."""
    values = np.asarray([search.prediction_before, search.threshold, *predictions.tolist()], dtype=np.float64)
    largest = float(np.max(values[np.isfinite(values)], initial=0.0))
    if largest <= 0:
        return [0.0, 1.0]
    return [0.0, min(1.0, REFERENCE_RANGE_PAD * largest)]


def _reference_lines(figure: go.Figure, search: CounterfactualSearch, x_range: list[float]) -> None:
    """Draw the row's own prediction and the goal's threshold as vertical lines, labelled above the plot area.

    The labels sit in the top margin, the goal's on the first line above the
    plot and the row's on the second, so they overlap neither the bars nor
    each other. A label extends to the left of a line in the right half of
    the x range, so that it stays inside the figure. Shape and annotation 0
    belong to the row's prediction, 1 to the goal.
    """
    lines = (
        # (x, label, colour, dash, label row above the plot area)
        (search.prediction_before, f"now {format_ctr(search.prediction_before)}", TOTAL_COLOR, "dot", 1),
        (search.threshold, _goal_label(search), THRESHOLD_COLOR, "dash", 0),
    )
    for x, text, color, dash, label_row in lines:
        figure.add_vline(x=x, line={"color": color, "dash": dash})
        figure.add_annotation(
            x=x,
            xref="x",
            y=1.0,
            yref="paper",
            yanchor="bottom",
            yshift=label_row * REFERENCE_LABEL_HEIGHT,
            xanchor="right" if x > (x_range[0] + x_range[1]) / 2 else "left",
            text=text,
            font={"color": color},
            showarrow=False,
        )


def _finish_bars(
    figure: go.Figure, search: CounterfactualSearch, predictions: np.ndarray, title: dict, *, n_bars: int, bar_height: int
) -> go.Figure:
    """Add the reference lines and the layout that both bar charts of a search share."""
    x_range = _x_range(search, predictions)
    _reference_lines(figure, search, x_range)
    figure.update_layout(
        title=title,
        xaxis={"title": "predicted CTR", "tickformat": ".1%", "range": x_range},
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=TOP_MARGIN + 90 + bar_height * max(n_bars, 1),
        margin={"l": 10, "r": 40, "t": TOP_MARGIN, "b": 50},
        showlegend=False,
    )
    return figure


def counterfactuals_bar(search: CounterfactualSearch) -> go.Figure:
    """Build a horizontal bar per counterfactual: its predicted CTR, with the row's prediction and the goal's threshold.

    Trace 0 contains one bar per counterfactual in rank order (best on top),
    labelled ``rank. field: before → after; ...``. Bars are red when the
    prediction went up and blue when it went down. Vertical lines mark the
    row's own prediction and the threshold the goal was turned into, and
    annotations 0 (row) and 1 (goal) label them above the plot area. For rank
    goals the hover text and the subtitle add the ranks in the cohort.
    """
    labels = [
        f"{rank}. {display_value(counterfactual.describe(), 2 * MAX_LABEL_CHARS)}"
        for rank, counterfactual in enumerate(search.counterfactuals, start=1)
    ]
    predictions = np.asarray([c.prediction for c in search.counterfactuals], dtype=np.float64)
    cohort_size = search.parameters.get("cohort_size")
    hover = [
        f"{counterfactual.describe()}<br>predicted CTR {format_ctr(counterfactual.prediction)}"
        f" · {counterfactual.n_changes} change(s)"
        + ("" if counterfactual.rank is None else f" · rank {counterfactual.rank:,} of {cohort_size:,}")
        for counterfactual in search.counterfactuals
    ]
    figure = go.Figure(
        go.Bar(
            x=predictions,
            y=labels,
            orientation="h",
            marker_color=[POSITIVE_COLOR if p >= search.prediction_before else NEGATIVE_COLOR for p in predictions],
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    title = _title(
        f"Counterfactuals of row {search.row}",
        f"goal: {search.goal.describe()} · {len(labels)} found{_rank_now(search)}",
    )
    return _finish_bars(figure, search, predictions, title, n_bars=len(labels), bar_height=34)


def single_changes_bar(search: CounterfactualSearch) -> go.Figure:
    """Build a horizontal bar per field: the predicted CTR of its best single substitution.

    Trace 0 contains the fields in the order of ``search.single_changes`` (the
    largest margin towards the goal on top), labelled ``field = new value``.
    Bars of substitutions that meet the goal alone are drawn in full colour,
    the others lighter. Vertical lines mark the row's own prediction and the
    goal's threshold, labelled above the plot area as in :func:`counterfactuals_bar`.
    """
    frame = search.single_changes
    labels = [
        f"{field} = {display_value(value, MAX_LABEL_CHARS)}"
        for field, value in zip(frame["field"], frame["value"], strict=True)
    ]
    predictions = frame["prediction"].to_numpy(dtype=np.float64)
    meets = frame["margin"].to_numpy(dtype=np.float64) >= 0
    color = POSITIVE_COLOR if search.direction == "up" else NEGATIVE_COLOR
    figure = go.Figure(
        go.Bar(
            x=predictions,
            y=labels,
            orientation="h",
            marker={"color": color, "opacity": [1.0 if flag else 0.45 for flag in meets]},
            customdata=frame["margin"].to_numpy(dtype=np.float64),
            hovertemplate="%{y}<br>predicted CTR %{x:.2%}<br>margin %{customdata:+.3f} logit<extra></extra>",
        )
    )
    title = _title(
        f"Best single substitution per field, row {search.row}",
        f"goal: {search.goal.describe()} · {int(meets.sum())} of {len(frame)} fields reach it alone",
    )
    return _finish_bars(figure, search, predictions, title, n_bars=len(labels), bar_height=26)
