"""Pick the tf.distribute strategy from a flag and the environment (TF_CONFIG, SageMaker's SM_HOSTS, GPUs).

`get_strategy("auto")` gives `MultiWorkerMirroredStrategy` when the cluster (TF_CONFIG, or SageMaker's `SM_HOSTS`)
has more than one worker, `MirroredStrategy` when this machine has more than one GPU, and the default strategy
otherwise. Call it first thing in a program: `MultiWorkerMirroredStrategy` must be created before any TensorFlow op
runs, a `tf.data` pipeline included; later, TensorFlow refuses with "Collective ops must be
configured at program startup", which `get_strategy` turns into an error that says what to move.

```python
from keras_albert import distribute

strategy = distribute.get_strategy("auto")  # before any tensor, dataset or model is made
with strategy.scope():
    model = ...
model.compile(..., jit_compile=distribute.resolve_jit_compile(True, strategy))
```
"""

import collections
import json
import logging
import os

from keras_albert.errors import UserInputError

logger = logging.getLogger("keras_albert")

DISTRIBUTIONS = ("auto", "none", "mirrored", "multi_worker", "horovod")

# The port every SageMaker host listens on for the collective ops; all hosts run the same image, so any free port
# works as long as it is the same everywhere.
SAGEMAKER_PORT = 2222

_HOROVOD = None  # the initialised horovod.tensorflow module, once get_strategy("horovod") has run
_HOROVOD_FP16 = False  # all-reduce floating tensors as float16 (get_strategy("horovod", fp16_allreduce=True))

WorkerInfo = collections.namedtuple("WorkerInfo", ["task_index", "num_workers", "is_chief"])
WorkerInfo.__doc__ = """This process's place in the cluster: `task_index` counts from 0 (the chief first),
`num_workers` includes the chief, `is_chief` is the one worker that writes checkpoints and logs."""


def _environ(env):
    return os.environ if env is None else env


def tf_config_from_sagemaker(env=None, port=SAGEMAKER_PORT):
    """The TF_CONFIG dict for this SageMaker host, or None outside SageMaker (no `SM_HOSTS`).

    Args:
        env: mapping or None. The environment to read (`os.environ` when None).
        port: int. Port of every worker.

    Returns:
        `{"cluster": {"worker": ["algo-1:2222", ...]}, "task": {"type": "worker", "index": i}}` where `i` is the
        position of `SM_CURRENT_HOST` in `SM_HOSTS`, or None.
    """
    env = _environ(env)
    if not env.get("SM_HOSTS"):
        return None
    try:
        hosts = json.loads(env["SM_HOSTS"])
    except json.JSONDecodeError:
        hosts = None
    if not isinstance(hosts, list) or not hosts or not all(isinstance(host, str) for host in hosts):
        raise UserInputError(f"SM_HOSTS must be a JSON list of host names. Received: SM_HOSTS={env['SM_HOSTS']!r}")
    current = env.get("SM_CURRENT_HOST")
    if current not in hosts:
        raise UserInputError(f"SM_CURRENT_HOST={current!r} is not one of SM_HOSTS={hosts}")
    return {
        "cluster": {"worker": [f"{host}:{port}" for host in hosts]},
        "task": {"type": "worker", "index": hosts.index(current)},
    }


def _tf_config(env):
    """TF_CONFIG as a dict, or None when unset."""
    text = env.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserInputError(f"TF_CONFIG is not valid JSON: {error}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster", {}), dict):
        raise UserInputError(f"TF_CONFIG must be a JSON object with a 'cluster' object. Received: {text!r}")
    return config


def cluster_config(env=None):
    """The cluster this process belongs to: TF_CONFIG if set, else the one SageMaker's variables describe, else None."""
    env = _environ(env)
    return _tf_config(env) or tf_config_from_sagemaker(env)


def _num_workers(config):
    if not config:
        return 1
    cluster = config.get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", [])) or 1


def set_tf_config_from_sagemaker(env=None, port=SAGEMAKER_PORT):
    """Sets TF_CONFIG from SageMaker's variables when TF_CONFIG is absent and SM_HOSTS lists several hosts.

    Returns the TF_CONFIG now in effect (a dict), or None.
    """
    env = _environ(env)
    config = _tf_config(env)
    if config is not None:
        return config
    config = tf_config_from_sagemaker(env, port=port)
    if config is None or _num_workers(config) < 2:
        return None
    env["TF_CONFIG"] = json.dumps(config)
    logger.info("TF_CONFIG set from SM_HOSTS: worker %d of %d", config["task"]["index"], _num_workers(config))
    return config


def worker_info(env=None):
    """Task index, number of workers and chief flag of this process (Horovod's rank and size when it is running)."""
    hvd = _HOROVOD
    if hvd is not None:
        return WorkerInfo(hvd.rank(), hvd.size(), hvd.rank() == 0)
    config = cluster_config(env)
    if not config or "task" not in config:
        return WorkerInfo(0, _num_workers(config), True)
    task_type = config["task"].get("type", "worker")
    index = int(config["task"].get("index", 0))
    has_chief = bool(config.get("cluster", {}).get("chief"))
    if task_type == "chief":
        return WorkerInfo(0, _num_workers(config), True)
    task_index = index + 1 if has_chief else index
    return WorkerInfo(task_index, _num_workers(config), not has_chief and index == 0)


