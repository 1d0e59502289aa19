"""Pretraining runs: `pretrain(settings)` trains, or resumes, the run that a `PretrainSettings` describes.

The `keras-albert pretrain` command (`keras_albert.commands.pretrain`) turns its flags into `PretrainSettings` and
calls `pretrain`; Python callers call it with settings of their own, and may give their own model and dataset. A
run lives in `output_dir`:

```
output_dir/checkpoints/   checkpoints every checkpoint_frequency steps and at the end (see training/checkpoints.py)
output_dir/tensorboard/   TensorBoard scalars every log_frequency steps
output_dir/model.keras    the final model, for `SquadModel.from_pretraining` and `keras-albert export`
output_dir/train.log      the log lines
output_dir/settings.json  the settings of the latest start
output_dir/summary.json   the step reached, the last logged values (losses, throughput), the seconds it took
output_dir/metrics.jsonl  one JSON object a line: training values every log_frequency steps, validation values on
                          val_files every validation_frequency steps and at the end (see training/logs.py)
```

Running again with the same `output_dir` resumes from the latest checkpoint: weights, optimizer state and step count
(so the learning-rate schedule continues), dropout RNG states and the data position (the reader starts at the record
where the steps done end, in time independent of their number: its shuffles and masks are stateless functions of
the seed, epoch and position; the batches are those an uninterrupted run would have seen, provided files, seed,
batch sizes and the number of replicas are unchanged).

Everything one run does happens in `pretrain`, top to bottom: settings, strategy, precision, model and optimizer,
restore, callbacks, `fit`, final model.
"""

import dataclasses
import logging
import os
import platform
import time

from keras_albert import io
from keras_albert.errors import UserInputError
from keras_albert.training.logs import log_to_file
from keras_albert.training.preemption import StopSignals, signal_name
from keras_albert.training.pretrain_settings import PretrainSettings, resolve_settings
from keras_albert.training.runs import (
    build_model,
    build_optimizer,
    check_changed_settings,
    precision_policy,
    resolve_jit_compile,
    uses_float16,
)
from keras_albert.training.validation import name

logger = logging.getLogger("keras_albert")

SETTINGS_FILE = "settings.json"
LOG_FILE = "train.log"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_FILE = "summary.json"

__all__ = ["PretrainSettings", "pretrain", "resolve_settings"]


def data_layout(settings, num_replicas, num_workers, dataset_given=False):
    """What decides which examples each step sees; a resume with another layout cannot continue exactly."""
    return {
        "train_files": "a dataset given from Python" if dataset_given else settings.train_files,
        "seed": settings.seed,
        "shuffle": settings.shuffle,
        "dynamic_masking": settings.dynamic_masking,
        "per_gpu_batch_size": settings.per_gpu_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "max_seq_length": settings.max_seq_length,
        "max_predictions_per_seq": settings.max_predictions_per_seq,
        "num_replicas": num_replicas,
        "num_workers": num_workers,
    }


def _records_fn(settings, steps_done=0):
    from keras_albert.data import pretraining_dataset

    def dataset_fn(context):
        # Each step takes one batch per replica from this pipeline (round-robin over its replicas); the reader
        # starts after them in constant time (no replay of the pipeline).
        replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
        return pretraining_dataset(
            settings.train_files,
            settings.per_gpu_batch_size,
            settings.max_seq_length,
            settings.max_predictions_per_seq,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            input_context=context,
            shuffle=settings.shuffle,
            repeat=True,
            seed=settings.seed,
            skip_batches=steps_done * replicas_per_pipeline,
            dynamic_masking=settings.dynamic_masking,
            tokenizer=settings.tokenizer if settings.dynamic_masking else None,
        )

    return dataset_fn


def make_validation_dataset(settings, strategy, horovod=None):
    """The held-out records of `settings.val_files`, in file order (no shuffle: every validation reads the same
    first `max_validation_steps` batches of `per_gpu_batch_size` rows per replica, repeating the records if they
    hold fewer), distributed like the training data."""
    import tensorflow as tf

    from keras_albert.data import pretraining_dataset

    def dataset_fn(context):
        return pretraining_dataset(
            settings.val_files,
            settings.per_gpu_batch_size,
            settings.max_seq_length,
            settings.max_predictions_per_seq,
            input_context=context,
            shuffle=False,
            repeat=True,
            seed=settings.seed,
            dynamic_masking=settings.dynamic_masking,
            tokenizer=settings.tokenizer if settings.dynamic_masking else None,
        )

    if horovod is not None:
        return dataset_fn(tf.distribute.InputContext(horovod.size(), horovod.rank(), horovod.size()))
    return strategy.distribute_datasets_from_function(dataset_fn)


