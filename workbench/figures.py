"""Plotly figures of field attributions and pair interactions.

Attribution builders take an :class:`~workbench.explain.Attribution`:
global importance, a comparison of two methods, per-field distributions,
per-value effects and one sample's waterfall. Interaction builders take an
:class:`~workbench.explain.Interaction`: the global players × players heatmap
and one sample's pair heatmap. Every builder returns a
``plotly.graph_objects.Figure`` whose subtitle carries the result's
``describe()`` (method or index, baseline, output space), because results
computed with another method or baseline are not comparable. Values are drawn
in the result's output space (``"logit"``: log-odds of a click;
``"probability"``: click probability). Probabilities appear next to logits
only where a logit is converted on purpose.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import plotly.graph_objects as go

from workbench.explain import Attribution, Interaction
from workbench.explain.summaries import importance_comparison, rank_correlation, value_effects

MAX_LABEL_CHARS = 40
"""Maximum length of a raw value in an axis label. Hover texts keep the full value."""

POSITIVE_COLOR = "#d6453d"
NEGATIVE_COLOR = "#2f6db5"
TOTAL_COLOR = "#6b6b6b"

GAP_TOLERANCE = 1e-9
"""Completeness gaps smaller than this (in output units) are float rounding, so the waterfall omits them."""

ColorBy = Literal["frequency", "attribution"]
HeatmapStatistic = Literal["mean_abs", "mean"]
HEATMAP_STATISTICS: dict[str, str] = {"mean_abs": "mean |value|", "mean": "signed mean value"}
"""Statistics a global interaction heatmap can show per pair, with their labels in titles."""

SEQUENTIAL_SCALE = [[0.0, "#f4f4f4"], [1.0, POSITIVE_COLOR]]
DIVERGING_SCALE = [[0.0, NEGATIVE_COLOR], [0.5, "#f4f4f4"], [1.0, POSITIVE_COLOR]]


def sigmoid(logit: float | np.ndarray) -> float | np.ndarray:
    """Convert a logit (log-odds) to a probability."""
    return 1.0 / (1.0 + np.exp(-np.asarray(logit, dtype=np.float64)))


def format_ctr(probability: float) -> str:
    """Format a click probability as a percentage with two decimals."""
    return f"{100.0 * float(probability):.2f} %"


def display_value(raw_value: object, max_chars: int | None = None) -> str:
    """Render a raw field value for a label: ``(empty)`` for an empty string, long values cut with an ellipsis."""
    text = str(raw_value)
    if text == "":
        return "(empty)"
    if max_chars is not None and len(text) > max_chars:
        return text[: max_chars - 1] + "…"
    return text


def field_value_label(field: str, raw_value: object, max_chars: int | None = None) -> str:
    """Return the label ``"field = raw value"`` used on axes and in hover texts."""
    return f"{field} = {display_value(raw_value, max_chars)}"


def _units(result: Attribution | Interaction) -> str:
    return "logit" if result.output_space == "logit" else result.output_space


def _ctr(value: float, output_space: str) -> float:
    """Return the click probability of an output value: the sigmoid of a logit, a probability as it is."""
    return float(sigmoid(value)) if output_space == "logit" else float(value)


def _efficiency_note(attribution: Attribution) -> str:
    """Return a subtitle part for methods whose values need not add up to prediction − base value."""
    if attribution.parameters.get("efficient") is False:
        return " · not efficient: values need not add up to prediction − base value"
    return ""


def _raw_column(attribution: Attribution, field: str) -> np.ndarray:
    if attribution.raw_values is None:
        return np.full(attribution.n_samples, "", dtype=object)
    return attribution.raw_values[field].astype(str).to_numpy(dtype=object)


def _title(text: str, subtitle: str) -> dict:
    return {"text": text, "subtitle": {"text": subtitle}, "x": 0.0, "xanchor": "left"}


def importance_bar(attribution: Attribution, *, max_fields: int | None = None) -> go.Figure:
    """Build a horizontal bar chart of mean |attribution| per field, largest on top.

    The bar lengths are ``attribution.mean_abs()``. With ``max_fields`` only the
    most important fields are drawn, and the subtitle gives the number left out.
    """
    importance = attribution.mean_abs()
    n_hidden = 0
    if max_fields is not None and len(importance) > max_fields:
        n_hidden = len(importance) - max_fields
        importance = importance.iloc[:max_fields]
    units = _units(attribution)
    subtitle = (
        f"{attribution.describe()} · {attribution.n_samples:,} samples"
        f" · completeness gap share {attribution.completeness_gap_share:.2%}"
        f"{_efficiency_note(attribution)}"
    )
    if n_hidden:
        subtitle += f" · {n_hidden} less important fields not shown"

    figure = go.Figure(
        go.Bar(
            x=importance.to_numpy(),
            y=list(importance.index),
            orientation="h",
            marker_color=NEGATIVE_COLOR,
            text=[f"{value:.3f}" for value in importance.to_numpy()],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}<br>mean |attribution|: %{x:.4f} " + units + "<extra></extra>",
        )
    )
    figure.update_layout(
        title=_title("Field importance: mean |attribution| per field", subtitle),
        xaxis_title=f"mean |attribution| ({units})",
        yaxis={"autorange": "reversed", "title": None},
        height=140 + 26 * len(importance),
        margin={"l": 10, "r": 40, "t": 90, "b": 50},
        showlegend=False,
    )
    return figure


def _swarm_offsets(x: np.ndarray, order_key: np.ndarray, n_bins: int = 60, width: float = 0.8) -> np.ndarray:
    """Spread points vertically around 0, as wide as the local density of ``x``.

    Points fall into ``n_bins`` equal bins of ``x``. Inside a bin they alternate
    above and below the centre line in order of ``order_key``, and the densest
    bin spans ``width``, so the outline reads like a violin plot.
    """
    n = x.size
    if n == 0:
        return np.zeros(0)
    low, high = float(np.min(x)), float(np.max(x))
    if high > low:
        bins = np.minimum(((x - low) / (high - low) * n_bins).astype(np.int64), n_bins - 1)
    else:
        bins = np.zeros(n, dtype=np.int64)
    order = np.lexsort((order_key, bins))
    sorted_bins = bins[order]
    starts = np.searchsorted(sorted_bins, sorted_bins, side="left")
    rank = np.arange(n) - starts
    layer = (rank + 1) // 2
    sign = np.where(rank % 2 == 1, 1.0, -1.0)
    max_count = int(np.bincount(bins).max())
    step = width / max(max_count, 2)
    offsets = np.empty(n)
    offsets[order] = sign * layer * step
    return offsets


def _value_frequency(raw: np.ndarray) -> np.ndarray:
    """Share of samples whose raw value equals each sample's raw value."""
    _, inverse, counts = np.unique(raw.astype(str), return_inverse=True, return_counts=True)
    return counts[inverse] / raw.size


