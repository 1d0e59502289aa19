"""ALBERT's masked-LM rules, in NumPy over a batch of rows (`mask_row` in `_instances.c` is the same, row by row).

The reader's dynamic masking (`dynamic_masking.DynamicMasker`) follows the same rules in TensorFlow ops, with
TensorFlow's generators (its docstring says why it cannot reuse this code); what both read is defined here once:
the masking modes and the n-gram length distribution.
"""

import dataclasses
import functools

import numpy as np

from keras_albert.data.pretraining import streams

MASKING_MODES = ("token", "whole_word", "ngram")
# A masked token's uniform draw below MASK_BELOW: [MASK]; else below RANDOM_BELOW: a random token; else kept.
MASK_BELOW = 0.8
RANDOM_BELOW = 0.9


@functools.cache
def ngram_thresholds(max_ngram):
    """Cumulative probabilities of n = 1 .. max_ngram - 1 for p(n) proportional to 1/n: n is 1 + the number of
    thresholds below a uniform draw. Read-only (one array per `max_ngram`, shared by every task)."""
    weights = 1.0 / np.arange(1, max_ngram + 1)
    thresholds = np.ascontiguousarray((np.cumsum(weights) / weights.sum())[:-1], np.float64)
    thresholds.flags.writeable = False
    return thresholds


@dataclasses.dataclass
class Masked:
    """The masked-LM features of a batch of rows, and the counts for the summary."""

    positions: np.ndarray
    ids: np.ndarray
    weights: np.ndarray
    stats: dict


