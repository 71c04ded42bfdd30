"""Intrinsic vs post-hoc page: a model's own pair map next to its exact pair interactions, with their rank correlation."""

import numpy as np
import pandas as pd
import streamlit as st

from workbench import probe_figures
from workbench.app import basket, controls, probe_views, sequence_views, state
from workbench.explain import INTERACTION_INDICES
from workbench.probes import pair_agreement_per_row, pair_map, pair_map_agreement
STARTED_KEY = "intrinsic_started"

st.title("Intrinsic vs post-hoc")
data = state.require_data()
model = data.bundle.model
probes = probe_views.pair_probes(model)
if not probes:
    st.info(
        f"The {data.bundle.architecture} model has no intrinsic field-pair map. "
        f"Architectures that do: {probe_views.ARCHITECTURES_WITH['pairs']}."
        + probe_views.ADAPTED_NOTE
        + (probe_views.SEQUENCE_NOTE if sequence_views.target_attention_probe(model) is not None else "")
    )
    st.stop()
by_name = {p.name: p for p in probes}

with st.form("intrinsic_form"):
    columns = st.columns(3)
    name = columns[0].selectbox(
        "Intrinsic map", list(by_name), format_func=lambda n: probe_views.probe_label(by_name[n]), key="intrinsic_probe"
    )
    index = columns[1].selectbox(
        "Post-hoc index",
        list(INTERACTION_INDICES),
        key="intrinsic_index",
        help=" · ".join(f"{key}: {text}" for key, text in INTERACTION_INDICES.items()),
    )
    baseline = columns[2].selectbox(
        "Baseline", controls.BASELINE_OPTIONS, key="intrinsic_baseline", help=controls.BASELINE_HELP
    )
    columns = st.columns(3)
    n_rows = controls.exact_rows_input(
        columns[0],
        key="intrinsic_rows",
        help_text="Size of the random sample of rows. Each row costs 2**fields forward passes for the post-hoc map.",
    )
    seed = columns[1].number_input("Sampling seed", min_value=0, value=0, key="intrinsic_seed")
    background_rows = controls.background_rows_input(columns[2], key="intrinsic_background_rows")
    if st.form_submit_button("Compare", key="intrinsic_submit"):
        # Remember which bundle and data the button was pressed for: another choice in the sidebar waits again.
        st.session_state[STARTED_KEY] = data.key

probe = by_name[name]
st.caption(probe.description)
if st.session_state.get(STARTED_KEY) != data.key:
    n_fields = len(data.bundle.schema.fields)
    st.info(
        f"The post-hoc map needs exact pair interactions: 2**{n_fields} = {2**n_fields:,} coalitions per row. "
        "Press **Compare** to start."
    )
    st.stop()

settings = state.AttributionSettings(baseline=baseline, output_space="logit", background_rows=int(background_rows))
try:
    result = state.sample_exact(data, n_rows, seed, settings)
    interaction = result.interactions[index]
    capture = state.probe_capture(data, interaction.rows, "mean")
except state.LOAD_ERRORS as err:
    st.error(f"The comparison failed on `{data.dataset.name}`: {err}. Change the settings above and try again.")
    st.stop()
values = capture[name]

shape = dict(zip(probe.axes, values.cohort_mean().shape, strict=True))
leading = {axis: shape[axis] for axis in probe.axes[:-2]}
select = controls.axis_selectors(st.columns(max(len(leading), 1)), leading, key="intrinsic")

field_names = list(data.bundle.schema.field_names)
intrinsic = pair_map(values, select=select, absolute=True)
post_hoc = interaction.mean_abs().loc[field_names, field_names].to_numpy()
agreement = pair_map_agreement(intrinsic, post_hoc)
note = probe_views.flat_signal_note(
    intrinsic[~np.eye(len(field_names), dtype=bool)], probe.value_range, data.bundle.manifest
)
if note:
    st.warning(note + " A rank correlation of a nearly constant map rests on tiny differences.")
columns = st.columns(3)
correlation = agreement["spearman"]
correlation_text = "undefined" if np.isnan(correlation) else f"{correlation:+.3f}"
columns[0].metric("Spearman (global maps)", correlation_text)
columns[1].metric("Field pairs", int(agreement["n_pairs"]))
columns[2].metric("Rows", f"{interaction.n_samples:,}")
details = {
    "method": f"model probe {name} vs exact {index}",
    "baseline": interaction.baseline,
    "output_space": interaction.output_space,
    "parameters": {
        **interaction.parameters,
        "probe": name,
        "probe_kind": probe.kind,
        "index": index,
        "selected_axes": select,
        "sample_rows": interaction.n_samples,
        "sample_seed": int(seed),
    },
}


def field_matrix(matrix: np.ndarray) -> pd.DataFrame:
    """Return a field x field map as a table: a ``field`` column, then one column per field."""
    return pd.DataFrame(matrix, index=pd.Index(field_names, name="field"), columns=field_names).reset_index()


basket.chart(
    probe_figures.intrinsic_posthoc_heatmaps(
        intrinsic,
        post_hoc,
        field_names,
        intrinsic_name=f"{name} (mean |value| over rows)" if probe.per_sample else f"{name} (|weight|)",
        post_hoc_name=f"mean |{index}| (logit)",
        spearman=correlation,
    ),
    key="intrinsic_maps",
    data=data,
    tables={"intrinsic": field_matrix(intrinsic), "post_hoc": field_matrix(post_hoc)},
    text=f"{name}: {probe.description} · Spearman rank correlation of the pairs i < j: {correlation_text}",
    **details,
)
st.caption(
    "Both maps are compared on absolute values of the pairs i < j; for an asymmetric map (attention) a pair takes "
    "the mean of both directions. Intrinsic maps are in the model's own units, so only their ranks are compared."
)
if probe.per_sample:
    per_row = pair_agreement_per_row(values, interaction.pairs, select=select)
    basket.chart(
        probe_figures.agreement_histogram(per_row, title=f"Per-row agreement of {name} with {index}"),
        key="intrinsic_per_row",
        data=data,
        tables={"per_row": pd.DataFrame({"row": interaction.rows, "spearman": per_row})},
        text=f"Spearman rank correlation of each row's {name} map with its |{index}| pair values",
        **details,
    )