def _horovod(fp16_allreduce=False):
    """Initialises Horovod, or explains how to get it."""
    global _HOROVOD, _HOROVOD_FP16
    try:
        import horovod.tensorflow as hvd
    except ImportError as error:
        raise UserInputError(
            f"--distribution=horovod needs horovod.tensorflow, which does not import here ({error}). Build it "
            "against this TensorFlow with `bash scripts/build_horovod.sh` from the keras-albert source (Horovod "
            "0.28.1 with a one-line patch, MPICH from PyPI), or use --distribution=multi_worker on the same hosts."
        ) from None
    import tensorflow as tf

    hvd.init()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        tf.config.set_visible_devices(gpus[hvd.local_rank() % len(gpus)], "GPU")
    _HOROVOD = hvd
    _HOROVOD_FP16 = bool(fp16_allreduce)
    logger.info(
        "Horovod rank %d of %d: keras-albert models all-reduce gradients and loss denominators with "
        "hvd.grouped_allreduce%s, and fit() starts every rank from rank 0's variables",
        hvd.rank(),
        hvd.size(),
        " (gradients sent as float16)" if fp16_allreduce else "",
    )
    return tf.distribute.get_strategy()


def horovod_all_reduce_sum(values, gradients=False):
    """Sums a list of tensors over Horovod ranks in one grouped all-reduce; identity without Horovod or with one
    rank. `gradients=True` sends floating tensors as float16 when `get_strategy("horovod", fp16_allreduce=True)`
    (never the loss sums and denominators, whose counts float16 would round)."""
    hvd = _HOROVOD
    if hvd is None or hvd.size() == 1:
        return values
    if not (gradients and _HOROVOD_FP16):
        return hvd.grouped_allreduce(values, op=hvd.Sum)
    import tensorflow as tf

    sent = [tf.cast(v, tf.float16) if v.dtype in (tf.float32, tf.float64) else v for v in values]
    return [tf.cast(r, v.dtype) for r, v in zip(hvd.grouped_allreduce(sent, op=hvd.Sum), values)]


def horovod_broadcast_from_rank_0(variables):
    """Assigns rank 0's value to every variable on every rank (no-op without Horovod or with one rank).

    Horovod's own `broadcast_variables` fails on Keras 3 variables (AttributeError 'ref'), hence this loop of
    `hvd.broadcast` calls on each variable's value.
    """
    hvd = _HOROVOD
    if hvd is None or hvd.size() == 1:
        return
    for index, variable in enumerate(variables):
        variable.assign(hvd.broadcast(variable.value, root_rank=0, name=f"keras_albert_broadcast_{index}"))


def horovod_module():
    """The initialised `horovod.tensorflow` module after `get_strategy("horovod")`, else None."""
    return _HOROVOD


def _multi_worker_strategy():
    import tensorflow as tf

    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as error:
        if "Collective ops must be configured at program startup" not in str(error):
            raise
        raise RuntimeError(
            "MultiWorkerMirroredStrategy must be created before any TensorFlow op runs (a tensor, a tf.data "
            "pipeline, a model): call keras_albert.distribute.get_strategy() first thing in the program."
        ) from error


def get_strategy(distribution="auto", env=None, fp16_allreduce=False):
    """Returns the tf.distribute strategy for `distribution`.

    Args:
        distribution: str. `"auto"`, `"none"` (default strategy), `"mirrored"` (all local GPUs),
            `"multi_worker"` (`MultiWorkerMirroredStrategy` over the TF_CONFIG cluster) or `"horovod"`.
            `"auto"` picks multi_worker when TF_CONFIG or SM_HOSTS names more than one worker, mirrored when there
            is more than one GPU, none otherwise.
        env: mapping or None. Environment to read and to set TF_CONFIG in (`os.environ` when None; TensorFlow
            itself reads `os.environ`).
        fp16_allreduce: bool. With `"horovod"`: send gradients over the network as float16 (half the bytes; the
            sum is cast back to float32), as the 2020 reference did.

    Returns:
        A `tf.distribute.Strategy`.
    """
    if distribution not in DISTRIBUTIONS:
        raise UserInputError(f"--distribution must be one of {', '.join(DISTRIBUTIONS)}. Received: {distribution!r}")
    env = _environ(env)
    if distribution in ("auto", "multi_worker"):
        set_tf_config_from_sagemaker(env)
    if distribution == "auto":
        distribution = choose_distribution(env)
        logger.info("--distribution=auto chose %s", distribution)

    import tensorflow as tf

    if distribution == "none":
        return tf.distribute.get_strategy()
    if distribution == "mirrored":
        return tf.distribute.MirroredStrategy()
    if distribution == "multi_worker":
        return _multi_worker_strategy()
    return _horovod(fp16_allreduce)


def choose_distribution(env=None):
    """What `"auto"` resolves to: `"multi_worker"`, `"mirrored"` or `"none"` (see `get_strategy`)."""
    env = _environ(env)
    if _num_workers(cluster_config(env)) > 1:
        return "multi_worker"
    import tensorflow as tf

    # Listing physical devices does not start the runtime, so a multi-worker strategy could still follow.
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "none"


def jit_compile_supported(strategy):
    """False where XLA cannot compile the step: a CPU strategy whose replicas talk through collectives.

    XLA has no CPU collective ops: `MirroredStrategy` or `MultiWorkerMirroredStrategy` on CPU
    devices fail with jit_compile=True; without a strategy, or on GPUs, XLA works.
    """
    import tensorflow as tf

    if not isinstance(strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)):
        return True
    devices = list(strategy.extended.worker_devices)
    return bool(devices) and all("GPU" in device.upper() for device in devices)


def resolve_jit_compile(jit_compile, strategy):
    """`jit_compile` for `model.compile`, turned off (with one log line) where the strategy cannot use XLA."""
    if jit_compile is True and not jit_compile_supported(strategy):
        logger.info(
            "jit_compile turned off: XLA has no CPU collective ops for %s", type(strategy).__name__
        )
        return False
    return jit_compile
