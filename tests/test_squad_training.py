"""SQuAD finetuning: a tiny model learns the Austen question set, the `squad` command, and periodic SQuAD.

The scores come from `keras_albert.data.squad.evaluate`, the official SQuAD v2.0 rules (tested against hand-checked
cases of the official script in test_squad_evaluate.py).
"""

import glob
import json
import os
import random
import shutil
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_albert import PretrainingModel, SquadModel, cli
from keras_albert.data import squad, text, tokenizers
from keras_albert.training.squad import finetune_squad, predict_squad
from keras_albert.training.squad_callback import PeriodicSquad

sys.path.insert(0, os.path.dirname(__file__))
from multi_worker_harness import run_workers

NOVELS = ("persuasion.txt.gz", "northangerabbey.txt.gz")  # the two shortest novels
VOCAB = 2000
SHORT = {"max_seq_length": 128, "doc_stride": 64, "max_query_length": 32}  # CLI and callback tests


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """An ALBERT SentencePiece tokenizer (2,000 pieces) trained on two embedded novels, once per session."""
    directory = str(tmp_path_factory.mktemp("squad_tokenizer"))
    files = [path for path in text.corpus_files() if os.path.basename(path) in NOVELS]
    tokenizers.train_tokenizer(files, directory, "albert", VOCAB)
    return directory


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    return tokenizers.load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="module")
def austen():
    return {split: squad.read_squad(squad.austen_squad_path(split)) for split in ("train", "dev")}


def _tiny_pretraining_model(**overrides):
    config = {"vocabulary_size": VOCAB, "max_sequence_length": 128}
    config.update(overrides)
    return PretrainingModel.from_preset("albert_tiny", **config)


# ------------------------------------------------------------------------------------------ acceptance 3


def test_tiny_model_fits_the_austen_training_questions(tokenizer, austen, capsys):
    """Acceptance 3: albert_tiny (2 layers, hidden 64) finetuned from scratch reaches F1 > 80 on its training
    questions, far above answering "no answer" everywhere. The held-apart dev score is printed beside that trivial
    baseline and asserted only to be a score: a from-scratch model memorises, it does not generalise, and on dev it
    does not beat the baseline."""
    window = {"max_seq_length": 192, "doc_stride": 64, "max_query_length": 48}
    features = squad.convert_examples_to_features(austen["train"], tokenizer, is_training=True, **window)
    keras.utils.set_random_seed(0)
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=tokenizer.vocab_size, max_sequence_length=192)
    started = time.time()
    finetune_squad(
        model, features, total_steps=600, per_gpu_batch_size=32, learning_rate=2e-3, seed=0, jit_compile=True,
        verbose=0,
    )
    seconds = time.time() - started
    train = predict_squad(model, austen["train"], tokenizer, verbose=0, **window)
    dev = predict_squad(model, austen["dev"], tokenizer, verbose=0, **window)
    # The trivial baseline, scored by the same official rules: "no answer" to every question.
    baseline = {}
    for name in ("train", "dev"):
        dataset = squad.load_json(squad.austen_squad_path(name))
        baseline[name] = squad.evaluate(dataset, {example.qas_id: "" for example in austen[name]})
    with capsys.disabled():
        for name, result in (("train", train), ("dev", dev)):
            scores = result.scores
            print(
                f"\nAusten SQuAD v2.0 {name} ({scores['total']} questions): F1 {scores['f1']:.2f}, "
                f"exact {scores['exact']:.2f} (HasAns F1 {scores['HasAns_f1']:.2f}, "
                f"NoAns exact {scores['NoAns_exact']:.2f}); always-no-answer baseline F1 "
                f"{baseline[name]['f1']:.2f}, exact {baseline[name]['exact']:.2f}; finetuning took {seconds:.0f}s"
            )
    assert train.scores["total"] == 374 and dev.scores["total"] == 93
    assert train.scores["f1"] > 80.0
    assert train.scores["HasAns_f1"] > 80.0  # not only the no-answer questions
    assert train.scores["f1"] > baseline["train"]["f1"] + 40.0
    # Dev: no claim beyond a valid score; the row prints it beside its baseline.
    assert 0.0 <= dev.scores["f1"] <= 100.0 and 0.0 < baseline["dev"]["f1"] < 100.0


