"""Page sections for behaviour-sequence models: target attention on the Attention page, the Sequence explorer.

The computations run in ``workbench.app.state`` (cached) and in the library;
these functions lay out the widgets and turn every rejected input into
``st.error``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from workbench import figures, sequence_figures
from workbench.app import basket, controls, probe_views, sequence_views, state
from workbench.explain.behaviours import BEHAVIOUR_METHODS, REST_MODES, BehaviourAttribution
from workbench.probes import Probe
from workbench.sequence_edits import SEQUENCE_ACTIONS

EXPLORER_METHODS = ("auto", "integrated_gradients")
REST_LABELS = {"grouped": "as one player", "fields": "one player per field"}
EDIT_ERRORS = (ValueError, IndexError)
"""Exceptions the attribution and edit functions raise for inputs they reject, with the reason."""

INSERT_ITEM_KEY = "sequence_insert_item"
COMPLETED_FOR_KEY = "sequence_insert_completed_for"
"""Session key of (data key, item, completion error) for the item whose paired values fill the text boxes."""


def insert_value_key(history: str) -> str:
    """Session key of the text box with an inserted behaviour's value of ``history``."""
    return f"sequence_insert_{history}"


# --- Attention page --------------------------------------------------------------------------------


def attention_view(data: state.LoadedData, probe: Probe) -> None:
    """Show one row's target attention over its history and the cohort's mean weight by position and by item."""
    st.caption(probe.description)
    n_total = len(data.dataset)
    row = controls.row_input(st.columns(4)[0], n_total, key="attention_row", default=state.random_row(n_total))
    try:
        weights, logit, history = state.row_attention(data, row, probe.name)
    except state.LOAD_ERRORS as err:
        st.error(f"Reading the target attention of row {row} failed: {err}")
        st.stop()
    present = history.present[0]
    if not present.any():
        st.info(f"Row {row} has an empty history, so there is no attention to show. Choose another row.")
    else:
        st.info(sequence_views.normalisation_note(probe, weights, present))
        positions = np.flatnonzero(present)
        row_weights = pd.DataFrame(
            {"position": positions, "item": history.labels[0][positions], "weight": weights[positions]}
        )
        basket.chart(
            sequence_figures.behaviour_strip(
                history.labels[0],
                present,
                attention=weights,
                title=f"Target attention of row {row} over its history",
                subtitle=(
                    f"{int(present.sum())} behaviours · predicted CTR {figures.format_ctr(figures.sigmoid(logit))} · "
                    "0 = oldest kept, most recent last"
                ),
            ),
            key="attention_strip",
            data=data,
            method="model probe",
            parameters={"probe": probe.name, "probe_kind": probe.kind, "row": int(row)},
            tables={"weights": row_weights},
            text=f"Row {row} of {data.dataset.name} · {probe.name}: {probe.description}",
        )
        with st.expander("Weights of this row as a table"):
            st.dataframe(
                row_weights,
                hide_index=True,
                column_config={"weight": st.column_config.NumberColumn(format="%.4f")},
            )

    st.subheader("Cohort mean")
    n_rows, seed = controls.cohort_inputs(st, key="attention_cohort")
    try:
        cohort, cohort_histories = state.cohort_attention(data, n_rows, seed, probe.name)
    except state.LOAD_ERRORS as err:
        st.error(f"Reading the target attention of the cohort failed: {err}")
        st.stop()
    cohort_present = cohort_histories.present
    if not cohort_present.any():
        st.info("No row of this cohort has a behaviour in its history. Choose a larger cohort or another seed.")
        return
    note = probe_views.flat_signal_note(cohort[cohort_present], probe.value_range, data.bundle.manifest)
    if note:
        st.warning(note)
    n_samples = len(cohort_histories.rows)
    cohort_details = {
        "method": "model probe",
        "parameters": {
            "probe": probe.name,
            "probe_kind": probe.kind,
            "cohort_rows": n_samples,
            "cohort_seed": int(seed),
        },
    }

    columns = st.columns([2, 2, 1])
    origin = columns[0].radio(
        "Count positions from",
        ["oldest", "recent"],
        format_func={"oldest": "the oldest kept (stored position)", "recent": "the most recent behaviour"}.get,
        horizontal=True,
        key="attention_position_origin",
        help="Histories of different lengths have their most recent behaviour at different stored positions.",
    )
    from_recent = origin == "recent"
    by_position = sequence_figures.attention_by_position(cohort, cohort_present, from_recent=from_recent)
    basket.chart(
        sequence_figures.attention_by_position_bar(by_position, from_recent=from_recent, n_samples=n_samples),
        key="attention_by_position",
        data=data,
        tables={"by_position": by_position},
        text=f"{probe.name} over {n_samples:,} rows · positions counted from the {origin}",
        **cohort_details,
    )

    histories = sequence_views.paired_histories(data.bundle.model)
    history_name = columns[1].selectbox(
        "Group behaviours by",
        histories,
        key="attention_item_history",
        help="The paired history whose raw values group the behaviours.",
    )
    top_n = columns[2].number_input(
        "Values shown", min_value=1, max_value=200, value=sequence_figures.DEFAULT_TOP_ITEMS, key="attention_top_items"
    )
    by_item = sequence_figures.attention_by_item(
        cohort, cohort_present, cohort_histories.items[history_name], top_n=int(top_n)
    )
    basket.chart(
        sequence_figures.attention_by_item_bar(by_item, history=history_name, n_samples=n_samples),
        key="attention_by_item",
        data=data,
        tables={"by_item": by_item},
        text=f"{probe.name} over {n_samples:,} rows · behaviours grouped by {history_name}",
        **cohort_details,
    )
    with st.expander("Cohort means as tables"):
        left, right = st.columns(2)
        left.dataframe(by_position, hide_index=True)
        right.dataframe(by_item, hide_index=True)