def mask_rows(tokens, valid, special, boundary, lengths, rows, masks_key, settings, tables):
    """ALBERT's `create_masked_lm_predictions`, run in lockstep over all rows; replaces the chosen tokens in `tokens`.

    Units are tokens ("token") or whole words (a word start, or the first token after [CLS]/[SEP]). Units are
    visited in a random order (an incremental Fisher-Yates shuffle); each draws n (p proportional to 1/n, n no
    more than the units left), shortened until it fits the row's budget
    `min(max_predictions, max(1, round(length * masked_lm_prob)))`, and is skipped when it still does not fit
    or overlaps a chosen n-gram. Chosen tokens: 80% [MASK], 10% random, 10% kept. Row `rows[r]` draws from the
    stream `key(masks_key, rows[r])`: counters 2s and 2s + 1 at step s, and `REPLACE_COUNTER + 2k` (+ 1) for its k-th
    masked token.

    Args:
        tokens: int64 [rows, width]. `[CLS] A [SEP] B [SEP]` and padding.
        valid, special, boundary: bool [rows, width]. Not padding; [CLS] or [SEP]; a word start (or special).
        lengths: int64 [rows]. Tokens per row.
        rows: int64 [rows]. Each row's index among the task's pairs: its masking stream.
        masks_key: int. The task's masking stream.
        settings: `PretrainingDataSettings`.
        tables: `instances.Tables`.
    """
    size = len(lengths)
    max_ngram = settings.max_ngram
    predictions = settings.max_predictions_per_seq
    candidates = valid & ~special
    if settings.masking == "token":
        unit_start = candidates
    else:
        after_special = np.zeros_like(candidates)
        after_special[:, 1:] = special[:, :-1]
        unit_start = candidates & (boundary | after_special)
    units = unit_start.sum(axis=1)
    widest = int(units.max()) if size else 0
    budget = np.minimum(predictions, np.maximum(1, np.round(lengths * settings.masked_lm_prob).astype(np.int64)))
    # first[r, u]: candidate rank of unit u's first token; first[r, units[r]] = candidates in row r.
    rank = np.cumsum(candidates, axis=1) - candidates
    row_of_start, column_of_start = np.nonzero(unit_start)
    unit_of_start = np.arange(len(row_of_start)) - np.repeat(np.cumsum(units) - units, units)
    first = np.zeros((size, widest + max_ngram + 1), np.int64)
    first[:] = candidates.sum(axis=1)[:, None]
    first[row_of_start, unit_of_start] = rank[row_of_start, column_of_start]
    keys = streams.keys(masks_key, rows)
    thresholds = ngram_thresholds(max_ngram)
    visit = np.tile(np.arange(widest), (size, 1))  # each row's units, shuffled step by step
    covered = np.zeros((size, widest + max_ngram), bool)
    count = np.zeros(size, np.int64)
    ngrams = np.zeros(max_ngram + 1, np.int64)
    drawn_counts = np.zeros(max_ngram + 1, np.int64)
    live = np.arange(size)  # rows still below their budget with units left to visit, shrinking
    last_column = first.shape[1] - 1
    for step in range(widest):
        live = live[(step < units[live]) & (count[live] < budget[live])]
        if not live.size:
            break
        row_keys = keys[live]
        picked = step + streams.below_array(streams.draws(row_keys, 2 * step), units[live] - step)
        u = visit[live, picked]
        visit[live, picked] = visit[live, step]
        visit[live, step] = u
        # n for this start unit; as in ALBERT, an n-gram running past the last unit keeps the units there are.
        drawn = 1 + (streams.uniform_array(streams.draws(row_keys, 2 * step + 1))[:, None] > thresholds).sum(axis=1)
        n = np.minimum(drawn, units[live] - u)
        start = first[live, u]
        room = budget[live] - count[live]
        sizes = np.zeros((max_ngram + 1, live.size), np.int64)
        fits = np.zeros(live.size, np.int64)  # the longest k <= n whose tokens fit the room left
        for k in range(1, max_ngram + 1):
            sizes[k] = first[live, np.minimum(u + k, last_column)] - start
            fits += (k <= n) & (sizes[k] <= room)
        overlap = np.zeros(live.size, bool)
        for k in range(max_ngram):
            overlap |= (k < fits) & covered[live, u + k]
        accept = (fits >= 1) & ~overlap
        for k in range(max_ngram):
            chosen = accept & (k < fits)
            covered[live[chosen], u[chosen] + k] = True
        count[live] += np.where(accept, sizes[fits, np.arange(live.size)], 0)
        ngrams += np.bincount(fits[accept], minlength=max_ngram + 1)
        drawn_counts += np.bincount(drawn, minlength=max_ngram + 1)
    # Tokens of covered units, in position order.
    unit_of_token = np.cumsum(unit_start, axis=1) - 1
    masked = candidates & np.take_along_axis(covered, np.maximum(unit_of_token, 0), axis=1)
    row_of, column_of = np.nonzero(masked)
    per_row = masked.sum(axis=1)
    slot = np.arange(len(row_of)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    labels = tokens[row_of, column_of]
    result = Masked(
        positions=np.zeros((size, predictions), np.int64),
        ids=np.zeros((size, predictions), np.int64),
        weights=np.zeros((size, predictions), np.float32),
        stats={"ngrams": ngrams[1:].tolist(), "ngram_draws": drawn_counts[1:].tolist()},
    )
    result.positions[row_of, slot] = column_of
    result.ids[row_of, slot] = labels
    result.weights[row_of, slot] = 1.0
    counters = streams.REPLACE_COUNTER + 2 * slot
    choice = streams.uniform_array(streams.draws(keys[row_of], counters))
    to_mask = choice < MASK_BELOW
    to_random = ~to_mask & (choice < RANDOM_BELOW)
    replacements = tables.replacement_ids
    random_ids = replacements[streams.below_array(streams.draws(keys[row_of], counters + 1), len(replacements))]
    tokens[row_of, column_of] = np.where(to_mask, tables.mask_id, np.where(to_random, random_ids, labels))
    result.stats.update(
        masked=len(row_of),
        replaced_mask=int(to_mask.sum()),
        replaced_random=int(to_random.sum()),
        kept=int(len(row_of) - to_mask.sum() - to_random.sum()),
    )
    return result
