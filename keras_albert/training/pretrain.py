"""Pretrain ALBERT or BERT on TFRecords: the `keras-albert pretrain` command and the `pretrain(settings)` function.

The flags keep the 2020 reference's names (`--model_type`, `--model_size`, `--per_gpu_batch_size`,
`--gradient_accumulation_steps`, `--learning_rate`, `--total_steps`, ...). A run lives in `--output_dir`:

```
output_dir/checkpoints/   checkpoints every --checkpoint_frequency steps and at the end (see training/checkpoints.py)
output_dir/tensorboard/   TensorBoard scalars every --log_frequency steps
output_dir/model.keras    the final model, for `SquadModel.from_pretraining` and `keras-albert export`
output_dir/train.log      the log lines
output_dir/settings.json  the settings of the latest start
output_dir/summary.json   the step reached, the last logged values (losses, throughput), the seconds it took
```

Running the same command again with the same `--output_dir` resumes from the latest checkpoint: weights, optimizer
state and step count (so the learning-rate schedule continues), dropout RNG states and the data position (the
input pipeline is skipped by the steps done; with a seeded shuffle the batches are those an uninterrupted run would
have seen, provided files, seed, batch sizes and the number of replicas are unchanged).

Command line (one CPU, the embedded corpus):
    keras-albert train-tokenizer --output tok --model_type albert --vocab_size 5000
    keras-albert create-pretraining-data --tokenizer tok --output_dir data --max_seq_length 128
    keras-albert pretrain --train_files 'data/*.tfrecord' --output_dir runs/tiny --model_size tiny \\
        --per_gpu_batch_size 32 --total_steps 1000 --warmup_steps 100 --learning_rate 1e-3 --log_frequency 50
"""

import argparse
import dataclasses
import glob
import json
import logging
import os
import platform
import sys
import time

from keras_albert.errors import UserInputError

logger = logging.getLogger("keras_albert")

MODEL_TYPES = ("albert", "bert")
MODEL_SIZES = ("tiny", "base", "large", "xlarge", "xxlarge")
LOAD_FROM = ("scratch", "checkpoint", "huggingface")
OPTIMIZERS = ("lamb", "adamw")
MIXED_PRECISION = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
JIT_COMPILE = ("auto", "true", "false")
DEFAULT_MAX_SEQ_LENGTH = 512
DEFAULT_MAX_PREDICTIONS = 20
SETTINGS_FILE = "settings.json"
LOG_FILE = "train.log"
TENSORBOARD_DIR = "tensorboard"
SUMMARY_FILE = "summary.json"


@dataclasses.dataclass
class PretrainSettings:
    """The settings of a pretraining run: one field per flag of `keras-albert pretrain` (see `--help`)."""

    train_files: str  # or a list of files/globs
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
    mixed_precision: str = "none"
    jit_compile: str = "auto"
    steps_per_execution: int = 1
    distribution: str = "auto"
    seed: int = 42
    log_frequency: int = 100
    checkpoint_frequency: int = 5000
    keep_checkpoints: int = 3
    squad_frequency: int = 0
    squad_train_file: str = None
    squad_predict_file: str = None
    squad_steps: int = 300
    squad_learning_rate: float = 5e-5
    squad_batch_size: int = 32
    squad_max_seq_length: int = None
    run_name: str = None
    quiet: bool = False


# ---------------------------------------------------------------------------------------------------------------
# Settings: checked before TensorFlow starts (the strategy must come first, DESIGN trap 12)


def _positive(settings, names):
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"--{name} must be an integer >= 1. Received: {value!r}")


def _match_files(patterns):
    """The local files that the patterns (a glob, a file, or a list of them) match; URLs (gs://, s3://) as given,
    for the reader to glob."""
    files = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if "://" in pattern:
            files.append(pattern)
            continue
        matches = sorted(path for path in glob.glob(os.path.expanduser(pattern)) if os.path.isfile(path))
        if not matches:
            raise UserInputError(f"--train_files: no file matches {pattern!r}")
        files.extend(matches)
    return files


