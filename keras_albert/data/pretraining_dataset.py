"""The pretraining input pipeline: sharded TFRecords to batches of Google's features, optionally masked on the fly.

`keras_albert.data.pretraining_dataset(...)` (this module is callable, so the package attribute and the function
are the same thing) reads the records `create-pretraining-data` writes, or Google's BERT/ALBERT ones: files are
sharded per input pipeline (`tf.distribute.InputContext`), interleaved, shuffled, batched `batch_size *
gradient_accumulation_steps` per replica (the accumulating `train_step` splits that batch into micro-batches) and
prefetched. Each element is one dict holding every feature (inputs and labels together, as the records hold them),
integers cast to int32 as Google's `input_fn_builder` does.
"""

import os
import sys
import types

import numpy as np

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
MASKING_MODES = ("token", "whole_word", "ngram")


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
            `create_pretraining_data`): `masking` "token", "whole_word" or "ngram" (up to `max_ngram` words, p
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
        ("max_seq_length", max_seq_length, 2),
        ("max_predictions_per_seq", max_predictions_per_seq, 1),
        ("gradient_accumulation_steps", gradient_accumulation_steps, 1),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise UserInputError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    files = _match_files(file_pattern)
    masker = None
    if dynamic_masking:
        masker = _DynamicMasker.build(
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


class _DynamicMasker:
    """Masks a parsed batch in TensorFlow ops with ALBERT's rules (see `create_pretraining_data._Batch.mask`)."""

    def __init__(self, mask_id, special, word_start, replacement_ids, masking, masked_lm_prob, max_ngram, predictions):
        import tensorflow as tf

        self.mask_id = mask_id
        self.special = tf.constant(special)
        self.word_start = tf.constant(word_start)
        self.replacement_ids = tf.constant(replacement_ids, tf.int32)
        self.masking = masking
        self.masked_lm_prob = masked_lm_prob
        self.max_ngram = max_ngram if masking == "ngram" else 1
        self.predictions = predictions
        weights = 1.0 / np.arange(1, self.max_ngram + 1)
        self.thresholds = tf.constant((np.cumsum(weights) / weights.sum())[:-1], tf.float32)

    @classmethod
    def build(
        cls,
        tokenizer,
        mask_id,
        vocab_size,
        special_ids,
        word_start_table,
        masking,
        masked_lm_prob,
        max_ngram,
        predictions,
    ):
        if masking not in MASKING_MODES:
            raise UserInputError(f"masking: expected one of {', '.join(MASKING_MODES)}, got {masking!r}")
        if not 0 < masked_lm_prob < 1:
            raise UserInputError(f"masked_lm_prob: expected a value between 0 and 1, got {masked_lm_prob!r}")
        if not isinstance(max_ngram, (int, np.integer)) or max_ngram < 1:
            raise UserInputError(f"max_ngram: expected an integer >= 1, got {max_ngram!r}")
        if tokenizer is not None:
            from keras_albert.data.tokenizers import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
            if tokenizer.mask_id is None:
                raise UserInputError(f"tokenizer: {tokenizer!r} has no {tokenizer.specials['mask']} token")
            mask_id = tokenizer.mask_id if mask_id is None else mask_id
            vocab_size = tokenizer.vocab_size if vocab_size is None else vocab_size
            special_ids = tokenizer.special_ids if special_ids is None else special_ids
            word_start_table = tokenizer.word_start_table() if word_start_table is None else word_start_table
        if mask_id is None or vocab_size is None or special_ids is None:
            raise UserInputError("dynamic_masking: give a tokenizer, or mask_id, vocab_size and special_ids")
        if masking != "token" and word_start_table is None:
            raise UserInputError(f"masking: {masking!r} needs word starts: give a tokenizer or word_start_table")
        special = np.zeros(vocab_size, bool)
        special[list(special_ids)] = True
        special[mask_id] = True
        word_start = np.ones(vocab_size, bool) if word_start_table is None else np.asarray(word_start_table, bool)
        if word_start.shape != (vocab_size,):
            raise UserInputError(f"word_start_table: expected shape ({vocab_size},), got {word_start.shape}")
        replacement_ids = np.flatnonzero(~special)
        return cls(mask_id, special, word_start, replacement_ids, masking, masked_lm_prob, max_ngram, predictions)

    def __call__(self, features, seed):
        import tensorflow as tf

        ids = features["input_ids"]
        batch, seq = tf.shape(ids)[0], tf.shape(ids)[1]
        max_ngram, predictions = self.max_ngram, self.predictions
        seeds = tf.random.experimental.stateless_split(seed, 4)
        candidates = (features["input_mask"] > 0) & ~tf.gather(self.special, ids)
        if self.masking == "token":
            unit_start = candidates
        else:
            after_special = tf.pad(~candidates[:, :-1], [[0, 0], [1, 0]], constant_values=True)
            unit_start = candidates & (tf.gather(self.word_start, ids) | after_special)
        starts = tf.cast(unit_start, tf.int32)
        units = tf.reduce_sum(starts, axis=1)
        lengths = tf.reduce_sum(tf.cast(features["input_mask"] > 0, tf.int32), axis=1)
        budget = tf.minimum(
            predictions, tf.maximum(1, tf.cast(tf.round(tf.cast(lengths, tf.float32) * self.masked_lm_prob), tf.int32))
        )
        count_candidates = tf.cast(candidates, tf.int32)
        rank = tf.cumsum(count_candidates, axis=1, exclusive=True)
        unit_of_token = tf.cumsum(starts, axis=1) - 1
        # first[b, u]: candidate rank of unit u's first token; past the last unit, the row's candidate count.
        width = seq + max_ngram + 1
        first = tf.tile(tf.reduce_sum(count_candidates, axis=1, keepdims=True), [1, width])
        where = tf.where(unit_start)
        first = tf.tensor_scatter_nd_update(
            first,
            tf.stack([where[:, 0], tf.cast(tf.gather_nd(unit_of_token, where), tf.int64)], axis=1),
            tf.gather_nd(rank, where),
        )
        live = tf.range(seq)[None, :] < units[:, None]
        priority = tf.where(live, tf.random.stateless_uniform([batch, seq], seeds[0]), 2.0)
        order = tf.argsort(priority, axis=1, stable=True)
        columns = tf.range(seq + max_ngram)[None, :]

        def step(i, covered, count):
            active = (i < units) & (count < budget)
            u = order[:, i]
            # n with p proportional to 1/n, cut to the units left (as ALBERT's slices of its word list are).
            draw = tf.random.stateless_uniform([batch], tf.random.experimental.stateless_fold_in(seeds[1], i))
            n = 1 + tf.reduce_sum(tf.cast(draw[:, None] > self.thresholds[None, :], tf.int32), axis=1)
            n = tf.minimum(n, tf.maximum(units - u, 0))
            start = tf.gather(first, u, batch_dims=1)
            room = budget - count
            sizes = [tf.zeros_like(u)]
            fits = tf.zeros_like(u)
            for k in range(1, max_ngram + 1):
                sizes.append(tf.gather(first, tf.minimum(u + k, width - 1), batch_dims=1) - start)
                fits += tf.cast((k <= n) & (sizes[k] <= room), tf.int32)
            span = (columns >= u[:, None]) & (columns < (u + fits)[:, None])
            overlap = tf.reduce_any(span & covered, axis=1)
            accept = active & (fits >= 1) & ~overlap
            covered = covered | (span & accept[:, None])
            size = tf.gather(tf.stack(sizes, axis=1), fits, batch_dims=1)
            return i + 1, covered, count + tf.where(accept, size, 0)

        def keep_going(i, covered, count):
            return (i < seq) & tf.reduce_any((i < units) & (count < budget))

        _, covered, _ = tf.while_loop(
            keep_going,
            step,
            (tf.constant(0), tf.zeros([batch, seq + max_ngram], tf.bool), tf.zeros([batch], tf.int32)),
        )
        masked = candidates & tf.gather(covered, tf.maximum(unit_of_token, 0), batch_dims=1)
        # The first `predictions` masked positions of each row, in order (there are never more).
        score = tf.where(masked, seq - tf.range(seq)[None, :], 0)
        top, _ = tf.math.top_k(score, k=predictions)
        weights = top > 0
        positions = tf.where(weights, seq - top, 0)
        labels = tf.where(weights, tf.gather(ids, positions, batch_dims=1), 0)
        draws = tf.random.stateless_uniform([2, batch, predictions], seeds[2])
        random_ids = tf.gather(
            self.replacement_ids,
            tf.random.stateless_uniform(
                [batch, predictions], seeds[3], maxval=tf.shape(self.replacement_ids)[0], dtype=tf.int32
            ),
        )
        replaced = tf.where(draws[0] < 0.8, self.mask_id, tf.where(draws[1] < 0.5, labels, random_ids))
        index = tf.where(weights)
        new_ids = tf.tensor_scatter_nd_update(
            ids,
            tf.stack([index[:, 0], tf.cast(tf.gather_nd(positions, index), tf.int64)], axis=1),
            tf.gather_nd(replaced, index),
        )
        features = dict(features)
        features["input_ids"] = new_ids
        features["masked_lm_positions"] = positions
        features["masked_lm_ids"] = labels
        features["masked_lm_weights"] = tf.cast(weights, tf.float32)
        return features


class _CallableModule(types.ModuleType):
    """`keras_albert.data.pretraining_dataset` is this module; calling it calls the function of the same name."""

    def __call__(self, *args, **kwargs):
        return pretraining_dataset(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
