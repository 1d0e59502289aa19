"""Pretraining data: raw text to sharded TFRecords (`create_pretraining_data`), and the `tf.data` reader of those
records (`pretraining_dataset`).

One role a module, in the order data flows:
    settings.py        `PretrainingDataSettings`: the run's settings, validated once
    corpus.py          reading and tokenizing the text into three flat arrays
    plan.py            tasks (a copy of a chunk of documents), their order, which shard each record goes to
    streams.py         the counter-based random streams every draw comes from
    instances.py       `build_instances(job)`: the one interface to the two builders
    _instances.c       the compiled builder (pairs, masking, tf.train.Example, framing in one pass)
    numpy_builder.py   its NumPy twin, with pairs.py and masking.py: the fallback and the tests' oracle
    encoding.py        tf.train.Example wire format and TFRecord framing (CRC-32C by google-crc32c)
    writer.py          the shard files
    pool.py            the worker processes
    api.py             `create_pretraining_data`, which runs the steps and writes summary.json
    dataset.py         `pretraining_dataset`, the reader; dynamic_masking.py masks its batches on the fly
The command line is `keras_albert.commands.create_pretraining_data`.
"""

from keras_albert.data.pretraining.api import create_pretraining_data
from keras_albert.data.pretraining.dataset import FEATURES, feature_spec, pretraining_dataset
from keras_albert.data.pretraining.settings import PretrainingDataSettings

__all__ = ["FEATURES", "PretrainingDataSettings", "create_pretraining_data", "feature_spec", "pretraining_dataset"]
