"""RunCheckpoint: what a checkpoint holds, who writes it, what a half-written one looks like; and a two-worker run."""

import json
import logging
import os
import sys

import keras
import numpy as np
import pytest

from fixtures_data import scratch_dir

from keras_albert import PretrainingModel, UserInputError
from keras_albert.distribute import WorkerInfo
from keras_albert.optimizers import LAMB, AdamW, WarmupPolyDecay
from keras_albert.training import checkpoints
from keras_albert.training.checkpoints import RunCheckpoint, load_model, resolve_checkpoint, restore_weights

VOCAB, SEQ, PREDICTIONS = 300, 16, 4


def _model(seed, optimizer="lamb", model_type="albert", hidden_dim=16):
    """A tiny compiled model whose optimizer is built; `optimizer` "lamb", "adamw" or "lamb_fp16" (loss-scaled)."""
    keras.utils.set_random_seed(seed)
    model = PretrainingModel.from_preset(
        f"{model_type}_tiny", vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=hidden_dim,
        intermediate_dim=32, max_sequence_length=SEQ, classifier_dropout=0.5,
    )
    schedule = WarmupPolyDecay(0.01, warmup_steps=1, total_steps=10)
    inner = AdamW(schedule) if optimizer == "adamw" else LAMB(schedule, weight_decay=0.01)
    if optimizer == "lamb_fp16":
        inner = keras.optimizers.LossScaleOptimizer(inner)
    model.compile(optimizer=inner, gradient_accumulation_steps=2)
    model.optimizer.build(model.trainable_variables)
    return model


def _batch(seed, rows=8):
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(5, VOCAB, (rows, SEQ)).astype("int32"),
        "input_mask": np.ones((rows, SEQ), "int32"),
        "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype("int32")[None].repeat(rows, 0),
        "masked_lm_positions": rng.integers(1, SEQ, (rows, PREDICTIONS)).astype("int32"),
        "masked_lm_ids": rng.integers(5, VOCAB, (rows, PREDICTIONS)).astype("int32"),
        "masked_lm_weights": np.ones((rows, PREDICTIONS), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (rows, 1)).astype("int32"),
    }


def _gap(a, b):
    return max(np.abs(np.asarray(x) - np.asarray(y)).max() for x, y in zip(a, b))


def _values(variables):
    return [v.numpy() for v in variables]


def test_checkpoint_restores_weights_optimizer_rng_and_run_state(caplog):
    run_dir = scratch_dir("roundtrip")
    source = _model(1)
    for step in range(2):
        source.train_on_batch(_batch(step))
    layout = {"seed": 7, "train_files": "data/*.tfrecord"}
    path = RunCheckpoint(run_dir, source).save(2, layout)
    assert os.path.basename(path) == "ckpt-2"

    target = _model(2)  # other initial weights
    assert _gap(source.get_weights(), target.get_weights()) > 1e-3
    restored = RunCheckpoint(run_dir, target)
    assert restored.restore_latest() == 2
    assert restored.state.value == {"step": 2, "data_layout": layout}
    with caplog.at_level(logging.WARNING, logger="keras_albert"):
        restored.warn_if_data_layout_changed(layout, 2)
        assert not caplog.records
        restored.warn_if_data_layout_changed({**layout, "seed": 8, "new_key": 1}, 2)
    assert [r.getMessage() for r in caplog.records] == [
        "the data layout changed since the checkpoint (seed: 7 -> 8): training continues at step 2, but not on the "
        "examples an uninterrupted run would have read"
    ]
    assert _gap(source.get_weights(), target.get_weights()) == 0
    assert int(target.optimizer.iterations.numpy()) == 2
    assert _gap(_values(source.optimizer.variables), _values(target.optimizer.variables)) == 0
    rng = [v for v in source.non_trainable_variables if "seed_generator" in v.path]
    assert rng and _gap(_values(rng), [v.numpy() for v in target.non_trainable_variables
                                       if "seed_generator" in v.path]) == 0

    # The next step (dropout 0.5 on the sentence-order head) is the same step in both models.
    source.train_on_batch(_batch(2))
    target.train_on_batch(_batch(2))
    assert _gap(source.get_weights(), target.get_weights()) <= 1e-7


