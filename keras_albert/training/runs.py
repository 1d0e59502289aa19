"""What `pretrain` and the SQuAD runs are built from: the model, the optimizer, the precision, XLA.

Both runs build through these functions, so a preset, a checkpoint, a Hugging Face directory or a model given from
Python becomes a model the same way, every optimizer is LAMB or AdamW on the same warmup + polynomial-decay schedule
with the same weight-decay exclusions, and the global dtype policy a run sets is restored when it ends.

TensorFlow is imported inside the functions: the commands import this module before they create the strategy.
"""

import contextlib
import logging
import os
import zipfile

from keras_albert.errors import UserInputError
from keras_albert.training.choices import PRECISIONS, preset_name
from keras_albert.training.validation import name

logger = logging.getLogger("keras_albert")


@contextlib.contextmanager
def precision_policy(precision):
    """Sets Keras' global dtype policy for `precision` ("none", "bf16", "fp16") inside the block and restores the
    previous policy when it ends, also when it raises. Models built inside compute in that precision."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_MATMUL_PROBE = """
import time, tensorflow as tf
def rate(dtype, n=1024, repeats=8):
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)) / n**0.5, dtype)
    @tf.function
    def chain(a, b):
        for _ in range(repeats):
            a = tf.matmul(a, b)
        return a
    chain(a, b).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter(); chain(a, b).numpy(); best = min(best, time.perf_counter() - start)
    return 1 / best
print(rate(tf.bfloat16) / rate(tf.float32))
"""


def _cpu_bfloat16_speedup():
    """How much faster a bfloat16 matmul is than a float32 one on this CPU, measured in a subprocess (a TensorFlow
    op in this process would forbid a multi-worker strategy afterwards); 0.0 when the probe fails."""
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    try:
        result = subprocess.run([sys.executable, "-c", _MATMUL_PROBE], capture_output=True, text=True, env=env,
                                timeout=300)
        return float(result.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return 0.0


def device_precision():
    """The precision `--mixed_precision auto` trains in here: "bf16" where bfloat16 matmuls are faster, else "none"
    (float32).

    On GPUs: bf16 from compute capability 8.0 (tensor cores). On CPUs the flags are not enough: with AMX bf16 is
    taken; with AVX-512 BF16 alone it is measured (a matmul in both precisions, in a subprocess), since hosts differ:
    `albert_base` trained 1.6x faster in bfloat16 on an AMD EPYC with AVX-512 BF16 (issue 12), while on the
    2-core Intel Xeon these were developed on (AVX-512 BF16, no AMX exposed) a 2048x2048 bfloat16 matmul ran at
    about half the float32 speed. Listing the GPUs does not start TensorFlow's runtime, so a multi-worker strategy
    can still be created after this.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [tf.config.experimental.get_device_details(gpu).get("compute_capability") for gpu in gpus]
        return "bf16" if all(c is not None and tuple(c) >= (8, 0) for c in capabilities) else "none"
    flags = _cpu_flags()
    if "amx_bf16" in flags:
        return "bf16"
    if "avx512_bf16" in flags:
        speedup = _cpu_bfloat16_speedup()
        logger.info("--mixed_precision auto: a bfloat16 matmul runs at %.2fx the float32 speed here", speedup)
        return "bf16" if speedup >= 1.2 else "none"
    return "none"


def resolve_precision(setting):
    """`--mixed_precision` as one of `PRECISIONS`: "auto" becomes `device_precision()`."""
    return device_precision() if setting == "auto" else setting


def uses_float16(model):
    return model.backbone.dtype_policy.compute_dtype == "float16"


# ---------------------------------------------------------------------------------------------------- the model


def load_checkpoint_model(path):
    """The model saved at `path`: a `.keras` file, a checkpoint prefix, a checkpoints or run directory."""
    from keras_albert.training.checkpoints import load_model

    try:
        return load_model(path)
    except UserInputError as error:
        raise UserInputError(f"{name('checkpoint_path')} {error}") from None
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserInputError(f"{name('checkpoint_path')} {path}: cannot load the model ({first_line})") from None


def _from_preset(task, model_type, model_size, max_seq_length, vocab_size, dropout, head_arguments):
    from keras_albert.models.presets import PRESETS

    preset = preset_name(model_type, model_size)
    if preset not in PRESETS:
        raise UserInputError(f"{name('model_size')}={model_size} does not exist for {name('model_type')}={model_type}")
    overrides = {
        # Never fewer positions than the preset, so that a 128-token phase and a 512-token phase share weights.
        "max_sequence_length": max(PRESETS[preset]["max_sequence_length"], max_seq_length),
    }
    if vocab_size is not None:
        overrides["vocabulary_size"] = vocab_size
    if dropout is not None:
        overrides["dropout"] = dropout
    return task.from_preset(preset, **head_arguments, **overrides)


