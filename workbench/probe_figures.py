"""Plotly figures of probes: gate and mask heatmaps, value histograms, field rankings and pair maps.

Each function takes the :class:`~workbench.probes.ProbeValues` (or a field x
field map made from them) and returns a ``plotly.graph_objects.Figure``. The
app pages draw these figures, and a notebook can call the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.figures import DIVERGING_SCALE, SEQUENTIAL_SCALE, _title
from workbench.probes import ProbeValues, field_rows

HISTOGRAM_BINS = 60


def _colors(values: np.ndarray, value_range: tuple[float, float] | None, aggregation: str) -> dict:
    """Colour scale settings: diverging around the middle of a bounded range, around 0 for signed values."""
    finite = values[np.isfinite(values)]
    if value_range is not None and aggregation == "mean":
        # Neutral colour at the middle of the range (0.5 for a sigmoid gate), scaled to the largest
        # deviation so that gates that stay close to neutral still show their differences.
        middle = (value_range[0] + value_range[1]) / 2
        spread = max(float(np.abs(finite - middle).max()) if finite.size else 0.0, 1e-12)
        return {"colorscale": DIVERGING_SCALE, "zmin": middle - spread, "zmax": middle + spread}
    if aggregation == "mean_abs" or (finite.size and finite.min() >= 0):
        return {"colorscale": SEQUENTIAL_SCALE, "zmin": 0.0, "zmax": max(float(finite.max()) if finite.size else 0.0, 1e-12)}
    limit = max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-12)
    return {"colorscale": DIVERGING_SCALE, "zmin": -limit, "zmax": limit}


def _aggregation_text(values: ProbeValues) -> str:
    if values.bits is None:
        return ""
    return " · per field: mean |bit|" if values.aggregation == "mean_abs" else " · per field: mean of its bits"


def field_probe_heatmap(
    values: ProbeValues,
    *,
    row: int | None = None,
    field_labels: Sequence[str] | None = None,
    title: str | None = None,
    color_rows: Sequence[int] | None = None,
) -> go.Figure:
    """Draw the layer (or block) x field heatmap of a per-field probe for one captured row or the cohort mean.

    ``field_labels`` replaces the field names on the x axis, e.g. with
    ``field = raw value`` for one sample. ``color_rows`` lists captured rows
    whose values set the colour scale together, so that heatmaps of these
    rows drawn side by side share one scale.
    """
    table, lines = field_rows(values, row=row)
    scale_values = table if color_rows is None else np.concatenate([field_rows(values, row=r)[0] for r in color_rows])
    labels = list(field_labels) if field_labels is not None else list(values.field_names)
    info = values.probe
    scope = "cohort mean" if row is None or not info.per_sample else f"captured row {row}"
    if not info.per_sample:
        scope = "the same for every sample"
    figure = go.Figure(
        go.Heatmap(
            z=table,
            x=labels,
            y=lines,
            hovertemplate="%{y}<br>%{x}<br>value %{z:.4f}<extra></extra>",
            colorbar={"title": info.kind},
            **_colors(scale_values, info.value_range, values.aggregation),
        )
    )
    figure.update_layout(
        title=_title(title or f"{info.name}: {scope}", f"{info.kind}{_aggregation_text(values)}"),
        xaxis={"type": "category", "tickangle": -45, "showgrid": False},
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        height=170 + 34 * len(lines) + 6 * max(len(label) for label in labels),
        margin={"l": 10, "r": 10, "t": 90, "b": 10},
    )
    return figure


def probe_histogram(values: ProbeValues) -> go.Figure:
    """Histogram of a probe's values over the captured rows, one trace per layer or block.

    Per-bit probes show the bits (every bit of every row), as the MaskNet
    paper does for its masks; others show the per-field values.
    """
    info = values.probe
    data = values.bits if values.bits is not None else values.values
    if info.per_sample:
        data = np.moveaxis(data, 0, -2) if data.ndim > 2 else data  # (..., rows, last)
    leading = data.shape[:-2] if data.ndim > 2 else ()
    figure = go.Figure()
    names = info.axes[: len(leading)]
    for position in np.ndindex(*leading) if leading else [()]:
        label = " · ".join(f"{name} {index + 1}" for name, index in zip(names, position, strict=True)) or info.name
        figure.add_trace(go.Histogram(x=data[position].ravel(), name=label, nbinsx=HISTOGRAM_BINS, opacity=0.6))
    what = "bits" if values.bits is not None else "values"
    figure.update_layout(
        barmode="overlay",
        title=_title(f"Distribution of {info.name}", f"every {what[:-1]} of every captured row · {info.description}"),
        xaxis_title=f"{info.kind} value",
        yaxis_title=f"{what}",
        height=380,
        margin={"l": 10, "r": 10, "t": 90, "b": 40},
    )
    return figure


def field_strength_bar(values: ProbeValues, *, title: str | None = None) -> go.Figure:
    """Rank fields by their probe value, averaged over layers or blocks and over the captured rows.

    For a bounded signal such as a sigmoid gate, the bars show the distance
    from the neutral middle of its range: 0.5 for a gate in (0, 1), and 1 for
    FinalMLP's gate in (0, 2). Gates that stay near neutral then still differ
    visibly. Fields are ranked by that signed distance.
    """
    strength = values.field_strength()
    info = values.probe
    how = "mean |bit|" if values.aggregation == "mean_abs" and values.bits is not None else "mean value"
    if info.value_range is not None and values.aggregation == "mean":
        middle = (info.value_range[0] + info.value_range[1]) / 2
        strength = strength - middle
        how = f"{how} − {middle:g} (neutral)"
    order = np.argsort(-strength)
    names = [values.field_names[i] for i in order]
    figure = go.Figure(
        go.Bar(
            x=strength[order],
            y=names,
            orientation="h",
            marker_color=[DIVERGING_SCALE[-1][1] if v >= 0 else DIVERGING_SCALE[0][1] for v in strength[order]],
            hovertemplate="%{y}: %{x:.5f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=_title(title or f"Fields ranked by {info.name}", f"{how}, averaged over every other axis and the rows"),
        xaxis_title=how,
        yaxis={"autorange": "reversed", "type": "category"},
        height=140 + 24 * len(names),
        margin={"l": 10, "r": 40, "t": 90, "b": 40},
    )
    return figure


def pair_probe_heatmap(
    matrix: np.ndarray,
    field_names: Sequence[str],
    *,
    title: str,
    subtitle: str = "",
    row_labels: Sequence[str] | None = None,
    value_range: tuple[float, float] | None = None,
    colorbar_title: str = "",
) -> go.Figure:
    """Field x field heatmap of an intrinsic map (attention rows are query fields, columns key fields)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    rows = list(row_labels) if row_labels is not None else list(field_names)
    colors = _colors(matrix, None, "mean")
    if value_range is not None and value_range[0] >= 0:
        colors = {"colorscale": SEQUENTIAL_SCALE, "zmin": 0.0, "zmax": max(float(matrix.max()), 1e-12)}
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(field_names),
            y=rows,
            hovertemplate="%{y} → %{x}<br>%{z:.4f}<extra></extra>",
            colorbar={"title": colorbar_title},
            **colors,
        )
    )
    figure.update_layout(
        title=_title(title, subtitle),
        xaxis={"type": "category", "tickangle": -45, "showgrid": False},
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        height=220 + 34 * len(rows),
        margin={"l": 10, "r": 10, "t": 90, "b": 10},
    )
    return figure


