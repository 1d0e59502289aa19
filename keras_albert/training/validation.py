"""Checks of run settings, with messages that name a setting the way its caller wrote it.

A setting has one name in two spellings: the field `total_steps` of a settings dataclass, for Python callers, and
the flag `--total_steps` of a command. The checks and every other message of the run layer name settings through
`name(field)`; a command runs inside `flag_names()`, so the same check tells a command-line user
`--total_steps must be an integer >= 1` and a Python caller `total_steps must be an integer >= 1`.

No TensorFlow here: commands check their settings before the tf.distribute strategy exists.
"""

import contextlib
import contextvars
import math

from keras_albert.data.pretraining.settings import MIN_SEQ_LENGTH
from keras_albert.errors import UserInputError

_PREFIX = contextvars.ContextVar("keras_albert_setting_prefix", default="")


@contextlib.contextmanager
def flag_names():
    """Inside the block, messages name settings as command-line flags (`--total_steps`)."""
    token = _PREFIX.set("--")
    try:
        yield
    finally:
        _PREFIX.reset(token)


def name(field):
    """`field` as the caller spells it: `total_steps` from Python, `--total_steps` inside `flag_names()`."""
    return _PREFIX.get() + field


def is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_integer(settings, field, minimum=1, optional=False):
    """`settings.<field>` is an integer >= `minimum` (or None, when `optional`)."""
    value = getattr(settings, field)
    if optional and value is None:
        return
    if not is_integer(value) or value < minimum:
        raise UserInputError(f"{name(field)} must be an integer >= {minimum}. Received: {value!r}")


def check_number(settings, field, minimum, exclusive=False, optional=False, note=""):
    """`settings.<field>` is a finite number >= `minimum` (> `minimum` when `exclusive`)."""
    value = getattr(settings, field)
    if optional and value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not number or value < minimum or (exclusive and value == minimum):
        relation = ">" if exclusive else ">="
        raise UserInputError(f"{name(field)} must be {relation} {minimum}{note}. Received: {value!r}")


def check_choice(settings, field, choices):
    value = getattr(settings, field)
    if value not in choices:
        raise UserInputError(f"{name(field)} must be one of {', '.join(choices)}. Received: {value!r}")


def check_max_seq_length(settings, field="max_seq_length"):
    """The one check of a sequence length, for pretraining records and SQuAD windows alike."""
    check_integer(settings, field, minimum=MIN_SEQ_LENGTH)


def check_warmup_steps(settings, optional=False):
    """`warmup_steps` is an integer from 0 to `total_steps` (when `total_steps` is known)."""
    warmup, total = settings.warmup_steps, settings.total_steps
    if optional and warmup is None:
        return
    if total is None:
        check_integer(settings, "warmup_steps", minimum=0)
    elif not is_integer(warmup) or not 0 <= warmup <= total:
        raise UserInputError(
            f"{name('warmup_steps')} must be an integer from 0 to {name('total_steps')} ({total}). Received: {warmup!r}"
        )
