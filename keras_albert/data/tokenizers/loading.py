"""Loading a saved tokenizer directory, or a bare `spiece.model` / `vocab.txt`."""

import os

from keras_albert.data.tokenizers.base import CONFIG_FILE, SPIECE_FILE, VOCAB_FILE, Tokenizer
from keras_albert.data.tokenizers.sentence_piece import SentencePieceTokenizer
from keras_albert.data.tokenizers.word_piece import WordPieceTokenizer
from keras_albert.errors import UserInputError
from keras_albert.io import read_json


def load_tokenizer(path):
    """Load a tokenizer: a directory written by `Tokenizer.save`, or a bare `spiece.model` / `vocab.txt`.

    A `Tokenizer` passes through unchanged.

    Raises:
        UserInputError: the path is missing or holds neither a SentencePiece model nor a WordPiece vocabulary.
    """
    if isinstance(path, Tokenizer):
        return path
    path = os.fspath(path)
    if os.path.isdir(path):
        settings = {}
        config = os.path.join(path, CONFIG_FILE)
        if os.path.isfile(config):
            settings = read_json(config, what="tokenizer config")
            if not isinstance(settings, dict):
                raise UserInputError(f"{config}: not a valid tokenizer config (expected a JSON object)")
        lowercase = settings.get("lowercase")
        if os.path.isfile(os.path.join(path, SPIECE_FILE)):
            return SentencePieceTokenizer(os.path.join(path, SPIECE_FILE), lowercase=lowercase)
        if os.path.isfile(os.path.join(path, VOCAB_FILE)):
            return WordPieceTokenizer(
                os.path.join(path, VOCAB_FILE), lowercase=True if lowercase is None else lowercase
            )
        raise UserInputError(f"{path}: directory holds neither {SPIECE_FILE} nor {VOCAB_FILE}")
    if not os.path.isfile(path):
        raise UserInputError(f"{path}: no such tokenizer file or directory")
    if sniff_sentencepiece(path):
        return SentencePieceTokenizer(path)
    return WordPieceTokenizer(path)


def sniff_sentencepiece(path):
    if path.endswith(".model"):
        return True
    with open(path, "rb") as file:
        head = file.read(64)
    # A serialized ModelProto starts with field 1 (pieces, length-delimited) and holds binary bytes.
    return head[:1] == b"\x0a" and (b"\x00" in head or any(byte > 0x7F for byte in head[:4]))
