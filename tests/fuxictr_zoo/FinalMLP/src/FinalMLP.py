"""FinalMLP: two MLP streams with feature gates ``g_k = 2 * sigmoid(MLP_k(context_k))`` on the
embeddings and a multi-head bilinear fusion
``y = b + w_1 o_1 + w_2 o_2 + sum_j o_1j^T W_j o_2j`` of the two stream outputs."""

import torch
from torch import nn

from fuxictr.pytorch.layers import FeatureEmbedding, MLP_Block
from fuxictr.pytorch.models import BaseModel


class FeatureSelection(nn.Module):
    """Per-stream gates; ``fs1_gate`` and ``fs2_gate`` end in a sigmoid and the forward doubles them."""

    def __init__(self, feature_map, feature_dim, embedding_dim, fs_hidden_units=[],
                 fs1_context=[], fs2_context=[]):
        super().__init__()
        self.fs1_context = fs1_context
        self.fs2_context = fs2_context
        if fs1_context:
            self.fs1_ctx_emb = FeatureEmbedding(feature_map, embedding_dim, required_feature_columns=fs1_context)
        else:
            self.fs1_ctx_bias = nn.Parameter(torch.zeros(1, embedding_dim))
        if fs2_context:
            self.fs2_ctx_emb = FeatureEmbedding(feature_map, embedding_dim, required_feature_columns=fs2_context)
        else:
            self.fs2_ctx_bias = nn.Parameter(torch.zeros(1, embedding_dim))
        self.fs1_gate = MLP_Block(input_dim=embedding_dim * max(1, len(fs1_context)), output_dim=feature_dim,
                                  hidden_units=fs_hidden_units, hidden_activations="ReLU",
                                  output_activation="Sigmoid", batch_norm=False)
        self.fs2_gate = MLP_Block(input_dim=embedding_dim * max(1, len(fs2_context)), output_dim=feature_dim,
                                  hidden_units=fs_hidden_units, hidden_activations="ReLU",
                                  output_activation="Sigmoid", batch_norm=False)

    def forward(self, X, flat_emb):
        batch_size = flat_emb.size(0)
        fs1_input = self.fs1_ctx_emb(X).flatten(start_dim=1) if self.fs1_context \
            else self.fs1_ctx_bias.repeat(batch_size, 1)
        fs2_input = self.fs2_ctx_emb(X).flatten(start_dim=1) if self.fs2_context \
            else self.fs2_ctx_bias.repeat(batch_size, 1)
        feature1 = flat_emb * self.fs1_gate(fs1_input) * 2
        feature2 = flat_emb * self.fs2_gate(fs2_input) * 2
        return feature1, feature2


class InteractionAggregation(nn.Module):
    def __init__(self, x_dim, y_dim, output_dim=1, num_heads=1):
        super().__init__()
        assert x_dim % num_heads == 0 and y_dim % num_heads == 0, \
            "x_dim and y_dim must be divisible by num_heads"
        self.num_heads = num_heads
        self.output_dim = output_dim
        self.head_x_dim = x_dim // num_heads
        self.head_y_dim = y_dim // num_heads
        self.w_x = nn.Linear(x_dim, output_dim)
        self.w_y = nn.Linear(y_dim, output_dim)
        self.w_xy = nn.Parameter(torch.Tensor(num_heads * self.head_x_dim * self.head_y_dim, output_dim))
        nn.init.xavier_normal_(self.w_xy)

    def forward(self, x, y):
        output = self.w_x(x) + self.w_y(y)
        head_x = x.view(-1, self.num_heads, self.head_x_dim)
        head_y = y.view(-1, self.num_heads, self.head_y_dim)
        weights = self.w_xy.view(self.num_heads, self.head_x_dim, self.head_y_dim, self.output_dim)
        bilinear = torch.einsum("bhx,hxyo,bhy->bo", head_x, weights, head_y)
        return output + bilinear


class FinalMLP(BaseModel):
    def __init__(self,
                 feature_map,
                 model_id="FinalMLP",
                 gpu=-1,
                 learning_rate=1e-3,
                 embedding_dim=10,
                 mlp1_hidden_units=[64, 64, 64],
                 mlp1_hidden_activations="ReLU",
                 mlp1_dropout=0,
                 mlp1_batch_norm=False,
                 mlp2_hidden_units=[64, 64, 64],
                 mlp2_hidden_activations="ReLU",
                 mlp2_dropout=0,
                 mlp2_batch_norm=False,
                 use_fs=True,
                 fs_hidden_units=[64],
                 fs1_context=[],
                 fs2_context=[],
                 num_heads=1,
                 embedding_regularizer=None,
                 net_regularizer=None,
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        feature_dim = feature_map.sum_emb_out_dim()
        self.mlp1 = MLP_Block(input_dim=feature_dim, output_dim=None, hidden_units=mlp1_hidden_units,
                              hidden_activations=mlp1_hidden_activations, dropout_rates=mlp1_dropout,
                              batch_norm=mlp1_batch_norm)
        self.mlp2 = MLP_Block(input_dim=feature_dim, output_dim=None, hidden_units=mlp2_hidden_units,
                              hidden_activations=mlp2_hidden_activations, dropout_rates=mlp2_dropout,
                              batch_norm=mlp2_batch_norm)
        self.use_fs = use_fs
        if use_fs:
            self.fs_module = FeatureSelection(feature_map, feature_dim, embedding_dim, fs_hidden_units,
                                              fs1_context, fs2_context)
        self.fusion_module = InteractionAggregation(mlp1_hidden_units[-1], mlp2_hidden_units[-1],
                                                    output_dim=1, num_heads=num_heads)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        flat_emb = self.embedding_layer(X, flatten_emb=True)
        if self.use_fs:
            feat1, feat2 = self.fs_module(X, flat_emb)
        else:
            feat1, feat2 = flat_emb, flat_emb
        y_pred = self.fusion_module(self.mlp1(feat1), self.mlp2(feat2))
        y_pred = self.output_activation(y_pred)
        return {"y_pred": y_pred}