# ------------------------------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tokenizer_dir):
    """A pretraining run directory (model.keras + tokenizer) and a Hugging Face directory (+ spiece.model)."""
    root = tmp_path_factory.mktemp("squad_checkpoints")
    keras.utils.set_random_seed(1)
    model = _tiny_pretraining_model()
    run_dir, hf_dir = root / "run", root / "hf"
    run_dir.mkdir()
    model.save(str(run_dir / "model.keras"))
    model.save_huggingface(str(hf_dir))
    for directory in (run_dir, hf_dir):
        shutil.copy(os.path.join(tokenizer_dir, "spiece.model"), directory)
    return {"run": str(run_dir), "keras": str(run_dir / "model.keras"), "hf": str(hf_dir), "model": model}


def _squad_argv(output_dir, *extra):
    flags = {f"--{key}": str(value) for key, value in SHORT.items()}
    flags.update({"--total_steps": "6", "--per_gpu_batch_size": "8", "--learning_rate": "1e-3",
                  "--predict_batch_size": "64", "--output_dir": str(output_dir)})
    argv = ["squad"]
    for key, value in flags.items():
        argv += [key, value]
    return argv + list(extra)


@pytest.mark.parametrize(
    "load_from",
    [
        ["--load_from", "scratch", "--model_size", "tiny", "--gradient_accumulation_steps", "2"],
        ["--load_from", "checkpoint", "--optimizer", "lamb"],
        ["--load_from", "huggingface"],
    ],
    ids=["scratch", "checkpoint", "huggingface"],
)
def test_squad_command_writes_predictions_and_scores(tmp_path, tokenizer_dir, checkpoints, load_from, capsys):
    extra = list(load_from)
    if load_from[1] == "scratch":
        extra += ["--tokenizer", tokenizer_dir]
    else:  # the tokenizer is found beside the checkpoint
        extra += ["--checkpoint_path", checkpoints["run"] if load_from[1] == "checkpoint" else checkpoints["hf"]]
    assert cli.main(_squad_argv(tmp_path, *extra)) == 0
    printed = capsys.readouterr().out

    assert sorted(os.listdir(tmp_path)) == [  # no temporary left behind
        "checkpoints", "huggingface", "model.keras", "nbest_predictions.json", "null_odds.json", "predictions.json",
        "scores.json", "settings.json", "train.log",
    ]
    names = ["nbest_predictions.json", "null_odds.json", "predictions.json", "scores.json"]
    read = {name: squad.load_json(tmp_path / name) for name in names}
    dev = squad.load_json(squad.austen_squad_path("dev"))
    ids = [qa["id"] for article in dev["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    assert sorted(read["predictions.json"]) == sorted(ids)
    assert all(isinstance(answer, str) for answer in read["predictions.json"].values())
    assert sorted(read["null_odds.json"]) == sorted(ids)
    for nbest in read["nbest_predictions.json"].values():
        assert nbest and {"text", "probability", "start_logit", "end_logit"} <= set(nbest[0])
        assert sum(entry["probability"] for entry in nbest) == pytest.approx(1.0, abs=1e-6)
    # the saved scores are the official scores of the saved files
    rescored = squad.evaluate(dev, read["predictions.json"], na_probs=read["null_odds.json"])
    assert read["scores.json"] == pytest.approx(rescored)
    assert json.loads(printed[printed.index("{"): printed.rindex("}") + 1]) == pytest.approx(rescored)


def test_squad_command_starts_from_the_pretrained_encoder(tmp_path, checkpoints, tokenizer):
    """--load_from checkpoint finetunes the pretraining model's encoder (not a fresh one)."""
    from keras_albert.training.runs import load_checkpoint_model

    loaded = SquadModel.from_pretraining(load_checkpoint_model(checkpoints["run"]))
    source = checkpoints["model"].backbone.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(loaded.backbone.get_weights(), source))


def _bad_inputs(tmp_path, tokenizer_dir, checkpoints):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"version": "v2.0", "data": [{"title": "t", "paragraphs": [{
        "context": "Anne walked to Uppercross.",
        "qas": [{"id": "q-bad", "question": "Where?", "answers": [{"text": "Uppercross", "answer_start": 3}]}],
    }]}]}))
    not_a_model = tmp_path / "notes.txt"
    not_a_model.write_text("not a model")
    tok = ["--tokenizer", tokenizer_dir]
    return {
        "no tokenizer": (["--model_size", "tiny"], "--tokenizer is required"),
        "missing tokenizer dir": (["--tokenizer", str(tmp_path / "nope")], "--tokenizer"),
        "missing train file": (tok + ["--train_file", str(tmp_path / "missing.json")], "--train_file"),
        "bad answer offset": (tok + ["--train_file", str(bad_json)], "q-bad"),
        "v1 on the v2 question set": (tok + ["--task_name", "squadv1"], "--task_name squadv1"),
        "zero batch": (tok + ["--per_gpu_batch_size", "0"], "--per_gpu_batch_size"),
        "checkpoint without path": (tok + ["--load_from", "checkpoint"], "--checkpoint_path is required"),
        "checkpoint is a HF dir": (["--load_from", "checkpoint", "--checkpoint_path", checkpoints["hf"]],
                                   "use --load_from huggingface"),
        "HF is a keras file": (tok + ["--load_from", "huggingface", "--checkpoint_path", checkpoints["keras"]],
                               "not a Hugging Face directory"),
        "checkpoint is a text file": (tok + ["--load_from", "checkpoint", "--checkpoint_path", str(not_a_model)],
                                      "--checkpoint_path"),
        "missing checkpoint": (tok + ["--load_from", "checkpoint", "--checkpoint_path", str(tmp_path / "gone")],
                               "no such file or directory"),
    }


