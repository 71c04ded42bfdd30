"""Sections of the Cohorts & metrics page: the cohort editor, the saved cohorts, and the metrics views."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from workbench import metrics_figures
from workbench.app import basket, cohort_views, state, tables
from workbench.cohorts import (
    ALL_ROWS,
    FREQUENCY_BUCKETS,
    Cohort,
    CohortError,
    load_cohorts,
    save_cohorts,
    select_rows,
    value_options,
)
from workbench.metrics import BIN_STRATEGIES, metrics_table, sigmoid, user_field, value_calibration

MAX_VALUE_OPTIONS = 500
ANY = "any"


def _categorical_fields(data: state.LoadedData) -> list[str]:
    return [f.name for f in data.bundle.schema.fields if f.kind == "categorical"]


def _numeric_fields(data: state.LoadedData) -> list[str]:
    return [f.name for f in data.bundle.schema.fields if f.kind == "numeric"]


def _value_conditions(data: state.LoadedData) -> dict[str, list[str]]:
    whole = state.file_dataset(data)
    chosen_fields = st.multiselect(
        "Filter on field values",
        _categorical_fields(data),
        key="cohort_value_fields",
        help="Keep rows whose value of each chosen field is one of the values you pick (values as the model saw them).",
    )
    values: dict[str, list[str]] = {}
    for name in chosen_fields:
        options = value_options(whole, name, MAX_VALUE_OPTIONS)
        counts = dict(options)
        values[name] = st.multiselect(
            f"Values of {name}",
            [value for value, _ in options],
            format_func=lambda value, counts=counts: f"{value} ({counts[value]:,} rows)",
            key=f"cohort_values_{name}",
            help=f"The {MAX_VALUE_OPTIONS} most frequent values in the loaded rows; <OOV> stands for unknown values.",
        )
    return values


def _range_conditions(data: state.LoadedData) -> dict[str, tuple[float, float]]:
    whole = state.file_dataset(data)
    chosen_fields = st.multiselect("Filter on numeric ranges", _numeric_fields(data), key="cohort_range_fields")
    ranges: dict[str, tuple[float, float]] = {}
    for name in chosen_fields:
        raw = pd.to_numeric(whole.raw[name], errors="coerce").dropna()
        if raw.empty:
            st.warning(f"{name} has no numeric values in the loaded rows.")
            continue
        low, high = float(raw.min()), float(raw.max())
        if low == high:
            ranges[name] = (low, high)
            st.caption(f"{name} is {low:g} in every loaded row.")
            continue
        ranges[name] = st.slider(f"Range of {name}", low, high, (low, high), key=f"cohort_range_{name}")
    return ranges


def cohort_editor(data: state.LoadedData) -> None:
    """Draw the form that defines a cohort; saving it stores it under its name and chooses it in the sidebar."""
    st.header("Define a cohort")
    st.caption("Conditions combine with AND; the values listed for one field combine with OR.")
    name = st.text_input("Name", key="cohort_name", placeholder="for example: mobile evening clicks")
    values = _value_conditions(data)
    ranges = _range_conditions(data)
    left, middle, right = st.columns(3)
    score_range = left.slider(
        "Predicted CTR between",
        0.0,
        1.0,
        (0.0, 1.0),
        step=0.005,
        format="%.3f",
        key="cohort_score",
        help="Scores of this bundle's model.",
    )
    label = middle.radio("Label", [ANY, "click", "no click"], horizontal=True, key="cohort_label")
    correct = right.radio(
        "Prediction",
        [ANY, "correct", "wrong"],
        horizontal=True,
        key="cohort_correct",
        help="A row is predicted as a click when its predicted CTR is at least the threshold below.",
    )
    threshold = right.number_input(
        "Click threshold", min_value=0.001, max_value=0.999, value=0.5, step=0.01, key="cohort_threshold"
    )
    left, middle, right = st.columns(3)
    oov = left.radio(
        "OOV values",
        list(("any", "with", "without")),
        horizontal=True,
        key="cohort_oov",
        help="Rows with (or without) at least one value the model has no embedding for.",
    )
    oov_fields = left.multiselect(
        "OOV in fields", [f.name for f in data.bundle.schema.fields if f.kind in ("categorical", "sequence")],
        key="cohort_oov_fields", help="Empty: any categorical or sequence field.",
    )
    frequency_field = middle.selectbox(
        "Frequency of field", [None, *_categorical_fields(data)], key="cohort_frequency_field",
        format_func=lambda name: "(no condition)" if name is None else name,
        help=(
            "Head: the most frequent training values that cover the first 50 % of training rows; torso: up to "
            "80 %; tail: the rest, unknown values included."
        ),
    )
    buckets = right.multiselect("Frequency buckets", list(FREQUENCY_BUCKETS), key="cohort_frequency_buckets")

    if not st.button("Save cohort", key="cohort_save", type="primary"):
        return
    empty = [field for field, chosen in values.items() if not chosen]
    if empty:
        st.error(
            f"The cohort was not saved: pick at least one value of {', '.join(empty)}, "
            "or remove the field from **Filter on field values**."
        )
        return
    replaced = name.strip() in cohort_views.saved_cohorts()
    try:
        cohort = Cohort(
            name=name.strip(),
            values=values,
            ranges=ranges,
            score_range=None if score_range == (0.0, 1.0) else score_range,
            label={ANY: None, "click": 1, "no click": 0}[label],
            correct={ANY: None, "correct": True, "wrong": False}[correct],
            threshold=float(threshold),
            oov=oov,
            oov_fields=tuple(oov_fields),
            frequency_field=frequency_field if buckets else None,
            frequency_buckets=tuple(buckets) if frequency_field else (),
        )
        logits = state.file_logits(data) if cohort.needs_scores else None
        n_rows = select_rows(cohort, state.file_dataset(data), logits=logits).size
        cohort_views.save_cohort(cohort)
    except (CohortError, ValueError) as err:
        st.error(f"The cohort was not saved: {err}")
        return
    cohort_views.choose(cohort.name)
    verb = "Replaced" if replaced else "Saved"
    st.toast(f"{verb} cohort {cohort.name} ({n_rows:,} rows) and chose it in the sidebar.")
    st.rerun()


SESSION_NOTE = (
    "Saved cohorts and the report live in this browser tab's session: reloading the page or opening a link "
    "starts a new session without them. Download the cohorts (and the report) to keep them."
)


def saved_cohorts_section(data: state.LoadedData) -> None:
    """List the saved cohorts with their row counts; delete, download and upload them as JSON."""
    st.header("Saved cohorts")
    st.caption(SESSION_NOTE)
    cohorts = cohort_views.saved_cohorts()
    whole = state.file_dataset(data)
    lines = []
    for cohort in cohorts.values():
        try:
            logits = state.file_logits(data) if cohort.needs_scores else None
            count = select_rows(cohort, whole, logits=logits, allow_empty=True).size
            problem = ""
        except CohortError as err:
            count, problem = 0, str(err)
        lines.append({"cohort": cohort.name, "conditions": cohort.describe(), "rows": count, "problem": problem})
    st.dataframe(pd.DataFrame(lines), hide_index=True)
    left, middle, right = st.columns(3)
    removable = [name for name in cohorts if name != ALL_ROWS]
    to_delete = left.selectbox("Delete a cohort", [None, *removable], key="cohort_delete_choice",
                               format_func=lambda name: "(choose)" if name is None else name)
    if left.button("Delete", key="cohort_delete", disabled=to_delete is None):
        cohort_views.delete_cohort(to_delete)
        st.rerun()
    middle.download_button(
        "Download cohorts (JSON)",
        save_cohorts([c for name, c in cohorts.items() if name != ALL_ROWS]),
        file_name="cohorts.json",
        mime="application/json",
        key="cohort_download",
        disabled=not removable,
    )
    uploaded = right.file_uploader("Load cohorts (JSON)", type=["json"], key="cohort_upload")
    if uploaded is not None and st.session_state.get("cohort_upload_done") != uploaded.file_id:
        try:
            loaded = load_cohorts(uploaded.getvalue().decode("utf-8"))
            for cohort in loaded:
                # Reject cohorts that do not fit this bundle now, not later on every page.
                logits = state.file_logits(data) if cohort.needs_scores else None
                try:
                    select_rows(cohort, whole, logits=logits, allow_empty=True)
                except CohortError as err:
                    msg = f"cohort {cohort.name!r} does not fit bundle {data.bundle.name!r}: {err}"
                    raise CohortError(msg) from err
            for cohort in loaded:
                cohort_views.save_cohort(cohort)
        except UnicodeDecodeError:
            right.error(f"Could not load `{uploaded.name}`: it is not UTF-8 text. Save the cohort file as UTF-8 JSON.")
        except (CohortError, ValueError) as err:
            right.error(f"Could not load `{uploaded.name}`, so no cohort was added: {err}")
        else:
            st.session_state["cohort_upload_done"] = uploaded.file_id
            st.rerun()


def metrics_section(data: state.LoadedData) -> None:
    """Show the model's metrics on the chosen cohort, the reliability diagram and CTR per field value."""
    cohort = state.get_selection().cohort
    st.header("Metrics")
    st.caption(f"Model **{data.bundle.name}** on cohort **{cohort.name}** ({len(data.dataset):,} rows).")
    fields = data.bundle.schema.field_names
    guessed = user_field(fields)
    left, middle, right = st.columns(3)
    categorical = _categorical_fields(data)
    group_field = left.selectbox(
        "gAUC groups by",
        [None, *categorical],
        index=(categorical.index(guessed) + 1) if guessed in categorical else 0,
        format_func=lambda name: "(no gAUC)" if name is None else name,
        key="metrics_group_field",
        help="gAUC: AUC within each group (usually the user), weighted by the group's rows; groups with one class are left out.",
    )
    n_bins = middle.number_input("Calibration bins", min_value=2, max_value=50, value=10, key="metrics_bins")
    strategy = right.selectbox(
        "Bins", list(BIN_STRATEGIES), key="metrics_strategy",
        help="uniform: equal-width bins of predicted CTR; quantile: bins with equal row counts.",
    )
    try:
        values, table = state.metrics(data, group_field=group_field, n_bins=int(n_bins), strategy=strategy)
    except state.LOAD_ERRORS as err:
        st.error(f"Could not compute metrics on this cohort: {err}")
        return
    columns = st.columns(5)
    columns[0].metric("AUC", tables.format_metric(values["auc"]), help="n/a when the cohort has one class")
    columns[1].metric(
        "gAUC",
        tables.format_metric(values.get("gauc", float("nan"))),
        help=f"{int(values.get('gauc_groups_used', 0)):,} groups with both classes, {int(values.get('gauc_rows_used', 0)):,} rows",
    )
    columns[2].metric("Log loss", tables.format_metric(values["logloss"]))
    columns[3].metric("ECE", tables.format_metric(values["ece"]), help="Expected calibration error over the bins below.")
    columns[4].metric(
        "Predicted / observed CTR",
        f"{values['mean_predicted']:.1%} / {values['positive_rate']:.1%}",
        help="Mean predicted CTR and click rate of the cohort.",
    )
    settings = {"n_bins": int(n_bins), "strategy": strategy, "group_field": group_field}
    basket.chart(
        metrics_figures.reliability_diagram({data.bundle.name: table}),
        key="metrics_reliability",
        data=data,
        parameters=settings,
        tables={"metrics": pd.DataFrame([values]), "reliability": table},
    )
    with st.expander("Reliability table"):
        st.dataframe(table, hide_index=True)

    field = st.selectbox("Predicted and observed CTR per value of", [f for f in fields if data.bundle.schema[f].kind in ("categorical", "numeric")], key="metrics_value_field")
    per_value = value_calibration(data.dataset, sigmoid(state.logits(data)), field)
    basket.chart(
        metrics_figures.value_calibration_bar(per_value, field, model=data.bundle.name),
        key="metrics_value_chart",
        data=data,
        parameters={"field": field},
        tables={"per_value": per_value},
    )


