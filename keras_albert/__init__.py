"""keras-albert: pretrain ALBERT and BERT from raw text and finetune them on SQuAD, in Keras 3.

The heavy names (models, which import TensorFlow) load on first use, so `import keras_albert` and the
`keras-albert` data commands start fast.
"""

import importlib

from keras_albert.errors import UserInputError
from keras_albert.version import __version__

_LAZY = {
    "PretrainingModel": "keras_albert.models.pretraining_model",
    "SquadModel": "keras_albert.models.squad_model",
    "presets": "keras_albert.models.presets",
    "models": "keras_albert.models",
    "optimizers": "keras_albert.optimizers",
    "data": "keras_albert.data",
    "distribute": "keras_albert.distribute",
    "training": "keras_albert.training",
}

__all__ = ["PretrainingModel", "SquadModel", "UserInputError", "load_model", "__version__"] + [
    name for name in _LAZY if name not in ("PretrainingModel", "SquadModel")
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_albert' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = getattr(module, name) if name[0].isupper() else module
    globals()[name] = value
    return value


def load_model(path, **kwargs):
    """`keras.saving.load_model` with keras-albert's classes registered (a `.keras` file of a PretrainingModel,
    SquadModel, or any model using the library's layers and optimizers)."""
    import keras

    importlib.import_module("keras_albert.models")
    importlib.import_module("keras_albert.optimizers")
    return keras.saving.load_model(path, **kwargs)