def _read_summary(files):
    """The `summary.json` that `create-pretraining-data` wrote beside the first file, or {}."""
    path = os.path.join(os.path.dirname(files[0]), SUMMARY_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            summary = json.load(file)
    except (OSError, ValueError) as error:
        raise UserInputError(f"{path}: not a readable summary JSON ({error})") from None
    return summary if isinstance(summary, dict) else {}


def _summary_field(summary, name):
    settings = summary.get("settings") if isinstance(summary.get("settings"), dict) else {}
    return summary.get(name, settings.get(name))


def _find_tokenizer(path, data_dir):
    """The tokenizer that summary.json names (as written, or relative to the records), or None."""
    if not path:
        return None
    for candidate in (path, os.path.join(data_dir, path)):
        if os.path.exists(candidate):
            return candidate
    logger.warning("%s names the tokenizer %s, which does not exist here", SUMMARY_FILE, path)
    return None


def resolve_settings(settings):
    """Checks `settings` and fills the values that default to the data (sequence lengths, vocabulary size).

    Returns a new `PretrainSettings`. Reads only files: no TensorFlow op runs here.
    """
    s = dataclasses.replace(settings)
    for name, choices in (
        ("model_type", MODEL_TYPES),
        ("model_size", MODEL_SIZES),
        ("load_from", LOAD_FROM),
        ("optimizer", OPTIMIZERS),
        ("mixed_precision", tuple(MIXED_PRECISION)),
        ("jit_compile", JIT_COMPILE),
    ):
        if getattr(s, name) not in choices:
            raise UserInputError(f"--{name} must be one of {', '.join(choices)}. Received: {getattr(s, name)!r}")
    from keras_albert.distribute import DISTRIBUTIONS

    if s.distribution not in DISTRIBUTIONS:
        raise UserInputError(f"--distribution must be one of {', '.join(DISTRIBUTIONS)}. Received: {s.distribution!r}")
    _positive(s, ("per_gpu_batch_size", "gradient_accumulation_steps", "total_steps", "log_frequency",
                  "checkpoint_frequency", "keep_checkpoints", "steps_per_execution"))
    warmup_ok = isinstance(s.warmup_steps, int) and not isinstance(s.warmup_steps, bool)
    if not warmup_ok or not 0 <= s.warmup_steps <= s.total_steps:
        raise UserInputError(f"--warmup_steps must be an integer from 0 to --total_steps ({s.total_steps}). "
                             f"Received: {s.warmup_steps!r}")
    if not isinstance(s.squad_frequency, int) or s.squad_frequency < 0:
        raise UserInputError(f"--squad_frequency must be an integer >= 0. Received: {s.squad_frequency!r}")
    for name in ("log_frequency", "checkpoint_frequency", "total_steps"):
        if getattr(s, name) % s.steps_per_execution:
            raise UserInputError(
                f"--{name} ({getattr(s, name)}) must be a multiple of --steps_per_execution ({s.steps_per_execution})"
            )
    if not s.learning_rate > 0:
        raise UserInputError(f"--learning_rate must be > 0. Received: {s.learning_rate!r}")
    if s.end_learning_rate < 0 or s.learning_rate_decay_power <= 0:
        raise UserInputError("--end_learning_rate must be >= 0 and --learning_rate_decay_power > 0")
    if s.weight_decay < 0:
        raise UserInputError(f"--weight_decay must be >= 0. Received: {s.weight_decay!r}")
    if s.max_grad_norm is not None and s.max_grad_norm < 0:
        raise UserInputError(f"--max_grad_norm must be >= 0 (0 turns clipping off). Received: {s.max_grad_norm!r}")
    if s.hidden_dropout_prob is not None and not 0 <= s.hidden_dropout_prob < 1:
        raise UserInputError(f"--hidden_dropout_prob must be in [0, 1). Received: {s.hidden_dropout_prob!r}")
    if s.skip_mlm and s.skip_sop:
        raise UserInputError("--skip_mlm and --skip_sop cannot both be set: there would be nothing to train")
    if s.load_from != "scratch" and not s.checkpoint_path:
        raise UserInputError(f"--load_from={s.load_from} needs --checkpoint_path")
    if s.checkpoint_path and not os.path.exists(s.checkpoint_path) and not os.path.exists(s.checkpoint_path + ".index"):
        raise UserInputError(f"--checkpoint_path: {s.checkpoint_path} does not exist")
    if s.load_from == "huggingface" and not os.path.isdir(s.checkpoint_path):
        raise UserInputError(f"--checkpoint_path: {s.checkpoint_path} must be a Hugging Face checkpoint directory")
    if s.model_type == "bert" and s.model_size in ("xlarge", "xxlarge"):
        # Checked here rather than against the presets: importing the models package would import TensorFlow.
        raise UserInputError(f"--model_size={s.model_size} does not exist for --model_type=bert")
    if s.run_name is None:
        s.run_name = f"{s.model_type}-{s.model_size}"
    if not s.output_dir:
        s.output_dir = os.path.join("runs", s.run_name)
    if os.path.exists(s.output_dir) and not os.path.isdir(s.output_dir):
        raise UserInputError(f"--output_dir: {s.output_dir} exists and is not a directory")

    if not s.train_files:
        raise UserInputError("--train_files is required (a glob of pretraining TFRecords)")
    if not isinstance(s.train_files, str):
        s.train_files = list(s.train_files)
        if len(s.train_files) == 1:
            s.train_files = s.train_files[0]
    files = _match_files(s.train_files)
    summary = _read_summary(files) if "://" not in files[0] else {}
    for name, default in (("max_seq_length", DEFAULT_MAX_SEQ_LENGTH),
                          ("max_predictions_per_seq", DEFAULT_MAX_PREDICTIONS)):
        recorded = _summary_field(summary, name)
        value = getattr(s, name)
        if value is not None and recorded is not None and value != recorded:
            raise UserInputError(
                f"--{name}={value} but the records under {os.path.dirname(files[0])} were written with {recorded} "
                f"({SUMMARY_FILE})"
            )
        value = value if value is not None else recorded if recorded is not None else default
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"--{name} must be an integer >= 1. Received: {value!r}")
        setattr(s, name, value)
    data_type = _summary_field(summary, "model_type")
    if data_type and data_type != s.model_type:
        logger.warning("the records were written for %s (%s labels) and train a %s model", data_type,
                       "sentence-order" if data_type == "albert" else "next-sentence", s.model_type)
    if s.tokenizer is not None and not os.path.exists(s.tokenizer):
        raise UserInputError(f"--tokenizer: {s.tokenizer} does not exist")
    if s.tokenizer is None:
        s.tokenizer = _find_tokenizer(_summary_field(summary, "tokenizer"), os.path.dirname(files[0]))
    if s.vocab_size is None:
        s.vocab_size = _summary_field(summary, "vocab_size")
    if s.vocab_size is None and s.tokenizer is not None and s.load_from != "huggingface":
        from keras_albert.data.tokenizers import load_tokenizer

        try:
            s.vocab_size = load_tokenizer(s.tokenizer).vocab_size
        except UserInputError as error:
            raise UserInputError(f"--tokenizer: {error}") from None
    if s.vocab_size is not None and (isinstance(s.vocab_size, bool) or not isinstance(s.vocab_size, int)
                                     or s.vocab_size < 5):
        raise UserInputError(f"--vocab_size must be an integer >= 5. Received: {s.vocab_size!r}")
    if s.dynamic_masking and s.tokenizer is None:
        raise UserInputError("--dynamic_masking needs --tokenizer (for the [MASK] id and the vocabulary)")
    if s.squad_frequency:
        if s.tokenizer is None:
            raise UserInputError("--squad_frequency needs --tokenizer (to turn SQuAD questions into features)")
        for name in ("squad_train_file", "squad_predict_file"):
            if getattr(s, name) is not None and not os.path.isfile(getattr(s, name)):
                raise UserInputError(f"--{name}: {getattr(s, name)} does not exist")
        _positive(s, ("squad_steps", "squad_batch_size"))
        if s.squad_max_seq_length is None:
            s.squad_max_seq_length = min(384, s.max_seq_length)
    return s


