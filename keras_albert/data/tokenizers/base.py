"""The tokenizer interface shared by the whole library, and the names of a saved tokenizer's files."""

import os

import numpy as np

from keras_albert.errors import UserInputError
from keras_albert.io import write_json

MODEL_TYPES = ("albert", "bert")
CONFIG_FILE = "keras_albert_tokenizer.json"
SPIECE_FILE = "spiece.model"
VOCAB_FILE = "vocab.txt"
ALBERT_SPECIALS = {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


MODEL_FILES = {"albert": SPIECE_FILE, "bert": VOCAB_FILE}


def refuse_other_model_type(directory, model_type, flag=None):
    """Refuses a directory that holds the other model type's tokenizer (`vocab.txt` when writing ALBERT's
    `spiece.model`, or the reverse): both files in one folder would leave which tokenizer it holds to file order.

    Raises:
        UserInputError: one line naming the directory (and `flag`, when given) and the file in the way.
    """
    for other, name in MODEL_FILES.items():
        if other != model_type and os.path.isfile(os.path.join(directory, name)):
            where = f"{flag}: {directory}" if flag else os.fspath(directory)
            raise UserInputError(
                f"{where} holds a {other} tokenizer ({name}); choose another directory or remove {name} before "
                f"writing a {model_type} tokenizer there"
            )


class Tokenizer:
    """The tokenizer interface shared by the whole library.

    Subclasses set `model_type` ("albert" or "bert") and the special ids `pad_id`, `unk_id`, `cls_id`, `sep_id`,
    `mask_id` (`mask_id` is `None` for a vocabulary without `[MASK]`; pretraining data then refuses it).
    `encode_with_offsets` returns character `[start, end)` spans into the original text, whitespace excluded.
    """

    model_type = None
    specials = None

    def __init__(self, lowercase=True):
        self.lowercase = lowercase
        ids = {}
        for role, token in self.specials.items():
            ids[role] = self._lookup(token)
        if ids["unk"] is None:
            raise UserInputError(f"tokenizer vocabulary has no unknown token {self.specials['unk']!r}")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            ids["pad"],
            ids["unk"],
            ids["cls"],
            ids["sep"],
            ids["mask"],
        )
        self._word_start = None

    @property
    def vocab_size(self):
        raise NotImplementedError

    @property
    def special_ids(self):
        """Ids that never appear in tokenized text and are never chosen as random replacements when masking."""
        return sorted({i for i in (self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id) if i is not None})

    def tokenize(self, text):
        return [self.id_to_token(i) for i in self.encode(text)]

    def encode(self, text):
        return self.encode_with_offsets(text)[0]

    def encode_batch(self, texts):
        """`[self.encode(t) for t in texts]`, faster where the backend batches."""
        return [self.encode(text) for text in texts]

    def encode_with_offsets(self, text):
        raise NotImplementedError

    def id_to_token(self, token_id):
        raise NotImplementedError

    def token_to_id(self, token):
        """The id of `token`, or `unk_id` when it is not in the vocabulary."""
        token_id = self._lookup(token)
        return self.unk_id if token_id is None else token_id

    def _lookup(self, token):
        raise NotImplementedError

    def _is_word_start_piece(self, piece):
        raise NotImplementedError

    def is_word_start(self, token_id):
        """Whether the token begins a word (whole-word and n-gram masking never split a word)."""
        return bool(self.word_start_table()[token_id])

    def word_start_table(self):
        """A bool NumPy array over the vocabulary: `is_word_start` for every id (special ids are word starts)."""
        if self._word_start is None:
            table = np.array([self._is_word_start_piece(self.id_to_token(i)) for i in range(self.vocab_size)])
            table[self.special_ids] = True
            self._word_start = table
        return self._word_start

    def model_file_bytes(self):
        """The bytes `save` writes as the model file (`spiece.model` or `vocab.txt`)."""
        raise NotImplementedError

    def save(self, directory):
        raise NotImplementedError

    def _write_configs(self, directory, tokenizer_config):
        special_map = {
            f"{role}_token": token for role, token in self.specials.items() if self._lookup(token) is not None
        }
        ours = {"model_type": self.model_type, "lowercase": self.lowercase}
        for name, content in (
            ("tokenizer_config.json", {**tokenizer_config, **special_map, "model_max_length": 512}),
            ("special_tokens_map.json", special_map),
            (CONFIG_FILE, ours),
        ):
            write_json(os.path.join(directory, name), content)

    def __repr__(self):
        return f"{type(self).__name__}(model_type={self.model_type!r}, vocab_size={self.vocab_size})"
