"""The log lines of a run (on stderr without breaking a progress bar, and in a file of the run directory) and its
metrics file (`metrics.jsonl`: training and validation values, one JSON object a line)."""

import contextlib
import logging
import os
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


METRICS_FILE = "metrics.jsonl"


def read_metrics(path, split=None):
    """The records of a run's `metrics.jsonl` (one dict a line: `step`, `split` and the values), in file order;
    only those of `split` ("train" or "validation") when given. A line cut short by a crash is left out."""
    import json

    records = []
    if not os.path.isfile(path):
        return records
    with open(path, encoding="utf-8") as file:
        for line in file:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int):
                if split is None or record.get("split") == split:
                    records.append(record)
    return records


class MetricsFile:
    """A run's `metrics.jsonl`: one JSON object a line, `{"step": 100, "split": "train", "loss": 7.01, ...}`.

    Only the chief writes (`enabled`). `start(step)` is called when training (re)starts at `step`: the lines of later
    steps (written after the checkpoint the run resumes from, by a run that then died) are dropped (the file is
    republished whole, atomically), so a resumed run appends without repeating a step. Each line is flushed as it is
    written; a line cut short by a crash is dropped at the next start.

    Args:
        path: str. The file (`output_dir/metrics.jsonl`).
        enabled: bool. False on workers other than the chief, which write nothing.
    """

    def __init__(self, path, enabled=True):
        self.path = os.fspath(path)
        self.enabled = enabled
        self._file = None

    def start(self, step):
        if not self.enabled:
            return
        import json

        from keras_albert import io

        self.close()
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as file:
                text = file.read()
            kept = [record for record in read_metrics(self.path) if record["step"] <= step]
            new_text = "".join(json.dumps(record) + "\n" for record in kept)
            if new_text != text:
                io.write_text(self.path, new_text)
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, step, split, values):
        """Appends one line: `step`, `split`, then the numeric `values` (as floats; others are left out)."""
        if not self.enabled:
            return
        import json
        import math

        if self._file is None:
            self.start(step - 1)
        record = {"step": int(step), "split": split}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or key in record:
                continue
            record[key] = float(value) if math.isfinite(value) else str(value)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
