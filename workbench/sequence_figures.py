"""Plotly figures of behaviour-sequence models: one sample's history, cohort attention and counterfactual edits.

Positions count from 0 = the oldest behaviour kept, with the most recent
last, as in ``workbench.zoo.sequence``. Empty positions are never drawn: the
figures take a ``present`` mask and leave out the positions without a
behaviour, because a target attention weight of 0 there means "no behaviour",
not "ignored behaviour".

The summaries (:func:`attention_by_position`, :func:`attention_by_item`)
return tables, so the app can show the same numbers the figures draw.
Attention weights are in the model's own units (``weight``), attributions in
the output space of the explainer (``logit`` by default), and edit deltas in
click probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.figures import (
    DIVERGING_SCALE,
    MAX_LABEL_CHARS,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    SEQUENTIAL_SCALE,
    TOTAL_COLOR,
    _title,
    display_value,
)

COUNT_COLOR = "#8c8c8c"
DEFAULT_TOP_ITEMS = 20


def position_label(position: int, item: str) -> str:
    """Format the axis label of one behaviour: its position and its raw value, such as ``3: sports``."""
    return f"{int(position)}: {display_value(item, MAX_LABEL_CHARS)}"


def _heat_colors(values: np.ndarray) -> dict:
    """Colour bars by value: on a sequential scale from 0 when all are >= 0, else on a scale diverging around 0."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() >= 0:
        high = max(float(finite.max()) if finite.size else 0.0, 1e-12)
        return {"color": values, "colorscale": SEQUENTIAL_SCALE, "cmin": 0.0, "cmax": high}
    limit = max(float(np.abs(finite).max()), 1e-12)
    return {"color": values, "colorscale": DIVERGING_SCALE, "cmin": -limit, "cmax": limit}


def behaviour_strip(
    items: Sequence[str],
    present: Sequence[bool] | np.ndarray,
    *,
    attention: Sequence[float] | np.ndarray | None = None,
    attribution: Sequence[float] | np.ndarray | None = None,
    title: str,
    subtitle: str = "",
    attribution_units: str = "logit",
) -> go.Figure:
    """Draw one sample's history as bars over its present positions, labelled with the items.

    ``items``, ``present`` and the optional ``attention`` and ``attribution``
    have shape ``(max_length,)``. Each given signal gets its own row of bars
    on the same positions: the attention weights on top, coloured by value
    (a heat strip), and the per-behaviour attributions below, coloured by
    sign. The x labels are ``position: item``.
    """
    present = np.asarray(present, dtype=bool)
    if attention is None and attribution is None:
        msg = "behaviour_strip needs attention weights, attributions or both"
        raise ValueError(msg)
    positions = np.flatnonzero(present)
    labels = [position_label(p, items[p]) for p in positions]
    signals = []
    if attention is not None:
        signals.append(("attention", np.asarray(attention, dtype=np.float64)[positions], "weight"))
    if attribution is not None:
        signals.append(("attribution", np.asarray(attribution, dtype=np.float64)[positions], attribution_units))
    figure = make_subplots(
        rows=len(signals),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=[f"{name} ({units})" for name, _, units in signals],
    )
    for line, (name, values, units) in enumerate(signals, start=1):
        if name == "attention":
            marker = _heat_colors(values)
        else:
            marker = {"color": [POSITIVE_COLOR if v >= 0 else NEGATIVE_COLOR for v in values]}
        figure.add_trace(
            go.Bar(
                x=labels,
                y=values,
                name=name,
                marker=marker,
                text=[f"{v:+.3f}" if name == "attribution" else f"{v:.3f}" for v in values],
                textposition="outside",
                cliponaxis=False,
                hovertemplate="%{x}<br>" + name + ": %{y:.4f} " + units + "<extra></extra>",
            ),
            row=line,
            col=1,
        )
        figure.update_yaxes(title_text=units, row=line, col=1)
    figure.update_xaxes(type="category", tickangle=-45, showgrid=False)
    longest = max((len(label) for label in labels), default=0)
    figure.update_layout(
        title=_title(title, subtitle or f"{positions.size} behaviours · 0 = oldest kept, most recent last"),
        height=200 + 190 * len(signals) + 6 * longest,
        margin={"l": 10, "r": 10, "t": 110, "b": 10},
        showlegend=False,
    )
    return figure


