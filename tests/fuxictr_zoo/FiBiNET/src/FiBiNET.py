"""FiBiNET: SENET field re-weighting, bilinear pair vectors on the plain and the re-weighted
embeddings, an MLP on both, plus a first-order LR part."""

import torch

from fuxictr.pytorch.layers import (BilinearInteractionV2, FeatureEmbedding, LogisticRegression,
                                    MLP_Block, SqueezeExcitation)
from fuxictr.pytorch.models import BaseModel


class FiBiNET(BaseModel):
    def __init__(self,
                 feature_map,
                 model_id="FiBiNET",
                 gpu=-1,
                 learning_rate=1e-3,
                 embedding_dim=10,
                 hidden_units=[],
                 hidden_activations="ReLU",
                 reduction_ratio=3,
                 excitation_activation="ReLU",
                 bilinear_type="field_interaction",
                 net_dropout=0,
                 batch_norm=False,
                 embedding_regularizer=None,
                 net_regularizer=None,
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        num_fields = feature_map.num_fields
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.senet_layer = SqueezeExcitation(num_fields, reduction_ratio, excitation_activation)
        self.bilinear_interaction1 = BilinearInteractionV2(num_fields, embedding_dim, bilinear_type)
        self.bilinear_interaction2 = BilinearInteractionV2(num_fields, embedding_dim, bilinear_type)
        self.lr_layer = LogisticRegression(feature_map, use_bias=False)
        input_dim = num_fields * (num_fields - 1) * embedding_dim
        self.dnn = MLP_Block(input_dim=input_dim, output_dim=1, hidden_units=hidden_units,
                             hidden_activations=hidden_activations, dropout_rates=net_dropout,
                             batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb = self.embedding_layer(X)
        senet_emb = self.senet_layer(feature_emb)
        bilinear_p = self.bilinear_interaction1(feature_emb)
        bilinear_q = self.bilinear_interaction2(senet_emb)
        comb_out = torch.flatten(torch.cat([bilinear_p, bilinear_q], dim=1), start_dim=1)
        y_pred = self.dnn(comb_out) + self.lr_layer(X)
        y_pred = self.output_activation(y_pred)
        return {"y_pred": y_pred}