def attribution_beeswarm(
    attribution: Attribution,
    *,
    color_by: ColorBy = "frequency",
    max_samples: int = 2000,
    seed: int = 0,
) -> go.Figure:
    """Build a beeswarm-like strip plot: one dot per (sample, field), x = attribution, y = field.

    Fields are ordered by mean |attribution|, most important on top. ``color_by``
    is ``"frequency"`` (share of the attributed samples that have the same raw
    value in that field, so rare values stand out) or ``"attribution"``. Hover
    texts show ``field = raw value``, the attribution and the data set row. When
    there are more than ``max_samples`` samples, a seeded random subset is drawn
    and the subtitle notes it.
    """
    if color_by not in ("frequency", "attribution"):
        msg = f"color_by must be 'frequency' or 'attribution'; got {color_by!r}"
        raise ValueError(msg)
    units = _units(attribution)
    fields = list(attribution.mean_abs().index)
    positions = np.arange(attribution.n_samples)
    if attribution.n_samples > max_samples:
        positions = np.sort(np.random.default_rng(seed).choice(attribution.n_samples, max_samples, replace=False))
    column_of = {name: i for i, name in enumerate(attribution.field_names)}

    xs, ys, colors, texts = [], [], [], []
    for level, name in enumerate(fields):
        raw_all = _raw_column(attribution, name)
        frequency = _value_frequency(raw_all)[positions]
        x = attribution.values[positions, column_of[name]]
        color = frequency if color_by == "frequency" else x
        xs.append(x)
        # Ordering a bin by frequency groups equal values. Ordering by x would draw chevrons.
        order_key = frequency if color_by == "frequency" else np.arange(x.size)
        ys.append(level + _swarm_offsets(x, order_key))
        colors.append(color)
        texts.extend(
            f"{field_value_label(name, raw)}<br>attribution: {value:+.4f} {units}<br>row {row}"
            for raw, value, row in zip(raw_all[positions], x, attribution.rows[positions], strict=True)
        )

    if color_by == "frequency":
        marker = {"colorscale": "Viridis", "cmin": 0.0, "cmax": 1.0, "colorbar": {"title": "value<br>frequency"}}
    else:
        limit = max(float(np.max(np.abs(np.concatenate(colors)))) if colors else 0.0, 1e-12)
        marker = {
            # Grey rather than white at 0, so that small attributions stay visible on a white background.
            "colorscale": [[0.0, NEGATIVE_COLOR], [0.5, "#c8c8c8"], [1.0, POSITIVE_COLOR]],
            "cmin": -limit,
            "cmax": limit,
            "colorbar": {"title": f"attribution<br>({units})"},
        }
    subtitle = attribution.describe() + f" · {positions.size:,} samples"
    if positions.size < attribution.n_samples:
        subtitle += f" (random subset of {attribution.n_samples:,})"

    figure = go.Figure(
        go.Scatter(
            x=np.concatenate(xs) if xs else [],
            y=np.concatenate(ys) if ys else [],
            mode="markers",
            marker={"color": np.concatenate(colors) if colors else [], "size": 4, "opacity": 0.75, **marker},
            text=texts,
            hovertemplate="%{text}<extra></extra>",
        )
    )
    figure.add_vline(x=0.0, line_width=1, line_color=TOTAL_COLOR)
    figure.update_layout(
        title=_title("Attribution per field and sample", subtitle),
        xaxis_title=f"attribution ({units}), right of 0 raises the predicted CTR",
        yaxis={
            "tickvals": list(range(len(fields))),
            "ticktext": fields,
            "autorange": "reversed",
            "showgrid": False,
            "zeroline": False,
        },
        height=140 + 34 * len(fields),
        margin={"l": 10, "r": 10, "t": 90, "b": 50},
        showlegend=False,
    )
    return figure


