"""CTR Workbench: ``streamlit run app.py`` opens the overview, field importance, sample explorer and interactions pages."""

import streamlit as st

from workbench.app import sidebar

st.set_page_config(page_title="CTR Workbench", page_icon=":material/insights:", layout="wide")

pages = [
    st.Page("workbench/app/pages/overview.py", title="Overview", icon=":material/description:", default=True),
    st.Page("workbench/app/pages/importance.py", title="Field importance", icon=":material/bar_chart:"),
    st.Page("workbench/app/pages/explorer.py", title="Sample explorer", icon=":material/search:"),
    st.Page("workbench/app/pages/interactions.py", title="Interactions", icon=":material/grid_on:"),
]
navigation = st.navigation(pages)
sidebar.render()
navigation.run()
