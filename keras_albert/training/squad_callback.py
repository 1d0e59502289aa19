"""Periodic SQuAD during pretraining: finetune a copy of the current encoder, score it, log F1 and EM."""

import contextlib
import dataclasses
import logging
import os
import random
import time

import keras
import numpy as np

from keras_albert.errors import UserInputError
from keras_albert.training.callbacks import scalar_metadata
from keras_albert.training.squad_settings import squad_settings

logger = logging.getLogger("keras_albert")

_GLOBAL_SEED_GENERATOR = "global_seed_generator"  # keras.src.random.seed_generator.GLOBAL_SEED_GENERATOR
SUMMARY_KEYS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1")


@contextlib.contextmanager
def preserved_random_state():
    """Restores Python's, NumPy's and Keras' global random states on exit.

    Building a model draws from them (Keras' default seeds come from Python's `random`; unseeded initializers from
    Keras' global seed generator), so work done inside leaves the random streams of the surrounding program as if it
    had not run.
    """
    from keras.src.backend.common import global_state

    python_state = random.getstate()
    numpy_state = np.random.get_state()
    generator = global_state.get_global_attribute(_GLOBAL_SEED_GENERATOR)
    generator_state = None if generator is None else np.array(generator.state.numpy())
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if generator is None:
            global_state.set_global_attribute(_GLOBAL_SEED_GENERATOR, None)
        else:
            global_state.set_global_attribute(_GLOBAL_SEED_GENERATOR, generator)
            generator.state.assign(generator_state)


def _read_examples(examples, flag):
    from keras_albert.data import squad

    if isinstance(examples, (str, os.PathLike)):
        return squad.read_squad(examples), squad.load_json(examples)
    examples = list(examples)
    if not examples:
        raise UserInputError(f"PeriodicSquad: `{flag}` holds no questions")
    return examples, None


