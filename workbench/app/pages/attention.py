"""Attention page: field x field attention of one row, per layer and head, and the cohort's mean map.

For a behaviour-sequence model it shows the target attention over one row's
history and the cohort's mean weight by position and by item instead.
"""

import numpy as np
import pandas as pd
import streamlit as st

from workbench import probe_figures
from workbench.app import basket, controls, probe_views, sequence_sections, sequence_views, state
from workbench.probes import pair_map


def field_matrix(matrix: np.ndarray, field_names: list[str]) -> pd.DataFrame:
    """Return a field x field map as a table: a ``query_field`` column, then one column per attended field."""
    return pd.DataFrame(matrix, index=pd.Index(field_names, name="query_field"), columns=field_names).reset_index()


st.title("Attention")
data = state.require_data()
model = data.bundle.model
target_probe = sequence_views.target_attention_probe(model)
if target_probe is not None:
    sequence_sections.attention_view(data, target_probe)
    st.stop()
probes = probe_views.attention_probes(model)
if not probes:
    st.info(
        f"The {data.bundle.architecture} model has no attention over fields or past behaviours. "
        f"Architectures that do: {probe_views.ARCHITECTURES_WITH['attention']}; "
        f"{probe_views.ARCHITECTURES_WITH['target_attention']}."
        + probe_views.ADAPTED_NOTE
    )
    st.stop()

by_name = {p.name: p for p in probes}
name = st.selectbox("Attention", list(by_name), format_func=lambda n: probe_views.probe_label(by_name[n]), key="attention_probe")
probe = by_name[name]
st.caption(probe.description)
n_total = len(data.dataset)
columns = st.columns(4)
row = controls.row_input(columns[0], n_total, key="attention_row", default=state.random_row(n_total))
try:
    single = state.probe_capture(data, [row])
except state.LOAD_ERRORS as err:
    st.error(f"Reading the attention of row {row} failed: {err}")
    st.stop()
values = single[name]
shape = dict(zip(probe.axes, values.for_row(0).shape, strict=True))
leading = {axis: shape[axis] for axis in ("layer", "head") if axis in shape}
select = controls.axis_selectors(columns[1:3], leading, key="attention")
where = ", ".join(f"{axis} {index + 1}" for axis, index in select.items()) or "mean over layers and heads"

note = probe_views.flat_signal_note(values.values, probe.value_range, data.bundle.manifest)
if note:
    st.warning(note)

displayed = state.displayed_values(data)
field_names = list(data.bundle.schema.field_names)
labels = probe_views.field_labels(displayed, row, field_names)
row_map = pair_map(values, row=0, select=select)
basket.chart(
    probe_figures.pair_probe_heatmap(
        row_map,
        labels,
        row_labels=labels,
        title=f"Attention of row {row} ({where})",
        subtitle="row = query field, column = the field it attends to; each row sums to 1 per head",
        value_range=probe.value_range,
        colorbar_title="weight",
    ),
    key="attention_row_map",
    data=data,
    method="model probe",
    parameters={"probe": name, "probe_kind": probe.kind, "row": int(row), "selected_axes": select},
    tables={"attention": field_matrix(row_map, field_names)},
    text=f"Row {row} of {data.dataset.name} · {name}: {probe.description} · {where}",
)

st.subheader("Cohort mean")
n_rows, seed = controls.cohort_inputs(st, key="attention_cohort")
try:
    _, cohort = state.sample_probe_capture(data, n_rows, seed)
except state.LOAD_ERRORS as err:
    st.error(f"Reading the attention of the cohort failed: {err}")
    st.stop()
cohort_map = pair_map(cohort[name], select=select)
basket.chart(
    probe_figures.pair_probe_heatmap(
        cohort_map,
        field_names,
        title=f"Mean attention over {len(cohort.logits):,} rows ({where})",
        subtitle="global map: the average over rows of each row's attention weights",
        value_range=probe.value_range,
        colorbar_title="weight",
    ),
    key="attention_cohort_map",
    data=data,
    method="model probe",
    parameters={
        "probe": name,
        "probe_kind": probe.kind,
        "cohort_rows": len(cohort.logits),
        "cohort_seed": int(seed),
        "selected_axes": select,
    },
    tables={"mean_attention": field_matrix(cohort_map, field_names)},
    text=f"Mean over {len(cohort.logits):,} rows of {data.dataset.name} · {name}: {probe.description} · {where}",
)
