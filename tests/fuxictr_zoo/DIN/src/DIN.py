"""DIN: target attention ``w_j = MLP([t, s_j, t - s_j, t * s_j])`` over the behaviour sequence,
masked at padding, pooled as ``sum_j w_j s_j`` and fed with the other embeddings to an MLP."""

from fuxictr.pytorch.layers import DIN_Attention, FeatureEmbeddingDict, MLP_Block
from fuxictr.pytorch.models import BaseModel
from torch import nn


def _as_list(fields):
    return list(fields) if isinstance(fields, (list, tuple)) else [fields]


class DIN(BaseModel):
    def __init__(self,
                 feature_map,
                 model_id="DIN",
                 gpu=-1,
                 dnn_hidden_units=[64],
                 dnn_activations="ReLU",
                 attention_hidden_units=[32],
                 attention_hidden_activations="ReLU",
                 attention_output_activation=None,
                 attention_dropout=0,
                 learning_rate=1e-3,
                 embedding_dim=10,
                 net_dropout=0,
                 batch_norm=False,
                 din_target_field=[("adgroup_id",)],
                 din_sequence_field=[("click_sequence",)],
                 din_use_softmax=False,
                 embedding_regularizer=None,
                 net_regularizer=None,
                 **kwargs):
        super().__init__(feature_map, model_id=model_id, gpu=gpu,
                         embedding_regularizer=embedding_regularizer,
                         net_regularizer=net_regularizer, **kwargs)
        self.din_target_field = [_as_list(f) for f in _as_list(din_target_field)]
        self.din_sequence_field = [_as_list(f) for f in _as_list(din_sequence_field)]
        self.embedding_dim = embedding_dim
        self.embedding_layer = FeatureEmbeddingDict(feature_map, embedding_dim)
        self.attention_layers = nn.ModuleList(
            DIN_Attention(embedding_dim * len(target), attention_units=attention_hidden_units,
                          hidden_activations=attention_hidden_activations,
                          output_activation=attention_output_activation,
                          dropout_rate=attention_dropout, use_softmax=din_use_softmax)
            for target in self.din_target_field)
        self.dnn = MLP_Block(input_dim=feature_map.sum_emb_out_dim(), output_dim=1,
                             hidden_units=dnn_hidden_units, hidden_activations=dnn_activations,
                             dropout_rates=net_dropout, batch_norm=batch_norm)
        self.compile(kwargs["optimizer"], kwargs["loss"], learning_rate)
        self.reset_parameters()
        self.model_to_device()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        feature_emb_dict = self.embedding_layer(X)
        for idx, (targets, sequences) in enumerate(zip(self.din_target_field, self.din_sequence_field)):
            target_emb = self.embedding_layer.dict2tensor(feature_emb_dict, feature_list=targets, flatten_emb=True)
            sequence_emb = self.embedding_layer.dict2tensor(feature_emb_dict, feature_list=sequences,
                                                            flatten_emb=True)
            mask = X[sequences[0]].long() != 0
            pooled = self.attention_layers[idx](target_emb, sequence_emb, mask)
            for field, field_emb in zip(sequences, pooled.split(self.embedding_dim, dim=-1)):
                feature_emb_dict[field] = field_emb
        feature_emb = self.embedding_layer.dict2tensor(feature_emb_dict, flatten_emb=True)
        y_pred = self.output_activation(self.dnn(feature_emb))
        return {"y_pred": y_pred}
