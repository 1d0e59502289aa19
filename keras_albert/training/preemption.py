"""Preemption: SIGTERM or SIGINT stops a run at the next step boundary, with a checkpoint of that step.

`StopSignals` (a context manager, in the main thread only) replaces the handlers of SIGTERM and SIGINT with one that
only records the signal; the previous handlers come back on exit. A second signal restores them and is delivered
again, so it acts as it would without the run (SIGINT raises `KeyboardInterrupt`, SIGTERM ends the process; the
checkpoints on disk are crash-safe). `StopOnSignal` checks the flag after every step: under several workers it
all-reduces it first, so a signal that reaches one worker stops every worker after the same step, and they all take
part in the checkpoint that `fit`'s end saves (`callbacks.PeriodicCheckpoint.on_train_end`).

A preempted `pretrain` returns normally with `preempted` set to the signal number; the `keras-albert pretrain`
command then exits with 128 + that number (143 for SIGTERM, 130 for SIGINT), as a shell reports a process killed by
it, and running it again resumes.
"""

import signal
import threading

import keras

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


class StopOnSignal(keras.callbacks.Callback):
    """Sets `model.stop_training` after the step during which any worker received a signal.

    Args:
        stop_signals: `StopSignals`. The flag of this process.
        strategy: `tf.distribute.Strategy` or None. Its workers all-reduce the flag every `frequency` steps.
        horovod: the `horovod.tensorflow` module, or None; its ranks all-reduce the flag instead.
        num_workers: int. With one worker the flag is read without a collective.
        frequency: int. Steps between checks.
        initial_step: int. Steps done before this `fit`.
    """

    def __init__(self, stop_signals, strategy=None, horovod=None, num_workers=1, frequency=1, initial_step=0):
        super().__init__()
        self.stop_signals = stop_signals
        self.strategy = strategy
        self.horovod = horovod
        self.num_workers = int(num_workers)
        self.frequency = int(frequency)
        self.initial_step = int(initial_step)
        self.stopped_step = None
        self.signum = None

    def _any_worker(self, local):
        """The signal some worker holds (the first of `SIGNALS` any holds), or 0: an all-reduced sum of one count
        per signal (tf.distribute reduces by sum or mean only)."""
        import tensorflow as tf

        value = tf.constant([float(local == signum) for signum in SIGNALS], tf.float32)
        if self.horovod is not None:
            counts = self.horovod.grouped_allreduce([value], op=self.horovod.Sum)[0].numpy()
        else:
            # As `pretrain._workers_agree` does it: eagerly, the value captured (not passed as an argument).
            def replica_fn():
                context = tf.distribute.get_replica_context()
                return context.all_reduce(tf.distribute.ReduceOp.SUM, value / context.num_replicas_in_sync)

            per_replica = self.strategy.run(replica_fn)
            counts = self.strategy.experimental_local_results(per_replica)[0].numpy()
        return next((int(signum) for signum, count in zip(SIGNALS, counts) if count > 0), 0)

    def on_train_batch_end(self, batch, logs=None):
        step = self.initial_step + int(batch) + 1
        if step % self.frequency:
            return
        signum = self.stop_signals.signum or 0
        if self.num_workers > 1:
            signum = self._any_worker(signum)
        if signum:
            self.signum, self.stopped_step = signum, step
            self.model.stop_training = True