def test_bad_flags_exit_2_with_one_line(tmp_path, tokenizer_dir, checkpoints, capsys):
    for name, (extra, expected) in _bad_inputs(tmp_path, tokenizer_dir, checkpoints).items():
        status = cli.main(_squad_argv(tmp_path / "out", *extra))
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert status == 2, (name, captured.err)
        assert len(lines) == 1 and lines[0].startswith("keras-albert squad: error: "), (name, captured.err)
        assert expected in lines[0], (name, lines[0])
    assert not os.path.exists(tmp_path / "out")


def test_tokenizer_larger_than_the_checkpoint_vocabulary_is_refused(tmp_path, checkpoints, capsys):
    big = tokenizers.train_tokenizer(
        [p for p in text.corpus_files() if os.path.basename(p) == NOVELS[0]], str(tmp_path / "tok"), "albert", 3000
    )
    assert big.vocab_size > VOCAB
    argv = _squad_argv(tmp_path / "out", "--load_from", "checkpoint", "--checkpoint_path", checkpoints["run"],
                       "--tokenizer", str(tmp_path / "tok"))
    assert cli.main(argv) == 2
    assert "has a vocabulary of 3000 tokens" in capsys.readouterr().err


def test_squad_command_restores_the_global_dtype_policy(tmp_path, tokenizer_dir, monkeypatch, capsys):
    """`--mixed_precision bf16` computes in bfloat16 during the run and leaves Keras' global policy as it found it."""
    seen = []
    original = SquadModel.from_preset.__func__

    def recording_from_preset(cls, name, **overrides):
        seen.append(keras.config.dtype_policy().name)
        return original(cls, name, **overrides)

    assert keras.config.dtype_policy().name == "float32"
    monkeypatch.setattr(SquadModel, "from_preset", classmethod(recording_from_preset))
    status = cli.main(_squad_argv(tmp_path, "--model_size", "tiny", "--tokenizer", tokenizer_dir,
                                  "--mixed_precision", "bf16", "--total_steps", "2"))
    assert status == 0, capsys.readouterr().err
    assert seen == ["mixed_bfloat16"]
    assert keras.config.dtype_policy().name == "float32"
    assert (tmp_path / "scores.json").is_file()


