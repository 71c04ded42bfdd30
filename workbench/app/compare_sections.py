"""Sections of the Model comparison page: metrics, attribution agreement, pair-map difference, disagreements."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from workbench import figures
from workbench.app import basket, compare_state, controls, sources, state
from workbench.explain import METHODS, method_names
from workbench.metrics import BIN_STRATEGIES, user_field
from workbench.model_comparison import ComparedModel
from workbench.report_builder import (
    agreement_sections,
    attribution_disagreement_table,
    disagreement_section,
    interaction_difference_section,
    metrics_section,
)

COMPARE_KEY = "compare_bundles"
EXPLORER_ROW_KEY = "compare_explorer_row"


def choose_models(data: state.LoadedData) -> compare_state.ModelKeys | None:
    """Let the user pick the bundles to compare with the sidebar's; return the cache keys of all of them."""
    current = Path(data.key[0])
    options = {str(path): path.name for path in sources.bundle_paths() if path != current}
    chosen = st.multiselect(
        "Compare with",
        list(options),
        format_func=lambda path: options.get(path, path),
        key=COMPARE_KEY,
        help=(
            f"Bundles in {sources.models_dir()}. Each reads the sidebar's data file with its own schema, so row i is "
            "the same impression for every model; models with other fields are compared on their common fields."
        ),
    )
    if not chosen:
        st.info(f"Choose at least one bundle to compare with **{data.bundle.name}**.")
        return None
    try:
        return compare_state.model_keys(data, [Path(path) for path in chosen])
    except state.LOAD_ERRORS as err:
        st.error(f"Could not load a bundle to compare: {err}. Remove it from the list above.")
        return None


def load(keys: compare_state.ModelKeys) -> list[ComparedModel] | None:
    try:
        return compare_state.models(keys)
    except state.LOAD_ERRORS as err:
        st.error(
            f"Could not read the data file with every model's schema: {err}. "
            "Every model needs the columns of its fields in the sidebar's data file."
        )
        return None


def metrics_view(models: list[ComparedModel]) -> None:
    st.header("Metrics")
    cohort = state.get_selection().cohort
    categorical = [f.name for f in models[0].bundle.schema.fields if f.kind == "categorical"]
    left, middle, right = st.columns(3)
    guessed = user_field(categorical)
    group_field = left.selectbox(
        "gAUC groups by",
        [None, *categorical],
        index=(categorical.index(guessed) + 1) if guessed else 0,
        format_func=lambda name: "(no gAUC)" if name is None else name,
        key="compare_group_field",
    )
    n_bins = middle.number_input("Calibration bins", min_value=2, max_value=50, value=10, key="compare_bins")
    strategy = right.selectbox("Bins", list(BIN_STRATEGIES), key="compare_strategy")
    try:
        section = metrics_section(models, cohort, group_field=group_field, n_bins=int(n_bins), strategy=strategy)
    except state.LOAD_ERRORS as err:
        st.error(f"Could not compute the metrics: {err}")
        return
    table = section.tables["metrics"]
    counts = ("n_rows", "gauc_groups_used", "gauc_rows_used")
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            column: st.column_config.NumberColumn(format="%d" if column in counts else "%.4f")
            for column in table.columns
            if column != "model"
        },
        key="compare_metrics_table",
    )
    basket.section_chart(section, key="compare_reliability")


