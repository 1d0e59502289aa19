"""Publishing files whole, and reading JSON with errors that name the file.

Every file or directory the library writes for someone else to read (a tokenizer, a summary, predictions, a
checkpoint pointer, an export) goes through here: it is written under a temporary name beside its target, flushed
to disk, and renamed into place, so a reader never sees half of it and a killed run never leaves a partial file
under the final name. Published files get ordinary modes (0644 for files, 0755 for directories, less the umask),
not the 0600 that `tempfile` gives.

This is the bottom layer: it imports nothing from keras_albert except `errors`.
"""

import contextlib
import json
import os
import shutil
import tempfile

from keras_albert.errors import UserInputError

FILE_MODE = 0o644
DIRECTORY_MODE = 0o755


def _umasked(mode):
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _temporary_name(path, directory=False):
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(path)}."
    if directory:
        return tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent)
    handle, temporary = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=parent)
    os.close(handle)
    return temporary


def _fsync_directory(path):
    try:
        descriptor = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems (and Windows) refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(descriptor)


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


@contextlib.contextmanager
def atomic_path(path, directory=False, mode=None):
    """Yields a temporary path beside `path`; renames it over `path` when the block ends without an exception.

    The block writes a file (or, with `directory=True`, fills a directory) at the yielded path by any means (a
    `model.save`, a tokenizer's writer); on an exception the temporary is removed and `path` is left as it was.
    An existing directory at `path` is replaced whole.
    """
    temporary = _temporary_name(path, directory)
    try:
        yield temporary
        os.chmod(temporary, _umasked(mode or (DIRECTORY_MODE if directory else FILE_MODE)))
        if not directory:
            with open(temporary, "rb+") as file:
                os.fsync(file.fileno())
        if directory and os.path.isdir(path):
            old = _temporary_name(path, directory=True)
            os.rmdir(old)
            os.replace(path, old)
            os.replace(temporary, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temporary, path)
        _fsync_directory(path)
    except BaseException:
        _remove(temporary)
        raise


def write_bytes(path, data, mode=None):
    """Writes `data` to `path` atomically (temporary name, fsync, rename); creates the parent directory."""
    with atomic_path(path, mode=mode) as temporary:
        with open(temporary, "wb") as file:
            file.write(data)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def write_json(path, value, indent=2):
    """Writes `value` as JSON (UTF-8, a final newline) to `path` atomically."""
    write_bytes(path, (json.dumps(value, indent=indent) + "\n").encode("utf-8"))


def copy_file(source, target):
    """Copies `source` to `target` atomically (the copy appears whole or not at all)."""
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def read_json(path, what="JSON file"):
    """Parses a JSON file.

    Raises:
        UserInputError: one line naming the path, for a missing or unreadable file, non-UTF-8 bytes or invalid JSON.
            `what` says what the file was meant to be ("SQuAD file", "summary").
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such {what}") from None
    except OSError as error:
        raise UserInputError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserInputError(f"{path}: not UTF-8 text (invalid byte at offset {error.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UserInputError(f"{path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}") from None
