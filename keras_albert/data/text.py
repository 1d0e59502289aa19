"""Reading raw text: files and globs, plain or gzip-compressed, split into documents and sentences.

The convention is Google's for BERT/ALBERT pretraining text: blank lines separate documents. Lines inside a document
are joined and split again into sentences, so both one-sentence-per-line files and wrapped prose (the embedded Jane
Austen corpus, whose paragraphs are separated by one blank line and chapters by several) read correctly.
"""

import glob
import gzip
import importlib.resources
import os
import re

from keras_albert.errors import UserInputError

GZIP_MAGIC = b"\x1f\x8b"

# Words after which a full stop does not end a sentence ("Mr. Weston", "St. Ives"); single letters are initials.
_ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr st jr sr rev col capt gen lt sgt esq prof hon mme mlle mt no vol ch fig vs etc viz cf".split()
)
# A candidate sentence end: terminal punctuation, optional closing quotes or brackets, a space, then something that
# can start a sentence (an opening quote or bracket, a capital, a digit). Text is whitespace-collapsed first, with
# paragraph ends marked "\x00" and document ends "\x00\x01", which are boundaries too.
# (One leading character class lets the regex engine skip quickly to candidates.)
_BOUNDARY = re.compile(
    r"""[.!?\x00](?:(?<=[.!?])[.!?]*["'\u201d\u2019)\]_]* (?=["'\u201c\u2018(\[_]*[A-Z0-9])|(?<=\x00)(\x01)?)"""
)
_LAST_WORD = re.compile(r"([A-Za-z]+)$")
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
_OTHER_WHITESPACE = re.compile(r"[^\S \n]")
_SPACES = re.compile(r"  +")


def corpus_files():
    """The embedded default corpus: Jane Austen's six novels (public domain), as a sorted list of `.txt.gz` paths."""
    corpus = importlib.resources.files("keras_albert.data").joinpath("corpus")
    paths = sorted(str(entry) for entry in corpus.iterdir() if entry.name.endswith(".txt.gz"))
    if not paths:
        raise UserInputError(f"the embedded corpus is missing from {corpus}: reinstall keras-albert")
    return paths


def resolve_inputs(inputs=None, flag="--input"):
    """Expand files, directories, globs and comma-separated lists into a list of file paths.

    Args:
        inputs: str, list of str or None. Paths or glob patterns; a string may hold several separated by commas.
            `None` (or empty) selects the embedded corpus (`corpus_files()`).
        flag: str. The flag named in error messages.

    Returns:
        The matching files, in the order given, each pattern's matches sorted, without duplicates.
    """
    if not inputs:
        return corpus_files()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    patterns = [part.strip() for item in inputs for part in str(item).split(",") if part.strip()]
    if not patterns:
        return corpus_files()
    paths = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if os.path.isdir(pattern):
            matches = sorted(
                os.path.join(pattern, name)
                for name in os.listdir(pattern)
                if not name.startswith(".") and os.path.isfile(os.path.join(pattern, name))
            )
        elif os.path.isfile(pattern):
            matches = [pattern]
        else:
            matches = sorted(path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path))
        if not matches:
            raise UserInputError(f"{flag}: no file matches {pattern!r}")
        paths.extend(matches)
    return list(dict.fromkeys(paths))


def read_text(path):
    """Read a whole text file, plain or gzip-compressed (detected by content, not by name), as a `str`.

    Raises:
        UserInputError: the file is missing, empty, binary or not UTF-8.
    """
    try:
        with open(path, "rb") as file:
            raw = file.read()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file") from None
    except (OSError, EOFError) as error:
        raise UserInputError(f"{path}: cannot read ({error})") from None
    if b"\x00" in raw[:65536]:
        raise UserInputError(f"{path}: binary file, expected UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserInputError(f"{path}: not UTF-8 text (byte {error.start}), expected UTF-8 text") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise UserInputError(f"{path}: empty file, expected text")
    return text


def split_sentences(text):
    """Split a paragraph into sentences at terminal punctuation followed by a capitalised word.

    A deliberately small rule set (no model, no download): it keeps abbreviations such as "Mr." and single-letter
    initials with the next word. Whitespace inside each sentence is collapsed to single spaces.
    """
    return [sentence for document in _split(" ".join(text.replace("\x00", " ").split())) for sentence in document]


def split_documents(text, document_break_lines=1):
    """Split text into documents, each a list of sentences.

    Args:
        text: str. The whole file.
        document_break_lines: int. A run of at least this many blank lines ends a document; shorter runs end a
            paragraph (always a sentence boundary). 1 is Google's convention; 2 makes each chapter of the embedded
            corpus a document instead of each paragraph.
    """
    if "\x00" in text:
        text = text.replace("\x00", " ")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")

    def marker(blank):
        return "\x00\x01" if blank.group().count("\n") - 1 >= document_break_lines else "\x00"

    # One pass over the whole text: mark paragraph and document ends, collapse whitespace, then split.
    marked = _BLANK_LINES.sub(marker, text)
    if _OTHER_WHITESPACE.search(marked):
        collapsed = " ".join(marked.split())
    else:  # only spaces and newlines: the same result, three times faster
        collapsed = _SPACES.sub(" ", marked.replace("\n", " ")).strip(" ")
    return _split(collapsed.replace(" \x00", "\x00").replace("\x00 ", "\x00").replace("\x01 ", "\x01"))


def _split(collapsed):
    documents, document = [], []
    start = 0
    for boundary in _BOUNDARY.finditer(collapsed):
        stop = boundary.start()
        if collapsed[stop] in ".!?":
            if collapsed[stop] == "." and boundary.end() - stop == 2:  # a lone full stop: abbreviation or initial?
                word = _LAST_WORD.search(collapsed, max(start, stop - 8), stop)
                if word and (len(word.group(1)) == 1 or word.group(1).lower() in _ABBREVIATIONS):
                    continue
            document.append(collapsed[start : boundary.end() - 1])
        elif stop > start:
            document.append(collapsed[start:stop])
        start = boundary.end()
        if boundary.group(1) and document:
            documents.append(document)
            document = []
    if start < len(collapsed):
        document.append(collapsed[start:])
    if document:
        documents.append(document)
    return documents


def read_documents(path, document_break_lines=1):
    """`split_documents(read_text(path))`: one file's documents, each a list of sentence strings."""
    return split_documents(read_text(path), document_break_lines)


def iter_sentences(paths, document_break_lines=1):
    """Yield every sentence of every file in order (for tokenizer training)."""
    for path in paths:
        for document in read_documents(path, document_break_lines):
            yield from document
