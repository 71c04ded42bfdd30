"""Field importance page: attributions of a random sample of rows, summarised per field, and two methods compared."""

import numpy as np
import streamlit as st

from workbench import figures
from workbench.app import basket, controls, state
from workbench.explain import METHODS
from workbench.explain.summaries import importance_comparison, rank_correlation

# Completeness gap share above which the page warns (a rule of thumb, not a standard).
GAP_WARNING = 0.01
NO_COMPARISON = "(none)"

st.title("Field importance")
data = state.require_data()

with st.form("importance_form"):
    columns = st.columns(4)
    method = columns[0].selectbox(
        "Method",
        list(METHODS),
        key="importance_method",
        help=" · ".join(f"{name}: {entry.summary}" for name, entry in METHODS.items()),
    )
    baseline = columns[1].selectbox(
        "Baseline", controls.BASELINE_OPTIONS, key="importance_baseline", help=controls.BASELINE_HELP
    )
    output_space = columns[2].selectbox(
        "Output space", controls.OUTPUT_SPACE_OPTIONS, key="importance_space", help=controls.OUTPUT_SPACE_HELP
    )
    compare_with = columns[3].selectbox(
        "Compare with",
        [NO_COMPARISON, *METHODS],
        key="importance_compare_method",
        help="A second method to run on the same rows, baseline and output space, shown side by side below.",
    )
    columns = st.columns(4)
    n_rows = columns[0].number_input(
        "Rows to explain",
        min_value=10,
        max_value=20_000,
        value=1_000,
        step=100,
        key="importance_rows",
        help=(
            "Size of the random sample of data set rows. The cost grows linearly with the rows, times the steps "
            "for Integrated Gradients and times 2**players for the exact methods."
        ),
    )
    n_steps = columns[1].number_input(
        "Integration steps",
        min_value=2,
        max_value=500,
        value=50,
        key="importance_steps",
        help=(
            "Points of the Gauss-Legendre rule along the path from the baseline (Integrated Gradients only). "
            "More steps give a smaller completeness gap."
        ),
    )
    background_rows = controls.background_rows_input(columns[2], key="importance_background_rows")
    seed = columns[3].number_input(
        "Sampling seed",
        min_value=0,
        value=0,
        key="importance_seed",
        help="Seed of the random sample of rows and of the background rows.",
    )
    groups_text = controls.groups_input(key="importance_groups")
    st.form_submit_button("Compute attributions", key="importance_submit")

try:
    groups = state.parse_groups(groups_text)
except ValueError as err:
    st.error(f"The field groups are not valid: {err}")
    st.stop()
settings = state.AttributionSettings(
    method=method,
    baseline=baseline,
    output_space=output_space,
    n_steps=int(n_steps),
    background_rows=int(background_rows),
    groups=groups,
)
try:
    attribution = state.sample_attribution(data, n_rows, seed, settings)
except state.LOAD_ERRORS as err:
    st.error(f"{method} failed on `{data.dataset.name}`: {err}. Change the settings above and try again.")
    st.stop()

entry = METHODS[method]
gap = attribution.relative_completeness_gap
columns = st.columns(3)
columns[0].metric("Rows explained", f"{attribution.n_samples:,}")
columns[1].metric(
    "Completeness gap share",
    f"{attribution.completeness_gap_share:.3%}",
    help=(
        "Mean |sum of attributions − (prediction − base value)| ÷ mean |prediction − base value|: "
        "how much of the output change the attributions miss."
    ),
)
columns[2].metric(
    "Median relative completeness gap",
    f"{np.median(gap):.3%}",
    help=(
        "Rows whose prediction is close to the base value can have a large relative gap, "
        "and the median is robust to them."
    ),
)
if not entry.efficient:
    st.info(
        f"{attribution.method} values are not efficient: they need not add up to prediction − base value, "
        "so the completeness gap is a property of the method, not a numerical error."
    )
elif attribution.completeness_gap_share > GAP_WARNING:
    advice = {"integrated_gradients": "Increase the integration steps."}.get(
        attribution.method, "Increase the budget." if entry.sampled else ""
    )
    st.warning(f"The attributions add up poorly to prediction − base value. {advice}".strip())
st.caption(f"{attribution.describe()} · attributions are in {controls.units_text(attribution.output_space)}.")

provenance = {
    "method": attribution.method,
    "baseline": attribution.baseline,
    "output_space": attribution.output_space,
    "parameters": {**attribution.parameters, "sample_rows": attribution.n_samples, "sample_seed": int(seed)},
}
basket.chart(
    figures.importance_bar(attribution),
    key="importance_bar",
    data=data,
    tables={"importance": attribution.mean_abs().rename("mean_abs_attribution").rename_axis("field").reset_index()},
    text=attribution.describe(),
    **provenance,
)
color_by = st.radio(
    "Colour dots by",
    ["frequency", "attribution"],
    format_func={"frequency": "value frequency in the sample", "attribution": "attribution"}.get,
    horizontal=True,
    key="beeswarm_color",
)
basket.chart(
    figures.attribution_beeswarm(attribution, color_by=color_by),
    key="importance_beeswarm",
    data=data,
    tables={"attributions": attribution.to_frame()},
    text=f"{attribution.describe()} · dots coloured by {color_by}",
    **provenance,
)

if compare_with != NO_COMPARISON:
    st.header("Two methods compared")
    try:
        second = state.sample_attribution(
            data,
            n_rows,
            seed,
            state.AttributionSettings(
                method=compare_with,
                baseline=baseline,
                output_space=output_space,
                n_steps=int(n_steps),
                background_rows=int(background_rows),
                groups=groups,
            ),
        )
    except state.LOAD_ERRORS as err:
        st.error(f"{compare_with} failed on `{data.dataset.name}`: {err}. Choose another method to compare with.")
        st.stop()
    correlation = rank_correlation(attribution, second)
    columns = st.columns(2)
    columns[0].metric(
        "Spearman rank correlation",
        f"{correlation['spearman']:.3f}",
        help="Spearman's rho between the two global importances (mean |attribution| per field); 1 = same order.",
    )
    columns[1].metric(
        "Kendall rank correlation",
        f"{correlation['kendall']:.3f}",
        help="Kendall's tau: (field pairs in the same order − pairs in opposite order) ÷ all field pairs.",
    )
    table = importance_comparison(attribution, second)
    basket.chart(
        figures.importance_comparison_bar(attribution, second),
        key="importance_comparison",
        data=data,
        method=f"{attribution.method} vs {second.method}",
        baseline=attribution.baseline,
        output_space=attribution.output_space,
        parameters={
            "first": attribution.parameters,
            "second": second.parameters,
            "sample_rows": attribution.n_samples,
            "sample_seed": int(seed),
            "spearman": correlation["spearman"],
            "kendall": correlation["kendall"],
        },
        tables={"comparison": table.rename(columns=str).rename_axis("field").reset_index()},
        text=f"{attribution.describe()} · compared with {second.describe()}",
    )
    st.dataframe(
        table, column_config={column: st.column_config.NumberColumn(format="%.4f") for column in table.columns[:2]}
    )
