"""Cohorts & metrics page: define named cohorts, and see AUC, gAUC, log loss and calibration per cohort."""

import streamlit as st

from workbench.app import cohort_sections, state
from workbench.cohorts import Cohort

st.title("Cohorts & metrics")
bundle = state.current_bundle()
if bundle is None:
    st.stop()
# The editor and the saved cohorts work on the whole file, so a cohort that fails can still be fixed or deleted.
whole = state.current_data(bundle, cohort=Cohort())
if whole is None:
    st.stop()
data = state.current_data(bundle)
if data is not None:
    cohort_sections.metrics_section(data)
    cohort_sections.cohort_comparison_section(data)
cohort_sections.cohort_editor(whole)
cohort_sections.saved_cohorts_section(whole)
