"""The base of `PretrainingModel` and `SquadModel`: construction, serialisation and large-batch training.

One call of `train_step` is one optimizer update over `gradient_accumulation_steps` micro-batches, looped inside
the step with `tf.while_loop` (no accumulator variables carried between steps, no `if step % n` around `apply`).
Losses are normalised by denominators summed over the whole global batch (every micro-batch, every replica)
before differentiation, so the summed gradients are exactly those of one batch of N*b rows. Gradients are
all-reduced here, clipped by their global norm after the reduction, and then applied by an optimizer whose own
all-reduce is switched off. Why each piece is done here rather than by Keras: an optimizer's own
`gradient_accumulation_steps` fails under tf.distribute (`merge_call called while defining a new graph`) and feeds
micro-steps to learning-rate schedules; Keras' `global_clipnorm` clips each replica's gradients before the
all-reduce; embedding gradients arrive as `tf.IndexedSlices`, densified before they are summed; and Keras divides
only its own losses by the number of replicas, whereas gradients are summed over replicas, so the global
denominators are what keep two workers from training twice as fast as one.
"""

import keras
import tensorflow as tf

from keras_albert import distribute
from keras_albert import optimizers as _optimizers  # noqa: F401 (registers LAMB/AdamW for compile_from_config)
from keras_albert.errors import UserInputError
from keras_albert.models import huggingface
from keras_albert.models.backbones import ENCODERS, model_type_of
from keras_albert.models.multi_worker import MultiWorkerTrainerMixin
from keras_albert.models.presets import preset_config


def _all_reduce_sum(values, gradients=False):
    """Sums a list of tensors over replicas (tf.distribute) or ranks (Horovod); identity on one."""
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
    return distribute.horovod_all_reduce_sum(values, gradients=gradients)


def _no_all_reduce(grads_and_vars):
    return grads_and_vars


def _disable_optimizer_all_reduce(optimizer):
    # Keras' TF optimizer all-reduces inside `apply`; our gradients arrive already reduced (and clipped after
    # the reduction), so a second reduction would multiply them by the number of replicas.
    for opt in (optimizer, getattr(optimizer, "inner_optimizer", None)):
        if opt is not None:
            opt._all_reduce_sum_gradients = _no_all_reduce


def _densify(grad):
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