# ---------------------------------------------------------------------------------------------------------------
# Building blocks (TensorFlow running, under the strategy's scope)


def preset_name(settings):
    return f"{settings.model_type}_{settings.model_size}"


def build_model(settings):
    """The PretrainingModel of `settings`: a preset (`--load_from scratch|checkpoint`) or a Hugging Face checkpoint."""
    from keras_albert.models.presets import PRESETS
    from keras_albert.models.pretraining_model import PretrainingModel

    if settings.load_from == "huggingface":
        model = PretrainingModel.from_huggingface(settings.checkpoint_path)
        if model.model_type != settings.model_type:
            raise UserInputError(
                f"--checkpoint_path: {settings.checkpoint_path} holds a {model.model_type} model, not "
                f"--model_type={settings.model_type}"
            )
        if model.backbone.max_sequence_length < settings.max_seq_length:
            raise UserInputError(
                f"--max_seq_length={settings.max_seq_length} exceeds the {model.backbone.max_sequence_length} "
                f"positions of {settings.checkpoint_path}"
            )
        model.skip_mlm, model.skip_sop = settings.skip_mlm, settings.skip_sop
        return model
    preset = preset_name(settings)
    overrides = {
        # Never fewer positions than the preset, so that a 128-token phase and a 512-token phase share weights.
        "max_sequence_length": max(PRESETS[preset]["max_sequence_length"], settings.max_seq_length),
    }
    if settings.vocab_size is not None:
        overrides["vocabulary_size"] = settings.vocab_size
    if settings.hidden_dropout_prob is not None:
        overrides["dropout"] = settings.hidden_dropout_prob
    return PretrainingModel.from_preset(preset, skip_mlm=settings.skip_mlm, skip_sop=settings.skip_sop, **overrides)


