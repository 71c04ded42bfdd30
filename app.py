"""CTR Workbench: ``streamlit run app.py`` opens the overview, field importance, sample explorer,
interactions, probe and counterfactual pages."""

from pathlib import Path

import streamlit as st
from PIL import Image

from workbench.app import sidebar

# A local image: Streamlit fetches a ":material/...:" page icon from an outside font server.
ICON = Image.open(Path(__file__).resolve().parent / "workbench" / "app" / "icon.png")
st.set_page_config(page_title="CTR Workbench", page_icon=ICON, layout="wide")

pages = [
    st.Page("workbench/app/pages/overview.py", title="Overview", icon=":material/description:", default=True),
    st.Page("workbench/app/pages/importance.py", title="Field importance", icon=":material/bar_chart:"),
    st.Page("workbench/app/pages/explorer.py", title="Sample explorer", icon=":material/search:"),
    st.Page("workbench/app/pages/interactions.py", title="Interactions", icon=":material/grid_on:"),
    st.Page("workbench/app/pages/gates.py", title="Gates & masks", icon=":material/tune:"),
    st.Page("workbench/app/pages/attention.py", title="Attention", icon=":material/visibility:"),
    st.Page("workbench/app/pages/intrinsic.py", title="Intrinsic vs post-hoc", icon=":material/compare:"),
    st.Page("workbench/app/pages/counterfactuals.py", title="Counterfactuals", icon=":material/swap_horiz:"),
    st.Page("workbench/app/pages/cohorts.py", title="Cohorts & metrics", icon=":material/filter_alt:"),
    st.Page("workbench/app/pages/compare.py", title="Model comparison", icon=":material/difference:"),
    st.Page("workbench/app/pages/report.py", title="Report", icon=":material/summarize:"),
]
navigation = st.navigation(pages)
sidebar.render()
navigation.run()
