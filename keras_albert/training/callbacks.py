"""Callbacks of a pretraining run: throughput, metric windows, log lines, TensorBoard scalars, `metrics.jsonl`,
validation on held-out records, checkpoints.

All of them count in global steps (optimizer updates since the start of the run, resumes included): a callback
built with `initial_step=N` for a `fit` that continues a run at step N calls the first step N + 1. They expect
`fit(..., epochs=1, steps_per_epoch=total_steps - initial_step)`; with `steps_per_execution=k` they see every k-th
step, so frequencies should be multiples of k.

Keras hands callbacks the same `logs` dict in list order: list `Throughput` before the callbacks that print or
write its figures.
"""

import logging
import os
import time

import keras

from keras_albert.training.preemption import SIGNALS

logger = logging.getLogger("keras_albert")


class _StepCallback(keras.callbacks.Callback):
    """Turns Keras' batch index into the global step and decides which steps close a window."""

    def __init__(self, frequency, initial_step=0, total_steps=None):
        super().__init__()
        if int(frequency) < 1:
            raise ValueError(f"`frequency` must be >= 1. Received: frequency={frequency}")
        self.frequency = int(frequency)
        self.initial_step = int(initial_step)
        self.total_steps = total_steps

    def global_step(self, batch):
        return self.initial_step + int(batch) + 1

    def closes_window(self, step):
        return step % self.frequency == 0 or (self.total_steps is not None and step >= self.total_steps)


class Throughput(_StepCallback):
    """Adds `steps_per_second`, `sequences_per_second` and `tokens_per_second` to the logs of every
    `frequency`-th step, measured over the steps since the previous figure.

    The first step of a run is left out of the first window: it traces (and with XLA compiles) the step function.
    Tokens are padded positions (`sequence_length` per sequence), the work the model does.

    Args:
        frequency: int. Steps per window.
        global_batch_size: int. Sequences per optimizer step over all replicas and micro-batches.
        sequence_length: int. Tokens per sequence.
        initial_step: int. Steps done before this `fit` (a resumed run).
        total_steps: int or None. The last step, which closes a window whatever `frequency`.
    """

    def __init__(self, frequency, global_batch_size, sequence_length, initial_step=0, total_steps=None):
        super().__init__(frequency, initial_step, total_steps)
        self.global_batch_size = int(global_batch_size)
        self.sequence_length = int(sequence_length)
        self._start = None
        self._start_step = None

    def on_train_batch_end(self, batch, logs=None):
        step = self.global_step(batch)
        now = time.perf_counter()
        if self._start is None:
            self._start, self._start_step = now, step
            return
        if not self.closes_window(step) or logs is None:
            return
        seconds = max(now - self._start, 1e-9)
        steps_per_second = (step - self._start_step) / seconds
        logs["steps_per_second"] = steps_per_second
        logs["sequences_per_second"] = steps_per_second * self.global_batch_size
        logs["tokens_per_second"] = steps_per_second * self.global_batch_size * self.sequence_length
        self._start, self._start_step = now, step

    def pause(self, seconds):
        """Leaves `seconds` spent outside training (a validation pass) out of the current window."""
        if self._start is not None:
            self._start += seconds


class MetricWindows(_StepCallback):
    """Resets the model's metrics after every `frequency`-th step, so that each logged value is the mean over the
    last window of steps rather than over the whole run (Keras resets them only at epoch starts).

    The reset happens when the next step begins, so every callback of the closing step still sees the window's means.
    """

    def on_train_batch_begin(self, batch, logs=None):
        if batch > 0 and (self.initial_step + int(batch)) % self.frequency == 0:
            self.model.reset_metrics()


LOG_ORDER = ("loss", "mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy", "grad_norm", "learning_rate",
             "loss_scale", "nonfinite_steps", "steps_per_second", "sequences_per_second", "tokens_per_second")


