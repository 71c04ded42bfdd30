"""Sections of the Counterfactuals page: the row, the what-if editor, counterfactual search, sweeps, faithfulness.

The computations run in ``workbench.app.state`` (cached) and in the library;
these functions lay out the widgets, keep the editor's state in
``st.session_state`` and turn every rejected input into ``st.error`` or
``st.warning``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import streamlit as st

from workbench import counterfactual_figures, faithfulness_figures, figures, sweep_figures
from workbench.app import basket, controls, counterfactual_views, sequence_views, state
from workbench.app.counterfactual_views import FaithfulnessRequest, HistoryEdits, SearchRequest
from workbench.counterfactual import GOAL_KINDS, Counterfactual, CounterfactualError, CounterfactualSearch
from workbench.schema import Schema
from workbench.sweeps import DEFAULT_TOP_K
from workbench.sweeps import OUTPUT_SPACES as SWEEP_OUTPUT_SPACES

EDIT_ERRORS = (ValueError, IndexError, KeyError)
"""Exceptions the what-if, search and sweep functions raise for inputs they reject, with the reason."""

FIELD_KEY_PREFIX = "cf_field_"
HISTORY_KEY_PREFIX = "cf_history_"
HISTORY_DROP_KEY = HISTORY_KEY_PREFIX + "drop"
HISTORY_MOVE_KEY = HISTORY_KEY_PREFIX + "move"
HISTORY_REVERSE_KEY = HISTORY_KEY_PREFIX + "reverse"
HISTORY_INSERT_KEY = HISTORY_KEY_PREFIX + "insert"
EDITOR_CONTEXT_KEY = "cf_editor_context"
"""Session key of the (data key, row) the editor widgets belong to; another row starts from its own values."""
EXTRA_CHOICES_KEY = "cf_extra_choices"
"""Session key of values added to capped select boxes (field -> values), such as a counterfactual's new user id."""
FAITHFULNESS_KEY = "cf_faithfulness"
"""Session key of the last submitted faithfulness comparison: (data key, FaithfulnessRequest)."""
SEARCH_KEY = "cf_search"
"""Session key of the last submitted search: (data key, row, SearchRequest)."""
OPENED_KEY = "cf_opened"
"""Session key of the message that names the counterfactual the editor shows."""

NO_POSITION = -1
NO_INSERT = ""
EDITOR_COLUMNS = 3
MAX_DRAWN_PLAYERS = 25
GOAL_LABELS = {
    "above": "CTR at least",
    "below": "CTR at most",
    "change": "CTR changes by",
    "flip": "CTR crosses",
    "rank_top": "rank at least",
    "rank_drop": "rank worse than",
}
"""Short select box labels of the goal kinds; ``GOAL_KINDS`` gives the full descriptions."""
CHANGED_STYLE = "background-color: #fde2d6; font-weight: 600"


def goal_label(kind: str) -> str:
    return GOAL_LABELS.get(kind, kind)


def field_key(name: str) -> str:
    """Session key of the editor widget of field ``name``."""
    return f"{FIELD_KEY_PREFIX}{name}"


def _editor_keys() -> list[str]:
    return [key for key in st.session_state if str(key).startswith((FIELD_KEY_PREFIX, HISTORY_KEY_PREFIX))]


def reset_editor() -> None:
    """Forget every editor widget value, so that the widgets show the row's own values again."""
    for key in _editor_keys():
        del st.session_state[key]
    st.session_state.pop(OPENED_KEY, None)


def _sync_editor(data: state.LoadedData, row: int) -> None:
    """Reset the editor when the bundle, the data or the row changed since the last run."""
    context = (data.key, int(row))
    stored = st.session_state.get(EDITOR_CONTEXT_KEY)
    if stored is not None and stored != context:
        reset_editor()
        st.session_state.pop(EXTRA_CHOICES_KEY, None)
    st.session_state[EDITOR_CONTEXT_KEY] = context


def _keep_valid(key: str, options: list[Any]) -> None:
    """Drop stored choices of a multiselect that another bundle's options no longer contain."""
    if key in st.session_state:
        st.session_state[key] = [value for value in st.session_state[key] if value in options]