def make_dataset(settings, strategy, steps_done, horovod=None, dataset=None):
    """The training dataset, positioned after `steps_done` optimizer steps: distributed over the strategy's
    replicas, or, under Horovod, this rank's shard.

    `dataset` (given from Python) replaces the records of `settings.train_files`: a function of a
    `tf.distribute.InputContext` returning one pipeline's per-replica batches, or, on one replica, a `tf.data.Dataset`.
    The records of `train_files` start at the position of `steps_done` in constant time; a dataset given from
    Python is skipped batch by batch.
    """
    replicas = horovod.size() if horovod is not None else strategy.num_replicas_in_sync
    if dataset is None:
        return _distribute(_records_fn(settings, steps_done), strategy, horovod)
    elif callable(dataset):
        dataset_fn = dataset
    elif replicas == 1:
        dataset_fn = lambda context: dataset  # noqa: E731
    else:
        raise UserInputError(
            f"dataset: {replicas} replicas need a function of a tf.distribute.InputContext returning each pipeline's "
            "per-replica batches, not one tf.data.Dataset"
        )

    def positioned(context):
        pipeline = dataset_fn(context)
        if steps_done:
            # A dataset given from Python is opaque: skipped batch by batch.
            replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
            pipeline = pipeline.skip(steps_done * replicas_per_pipeline)
        return pipeline

    return _distribute(positioned, strategy, horovod)


def _distribute(dataset_fn, strategy, horovod):
    import tensorflow as tf

    if horovod is not None:
        return dataset_fn(tf.distribute.InputContext(horovod.size(), horovod.rank(), horovod.size()))
    return strategy.distribute_datasets_from_function(dataset_fn)


def _workers_agree(strategy, value, horovod=None):
    """True when every worker passes the same integer: the minimum and maximum over the workers are equal."""
    from keras_albert.models.multi_worker import workers_min_max

    smallest, largest = workers_min_max(strategy, value, horovod)
    return smallest == largest


