"""Stopping a run that diverges, and never saving non-finite weights.

The train step skips an update whose loss or gradients are not finite (`keras_albert.models.task.NonFiniteGuard`
counts the updates skipped in a row and keeps the last finite loss). `StopOnNonFinite` ends the run once
`max_nonfinite_steps` updates in a row were skipped; `check_finite` is called before every checkpoint and final model
is written, so a save never publishes a non-finite weight and checkpoint rotation never deletes the last good
checkpoint. Both raise `RunDiverged` with one line naming the step and the last finite loss. The guard's values are
all-reduced in the train step, so every worker raises at the same step.
"""

import math

import keras
import numpy as np

from keras_albert.errors import RunDiverged
from keras_albert.training.validation import name


def _advice():
    return (f"check the records, or resume from the latest checkpoint with a lower {name('learning_rate')} and "
            f"{name('allow_changed_settings')}")


def last_finite_loss(model):
    guard = getattr(model, "nonfinite_guard", None)
    value = float(keras.ops.convert_to_numpy(guard.last_finite_loss)) if guard is not None else math.nan
    return "none yet" if math.isnan(value) else f"{value:.6g}"


def nonfinite_weights(model):
    """Paths of the model's floating-point weights holding a NaN or an infinity."""
    bad = []
    for variable in model.weights:
        if not np.issubdtype(np.dtype(variable.dtype), np.floating):
            continue
        if not np.isfinite(keras.ops.convert_to_numpy(variable)).all():
            bad.append(variable.path)
    return bad


def check_finite(model, step, what):
    """Raises `RunDiverged` if a weight of `model` is not finite; `what` names what would have been written."""
    bad = nonfinite_weights(model)
    if bad:
        raise RunDiverged(
            f"step {step}: {len(bad)} weight(s) are not finite ({bad[0]}{', ...' if len(bad) > 1 else ''}); "
            f"{what} not written (last finite loss {last_finite_loss(model)}); {_advice()}"
        )


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises `RunDiverged` after `max_steps` updates in a row were skipped as non-finite.

    Args:
        max_steps: int. Skipped updates in a row that end the run.
        initial_step: int. Steps done before this `fit` (a resumed run).
    """

    def __init__(self, max_steps, initial_step=0):
        super().__init__()
        self.max_steps = int(max_steps)
        self.initial_step = int(initial_step)

    def on_train_batch_end(self, batch, logs=None):
        streak = int(keras.ops.convert_to_numpy(self.model.nonfinite_guard.streak))
        if streak >= self.max_steps:
            step = self.initial_step + int(batch) + 1
            raise RunDiverged(
                f"step {step}: {streak} updates in a row had a non-finite loss or gradients and were skipped "
                f"(last finite loss {last_finite_loss(self.model)}); {_advice()}"
            )
