"""The one reader of the `summary.json` that `create-pretraining-data` writes beside its shards.

Training reads a data directory's facts (sequence lengths, model type, vocabulary size, tokenizer) from here and
nowhere else; each fact is `None` when the summary does not record it (records written by another tool).
"""

import dataclasses
import os

from keras_albert import io
from keras_albert.errors import UserInputError

SUMMARY_FILE = "summary.json"


@dataclasses.dataclass(frozen=True)
class DataSummary:
    """What a pretraining-data directory says about its records.

    Args:
        path: str. The summary file, or None when the directory has none.
        model_type: str. "albert" (sentence-order labels) or "bert" (next-sentence labels).
        max_seq_length: int. Tokens per record.
        max_predictions_per_seq: int. Masked positions per record.
        vocab_size: int. The tokenizer's vocabulary size.
        tokenizer: str. The tokenizer directory as recorded, resolved against the data directory when it exists
            there.
        tokenizer_sha256: str. SHA-256 of the tokenizer's model file (`spiece.model` / `vocab.txt`).
        raw: dict. The whole summary, for fields without a typed accessor.
    """

    path: str = None
    model_type: str = None
    max_seq_length: int = None
    max_predictions_per_seq: int = None
    vocab_size: int = None
    tokenizer: str = None
    tokenizer_sha256: str = None
    raw: dict = dataclasses.field(default_factory=dict)


def _field(summary, name):
    settings = summary.get("settings") if isinstance(summary.get("settings"), dict) else {}
    return summary.get(name, settings.get(name))


def _resolve_tokenizer(recorded, data_dir):
    if not isinstance(recorded, str) or not recorded:
        return None
    for candidate in (recorded, os.path.join(data_dir, recorded)):
        if os.path.exists(candidate):
            return candidate
    return recorded


def read_data_summary(data_dir):
    """The `DataSummary` of the records in `data_dir` (an empty one when it holds no summary.json).

    Raises:
        UserInputError: naming the file, when summary.json exists but is not a JSON object or a field has the
            wrong type.
    """
    path = os.path.join(data_dir, SUMMARY_FILE)
    if not os.path.isfile(path):
        return DataSummary()
    summary = io.read_json(path, what="summary")
    if not isinstance(summary, dict):
        raise UserInputError(f"{path}: expected a JSON object, found {type(summary).__name__}")
    values = {}
    for name in ("max_seq_length", "max_predictions_per_seq", "vocab_size"):
        value = _field(summary, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserInputError(f"{path}: field {name!r} must be an integer >= 1, found {value!r}")
        values[name] = value
    for name in ("model_type", "tokenizer_sha256"):
        value = _field(summary, name)
        if value is not None and not isinstance(value, str):
            raise UserInputError(f"{path}: field {name!r} must be a string, found {value!r}")
        values[name] = value
    return DataSummary(
        path=path, tokenizer=_resolve_tokenizer(_field(summary, "tokenizer"), data_dir), raw=summary, **values
    )


def read_records_summary(files):
    """The `DataSummary` of records that may come from several directories: that of the first file's directory,
    after checking that every directory's summary agrees with it on the records' shapes and tokenizer.

    Raises:
        UserInputError: naming both summary files, when two directories' records differ in `max_seq_length`,
            `max_predictions_per_seq`, `vocab_size` or `tokenizer_sha256`.
    """
    directories = list(dict.fromkeys(os.path.dirname(path) for path in files))
    first = read_data_summary(directories[0]) if directories else DataSummary()
    for directory in directories[1:]:
        other = read_data_summary(directory)
        if not other.path or not first.path:
            continue
        for field in ("max_seq_length", "max_predictions_per_seq", "vocab_size", "tokenizer_sha256"):
            mine, theirs = getattr(first, field), getattr(other, field)
            if mine is not None and theirs is not None and mine != theirs:
                raise UserInputError(
                    f"{other.path}: records of mixed {field}: {theirs} here, {mine} in {first.path}"
                )
    return first
