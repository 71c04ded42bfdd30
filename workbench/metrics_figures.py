"""Figures of metrics: reliability diagrams of one or more models, and predicted versus observed CTR per value."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from workbench.figures import display_value

COLOURS = qualitative.Plotly


def reliability_diagram(tables: Mapping[str, pd.DataFrame], *, title: str = "Reliability diagram") -> go.Figure:
    """Plot mean predicted CTR against the click rate per bin, one line per model, over the diagonal.

    ``tables`` maps a model label to its ``workbench.metrics.calibration_table``.
    Marker areas grow with the bin's row count, and the hover text gives the
    count, so sparse bins are not over-read.
    """
    figure = go.Figure()
    upper = 0.0
    for table in tables.values():
        if not table.empty:
            upper = max(upper, float(table["mean_predicted"].max()), float(table["observed_rate"].max()))
    upper = min(1.0, upper * 1.05) if upper > 0 else 1.0
    figure.add_trace(
        go.Scatter(
            x=[0, upper],
            y=[0, upper],
            mode="lines",
            line={"dash": "dot", "color": "grey"},
            name="perfect calibration",
            hoverinfo="skip",
        )
    )
    largest = max((float(t["count"].max()) for t in tables.values() if not t.empty), default=1.0)
    for position, (label, table) in enumerate(tables.items()):
        colour = COLOURS[position % len(COLOURS)]
        figure.add_trace(
            go.Scatter(
                x=table["mean_predicted"],
                y=table["observed_rate"],
                mode="lines+markers",
                name=label,
                line={"color": colour},
                marker={"size": 6 + 18 * (table["count"] / largest) ** 0.5, "color": colour},
                customdata=table[["count", "low", "high"]].to_numpy(),
                hovertemplate=(
                    f"{label}<br>predicted CTR %{{customdata[1]:.3f}} to %{{customdata[2]:.3f}}"
                    "<br>mean predicted %{x:.4f}<br>click rate %{y:.4f}<br>%{customdata[0]:,} rows<extra></extra>"
                ),
            )
        )
    figure.update_layout(
        title={"text": title},
        xaxis_title="mean predicted CTR in the bin",
        yaxis_title="observed click rate in the bin",
        xaxis={"range": [0, upper]},
        yaxis={"range": [0, upper]},
        legend={"orientation": "h", "y": -0.2},
        height=480,
    )
    return figure


def value_calibration_bar(table: pd.DataFrame, field: str, *, model: str = "") -> go.Figure:
    """Bar pairs of mean predicted CTR and click rate for each value of one field (``value_calibration`` output)."""
    labels = [f"{display_value(value, 30)} ({count:,})" for value, count in zip(table["raw_value"], table["count"], strict=True)]
    figure = go.Figure(
        [
            go.Bar(x=labels, y=table["mean_predicted"], name="mean predicted CTR", marker_color=COLOURS[0]),
            go.Bar(x=labels, y=table["observed_rate"], name="click rate", marker_color=COLOURS[1]),
        ]
    )
    suffix = f" · {model}" if model else ""
    figure.update_layout(
        barmode="group",
        title={"text": f"Predicted and observed CTR per value of {field}{suffix}"},
        xaxis_title=f"{field} (rows in brackets)",
        yaxis_title="CTR",
        yaxis_tickformat=".1%",
        legend={"orientation": "h", "y": -0.3},
        height=460,
    )
    return figure
