"""Reading and tokenizing the corpus into three flat arrays.

Text is cut into pieces of whole documents (so where it is cut does not change the output), each piece split into
documents and sentences and tokenized (each sentence once), possibly in another process; the pieces' arrays are then
joined into one `Corpus`.
"""

import itertools
import os
import re

import numpy as np

from keras_albert.data import text
from keras_albert.data.pretraining import instances

TOKENIZE_PIECE_CHARS = 250_000
SMALLEST_PIECE_CHARS = 25_000


class Corpus:
    """All documents as one flat token array: sentence `s` is `tokens[sentence_starts[s]:sentence_starts[s + 1]]`,
    document `d` is sentences `document_starts[d]` to `document_starts[d + 1]`."""

    ARRAYS = ("tokens", "sentence_starts", "document_starts")  # the constructor's arguments

    def __init__(self, tokens, sentence_starts, document_starts):
        self.tokens = tokens
        self.sentence_starts = sentence_starts
        self.document_starts = document_starts

    @classmethod
    def join(cls, pieces):
        """The corpus of `tokenize_piece` results, in order."""
        document_sizes, lengths, tokens = zip(*pieces) if pieces else ((), (), ())
        document_sizes = np.concatenate(document_sizes) if document_sizes else np.zeros(0, np.int64)
        lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        tokens = np.concatenate(tokens) if tokens else np.zeros(0, np.int32)
        sentence_starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        document_starts = np.concatenate([[0], np.cumsum(document_sizes)]).astype(np.int64)
        return cls(tokens, sentence_starts, document_starts)

    def save(self, directory):
        for name in self.ARRAYS:
            np.save(os.path.join(directory, f"corpus-{name}.npy"), getattr(self, name))

    @classmethod
    def load(cls, directory):
        """The arrays `save` wrote, memory-mapped (processes share one copy in memory)."""
        paths = [os.path.join(directory, f"corpus-{name}.npy") for name in cls.ARRAYS]
        return cls(*[np.asarray(np.load(path, mmap_mode="r")) for path in paths])

    @property
    def nbytes(self):
        return sum(getattr(self, name).nbytes for name in self.ARRAYS)

    @property
    def sentence_view(self):
        return memoryview(self.sentence_starts)

    @property
    def document_view(self):
        return memoryview(self.document_starts)

    @property
    def num_tokens(self):
        return int(self.tokens.size)

    @property
    def num_documents(self):
        return int(self.document_starts.size - 1)

    @property
    def num_sentences(self):
        return int(self.sentence_starts.size - 1)


def input_pieces(paths, document_break_lines, workers, tfds_text_field="text", tfds_data_dir=None):
    """Every file's text, cut at document breaks into pieces of about TOKENIZE_PIECE_CHARS characters.

    With several workers, pieces shrink as the end of the input nears (OpenMP's "guided" schedule: a piece is at most
    1/(2 x workers) of what is left, at least SMALLEST_PIECE_CHARS), so that the workers finish together rather than
    all waiting for the one holding the last large piece. What is left in the files not yet read is estimated from
    their sizes on disk, at the characters per byte of the file just read. A generator: the next file is read and
    cut only when its pieces are needed. A `tfds:` input (`tfds_input`) is read example by example, each example's
    `tfds_text_field` a document, and cut between examples.
    """
    sizes = [_input_size(path, tfds_text_field, tfds_data_dir) for path in paths]
    later_bytes = sum(sizes)
    for path, size in zip(paths, sizes):
        later_bytes -= size
        if text.is_tfds(path):
            yield from _tfds_pieces(path, document_break_lines, workers, tfds_text_field, tfds_data_dir,
                                    size + later_bytes)
            continue
        content = text.read_text(path)
        later_chars = later_bytes * len(content) / max(size, 1)
        if "\r" in content:
            content = content.replace("\r\n", "\n").replace("\r", "\n")
        breaks = re.compile(r"\n(?:[^\S\n]*\n){%d,}" % document_break_lines)
        start = 0
        while True:
            size = _piece_size(len(content) - start + later_chars, workers)
            found = breaks.search(content, start + size) if len(content) - start > size else None
            if found is None:
                yield content[start:]
                break
            yield content[start : found.start()]
            start = found.end()


def _piece_size(left, workers):
    if workers > 1:
        return int(max(SMALLEST_PIECE_CHARS, min(TOKENIZE_PIECE_CHARS, left / (2 * workers))))
    return TOKENIZE_PIECE_CHARS


def _input_size(path, tfds_text_field, tfds_data_dir):
    if text.is_tfds(path):
        from keras_albert.data import tfds_input

        return tfds_input.check_text_input(path, tfds_text_field, tfds_data_dir)
    return os.path.getsize(path)


def _tfds_pieces(value, document_break_lines, workers, text_field, data_dir, left):
    """Pieces of whole examples (documents) of a `tfds:` input; `left` estimates the characters still to come."""
    from keras_albert.data import tfds_input

    piece, length = [], 0
    for document in tfds_input.iter_documents_text(value, document_break_lines, text_field, data_dir):
        if "\r" in document:
            document = document.replace("\r\n", "\n").replace("\r", "\n")
        piece.append(document)
        length += len(document)
        if length >= _piece_size(left, workers):
            yield "".join(piece)
            left -= length
            piece, length = [], 0
    if piece:
        yield "".join(piece)


def tokenize_piece(tokenizer, piece, document_break_lines):
    """Documents of one piece of text -> (sentences per document, tokens per sentence, all tokens), empty
    sentences and documents dropped."""
    documents = text.split_documents(piece, document_break_lines)
    sentences = [sentence for document in documents for sentence in document]
    ids = tokenizer.encode_batch(sentences)
    compiled = instances.compiled_module()
    if compiled is not None:  # a few ms where fromiter over a chain of the lists takes ~20 (whole embedded corpus)
        tokens, lengths = compiled.flatten(ids)
        tokens, lengths = np.frombuffer(tokens, np.int32), np.frombuffer(lengths, np.int64)
    else:
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        tokens = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum()))
    document_of_sentence = np.repeat(np.arange(len(documents)), [len(document) for document in documents])
    keep = lengths > 0
    sizes = np.bincount(document_of_sentence[keep], minlength=len(documents))
    return sizes[sizes > 0].astype(np.int64), lengths[keep], tokens