def waterfall(attribution: Attribution, position: int = 0, *, max_fields: int | None = None) -> go.Figure:
    """Build a waterfall from the base value to one sample's prediction, one step per field.

    ``position`` indexes the samples of ``attribution`` (not the data set row).
    Steps are sorted by |attribution|, largest first, and labelled ``field =
    raw value``. With ``max_fields`` the smallest steps are merged into one
    "other fields" step. When the attributions do not add up exactly to
    prediction minus base value (Integrated Gradients approximates an
    integral), the difference is drawn as its own "completeness gap" step, so
    the final total equals the model's prediction up to ``GAP_TOLERANCE``.
    The x axis is in the output space, and base value and prediction are also
    given as probabilities.
    """
    sample = attribution.sample(position)
    sample = sample.reindex(sample["attribution"].abs().sort_values(ascending=False, kind="stable").index)
    units = _units(attribution)
    base = float(attribution.base_values[position])
    prediction = float(attribution.predictions[position])
    base_ctr = format_ctr(_ctr(base, attribution.output_space))
    prediction_ctr = format_ctr(_ctr(prediction, attribution.output_space))
    row = int(attribution.rows[position])

    labels = [f"base value: {base_ctr}"]
    hover = [f"base value (baseline input)<br>{base:+.4f} {units}, CTR {base_ctr}"]
    values = [base]
    measures = ["absolute"]
    texts = [f"{base:+.3f}"]
    largest = sample if max_fields is None else sample.iloc[:max_fields]
    for name, raw, value in zip(largest["field"], largest["raw_value"], largest["attribution"], strict=True):
        labels.append(field_value_label(name, raw, MAX_LABEL_CHARS))
        hover.append(f"{field_value_label(name, raw)}<br>attribution: {value:+.4f} {units}")
        values.append(float(value))
        measures.append("relative")
        texts.append(f"{value:+.3f}")
    rest = sample.iloc[len(largest) :]
    if len(rest):
        value = float(rest["attribution"].sum())
        labels.append(f"{len(rest)} other fields")
        hover.append(f"{len(rest)} other fields: {', '.join(rest['field'])}<br>sum: {value:+.4f} {units}")
        values.append(value)
        measures.append("relative")
        texts.append(f"{value:+.3f}")
    gap = prediction - base - float(sample["attribution"].sum())
    if abs(gap) > GAP_TOLERANCE:
        labels.append("completeness gap")
        hover.append(
            f"prediction − base value − sum of attributions<br>{gap:+.2e} {units} "
            "(numerical error of the attribution method)"
        )
        values.append(gap)
        measures.append("relative")
        texts.append(f"{gap:+.1e}")
    labels.append(f"prediction: {prediction_ctr}")
    hover.append(f"prediction<br>{prediction:+.4f} {units}, CTR {prediction_ctr}")
    # Plotly computes a "total" bar from the running sum and ignores its x value.
    # The prediction is stored there anyway, so readers of the figure data find it.
    values.append(prediction)
    measures.append("total")
    texts.append(f"{prediction:+.3f}")

    figure = go.Figure(
        go.Waterfall(
            orientation="h",
            measure=measures,
            y=labels,
            x=values,
            text=texts,
            # Base value and prediction bars start at 0, so their text goes inside to stay clear of the labels.
            textposition=["inside" if measure != "relative" else "outside" for measure in measures],
            cliponaxis=False,
            hovertext=hover,
            hovertemplate="%{hovertext}<extra></extra>",
            increasing={"marker": {"color": POSITIVE_COLOR}},
            decreasing={"marker": {"color": NEGATIVE_COLOR}},
            totals={"marker": {"color": TOTAL_COLOR}},
            connector={"line": {"color": "#b0b0b0", "width": 1}},
        )
    )
    # Pad the axis so that text outside the longest bars does not run into the field labels.
    running = np.cumsum(values[:-1])
    low, high = min(0.0, float(running.min())), max(0.0, float(running.max()))
    padding = 0.15 * max(high - low, 1e-6)
    subtitle = (
        f"{attribution.describe()} · base value {base:+.3f} {units} (CTR {base_ctr})"
        f" → prediction {prediction:+.3f} {units} (CTR {prediction_ctr})"
    )
    figure.update_layout(
        title=_title(f"Field attributions for row {row}", subtitle),
        xaxis={
            "title": f"{units} (log-odds of a click)" if units == "logit" else units,
            "range": [low - padding, high + padding],
        },
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=150 + 26 * len(labels),
        margin={"l": 10, "r": 60, "t": 90, "b": 50},
        showlegend=False,
    )
    return figure


