"""Plotly figures of model comparisons from :mod:`workbench.compare`.

:func:`field_attribution_scatter` and :func:`agreement_histogram` take an
:class:`~workbench.compare.AttributionAgreement`,
:func:`interaction_difference_heatmap` an
:class:`~workbench.compare.InteractionDifference`, and
:func:`disagreement_bar` and :func:`ctr_scatter` the frames of
:func:`~workbench.compare.disagreements` or
:func:`~workbench.compare.prediction_disagreements`. Attributions and pair
values are drawn in their output space (``"logit"``: log-odds of a click),
predictions as click probabilities. A comparison's note, which names what was
left out of which model, goes into the subtitle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.compare import DEFAULT_NAMES, PAIR_STATISTICS, AttributionAgreement, InteractionDifference
from workbench.figures import DIVERGING_SCALE, NEGATIVE_COLOR, POSITIVE_COLOR, TOTAL_COLOR, _title, format_ctr

CORRELATION_BIN_WIDTH = 0.05
"""Bin width of the correlation histograms; bins are centred on multiples of it, so -1 and +1 fall inside a bin."""


def _units(output_space: str) -> str:
    return "logit" if output_space == "logit" else output_space


def _with_note(subtitle: str, note: str) -> str:
    return f"{subtitle}<br>{note}" if note else subtitle


def _format_mean(value: float) -> str:
    return "undefined" if np.isnan(value) else f"{value:.3f}"


def field_attribution_scatter(agreement: AttributionAgreement) -> go.Figure:
    """Draw each common field's mean attribution under the first model against the second's, with the line y = x.

    Trace 0 is the fields: ``x`` is ``agreement.mean_first`` and ``y`` is
    ``agreement.mean_second``, with the field names as text. Fields on the
    dashed line have the same mean effect in both models. The hover text adds
    each field's mean |attribution| in both models.
    """
    first, second = agreement.names
    units = _units(agreement.output_space)
    values = np.concatenate([agreement.mean_first, agreement.mean_second])
    limit = max(float(np.abs(values).max()) if values.size else 0.0, 1e-12) * 1.1
    figure = go.Figure(
        go.Scatter(
            x=agreement.mean_first,
            y=agreement.mean_second,
            mode="markers+text",
            text=list(agreement.field_names),
            textposition="top center",
            marker={"color": NEGATIVE_COLOR, "size": 9},
            customdata=np.column_stack([agreement.mean_abs_first, agreement.mean_abs_second]),
            hovertemplate=(
                "%{text}<br>"
                f"mean attribution {first}: %{{x:+.4f}} {units}<br>"
                f"mean attribution {second}: %{{y:+.4f}} {units}<br>"
                f"mean |attribution| {first}: %{{customdata[0]:.4f}}, {second}: %{{customdata[1]:.4f}}"
                "<extra></extra>"
            ),
            showlegend=False,
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[-limit, limit],
            y=[-limit, limit],
            mode="lines",
            line={"color": TOTAL_COLOR, "dash": "dash", "width": 1},
            hoverinfo="skip",
            name="y = x (same mean effect)",
        )
    )
    subtitle = (
        f"method: {agreement.method} · output: {agreement.output_space} · {agreement.n_samples:,} samples,"
        f" {len(agreement.field_names)} common fields"
    )
    figure.update_layout(
        title=_title(f"Mean attribution per field: {first} versus {second}", _with_note(subtitle, agreement.note)),
        xaxis={"title": f"mean attribution by {first} ({units})", "range": [-limit, limit], "zeroline": True},
        yaxis={"title": f"mean attribution by {second} ({units})", "range": [-limit, limit], "zeroline": True},
        height=560,
        margin={"l": 10, "r": 10, "t": 110, "b": 50},
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0.0},
    )
    return figure


def agreement_histogram(agreement: AttributionAgreement) -> go.Figure:
    """Draw the per-sample distributions of Spearman's rho, Kendall's tau and the top-k overlap, side by side.

    Traces 0, 1 and 2 contain the defined values of ``agreement.spearman``,
    ``agreement.kendall`` and ``agreement.top_k_overlap``. Rows whose
    correlation is undefined (a constant attribution vector) are left out,
    and the subtitle counts them.
    """
    summary = agreement.summary()
    k = agreement.k
    figure = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("Spearman's rho", "Kendall's tau-b", f"top-{k} overlap"),
        horizontal_spacing=0.08,
        shared_yaxes=True,
    )
    half = CORRELATION_BIN_WIDTH / 2
    correlation_bins = {"start": -1.0 - half, "end": 1.0 + half, "size": CORRELATION_BIN_WIDTH}
    # The overlap takes the values 0, 1/k, ..., 1, so one bin is centred on each.
    overlap_bins = {"start": -0.5 / k, "end": 1.0 + 0.5 / k, "size": 1.0 / k}
    panels = (
        ("spearman", agreement.spearman, correlation_bins, "Spearman's rho"),
        ("kendall", agreement.kendall, correlation_bins, "Kendall's tau-b"),
        ("top_k_overlap", agreement.top_k_overlap, overlap_bins, f"top-{k} overlap"),
    )
    for column, (name, values, bins, label) in enumerate(panels, start=1):
        defined = values[~np.isnan(values)]
        figure.add_trace(
            go.Histogram(
                x=defined,
                xbins=bins,
                marker_color=NEGATIVE_COLOR,
                name=label,
                hovertemplate=f"{label}: %{{x}}<br>samples: %{{y}}<extra></extra>",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        low = -1.0 - half if name != "top_k_overlap" else -0.5 / k
        figure.update_xaxes(range=[low, 1.0 + (half if name != "top_k_overlap" else 0.5 / k)], row=1, col=column)
    figure.update_xaxes(title_text="rank correlation (−1 to 1)", row=1, col=1)
    figure.update_xaxes(title_text="rank correlation (−1 to 1)", row=1, col=2)
    figure.update_xaxes(title_text=f"share of the top {k} fields in common (0 to 1)", row=1, col=3)
    figure.update_yaxes(title_text="samples", row=1, col=1)

    first, second = agreement.names
    subtitle = (
        f"{first} versus {second} · method: {agreement.method} · {agreement.n_samples:,} samples ·"
        f" mean rho {_format_mean(summary['mean_spearman'])}, mean tau {_format_mean(summary['mean_kendall'])},"
        f" mean top-{k} overlap {_format_mean(summary['mean_top_k_overlap'])}"
    )
    undefined = max(int(summary["undefined_spearman"]), int(summary["undefined_kendall"]))
    if undefined:
        subtitle += f" · {undefined} samples with a constant attribution vector left out of the correlations"
    figure.update_layout(
        title=_title("Per-sample agreement of the two models' attributions", _with_note(subtitle, agreement.note)),
        bargap=0.05,
        height=420,
        margin={"l": 10, "r": 10, "t": 130, "b": 50},
    )
    return figure


def interaction_difference_heatmap(difference: InteractionDifference) -> go.Figure:
    """Draw the first model's global pair map minus the second's, on a colour scale symmetric around 0.

    Trace 0 is the heatmap with ``z = difference.difference``; red cells are
    pairs stronger (or, for the signed mean, more positive) in the first
    model. The hover text gives both models' values.
    """
    first, second = difference.names
    names = list(difference.difference.index)
    matrix = difference.difference.to_numpy(dtype=np.float64)
    values_first = difference.first.to_numpy(dtype=np.float64)
    values_second = difference.second.to_numpy(dtype=np.float64)
    units = _units(difference.output_space)
    statistic = PAIR_STATISTICS[difference.statistic]
    limit = max(float(np.abs(matrix).max()) if matrix.size else 0.0, 1e-12)
    hover = [
        [
            f"{names[i]} × {names[j]}<br>{first}: {values_first[i, j]:+.4f} {units}"
            f"<br>{second}: {values_second[i, j]:+.4f} {units}<br>{first} − {second}: {matrix[i, j]:+.4f} {units}"
            if i != j
            else f"{names[i]} (no pair with itself)"
            for j in range(len(names))
        ]
        for i in range(len(names))
    ]
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=names,
            y=names,
            colorscale=DIVERGING_SCALE,
            zmin=-limit,
            zmax=limit,
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            colorbar={"title": f"{first} − {second}<br>({units})"},
        )
    )
    subtitle = (
        f"{statistic} of {difference.index} per pair · output: {difference.output_space} ·"
        f" {difference.n_samples:,} samples · red: larger in {first}, blue: larger in {second}"
    )
    figure.update_layout(
        title=_title(
            f"Pair interactions, {first} minus {second}: {statistic} of {difference.index}",
            _with_note(subtitle, difference.note),
        ),
        xaxis={"type": "category", "tickangle": -45, "showgrid": False},
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        height=220 + 36 * len(names),
        margin={"l": 10, "r": 10, "t": 110, "b": 10},
    )
    return figure


def _ctr_columns(frame: pd.DataFrame, names: Sequence[str]) -> tuple[str, str]:
    columns = (f"CTR {names[0]}", f"CTR {names[1]}")
    missing = [column for column in (*columns, "row", "delta") if column not in frame.columns]
    if missing:
        msg = (
            f"the frame has no column {', '.join(missing)}; pass the frame of workbench.compare.disagreements or "
            f"prediction_disagreements and the same names (columns: {', '.join(map(str, frame.columns))})"
        )
        raise KeyError(msg)
    return columns


def disagreement_bar(frame: pd.DataFrame, *, names: Sequence[str] = DEFAULT_NAMES) -> go.Figure:
    """Draw one bar per row of a disagreement frame: the CTR of the first model minus the second's.

    ``frame`` comes from :func:`~workbench.compare.disagreements` or
    :func:`~workbench.compare.prediction_disagreements` with the same
    ``names``. Bars keep the frame's order, top to bottom, and ``x`` is the
    ``delta`` column in percentage points. The hover text gives both CTRs
    and, where present, the Spearman's rho of the row's attributions and its
    click label.
    """
    column_first, column_second = _ctr_columns(frame, names)
    delta = frame["delta"].to_numpy(dtype=np.float64)
    hover = []
    for position in range(len(frame)):
        line = frame.iloc[position]
        text = (
            f"row {int(line['row'])}<br>CTR {names[0]}: {format_ctr(line[column_first])}"
            f"<br>CTR {names[1]}: {format_ctr(line[column_second])}"
            f"<br>{names[0]} − {names[1]}: {100.0 * line['delta']:+.2f} percentage points"
        )
        if "spearman" in frame.columns:
            rho = "undefined" if np.isnan(line["spearman"]) else f"{line['spearman']:+.3f}"
            text += f"<br>Spearman's rho of the attributions: {rho}"
        if "label" in frame.columns:
            text += f"<br>click label: {int(line['label'])}"
        hover.append(text)
    figure = go.Figure(
        go.Bar(
            x=100.0 * delta,
            y=[f"row {int(row)}" for row in frame["row"]],
            orientation="h",
            marker_color=[POSITIVE_COLOR if value > 0 else NEGATIVE_COLOR for value in delta],
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
        )
    )
    figure.add_vline(x=0.0, line_width=1, line_color=TOTAL_COLOR)
    figure.update_layout(
        title=_title(
            f"Rows where {names[0]} and {names[1]} disagree",
            f"{len(frame):,} rows · right of 0: {names[0]} predicts the higher CTR",
        ),
        xaxis_title=f"CTR {names[0]} − CTR {names[1]} (percentage points)",
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=140 + 24 * len(frame),
        margin={"l": 10, "r": 40, "t": 90, "b": 50},
        showlegend=False,
    )
    return figure


def ctr_scatter(frame: pd.DataFrame, *, n_marked: int = 20, names: Sequence[str] = DEFAULT_NAMES) -> go.Figure:
    """Draw the CTR of the first model against the second's for each row, with the largest disagreements marked.

    ``frame`` comes from :func:`~workbench.compare.prediction_disagreements`
    (or :func:`~workbench.compare.disagreements`) with ``n=None``, so it is
    sorted by ``|delta|``, largest first. Trace 0 contains the other rows and
    trace 1 the first ``n_marked`` rows. Both have CTRs as probabilities on
    the axes and the row numbers in ``customdata``. Trace 2 is the line y = x.
    """
    if isinstance(n_marked, bool) or not isinstance(n_marked, int | np.integer) or n_marked < 0:
        msg = f"n_marked must be an integer >= 0; got {n_marked!r}"
        raise ValueError(msg)
    column_first, column_second = _ctr_columns(frame, names)
    rest, marked = frame.iloc[n_marked:], frame.iloc[:n_marked]
    hover = (
        "row %{customdata}<br>"
        f"CTR {names[0]}: %{{x:.2%}}<br>CTR {names[1]}: %{{y:.2%}}"
        "<extra></extra>"
    )
    figure = go.Figure()
    for part, color, size, label in (
        (rest, TOTAL_COLOR, 4, "other rows"),
        (marked, POSITIVE_COLOR, 8, f"{len(marked)} largest disagreements"),
    ):
        figure.add_trace(
            go.Scatter(
                x=part[column_first].to_numpy(dtype=np.float64),
                y=part[column_second].to_numpy(dtype=np.float64),
                customdata=part["row"].to_numpy(),
                mode="markers",
                marker={"color": color, "size": size, "opacity": 0.6 if part is rest else 0.9},
                name=label,
                hovertemplate=hover,
            )
        )
    values = frame[[column_first, column_second]].to_numpy(dtype=np.float64)
    high = float(values.max()) * 1.05 if values.size else 1.0
    figure.add_trace(
        go.Scatter(
            x=[0.0, high],
            y=[0.0, high],
            mode="lines",
            line={"color": TOTAL_COLOR, "dash": "dash", "width": 1},
            hoverinfo="skip",
            name="y = x (same CTR)",
        )
    )
    figure.update_layout(
        title=_title(
            f"Predicted CTR: {names[0]} versus {names[1]}",
            f"{len(frame):,} rows · marked: the {len(marked)} rows with the largest"
            f" |CTR {names[0]} − CTR {names[1]}|",
        ),
        xaxis={"title": f"CTR {names[0]} (click probability)", "tickformat": ".1%", "range": [0.0, high]},
        yaxis={"title": f"CTR {names[1]} (click probability)", "tickformat": ".1%", "range": [0.0, high]},
        height=560,
        margin={"l": 10, "r": 10, "t": 90, "b": 50},
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0.0},
    )
    return figure
