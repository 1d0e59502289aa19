"""SQuAD runs: finetune a `SquadModel`, predict, score with the official rules, write the official files.

`finetune_squad` trains a model on SQuAD features (one optimizer update per step, gradient accumulation inside the
step); `predict_squad` (in `squad_predict.py`) predicts, extracts answers, scores and writes; `run_squad` does what
the `keras-albert squad` command does, from `SquadRunSettings`, and takes a model, a tokenizer and questions from
Python as well. `PeriodicSquad` (periodic SQuAD during pretraining) calls the same two functions with the same
`SquadSettings`.

```python
from keras_albert.training.squad import SquadRunSettings, run_squad

run = run_squad(SquadRunSettings(load_from="checkpoint", checkpoint_path="runs/albert-tiny", max_seq_length=128,
                                 doc_stride=64, per_gpu_batch_size=32, total_steps=400, learning_rate=2e-3))
run["predictions"].scores["f1"]
```
"""

import dataclasses
import math
import os
import sys

from keras_albert.errors import UserInputError
from keras_albert.training.runs import (
    build_model,
    build_optimizer,
    checkpoint_directory,
    precision_policy,
    uses_float16,
)
from keras_albert.training.squad_predict import SquadPredictions, predict_logits, predict_squad, strategy_workers
from keras_albert.training.squad_settings import (
    TASK_NAMES,
    SquadRunSettings,
    SquadSettings,
    check_run_settings,
    squad_settings,
)
from keras_albert.training.validation import name

DEFAULT_OUTPUT_DIR = "squad_output"

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


def training_dataset(features, batch_size, gradient_accumulation_steps=1, strategy=None, seed=None):
    """Shuffled, repeated SQuAD training batches for `strategy`: per replica, `batch_size * accumulation` rows.

    Under a strategy with several replicas, each worker reads its shard (`distribute_datasets_from_function`).
    """
    import tensorflow as tf

    from keras_albert.data.squad import squad_dataset

    from keras_albert import distribute

    strategy = strategy or tf.distribute.get_strategy()
    per_replica = batch_size * gradient_accumulation_steps
    horovod = distribute.horovod_module()
    if horovod is not None and horovod.size() > 1:
        # One replica per rank: each rank reads its shard of the features.
        context = tf.distribute.InputContext(horovod.size(), horovod.rank(), horovod.size())
        return squad_dataset(features, per_replica * horovod.size(), training=True, input_context=context, seed=seed)
    if strategy.num_replicas_in_sync == 1:
        return squad_dataset(features, per_replica, training=True, seed=seed)
    global_batch = per_replica * strategy.num_replicas_in_sync
    return strategy.distribute_datasets_from_function(
        lambda context: squad_dataset(features, global_batch, training=True, input_context=context, seed=seed)
    )


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
    from keras_albert.distribute import resolve_jit_compile

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
    return model.fit(dataset, epochs=1, steps_per_epoch=total_steps, callbacks=callbacks, verbose=verbose,
                     shuffle=False)


# -------------------------------------------------------------------------------------------------- the run


def _examples(given, path, version, field, split):
    """Examples and parsed JSON (None for examples given) of a split: given from Python, a SQuAD file, or the
    embedded Austen questions when `path` is None."""
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
    elif not os.path.isfile(path):
        raise UserInputError(f"{name(field)} {path}: no such file")
    try:
        examples = squad.read_squad(path, version=version)
        dataset = squad.load_json(path)
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
    """Finetunes, predicts, scores and writes the predictions and scores: what `keras-albert squad` does.

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
        dict: `model` (the finetuned `SquadModel`), `predictions` (`SquadPredictions`), `total_steps`,
        `output_dir`, `is_chief` (whether this worker wrote the files).
    """
    settings = dataclasses.replace(settings or SquadRunSettings(), **fields)
    check_run_settings(settings, model_given=model is not None)
    output_dir = settings.output_dir or DEFAULT_OUTPUT_DIR
    version = TASK_NAMES[settings.task_name]
    settings = dataclasses.replace(settings, version_2_with_negative=version == "2.0")
    train_examples, _ = _examples(train_examples, settings.train_file, version, "train_file", "train")
    predict_examples, predict_dataset = _examples(predict_examples, settings.predict_file, version, "predict_file",
                                                  "dev")
    tokenizer = _tokenizer(tokenizer, settings)

    from keras_albert import distribute

    # The strategy comes before any TensorFlow op: MultiWorkerMirroredStrategy cannot be created after one.
    strategy = model.distribute_strategy if model is not None else distribute.get_strategy(settings.distribution)
    import keras

    from keras_albert.data import squad
    from keras_albert.models import SquadModel

    index, num_workers, _ = strategy_workers(strategy)
    if verbose == "auto":
        # A progress bar on a terminal; one line per epoch in a log file (a bar redrawn there floods it).
        verbose = (1 if sys.stdout.isatty() else 2) if index == 0 else 0
    with precision_policy(settings.mixed_precision):
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
        finetune_squad(model, train_features, settings, callbacks=callbacks, verbose=verbose)
        predictions = predict_squad(model, predict_examples, tokenizer, settings, dataset=predict_dataset,
                                    output_dir=output_dir, verbose=verbose)
    return {"model": model, "predictions": predictions, "total_steps": total_steps, "output_dir": output_dir,
            "is_chief": index == 0}
