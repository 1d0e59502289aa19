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
from itertools import chain, repeat

from keras_albert.errors import UserInputError

GZIP_MAGIC = b"\x1f\x8b"
TFDS_PREFIX = "tfds:"  # `keras_albert.data.tfds_input.PREFIX`; such inputs are TensorFlow Datasets splits

# Words after which a full stop does not end a sentence ("Mr. Weston", "St. Ives"); single letters are initials.
_ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr st jr sr rev col capt gen lt sgt esq prof hon mme mlle mt no vol ch fig vs etc viz cf".split()
)


def _not_after_abbreviation():
    """Negative lookbehinds (one per word length, as Python's lookbehinds are fixed-width) that fail when the full
    stop and space just matched follow a whole ASCII word that is an abbreviation (any case) or a single letter."""
    by_length = {1: ["[A-Za-z]"]}
    for word in sorted(_ABBREVIATIONS):
        by_length.setdefault(len(word), []).append("".join(f"[{c.upper()}{c}]" for c in word))
    return "".join(
        rf"(?<!(?<![A-Za-z])(?:{'|'.join(words)})\. )" for _, words in sorted(by_length.items())
    )


# A sentence end: terminal punctuation, optional closing quotes or brackets, a space, then something that can start a
# sentence (an opening quote or bracket, a capital, a digit); a full stop right before the space is not one after an
# abbreviation or an initial. Text is whitespace-collapsed first, with document (and paragraph) ends marked; `_split`
# marks each sentence end in place of its space, then splits with str.split (regex substitutions and C string splits
# instead of a Python loop over every match). One regex per kind of end, each starting with its literal punctuation
# mark, so that the regex engine skips to candidates by comparing characters (a leading [.!?] class costs a set test
# per character: a scan ~10x slower); the commonest, a full stop right before the space, has no group to keep.
_CLOSING = r"""["'\u201d\u2019)\]_]"""
_SENTENCE_START_NEXT = r"""(?=["'\u201c\u2018(\[_]*[A-Z0-9])"""
_FULL_STOP_END = re.compile(r"\. " + _not_after_abbreviation() + _SENTENCE_START_NEXT)
_OTHER_ENDS = tuple(
    re.compile(rf"({end}) {_SENTENCE_START_NEXT}") for end in (rf"\.{_CLOSING}+", rf"!{_CLOSING}*", rf"\?{_CLOSING}*")
)
# Blank lines: a newline, optional spaces, a newline, then all the whitespace after. Starting at a newline keeps the
# regex fast but leaves the whitespace before it, to be removed after collapsing if `_SPACE_BEFORE_MARK` finds any (a
# search that starts at the rare first character of every blank-line mark, "\x00").
_BLANK_LINES = re.compile(r"\n[^\S\n]*\n\s*")
_SPACE_BEFORE_MARK = re.compile(r"\x00(?<=[^\S\n]\x00)")
# Whitespace other than " " and "\n" (Unicode has none above U+3000): `in` tests for these few characters are far
# faster than a regex scan.
_OTHER_WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c not in " \n")


def corpus_files():
    """The embedded default corpus: Jane Austen's six novels (public domain), as a sorted list of `.txt.gz` paths."""
    corpus = importlib.resources.files("keras_albert.data").joinpath("corpus")
    paths = sorted(str(entry) for entry in corpus.iterdir() if entry.name.endswith(".txt.gz"))
    if not paths:
        raise UserInputError(f"the embedded corpus is missing from {corpus}: reinstall keras-albert")
    return paths


def is_tfds(path):
    """Whether an input is a TensorFlow Datasets split, `tfds:NAME[/CONFIG][:SPLIT]`, rather than a file."""
    return isinstance(path, str) and path.startswith(TFDS_PREFIX)


