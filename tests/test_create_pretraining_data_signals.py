"""create-pretraining-data killed mid-run (issue 9): no process of it remains, nothing of it stays in /dev/shm, and
no shard carries its final name.

The command runs with 2 workers on the embedded corpus (dupe_factor 60: its instance phase, the shorter of the two,
lasts about a second); each test waits until the run is in the phase, sends a signal to the main process only, and
gives everything 5 seconds to disappear. Under a second a test.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from fixtures_data import novel_slice, scratch_dir, trained_tokenizer_dir
from keras_albert import signals
from keras_albert.data.pretraining import api, pool

SHM = "/dev/shm"
DEADLINE_SECONDS = 5.0


def _children(pid):
    """Pids of the live (not zombie) processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _owned(root, pid):
    """Entries of `root` named for process `pid` (the spill and corpus directories carry their owner's pid)."""
    marks = (f"{pool.SPILL_PREFIX}{pid}-", f"{pool.CORPUS_PREFIX}{pid}-")
    return sorted(name for name in os.listdir(root) if name.startswith(marks))


def _start(output_dir):
    command = [
        sys.executable, "-m", "keras_albert.cli", "create-pretraining-data",
        "--tokenizer", trained_tokenizer_dir("albert"), "--output_dir", output_dir,
        "--max_seq_length", "128", "--dupe_factor", "60", "--num_shards", "4", "--workers", "2", "--quiet",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_busy(process, output_dir, phase, timeout=240):
    """The worker pids once the run is in `phase`: "tokenizing" (text pieces go through the spill directory),
    "shipped" (a piece of text is in it: the input has been read, with TensorFlow for a `tfds:` one) or "instances"
    (the workers share the corpus and the shards' temporary files exist)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        workers = _children(process.pid)
        spills = [os.path.join(SHM, name) for name in _owned(SHM, process.pid)] if os.path.isdir(SHM) else []
        if phase == "tokenizing" and workers and spills:
            return workers
        if phase == "shipped" and workers and any(n.startswith("piece-") for s in spills for n in _listdir(s)):
            return workers
        shared = any(os.path.exists(os.path.join(spill, "state.json")) for spill in spills)
        temporaries = [name for name in os.listdir(output_dir) if name.endswith(".tmp")] if shared else []
        if workers and temporaries:
            return workers
        time.sleep(0.01)
    process.kill()
    pytest.fail("create-pretraining-data never got busy")


def _kill_and_measure(signum, phase):
    output_dir = scratch_dir(f"killed-{signal.Signals(signum).name}")
    shm_before = set(os.listdir(SHM))
    process = _start(output_dir)
    workers = _wait_until_busy(process, output_dir, phase)
    assert _owned(SHM, process.pid), "the spill directory is in /dev/shm while the run works"
    status, stderr, seconds = _signal_and_wait(process, workers, output_dir, signum)
    new_in_shm = set(os.listdir(SHM)) - shm_before
    assert not [name for name in new_in_shm if str(process.pid) in name or name.startswith("sem.mp")]
    print(f"\n{signal.Signals(signum).name} while {phase}: main process and {len(workers)} worker(s) gone, /dev/shm "
          f"and --output_dir clean {seconds:.2f} s after the signal (exit status {status})")
    return status, stderr


def _signal_and_wait(process, workers, output_dir, signum, leftovers=None):
    """Sends `signum` to the run and waits (up to `DEADLINE_SECONDS`) until its processes, its /dev/shm entries and
    `leftovers(output_dir)` (default `_leftovers`) are gone; asserts they are. Returns (exit status, stderr,
    seconds from the signal until everything was gone)."""
    leftovers = leftovers or _leftovers
    killed_at = time.monotonic()
    os.kill(process.pid, signum)
    while time.monotonic() - killed_at < DEADLINE_SECONDS:
        gone = not _alive(process.pid) and not any(map(_alive, workers))
        if gone and not _owned(SHM, process.pid) and not leftovers(output_dir):
            break
        time.sleep(0.02)
    seconds = time.monotonic() - killed_at
    status = process.wait(timeout=30)
    _, stderr = process.communicate()
    assert not any(map(_alive, [process.pid, *workers])), f"still running after {seconds:.1f} s"
    assert not _owned(SHM, process.pid), f"left in /dev/shm: {_owned(SHM, process.pid)}"
    assert not leftovers(output_dir), f"left in --output_dir: {os.listdir(output_dir)}"
    assert seconds < DEADLINE_SECONDS
    return status, stderr, seconds


def _listdir(path):
    """The names in `path`, or none once it is gone (the run removes its spill directory as it ends)."""
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _leftovers(output_dir):
    return [name for name in os.listdir(output_dir) if name.endswith((".tfrecord", ".tmp")) or name.startswith(".")]


@pytest.mark.parametrize("phase", ["tokenizing", "instances"])
def test_kill_9_of_the_main_process_leaves_nothing(phase):
    status, _ = _kill_and_measure(signal.SIGKILL, phase)
    assert status == -signal.SIGKILL


@pytest.mark.parametrize("phase", ["tokenizing", "instances"])
def test_sigterm_stops_the_run_cleanly(phase):
    status, stderr = _kill_and_measure(signal.SIGTERM, phase)
    assert status == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == "keras-albert create-pretraining-data: stopped by SIGTERM", stderr


def test_stale_spill_of_a_dead_process_is_removed_by_the_next_run():
    root = scratch_dir("stale-root")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = os.path.join(root, f"{pool.SPILL_PREFIX}{dead.pid}-abc")
    os.makedirs(stale)
    open(os.path.join(stale, "piece-0.txt"), "w").close()
    mine = pool.make_spill_dir(root)
    assert not os.path.exists(stale)
    assert os.path.basename(mine).startswith(f"{pool.SPILL_PREFIX}{os.getpid()}-")
    pool.remove_stale_spills(root)
    assert os.path.isdir(mine), "a live owner's directory is kept"


class _SignalsWhenCollected:
    """Sends SIGTERM to this process from its finalizer: the handler runs inside `__del__`, where Python swallows
    the exception it raises ("Exception ignored in ..."), as it did in TensorFlow's `Executor.__del__`."""

    def __del__(self):
        signal.raise_signal(signal.SIGTERM)
        for _ in range(100):  # bytecodes after the signal: the handler runs at one of them, inside this __del__
            pass


def _swallow_one_sigterm(monkeypatch):
    """A SIGTERM whose `Terminated` dies in a finalizer; returns the list the swallowed exceptions are put in."""
    swallowed = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: swallowed.append(unraisable.exc_value))
    _SignalsWhenCollected()  # collected at once (reference count 0)
    return swallowed


