"""The `pretrain` command and function: exact resume, the end-to-end command, export to transformers, flag errors."""

import glob
import gzip
import json
import os
import re
import sys

import numpy as np
import pytest

from fixtures_data import novel_path, scratch_dir, trained_tokenizer_dir

from keras_albert import cli

SEQ, PREDICTIONS, VOCAB = 32, 5, 2000


def _corpus_slice(lines=1500):
    """The first `lines` lines of a real novel, as a plain text file (a few seconds of data creation)."""
    path = os.path.join(scratch_dir("slice"), "persuasion-start.txt")
    with gzip.open(novel_path(), "rt", encoding="utf-8") as source, open(path, "w", encoding="utf-8") as target:
        for _, line in zip(range(lines), source):
            target.write(line)
    return path


@pytest.fixture(scope="module")
def data():
    """Records from `keras-albert create-pretraining-data` on a slice of Persuasion: masked, and unmasked for
    dynamic masking, with the ALBERT tokenizer that wrote them."""
    tokenizer = trained_tokenizer_dir("albert", VOCAB)
    text = _corpus_slice()
    out = {"tokenizer": tokenizer}
    for name, extra in (("masked", []), ("unmasked", ["--no_masking"])):
        directory = scratch_dir(name)
        status = cli.main([
            "create-pretraining-data", "--input", text, "--tokenizer", tokenizer, "--output_dir", directory,
            "--max_seq_length", str(SEQ), "--max_predictions_per_seq", str(PREDICTIONS), "--dupe_factor", "1",
            "--num_shards", "2", "--workers", "1", "--quiet", *extra,
        ])
        assert status == 0
        out[name] = os.path.join(directory, "*.tfrecord")
    return out


def _settings(train_files, output_dir, **overrides):
    from keras_albert.training.pretrain import PretrainSettings

    values = dict(
        train_files=train_files, output_dir=output_dir, model_size="tiny", per_gpu_batch_size=4,
        gradient_accumulation_steps=2, total_steps=6, warmup_steps=2, learning_rate=1e-2, log_frequency=2,
        checkpoint_frequency=3, distribution="none", jit_compile="false", quiet=True, seed=7,
    )
    values.update(overrides)
    return PretrainSettings(**values)


def _crash_at(step):
    import keras

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == step:
                raise RuntimeError(f"simulated crash after step {step}")

    return Crash()


