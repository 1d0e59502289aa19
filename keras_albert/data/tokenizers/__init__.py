"""Tokenizers for ALBERT (SentencePiece unigram) and BERT (WordPiece): loading, training and saving.

One small interface, `Tokenizer`, serves pretraining data, SQuAD features and the models: ids, character offsets into
the original text, the special ids, and word starts for whole-word and n-gram masking. A saved tokenizer directory is
what keras-hub (`AlbertTokenizer(proto=...)`, `BertTokenizer(vocabulary=...)`) and transformers
(`AlbertTokenizer.from_pretrained`, `BertTokenizer.from_pretrained`) load.

    base.py            `Tokenizer` and the file names
    sentence_piece.py  `SentencePieceTokenizer` (ALBERT)
    word_piece.py      `WordPieceTokenizer` (BERT)
    loading.py         `load_tokenizer`
    training.py        `train_tokenizer`; the command line is `keras_albert.commands.train_tokenizer`
"""

from keras_albert.data.tokenizers.base import (
    ALBERT_SPECIALS,
    BERT_SPECIALS,
    CONFIG_FILE,
    MODEL_TYPES,
    SPIECE_FILE,
    VOCAB_FILE,
    Tokenizer,
)
from keras_albert.data.tokenizers.loading import load_tokenizer
from keras_albert.data.tokenizers.sentence_piece import SentencePieceTokenizer
from keras_albert.data.tokenizers.training import train_tokenizer
from keras_albert.data.tokenizers.word_piece import WordPieceTokenizer

__all__ = [
    "ALBERT_SPECIALS",
    "BERT_SPECIALS",
    "CONFIG_FILE",
    "MODEL_TYPES",
    "SPIECE_FILE",
    "SentencePieceTokenizer",
    "Tokenizer",
    "VOCAB_FILE",
    "WordPieceTokenizer",
    "load_tokenizer",
    "train_tokenizer",
]
