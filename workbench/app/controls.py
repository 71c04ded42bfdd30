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
