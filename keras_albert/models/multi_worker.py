"""Make Keras 3's `fit` / `evaluate` / `predict` work under `tf.distribute.MultiWorkerMirroredStrategy`.

Keras 3.15 (keras-team/keras#20585) fails in two places of `keras/src/backend/tensorflow/trainer.py`
as soon as the strategy spans several workers:

1. `_maybe_symbolic_build` takes the first batch of the distributed iterator and, to get one example batch for
   building the model symbolically, calls `strategy.reduce("MEAN", per_replica_batch, axis=None)`. Eagerly, the
   multi-worker cross-device ops try to convert the `PerReplica` value to a tensor: `ValueError: Attempt to convert a
   value (PerReplica:{...}) with an unsupported type ... to a Tensor`. Only the shapes and dtypes of that batch are
   used, so the first local replica's batch serves as well, and needs no collective.
2. `reduce_per_replica(..., reduction="auto")` becomes `strategy.reduce("MEAN", value, axis=0)` for every log value
   on a multi-worker strategy. Logs are scalars (metric results), which have no axis 0: `ValueError: Invalid
   reduction dimension 0 for input with 0 dimensions`. Giving scalar step outputs shape [1] makes that reduction
   the mean over all replicas, a scalar again, which is what Keras returns on one worker.

`predict` needs no change (its "concat" reduction gathers over the workers correctly).
"""

import tensorflow as tf
from keras import tree

# Keras' own predicate for "reduce_per_replica will reduce on axis 0": the fix applies exactly where Keras breaks.
from keras.src.backend.tensorflow.trainer import _collective_all_reduce_multi_worker


def _first_local_value(value):
    if isinstance(value, tf.distribute.DistributedValues):
        return value.values[0]
    return value


def _scalars_as_vectors(step_function):
    """Wraps a train/test step so that its scalar outputs have shape [1]."""

    def step(data):
        outputs = step_function(data)
        return tree.map_structure(
            lambda value: tf.reshape(value, [1]) if value is not None and value.shape.rank == 0 else value,
            outputs,
        )

    return step


class MultiWorkerTrainerMixin:
    """Overrides that let `fit`, `evaluate` and `predict` run under `MultiWorkerMirroredStrategy` (Keras 3.15).

    List it before `keras.Model` in the bases. On one worker, or without a strategy, Keras' own code runs
    unchanged (apart from building from the first replica's batch instead of a mean over replicas). The model must
    be created under the strategy's scope, and the strategy must exist before any TensorFlow op runs
    (see `keras_albert.distribute.get_strategy`).

    Example:
    ```python
    import keras
    from keras_albert.models.multi_worker import MultiWorkerTrainerMixin

    class MyModel(MultiWorkerTrainerMixin, keras.Model):
        ...
    ```
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is None or self._distribute_strategy is None:
            return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = tree.map_structure(_first_local_value, next(batches))
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        if not _collective_all_reduce_multi_worker(self.distribute_strategy):
            return super().make_train_function(force=force)
        self.train_function = self._make_function(_scalars_as_vectors(self.train_step))
        return self.train_function

    def make_test_function(self, force=False):
        if self.test_function is not None and not force:
            return self.test_function
        if not _collective_all_reduce_multi_worker(self.distribute_strategy):
            return super().make_test_function(force=force)
        self.test_function = self._make_function(_scalars_as_vectors(self.test_step))
        return self.test_function


def workers_min_max(strategy, value, horovod=None):
    """(smallest, largest) of a number that every worker passes, e.g. the step each one restored: gathered from
    all replicas (tf.distribute reduces only by sum or mean, and a sum of squares loses exactness for large
    values), or from all Horovod ranks. Every worker must call it (it is a collective).

    Args:
        strategy: `tf.distribute.Strategy`. Ignored when `horovod` is given.
        value: int or float. This worker's value (exact as a float64, i.e. up to 2**53).
        horovod: the `horovod.tensorflow` module, or None.
    """
    local = tf.constant([float(value)], tf.float64)
    if horovod is not None:
        gathered = horovod.allgather(local).numpy()
    else:

        def replica_fn():
            # Eagerly, the value captured (not passed as an argument), as Keras' own collectives do.
            return tf.distribute.get_replica_context().all_gather(local, axis=0)

        per_replica = strategy.run(replica_fn)
        gathered = strategy.experimental_local_results(per_replica)[0].numpy()
    return gathered.min().item(), gathered.max().item()
