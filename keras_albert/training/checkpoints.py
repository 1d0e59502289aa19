"""Checkpoints that resume a pretraining run exactly, and the final `.keras` model.

A run directory holds:

```
output_dir/
  checkpoints/ckpt-<step>.index, ckpt-<step>.data-*   model weights, optimizer state (iterations included), the
                                                        model's RNG states, the run state (step and data layout)
  checkpoints/checkpoint                                 TensorFlow's pointer to the latest complete checkpoint
  checkpoints/model.json                                 the model's Keras config, to rebuild it without flags
  model.keras                                            the model at the end of the run
```

Saving is crash-safe: TensorFlow writes a checkpoint under temporary names and renames it, and moves the
`checkpoint` pointer (atomically) only once the files are complete, so a run killed mid-save resumes from the previous
checkpoint; the other files are written to a temporary name and renamed. Under `MultiWorkerMirroredStrategy` every
worker runs the same saves (saving may involve collective ops, and a worker that skipped one would hang the others);
only the chief writes into the run directory, the others into a temporary directory that is removed at once.

The data position is the number of optimizer steps done: each step consumes exactly one per-replica batch on every
replica, and the reader of `train_files` (`data.pretraining.dataset`) is addressable: its file order, window
shuffles and dynamic masks are stateless functions of the seed and the position, so `skip_batches` starts it at the
record where those batches end, in time independent of their number (the epoch, file and record follow from the
files' record counts), never replaying the pipeline. `RunCheckpoint` records the data layout (files, seed, batch
sizes, replicas) beside it, so that a resume with a different layout is detected (it then continues, but not on the
same examples).
"""

import json
import logging
import os
import shutil
import tempfile

import keras
import tensorflow as tf

from keras_albert import io
from keras_albert.errors import UserInputError
from keras_albert.training.nonfinite import check_finite
from keras_albert.training.validation import name

logger = logging.getLogger("keras_albert")

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "ckpt"
MODEL_CONFIG_FILE = "model.json"
FINAL_MODEL_FILE = "model.keras"


class _RunState(tf.train.experimental.PythonState):
    """A JSON dict stored inside the TensorFlow checkpoint, so it is saved and restored with the weights."""

    def __init__(self):
        self.value = {}

    def serialize(self):
        return json.dumps(self.value, sort_keys=True)

    def deserialize(self, string_value):
        value = string_value.numpy() if hasattr(string_value, "numpy") else string_value
        self.value = json.loads(value.decode("utf-8") if isinstance(value, bytes) else value)


def _rng_states(model):
    # Keras' SeedGenerator states (one per dropout layer) are variables that TensorFlow's object graph does not
    # reach; they are listed here so that dropout masks after a resume equal those of an uninterrupted run.
    return [variable for variable in model.non_trainable_variables if "seed_generator" in variable.path]


def save_model_atomically(model, path):
    """`model.save(path)`, published whole: Keras saves only to a name ending in `.keras`, so the model is saved
    inside a temporary directory beside `path` and moved to `io.atomic_path`'s temporary name."""
    with io.atomic_path(path) as temporary:
        parent = os.path.dirname(temporary)
        with tempfile.TemporaryDirectory(prefix=f".{os.path.basename(path)}.", dir=parent) as work:
            saved = os.path.join(work, FINAL_MODEL_FILE)
            model.save(saved)
            os.replace(saved, temporary)