def _settings_form() -> tuple[int, int, str, str, int]:
    with st.form("compare_form"):
        columns = st.columns(5)
        n_rows = columns[0].number_input("Rows to explain", min_value=10, max_value=5_000, value=200, step=50, key="compare_rows")
        seed = columns[1].number_input("Sampling seed", min_value=0, value=0, key="compare_seed")
        method = columns[2].selectbox(
            "Method",
            method_names(include_auto=True),
            key="compare_method",
            help="auto: exact Shapley values up to 16 fields, else sampled permutations. "
            + " · ".join(f"{name}: {entry.summary}" for name, entry in METHODS.items()),
        )
        baseline = columns[3].selectbox("Baseline", controls.BASELINE_OPTIONS, key="compare_baseline", help=controls.BASELINE_HELP)
        pair_rows = columns[4].number_input(
            "Rows for pair maps",
            min_value=5,
            max_value=1_000,
            value=50,
            step=10,
            key="compare_pair_rows",
            help="Exact pair interactions cost 2**fields model calls per row; models with more than 16 fields are skipped.",
        )
        submitted = st.form_submit_button("Compare explanations", key="compare_submit")
    if submitted:
        st.session_state["compare_requested"] = True
    return int(n_rows), int(seed), method, baseline, int(pair_rows)


def explanation_views(keys: compare_state.ModelKeys, models: list[ComparedModel]) -> None:
    """Attribution agreement, pair-map difference and the disagreement explorer, after the form is sent."""
    st.header("Explanations compared")
    n_rows, seed, method, baseline, pair_rows = _settings_form()
    if not st.session_state.get("compare_requested"):
        st.caption("Choose the settings and press **Compare explanations**.")
        return
    cohort = state.get_selection().cohort
    try:
        attributions = compare_state.attributions(keys, n_rows, seed, method, baseline)
        maps, notes = compare_state.interactions(keys, n_rows, pair_rows, seed, baseline)
    except state.LOAD_ERRORS as err:
        st.error(f"The explanations failed: {err}. Change the settings above.")
        return
    for note in notes:
        st.info(note)
    first = models[0]
    for second in models[1:]:
        st.subheader(f"{first.name} vs {second.name}")
        try:
            agreement, sections = agreement_sections(first, second, attributions, cohort)
        except state.LOAD_ERRORS as err:
            st.error(f"Cannot compare the attributions of {first.name} and {second.name}: {err}")
            continue
        summary = agreement.summary()
        columns = st.columns(4)
        columns[0].metric("Median Spearman per row", f"{summary['median_spearman']:.3f}")
        columns[1].metric("Median Kendall per row", f"{summary['median_kendall']:.3f}")
        columns[2].metric(f"Mean top-{agreement.k} overlap", f"{summary['mean_top_k_overlap']:.3f}")
        columns[3].metric("Spearman of importances", f"{summary['importance_spearman']:.3f}")
        left, right = st.columns(2)
        basket.section_chart(sections[0], key=f"compare_scatter_{second.name}", container=left)
        basket.section_chart(sections[1], key=f"compare_agreement_{second.name}", container=right)
        if first.name in maps and second.name in maps:
            basket.section_chart(
                interaction_difference_section(first, second, maps, cohort), key=f"compare_pairs_{second.name}"
            )
        disagreement_explorer(keys, first, second, attributions, agreement, method, baseline)


