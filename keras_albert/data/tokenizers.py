"""Tokenizers for ALBERT (SentencePiece unigram) and BERT (WordPiece): loading, training and saving.

One small interface, `Tokenizer`, serves pretraining data, SQuAD features and the models: ids, character offsets into
the original text, the special ids, and word starts for whole-word and n-gram masking. A saved tokenizer directory is
what keras-hub (`AlbertTokenizer(proto=...)`, `BertTokenizer(vocabulary=...)`) and transformers
(`AlbertTokenizer.from_pretrained`, `BertTokenizer.from_pretrained`) load.

The command line (`keras-albert train-tokenizer`) is `keras_albert.commands.train_tokenizer`.
"""

import io
import os
import re
import string

import numpy as np

from keras_albert.io import read_json, write_bytes, write_json
from keras_albert.errors import UserInputError

MODEL_TYPES = ("albert", "bert")
CONFIG_FILE = "keras_albert_tokenizer.json"
SPIECE_FILE = "spiece.model"
VOCAB_FILE = "vocab.txt"
ALBERT_SPECIALS = {"pad": "<pad>", "unk": "<unk>", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
_PUNCTUATION = frozenset(string.punctuation)
_ASCII_LETTERS = frozenset(string.ascii_letters)
# A piece made only of English letters and punctuation (or empty) continues a word; one regex match per piece is
# several times faster than a test per character, over a whole vocabulary.
_LETTERS_AND_PUNCTUATION = re.compile("[A-Za-z" + re.escape(string.punctuation) + "]*")


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
    if _sniff_sentencepiece(path):
        return SentencePieceTokenizer(path)
    return WordPieceTokenizer(path)


def train_tokenizer(
    inputs,
    output_dir,
    model_type,
    vocab_size,
    *,
    character_coverage=0.9995,
    input_sentence_size=2_000_000,
    document_break_lines=1,
    seed=0,
    verbose=False,
):
    """Train (or import) a tokenizer and save it to `output_dir`.

    ALBERT: a SentencePiece unigram model, case-folded (`nmt_nfkc_cf`), with `<pad>` 0, `<unk>` 1, `[CLS]` 2,
    `[SEP]` 3, `[MASK]` 4 (the last three control symbols) as ALBERT's. BERT: a WordPiece vocabulary from the
    `tokenizers` library's trainer, lowercased and accent-stripped, with `[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3,
    `[MASK]` 4.

    Args:
        inputs: str, list of str or None. Text files or globs (plain or gzip); `None` uses the embedded corpus. A
            single existing `spiece.model` or `vocab.txt` is imported instead of training.
        output_dir: str. Directory to write (created).
        model_type: str. "albert" or "bert".
        vocab_size: int. Vocabulary size (ignored when importing).
        character_coverage: float. SentencePiece's share of characters covered by the vocabulary.
        input_sentence_size: int. SentencePiece samples at most this many sentences.
        document_break_lines: int. As `text.split_documents` (only affects sentence boundaries here).
        seed: int. SentencePiece's sampling seed.
        verbose: bool. Let the trainers log.

    Returns:
        The saved `Tokenizer`.
    """
    from keras_albert.data import text

    if model_type not in MODEL_TYPES:
        raise UserInputError(f"--model_type: expected one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    imported = _existing_tokenizer_file(inputs)
    if imported is not None:
        tokenizer = load_tokenizer(imported)
        if tokenizer.model_type != model_type:
            raise UserInputError(
                f"--input: {imported} is a {tokenizer.model_type} tokenizer but --model_type is {model_type}"
            )
        tokenizer.save(output_dir)
        return tokenizer
    if not isinstance(vocab_size, int) or vocab_size < 10:
        raise UserInputError(f"--vocab_size: expected an integer >= 10, got {vocab_size!r}")
    paths = text.resolve_inputs(inputs)
    for path in paths:
        text.read_text(path)  # fail early, naming the file, on a missing, empty or binary input
    sentences = text.iter_sentences(paths, document_break_lines)
    if model_type == "albert":
        tokenizer = _train_sentencepiece(sentences, vocab_size, character_coverage, input_sentence_size, seed, verbose)
    else:
        tokenizer = _train_wordpiece(sentences, vocab_size, verbose)
    tokenizer.save(output_dir)
    return tokenizer


def _train_sentencepiece(sentences, vocab_size, character_coverage, input_sentence_size, seed, verbose):
    import sentencepiece

    sentencepiece.set_random_generator_seed(seed)
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=sentences,
            model_writer=model,
            model_type="unigram",
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            normalization_rule_name="nmt_nfkc_cf",
            pad_id=0,
            unk_id=1,
            bos_id=-1,
            eos_id=-1,
            pad_piece="<pad>",
            unk_piece="<unk>",
            control_symbols=["[CLS]", "[SEP]", "[MASK]"],
            input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True,
            num_threads=os.cpu_count() or 1,
            minloglevel=0 if verbose else 2,
        )
    except RuntimeError as error:
        message = str(error).splitlines()[-1] if str(error) else "training failed"
        if "vocab" in message.lower():
            raise UserInputError(f"--vocab_size: {vocab_size} is too large for this corpus ({message})") from None
        raise UserInputError(f"--input: SentencePiece training failed ({message})") from None
    tokenizer = SentencePieceTokenizer(model.getvalue())
    expected = {0: "<pad>", 1: "<unk>", 2: "[CLS]", 3: "[SEP]", 4: "[MASK]"}
    assert {i: tokenizer.id_to_token(i) for i in expected} == expected
    return tokenizer


def _train_wordpiece(sentences, vocab_size, verbose):
    from tokenizers.implementations import BertWordPieceTokenizer

    trainer = BertWordPieceTokenizer(lowercase=True, strip_accents=None, clean_text=True)
    trainer.train_from_iterator(
        sentences,
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(BERT_SPECIALS.values()),
        show_progress=verbose,
    )
    vocab = trainer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    if len(tokens) <= len(BERT_SPECIALS):
        raise UserInputError("--input: too little text to train a WordPiece vocabulary")
    return WordPieceTokenizer(tokens, lowercase=True)


def _existing_tokenizer_file(inputs):
    """The path when `inputs` names exactly one existing `spiece.model`/`vocab.txt`-like file, else None."""
    if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
        inputs = inputs[0]
    if not isinstance(inputs, (str, os.PathLike)):
        return None
    path = os.fspath(inputs)
    if not os.path.isfile(path):
        return None
    name = os.path.basename(path)
    if name.endswith(".model") or _sniff_sentencepiece(path) or name == VOCAB_FILE or name.endswith(".vocab.txt"):
        return path
    return None


def _sniff_sentencepiece(path):
    if path.endswith(".model"):
        return True
    with open(path, "rb") as file:
        head = file.read(64)
    # A serialized ModelProto starts with field 1 (pieces, length-delimited) and holds binary bytes.
    return head[:1] == b"\x0a" and (b"\x00" in head or any(byte > 0x7F for byte in head[:4]))


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
