"""Plotly figures of explainer faithfulness: deletion and insertion curves, and their areas.

Each builder takes a :class:`~workbench.faithfulness.FaithfulnessResult` and
returns a ``plotly.graph_objects.Figure``. The numbers come from the result's
methods, and this module only lays them out. Values are in the result's output
space (``"logit"``: log-odds of a click; ``"probability"``: click probability).
"""

from __future__ import annotations

import plotly.graph_objects as go

from workbench.faithfulness import ABLATION_MODES, RANDOM_NAME, FaithfulnessResult
from workbench.figures import NEGATIVE_COLOR, POSITIVE_COLOR, TOTAL_COLOR, _title

EXPLAINER_COLORS = (NEGATIVE_COLOR, POSITIVE_COLOR, "#2a9d55", "#8c5bb8", "#d98a1f", "#1f9fb4", "#b5478c")
"""Line colours of the explainers, in the order they were compared; they repeat after seven."""

RANDOM_BAND_COLOR = "rgba(107, 107, 107, 0.18)"

CURVE_PLOT_HEIGHT = 380
"""Pixels of a curve figure above its bottom margin: title, subtitle and plot area."""
AXIS_SPACE = 60
"""Pixels below the plot area for the x tick labels and the x axis title."""
LEGEND_ROW_HEIGHT = 22
"""Pixels per legend entry. The bottom margin leaves room for one entry per row, the most a narrow chart needs."""

_MODE_TEXT = {
    "deletion": ("Deletion curves", "removed", "lower AUC is more faithful"),
    "insertion": ("Insertion curves", "added", "higher AUC is more faithful"),
}


def _units(result: FaithfulnessResult) -> str:
    return "logit" if result.output_space == "logit" else result.output_space


def _auc_label(result: FaithfulnessResult, explainer: str, mode: str) -> str:
    return (
        f"{explainer} · AUC {result.auc_mean(explainer, mode):.3f}"
        f" ± {result.auc_standard_error(explainer, mode):.3f}"
    )


def _legend_below(n_entries: int) -> tuple[dict, int]:
    """Return a legend anchored to the bottom of the figure and the bottom margin that keeps it under the x title.

    The legend is placed against the figure's bottom edge (``yref="container"``),
    and the margin leaves room for the tick labels, the axis title and
    ``n_entries`` rows of entries, so the legend never covers the axis title.
    """
    legend = {"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0, "x": 0.0}
    return legend, AXIS_SPACE + LEGEND_ROW_HEIGHT * n_entries


def ablation_curve_figure(result: FaithfulnessResult, mode: str = "deletion") -> go.Figure:
    """Draw the sample-mean deletion or insertion curve of every explainer and of the random orders.

    One solid line per explainer and a dashed line for the random orders,
    with a band from the lowest to the highest sample-mean curve of the
    single random draws (:meth:`FaithfulnessResult.random_range`). The legend,
    below the x axis title, gives each mean AUC with its standard error over
    the samples. The subtitle has two lines, so that it fits a chart half the
    page wide.
    """
    if mode not in ABLATION_MODES:
        msg = f"unknown mode {mode!r}; valid: {', '.join(ABLATION_MODES)}"
        raise ValueError(msg)
    title, verb, direction = _MODE_TEXT[mode]
    units = _units(result)
    steps = list(range(result.n_players + 1))
    fractions = [step / result.n_players for step in steps]
    figure = go.Figure()

    low, high = result.random_range(mode)
    n_random = result.parameters.get("n_random", "?")
    figure.add_trace(
        go.Scatter(
            x=fractions + fractions[::-1],
            y=list(high) + list(low[::-1]),
            fill="toself",
            fillcolor=RANDOM_BAND_COLOR,
            line={"width": 0},
            hoverinfo="skip",
            name=f"random: range of {n_random} draws",
            showlegend=True,
        )
    )
    for position, explainer in enumerate(result.explainers):
        is_random = explainer == RANDOM_NAME
        color = TOTAL_COLOR if is_random else EXPLAINER_COLORS[position % len(EXPLAINER_COLORS)]
        figure.add_trace(
            go.Scatter(
                x=fractions,
                y=result.mean_curve(explainer, mode),
                customdata=steps,
                mode="lines+markers",
                name=_auc_label(result, explainer, mode),
                line={"color": color, "dash": "dash" if is_random else "solid", "width": 2},
                marker={"size": 5},
                hovertemplate=(
                    f"{explainer}<br>%{{customdata}} of {result.n_players} players {verb}"
                    f"<br>mean output %{{y:.4f}} {units}<extra></extra>"
                ),
            )
        )

    subtitle = (
        f"mean over {result.n_samples:,} samples · baseline: {result.baseline} · output: {result.output_space}"
        f"<br>random: mean of {n_random} orders per sample · {direction}"
    )
    legend, bottom = _legend_below(len(figure.data))
    figure.update_layout(
        title=_title(f"{title}: players {verb} in order of decreasing score", subtitle),
        xaxis={"title": f"share of the {result.n_players} players {verb}", "range": [0, 1], "tickformat": ".0%"},
        yaxis_title=f"mean model output ({units})",
        height=CURVE_PLOT_HEIGHT + bottom,
        margin={"l": 10, "r": 10, "t": 110, "b": bottom},
        legend=legend,
    )
    return figure


def auc_bar(result: FaithfulnessResult) -> go.Figure:
    """Draw the mean deletion and insertion AUC of each explainer with standard-error bars.

    The hover text adds the paired difference to the random orders and, when
    computed, the mean infidelity (squared output units). The legend sits
    below the x axis title.
    """
    table = result.to_frame()
    units = _units(result)
    figure = go.Figure()
    for mode, color in (("deletion", NEGATIVE_COLOR), ("insertion", POSITIVE_COLOR)):
        lines = table[table["mode"] == mode]
        figure.add_trace(
            go.Bar(
                name=f"{mode} ({_MODE_TEXT[mode][2]})",
                x=lines["auc_mean"],
                y=lines["explainer"],
                orientation="h",
                marker_color=color,
                error_x={"type": "data", "array": lines["auc_se"].fillna(0.0).to_numpy()},
                customdata=lines[["auc_se", "auc_minus_random_mean", "auc_minus_random_se", "infidelity_mean"]],
                hovertemplate=(
                    f"%{{y}} · {mode}<br>AUC %{{x:.4f}} ± %{{customdata[0]:.4f}} {units}"
                    "<br>minus random: %{customdata[1]:.4f} ± %{customdata[2]:.4f}"
                    "<br>infidelity: %{customdata[3]:.4f}<extra></extra>"
                ),
            )
        )
    subtitle = (
        f"{result.n_samples:,} samples · baseline: {result.baseline} · output: {result.output_space}"
        " · bars: standard error over samples"
    )
    legend, bottom = _legend_below(len(figure.data))
    figure.update_layout(
        title=_title("Area under the deletion and insertion curves", subtitle),
        barmode="group",
        xaxis_title=f"mean AUC ({units})",
        yaxis={"autorange": "reversed", "title": None, "type": "category"},
        height=150 + bottom + 50 * len(result.explainers),
        margin={"l": 10, "r": 40, "t": 90, "b": bottom},
        legend=legend,
    )
    return figure
