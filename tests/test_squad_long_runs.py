"""Long `keras-albert squad` runs: periodic checkpoints, SIGTERM/SIGINT at a step boundary, exact resume, refused
changes of optimisation settings on resume, and a diverging run that stops with one line and finite checkpoints."""

import json
import os
import random
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from fixtures_data import (checkpoint_files, nonfinite_tensors, saved_weights, scratch_dir, trained_tokenizer_dir,
                           wait_for_line)

from keras_albert import cli
from keras_albert.data import squad

TOTAL, EVERY = 12, 4

# The command as `python -m keras_albert.cli` runs it, every step slowed by argv[1] seconds so that the test can aim
# its signal between two periodic checkpoints (the library has no test hook; the slowing is patched in here).
SLOW_CLI = """
import sys, time
from keras_albert.training import callbacks
original = callbacks.ProgressLogger.on_train_batch_end
def slow(self, batch, logs=None):
    original(self, batch, logs)
    time.sleep(float(sys.argv[1]))
callbacks.ProgressLogger.on_train_batch_end = slow
from keras_albert.cli import main
sys.exit(main(sys.argv[2:]))
"""


def small_squad(split, questions):
    """The first paragraphs of the embedded Austen SQuAD v2.0 split holding at least `questions` questions."""
    data = squad.load_json(squad.austen_squad_path(split))
    articles, count = [], 0
    for article in data["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            if count >= questions:
                break
            paragraphs.append(paragraph)
            count += len(paragraph["qas"])
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
        if count >= questions:
            break
    return {**data, "data": articles}


@pytest.fixture(scope="module")
def files():
    directory = scratch_dir("squad-files")
    paths = {}
    for split, questions in (("train", 24), ("dev", 6)):
        paths[split] = os.path.join(directory, f"{split}.json")
        with open(paths[split], "w", encoding="utf-8") as file:
            json.dump(small_squad(split, questions), file)
    return {**paths, "tokenizer": trained_tokenizer_dir("albert", 2000)}


def _flags(files, output_dir, **overrides):
    values = dict(
        tokenizer=files["tokenizer"], train_file=files["train"], predict_file=files["dev"], output_dir=output_dir,
        load_from="scratch", model_size="tiny", max_seq_length=64, doc_stride=32, max_query_length=16,
        per_gpu_batch_size=4, total_steps=TOTAL, warmup_steps=2, learning_rate=1e-3, checkpoint_frequency=EVERY,
        log_frequency=1, distribution="none", jit_compile="false", seed=7,
    )
    values.update(overrides)
    return ["squad", *[f"--{key}={value}" for key, value in values.items()]]


@pytest.fixture(scope="module")
def straight(files):
    """The same run uninterrupted: its directory and final weights."""
    output_dir = scratch_dir("squad-straight")
    assert cli.main(_flags(files, output_dir)) == 0
    return output_dir, saved_weights(os.path.join(output_dir, "model.keras"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.large)])
def test_a_signal_stops_squad_at_a_step_with_its_checkpoint_and_a_rerun_resumes_exactly(files, straight, signum):
    """The float32 albert_tiny finetune, slowed to ~0.4 s a step, gets the signal after a random step between the
    checkpoints at 4 and 8: exit 128 + signum, a checkpoint of exactly the step it stopped at, no model.keras, no
    export, no predictions; the same command then finishes with the weights of an uninterrupted run (<= 1e-6)."""
    interrupted = scratch_dir("squad-interrupted")
    target = random.Random().choice([5, 6])
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, "0.4", *_flags(files, interrupted)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )
    try:
        wait_for_line(os.path.join(interrupted, "train.log"), rf"step {target}/{TOTAL}\b", process, timeout=180)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, stderr[-4000:]
    last_line = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"keras-albert squad: stopped by {signal.Signals(signum).name} at step (\d+) of {TOTAL} "
        rf"\(checkpoint saved in {re.escape(interrupted)}\); run the same command again to resume",
        last_line,
    )
    assert match, last_line
    stopped = int(match.group(1))
    assert target <= stopped <= target + 1, (target, stopped)  # the step running when the signal came, or the next
    assert checkpoint_files(interrupted) == [EVERY, stopped]
    for written in ("model.keras", "huggingface", "predictions.json", "scores.json"):
        assert not os.path.exists(os.path.join(interrupted, written)), written

    assert cli.main(_flags(files, interrupted)) == 0
    with open(os.path.join(interrupted, "train.log"), encoding="utf-8") as file:
        assert f"ckpt-{stopped}: step {stopped} of {TOTAL}" in file.read()
    resumed = saved_weights(os.path.join(interrupted, "model.keras"))
    _, expected = straight
    assert len(resumed) == len(expected)
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(resumed, expected))
    print(f"stopped at step {stopped}; resumed vs uninterrupted weights: max |difference| {gap:.3g}")
    assert gap <= 1e-6, gap
    with open(os.path.join(interrupted, "scores.json"), encoding="utf-8") as file:
        assert json.load(file)["total"] == 6