def build_optimizer(settings):
    """LAMB or AdamW on the reference's warmup + polynomial-decay schedule, loss-scaled for fp16."""
    import keras

    from keras_albert.optimizers import EXCLUDE_FROM_WEIGHT_DECAY, LAMB, AdamW, WarmupPolyDecay

    schedule = WarmupPolyDecay(
        settings.learning_rate,
        warmup_steps=settings.warmup_steps,
        total_steps=settings.total_steps,
        end_learning_rate=settings.end_learning_rate,
        power=settings.learning_rate_decay_power,
    )
    common = dict(
        learning_rate=schedule,
        beta_1=settings.beta_1,
        beta_2=settings.beta_2,
        epsilon=settings.epsilon,
        weight_decay=settings.weight_decay,
        exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY),
    )
    optimizer = LAMB(**common) if settings.optimizer == "lamb" else AdamW(**common)
    if settings.mixed_precision == "fp16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def resolve_jit_compile(setting, strategy):
    """`--jit_compile` as a bool: auto is on wherever XLA can compile the step under `strategy`."""
    from keras_albert.distribute import jit_compile_supported, resolve_jit_compile as resolve

    if setting == "false":
        return False
    if setting == "true" and not jit_compile_supported(strategy):
        raise UserInputError(
            f"--jit_compile=true: XLA has no CPU collective ops for {type(strategy).__name__}; use --jit_compile=auto"
        )
    return resolve(True, strategy)


def data_layout(settings, num_replicas, num_workers):
    """What decides which examples each step sees; a resume with another layout cannot continue exactly."""
    return {
        "train_files": settings.train_files,
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


def make_dataset(settings, strategy, steps_done, horovod=None):
    """The training dataset, positioned after `steps_done` optimizer steps: distributed over the strategy's
    replicas, or, under Horovod, this rank's shard."""
    import tensorflow as tf

    from keras_albert.data.pretraining_dataset import pretraining_dataset

    def dataset_fn(context):
        dataset = pretraining_dataset(
            settings.train_files,
            settings.per_gpu_batch_size,
            settings.max_seq_length,
            settings.max_predictions_per_seq,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            input_context=context,
            shuffle=settings.shuffle,
            repeat=True,
            seed=settings.seed,
            dynamic_masking=settings.dynamic_masking,
            tokenizer=settings.tokenizer if settings.dynamic_masking else None,
        )
        if steps_done:
            # Each step takes one batch per replica from this pipeline (round-robin over its replicas).
            replicas_per_pipeline = context.num_replicas_in_sync // context.num_input_pipelines
            dataset = dataset.skip(steps_done * replicas_per_pipeline)
        return dataset

    if horovod is not None:
        return dataset_fn(tf.distribute.InputContext(horovod.size(), horovod.rank(), horovod.size()))
    return strategy.distribute_datasets_from_function(dataset_fn)


def _workers_agree(strategy, value, horovod=None):
    """True when every worker passes the same integer (an all-reduce of value and value squared)."""
    import tensorflow as tf

    local = tf.constant([float(value), float(value) ** 2, 1.0], tf.float64)
    if horovod is not None:
        total, squares, workers = horovod.grouped_allreduce([local], op=horovod.Sum)[0].numpy()
    else:

        def replica_fn():
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, local / context.num_replicas_in_sync)

        per_replica = strategy.run(replica_fn)
        total, squares, workers = strategy.experimental_local_results(per_replica)[0].numpy()
    return abs(squares * workers - total * total) < 0.5


def _broadcast_from_chief(horovod, variables):
    """Horovod ranks start from rank 0's weights and optimizer state (tf.distribute strategies do this themselves)."""
    for variable in variables:
        variable.assign(horovod.broadcast(variable.value, root_rank=0))