def format_logs(logs):
    """`loss 7.0312  mlm_loss 6.3121 ...  learning_rate 1.200e-04  sequences/s 163.2` for a log line."""
    keys = [key for key in LOG_ORDER if key in logs] + sorted(key for key in logs if key not in LOG_ORDER)
    parts = []
    for key in keys:
        value = logs[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key == "learning_rate":
            parts.append(f"{key} {value:.3e}")
        elif key.endswith("_per_second"):
            parts.append(f"{key[: -len('_per_second')]}/s {value:.1f}")
        else:
            parts.append(f"{key} {value:.4f}")
    return "  ".join(parts)


class ProgressLogger(_StepCallback):
    """Logs one line every `frequency` steps (and at the last step) on the `keras_albert` logger:
    `step 100/1000  loss ...  mlm_accuracy ...  learning_rate ...  sequences/s ...`; `last_logs` keeps its values.

    Args:
        frequency: int. Steps between lines.
        total_steps: int. The run's last step.
        initial_step: int. Steps done before this `fit`.
        enabled: bool. False on workers other than the chief, which log nothing.
    """

    def __init__(self, frequency, total_steps, initial_step=0, enabled=True):
        super().__init__(frequency, initial_step, total_steps)
        self.enabled = enabled
        self.last_logs = {}  # the values of the latest line, with its "step"

    def on_train_batch_end(self, batch, logs=None):
        step = self.global_step(batch)
        if not self.closes_window(step):
            return
        logs = {key: value for key, value in (logs or {}).items() if isinstance(value, (int, float))}
        logs["learning_rate"] = current_learning_rate(self.model)
        self.last_logs = {"step": step, **logs}
        if self.enabled:
            logger.info("step %d/%d  %s", step, self.total_steps, format_logs(logs))


def current_learning_rate(model):
    """The learning rate the next update will use (the schedule at the optimizer's `iterations`)."""
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def scalar_metadata():
    # What `tensorboard.summary.scalar` attaches, built from TensorFlow's own protos: `tf.summary.scalar` needs the
    # tensorboard package, which TensorFlow 2.21 no longer installs, while writing the events does not.
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    )


class TensorBoardScalars(_StepCallback):
    """Writes every numeric log value as a TensorBoard scalar at the global step, every `frequency` steps.

    Only the chief writes (`enabled=True`); the event files go to `log_dir` (read them with
    `tensorboard --logdir log_dir`). `learning_rate` is the schedule's value at that step.

    Args:
        log_dir: str. Directory for the event files.
        frequency: int. Steps between points.
        initial_step: int. Steps done before this `fit`.
        total_steps: int or None. The last step, always written.
        enabled: bool. False on workers other than the chief.
    """

    def __init__(self, log_dir, frequency, initial_step=0, total_steps=None, enabled=True):
        super().__init__(frequency, initial_step, total_steps)
        self.log_dir = os.fspath(log_dir)
        self.enabled = enabled
        self._writer = None

    def _get_writer(self):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        return self._writer

    def on_train_batch_end(self, batch, logs=None):
        step = self.global_step(batch)
        if not self.enabled or not self.closes_window(step):
            return
        import tensorflow as tf

        values = {key: value for key, value in (logs or {}).items() if isinstance(value, (int, float))}
        values["learning_rate"] = current_learning_rate(self.model)
        with self._get_writer().as_default(step=step):
            for key, value in values.items():
                tf.summary.write(key, tf.constant(value, tf.float32), metadata=scalar_metadata())

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


class MetricsLog(_StepCallback):
    """Writes the training values of every `frequency`-th step (and of the last) to the run's `metrics.jsonl`.

    At the start of training it calls `metrics_file.start(initial_step)`, which drops the lines of steps after the
    checkpoint the run resumes from; list it before `Validation`, which writes to the same file.

    Args:
        metrics_file: `keras_albert.training.logs.MetricsFile` (its `enabled` says whether this worker writes).
        frequency: int. Steps between lines (the log windows).
        initial_step: int. Steps done before this `fit`.
        total_steps: int or None. The last step, always written.
    """

    def __init__(self, metrics_file, frequency, initial_step=0, total_steps=None):
        super().__init__(frequency, initial_step, total_steps)
        self.metrics_file = metrics_file

    def on_train_begin(self, logs=None):
        self.metrics_file.start(self.initial_step)

    def on_train_batch_end(self, batch, logs=None):
        step = self.global_step(batch)
        if not self.metrics_file.enabled or not self.closes_window(step):
            return
        values = {key: value for key, value in (logs or {}).items() if isinstance(value, (int, float))}
        values["learning_rate"] = current_learning_rate(self.model)
        self.metrics_file.write(step, "train", values)

    def on_train_end(self, logs=None):
        self.metrics_file.close()


def _metric_state(model):
    """The model's metric variables, component by component (a tf.distribute variable holds one per local replica):
    read and written back locally, without a collective and without the sum a cross-replica read would take."""
    strategy = model.distribute_strategy
    components = [strategy.experimental_local_results(variable.value) for variable in model.metrics_variables]
    return [(parts, [part.numpy() for part in parts]) for parts in components]


def _restore_metric_state(state):
    for parts, values in state:
        for part, value in zip(parts, values):
            part.assign(value)


