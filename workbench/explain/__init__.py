"""Explainers that attribute CTR predictions to fields."""

from workbench.explain.baselines import BASELINES
from workbench.explain.integrated_gradients import integrated_gradients
from workbench.explain.result import Attribution

__all__ = ["BASELINES", "Attribution", "integrated_gradients"]
