"""LAMB: layer-wise adaptive moments, with ALBERT's weight-decay and layer-adaptation exclusions."""

import keras
import tensorflow as tf

from keras_albert.optimizers.base import (  # noqa: F401 (EXCLUDE_FROM_WEIGHT_DECAY is public here)
    EXCLUDE_FROM_WEIGHT_DECAY,
    AdamWithDecay,
    adam_direction,
    as_list,
    check_patterns,
    dense_gradient,
    matches_any,
)


@tf.function(jit_compile=True)
def _lamb_step(gradient, m, v, variable, learning_rate, step, beta_1, beta_2, epsilon, weight_decay, adapt):
    """The new `m`, `v` and variable of one LAMB update, compiled with XLA into a few loops over the variable (on a
    CPU the unfused rule is a dozen passes over every parameter). `weight_decay` is 0 for excluded variables."""
    new_m, new_v, update = adam_direction(gradient, m, v, variable, step, beta_1, beta_2, epsilon, weight_decay)
    if adapt:
        weight_norm = tf.sqrt(tf.reduce_sum(tf.square(variable)))
        update_norm = tf.sqrt(tf.reduce_sum(tf.square(update)))
        safe_update_norm = tf.where(update_norm > 0, update_norm, tf.ones_like(update_norm))
        ratio = tf.where(tf.logical_and(weight_norm > 0, update_norm > 0), weight_norm / safe_update_norm,
                         tf.ones_like(weight_norm))
        update = ratio * update
    return new_m, new_v, variable - learning_rate * update


@keras.saving.register_keras_serializable(package="keras_albert")
class LAMB(AdamWithDecay):
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
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, exclude_from_weight_decay, name,
                         **kwargs)
        self.exclude_from_layer_adaptation = check_patterns(
            exclude_from_layer_adaptation, "exclude_from_layer_adaptation"
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        adaptation_patterns = (
            self.exclude_from_weight_decay
            if self.exclude_from_layer_adaptation is None
            else self.exclude_from_layer_adaptation
        )
        self._use_layer_adaptation_by_index = tuple(not matches_any(adaptation_patterns, p) for p in self._paths)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        m, v = self._momentums[index], self._velocities[index]
        decay = self.weight_decay if self._use_weight_decay_by_index[index] else 0.0
        tensors = [dense_gradient(gradient), m, v, variable, learning_rate, self.iterations + 1, self.beta_1,
                   self.beta_2, self.epsilon, decay]
        # Eagerly (an optimizer applied outside a compiled step) the plain function: calling the XLA one with
        # each variable's shape in turn would retrace it for every variable, with TensorFlow's warning.
        step = _lamb_step.python_function if tf.executing_eagerly() else _lamb_step
        new_m, new_v, new_variable = step(
            *[tf.cast(x, dtype) for x in tensors], self._use_layer_adaptation_by_index[index]
        )
        self.assign(m, new_m)
        self.assign(v, new_v)
        self.assign(variable, new_variable)

    def get_config(self):
        return {**super().get_config(), "exclude_from_layer_adaptation": as_list(self.exclude_from_layer_adaptation)}