def disagreement_explorer(keys, first, second, attributions, agreement, method: str, baseline: str) -> None:
    """Rows with the largest prediction gap or the lowest attribution agreement, and one row's two waterfalls."""
    cohort = state.get_selection().cohort
    st.markdown("**Disagreement explorer**")
    order = st.radio(
        "Rows with",
        ["prediction", "agreement"],
        format_func={"prediction": "the largest |Δ predicted CTR| (all rows)", "agreement": "the lowest attribution agreement (explained rows)"}.get,
        horizontal=True,
        key=f"compare_order_{second.name}",
    )
    if order == "prediction":
        section = disagreement_section(first, second, cohort)
        basket.section_chart(section, key=f"compare_gaps_{second.name}")
        table = section.tables["disagreements"]
    else:
        table = attribution_disagreement_table(first, second, attributions, agreement)
    st.dataframe(table, hide_index=True, key=f"compare_disagreements_{second.name}")
    file_rows = table["row"].astype(int).tolist()
    row = st.selectbox(
        "Show both models' attributions of row",
        file_rows,
        format_func=lambda r: f"row {r:,}",
        key=f"{EXPLORER_ROW_KEY}_{second.name}",
        help="Row numbers of the data file.",
    )
    if row is None:
        return
    source = first.dataset.source_rows
    position = int(row) if source is None else int(pd.Index(source).get_loc(int(row)))
    try:
        pair = compare_state.row_attributions(keys, position, method, baseline)
    except state.LOAD_ERRORS as err:
        st.error(f"Cannot explain row {row}: {err}")
        return
    left, right = st.columns(2)
    key_of_bundle = {key[0]: key for key in keys}
    for column, model in ((left, first), (right, second)):
        attribution = pair[model.name]
        column.markdown(f"**{model.name}**: predicted CTR {figures.format_ctr(figures.sigmoid(float(model.logits[position])))}")
        section = basket.section_for(
            figures.waterfall(attribution, 0, max_fields=20),
            state.LoadedData(model.bundle, model.dataset, key_of_bundle[str(model.bundle.path)]),
            method=attribution.method,
            baseline=attribution.baseline,
            output_space=attribution.output_space,
            parameters={**attribution.parameters, "row": int(row)},
            tables={"attributions": attribution.to_frame()},
        )
        basket.section_chart(section, key=f"compare_waterfall_{second.name}_{model.name}", container=column)
    st.button(
        "Open this row in the Sample explorer",
        key=f"compare_open_{second.name}",
        on_click=_open_in_explorer,
        args=(position, str(second.bundle.path)),
        help="The Sample explorer shows the sidebar's model and this model side by side.",
    )


def _open_in_explorer(position: int, other_bundle: str) -> None:
    st.session_state["explorer_mode"] = "index"
    st.session_state["explorer_row"] = position
    st.session_state["explorer_compare_bundle"] = other_bundle
    st.session_state["compare_open_explorer"] = True


COMPANION_KEY = "explorer_compare_bundle"


def companion_select(data: state.LoadedData) -> Path | None:
    """Draw the Sample explorer's "Compare with model" select box; return the chosen bundle folder or None."""
    current = Path(data.key[0])
    options = {str(path): path.name for path in sources.bundle_paths() if path != current}
    if st.session_state.get(COMPANION_KEY) not in (None, *options):
        st.session_state[COMPANION_KEY] = None
    chosen = st.selectbox(
        "Compare with model",
        [None, *options],
        format_func=lambda path: "(none)" if path is None else options.get(path, path),
        key=COMPANION_KEY,
        help="Show this bundle's attribution of the same row next to the sidebar model's, with the same settings.",
    )
    return None if chosen is None else Path(chosen)


def companion_waterfall(
    data: state.LoadedData, other: Path, row: int, *, baseline: str, n_steps: int, container
) -> None:
    """Draw the other model's prediction and Integrated Gradients waterfall of the same row in ``container``."""
    try:
        keys = compare_state.model_keys(data, [other])
        compared = compare_state.models(keys)
        pair = compare_state.row_attributions(keys, row, "integrated_gradients", baseline, n_steps=n_steps)
    except state.LOAD_ERRORS as err:
        container.error(f"Cannot explain this row with `{other.name}`: {err}. Choose another model to compare with.")
        return
    second = compared[1]
    attribution = pair[second.name]
    container.markdown(
        f"**{second.name}**: predicted CTR {figures.format_ctr(figures.sigmoid(float(attribution.predictions[0])))}"
    )
    container.caption("Integrated Gradients with the Sample explorer's baseline and steps, as for the model on the left.")
    basket.section_chart(
        basket.section_for(
            figures.waterfall(attribution, 0, max_fields=20),
            state.LoadedData(second.bundle, second.dataset, keys[1]),
            method=attribution.method,
            baseline=attribution.baseline,
            output_space=attribution.output_space,
            parameters={**attribution.parameters, "row": int(row)},
            tables={"attributions": attribution.to_frame()},
        ),
        key="explorer_companion_waterfall",
        container=container,
    )
