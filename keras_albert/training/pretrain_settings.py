"""The settings of a pretraining run, checked and completed from the data before TensorFlow starts.

`PretrainSettings` has one field per flag of `keras-albert pretrain` (same names, same defaults); `resolve_settings`
checks them and fills what defaults to the data: the sequence lengths and the tokenizer from the `summary.json` that
`create-pretraining-data` wrote beside the records (read once, here, through `keras_albert.data.summary`), the
vocabulary size from the tokenizer. It reads only files: no TensorFlow op runs, so the command can still create a
`MultiWorkerMirroredStrategy` afterwards. Its messages name settings as the caller spells them (see
`keras_albert.training.validation`).
"""

import dataclasses
import glob
import logging
import os

from keras_albert.errors import UserInputError
from keras_albert.training.choices import JIT_COMPILE, LOAD_FROM, MODEL_SIZES, MODEL_TYPES, OPTIMIZERS, PRECISIONS
from keras_albert.training.runs import resolve_precision
from keras_albert.training.validation import (
    check_choice,
    check_integer,
    check_max_seq_length,
    check_number,
    check_warmup_steps,
    name,
)

logger = logging.getLogger("keras_albert")

DEFAULT_MAX_SEQ_LENGTH = 512
DEFAULT_MAX_PREDICTIONS = 20


@dataclasses.dataclass
class PretrainSettings:
    """The settings of a pretraining run: one field per flag of `keras-albert pretrain` (see `--help`).

    `train_files` is a glob, a file, or a list of them; it may be None when `pretrain` is given a dataset.
    """

    train_files: str = None
    output_dir: str = None
    model_type: str = "albert"
    model_size: str = "base"
    load_from: str = "scratch"
    checkpoint_path: str = None
    tokenizer: str = None
    vocab_size: int = None
    hidden_dropout_prob: float = None
    per_gpu_batch_size: int = 32
    gradient_accumulation_steps: int = 1
    max_seq_length: int = None
    max_predictions_per_seq: int = None
    dynamic_masking: bool = False
    shuffle: bool = True
    optimizer: str = "lamb"
    learning_rate: float = 0.00176
    end_learning_rate: float = 3e-5
    learning_rate_decay_power: float = 1.0
    warmup_steps: int = 3125
    total_steps: int = 125000
    weight_decay: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    skip_mlm: bool = False
    skip_sop: bool = False
    mixed_precision: str = "none"  # or "auto": bf16 where the device computes it fast (runs.device_precision)
    jit_compile: str = "auto"
    steps_per_execution: int = 1
    distribution: str = "auto"
    seed: int = 42
    log_frequency: int = 100
    checkpoint_frequency: int = 5000
    keep_checkpoints: int = 3
    max_nonfinite_steps: int = 10
    allow_changed_settings: bool = False
    squad_frequency: int = 0
    squad_train_file: str = None
    squad_predict_file: str = None
    squad_steps: int = 300
    squad_learning_rate: float = 5e-5
    squad_batch_size: int = 32
    squad_max_seq_length: int = None
    val_files: str = None
    validation_frequency: int = 2000
    max_validation_steps: int = 100
    run_name: str = None
    quiet: bool = False


def _check_choices(s, model):
    from keras_albert.distribute import DISTRIBUTIONS

    choices = [("optimizer", OPTIMIZERS), ("mixed_precision", (*PRECISIONS, "auto")), ("jit_compile", JIT_COMPILE),
               ("distribution", DISTRIBUTIONS)]
    if model is None:
        choices = [("model_type", MODEL_TYPES), ("model_size", MODEL_SIZES), ("load_from", LOAD_FROM)] + choices
    for field, values in choices:
        check_choice(s, field, values)


def _check_optimization(s):
    for field in ("per_gpu_batch_size", "gradient_accumulation_steps", "total_steps", "log_frequency",
                  "checkpoint_frequency", "keep_checkpoints", "steps_per_execution", "max_nonfinite_steps"):
        check_integer(s, field)
    check_warmup_steps(s)
    check_integer(s, "squad_frequency", minimum=0)
    for field in ("log_frequency", "checkpoint_frequency", "total_steps"):
        if getattr(s, field) % s.steps_per_execution:
            raise UserInputError(f"{name(field)} ({getattr(s, field)}) must be a multiple of "
                                 f"{name('steps_per_execution')} ({s.steps_per_execution})")
    check_number(s, "learning_rate", 0, exclusive=True)
    check_number(s, "end_learning_rate", 0)
    check_number(s, "learning_rate_decay_power", 0, exclusive=True)
    check_number(s, "weight_decay", 0)
    check_number(s, "max_grad_norm", 0, optional=True, note=" (0 turns clipping off)")
    if s.hidden_dropout_prob is not None and not 0 <= s.hidden_dropout_prob < 1:
        raise UserInputError(f"{name('hidden_dropout_prob')} must be in [0, 1). Received: {s.hidden_dropout_prob!r}")
    if s.skip_mlm and s.skip_sop:
        raise UserInputError(f"{name('skip_mlm')} and {name('skip_sop')} cannot both be set: there would be nothing "
                             "to train")


