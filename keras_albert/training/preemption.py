"""Preemption: SIGTERM or SIGINT stops a run at the next step boundary, with a checkpoint of that step.

`StopSignals` (a context manager, in the main thread only) replaces the handlers of SIGTERM and SIGINT with one that
only records the signal; the previous handlers come back on exit. A second signal restores them and is delivered
again, so it acts as it would without the run (SIGINT raises `KeyboardInterrupt`, SIGTERM ends the process; the
checkpoints on disk are crash-safe). `callbacks.StopOnSignal` checks the flag after every step: under several
workers it all-reduces it first, so a signal that reaches one worker stops every worker after the same step, and
they all take part in the checkpoint that `fit`'s end saves (`callbacks.PeriodicCheckpoint.on_train_end`). This
module imports no TensorFlow: the command checks its settings before the strategy exists.

A preempted `pretrain` returns normally with `preempted` set to the signal number; the `keras-albert pretrain`
command then exits with 128 + that number (143 for SIGTERM, 130 for SIGINT), as a shell reports a process killed by
it, and running it again resumes.
"""

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Records SIGTERM and SIGINT instead of dying, while the `with` block runs. `signum` is the first one seen."""

    def __init__(self, signals=SIGNALS):
        self.signals = tuple(signals)
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            return
        self._restore()
        signal.raise_signal(signum)

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        self._restore()
        return False


def signal_name(signum):
    return signal.Signals(signum).name
