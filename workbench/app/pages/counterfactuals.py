"""Counterfactuals page: what-if edits of one row, counterfactual search, field sweeps and explainer faithfulness.

The sections live in ``workbench.app.counterfactual_sections``; this script only
puts them in order.
"""

import streamlit as st

from workbench.app import counterfactual_sections, state

st.title("Counterfactuals")
data = state.require_data()

row = counterfactual_sections.row_section(data)
counterfactual_sections.editor_section(data, row)
counterfactual_sections.search_section(data, row)
counterfactual_sections.sweep_section(data)
counterfactual_sections.faithfulness_section(data)
