"""TensorFlow Datasets as input (issue 15): `tfds:NAME[/CONFIG][:SPLIT]` for create-pretraining-data and
train-tokenizer, and `tfds:squad/v2.0[:SPLIT]` wherever a SQuAD JSON is read.

Offline, with real TFDS builders defined here over local files and prepared with `download_and_prepare` (nothing is
mocked, nothing downloaded): a text builder whose examples are a text file's documents, and a SQuAD builder named
`squad` whose features and example generation are TFDS's own squad builder's (`_v2_features`,
`_generate_v2_examples`), over the embedded Austen SQuAD v2.0 files. It is not registered (the installed TFDS's
`squad` is), so `tfds:squad/v2.0` is read by TFDS's real squad builder from the files this one prepared.
"""

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds  # in the test extra, as keras-albert[tfds] installs it
from tensorflow_datasets.datasets.squad import squad_dataset_builder as real_squad
from tensorflow_datasets.question_answering import qa_utils

from fixtures_data import novel_slice, scratch_dir, trained_tokenizer_dir
from keras_albert import cli
from keras_albert.data import create_pretraining_data, squad, tfds_input, tokenizers
from keras_albert.data import text as text_module
from keras_albert.errors import UserInputError

TEXT_DATASET = "keras_albert_test_text"
SOURCES = {}  # what the builders read, set before they prepare


class KerasAlbertTestText(tfds.core.GeneratorBasedBuilder):
    """One example a document of a local text file (documents end at blank lines), in file order."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        features = tfds.features.FeaturesDict({"text": tfds.features.Text(), "number": np.int64})
        return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(SOURCES["text"])}

    def _generate_examples(self, path):
        with open(path, encoding="utf-8") as file:
            documents = [d for d in re.split(r"\n[^\S\n]*\n\s*", file.read()) if d.strip()]
        for number, document in enumerate(documents):
            yield number, {"text": document, "number": number}


class Squad(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """TFDS's squad builder (its version, configs, features and example generation) reading local files instead of
    downloading them: v2.0 the Austen questions, v1.1 their answerable ones."""

    name = "squad"
    VERSION = real_squad.Builder.VERSION
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="v1.1"), tfds.core.BuilderConfig(name="v2.0")]

    def _info(self):
        if self.builder_config.name == "v1.1":
            return tfds.core.DatasetInfo(builder=self, features=qa_utils.squadlike_features())
        return tfds.core.DatasetInfo(builder=self, features=real_squad._v2_features())

    def _split_generators(self, dl_manager):
        if self.builder_config.name == "v1.1":
            return {"validation": qa_utils.generate_squadlike_examples(SOURCES["squad_v1"])}
        return {
            "train": real_squad._generate_v2_examples(squad.austen_squad_path("train")),
            "validation": real_squad._generate_v2_examples(squad.austen_squad_path("dev")),
        }

    def _generate_examples(self):
        raise NotImplementedError  # the splits' generators are given whole by _split_generators


@pytest.fixture(scope="module")
def data_dir():
    directory = scratch_dir("tfds")
    SOURCES["text"] = novel_slice(700)
    KerasAlbertTestText(data_dir=directory).download_and_prepare()
    Squad(data_dir=directory, config="v2.0").download_and_prepare()
    SOURCES["squad_v1"] = os.path.join(directory, "austen-dev-v1.1.json")
    with open(SOURCES["squad_v1"], "w", encoding="utf-8") as file:
        json.dump(_answerable_only(squad.load_json(squad.austen_squad_path("dev"))), file)
    Squad(data_dir=directory, config="v1.1").download_and_prepare()
    return directory


def _answerable_only(dataset):
    """A SQuAD v1.1 dataset of a v2.0 one's answerable questions."""
    articles = []
    for article in dataset["data"]:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = [{k: v for k, v in qa.items() if k not in ("is_impossible", "plausible_answers")}
                   for qa in paragraph["qas"] if not qa.get("is_impossible")]
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            articles.append({**article, "paragraphs": paragraphs})
    return {"version": "1.1", "data": articles}


def _shards(directory):
    return {name: open(os.path.join(directory, name), "rb").read() for name in sorted(os.listdir(directory))
            if name.endswith(".tfrecord")}


