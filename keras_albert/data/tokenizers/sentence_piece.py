"""ALBERT's tokenizer: a SentencePiece unigram model (`spiece.model`)."""

import os
import re
import string

import numpy as np

from keras_albert.data.tokenizers.base import ALBERT_SPECIALS, SPIECE_FILE, Tokenizer, refuse_other_model_type
from keras_albert.errors import UserInputError
from keras_albert.io import write_bytes

_PUNCTUATION = frozenset(string.punctuation)
# A piece made only of English letters and punctuation (or empty) continues a word; one regex match per piece is
# several times faster than a test per character, over a whole vocabulary.
_LETTERS_AND_PUNCTUATION = re.compile("[A-Za-z" + re.escape(string.punctuation) + "]*")


class SentencePieceTokenizer(Tokenizer):
    """ALBERT's tokenizer: a SentencePiece model (`spiece.model`).

    Models trained by `train_tokenizer` lowercase inside the model (normalization rule `nmt_nfkc_cf`), so keras-hub's
    `AlbertTokenizer`, which only runs the model, agrees with this class; for an imported model that does not,
    `lowercase=True` lowercases the text first (character by character, so offsets stay valid).

    Args:
        proto: str or bytes. A path to a `spiece.model` or its serialized bytes.
        lowercase: bool or None. Lowercase the input; `None` means yes unless the model already case-folds.

    Example:
    ```python
    tokenizer = keras_albert.data.load_tokenizer("tok/spiece.model")
    ids, offsets = tokenizer.encode_with_offsets("Emma Woodhouse, handsome, clever, and rich")
    ```
    """

    model_type = "albert"
    specials = ALBERT_SPECIALS

    def __init__(self, proto, lowercase=None):
        import sentencepiece

        if isinstance(proto, (str, os.PathLike)):
            path = str(proto)
            try:
                with open(path, "rb") as file:
                    proto = file.read()
            except OSError as error:
                raise UserInputError(f"{path}: cannot read SentencePiece model ({error.strerror})") from None
        else:
            path = "SentencePiece proto"
        self.proto = bytes(proto)
        self._sp = sentencepiece.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self.proto)
        except (RuntimeError, OSError):
            raise UserInputError(f"{path}: not a SentencePiece model") from None
        self.model_case_folds = _normalizer_name(self.proto).endswith("_cf")
        if lowercase is None:
            lowercase = True
        self._lower_in_python = lowercase and not self.model_case_folds
        every_id = list(range(self._sp.get_piece_size()))  # SentencePiece's batch calls: a few times faster
        self._pieces = self._sp.id_to_piece(every_id)
        self._ids = {piece: i for i, piece in enumerate(self._pieces)}
        super().__init__(lowercase=lowercase)
        self._control = [
            i for i, special in enumerate(map(any, zip(self._sp.is_control(every_id), self._sp.is_unknown(every_id))))
            if special
        ]

    def __reduce__(self):
        return (SentencePieceTokenizer, (self.proto, self.lowercase))

    @property
    def vocab_size(self):
        return len(self._pieces)

    @property
    def special_ids(self):
        return sorted(set(super().special_ids) | set(self._control))

    def _prepare(self, text):
        if self._lower_in_python:
            return _lower_keep_length(text)
        return text

    def encode(self, text):
        return self._sp.encode(self._prepare(text))

    def encode_batch(self, texts):
        return self._sp.encode([self._prepare(text) for text in texts], num_threads=1)

    def encode_with_offsets(self, text):
        prepared = self._prepare(text)
        pieces = self._sp.encode(prepared, return_type="proto").pieces
        # SentencePiece reports byte offsets into the UTF-8 input; convert them to character offsets.
        encoded = prepared.encode("utf-8")
        if len(encoded) == len(prepared):
            char_of_byte = None
        else:
            starts = (np.frombuffer(encoded, np.uint8) & 0xC0) != 0x80
            char_of_byte = np.append(np.cumsum(starts) - 1, len(prepared))
        ids, offsets = [], []
        for piece in pieces:
            begin, end = piece.begin, piece.end
            if char_of_byte is not None:
                begin, end = int(char_of_byte[begin]), int(char_of_byte[end])
            while begin < end and text[begin].isspace():
                begin += 1
            if begin == end and begin < len(text):
                # A lone "▁" before an unknown character: give it that character, as transformers does.
                end = begin + 1
            ids.append(piece.id)
            offsets.append((begin, end))
        return ids, offsets

    def id_to_token(self, token_id):
        return self._pieces[token_id]

    def _lookup(self, token):
        return self._ids.get(token)

    def _is_word_start_piece(self, piece):
        # As Google ALBERT's `_is_start_piece_sp`: a "▁" prefix, a lone punctuation mark, or any character that is
        # neither an English letter nor punctuation (digits, foreign scripts) starts a word.
        if piece.startswith("\u2581") or piece.startswith("<") or piece in _PUNCTUATION:
            return True
        return _LETTERS_AND_PUNCTUATION.fullmatch(piece) is None

    def model_file_bytes(self):
        return self.proto

    def save(self, directory):
        refuse_other_model_type(directory, self.model_type)
        write_bytes(os.path.join(directory, SPIECE_FILE), self.model_file_bytes())
        self._write_configs(
            directory,
            {
                "tokenizer_class": "AlbertTokenizer",
                "do_lower_case": bool(self.lowercase),
                # The model keeps accents (NFKC); transformers' default would strip them and disagree.
                "keep_accents": True,
                "remove_space": True,
            },
        )


def _normalizer_name(proto):
    """`ModelProto.normalizer_spec.name` of a serialized SentencePiece model, read from the protobuf wire format.

    sentencepiece's generated `sentencepiece_model_pb2` refuses to import under a protobuf runtime older than the one
    it was generated with; these few fields need no protobuf at all.
    """
    spec = _proto_field(proto, 3)  # ModelProto.normalizer_spec
    name = _proto_field(spec, 1) if spec is not None else None  # NormalizerSpec.name
    return name.decode("utf-8", "replace") if name is not None else ""


def _proto_field(message, number):
    """The bytes of the last length-delimited field `number` of a serialized protobuf message, or None."""
    found, position, end = None, 0, len(message)
    try:
        while position < end:
            key, position = _read_varint(message, position)
            wire_type = key & 7
            if wire_type == 0:
                _, position = _read_varint(message, position)
            elif wire_type == 1:
                position += 8
            elif wire_type == 2:
                length, position = _read_varint(message, position)
                if key >> 3 == number:
                    found = bytes(message[position : position + length])
                position += length
            elif wire_type == 5:
                position += 4
            else:
                return found  # groups (deprecated) do not occur in SentencePiece models
    except IndexError:
        pass
    return found


def _read_varint(data, position):
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position


def _lower_keep_length(text):
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(char.lower() if len(char.lower()) == 1 else char for char in text)
