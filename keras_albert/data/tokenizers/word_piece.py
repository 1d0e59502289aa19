"""BERT's tokenizer: a WordPiece vocabulary (`vocab.txt`) run by the `tokenizers` library's BERT pipeline."""

import os

from keras_albert.data.tokenizers.base import BERT_SPECIALS, VOCAB_FILE, Tokenizer, refuse_other_model_type
from keras_albert.errors import UserInputError
from keras_albert.io import write_bytes


class WordPieceTokenizer(Tokenizer):
    """BERT's tokenizer: a WordPiece vocabulary (`vocab.txt`) run by the `tokenizers` library's BERT pipeline.

    Lowercasing also strips accents, as bert-base-uncased does.

    Args:
        vocabulary: str or list of str. A path to `vocab.txt` (one token per line, line number = id) or the tokens.
        lowercase: bool. Lowercase (and strip accents) before splitting.

    Example:
    ```python
    tokenizer = keras_albert.data.load_tokenizer("bert-base-uncased/vocab.txt")
    tokenizer.tokenize("Emma Woodhouse, handsome")
    ```
    """

    model_type = "bert"
    specials = BERT_SPECIALS

    def __init__(self, vocabulary, lowercase=True):
        from tokenizers import Tokenizer as RustTokenizer
        from tokenizers import models, normalizers, pre_tokenizers

        if isinstance(vocabulary, (str, os.PathLike)):
            path = str(vocabulary)
            try:
                with open(path, "rb") as file:
                    raw = file.read()
            except OSError as error:
                raise UserInputError(f"{path}: cannot read vocabulary ({error.strerror})") from None
            if b"\x00" in raw:
                raise UserInputError(f"{path}: binary file, expected a vocab.txt (one token per line)")
            try:
                vocabulary = raw.decode("utf-8").splitlines()
            except UnicodeDecodeError:
                raise UserInputError(f"{path}: not UTF-8, expected a vocab.txt (one token per line)") from None
        else:
            path = "vocabulary"
        self._tokens = [token.rstrip("\r\n") for token in vocabulary]
        while self._tokens and not self._tokens[-1].strip():
            self._tokens.pop()
        if not self._tokens:
            raise UserInputError(f"{path}: empty vocabulary")
        self._ids = {}
        for i, token in enumerate(self._tokens):
            self._ids.setdefault(token, i)
        if "[UNK]" not in self._ids:
            raise UserInputError(f"{path}: vocabulary has no [UNK] token")
        self._rust = RustTokenizer(models.WordPiece(self._ids, unk_token="[UNK]", max_input_chars_per_word=100))
        self._rust.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase
        )
        self._rust.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        super().__init__(lowercase=lowercase)

    def __reduce__(self):
        return (WordPieceTokenizer, (self._tokens, self.lowercase))

    @property
    def vocab_size(self):
        return len(self._tokens)

    def encode(self, text):
        return self._rust.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts):
        return [encoding.ids for encoding in self._rust.encode_batch_fast(list(texts), add_special_tokens=False)]

    def encode_with_offsets(self, text):
        encoding = self._rust.encode(text, add_special_tokens=False)
        return encoding.ids, [tuple(span) for span in encoding.offsets]

    def id_to_token(self, token_id):
        return self._tokens[token_id]

    def _lookup(self, token):
        return self._ids.get(token)

    def _is_word_start_piece(self, piece):
        return not piece.startswith("##")

    def model_file_bytes(self):
        return ("\n".join(self._tokens) + "\n").encode("utf-8")

    def save(self, directory):
        refuse_other_model_type(directory, self.model_type)
        write_bytes(os.path.join(directory, VOCAB_FILE), self.model_file_bytes())
        self._write_configs(
            directory,
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": bool(self.lowercase),
                "strip_accents": None,
                "tokenize_chinese_chars": True,
            },
        )
