"""The settings of SQuAD finetuning and prediction, for the `squad` command, the SQuAD functions and periodic SQuAD.

`SquadSettings` holds what `finetune_squad`, `predict_squad` and `PeriodicSquad` share: the feature windows, the
finetuning optimisation, the answer extraction. `SquadRunSettings` adds what the `keras-albert squad` command also
decides: the task, where the model and the tokenizer come from, the files, the output directory, the distribution
and the precision. Field names are the command's flags. The checks read only files (no TensorFlow op runs), so the
command runs them before it creates the strategy; their messages name settings as the caller spells them (see
`keras_albert.training.validation`).
"""

import dataclasses
import os

from keras_albert.errors import UserInputError
from keras_albert.training.choices import JIT_COMPILE, LOAD_FROM, MODEL_SIZES, MODEL_TYPES, OPTIMIZERS, PRECISIONS
from keras_albert.training.validation import (
    check_choice,
    check_integer,
    check_max_seq_length,
    check_number,
    check_warmup_steps,
    name,
)

TASK_NAMES = {"squadv1": "1.1", "squadv2": "2.0"}


@dataclasses.dataclass
class SquadSettings:
    """How SQuAD features are cut, a model finetuned and answers extracted.

    Args:
        max_seq_length, doc_stride, max_query_length: int. Feature windows: tokens per feature, tokens between the
            starts of a long context's windows, longest question.
        per_gpu_batch_size: int. Finetuning rows per replica per micro-batch; an update sees
            `per_gpu_batch_size * gradient_accumulation_steps * replicas` rows.
        gradient_accumulation_steps: int. Micro-batches per optimizer update.
        total_steps: int or None. Optimizer updates; None: two passes over the training features.
        warmup_steps: int or None. Linear warmup; None: the first 10% of the steps.
        learning_rate: float. Peak learning rate (linear warmup, linear decay).
        optimizer: `"adamw"`, `"lamb"`, or (from Python) a Keras optimizer used as given.
        weight_decay: float. Decoupled weight decay (LayerNorm weights and biases excluded).
        max_grad_norm: float or None. Global gradient-norm clipping after the cross-replica reduction; 0 or None:
            none.
        seed: int or None. Shuffle seed of the finetuning data.
        predict_batch_size: int. Prediction batch size per worker.
        n_best_size, max_answer_length, null_score_diff_threshold: answer extraction (see `extract_answers`).
        version_2_with_negative: bool or None. SQuAD v2.0 (no-answer) rules; None: whether any question to predict
            is impossible.
    """

    max_seq_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    per_gpu_batch_size: int = 6
    gradient_accumulation_steps: int = 1
    total_steps: int = None
    warmup_steps: int = None
    learning_rate: float = 3e-5
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 42
    predict_batch_size: int = 64
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    version_2_with_negative: bool = None

    def window(self):
        """The feature-window arguments of `convert_examples_to_features`."""
        return {
            "max_seq_length": self.max_seq_length,
            "doc_stride": self.doc_stride,
            "max_query_length": self.max_query_length,
        }


@dataclasses.dataclass
class SquadRunSettings(SquadSettings):
    """The settings of a whole SQuAD run, one field per flag of `keras-albert squad` (see `--help`).

    Args:
        task_name: `"squadv1"` or `"squadv2"`: the SQuAD rules.
        load_from: `"scratch"` (a preset: `model_type`, `model_size`), `"checkpoint"` (a pretraining `.keras` model,
            checkpoint or run directory) or `"huggingface"` (a Hugging Face checkpoint directory).
        checkpoint_path, model_type, model_size: what `load_from` builds.
        tokenizer: str or None. Tokenizer directory; None: the one beside the checkpoint.
        train_file, predict_file: str or None. SQuAD JSON, or a prepared TensorFlow Datasets split
            (`tfds:squad/v2.0[:SPLIT]`); None: the embedded Jane Austen questions (v2.0).
        tfds_data_dir: str or None. Where `tfds:` splits are prepared; None: `TFDS_DATA_DIR`, else TFDS's own.
        output_dir: str or None. The run directory: checkpoints, `model.keras`, its Hugging Face export
            (`huggingface/`, with the tokenizer), predictions and scores; None: `squad_output`. A rerun with the
            same directory resumes from its latest checkpoint.
        distribution: tf.distribute strategy (see `keras_albert.distribute.get_strategy`).
        mixed_precision: `"none"`, `"bf16"` or `"fp16"`.
        jit_compile: `"auto"`, `"true"` or `"false"`: XLA for the train step (auto: where the strategy allows,
            except for float32 without a GPU).
        checkpoint_frequency: int. Optimizer steps between checkpoints (one is also saved at the end of training
            and when a signal stops it).
        keep_checkpoints: int. Checkpoints kept in `output_dir/checkpoints`.
        log_frequency: int. Steps between log lines (stderr and `output_dir/train.log`).
        max_nonfinite_steps: int. Updates in a row skipped for a non-finite loss or gradients that stop the run.
        allow_changed_settings: bool. Resume even though optimisation settings changed since the run started.
        The other fields: see `SquadSettings`.
    """

    task_name: str = "squadv2"
    load_from: str = "scratch"
    checkpoint_path: str = None
    model_type: str = "albert"
    model_size: str = "base"
    tokenizer: str = None
    train_file: str = None
    predict_file: str = None
    tfds_data_dir: str = None
    output_dir: str = None
    distribution: str = "auto"
    mixed_precision: str = "none"
    jit_compile: str = "auto"
    checkpoint_frequency: int = 1000
    keep_checkpoints: int = 3
    log_frequency: int = 100
    max_nonfinite_steps: int = 10
    allow_changed_settings: bool = False


