"""Sample explorer page: one row's prediction, raw values and a waterfall of its field attributions.

For a behaviour-sequence model a Sequence explorer section follows: the
row's per-behaviour attribution and counterfactual edits of its history.
"""

import streamlit as st

from workbench import figures
from workbench.app import basket, compare_sections, rows, sequence_sections, sequence_views, state, tables
from workbench.explain import BASELINES

MAX_FILTER_VALUES = 500
MAX_MATCHES = 1_000

st.title("Sample explorer")
data = state.require_data()
dataset = data.dataset

picker, settings = st.columns([4, 1], vertical_alignment="bottom")
with picker:
    mode = st.radio(
        "Pick a row",
        ["index", "filter", "random"],
        format_func={"index": "by row number", "filter": "by field value", "random": "at random"}.get,
        horizontal=True,
        key="explorer_mode",
    )
    columns = st.columns(3)
if mode == "filter":
    field = columns[0].selectbox("Field", rows.filter_fields(dataset.schema), key="explorer_filter_field")
    values = state.displayed_values(data)[field]
    counts = rows.value_counts(values, MAX_FILTER_VALUES)
    value = columns[1].selectbox(
        "Value",
        list(counts.index),
        format_func=lambda v: f"{figures.display_value(v)} ({counts[v]:,} rows)",
        key="explorer_filter_value",
        help=f"The {MAX_FILTER_VALUES} most frequent values, as the model saw them (<OOV> for unknown values).",
    )
    matches = rows.matching_rows(values, value, MAX_MATCHES)
    row = columns[2].selectbox(
        "Matching row",
        [int(r) for r in matches],
        format_func=lambda r: f"row {r}",
        key="explorer_filter_row",
        help=f"The first {MAX_MATCHES:,} rows with this value.",
    )
elif mode == "random":
    columns[0].button("Draw another row", on_click=state.draw_random_row, args=(len(dataset),), key="explorer_draw")
    row = state.random_row(len(dataset))
else:
    row = columns[0].number_input(
        "Row number",
        min_value=0,
        value=0,
        step=1,
        key="explorer_row",
        help=f"0 to {len(dataset) - 1:,} in {dataset.name}",
    )

with settings.popover("Attribution settings", width="stretch"):
    baseline = st.selectbox(
        "Baseline",
        list(BASELINES),
        key="explorer_baseline",
        help=" · ".join(f"{name}: {text}" for name, text in BASELINES.items()),
    )
    n_steps = st.number_input("Integration steps", min_value=2, max_value=500, value=50, key="explorer_steps")
    compare_with = compare_sections.companion_select(data)

if row is None:
    st.info("Pick a row above.")
    st.stop()
try:
    row = rows.check_row(int(row), len(dataset), dataset.name)
    attribution = state.row_attribution(data, row, baseline, n_steps)
except state.LOAD_ERRORS as err:
    st.error(f"Cannot explain this row: {err}")
    st.stop()

prediction = float(attribution.predictions[0])
base = float(attribution.base_values[0])
label = int(dataset.labels[row])
columns = st.columns(4)
columns[0].metric(
    "Predicted CTR",
    figures.format_ctr(figures.sigmoid(prediction)),
    help=f"sigmoid of the logit {prediction:+.4f}",
)
columns[1].metric("Label", "click" if label == 1 else "no click", help=f"{dataset.schema.label} = {label}")
columns[2].metric(
    "Base value CTR",
    figures.format_ctr(figures.sigmoid(base)),
    help=f"the model's output on the baseline input, logit {base:+.4f}",
)
columns[3].metric("Row", f"{row:,}")
if dataset.source_rows is not None:
    st.caption(f"Row {row:,} of the cohort is row {int(state.file_rows(data, [row])[0]):,} of the data file.")

st.caption("Waterfall of field attributions")
values_table = tables.sample_table(attribution, 0, dataset.raw.iloc[row])
main, companion = st.columns(2) if compare_with is not None else (st.container(), None)
if companion is not None:
    main.markdown(f"**{data.bundle.name}**")
    compare_sections.companion_waterfall(data, compare_with, row, baseline=baseline, n_steps=int(n_steps), container=companion)
basket.chart(
    figures.waterfall(attribution, 0, max_fields=20),
    key="explorer_waterfall",
    container=main,
    data=data,
    method=attribution.method,
    baseline=attribution.baseline,
    output_space=attribution.output_space,
    parameters={**attribution.parameters, "row": row},
    tables={"attributions": values_table},
    text=(
        f"Row {row} of {dataset.name} · base value {base:+.4f} → prediction {prediction:+.4f} "
        f"{attribution.output_space} · {attribution.describe()}"
    ),
)
st.markdown("**Field values of this row**")
st.dataframe(
    values_table,
    hide_index=True,
    height="content",
    column_config={"attribution": st.column_config.NumberColumn(format="%+.4f")},
)

if sequence_views.is_sequence_model(data.bundle.model):
    sequence_sections.explorer_section(data, row, baseline=baseline, n_steps=int(n_steps))
