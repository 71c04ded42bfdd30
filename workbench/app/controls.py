"""Settings widgets shared by the pages that explain a sample of rows: baseline, output space, background, groups."""

from __future__ import annotations

from typing import Any

import streamlit as st

from workbench.explain import GAME_BASELINES, OUTPUT_SPACES

BASELINE_OPTIONS = list(GAME_BASELINES)
BASELINE_HELP = "What an absent field is replaced with. " + " · ".join(
    f"{name}: {text}" for name, text in GAME_BASELINES.items()
)
OUTPUT_SPACE_OPTIONS = list(OUTPUT_SPACES)
OUTPUT_SPACE_HELP = (
    "Unit of the values: logit (log-odds of a click) or probability (click probability, 0 to 1). "
    "Integrated Gradients works in logit space only."
)
GROUPS_PLACEHOLDER = '{"user": ["user_id", "gender"], "context": ["hour", "weekday"], ...}'


def units_text(output_space: str) -> str:
    """Describe the unit of values in ``output_space`` for captions."""
    if output_space == "logit":
        return "logit units (log-odds of a click)"
    return "probability units (click probability, 0 to 1)"


def exact_rows_input(container: Any, *, key: str, help_text: str) -> int:
    """Show the number input for the rows that exact pair interactions explain (10 to 5,000) and return its value."""
    return container.number_input(
        "Rows to explain", min_value=10, max_value=5_000, value=50, step=10, key=key, help=help_text
    )


def background_rows_input(container: Any, *, key: str) -> int:
    """Show the number input for background rows in ``container`` and return its value."""
    return container.number_input(
        "Background rows",
        min_value=1,
        max_value=10_000,
        value=100,
        step=10,
        key=key,
        help=(
            "Rows drawn at random from the data set as background for the mean and expectation baselines "
            "(not used by the others). The expectation baseline multiplies the cost by this number."
        ),
    )


def groups_input(*, key: str) -> str:
    """Show the text area for field groups and return its text (empty for one player per field)."""
    return st.text_area(
        "Field groups (optional JSON)",
        key=key,
        placeholder=GROUPS_PLACEHOLDER,
        height=68,
        help=(
            "Group name → list of fields. Each group acts as one player, and every field must be in exactly one "
            "group. Leave empty for one player per field. The exact methods need at most 16 players."
        ),
    )


def cohort_inputs(container: Any, *, key: str, default_rows: int = 1_000, max_rows: int = 50_000) -> tuple[int, int]:
    """Show the cohort size and seed inputs side by side in ``container``; return (rows, seed)."""
    left, right = container.columns(2)
    n_rows = left.number_input(
        "Cohort rows",
        min_value=1,
        max_value=max_rows,
        value=default_rows,
        step=100,
        key=f"{key}_rows",
        help="Size of the random sample of data set rows the cohort views average over.",
    )
    seed = right.number_input("Sampling seed", min_value=0, value=0, key=f"{key}_seed", help="Seed of the random sample.")
    return int(n_rows), int(seed)


def row_input(container: Any, n_total: int, *, key: str, label: str = "Row", default: int = 0) -> int:
    """Show a row number input limited to the data set's rows and return its value."""
    return int(
        container.number_input(
            label,
            min_value=0,
            max_value=max(n_total - 1, 0),
            value=min(default, max(n_total - 1, 0)),
            step=1,
            key=key,
            help=f"Data set row number, 0 to {n_total - 1:,}.",
        )
    )


MEAN_OVER_AXIS = -1
"""Select box choice that averages over an axis instead of picking one index."""


def axis_selectors(containers: Any, sizes: dict[str, int], *, key: str) -> dict[str, int]:
    """Show one select box per probe axis (layer, head, block) and return the indices chosen.

    ``sizes`` maps axis names to their lengths, in the order of the select
    boxes; ``containers`` are the columns to put them in. An axis left at
    "mean over ..." is not in the result, so ``workbench.probes.pair_map``
    averages over it.
    """
    selected: dict[str, int] = {}
    for container, (axis, size) in zip(containers, sizes.items(), strict=False):
        choice = container.selectbox(
            axis.capitalize(),
            [MEAN_OVER_AXIS, *range(size)],
            format_func=lambda i, axis=axis: f"mean over {axis}s" if i == MEAN_OVER_AXIS else f"{axis} {i + 1}",
            key=f"{key}_{axis}",
        )
        if choice != MEAN_OVER_AXIS:
            selected[axis] = int(choice)
    return selected