def _apply_when_finite(optimizer, grads, variables, finite):
    """`optimizer.apply(grads, variables)` when `finite`, else nothing at all: no moment, no weight decay, no
    `iterations` step (so the learning-rate schedule does not advance either).

    A `LossScaleOptimizer` makes the same decision on its gradients and also lowers its scale, so it is called as
    is. Otherwise the condition must run where the strategy allows it: a branch that calls `merge_call` (the
    optimizer's update does, under strategies that need merge calls) cannot sit in a replica-context cond, so there
    the cond moves into the cross-replica context as Keras' own loss-scale optimizer does.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer.apply(grads, variables)
        return
    if not optimizer.built:
        optimizer.build(variables)

    if tf.__internal__.distribute.strategy_supports_no_merge_call():
        tf.cond(finite, lambda: optimizer.apply(grads, variables), lambda: None)
        return

    def cross_replica(distribution, grads, variables, finite):
        def apply():
            distribution.extended.call_for_each_replica(optimizer.apply, args=(grads, variables))

        # `finite` is equal on every replica: it is computed from all-reduced values.
        tf.cond(distribution.experimental_local_results(finite)[0], apply, lambda: None)

    tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, variables, finite))


class NonFiniteGuard(keras.metrics.Metric):
    """How many updates in a row were skipped as non-finite, and the last finite loss.

    Not listed among the model's `metrics`, so `fit` never resets it between epochs; the training loop reads it to
    stop a run that keeps diverging (`keras_albert.training.nonfinite`).
    """

    def __init__(self, name="nonfinite_guard", **kwargs):
        super().__init__(name=name, **kwargs)
        self.streak = self.add_variable(shape=(), initializer="zeros", dtype="float32", name="streak")
        self.last_finite_loss = self.add_variable(
            shape=(), initializer=keras.initializers.Constant(float("nan")), dtype="float32", name="last_finite_loss"
        )

    def update_state(self, finite, loss):
        finite = tf.cast(finite, tf.float32)
        self.streak.assign((self.streak + 1.0) * (1.0 - finite))
        self.last_finite_loss.assign(tf.where(finite > 0, tf.cast(loss, tf.float32), self.last_finite_loss))

    def result(self):
        return self.streak

    def reset_state(self):
        pass  # a streak spans epochs: only a finite update ends it


def _split_micro_batches(data, num_micro_batches):
    """Reshapes every tensor to [num_micro_batches, rows / num_micro_batches, ...] (static micro-batch shapes,
    which XLA needs)."""
    rows = tf.shape(next(iter(data.values())))[0]
    tf.debugging.assert_equal(
        rows % num_micro_batches,
        0,
        message=f"the per-replica batch must hold a whole number of the {num_micro_batches} micro-batches "
        "(gradient_accumulation_steps); batch the dataset with drop_remainder=True",
    )
    return {
        key: tf.reshape(value, tf.concat([[num_micro_batches, rows // num_micro_batches], tf.shape(value)[1:]], 0))
        for key, value in data.items()
    }


class Task(MultiWorkerTrainerMixin, keras.Model):
    """A backbone with a task head, trained one large batch per `train_step`.

    Subclasses build the functional graph and define `_loss_terms` (per-micro-batch sums, keyed by
    `numerator_names`), `_local_denominators` (this replica's values of `denominator_names`, all-reduced before the
    loss) and `_loss_from_terms` (the loss from sums and global denominators).
    """

    head_arguments = ()  # constructor arguments of the head, stored and returned by get_config
    input_names_used = ()  # the model's inputs; the other keys of a batch are labels
    numerator_names = ()  # sums accumulated over micro-batches and replicas
    denominator_names = ()  # global totals the sums are divided by
    metric_names = {}  # logged metric -> (numerator, denominator)
    # The Hugging Face side of the heads, read by `keras_albert.models.huggingface`:
    huggingface_architecture = None  # transformers' class name after "Albert" / "Bert" ("ForPreTraining")
    huggingface_pooler = False  # whether that class has the backbone's pooler
    # {model type: {head: ((kind, attribute path on the task, tensor name), ...)}}; kinds: "dense" (kernel and
    # bias), "norm" (LayerNorm gamma and beta), "vector" (one weight vector).
    huggingface_heads = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gradient_accumulation_steps = 1
        self.max_grad_norm = 1.0
        self._trackers = None
        self._nonfinite_guard = None

    # ---------------------------------------------------------------- construction and serialisation

    @classmethod
    def from_preset(cls, name, **overrides):
        """A randomly initialised model with the architecture of preset `name` (see `keras_albert.presets`).

        Backbone overrides (`vocabulary_size`, `max_sequence_length`, `dropout`, ...) and head arguments of the
        subclass may be given as keyword arguments.
        """
        head_args = {key: overrides.pop(key) for key in list(overrides) if key in cls.head_arguments}
        config = preset_config(name, **overrides)
        backbone = ENCODERS[config.pop("model_type")](**config)
        return cls(backbone, **head_args)

    @classmethod
    def from_huggingface(cls, path):
        """Loads a local Hugging Face ALBERT or BERT checkpoint directory, heads included where it has them."""
        return huggingface.load(cls, path)

    def save_huggingface(self, path):
        """Writes `config.json` and `model.safetensors` that transformers' Auto classes load unchanged."""
        huggingface.save(self, path)

    @property
    def model_type(self):
        return model_type_of(self.backbone)

    def get_config(self):
        return {
            "backbone": keras.layers.serialize(self.backbone),
            **{key: getattr(self, key) for key in self.head_arguments},
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)

    def __call__(self, inputs, *args, **kwargs):
        """Calls the model on a dict of inputs, selected by name: a dataset's batch (inputs and labels together)
        works as it is. Keras would map a dict with more keys than the model's inputs onto the inputs by position,
        putting labels in input slots (on a GPU, where an out-of-range gather returns zeros, silently)."""
        if isinstance(inputs, dict) and tuple(inputs) != self.input_names_used:
            missing = [name for name in self.input_names_used if name not in inputs]
            if missing:
                raise UserInputError(
                    f"{type(self).__name__} needs the input(s) {', '.join(missing)}. Received: {', '.join(inputs)}"
                )
            inputs = {name: inputs[name] for name in self.input_names_used}
        return super().__call__(inputs, *args, **kwargs)

    # ---------------------------------------------------------------- training

    def compile(self, optimizer="adam", gradient_accumulation_steps=1, max_grad_norm=1.0, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer (e.g. `keras_albert.optimizers.LAMB`), possibly a `LossScaleOptimizer`.
                Its own `gradient_accumulation_steps` and clipping must be unset: both are done here.
            gradient_accumulation_steps: int. Micro-batches per optimizer update; every per-replica batch the
                dataset yields holds all of them.
            max_grad_norm: float or None. Clip the global gradient norm (after the cross-replica reduction).
            **kwargs: passed to `keras.Model.compile` (`jit_compile`, `steps_per_execution`, ...). A `loss` is
                not accepted: the task defines its own.
        """
        if int(gradient_accumulation_steps) < 1:
            raise UserInputError(
                f"`gradient_accumulation_steps` must be >= 1. Received: {gradient_accumulation_steps}"
            )
        if "loss" in kwargs:
            raise UserInputError(f"{type(self).__name__} computes its own loss; do not pass `loss` to compile().")
        optimizer = keras.optimizers.get(optimizer)
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        if getattr(inner, "gradient_accumulation_steps", None):
            raise UserInputError(
                "Set gradient accumulation with `model.compile(gradient_accumulation_steps=N)`, not on the "
                "optimizer (Keras' own accumulation breaks under tf.distribute and feeds micro-steps to schedules)."
            )
        if any(getattr(inner, name, None) for name in ("clipnorm", "clipvalue", "global_clipnorm")):
            raise UserInputError(
                "Set clipping with `model.compile(max_grad_norm=...)`, which clips after the cross-replica "
                "reduction; the optimizer's clipnorm/clipvalue/global_clipnorm must be unset."
            )
        super().compile(optimizer=optimizer, **kwargs)
        _disable_optimizer_all_reduce(self.optimizer)
        self.gradient_accumulation_steps = int(gradient_accumulation_steps)
        self.max_grad_norm = max_grad_norm
        self.nonfinite_guard  # its variables are made here, not while the train step is traced

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; under Horovod, every rank first takes rank 0's model and optimizer state, so ranks
        that were initialised (or restored) differently train as one model."""
        if distribute.horovod_module() is not None:
            if self.compiled and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)
            variables = list(self.variables) + (list(self.optimizer.variables) if self.compiled else [])
            distribute.horovod_broadcast_from_rank_0(variables)
        return super().fit(*args, **kwargs)

    def get_compile_config(self):
        config = super().get_compile_config() or {}
        if self.compiled:
            config.update(
                gradient_accumulation_steps=self.gradient_accumulation_steps, max_grad_norm=self.max_grad_norm
            )
        return config

    def compile_from_config(self, config):
        config = dict(config)
        optimizer = keras.optimizers.deserialize(config.pop("optimizer"))
        known = ("gradient_accumulation_steps", "max_grad_norm", "jit_compile", "steps_per_execution")
        self.compile(optimizer=optimizer, **{key: config[key] for key in known if key in config})
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _make_trackers(self):
        names = ["loss", *self.metric_names, "learning_rate", "grad_norm", "loss_scale", "nonfinite_steps"]
        trackers = {}
        for name in names:
            tracker = keras.metrics.Sum(name=name) if name == "nonfinite_steps" else keras.metrics.Mean(name=name)
            trackers[name] = tracker
        return trackers

    @property
    def trackers(self):
        if self._trackers is None:
            self._trackers = self._make_trackers()
        return self._trackers

    @property
    def nonfinite_guard(self):
        """The `NonFiniteGuard` of this model: `.streak` (updates skipped in a row) and `.last_finite_loss`."""
        if self._nonfinite_guard is None:
            self._nonfinite_guard = NonFiniteGuard()
        return self._nonfinite_guard

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _model_inputs(self, data):
        return {key: data[key] for key in self.input_names_used}

    def _accumulate(self, data, training):
        """Runs the micro-batches.

        Returns (gradients as {variable index: all-reduced sum} or None, global sums of the numerators, global
        denominators).
        """
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        data = {key: tf.convert_to_tensor(value) for key, value in {**x, **(y or {})}.items()}
        n = self.gradient_accumulation_steps if training else 1
        denominators = dict(zip(self.denominator_names, _all_reduce_sum(list(self._local_denominators(data)))))
        variables = self.trainable_variables
        unused = set()  # indices of variables the loss does not reach (e.g. a switched-off head), found at trace
        scale_loss = self.optimizer.scale_loss if training else (lambda loss: loss)

        split = _split_micro_batches(data, n) if n > 1 else None

        def micro_step(i, grads, sums):
            micro = {key: value[i] for key, value in split.items()} if n > 1 else data
            if training:
                with tf.GradientTape() as tape:
                    outputs = self(self._model_inputs(micro), training=True)
                    terms = self._loss_terms(micro, outputs)
                    loss = self._loss_from_terms(terms, denominators)
                    scaled = scale_loss(loss)
                new_grads = tape.gradient(scaled, variables)
                unused.update(k for k, g in enumerate(new_grads) if g is None)
                if n == 1:  # one micro-batch: its gradients are the sums, with no buffers to add them to
                    grads = [None if ng is None else _densify(ng) for ng in new_grads]
                else:
                    grads = [g if ng is None else g + _densify(ng) for g, ng in zip(grads, new_grads)]
            else:
                outputs = self(self._model_inputs(micro), training=False)
                terms = self._loss_terms(micro, outputs)
            sums = [s + tf.cast(terms[name], tf.float32) for s, name in zip(sums, self.numerator_names)]
            return i + 1, grads, sums

        grads = [tf.zeros_like(v.value) for v in variables] if training and n > 1 else []
        sums = [tf.zeros((), tf.float32) for _ in self.numerator_names]
        if n == 1:
            _, grads, sums = micro_step(tf.constant(0), grads, sums)
        else:
            _, grads, sums = tf.while_loop(
                lambda i, *_: i < n, micro_step, (tf.constant(0), grads, sums), parallel_iterations=1
            )
        sums = dict(zip(self.numerator_names, _all_reduce_sum(sums)))
        if training:
            used = [k for k in range(len(variables)) if k not in unused]
            grads = dict(zip(used, _all_reduce_sum([grads[k] for k in used], gradients=True)))
        return grads, sums, denominators

    def _update_trackers(self, sums, denominators):
        loss = self._loss_from_terms(sums, denominators)
        self.trackers["loss"].update_state(loss)
        for name, (numerator, denominator) in self.metric_names.items():
            self.trackers[name].update_state(sums[numerator] / tf.maximum(denominators[denominator], 1e-9))

    def _logs(self, names):
        return {name: self.trackers[name].result() for name in names}

    def train_step(self, data):
        grads, sums, denominators = self._accumulate(data, training=True)
        optimizer = self.optimizer
        scale = getattr(optimizer, "dynamic_scale", None)
        scale = tf.cast(scale, tf.float32) if scale is not None else tf.constant(1.0)
        grad_norm = tf.linalg.global_norm(list(grads.values())) / scale
        if self.max_grad_norm:
            factor = tf.minimum(1.0, self.max_grad_norm / tf.maximum(grad_norm, 1e-12))
            grads = {k: g * tf.cast(factor, g.dtype) for k, g in grads.items()}
        loss = self._loss_from_terms(sums, denominators)
        # An update whose gradients or loss are not finite (in any precision) is skipped and counted; the training
        # loop stops a run after too many in a row.
        finite = tf.logical_and(tf.math.is_finite(grad_norm), tf.math.is_finite(loss))
        learning_rate = optimizer.learning_rate
        variables = self.trainable_variables
        _apply_when_finite(optimizer, list(grads.values()), [variables[k] for k in grads], finite)
        self.nonfinite_guard.update_state(finite, loss)

        self._update_trackers(sums, denominators)
        self.trackers["learning_rate"].update_state(learning_rate)
        self.trackers["grad_norm"].update_state(grad_norm)
        self.trackers["loss_scale"].update_state(scale)
        self.trackers["nonfinite_steps"].update_state(tf.cast(tf.logical_not(finite), tf.float32))
        names = ["loss", *self.metric_names, "learning_rate", "grad_norm", "nonfinite_steps"]
        if hasattr(optimizer, "dynamic_scale"):
            names += ["loss_scale"]
        return self._logs(names)

    def test_step(self, data):
        _, sums, denominators = self._accumulate(data, training=False)
        self._update_trackers(sums, denominators)
        return self._logs(["loss", *self.metric_names])

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        return self(self._model_inputs(x), training=False)
