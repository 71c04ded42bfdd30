"""AutoInt(+): multi-head self-attention over fields, optional DNN and LR parts.

Per head h: ``alpha_{m,k} = softmax_k <W_Q e_m, W_K e_k> (/ sqrt(d_head) with use_scale)``,
``e'_m = sum_k alpha_{m,k} W_V e_k``; heads concatenated, plus ``W_res e_m``, then ReLU.
"""

import torch
from torch import nn

from fuxictr.pytorch.layers import FeatureEmbedding, LogisticRegression, MLP_Block, ScaledDotProductAttention
from fuxictr.pytorch.models import BaseModel


class MultiHeadSelfAttention(nn.Module):
    """One interacting layer; ``dot_attention`` returns ``(output, attention)`` with attention (B, heads, F, F)."""

    def __init__(self, input_dim, attention_dim=None, num_heads=1, dropout_rate=0.,
                 use_residual=True, use_scale=False, layer_norm=False):
        super().__init__()
        attention_dim = attention_dim or input_dim
        self.head_dim = attention_dim // num_heads
        self.num_heads = num_heads
        self.scale = self.head_dim ** 0.5 if use_scale else None
        self.W_q = nn.Linear(input_dim, attention_dim, bias=False)
        self.W_k = nn.Linear(input_dim, attention_dim, bias=False)
        self.W_v = nn.Linear(input_dim, attention_dim, bias=False)
        self.W_res = nn.Linear(input_dim, attention_dim, bias=False) if use_residual else None
        self.dot_attention = ScaledDotProductAttention(dropout_rate)
        self.layer_norm = nn.LayerNorm(attention_dim) if layer_norm else None

    def _heads(self, x):
        return x.view(x.size(0), -1, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, X):
        query, key, value = self._heads(self.W_q(X)), self._heads(self.W_k(X)), self._heads(self.W_v(X))
        output, _ = self.dot_attention(query, key, value, scale=self.scale)
        output = output.transpose(1, 2).reshape(X.size(0), -1, self.num_heads * self.head_dim)
        if self.W_res is not None:
            output = output + self.W_res(X)
        if self.layer_norm is not None:
            output = self.layer_norm(output)
        return output.relu()


class AutoInt(BaseModel):
    def __init__(self,
                 feature_map,
                 model_id="AutoInt",
                 gpu=-1,
                 learning_rate=1e-3,
                 embedding_dim=10,
                 dnn_hidden_units=[],
                 dnn_activations="ReLU",
                 attention_layers=2,
                 num_heads=1,
                 attention_dim=8,
                 net_dropout=0,
                 batch_norm=False,
                 layer_norm=False,
                 use_scale=False,
                 use_wide=False,
                 use_residual=True,
                 embedding_regularizer=None,
                 net_regularizer=None,
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.lr_layer = LogisticRegression(feature_map, use_bias=False) if use_wide else None
        self.dnn = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                             hidden_units=dnn_hidden_units, hidden_activations=dnn_activations,
                             dropout_rates=net_dropout, batch_norm=batch_norm) \
            if dnn_hidden_units else None
        self.self_attention = nn.Sequential(
            *[MultiHeadSelfAttention(embedding_dim if i == 0 else attention_dim,
                                     attention_dim=attention_dim, num_heads=num_heads,
                                     dropout_rate=net_dropout, use_residual=use_residual,
                                     use_scale=use_scale, layer_norm=layer_norm)
              for i in range(attention_layers)])
        self.fc = nn.Linear(feature_map.num_fields * attention_dim, 1)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embedding_layer(X)
        attention_out = self.self_attention(feature_emb)
        y_pred = self.fc(torch.flatten(attention_out, start_dim=1))
        if self.dnn is not None:
            y_pred += self.dnn(feature_emb.flatten(start_dim=1))
        if self.lr_layer is not None:
            y_pred += self.lr_layer(X)
        y_pred = self.output_activation(y_pred)
        return {"y_pred": y_pred}