class PeriodicSquad(keras.callbacks.Callback):
    """Every `every_n_steps` optimizer steps of pretraining, finetunes a copy of the encoder on SQuAD and scores it.

    The reference's `--squad_frequency`: a view of how useful the encoder is becoming, while it trains. The copy
    (`SquadModel.from_pretraining`) shares no variable with the pretraining model; it is finetuned for
    `finetune_steps` updates with its own optimizer and explicit seeds, under Python/NumPy/Keras random states that
    are restored afterwards, so the pretraining model's weights, optimizer state and random streams are exactly
    those of a run without this callback. F1 and exact match go to TensorBoard (`log_dir`, tags `squad/f1`,
    `squad/exact`, ...), to the logs of the step (`squad_f1`, `squad_exact`), to `self.history` and to the log.

    Under `MultiWorkerMirroredStrategy` every worker runs it at the same step (the step counter is synchronised):
    finetuning is distributed as pretraining is, prediction is split over the workers and gathered by one
    all-reduce that all of them enter (see `keras_albert.training.squad`); only the chief writes TensorBoard.

    Args:
        every_n_steps: int. Run after every this many optimizer steps (counted by the optimizer's `iterations`).
        tokenizer: the pretraining tokenizer (a `keras_albert.data.tokenizers.Tokenizer` or its directory).
        train_examples: list of `SquadExample`, or a SQuAD JSON path. Questions to finetune on.
        eval_examples: list of `SquadExample`, or a SQuAD JSON path. Questions to score.
        finetune_steps: int. Finetuning updates per run.
        settings: `keras_albert.training.squad_settings.SquadSettings` or None. Feature windows, finetuning
            optimisation and answer extraction, as for `finetune_squad` and `predict_squad`;
            `version_2_with_negative` None means whether any eval question is impossible.
        log_dir: str or None. TensorBoard directory (written by the chief).
        verbose: int. 1 prints a line per run and shows finetuning progress; 0 logs the line only.
        **fields: `SquadSettings` fields replacing those of `settings` (e.g. `learning_rate=1e-3`).

    Example:
    ```python
    import keras_albert
    from keras_albert.data import load_tokenizer, squad
    from keras_albert.training.squad_callback import PeriodicSquad

    tokenizer = load_tokenizer("tokenizer/")
    callback = PeriodicSquad(
        1000, tokenizer, squad.austen_squad_path("train"), squad.austen_squad_path("dev"), finetune_steps=300,
        learning_rate=1e-3, max_seq_length=192, doc_stride=64, max_query_length=48, log_dir="runs/tb")
    pretraining_model.fit(pretraining_data, steps_per_epoch=10000, callbacks=[callback])
    callback.history[-1]["f1"]
    ```
    """

    def __init__(
        self,
        every_n_steps,
        tokenizer,
        train_examples,
        eval_examples,
        finetune_steps,
        settings=None,
        *,
        log_dir=None,
        verbose=0,
        **fields,
    ):
        super().__init__()
        from keras_albert.data.tokenizers import load_tokenizer

        for field, value in (("every_n_steps", every_n_steps), ("finetune_steps", finetune_steps)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise UserInputError(f"PeriodicSquad: `{field}` must be an integer >= 1. Received: {value!r}")
        self.every_n_steps = int(every_n_steps)
        self.tokenizer = load_tokenizer(tokenizer)
        self.train_examples, _ = _read_examples(train_examples, "train_examples")
        self.eval_examples, self.eval_dataset = _read_examples(eval_examples, "eval_examples")
        self.settings = squad_settings(settings, total_steps=int(finetune_steps), **fields)
        if self.settings.version_2_with_negative is None:
            version_2 = any(example.is_impossible for example in self.eval_examples)
            self.settings = dataclasses.replace(self.settings, version_2_with_negative=version_2)
        self.log_dir = log_dir
        self.verbose = verbose
        self.history = []
        self._features = None
        self._writer = None
        self._last_step = None

    def _get_features(self):
        if self._features is None:
            from keras_albert.data import squad

            window = self.settings.window()
            train = squad.convert_examples_to_features(self.train_examples, self.tokenizer, is_training=True, **window)
            evaluation = squad.convert_examples_to_features(
                self.eval_examples, self.tokenizer, is_training=False, **window
            )
            self._features = train, evaluation
        return self._features

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs=None):
        self._last_step = self._step()

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        last = self._last_step if self._last_step is not None else step
        self._last_step = step
        if step // self.every_n_steps <= last // self.every_n_steps:
            return
        scores = self.run(step)
        if logs is not None:
            logs["squad_f1"] = scores["f1"]
            logs["squad_exact"] = scores["exact"]

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def run(self, step=None):
        """Finetunes a copy of the current encoder, predicts, scores and logs now. Returns the scores dict."""
        from keras_albert.models import SquadModel
        from keras_albert.training.squad import finetune_squad, predict_squad, strategy_workers

        step = self._step() if step is None else step
        started = time.time()
        train_features, eval_features = self._get_features()
        strategy = self.model.distribute_strategy
        with preserved_random_state():
            with strategy.scope():
                squad_model = SquadModel.from_pretraining(self.model)
            finetune_squad(squad_model, train_features, self.settings, verbose=self.verbose)
            result = predict_squad(squad_model, self.eval_examples, settings=self.settings, features=eval_features,
                                   dataset=self.eval_dataset, verbose=0)
            del squad_model
        scores = result.scores
        self.history.append({"step": step, **scores})
        is_chief = strategy_workers(strategy)[0] == 0
        if self.log_dir and is_chief:
            self._write_summaries(step, scores)
        line = (
            f"step {step}: SQuAD F1 {scores['f1']:.2f}, exact {scores['exact']:.2f} "
            f"({len(self.eval_examples)} questions, {self.settings.total_steps} finetuning steps, "
            f"{time.time() - started:.0f}s)"
        )
        logger.info(line)
        if self.verbose and is_chief:
            print(line)
        return scores

    def _write_summaries(self, step, scores):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default():
            for key in SUMMARY_KEYS:
                if key in scores:
                    tf.summary.write(
                        f"squad/{key}", tf.constant(scores[key], tf.float32), step=step, metadata=scalar_metadata()
                    )
        self._writer.flush()

