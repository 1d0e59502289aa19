"""LAMB: layer-wise adaptive moments, with ALBERT's weight-decay and layer-adaptation exclusions."""

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


@keras.saving.register_keras_serializable(package="keras_albert")
class LAMB(keras.optimizers.Optimizer):
    """LAMB optimizer with TensorFlow Addons' update rule, as ALBERT was pretrained with.

    Layer-wise Adaptive Moments for Batch training (You et al., 2019, "Large Batch Optimization for Deep Learning:
    Training BERT in 76 minutes", https://arxiv.org/abs/1904.00962), exactly as `tfa.optimizers.LAMB` computes it.
    For each variable `w` with gradient `g` at update `t` (1-based):

    ```
    m = beta_1 * m + (1 - beta_1) * g            v = beta_2 * v + (1 - beta_2) * g**2
    update = (m / (1 - beta_1**t)) / (sqrt(v / (1 - beta_2**t)) + epsilon)
    update += weight_decay * w                   unless w's path matches `exclude_from_weight_decay`
    ratio = ||w|| / ||update|| if both norms > 0 else 1   (1 if w's path matches `exclude_from_layer_adaptation`)
    w -= learning_rate * ratio * update
    ```

    Unlike `keras.optimizers.Lamb`, the weight decay is added to the update before the trust ratio (not decoupled),
    and the exclusions are regular expressions searched (`re.search`) in each variable's full path, e.g.
    `pretraining_model/albert_backbone/transformer_layer_0/self_attention_layer_norm/gamma`, so `"layer_norm"` and
    `"bias"` reach every LayerNorm parameter and bias. Gradients given as `tf.IndexedSlices` are densified.
    Keras' own `weight_decay` mechanism is not used.

    Args:
        learning_rate: float, `keras.optimizers.schedules.LearningRateSchedule` or callable. The learning rate.
        beta_1: float. Decay rate of the first-moment estimate.
        beta_2: float. Decay rate of the second-moment estimate.
        epsilon: float. Added to the square root of the second moment.
        weight_decay: float. Rate of the L2 decay added to the update (TF Addons' `weight_decay_rate`, accepted as
            an alias).
        exclude_from_weight_decay: list of str or None. Regexes of variable paths that get no weight decay.
        exclude_from_layer_adaptation: list of str or None. Regexes of variable paths whose trust ratio is 1.
            `None` means the same list as `exclude_from_weight_decay` (TF Addons' default).
        name: str. Name of the optimizer (prefix of its variables).
        **kwargs: other `keras.optimizers.Optimizer` arguments (`clipnorm`, `global_clipnorm`, `use_ema`, ...).

    Example:
    ```python
    import keras
    from keras_albert.optimizers import LAMB, WarmupPolyDecay, EXCLUDE_FROM_WEIGHT_DECAY

    optimizer = LAMB(
        learning_rate=WarmupPolyDecay(0.00176, warmup_steps=3125, total_steps=125000),
        weight_decay=0.01,
        exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY),
    )
    ```
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        weight_decay=0.0,
        exclude_from_weight_decay=None,
        exclude_from_layer_adaptation=None,
        name="LAMB",
        **kwargs,
    ):
        weight_decay = resolve_weight_decay(weight_decay, kwargs)
        # Keras' `weight_decay` argument would add a second, decoupled decay: it stays None in the base class.
        super().__init__(learning_rate=as_learning_rate(learning_rate), name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.weight_decay = weight_decay
        self.exclude_from_weight_decay = check_patterns(exclude_from_weight_decay, "exclude_from_weight_decay")
        self.exclude_from_layer_adaptation = check_patterns(
            exclude_from_layer_adaptation, "exclude_from_layer_adaptation"
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        # `update_step` may receive the backend variable, which has no `.path`: decide here, look up by index there.
        adaptation_patterns = (
            self.exclude_from_weight_decay
            if self.exclude_from_layer_adaptation is None
            else self.exclude_from_layer_adaptation
        )
        paths = [variable_path(variable) for variable in var_list]
        self._use_weight_decay_by_index = tuple(not matches_any(self.exclude_from_weight_decay, p) for p in paths)
        self._use_layer_adaptation_by_index = tuple(not matches_any(adaptation_patterns, p) for p in paths)

    def _apply_weight_decay(self, variables):
        # The decay is part of the LAMB update (before the trust ratio), applied in `update_step`.
        return

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        gradient = ops.cast(dense_gradient(gradient), dtype)
        learning_rate = ops.cast(learning_rate, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        beta_1 = ops.cast(self.beta_1, dtype)
        beta_2 = ops.cast(self.beta_2, dtype)

        m = self._momentums[index]
        v = self._velocities[index]
        new_m = beta_1 * m + (1.0 - beta_1) * gradient
        new_v = beta_2 * v + (1.0 - beta_2) * ops.square(gradient)
        self.assign(m, new_m)
        self.assign(v, new_v)

        m_hat = new_m / (1.0 - ops.power(beta_1, step))
        v_hat = new_v / (1.0 - ops.power(beta_2, step))
        update = m_hat / (ops.sqrt(v_hat) + ops.cast(self.epsilon, dtype))
        if self._use_weight_decay_by_index[index]:
            update = update + ops.cast(self.weight_decay, dtype) * variable

        if self._use_layer_adaptation_by_index[index]:
            weight_norm = ops.sqrt(ops.sum(ops.square(variable)))
            update_norm = ops.sqrt(ops.sum(ops.square(update)))
            safe_update_norm = ops.where(update_norm > 0, update_norm, ops.ones_like(update_norm))
            ratio = ops.where(
                ops.logical_and(weight_norm > 0, update_norm > 0),
                weight_norm / safe_update_norm,
                ops.ones_like(weight_norm),
            )
            update = ratio * update
        self.assign_sub(variable, learning_rate * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "weight_decay": self.weight_decay,
                "exclude_from_weight_decay": _as_list(self.exclude_from_weight_decay),
                "exclude_from_layer_adaptation": _as_list(self.exclude_from_layer_adaptation),
            }
        )
        return config


def _as_list(patterns):
    return None if patterns is None else list(patterns)