def test_restoring_dropout_rng_matters():
    """The control for the RNG part of the test above: without the RNG state the next step differs."""
    run_dir = scratch_dir("rng")
    source = _model(1)
    source.train_on_batch(_batch(0))
    RunCheckpoint(run_dir, source).save(1)
    target = _model(1)
    RunCheckpoint(run_dir, target).restore_latest()
    for variable in target.non_trainable_variables:
        if "seed_generator" in variable.path:
            variable.assign(variable.numpy() + 1)
    source.train_on_batch(_batch(1))
    target.train_on_batch(_batch(1))
    assert _gap(source.get_weights(), target.get_weights()) > 1e-6


def test_non_chief_workers_leave_no_files():
    run_dir = scratch_dir("workers")
    model = _model(1)
    worker = RunCheckpoint(run_dir, model, worker=WorkerInfo(task_index=1, num_workers=2, is_chief=False))
    assert worker.save(1) is None
    assert worker.save_final_model() is None
    leftovers = [os.path.relpath(os.path.join(root, name), run_dir)
                 for root, dirs, files in os.walk(run_dir) for name in dirs + files]
    assert set(leftovers) <= {"checkpoints"}, leftovers  # at most the (empty) directory the chief will fill
    chief = RunCheckpoint(run_dir, model, worker=WorkerInfo(task_index=0, num_workers=2, is_chief=True))
    chief.save(1)
    assert chief.save_final_model() == os.path.join(run_dir, "model.keras")
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == [
        "checkpoint", "ckpt-1.data-00000-of-00001", "ckpt-1.index", "model.json"]


def test_half_written_checkpoint_is_ignored_and_failed_model_save_leaves_nothing(monkeypatch):
    run_dir = scratch_dir("partial")
    model = _model(1)
    checkpoint = RunCheckpoint(run_dir, model)
    checkpoint.save(1)
    # A save killed before TensorFlow moved the `checkpoint` pointer leaves files that nothing points to.
    with open(os.path.join(run_dir, "checkpoints", "ckpt-2.data-00000-of-00001"), "wb") as file:
        file.write(b"\0" * 100)
    assert RunCheckpoint(run_dir, _model(2)).restore_latest() == 1

    checkpoints.save_model_atomically(model, os.path.join(run_dir, "model.keras"))
    before = open(os.path.join(run_dir, "model.keras"), "rb").read()

    def broken_save(self, path, *args, **kwargs):
        with open(path, "wb") as file:
            file.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_model_atomically(model, os.path.join(run_dir, "model.keras"))
    assert open(os.path.join(run_dir, "model.keras"), "rb").read() == before
    assert sorted(os.listdir(run_dir)) == ["checkpoints", "model.keras"]  # no temporary file or directory left


def test_mismatched_checkpoints_are_refused_in_one_line():
    run_dir = scratch_dir("mismatch")
    RunCheckpoint(run_dir, _model(1)).save(1)
    for other in (_model(1, optimizer="lamb_fp16"), _model(1, hidden_dim=32)):
        with pytest.raises(UserInputError, match="does not match the model and optimizer of this run") as error:
            RunCheckpoint(run_dir, other).restore_latest()
        assert "\n" not in str(error.value)
    with pytest.raises(UserInputError, match="its weights do not fit this model"):
        restore_weights(_model(1, model_type="bert"), os.path.join(run_dir, "checkpoints"))


def test_resolve_and_load_every_kind_of_path():
    run_dir = scratch_dir("paths")
    model = _model(3)
    model.train_on_batch(_batch(0))
    checkpoint = RunCheckpoint(run_dir, model)
    prefix = checkpoint.save(1)
    checkpoints_dir = os.path.join(run_dir, "checkpoints")
    assert resolve_checkpoint(prefix) == ("tf", prefix)
    assert resolve_checkpoint(checkpoints_dir) == ("tf", prefix)
    assert resolve_checkpoint(run_dir) == ("tf", prefix)  # no model.keras yet
    # Rebuilt from checkpoints/model.json, without any flag.
    assert _gap(load_model(run_dir).get_weights(), model.get_weights()) == 0
    final = checkpoint.save_final_model()
    assert resolve_checkpoint(run_dir) == ("keras", final)
    assert resolve_checkpoint(final) == ("keras", final)
    assert _gap(load_model(final).get_weights(), model.get_weights()) == 0
    config = json.load(open(os.path.join(checkpoints_dir, "model.json")))
    assert config["class_name"] == "PretrainingModel"
    with pytest.raises(UserInputError, match="not a .keras model, a checkpoint prefix"):
        resolve_checkpoint(os.path.join(run_dir, "nothing-here"))


