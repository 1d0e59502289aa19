"""The one exception type for a user's mistake.

Library code raises `UserInputError` (a `ValueError`) when a file, field or flag is wrong; the `keras-albert`
command turns it into a one-line message and a non-zero exit instead of a traceback.
"""


class UserInputError(ValueError):
    """Bad input from the user: a path, a field of a file, or a flag. The message names which."""


class RunDiverged(RuntimeError):
    """A training run that cannot go on: its updates stay non-finite, or its weights are. The message names the step
    and the last finite loss; the `keras-albert` command prints it as one line and exits 1."""
