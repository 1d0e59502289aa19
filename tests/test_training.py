"""The training core: exact gradient accumulation, loss normalisation, mixed precision."""

import gzip
import os
import re
from collections import Counter

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_albert import PretrainingModel, SquadModel, UserInputError
from keras_albert.optimizers import LAMB, WarmupPolyDecay

VOCAB = 300
SEQ = 16
PREDICTIONS = 4
CORPUS = os.path.join(os.path.dirname(__file__), "..", "keras_albert", "data", "corpus", "persuasion.txt.gz")


def _tiny(**overrides):
    keras.utils.set_random_seed(0)
    config = dict(vocabulary_size=VOCAB, num_layers=2, num_heads=2, embedding_dim=8, hidden_dim=16,
                  intermediate_dim=32, max_sequence_length=SEQ, dropout=0.0)
    config.update(overrides)
    return PretrainingModel.from_preset("albert_tiny", classifier_dropout=0.0, **config)


def _random_batch(rows, rng):
    weights = (rng.random((rows, PREDICTIONS)) < 0.7).astype("float32")
    weights[:, 0] = 1.0  # every row has at least one prediction; counts differ between rows and micro-batches
    return {
        "input_ids": rng.integers(5, VOCAB, (rows, SEQ)).astype("int32"),
        "input_mask": (np.arange(SEQ)[None, :] < rng.integers(8, SEQ + 1, (rows, 1))).astype("int32"),
        "segment_ids": (np.arange(SEQ)[None, :] >= SEQ // 2).astype("int32").repeat(rows, 0),
        "masked_lm_positions": np.stack([rng.choice(8, PREDICTIONS, replace=False) for _ in range(rows)]).astype("int32"),
        "masked_lm_ids": rng.integers(5, VOCAB, (rows, PREDICTIONS)).astype("int32"),
        "masked_lm_weights": weights,
        "next_sentence_labels": rng.integers(0, 2, (rows, 1)).astype("int32"),
    }


def _copy(model, **overrides):
    clone = _tiny(**overrides)
    clone.set_weights(model.get_weights())
    return clone


@pytest.mark.parametrize("optimizer", ["sgd", "lamb"])
def test_accumulation_equals_one_large_batch(optimizer):
    rng = np.random.default_rng(0)
    micro, steps = 4, 3
    batches = [_random_batch(4 * 2, rng) for _ in range(steps)]
    for batch in batches:  # masked-LM weight totals differ between the micro-batches of a step
        assert len({batch["masked_lm_weights"][i : i + 2].sum() for i in range(0, 8, 2)}) > 1

    def make_optimizer():
        return keras.optimizers.SGD(0.5) if optimizer == "sgd" else LAMB(0.01, weight_decay=0.01)

    accumulated = _tiny()
    large = _copy(accumulated)
    initial = [w.copy() for w in accumulated.get_weights()]
    accumulated.compile(optimizer=make_optimizer(), gradient_accumulation_steps=micro)
    large.compile(optimizer=make_optimizer(), gradient_accumulation_steps=1)
    for batch in batches:
        logs_accumulated = accumulated.train_on_batch(batch, return_dict=True)
        logs_large = large.train_on_batch(batch, return_dict=True)
        assert logs_accumulated["loss"] == pytest.approx(logs_large["loss"], abs=1e-5)

    worst = max(np.abs(a - b).max() for a, b in zip(accumulated.get_weights(), large.get_weights()))
    moved = max(np.abs(a - b).max() for a, b in zip(accumulated.get_weights(), initial))
    print(f"{optimizer}: max |accumulated - large batch| after {steps} steps = {worst:.3g} (weights moved {moved:.3g})")
    assert moved > 1e-3, "training did not move the weights; the comparison would be vacuous"
    assert worst < 1e-6
    assert int(accumulated.optimizer.iterations.numpy()) == steps  # one update per train_step


def _numpy_cross_entropy(logits, labels):
    logits = logits.astype("float64")
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]


def test_pretraining_loss_is_weighted_mlm_plus_mean_sop():
    model = _tiny()
    model.compile(optimizer=keras.optimizers.SGD(0.0), gradient_accumulation_steps=2)
    batch = _random_batch(6, np.random.default_rng(3))
    outputs = model.predict_on_batch(batch)
    weights = batch["masked_lm_weights"]
    mlm = (weights * _numpy_cross_entropy(outputs["mlm_logits"], batch["masked_lm_ids"])).sum() / weights.sum()
    sop = _numpy_cross_entropy(outputs["sentence_order_logits"], batch["next_sentence_labels"][:, 0]).mean()
    logs = model.test_on_batch(batch, return_dict=True)
    assert logs["mlm_loss"] == pytest.approx(mlm, abs=1e-5)
    assert logs["sop_loss"] == pytest.approx(sop, abs=1e-5)
    assert logs["loss"] == pytest.approx(mlm + sop, abs=1e-5)

    for flag, expected in (("skip_sop", mlm), ("skip_mlm", sop)):
        partial = _copy(model, **{flag: True})
        partial.compile(optimizer=keras.optimizers.SGD(0.0))
        assert partial.test_on_batch(batch, return_dict=True)["loss"] == pytest.approx(expected, abs=1e-5)


