"""What LAMB and AdamW share: Adam moments, a weight decay added to the update, and exclusions by variable path."""

import re

import keras
import tensorflow as tf
from keras import ops

# The exclusion list of ALBERT, BERT and the 2020 reference: no weight decay on LayerNorm parameters nor biases.
EXCLUDE_FROM_WEIGHT_DECAY = ("LayerNorm", "layer_norm", "bias")


def check_patterns(patterns, argument):
    """Validates a list of regexes given for `argument`; returns it as a tuple (or None)."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        raise ValueError(
            f"`{argument}` must be a list of regular expressions, not a single string. "
            f"Received: {argument}={patterns!r}; did you mean [{patterns!r}]?"
        )
    patterns = tuple(patterns)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as error:
            raise ValueError(
                f"`{argument}` holds an invalid regular expression {pattern!r}: {error}"
            ) from None
    return patterns


def matches_any(patterns, path):
    """True when one of `patterns` is found (`re.search`) in the variable path `path`."""
    return any(re.search(pattern, path) is not None for pattern in patterns or ())


def variable_path(variable):
    """The full path of a Keras variable (`model/layer/.../kernel`), or the name of a raw backend variable."""
    return getattr(variable, "path", None) or variable.name


def dense_gradient(gradient):
    """Embedding gradients arrive as `tf.IndexedSlices`; moments and norms need the dense tensor (duplicates summed)."""
    if isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


def as_learning_rate(learning_rate):
    # Keras' base optimizer accepts floats, schedules and callables, but rejects a plain int such as 1.
    if isinstance(learning_rate, int) and not isinstance(learning_rate, bool):
        return float(learning_rate)
    return learning_rate


def resolve_weight_decay(weight_decay, kwargs):
    """Returns the weight-decay rate given as `weight_decay` or as TF Addons' older name `weight_decay_rate`."""
    if "weight_decay_rate" in kwargs:
        rate = kwargs.pop("weight_decay_rate")
        if weight_decay not in (None, 0.0) and rate != weight_decay:
            raise ValueError(
                "Pass the weight-decay rate once, as `weight_decay` (or its alias `weight_decay_rate`). "
                f"Received: weight_decay={weight_decay}, weight_decay_rate={rate}"
            )
        weight_decay = rate
    weight_decay = 0.0 if weight_decay is None else float(weight_decay)
    if weight_decay < 0:
        raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay}")
    return weight_decay


def adam_direction(gradient, m, v, variable, step, beta_1, beta_2, epsilon, weight_decay, bias_correction=True):
    """One Adam update of the moments and its direction, as pure tensors of the variable's dtype: `(new_m, new_v,
    m_hat / (sqrt(v_hat) + epsilon) + weight_decay * variable)`, with no decay term when `weight_decay` is None
    and `new_m`, `new_v` in place of `m_hat`, `v_hat` without bias correction. `AdamWithDecay.adam_update` and
    LAMB's XLA-compiled step both compute it."""
    new_m = beta_1 * m + (1.0 - beta_1) * gradient
    new_v = beta_2 * v + (1.0 - beta_2) * ops.square(gradient)
    m_hat, v_hat = new_m, new_v
    if bias_correction:
        m_hat = new_m / (1.0 - ops.power(beta_1, step))
        v_hat = new_v / (1.0 - ops.power(beta_2, step))
    update = m_hat / (ops.sqrt(v_hat) + epsilon)
    if weight_decay is not None:
        update = update + weight_decay * variable
    return new_m, new_v, update


class AdamWithDecay(keras.optimizers.Optimizer):
    """Adam moments plus a weight decay that is part of the update, skipped for variables whose full path matches
    `exclude_from_weight_decay`. Subclasses turn `adam_update(...)` into the change of the variable.

    Keras' own `weight_decay` argument is never passed to the base class: it would decay every variable (its
    exclusions match leaf names only), decoupled from the update.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        weight_decay=0.0,
        exclude_from_weight_decay=None,
        name=None,
        **kwargs,
    ):
        weight_decay = resolve_weight_decay(weight_decay, kwargs)
        super().__init__(learning_rate=as_learning_rate(learning_rate), name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.exclude_from_weight_decay = check_patterns(exclude_from_weight_decay, "exclude_from_weight_decay")

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        # `update_step` may receive the backend variable, which has no `.path`: decide here, look up by index there.
        self._paths = [variable_path(variable) for variable in var_list]
        self._use_weight_decay_by_index = tuple(
            not matches_any(self.exclude_from_weight_decay, path) for path in self._paths
        )

    def _apply_weight_decay(self, variables):
        # The decay is part of the update, applied in `update_step` with the path exclusions.
        return

    def adam_update(self, gradient, variable, bias_correction=True):
        """Updates the moments; returns `m_hat / (sqrt(v_hat) + epsilon) + weight_decay * w` (no decay term for an
        excluded variable; `m`, `v` in place of `m_hat`, `v_hat` without bias correction)."""
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        m = self._momentums[index]
        v = self._velocities[index]
        decay = ops.cast(self.weight_decay, dtype) if self._use_weight_decay_by_index[index] else None
        new_m, new_v, update = adam_direction(
            ops.cast(dense_gradient(gradient), dtype), m, v, variable, ops.cast(self.iterations + 1, dtype),
            ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype), ops.cast(self.epsilon, dtype), decay,
            bias_correction,
        )
        self.assign(m, new_m)
        self.assign(v, new_v)
        return update

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "weight_decay": self.weight_decay,
                "exclude_from_weight_decay": as_list(self.exclude_from_weight_decay),
            }
        )
        return config


def as_list(patterns):
    return None if patterns is None else list(patterns)
