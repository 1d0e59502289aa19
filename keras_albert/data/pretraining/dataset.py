"""The pretraining input pipeline: sharded TFRecords to batches of Google's features, optionally masked on the fly.

`keras_albert.data.pretraining_dataset(...)` reads the records `create-pretraining-data` writes, or Google's
BERT/ALBERT ones: files are
sharded per input pipeline (`tf.distribute.InputContext`), interleaved, shuffled, batched `batch_size *
gradient_accumulation_steps` per replica (the accumulating `train_step` splits that batch into micro-batches) and
prefetched. Each element is one dict holding every feature (inputs and labels together, as the records hold them),
integers cast to int32 as Google's `input_fn_builder` does.
"""

import os

import numpy as np

from keras_albert.data.pretraining.dynamic_masking import DynamicMasker
from keras_albert.data.pretraining.settings import MIN_SEQ_LENGTH
from keras_albert.errors import UserInputError

FEATURES = (
    "input_ids",
    "input_mask",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "next_sentence_labels",
)


def feature_spec(max_seq_length, max_predictions_per_seq):
    """Google's `name_to_features` for BERT/ALBERT pretraining records (`token_boundary` is not read)."""
    import tensorflow as tf

    return {
        "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }


def pretraining_dataset(
    file_pattern,
    batch_size,
    max_seq_length,
    max_predictions_per_seq,
    *,
    gradient_accumulation_steps=1,
    input_context=None,
    shuffle=True,
    repeat=True,
    seed=None,
    dynamic_masking=False,
    tokenizer=None,
    mask_id=None,
    vocab_size=None,
    special_ids=None,
    word_start_table=None,
    masking="token",
    masked_lm_prob=0.15,
    max_ngram=3,
    shuffle_buffer_size=10_000,
    cycle_length=8,
):
    """A `tf.data.Dataset` of pretraining batches: one dict of Google's seven features per batch.

    Args:
        file_pattern: str or list of str. TFRecord files, globs, or directories (their `*.tfrecord` files).
        batch_size: int. Examples per replica per micro-batch.
        max_seq_length: int. The records' sequence length.
        max_predictions_per_seq: int. The records' masked-position slots.
        gradient_accumulation_steps: int. Micro-batches per element: each element holds
            `batch_size * gradient_accumulation_steps` rows.
        input_context: `tf.distribute.InputContext` or None. Shards files by input pipeline (records when there
            are fewer files than pipelines).
        shuffle: bool. Shuffle file order and records (buffer `shuffle_buffer_size`).
        repeat: bool. Repeat forever.
        seed: int or None. Makes shuffling, interleaving and dynamic masks reproducible.
        dynamic_masking: bool. Mask each batch afresh (new masks every epoch) from records written with
            `create-pretraining-data --no_masking`, in TensorFlow ops, with ALBERT's rules (see
            `create_pretraining_data`, `dynamic_masking.DynamicMasker`): `masking` "token", "whole_word" or "ngram" (up to `max_ngram` words, p
            proportional to 1/n), `masked_lm_prob` of each row's tokens at most `max_predictions_per_seq`, 80% [MASK],
            10% random, 10% kept.
        tokenizer: `Tokenizer`, str or None. Supplies `mask_id`, `vocab_size`, `special_ids` and the word starts
            for dynamic masking; or give those explicitly (`word_start_table`: bool array over the vocabulary,
            needed for "whole_word" and "ngram").
        shuffle_buffer_size: int. Records in the shuffle buffer.
        cycle_length: int. Files read concurrently.

    Example:
    ```python
    dataset = keras_albert.data.pretraining_dataset("data/*.tfrecord", 32, 512, 20, gradient_accumulation_steps=2)
    model.fit(dataset, steps_per_epoch=1000)
    ```
    """
    import tensorflow as tf

    for name, value, minimum in (
        ("batch_size", batch_size, 1),
        ("max_seq_length", max_seq_length, MIN_SEQ_LENGTH),
        ("max_predictions_per_seq", max_predictions_per_seq, 1),
        ("gradient_accumulation_steps", gradient_accumulation_steps, 1),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise UserInputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    files = _match_files(file_pattern)
    masker = None
    if dynamic_masking:
        masker = DynamicMasker.build(
            tokenizer,
            mask_id,
            vocab_size,
            special_ids,
            word_start_table,
            masking,
            masked_lm_prob,
            max_ngram,
            max_predictions_per_seq,
        )
    _check_first_record(files[0], max_seq_length, max_predictions_per_seq, dynamic_masking)

    deterministic = seed is not None or not shuffle
    dataset = tf.data.Dataset.from_tensor_slices(files)
    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    shard_records = pipelines > 1 and len(files) < pipelines
    if pipelines > 1 and not shard_records:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=max(1, min(cycle_length, len(files))),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic,
    )
    if shard_records:
        dataset = dataset.shard(pipelines, input_context.input_pipeline_id)
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer_size, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size * gradient_accumulation_steps, drop_remainder=True)
    spec = feature_spec(max_seq_length, max_predictions_per_seq)

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        return {
            name: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value for name, value in features.items()
        }

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if masker is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            masker, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _match_files(file_pattern):
    import tensorflow as tf

    patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) else list(file_pattern or [])
    files = []
    for pattern in patterns:
        pattern = os.fspath(pattern)
        if tf.io.gfile.isdir(pattern):
            pattern = os.path.join(pattern, "*.tfrecord")
        matches = sorted(tf.io.gfile.glob(pattern))
        if not matches:
            raise UserInputError(f"file_pattern: no TFRecord file matches {pattern!r}")
        files.extend(matches)
    if not files:
        raise UserInputError("file_pattern: no files given")
    return list(dict.fromkeys(files))


def _check_first_record(path, max_seq_length, max_predictions_per_seq, dynamic_masking):
    """Fail early, naming the file and feature, when the records do not fit the settings."""
    import tensorflow as tf

    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as error:
        raise UserInputError(f"{path}: not a TFRecord file ({error.message.splitlines()[0]})") from None
    if first is None:
        return  # an empty shard (fewer instances than shards); the others are read
    from google.protobuf.message import DecodeError

    try:
        example = tf.train.Example.FromString(first.numpy())
    except DecodeError:
        raise UserInputError(f"{path}: records are not tf.train.Example protos") from None
    expected = {name: max_seq_length for name in FEATURES[:3]}
    expected.update({name: max_predictions_per_seq for name in FEATURES[3:6]})
    expected["next_sentence_labels"] = 1
    features = example.features.feature
    for name, length in expected.items():
        if name not in features:
            raise UserInputError(f"{path}: records have no feature {name!r}")
        kind = features[name].WhichOneof("kind")
        values = getattr(features[name], kind).value
        if len(values) != length:
            flag = "max_seq_length" if length == max_seq_length and name in FEATURES[:3] else "max_predictions_per_seq"
            if name == "next_sentence_labels":
                flag = "next_sentence_labels"
            raise UserInputError(f"{path}: feature {name!r} holds {len(values)} values, {flag} says {length}")
    if dynamic_masking and any(features["masked_lm_weights"].float_list.value):
        raise UserInputError(
            f"{path}: records are already masked; dynamic_masking needs records written with --no_masking"
        )
