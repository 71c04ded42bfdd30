"""Interactions page: exact pair interactions of a random sample of rows, globally, per pair, per row and per value."""

import json

import numpy as np
import pandas as pd
import streamlit as st

from workbench import figures
from workbench.app import basket, controls, state, tables
from workbench.explain import INTERACTION_INDICES
from workbench.explain.exact import DEFAULT_MAX_PLAYERS
from workbench.explain.summaries import pair_examples, top_pairs, value_effects

HEATMAP_KEY = "interactions_heatmap"
PAIR_KEY = "interactions_pair"
# Set by the Compute button to the data's cache key: exact interactions cost rows * 2**players
# forward passes, so the page waits for the user on open and again after another bundle or file.
STARTED_KEY = "interactions_started"
N_EXAMPLES = 10

st.title("Interactions")
data = state.require_data()

with st.form("interactions_form"):
    columns = st.columns(4)
    n_rows = controls.exact_rows_input(
        columns[0],
        key="interactions_rows",
        help_text="Size of the random sample of data set rows. Each row costs 2**players forward passes.",
    )
    baseline = columns[1].selectbox(
        "Baseline", controls.BASELINE_OPTIONS, key="interactions_baseline", help=controls.BASELINE_HELP
    )
    output_space = columns[2].selectbox(
        "Output space", controls.OUTPUT_SPACE_OPTIONS, key="interactions_space", help=controls.OUTPUT_SPACE_HELP
    )
    seed = columns[3].number_input(
        "Sampling seed",
        min_value=0,
        value=0,
        key="interactions_seed",
        help="Seed of the random sample of rows and of the background rows.",
    )
    columns = st.columns([1, 3])
    background_rows = controls.background_rows_input(columns[0], key="interactions_background_rows")
    with columns[1]:
        groups_text = controls.groups_input(key="interactions_groups")
    if st.form_submit_button("Compute interactions", key="interactions_submit"):
        st.session_state[STARTED_KEY] = data.key

try:
    groups = state.parse_groups(groups_text)
except ValueError as err:
    st.error(f"The field groups are not valid: {err}")
    st.stop()
# parse_groups returns canonical JSON text (hashable for the caches), so count its groups.
n_players = len(json.loads(groups)) if groups else len(data.bundle.schema.fields)
if n_players > DEFAULT_MAX_PLAYERS:
    st.warning(
        f"Exact interactions would evaluate all 2**{n_players} = {2**n_players:,} coalitions of each row, more "
        f"than the limit of {DEFAULT_MAX_PLAYERS} players. Group the fields into at most {DEFAULT_MAX_PLAYERS} "
        "groups in the field groups box above."
    )
    st.stop()
if st.session_state.get(STARTED_KEY) != data.key:
    st.info(
        f"Exact interactions evaluate all 2**{n_players} = {2**n_players:,} coalitions of each row, "
        f"{int(n_rows) * 2**n_players:,} forward passes for {int(n_rows):,} rows. Field groups make this "
        "cheaper. Press **Compute interactions** to start."
    )
    st.stop()
settings = state.AttributionSettings(
    baseline=baseline, output_space=output_space, background_rows=int(background_rows), groups=groups
)
try:
    result = state.sample_exact(data, n_rows, seed, settings)
except state.LOAD_ERRORS as err:
    st.error(f"Computing interactions failed on `{data.dataset.name}`: {err}. Change the settings above and try again.")
    st.stop()

columns = st.columns([2, 1])
index = columns[0].radio(
    "Interaction index",
    list(INTERACTION_INDICES),
    horizontal=True,
    key="interactions_index",
    help=" · ".join(f"{name}: {text}" for name, text in INTERACTION_INDICES.items()),
)
statistic = columns[1].radio(
    "Heatmap shows",
    list(figures.HEATMAP_STATISTICS),
    format_func=figures.HEATMAP_STATISTICS.get,
    horizontal=True,
    key="interactions_statistic",
)
interaction = result.interactions[index]
if interaction.n_players < 2:
    st.error("There is only one player, so there are no pairs. Use more groups, or no groups.")
    st.stop()

columns = st.columns(4)
columns[0].metric("Rows explained", f"{interaction.n_samples:,}")
columns[1].metric("Players", interaction.n_players)
columns[2].metric("Coalitions per row", f"{interaction.parameters['n_coalitions']:,}")
if interaction.is_efficient:
    span = abs(interaction.predictions - interaction.base_values).mean()
    columns[3].metric(
        "Completeness gap share",
        f"{interaction.completeness_gap.mean() / max(span, 1e-12):.3%}",
        help="Mean |main effects + pairs − (prediction − base value)| ÷ mean |prediction − base value|.",
    )
else:
    columns[3].metric(
        "Adds up to the prediction",
        "no",
        help=(
            f"{index} main effects plus pairs do not sum to prediction − base value by definition; "
            "STII and FSII do."
        ),
    )
st.caption(f"{interaction.describe()} · values are in {controls.units_text(interaction.output_space)}.")

options = tables.pair_options(interaction)
if st.session_state.get(PAIR_KEY) not in options:
    st.session_state[PAIR_KEY] = next(iter(options))