def test_records_from_a_tfds_text_builder_are_the_files_records(data_dir, capsys):
    tokenizer = trained_tokenizer_dir("albert")
    settings = dict(max_seq_length=128, max_predictions_per_seq=20, dupe_factor=3, num_shards=2, seed=5)
    from_file = scratch_dir("from-file")
    create_pretraining_data(SOURCES["text"], tokenizer, from_file, workers=1, progress=False, **settings)
    from_tfds = scratch_dir("from-tfds")
    argv = ["create-pretraining-data", "--input", f"tfds:{TEXT_DATASET}:train", "--tfds_data_dir", data_dir,
            "--tokenizer", tokenizer, "--output_dir", from_tfds, "--workers", "2", "--quiet"]
    for key, value in settings.items():
        argv += [f"--{key}", str(value)]
    assert cli.main(argv) == 0, capsys.readouterr().err
    file_shards, tfds_shards = _shards(from_file), _shards(from_tfds)
    assert sum(map(len, file_shards.values())) > 50_000
    assert tfds_shards == file_shards  # byte-identical
    summary = squad.load_json(os.path.join(from_tfds, "summary.json"))
    assert summary["files"] == [f"tfds:{TEXT_DATASET}:train"]
    assert summary["tfds"] == {"text_field": "text", "data_dir": data_dir}


def test_a_tokenizer_trained_on_a_tfds_split_is_the_files(data_dir):
    from_file = tokenizers.train_tokenizer(SOURCES["text"], scratch_dir("tok-file"), "albert", 300)
    from_tfds = tokenizers.train_tokenizer(f"tfds:{TEXT_DATASET}", scratch_dir("tok-tfds"), "albert", 300,
                                           tfds_data_dir=data_dir)
    assert from_tfds.model_file_bytes() == from_file.model_file_bytes()