def test_resume_with_a_changed_learning_rate_is_refused_unless_allowed(files, straight, capsys):
    """The finished straight run, rerun with another --learning_rate: one line naming it, exit 2, nothing trained;
    with --allow_changed_settings it runs (the run is complete: it predicts again) and logs the change."""
    output_dir, expected = straight
    capsys.readouterr()
    assert cli.main(_flags(files, output_dir, learning_rate=5e-3)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("keras-albert squad: error: "), lines
    assert "--learning_rate 0.001 -> 0.005" in lines[-1] and "--allow_changed_settings" in lines[-1]

    assert cli.main([*_flags(files, output_dir, learning_rate=5e-3), "--allow_changed_settings"]) == 0
    with open(os.path.join(output_dir, "train.log"), encoding="utf-8") as file:
        log = file.read()
    assert "Settings changed since the previous start: --learning_rate 0.001 -> 0.005" in log
    assert "The finetuning is complete: step 12 of 12" in log
    again = saved_weights(os.path.join(output_dir, "model.keras"))
    assert all(np.array_equal(a, b) for a, b in zip(again, expected))


def test_a_diverging_squad_run_stops_with_one_line_and_keeps_finite_checkpoints(files, capsys):
    """Learning rate 1e6: updates turn non-finite and are skipped; after --max_nonfinite_steps in a row the run ends
    with one line naming the step and the last finite loss (exit 1); the latest checkpoint holds finite weights
    only and no model, export or predictions are written."""
    import tensorflow as tf

    output_dir = scratch_dir("squad-diverging")
    flags = _flags(files, output_dir, learning_rate=1e6, warmup_steps=1, total_steps=40, checkpoint_frequency=1,
                   keep_checkpoints=2, max_nonfinite_steps=3)
    status = cli.main(flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1, err[-5:]
    assert re.fullmatch(r"keras-albert squad: error: step \d+: .*last finite loss [0-9.e+-]+\).*", err[-1]), err[-1]
    assert int(re.search(r"error: step (\d+)", err[-1]).group(1)) < 40
    latest = tf.train.latest_checkpoint(os.path.join(output_dir, "checkpoints"))
    assert latest is not None
    assert nonfinite_tensors(latest) == []
    for written in ("model.keras", "huggingface", "predictions.json"):
        assert not os.path.exists(os.path.join(output_dir, written)), written


def test_squad_long_run_flags_are_checked_before_anything_is_written(files, capsys):
    output_dir = os.path.join(scratch_dir("squad-bad-flags"), "out")
    for flag, value in (("checkpoint_frequency", 0), ("keep_checkpoints", 0), ("max_nonfinite_steps", 0),
                        ("log_frequency", 0)):
        assert cli.main(_flags(files, output_dir, **{flag: value})) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"keras-albert squad: error: --{flag} must be"), lines
    assert not os.path.exists(output_dir)


def test_training_data_resumes_at_its_position_without_replaying(files):
    """The batches after `initial_step=k` are batches k, k+1, ... of the uninterrupted stream, across passes over
    the features (88 features, 8 rows a step: step 20 is in the second pass); each pass is a permutation."""
    from keras_albert.data import load_tokenizer
    from keras_albert.training.squad import training_dataset

    tokenizer = load_tokenizer(files["tokenizer"])
    features = squad.convert_examples_to_features(squad.read_squad(files["train"]), tokenizer, is_training=True,
                                                  max_seq_length=64, doc_stride=32, max_query_length=16)
    assert len(features) < 20 * 8

    def rows(dataset, steps):
        return [batch["input_ids"].numpy() for batch, _ in zip(dataset, range(steps))]

    straight = rows(training_dataset(features, 4, gradient_accumulation_steps=2, seed=3), 24)
    resumed = rows(training_dataset(features, 4, gradient_accumulation_steps=2, seed=3, initial_step=20), 4)
    assert all(np.array_equal(a, b) for a, b in zip(straight[20:], resumed))
    first_pass = np.concatenate(straight)[: len(features)]
    assert len({row.tobytes() for row in first_pass}) == len({f.input_ids.tobytes() for f in features})
