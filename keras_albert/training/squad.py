"""SQuAD runs: finetune a `SquadModel`, predict, score with the official rules, write the official files.

`finetune_squad` trains a model on SQuAD features (one optimizer update per step, gradient accumulation inside the
step); `predict_squad` (in `squad_predict.py`) predicts, extracts answers, scores and writes; `run_squad` does what
the `keras-albert squad` command does, from `SquadRunSettings`, and takes a model, a tokenizer and questions from
Python as well. `PeriodicSquad` (periodic SQuAD during pretraining) calls the same two functions with the same
`SquadSettings`.

Finetuning and the run around it (checkpoints, resume, signals, the export) share the run's private helpers and
stay here; the training input pipeline lives in `squad_dataset.py`, prediction in `squad_predict.py` and the settings
in `squad_settings.py`.

```python
from keras_albert.training.squad import SquadRunSettings, run_squad

run = run_squad(SquadRunSettings(load_from="checkpoint", checkpoint_path="runs/albert-tiny", max_seq_length=128,
                                 doc_stride=64, per_gpu_batch_size=32, total_steps=400, learning_rate=2e-3))
run["predictions"].scores["f1"]
```
"""

import dataclasses
import logging
import math
import os
import sys

from keras_albert import io
from keras_albert.errors import UserInputError
from keras_albert.training.logs import log_to_file
from keras_albert.training.preemption import StopSignals, signal_name
from keras_albert.training.provenance import check_squad_tokenizer
from keras_albert.training.runs import (
    build_model,
    build_optimizer,
    check_changed_settings,
    checkpoint_directory,
    precision_policy,
    resolve_jit_compile,
    uses_float16,
)
from keras_albert.training.squad_dataset import training_dataset
from keras_albert.training.squad_predict import SquadPredictions, predict_logits, predict_squad, strategy_workers
from keras_albert.training.squad_settings import (
    TASK_NAMES,
    SquadRunSettings,
    SquadSettings,
    check_run_settings,
    squad_settings,
)
from keras_albert.training.validation import name

logger = logging.getLogger("keras_albert")

DEFAULT_OUTPUT_DIR = "squad_output"
HUGGINGFACE_DIR = "huggingface"
SETTINGS_FILE = "settings.json"
LOG_FILE = "train.log"

__all__ = [
    "SquadPredictions",
    "SquadRunSettings",
    "SquadSettings",
    "finetune_squad",
    "predict_logits",
    "predict_squad",
    "run_squad",
    "training_dataset",
]


def total_steps_of(settings, num_features, num_replicas):
    """`settings.total_steps`, or two passes over `num_features` training features."""
    if settings.total_steps is not None:
        return settings.total_steps
    rows_per_step = settings.per_gpu_batch_size * settings.gradient_accumulation_steps * num_replicas
    return max(1, math.ceil(2 * num_features / rows_per_step))