class RunCheckpoint:
    """Saves and restores everything a pretraining run needs to continue exactly where it stopped.

    Wraps `tf.train.Checkpoint` (model, optimizer with its `iterations`, the model's dropout RNG states, and a
    JSON run state: step and data layout) and `tf.train.CheckpointManager`. Create it under the strategy's scope
    after the optimizer is built (`model.optimizer.build(model.trainable_variables)`): optimizer slots that do
    not exist yet cannot be restored.

    Args:
        run_dir: str. The run directory; checkpoints go to `run_dir/checkpoints`.
        model: `keras_albert.models.task.Task`. A compiled model whose optimizer is built.
        max_to_keep: int. Checkpoints kept (the oldest are deleted).
        worker: `keras_albert.distribute.WorkerInfo` or None. This process's place in the cluster; None means
            one process (the chief).

    Example:
    ```python
    checkpoint = RunCheckpoint("runs/tiny", model)
    step = checkpoint.restore_latest()  # 0 for a new run
    ...
    checkpoint.save(step=100, data_layout={"seed": 42})
    ```
    """

    def __init__(self, run_dir, model, max_to_keep=3, worker=None):
        if int(max_to_keep) < 1:
            raise UserInputError(f"{name('keep_checkpoints')} must be >= 1. Received: {max_to_keep}")
        self.run_dir = os.fspath(run_dir)
        self.directory = os.path.join(self.run_dir, CHECKPOINT_DIR)
        self.model = model
        self.is_chief = worker is None or worker.is_chief
        self.task_index = 0 if worker is None else worker.task_index
        self.state = _RunState()
        rng = tf.train.Checkpoint(**{f"state_{i}": variable for i, variable in enumerate(_rng_states(model))})
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, rng=rng, run_state=self.state)
        if self.is_chief:
            write_directory = self.directory
        else:
            write_directory = os.path.join(self.directory, f".worker-{self.task_index}-tmp")
        self.write_directory = write_directory
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, write_directory, max_to_keep=int(max_to_keep), checkpoint_name=CHECKPOINT_NAME
        )
        self.last_saved_step = None

    @property
    def latest(self):
        """The prefix of the latest complete checkpoint in the run directory, or None."""
        return tf.train.latest_checkpoint(self.directory)

    def restore_latest(self):
        """Restores the latest checkpoint of the run directory, if any.

        Returns:
            The step it was saved at (0 when there is none). The run state is in `self.state.value`.
        """
        prefix = self.latest
        if prefix is None:
            return 0
        self.checkpoint.save_counter  # created before reading, so that every value of the checkpoint has a home
        status = None
        try:
            status = self.checkpoint.read(prefix)
            status.assert_consumed()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
            if status is not None:
                status.expect_partial()  # the error says it; TensorFlow's warnings at exit would repeat it
            raise UserInputError(
                f"{prefix}: this checkpoint does not match the model and optimizer of this run "
                f"({str(error).splitlines()[0][:200]}); resume with the run's settings or use a new "
                f"{name('output_dir')}"
            ) from None
        step = int(self.state.value.get("step", 0))
        self.last_saved_step = step
        return step

    def warn_if_data_layout_changed(self, layout, step, what="examples"):
        """Logs a warning naming each key of `layout` (how a run deals its data: batch, replicas, seed, files)
        whose value differs from the one the restored checkpoint saved: training goes on at `step`, but not on
        the `what` an uninterrupted run would have read."""
        saved = self.state.value.get("data_layout", {})
        changed = sorted(key for key in layout if key in saved and saved[key] != layout[key])
        if changed:
            logger.warning(
                "the data layout changed since the checkpoint (%s): training continues at step %d, but not on the "
                "%s an uninterrupted run would have read",
                ", ".join(f"{key}: {saved[key]!r} -> {layout[key]!r}" for key in changed), step, what,
            )

    def save(self, step, data_layout=None):
        """Saves a checkpoint numbered `step`. Every worker must call it (see the module docstring).

        Raises `keras_albert.errors.RunDiverged` instead if a weight is not finite (every worker holds the same
        weights, so all of them raise): the checkpoints on disk, the latest good one included, stay as they are.
        """
        check_finite(self.model, step, f"checkpoint {CHECKPOINT_NAME}-{int(step)}")
        self.state.value = {"step": int(step), "data_layout": data_layout or {}}
        if self.is_chief and not os.path.exists(os.path.join(self.directory, MODEL_CONFIG_FILE)):
            config = keras.saving.serialize_keras_object(self.model)
            io.write_json(os.path.join(self.directory, MODEL_CONFIG_FILE), config, indent=1)
        path = self.manager.save(checkpoint_number=int(step))
        if not self.is_chief:
            shutil.rmtree(self.write_directory, ignore_errors=True)
        self.last_saved_step = int(step)
        return path if self.is_chief else None

    def save_final_model(self, path=None):
        """Writes the model as `.keras` (default `run_dir/model.keras`) on the chief; other workers write it to a
        temporary directory that is removed. Returns the chief's path. Raises `RunDiverged` instead if a weight is
        not finite."""
        path = path or os.path.join(self.run_dir, FINAL_MODEL_FILE)
        check_finite(self.model, self.last_saved_step, os.path.basename(path))
        if self.is_chief:
            save_model_atomically(self.model, path)
            return path
        temporary = tempfile.mkdtemp(prefix=f".worker-{self.task_index}-tmp-", dir=self.run_dir)
        try:
            self.model.save(os.path.join(temporary, FINAL_MODEL_FILE))
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
        return None