def _check_model_source(s, model):
    if model is not None:
        from keras_albert.models import PretrainingModel

        if not isinstance(model, PretrainingModel):
            raise UserInputError(f"model: expected a PretrainingModel. Received: {type(model).__name__}")
        if s.load_from != "scratch" or s.checkpoint_path:
            raise UserInputError(f"{name('load_from')}/{name('checkpoint_path')}: a model is given; it is the run's "
                                 "model")
        # The model given is the run's model: record what it is instead of the preset fields.
        s.model_type, s.model_size, s.load_from = model.model_type, None, None
        s.vocab_size, s.hidden_dropout_prob = model.backbone.vocabulary_size, None
        s.skip_mlm, s.skip_sop = model.skip_mlm, model.skip_sop
        policies = {policy: precision for precision, policy in PRECISIONS.items()}
        s.mixed_precision = policies.get(model.backbone.dtype_policy.name, s.mixed_precision)
        return
    if s.load_from != "scratch" and not s.checkpoint_path:
        raise UserInputError(f"{name('load_from')}={s.load_from} needs {name('checkpoint_path')}")
    path = s.checkpoint_path
    if path and not os.path.exists(path) and not os.path.exists(path + ".index"):
        raise UserInputError(f"{name('checkpoint_path')}: {path} does not exist")
    if s.load_from == "huggingface" and not os.path.isdir(path):
        raise UserInputError(f"{name('checkpoint_path')}: {path} must be a Hugging Face checkpoint directory")
    if s.model_type == "bert" and s.model_size in ("xlarge", "xxlarge"):
        raise UserInputError(f"{name('model_size')}={s.model_size} does not exist for {name('model_type')}=bert")


def _match_files(patterns, field="train_files"):
    """The local files that the patterns (a glob, a file, or a list of them) match; URLs (gs://, s3://) as given,
    for the reader to glob."""
    files = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if "://" in pattern:
            files.append(pattern)
            continue
        matches = sorted(path for path in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(path))
        if not matches:
            raise UserInputError(f"{name(field)}: no file matches {pattern!r}")
        files.extend(matches)
    return files


def _records(s):
    """The records' summary (`DataSummary`) and where it was read, after checking `train_files`."""
    from keras_albert.data.summary import DataSummary, read_records_summary

    if not s.train_files:
        raise UserInputError(f"{name('train_files')} is required (a glob of pretraining TFRecords)")
    if not isinstance(s.train_files, str):
        s.train_files = list(s.train_files)
        if len(s.train_files) == 1:
            s.train_files = s.train_files[0]
    files = _match_files(s.train_files)
    data_dir = os.path.dirname(files[0])
    if "://" in files[0]:
        return DataSummary(), f"the records under {data_dir}"
    return read_records_summary(files), f"the records under {data_dir}"


def _dataset_shapes(dataset):
    """(sequence length, masked positions) of a dataset's batches, where its element spec says them."""
    spec = getattr(dataset, "element_spec", None)
    if not isinstance(spec, dict):
        return None, None
    lengths = []
    for feature in ("input_ids", "masked_lm_positions"):
        shape = getattr(spec.get(feature), "shape", None)
        lengths.append(shape[-1] if shape is not None and shape.rank else None)
    return tuple(lengths)


def _fill_lengths(s, recorded, source):
    """`max_seq_length` and `max_predictions_per_seq`: given, or as the data was written, else the defaults; checked
    once, here."""
    for field, known, default in (("max_seq_length", recorded[0], DEFAULT_MAX_SEQ_LENGTH),
                                  ("max_predictions_per_seq", recorded[1], DEFAULT_MAX_PREDICTIONS)):
        value = getattr(s, field)
        if value is not None and known is not None and value != known:
            raise UserInputError(f"{name(field)}={value} but {source} were written with {known}")
        setattr(s, field, value if value is not None else known if known is not None else default)
    check_max_seq_length(s)
    check_integer(s, "max_predictions_per_seq")


def _fill_tokenizer(s, summary):
    if s.tokenizer is not None and not os.path.exists(s.tokenizer):
        raise UserInputError(f"{name('tokenizer')}: {s.tokenizer} does not exist")
    if s.tokenizer is None and summary.tokenizer is not None:
        if os.path.exists(summary.tokenizer):
            s.tokenizer = summary.tokenizer
        else:
            logger.warning("%s names the tokenizer %s, which does not exist here", summary.path, summary.tokenizer)
    if s.vocab_size is None:
        s.vocab_size = summary.vocab_size
    if s.vocab_size is None and s.tokenizer is not None and s.load_from != "huggingface":
        from keras_albert.data import load_tokenizer

        try:
            s.vocab_size = load_tokenizer(s.tokenizer).vocab_size
        except UserInputError as error:
            raise UserInputError(f"{name('tokenizer')}: {error}") from None
    check_integer(s, "vocab_size", minimum=5, optional=True)


