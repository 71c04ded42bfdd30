"""Cohorts & metrics page: define named cohorts, and see AUC, gAUC, log loss and calibration per cohort."""

import streamlit as st

from workbench.app import cohort_sections, state

st.title("Cohorts & metrics")
data = state.require_data()
cohort_sections.metrics_section(data)
cohort_sections.cohort_comparison_section(data)
cohort_sections.cohort_editor(data)
cohort_sections.saved_cohorts_section(data)
