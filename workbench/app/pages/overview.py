"""Overview page: the model card of the chosen bundle and the model's metrics on the chosen data set."""

import streamlit as st

from workbench.app import state, tables
from workbench.figures import format_ctr

st.title("Model overview")
bundle = state.current_bundle()
if bundle is None:
    st.stop()
manifest = bundle.manifest
training = manifest.get("training") or {}

st.subheader(bundle.name)
st.caption(f"Bundle folder `{bundle.path}` · created {manifest.get('created', 'unknown')}")
# Loaded here so that an error about the chosen data file appears at the top of the page.
data = state.current_data(bundle)
columns = st.columns(4)
columns[0].metric("Architecture", bundle.architecture)
columns[1].metric("Parameters", f"{bundle.n_parameters:,}")
columns[2].metric("Fields", len(bundle.schema))
columns[3].metric("Label column", bundle.schema.label)

left, right = st.columns(2)
with left:
    adapter = manifest.get("adapter") if isinstance(manifest.get("adapter"), dict) else {}
    recipe = adapter.get("recipe") if isinstance(adapter.get("recipe"), dict) else {}
    # An imported model: its own constructor parameters (FuxiCTR, DeepCTR-Torch) or the arguments of an in-house
    # model's make function, as the bundle's recipe recorded them.
    own = recipe.get("params") if isinstance(recipe.get("params"), dict) else recipe.get("args")
    if isinstance(own, dict):
        built_by = recipe.get("model_class") or recipe.get("function")
        st.markdown(f"**Hyper-parameters** (imported {adapter.get('kind')} model, {built_by})")
        st.dataframe(tables.key_value_table(own, key="hyper-parameter"), hide_index=True)
    else:
        st.markdown("**Hyper-parameters**")
        st.dataframe(tables.key_value_table(manifest["hyperparameters"], key="hyper-parameter"), hide_index=True)
    st.markdown("**Library versions** at training time")
    versions = tables.key_value_table(manifest.get("versions") or {}, key="library", value="version")
    st.dataframe(versions, hide_index=True)
with right:
    st.markdown("**Recorded metrics** (computed when the bundle was made)")
    recorded = tables.metrics_table(bundle.metrics)
    if recorded.empty:
        st.caption("The manifest records no metrics.")
    else:
        st.dataframe(recorded, column_config={"positive rate": st.column_config.NumberColumn(format="percent")})
    st.markdown("**Training**")
    summary = tables.training_summary(training)
    if summary:
        st.dataframe(tables.key_value_table(summary, key="item"), hide_index=True)
    else:
        st.caption("The manifest records no training summary.")
    if training.get("config"):
        with st.expander("Training configuration"):
            st.json(training["config"])

st.markdown("**Data fingerprints** (files the bundle was trained and evaluated on)")
fingerprints = tables.data_fingerprint_table(manifest.get("data") or {})
if fingerprints.empty:
    st.caption("The manifest records no data files.")
else:
    st.dataframe(fingerprints, hide_index=True)

st.header("Chosen data set")
if data is None:
    st.caption("No data set is loaded. The message at the top of the page explains why.")
else:
    try:
        metrics = state.evaluation(data)
    except state.LOAD_ERRORS as err:
        st.error(f"Could not evaluate the model on `{data.dataset.source}`: {err}")
        metrics = None
    if metrics is not None:
        st.caption(f"`{data.dataset.source}`")
        columns = st.columns(4)
        columns[0].metric("Rows", f"{len(data.dataset):,}")
        columns[1].metric("Positive rate", format_ctr(metrics["positive_rate"]))
        columns[2].metric("AUC", tables.format_metric(metrics["auc"]), help="n/a when the data has only one class")
        columns[3].metric("Log loss", tables.format_metric(metrics["logloss"]))

st.header("Schema")
st.caption(
    "Cardinality counts the known values of a field. OOV counts the values in the chosen data set that the "
    "model has no embedding for (history items for sequence fields)."
)
st.dataframe(
    tables.schema_table(bundle.schema, data.dataset if data is not None else None),
    hide_index=True,
    height="content",
    column_config={"OOV share of rows": st.column_config.NumberColumn(format="percent")},
)