# --- comparing methods and reading raw values -------------------------------------


def importance_comparison_bar(first: Attribution, second: Attribution) -> go.Figure:
    """Build a grouped bar chart of two attributions' mean |attribution| per field, with their rank correlation.

    Fields are ordered by ``first``'s importance, most important on top. The
    bar lengths are the two ``mean_abs()`` series, and the subtitle gives each
    attribution's ``describe()`` and Spearman's rho and Kendall's tau between
    the two importances (:func:`workbench.explain.summaries.rank_correlation`).
    """
    table = importance_comparison(first, second)
    correlation = rank_correlation(first, second)
    label_first, label_second = table.columns[0], table.columns[1]
    units = _units(first)
    figure = go.Figure()
    for label, color in ((label_first, NEGATIVE_COLOR), (label_second, POSITIVE_COLOR)):
        figure.add_trace(
            go.Bar(
                name=label,
                x=table[label].to_numpy(),
                y=list(table.index),
                orientation="h",
                marker_color=color,
                hovertemplate="%{y}<br>" + label + ": %{x:.4f} " + units + "<extra></extra>",
            )
        )
    subtitle = (
        f"{label_first}: {first.describe()}<br>{label_second}: {second.describe()}"
        f"<br>rank correlation over {len(table)} fields: Spearman ρ = {correlation['spearman']:.3f},"
        f" Kendall τ = {correlation['kendall']:.3f}"
    )
    figure.update_layout(
        title=_title("Field importance by two methods: mean |attribution| per field", subtitle),
        barmode="group",
        xaxis_title=f"mean |attribution| ({units})",
        yaxis={"autorange": "reversed", "title": None},
        height=200 + 40 * len(table),
        margin={"l": 10, "r": 40, "t": 130, "b": 50},
        legend={"orientation": "h", "yanchor": "top", "y": -0.08, "x": 0.0},
    )
    return figure


