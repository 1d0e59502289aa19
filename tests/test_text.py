"""Reading text: inputs, gzip and plain files, bad files, documents and sentences, the embedded corpus."""

import gzip
import json
import os

import pytest

from fixtures_data import scratch_dir
from keras_albert.data import text
from keras_albert.errors import UserInputError


def _write(directory, name, content):
    path = os.path.join(directory, name)
    with open(path, "wb") as file:
        file.write(content)
    return path


def test_embedded_corpus_is_the_six_novels():
    paths = text.corpus_files()
    assert [os.path.basename(p) for p in paths] == [
        "emma.txt.gz",
        "mansfieldpark.txt.gz",
        "northangerabbey.txt.gz",
        "persuasion.txt.gz",
        "prideprejudice.txt.gz",
        "sensesensibility.txt.gz",
    ]
    emma = text.read_text(paths[0])
    assert emma.startswith("EMMA") and "Emma Woodhouse, handsome, clever, and rich" in emma
    sources = os.path.join(os.path.dirname(paths[0]), "SOURCES.json")
    assert json.load(open(sources))["files"] == [os.path.basename(p) for p in paths]


def test_gzip_detected_by_content_and_plain_text_equal():
    directory = scratch_dir("text")
    content = "First line.\n\nSecond paragraph \u00e9t\u00e9.\n".encode()
    plain = _write(directory, "a.txt", content)
    packed = _write(directory, "b.data", gzip.compress(content))  # no .gz suffix
    assert text.read_text(plain) == text.read_text(packed) == content.decode()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"  \n\n\t\n", "empty file"),
        (b"PK\x03\x04\x00\x00binary", "binary file"),
        (b"caf\xe9", "not UTF-8"),
        (gzip.compress(b"", mtime=0)[:10], "cannot read"),
    ],
)
def test_bad_files_name_the_file(content, message):
    path = _write(scratch_dir("bad"), "input.txt", content)
    with pytest.raises(UserInputError, match=message) as error:
        text.read_text(path)
    assert path in str(error.value) and "\n" not in str(error.value)


def test_resolve_inputs_globs_lists_directories_and_errors():
    directory = scratch_dir("inputs")
    a = _write(directory, "a.txt", b"A.")
    b = _write(directory, "b.txt.gz", gzip.compress(b"B."))
    assert text.resolve_inputs(os.path.join(directory, "*.txt*")) == [a, b]
    assert text.resolve_inputs(f"{b},{a}") == [b, a]
    assert text.resolve_inputs([a, a, b]) == [a, b]
    assert text.resolve_inputs(directory) == [a, b]
    assert text.resolve_inputs(None) == text.corpus_files()
    with pytest.raises(UserInputError, match=r"--input: no file matches '.*nothing\*'"):
        text.resolve_inputs([a, os.path.join(directory, "nothing*")])


def test_documents_on_blank_lines_and_sentences():
    content = (
        "\n\nEMMA\n\n\n\nCHAPTER I\n\n"
        "Emma Woodhouse, handsome, clever, and rich, with a comfortable home\n"
        "and happy disposition. Mr. Knightley, a sensible man about seven or\n"
        'eight-and-thirty, was a visitor! "Poor Miss Taylor!--I wish she were here\n'
        'again." Said J. Smith of St. Ives...   \n'
        "  \t\n"
        "Next paragraph? Yes.\n\n\n\nA new chapter.\r\n"
    )
    paragraphs = text.split_documents(content)
    assert paragraphs == [
        ["EMMA"],
        ["CHAPTER I"],
        [
            "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition.",
            "Mr. Knightley, a sensible man about seven or eight-and-thirty, was a visitor!",
            '"Poor Miss Taylor!--I wish she were here again."',
            "Said J. Smith of St. Ives...",
        ],
        ["Next paragraph?", "Yes."],
        ["A new chapter."],
    ]
    chapters = text.split_documents(content, document_break_lines=2)
    assert chapters == [["EMMA"], ["CHAPTER I"] + paragraphs[2] + paragraphs[3], ["A new chapter."]]
    assert text.split_sentences("  one.  Two?\nthree. ") == ["one.", "Two? three."]


def test_sentence_ends_after_quotes_brackets_and_abbreviations():
    content = (
        'Mr. Smith met Dr. J. Watson at 5 p.m. Tea followed. He said "Go." Then he left. Ask Mr." Then go. '
        'Wait... What?! "Yes!" (No.) [Fine.] _Done._ 1814 came? \u201cQuite.\u201d Etc. and so on.'
    )
    sentences = [
        "Mr. Smith met Dr. J. Watson at 5 p.m. Tea followed.",
        'He said "Go."',
        "Then he left.",
        'Ask Mr."',  # a closing quote makes the full stop an end, even after an abbreviation
        "Then go.",
        "Wait...",
        "What?!",
        '"Yes!"',
        "(No.)",
        "[Fine.]",
        "_Done._",
        "1814 came?",
        "\u201cQuite.\u201d",
        "Etc. and so on.",
    ]
    assert text.split_documents(content) == [sentences]
    assert text.split_sentences(content) == sentences


@pytest.mark.parametrize("space", [" ", "\t", "\u00a0"])
def test_whitespace_around_blank_lines_and_in_runs(space):
    content = "It was  late. \n \n  Next day.  Rain.\n\n\n\n Chapter  two.  ".replace(" ", space)
    assert text.split_documents(content) == [["It was late."], ["Next day.", "Rain."], ["Chapter two."]]
    assert text.split_documents(content, 3) == [["It was late.", "Next day.", "Rain."], ["Chapter two."]]


def test_whole_corpus_reads_into_documents():
    documents = text.read_documents(text.corpus_files()[3])  # Persuasion
    sentences = [s for d in documents for s in d]
    assert len(documents) > 900 and len(sentences) > 3000
    assert all(s and s == " ".join(s.split()) for s in sentences)
    assert any(s.startswith("Sir Walter Elliot, of Kellynch Hall") for s in sentences)