def intrinsic_posthoc_heatmaps(
    intrinsic: np.ndarray,
    post_hoc: np.ndarray,
    field_names: Sequence[str],
    *,
    intrinsic_name: str,
    post_hoc_name: str,
    spearman: float,
) -> go.Figure:
    """Draw the intrinsic map next to the post-hoc map, both as |values| with the diagonal blanked.

    Each panel has its own colour scale because the two maps are in
    different units; the title gives their rank correlation over pairs.
    """
    names = list(field_names)
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=(intrinsic_name, post_hoc_name), horizontal_spacing=0.14, shared_yaxes=True
    )
    for column, matrix in ((1, intrinsic), (2, post_hoc)):
        shown = np.abs(np.asarray(matrix, dtype=np.float64))
        shown[np.eye(len(names), dtype=bool)] = np.nan
        limit = max(float(np.nanmax(shown)) if np.isfinite(shown).any() else 0.0, 1e-12)
        figure.add_trace(
            go.Heatmap(
                z=shown,
                x=names,
                y=names,
                colorscale=SEQUENTIAL_SCALE,
                zmin=0.0,
                zmax=limit,
                # The left panel's colour bar sits in the gap; the shared y axis has labels on the left only.
                colorbar={"x": 0.455 if column == 1 else 1.0, "len": 0.9, "thickness": 14},
                hovertemplate="%{y} × %{x}<br>%{z:.4f}<extra></extra>",
            ),
            row=1,
            col=column,
        )
    correlation = "undefined (a map is constant)" if not np.isfinite(spearman) else f"{spearman:+.3f}"
    figure.update_layout(
        title=_title(
            "Intrinsic map and post-hoc pair interactions",
            f"Spearman rank correlation over field pairs, on |values|: {correlation}",
        ),
        height=260 + 32 * len(names),
        margin={"l": 10, "r": 10, "t": 110, "b": 10},
    )
    figure.update_xaxes(type="category", tickangle=-45, showgrid=False)
    figure.update_yaxes(type="category", autorange="reversed", showgrid=False)
    return figure


def agreement_histogram(correlations: np.ndarray, *, title: str) -> go.Figure:
    """Histogram of per-row rank correlations between an intrinsic and a post-hoc map."""
    finite = correlations[np.isfinite(correlations)]
    # Bins centred on multiples of 0.05, so that correlations of exactly -1 or +1 fall inside a bin.
    figure = go.Figure(go.Histogram(x=finite, xbins={"start": -1.025, "end": 1.025, "size": 0.05}))
    subtitle = (
        f"{finite.size:,} rows · median {np.median(finite):+.3f}" if finite.size else "no row has a defined correlation"
    )
    if finite.size < correlations.size:
        left_out = correlations.size - finite.size
        subtitle += f" · {left_out} row{'s' if left_out != 1 else ''} left out (a constant map)"
    figure.update_layout(
        title=_title(title, subtitle),
        xaxis={"title": "Spearman rank correlation", "range": [-1.1, 1.1]},
        yaxis_title="rows",
        height=340,
        margin={"l": 10, "r": 10, "t": 90, "b": 40},
    )
    return figure
