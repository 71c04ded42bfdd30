"""Field importance page: Integrated Gradients on a random sample of rows, summarised per field."""

import numpy as np
import streamlit as st

from workbench import figures
from workbench.app import state
from workbench.explain import BASELINES

# Completeness gap share above which the page suggests more steps (a rule of thumb, not a standard).
GAP_WARNING = 0.01

st.title("Field importance")
data = state.require_data()

with st.form("importance_form"):
    columns = st.columns(4)
    n_rows = columns[0].number_input(
        "Rows to explain",
        min_value=10,
        max_value=20_000,
        value=1_000,
        step=100,
        key="importance_rows",
        help="Size of the random sample of data set rows. The cost grows linearly with rows × steps.",
    )
    n_steps = columns[1].number_input(
        "Integration steps",
        min_value=2,
        max_value=500,
        value=50,
        key="importance_steps",
        help=(
            "Points of the Gauss-Legendre rule along the path from the baseline. "
            "More steps give a smaller completeness gap."
        ),
    )
    baseline = columns[2].selectbox(
        "Baseline",
        list(BASELINES),
        key="importance_baseline",
        help=" · ".join(f"{name}: {text}" for name, text in BASELINES.items()),
    )
    seed = columns[3].number_input("Sampling seed", min_value=0, value=0, key="importance_seed")
    st.form_submit_button("Compute attributions", key="importance_submit")

try:
    attribution = state.sample_attribution(data, n_rows, seed, baseline, n_steps)
except state.LOAD_ERRORS as err:
    st.error(f"Integrated Gradients failed on `{data.dataset.name}`: {err}. Change the settings above and try again.")
    st.stop()

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
if attribution.completeness_gap_share > GAP_WARNING:
    st.warning("The attributions add up poorly to prediction − base value. Increase the integration steps.")
st.caption(f"{attribution.describe()} · attributions are in logit units (log-odds of a click).")

st.plotly_chart(figures.importance_bar(attribution), key="importance_bar")
color_by = st.radio(
    "Colour dots by",
    ["frequency", "attribution"],
    format_func={"frequency": "value frequency in the sample", "attribution": "attribution"}.get,
    horizontal=True,
    key="beeswarm_color",
)
st.plotly_chart(figures.attribution_beeswarm(attribution, color_by=color_by), key="importance_beeswarm")
