"""The log lines of a run: on stderr (without breaking a progress bar) and in a file of the run directory."""

import contextlib
import logging
import sys

logger = logging.getLogger("keras_albert")


class _TqdmHandler(logging.Handler):
    """Log lines that do not break a tqdm progress bar."""

    def emit(self, record):
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def configure_logging(is_chief=True):
    """INFO lines of the `keras_albert` logger on stderr (warnings only on other workers than the chief)."""
    if not any(isinstance(handler, _TqdmHandler) for handler in logger.handlers):
        handler = _TqdmHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if is_chief else logging.WARNING)
    logger.propagate = False


@contextlib.contextmanager
def log_to_file(path, enabled=True):
    """Inside the block, the `keras_albert` logger's lines are also appended to `path` (when `enabled`)."""
    if not enabled:
        yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