def _keep_option(key: str, options: list[Any]) -> None:
    """Forget a select box's stored choice when the current options no longer contain it."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def _default(key: str, value: Any) -> None:
    """Give a widget its starting value through the session state, unless the user or a callback set one."""
    if key not in st.session_state:
        st.session_state[key] = value


# --- the row --------------------------------------------------------------------------------------


def row_section(data: state.LoadedData) -> int:
    """Show the row picker with the row's prediction and label; return the row."""
    dataset = data.dataset
    columns = st.columns(3)
    row = controls.row_input(columns[0], len(dataset), key="cf_row")
    try:
        current = state.what_if(data, row, {})
    except (*state.LOAD_ERRORS, *EDIT_ERRORS) as err:
        st.error(f"Cannot predict row {row}: {err}")
        st.stop()
    label = int(dataset.labels[row])
    columns[1].metric(
        "Predicted CTR",
        figures.format_ctr(current.prediction_before),
        help=f"click probability {current.prediction_before:.6f}, logit {current.logit_before:+.4f}",
    )
    columns[2].metric("Label", "click" if label == 1 else "no click", help=f"{dataset.schema.label} = {label}")
    return row


# --- what-if editor -------------------------------------------------------------------------------


def _categorical_widget(container: Any, field: Any, current: str) -> str:
    extras = st.session_state.get(EXTRA_CHOICES_KEY, {}).get(field.name, ())
    choices = counterfactual_views.categorical_choices(field, current, extra=extras)
    key = field_key(field.name)
    if st.session_state.get(key) not in choices.values:
        st.session_state[key] = current
    offered = (
        f"the {choices.n_offered:,} most frequent of its {choices.n_vocabulary:,} values, plus the row's own value"
        if choices.capped
        else f"its {choices.n_vocabulary:,} values"
    )
    return container.selectbox(
        field.name,
        choices.values,
        format_func=choices.label,
        key=key,
        help=(
            f"Type to search {offered}, most frequent in training first; the counts are training rows. "
            "<OOV> and <PAD> set the unknown and the missing value on purpose."
        ),
    )


def _numeric_widget(container: Any, field: Any, bounds: counterfactual_views.NumericRange) -> float:
    key = field_key(field.name)
    _default(key, bounds.value)
    low, high = bounds.low, bounds.high
    value = float(st.session_state[key])
    # A value loaded from a counterfactual is rounded to 4 significant digits and may lie just outside the range.
    low, high = min(low, value), max(high, value)
    return float(
        container.slider(
            field.name,
            min_value=low,
            max_value=high,
            step=bounds.step,
            format=bounds.format,
            key=key,
            help=f"Raw units; the range is the one observed in the loaded data ({low:g} to {high:g}). Row value: {bounds.value:g}.",
        )
    )


