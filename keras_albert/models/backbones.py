"""keras-hub ALBERT and BERT encoders whose feed-forward activation is a config argument.

keras-hub's `AlbertBackbone` and `BertBackbone` hard-code the tanh approximation of GELU. Hugging Face configs
name theirs in `hidden_act` (BERT checkpoints mostly use the exact `gelu`), and matching a checkpoint to 1e-4
needs the right one, so these subclasses take `hidden_activation` and set it on every feed-forward layer.
"""

import keras
import keras_hub

from keras_albert.errors import UserInputError
from keras_albert.models.fast_layers import gelu_approximate, use_fast_encoder

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