def value_effects_bar(attribution: Attribution, field: str, *, max_values: int = 30, min_count: int = 1) -> go.Figure:
    """Build a bar chart of the mean attribution of each raw value of one field, largest rise on top.

    The bars are :func:`workbench.explain.summaries.value_effects`, which the
    hover texts complete with each value's sample count and standard
    deviation. With more than ``max_values`` raw values, the ``max_values // 2``
    largest rises and the same number of largest drops are kept, and the
    subtitle gives the number left out.
    """
    table = value_effects(attribution, field, min_count=min_count)
    n_values = len(table)
    if n_values > max_values:
        half = max(max_values // 2, 1)
        table = table.iloc[list(range(half)) + list(range(n_values - half, n_values))]
    units = _units(attribution)
    means = table["mean_attribution"].to_numpy()
    subtitle = f"{attribution.describe()} · {attribution.n_samples:,} samples, {n_values:,} distinct values"
    if len(table) < n_values:
        subtitle += f" · {n_values - len(table):,} values with smaller means not shown"
    figure = go.Figure(
        go.Bar(
            x=means,
            y=[display_value(value, MAX_LABEL_CHARS) for value in table["raw_value"]],
            orientation="h",
            marker_color=[POSITIVE_COLOR if mean > 0 else NEGATIVE_COLOR for mean in means],
            text=[f"n = {count:,}" for count in table["count"]],
            textposition="outside",
            cliponaxis=False,
            customdata=np.column_stack([table["count"].to_numpy(), table["std_attribution"].to_numpy()]),
            hovertext=[field_value_label(field, value) for value in table["raw_value"]],
            hovertemplate=(
                "%{hovertext}<br>mean attribution: %{x:+.4f} " + units
                + "<br>samples: %{customdata[0]:,}<br>standard deviation: %{customdata[1]:.4f}<extra></extra>"
            ),
        )
    )
    figure.add_vline(x=0.0, line_width=1, line_color=TOTAL_COLOR)
    figure.update_layout(
        title=_title(f"Mean attribution per value of {field}", subtitle),
        xaxis_title=f"mean attribution ({units}), right of 0 raises the predicted CTR",
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=140 + 24 * len(table),
        margin={"l": 10, "r": 60, "t": 90, "b": 50},
        showlegend=False,
    )
    return figure


# --- pair interactions --------------------------------------------------------------


def _symmetric_limit(values: np.ndarray) -> float:
    return max(float(np.max(np.abs(values))) if values.size else 0.0, 1e-12)


PAIR_NOISE_FLOOR = 1e-6
"""Pair values below this (logit or probability units) are float32 rounding, not interactions.

The colour scale of a pair heatmap never stretches below it, so a model without
interactions (such as LR) shows an empty map instead of magnified noise.
"""


def interaction_heatmap(
    interaction: Interaction, statistic: HeatmapStatistic = "mean_abs", *, clickable: bool = True
) -> go.Figure:
    """Build the players × players heatmap of a global pair statistic, with one clickable marker per pair.

    ``statistic`` is ``"mean_abs"`` (cell ``[i, j]`` is ``interaction.mean_abs()``
    there) or ``"mean"`` (``interaction.mean()``, drawn on a colour scale
    symmetric around 0). The diagonal is 0, because a player forms no pair
    with itself. The heatmap is trace 0. Trace 1 is an invisible scatter
    marker at the centre of every off-diagonal cell, whose ``customdata`` is
    ``[i, j]``: plotly heatmaps emit no selection events, so this trace is
    what a click selects (for Streamlit's ``on_select``) and what shows the
    hover text. ``clickable=False`` leaves the click hint out of the subtitle,
    for figures that go into a static report.
    """
    if statistic not in HEATMAP_STATISTICS:
        msg = f"statistic must be one of {', '.join(HEATMAP_STATISTICS)}; got {statistic!r}"
        raise ValueError(msg)
    names = list(interaction.player_names)
    n_players = len(names)
    matrix = (interaction.mean_abs() if statistic == "mean_abs" else interaction.mean()).to_numpy()
    signed = interaction.mean().to_numpy()
    units = _units(interaction)
    largest = float(np.abs(matrix).max()) if matrix.size else 0.0
    if statistic == "mean_abs":
        colors = {"colorscale": SEQUENTIAL_SCALE, "zmin": 0.0, "zmax": max(largest, PAIR_NOISE_FLOOR)}
    else:
        limit = max(_symmetric_limit(matrix), PAIR_NOISE_FLOOR)
        colors = {"colorscale": DIVERGING_SCALE, "zmin": -limit, "zmax": limit}

    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=names,
            y=names,
            hoverinfo="skip",
            colorbar={"title": f"{HEATMAP_STATISTICS[statistic]}<br>({units})"},
            **colors,
        )
    )
    first, second = np.nonzero(~np.eye(n_players, dtype=bool))
    figure.add_trace(
        go.Scatter(
            x=[names[j] for j in second],
            y=[names[i] for i in first],
            mode="markers",
            marker={"symbol": "square", "size": 30, "opacity": 0.0, "color": TOTAL_COLOR},
            customdata=np.column_stack([first, second]),
            text=[
                f"{names[i]} × {names[j]}<br>mean |{interaction.index}|: {abs_value:.4f} {units}"
                f"<br>signed mean: {signed_value:+.4f} {units}"
                for i, j, abs_value, signed_value in zip(
                    first, second, interaction.mean_abs().to_numpy()[first, second], signed[first, second], strict=True
                )
            ],
            hovertemplate="%{text}<extra></extra>",
            showlegend=False,
        )
    )
    subtitle = f"{interaction.describe()} · {interaction.n_samples:,} samples"
    if largest < PAIR_NOISE_FLOOR:
        subtitle += f" · every pair is below {PAIR_NOISE_FLOOR:g}: no interactions beyond float32 rounding"
    if clickable:
        subtitle += " · click a cell to see examples"
    figure.update_layout(
        title=_title(f"Pair interactions: {HEATMAP_STATISTICS[statistic]} of {interaction.index}", subtitle),
        xaxis={"type": "category", "tickangle": -45, "showgrid": False},
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        height=200 + 36 * n_players,
        margin={"l": 10, "r": 10, "t": 90, "b": 10},
        clickmode="event+select",
        dragmode=False,
    )
    return figure


