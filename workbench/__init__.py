"""CTR Workbench: interpretability and analysis of trained click-through-rate models."""

__version__ = "0.1.0"