@pytest.mark.parametrize("records", ["masked", "unmasked"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(data, records):
    """6 steps straight vs 4 steps, a crash (the last checkpoint is at step 3), a rerun of the same settings: the
    rerun restores step 3 and its data position, and ends with the same weights and optimizer state.
    Shuffled, seeded records; the classifier dropout draws from an RNG that the checkpoint restores too."""
    from keras_albert.training.pretrain import pretrain

    dynamic = records == "unmasked"
    extra = dict(dynamic_masking=True, tokenizer=data["tokenizer"]) if dynamic else {}
    straight_dir, resumed_dir = scratch_dir("straight"), scratch_dir("resumed")
    straight = pretrain(_settings(data[records], straight_dir, **extra))
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(_settings(data[records], resumed_dir, **extra), callbacks=[_crash_at(4)])
    resumed = pretrain(_settings(data[records], resumed_dir, **extra))

    assert straight["initial_step"] == 0 and resumed["initial_step"] == 3
    assert straight["step"] == resumed["step"] == 6
    assert straight["logs"]["mlm_loss"] > 0  # masks there are (dynamic ones for the unmasked records)
    a, b = straight["model"], resumed["model"]
    assert int(a.optimizer.iterations.numpy()) == int(b.optimizer.iterations.numpy()) == 6
    weight_gap = max(np.abs(x - y).max() for x, y in zip(a.get_weights(), b.get_weights()))
    slot_gap = max(np.abs(x.numpy() - y.numpy()).max() for x, y in zip(a.optimizer.variables, b.optimizer.variables))
    # Steps 4-6 move the weights far more than the tolerance: a resume that saw other batches would show.
    import keras

    at_step_3 = keras.saving.load_model(os.path.join(resumed_dir, "model.keras"), compile=False)  # final = step 6
    from keras_albert.training.checkpoints import restore_weights

    restore_weights(at_step_3, os.path.join(resumed_dir, "checkpoints", "ckpt-3"))
    moved = max(np.abs(x - y).max() for x, y in zip(a.get_weights(), at_step_3.get_weights()))
    print(f"{records}: max |straight - resumed| weights {weight_gap:.3g}, optimizer {slot_gap:.3g}; "
          f"steps 4-6 moved the weights by {moved:.3g}")
    assert moved > 1e-3
    assert weight_gap <= 1e-6
    assert slot_gap <= 1e-6


def _reference_learning_rate(step, peak, warmup, total, end):
    """The reference's LinearWarmupPolyDecaySchedule (power 1), written out independently in NumPy."""
    if step <= warmup:
        return peak * step / max(1, warmup)
    return (peak - end) * (total - step) / max(1, total - warmup) + end


def _scalars(event_dir):
    import tensorflow as tf

    values = {}
    for path in glob.glob(os.path.join(event_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                values.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return values


@pytest.fixture(scope="module")
def command_run(data):
    """`keras-albert pretrain` through `cli.main`: 4 steps, then the same command with --total_steps 6."""
    output_dir = scratch_dir("command")
    flags = [
        "pretrain", "--train_files", data["masked"], "--output_dir", output_dir, "--model_type", "albert",
        "--model_size", "tiny", "--per_gpu_batch_size", "4", "--gradient_accumulation_steps", "2",
        "--warmup_steps", "2", "--learning_rate", "0.005", "--log_frequency", "2", "--checkpoint_frequency", "2",
        "--jit_compile", "false", "--distribution", "none", "--quiet",
    ]
    first = cli.main(flags + ["--total_steps", "4"])
    checkpoints_after_first = sorted(os.listdir(os.path.join(output_dir, "checkpoints")))
    with open(os.path.join(output_dir, "train.log"), encoding="utf-8") as file:
        first_log = file.read()
    second = cli.main(flags + ["--total_steps", "6"])
    with open(os.path.join(output_dir, "train.log"), encoding="utf-8") as file:
        second_log = file.read()[len(first_log):]
    return {"dir": output_dir, "status": (first, second), "checkpoints": checkpoints_after_first,
            "logs": (first_log, second_log)}


def test_pretrain_command_end_to_end(command_run):
    from keras_albert.data.tokenizers import load_tokenizer

    output_dir = command_run["dir"]
    first, second = command_run["logs"]
    assert command_run["status"] == (0, 0)
    assert "Resuming" not in first
    assert re.search(r"step 4/4 .*loss \d+\.\d+.*sequences/s \d", first), first
    assert [n for n in command_run["checkpoints"] if n.endswith(".index")] == ["ckpt-2.index", "ckpt-4.index"]
    assert not glob.glob(os.path.join(output_dir, "**", ".*.tmp"), recursive=True)
    assert not glob.glob(os.path.join(output_dir, "**", ".worker-*"), recursive=True)
    settings = json.load(open(os.path.join(output_dir, "settings.json")))
    # The sequence lengths and the vocabulary come from the records' summary.json and the tokenizer it names,
    # which the run copied beside its model.
    assert settings["settings"]["max_seq_length"] == SEQ
    assert settings["settings"]["max_predictions_per_seq"] == PREDICTIONS
    assert settings["settings"]["vocab_size"] == load_tokenizer(output_dir).vocab_size == VOCAB

    # Rerunning the command with more steps resumes (one line says so) and ends at step 6.
    assert re.search(r"Resuming from .*ckpt-4: step 4 of 6 \(optimizer iteration 4\)", second), second
    assert "step 6/6" in second and "step 2/" not in second
    assert sorted(os.path.basename(p) for p in glob.glob(os.path.join(output_dir, "checkpoints", "*.index"))) == [
        "ckpt-2.index", "ckpt-4.index", "ckpt-6.index"]

    summary = json.load(open(os.path.join(output_dir, "summary.json")))
    assert summary["initial_step"] == 4 and summary["step"] == summary["logs"]["step"] == 6
    assert summary["logs"]["sequences_per_second"] > 0 and summary["logs"]["loss"] > 0

    import keras

    final = keras.saving.load_model(os.path.join(output_dir, "model.keras"))
    assert int(final.optimizer.iterations.numpy()) == 6
    assert final.backbone.vocabulary_size == VOCAB

    # TensorBoard: every window's scalars at its global step; the learning rate is the reference schedule's.
    scalars = _scalars(os.path.join(output_dir, "tensorboard"))
    for tag in ("loss", "mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy", "grad_norm", "learning_rate"):
        assert sorted(scalars[tag]) == [2, 4, 6], tag
    for tag in ("steps_per_second", "sequences_per_second", "tokens_per_second"):
        assert sorted(scalars[tag]) == [2, 4, 6] and all(v > 0 for v in scalars[tag].values()), tag
    for step in (2, 4, 6):
        # 8 sequences of SEQ tokens per step
        assert scalars["sequences_per_second"][step] == pytest.approx(8 * scalars["steps_per_second"][step], rel=1e-5)
        assert scalars["tokens_per_second"][step] == pytest.approx(8 * SEQ * scalars["steps_per_second"][step],
                                                                   rel=1e-5)
    for step, value in scalars["learning_rate"].items():
        # The run started with --total_steps 4 and resumed with 6: the schedule of the latest settings applies.
        total = 4 if step <= 4 else 6
        expected = _reference_learning_rate(step, 0.005, 2, total, 3e-5)
        assert value == pytest.approx(expected, rel=1e-5, abs=1e-9), (step, value, expected)

    # The final model serves SQuAD finetuning.
    from keras_albert import SquadModel

    squad = SquadModel.from_pretraining(os.path.join(output_dir, "model.keras"))
    assert squad.backbone.vocabulary_size == VOCAB


def _hf_logits(directory, batch):
    import torch
    from transformers import AutoModelForPreTraining

    model = AutoModelForPreTraining.from_pretrained(directory).eval()
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
            attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long),
            token_type_ids=torch.tensor(batch["segment_ids"], dtype=torch.long),
        )
    positions = torch.tensor(batch["masked_lm_positions"], dtype=torch.long)
    mlm = torch.gather(out.prediction_logits, 1, positions[..., None].expand(-1, -1, out.prediction_logits.shape[-1]))
    sentence = out.sop_logits if hasattr(out, "sop_logits") else out.seq_relationship_logits
    return mlm.numpy(), sentence.numpy()


def _first_batch(pattern, rows=4):
    from keras_albert.data import pretraining_dataset

    batch = next(iter(pretraining_dataset(pattern, rows, SEQ, PREDICTIONS, shuffle=False, repeat=False)))
    return {key: value.numpy() for key, value in batch.items()}


def test_export_loads_in_transformers_with_equal_logits(command_run, data, capsys):
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from keras_albert.training.checkpoints import load_model

    output_dir = command_run["dir"]
    assert command_run["status"] == (0, 0)
    batch = _first_batch(data["masked"])
    for source in (output_dir, os.path.join(output_dir, "checkpoints", "ckpt-4")):
        hf_dir = os.path.join(scratch_dir("hf"), "model")
        assert cli.main(["export", "--checkpoint_path", source, "--output_dir", hf_dir]) == 0
        assert "Wrote" in capsys.readouterr().out
        assert {"config.json", "model.safetensors", "spiece.model"} <= set(os.listdir(hf_dir))
        model = load_model(source)
        ours = model.predict({k: batch[k] for k in model.input_names_used}, verbose=0)
        mlm, sentence = _hf_logits(hf_dir, batch)
        mlm_gap = np.abs(ours["mlm_logits"] - mlm).max()
        sentence_gap = np.abs(ours["sentence_order_logits"] - sentence).max()
        print(f"{source}: max |keras - transformers| mlm {mlm_gap:.3g}, sentence order {sentence_gap:.3g}")
        assert mlm_gap <= 1e-4 and sentence_gap <= 1e-4
    # The tokenizer files the run copied beside its model came along: transformers tokenizes as we do.
    from transformers import AutoTokenizer

    from keras_albert.data.tokenizers import load_tokenizer

    text = "Anne Elliot walked to Uppercross with her sisters."
    ours = load_tokenizer(data["tokenizer"])
    assert AutoTokenizer.from_pretrained(hf_dir)(text)["input_ids"] == [ours.cls_id, *ours.encode(text), ours.sep_id]
    # The step-4 checkpoint is not the final model: the export followed the path it was given.
    final, step_4 = load_model(output_dir), load_model(os.path.join(output_dir, "checkpoints", "ckpt-4"))
    assert max(np.abs(x - y).max() for x, y in zip(final.get_weights(), step_4.get_weights())) > 1e-4


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model_size", "huge"], "argument --model_size: invalid choice: 'huge'"),
        (["--per_gpu_batch_size", "many"], "argument --per_gpu_batch_size: invalid int value: 'many'"),
        (["--total_steps", "0"], "--total_steps must be an integer >= 1"),
        (["--warmup_steps", "50", "--total_steps", "10"], "--warmup_steps must be an integer from 0 to --total_steps"),
        (["--load_from", "checkpoint"], "--load_from=checkpoint needs --checkpoint_path"),
        (["--skip_mlm", "--skip_sop"], "--skip_mlm and --skip_sop cannot both be set"),
        (["--skip_sop", "maybe"], "argument --skip_sop: expected true or false, got 'maybe'"),
        (["--distribution", "horovod"], "--distribution=horovod needs horovod.tensorflow"),
        (["--max_seq_length", "64"], "--max_seq_length=64 but the records under"),
        (["--jit_compile", "sometimes"], "argument --jit_compile: invalid choice"),
        (["--log_frequency", "3", "--steps_per_execution", "2"], "--log_frequency (3) must be a multiple of"),
    ],
)
def test_bad_flags_exit_2_with_one_line(data, flags, message, capsys, monkeypatch):
    # Horovod absent, whether or not this environment built it: `--distribution horovod` must then explain itself.
    monkeypatch.setitem(sys.modules, "horovod", None)
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)
    argv = ["pretrain", "--train_files", data["masked"], "--output_dir", scratch_dir("bad"), *flags]
    try:
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err