def _write_records(directory, num_files=2, rows_per_file=32, seed=0):
    """Records in Google's feature spec, written by hand (no summary.json beside them)."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

    for index in range(num_files):
        with tf.io.TFRecordWriter(os.path.join(directory, f"part-{index}.tfrecord")) as writer:
            for _ in range(rows_per_file):
                length = int(rng.integers(SEQ // 2, SEQ + 1))
                ids = np.zeros(SEQ, int)
                ids[:length] = rng.integers(5, VOCAB, length)
                positions = np.sort(rng.choice(np.arange(1, length - 1), PREDICTIONS, replace=False))
                feature = {
                    "input_ids": ints(ids),
                    "input_mask": ints(np.arange(SEQ) < length),
                    "segment_ids": ints((np.arange(SEQ) >= length // 2) & (np.arange(SEQ) < length)),
                    "masked_lm_positions": ints(positions),
                    "masked_lm_ids": ints(ids[positions]),
                    "masked_lm_weights": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0] * PREDICTIONS)),
                    "next_sentence_labels": ints([rng.integers(0, 2)]),
                }
                writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())


TWO_WORKERS = r'''
import json, os, sys
from keras_albert import cli
flags = json.loads(os.environ["FLAGS"])
sys.exit(cli.main(flags))
'''


@pytest.mark.large
def test_two_workers_checkpoint_once_and_resume(tmp_path):
    """`keras-albert pretrain --distribution multi_worker` as two processes: every worker takes part in every save,
    only the chief's files remain, and a second launch resumes from the chief's latest checkpoint."""
    sys.path.insert(0, os.path.dirname(__file__))
    from multi_worker_harness import run_workers

    data_dir = tmp_path / "data"
    _write_records(str(data_dir), num_files=2)
    output_dir = tmp_path / "run"
    flags = ["pretrain", "--train_files", str(data_dir / "*.tfrecord"), "--output_dir", str(output_dir),
             "--model_size", "tiny", "--vocab_size", str(VOCAB), "--max_seq_length", str(SEQ),
             "--max_predictions_per_seq", str(PREDICTIONS), "--per_gpu_batch_size", "2",
             "--gradient_accumulation_steps", "2", "--warmup_steps", "1", "--learning_rate", "0.005",
             "--log_frequency", "2", "--checkpoint_frequency", "2", "--distribution", "multi_worker", "--quiet"]
    run_workers(TWO_WORKERS, 2, timeout=400, env={"FLAGS": json.dumps(flags + ["--total_steps", "4"])})
    names = sorted(os.listdir(output_dir / "checkpoints"))
    assert names == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index", "ckpt-4.data-00000-of-00001",
                     "ckpt-4.index", "model.json"]
    assert not [p for p in output_dir.rglob("*") if p.name.startswith((".worker", ".tmp-"))]
    assert (output_dir / "model.keras").is_file()
    log = (output_dir / "train.log").read_text()
    assert "2 replica(s) on 2 worker(s)" in log and "jit_compile=False" in log

    results = run_workers(TWO_WORKERS, 2, timeout=400, env={"FLAGS": json.dumps(flags + ["--total_steps", "6"])})
    assert "Resuming from" in (output_dir / "train.log").read_text().split("step 4/4")[-1]
    assert "Resuming from" not in results[1].log  # only the chief logs
    assert (output_dir / "checkpoints" / "ckpt-6.index").is_file()
    assert int(keras.saving.load_model(output_dir / "model.keras").optimizer.iterations.numpy()) == 6