# --- Sample explorer ------------------------------------------------------------------------------


def explorer_section(data: state.LoadedData, row: int, *, baseline: str, n_steps: int) -> None:
    """Show the Sequence explorer of one row: per-behaviour attribution, its agreement with attention, and edits."""
    st.header("Sequence explorer")
    st.caption(
        "Each past behaviour of the history is one player; the other fields are the rest. A removed behaviour "
        "leaves the history, so it also leaves the attention. The other fields' baseline, and the integration "
        "steps when Integrated Gradients is chosen, come from the attribution settings above."
    )
    columns = st.columns(2)
    method = columns[0].selectbox(
        "Behaviour attribution",
        EXPLORER_METHODS,
        format_func={"auto": "Shapley values (auto)", "integrated_gradients": "Integrated Gradients"}.get,
        key="sequence_method",
        help=" · ".join(f"{name}: {BEHAVIOUR_METHODS[name]}" for name in EXPLORER_METHODS),
    )
    rest = columns[1].radio(
        "Other fields", REST_MODES, format_func=REST_LABELS.get, horizontal=True, key="sequence_rest"
    )
    try:
        attribution = state.row_behaviours(data, row, method=method, rest=rest, baseline=baseline, n_steps=n_steps)
    except (*state.LOAD_ERRORS, *EDIT_ERRORS) as err:
        st.error(f"Cannot attribute row {row} to its behaviours: {err}")
        return
    _attribution_view(data, row, attribution)
    _edits_view(data, row, attribution)