def _as_task(task, model, source):
    """`model` as a `task` model: itself, or (for a SquadModel from a pretraining model) a copy of its encoder."""
    from keras_albert.models.task import Task

    if isinstance(model, task):
        return model
    if isinstance(model, Task) and hasattr(task, "from_pretraining"):
        try:
            return task.from_pretraining(model)
        except UserInputError as error:
            raise UserInputError(f"{source}: {error}") from None
    raise UserInputError(f"{source}: holds a {type(model).__name__}, not a {task.__name__}")


def _in_precision(model):
    """`model` rebuilt in the global dtype policy when it was saved with another (a loaded model keeps its own)."""
    import keras

    policy = keras.config.dtype_policy().name
    source = model.backbone
    if source.dtype_policy.name == policy:
        return model
    backbone = type(source).from_config({**source.get_config(), "dtype": policy})
    rebuilt = type(model)(backbone, **{key: getattr(model, key) for key in model.head_arguments})
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def _check_fits(model, max_seq_length, vocab_size, source):
    backbone = model.backbone
    if vocab_size is not None and vocab_size > backbone.vocabulary_size:
        raise UserInputError(
            f"{name('tokenizer')}: its vocabulary ({vocab_size}) is larger than the model's "
            f"({backbone.vocabulary_size}); use the tokenizer the checkpoint was trained with"
        )
    if max_seq_length > backbone.max_sequence_length:
        raise UserInputError(
            f"{name('max_seq_length')}={max_seq_length} exceeds the {backbone.max_sequence_length} positions of "
            f"{source}"
        )


def build_model(
    task,
    *,
    max_seq_length,
    load_from="scratch",
    model_type=None,
    model_size=None,
    checkpoint_path=None,
    vocab_size=None,
    dropout=None,
    model=None,
    **head_arguments,
):
    """The `task` model (`PretrainingModel` or `SquadModel`) of a run. Call it under the strategy's scope and inside
    `precision_policy`.

    Args:
        task: the model class.
        max_seq_length: int. The run's sequence length; the model must have at least this many positions.
        load_from: `"scratch"` (a random preset), `"checkpoint"` (a keras-albert `.keras` file, checkpoint prefix,
            checkpoints or run directory) or `"huggingface"` (a local Hugging Face checkpoint directory).
        model_type, model_size: str. The preset for `"scratch"`; `model_type`, when given, must also be that of a
            loaded model.
        checkpoint_path: str. What `"checkpoint"` and `"huggingface"` load.
        vocab_size: int or None. The tokenizer's vocabulary: a preset gets this many embeddings, a loaded model must
            have at least this many.
        dropout: float or None. Encoder dropout of a preset (None: the preset's).
        model: a model given from Python, used instead of `load_from` (a pretraining model given for a `SquadModel`
            gives a copy of its encoder). It is trained as given, in its own precision.
        **head_arguments: head arguments of `task` (e.g. `skip_mlm`), for a preset or set on a loaded model.

    A loaded model is rebuilt in the global dtype policy when it was saved in another.
    """
    if model is not None:
        model = _as_task(task, model, "model")
        _check_fits(model, max_seq_length, vocab_size, "the model given")
        return model
    if load_from == "scratch":
        return _from_preset(task, model_type, model_size, max_seq_length, vocab_size, dropout, head_arguments)
    where = f"{name('checkpoint_path')} {checkpoint_path}"
    if load_from == "huggingface":
        try:
            model = task.from_huggingface(checkpoint_path)
        except UserInputError as error:
            raise UserInputError(f"{name('checkpoint_path')} {error}") from None
    else:
        model = _as_task(task, load_checkpoint_model(checkpoint_path), where)
    if model_type is not None and model.model_type != model_type:
        raise UserInputError(f"{where}: holds a {model.model_type} model, not {name('model_type')}={model_type}")
    _check_fits(model, max_seq_length, vocab_size, checkpoint_path)
    for key, value in head_arguments.items():
        setattr(model, key, value)
    return _in_precision(model)


# ------------------------------------------------------------------------------------------------ the optimizer


