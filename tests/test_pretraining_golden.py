"""create-pretraining-data writes the same bytes as before its split into `keras_albert/data/pretraining/`.

`fixtures/pretraining_golden.json` holds the SHA-256 of every shard, and the summary, that commit 13e0dad wrote on
the embedded corpus (`fixtures/make_pretraining_golden.py` says how): ALBERT (all six novels) and BERT (Persuasion)
tokenizers, sequence lengths 128 and 512, every masking mode, both builders, unmasked records, two workers, 4-grams
with two copies. Each is rebuilt here from the same tokenizer files and compared. The compiled-builder configurations
and a few NumPy ones run by default (about a second each); the other NumPy ones are `large`.
"""

import hashlib
import json
import os

import pytest

from keras_albert.data import create_pretraining_data, text
from keras_albert.data.pretraining.instances import compiled_module

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
with open(os.path.join(FIXTURES, "pretraining_golden.json")) as _file:
    GOLDEN = json.load(_file)["configurations"]
# Summary fields that depend on the machine, the paths, the time taken or (for the tokenizer fields) were added
# after the golden run.
VOLATILE = {"seconds", "corpus_tokens_per_second", "files", "vocab_size", "tokenizer_vocab_size", "tokenizer_sha256"}
VOLATILE_SETTINGS = {"tokenizer", "workers", "builder", "framed"}
FAST_NUMPY = {"albert-128-ngram-numpy", "bert-512-whole_word-numpy", "bert-128-token-2-workers-numpy"}


def _marks(name):
    call = GOLDEN[name]["call"]
    if call["builder"] == "numpy" and name not in FAST_NUMPY:
        return [pytest.mark.large]
    return []


def _shard_digests(directory):
    digests = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".tfrecord"):
            with open(os.path.join(directory, name), "rb") as file:
                digests[name] = hashlib.sha256(file.read()).hexdigest()
    return digests


@pytest.mark.parametrize("name", [pytest.param(name, marks=_marks(name)) for name in sorted(GOLDEN)])
def test_shards_are_byte_identical_to_the_golden_run(name, tmp_path):
    golden = GOLDEN[name]
    settings = dict(golden["call"])
    if settings["builder"] == "compiled" and compiled_module() is None:
        if os.environ.get("KERAS_ALBERT_REQUIRE_COMPILED"):
            pytest.fail("keras_albert.data.pretraining._instances was not compiled by the install")
        pytest.skip("this install has no compiled instance builder")
    tokenizer = os.path.join(FIXTURES, "tokenizers", settings.pop("tokenizer"))
    corpus = settings.pop("corpus")  # a file of the embedded corpus, or None for all of it
    inputs = None if corpus is None else [p for p in text.corpus_files() if os.path.basename(p) == corpus]
    summary = create_pretraining_data(inputs, tokenizer, str(tmp_path), progress=False, **settings)
    assert summary["settings"]["builder"] == golden["call"]["builder"]
    assert _shard_digests(tmp_path) == golden["shards"]
    stable = {key: value for key, value in summary.items() if key not in VOLATILE}
    stable["settings"] = {key: value for key, value in summary["settings"].items() if key not in VOLATILE_SETTINGS}
    assert stable == golden["summary"]


def test_golden_tokenizers_are_the_recorded_files():
    """The fixture's tokenizer files are those the golden run used (a changed file would explain a failure above)."""
    expected = {
        "albert/spiece.model": "0ce09727e7d7af482c5b3884c973248012f271779809e81a1fc4cde3183f7f37",
        "bert/vocab.txt": "880c84c5e07964ee35d6c588a1c802af034e507728bb0e3ceddf21e0e5fd5529",
    }
    for path, digest in expected.items():
        with open(os.path.join(FIXTURES, "tokenizers", path), "rb") as file:
            assert hashlib.sha256(file.read()).hexdigest() == digest, path