def _attribution_view(data: state.LoadedData, row: int, attribution: BehaviourAttribution) -> None:
    present = attribution.present[0]
    units = attribution.output_space
    correlation = float(attribution.attention_agreement()[0])
    columns = st.columns(4)
    columns[0].metric("Behaviours", int(present.sum()))
    columns[1].metric(
        f"Sum over behaviours ({units})",
        f"{float(attribution.values[0].sum()):+.4f}",
        help="The prediction minus the base value is this plus the rest of the fields.",
    )
    columns[2].metric(
        "|Attention| vs |attribution|",
        sequence_views.agreement_text(correlation, int(present.sum())),
        help=(
            "Spearman rank correlation over this row's behaviours between the absolute target attention "
            "weight and the absolute attribution (DIN's unnormalised weights can be negative)."
        ),
    )
    columns[3].metric(
        "Completeness gap",
        f"{float(attribution.completeness_gap[0]):.2e}",
        help=f"|sum of all attributions − (prediction − base value)|, in {units} units",
    )

    rest = " · ".join(
        f"{name} {value:+.4f}" for name, value in zip(attribution.rest_names, attribution.rest_values[0], strict=True)
    )
    st.caption(
        f"Method: {attribution.method} · baseline {attribution.baseline} · base value "
        f"{float(attribution.base_values[0]):+.4f} → prediction {float(attribution.predictions[0]):+.4f} {units} · "
        f"rest: {rest}"
    )
    if not present.any():
        st.info(f"Row {row} has an empty history: there are no behaviours to attribute or drop. You can insert one below.")
        return

    basket.chart(
        sequence_figures.behaviour_strip(
            attribution.items[0],
            present,
            attention=None if attribution.attention is None else attribution.attention[0],
            attribution=attribution.values[0],
            title=f"Behaviours of row {row}: attention and attribution",
            attribution_units=units,
        ),
        key="sequence_strip",
        data=data,
        method=attribution.method,
        baseline=attribution.baseline,
        output_space=attribution.output_space,
        parameters={**attribution.parameters, "row": int(row)},
        tables={"behaviours": attribution.for_sample(0)},
        text=f"Row {row} of {data.dataset.name} · rest: {rest}",
    )
    st.dataframe(
        attribution.for_sample(0),
        hide_index=True,
        column_config={
            "attribution": st.column_config.NumberColumn(format="%+.4f", help=f"{units} units"),
            "attention": st.column_config.NumberColumn(format="%.4f", help="target attention weight"),
        },
        key="sequence_table",
    )


def _edit_options(data: state.LoadedData, action: str, attribution: BehaviourAttribution) -> dict:
    """Show the inputs of one action and return the keyword arguments of its edit."""
    present = attribution.present[0]
    positions = sequence_views.present_positions(present)
    label = {p: sequence_views.behaviour_label(p, attribution.items[0][p]) for p in positions}
    if action == "drop":
        chosen = st.multiselect("Behaviours to drop", positions, format_func=label.get, key="sequence_drop_positions")
        return {"positions": chosen}
    if action == "drop_top_k":
        # At most the behaviours this row has, so every allowed k drops k behaviours.
        k = st.number_input(
            "k", min_value=1, max_value=max(1, len(positions)), value=1, key="sequence_top_k",
            help="Number of behaviours with the largest attribution (shown above) to drop.",
        )
        return {"k": int(k), "attribution": attribution, "sample": 0}
    if action == "move_to_recent":
        chosen = st.selectbox(
            "Behaviour to move", positions, format_func=label.get, key="sequence_move_position",
            placeholder="this history is empty",
        )
        return {"positions": [] if chosen is None else [chosen]}
    if action == "insert":
        return {"values": _insert_values(data)}
    return {}


