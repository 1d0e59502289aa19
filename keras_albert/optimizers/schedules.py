"""Linear warmup then polynomial decay: the learning-rate schedule of the 2020 reference."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_albert")
class WarmupPolyDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `learning_rate`, then polynomial decay to `end_learning_rate` at `total_steps`.

    The reference's `LinearWarmupPolyDecaySchedule` (aws-samples/deep-learning-models,
    `models/nlp/common/learning_rate_schedules.py`), with the same values at every step up to `total_steps`:

    ```
    step <= warmup_steps:  learning_rate * step / max(1, warmup_steps)
    otherwise:             (learning_rate - end_learning_rate)
                               * ((total_steps - step) / max(1, total_steps - warmup_steps)) ** power
                           + end_learning_rate
    ```

    `step` is the optimizer's `iterations`, i.e. optimizer updates, not micro-batches (the models accumulate
    micro-batches inside one `train_step`). As in the reference the rate is 0 at step 0, even when
    `warmup_steps=0`. Past `total_steps` it stays at `end_learning_rate` (the reference's formula would go below it).

    Args:
        learning_rate: float. Peak learning rate, reached at `warmup_steps`.
        warmup_steps: int. Number of updates of the linear warmup.
        total_steps: int. Update at which the decay reaches `end_learning_rate`.
        end_learning_rate: float. Final learning rate.
        power: float. Exponent of the polynomial decay (1.0 is linear).

    Example:
    ```python
    from keras_albert.optimizers import WarmupPolyDecay

    schedule = WarmupPolyDecay(0.00176, warmup_steps=3125, total_steps=125000, end_learning_rate=3e-5)
    float(schedule(3125))  # 0.00176
    ```
    """

    def __init__(self, learning_rate, warmup_steps, total_steps, end_learning_rate=0.0, power=1.0):
        if int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be an integer >= 0. Received: warmup_steps={warmup_steps}")
        if int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"`total_steps` must be an integer >= 1. Received: total_steps={total_steps}")
        if warmup_steps > total_steps:
            raise ValueError(
                "`warmup_steps` must not exceed `total_steps`. "
                f"Received: warmup_steps={warmup_steps}, total_steps={total_steps}"
            )
        if power <= 0:
            raise ValueError(f"`power` must be > 0. Received: power={power}")
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.end_learning_rate = float(end_learning_rate)
        self.power = float(power)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.learning_rate
        end = self.end_learning_rate
        warmup = peak * step / float(max(1, self.warmup_steps))
        remaining = (self.total_steps - step) / float(max(1, self.total_steps - self.warmup_steps))
        remaining = ops.clip(remaining, 0.0, 1.0)
        decay = (peak - end) * ops.power(remaining, self.power) + end
        return ops.where(step <= float(self.warmup_steps), warmup, decay)

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
        }
