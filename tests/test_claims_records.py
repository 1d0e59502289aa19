"""The README's create-pretraining-data statistics, counted in the written TFRecords.

`keras-albert create-pretraining-data --masking ngram` writes records for Persuasion; this test parses them back with
tf.data and Google's feature spec and counts, from the records alone (never the builder's own counters):
- the masked share (masked_lm_weights over input_mask), the sentence-order balance, and the 80/10/10 split: what `input_ids` holds at each
  `masked_lm_positions` against its label `masked_lm_ids` ([MASK], the same token, another token);
- whole-word masking: a word (an ALBERT SentencePiece word-start piece, "▁..." or Google's `_is_start_piece_sp`
  rule, and the pieces after it, never across [SEP]) is masked entirely or not at all;
- the n-gram spans: the maximal runs of consecutive masked words, their lengths in words, compared with the same
  count on Google's algorithm (p(n) proportional to 1/n, n <= 3) run on the same instances' original tokens.
Two adjacent n-grams form one run, so the run lengths are not the drawn n; the oracle is counted the same way, and a
builder drawing n uniformly would show (asserted below).
"""

import os
import random
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fixtures_data import novel_path, scratch_dir, trained_tokenizer_dir

SEQ, PREDICTIONS, PROB, MAX_NGRAM = 128, 20, 0.15, 3
SHARE_BOUND, SPLIT_BOUND, NGRAM_BOUND, COUNT_BOUND = 0.01, 0.02, 0.02, 0.01  # the bounds of the README row


