"""MaskNet (serial or parallel): MaskBlocks ``ReLU(LN(W_h (V_mask * V_in)))`` with the
instance-guided mask ``V_mask = W_2 ReLU(W_1 V_emb + b_1) + b_2`` computed from the embeddings."""

import torch
from torch import nn

from fuxictr.pytorch.layers import FeatureEmbedding, MLP_Block
from fuxictr.pytorch.models import BaseModel


class MaskBlock(nn.Module):
    def __init__(self, input_dim, hidden_dim, output_dim, reduction_ratio=1, dropout_rate=0, layer_norm=True):
        super().__init__()
        self.mask_layer = nn.Sequential(nn.Linear(input_dim, int(hidden_dim * reduction_ratio)),
                                        nn.ReLU(),
                                        nn.Linear(int(hidden_dim * reduction_ratio), hidden_dim))
        hidden = [nn.Linear(hidden_dim, output_dim, bias=False)]
        if layer_norm:
            hidden.append(nn.LayerNorm(output_dim))
        hidden.append(nn.ReLU())
        if dropout_rate > 0:
            hidden.append(nn.Dropout(p=dropout_rate))
        self.hidden_layer = nn.Sequential(*hidden)

    def forward(self, V_emb, V_hidden):
        return self.hidden_layer(self.mask_layer(V_emb) * V_hidden)


class SerialMaskNet(nn.Module):
    def __init__(self, input_dim, output_activation=None, hidden_units=[], reduction_ratio=1,
                 dropout_rates=0, layer_norm=True):
        super().__init__()
        units = [input_dim] + hidden_units
        self.mask_blocks = nn.ModuleList(
            MaskBlock(input_dim, units[i], units[i + 1], reduction_ratio, dropout_rates, layer_norm)
            for i in range(len(hidden_units)))
        # The model's own output activation is the last step here, as the caller passes it in.
        self.fc = nn.Sequential(nn.Linear(units[-1], 1), output_activation)

    def forward(self, V_emb, V_hidden):
        v_out = V_hidden
        for block in self.mask_blocks:
            v_out = block(V_emb, v_out)
        return self.fc(v_out)


class ParallelMaskNet(nn.Module):
    def __init__(self, input_dim, output_activation=None, num_blocks=1, block_dim=64, hidden_units=[],
                 reduction_ratio=1, dropout_rates=0, layer_norm=True):
        super().__init__()
        self.mask_blocks = nn.ModuleList(
            MaskBlock(input_dim, input_dim, block_dim, reduction_ratio, dropout_rates, layer_norm)
            for _ in range(num_blocks))
        self.dnn = nn.Sequential(MLP_Block(input_dim=block_dim * num_blocks, output_dim=1,
                                           hidden_units=hidden_units, dropout_rates=dropout_rates),
                                 output_activation)

    def forward(self, V_emb, V_hidden):
        block_out = torch.cat([block(V_emb, V_hidden) for block in self.mask_blocks], dim=-1)
        return self.dnn(block_out)


class MaskNet(BaseModel):
    def __init__(self,
                 feature_map,
                 model_id="MaskNet",
                 gpu=-1,
                 learning_rate=1e-3,
                 embedding_dim=10,
                 model_type="SerialMaskNet",
                 parallel_num_blocks=1,
                 parallel_block_dim=64,
                 dnn_hidden_units=[64, 64],
                 reduction_ratio=1,
                 emb_layernorm=True,
                 net_layernorm=True,
                 net_dropout=0,
                 embedding_regularizer=None,
                 net_regularizer=None,
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        num_fields = feature_map.num_fields
        input_dim = num_fields * embedding_dim
        if model_type == "SerialMaskNet":
            self.mask_net = SerialMaskNet(input_dim, output_activation=self.output_activation,
                                          hidden_units=dnn_hidden_units, reduction_ratio=reduction_ratio,
                                          dropout_rates=net_dropout, layer_norm=net_layernorm)
        elif model_type == "ParallelMaskNet":
            self.mask_net = ParallelMaskNet(input_dim, output_activation=self.output_activation,
                                            num_blocks=parallel_num_blocks, block_dim=parallel_block_dim,
                                            hidden_units=dnn_hidden_units, reduction_ratio=reduction_ratio,
                                            dropout_rates=net_dropout, layer_norm=net_layernorm)
        else:
            raise ValueError("model_type={} is not supported.".format(model_type))
        self.emb_norm = nn.ModuleList(nn.LayerNorm(embedding_dim) for _ in range(num_fields)) \
            if emb_layernorm else None
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embedding_layer(X)
        if self.emb_norm is not None:
            fields = feature_emb.chunk(len(self.emb_norm), dim=1)
            V_hidden = torch.cat([norm(field) for norm, field in zip(self.emb_norm, fields)], dim=1)
        else:
            V_hidden = feature_emb
        y_pred = self.mask_net(feature_emb.flatten(start_dim=1), V_hidden.flatten(start_dim=1))
        return {"y_pred": y_pred}
