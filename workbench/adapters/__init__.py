"""Open models trained elsewhere: any torch module, FuxiCTR and DeepCTR-Torch (see ``docs/adapters.md``)."""

from workbench.adapters.module import AdapterError, EmbeddingSource, ModuleAdapter

__all__ = ["AdapterError", "EmbeddingSource", "ModuleAdapter"]