def _register_classes():
    # `import keras_albert` is lazy: a `.keras` file names keras_albert classes (models, optimizers, schedules)
    # that Keras finds only once their modules have run their registration decorators.
    import keras_albert.models  # noqa: F401
    import keras_albert.optimizers  # noqa: F401


def resolve_checkpoint(path):
    """What `path` names: `("keras", file)` for a `.keras` model, `("tf", prefix)` for a TensorFlow checkpoint.

    `path` may be a `.keras` file, a checkpoint prefix (`.../checkpoints/ckpt-1000`), a checkpoints directory
    (its latest checkpoint) or a run directory (its `model.keras` if present, else its latest checkpoint).
    """
    path = os.fspath(path)
    if os.path.isfile(path) and path.endswith(".keras"):
        return "keras", path
    if os.path.isfile(path + ".index"):
        return "tf", path
    if os.path.isdir(path):
        final = os.path.join(path, FINAL_MODEL_FILE)
        if os.path.isfile(final):
            return "keras", final
        for directory in (path, os.path.join(path, CHECKPOINT_DIR)):
            prefix = tf.train.latest_checkpoint(directory)
            if prefix is not None:
                return "tf", prefix
    raise UserInputError(
        f"{path}: not a .keras model, a checkpoint prefix (ckpt-N), a checkpoints directory or a run directory"
    )


def _model_config_for(prefix):
    config_path = os.path.join(os.path.dirname(prefix), MODEL_CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise UserInputError(f"{prefix}: no {MODEL_CONFIG_FILE} beside the checkpoint to rebuild the model from")
    return io.read_json(config_path, what="model config")


def _fit_advice():
    return (f"check {name('model_type')}, {name('model_size')}, {name('vocab_size')} and {name('max_seq_length')} "
            "(a loaded model keeps the positions its first phase gave it)")


def restore_weights(model, path):
    """Loads the weights of a checkpoint or `.keras` model (see `resolve_checkpoint`) into `model`.

    Only the weights: the optimizer, step and data position stay those of `model`'s run (a new phase of
    pretraining, as the reference's `--load_from checkpoint`). Returns the resolved path.
    """
    kind, resolved = resolve_checkpoint(path)
    if kind == "keras":
        _register_classes()
        source = keras.saving.load_model(resolved, compile=False)
        sources, targets = source.weights, model.weights
        mismatched = [
            f"{t.path} {tuple(t.shape)} vs {tuple(s.shape)}"
            for s, t in zip(sources, targets)
            if tuple(s.shape) != tuple(t.shape)
        ]
        if len(sources) != len(targets) or mismatched:
            raise UserInputError(
                f"{resolved}: its weights do not fit this model "
                f"({len(sources)} vs {len(targets)} tensors{'; ' + mismatched[0] if mismatched else ''}); "
                f"{_fit_advice()}"
            )
        for s, t in zip(sources, targets):
            t.assign(s)
        return resolved
    try:
        status = tf.train.Checkpoint(model=model).read(resolved)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
        raise UserInputError(
            f"{resolved}: its weights do not fit this model ({str(error).splitlines()[0][:200]}); "
            f"{_fit_advice()}"
        ) from None
    return resolved


def load_model(path):
    """The model of a checkpoint or `.keras` file (see `resolve_checkpoint`), rebuilt from the saved config."""
    kind, resolved = resolve_checkpoint(path)
    _register_classes()
    if kind == "keras":
        return keras.saving.load_model(resolved, compile=False)
    model = keras.saving.deserialize_keras_object(_model_config_for(resolved))
    restore_weights(model, resolved)
    return model