class Validation(_StepCallback):
    """Evaluates the model on held-out data every `frequency` steps and at the last step, during training.

    `model.evaluate(dataset, steps=steps)` runs on every worker (its reductions are collective; the decision to
    validate depends only on the step, the same everywhere); the chief writes the results to `metrics.jsonl`
    (split "validation"), to TensorBoard (`log_dir`, the same tags as training: TensorBoard shows the two runs on one
    chart) and to the log. `evaluate` resets the model's metrics: the training window's values are put back
    afterwards, and the time it takes is left out of the throughput figures. A step at which a signal stopped the
    run is not validated (the run saves its checkpoint and exits).

    Args:
        dataset: what `model.evaluate` reads (a distributed dataset under a strategy): it must restart at the same
            examples whenever it is iterated (no shuffle), and hold at least `steps` batches (e.g. repeat).
        frequency: int. Steps between validations.
        steps: int. Batches (per replica) of each validation.
        initial_step: int. Steps done before this `fit`.
        total_steps: int or None. The last step, always validated.
        metrics_file: `MetricsFile` or None.
        log_dir: str or None. TensorBoard directory of the validation scalars (None: not written).
        throughput: `Throughput` or None. Told how long each validation took.
        enabled: bool. False on workers other than the chief: they evaluate but write and log nothing.
    """

    def __init__(self, dataset, frequency, steps, initial_step=0, total_steps=None, metrics_file=None,
                 log_dir=None, throughput=None, enabled=True):
        super().__init__(frequency, initial_step, total_steps)
        self.dataset = dataset
        self.steps = int(steps)
        self.metrics_file = metrics_file
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.throughput = throughput
        self.enabled = enabled
        self.last_results = {}  # the latest validation's values, with its "step"
        self._writer = None

    def validate(self, step):
        start = time.perf_counter()
        state = _metric_state(self.model)
        results = self.model.evaluate(self.dataset, steps=self.steps, verbose=0, return_dict=True)
        _restore_metric_state(state)
        results = {key: float(value) for key, value in results.items()}
        self.last_results = {"step": step, **results}
        if self.enabled:
            logger.info("step %d/%s  validation  %s", step, self.total_steps, format_logs(results))
            if self.metrics_file is not None:
                self.metrics_file.write(step, "validation", results)
            if self.log_dir is not None:
                self._write_scalars(step, results)
        if self.throughput is not None:
            self.throughput.pause(time.perf_counter() - start)
        return results

    def _write_scalars(self, step, results):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=step):
            for key, value in results.items():
                tf.summary.write(key, tf.constant(value, tf.float32), metadata=scalar_metadata())
        self._writer.flush()

    def on_train_batch_end(self, batch, logs=None):
        step = self.global_step(batch)
        if self.closes_window(step) and not self.model.stop_training:
            self.validate(step)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class PeriodicCheckpoint(_StepCallback):
    """Saves a `RunCheckpoint` every `frequency` steps and at the end of training.

    Every worker must run it (the save takes part in collective ops); the `RunCheckpoint` decides who writes.

    Args:
        run_checkpoint: `keras_albert.training.checkpoints.RunCheckpoint`.
        frequency: int. Steps between checkpoints.
        initial_step: int. Steps done before this `fit`.
        data_layout: dict. Stored with each checkpoint (see `RunCheckpoint.save`).
    """

    def __init__(self, run_checkpoint, frequency, initial_step=0, data_layout=None):
        super().__init__(frequency, initial_step)
        self.run_checkpoint = run_checkpoint
        self.data_layout = data_layout or {}
        self.step = int(initial_step)

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.global_step(batch)
        if self.step % self.frequency == 0:
            self._save()

    def on_train_end(self, logs=None):
        if self.run_checkpoint.last_saved_step != self.step:
            self._save()

    def _save(self):
        path = self.run_checkpoint.save(self.step, self.data_layout)
        if path:
            logger.info("step %d: saved checkpoint %s", self.step, path)


class ProgressBar(keras.callbacks.Callback):
    """A tqdm bar over the run's steps on the chief (off where stderr is not a terminal, e.g. SageMaker logs)."""

    def __init__(self, initial_step=0, total_steps=None, enabled=True):
        super().__init__()
        self.initial_step = int(initial_step)
        self.total_steps = total_steps
        self.enabled = enabled
        self._bar = None
        self._step = int(initial_step)

    def on_train_begin(self, logs=None):
        if not self.enabled:
            return
        import sys

        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total_steps, initial=self.initial_step, unit="step", desc="pretrain",
                         file=sys.stderr, disable=None, dynamic_ncols=True)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is None:
            return
        step = self.initial_step + int(batch) + 1
        self._bar.update(step - self._step)
        self._step = step
        if logs and "loss" in logs:
            self._bar.set_postfix(loss=f"{logs['loss']:.3f}", refresh=False)

    def on_train_end(self, logs=None):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class StopAtStep(_StepCallback):
    """Stops `fit` after global step `stop_step` (the end-of-training checkpoint is still written)."""

    def __init__(self, stop_step, initial_step=0):
        super().__init__(1, initial_step)
        self.stop_step = int(stop_step)

    def on_train_batch_end(self, batch, logs=None):
        if self.global_step(batch) >= self.stop_step:
            self.model.stop_training = True


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