def _squad_callback(settings, worker):
    """The periodic SQuAD evaluation of `--squad_frequency`, on the pretraining tokenizer."""
    from keras_albert.data import squad
    from keras_albert.training.squad_callback import PeriodicSquad
    from keras_albert.training.squad_settings import SquadSettings

    length = settings.squad_max_seq_length
    return PeriodicSquad(
        settings.squad_frequency,
        settings.tokenizer,
        settings.squad_train_file or squad.austen_squad_path("train"),
        settings.squad_predict_file or squad.austen_squad_path("dev"),
        settings.squad_steps,
        SquadSettings(
            per_gpu_batch_size=settings.squad_batch_size,
            learning_rate=settings.squad_learning_rate,
            max_seq_length=length,
            doc_stride=max(1, length // 3),
            max_query_length=min(64, max(1, length // 4)),
            seed=settings.seed,
        ),
        log_dir=os.path.join(settings.output_dir, TENSORBOARD_DIR) if worker.is_chief else None,
    )


def copy_tokenizer(tokenizer, directory):
    """Writes the tokenizer into `directory` once it has loaded: its model file (`spiece.model` / `vocab.txt`) and
    configs, nothing else (see `training.provenance`)."""
    if tokenizer is None:
        return []
    from keras_albert.training.provenance import load_checked_tokenizer, save_tokenizer

    return [save_tokenizer(load_checked_tokenizer(tokenizer), directory)]


def _write_settings(settings, replicas, strategy, worker, jit_compile):
    from keras_albert.version import __version__

    record = {
        "settings": dataclasses.asdict(settings),
        "num_replicas": replicas,
        "num_workers": worker.num_workers,
        "strategy": type(strategy).__name__,
        "jit_compile": jit_compile,
        "keras_albert": __version__,
        "python": platform.python_version(),
    }
    io.write_json(os.path.join(settings.output_dir, SETTINGS_FILE), record)


def _build_and_restore(settings, strategy, worker, jit_compile, given_model):
    """Model, optimizer and `RunCheckpoint` under the strategy's scope; the latest checkpoint restored if any.

    Returns (model, checkpoint, prefix of the restored checkpoint or None, step reached).
    """
    from keras_albert.models import PretrainingModel
    from keras_albert.training.checkpoints import RunCheckpoint, restore_weights

    with strategy.scope():
        model = build_model(
            PretrainingModel,
            max_seq_length=settings.max_seq_length,
            # --load_from checkpoint keeps the architecture of the flags (a new phase may be longer) and starts from
            # the checkpoint's weights, restored below unless the run resumes.
            load_from="huggingface" if settings.load_from == "huggingface" else "scratch",
            model_type=settings.model_type,
            model_size=settings.model_size,
            checkpoint_path=settings.checkpoint_path,
            vocab_size=settings.vocab_size,
            dropout=settings.hidden_dropout_prob,
            model=given_model,
            skip_mlm=settings.skip_mlm,
            skip_sop=settings.skip_sop,
        )
        optimizer = build_optimizer(
            settings.optimizer,
            settings.learning_rate,
            warmup_steps=settings.warmup_steps,
            total_steps=settings.total_steps,
            end_learning_rate=settings.end_learning_rate,
            decay_power=settings.learning_rate_decay_power,
            weight_decay=settings.weight_decay,
            beta_1=settings.beta_1,
            beta_2=settings.beta_2,
            epsilon=settings.epsilon,
            loss_scale=uses_float16(model),
        )
        model.compile(
            optimizer=optimizer,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            max_grad_norm=settings.max_grad_norm or None,
            jit_compile=jit_compile,
            steps_per_execution=settings.steps_per_execution,
        )
        # Built now, not at the first step, so that a checkpoint can restore the optimizer's slots.
        model.optimizer.build(model.trainable_variables)
        checkpoint = RunCheckpoint(settings.output_dir, model, settings.keep_checkpoints, worker)
        latest = checkpoint.latest
        step = checkpoint.restore_latest()
        if latest is None and settings.load_from == "checkpoint":
            logger.info("Initial weights from %s", restore_weights(model, settings.checkpoint_path))
    return model, checkpoint, latest, step


def _report_resume(checkpoint, latest, step, settings, layout, model):
    logger.info(
        "Resuming from %s: step %d of %d (optimizer iteration %d)",
        latest, step, settings.total_steps, int(model.optimizer.iterations.numpy()),
    )
    checkpoint.warn_if_data_layout_changed(layout, step)


def _run_callbacks(settings, worker, checkpoint, initial_step, global_batch, layout, stop_on_signal,
                   validation_dataset=None):
    from keras_albert.training import callbacks
    from keras_albert.training.logs import METRICS_FILE, MetricsFile
    from keras_albert.training.nonfinite import StopOnNonFinite

    common = dict(initial_step=initial_step, total_steps=settings.total_steps)
    metrics_file = MetricsFile(os.path.join(settings.output_dir, METRICS_FILE), enabled=worker.is_chief)
    throughput = callbacks.Throughput(settings.log_frequency, global_batch, settings.max_seq_length, **common)
    run = [
        # Before the checkpoint: a run that keeps diverging stops without saving.
        StopOnNonFinite(settings.max_nonfinite_steps, initial_step),
        # Throughput first: the callbacks after it print and write its figures from the same logs.
        callbacks.MetricWindows(settings.log_frequency, initial_step),
        throughput,
        callbacks.TensorBoardScalars(
            os.path.join(settings.output_dir, TENSORBOARD_DIR), settings.log_frequency, enabled=worker.is_chief,
            **common,
        ),
        callbacks.ProgressLogger(settings.log_frequency, settings.total_steps, initial_step, enabled=worker.is_chief),
        callbacks.ProgressBar(enabled=worker.is_chief and not settings.quiet, **common),
        callbacks.MetricsLog(metrics_file, settings.log_frequency, **common),
        # After the others, so that the step a signal stops at is logged; `fit`'s end saves its checkpoint.
        stop_on_signal,
        callbacks.PeriodicCheckpoint(checkpoint, settings.checkpoint_frequency, initial_step, layout),
    ]
    if validation_dataset is not None:
        # After the signal check (a stopping run is not validated), before the checkpoint of the same step.
        run.insert(-1, callbacks.Validation(
            validation_dataset, settings.validation_frequency, settings.max_validation_steps, **common,
            metrics_file=metrics_file, log_dir=os.path.join(settings.output_dir, TENSORBOARD_DIR, "validation"),
            throughput=throughput, enabled=worker.is_chief,
        ))
    if settings.squad_frequency:
        run.append(_squad_callback(settings, worker))
    return run


def pretrain(settings, callbacks=None, *, model=None, dataset=None):
    """Trains (or resumes) the pretraining run that `settings` describes, and returns what it did.

    Creates the tf.distribute strategy first (before any TensorFlow op), seeds Python, NumPy and Keras with
    `settings.seed`, builds model and optimizer under the strategy's scope in the run's precision (the global dtype
    policy is restored on return), restores the latest checkpoint of `settings.output_dir` if there is one (one log
    line says so), trains with `model.fit` to `settings.total_steps`, saving checkpoints every
    `checkpoint_frequency` steps and at the end, then writes `output_dir/model.keras`.

    Args:
        settings: `PretrainSettings`.
        callbacks: list of `keras.callbacks.Callback` or None. Extra callbacks, run after the run's own. Keras'
            batch index restarts at 0 in a resumed run: `model.optimizer.iterations` counts the steps of the run.
        model: a `PretrainingModel` to train instead of the one the settings describe (`model_type`, `model_size`,
            `load_from`, `vocab_size`, `hidden_dropout_prob`, `skip_mlm`/`skip_sop` and `mixed_precision` are then
            the model's). It is trained in place under the strategy whose scope created it (`distribution` is not
            used); it is compiled here with the settings' optimizer.
        dataset: the training data instead of `train_files`: a function of a `tf.distribute.InputContext` returning
            one input pipeline's batches (as `distribute_datasets_from_function` takes), or, on one replica, a
            `tf.data.Dataset`. It yields dicts of the TFRecord feature names, `per_gpu_batch_size *
            gradient_accumulation_steps` rows per replica per step, and repeats. The run skips the batches of the
            steps already done when it resumes: an exact resume needs a deterministic dataset.

    Returns:
        dict: `model` (the trained `PretrainingModel`), `initial_step` (the step it resumed from, 0 for a new
        run), `step` (the step reached), `total_steps`, `seconds` (of training), `logs` (the values of the last
        log line, with its `step`), `validation` (the values of the last validation on `val_files`, with its `step`;
        empty without `val_files`), `final_model` (path of the `.keras` file, None on other workers than the
        chief and in a preempted run), `output_dir`, `preempted`. All but `model` are also written to
        `output_dir/summary.json` (chief) when the run ends.

        `preempted` is None, or the number of the signal (SIGTERM, SIGINT) that stopped the run before
        `total_steps`: while `pretrain` runs (in the main thread) these signals only set a flag; training stops
        after the current step (on every worker: the flag is all-reduced after each step), saves a checkpoint of that
        step, writes no final model and returns. Calling `pretrain` again with the same settings resumes.

    Raises:
        UserInputError: a setting or file is wrong.
        RunDiverged: `max_nonfinite_steps` updates in a row were skipped as non-finite, or a weight is not finite
            when a checkpoint or the final model would be written (nothing is written; the checkpoints on disk stay).

    Example:
    ```python
    from keras_albert.training.pretrain import PretrainSettings, pretrain

    result = pretrain(PretrainSettings("data/*.tfrecord", output_dir="runs/tiny", model_size="tiny",
                                       total_steps=1000, warmup_steps=100, learning_rate=1e-3))
    result["model"].save_huggingface("tiny-hf")
    ```
    """
    settings = resolve_settings(settings, model=model, dataset=dataset)
    from keras_albert import distribute

    # The strategy comes before any TensorFlow op: MultiWorkerMirroredStrategy cannot be created after one.
    strategy = model.distribute_strategy if model is not None else distribute.get_strategy(settings.distribution)
    horovod = distribute.horovod_module()
    worker = distribute.worker_info()
    replicas = horovod.size() if horovod is not None else strategy.num_replicas_in_sync
    global_batch = settings.per_gpu_batch_size * settings.gradient_accumulation_steps * replicas

    import keras

    os.makedirs(settings.output_dir, exist_ok=True)
    with log_to_file(os.path.join(settings.output_dir, LOG_FILE), enabled=worker.is_chief), \
            precision_policy(settings.mixed_precision), StopSignals() as stop_signals:
        check_changed_settings(settings, SETTINGS_FILE)
        keras.utils.set_random_seed(settings.seed)
        jit_compile = resolve_jit_compile(settings.jit_compile, strategy)
        model, checkpoint, latest, initial_step = _build_and_restore(settings, strategy, worker, jit_compile, model)
        if worker.num_workers > 1 and not _workers_agree(strategy, initial_step, horovod):
            raise UserInputError(
                f"{name('output_dir')}: the workers found different checkpoints under {checkpoint.directory} (this "
                f"one: step {initial_step}); the output directory must be on a filesystem that every worker sees"
            )
        layout = data_layout(settings, replicas, worker.num_workers, dataset_given=dataset is not None)
        if latest is not None:
            _report_resume(checkpoint, latest, initial_step, settings, layout, model)
        if worker.is_chief:
            _write_settings(settings, replicas, strategy, worker, jit_compile)
            # Beside the model, so that `keras-albert squad --load_from checkpoint` and `export` find it.
            copy_tokenizer(settings.tokenizer, settings.output_dir)
        logger.info(
            "%s %s (%s parameters), %d replica(s) on %d worker(s), %d sequences of %d tokens per step "
            "(%d x %d micro-batches per replica), %s, jit_compile=%s, mixed precision %s",
            settings.model_type, settings.model_size or "model", f"{model.count_params():,}", replicas,
            worker.num_workers, global_batch, settings.max_seq_length, settings.gradient_accumulation_steps,
            settings.per_gpu_batch_size, settings.optimizer, jit_compile, settings.mixed_precision,
        )

        logs, validation, step, start = {}, {}, initial_step, time.perf_counter()
        from keras_albert.training.callbacks import StopOnSignal

        stop_on_signal = StopOnSignal(stop_signals, strategy, horovod, worker.num_workers, initial_step=initial_step)
        if initial_step < settings.total_steps:
            run_callbacks = _run_callbacks(
                settings, worker, checkpoint, initial_step, global_batch, layout, stop_on_signal,
                make_validation_dataset(settings, strategy, horovod) if settings.val_files else None,
            )
            model.fit(
                make_dataset(settings, strategy, initial_step, horovod, dataset),
                epochs=1,
                steps_per_epoch=settings.total_steps - initial_step,
                callbacks=run_callbacks + list(callbacks or []),
                verbose=0,
                shuffle=False,  # the dataset shuffles (seeded); Keras would only warn
            )
            logs = next(c.last_logs for c in run_callbacks if hasattr(c, "last_logs"))
            validation = next((c.last_results for c in run_callbacks if hasattr(c, "last_results")), {})
            step = checkpoint.last_saved_step
        else:
            logger.info("The run is complete: step %d of %d; nothing to train", initial_step, settings.total_steps)
        preempted = stop_on_signal.signum if step < settings.total_steps else None
        if preempted:
            logger.info(
                "Stopped by %s at step %d of %d; checkpoint %s-%d saved; run again with the same %s to resume",
                signal_name(preempted), step, settings.total_steps, os.path.join(checkpoint.directory, "ckpt"), step,
                name("output_dir"),
            )
        final_model = None if preempted else checkpoint.save_final_model()
        result = {
            "initial_step": initial_step,
            "step": step,
            "total_steps": settings.total_steps,
            "preempted": preempted,
            "seconds": round(time.perf_counter() - start, 3),
            "logs": logs,
            "validation": validation,
            "final_model": final_model,
            "output_dir": settings.output_dir,
        }
        if final_model:
            logger.info("Wrote %s (step %d)", final_model, step)
            io.write_json(os.path.join(settings.output_dir, SUMMARY_FILE), result)
        return {"model": model, **result}