def _all_ids(dataset):
    return [qa["id"] for article in dataset["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


@pytest.mark.parametrize("split, json_split", [("validation", "dev"), ("train", "train")])
def test_squad_from_tfds_is_the_jsons_examples_and_scores(data_dir, split, json_split):
    assert type(tfds.builder("squad/v2.0", data_dir=data_dir)) is real_squad.Builder  # TFDS's own reads it
    path = squad.austen_squad_path(json_split)
    spec = "tfds:squad/v2.0" + ("" if split == "train" else f":{split}")
    from_json = squad.read_squad(path, version="2.0")
    from_tfds = squad.read_squad(spec, version="2.0", tfds_data_dir=data_dir)
    assert len(from_tfds) == len(from_json) > 80
    assert sorted(from_tfds, key=lambda e: e.qas_id) == sorted(from_json, key=lambda e: e.qas_id)
    assert sum(e.is_impossible for e in from_tfds) > 10

    # The official scores of one set of predictions, against either dataset: right, wrong, partial, empty answers.
    dataset_json, dataset_tfds = squad.load_json(path), squad.load_json(spec, tfds_data_dir=data_dir)
    assert dataset_tfds["version"] == "v2.0" and sorted(_all_ids(dataset_tfds)) == sorted(_all_ids(dataset_json))
    predictions, na_probs = {}, {}
    for number, example in enumerate(sorted(from_json, key=lambda e: e.qas_id)):
        answer = example.answers[0].text if example.answers else example.context[:20]
        predictions[example.qas_id] = ["", answer, answer.split(" ")[0], "Wentworth"][number % 4]
        na_probs[example.qas_id] = (number % 7) / 7
    scores_json = squad.evaluate(dataset_json, predictions, na_probs=na_probs)
    scores_tfds = squad.evaluate(dataset_tfds, predictions, na_probs=na_probs)
    assert scores_tfds == pytest.approx(scores_json, rel=0, abs=1e-9)  # questions summed in another order
    assert 0 < scores_json["f1"] < 100 and scores_json["NoAns_total"] > 10


def test_squad_v1_from_tfds_is_the_jsons_examples_and_scores(data_dir):
    from_json = squad.read_squad(SOURCES["squad_v1"], version="1.1")
    from_tfds = squad.read_squad("tfds:squad/v1.1:validation", version="1.1", tfds_data_dir=data_dir)
    assert len(from_tfds) == len(from_json) > 40 and not any(e.is_impossible for e in from_tfds)
    assert sorted(from_tfds, key=lambda e: e.qas_id) == sorted(from_json, key=lambda e: e.qas_id)
    dataset_tfds = squad.load_json("tfds:squad/v1.1:validation", tfds_data_dir=data_dir)
    assert dataset_tfds["version"] == "v1.1"
    predictions = {e.qas_id: (e.answers[0].text if i % 2 else e.question) for i, e in enumerate(from_json)}
    scores_json = squad.evaluate(squad.load_json(SOURCES["squad_v1"]), predictions)
    assert squad.evaluate(dataset_tfds, predictions) == pytest.approx(scores_json, rel=0, abs=1e-9)
    assert 40 < scores_json["exact"] < 70
    with pytest.raises(UserInputError, match="is_impossible' is true in a SQuAD v1.1 dataset"):
        squad.read_squad("tfds:squad/v2.0:validation", version="1.1", tfds_data_dir=data_dir)


def test_squad_training_reads_tfds_splits(data_dir, monkeypatch):
    """What `keras-albert squad --train_file tfds:squad/v2.0 --predict_file tfds:squad/v2.0:validation` reads: the
    training layer's reader, with the data directory from TFDS_DATA_DIR as TFDS users set it."""
    from keras_albert.training.squad import _examples

    monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
    examples, dataset = _examples(None, "tfds:squad/v2.0:validation", "2.0", "predict_file", "dev")
    expected = squad.read_squad(squad.austen_squad_path("dev"))
    assert sorted(e.qas_id for e in examples) == sorted(e.qas_id for e in expected)
    assert sorted(_all_ids(dataset)) == sorted(e.qas_id for e in expected)
    # `squad --tfds_data_dir DIR` names the directory instead of the environment.
    monkeypatch.setenv("TFDS_DATA_DIR", scratch_dir("no-tfds-here"))
    examples, _ = _examples(None, "tfds:squad/v2.0:validation", "2.0", "predict_file", "dev", data_dir)
    assert sorted(e.qas_id for e in examples) == sorted(e.qas_id for e in expected)


@pytest.mark.large
def test_squad_command_finetunes_and_scores_from_tfds(data_dir, tmp_path):
    """The command end to end in a fresh process: TFDS's squad builder finds the prepared splits."""
    tokenizer = trained_tokenizer_dir("albert")
    argv = [sys.executable, "-m", "keras_albert.cli", "squad", "--train_file", "tfds:squad/v2.0",
            "--predict_file", "tfds:squad/v2.0:validation", "--load_from", "scratch", "--model_size", "tiny",
            "--tokenizer", tokenizer, "--output_dir", str(tmp_path), "--total_steps", "4", "--per_gpu_batch_size",
            "8", "--max_seq_length", "128", "--doc_stride", "64", "--max_query_length", "32",
            "--tfds_data_dir", data_dir]
    environment = {key: value for key, value in os.environ.items() if key != "TFDS_DATA_DIR"}
    done = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    scores = squad.load_json(str(tmp_path / "scores.json"))
    dev = squad.load_json(squad.austen_squad_path("dev"))
    predictions = squad.load_json(str(tmp_path / "predictions.json"))
    null_odds = squad.load_json(str(tmp_path / "null_odds.json"))
    assert sorted(predictions) == sorted(_all_ids(dev))
    assert scores == pytest.approx(squad.evaluate(dev, predictions, na_probs=null_odds))  # the JSON's scores


# --------------------------------------------------------------------------------------------- mistakes


def _one_line(capsys, *argv):
    status = cli.main(list(argv))
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1, error
    return error


def test_tfds_mistakes_are_one_line(data_dir, capsys):
    common = ["--tokenizer", trained_tokenizer_dir("albert"), "--quiet"]
    out = scratch_dir("never")
    run = ["create-pretraining-data", "--output_dir", out, *common, "--tfds_data_dir", data_dir, "--input"]
    error = _one_line(capsys, *run, "tfds:no_such_dataset_here:train")
    assert "--input: tfds:no_such_dataset_here:train: no TensorFlow Datasets dataset no_such_dataset_here" in error
    error = _one_line(capsys, *run, f"tfds:{TEXT_DATASET}:test")
    assert f"--input: tfds:{TEXT_DATASET}:test: no split 'test' (the dataset has train)" in error
    error = _one_line(capsys, *run, f"tfds:{TEXT_DATASET}", "--tfds_text_field", "body")
    assert f"--tfds_text_field: tfds:{TEXT_DATASET} has no field 'body' (it has number, text)" in error
    error = _one_line(capsys, *run, "tfds:")
    assert "expected tfds:NAME[/CONFIG][:SPLIT]" in error
    empty = scratch_dir("empty-tfds")
    error = _one_line(capsys, "create-pretraining-data", "--output_dir", out, *common, "--tfds_data_dir", empty,
                      "--input", "tfds:squad/v2.0")
    assert f"squad/v2.0 is not prepared in {empty}" in error and "downloads nothing" in error
    assert not os.listdir(out)
    with pytest.raises(UserInputError, match="not a SQuAD dataset"):
        squad.read_squad(f"tfds:{TEXT_DATASET}", tfds_data_dir=data_dir)


def test_missing_tensorflow_datasets_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # what `import` sees when it is not installed
    out = scratch_dir("never")
    error = _one_line(capsys, "create-pretraining-data", "--input", "tfds:wikipedia/20230601.en", "--output_dir",
                      out, "--tokenizer", trained_tokenizer_dir("albert"), "--quiet")
    assert error == ("keras-albert create-pretraining-data: error: --input: tfds:wikipedia/20230601.en needs "
                     "TensorFlow Datasets, which is not installed: pip install keras-albert[tfds]")
    with pytest.raises(UserInputError, match=r"pip install keras-albert\[tfds\]"):
        squad.read_squad("tfds:squad/v2.0")


def test_spec_parsing():
    parse = tfds_input.TfdsSpec.parse
    assert parse("tfds:wikipedia/20230601.en") == tfds_input.TfdsSpec("wikipedia", "20230601.en", "train")
    assert parse("tfds:squad/v2.0:validation[:10%]").split == "validation[:10%]"
    assert parse("tfds:c4:train+validation").dataset == "c4"
    for bad in ("tfds:", "tfds:a/b/c", "tfds:a:", "tfds:/x"):
        with pytest.raises(UserInputError, match="expected tfds:NAME"):
            parse(bad)


def test_evaluate_squad_scores_a_tfds_split_as_its_json(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("TFDS_DATA_DIR", data_dir)
    dev = squad.read_squad(squad.austen_squad_path("dev"))
    predictions = os.path.join(scratch_dir("predictions"), "predictions.json")
    with open(predictions, "w") as file:
        json.dump({e.qas_id: (e.answers[0].text if e.answers and i % 3 else "") for i, e in enumerate(dev)}, file)
    scores = []
    for data in (squad.austen_squad_path("dev"), "tfds:squad/v2.0:validation"):
        assert cli.main(["evaluate-squad", data, predictions]) == 0
        out = capsys.readouterr().out
        scores.append(json.loads(out[out.index("{"):]))
    assert scores[1] == pytest.approx(scores[0], rel=0, abs=1e-9) and scores[0]["total"] == len(dev)
    assert 0 < scores[0]["HasAns_f1"] < 100


def _whole_corpus(path):
    """Every embedded novel in one plain text file (blank lines between them): ~650K words, so that the run stays in
    its tokenizing and instance phases for seconds after the text has come through TFDS."""
    with open(path, "w", encoding="utf-8") as target:
        for novel in text_module.corpus_files():
            target.write(text_module.read_text(novel).strip() + "\n\n")
    return path


@pytest.mark.large
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_with_a_tfds_input_leaves_nothing(signum, tmp_path):
    """As tests/test_create_pretraining_data_signals.py, with a TFDS input: TensorFlow loads in the main process
    after the workers are forked, and a SIGTERM must still end the run within 5 s (os._exit after the clean-up).

    The signal goes once a piece of the text, read through TFDS (so with TensorFlow loaded and used), is in the
    spill directory for the worker: the run is then tokenizing, with instance building still to come. (Waiting for
    the shards' temporary files instead raced the run's end: on one CI machine the instances took ~50 ms.)"""
    from test_create_pretraining_data_signals import _signal_and_wait, _wait_until_busy

    SOURCES["text"] = _whole_corpus(str(tmp_path / "novels.txt"))
    directory = str(tmp_path / "tfds")
    KerasAlbertTestText(data_dir=directory).download_and_prepare()
    out = str(tmp_path / "out")
    os.makedirs(out)
    argv = [sys.executable, "-m", "keras_albert.cli", "create-pretraining-data", "--input", f"tfds:{TEXT_DATASET}",
            "--tfds_data_dir", directory, "--tokenizer", trained_tokenizer_dir("albert"), "--output_dir", out,
            "--max_seq_length", "128", "--dupe_factor", "20", "--workers", "2", "--quiet"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers = _wait_until_busy(process, out, "shipped", timeout=300)  # a piece of TFDS text is with the worker
    assert not [name for name in os.listdir(out) if not name.endswith(".tmp")], "the run had already finished"
    status, _, seconds = _signal_and_wait(process, workers, out, signum, leftovers=os.listdir)  # nothing left
    assert status == (-signal.SIGKILL if signum == signal.SIGKILL else 128 + signal.SIGTERM)
    print(f"\n{signal.Signals(signum).name} with a tfds: input: everything gone {seconds:.2f} s after the signal")

