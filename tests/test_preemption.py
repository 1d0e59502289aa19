"""Preemption of `keras-albert pretrain`: SIGTERM/SIGINT stop the run at a step boundary with a checkpoint of that
step, exit 128 + the signal's number, and rerunning the same command resumes exactly."""

import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fixtures_data import checkpoint_files, pretraining_records, saved_weights, scratch_dir, wait_for_line

from keras_albert import cli

SEQ, PREDICTIONS, VOCAB = 32, 5, 2000
TOTAL, EVERY = 12, 4

# The command as `python -m keras_albert.cli` runs it, with every step slowed by STEP_SECONDS so that the test can
# aim its signal between two periodic checkpoints (the library has no test hook; the slowing is patched in here).
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


@pytest.fixture(scope="module")
def records():
    return pretraining_records(600, SEQ, PREDICTIONS, VOCAB)


def _flags(records, output_dir, **overrides):
    values = dict(
        train_files=records, output_dir=output_dir, model_size="tiny", per_gpu_batch_size=4,
        gradient_accumulation_steps=2, total_steps=TOTAL, warmup_steps=2, learning_rate=1e-2, log_frequency=1,
        checkpoint_frequency=EVERY, distribution="none", jit_compile="false", seed=7,
    )
    values.update(overrides)
    return ["pretrain", "--quiet", *[f"--{key}={value}" for key, value in values.items()]]


@pytest.fixture(scope="module")
def straight(records):
    """The final weights of the same run uninterrupted."""
    output_dir = scratch_dir("straight")
    assert cli.main(_flags(records, output_dir)) == 0
    return saved_weights(os.path.join(output_dir, "model.keras"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.large)])
def test_a_signal_stops_at_a_step_with_its_checkpoint_and_a_rerun_resumes_exactly(records, straight, signum):
    """The run, slowed to ~0.4 s a step, gets the signal after a random step between the checkpoints at 4 and 8:
    it exits 128 + signum after the next step boundary, with a checkpoint of exactly that step and no model.keras;
    the same command then finishes with the weights of an uninterrupted run (max difference <= 1e-6)."""
    interrupted = scratch_dir("interrupted")
    target = random.Random().choice([5, 6])
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, "0.4", *_flags(records, interrupted)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
    )
    try:
        wait_for_line(os.path.join(interrupted, "train.log"), rf"step {target}/{TOTAL}\b", process, timeout=120)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, stderr[-4000:]
    last_line = stderr.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"keras-albert pretrain: stopped by {signal.Signals(signum).name} at step (\d+) of {TOTAL} "
        rf"\(checkpoint saved in {re.escape(interrupted)}\); run the same command again to resume",
        last_line,
    )
    assert match, last_line
    stopped = int(match.group(1))
    assert target <= stopped <= target + 1, (target, stopped)  # the step running when the signal came, or the next
    assert checkpoint_files(interrupted) == [EVERY, stopped]
    assert not os.path.exists(os.path.join(interrupted, "model.keras"))
    assert not os.path.exists(os.path.join(interrupted, "summary.json"))

    assert cli.main(_flags(records, interrupted)) == 0
    with open(os.path.join(interrupted, "train.log"), encoding="utf-8") as file:
        assert f"step {stopped} of {TOTAL}" in file.read()  # "Resuming from .../ckpt-<stopped>: step <stopped> of 12"
    resumed = saved_weights(os.path.join(interrupted, "model.keras"))
    assert len(resumed) == len(straight)
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(resumed, straight))
    assert gap <= 1e-6, gap


def test_a_signal_only_sets_the_flag_a_second_acts_as_usual_and_handlers_are_restored():
    import threading

    from keras_albert.training.preemption import StopSignals

    assert threading.current_thread() is threading.main_thread()
    # Python's own SIGINT handler, whatever an earlier test in this worker process left installed (CI once saw
    # no KeyboardInterrupt here)
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt), StopSignals() as flags:
            signal.raise_signal(signal.SIGTERM)
            assert flags.signum == signal.SIGTERM  # recorded, the process lives
            signal.raise_signal(signal.SIGINT)  # a second signal acts as without the run: KeyboardInterrupt
        assert flags.signum == signal.SIGTERM
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    finally:
        signal.signal(signal.SIGINT, outside)


# Worker 1 sends itself SIGTERM after step 5; worker 0 receives nothing.
SIGNAL_ONE_WORKER = """
import json, os, signal, sys
from keras_albert.training import callbacks
original = callbacks.ProgressLogger.on_train_batch_end
def maybe_signal(self, batch, logs=None):
    original(self, batch, logs)
    if json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1 and self.global_step(batch) == 5:
        os.kill(os.getpid(), signal.SIGTERM)
callbacks.ProgressLogger.on_train_batch_end = maybe_signal
from keras_albert.cli import main
sys.exit(main(json.loads(os.environ["FLAGS"])))
"""


@pytest.mark.large
def test_a_signal_to_one_of_two_workers_stops_both_at_the_same_step(records):
    import json

    sys.path.insert(0, os.path.dirname(__file__))
    from multi_worker_harness import run_workers

    output_dir = scratch_dir("two-workers")
    flags = _flags(records, output_dir, distribution="multi_worker", per_gpu_batch_size=2)
    started = time.monotonic()
    results = run_workers(SIGNAL_ONE_WORKER, num_workers=2, timeout=240, env={"FLAGS": json.dumps(flags)},
                          check=False)
    for result in results:
        assert result.returncode == 143, result.log[-4000:]
        assert f"stopped by SIGTERM at step 5 of {TOTAL}" in result.log, result.log[-4000:]
    assert checkpoint_files(output_dir) == [EVERY, 5]
    assert not os.path.exists(os.path.join(output_dir, "model.keras"))
    assert time.monotonic() - started < 240
