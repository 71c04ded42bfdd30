"""Native CTR architectures with a field-embedding / logit split."""

from workbench.zoo.base import CTRModel
from workbench.zoo.registry import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "CTRModel", "build_model"]
