"""A pretraining run that diverges stops with one line naming the step and the last finite loss, exit 1, and never
writes a checkpoint or model with a non-finite weight (so rotation keeps the last good checkpoint)."""

import os
import re

import numpy as np
import pytest

from fixtures_data import nonfinite_tensors, pretraining_records, scratch_dir

from keras_albert import cli

SEQ, PREDICTIONS, VOCAB = 32, 5, 2000


@pytest.fixture(scope="module")
def records():
    return pretraining_records(600, SEQ, PREDICTIONS, VOCAB)


def _flags(records, output_dir, **overrides):
    values = dict(
        train_files=records, output_dir=output_dir, model_size="tiny", per_gpu_batch_size=4,
        gradient_accumulation_steps=1, total_steps=40, warmup_steps=1, learning_rate=1e6, log_frequency=1,
        checkpoint_frequency=1, keep_checkpoints=2, max_nonfinite_steps=3, distribution="none", jit_compile="false",
        seed=7,
    )
    values.update(overrides)
    return ["pretrain", "--quiet", *[f"--{key}={value}" for key, value in values.items()]]


@pytest.mark.parametrize("optimizer", ["lamb", "adamw"])
def test_a_diverging_run_stops_with_one_line_and_keeps_finite_checkpoints(records, optimizer, capsys):
    import tensorflow as tf

    output_dir = scratch_dir("diverging")
    status = cli.main(_flags(records, output_dir, optimizer=optimizer))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1, err[-5:]
    assert re.fullmatch(r"keras-albert pretrain: error: step \d+: .*last finite loss [0-9.e+-]+\).*", err[-1]), err[-1]
    stopped = int(re.search(r"error: step (\d+)", err[-1]).group(1))
    assert stopped < 40
    latest = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
    assert latest is not None
    assert nonfinite_tensors(latest) == []
    assert not os.path.exists(os.path.join(output_dir, "model.keras"))


def test_a_checkpoint_with_a_nonfinite_weight_is_not_written_and_the_last_good_one_stays(tmp_path):
    import keras

    from keras_albert import PretrainingModel
    from keras_albert.errors import RunDiverged
    from keras_albert.training.checkpoints import RunCheckpoint

    model = PretrainingModel.from_preset(
        "albert_tiny", vocabulary_size=100, num_layers=1, num_heads=2, embedding_dim=8, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.optimizer.build(model.trainable_variables)
    checkpoint = RunCheckpoint(tmp_path, model, max_to_keep=1)
    checkpoint.save(1)
    good = checkpoint.latest
    variable = model.trainable_variables[0]
    variable.assign(np.full(variable.shape, np.inf, "float32"))
    with pytest.raises(RunDiverged, match=rf"step 2: 1 weight\(s\) are not finite \({re.escape(variable.path)}\)"):
        checkpoint.save(2)
    assert checkpoint.latest == good and os.path.exists(good + ".index")  # rotation (max_to_keep=1) kept it
    with pytest.raises(RunDiverged, match="model.keras not written"):
        checkpoint.save_final_model()
    assert not os.path.exists(os.path.join(tmp_path, "model.keras"))


def test_max_nonfinite_steps_must_be_positive(records, capsys):
    assert cli.main(_flags(records, scratch_dir("bad"), max_nonfinite_steps=0)) == 2
    assert "--max_nonfinite_steps must be an integer >= 1" in capsys.readouterr().err
