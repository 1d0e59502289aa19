"""keras-hub ALBERT and BERT encoders whose feed-forward activation is a config argument.

keras-hub's `AlbertBackbone` and `BertBackbone` hard-code the tanh approximation of GELU. Hugging Face configs
name theirs in `hidden_act` (BERT checkpoints mostly use the exact `gelu`), and matching a checkpoint to 1e-4
needs the right one, so these subclasses take `hidden_activation` and set it on every feed-forward layer.
"""

import keras
import keras_hub
import tensorflow as tf

from keras_albert.errors import UserInputError
from keras_albert.models.fast_layers import FastTransformerEncoder, gelu_approximate, use_fast_encoder

# Hugging Face `hidden_act` -> the Keras activation computing the same function.
HF_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_approximate",
    "gelu_pytorch_tanh": "gelu_approximate",
    "gelu_fast": "gelu_approximate",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
}
KERAS_TO_HF_ACTIVATION = {
    "gelu": "gelu", "gelu_approximate": "gelu_new", "relu": "relu", "silu": "silu", "tanh": "tanh"
}


def get_activation(name):
    """The callable for one of the activation names in `KERAS_TO_HF_ACTIVATION`."""
    if name == "gelu_approximate":
        return gelu_approximate
    if name not in KERAS_TO_HF_ACTIVATION:
        raise UserInputError(
            f"Unsupported hidden_activation {name!r}; expected one of {sorted(KERAS_TO_HF_ACTIVATION)}."
        )
    return keras.activations.get(name)


def _set_feedforward_activation(backbone, hidden_activation):
    activation = get_activation(hidden_activation)
    for layer in backbone.layers:
        if isinstance(layer, keras_hub.layers.TransformerEncoder):
            layer.activation = activation
            layer._feedforward_intermediate_dense.activation = activation


def transformer_layers(backbone):
    """The distinct TransformerEncoder layers of a backbone, in Hugging Face order."""
    if isinstance(backbone, keras_hub.models.AlbertBackbone):
        return [layer for group in backbone.transformer_layers for layer in group]
    return list(backbone.transformer_layers)


def _layer_calls(backbone):
    """The encoder layers in the order the backbone calls them (ALBERT calls its shared groups repeatedly)."""
    if isinstance(backbone, keras_hub.models.AlbertBackbone):
        calls_per_group = backbone.num_layers // backbone.num_groups
        return [layer for group in backbone.transformer_layers for _ in range(calls_per_group) for layer in group]
    return list(backbone.transformer_layers)


def encode_at(backbone, token_ids, segment_ids, padding_mask, positions, training=None):
    """The backbone's last hidden states at `positions` only ([batch, n] int): [batch, n, hidden], what
    `backbone(...)["sequence_output"]` holds at those rows, with the last encoder layer's queries, attention output
    and feed-forward block computed for those rows only (`FastTransformerEncoder`'s `query_positions`). The
    pretraining heads read n = 1 + 20 of 128 rows, so this saves about 70% of the last layer's FLOPs, 5.6-5.9% of
    an update's.

    The backbone's own graph (keras-hub's `AlbertBackbone` / `BertBackbone` functional model) is followed layer by
    layer; tests/test_fast_encoder.py checks the result against `backbone(...)` gathered at `positions`.
    """
    tokens = backbone.token_embedding(token_ids)
    x = backbone.embeddings_add((tokens, backbone.position_embedding(tokens), backbone.segment_embedding(segment_ids)))
    x = backbone.embeddings_dropout(backbone.embeddings_layer_norm(x), training=training)
    if isinstance(backbone, keras_hub.models.AlbertBackbone):
        x = backbone.embeddings_projection(x)
    calls = _layer_calls(backbone)
    prepared = {}  # per layer object: ALBERT's shared layer concatenates and transposes its kernels once
    for index, layer in enumerate(calls):
        last = index == len(calls) - 1
        if not isinstance(layer, FastTransformerEncoder):
            x = layer(x, padding_mask=padding_mask, training=training)
            x = tf.gather(x, positions, batch_dims=1) if last else x
            continue
        if id(layer) not in prepared:
            prepared[id(layer)] = layer.prepare()
        # `call` itself: the layer is built, and Keras checks keyword arguments against the signature it cached
        # when keras-hub built the layer, before `use_fast_encoder` changed its class
        x = layer.call(x, padding_mask=padding_mask, training=training, query_positions=positions if last else None,
                       prepared=prepared[id(layer)])
    return x


@keras.saving.register_keras_serializable(package="keras_albert")
class AlbertEncoder(keras_hub.models.AlbertBackbone):
    """keras-hub's `AlbertBackbone` with a configurable feed-forward activation.

    Args:
        hidden_activation: str. "gelu_approximate" (ALBERT's `gelu_new`, the default), "gelu", "relu", "silu"
            or "tanh".
        fast_encoder: bool. Compute the encoder layers with `FastTransformerEncoder` (same variables, same function
            to float32 round-off, fewer kernels; keras_albert/models/fast_layers.py). True by default; False runs
            keras-hub's own layer call.
        **kwargs: the arguments of `keras_hub.models.AlbertBackbone`.
    """

    def __init__(self, *args, hidden_activation="gelu_approximate", fast_encoder=True, **kwargs):
        super().__init__(*args, **kwargs)
        _set_feedforward_activation(self, hidden_activation)
        if fast_encoder:
            use_fast_encoder(self)
        self.hidden_activation = hidden_activation
        self.fast_encoder = fast_encoder

    def get_config(self):
        return {**super().get_config(), "hidden_activation": self.hidden_activation, "fast_encoder": self.fast_encoder}


@keras.saving.register_keras_serializable(package="keras_albert")
class BertEncoder(keras_hub.models.BertBackbone):
    """keras-hub's `BertBackbone` with a configurable feed-forward activation.

    Args:
        hidden_activation: str. "gelu" (BERT's exact GELU, the default), "gelu_approximate", "relu", "silu"
            or "tanh".
        fast_encoder: bool. As in `AlbertEncoder`.
        **kwargs: the arguments of `keras_hub.models.BertBackbone`.
    """

    def __init__(self, *args, hidden_activation="gelu", fast_encoder=True, **kwargs):
        super().__init__(*args, **kwargs)
        _set_feedforward_activation(self, hidden_activation)
        if fast_encoder:
            use_fast_encoder(self)
        self.hidden_activation = hidden_activation
        self.fast_encoder = fast_encoder

    def get_config(self):
        return {**super().get_config(), "hidden_activation": self.hidden_activation, "fast_encoder": self.fast_encoder}


ENCODERS = {"albert": AlbertEncoder, "bert": BertEncoder}


def model_type_of(backbone):
    return "albert" if isinstance(backbone, keras_hub.models.AlbertBackbone) else "bert"