def sample_interaction_heatmap(interaction: Interaction, position: int) -> go.Figure:
    """Build the signed pair heatmap of one sample, with ``player = raw value`` labels on the y axis.

    ``position`` indexes the samples of ``interaction`` (not the data set
    row). Cell ``[i, j]`` is ``interaction.pairs[position, i, j]``, and the
    diagonal is 0. The hover text adds both players' main effects.
    """
    if not 0 <= position < interaction.n_samples:
        msg = f"sample position {position} is out of range (0..{interaction.n_samples - 1})"
        raise IndexError(msg)
    names = list(interaction.player_names)
    raw = (
        interaction.raw_values.iloc[position].astype(str).tolist()
        if interaction.raw_values is not None
        else [""] * len(names)
    )
    labels = [field_value_label(name, value, MAX_LABEL_CHARS) for name, value in zip(names, raw, strict=True)]
    pairs = interaction.pairs[position]
    main = interaction.main_effects[position]
    units = _units(interaction)
    limit = _symmetric_limit(pairs)
    hover = [
        [
            f"{labels[i]} × {labels[j]}<br>{interaction.index}: {pairs[i, j]:+.4f} {units}"
            f"<br>main effects: {main[i]:+.4f} and {main[j]:+.4f}"
            if i != j
            else f"{labels[i]}<br>main effect: {main[i]:+.4f} {units} (no pair)"
            for j in range(len(names))
        ]
        for i in range(len(names))
    ]
    prediction = float(interaction.predictions[position])
    base = float(interaction.base_values[position])
    subtitle = (
        f"{interaction.describe()} · base value {base:+.3f} → prediction {prediction:+.3f} {units}"
        f" (CTR {format_ctr(_ctr(prediction, interaction.output_space))})"
    )
    figure = go.Figure(
        go.Heatmap(
            z=pairs,
            x=names,
            y=labels,
            colorscale=DIVERGING_SCALE,
            zmin=-limit,
            zmax=limit,
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            colorbar={"title": f"{interaction.index}<br>({units})"},
        )
    )
    figure.update_layout(
        title=_title(f"Pair interactions for row {int(interaction.rows[position])}", subtitle),
        xaxis={"type": "category", "tickangle": -45, "showgrid": False},
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        height=240 + 36 * len(names),
        margin={"l": 10, "r": 10, "t": 90, "b": 10},
    )
    return figure