def _check_squad(s):
    if s.tokenizer is None:
        raise UserInputError(f"{name('squad_frequency')} needs {name('tokenizer')} (to turn SQuAD questions into "
                             "features)")
    for field in ("squad_train_file", "squad_predict_file"):
        path = getattr(s, field)  # a tfds: SQuAD split (TensorFlow Datasets) is checked when read
        if path is not None and not str(path).startswith("tfds:") and not os.path.isfile(path):
            raise UserInputError(f"{name(field)}: {path} does not exist")
    check_integer(s, "squad_steps")
    check_integer(s, "squad_batch_size")
    if s.squad_max_seq_length is None:
        s.squad_max_seq_length = min(384, s.max_seq_length)
    check_max_seq_length(s, "squad_max_seq_length")


def _check_validation(s):
    """`val_files` (held-out records of the training records' shapes) and the validation schedule."""
    from keras_albert.data.summary import read_data_summary

    check_integer(s, "validation_frequency")
    check_integer(s, "max_validation_steps")
    # Keras' evaluate runs whole executions: 3 steps at steps_per_execution 2 would read 4 batches.
    for field in ("validation_frequency", "max_validation_steps"):
        if getattr(s, field) % s.steps_per_execution:
            raise UserInputError(f"{name(field)} ({getattr(s, field)}) must be a multiple of "
                                 f"{name('steps_per_execution')} ({s.steps_per_execution})")
    if not isinstance(s.val_files, str):
        s.val_files = list(s.val_files)
        if len(s.val_files) == 1:
            s.val_files = s.val_files[0]
    files = _match_files(s.val_files, "val_files")
    if "://" not in files[0]:
        summary = read_data_summary(os.path.dirname(files[0]))
        for field, known in (("max_seq_length", summary.max_seq_length),
                             ("max_predictions_per_seq", summary.max_predictions_per_seq)):
            if known is not None and known != getattr(s, field):
                raise UserInputError(f"{name('val_files')}: the records under {os.path.dirname(files[0])} were "
                                     f"written with {name(field)}={known}, the training records with "
                                     f"{getattr(s, field)}")


def resolve_settings(settings, *, model=None, dataset=None):
    """Checks `settings` and fills the values that default to the data (sequence lengths, tokenizer, vocabulary).

    Args:
        settings: `PretrainSettings`.
        model: the `PretrainingModel` given to `pretrain`, or None. Its model type and vocabulary are recorded in
            place of the preset fields, which it replaces.
        dataset: the dataset given to `pretrain`, or None (then `train_files` is read). The sequence lengths are
            read from its element spec where it states them.

    Returns:
        A new `PretrainSettings`. Reads only files: no TensorFlow op runs here.
    """
    s = dataclasses.replace(settings)
    _check_choices(s, model)
    s.mixed_precision = resolve_precision(s.mixed_precision)  # recorded as what the run computes in
    _check_optimization(s)
    _check_model_source(s, model)
    if s.run_name is None:
        s.run_name = f"{s.model_type}-{s.model_size or 'model'}"
    if not s.output_dir:
        s.output_dir = os.path.join("runs", s.run_name)
    if os.path.exists(s.output_dir) and not os.path.isdir(s.output_dir):
        raise UserInputError(f"{name('output_dir')}: {s.output_dir} exists and is not a directory")

    from keras_albert.data.summary import DataSummary

    if dataset is None:
        summary, source = _records(s)
        source += f" ({os.path.basename(summary.path)})" if summary.path else ""
        recorded = summary.max_seq_length, summary.max_predictions_per_seq
    else:
        if s.train_files:
            raise UserInputError(f"{name('train_files')}: a dataset is given; it is the run's data")
        if s.dynamic_masking:
            raise UserInputError(f"{name('dynamic_masking')} masks records read from {name('train_files')}, not a "
                                 "dataset given")
        summary, source, recorded = DataSummary(), "the dataset given", _dataset_shapes(dataset)
    _fill_lengths(s, recorded, source)
    if summary.model_type and summary.model_type != s.model_type:
        logger.warning("the records were written for %s (%s labels) and train a %s model", summary.model_type,
                       "sentence-order" if summary.model_type == "albert" else "next-sentence", s.model_type)
    _fill_tokenizer(s, summary)
    from keras_albert.training.provenance import check_pretraining_tokenizer

    check_pretraining_tokenizer(s, summary, model, given=settings.tokenizer is not None)
    if s.dynamic_masking and s.tokenizer is None:
        raise UserInputError(f"{name('dynamic_masking')} needs {name('tokenizer')} (for the [MASK] id and the "
                             "vocabulary)")
    if s.squad_frequency:
        _check_squad(s)
    if s.val_files:
        _check_validation(s)
    return s