def _read(directory):
    import tensorflow as tf

    spec = {
        name: tf.io.FixedLenFeature([SEQ], tf.int64)
        for name in ("input_ids", "input_mask", "segment_ids", "token_boundary")
    }
    spec.update({
        "masked_lm_positions": tf.io.FixedLenFeature([PREDICTIONS], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([PREDICTIONS], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([PREDICTIONS], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    })
    files = sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".tfrecord"))
    parsed = tf.data.TFRecordDataset(files).map(lambda record: tf.io.parse_single_example(record, spec))
    batches = list(parsed.batch(4096).as_numpy_iterator())
    return {name: np.concatenate([batch[name] for batch in batches]) for name in spec}


@pytest.fixture(scope="module")
def written():
    from keras_albert import cli
    from keras_albert.data.tokenizers import load_tokenizer

    tokenizer_dir = trained_tokenizer_dir("albert")
    out = scratch_dir("claims-records")
    assert cli.main([
        "create-pretraining-data", "--input", novel_path(), "--tokenizer", tokenizer_dir, "--output_dir", out,
        "--model_type", "albert", "--max_seq_length", str(SEQ), "--max_predictions_per_seq", str(PREDICTIONS),
        "--masked_lm_prob", str(PROB), "--masking", "ngram", "--max_ngram", str(MAX_NGRAM), "--dupe_factor", "4",
        "--num_shards", "2", "--workers", "1", "--seed", "7", "--quiet",
    ]) == 0
    return _read(out), load_tokenizer(tokenizer_dir)


def _words(row, length, special, word_start):
    """The candidate words of a row (position lists), [CLS]/[SEP] left out, as Google's `cand_indexes` with one
    difference that is the builder's: the first piece after [SEP] starts a word even when truncation left a word's
    tail there (Google's loop would join it to segment A's last word across the [SEP])."""
    words = []
    for i in range(length):
        if row[i] in special:
            continue
        if words and not word_start[row[i]] and row[i - 1] not in special:
            words[-1].append(i)
        else:
            words.append([i])
    return words


def _runs(words, masked):
    """Lengths (in words) of the maximal runs of consecutive masked words."""
    runs, current = [], 0
    for word in words:
        if word[0] in masked:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return runs


def _google_albert_masking(words, length, rng, np_rng, pvals):
    """ALBERT's `create_masked_lm_predictions` (google-research/albert) on candidate words: whole-word n-grams,
    n <= 3 drawn with probabilities `pvals`, shortened to fit, overlapping n-grams skipped."""
    num_to_predict = min(PREDICTIONS, max(1, int(round(length * PROB))))
    ngrams = np.arange(1, MAX_NGRAM + 1, dtype=np.int64)
    ngram_indexes = [[words[idx : idx + n] for n in ngrams] for idx in range(len(words))]
    rng.shuffle(ngram_indexes)
    masked = set()
    for cand_index_set in ngram_indexes:
        if len(masked) >= num_to_predict:
            break
        p = pvals[: len(cand_index_set)]
        n = np_rng.choice(ngrams[: len(cand_index_set)], p=p / p.sum())
        index_set = sum(cand_index_set[n - 1], [])
        n -= 1
        while len(masked) + len(index_set) > num_to_predict:
            if n == 0:
                break
            index_set = sum(cand_index_set[n - 1], [])
            n -= 1
        if len(masked) + len(index_set) > num_to_predict or masked.intersection(index_set):
            continue
        masked.update(index_set)
    return masked


def _shares(runs):
    counts = np.bincount(runs, minlength=MAX_NGRAM + 2)[1:].astype(float)
    counts = np.append(counts[:MAX_NGRAM], counts[MAX_NGRAM:].sum())  # 1, 2, 3, 4 or more words
    return counts / counts.sum()


def test_masked_share_replacements_and_sop_balance_counted_in_the_records(written):
    records, tokenizer = written
    assert len(records["input_ids"]) > 4000
    weights = records["masked_lm_weights"]
    real = weights > 0
    masked_share = weights.sum() / records["input_mask"].sum()
    now = np.take_along_axis(records["input_ids"], records["masked_lm_positions"], axis=1)[real]
    labels = records["masked_lm_ids"][real]
    as_mask = float((now == tokenizer.mask_id).mean())
    kept = float((now == labels).mean())
    other = float(((now != tokenizer.mask_id) & (now != labels)).mean())
    swapped = float(records["next_sentence_labels"].mean())
    print(f"\nrecords: {len(weights)} instances, {int(real.sum())} masked tokens, masked share {masked_share:.4f}; "
          f"[MASK] {as_mask:.4f}, same token {kept:.4f}, other token {other:.4f}; sentence order swapped {swapped:.4f}")
    assert abs(swapped - 0.5) <= SPLIT_BOUND
    assert abs(masked_share - PROB) <= SHARE_BOUND, masked_share
    assert abs(as_mask - 0.8) <= SPLIT_BOUND and abs(kept - 0.1) <= SPLIT_BOUND and abs(other - 0.1) <= SPLIT_BOUND
    replaced = now[(now != tokenizer.mask_id) & (now != labels)]
    assert not np.isin(replaced, tokenizer.special_ids).any()
    # A masked label is a text token (<unk> included, as in Google's builder), never [CLS], [SEP], <pad> or [MASK].
    assert not np.isin(labels, [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id]).any()


def test_ngram_spans_counted_in_the_records_follow_googles_one_over_n(written):
    records, tokenizer = written
    word_start = tokenizer.word_start_table()
    special = {tokenizer.cls_id, tokenizer.sep_id}
    runs, oracle_runs, uniform_runs = [], [], []
    masked_tokens = oracle_masked = 0
    rng, np_rng = random.Random(3), np.random.RandomState(3)
    uniform_rng, uniform_np_rng = random.Random(3), np.random.RandomState(3)
    one_over_n, uniform = 1.0 / np.arange(1, MAX_NGRAM + 1), np.ones(MAX_NGRAM)
    for row in range(len(records["input_ids"])):
        length = int(records["input_mask"][row].sum())
        real = records["masked_lm_weights"][row] > 0
        positions = records["masked_lm_positions"][row][real]
        # The original tokens: the labels put back at the masked positions.
        original = records["input_ids"][row].copy()
        original[positions] = records["masked_lm_ids"][row][real]
        assert (records["token_boundary"][row][:length] == word_start[original[:length]]).all()
        words = _words(original, length, special, word_start)
        masked = set(positions.tolist())
        assert len(masked) == len(positions)  # no position masked twice
        for word in words:  # whole words only
            assert all(i in masked for i in word) or not any(i in masked for i in word), (row, word)
        runs += _runs(words, masked)
        masked_tokens += len(masked)
        chosen = _google_albert_masking(words, length, rng, np_rng, one_over_n)
        oracle_runs += _runs(words, chosen)
        oracle_masked += len(chosen)
        uniform_runs += _runs(words, _google_albert_masking(words, length, uniform_rng, uniform_np_rng, uniform))
    ours, oracle, flat = _shares(runs), _shares(oracle_runs), _shares(uniform_runs)
    print(f"\nmasked runs of 1/2/3/4+ words in the records {np.round(ours, 4).tolist()}, Google's algorithm (1/n) on "
          f"the same instances {np.round(oracle, 4).tolist()}, max gap {np.abs(ours - oracle).max():.4f}; with n "
          f"uniform {np.round(flat, 4).tolist()}, gap {np.abs(ours - flat).max():.4f}; masked tokens {masked_tokens} "
          f"vs {oracle_masked}")
    assert np.abs(ours - oracle).max() <= NGRAM_BOUND
    assert np.abs(ours - flat).max() > NGRAM_BOUND  # the count tells 1/n from a uniform n
    assert abs(masked_tokens - oracle_masked) / oracle_masked <= COUNT_BOUND