def cohort_comparison_section(data: state.LoadedData) -> None:
    """Put the model's metrics on every saved cohort side by side."""
    cohorts = cohort_views.saved_cohorts()
    if len(cohorts) < 2:
        return
    st.header("Metrics per cohort")
    group_field = st.session_state.get("metrics_group_field")
    n_bins = int(st.session_state.get("metrics_bins", 10))
    strategy = st.session_state.get("metrics_strategy", "uniform")
    results, reliability, problems = {}, {}, []
    for cohort in cohorts.values():
        try:
            results[cohort.name], reliability[cohort.name] = state.metrics_of_cohort(
                data, cohort, group_field=group_field, n_bins=n_bins, strategy=strategy
            )
        except state.LOAD_ERRORS as err:
            problems.append(f"{cohort.name}: {err}")
    for problem in problems:
        st.warning(f"Left out of this table, because it does not fit this model: cohort {problem}")
    if not results:
        return
    table = metrics_table(results)
    st.dataframe(table, column_config={c: st.column_config.NumberColumn(format="%.4f") for c in table.columns})
    basket.chart(
        metrics_figures.reliability_diagram(reliability, title=f"Reliability of {data.bundle.name} per cohort"),
        key="metrics_cohort_reliability",
        data=data,
        parameters={"n_bins": n_bins, "strategy": strategy, "cohorts": json.dumps([c.to_dict() for c in cohorts.values()])},
        tables={"metrics": table.reset_index()},
    )
