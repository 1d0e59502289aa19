"""Terminating signals raised as an exception in the main thread, so that every `finally` (the clean-up) runs.

    with signals.raising():   # SIGTERM, SIGHUP, ... raise `Terminated` here
        ...                   # long work that calls `signals.check()` at safe points

A signal handler that raises can have its exception swallowed: Python runs the handler at the next bytecode of the
main thread, and when that bytecode belongs to a finalizer (`__del__`: "Exception ignored in ...") or to Python code
that C calls and whose error it clears (TensorFlow's fast path calls `TensorShape.__len__`), the exception dies
there and the work goes on as if no signal had come: a `create-pretraining-data` asked to stop ran to the end and
exited 0 (seen with a `tfds:` input, about one SIGTERM in twenty on a loaded machine). So the handler also records
the signal, and `check()`, called by long loops between items of work, raises it again. Code that runs only while
an exception unwinds (`finally`, `except`) must not call `check()`; anywhere else, reaching it means the handler's
exception did not get through.
"""

import contextlib
import signal

# SIGINT already raises KeyboardInterrupt.
TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")

_received = None  # the signal number, inside `raising()`, once one has come


class Terminated(BaseException):
    """A terminating signal, raised in the main thread so that every `finally` runs."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def raising():
    """Within the block, a terminating signal raises `Terminated` (and `check()` raises it again if that was
    swallowed); a second signal acts as the default (it ends the process, clean-up or not)."""
    global _received
    numbers = [getattr(signal, name) for name in TERMINATING_SIGNALS if hasattr(signal, name)]

    def raise_terminated(signum, frame):
        global _received
        for number in numbers:
            signal.signal(number, signal.SIG_DFL)
        _received = signum
        raise Terminated(signum)

    previous = {number: signal.signal(number, raise_terminated) for number in numbers}
    try:
        yield
    finally:
        _received = None
        for number, handler in previous.items():
            signal.signal(number, handler)


def check():
    """Raises `Terminated` if a terminating signal has come within `raising()`: its handler's exception was
    swallowed, since the code calling this runs on. A no-op otherwise (and outside `raising()`)."""
    if _received is not None:
        raise Terminated(_received)
