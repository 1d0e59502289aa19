"""Training a tokenizer on text (SentencePiece unigram for ALBERT, WordPiece for BERT), or importing an existing one.

The command line (`keras-albert train-tokenizer`) is `keras_albert.commands.train_tokenizer`.
"""

import io
import os

from keras_albert.data import text, tfds_input
from keras_albert.data.tokenizers.base import BERT_SPECIALS, MODEL_TYPES, VOCAB_FILE, refuse_other_model_type
from keras_albert.data.tokenizers.loading import load_tokenizer, sniff_sentencepiece
from keras_albert.data.tokenizers.sentence_piece import SentencePieceTokenizer
from keras_albert.data.tokenizers.word_piece import WordPieceTokenizer
from keras_albert.errors import UserInputError


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
    tfds_text_field="text",
    tfds_data_dir=None,
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
        tfds_text_field, tfds_data_dir: str. For `tfds:NAME[/CONFIG][:SPLIT]` inputs (prepared TensorFlow Datasets
            splits): the feature holding each example's text, and where the dataset is prepared.

    Returns:
        The saved `Tokenizer`.
    """
    if model_type not in MODEL_TYPES:
        raise UserInputError(f"--model_type: expected one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    refuse_other_model_type(output_dir, model_type, flag="--output")  # before hours of training, not after
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
    for path in paths:  # fail early, naming the file, on a missing, empty or binary input
        if text.is_tfds(path):
            tfds_input.check_text_input(path, tfds_text_field, tfds_data_dir)
        else:
            text.read_text(path)
    sentences = text.iter_sentences(paths, document_break_lines, tfds_text_field, tfds_data_dir)
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
    if name.endswith(".model") or sniff_sentencepiece(path) or name == VOCAB_FILE or name.endswith(".vocab.txt"):
        return path
    return None