def test_run_squad_takes_a_model_and_questions_from_python(tmp_path, tokenizer, austen):
    """`run_squad` finetunes a copy of a pretraining model's encoder given from Python, on questions given from
    Python, and leaves the pretraining model untouched."""
    from keras_albert.training.squad import SquadRunSettings, run_squad

    keras.utils.set_random_seed(4)
    pretrained = _tiny_pretraining_model()
    before = [w.copy() for w in pretrained.get_weights()]
    run = run_squad(
        SquadRunSettings(total_steps=2, per_gpu_batch_size=4, output_dir=str(tmp_path), **SHORT),
        model=pretrained, tokenizer=tokenizer, train_examples=austen["train"][:12],
        predict_examples=austen["dev"][:6], verbose=0,
    )
    assert isinstance(run["model"], SquadModel) and run["total_steps"] == 2
    assert run["predictions"].scores["total"] == 6
    assert {"model.keras", "huggingface", "predictions.json", "scores.json"} <= set(os.listdir(tmp_path))
    assert all(np.array_equal(a, b) for a, b in zip(before, pretrained.get_weights()))
    tuned = run["model"].backbone.get_weights()
    assert not all(np.array_equal(a, b) for a, b in zip(tuned, pretrained.backbone.get_weights()))


def test_python_callers_get_errors_that_name_fields(tokenizer, austen):
    """The SQuAD functions name a bad setting by its field (`per_gpu_batch_size`), the command by its flag."""
    from keras_albert import UserInputError
    from keras_albert.training.squad import run_squad

    features = squad.convert_examples_to_features(austen["train"][:4], tokenizer, is_training=True, **SHORT)
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=VOCAB)
    calls = {
        "run_squad": (lambda: run_squad(per_gpu_batch_size=0), "per_gpu_batch_size must be an integer >= 1"),
        "finetune_squad": (lambda: finetune_squad(model, features, learning_rate=0.0), "learning_rate must be > 0"),
        "predict_squad": (lambda: predict_squad(model, austen["dev"][:2], tokenizer, max_seq_length=64,
                                                max_query_length=64),
                          "max_seq_length (64) must leave room for max_query_length (64)"),
        "PeriodicSquad": (lambda: PeriodicSquad(5, tokenizer, austen["train"][:4], austen["dev"][:2], 3,
                                                optimizer="sgd"),
                          "optimizer must be one of lamb, adamw"),
    }
    for caller, (call, expected) in calls.items():
        with pytest.raises(UserInputError) as error:
            call()
        assert str(error.value).startswith(expected), (caller, str(error.value))
        assert "--" not in str(error.value), caller


# ------------------------------------------------------------------------------------------ periodic SQuAD


