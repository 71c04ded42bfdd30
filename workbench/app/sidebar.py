"""The sidebar: choose a model bundle, a data file, how many rows to load and the cohort."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import streamlit as st

from workbench.app import cohort_views, sources, state, url_state


def _choose_path(
    label: str,
    options: dict[str, str],
    *,
    key: str,
    expect: Literal["folder", "file"],
    typed_label: str,
    typed_help: str,
) -> Path | None:
    """Show a select box of ``options`` (path to label) and a text box, and return the chosen path.

    A typed path takes precedence over the select box. It is checked with
    :func:`sources.check_user_path`, and when the check fails the sidebar shows
    ``st.error`` and the path chosen in the previous run is kept.
    """
    choice_key = f"{key}_choice"
    # A choice kept from an earlier run may not be offered any more (another bundle
    # records other data files), and Streamlit would then keep it or show nothing.
    if options and st.session_state.get(choice_key) not in options:
        st.session_state[choice_key] = next(iter(options))
    choice = st.selectbox(
        label,
        list(options),
        index=0 if options else None,
        format_func=lambda path: options.get(path, path),
        placeholder="nothing found, type a path below",
        key=choice_key,
    )
    typed = st.text_input(typed_label, key=f"{key}_typed", help=typed_help, placeholder="/path/to/…")
    chosen_key = f"{key}_checked"
    if typed.strip():
        try:
            path = sources.check_user_path(typed, expect=expect, also_allowed={Path(option) for option in options})
        except sources.UserPathError as err:
            st.error(f"{err}\n\nThe previous selection is kept.")
            kept = st.session_state.get(chosen_key)
            if kept:
                return Path(kept)
            return Path(choice) if choice else None
    else:
        path = Path(choice) if choice else None
    st.session_state[chosen_key] = None if path is None else str(path)
    return path


KEPT_KEYS = (
    "bundle_choice",
    "bundle_typed",
    "data_choice",
    "data_typed",
    "max_rows",
    cohort_views.CHOICE_KEY,
    # The Model comparison page's choices, so that coming back from the Sample explorer keeps the comparison.
    "compare_bundles",
    "compare_rows",
    "compare_seed",
    "compare_method",
    "compare_baseline",
    "compare_pair_rows",
    "compare_group_field",
    "compare_bins",
    "compare_strategy",
)


def _keep_sidebar_state() -> None:
    # Streamlit drops a widget's value when a run ends without drawing it: after a page switch, and
    # when a page calls st.switch_page before its end. Copying the values into plain session state keeps them.
    for key in KEPT_KEYS:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]


def render() -> state.Selection:
    """Draw the sidebar widgets and store the resulting selection for the pages."""
    # A shared link's query parameters seed the widgets, so they must be read before any widget is drawn.
    url_state.restore_from_url()
    _keep_sidebar_state()
    with st.sidebar:
        st.header("Model and data")
        bundle_options = {str(path): path.name for path in sources.bundle_paths()}
        bundle_path = _choose_path(
            "Model bundle",
            bundle_options,
            key="bundle",
            expect="folder",
            typed_label="…or a bundle folder path",
            typed_help=(
                f"Bundles listed above are the folders in {sources.models_dir()} (set {sources.MODELS_DIR_ENV} to "
                "change it). A bundle folder contains manifest.json and weights.safetensors."
            ),
        )
        bundle = state.try_bundle(bundle_path)
        data_options = {str(option.path): option.label for option in sources.data_options(bundle and bundle.manifest)}
        # A new bundle starts on its own first data option (its test split when it records one), so
        # the data file of the previous bundle is not kept for a model with other fields.
        if st.session_state.get("data_bundle") != str(bundle_path):
            st.session_state["data_bundle"] = str(bundle_path)
            if data_options:
                st.session_state["data_choice"] = next(iter(data_options))
        data_path = _choose_path(
            "Data set",
            data_options,
            key="data",
            expect="file",
            typed_label="…or a data file path",
            typed_help=(
                f"Data sets listed above are the Parquet, CSV and libfm files in {sources.data_dir()} "
                f"(set {sources.DATA_DIR_ENV} to change it) and the test and validation files the bundle records. "
                "libfm files use the feature_map.tsv next to them."
            ),
        )
        # A value already in the session state (from the URL or an earlier run) is the widget's value. Passing a
        # default as well makes Streamlit warn.
        default = {} if "max_rows" in st.session_state else {"value": state.DEFAULT_MAX_ROWS}
        max_rows = st.number_input(
            "Rows to load",
            min_value=1,
            step=10_000,
            key="max_rows",
            **default,
            help=(
                "Maximum number of rows read from the start of the data file. "
                "Metrics and samples use only these rows. Parquet files are read whole and refused above "
                "WORKBENCH_MAX_DATA_MB (2048 MB unless set); CSV and libfm files stop after these rows."
            ),
        )
        cohort = cohort_views.cohort_select()
    selection = state.Selection(bundle_path, data_path, int(max_rows), cohort)
    state.set_selection(selection)
    url_state.write_to_url(selection)
    return selection
