"""Run a Python script as N TensorFlow workers on 127.0.0.1, for multi-worker tests.

Each worker is a fresh `python` process with its own `TF_CONFIG` (a cluster of `num_workers` workers on free local
ports) and `KERAS_ALBERT_WORKER_OUT` naming a file where it may write its results (e.g. `np.savez`). The whole group
runs under one timeout: a hang in a collective fails the test with every worker's log tail instead of blocking.
Workers see no GPU (`CUDA_VISIBLE_DEVICES=-1` unless the caller sets it), so they never fight over one device.

```python
sys.path.insert(0, os.path.dirname(__file__))  # tests/ has no __init__.py
from multi_worker_harness import run_workers

results = run_workers(SCRIPT, num_workers=2, timeout=120)
weights_0 = np.load(results[0].out_path)
```
"""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

OUT_ENV = "KERAS_ALBERT_WORKER_OUT"


@dataclasses.dataclass
class WorkerResult:
    """What one worker left behind: its index, exit code, combined log and the path of its result file."""

    index: int
    returncode: int
    log: str
    out_path: str


def free_ports(count):
    """Returns `count` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports, index):
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def _tail(text, chars=6000):
    return text if len(text) <= chars else "...\n" + text[-chars:]


def run_workers(script, num_workers=2, timeout=120, env=None, workdir=None, check=True):
    """Runs `script` (Python source) as `num_workers` processes of one TF cluster and waits for all of them.

    Args:
        script: str. Python source run with `python -c` in every worker.
        num_workers: int. Number of worker processes.
        timeout: float. Seconds for the whole group; on expiry every worker is killed and `TimeoutError` is raised.
        env: dict or None. Extra environment variables for every worker.
        workdir: str or None. Directory for the result and log files (a new temporary one when None).
        check: bool. Raise `AssertionError` with the logs when a worker exits non-zero.

    Returns:
        A list of `WorkerResult`, one per worker, in task-index order.
    """
    workdir = workdir or tempfile.mkdtemp(prefix="multi_worker_")
    os.makedirs(workdir, exist_ok=True)
    ports = free_ports(num_workers)
    procs, logs, out_paths = [], [], []
    for index in range(num_workers):
        worker_env = dict(os.environ)
        worker_env.update(env or {})
        worker_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        worker_env["CUDA_VISIBLE_DEVICES"] = worker_env.get("CUDA_VISIBLE_DEVICES", "-1")
        worker_env["TF_CONFIG"] = tf_config(ports, index)
        out_path = os.path.join(workdir, f"worker_{index}.npz")
        worker_env[OUT_ENV] = out_path
        log = open(os.path.join(workdir, f"worker_{index}.log"), "w+")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script],
                env=worker_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        )
        logs.append(log)
        out_paths.append(out_path)

    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        for proc in procs:
            remaining = deadline - time.monotonic()
            try:
                proc.wait(timeout=max(remaining, 0.1))
            except subprocess.TimeoutExpired:
                timed_out = True
                break
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    results = []
    for index, (proc, log) in enumerate(zip(procs, logs)):
        log.seek(0)
        results.append(WorkerResult(index, proc.returncode, log.read(), out_paths[index]))
        log.close()

    if timed_out:
        raise TimeoutError(
            f"multi-worker run did not finish within {timeout} s; logs:\n"
            + "\n".join(f"--- worker {r.index} (rc={r.returncode}) ---\n{_tail(r.log)}" for r in results)
        )
    if check:
        failed = [r for r in results if r.returncode != 0]
        if failed:
            raise AssertionError(
                "worker(s) failed:\n"
                + "\n".join(f"--- worker {r.index} (rc={r.returncode}) ---\n{_tail(r.log)}" for r in failed)
            )
    return results


def pretraining_batches(rng, steps, rows, seq, predictions, vocab):
    """Random pretraining inputs and labels `[steps, rows, ...]`, with masked-LM weights that differ between rows
    (so that a wrong loss normalisation across workers shows)."""
    import numpy as np

    weights = (rng.random((steps, rows, predictions)) < 0.6).astype("float32")
    weights[..., 0] = 1.0
    return {
        "input_ids": rng.integers(5, vocab, (steps, rows, seq)).astype("int32"),
        "input_mask": (np.arange(seq) < rng.integers(6, seq + 1, (steps, rows, 1))).astype("int32"),
        "segment_ids": np.broadcast_to(np.arange(seq) >= seq // 2, (steps, rows, seq)).astype("int32"),
        "masked_lm_positions": rng.integers(0, 6, (steps, rows, predictions)).astype("int32"),
        "masked_lm_ids": rng.integers(5, vocab, (steps, rows, predictions)).astype("int32"),
        "masked_lm_weights": weights,
        "next_sentence_labels": rng.integers(0, 2, (steps, rows, 1)).astype("int32"),
    }
