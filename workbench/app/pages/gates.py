"""Gates & masks page: per-field gates, masks and field weights of the model, for a cohort and for single rows."""

import pandas as pd
import streamlit as st

from workbench import probe_figures
from workbench.app import basket, controls, probe_views, sequence_views, state
from workbench.probes import FIELD_AGGREGATIONS, ProbeValues, field_rows

AGGREGATION_TEXT = {"mean": "mean of the field's bits", "mean_abs": "mean |bit| of the field"}


def field_table(values: ProbeValues, *, row: int | None = None) -> pd.DataFrame:
    """Return the numbers of a field heatmap: one line per layer or block, one column per field."""
    table, lines = field_rows(values, row=row)
    frame = pd.DataFrame(table, columns=list(values.field_names))
    frame.insert(0, "line", lines)
    return frame


st.title("Gates & masks")
data = state.require_data()
model = data.bundle.model
probes = probe_views.field_probes(model)
if not probes:
    st.info(
        f"The {data.bundle.architecture} model declares no gates, masks or field weights. "
        f"Architectures that do: {probe_views.ARCHITECTURES_WITH['gates']}."
        + probe_views.ADAPTED_NOTE
        + (probe_views.SEQUENCE_NOTE if sequence_views.target_attention_probe(model) is not None else "")
    )
    st.stop()

columns = st.columns([2, 1, 2])
by_name = {p.name: p for p in probes}
name = columns[0].selectbox(
    "Signal", list(by_name), format_func=lambda n: probe_views.probe_label(by_name[n]), key="gates_probe"
)
aggregation = columns[1].radio(
    "Per field",
    list(FIELD_AGGREGATIONS),
    format_func=AGGREGATION_TEXT.get,
    key="gates_aggregation",
    help="How the bits of one field's embedding are combined, for signals with one value per embedding bit.",
)
n_rows, seed = controls.cohort_inputs(columns[2], key="gates_cohort")
probe = by_name[name]
st.caption(probe.description)

try:
    cohort_rows, cohort = state.sample_probe_capture(data, n_rows, seed, aggregation)
except state.LOAD_ERRORS as err:
    st.error(f"Reading the probes failed on `{data.dataset.name}`: {err}")
    st.stop()
values = cohort[name]
note = probe_views.flat_signal_note(values.values, probe.value_range, data.bundle.manifest)
if note:
    st.warning(note)

details = {
    "method": "model probe",
    "parameters": {
        "probe": name,
        "probe_kind": probe.kind,
        "aggregation": aggregation,
        "cohort_rows": len(cohort.logits),
        "cohort_seed": int(seed),
    },
    "text": f"{name} ({probe.kind}): {probe.description} · per field: {AGGREGATION_TEXT[aggregation]}",
}
left, right = st.columns([3, 2])
basket.chart(
    probe_figures.field_probe_heatmap(
        values,
        title=f"{name}: mean over {len(cohort.logits):,} rows" if probe.per_sample else f"{name}: the same for every sample",
    ),
    key="gates_cohort_heatmap",
    data=data,
    container=left,
    tables={"cohort_mean": field_table(values)},
    **details,
)
basket.chart(
    probe_figures.field_strength_bar(values),
    key="gates_ranking",
    data=data,
    container=right,
    tables={"field_strength": pd.DataFrame({"field": list(values.field_names), "mean_value": values.field_strength()})},
    **details,
)
if probe.per_sample:
    basket.chart(
        probe_figures.probe_histogram(values),
        key="gates_histogram",
        data=data,
        tables={"values": values.to_frame(cohort_rows)},
        **details,
    )

st.subheader("Two samples side by side")
n_total = len(data.dataset)
columns = st.columns(2)
first = controls.row_input(columns[0], n_total, key="gates_row_a", label="Row A", default=state.random_row(n_total))
second = controls.row_input(columns[1], n_total, key="gates_row_b", label="Row B", default=0)
try:
    pair = state.probe_capture(data, [first, second], aggregation)
except state.LOAD_ERRORS as err:
    st.error(f"Reading the probes of rows {first} and {second} failed: {err}")
    st.stop()
displayed = state.displayed_values(data)
field_names = list(data.bundle.schema.field_names)
for column, position, row in ((columns[0], 0, first), (columns[1], 1, second)):
    labels = probe_views.field_labels(displayed, row, field_names)
    logit = float(pair.logits[position])
    basket.chart(
        probe_figures.field_probe_heatmap(
            pair[name],
            row=position,
            field_labels=labels,
            title=f"Row {row}: {name} (logit {logit:+.3f})",
            color_rows=[0, 1],
        ),
        key=f"gates_sample_{position}",
        data=data,
        container=column,
        method="model probe",
        parameters={"probe": name, "probe_kind": probe.kind, "aggregation": aggregation, "row": int(row)},
        tables={"values": field_table(pair[name], row=position)},
        text=f"Row {row} of {data.dataset.name} · {name} ({probe.kind}) · per field: {AGGREGATION_TEXT[aggregation]}",
    )