def _pretraining_batches(rows=8, steps=4, seq=64, predictions=6, seed=0):
    rng = np.random.default_rng(seed)
    data = {
        "input_ids": rng.integers(5, VOCAB, (rows * steps, seq)).astype("int32"),
        "input_mask": np.ones((rows * steps, seq), "int32"),
        "segment_ids": (np.arange(seq) >= seq // 2).astype("int32")[None].repeat(rows * steps, 0),
        "masked_lm_positions": np.sort(rng.choice(seq, (rows * steps, predictions)), axis=1).astype("int32"),
        "masked_lm_ids": rng.integers(5, VOCAB, (rows * steps, predictions)).astype("int32"),
        "masked_lm_weights": np.ones((rows * steps, predictions), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (rows * steps, 1)).astype("int32"),
    }
    return tf.data.Dataset.from_tensor_slices(data).batch(rows)


def _callback(tokenizer, austen, log_dir=None, every=2):
    return PeriodicSquad(
        every, tokenizer, austen["train"][:48], austen["dev"][:24], finetune_steps=3, per_gpu_batch_size=8,
        learning_rate=1e-3, predict_batch_size=32, seed=3, log_dir=log_dir, **SHORT,
    )


def _state(model):
    """Everything of a pretraining run that must not move: variables (seed generators included), optimizer."""
    return [v.numpy().copy() for v in model.variables] + [v.numpy().copy() for v in model.optimizer.variables]


def _random_streams():
    from keras.src.random.seed_generator import global_seed_generator

    return random.random(), float(np.random.rand()), global_seed_generator().state.numpy().tolist()


def test_periodic_squad_leaves_the_pretraining_run_bit_identical(tokenizer, austen, tmp_path):
    """Two identical pretraining runs, one with the callback (run twice): same weights, optimizer state, dropout
    seed states and global random streams, bit for bit. The callback logs F1/EM to TensorBoard and the logs."""
    from keras_albert.optimizers import LAMB

    keras.utils.set_random_seed(0)
    with_callback = _tiny_pretraining_model(dropout=0.1)
    without = _tiny_pretraining_model(dropout=0.1)
    for source, target in zip(with_callback.variables, without.variables):  # dropout seed states included
        target.assign(source)
    callback = _callback(tokenizer, austen, log_dir=str(tmp_path / "tb"))
    seen_logs = []
    recorder = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen_logs.append(dict(logs)))

    from keras.src.random.seed_generator import global_seed_generator

    global_seed_generator()  # exists before the streams are seeded (creating it draws from Python's `random`)
    initial = [v.numpy().copy() for v in with_callback.variables]
    finals, streams = [], []
    for model, callbacks in ((with_callback, [callback, recorder]), (without, [])):
        model.compile(optimizer=LAMB(1e-3, weight_decay=0.01))
        random.seed(5)  # the same global random streams before each run
        np.random.seed(5)
        global_seed_generator().state.assign([7, 0])
        model.fit(_pretraining_batches(), epochs=1, steps_per_epoch=4, callbacks=callbacks, verbose=0, shuffle=False)
        finals.append(_state(model))
        streams.append(_random_streams())

    assert [entry["step"] for entry in callback.history] == [2, 4]
    assert len(finals[0]) == len(finals[1])
    assert all(np.array_equal(a, b) for a, b in zip(*finals)), "the callback changed the pretraining run"
    assert streams[0] == streams[1], "the callback changed the global random streams"
    assert not all(np.array_equal(a, b) for a, b in zip(initial, finals[0])), "pretraining did not train"

    scored = [logs for logs in seen_logs if "squad_f1" in logs]
    assert len(scored) == 2
    assert scored[-1]["squad_f1"] == callback.history[-1]["f1"]
    assert scored[-1]["squad_exact"] == callback.history[-1]["exact"]
    tags = {}
    for path in glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    assert [step for step, _ in tags["squad/f1"]] == [2, 4]
    assert tags["squad/f1"][-1][1] == pytest.approx(callback.history[-1]["f1"], abs=1e-4)
    assert tags["squad/exact"][-1][1] == pytest.approx(callback.history[-1]["exact"], abs=1e-4)


