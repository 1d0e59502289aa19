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


def _not_after_abbreviation():
    """Negative lookbehinds (one per word length, as Python's lookbehinds are fixed-width) that fail when the full
    stop just matched ends a whole ASCII word that is an abbreviation (any case) or a single letter."""
    by_length = {1: ["[A-Za-z]"]}
    for word in sorted(_ABBREVIATIONS):
        by_length.setdefault(len(word), []).append("".join(f"[{c.upper()}{c}]" for c in word))
    return "".join(
        rf"(?<!(?<![A-Za-z])(?:{'|'.join(words)})\.)" for _, words in sorted(by_length.items())
    )


# A sentence end: terminal punctuation, optional closing quotes or brackets, a space, then something that can start a
# sentence (an opening quote or bracket, a capital, a digit). A lone full stop after an abbreviation or an initial is
# not one. Group 1 is the end without its space. Text is whitespace-collapsed first, with paragraph ends marked
# "\x00" and document ends "\x00\x01"; `_split` turns sentence ends into "\x00" too, then splits with str.split
# (a regex substitution and C string splits instead of a Python loop over every match: several times faster).
# (One leading character class lets the regex engine skip quickly to candidates.)
_SENTENCE_END = re.compile(
    r"""([.!?](?:(?<=[!?])[.!?]*|(?<=\.)(?:[.!?]+|(?=["'\u201d\u2019)\]_])|"""
    + _not_after_abbreviation()
    + r"""))["'\u201d\u2019)\]_]*) (?=["'\u201c\u2018(\[_]*[A-Z0-9])"""
)
# A paragraph or document break with the spaces after it (its marker rarely follows a space, and a leading
# `[^\S\n]*` would make the regex try at every space).
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+[^\S\n]*")
# Whitespace other than " " and "\n" (Unicode has none above U+3000): `in` tests for these few characters are far
# faster than a regex scan.
_OTHER_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c not in " \n")
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
    if any(space in marked for space in _OTHER_WHITESPACE):
        collapsed = " ".join(marked.split())
    else:  # only spaces and newlines: the same result, three times faster
        collapsed = _SPACES.sub(" ", marked.replace("\n", " ")).strip(" ")
    for spaced, bare in ((" \x00", "\x00"), ("\x00 ", "\x00"), ("\x01 ", "\x01")):
        if spaced in collapsed:  # a search is much cheaper than a copy of the text
            collapsed = collapsed.replace(spaced, bare)
    return _split(collapsed)


def _split(collapsed):
    documents = []
    for document in _SENTENCE_END.sub("\\1\x00", collapsed).split("\x00\x01"):
        sentences = [sentence for sentence in document.split("\x00") if sentence]
        if sentences:
            documents.append(sentences)
    return documents


def read_documents(path, document_break_lines=1):
    """`split_documents(read_text(path))`: one file's documents, each a list of sentence strings."""
    return split_documents(read_text(path), document_break_lines)


def iter_sentences(paths, document_break_lines=1):
    """Yield every sentence of every file in order (for tokenizer training)."""
    for path in paths:
        for document in read_documents(path, document_break_lines):
            yield from document