def _insert_values(data: state.LoadedData) -> dict[str, str]:
    """Show the item select box and the editable values of the other paired histories; return the values."""
    model = data.bundle.model
    histories = sequence_views.paired_histories(model)
    choices, n_values = sequence_views.insert_choices(model)
    offered = f"{len(choices):,} most frequent of {n_values:,}" if len(choices) < n_values else f"{n_values:,}"
    item = st.selectbox(
        f"Item to insert ({histories[0]})",
        choices,
        key=INSERT_ITEM_KEY,
        help=f"Type to search the {offered} values of {histories[0]} seen in training.",
    )
    values = {histories[0]: item}
    if len(histories) == 1:
        return values

    # Fill the other histories from the item each time another item is chosen; the user can still edit them.
    completion = st.session_state.get(COMPLETED_FOR_KEY)
    if completion is None or completion[:2] != (data.key, item):
        problem = ""
        try:
            completed = state.completed_behaviour(data, item)
        except EDIT_ERRORS as err:
            completed, problem = {}, str(err)
        for history in histories[1:]:
            st.session_state[insert_value_key(history)] = completed.get(history, "")
        completion = (data.key, item, problem)
        st.session_state[COMPLETED_FOR_KEY] = completion
    if completion[2]:
        st.warning(f"{completion[2]}.")

    columns = st.columns(len(histories) - 1)
    for column, history in zip(columns, histories[1:], strict=True):
        values[history] = column.text_input(
            history,
            key=insert_value_key(history),
            help=f"The inserted behaviour's value of {history}, filled with the value most often seen with this item.",
        )
    return values


def _edits_view(data: state.LoadedData, row: int, attribution: BehaviourAttribution) -> None:
    st.subheader("Counterfactual edits")
    action = st.selectbox(
        "Action",
        list(SEQUENCE_ACTIONS),
        format_func=lambda a: sequence_views.ACTION_LABELS.get(a, a),
        key="sequence_action",
        help=" · ".join(f"{name}: {text}" for name, text in SEQUENCE_ACTIONS.items()),
    )
    options = _edit_options(data, action, attribution)

    left, right = st.columns([1, 4])
    if left.button("Apply", key="sequence_apply", type="primary"):
        try:
            state.record_edit(data, row, state.sequence_edit(data, row, action, **options))
        except (*state.LOAD_ERRORS, *EDIT_ERRORS) as err:
            st.error(f"Cannot apply this edit to row {row}: {err}")

    edits = state.recorded_edits(data, row)
    if not edits:
        st.caption("No edit of this row yet. Choose an action and press **Apply**; the prediction change shows here.")
        return
    right.button("Clear the edits of this row", key="sequence_clear", on_click=state.clear_edits, args=(data, row))

    latest = edits[-1]
    st.markdown(f"**Latest edit:** {latest.description}")
    columns = st.columns(3)
    columns[0].metric(
        "Predicted CTR before", figures.format_ctr(latest.prediction_before), help=f"logit {latest.logit_before:+.4f}"
    )
    columns[1].metric(
        "Predicted CTR after", figures.format_ctr(latest.prediction_after), help=f"logit {latest.logit_after:+.4f}"
    )
    columns[2].metric(
        "Change",
        f"{100 * latest.delta:+.2f} pp",
        help=f"after − before in click probability: {latest.delta:+.6f} (pp = percentage points)",
    )
    st.caption(
        "History before: " + (" | ".join(latest.items_before) or "(empty)")
        + "  \nHistory after: " + (" | ".join(latest.items_after) or "(empty)")
    )

    edits_table = sequence_views.edits_frame(edits)
    basket.chart(
        sequence_figures.edit_deltas_bar(edits_table, title=f"Change of the predicted CTR per edit of row {row}"),
        key="sequence_edit_deltas",
        data=data,
        method="history edits",
        parameters={"row": int(row), "edits": len(edits)},
        tables={"edits": edits_table},
        text=f"Row {row} of {data.dataset.name} · change of the predicted click probability after each edit",
    )
    st.dataframe(
        edits_table,
        hide_index=True,
        column_config={
            "prediction_before": st.column_config.NumberColumn(format="%.4f"),
            "prediction_after": st.column_config.NumberColumn(format="%.4f"),
            "delta": st.column_config.NumberColumn(format="%+.4f", help="after − before, click probability"),
        },
        key="sequence_edits_table",
    )
