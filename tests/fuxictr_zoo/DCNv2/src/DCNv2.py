"""DCN-V2: cross layers ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` (CrossNetV2) or a mixture of
low-rank experts (CrossNetMix), with an optional stacked or parallel MLP."""

import torch
from torch import nn

from fuxictr.pytorch.layers import CrossNetMix, CrossNetV2, FeatureEmbedding, MLP_Block
from fuxictr.pytorch.models import BaseModel


class DCNv2(BaseModel):
    def __init__(self,
                 feature_map,
                 model_id="DCNv2",
                 gpu=-1,
                 model_structure="parallel",
                 use_low_rank_mixture=False,
                 low_rank=32,
                 num_experts=4,
                 learning_rate=1e-3,
                 embedding_dim=10,
                 stacked_dnn_hidden_units=[],
                 parallel_dnn_hidden_units=[],
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
        if model_structure not in ("crossnet_only", "stacked", "parallel"):
            raise ValueError("model_structure={} is not supported.".format(model_structure))
        self.model_structure = model_structure
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        input_dim = feature_map.sum_emb_out_dim()
        if use_low_rank_mixture:
            self.crossnet = CrossNetMix(input_dim, num_cross_layers, low_rank=low_rank, num_experts=num_experts)
        else:
            self.crossnet = CrossNetV2(input_dim, num_cross_layers)
        final_dim = input_dim
        if model_structure == "stacked":
            self.stacked_dnn = MLP_Block(input_dim=input_dim, output_dim=None,
                                         hidden_units=stacked_dnn_hidden_units,
                                         hidden_activations=dnn_activations,
                                         dropout_rates=net_dropout, batch_norm=batch_norm)
            final_dim = stacked_dnn_hidden_units[-1]
        elif model_structure == "parallel":
            self.parallel_dnn = MLP_Block(input_dim=input_dim, output_dim=None,
                                          hidden_units=parallel_dnn_hidden_units,
                                          hidden_activations=dnn_activations,
                                          dropout_rates=net_dropout, batch_norm=batch_norm)
            final_dim = input_dim + parallel_dnn_hidden_units[-1]
        self.fc = nn.Linear(final_dim, 1)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embedding_layer(X, flatten_emb=True)
        cross_out = self.crossnet(feature_emb)
        if self.model_structure == "crossnet_only":
            final_out = cross_out
        elif self.model_structure == "stacked":
            final_out = self.stacked_dnn(cross_out)
        else:
            final_out = torch.cat([cross_out, self.parallel_dnn(feature_emb)], dim=-1)
        y_pred = self.output_activation(self.fc(final_out))
        return {"y_pred": y_pred}
