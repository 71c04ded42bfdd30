"""Explainers that attribute CTR predictions to fields and to pairs of fields.

:func:`explain` and :func:`interactions` are the entry points. They look
methods up in :data:`METHODS` and :data:`INTERACTION_METHODS`.
"""

from workbench.explain.api import (
    INTERACTION_METHODS,
    METHODS,
    UNSUPPORTED_METHODS,
    background_sample,
    check_method_name,
    explain,
    groups_from_json,
    interactions,
    method_names,
    register_interaction_method,
    register_method,
)
from workbench.explain.baselines import BASELINES
from workbench.explain.game import GAME_BASELINES, OUTPUT_SPACES
from workbench.explain.integrated_gradients import integrated_gradients
from workbench.explain.interaction import INTERACTION_INDICES, Interaction
from workbench.explain.result import Attribution

__all__ = [
    "BASELINES",
    "GAME_BASELINES",
    "INTERACTION_INDICES",
    "INTERACTION_METHODS",
    "METHODS",
    "OUTPUT_SPACES",
    "UNSUPPORTED_METHODS",
    "Attribution",
    "Interaction",
    "background_sample",
    "check_method_name",
    "explain",
    "groups_from_json",
    "integrated_gradients",
    "interactions",
    "method_names",
    "register_interaction_method",
    "register_method",
]
