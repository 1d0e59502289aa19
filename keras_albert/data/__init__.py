"""Tokenizers, pretraining data (creation and reading), SQuAD features, answer extraction and scoring."""

import importlib

# name -> the module it comes from; a name equal to its module's last part is the module itself. Imported on first
# use, so that `keras_albert.data.squad` scoring and the data commands start without TensorFlow.
_LAZY = {
    "create_pretraining_data": "keras_albert.data.pretraining",
    "pretraining_dataset": "keras_albert.data.pretraining",
    "PretrainingDataSettings": "keras_albert.data.pretraining",
    "load_tokenizer": "keras_albert.data.tokenizers",
    "squad": "keras_albert.data.squad",
    "tokenizers": "keras_albert.data.tokenizers",
}

__all__ = list(_LAZY)


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'keras_albert.data' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if _LAZY[name].endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value