def select_clicked_pair(player_names: tuple[str, ...] = interaction.player_names) -> None:
    """Copy the heatmap cell a user clicked into the pair selector (Streamlit runs this before the next run)."""
    event = st.session_state.get(HEATMAP_KEY)
    pair = tables.pair_from_selection(event.get("selection") if event else None, player_names)
    if pair is not None:
        st.session_state[PAIR_KEY] = tables.pair_label(*pair)


def interaction_details(**parameters: object) -> dict:
    """Build the provenance of a figure of ``interaction``: index, baseline, output space and settings."""
    return {
        "method": interaction.index,
        "baseline": interaction.baseline,
        "output_space": interaction.output_space,
        "parameters": {
            **interaction.parameters,
            "index": interaction.index,
            "sample_rows": interaction.n_samples,
            "sample_seed": int(seed),
            **parameters,
        },
    }


def player_matrix(matrix: np.ndarray) -> pd.DataFrame:
    """Return a players x players matrix as a table: a ``player`` column, then one column per player."""
    names = list(interaction.player_names)
    return pd.DataFrame(matrix, index=pd.Index(names, name="player"), columns=names).reset_index()


matrix = interaction.mean_abs() if statistic == "mean_abs" else interaction.mean()
heatmap = figures.interaction_heatmap(interaction, statistic)
left, right = st.columns([3, 2])
with left:
    basket.chart(
        heatmap,
        key=HEATMAP_KEY,
        data=data,
        chart_options={"on_select": select_clicked_pair, "selection_mode": "points"},
        tables={
            f"pairs_{statistic}": player_matrix(matrix.to_numpy()),
            "top_pairs": top_pairs(interaction),
        },
        text=f"{interaction.describe()} · cell: {figures.HEATMAP_STATISTICS[statistic]} of the pair over the rows",
        **interaction_details(statistic=statistic),
    )
with right:
    label = st.selectbox(
        "Pair",
        list(options),
        key=PAIR_KEY,
        help="Pairs ordered by mean |value|. Clicking a heatmap cell selects its pair here.",
    )
    player_i, player_j = options[label]
    st.markdown(f"**Rows with the largest |{index}| of {label}**")
    st.dataframe(
        pair_examples(interaction, player_i, player_j, N_EXAMPLES),
        hide_index=True,
        column_config={
            "interaction": st.column_config.NumberColumn(format="%+.4f"),
            "prediction": st.column_config.NumberColumn(format="%+.4f"),
        },
        key="interactions_examples",
    )

st.header("Top pairs")
top_k = st.number_input(
    "Pairs to list", min_value=1, max_value=len(options), value=min(10, len(options)), key="interactions_top_k"
)
st.dataframe(
    top_pairs(interaction, int(top_k)),
    hide_index=True,
    column_config={
        name: st.column_config.NumberColumn(format="%.4f")
        for name in ("mean_abs_value", "mean_value", "max_abs_value")
    },
    key="interactions_top_pairs",
)

st.header("One row")
row = st.selectbox(
    "Row",
    [int(r) for r in interaction.rows],
    format_func=lambda r: f"row {r}",
    key="interactions_row",
    help="A row of the explained sample.",
)
position = interaction.position_of_row(row)
basket.chart(
    figures.sample_interaction_heatmap(interaction, position),
    key="interactions_sample",
    data=data,
    tables={
        "pairs": player_matrix(interaction.pairs[position]),
        "main_effects": pd.DataFrame(
            {"player": list(interaction.player_names), "main_effect": interaction.main_effects[position]}
        ),
    },
    text=f"Row {row} · {interaction.describe()}",
    **interaction_details(row=int(row)),
)

st.header("Raw values of one field")
st.caption(
    "Mean exact Shapley value per raw value of the field over the explained rows: "
    "values at the top raise the predicted CTR on average, values at the bottom lower it."
)
columns = st.columns([2, 1])
field = columns[0].selectbox("Field", list(result.shapley.field_names), key="interactions_value_field")
min_count = columns[1].number_input(
    "Minimum rows per value", min_value=1, value=1, key="interactions_min_count", help="Hide rarer values."
)
try:
    effects = value_effects(result.shapley, field, min_count=int(min_count))
except (KeyError, ValueError) as err:
    st.error(f"Cannot average the values of {field}: {err}")
    st.stop()
if effects.empty:
    st.info(f"No value of {field} occurs in at least {int(min_count)} rows. Lower the minimum.")
    st.stop()
basket.chart(
    figures.value_effects_bar(result.shapley, field, min_count=int(min_count)),
    key="interactions_value_effects",
    data=data,
    method=result.shapley.method,
    baseline=result.shapley.baseline,
    output_space=result.shapley.output_space,
    parameters={
        **result.shapley.parameters,
        "field": field,
        "min_count": int(min_count),
        "sample_rows": result.shapley.n_samples,
        "sample_seed": int(seed),
    },
    tables={"value_effects": effects},
    text=f"Mean exact Shapley value per raw value of {field} · {result.shapley.describe()}",
)
st.dataframe(
    effects,
    hide_index=True,
    column_config={
        "mean_attribution": st.column_config.NumberColumn(format="%+.4f"),
        "std_attribution": st.column_config.NumberColumn(format="%.4f"),
    },
    key="interactions_value_table",
)
