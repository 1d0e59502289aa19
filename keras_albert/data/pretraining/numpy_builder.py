"""The NumPy instance builder: the fallback when the compiled one (`_instances.c`) is not installed, and its oracle.

Pairs come from `pairs.PairMaker`; rows of similar length are grouped into padded matrices, masked
(`masking.mask_rows`) and serialized with whole-array operations; the records are then put in the task's shuffled
order, grouped by shard, and framed. The draws, and so the bytes, are those of the compiled builder.
"""

import numpy as np

from keras_albert.data.pretraining import encoding, masking, plan, streams
from keras_albert.data.pretraining.pairs import PairMaker

GROUP_ROWS = 256


def build(job):
    """`instances.build_instances` with NumPy: (framed records with zero CRC slots, their end offsets, counts)."""
    pairs = PairMaker(job.corpus, job.tables, job.settings, job.pair_key)
    for document in job.documents.tolist():
        pairs.document(document)
    # Rows of similar length together, so that matrices are only as wide as their longest row.
    lengths = np.asarray(pairs.a_end) - np.asarray(pairs.a_start) + np.asarray(pairs.b_end) - np.asarray(pairs.b_start)
    by_length = np.argsort(lengths, kind="stable")
    records, stats = [None] * len(by_length), None
    for group in np.array_split(by_length, max(1, -(-len(by_length) // GROUP_ROWS))):
        batch = Batch(job, pairs, group)
        if batch.size and not job.settings.no_masking:
            batch.mask(job.mask_key)
        for row, record in zip(group.tolist(), batch.serialize()):
            records[row] = record
        stats = batch.stats if stats is None else _add_stats(stats, batch.stats)
    shuffled = streams.shuffled_order(len(records), job.shuffle_key)
    order = plan.shard_major(len(records), job.settings.num_shards, job.position)
    blob, ends = encoding.frame_with_slots([records[shuffled[p]] for p in order])
    return blob, ends, stats


def _add_stats(total, more):
    return {
        key: [x + y for x, y in zip(value, more[key])] if isinstance(value, list) else value + more[key]
        for key, value in total.items()
    }


class Batch:
    """A group of a task's instances as padded matrices: built, masked and serialized with whole-array operations."""

    def __init__(self, job, pairs, rows):
        corpus, tables, settings = job.corpus, job.tables, job.settings
        self.tables, self.settings = tables, settings
        self.rows = np.asarray(rows, np.int64)  # indices of the pairs (their masking streams)
        a0, a1 = np.asarray(pairs.a_start, np.int64)[rows], np.asarray(pairs.a_end, np.int64)[rows]
        b0, b1 = np.asarray(pairs.b_start, np.int64)[rows], np.asarray(pairs.b_end, np.int64)[rows]
        self.labels = np.asarray(pairs.labels, np.int64)[rows]
        self.size = size = len(self.labels)
        length_a, length_b = a1 - a0, b1 - b0
        self.lengths = lengths = length_a + length_b + 3
        # Matrices as wide as the longest row; serialize() pads to max_seq_length.
        seq = int(lengths.max()) if size else 1
        # [CLS] A [SEP] B [SEP], padded: column c of row r reads corpus token source[r, c] or a special.
        columns = np.arange(seq)[None, :]
        la, lb = length_a[:, None], length_b[:, None]
        self.valid = columns < lengths[:, None]
        in_a = (columns >= 1) & (columns <= la)
        in_b = (columns >= la + 2) & (columns < la + 2 + lb)
        source = np.where(in_a, a0[:, None] + columns - 1, np.where(in_b, b0[:, None] + columns - la - 2, 0))
        tokens = np.where(in_a | in_b, corpus.tokens[source], tables.pad_id).astype(np.int64)
        self.special = self.valid & ~in_a & ~in_b
        tokens[:, 0] = tables.cls_id
        rows = np.arange(size)
        tokens[rows, length_a + 1] = tables.sep_id
        tokens[rows, lengths - 1] = tables.sep_id
        self.tokens = tokens
        self.segments = in_b | (self.valid & (columns == lengths[:, None] - 1))
        self.boundary = (tables.word_start[tokens] & self.valid) | self.special
        predictions = settings.max_predictions_per_seq
        self.masked = masking.Masked(
            positions=np.zeros((size, predictions), np.int64),
            ids=np.zeros((size, predictions), np.int64),
            weights=np.zeros((size, predictions), np.float32),
            stats={},
        )
        max_ngram = settings.max_ngram
        self.stats = {
            "instances": size,
            "tokens": int(lengths.sum()),
            "padding": int(size * settings.max_seq_length - lengths.sum()),
            "masked": 0,
            "replaced_mask": 0,
            "replaced_random": 0,
            "kept": 0,
            "label_1": int(self.labels.sum()),
            "ngrams": [0] * max_ngram,
            "ngram_draws": [0] * max_ngram,
        }

    def mask(self, masks_key):
        self.masked = masking.mask_rows(
            self.tokens,
            self.valid,
            self.special,
            self.boundary,
            self.lengths,
            self.rows,
            masks_key,
            self.settings,
            self.tables,
        )
        self.stats.update(self.masked.stats)

    def serialize(self):
        """Every row as a serialized tf.train.Example with Google's feature names, dtypes and shapes."""
        if not self.size:
            return []
        seq = self.settings.max_seq_length

        def padded(matrix):
            out = np.zeros((self.size, seq), np.uint8)
            out[:, : matrix.shape[1]] = matrix
            return out

        int64 = encoding.INT64
        columns = [encoding.varint_entries("input_ids", self.tokens, self.lengths, seq)]
        columns.append(encoding.fixed_entries("input_mask", int64, padded(self.valid)))
        columns.append(encoding.fixed_entries("segment_ids", int64, padded(self.segments)))
        if self.settings.sentence_order:  # Google ALBERT's script writes token_boundary, BERT's does not
            columns.append(encoding.fixed_entries("token_boundary", int64, padded(self.boundary)))
        columns.append(encoding.varint_entries("masked_lm_positions", self.masked.positions))
        columns.append(encoding.varint_entries("masked_lm_ids", self.masked.ids))
        weights = self.masked.weights.astype("<f4").view(np.uint8)
        columns.append(encoding.fixed_entries("masked_lm_weights", encoding.FLOAT, weights))
        label_entries = [encoding.entry_prefix("next_sentence_labels", int64, 1) + bytes([label]) for label in (0, 1)]
        columns.append([label_entries[label] for label in self.labels.tolist()])
        return [encoding.example(body) for body in map(b"".join, zip(*columns))]