def build_optimizer(
    optimizer,
    learning_rate,
    *,
    warmup_steps,
    total_steps,
    end_learning_rate=0.0,
    decay_power=1.0,
    weight_decay=0.01,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-6,
    loss_scale=False,
):
    """`"lamb"` or `"adamw"` on the reference's linear warmup + polynomial decay (counted in optimizer updates).

    LayerNorm weights and biases are excluded from weight decay, as in BERT and ALBERT. `loss_scale` wraps the
    optimizer in Keras' dynamic `LossScaleOptimizer` (for float16 compute).
    """
    import keras

    from keras_albert.optimizers import EXCLUDE_FROM_WEIGHT_DECAY, LAMB, AdamW, WarmupPolyDecay

    try:
        schedule = WarmupPolyDecay(learning_rate, warmup_steps, total_steps, end_learning_rate, decay_power)
    except ValueError as error:
        raise UserInputError(f"{name('warmup_steps')}/{name('total_steps')}: {error}") from None
    kind = {"lamb": LAMB, "adamw": AdamW}[optimizer]
    result = kind(
        learning_rate=schedule,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
        weight_decay=weight_decay,
        exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY),
    )
    return keras.optimizers.LossScaleOptimizer(result) if loss_scale else result


# ------------------------------------------------------------------------------------------------------- XLA


def resolve_jit_compile(setting, strategy):
    """The `--jit_compile` setting ("auto", "true", "false") as a bool.

    auto is on wherever XLA can compile the step under `strategy` (not under CPU collective strategies: XLA has no
    CPU collective ops), except for float32 on hosts without a GPU: there the matmuls run as fast in oneDNN as in an
    XLA-compiled step, and `FastTransformerEncoder` already compiles its element-wise blocks with XLA (issue 12; on
    a 2-core Xeon, `albert_base` 2.48 s without XLA, 2.50 s with; `albert_tiny` 73.5 and 73.8 ms). Mixed precision
    keeps XLA on a CPU (`albert_tiny` in bfloat16: 102.7 ms without, 73.9 ms with).
    """
    import keras
    import tensorflow as tf

    from keras_albert import distribute

    cpu_float32 = (not tf.config.list_physical_devices("GPU")
                   and keras.config.dtype_policy().compute_dtype == "float32")
    if setting == "false" or (setting == "auto" and cpu_float32):
        return False
    if setting == "true" and not distribute.jit_compile_supported(strategy):
        raise UserInputError(
            f"{name('jit_compile')}=true: XLA has no CPU collective ops for {type(strategy).__name__}; use "
            f"{name('jit_compile')}=auto"
        )
    return distribute.resolve_jit_compile(True, strategy)


def checkpoint_directory(path):
    """The directory of a checkpoint path (itself when it is one), where its tokenizer is looked for."""
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


# ------------------------------------------------------------------------------------------------ resume safety

# Settings whose change makes a resumed run optimise differently from the run it continues. `total_steps` is not
# among them: extending a run is an ordinary resume (the decay then stretches to the new end; logged).
OPTIMISATION_SETTINGS = (
    "optimizer", "learning_rate", "end_learning_rate", "learning_rate_decay_power", "warmup_steps", "weight_decay",
    "beta_1", "beta_2", "epsilon", "max_grad_norm", "per_gpu_batch_size", "gradient_accumulation_steps",
    "mixed_precision",
)
_NOT_COMPARED = ("quiet", "allow_changed_settings")


def check_changed_settings(settings, settings_file="settings.json"):
    """Before a resume: a `UserInputError` listing the changed `OPTIMISATION_SETTINGS` since the previous start of
    this run, unless `allow_changed_settings`; every change is logged. Not a resume (no checkpoint in `output_dir`,
    e.g. a new phase that loads another run's checkpoint): nothing to compare.

    `settings` is a dataclass with `output_dir` and `allow_changed_settings` (`PretrainSettings`,
    `SquadRunSettings`); the previous start's settings are `settings_file`'s `"settings"` in `output_dir`."""
    import dataclasses

    from keras_albert import io
    from keras_albert.training.checkpoints import CHECKPOINT_DIR

    path = os.path.join(settings.output_dir, settings_file)
    if not os.path.isfile(os.path.join(settings.output_dir, CHECKPOINT_DIR, "checkpoint")) or not os.path.isfile(path):
        return
    try:
        previous = io.read_json(path).get("settings", {})
    except (UserInputError, AttributeError):
        return
    current = dataclasses.asdict(settings)
    changed = [key for key in current if key in previous and previous[key] != current[key] and key not in _NOT_COMPARED]
    refused = [key for key in changed if key in OPTIMISATION_SETTINGS]
    described = {key: f"{name(key)} {previous[key]!r} -> {current[key]!r}" for key in changed}
    if refused and not settings.allow_changed_settings:
        raise UserInputError(
            f"{settings.output_dir} holds a run that these settings would optimise differently "
            f"({', '.join(described[key] for key in refused)}); resume with its settings, use a new "
            f"{name('output_dir')}, or pass {name('allow_changed_settings')}"
        )
    if changed:
        logger.warning("Settings changed since the previous start: %s", ", ".join(described.values()))
