"""The field embedding layer shared by every native model: inputs to ``[B, F, W]``.

Every field becomes one vector of width ``W`` so that explainers can work on a
single tensor with one slot per field:

* categorical: a row of an embedding table (the PAD row 0 stays zero);
* numeric: the standardised value times a learned vector;
* sequence: the mean of the item embeddings over non-PAD positions (an empty
  history gives the zero vector);
* dense: a bias-free linear projection of the vector.

Because the PAD id, the value 0, an all-PAD history and the zero vector all map
to the zero embedding, "all inputs at PAD / zero" is exactly the zero-embedding
baseline, which lets gradient methods reach it through the model's own inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from workbench.schema import PAD_INDEX, Schema

EMBEDDING_INIT_STD = 1e-4


class FieldEmbedding(nn.Module):
    """Map a dict of field inputs to a tensor of shape ``(batch_size, n_fields, width)``."""

    def __init__(self, schema: Schema, width: int) -> None:
        super().__init__()
        self.field_names = schema.field_names
        self.kinds = {f.name: f.kind for f in schema.fields}
        self.width = width
        self.tables = nn.ModuleDict()
        self.numeric_vectors = nn.ParameterDict()
        self.projections = nn.ModuleDict()
        # Identity on the stacked tensor: a hook point that receives and returns a
        # plain tensor, which layer attribution methods (captum) require.
        self.output = nn.Identity()
        for f in schema.fields:
            if f.kind in ("categorical", "sequence"):
                assert f.vocabulary is not None
                table = nn.Embedding(len(f.vocabulary), width, padding_idx=PAD_INDEX)
                nn.init.normal_(table.weight, std=EMBEDDING_INIT_STD)
                with torch.no_grad():
                    table.weight[PAD_INDEX].zero_()
                self.tables[f.name] = table
            elif f.kind == "numeric":
                self.numeric_vectors[f.name] = nn.Parameter(torch.randn(width) * EMBEDDING_INIT_STD)
            else:
                self.projections[f.name] = nn.Linear(f.dim, width, bias=False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        vectors = []
        for name in self.field_names:
            kind = self.kinds[name]
            x = inputs[name]
            if kind == "categorical":
                vectors.append(self.tables[name](x))
            elif kind == "sequence":
                items = self.tables[name](x)  # (B, L, W); PAD rows are zero
                count = (x != PAD_INDEX).sum(dim=1, keepdim=True).clamp(min=1)
                vectors.append(items.sum(dim=1) / count)
            elif kind == "numeric":
                vectors.append(x.unsqueeze(-1) * self.numeric_vectors[name])
            else:
                vectors.append(self.projections[name](x))
        return self.output(torch.stack(vectors, dim=1))