def test_a_signal_whose_exception_a_finalizer_swallowed_is_raised_by_check(monkeypatch):
    with signals.raising():
        signals.check()  # no signal yet: nothing
        swallowed = _swallow_one_sigterm(monkeypatch)
        assert [type(error) for error in swallowed] == [signals.Terminated], "the finalizer did not swallow it"
        with pytest.raises(signals.Terminated) as raised:
            signals.check()
    assert raised.value.signum == signal.SIGTERM
    signals.check()  # outside the block: nothing
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "the previous handler is back"


def test_a_swallowed_signal_stops_the_run_before_anything_is_committed(monkeypatch, tmp_path):
    """The run goes on after the finalizer swallowed the signal's exception; the next item of work raises it, and
    no shard or summary carries its final name (before `signals.check`, the run finished and exited 0)."""
    tokenize = api.tokenize_piece
    calls = []

    def tokenize_then_swallow(*args):
        if not calls:
            calls.append(_swallow_one_sigterm(monkeypatch))
        return tokenize(*args)

    monkeypatch.setattr(api, "tokenize_piece", tokenize_then_swallow)
    out = str(tmp_path / "out")
    with pytest.raises(signals.Terminated), signals.raising():
        api.create_pretraining_data(novel_slice(1500), trained_tokenizer_dir("albert"), out, max_seq_length=128,
                                    dupe_factor=2, workers=1, progress=False)
    assert [type(error) for error in calls[0]] == [signals.Terminated], "the finalizer did not swallow it"
    assert not _leftovers(out) and not os.path.exists(os.path.join(out, "summary.json")), os.listdir(out)
