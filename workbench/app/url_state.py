"""The sidebar's selection and the Sample explorer's row in the URL query string, so a copied link reopens the view.

Query parameters (paths are local to the server that runs the app):

* ``bundle``: bundle folder path.
* ``data``: data file path.
* ``rows``: row limit, a whole number of at least 1.
* ``cohort``: the cohort as compact JSON (:meth:`Cohort.to_dict` without the
  keys left at their defaults); absent for all rows.
* ``row``: the Sample explorer's row number, a whole number of at least 0.

The page is the URL path, which ``st.navigation`` sets. :func:`restore_from_url`
reads the parameters once per browser session, before the sidebar draws its
widgets. :func:`write_to_url` writes them back at the end of every sidebar run.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

import streamlit as st

from workbench.app import cohort_views, sources, state
from workbench.cohorts import ALL_ROWS, Cohort, CohortError

RESTORED_KEY = "url_state_restored"
"""Session state flag: the query parameters were read in this browser session."""

BUNDLE_PARAM = "bundle"
DATA_PARAM = "data"
ROWS_PARAM = "rows"
COHORT_PARAM = "cohort"
ROW_PARAM = "row"

# Widget keys of the sidebar (sidebar.py) and of the Sample explorer page (pages/explorer.py).
BUNDLE_CHOICE_KEY = "bundle_choice"
BUNDLE_TYPED_KEY = "bundle_typed"
DATA_CHOICE_KEY = "data_choice"
DATA_TYPED_KEY = "data_typed"
DATA_BUNDLE_KEY = "data_bundle"
"""The bundle whose data options the sidebar last offered. The sidebar resets the data choice when it changes."""
MAX_ROWS_KEY = "max_rows"
EXPLORER_ROW_KEY = "explorer_row"
EXPLORER_MODE_KEY = "explorer_mode"


def restore_from_url() -> None:
    """Seed the sidebar's and the Sample explorer's widget keys from the query parameters.

    Runs once per browser session, and must run before the sidebar draws its
    widgets, because Streamlit does not let a script change a widget's value
    after the widget was drawn in the same run. A parameter that cannot be
    used (a row count that is not a whole number, a cohort that is not valid
    JSON or fails validation) is ignored with an ``st.warning`` that names the
    parameter and its value. A path that :func:`sources.check_user_path`
    rejects (outside the allowed folders, missing, or a file where a folder is
    expected) is ignored with an ``st.error``. The other parameters are still
    applied.
    """
    if st.session_state.get(RESTORED_KEY):
        return
    st.session_state[RESTORED_KEY] = True
    params = st.query_params
    bundle_path = _restore_bundle(params.get(BUNDLE_PARAM))
    _restore_data(params.get(DATA_PARAM), bundle_path)
    _restore_rows(params.get(ROWS_PARAM))
    _restore_cohort(params.get(COHORT_PARAM))
    _restore_row(params.get(ROW_PARAM))


def write_to_url(selection: state.Selection) -> None:
    """Write ``selection`` and the Sample explorer's row into the query parameters and show the link in the sidebar.

    A parameter is written only when its value changed. It is removed when it
    has no value: no bundle or data file, the cohort "all rows", or no explorer
    row in the session (the row widget is on the Sample explorer page only).
    Parameters of other names are left as they are.
    """
    values = {
        BUNDLE_PARAM: None if selection.bundle_path is None else str(selection.bundle_path),
        DATA_PARAM: None if selection.data_path is None else str(selection.data_path),
        ROWS_PARAM: str(int(selection.max_rows)),
        COHORT_PARAM: None if selection.cohort.name == ALL_ROWS else cohort_text(selection.cohort),
        ROW_PARAM: _explorer_row(),
    }
    for name, value in values.items():
        if value is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != value:
            st.query_params[name] = value
    _show_link()


def cohort_text(cohort: Cohort) -> str:
    """Return ``cohort`` as compact JSON: its name and the keys of :meth:`Cohort.to_dict` not at their defaults."""
    defaults = Cohort().to_dict()
    spec = {key: value for key, value in cohort.to_dict().items() if key == "name" or value != defaults[key]}
    return json.dumps(spec, separators=(",", ":"), ensure_ascii=False)


def _warn_ignored(name: str, value: str, reason: str) -> None:
    st.warning(f"The URL parameter `{name}={value}` was ignored: {reason}. The default value is used instead.")


def _reject_path(name: str, value: str, error: sources.UserPathError) -> None:
    st.error(f"The URL parameter `{name}={value}` was ignored. {error} The default value is used instead.")


def _restore_bundle(text: str | None) -> Path | None:
    """Choose the bundle of the ``bundle`` parameter and return the bundle folder the sidebar will use."""
    listed = sources.bundle_paths()
    default = listed[0] if listed else None
    if text is None:
        return Path(st.session_state[BUNDLE_CHOICE_KEY]) if BUNDLE_CHOICE_KEY in st.session_state else default
    try:
        path = sources.check_user_path(text, expect="folder", also_allowed=set(listed))
    except sources.UserPathError as err:
        _reject_path(BUNDLE_PARAM, text, err)
        return default
    if path in listed:
        st.session_state[BUNDLE_CHOICE_KEY] = str(path)
    else:
        st.session_state[BUNDLE_TYPED_KEY] = str(path)
    return path


def _restore_data(text: str | None, bundle_path: Path | None) -> None:
    """Choose the data file of the ``data`` parameter among the options of ``bundle_path``, or type its path."""
    if text is None:
        return
    bundle = state.try_bundle(bundle_path)
    offered = {option.path for option in sources.data_options(bundle and bundle.manifest)}
    try:
        path = sources.check_user_path(text, expect="file", also_allowed=offered)
    except sources.UserPathError as err:
        _reject_path(DATA_PARAM, text, err)
        return
    if path in offered:
        st.session_state[DATA_CHOICE_KEY] = str(path)
    else:
        st.session_state[DATA_TYPED_KEY] = str(path)
    # The sidebar resets the data choice when the bundle differs from the one it last saw.
    st.session_state[DATA_BUNDLE_KEY] = str(bundle_path)


def _whole_number(text: str, minimum: int) -> int | None:
    try:
        number = int(text.strip())
    except ValueError:
        return None
    return number if number >= minimum else None


def _restore_rows(text: str | None) -> None:
    if text is None:
        return
    number = _whole_number(text, 1)
    if number is None:
        _warn_ignored(ROWS_PARAM, text, "the row limit must be a whole number of at least 1")
        return
    st.session_state[MAX_ROWS_KEY] = number


def _restore_cohort(text: str | None) -> None:
    if text is None:
        return
    try:
        cohort = Cohort.from_dict(json.loads(text))
        if cohort.name == ALL_ROWS and cohort.is_everything:
            cohort_views.choose(ALL_ROWS)
            return
        cohort_views.save_cohort(cohort)
    except json.JSONDecodeError as err:
        _warn_ignored(COHORT_PARAM, text, f"it is not valid JSON ({err})")
        return
    except (CohortError, ValueError) as err:
        _warn_ignored(COHORT_PARAM, text, str(err))
        return
    cohort_views.choose(cohort.name)


def _restore_row(text: str | None) -> None:
    if text is None:
        return
    number = _whole_number(text, 0)
    if number is None:
        _warn_ignored(ROW_PARAM, text, "the Sample explorer's row must be a whole number of at least 0")
        return
    st.session_state[EXPLORER_ROW_KEY] = number
    st.session_state[EXPLORER_MODE_KEY] = "index"


def _explorer_row() -> str | None:
    value = st.session_state.get(EXPLORER_ROW_KEY)
    return None if value is None else str(int(value))


def _show_link() -> None:
    """Show this view's link in the sidebar, with a copy button (Streamlit's code block has one)."""
    query = urlencode({name: st.query_params[name] for name in st.query_params}, safe="/:")
    # st.context.url is the page's URL without the query string. It is None outside a browser session.
    link = f"{st.context.url or ''}?{query}"
    with st.sidebar.expander("Copy link to this view"):
        st.code(link, language=None, wrap_lines=True)
        st.caption("Paths in the link are paths on this server.")
