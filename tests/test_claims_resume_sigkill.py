"""The README's resume row, with a real kill: a fresh `keras-albert pretrain` process is SIGKILLed after its first
periodic checkpoint, the same command is run again to completion, and its final weights are compared with those of an
uninterrupted run of the same command (each run a fresh process, as a user or a spot restart would run it)."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fixtures_data import novel_path, published_checkpoints, trained_tokenizer_dir

TOTAL_STEPS = 40
CHECKPOINT_EVERY = 4


def _command(records, run_dir):
    # Dropout on (the reference's 0.1 in the hidden layers): the resumed run must also restore the dropout RNG.
    return [
        sys.executable, "-m", "keras_albert.cli", "pretrain", "--train_files", records, "--output_dir", run_dir,
        "--model_size", "tiny", "--per_gpu_batch_size", "4", "--gradient_accumulation_steps", "2",
        "--total_steps", str(TOTAL_STEPS), "--warmup_steps", "2", "--learning_rate", "0.01",
        "--hidden_dropout_prob", "0.1", "--log_frequency", "4", "--checkpoint_frequency", str(CHECKPOINT_EVERY),
        "--keep_checkpoints", "20",
        "--seed", "7", "--distribution", "none", "--jit_compile", "false", "--quiet",
    ]


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")


def _run_to_completion(command, log_path):
    """Runs the command; returns the checkpoint step it said it resumed from (None: it started afresh)."""
    with open(log_path, "w") as log:
        status = subprocess.run(command, env=_env(), stdout=log, stderr=subprocess.STDOUT, timeout=600).returncode
    with open(log_path) as log:
        output = log.read()
    assert status == 0, output[-4000:]
    resumed = re.search(r"[Rr]esum\w* from \S*ckpt-(\d+)", output)
    return int(resumed.group(1)) if resumed else None


@pytest.mark.large
def test_pretrain_killed_with_sigkill_resumes_to_the_uninterrupted_weights(tmp_path):
    from keras_albert import cli, load_model

    records_dir = str(tmp_path / "records")
    assert cli.main([
        "create-pretraining-data", "--input", novel_path(), "--tokenizer", trained_tokenizer_dir("albert", 2000),
        "--output_dir", records_dir, "--max_seq_length", "32", "--max_predictions_per_seq", "5",
        "--dupe_factor", "1", "--num_shards", "2", "--workers", "1", "--quiet",
    ]) == 0
    records = os.path.join(records_dir, "*.tfrecord")
    straight_dir, killed_dir = str(tmp_path / "straight"), str(tmp_path / "killed")

    # The run to be killed: SIGKILL (no handler, no cleanup) as soon as its first checkpoint is published.
    with open(tmp_path / "first.log", "w+") as log:
        first = subprocess.Popen(_command(records, killed_dir), env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        deadline = time.monotonic() + 400
        try:
            while not published_checkpoints(killed_dir) and first.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        log.seek(0)
        killed_after = published_checkpoints(killed_dir)
        assert killed_after, f"no checkpoint before the deadline or the exit; log:\n{log.read()[-4000:]}"
    assert first.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(killed_dir, "model.keras")), "the run ended before the kill"
    assert max(killed_after) < TOTAL_STEPS

    resumed_from = _run_to_completion(_command(records, killed_dir), tmp_path / "resumed.log")
    # A rerun that silently started afresh would also match the uninterrupted run: it must have resumed.
    assert resumed_from in killed_after, (resumed_from, killed_after)
    assert _run_to_completion(_command(records, straight_dir), tmp_path / "straight.log") is None

    straight = load_model(os.path.join(straight_dir, "model.keras"))
    resumed = load_model(os.path.join(killed_dir, "model.keras"))
    pairs = list(zip(straight.get_weights(), resumed.get_weights()))
    assert len(pairs) == len(straight.weights) == len(resumed.weights) > 0
    gap = max(float(np.abs(a.astype("float64") - b.astype("float64")).max()) for a, b in pairs)
    # The comparison can fail: steps after the kill move the weights far more than any tolerance.
    from keras_albert.training.checkpoints import load_model as load_checkpoint

    at_kill = load_checkpoint(os.path.join(killed_dir, "checkpoints", f"ckpt-{resumed_from}"))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(at_kill.get_weights(), resumed.get_weights()))
    print(f"\nSIGKILL after checkpoints {killed_after}; the rerun resumed from step {resumed_from}; vs the "
          f"uninterrupted run, {len(pairs)} weight arrays: max |diff| {gap:.3g}; steps {resumed_from}-{TOTAL_STEPS} "
          f"moved the weights by {moved:.3g}")
    assert moved > 1e-3
    assert gap == 0.0
