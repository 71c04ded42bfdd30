"""Named cohorts of this session: kept in ``st.session_state`` and chosen in the sidebar for every page."""

from __future__ import annotations

import streamlit as st

from workbench.cohorts import ALL_ROWS, Cohort

COHORTS_KEY = "workbench_cohorts"
CHOICE_KEY = "cohort_choice"
PENDING_CHOICE_KEY = "cohort_pending_choice"


def saved_cohorts() -> dict[str, Cohort]:
    """Return this session's named cohorts by name, "all rows" first."""
    stored = st.session_state.get(COHORTS_KEY, {})
    cohorts = {ALL_ROWS: Cohort()}
    cohorts.update({name: Cohort.from_dict(spec) for name, spec in stored.items()})
    return cohorts


def save_cohort(cohort: Cohort) -> None:
    """Keep ``cohort`` under its name (replacing a cohort of that name) and choose it in the sidebar."""
    if cohort.name == ALL_ROWS:
        msg = f"the name {ALL_ROWS!r} is reserved for the cohort without conditions; choose another name"
        raise ValueError(msg)
    stored = dict(st.session_state.get(COHORTS_KEY, {}))
    stored[cohort.name] = cohort.to_dict()
    st.session_state[COHORTS_KEY] = stored


def delete_cohort(name: str) -> None:
    """Forget the cohort ``name``; the sidebar falls back to all rows when it was chosen."""
    stored = dict(st.session_state.get(COHORTS_KEY, {}))
    stored.pop(name, None)
    st.session_state[COHORTS_KEY] = stored
    if st.session_state.get(CHOICE_KEY) == name:
        choose(ALL_ROWS)


def choose(name: str) -> None:
    """Make ``name`` the sidebar's cohort from the next run on.

    Streamlit does not let a page change a widget's value after the widget
    was drawn in the same run, so the choice waits under its own key.
    """
    st.session_state[PENDING_CHOICE_KEY] = name


def cohort_select() -> Cohort:
    """Draw the sidebar's cohort select box and return the chosen cohort."""
    cohorts = saved_cohorts()
    pending = st.session_state.pop(PENDING_CHOICE_KEY, None)
    if pending is not None:
        st.session_state[CHOICE_KEY] = pending
    if st.session_state.get(CHOICE_KEY) not in cohorts:
        st.session_state[CHOICE_KEY] = ALL_ROWS
    name = st.selectbox(
        "Cohort",
        list(cohorts),
        key=CHOICE_KEY,
        help=(
            "Every page uses only the rows of this cohort. Define cohorts on the Cohorts & metrics page; "
            "row numbers on the other pages then count the cohort's rows from 0."
        ),
    )
    return cohorts[name]