def recency(present: np.ndarray) -> np.ndarray:
    """Count each present behaviour's position from the most recent one (0 = most recent); -1 where empty.

    ``present`` has shape ``(n_samples, max_length)``. The count skips empty
    positions, so it does not assume that histories are left-aligned.
    """
    present = np.asarray(present, dtype=bool)
    later = np.cumsum(present[:, ::-1], axis=1)[:, ::-1] - present
    return np.where(present, later, -1)


def attention_by_position(weights: np.ndarray, present: np.ndarray, *, from_recent: bool = False) -> pd.DataFrame:
    """Average the attention weight at each history position over the samples that have a behaviour there.

    ``weights`` and ``present`` have shape ``(n_samples, max_length)``. With
    ``from_recent`` the position counts back from each sample's most recent
    behaviour (0 = most recent); otherwise it is the stored position (0 =
    oldest kept). Returns columns ``position``, ``mean_weight`` and
    ``n_behaviours``, one line per position that has at least one behaviour.
    """
    weights = np.asarray(weights, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    if weights.shape != present.shape:
        msg = f"weights {weights.shape} and present {present.shape} must have the same shape"
        raise ValueError(msg)
    index = recency(present) if from_recent else np.where(present, np.arange(present.shape[1]), -1)
    has_behaviour = index >= 0
    frame = pd.DataFrame({"position": index[has_behaviour], "weight": weights[has_behaviour]})
    summary = frame.groupby("position")["weight"].agg(mean_weight="mean", n_behaviours="size").reset_index()
    return summary.astype({"position": int, "n_behaviours": int})


def attention_by_item(
    weights: np.ndarray, present: np.ndarray, items: np.ndarray, *, top_n: int = DEFAULT_TOP_ITEMS
) -> pd.DataFrame:
    """Average the attention weight of each item value over its behaviours, for the ``top_n`` most frequent items.

    ``weights``, ``present`` and ``items`` have shape ``(n_samples,
    max_length)``. Returns columns ``item``, ``mean_weight`` and
    ``n_behaviours``, most frequent item first (ties by item text).
    """
    if top_n < 1:
        msg = f"top_n must be at least 1; got {top_n}"
        raise ValueError(msg)
    present = np.asarray(present, dtype=bool)
    frame = pd.DataFrame(
        {"item": np.asarray(items, dtype=object)[present].astype(str), "weight": np.asarray(weights, np.float64)[present]}
    )
    summary = frame.groupby("item")["weight"].agg(mean_weight="mean", n_behaviours="size").reset_index()
    summary = summary.sort_values(["n_behaviours", "item"], ascending=[False, True], kind="stable")
    return summary.head(top_n).reset_index(drop=True).astype({"n_behaviours": int})


def attention_by_position_bar(summary: pd.DataFrame, *, from_recent: bool, n_samples: int, subtitle: str = "") -> go.Figure:
    """Draw :func:`attention_by_position` as bars of the mean weight, with the behaviour count as a line on a second axis."""
    axis = "positions back from the most recent (0 = most recent)" if from_recent else "position (0 = oldest kept)"
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_trace(
        go.Bar(
            x=summary["position"],
            y=summary["mean_weight"],
            name="mean weight",
            marker=_heat_colors(summary["mean_weight"].to_numpy(dtype=np.float64)),
            customdata=summary["n_behaviours"],
            hovertemplate="position %{x}<br>mean weight %{y:.4f}<br>%{customdata:,} behaviours<extra></extra>",
        ),
        secondary_y=False,
    )
    figure.add_trace(
        go.Scatter(
            x=summary["position"],
            y=summary["n_behaviours"],
            name="behaviours present",
            mode="lines+markers",
            line={"color": COUNT_COLOR, "width": 1},
            hovertemplate="position %{x}<br>%{y:,} behaviours<extra></extra>",
        ),
        secondary_y=True,
    )
    figure.update_xaxes(title_text=axis, dtick=1)
    figure.update_yaxes(title_text="mean attention (weight)", secondary_y=False)
    figure.update_yaxes(title_text="behaviours present", secondary_y=True, showgrid=False, rangemode="tozero")
    figure.update_layout(
        title=_title(
            f"Mean attention weight by position over {n_samples:,} samples",
            subtitle or "mean over the samples with a behaviour at that position; empty positions are left out",
        ),
        height=420,
        margin={"l": 10, "r": 10, "t": 90, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def attention_by_item_bar(summary: pd.DataFrame, *, history: str, n_samples: int) -> go.Figure:
    """Draw :func:`attention_by_item` as horizontal bars of the mean weight, most frequent item on top, with counts."""
    labels = [display_value(item, MAX_LABEL_CHARS) for item in summary["item"]]
    values = summary["mean_weight"].to_numpy(dtype=np.float64)
    figure = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker=_heat_colors(values),
            text=[f"{v:.3f} (n={n:,})" for v, n in zip(values, summary["n_behaviours"], strict=True)],
            textposition="outside",
            cliponaxis=False,
            customdata=summary["n_behaviours"],
            hovertemplate="%{y}<br>mean weight %{x:.4f}<br>%{customdata:,} behaviours<extra></extra>",
        )
    )
    # Room on both sides, so that the text outside a negative bar stays clear of the item labels.
    low = min(0.0, float(values.min())) if values.size else 0.0
    high = max(0.0, float(values.max())) if values.size else 0.0
    padding = 0.35 * max(high - low, 1e-6)
    figure.update_layout(
        title=_title(
            f"Mean attention weight by {history} value over {n_samples:,} samples",
            f"the {len(summary)} most frequent values in the histories; n = behaviours that hold the value",
        ),
        xaxis={"title": "mean attention (weight)", "range": [low - (padding if low < 0 else 0.0), high + padding]},
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=150 + 24 * max(len(summary), 1),
        margin={"l": 10, "r": 90, "t": 90, "b": 40},
        showlegend=False,
    )
    return figure


def _sign_color(value: float) -> str:
    if value > 0:
        return POSITIVE_COLOR
    if value < 0:
        return NEGATIVE_COLOR
    return TOTAL_COLOR


def edit_deltas_bar(edits: pd.DataFrame, *, title: str = "Change of the predicted CTR per edit") -> go.Figure:
    """Draw one bar per counterfactual edit: predicted click probability after minus before.

    ``edits`` is a ``workbench.sequence_edits.edits_table`` with columns
    ``edit``, ``prediction_before``, ``prediction_after`` and ``delta``, in
    the order the edits were made; the first edit is on top.
    """
    labels = [f"{number}. {text}" for number, text in enumerate(edits["edit"], start=1)]
    deltas = edits["delta"].to_numpy(dtype=np.float64)
    figure = go.Figure(
        go.Bar(
            x=deltas,
            y=labels,
            orientation="h",
            marker_color=[_sign_color(d) for d in deltas],
            text=[f"{100 * d:+.2f} pp" for d in deltas],
            textposition="outside",
            cliponaxis=False,
            customdata=np.column_stack([edits["prediction_before"], edits["prediction_after"]]),
            hovertemplate=(
                "%{y}<br>before %{customdata[0]:.2%} → after %{customdata[1]:.2%}<br>"
                "change %{x:+.4f} (probability)<extra></extra>"
            ),
        )
    )
    limit = max(float(np.abs(deltas).max()) if deltas.size else 0.0, 1e-6)
    figure.update_layout(
        title=_title(title, "after − before, in click probability (pp = percentage points)"),
        xaxis={
            "title": "change of the predicted click probability",
            "tickformat": "+.2%",
            "range": [-1.3 * limit, 1.3 * limit],
        },
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=150 + 30 * max(len(labels), 1),
        margin={"l": 10, "r": 60, "t": 90, "b": 50},
        showlegend=False,
    )
    return figure