def test_missing_train_files_exit_2(capsys):
    status = cli.main(["pretrain", "--train_files", "/nonexistent/*.tfrecord", "--output_dir", scratch_dir("x")])
    err = capsys.readouterr().err
    assert status == 2 and err.strip() == (
        "keras-albert pretrain: error: --train_files: no file matches '/nonexistent/*.tfrecord'"
    )


class _FakeHorovod:
    """Rank 0 of two Horovod ranks whose other rank holds the same batches: an all-reduce doubles every value."""

    Sum = "sum"

    def __init__(self):
        self.broadcast_count = 0

    def rank(self):
        return 0

    def size(self):
        return 2

    def grouped_allreduce(self, values, op):
        assert op == self.Sum
        return [value * 2 for value in values]

    def broadcast(self, value, root_rank, name=None):
        assert root_rank == 0
        self.broadcast_count += 1
        return value

    def allgather(self, value):
        import tensorflow as tf

        return tf.concat([value, value], 0)  # the other rank passes the same (the step-agreement check)


def test_horovod_rank_reads_its_shard_and_trains_on_the_global_batch(data, monkeypatch):
    """Under (fake) Horovod, rank 0 of 2 reads every other record of a single file, and its model all-reduces:
    with the other rank holding the same batches, it trains exactly as one process reading those records."""
    import tensorflow as tf

    from keras_albert import distribute
    from keras_albert.training.pretrain import pretrain

    records = [r.numpy() for r in tf.data.TFRecordDataset(sorted(glob.glob(data["masked"]))[0])]
    records = records[: len(records) // 2 * 2]  # even, so that every epoch starts on rank 0's parity
    whole, evens = os.path.join(scratch_dir("whole"), "a.tfrecord"), os.path.join(scratch_dir("evens"), "b.tfrecord")
    for path, subset in ((whole, records), (evens, records[::2])):
        with tf.io.TFRecordWriter(path) as writer:
            for record in subset:
                writer.write(record)
    shapes = dict(max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS, vocab_size=VOCAB, total_steps=3)
    single = pretrain(_settings(evens, scratch_dir("one-process"), **shapes))

    fake = _FakeHorovod()

    def fake_get_strategy(distribution="auto", env=None):
        assert distribution == "horovod"
        monkeypatch.setattr(distribute, "_HOROVOD", fake)
        return tf.distribute.get_strategy()

    monkeypatch.setattr(distribute, "get_strategy", fake_get_strategy)
    output_dir = scratch_dir("horovod")
    ranked = pretrain(_settings(whole, output_dir, distribution="horovod", **shapes))
    model = ranked["model"]
    assert fake.broadcast_count == len(model.variables) + len(model.optimizer.variables)
    gap = max(np.abs(x - y).max() for x, y in zip(single["model"].get_weights(), model.get_weights()))
    assert gap <= 1e-6
    settings = json.load(open(os.path.join(output_dir, "settings.json")))
    assert settings["num_replicas"] == 2 and settings["num_workers"] == 2


def test_train_files_as_files_the_shell_expanded(data, capsys):
    from keras_albert.training.pretrain import resolve_settings

    files = sorted(glob.glob(data["masked"]))
    settings = resolve_settings(_settings(files, scratch_dir("files")))
    assert settings.train_files == files and settings.max_seq_length == SEQ
    status = cli.main(["pretrain", "--train_files", files[0], files[0] + ".missing", "--output_dir", scratch_dir("x")])
    assert status == 2 and capsys.readouterr().err.strip().endswith(f"no file matches '{files[0]}.missing'")


def test_squad_frequency_wires_the_periodic_squad_callback(data):
    from keras_albert.training.pretrain import _squad_callback, resolve_settings
    from keras_albert.distribute import WorkerInfo
    from keras_albert.training.squad_callback import PeriodicSquad

    settings = resolve_settings(_settings(data["masked"], scratch_dir("squad"), squad_frequency=100))
    callback = _squad_callback(settings, WorkerInfo(0, 1, True))
    assert isinstance(callback, PeriodicSquad)
    assert callback.every_n_steps == 100 and callback.settings.max_seq_length == SEQ
    assert callback.settings.total_steps == settings.squad_steps and callback.settings.seed == settings.seed
    assert callback.tokenizer.vocab_size == VOCAB


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["pretrain", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--model_type", "--model_size", "--load_from", "--checkpoint_path", "--per_gpu_batch_size",
                 "--gradient_accumulation_steps", "--max_seq_length", "--max_predictions_per_seq", "--warmup_steps",
                 "--total_steps", "--learning_rate", "--optimizer", "--log_frequency", "--run_name", "--skip_mlm",
                 "--skip_sop", "--squad_frequency", "--train_files", "--output_dir", "--vocab_size", "--weight_decay",
                 "--max_grad_norm", "--mixed_precision", "--jit_compile", "--distribution", "--seed",
                 "--checkpoint_frequency", "--dynamic_masking"):
        assert flag in out, flag


def test_example_script_runs_the_same_code(command_run):
    """examples/run_pretraining.py parses the reference's flags (SageMaker's `--skip_sop=true` form included)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    try:
        import run_pretraining
    finally:
        sys.path.pop(0)
    args = run_pretraining.parse_args(["--train_files", "x/*.tfrecord", "--skip_sop=true", "--name", "phase1",
                                       "--model_dir", "s3://bucket/ignored"])
    assert args.skip_sop is True and args.run_name == "phase1"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(total_steps=0), "total_steps must be an integer >= 1. Received: 0"),
        (dict(warmup_steps=50), "warmup_steps must be an integer from 0 to total_steps (6). Received: 50"),
        (dict(load_from="checkpoint"), "load_from=checkpoint needs checkpoint_path"),
        (dict(optimizer="sgd"), "optimizer must be one of lamb, adamw. Received: 'sgd'"),
        (dict(max_seq_length=64), "max_seq_length=64 but the records under"),
        (dict(train_files="/nonexistent/*.tfrecord"), "train_files: no file matches '/nonexistent/*.tfrecord'"),
    ],
)
def test_python_callers_get_errors_that_name_fields(data, overrides, message):
    """The checks the command reports as `--total_steps ...` speak of `total_steps` to a Python caller."""
    from keras_albert import UserInputError
    from keras_albert.training.pretrain import resolve_settings

    overrides = dict(overrides)
    settings = _settings(overrides.pop("train_files", data["masked"]), scratch_dir("python-errors"), **overrides)
    with pytest.raises(UserInputError) as error:
        resolve_settings(settings)
    assert str(error.value).startswith(message), str(error.value)
    assert "--" not in str(error.value)


def test_a_model_and_a_dataset_given_from_python_train_as_the_settings_would(data):
    """`pretrain(settings, model=..., dataset=...)` with the model and the dataset the settings would have built
    trains to the same weights as `pretrain(settings)` (6 steps), in place; and it resumes exactly after a crash,
    skipping the given dataset by the steps done (a new model object, as a new process would build)."""
    import keras

    from keras_albert import PretrainingModel
    from keras_albert.data import pretraining_dataset
    from keras_albert.training.pretrain import pretrain

    by_settings = pretrain(_settings(data["masked"], scratch_dir("by-settings")))

    def given_model():
        keras.utils.set_random_seed(7)  # as pretrain seeds before it builds
        return PretrainingModel.from_preset("albert_tiny", vocabulary_size=VOCAB)

    def given_dataset():
        return pretraining_dataset(data["masked"], 4, SEQ, PREDICTIONS, gradient_accumulation_steps=2, seed=7)

    model = given_model()
    given = pretrain(_settings(None, scratch_dir("given")), model=model, dataset=given_dataset())
    assert given["model"] is model and int(model.optimizer.iterations.numpy()) == 6
    gap = max(np.abs(x - y).max() for x, y in zip(by_settings["model"].get_weights(), model.get_weights()))
    print(f"max |settings - given| weights after 6 steps: {gap:.3g}")
    assert gap <= 1e-6

    resumed_dir = scratch_dir("given-resumed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(_settings(None, resumed_dir), [_crash_at(4)], model=given_model(), dataset=given_dataset())
    resumed = pretrain(_settings(None, resumed_dir), model=given_model(), dataset=given_dataset())
    assert resumed["initial_step"] == 3 and resumed["step"] == 6
    gap = max(np.abs(x - y).max() for x, y in zip(model.get_weights(), resumed["model"].get_weights()))
    assert gap <= 1e-6
    settings = json.load(open(os.path.join(resumed_dir, "settings.json")))["settings"]
    assert settings["model_type"] == "albert" and settings["model_size"] is None and settings["vocab_size"] == VOCAB


def test_a_dataset_given_must_fit_the_replicas(data):
    from keras_albert import UserInputError
    from keras_albert.training.pretrain import resolve_settings

    with pytest.raises(UserInputError, match="^train_files: a dataset is given"):
        resolve_settings(_settings(data["masked"], scratch_dir("both")), dataset=object())
    with pytest.raises(UserInputError, match="^dynamic_masking masks records"):
        resolve_settings(_settings(None, scratch_dir("masking"), dynamic_masking=True), dataset=object())


def test_a_resume_with_changed_optimisation_settings_is_refused_unless_allowed(data, capsys):
    """Resuming with another --learning_rate: one line naming it, exit 2, nothing trained; with
    --allow_changed_settings the run resumes and logs the change. A new phase loading another run's checkpoint into a
    new --output_dir (BERT's phase 2) is not a resume and takes other settings freely."""
    output_dir = scratch_dir("changed")
    flags = [
        "pretrain", "--train_files", data["masked"], "--output_dir", output_dir, "--model_size", "tiny",
        "--per_gpu_batch_size", "4", "--warmup_steps", "1", "--log_frequency", "1", "--checkpoint_frequency", "2",
        "--jit_compile", "false", "--distribution", "none", "--quiet",
    ]
    assert cli.main(flags + ["--total_steps", "2", "--learning_rate", "0.01"]) == 0
    capsys.readouterr()
    assert cli.main(flags + ["--total_steps", "4", "--learning_rate", "0.02"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--learning_rate 0.01 -> 0.02" in err[0] and "--allow_changed_settings" in err[0], err
    assert sorted(os.listdir(os.path.join(output_dir, "checkpoints"))).count("ckpt-4.index") == 0

    assert cli.main(flags + ["--total_steps", "4", "--learning_rate", "0.02", "--allow_changed_settings"]) == 0
    with open(os.path.join(output_dir, "train.log"), encoding="utf-8") as file:
        log = file.read()
    assert re.search(r"Settings changed since the previous start: .*--learning_rate 0\.01 -> 0\.02", log), log[-2000:]
    assert "ckpt-4.index" in os.listdir(os.path.join(output_dir, "checkpoints"))

    phase_2 = scratch_dir("phase-2")
    assert cli.main(
        [*flags[:4], phase_2, *flags[5:], "--total_steps", "2", "--learning_rate", "0.005", "--load_from",
         "checkpoint", "--checkpoint_path", output_dir]
    ) == 0