def test_squad_loss_is_mean_of_start_and_end_cross_entropy():
    keras.utils.set_random_seed(1)
    model = SquadModel.from_preset("bert_tiny", vocabulary_size=VOCAB, max_sequence_length=SEQ, dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0), gradient_accumulation_steps=3)
    rng = np.random.default_rng(4)
    batch = {key: value for key, value in _random_batch(6, rng).items() if key in model.input_names_used}
    batch["start_positions"] = rng.integers(0, SEQ, 6).astype("int32")
    batch["end_positions"] = rng.integers(0, SEQ, 6).astype("int32")
    outputs = model.predict_on_batch(batch)
    expected = 0.5 * (
        _numpy_cross_entropy(outputs["start_logits"], batch["start_positions"]).mean()
        + _numpy_cross_entropy(outputs["end_logits"], batch["end_positions"]).mean()
    )
    assert model.test_on_batch(batch, return_dict=True)["loss"] == pytest.approx(expected, abs=1e-5)
    logs = model.train_on_batch(batch, return_dict=True)
    assert logs["loss"] == pytest.approx(expected, abs=1e-5)


def test_compile_rejects_conflicting_optimizer_settings():
    model = _tiny()
    with pytest.raises(UserInputError, match="gradient_accumulation_steps"):
        model.compile(optimizer=keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    with pytest.raises(UserInputError, match="max_grad_norm"):
        model.compile(optimizer=keras.optimizers.SGD(0.1, global_clipnorm=1.0))
    with pytest.raises(UserInputError, match="gradient_accumulation_steps"):
        model.compile(optimizer="sgd", gradient_accumulation_steps=0)


def test_gradient_clipping_after_reduction_bounds_the_update():
    model = _tiny()
    reference = _copy(model)
    model.compile(optimizer=keras.optimizers.SGD(1.0), max_grad_norm=0.01)
    reference.compile(optimizer=keras.optimizers.SGD(1.0), max_grad_norm=None)
    batch = _random_batch(4, np.random.default_rng(5))
    before = model.get_weights()
    logs = model.train_on_batch(batch, return_dict=True)
    reference.train_on_batch(batch, return_dict=True)
    update = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(model.get_weights(), before)))
    unclipped = np.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(reference.get_weights(), before)))
    assert logs["grad_norm"] > 0.01
    assert update == pytest.approx(0.01, rel=1e-3)  # SGD with lr 1: the update is the clipped gradient
    assert unclipped == pytest.approx(logs["grad_norm"], rel=1e-3)


@pytest.fixture
def policy():
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


def test_float16_overflow_skips_the_step_and_lowers_the_loss_scale(policy):
    policy("mixed_float16")
    model = _tiny()
    optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=2.0**127)
    model.compile(optimizer=optimizer)
    batch = _random_batch(4, np.random.default_rng(6))
    before = model.get_weights()
    logs = model.train_on_batch(batch, return_dict=True)  # loss * 2**127 overflows float32: injected overflow
    assert logs["nonfinite_steps"] == 1
    assert float(optimizer.dynamic_scale.numpy()) == 2.0**126
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
    assert int(optimizer.iterations.numpy()) == 0

    optimizer.dynamic_scale.assign(2.0**10)  # a sane scale: the next step applies
    logs = model.train_on_batch(batch, return_dict=True)
    assert logs["nonfinite_steps"] == 0  # train_on_batch resets metrics: this finite step is not counted
    assert np.isfinite(logs["loss"])
    assert max(np.abs(a - b).max() for a, b in zip(model.get_weights(), before)) > 0
    assert logs["loss_scale"] == pytest.approx(2.0**10)


