"""Non-finite updates are skipped, in every precision: weights, optimizer state and schedule untouched, counted."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_albert import PretrainingModel
from keras_albert.optimizers import LAMB, WarmupPolyDecay

ROWS, SEQ, PREDICTIONS, VOCAB = 4, 16, 4, 120


def _batch(rng, poison=False):
    weights = np.ones((ROWS, PREDICTIONS), "float32")
    if poison:
        weights[0, 0] = np.nan  # a corrupt record: the loss of the whole update is NaN
    return {
        "input_ids": rng.integers(5, VOCAB, (ROWS, SEQ)).astype("int32"),
        "input_mask": np.ones((ROWS, SEQ), "int32"),
        "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype("int32")[None].repeat(ROWS, 0),
        "masked_lm_positions": rng.integers(0, SEQ, (ROWS, PREDICTIONS)).astype("int32"),
        "masked_lm_ids": rng.integers(5, VOCAB, (ROWS, PREDICTIONS)).astype("int32"),
        "masked_lm_weights": weights,
        "next_sentence_labels": rng.integers(0, 2, (ROWS, 1)).astype("int32"),
    }


def _model(initial=None):
    keras.utils.set_random_seed(1)
    model = PretrainingModel.from_preset(
        "albert_tiny", vocabulary_size=VOCAB, num_layers=1, num_heads=2, embedding_dim=8, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=SEQ, dropout=0.0, classifier_dropout=0.0)
    if initial is not None:
        model.set_weights(initial)
    model.compile(optimizer=LAMB(WarmupPolyDecay(0.01, 1, 10), weight_decay=0.01), gradient_accumulation_steps=1)
    return model


def _train(model, batches):
    logs = None
    for batch in batches:
        logs = model.train_on_batch(batch, return_dict=True)
    return logs


@pytest.mark.parametrize("jit_compile", [False, True])
def test_a_nonfinite_step_is_skipped_and_the_run_goes_on(jit_compile):
    rng = np.random.default_rng(0)
    good_1, good_2 = _batch(rng), _batch(rng)
    bad = _batch(rng, poison=True)
    reference = _model()
    reference.jit_compile = jit_compile
    initial = reference.get_weights()
    _train(reference, [good_1, good_2])

    model = _model(initial)
    model.jit_compile = jit_compile
    model.train_on_batch(good_1)
    after_first = model.get_weights()
    logs = model.train_on_batch(bad, return_dict=True)
    assert logs["nonfinite_steps"] == 1
    assert int(model.optimizer.iterations.numpy()) == 1  # no optimizer step, so the schedule did not move
    assert float(model.nonfinite_guard.streak.numpy()) == 1
    for a, b in zip(after_first, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.train_on_batch(good_2)
    assert float(model.nonfinite_guard.streak.numpy()) == 0
    assert np.isfinite(float(model.nonfinite_guard.last_finite_loss.numpy()))
    assert int(model.optimizer.iterations.numpy()) == 2
    worst = max(np.abs(a - b).max() for a, b in zip(reference.get_weights(), model.get_weights()))
    assert worst == 0.0, worst  # exactly the run that never saw the bad batch


def test_a_streak_counts_skips_in_a_row_and_keeps_the_last_finite_loss():
    rng = np.random.default_rng(1)
    model = _model()
    finite_logs = model.train_on_batch(_batch(rng), return_dict=True)
    for expected in (1, 2, 3):
        model.train_on_batch(_batch(rng, poison=True))
        assert float(model.nonfinite_guard.streak.numpy()) == expected
    assert float(model.nonfinite_guard.last_finite_loss.numpy()) == pytest.approx(finite_logs["loss"], rel=1e-6)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_skipping_works_under_a_distribution_strategy():
    rng = np.random.default_rng(2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = _model()
    before = model.get_weights()
    dataset = tf.data.Dataset.from_tensors(_batch(rng, poison=True))
    history = model.fit(dataset, epochs=1, verbose=0)
    assert history.history["nonfinite_steps"][-1] == 1
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
