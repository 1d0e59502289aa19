"""Provenance: the tokenizer a command is given (or finds) is the one its records and its model were made with.

`create-pretraining-data` records in `summary.json` the SHA-256 of its tokenizer's model file (`spiece.model` /
`vocab.txt`, as `Tokenizer.model_file_bytes` gives it) and its vocabulary size. `pretrain`, `squad` and `export`
load their tokenizer and call `check_tokenizer` before they write anything: a tokenizer that is not the records'
(another hash, another vocabulary size), that does not fit the model (another vocabulary size), or that differs
from the one a run directory already holds is a one-line `UserInputError` naming both sides.

Only a loaded tokenizer is ever written into a run or an export (`save_tokenizer`): its model file and the configs
`Tokenizer.save` writes, nothing else; a summary names a tokenizer to load, never files to copy.

No TensorFlow here: the pretrain command checks before its tf.distribute strategy exists.
"""

import hashlib
import os

from keras_albert.errors import UserInputError
from keras_albert.training.validation import name

__all__ = ["check_tokenizer", "load_checked_tokenizer", "run_tokenizer", "save_tokenizer", "tokenizer_sha256"]


def tokenizer_sha256(tokenizer):
    """SHA-256 of the tokenizer's model file, as `create-pretraining-data` records it."""
    return hashlib.sha256(tokenizer.model_file_bytes()).hexdigest()


def _describe(tokenizer, source):
    return f"{source} (vocabulary {tokenizer.vocab_size}, sha256 {tokenizer_sha256(tokenizer)[:12]})"


def load_checked_tokenizer(path, flag="tokenizer"):
    """The tokenizer at `path` (a directory or a `spiece.model` / `vocab.txt`), or a one-line error naming `flag`."""
    from keras_albert.data import load_tokenizer

    try:
        return load_tokenizer(path)
    except UserInputError as error:
        raise UserInputError(f"{name(flag)} {error}") from None
    except Exception as error:  # a corrupt SentencePiece model raises from its C++ library
        raise UserInputError(f"{name(flag)} {path}: not a tokenizer ({str(error).splitlines()[0][:160]})") from None


def run_tokenizer(directory):
    """The tokenizer a run (or export) directory holds (its `spiece.model` / `vocab.txt`), or None; both files
    at once (a directory that mixes the two model types) is an error."""
    from keras_albert.data.tokenizers import SPIECE_FILE, VOCAB_FILE

    present = [entry for entry in (SPIECE_FILE, VOCAB_FILE) if os.path.isfile(os.path.join(directory, entry))]
    if not present:
        return None
    if len(present) > 1:
        raise UserInputError(f"{directory}: holds both {SPIECE_FILE} and {VOCAB_FILE}; it can hold one tokenizer")
    return load_checked_tokenizer(directory, flag="output_dir")


def check_tokenizer(tokenizer, source, *, summary=None, model_vocab_size=None, model_source="the model",
                    run_directory=None):
    """Raises a one-line `UserInputError` naming both sides when `tokenizer` (loaded from `source`, as the message
    says it, e.g. "--tokenizer tok") is not the one of the records (`summary`, a `DataSummary`), does not fit
    the model's vocabulary (`model_vocab_size`, described by `model_source`), or is not the tokenizer that
    `run_directory` already holds. Returns `tokenizer`."""
    if summary is not None and summary.path:
        recorded_hash = summary.tokenizer_sha256
        if recorded_hash and recorded_hash != tokenizer_sha256(tokenizer):
            raise UserInputError(
                f"{_describe(tokenizer, source)} is not the tokenizer the records were written with "
                f"({summary.path}: vocabulary {summary.vocab_size}, sha256 {recorded_hash[:12]})"
            )
        if summary.vocab_size is not None and summary.vocab_size != tokenizer.vocab_size:
            raise UserInputError(
                f"{source} has a vocabulary of {tokenizer.vocab_size} tokens; the records were written with "
                f"{summary.vocab_size} ({summary.path})"
            )
    if model_vocab_size is not None and int(model_vocab_size) != tokenizer.vocab_size:
        raise UserInputError(
            f"{source} has a vocabulary of {tokenizer.vocab_size} tokens; {model_source} has {int(model_vocab_size)}"
        )
    if run_directory is not None and os.path.isdir(run_directory):
        existing = run_tokenizer(run_directory)
        if existing is not None and tokenizer_sha256(existing) != tokenizer_sha256(tokenizer):
            raise UserInputError(
                f"{_describe(tokenizer, source)} is not the tokenizer {_describe(existing, run_directory)} "
                "already holds; use its tokenizer or a new output directory"
            )
    return tokenizer


def save_tokenizer(tokenizer, directory):
    """Writes a loaded tokenizer into `directory` (its model file and configs, each published whole); returns the
    model file's path. Nothing but what `Tokenizer.save` writes: no file is copied from anywhere."""
    from keras_albert.data.tokenizers import SPIECE_FILE, VOCAB_FILE

    os.makedirs(directory, exist_ok=True)
    tokenizer.save(directory)
    model_file = SPIECE_FILE if tokenizer.model_type == "albert" else VOCAB_FILE
    return os.path.join(directory, model_file)


def _find_key(config, key):
    """The first value of `key` anywhere in a nested Keras config, or None."""
    if isinstance(config, dict):
        if key in config and isinstance(config[key], int) and not isinstance(config[key], bool):
            return config[key]
        values = config.values()
    elif isinstance(config, list):
        values = config
    else:
        return None
    for value in values:
        found = _find_key(value, key)
        if found is not None:
            return found
    return None


