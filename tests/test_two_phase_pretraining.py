"""BERT's two-phase recipe from the commands, at tiny scale: phase 1 on 32-token records, phase 2 on 64-token records
with `--load_from checkpoint --checkpoint_path <phase 1's run>` into a new run directory, with its own batch, steps and
schedule (the reference README's phase 1 and phase 2 commands, in their flag spellings).

Phase 2's model, after loading and before its first update, holds phase 1's final weights exactly, the position
rows phase 1 never used (32-63) included; its optimizer starts fresh (no iterations, zero moments) on phase 2's
schedule; and a phase 2 longer than the position table phase 1 trained is an error naming the sequence length."""

import os

import numpy as np
import pytest

from fixtures_data import novel_slice, scratch_dir, trained_tokenizer_dir

from keras_albert import cli

VOCAB = 2000


def _records(text, tokenizer, length, predictions):
    directory = scratch_dir(f"records-{length}")
    assert cli.main([
        "create-pretraining-data", "--input", text, "--tokenizer", tokenizer, "--output_dir", directory,
        "--max_seq_length", str(length), "--max_predictions_per_seq", str(predictions), "--dupe_factor", "1",
        "--num_shards", "2", "--workers", "1", "--quiet",
    ]) == 0
    return os.path.join(directory, "*.tfrecord")


def _common(train_files, output_dir):
    return ["pretrain", "--train_files", train_files, "--output_dir", output_dir, "--model_type", "bert",
            "--model_size", "tiny", "--optimizer", "lamb", "--log_frequency", "1", "--distribution", "none",
            "--jit_compile", "false", "--quiet", "--seed", "5"]


class _Capture:
    """A callback (built lazily: keras is imported by the run) that records the model's state when training
    begins, before phase 2's first update, and the learning rate of its first step."""

    def __new__(cls):
        import keras

        from keras_albert.training.callbacks import current_learning_rate

        class Capture(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                optimizer = self.model.optimizer
                self.weights = {v.path: keras.ops.convert_to_numpy(v) for v in self.model.weights}
                self.iterations = int(keras.ops.convert_to_numpy(optimizer.iterations))
                self.slots = [keras.ops.convert_to_numpy(v) for v in optimizer.variables
                              if v.path != optimizer.iterations.path and len(v.shape) > 0]
                self.schedule = optimizer._learning_rate.get_config()

            def on_train_batch_end(self, batch, logs=None):
                if batch == 0:
                    self.first_learning_rate = current_learning_rate(self.model)

        return Capture()


@pytest.mark.large
def test_phase_two_starts_from_phase_one_with_a_fresh_optimizer(monkeypatch, capsys):
    import keras

    from keras_albert.commands import pretrain as command

    tokenizer = trained_tokenizer_dir("bert", VOCAB)
    text = novel_slice(700)
    phase1_dir, phase2_dir = scratch_dir("bert-phase1"), scratch_dir("bert-phase2")

    # Phase 1: 128-token stand-in (32), LAMB, 4 steps, the reference's flag spellings.
    phase1 = _common(_records(text, tokenizer, 32, 5), phase1_dir) + [
        "--load_from=scratch", "--per_gpu_batch_size=4", "--gradient_accumulation_steps=2", "--max_seq_length=32",
        "--max_predictions_per_seq=5", "--run_name=phase1", "--warmup_steps=1", "--total_steps=4",
        "--learning_rate=0.01", "--squad_freq=0", "--name=mybertphase1", "--checkpoint_frequency=4"]
    assert cli.main(phase1) == 0
    phase1_model = keras.saving.load_model(os.path.join(phase1_dir, "model.keras"), compile=False)
    phase1_weights = {v.path: keras.ops.convert_to_numpy(v) for v in phase1_model.weights}

    # Phase 2: 512-token stand-in (64), new batch layout, steps and schedule, from phase 1's run directory.
    captured = []
    real_pretrain = command.pretrain

    def pretrain_with_capture(settings, callbacks=None, **kwargs):
        captured.append(_Capture())
        return real_pretrain(settings, callbacks=[*(callbacks or []), captured[-1]], **kwargs)

    monkeypatch.setattr(command, "pretrain", pretrain_with_capture)
    phase2 = _common(_records(text, tokenizer, 64, 10), phase2_dir) + [
        "--load_from=checkpoint", f"--checkpoint_path={phase1_dir}", "--per_gpu_batch_size=2",
        "--gradient_accumulation_steps=3", "--max_seq_length=64", "--max_predictions_per_seq=10",
        "--run_name=phase2", "--warmup_steps=2", "--total_steps=3", "--learning_rate=0.005",
        "--name=mybertphase2", "--checkpoint_frequency=3"]
    assert cli.main(phase2) == 0
    start = captured[0]

    # Phase 1's last weights, exactly, in every tensor; the same position table (the tiny preset's 128 rows),
    # rows 32-63, which phase 1's 32-token sequences never used and phase 2 trains, included.
    assert set(start.weights) == set(phase1_weights)
    for path, value in phase1_weights.items():
        np.testing.assert_array_equal(start.weights[path], value, err_msg=path)
    positions = next(path for path in phase1_weights if "position_embedding" in path)
    assert phase1_weights[positions].shape[0] >= 64

    # A fresh optimizer on phase 2's schedule: no iterations, every moment zero, the warmup restarting.
    assert start.iterations == 0
    assert start.slots and all(not slot.any() for slot in start.slots)
    assert (start.schedule["learning_rate"], start.schedule["warmup_steps"], start.schedule["total_steps"]) == (
        0.005, 2, 3)
    assert start.first_learning_rate == pytest.approx(0.005 * 1 / 2, rel=1e-6)  # step 1 of a 2-step warmup

    # Phase 2 trained from there: its own step count (3, not 4 + 3) and checkpoints, new weights, rows 32-63 moved.
    phase2_model = keras.saving.load_model(os.path.join(phase2_dir, "model.keras"), compile=False)
    phase2_weights = {v.path: keras.ops.convert_to_numpy(v) for v in phase2_model.weights}
    assert sorted(os.listdir(os.path.join(phase2_dir, "checkpoints"))).count("ckpt-3.index") == 1
    assert not np.allclose(phase2_weights[positions][32:64], phase1_weights[positions][32:64])
    from keras_albert.io import read_json

    assert read_json(os.path.join(phase2_dir, "summary.json"))["step"] == 3

    # Phase 2 longer than the positions phase 1 trained (the tiny preset has 128): one line naming the length.
    monkeypatch.setattr(command, "pretrain", real_pretrain)
    too_long = scratch_dir("bert-phase2-too-long")
    status = cli.main(_common(_records(text, tokenizer, 160, 10), too_long) + [
        "--load_from=checkpoint", f"--checkpoint_path={phase1_dir}", "--per_gpu_batch_size=2",
        "--warmup_steps=1", "--total_steps=1"])
    assert status == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("keras-albert pretrain: error: ") and "do not fit this model" in error, error
    assert "--max_seq_length" in error and "position_embedding" in error, error
    print(error)
