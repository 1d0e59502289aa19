"""Dynamic masking: ALBERT's masked-LM rules applied to each batch afresh, in TensorFlow ops inside `tf.data`.

Why this is not the record builder's masking (`masking.mask_rows`) reused: that one is written in NumPy loops over a
shrinking set of live rows, drawing from counter-based uint64 streams; neither has a fast TensorFlow form, and calling
back into Python from the reader's graph (`tf.numpy_function`) would hold the interpreter lock on tf.data's threads
while the training step needs it. The rules they share are defined once, in `masking` (`MASKING_MODES`,
`ngram_thresholds`).
"""

import numpy as np

from keras_albert.data.pretraining.masking import MASKING_MODES, ngram_thresholds
from keras_albert.data.tokenizers import load_tokenizer
from keras_albert.errors import UserInputError


class DynamicMasker:
    """Masks a parsed batch in TensorFlow ops with ALBERT's rules (`masking.mask_rows`), for `pretraining_dataset`.

    Candidates are the tokens of `input_mask` that are not special ids; units are tokens ("token") or whole words (a
    word start, or the first candidate after a non-candidate); units are visited in a random order, each drawing an
    n-gram length (p proportional to 1/n, `masking.ngram_thresholds`), shortened to fit the row's budget
    `min(predictions, max(1, round(length * masked_lm_prob)))` and skipped when it overlaps a chosen one; 80% of the
    chosen tokens become [MASK], half the rest a random non-special token, the others are kept.

    Args:
        mask_id: int. The [MASK] id.
        special: bool array over the vocabulary. Ids never masked nor used as random replacements.
        word_start: bool array over the vocabulary. Tokens that start a word.
        replacement_ids: int array. The ids random replacements draw from.
        masking: str. "token", "whole_word" or "ngram".
        masked_lm_prob: float. Share of each row's tokens to mask.
        max_ngram: int. Longest n-gram for "ngram" masking.
        predictions: int. `max_predictions_per_seq`.
    """

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
        self.thresholds = tf.constant(ngram_thresholds(self.max_ngram), tf.float32)

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