def test_periodic_squad_run_touches_nothing_of_a_mixed_precision_model(tokenizer, austen):
    """One run on a bf16 pretraining model: its weights, optimizer state and seed states are bit-identical
    afterwards, Python/NumPy/Keras random states are unchanged, and the global dtype policy stays float32."""
    from keras_albert.optimizers import LAMB

    assert keras.config.dtype_policy().name == "float32"
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = _tiny_pretraining_model(dropout=0.1)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    model.compile(optimizer=LAMB(1e-3))
    # One step, so that the optimizer state exists.
    model.fit(_pretraining_batches(steps=1), epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    callback = _callback(tokenizer, austen)
    callback.set_model(model)

    from keras.src.random.seed_generator import global_seed_generator

    keras_state = global_seed_generator().state.numpy().copy()  # first: creating it draws from Python's `random`
    before = _state(model)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    scores = callback.run()

    assert all(np.array_equal(a, b) for a, b in zip(before, _state(model)))
    assert random.getstate() == python_state
    restored = np.random.get_state()
    assert restored[0] == numpy_state[0] and np.array_equal(restored[1], numpy_state[1])
    assert restored[2:] == numpy_state[2:]
    assert np.array_equal(global_seed_generator().state.numpy(), keras_state)
    assert keras.config.dtype_policy().name == "float32"
    assert scores["total"] == 24 and 0.0 <= scores["f1"] <= 100.0
    assert callback.history[-1]["step"] == 1


def test_periodic_squad_refuses_bad_arguments(tokenizer, austen):
    from keras_albert import UserInputError

    with pytest.raises(UserInputError, match="every_n_steps"):
        PeriodicSquad(0, tokenizer, austen["train"], austen["dev"], 10)
    with pytest.raises(UserInputError, match="eval_examples"):
        PeriodicSquad(10, tokenizer, austen["train"], [], 10)


# ------------------------------------------------------------------------------------------ two workers

WORKER_SCRIPT = r"""
import json, os
import numpy as np
from keras_albert import distribute

if os.environ["DISTRIBUTION"] == "mirrored_cpus":  # one process, two replicas on two logical CPUs
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
else:
    strategy = distribute.get_strategy(os.environ["DISTRIBUTION"])  # before any TensorFlow op
import keras
from keras_albert import SquadModel
from keras_albert.data import load_tokenizer, squad
from keras_albert.training.squad import finetune_squad, predict_logits, predict_squad

tokenizer = load_tokenizer(os.environ["TOKENIZER"])
window = dict(max_seq_length=128, doc_stride=64, max_query_length=32)
examples = squad.read_squad(squad.austen_squad_path("dev"))[:31]  # 31 questions: the workers' shares differ
features = squad.convert_examples_to_features(examples, tokenizer, is_training=False, **window)
with strategy.scope():
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=tokenizer.vocab_size, max_sequence_length=128)
    initial = np.load(os.environ["INITIAL"])
    model.set_weights([initial[f"w{i}"] for i in range(len(initial.files))])
start, end = predict_logits(model, features, batch_size=8, verbose=0)
result = predict_squad(model, examples, features=features, predict_batch_size=8, verbose=0,
                       output_dir=os.path.join(os.environ["OUTPUT"], str(distribute.worker_info().task_index)))
train = squad.read_squad(squad.austen_squad_path("train"))[:32]
train_features = squad.convert_examples_to_features(train, tokenizer, is_training=True, **window)
finetune_squad(model, train_features, total_steps=3, per_gpu_batch_size=4, learning_rate=1e-3, seed=0,
               verbose=0)
tuned = predict_squad(model, examples, features=features, predict_batch_size=8, verbose=0)

# periodic SQuAD inside a two-worker pretraining fit: every worker runs it at the same step
import tensorflow as tf
from keras_albert import PretrainingModel
from keras_albert.optimizers import LAMB
from keras_albert.training.squad_callback import PeriodicSquad

rng = np.random.default_rng(0)
rows, seq = 8, 32
data = {"input_ids": rng.integers(5, 2000, (rows, seq)).astype("int32"), "input_mask": np.ones((rows, seq), "int32"),
        "segment_ids": np.zeros((rows, seq), "int32"), "masked_lm_positions": np.tile(np.arange(1, 5), (rows, 1)),
        "masked_lm_ids": rng.integers(5, 2000, (rows, 4)).astype("int32"),
        "masked_lm_weights": np.ones((rows, 4), "float32"), "next_sentence_labels": np.zeros((rows, 1), "int32")}
pretraining = strategy.distribute_datasets_from_function(
    lambda context: tf.data.Dataset.from_tensor_slices(data).shard(context.num_input_pipelines,
        context.input_pipeline_id).batch(context.get_per_replica_batch_size(rows)).repeat())
with strategy.scope():
    pretrainer = PretrainingModel.from_preset("albert_tiny", vocabulary_size=2000, max_sequence_length=128)
    pretrainer.compile(optimizer=LAMB(1e-3))
callback = PeriodicSquad(2, tokenizer, train, examples, 3, per_gpu_batch_size=4, learning_rate=1e-3, seed=0,
                         **window)
pretrainer.fit(pretraining, epochs=1, steps_per_epoch=2, callbacks=[callback], verbose=0, shuffle=False)

out = os.environ["KERAS_ALBERT_WORKER_OUT"]
np.savez(out, start=start, end=end, features=np.array(len(features)), replicas=strategy.num_replicas_in_sync,
         weights=np.concatenate([w.ravel() for w in model.get_weights()]),
         pretrainer=np.concatenate([w.ravel() for w in pretrainer.get_weights()]))
with open(out + ".json", "w") as f:
    json.dump({"predictions": result.predictions, "scores": result.scores, "paths": result.paths,
               "tuned_scores": tuned.scores, "tuned_predictions": tuned.predictions,
               "periodic": callback.history}, f)
"""


@pytest.mark.large
def test_two_workers_and_two_replicas_predict_as_one_process(tokenizer_dir, tmp_path):
    """Two workers (MultiWorkerMirroredStrategy on 127.0.0.1): each predicts half of the features; after the one
    all-reduce both hold logits equal to one process's, the same answers and scores; only the chief writes files.
    Then both finetune together (3 steps) and again agree, and both run periodic SQuAD inside a pretraining fit.
    The same script as one process with two replicas (MirroredStrategy on two logical CPUs) predicts the same."""
    keras.utils.set_random_seed(2)
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=VOCAB, max_sequence_length=128)
    np.savez(tmp_path / "initial.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    env = {"TOKENIZER": tokenizer_dir, "INITIAL": str(tmp_path / "initial.npz"), "OUTPUT": str(tmp_path / "out")}
    single = run_workers(WORKER_SCRIPT, 1, timeout=300, env={**env, "DISTRIBUTION": "none"},
                         workdir=str(tmp_path / "one"))
    pair = run_workers(WORKER_SCRIPT, 2, timeout=300, env={**env, "DISTRIBUTION": "multi_worker"},
                       workdir=str(tmp_path / "two"))

    def load(result):
        arrays = dict(np.load(result.out_path))
        with open(result.out_path + ".json") as file:
            return arrays, json.load(file)

    mirrored = run_workers(WORKER_SCRIPT, 1, timeout=300, env={**env, "DISTRIBUTION": "mirrored_cpus"},
                           workdir=str(tmp_path / "mirrored"))

    (one, one_json), (w0, w0_json), (w1, w1_json) = load(single[0]), load(pair[0]), load(pair[1])
    mirror, mirror_json = load(mirrored[0])
    assert int(one["features"]) > 31  # some questions have several windows
    assert int(w0["replicas"]) == int(mirror["replicas"]) == 2
    for other in (w0, w1, mirror):
        assert np.abs(other["start"] - one["start"]).max() < 1e-5
        assert np.abs(other["end"] - one["end"]).max() < 1e-5
    assert w0_json["predictions"] == w1_json["predictions"] == one_json["predictions"] == mirror_json["predictions"]
    assert w0_json["scores"] == pytest.approx(one_json["scores"]) and w1_json["scores"] == w0_json["scores"]
    assert mirror_json["scores"] == pytest.approx(one_json["scores"])
    assert [entry["step"] for entry in mirror_json["periodic"]] == [2]
    assert w0_json["paths"] and not w1_json["paths"] and not os.path.exists(tmp_path / "out" / "1")
    assert np.array_equal(w0["weights"], w1["weights"])  # finetuned together
    assert w0_json["tuned_predictions"] == w1_json["tuned_predictions"]
    assert [entry["step"] for entry in w0_json["periodic"]] == [2]
    assert w0_json["periodic"] == w1_json["periodic"]  # both workers ran the periodic SQuAD, and agree
    assert np.array_equal(w0["pretrainer"], w1["pretrainer"])
