"""AdamW as BERT uses it: Adam with decoupled weight decay and regex exclusions on variable paths."""

import keras
from keras import ops

from keras_albert.optimizers.base import AdamWithDecay


@keras.saving.register_keras_serializable(package="keras_albert")
class AdamW(AdamWithDecay):
    """Adam with decoupled weight decay, excluding variables by regexes on their full paths.

    The "AdamWeightDecay" of BERT (Devlin et al., 2018, https://arxiv.org/abs/1810.04805) and of the 2020 reference's
    `--optimizer=adamw`; the decay is decoupled as in Loshchilov & Hutter, "Decoupled Weight Decay Regularization"
    (https://arxiv.org/abs/1711.05101).
    For each variable `w` with gradient `g` at update `t` (1-based):

    ```
    m = beta_1 * m + (1 - beta_1) * g            v = beta_2 * v + (1 - beta_2) * g**2
    m_hat = m / (1 - beta_1**t)                  v_hat = v / (1 - beta_2**t)     (m, v when bias_correction=False)
    w -= learning_rate * (m_hat / (sqrt(v_hat) + epsilon) + weight_decay * w)
    ```

    The decay term is skipped for variables whose path matches `exclude_from_weight_decay` (`re.search` on the full
    path, e.g. `.../self_attention_layer_norm/gamma`). Bias correction is on by default: the 2020 reference's AdamW
    was transformers' `AdamWeightDecay`, Keras' Adam (bias-corrected) plus this decay. Google's original BERT
    `AdamWeightDecayOptimizer` has no bias correction; `bias_correction=False` reproduces it exactly. With
    correction, the first updates are not shrunk by `1 - beta**t`, so warmup alone sets the early step size.

    Args:
        learning_rate: float, `keras.optimizers.schedules.LearningRateSchedule` or callable. The learning rate.
        beta_1: float. Decay rate of the first-moment estimate.
        beta_2: float. Decay rate of the second-moment estimate.
        epsilon: float. Added to the square root of the second moment.
        weight_decay: float. Decoupled decay rate, multiplied by the learning rate (`weight_decay_rate` is accepted
            as an alias).
        exclude_from_weight_decay: list of str or None. Regexes of variable paths that get no weight decay.
        bias_correction: bool. Divide the moments by `1 - beta**t` (True) or not (Google BERT's form).
        name: str. Name of the optimizer (prefix of its variables).
        **kwargs: other `keras.optimizers.Optimizer` arguments (`clipnorm`, `global_clipnorm`, `use_ema`, ...).

    Example:
    ```python
    from keras_albert.optimizers import AdamW, WarmupPolyDecay, EXCLUDE_FROM_WEIGHT_DECAY

    optimizer = AdamW(
        learning_rate=WarmupPolyDecay(3e-5, warmup_steps=814, total_steps=8144),
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
        bias_correction=True,
        name="AdamW",
        **kwargs,
    ):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, weight_decay, exclude_from_weight_decay, name,
                         **kwargs)
        self.bias_correction = bool(bias_correction)

    def update_step(self, gradient, variable, learning_rate):
        update = self.adam_update(gradient, variable, bias_correction=self.bias_correction)
        self.assign_sub(variable, ops.cast(learning_rate, variable.dtype) * update)

    def get_config(self):
        return {**super().get_config(), "bias_correction": self.bias_correction}