def check_squad_settings(s):
    """Checks the fields of a `SquadSettings`."""
    for field in ("per_gpu_batch_size", "gradient_accumulation_steps", "doc_stride", "max_query_length",
                  "predict_batch_size", "n_best_size", "max_answer_length"):
        check_integer(s, field)
    check_integer(s, "total_steps", optional=True)
    check_warmup_steps(s, optional=True)
    check_max_seq_length(s)
    if s.max_seq_length - s.max_query_length - 3 < 1:
        raise UserInputError(
            f"{name('max_seq_length')} ({s.max_seq_length}) must leave room for {name('max_query_length')} "
            f"({s.max_query_length}) question tokens, 3 special tokens and context"
        )
    check_number(s, "learning_rate", 0, exclusive=True)
    check_number(s, "weight_decay", 0)
    check_number(s, "max_grad_norm", 0, optional=True)
    if isinstance(s.optimizer, str):
        check_choice(s, "optimizer", OPTIMIZERS)
    if s.seed is not None:
        check_integer(s, "seed", minimum=0)


def squad_settings(settings=None, **fields):
    """`settings` (default: `SquadSettings()`) with `fields` replaced, checked."""
    if settings is None:
        settings = SquadSettings()
    if not isinstance(settings, SquadSettings):
        raise TypeError(f"`settings` must be a SquadSettings (total_steps and the others are keywords). "
                        f"Received: {settings!r}")
    known = {field.name for field in dataclasses.fields(settings)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(f"unknown SQuAD setting(s) {unknown}; the settings are {', '.join(sorted(known))}")
    settings = dataclasses.replace(settings, **fields)
    check_squad_settings(settings)
    return settings


def _check_checkpoint_kind(s):
    """Refuses a `checkpoint_path` of the wrong kind before anything heavy runs."""
    if s.load_from == "scratch":
        if s.checkpoint_path:
            raise UserInputError(f"{name('checkpoint_path')} is only read with {name('load_from')} checkpoint or "
                                 "huggingface")
        return
    path = s.checkpoint_path
    if not path:
        raise UserInputError(f"{name('checkpoint_path')} is required with {name('load_from')} {s.load_from}")
    if not os.path.exists(path) and not os.path.isfile(path + ".index"):
        raise UserInputError(f"{name('checkpoint_path')} {path}: no such file or directory")
    is_hf = os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))
    if s.load_from == "huggingface" and not is_hf:
        raise UserInputError(
            f"{name('checkpoint_path')} {path}: not a Hugging Face directory (no config.json); use "
            f"{name('load_from')} checkpoint for a .keras model or a pretraining checkpoint"
        )
    if s.load_from == "checkpoint" and is_hf:
        raise UserInputError(
            f"{name('checkpoint_path')} {path}: a Hugging Face directory; use {name('load_from')} huggingface"
        )
    if s.load_from == "checkpoint" and os.path.isfile(path) and not path.endswith(".keras"):
        raise UserInputError(
            f"{name('checkpoint_path')} {path}: not a .keras model, a checkpoint prefix (ckpt-N), a checkpoints "
            "directory or a run directory"
        )


def check_run_settings(s, model_given=False):
    """Checks a `SquadRunSettings`; with a model given from Python, where a model comes from is not read."""
    from keras_albert.distribute import DISTRIBUTIONS

    for field, choices in (("task_name", tuple(TASK_NAMES)), ("distribution", DISTRIBUTIONS),
                           ("mixed_precision", tuple(PRECISIONS)), ("jit_compile", JIT_COMPILE)):
        check_choice(s, field, choices)
    for field in ("checkpoint_frequency", "keep_checkpoints", "log_frequency", "max_nonfinite_steps"):
        check_integer(s, field)
    if s.output_dir and os.path.exists(s.output_dir) and not os.path.isdir(s.output_dir):
        raise UserInputError(f"{name('output_dir')} {s.output_dir}: exists and is not a directory")
    if not model_given:
        for field, choices in (("load_from", LOAD_FROM), ("model_type", MODEL_TYPES), ("model_size", MODEL_SIZES)):
            check_choice(s, field, choices)
    check_squad_settings(s)
    if not model_given:
        _check_checkpoint_kind(s)