def _field_widgets(data: state.LoadedData, row: int, sequence_model: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Show one widget per field; return the row's own values and the widget values of the editable fields."""
    schema = data.bundle.schema
    row_values = data.dataset.raw_values(np.asarray([row])).iloc[0]
    editable = set(counterfactual_views.editable_fields(schema, sequence_model=sequence_model))
    defaults: dict[str, Any] = {}
    values: dict[str, Any] = {}
    columns = st.columns(EDITOR_COLUMNS)
    for position, field in enumerate(schema.fields):
        container = columns[position % EDITOR_COLUMNS]
        current = str(row_values[field.name])
        if field.name not in editable:
            reason = "edited with the history actions below" if field.kind == "sequence" else "dense vectors are not edited"
            container.text_input(field.name, value=current, disabled=True, help=f"Read-only: {reason}.")
            continue
        if field.kind == "categorical":
            defaults[field.name] = current
            values[field.name] = _categorical_widget(container, field, current)
        elif field.kind == "numeric":
            bounds = counterfactual_views.numeric_range(data.dataset, field, row)
            defaults[field.name] = bounds.value
            values[field.name] = _numeric_widget(container, field, bounds)
        else:
            key = field_key(field.name)
            _default(key, current)
            defaults[field.name] = current
            values[field.name] = container.text_input(
                field.name,
                key=key,
                help=(
                    f"The history as raw items joined by {field.separator!r}, oldest first; the model keeps the "
                    f"most recent {field.max_length}. Every item must be in the field's vocabulary."
                ),
            )
    return defaults, values


def _history_widgets(data: state.LoadedData, row: int) -> tuple[HistoryEdits, str | None]:
    """Show the history actions of a sequence model; return the edits and a problem to report, if any."""
    model = data.bundle.model
    history = state.histories(data, [row])
    present = sequence_views.present_positions(history.present[0])
    label = {p: sequence_views.behaviour_label(p, history.labels[0][p]) for p in present}

    st.markdown("**History edits**")
    st.caption(
        "Applied after the field values above, in this order: drop, move to the most recent place, reverse, insert. "
        "Positions count from 0 = the oldest behaviour kept."
    )
    columns = st.columns(4)
    _default(HISTORY_DROP_KEY, [])
    _keep_valid(HISTORY_DROP_KEY, present)
    drop = columns[0].multiselect("Drop behaviours", present, format_func=label.get, key=HISTORY_DROP_KEY)
    _keep_option(HISTORY_MOVE_KEY, [NO_POSITION, *present])
    _default(HISTORY_MOVE_KEY, NO_POSITION)
    move = columns[1].selectbox(
        "Move to the most recent",
        [NO_POSITION, *present],
        format_func=lambda p: "(no move)" if p == NO_POSITION else label[p],
        key=HISTORY_MOVE_KEY,
    )
    reverse = columns[2].checkbox("Reverse the order", key=HISTORY_REVERSE_KEY)

    choices, n_values = sequence_views.insert_choices(model)
    histories = sequence_views.paired_histories(model)
    offered = f"{len(choices):,} most frequent of {n_values:,}" if len(choices) < n_values else f"{n_values:,}"
    _default(HISTORY_INSERT_KEY, NO_INSERT)
    item = columns[3].selectbox(
        f"Insert ({histories[0]})",
        [NO_INSERT, *choices],
        format_func=lambda value: "(no insert)" if value == NO_INSERT else value,
        key=HISTORY_INSERT_KEY,
        help=f"Type to search the {offered} values of {histories[0]} seen in training; the item becomes the most recent.",
    )

    insert: tuple[tuple[str, str], ...] = ()
    problem = None
    if item != NO_INSERT:
        try:
            completed = {histories[0]: item} if len(histories) == 1 else state.completed_behaviour(data, item)
            insert = tuple((name, completed[name]) for name in histories)
        except EDIT_ERRORS as err:
            problem = f"The insert is left out: {err}."
    edits = HistoryEdits(
        drop=tuple(sorted(int(p) for p in drop)),
        move_to_recent=None if move == NO_POSITION else int(move),
        reverse=bool(reverse),
        insert=insert,
    )
    return edits, problem


def _attribution_settings() -> state.AttributionSettings | None:
    """Show the attribution settings in a popover; return them, or None when the groups are not valid."""
    with st.popover("Attribution settings"):
        baseline = st.selectbox("Baseline", controls.BASELINE_OPTIONS, key="cf_baseline", help=controls.BASELINE_HELP)
        output_space = st.selectbox(
            "Output space", controls.OUTPUT_SPACE_OPTIONS, key="cf_space", help=controls.OUTPUT_SPACE_HELP
        )
        background_rows = controls.background_rows_input(st, key="cf_background_rows")
        groups_text = controls.groups_input(key="cf_groups")
    try:
        groups = state.parse_groups(groups_text)
    except ValueError as err:
        st.error(f"The field groups are not valid: {err}")
        return None
    return state.AttributionSettings(
        method="auto",
        baseline=baseline,
        output_space=output_space,
        background_rows=int(background_rows),
        groups=groups,
    )


def _edit_summary(result: Any, history: HistoryEdits) -> str:
    parts = [
        f"{name}: {figures.display_value(result.values_before[name], 40)} → {figures.display_value(result.values_after[name], 40)}"
        for name in result.changed_fields
    ]
    if not history.is_empty:
        parts.append(f"history: {history.describe()}")
    return "; ".join(parts)


def editor_section(data: state.LoadedData, row: int) -> None:
    """Show the what-if editor of ``row``: one widget per field, the new prediction and both attributions."""
    header, button = st.columns([5, 1], vertical_alignment="bottom")
    header.header("What-if editor")
    button.button("Reset", key="cf_reset", on_click=reset_editor, help="Set every field back to the row's own value.")
    _sync_editor(data, row)
    opened = st.session_state.get(OPENED_KEY)
    if opened:
        st.info(opened)
    sequence_model = sequence_views.is_sequence_model(data.bundle.model)
    defaults, values = _field_widgets(data, row, sequence_model)
    history, problem = _history_widgets(data, row) if sequence_model else (HistoryEdits(), None)
    if problem:
        st.warning(problem)
    changes = counterfactual_views.changed_values(defaults, values)

    try:
        result = state.what_if(data, row, changes, history)
    except (*state.LOAD_ERRORS, *EDIT_ERRORS) as err:
        st.error(f"Cannot apply this edit to row {row}: {err}")
        return
    columns = st.columns(3)
    columns[0].metric(
        "Predicted CTR before",
        figures.format_ctr(result.prediction_before),
        help=f"click probability {result.prediction_before:.6f}, logit {result.logit_before:+.4f}",
    )
    columns[1].metric(
        "Predicted CTR after",
        figures.format_ctr(result.prediction_after),
        **counterfactual_views.ctr_delta_options(result.delta, edited=bool(changes) or not history.is_empty),
        help=(
            f"click probability {result.prediction_after:.6f}, logit {result.logit_after:+.4f}; "
            f"change {result.delta:+.6f} (pp = percentage points)"
        ),
    )
    columns[2].metric("Changed fields", len(result.changed_fields), help=", ".join(result.changed_fields) or "none")
    if not changes and history.is_empty:
        st.info("Change a field value above (or edit the history) to see the new prediction and its attributions.")
        return
    st.caption("Edit: " + _edit_summary(result, history))

    settings = _attribution_settings()
    if settings is None:
        return
    try:
        with st.spinner("Explaining the row before and after the edit…"):
            explained = state.what_if(data, row, changes, history, settings)
    except (*state.LOAD_ERRORS, *EDIT_ERRORS) as err:
        st.warning(
            f"The attributions could not be computed: {err}. The prediction above does not depend on them; "
            "field groups in the attribution settings make exact Shapley values possible for more than 16 fields."
        )
        return
    frame = explained.comparison_frame()
    before = explained.before
    basket.chart(
        counterfactual_figures.attribution_comparison_bar(explained, max_players=MAX_DRAWN_PLAYERS),
        key="cf_attribution_comparison",
        data=data,
        method=before.method if before is not None else settings.method,
        baseline=settings.baseline,
        output_space=settings.output_space,
        parameters={
            **(before.parameters if before is not None else {}),
            "row": int(row),
            "changed_fields": list(result.changed_fields),
            "history_edits": history.describe(),
            "background_rows": settings.background_rows,
            "groups": settings.groups,
        },
        tables={"comparison": frame},
        text=f"Row {row} of {data.dataset.name} · edit: {_edit_summary(result, history)}",
    )
    styled = frame.style.apply(
        lambda line: [CHANGED_STYLE if line["changed"] else ""] * len(line), axis=1
    ).format({"attribution_before": "{:+.4f}", "attribution_after": "{:+.4f}", "attribution_change": "{:+.4f}"})
    st.dataframe(styled, hide_index=True, key="cf_attribution_table")


# --- counterfactual search ------------------------------------------------------------------------


def _search_form(data: state.LoadedData, row: int) -> None:
    schema = data.bundle.schema
    searchable = counterfactual_views.searchable_fields(schema)
    pairs = counterfactual_views.pair_options(schema)
    _default("cf_immutable", counterfactual_views.default_immutable(schema))
    _keep_valid("cf_immutable", searchable)
    _keep_valid("cf_together", list(pairs))
    with st.form("cf_search_form", enter_to_submit=False):
        columns = st.columns(4)
        goal_kind = columns[0].selectbox(
            "Goal",
            list(GOAL_KINDS),
            format_func=goal_label,
            key="cf_goal_kind",
            help=" · ".join(f"{goal_label(kind)} ({kind}): {text}" for kind, text in GOAL_KINDS.items()),
        )
        goal_value = columns[1].number_input(
            "Goal value",
            value=0.5,
            step=0.01,
            format="%.4f",
            key="cf_goal_value",
            help=(
                "A click probability in (0, 1) for 'CTR at least', 'CTR at most' and 'CTR crosses'; a change of probability in "
                "(-1, 1), not 0, for 'CTR changes by'; a rank of 1 or more (1 = highest CTR of the cohort) for the "
                "rank goals."
            ),
        )
        max_changes = columns[2].number_input(
            "Max changed fields",
            min_value=1,
            max_value=max(len(searchable), 1),
            value=min(3, max(len(searchable), 1)),
            key="cf_max_changes",
            help="Maximum number of fields one counterfactual may change.",
        )
        min_count = columns[3].number_input(
            "Min training count",
            min_value=0,
            value=1,
            key="cf_min_count",
            help="A new categorical value must have been seen at least this many times in training.",
        )
        columns = st.columns(2)
        immutable = columns[0].multiselect(
            "Immutable fields",
            searchable,
            key="cf_immutable",
            help=(
                "Fields the search must keep, such as the user's age or country. Fields named like a user id "
                "(user_id, user, uid) start here, because swapping the user explains nothing about the impression. "
                "Histories and dense vectors are never substituted."
            ),
        )
        together = columns[1].multiselect(
            "Keep together",
            list(pairs),
            key="cf_together",
            help=(
                "Pairs of categorical fields whose new combination must occur in the loaded data, "
                "such as an item with its category."
            ),
        )
        columns = st.columns(4)
        max_evaluations = columns[0].number_input(
            "Max evaluations", min_value=1, value=50_000, step=10_000, key="cf_max_evaluations",
            help="Budget of forwarded rows.",
        )  # fmt: skip
        time_limit = columns[1].number_input(
            "Time limit (s)", min_value=0.0, value=30.0, step=5.0, key="cf_time_limit",
            help="Budget in seconds; 0 for none.",
        )  # fmt: skip
        n_results = columns[2].number_input(
            "Results", min_value=1, max_value=50, value=5, key="cf_n_results", help="Counterfactuals to return."
        )
        seed = columns[3].number_input(
            "Seed",
            min_value=0,
            value=0,
            key="cf_seed",
            help="Seeds the attribution that orders the fields when it is sampled (more than 16 fields).",
        )
        columns = st.columns(4)
        beam_width = columns[0].number_input(
            "Beam width", min_value=1, value=10, key="cf_beam_width",
            help="States kept from one number of changes to the next.",
        )  # fmt: skip
        values_per_field = columns[1].number_input(
            "Values per field", min_value=1, value=50, key="cf_values_per_field",
            help="Values tried per field beyond single changes: those that scored best as single changes.",
        )  # fmt: skip
        cohort_rows = columns[2].number_input(
            "Cohort rows", min_value=2, value=1_000, step=100, key="cf_cohort_rows",
            help="Rank goals only: size of the random cohort the row is ranked in.",
        )  # fmt: skip
        cohort_seed = columns[3].number_input(
            "Cohort seed", min_value=0, value=0, key="cf_cohort_seed", help="Rank goals only: seed of the cohort."
        )
        submitted = st.form_submit_button("Search", type="primary", key="cf_search_submit")
    if submitted:
        request = SearchRequest(
            goal_kind=goal_kind,
            goal_value=float(goal_value),
            immutable=tuple(immutable),
            max_changes=int(max_changes),
            min_count=int(min_count),
            together=tuple(pairs[label] for label in together),
            n_counterfactuals=int(n_results),
            beam_width=int(beam_width),
            values_per_field=int(values_per_field),
            max_evaluations=int(max_evaluations),
            time_limit=float(time_limit),
            random_state=int(seed),
            cohort_rows=int(cohort_rows),
            cohort_seed=int(cohort_seed),
        )
        st.session_state[SEARCH_KEY] = (data.key, int(row), request)
        # The choice of a previous search would keep its label over the new options (same ranks 1..n).
        st.session_state.pop("cf_open_choice", None)


def open_in_editor(schema: Schema, counterfactual: Counterfactual, rank: int) -> None:
    """Load a counterfactual's new values into the editor widgets (a button callback)."""
    reset_editor()
    extras = st.session_state.setdefault(EXTRA_CHOICES_KEY, {})
    for name, value in counterfactual_views.editor_values(counterfactual, schema).items():
        if schema[name].kind == "categorical":
            extras[name] = [*extras.get(name, []), value]
        st.session_state[field_key(name)] = value
    st.session_state[OPENED_KEY] = f"The editor shows counterfactual {rank}: {counterfactual.describe()}."


def _rank_column(search: CounterfactualSearch) -> dict[str, Any]:
    """Column settings of ``rank_after``, which the results table has for rank goals only."""
    if not counterfactual_views.is_rank_search(search):
        return {}
    help_text = "Rank of the row in the cohort with these changes (1 = highest predicted CTR)."
    cohort_size = search.parameters.get("cohort_size")
    rank_before = search.parameters.get("rank_before")
    if cohort_size is not None and rank_before is not None:
        help_text = (
            f"Rank of the row in the cohort of {cohort_size:,} rows with these changes (1 = highest predicted CTR); "
            f"it ranks {rank_before:,} now."
        )
    return {"rank_after": st.column_config.NumberColumn(help=help_text)}


def _search_details(search: CounterfactualSearch, request: SearchRequest) -> dict[str, Any]:
    """Build the provenance of a search figure from the submitted options and the search's own record."""
    return {
        "method": "counterfactual search",
        "baseline": search.parameters.get("baseline"),
        "parameters": {
            **dataclasses.asdict(request),
            **search.parameters,
            "goal": request.goal,
            "row": int(search.row),
            "evaluations": int(search.evaluations),
        },
        "text": f"Row {search.row} · {search.message}",
    }


def _results(data: state.LoadedData, search: CounterfactualSearch, request: SearchRequest) -> None:
    schema = data.bundle.schema
    table = counterfactual_views.counterfactual_table(search, schema.field_names)
    field_columns = counterfactual_views.changed_field_columns(table)
    basket.chart(
        counterfactual_figures.counterfactuals_bar(search),
        key="cf_counterfactuals_chart",
        data=data,
        tables={"counterfactuals": table},
        **_search_details(search, request),
    )

    formats = {"prediction": "{:.4f}", "change": "{:+.4f}", "margin": "{:+.3f}"}
    if "rank_after" in table.columns:
        formats["rank_after"] = "{:,}"
    # Text, because the number column type shows a missing count as "None"; only numbers changed there.
    table = table.assign(
        plausibility=[
            "numeric only" if np.isnan(value) else f"{value:,.0f}" for value in table["plausibility"].astype(float)
        ]
    )
    styled = table.style.map(lambda cell: CHANGED_STYLE if cell else "", subset=field_columns).format(formats)
    st.dataframe(
        styled,
        hide_index=True,
        key="cf_results_table",
        column_config={
            "prediction": st.column_config.NumberColumn(help="Predicted CTR of the counterfactual."),
            "change": st.column_config.NumberColumn(help="Prediction minus the row's, in click probability."),
            "plausibility": st.column_config.TextColumn(
                help=(
                    "Smallest training count among the new categorical values (larger is more plausible); "
                    "'numeric only' when only numbers changed."
                )
            ),
            "margin": st.column_config.NumberColumn(help="How far past the goal, in logit units."),
            **_rank_column(search),
        },
    )

    columns = st.columns([3, 1], vertical_alignment="bottom")
    ranks = list(range(1, len(search.counterfactuals) + 1))
    _keep_option("cf_open_choice", ranks)
    rank = columns[0].selectbox(
        "Counterfactual to open",
        ranks,
        format_func=lambda r: f"{r}. {search.counterfactuals[r - 1].describe()}",
        key="cf_open_choice",
    )
    columns[1].button(
        "Open in editor",
        key="cf_open",
        on_click=open_in_editor,
        args=(schema, search.counterfactuals[int(rank) - 1], int(rank)),
        help="Load this counterfactual's values into the what-if editor above, with its attributions.",
    )


def search_section(data: state.LoadedData, row: int) -> None:
    """Show the counterfactual search form of ``row`` and the result of the last search."""
    st.header("Counterfactual search")
    st.caption(
        "The fewest substitutions of categorical or numeric field values that bring this row's prediction to a "
        "goal. A beam search tries the fields that pull hardest against the goal first."
    )
    _search_form(data, row)
    stored = st.session_state.get(SEARCH_KEY)
    if stored is None or stored[:2] != (data.key, int(row)):
        st.caption("Set a goal and press **Search**.")
        return

    request = stored[2]
    try:
        search = state.counterfactual_search(data, row, request)
    except (CounterfactualError, *state.LOAD_ERRORS, *EDIT_ERRORS) as err:
        st.error(f"The counterfactual search failed: {err}")
        return
    if search.found:
        st.success(search.message)
    elif search.already_met:
        st.info(search.message)
    else:
        st.warning(search.message)

    rank_summary = counterfactual_views.rank_summary(search)
    if rank_summary:
        st.markdown(rank_summary)
    status = counterfactual_views.search_status(search)
    if search.evaluations:
        not_searched = search.parameters.get("not_searched") or []
        status += f" · fields tried in the order: {', '.join(search.field_order)}"
        if not_searched:
            status += f" · not substituted: {', '.join(not_searched)}"
    st.caption(status)
    if search.found:
        _results(data, search, request)
    if len(search.single_changes):
        st.subheader("Best single change per field")
        single_changes = counterfactual_views.single_change_table(search)
        basket.chart(
            counterfactual_figures.single_changes_bar(search),
            key="cf_single_changes_chart",
            data=data,
            tables={"single_changes": single_changes},
            **_search_details(search, request),
        )
        st.dataframe(
            single_changes,
            hide_index=True,
            key="cf_single_changes_table",
            column_config={
                "prediction": st.column_config.NumberColumn(format="%.4f"),
                "change": st.column_config.NumberColumn(format="%+.4f", help="In click probability."),
                "margin": st.column_config.NumberColumn(format="%+.3f", help="Logit units past the goal (< 0: short)."),
            },
        )


# --- field sweep ----------------------------------------------------------------------------------


def sweep_section(data: state.LoadedData) -> None:
    """Show ICE curves and the partial dependence of one field over a random cohort, with their table."""
    st.header("Field sweep")
    st.caption(
        "Each cohort row is predicted again with the field set to each swept value, everything else kept: one ICE "
        "line per row and their mean, the partial dependence. Lines that are not parallel show interactions."
    )

    schema = data.bundle.schema
    fields = counterfactual_views.searchable_fields(schema)
    if not fields:
        st.info("This model has no categorical or numeric field to sweep; histories and dense vectors are not swept.")
        return
    _keep_option("cf_sweep_field", fields)
    # Sweeping user ids shows little, so the first other field is the default.
    users = set(counterfactual_views.default_immutable(schema))
    _default("cf_sweep_field", next((name for name in fields if name not in users), fields[0]))
    columns = st.columns(4)
    field = columns[0].selectbox("Field", fields, key="cf_sweep_field")
    top_k = columns[1].number_input(
        "Values",
        min_value=2,
        max_value=500,
        value=DEFAULT_TOP_K,
        key="cf_sweep_top_k",
        help="Categorical: the most frequent values in training. Numeric: points of a quantile grid (5 % to 95 %).",
    )
    output_space = columns[2].selectbox(
        "Output", list(SWEEP_OUTPUT_SPACES), key="cf_sweep_space", help="Predicted CTR or logit (log-odds)."
    )
    sort = columns[3].selectbox(
        "Order of values",
        list(sweep_figures.ICE_SORTS),
        format_func=sweep_figures.ICE_SORTS.get,
        key="cf_sweep_sort",
        help="Categorical fields only; numeric fields are drawn in increasing order.",
    )
    n_rows, seed = controls.cohort_inputs(st, key="cf_sweep_cohort", default_rows=500, max_rows=20_000)

    try:
        sweep = state.field_sweep(data, field, n_rows, seed, top_k=int(top_k), output_space=output_space)
    except (*state.LOAD_ERRORS, *EDIT_ERRORS) as err:
        st.error(f"Sweeping {field} failed: {err}")
        return
    sweep_values = counterfactual_views.sweep_table(sweep)
    basket.chart(
        sweep_figures.ice_figure(sweep, sort=sort),
        key="cf_sweep_chart",
        data=data,
        method="field sweep",
        output_space=sweep.output_space,
        parameters={
            "field": field,
            "kind": sweep.kind,
            "top_k": int(top_k),
            "sort": sort,
            "cohort_rows": sweep.n_rows,
            "cohort_seed": int(seed),
        },
        tables={"sweep": sweep_values},
        text=f"ICE curves and partial dependence of {sweep.describe()}",
    )
    st.dataframe(sweep_values, hide_index=True, key="cf_sweep_table")


# --- faithfulness ---------------------------------------------------------------------------------


def _n_players(data: state.LoadedData, groups_text: str) -> int:
    """Return the number of players: the field groups when the text contains valid ones, else one per field."""
    try:
        groups = state.parse_groups(groups_text)
    except ValueError:
        groups = None
    return len(data.bundle.schema.fields) if groups is None else len(json.loads(groups))


def _faithfulness_form(data: state.LoadedData) -> None:
    model = data.bundle.model
    with st.form("cf_faithfulness_form", enter_to_submit=False):
        columns = st.columns(4)
        n_rows = columns[0].number_input(
            "Cohort rows", min_value=1, max_value=2_000, value=20, step=10, key="cf_faith_rows",
            help="Rows drawn at random. Exact Shapley values cost 2**players forward passes per row.",
        )  # fmt: skip
        seed = columns[1].number_input(
            "Seed", min_value=0, value=0, key="cf_faith_seed",
            help="Seeds the cohort, the random orders, the sampled explainers and the infidelity's drop sets.",
        )  # fmt: skip
        baseline = columns[2].selectbox(
            "Baseline", controls.BASELINE_OPTIONS, key="cf_faith_baseline", help=controls.BASELINE_HELP
        )
        output_space = columns[3].selectbox(
            "Output space", controls.OUTPUT_SPACE_OPTIONS, key="cf_faith_space", help=controls.OUTPUT_SPACE_HELP
        )
        columns = st.columns([2, 1, 1, 1])
        # The groups of the last submit decide whether exact Shapley values are possible.
        n_players = _n_players(data, st.session_state.get("cf_faith_groups", ""))
        offered, default = counterfactual_views.faithfulness_explainers(model, n_players)
        _keep_valid("cf_faith_explainers", offered)
        _default("cf_faith_explainers", default)
        explainers = columns[0].multiselect(
            "Explainers",
            offered,
            key="cf_faith_explainers",
            help=" · ".join(f"{name}: {text}" for name, text in counterfactual_views.FAITHFULNESS_EXPLAINERS.items()),
        )
        n_random = columns[1].number_input(
            "Random orders", min_value=1, max_value=200, value=10, key="cf_faith_random",
            help="Random rankings per row; their mean curve is the reference an explainer must beat.",
        )  # fmt: skip
        background_rows = controls.background_rows_input(columns[2], key="cf_faith_background_rows")
        n_perturbations = columns[3].number_input(
            "Infidelity draws", min_value=1, max_value=5_000, value=100, key="cf_faith_perturbations",
            help="Random sets of dropped players per row (each player dropped with probability 0.5).",
        )  # fmt: skip
        columns = st.columns(2)
        with_infidelity = columns[0].checkbox("Compute infidelity", value=True, key="cf_faith_infidelity")
        normalize = columns[1].checkbox(
            "Normalise attributions for infidelity",
            key="cf_faith_normalize",
            help=(
                "Rescale each row's attribution by its least-squares factor first (captum's normalize). Needed for "
                "attention scores and for Integrated Gradients (logit units) in probability space."
            ),
        )
        groups_text = controls.groups_input(key="cf_faith_groups")
        submitted = st.form_submit_button("Compare explainers", type="primary", key="cf_faith_submit")
    if not submitted:
        return
    try:
        groups = state.parse_groups(groups_text)
    except ValueError as err:
        # The result or error of the previous submit would otherwise stay on screen under this error.
        st.session_state.pop(FAITHFULNESS_KEY, None)
        st.error(f"The field groups are not valid: {err}")
        return
    request = FaithfulnessRequest(
        explainers=tuple(explainers),
        n_rows=int(n_rows),
        seed=int(seed),
        baseline=baseline,
        output_space=output_space,
        background_rows=int(background_rows),
        groups=groups,
        n_random=int(n_random),
        with_infidelity=bool(with_infidelity),
        n_perturbations=int(n_perturbations),
        normalize_infidelity=bool(normalize),
    )
    st.session_state[FAITHFULNESS_KEY] = (data.key, request)


def faithfulness_section(data: state.LoadedData) -> None:
    """Show the deletion and insertion curves, their areas and infidelity of several explainers (behind a button)."""
    st.header("Faithfulness of explainers")
    st.caption(
        "Each explainer ranks a row's players. Deletion removes them from the row in that order (lower area is more "
        "faithful), insertion adds them to the baseline (higher area is more faithful), with random orders as the "
        "reference. Infidelity is the squared error of the attribution's prediction of random drops (lower is better)."
    )
    _faithfulness_form(data)
    stored = st.session_state.get(FAITHFULNESS_KEY)
    if stored is None or stored[0] != data.key:
        st.caption("Choose the explainers and press **Compare explainers**; the comparison takes seconds.")
        return
    try:
        result = state.faithfulness(data, stored[1])
    except (*state.LOAD_ERRORS, *EDIT_ERRORS) as err:
        st.error(f"The faithfulness comparison failed: {err}")
        return
    request = stored[1]
    details = {
        "method": "faithfulness: " + ", ".join(request.explainers),
        "baseline": request.baseline,
        "output_space": request.output_space,
        "parameters": {**dataclasses.asdict(request), **result.parameters},
    }
    summary = result.to_frame()
    curves = result.curve_frame()
    left, right = st.columns(2)
    for column, mode in ((left, "deletion"), (right, "insertion")):
        basket.chart(
            faithfulness_figures.ablation_curve_figure(result, mode),
            key=f"cf_{mode}_chart",
            data=data,
            container=column,
            tables={f"{mode}_curves": curves[curves["mode"] == mode].reset_index(drop=True)},
            text=f"{mode.capitalize()} curves over {result.n_samples:,} rows, random orders as the reference",
            **details,
        )
    basket.chart(
        faithfulness_figures.auc_bar(result),
        key="cf_auc_chart",
        data=data,
        tables={"faithfulness": summary},
        text=f"Areas under the deletion and insertion curves over {result.n_samples:,} rows",
        **details,
    )
    st.dataframe(summary, hide_index=True, key="cf_faithfulness_table")