def finetune_squad(model, data, settings=None, *, jit_compile="auto", callbacks=None, verbose="auto", **fields):
    """Compiles `model` with a fresh optimizer and trains it on SQuAD for `total_steps` optimizer updates.

    The model's own strategy (the one whose scope it was created in) is used: the optimizer is created under its
    scope, and each worker reads its shard of the features.

    Args:
        model: `keras_albert.SquadModel`.
        data: list of `SquadFeature` built with `is_training=True`, or (from Python) a dataset `fit` takes, of
            batches holding the features and `start_positions`/`end_positions`, repeated (then `total_steps` is
            required).
        settings: `SquadSettings` or None. Its optimisation fields are used (`total_steps`, `per_gpu_batch_size`,
            `gradient_accumulation_steps`, `learning_rate`, `warmup_steps`, `optimizer`, `weight_decay`,
            `max_grad_norm`, `seed`).
        jit_compile: passed to `compile` (turned off where the strategy cannot use XLA).
        callbacks: list of Keras callbacks for `fit`.
        verbose: Keras `fit` verbosity.
        **fields: `SquadSettings` fields replacing those of `settings` (e.g. `total_steps=600`).

    Returns:
        The Keras `History`.

    Example:
    ```python
    from keras_albert import SquadModel
    from keras_albert.data import load_tokenizer, squad
    from keras_albert.training.squad import SquadSettings, finetune_squad, predict_squad

    tokenizer = load_tokenizer("tokenizer/")
    settings = SquadSettings(max_seq_length=192, doc_stride=64, max_query_length=48, per_gpu_batch_size=32,
                             total_steps=600, learning_rate=2e-3)
    examples = squad.read_squad(squad.austen_squad_path("train"))
    features = squad.convert_examples_to_features(examples, tokenizer, is_training=True, **settings.window())
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=tokenizer.vocab_size, max_sequence_length=192)
    finetune_squad(model, features, settings)
    predict_squad(model, examples, tokenizer, settings).scores["f1"]
    ```
    """
    settings = squad_settings(settings, **fields)
    strategy = model.distribute_strategy
    if isinstance(data, (list, tuple)):
        if not data:
            raise UserInputError("no SQuAD training features (is the training file empty?)")
        _, workers, local_replicas = strategy_workers(strategy)
        total_steps = total_steps_of(settings, len(data), workers * local_replicas)
        dataset = training_dataset(data, settings.per_gpu_batch_size, settings.gradient_accumulation_steps,
                                   strategy, seed=settings.seed)
    elif settings.total_steps is None:
        raise UserInputError(f"{name('total_steps')} is required to finetune on a dataset")
    else:
        total_steps, dataset = settings.total_steps, data
    compile_for_squad(model, settings, total_steps, jit_compile)
    return model.fit(dataset, epochs=1, steps_per_epoch=total_steps, callbacks=callbacks, verbose=verbose,
                     shuffle=False)


def compile_for_squad(model, settings, total_steps, jit_compile="auto"):
    """Compiles `model` under its strategy's scope with a fresh optimizer of `settings` (warmup + linear decay to
    `total_steps`), `gradient_accumulation_steps` and `max_grad_norm`; `jit_compile` is a bool or "auto"."""
    from keras_albert.distribute import resolve_jit_compile

    strategy = model.distribute_strategy
    warmup_steps = total_steps // 10 if settings.warmup_steps is None else settings.warmup_steps
    with strategy.scope():
        optimizer = settings.optimizer
        if isinstance(optimizer, str):
            optimizer = build_optimizer(optimizer, settings.learning_rate, warmup_steps=warmup_steps,
                                        total_steps=total_steps, weight_decay=settings.weight_decay,
                                        loss_scale=uses_float16(model))
        model.compile(
            optimizer=optimizer,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            max_grad_norm=settings.max_grad_norm or None,
            jit_compile=resolve_jit_compile(jit_compile, strategy),
        )


# -------------------------------------------------------------------------------------------------- the run


def _examples(given, path, version, field, split, tfds_data_dir=None):
    """Examples and parsed JSON (None for examples given) of a split: given from Python, a SQuAD file, a prepared
    TensorFlow Datasets split (`tfds:squad/v2.0:validation`, read from `tfds_data_dir`), or the embedded Austen
    questions when `path` is None."""
    from keras_albert.data import squad

    if given is not None:
        given = list(given)
        if not given:
            raise UserInputError(f"{field.replace('_file', '_examples')}: holds no questions")
        return given, None
    if path is None:
        if version == "1.1":
            raise UserInputError(f"{name(field)} is required with {name('task_name')} squadv1: the embedded Austen "
                                 "question set is SQuAD v2.0")
        path = squad.austen_squad_path(split)
    elif not str(path).startswith("tfds:") and not os.path.isfile(path):  # tfds: a TFDS SQuAD split
        raise UserInputError(f"{name(field)} {path}: no such file")
    try:
        examples = squad.read_squad(path, version=version, tfds_data_dir=tfds_data_dir)
        dataset = squad.load_json(path, tfds_data_dir=tfds_data_dir)
    except UserInputError as error:
        raise UserInputError(f"{name(field)} {error}") from None
    if not examples:
        raise UserInputError(f"{name(field)} {path}: holds no questions")
    return examples, dataset


def _has_tokenizer(directory):
    from keras_albert.data.tokenizers import SPIECE_FILE, VOCAB_FILE

    return any(os.path.isfile(os.path.join(directory, entry)) for entry in (SPIECE_FILE, VOCAB_FILE))


