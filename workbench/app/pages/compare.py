"""Model comparison page: two or more models on the same rows, their metrics, explanations and disagreements."""

import streamlit as st

from workbench.app import compare_sections, state

st.title("Model comparison")
data = state.require_data()
keys = compare_sections.choose_models(data)
if keys is None:
    st.stop()
models = compare_sections.load(keys)
if models is None:
    st.stop()
if st.session_state.pop("compare_open_explorer", False):
    st.switch_page("workbench/app/pages/explorer.py")
compare_sections.metrics_view(models)
compare_sections.explanation_views(keys, models)
