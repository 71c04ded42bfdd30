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


def _reference_lines(figure: go.Figure, search: CounterfactualSearch) -> None:
    """Draw the row's own prediction and the goal's threshold as vertical lines."""
    figure.add_vline(
        x=search.prediction_before,
        line={"color": TOTAL_COLOR, "dash": "dot"},
        annotation_text=f"now {format_ctr(search.prediction_before)}",
        annotation_position="bottom right",
    )
    figure.add_vline(
        x=search.threshold,
        line={"color": THRESHOLD_COLOR, "dash": "dash"},
        annotation_text=f"goal {format_ctr(search.threshold)}",
        annotation_position="top right",
    )


def counterfactuals_bar(search: CounterfactualSearch) -> go.Figure:
    """Build a horizontal bar per counterfactual: its predicted CTR, with the row's prediction and the goal's threshold.

    Trace 0 contains one bar per counterfactual in rank order (best on top),
    labelled ``rank. field: before → after; ...``. Bars are red when the
    prediction went up and blue when it went down. Vertical lines mark the
    row's own prediction and the threshold the goal was turned into.
    """
    labels = [
        f"{rank}. {display_value(counterfactual.describe(), 2 * MAX_LABEL_CHARS)}"
        for rank, counterfactual in enumerate(search.counterfactuals, start=1)
    ]
    predictions = np.asarray([c.prediction for c in search.counterfactuals], dtype=np.float64)
    hover = [
        f"{counterfactual.describe()}<br>predicted CTR {format_ctr(counterfactual.prediction)}"
        f" · {counterfactual.n_changes} change(s)"
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
    _reference_lines(figure, search)
    figure.update_layout(
        title=_title(
            f"Counterfactuals of row {search.row}",
            f"goal: {search.goal.describe()} · {len(labels)} found",
        ),
        xaxis={"title": "predicted CTR", "tickformat": ".1%", "rangemode": "tozero"},
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=180 + 34 * max(len(labels), 1),
        margin={"l": 10, "r": 40, "t": 90, "b": 50},
        showlegend=False,
    )
    return figure


def single_changes_bar(search: CounterfactualSearch) -> go.Figure:
    """Build a horizontal bar per field: the predicted CTR of its best single substitution.

    Trace 0 contains the fields in the order of ``search.single_changes`` (the
    largest margin towards the goal on top), labelled ``field = new value``.
    Bars of substitutions that meet the goal alone are drawn in full colour,
    the others lighter. Vertical lines mark the row's own prediction and the
    goal's threshold.
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
    _reference_lines(figure, search)
    figure.update_layout(
        title=_title(
            f"Best single substitution per field, row {search.row}",
            f"goal: {search.goal.describe()} · {int(meets.sum())} of {len(frame)} fields reach it alone",
        ),
        xaxis={"title": "predicted CTR", "tickformat": ".1%", "rangemode": "tozero"},
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=180 + 26 * max(len(labels), 1),
        margin={"l": 10, "r": 40, "t": 90, "b": 50},
        showlegend=False,
    )
    return figure