def _tokenizer(given, settings):
    """The tokenizer: given from Python (a tokenizer or its path), `settings.tokenizer`, or the one beside the
    checkpoint."""
    from keras_albert.data import load_tokenizer

    path = given if given is not None else settings.tokenizer
    if path is not None and not isinstance(path, (str, os.PathLike)):
        return path
    if path:
        try:
            return load_tokenizer(path)
        except UserInputError as error:
            raise UserInputError(f"{name('tokenizer')} {error}") from None
    if settings.load_from != "scratch" and settings.checkpoint_path:
        directory = checkpoint_directory(settings.checkpoint_path)
        for candidate in (directory, os.path.dirname(directory)):
            if _has_tokenizer(candidate):
                return load_tokenizer(candidate)
    raise UserInputError(
        f"{name('tokenizer')} is required (a directory with spiece.model or vocab.txt"
        + (")" if settings.load_from == "scratch" else "; the checkpoint's directory holds none)")
    )


def _json_value(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _write_run_settings(settings, output_dir, replicas, num_workers, strategy, jit_compile):
    from keras_albert.version import __version__

    record = {
        "settings": {key: _json_value(value) for key, value in dataclasses.asdict(settings).items()},
        "num_replicas": replicas,
        "num_workers": num_workers,
        "strategy": type(strategy).__name__,
        "jit_compile": jit_compile,
        "keras_albert": __version__,
    }
    io.write_json(os.path.join(output_dir, SETTINGS_FILE), record)


def _data_layout(settings, num_features, replicas, num_workers):
    """What decides which features each step reads; a resume with another layout cannot continue exactly."""
    return {
        "train_file": settings.train_file,
        "num_features": num_features,
        "seed": settings.seed,
        "per_gpu_batch_size": settings.per_gpu_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "num_replicas": replicas,
        "num_workers": num_workers,
        **settings.window(),
    }


def export_finetuned_model(model, tokenizer, directory):
    """Writes `model` as a Hugging Face directory (`config.json`, `model.safetensors`) with `tokenizer`'s files
    (`spiece.model` or `vocab.txt` and the tokenizer configs), which transformers' `AutoTokenizer` and
    `AutoModelForQuestionAnswering` load. The directory appears whole."""
    with io.atomic_path(directory, directory=True) as staging:
        model.save_huggingface(staging)
        tokenizer.save(staging)
    return directory


def _finetune_run(settings, model, strategy, worker, tokenizer, train_features, output_dir, callbacks, verbose):
    """Finetunes `model` in the run directory `output_dir`, or resumes it from its latest checkpoint: periodic
    checkpoints, signals stop at a step boundary with a checkpoint; then writes `model.keras` unless a signal
    stopped it before the last step. Returns (step reached, signal or None, path of model.keras or None)."""
    from keras_albert import distribute
    from keras_albert.models.multi_worker import workers_min_max
    from keras_albert.training import callbacks as run_callbacks
    from keras_albert.training.checkpoints import RunCheckpoint
    from keras_albert.training.nonfinite import StopOnNonFinite

    horovod = distribute.horovod_module()
    _, num_workers, local_replicas = strategy_workers(strategy)
    replicas = num_workers * local_replicas
    total_steps = settings.total_steps
    with StopSignals() as stop_signals:
        check_changed_settings(settings, SETTINGS_FILE)
        jit_compile = resolve_jit_compile(settings.jit_compile, strategy)
        compile_for_squad(model, settings, total_steps, jit_compile)
        with strategy.scope():
            # Built now, not at the first step, so that a checkpoint can restore the optimizer's slots.
            model.optimizer.build(model.trainable_variables)
            checkpoint = RunCheckpoint(output_dir, model, settings.keep_checkpoints, worker)
            latest = checkpoint.latest
            initial_step = checkpoint.restore_latest()
        if num_workers > 1 and len(set(workers_min_max(strategy, initial_step, horovod))) > 1:
            raise UserInputError(
                f"{name('output_dir')}: the workers found different checkpoints under {checkpoint.directory} (this "
                f"one: step {initial_step}); the output directory must be on a filesystem that every worker sees"
            )
        layout = _data_layout(settings, len(train_features), replicas, num_workers)
        if latest is not None:
            logger.info("Resuming from %s: step %d of %d", latest, initial_step, total_steps)
            checkpoint.warn_if_data_layout_changed(layout, initial_step, what="features")
        if worker.is_chief:
            _write_run_settings(settings, output_dir, replicas, num_workers, strategy, jit_compile)
        stop_on_signal = run_callbacks.StopOnSignal(stop_signals, strategy, horovod, num_workers,
                                                    initial_step=initial_step)
        if initial_step >= total_steps:
            logger.info("The finetuning is complete: step %d of %d; nothing to train", initial_step, total_steps)
            return initial_step, None, checkpoint.save_final_model()
        dataset = training_dataset(train_features, settings.per_gpu_batch_size, settings.gradient_accumulation_steps,
                                   strategy, seed=settings.seed, initial_step=initial_step)
        model.fit(
            dataset,
            epochs=1,
            steps_per_epoch=total_steps - initial_step,
            callbacks=[
                # Before the checkpoint: a run that keeps diverging stops without saving.
                StopOnNonFinite(settings.max_nonfinite_steps, initial_step),
                run_callbacks.MetricWindows(settings.log_frequency, initial_step),
                run_callbacks.ProgressLogger(settings.log_frequency, total_steps, initial_step,
                                             enabled=worker.is_chief),
                # After the logger, so that the step a signal stops at is logged; `fit`'s end saves its checkpoint.
                stop_on_signal,
                run_callbacks.PeriodicCheckpoint(checkpoint, settings.checkpoint_frequency, initial_step, layout),
                *(callbacks or []),
            ],
            verbose=verbose,
            shuffle=False,
        )
    step = checkpoint.last_saved_step
    # The signal as every worker saw it at a step boundary; during the last step, the run still writes its model.
    preempted = stop_on_signal.signum
    if preempted and step < total_steps:
        logger.info(
            "Stopped by %s at step %d of %d; checkpoint %s-%d saved; run again with the same %s to resume",
            signal_name(preempted), step, total_steps, os.path.join(checkpoint.directory, "ckpt"), step,
            name("output_dir"),
        )
        return step, preempted, None
    final_model = checkpoint.save_final_model()
    if final_model:
        logger.info("Wrote %s (step %d)", final_model, step)
    return step, preempted, final_model


def run_squad(
    settings=None,
    *,
    model=None,
    tokenizer=None,
    train_examples=None,
    predict_examples=None,
    callbacks=None,
    verbose="auto",
    **fields,
):
    """Finetunes (or resumes), writes the model and its Hugging Face export, predicts, scores and writes the
    predictions and scores: what `keras-albert squad` does.

    The output directory is a run directory:

    ```
    output_dir/checkpoints/     every checkpoint_frequency steps, at the end, and when a signal stops the run
    output_dir/model.keras      the finetuned SquadModel
    output_dir/huggingface/     its Hugging Face export with the tokenizer (AutoModelForQuestionAnswering)
    output_dir/predictions.json, nbest_predictions.json, null_odds.json (v2.0), scores.json
    output_dir/train.log, settings.json
    ```

    Running again with the same `output_dir` resumes from the latest checkpoint (weights, optimizer, step, dropout
    RNG states, data position); a finished run only predicts again. While training, SIGTERM and SIGINT stop the run
    after the current step with a checkpoint of that step (`preempted` in the result); nothing else is written,
    except `model.keras` when that step was the last one.

    Args:
        settings: `SquadRunSettings` or None (the command's defaults).
        model: a `SquadModel` to finetune in place, or a pretraining model whose encoder a new `SquadModel` copies,
            instead of `load_from`; its own strategy and precision are used (`distribution`, `mixed_precision` are
            not).
        tokenizer: a tokenizer or its directory, instead of `settings.tokenizer`.
        train_examples, predict_examples: lists of `SquadExample`, instead of `train_file`, `predict_file`.
        callbacks: Keras callbacks for the finetuning `fit`.
        verbose: progress display; "auto": a bar on a terminal, one line per epoch otherwise (chief only).
        **fields: `SquadRunSettings` fields replacing those of `settings`.

    Returns:
        dict: `model` (the finetuned `SquadModel`), `predictions` (`SquadPredictions`, None when preempted),
        `total_steps`, `step` (reached), `preempted` (None, or the signal that stopped the run), `output_dir`,
        `final_model` and `huggingface_dir` (paths, None when not written by this worker), `is_chief` (whether this
        worker wrote the files).

    Raises:
        UserInputError: a setting or file is wrong, or the run directory holds a run that these settings would
            optimise differently (unless `allow_changed_settings`).
        RunDiverged: `max_nonfinite_steps` updates in a row were skipped as non-finite, or a weight is not finite
            when a checkpoint or model would be written (nothing is written).
    """
    settings = dataclasses.replace(settings or SquadRunSettings(), **fields)
    check_run_settings(settings, model_given=model is not None)
    output_dir = settings.output_dir or DEFAULT_OUTPUT_DIR
    settings = dataclasses.replace(settings, output_dir=output_dir)
    version = TASK_NAMES[settings.task_name]
    settings = dataclasses.replace(settings, version_2_with_negative=version == "2.0")
    train_examples, _ = _examples(train_examples, settings.train_file, version, "train_file", "train",
                                  settings.tfds_data_dir)
    predict_examples, predict_dataset = _examples(predict_examples, settings.predict_file, version, "predict_file",
                                                  "dev", settings.tfds_data_dir)
    tokenizer = _tokenizer(tokenizer, settings)
    check_squad_tokenizer(tokenizer, settings, model)  # provenance: before anything is written

    from keras_albert import distribute

    # The strategy comes before any TensorFlow op: MultiWorkerMirroredStrategy cannot be created after one.
    strategy = model.distribute_strategy if model is not None else distribute.get_strategy(settings.distribution)
    import keras

    from keras_albert.data import squad
    from keras_albert.models import SquadModel

    worker = distribute.worker_info()
    index, num_workers, _ = strategy_workers(strategy)
    if verbose == "auto":
        # A progress bar on a terminal; one line per epoch in a log file (a bar redrawn there floods it).
        verbose = (1 if sys.stdout.isatty() else 2) if index == 0 else 0
    os.makedirs(output_dir, exist_ok=True)
    with log_to_file(os.path.join(output_dir, LOG_FILE), enabled=index == 0), \
            precision_policy(settings.mixed_precision):
        keras.utils.set_random_seed(settings.seed)
        train_features = squad.convert_examples_to_features(train_examples, tokenizer, is_training=True,
                                                            **settings.window())
        if not train_features:
            raise UserInputError(f"{name('train_file')} {settings.train_file}: no question gave a training feature")
        with strategy.scope():
            model = build_model(
                SquadModel,
                max_seq_length=settings.max_seq_length,
                load_from=settings.load_from,
                model_type=settings.model_type if settings.load_from == "scratch" else None,
                model_size=settings.model_size,
                checkpoint_path=settings.checkpoint_path,
                vocab_size=tokenizer.vocab_size,
                model=model,
            )
        replicas = num_workers * strategy_workers(strategy)[2]
        total_steps = total_steps_of(settings, len(train_features), replicas)
        rows_per_step = settings.per_gpu_batch_size * settings.gradient_accumulation_steps
        print(
            f"SQuAD {version}: {len(train_examples)} training questions ({len(train_features)} features), "
            f"{len(predict_examples)} to predict; {model.model_type} with {model.count_params():,} parameters; "
            f"{total_steps} steps of {rows_per_step * replicas} rows on {replicas} replica(s), {num_workers} worker(s)"
        )
        settings = dataclasses.replace(settings, total_steps=total_steps)
        step, preempted, final_model = _finetune_run(settings, model, strategy, worker, tokenizer, train_features,
                                                     output_dir, callbacks, verbose)
        result = {"model": model, "predictions": None, "total_steps": total_steps, "step": step,
                  "preempted": preempted, "output_dir": output_dir, "final_model": final_model,
                  "huggingface_dir": None, "is_chief": index == 0}
        if preempted:
            return result
        if index == 0:
            result["huggingface_dir"] = export_finetuned_model(model, tokenizer,
                                                               os.path.join(output_dir, HUGGINGFACE_DIR))
            logger.info("Wrote %s (model and tokenizer for transformers)", result["huggingface_dir"])
        result["predictions"] = predict_squad(model, predict_examples, tokenizer, settings, dataset=predict_dataset,
                                              output_dir=output_dir, verbose=verbose)
    return result
