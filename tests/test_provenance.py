"""Provenance (issue 9): pretrain, squad and export refuse a tokenizer that is not their records' or does not fit
their model, in one line, before they write anything; only a loaded tokenizer's own files are ever written."""

import json
import os
import shutil

import pytest

from fixtures_data import pretraining_records, scratch_dir, trained_tokenizer_dir
from keras_albert import cli
from keras_albert.data.summary import read_records_summary
from keras_albert.errors import UserInputError
from keras_albert.training.provenance import tokenizer_sha256

SEQ, PREDICTIONS = 32, 5


@pytest.fixture(scope="module")
def records():
    """Records written with the ALBERT tokenizer of 2000 pieces."""
    return pretraining_records(60, SEQ, PREDICTIONS)


def _tiny_model_file(kind, vocabulary_size):
    from keras_albert import PretrainingModel, SquadModel

    cls = PretrainingModel if kind == "pretraining" else SquadModel
    model = cls.from_preset("albert_tiny", vocabulary_size=vocabulary_size, num_layers=1, max_sequence_length=SEQ)
    path = os.path.join(scratch_dir("model"), "model.keras")
    model.save(path)
    return path


def _fails(capsys, *argv):
    status = cli.main(list(argv))
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _nothing_under(path):
    return not os.path.exists(path) or not os.listdir(path)


def test_pretrain_refuses_another_tokenizer_than_the_records(records, capsys):
    data_dir = os.path.dirname(records)
    recorded = json.load(open(os.path.join(data_dir, "summary.json")))
    for other, why in ((trained_tokenizer_dir("albert", 1000), "vocabulary 1000"),
                       (trained_tokenizer_dir("bert", 2000), "vocabulary 2000")):  # same size, another model file
        output_dir = os.path.join(scratch_dir("provenance-run"), "run")
        err = _fails(capsys, "pretrain", "--train_files", records, "--tokenizer", other, "--output_dir", output_dir,
                     "--model_size", "tiny", "--total_steps", "2", "--warmup_steps", "1", "--quiet")
        assert f"--tokenizer {other} ({why}" in err and "is not the tokenizer the records were written with" in err
        assert os.path.join(data_dir, "summary.json") in err and recorded["tokenizer_sha256"][:12] in err
        assert not os.path.exists(output_dir)  # nothing written: not even the directory


def test_pretrain_refuses_a_vocabulary_that_does_not_fit_the_tokenizer(records, capsys):
    output_dir = os.path.join(scratch_dir("provenance-vocab"), "run")
    err = _fails(capsys, "pretrain", "--train_files", records, "--vocab_size", "3000", "--output_dir", output_dir,
                 "--model_size", "tiny", "--total_steps", "2", "--warmup_steps", "1", "--quiet")
    assert "has a vocabulary of 2000 tokens" in err and "(--vocab_size) has 3000" in err, err
    assert not os.path.exists(output_dir)


def test_pretrain_refuses_a_tokenizer_other_than_the_one_its_run_directory_holds(records, capsys):
    from keras_albert.data import load_tokenizer

    output_dir = scratch_dir("provenance-resume")
    load_tokenizer(trained_tokenizer_dir("albert", 1000)).save(output_dir)  # a run started with another tokenizer
    before = sorted(os.listdir(output_dir))
    err = _fails(capsys, "pretrain", "--train_files", records, "--output_dir", output_dir, "--model_size", "tiny",
                 "--total_steps", "2", "--warmup_steps", "1", "--quiet")
    assert f"is not the tokenizer {output_dir} (vocabulary 1000" in err, err
    assert sorted(os.listdir(output_dir)) == before


