"""The pretraining input pipeline: sharded TFRecords to batches of Google's features, optionally masked on the fly.

`keras_albert.data.pretraining_dataset(...)` reads the records `create-pretraining-data` writes, or Google's
BERT/ALBERT ones: files are sharded per input pipeline (`tf.distribute.InputContext`), read one after another in
an order shuffled anew each epoch, shuffled in windows of `shuffle_buffer_size` records, batched
`batch_size * gradient_accumulation_steps` per replica (the accumulating `train_step` splits that batch into
micro-batches) and prefetched. Each element is one dict holding every feature (inputs and labels together, as the
records hold them), integers cast to int32 as Google's `input_fn_builder` does.

Every random choice is a stateless function of (seed, epoch, window) or (seed, batch): the file order of epoch e,
the shuffle of window w, the dynamic masks of batch b. The stream is therefore addressable: `skip_batches=n`
starts at the record where n batches end (the epoch, the file and the record in it follow from the files' record
counts, read from the TFRecord headers when n > 0) and yields exactly what `.skip(n)` would, in time independent of
n. That is how a resumed run finds its data position without replaying the pipeline.
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
    skip_batches=0,
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
):
    """A `tf.data.Dataset` of pretraining batches: one dict of Google's seven features per batch.

    Args:
        file_pattern: str or list of str. TFRecord files, globs, or directories (their `*.tfrecord` files). Every
            file's records must have the same shapes (`max_seq_length`, `max_predictions_per_seq`).
        batch_size: int. Examples per replica per micro-batch.
        max_seq_length: int. The records' sequence length.
        max_predictions_per_seq: int. The records' masked-position slots.
        gradient_accumulation_steps: int. Micro-batches per element: each element holds
            `batch_size * gradient_accumulation_steps` rows.
        input_context: `tf.distribute.InputContext` or None. Shards files by input pipeline (records when there
            are fewer files than pipelines).
        shuffle: bool. Shuffle the file order each epoch and the records within windows of
            `shuffle_buffer_size`.
        repeat: bool. Repeat forever (batches run on across epoch ends); False: one epoch.
        seed: int or None. Makes shuffling and dynamic masks reproducible (None: a random seed).
        skip_batches: int. Batches of this pipeline already consumed: the dataset starts after them, as
            `.skip(skip_batches)` would, in time independent of `skip_batches`.
        dynamic_masking: bool. Mask each batch afresh (new masks every epoch) from records written with
            `create-pretraining-data --no_masking`, in TensorFlow ops, with ALBERT's rules (see
            `create_pretraining_data`, `dynamic_masking.DynamicMasker`): `masking` "token", "whole_word" or "ngram"
            (up to `max_ngram` words, p proportional to 1/n), `masked_lm_prob` of each row's tokens at most
            `max_predictions_per_seq`, 80% [MASK], 10% random, 10% kept.
        tokenizer: `Tokenizer`, str or None. Supplies `mask_id`, `vocab_size`, `special_ids` and the word starts
            for dynamic masking; or give those explicitly (`word_start_table`: bool array over the vocabulary,
            needed for "whole_word" and "ngram").
        shuffle_buffer_size: int. Records per shuffle window.

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
        ("skip_batches", skip_batches, 0),
        ("shuffle_buffer_size", shuffle_buffer_size, 1),
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
    filled = [
        _check_first_record(path, max_seq_length, max_predictions_per_seq, dynamic_masking, files[0]) for path in files
    ]
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)

    pipelines = input_context.num_input_pipelines if input_context is not None else 1
    pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
    stride, phase = 1, 0
    if pipelines > 1 and len(files) >= pipelines:
        files, filled = files[pipeline_id::pipelines], filled[pipeline_id::pipelines]
    elif pipelines > 1:
        stride, phase = pipelines, pipeline_id  # fewer files than pipelines: every pipelines-th record
    if not any(filled):
        raise UserInputError(f"file_pattern: {file_pattern!r} holds no record for input pipeline {pipeline_id}")
    rows = batch_size * gradient_accumulation_steps
    window = int(shuffle_buffer_size)
    counts = first_epoch = offset = first_window = first_start = 0
    if skip_batches:
        # Where the stream resumes: the files' record counts (from their headers) place it, whatever skip_batches.
        counts = [count_records(path) for path in files]
        per_epoch = max(0, (sum(counts) - phase + stride - 1) // stride)  # this pipeline's records in one epoch
        if per_epoch == 0:
            raise UserInputError(f"file_pattern: {file_pattern!r} holds no record for input pipeline {pipeline_id}")
        first_epoch, offset = divmod(int(skip_batches) * rows, per_epoch)
        # The first epoch starts at the window holding `offset` (whole, for its shuffle), then drops what precedes
        # it; without shuffle, at `offset` itself.
        first_window = offset // window if shuffle else 0
        first_start = first_window * window if shuffle else offset
    files_t = tf.constant(files)
    counts_t = tf.constant(counts or [0] * len(files), tf.int64)

    def epoch_records(epoch):
        """This pipeline's records of `epoch`, from the window holding `offset` in the first epoch."""
        if shuffle:
            keys = tf.random.stateless_uniform([len(files)], seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
            order = tf.argsort(keys, stable=True)
        else:
            order = tf.range(len(files))
        is_first = epoch == first_epoch
        start_window = tf.where(is_first, tf.constant(first_window, tf.int64), 0)
        if first_start:
            # A record index of the epoch's stream over all the files, a multiple of stride: the file holding it,
            # and the records to skip there.
            start = tf.where(is_first, tf.constant(first_start * stride, tf.int64), 0)
            ends = tf.cumsum(tf.gather(counts_t, order))
            first_file = tf.searchsorted(ends, [start], side="right")[0]
            in_file = start - (ends[first_file] - tf.gather(counts_t, order)[first_file])
            names = tf.gather(files_t, order[first_file:])
            skips = tf.concat([[in_file], tf.zeros([tf.size(names) - 1], tf.int64)], 0)
        else:
            names = tf.gather(files_t, order)
            skips = tf.zeros([len(files)], tf.int64)
        records = tf.data.Dataset.from_tensor_slices((names, skips)).flat_map(
            lambda name, skip: tf.data.TFRecordDataset(name, buffer_size=1 << 20).skip(skip)
        )
        if stride > 1:
            records = records.shard(stride, phase)
        if shuffle:
            windows = records.batch(window).enumerate(start=start_window)

            def shuffled(index, serialized):
                key = tf.random.stateless_uniform(
                    [tf.size(serialized)], seed=tf.stack([tf.constant(seed, tf.int64), epoch * (1 << 31) + index])
                )
                return tf.data.Dataset.from_tensor_slices(tf.gather(serialized, tf.argsort(key, stable=True)))

            records = windows.flat_map(shuffled)
        return records.skip(tf.where(is_first, tf.constant(offset - first_start, tf.int64), 0))

    last_epoch = np.iinfo(np.int64).max if repeat else 1
    dataset = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(epoch_records)
    dataset = dataset.batch(rows, drop_remainder=True)
    spec = feature_spec(max_seq_length, max_predictions_per_seq)

    def parse(serialized):
        features = tf.io.parse_example(serialized, spec)
        return {
            name: tf.cast(value, tf.int32) if value.dtype == tf.int64 else value for name, value in features.items()
        }

    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if masker is not None:
        # Batch b of this pipeline is masked with the stateless seed (seed, b * pipelines + pipeline): the masks
        # of a batch do not depend on where the stream started.
        seeds = tf.data.Dataset.counter(start=int(skip_batches)).map(
            lambda b: tf.stack([tf.constant(seed, tf.int64), b * pipelines + pipeline_id])
        )
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            masker, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def count_records(path):
    """The number of records in a TFRecord file, from its length headers (the payloads are skipped, not read)."""
    import tensorflow as tf

    opener = tf.io.gfile.GFile if "://" in os.fspath(path) else open
    count = 0
    with opener(path, "rb") as file:
        size = file.seek(0, 2) if opener is open else tf.io.gfile.stat(path).length
        file.seek(0)
        position = 0
        while position < size:
            header = file.read(12)
            if len(header) < 12:
                raise UserInputError(f"{path}: truncated TFRecord file (a record header ends at byte {size})")
            length = int.from_bytes(header[:8], "little")
            position += 12 + length + 4
            if position > size:
                raise UserInputError(f"{path}: truncated TFRecord file (record {count} runs past byte {size})")
            file.seek(position)
            count += 1
    return count


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


def _check_first_record(path, max_seq_length, max_predictions_per_seq, dynamic_masking, first_file=None):
    """Fail early, naming the file and feature, when the records do not fit the settings (when an earlier file,
    `first_file`, fitted them: the files mix records of different shapes)."""
    import tensorflow as tf

    try:
        first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    except tf.errors.OpError as error:
        raise UserInputError(f"{path}: not a TFRecord file ({error.message.splitlines()[0]})") from None
    if first is None:
        return False  # an empty shard (fewer instances than shards); the others are read
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
            if first_file is not None and first_file != path:
                raise UserInputError(
                    f"{path}: records of mixed {flag}: its feature {name!r} holds {len(values)} values, those of "
                    f"{first_file} {length}"
                )
            raise UserInputError(f"{path}: feature {name!r} holds {len(values)} values, {flag} says {length}")
    if dynamic_masking and any(features["masked_lm_weights"].float_list.value):
        raise UserInputError(
            f"{path}: records are already masked; dynamic_masking needs records written with --no_masking"
        )
    return True
