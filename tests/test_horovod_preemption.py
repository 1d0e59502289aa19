"""Preemption under Horovod (issue 9): SIGTERM reaching one of two MPI ranks (`mpiexec -np 2`, `--distribution
horovod`) stops both at the same step (the flag is all-reduced with Horovod's `grouped_allreduce`), both take part
in the checkpoint of that step and exit with 143, and the run writes no final model.

Large, and fails (never skips) without Horovod or mpiexec, as tests/test_horovod.py.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from fixtures_data import checkpoint_files, scratch_dir
from test_horovod import mpiexec
from test_preemption import EVERY, TOTAL, _flags, records  # noqa: F401 (records: a fixture)

pytestmark = pytest.mark.large

# Rank 1 sends itself SIGTERM after step 5; rank 0 receives nothing. Each rank leaves its exit status in a file
# before exiting: mpiexec may clean up the other rank once one exits non-zero.
SIGNAL_ONE_RANK = """
import json, os, signal, sys
from keras_albert import distribute
from keras_albert.training import callbacks
original = callbacks.ProgressLogger.on_train_batch_end
def maybe_signal(self, batch, logs=None):
    original(self, batch, logs)
    if distribute.worker_info().task_index == 1 and self.global_step(batch) == 5:
        os.kill(os.getpid(), signal.SIGTERM)
callbacks.ProgressLogger.on_train_batch_end = maybe_signal
from keras_albert.cli import main
status = main(json.loads(os.environ["FLAGS"]))
rank = distribute.worker_info().task_index
with open(os.path.join(os.environ["STATUS_DIR"], f"rank-{rank}.json"), "w") as file:
    json.dump({"rank": rank, "status": status}, file)
sys.stderr.flush()
sys.exit(status)
"""


def test_sigterm_to_one_rank_stops_both_at_the_same_step_with_its_checkpoint(records):  # noqa: F811
    output_dir = scratch_dir("horovod-preempted")
    status_dir = scratch_dir("horovod-status")
    flags = _flags(records, output_dir, distribution="horovod", per_gpu_batch_size=2)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", FLAGS=json.dumps(flags),
               STATUS_DIR=status_dir)
    started = time.monotonic()
    result = subprocess.run([mpiexec(), "-np", "2", sys.executable, "-c", SIGNAL_ONE_RANK], env=env,
                            cwd=status_dir, capture_output=True, text=True, timeout=600)
    log = (result.stdout + result.stderr)[-6000:]
    statuses = {}
    for rank in (0, 1):
        path = os.path.join(status_dir, f"rank-{rank}.json")
        assert os.path.isfile(path), f"rank {rank} did not finish its command (mpiexec rc {result.returncode}):\n{log}"
        with open(path) as file:
            statuses[rank] = json.load(file)["status"]
    assert statuses == {0: 143, 1: 143}, log
    assert result.returncode == 143, log
    # Both ranks print the line (the flag reached rank 0 through the all-reduce) naming the same step.
    assert (result.stdout + result.stderr).count(f"stopped by SIGTERM at step 5 of {TOTAL}") == 2, log
    assert checkpoint_files(output_dir) == [EVERY, 5]
    assert not os.path.exists(os.path.join(output_dir, "model.keras"))
    assert time.monotonic() - started < 600