def _squad_callback(settings, worker):
    try:
        from keras_albert.training.squad_callback import PeriodicSquad
    except ImportError:
        raise UserInputError(
            "--squad_frequency needs keras_albert.training.squad_callback (periodic SQuAD finetuning), which is "
            "not available in this installation; set --squad_frequency=0"
        ) from None
    from keras_albert.data import squad

    length = settings.squad_max_seq_length
    return PeriodicSquad(
        settings.squad_frequency,
        settings.tokenizer,
        settings.squad_train_file or squad.austen_squad_path("train"),
        settings.squad_predict_file or squad.austen_squad_path("dev"),
        settings.squad_steps,
        batch_size=settings.squad_batch_size,
        learning_rate=settings.squad_learning_rate,
        max_seq_length=length,
        doc_stride=max(1, length // 3),
        max_query_length=min(64, max(1, length // 4)),
        seed=settings.seed,
        log_dir=os.path.join(settings.output_dir, TENSORBOARD_DIR) if worker.is_chief else None,
    )


def copy_tokenizer(tokenizer, directory):
    """Copies the tokenizer's files (a directory's files, or one file) into `directory`, each written under a
    temporary name and renamed; files already there are kept."""
    from keras_albert.training.checkpoints import write_atomically

    if tokenizer is None:
        return []
    if os.path.isdir(tokenizer):
        sources = [os.path.join(tokenizer, name) for name in sorted(os.listdir(tokenizer))]
    else:
        sources = [tokenizer]
    copied = []
    for source in sources:
        target = os.path.join(directory, os.path.basename(source))
        if not os.path.isfile(source) or os.path.basename(source).startswith("."):
            continue
        if os.path.exists(target):
            continue
        with open(source, "rb") as file:
            write_atomically(target, file.read())
        copied.append(target)
    return copied


def _add_file_log(path):
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    return handler


def _log_changed_settings(settings):
    """One line naming the settings that differ from the previous start of this run."""
    try:
        with open(os.path.join(settings.output_dir, SETTINGS_FILE), encoding="utf-8") as file:
            previous = json.load(file).get("settings", {})
    except (OSError, ValueError, AttributeError):
        return
    current = dataclasses.asdict(settings)
    changed = [f"{key} {previous[key]!r} -> {current[key]!r}" for key in current
               if key in previous and previous[key] != current[key] and key != "quiet"]
    if changed:
        logger.info("Settings changed since the previous start: %s", ", ".join(changed))


def _write_settings(settings, replicas, strategy, worker, jit_compile):
    from keras_albert.training.checkpoints import write_atomically
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
    write_atomically(os.path.join(settings.output_dir, SETTINGS_FILE), json.dumps(record, indent=2).encode() + b"\n")


# ---------------------------------------------------------------------------------------------------------------
# The run


def _build_and_restore(settings, strategy, worker, jit_compile):
    """Model, optimizer and `RunCheckpoint` under the strategy's scope; the latest checkpoint restored if any.

    Returns (model, checkpoint, prefix of the restored checkpoint or None, step reached).
    """
    from keras_albert.training.checkpoints import RunCheckpoint, restore_weights

    with strategy.scope():
        model = build_model(settings)
        model.compile(
            optimizer=build_optimizer(settings),
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
    saved = checkpoint.state.value.get("data_layout", {})
    changed = sorted(key for key in layout if key in saved and saved[key] != layout[key])
    if changed:
        logger.warning(
            "the data layout changed since the checkpoint (%s): training continues at step %d, but not on the "
            "examples an uninterrupted run would have seen",
            ", ".join(f"{key}: {saved[key]!r} -> {layout[key]!r}" for key in changed), step,
        )


def _run_callbacks(settings, worker, checkpoint, initial_step, global_batch, layout):
    from keras_albert.training import callbacks

    common = dict(initial_step=initial_step, total_steps=settings.total_steps)
    run = [
        # Throughput first: the callbacks after it print and write its figures from the same logs.
        callbacks.MetricWindows(settings.log_frequency, initial_step),
        callbacks.Throughput(settings.log_frequency, global_batch, settings.max_seq_length, **common),
        callbacks.TensorBoardScalars(
            os.path.join(settings.output_dir, TENSORBOARD_DIR), settings.log_frequency, enabled=worker.is_chief,
            **common,
        ),
        callbacks.ProgressLogger(settings.log_frequency, settings.total_steps, initial_step, enabled=worker.is_chief),
        callbacks.ProgressBar(enabled=worker.is_chief and not settings.quiet, **common),
        callbacks.PeriodicCheckpoint(checkpoint, settings.checkpoint_frequency, initial_step, layout),
    ]
    if settings.squad_frequency:
        run.append(_squad_callback(settings, worker))
    return run


def pretrain(settings, callbacks=None):
    """Trains (or resumes) the pretraining run that `settings` describes, and returns what it did.

    Creates the tf.distribute strategy first (before any TensorFlow op), seeds Python, NumPy and Keras with
    `settings.seed`, builds model and optimizer under the strategy's scope, restores the latest checkpoint of `settings.output_dir` if there is one (one log line says so), trains
    with `model.fit` to `settings.total_steps`, saving checkpoints every `checkpoint_frequency` steps and at the
    end, then writes `output_dir/model.keras`.

    Args:
        settings: `PretrainSettings`.
        callbacks: list of `keras.callbacks.Callback` or None. Extra callbacks, run after the run's own. Keras'
            batch index restarts at 0 in a resumed run: `model.optimizer.iterations` counts the steps of the run.

    Returns:
        dict: `model` (the trained `PretrainingModel`), `initial_step` (the step it resumed from, 0 for a new
        run), `step` (the step reached), `total_steps`, `seconds` (of training), `logs` (the values of the last
        log line, with its `step`), `final_model` (path of the `.keras` file, None on other workers than the
        chief), `output_dir`. All but `model` are also written to `output_dir/summary.json` (chief).

    Example:
    ```python
    from keras_albert.training.pretrain import PretrainSettings, pretrain

    result = pretrain(PretrainSettings("data/*.tfrecord", output_dir="runs/tiny", model_size="tiny",
                                       total_steps=1000, warmup_steps=100, learning_rate=1e-3))
    result["model"].save_huggingface("tiny-hf")
    ```
    """
    settings = resolve_settings(settings)
    from keras_albert import distribute

    strategy = distribute.get_strategy(settings.distribution)  # before any TensorFlow op (DESIGN trap 12)
    horovod = distribute.horovod_module()
    worker = distribute.worker_info()
    replicas = horovod.size() if horovod is not None else strategy.num_replicas_in_sync
    global_batch = settings.per_gpu_batch_size * settings.gradient_accumulation_steps * replicas

    import keras

    from keras_albert.training.checkpoints import write_atomically

    os.makedirs(settings.output_dir, exist_ok=True)
    file_log = _add_file_log(os.path.join(settings.output_dir, LOG_FILE)) if worker.is_chief else None
    previous_policy = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(MIXED_PRECISION[settings.mixed_precision])
        keras.utils.set_random_seed(settings.seed)
        jit_compile = resolve_jit_compile(settings.jit_compile, strategy)
        model, checkpoint, latest, initial_step = _build_and_restore(settings, strategy, worker, jit_compile)
        if worker.num_workers > 1 and not _workers_agree(strategy, initial_step, horovod):
            raise UserInputError(
                f"--output_dir: the workers found different checkpoints under {checkpoint.directory} (this one: step "
                f"{initial_step}); the output directory must be on a filesystem that every worker sees"
            )
        if horovod is not None and horovod.size() > 1:
            _broadcast_from_chief(horovod, model.variables + model.optimizer.variables)
        layout = data_layout(settings, replicas, worker.num_workers)
        if latest is not None:
            _report_resume(checkpoint, latest, initial_step, settings, layout, model)
        if worker.is_chief:
            if latest is not None:
                _log_changed_settings(settings)
            _write_settings(settings, replicas, strategy, worker, jit_compile)
            # Beside the model, so that `keras-albert squad --load_from checkpoint` and `export` find it.
            copy_tokenizer(settings.tokenizer, settings.output_dir)
        logger.info(
            "%s %s (%s parameters), %d replica(s) on %d worker(s), %d sequences of %d tokens per step "
            "(%d x %d micro-batches per replica), %s, jit_compile=%s, mixed precision %s",
            settings.model_type, settings.model_size, f"{model.count_params():,}", replicas, worker.num_workers,
            global_batch, settings.max_seq_length, settings.gradient_accumulation_steps, settings.per_gpu_batch_size,
            settings.optimizer, jit_compile, settings.mixed_precision,
        )

        logs, step, start = {}, initial_step, time.perf_counter()
        if initial_step < settings.total_steps:
            run_callbacks = _run_callbacks(settings, worker, checkpoint, initial_step, global_batch, layout)
            model.fit(
                make_dataset(settings, strategy, initial_step, horovod),
                epochs=1,
                steps_per_epoch=settings.total_steps - initial_step,
                callbacks=run_callbacks + list(callbacks or []),
                verbose=0,
                shuffle=False,  # the dataset shuffles (seeded); Keras would only warn
            )
            logs = next(c.last_logs for c in run_callbacks if hasattr(c, "last_logs"))
            step = checkpoint.last_saved_step
        else:
            logger.info("The run is complete: step %d of %d; nothing to train", initial_step, settings.total_steps)
        final_model = checkpoint.save_final_model()
        result = {
            "initial_step": initial_step,
            "step": step,
            "total_steps": settings.total_steps,
            "seconds": round(time.perf_counter() - start, 3),
            "logs": logs,
            "final_model": final_model,
            "output_dir": settings.output_dir,
        }
        if final_model:
            logger.info("Wrote %s (step %d)", final_model, step)
            write_atomically(os.path.join(settings.output_dir, SUMMARY_FILE),
                             json.dumps(result, indent=2).encode() + b"\n")
        return {"model": model, **result}
    finally:
        keras.config.set_dtype_policy(previous_policy)
        if file_log is not None:
            logger.removeHandler(file_log)
            file_log.close()


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _bool(text):
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", "none", ""):
        return False
    raise ValueError(text)


_bool.__name__ = "true/false"


def _one_line_errors(parser):
    """Argparse errors of this subcommand as one line (no usage block), exit status 2."""
    prog = parser.prog

    def error(message):
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless it is None or False (those flags say what they default to)."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def add_arguments(parser):
    """The flags of `keras-albert pretrain` (and of `examples/run_pretraining.py`)."""
    _one_line_errors(parser)
    parser.formatter_class = _HelpFormatter
    flag = parser.add_argument
    data = parser.add_argument_group("data")
    data.add_argument("--train_files", nargs="+", default=None,
                      help="Pretraining TFRecords (from `keras-albert create-pretraining-data`): a quoted glob, "
                      "or files.")
    data.add_argument("--max_seq_length", type=int, default=None,
                      help=f"Tokens per sequence. Default: from summary.json beside the records, else "
                      f"{DEFAULT_MAX_SEQ_LENGTH}.")
    data.add_argument("--max_predictions_per_seq", type=int, default=None,
                      help="Masked positions per sequence. Default: from summary.json, else "
                      f"{DEFAULT_MAX_PREDICTIONS}.")
    data.add_argument("--dynamic_masking", type=_bool, nargs="?", const=True, default=False, metavar="true|false",
                      help="Mask in the input pipeline, anew each epoch (records written with --no_masking).")
    data.add_argument("--tokenizer", default=None,
                      help="Tokenizer directory or file: sets --vocab_size, serves --dynamic_masking and SQuAD, and "
                      "is copied into --output_dir. Default: the one summary.json names.")

    model = parser.add_argument_group("model")
    model.add_argument("--model_type", default="albert", choices=MODEL_TYPES,
                       help="albert (shared layers, sentence order) or bert (next sentence).")
    model.add_argument("--model_size", default="base", choices=MODEL_SIZES,
                       help="Preset size; tiny is a few hundred thousand parameters for tests and CPU demos.")
    model.add_argument("--load_from", default="scratch", choices=LOAD_FROM,
                       help="scratch: random init; checkpoint: weights of --checkpoint_path (a run directory, "
                       "checkpoint prefix or .keras; fresh optimizer, e.g. BERT's phase 2); huggingface: a local "
                       "Hugging Face checkpoint directory.")
    model.add_argument("--checkpoint_path", default=None, help="What --load_from loads.")
    model.add_argument("--vocab_size", type=int, default=None,
                       help="Vocabulary size. Default: the tokenizer's (--tokenizer or summary.json), else the "
                       "preset's.")
    model.add_argument("--hidden_dropout_prob", type=float, default=None,
                       help="Encoder dropout. Default: the preset's (0 for ALBERT, 0.1 for BERT).")
    model.add_argument("--skip_mlm", type=_bool, nargs="?", const=True, default=False, metavar="true|false",
                       help="Train the sentence-order (next-sentence) loss only.")
    model.add_argument("--skip_sop", type=_bool, nargs="?", const=True, default=False, metavar="true|false",
                       help="Train the masked-LM loss only.")

    train = parser.add_argument_group("optimization")
    train.add_argument("--per_gpu_batch_size", type=int, default=32,
                       help="Sequences per micro-batch per replica (GPU, or the CPU).")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1,
                       help="Micro-batches per optimizer step; the global batch is per_gpu_batch_size x this x "
                       "replicas.")
    train.add_argument("--total_steps", type=int, default=125000, help="Optimizer steps of the whole run.")
    train.add_argument("--warmup_steps", type=int, default=3125, help="Steps of linear learning-rate warmup.")
    train.add_argument("--learning_rate", type=float, default=0.00176, help="Peak learning rate.")
    train.add_argument("--end_learning_rate", type=float, default=3e-5,
                       help="Learning rate reached at --total_steps by the polynomial decay.")
    train.add_argument("--learning_rate_decay_power", type=float, default=1.0, help="1.0 is a linear decay.")
    train.add_argument("--optimizer", default="lamb", choices=OPTIMIZERS,
                       help="lamb (TF Addons' LAMB rule) or adamw (BERT's Adam with decoupled decay).")
    train.add_argument("--weight_decay", type=float, default=0.01,
                       help="Weight decay rate; LayerNorm and bias variables are excluded.")
    train.add_argument("--beta_1", type=float, default=0.9, help="Decay of the first-moment estimate.")
    train.add_argument("--beta_2", type=float, default=0.999, help="Decay of the second-moment estimate.")
    train.add_argument("--epsilon", type=float, default=1e-6, help="Added to the second moment's square root.")
    train.add_argument("--max_grad_norm", type=float, default=1.0,
                       help="Clip the global gradient norm (after the cross-replica sum); 0 turns clipping off.")
    train.add_argument("--seed", type=int, default=42, help="Seeds weights, dropout and the data shuffle.")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default=None,
                     help="Run directory (checkpoints, TensorBoard, model.keras); rerunning with the same directory "
                     "resumes. Default: runs/<run_name>.")
    run.add_argument("--run_name", "--name", dest="run_name", default=None,
                     help="Name of the run, for the default --output_dir. Default: <model_type>-<model_size>.")
    run.add_argument("--mixed_precision", default="none", choices=tuple(MIXED_PRECISION),
                     help="bf16 (Ampere+ GPUs, TPUs) or fp16 (with dynamic loss scaling); weights stay float32.")
    run.add_argument("--jit_compile", default="auto", choices=JIT_COMPILE,
                     help="XLA. auto: on, except under CPU collective strategies, where XLA cannot compile.")
    run.add_argument("--distribution", default="auto",
                     help="auto, none, mirrored (all local GPUs), multi_worker (TF_CONFIG / SageMaker hosts) or "
                     "horovod (under horovodrun, where Horovod can be installed).")
    run.add_argument("--steps_per_execution", type=int, default=1,
                     help="Steps per call of the compiled train function; the frequencies must be multiples of it.")
    run.add_argument("--log_frequency", type=int, default=100,
                     help="Steps between log lines and TensorBoard points (values averaged over the window).")
    run.add_argument("--checkpoint_frequency", type=int, default=5000, help="Steps between checkpoints.")
    run.add_argument("--keep_checkpoints", type=int, default=3, help="Checkpoints kept in output_dir/checkpoints.")
    squad = parser.add_argument_group("periodic SQuAD (--squad_frequency)")
    squad.add_argument("--squad_frequency", type=int, default=0,
                       help="Steps between SQuAD evaluations of the encoder (a copy finetuned for --squad_steps); "
                       "0 turns them off. Needs --tokenizer or a summary.json naming one.")
    squad.add_argument("--squad_train_file", default=None,
                       help="SQuAD JSON to finetune on. Default: the embedded Jane Austen questions (v2.0).")
    squad.add_argument("--squad_predict_file", default=None,
                       help="SQuAD JSON to score. Default: the embedded held-apart Austen questions.")
    squad.add_argument("--squad_steps", type=int, default=300, help="Finetuning updates per evaluation.")
    squad.add_argument("--squad_learning_rate", type=float, default=5e-5, help="Peak finetuning learning rate.")
    squad.add_argument("--squad_batch_size", type=int, default=32, help="Finetuning rows per replica.")
    squad.add_argument("--squad_max_seq_length", type=int, default=None,
                       help="Tokens per SQuAD feature. Default: --max_seq_length, at most 384.")
    run.add_argument("--quiet", type=_bool, nargs="?", const=True, default=False, metavar="true|false",
                     help="No progress bar.")
    flag("--model_dir", default=None, help="Ignored (SageMaker's TensorFlow estimator passes it).")


def settings_from_args(args):
    """The `PretrainSettings` of parsed flags."""
    fields = {field.name for field in dataclasses.fields(PretrainSettings)}
    return PretrainSettings(**{key: value for key, value in vars(args).items() if key in fields})


class _TqdmHandler(logging.Handler):
    """Log lines that do not break a tqdm progress bar."""

    def emit(self, record):
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def configure_logging(is_chief=True):
    """INFO lines of the `keras_albert` logger on stderr (warnings only on other workers than the chief)."""
    if not any(isinstance(handler, _TqdmHandler) for handler in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if is_chief else logging.WARNING)
    logger.propagate = False


def run(args):
    from keras_albert.distribute import worker_info

    configure_logging(worker_info().is_chief)
    pretrain(settings_from_args(args))
    return 0