def test_only_a_loaded_tokenizers_own_files_are_written():
    from keras_albert.training.pretrain import copy_tokenizer

    source = scratch_dir("provenance-source")
    shutil.copytree(trained_tokenizer_dir("albert"), source, dirs_exist_ok=True)
    with open(os.path.join(source, "secrets.txt"), "w") as file:
        file.write("not a tokenizer file")
    target = scratch_dir("provenance-target")
    copy_tokenizer(source, target)
    assert "secrets.txt" not in os.listdir(target) and "spiece.model" in os.listdir(target)
    assert sorted(os.listdir(target)) == sorted(set(os.listdir(source)) - {"secrets.txt"})
    broken = scratch_dir("provenance-broken")
    with open(os.path.join(broken, "spiece.model"), "wb") as file:
        file.write(b"\x0a\x00not a sentencepiece model")
    empty = scratch_dir("provenance-empty")
    with pytest.raises(UserInputError, match="tokenizer"):
        copy_tokenizer(broken, empty)
    assert os.listdir(empty) == []


def test_records_from_two_directories_of_different_lengths_are_refused_naming_the_file():
    first, second = scratch_dir("provenance-a"), scratch_dir("provenance-b")
    for directory, length in ((first, 128), (second, 64)):
        with open(os.path.join(directory, "summary.json"), "w") as file:
            json.dump({"settings": {"max_seq_length": length, "max_predictions_per_seq": 20}}, file)
    files = [os.path.join(first, "a.tfrecord"), os.path.join(second, "b.tfrecord")]
    with pytest.raises(UserInputError, match=f"{second}/summary.json: records of mixed max_seq_length: 64 here, "
                                             f"128 in {first}/summary.json"):
        read_records_summary(files)


def test_export_refuses_a_tokenizer_that_does_not_fit_the_model(capsys):
    model_file = _tiny_model_file("pretraining", 1000)
    tokenizer = trained_tokenizer_dir("albert", 2000)
    output_dir = os.path.join(scratch_dir("provenance-export"), "hf")
    err = _fails(capsys, "export", "--checkpoint_path", model_file, "--output_dir", output_dir,
                 "--tokenizer", tokenizer)
    assert f"--tokenizer {tokenizer} has a vocabulary of 2000 tokens; the model of {model_file} has 1000" in err
    assert not os.path.exists(output_dir)


def test_export_checks_the_tokenizer_against_the_runs_records(records, capsys):
    """A run directory (settings.json naming the records, its model.keras): --tokenizer of the right size but another
    model file is refused, naming the records' summary."""
    run_dir = scratch_dir("provenance-export-run")
    shutil.copy(_tiny_model_file("pretraining", 2000), os.path.join(run_dir, "model.keras"))
    with open(os.path.join(run_dir, "settings.json"), "w") as file:
        json.dump({"settings": {"train_files": records}}, file)
    other = trained_tokenizer_dir("bert", 2000)
    output_dir = os.path.join(scratch_dir("provenance-export2"), "hf")
    err = _fails(capsys, "export", "--checkpoint_path", run_dir, "--output_dir", output_dir, "--tokenizer", other)
    assert "is not the tokenizer the records were written with" in err
    assert os.path.join(os.path.dirname(records), "summary.json") in err
    assert not os.path.exists(output_dir)
    right = trained_tokenizer_dir("albert", 2000)
    assert cli.main(["export", "--checkpoint_path", run_dir, "--output_dir", output_dir, "--tokenizer", right]) == 0
    from keras_albert.data import load_tokenizer

    assert tokenizer_sha256(load_tokenizer(output_dir)) == tokenizer_sha256(load_tokenizer(right))


def test_squad_refuses_a_model_whose_vocabulary_differs_from_the_tokenizer(capsys):
    model_file = _tiny_model_file("pretraining", 1000)
    tokenizer = trained_tokenizer_dir("albert", 2000)
    output_dir = os.path.join(scratch_dir("provenance-squad"), "out")
    err = _fails(capsys, "squad", "--load_from", "checkpoint", "--checkpoint_path", model_file, "--tokenizer",
                 tokenizer, "--output_dir", output_dir, "--max_seq_length", "32", "--doc_stride", "8",
                 "--max_query_length", "8", "--total_steps", "1")
    assert f"--tokenizer {tokenizer} has a vocabulary of 2000 tokens; the model of --checkpoint_path {model_file} " \
           "has 1000" in err, err
    assert not os.path.exists(output_dir)