def _persuasion_split():
    """Persuasion as word ids, split by chapters: chapters 1-21 to train on, 22-24 held out (disjoint text). The
    vocabulary is the 4995 commonest words of the training chapters (ids 5..4999; 1 is the unknown word)."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        novel = f.read()
    chapters = [m.start() for m in re.finditer(r"^chapter [0-9ivxlc]+", novel, re.IGNORECASE | re.MULTILINE)]
    assert len(chapters) == 24
    train, held_out = (re.findall(r"[a-z]+|[^\sa-z]", part.lower()) for part in (novel[: chapters[21]],
                                                                               novel[chapters[21] :]))
    vocab = {word: index + 5 for index, (word, _) in enumerate(Counter(train).most_common(4995))}
    return [np.array([vocab.get(word, 1) for word in words], "int32") for words in (train, held_out)]


def _real_text_batches(ids, count, rows, rng, starts=None, seq=64, predictions=10):
    """Masked-LM + sentence-order batches of `rows` windows of `ids` (random starts, or the given ones)."""
    batches = []
    for index in range(count):
        if starts is None:
            row_starts = rng.integers(0, len(ids) - seq, rows)
        else:
            row_starts = starts[index * rows : (index + 1) * rows]
        first = np.stack([ids[s : s + seq // 2 - 1] for s in row_starts])
        second = np.stack([ids[s + seq // 2 - 1 : s + seq - 2] for s in row_starts])
        swap = rng.integers(0, 2, rows)
        a = np.where(swap[:, None] == 1, second, first)
        b = np.where(swap[:, None] == 1, first, second)
        input_ids = np.concatenate([np.full((rows, 1), 2), a, np.full((rows, 1), 3), b], 1)[:, :seq]
        positions = np.stack([np.sort(rng.choice(np.arange(1, seq), predictions, replace=False)) for _ in range(rows)])
        labels = np.take_along_axis(input_ids, positions, 1)
        np.put_along_axis(input_ids, positions, 4, 1)
        batches.append({
            "input_ids": input_ids.astype("int32"), "input_mask": np.ones((rows, seq), "int32"),
            "segment_ids": (np.arange(seq) > seq // 2 - 1).astype("int32")[None].repeat(rows, 0),
            "masked_lm_positions": positions.astype("int32"), "masked_lm_ids": labels.astype("int32"),
            "masked_lm_weights": np.ones((rows, predictions), "float32"),
            "next_sentence_labels": swap[:, None].astype("int32"),
        })
    return batches


BF16_STEPS = 300


@pytest.mark.skipif(not os.path.exists(CORPUS), reason="the embedded corpus is not vendored")
def test_bfloat16_training_beats_a_unigram_model_on_held_out_chapters(policy):
    """albert_tiny in mixed bfloat16, 300 LAMB steps on Persuasion chapters 1-21: its masked-LM loss on chapters
    22-24 (text it never saw) falls below the trivial baseline, a unigram model of the training tokens."""
    train_ids, held_out_ids = _persuasion_split()
    train = _real_text_batches(train_ids, BF16_STEPS, 16, np.random.default_rng(0))
    starts = np.arange(0, len(held_out_ids) - 64, 62)  # non-overlapping windows of the held-out chapters
    held_out = _real_text_batches(held_out_ids, len(starts) // 16, 16, np.random.default_rng(99), starts=starts)
    # The trivial baseline: add-one unigram frequencies of the training tokens, scored on the held-out targets.
    unigram = np.bincount(train_ids, minlength=5000) + 1.0
    targets = np.concatenate([batch["masked_lm_ids"].ravel() for batch in held_out])
    baseline = float(-np.log(unigram[targets] / unigram.sum()).mean())

    policy("mixed_bfloat16")
    keras.utils.set_random_seed(0)
    model = PretrainingModel.from_preset("albert_tiny", max_sequence_length=64)
    assert model.backbone.compute_dtype == "bfloat16"
    schedule = WarmupPolyDecay(1e-2, warmup_steps=BF16_STEPS // 10, total_steps=BF16_STEPS)
    model.compile(optimizer=LAMB(schedule), gradient_accumulation_steps=2)
    before = np.mean([model.test_on_batch(b, return_dict=True)["mlm_loss"] for b in held_out])
    model.fit(tf.data.Dataset.from_tensor_slices({k: np.stack([b[k] for b in train]) for k in train[0]}), epochs=1,
              verbose=0)
    after = np.mean([model.test_on_batch(b, return_dict=True)["mlm_loss"] for b in held_out])
    print(f"\nbf16 albert_tiny, {BF16_STEPS} LAMB steps on Persuasion ch. 1-21: MLM loss on ch. 22-24 "
          f"({targets.size} masked targets) {before:.3f} -> {after:.3f}; unigram model of the training tokens "
          f"{baseline:.3f}")
    assert int(model.optimizer.iterations.numpy()) == BF16_STEPS
    assert after < baseline
    assert after < before - 2.0


class _FakeHorovod:
    """Two Horovod ranks holding the same batch: an all-reduce doubles every value."""

    Sum = "sum"

    def __init__(self):
        self.calls = 0

    def size(self):
        return 2

    def grouped_allreduce(self, values, op):
        assert op == self.Sum
        self.calls += 1
        return [value * 2 for value in values]


def test_horovod_all_reduces_gradients_and_denominators(monkeypatch):
    from keras_albert import distribute

    fake = _FakeHorovod()
    batch = _random_batch(4, np.random.default_rng(7))
    single = _tiny()
    horovod = _copy(single)
    single.compile(optimizer=keras.optimizers.SGD(0.5), max_grad_norm=None)
    horovod.compile(optimizer=keras.optimizers.SGD(0.5), max_grad_norm=None)
    single_logs = single.train_on_batch(batch, return_dict=True)
    monkeypatch.setattr(distribute, "_HOROVOD", fake)
    horovod_logs = horovod.train_on_batch(batch, return_dict=True)
    # denominators, numerators and gradients each went through the all-reduce
    assert fake.calls == 3
    # two identical ranks: the global batch is the local one twice, so the mean loss and the update are unchanged
    assert horovod_logs["loss"] == pytest.approx(single_logs["loss"], abs=1e-6)
    worst = max(np.abs(a - b).max() for a, b in zip(horovod.get_weights(), single.get_weights()))
    assert worst < 1e-6
