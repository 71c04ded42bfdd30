"""GDCN (stacked): gated cross layers over the flattened field embeddings, then an MLP.

Gated cross layer l: ``c_{l+1} = c_0 * (W_l c_l + b_l) * sigmoid(Wg_l c_l) + c_l``.
"""

import torch
from torch import nn

from fuxictr.pytorch.layers import FeatureEmbedding, MLP_Block
from fuxictr.pytorch.models import BaseModel


class GateCorssLayer(nn.Module):
    """Gated cross layers; ``activation`` is one sigmoid shared by every layer, called once per layer."""

    def __init__(self, input_dim, cn_layers=3):
        super().__init__()
        self.cn_layers = cn_layers
        self.w = nn.ModuleList(nn.Linear(input_dim, input_dim, bias=False) for _ in range(cn_layers))
        self.wg = nn.ModuleList(nn.Linear(input_dim, input_dim, bias=False) for _ in range(cn_layers))
        self.b = nn.ParameterList(nn.Parameter(torch.zeros(input_dim)) for _ in range(cn_layers))
        self.activation = nn.Sigmoid()

    def forward(self, x):
        x0 = x
        for i in range(self.cn_layers):
            gate = self.activation(self.wg[i](x))
            x = x0 * (self.w[i](x) + self.b[i]) * gate + x
        return x


class GDCN(BaseModel):
    def __init__(self,
                 feature_map,
                 model_id="GDCN",
                 gpu=-1,
                 learning_rate=1e-3,
                 embedding_dim=10,
                 dnn_hidden_units=[],
                 dnn_activations="ReLU",
                 num_cross_layers=3,
                 net_dropout=0,
                 batch_norm=False,
                 embedding_regularizer=None,
                 net_regularizer=None,
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        input_dim = feature_map.sum_emb_out_dim()
        self.cross_net = GateCorssLayer(input_dim, num_cross_layers)
        self.dnn = MLP_Block(input_dim=input_dim, output_dim=1, hidden_units=dnn_hidden_units,
                             hidden_activations=dnn_activations, dropout_rates=net_dropout,
                             batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embedding_layer(X, flatten_emb=True)
        cross_out = self.cross_net(feature_emb)
        y_pred = self.output_activation(self.dnn(cross_out))
        return {"y_pred": y_pred}
