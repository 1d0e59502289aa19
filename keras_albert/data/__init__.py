"""Tokenizers, pretraining data (creation and reading), SQuAD features, answer extraction and scoring."""

import importlib

_LAZY = {
    "pretraining_dataset": "keras_albert.data.pretraining_dataset",
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