def _keras_file_config(path):
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def saved_model_vocab_size(path, load_from="checkpoint"):
    """The vocabulary size of the model a checkpoint path holds, read from its saved config (no TensorFlow), or
    None where it says none: a `.keras` file, a checkpoint prefix or a checkpoints/run directory (their
    `model.json`), or (`load_from="huggingface"`) a Hugging Face directory's `config.json`."""
    from keras_albert import io

    path = os.fspath(path)
    if load_from == "huggingface":
        config_path = os.path.join(path, "config.json")
        if os.path.isfile(config_path):
            config = io.read_json(config_path, what="Hugging Face config")
            value = config.get("vocab_size") if isinstance(config, dict) else None
            return value if isinstance(value, int) else None
        return None
    candidates = []
    if os.path.isfile(path) and path.endswith(".keras"):
        candidates.append(path)
    elif os.path.isfile(path + ".index"):
        candidates.append(os.path.join(os.path.dirname(path), "model.json"))
    elif os.path.isdir(path):
        candidates += [os.path.join(path, "model.keras"), os.path.join(path, "checkpoints", "model.json"),
                       os.path.join(path, "model.json")]
    for candidate in candidates:
        if not os.path.isfile(candidate):
            continue
        if candidate.endswith(".keras"):
            config = _keras_file_config(candidate)
        else:
            try:
                config = io.read_json(candidate, what="model config")
            except UserInputError:
                config = None
        if config is not None:
            return _find_key(config, "vocabulary_size")
    return None


def run_directory_of(checkpoint_path):
    """The run directory a checkpoint path belongs to: a directory itself, or the parent of `checkpoints/`."""
    path = os.path.abspath(os.fspath(checkpoint_path))
    if os.path.isdir(path):
        return path
    directory = os.path.dirname(path)
    if os.path.basename(directory) == "checkpoints":
        return os.path.dirname(directory)
    return directory


def run_records_summary(run_dir):
    """The `DataSummary` of the records a pretraining run was trained on (its `settings.json` names them), or
    None when the run directory does not say or the records' directory has no summary."""
    from keras_albert import io
    from keras_albert.data.summary import read_data_summary

    path = os.path.join(run_dir, "settings.json")
    if not os.path.isfile(path):
        return None
    try:
        record = io.read_json(path, what="run settings")
    except UserInputError:
        return None
    files = record.get("settings", {}).get("train_files") if isinstance(record, dict) else None
    first = files[0] if isinstance(files, list) and files else files
    if not isinstance(first, str) or "://" in first:
        return None
    import glob

    matches = sorted(glob.glob(os.path.expanduser(first)))
    directory = os.path.dirname(matches[0] if matches else first)
    if not os.path.isdir(directory):
        return None
    summary = read_data_summary(directory)
    return summary if summary.path else None


def check_pretraining_tokenizer(settings, summary, model=None, given=True):
    """`pretrain`'s check, on its resolved settings (before anything is written): the tokenizer of
    `settings.tokenizer` (given, or named by the records' summary) against the records, the model's vocabulary
    (`model` given from Python, `--vocab_size`, or a Hugging Face checkpoint's config) and the tokenizer the run
    directory already holds. `given`: whether the caller gave the tokenizer (else the summary named it)."""
    if settings.tokenizer is None:
        return None
    source = f"{name('tokenizer')} {settings.tokenizer}" if given else f"the tokenizer {settings.tokenizer}"
    tokenizer = load_checked_tokenizer(settings.tokenizer)
    model_vocab, model_source = None, None
    if model is not None:
        model_vocab, model_source = model.backbone.vocabulary_size, "the model given"
    elif settings.load_from == "huggingface" and settings.checkpoint_path:
        model_vocab = saved_model_vocab_size(settings.checkpoint_path, "huggingface")
        model_source = f"the model of {name('checkpoint_path')} {settings.checkpoint_path}"
    elif settings.vocab_size is not None and settings.vocab_size != getattr(summary, "vocab_size", None):
        model_vocab, model_source = settings.vocab_size, f"the model ({name('vocab_size')})"
    return check_tokenizer(tokenizer, source, summary=summary, model_vocab_size=model_vocab,
                           model_source=model_source, run_directory=settings.output_dir)


def check_squad_tokenizer(tokenizer, settings, model=None):
    """`squad`'s check, where it settles its tokenizer (before anything is written): the tokenizer against the
    vocabulary of the model it finetunes (`model` given from Python, or the saved config of `checkpoint_path`) and
    against the records of the pretraining run it comes from (its `settings.json`)."""
    if settings.tokenizer:
        source = f"{name('tokenizer')} {settings.tokenizer}"
    elif settings.load_from != "scratch" and settings.checkpoint_path:
        source = f"the tokenizer beside {settings.checkpoint_path}"
    else:
        source = "the tokenizer given"
    model_vocab, summary = None, None
    if model is not None:
        backbone = getattr(model, "backbone", None)
        model_vocab = getattr(backbone, "vocabulary_size", None)
        model_source = "the model given"
    elif settings.load_from != "scratch" and settings.checkpoint_path:
        model_vocab = saved_model_vocab_size(settings.checkpoint_path, settings.load_from)
        model_source = f"the model of {name('checkpoint_path')} {settings.checkpoint_path}"
        if settings.load_from == "checkpoint":
            summary = run_records_summary(run_directory_of(settings.checkpoint_path))
    else:
        model_source = None
    return check_tokenizer(tokenizer, source, summary=summary, model_vocab_size=model_vocab,
                           model_source=model_source)