def resolve_inputs(inputs=None, flag="--input"):
    """Expand files, directories, globs and comma-separated lists into a list of file paths.

    Args:
        inputs: str, list of str or None. Paths or glob patterns; a string may hold several separated by commas.
            `None` (or empty) selects the embedded corpus (`corpus_files()`). `tfds:NAME[/CONFIG][:SPLIT]` items
            (TensorFlow Datasets splits) are kept as they are.
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
        if is_tfds(pattern):  # a TensorFlow Datasets split (`tfds_input`), kept as written
            paths.append(pattern)
            continue
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
    collapsed = " ".join(text.replace("\x00", " ").split())
    return [sentence for document in _split(collapsed, "\x00\x01", "\x00") for sentence in document]


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

    # One pass over the whole text: mark document (and paragraph) ends, collapse whitespace, then split.
    if document_break_lines == 1 and "\x01" not in text:
        # Every blank line ends a document: one literal replacement, "\x00" (no longer in the text); sentences end
        # "\x01" (not in it either). One-character marks are the fastest to split on.
        document_end, sentence_end = "\x00", "\x01"
        marked = _BLANK_LINES.sub(document_end, text)
    else:
        # "\x00\x01" ends a document, "\x00" a paragraph or a sentence. (The text's own "\x01" right after a paragraph
        # end makes a document end of it, and loses a space after it: unchanged behaviour.)
        document_end, sentence_end = "\x00\x01", "\x00"

        def mark(blank):
            return document_end if blank.group().count("\n") - 1 >= document_break_lines else sentence_end

        marked = _BLANK_LINES.sub(mark, text)
    spaces_before_mark = _SPACE_BEFORE_MARK.search(marked) is not None
    if any(space in marked for space in _OTHER_WHITESPACE):
        collapsed = " ".join(marked.split())
    else:  # only spaces and newlines: the same result, several times faster
        collapsed = marked.replace("\n", " ")
        pieces = collapsed.split("  ")
        if len(pieces) > 1:  # runs of spaces: the spaces at a piece's ends belong to runs; one space joins the pieces
            collapsed = " ".join(filter(None, map(str.strip, pieces, repeat(" "))))
        else:
            collapsed = collapsed.strip(" ")
    if spaces_before_mark:
        collapsed = collapsed.replace(" \x00", "\x00")
    if "\x01" in text:
        collapsed = collapsed.replace("\x01 ", "\x01")
    return _split(collapsed, document_end, sentence_end)


def _split(collapsed, document_end, sentence_end):
    """Documents (lists of sentences) of whitespace-collapsed text whose document ends are marked `document_end`:
    each sentence end gets `sentence_end` in place of its space, then str.split cuts them apart."""
    collapsed = _FULL_STOP_END.sub("." + sentence_end, collapsed)
    # The other ends are kept (group 1): "{0[1]}".format(match) reads the group in C, where a "\1" template would be
    # expanded by Python code for every match (Python 3.11).
    keep_end = ("{0[1]}" + sentence_end).format
    for end in _OTHER_ENDS:
        collapsed = end.sub(keep_end, collapsed)
    documents = list(map(str.split, collapsed.split(document_end), repeat(sentence_end)))
    if "" in chain.from_iterable(documents):  # a mark at either end of the text, or next to the text's own "\x01"
        documents = [sentences for sentences in ([s for s in document if s] for document in documents) if sentences]
    return documents


def read_documents(path, document_break_lines=1):
    """`split_documents(read_text(path))`: one file's documents, each a list of sentence strings."""
    return split_documents(read_text(path), document_break_lines)


def iter_sentences(paths, document_break_lines=1, tfds_text_field="text", tfds_data_dir=None):
    """Yield every sentence of every file (or `tfds:` split, its examples' `tfds_text_field`) in order (for tokenizer
    training)."""
    for path in paths:
        if is_tfds(path):
            from keras_albert.data import tfds_input

            for piece in tfds_input.iter_documents_text(path, document_break_lines, tfds_text_field, tfds_data_dir):
                for document in split_documents(piece, document_break_lines):
                    yield from document
            continue
        for document in read_documents(path, document_break_lines):
            yield from document
