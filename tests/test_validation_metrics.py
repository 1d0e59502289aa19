"""Validation during pretraining (`--val_files`, `--validation_frequency`, `--max_validation_steps`) and the run's
`metrics.jsonl`: the values written equal `model.evaluate` on the same records with the same weights, and a NumPy
computation of the masked-LM and sentence-order figures from the model's logits; a resumed run appends without
repeating a step."""

import json
import os

import numpy as np
import pytest

from fixtures_data import pretraining_records, scratch_dir

from keras_albert import cli

SEQ, PREDICTIONS = 32, 5
VALIDATION_STEPS = 3


@pytest.fixture(scope="module")
def records():
    # Training records from the first 900 lines of the novel, held-out ones from the first 250 (another build of
    # the same tokenizer's records: only their values matter here, not whether the text was seen).
    return {"train": pretraining_records(900, SEQ, PREDICTIONS), "val": pretraining_records(250, SEQ, PREDICTIONS)}


def _settings(records, output_dir, **overrides):
    from keras_albert.training.pretrain import PretrainSettings

    values = dict(
        train_files=records["train"], val_files=records["val"], output_dir=output_dir, model_size="tiny",
        per_gpu_batch_size=4, gradient_accumulation_steps=2, total_steps=5, warmup_steps=1, learning_rate=1e-2,
        log_frequency=2, checkpoint_frequency=2, keep_checkpoints=5, validation_frequency=2,
        max_validation_steps=VALIDATION_STEPS, distribution="none", jit_compile="false", quiet=True, seed=3,
    )
    values.update(overrides)
    return PretrainSettings(**values)


def _numpy_figures(model, dataset, steps):
    """Masked-LM and sentence-order loss and accuracy from the model's logits, in NumPy: per batch, the weighted
    token cross-entropy over the sum of `masked_lm_weights` and the mean sentence-order cross-entropy, then the
    mean over batches (what Keras' `evaluate` reports: the mean of the batches' values)."""
    per_batch = {"mlm_loss": [], "mlm_accuracy": [], "sop_loss": [], "sop_accuracy": []}
    for batch in dataset.take(steps):
        batch = {key: value.numpy() for key, value in batch.items()}
        outputs = model.predict_on_batch(batch)
        logits = np.asarray(outputs["mlm_logits"], np.float64)
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        ids, weights = batch["masked_lm_ids"], batch["masked_lm_weights"].astype(np.float64)
        token_loss = -np.take_along_axis(log_probs, ids[..., None], -1)[..., 0]
        per_batch["mlm_loss"].append((weights * token_loss).sum() / weights.sum())
        per_batch["mlm_accuracy"].append((weights * (logits.argmax(-1) == ids)).sum() / weights.sum())
        sop = np.asarray(outputs["sentence_order_logits"], np.float64)
        sop_log_probs = sop - sop.max(-1, keepdims=True)
        sop_log_probs -= np.log(np.exp(sop_log_probs).sum(-1, keepdims=True))
        labels = batch["next_sentence_labels"].reshape(-1)
        per_batch["sop_loss"].append(-sop_log_probs[np.arange(len(labels)), labels].mean())
        per_batch["sop_accuracy"].append((sop.argmax(-1) == labels).mean())
    return {key: float(np.mean(values)) for key, values in per_batch.items()}


def _lines(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_metrics_jsonl_holds_validation_equal_to_evaluate_with_the_same_weights(records):
    import keras

    from keras_albert.data import pretraining_dataset
    from keras_albert.models import PretrainingModel
    from keras_albert.training.checkpoints import restore_weights
    from keras_albert.training.pretrain import pretrain

    run_dir = scratch_dir("validated")
    result = pretrain(_settings(records, run_dir))
    lines = _lines(run_dir)
    validation = {line["step"]: line for line in lines if line["split"] == "validation"}
    train = {line["step"]: line for line in lines if line["split"] == "train"}
    assert sorted(validation) == [2, 4, 5] and sorted(train) == [2, 4, 5]
    assert all(set(line) >= {"loss", "mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy"} for line in lines)
    assert {"learning_rate", "grad_norm"} <= set(train[2]) and "learning_rate" not in validation[2]
    assert result["validation"]["step"] == 5
    assert result["validation"]["mlm_loss"] == pytest.approx(validation[5]["mlm_loss"], abs=1e-6)

    # The oracle: a fresh model holding each validated step's weights (the checkpoint of that step), evaluated by
    # Keras on the held-out records read again, and the same figures computed in NumPy from its logits.
    def held_out():
        return pretraining_dataset(records["val"], 4, SEQ, PREDICTIONS, shuffle=False, repeat=True, seed=3)

    differences = []
    for step in (2, 4, 5):
        restored = PretrainingModel.from_preset("albert_tiny", vocabulary_size=2000)
        restore_weights(restored, os.path.join(run_dir, "checkpoints", f"ckpt-{step}"))
        # Copied into a model of its own: the checkpoint's optimizer slots wait, as deferred restorations, for the
        # optimizer of the model they were read into.
        model = PretrainingModel.from_preset("albert_tiny", vocabulary_size=2000)
        model.set_weights(restored.get_weights())
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        expected = model.evaluate(held_out(), steps=VALIDATION_STEPS, verbose=0, return_dict=True)
        numpy_figures = _numpy_figures(model, held_out(), VALIDATION_STEPS)
        for key in ("loss", "mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy"):
            assert validation[step][key] == pytest.approx(float(expected[key]), abs=1e-5), (step, key)
            differences.append(abs(validation[step][key] - float(expected[key])))
        for key, value in numpy_figures.items():
            assert validation[step][key] == pytest.approx(value, abs=1e-5), (step, key)
            differences.append(abs(validation[step][key] - value))
    print(f"metrics.jsonl vs evaluate and NumPy: max abs difference {max(differences):.2e} (bound 1e-5)")
    # Validation does not disturb training: the step-4 training window holds steps 3-4 only, not validation values.
    assert train[4]["mlm_loss"] != pytest.approx(validation[4]["mlm_loss"], abs=1e-3)

    # TensorBoard: the validation scalars under tensorboard/validation, at the validated steps.
    import tensorflow as tf

    events = tf.io.gfile.glob(os.path.join(run_dir, "tensorboard", "validation", "events.*"))
    seen = {}
    for path in events:
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                seen.setdefault(value.tag, []).append(event.step)
    assert sorted(seen["mlm_loss"]) == [2, 4, 5] and sorted(seen["sop_accuracy"]) == [2, 4, 5]


@pytest.mark.large
def test_validation_changes_nothing_in_training(records):
    """The same run with and without --val_files: the same training lines in metrics.jsonl (the window means that
    `evaluate`'s metric reset would have disturbed, put back) and the same final weights."""
    from keras_albert.training.pretrain import pretrain

    runs = {}
    for name, val_files in (("with", records["val"]), ("without", None)):
        run_dir = scratch_dir(f"{name}-validation")
        # Validated after every step, inside the 4-step log window: each `evaluate` resets the model's metrics.
        result = pretrain(_settings(records, run_dir, val_files=val_files, log_frequency=4,
                                    validation_frequency=1))
        runs[name] = ([line for line in _lines(run_dir) if line["split"] == "train"],
                      [np.asarray(w) for w in result["model"].get_weights()])
    (with_lines, with_weights), (without_lines, without_weights) = runs["with"], runs["without"]
    assert [line["step"] for line in with_lines] == [4, 5]
    for a, b in zip(with_lines, without_lines):
        for key in ("loss", "mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy", "grad_norm", "learning_rate"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
    for a, b in zip(with_weights, without_weights):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.large
def test_resume_appends_to_metrics_jsonl_without_repeating_a_step(records):
    import keras

    from keras_albert.training.pretrain import pretrain

    class Crash(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations.numpy()) == 5:
                raise RuntimeError("simulated crash after step 5")

    run_dir = scratch_dir("resumed")
    settings = _settings(records, run_dir, total_steps=6, log_frequency=1, checkpoint_frequency=4,
                         validation_frequency=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(settings, callbacks=[Crash()])
    # The crash came after step 5 was logged, and after the checkpoint of step 4.
    assert max(line["step"] for line in _lines(run_dir)) == 5
    result = pretrain(settings)
    assert result["initial_step"] == 4
    lines = _lines(run_dir)
    train = [line["step"] for line in lines if line["split"] == "train"]
    validation = [line["step"] for line in lines if line["split"] == "validation"]
    assert train == [1, 2, 3, 4, 5, 6]
    assert validation == [2, 4, 6]


def test_command_flags_and_errors(records, capsys):
    from keras_albert.commands import pretrain as command

    parser = cli.build_parser("pretrain")
    args = parser.parse_args(["pretrain", "--train_files", "a", "--val_files", "v/*.tfrecord",
                              "--validation_frequency", "500", "--max_validation_steps", "20"])
    settings = command.settings_from_args(args)
    assert (settings.val_files, settings.validation_frequency, settings.max_validation_steps) == (
        ["v/*.tfrecord"], 500, 20)
    run_dir = scratch_dir("bad-val")
    status = cli.main(["pretrain", "--train_files", records["train"], "--val_files", "/nonexistent/*.tfrecord",
                       "--output_dir", run_dir, "--model_size", "tiny", "--total_steps", "2", "--warmup_steps", "1"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["keras-albert pretrain: error: --val_files: no file matches '/nonexistent/*.tfrecord'"]
    status = cli.main(["pretrain", "--train_files", records["train"], "--val_files", records["val"],
                       "--output_dir", run_dir, "--model_size", "tiny", "--total_steps", "2", "--warmup_steps", "1",
                       "--validation_frequency", "0"])
    assert status == 2
    assert "--validation_frequency must be an integer >= 1" in capsys.readouterr().err
    status = cli.main(["pretrain", "--train_files", records["train"], "--val_files", records["val"],
                       "--output_dir", run_dir, "--model_size", "tiny", "--total_steps", "2", "--warmup_steps", "1",
                       "--steps_per_execution", "2", "--log_frequency", "2", "--checkpoint_frequency", "2",
                       "--validation_frequency", "2", "--max_validation_steps", "3"])
    assert status == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "keras-albert pretrain: error: --max_validation_steps (3) must be a multiple of --steps_per_execution (2)"]
    longer = pretraining_records(250, 2 * SEQ, PREDICTIONS)
    status = cli.main(["pretrain", "--train_files", records["train"], "--val_files", longer, "--output_dir", run_dir,
                       "--model_size", "tiny", "--total_steps", "2", "--warmup_steps", "1"])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--max_seq_length={2 * SEQ}, the training records with {SEQ}" in err[0], err
    assert err[0].startswith("keras-albert pretrain: error: --val_files: the records under ")


def test_metrics_file_drops_lines_after_the_resumed_step_and_appends():
    from keras_albert.training.logs import MetricsFile, read_metrics

    path = os.path.join(scratch_dir("metrics-file"), "metrics.jsonl")
    first = MetricsFile(path)
    first.start(0)
    for step in (1, 2, 3):
        first.write(step, "train", {"loss": 1.0 / step, "note": "text is left out", "flag": True})
    first.write(2, "validation", {"mlm_loss": float("nan")})
    first.close()
    with open(path, "a", encoding="utf-8") as file:
        file.write('{"step": 4, "split": "tr')  # a line cut short by a crash
    resumed = MetricsFile(path)
    resumed.start(2)  # the checkpoint the run resumes from
    resumed.write(3, "train", {"loss": 0.25})
    resumed.close()
    records = read_metrics(path)
    assert [(r["step"], r["split"]) for r in records] == [(1, "train"), (2, "train"), (2, "validation"),
                                                          (3, "train")]
    assert records[0] == {"step": 1, "split": "train", "loss": 1.0} and records[2]["mlm_loss"] == "nan"
    assert records[-1]["loss"] == 0.25 and read_metrics(path, "validation") == [records[2]]
    other = scratch_dir("not-the-chief")
    silent = MetricsFile(os.path.join(other, "metrics.jsonl"), enabled=False)
    silent.start(0)
    silent.write(1, "train", {"loss": 1.0})
    silent.close()
    assert os.listdir(other) == []  # only the chief writes


@pytest.mark.large
def test_two_workers_validate_like_one_process_on_both_shards(records):
    """Two workers (MultiWorkerMirroredStrategy on 127.0.0.1), each reading its shard of the held-out records:
    the chief alone writes metrics.jsonl, and its validation values equal one process evaluating the final weights
    on the two shards' batches side by side (the global batch each validation step reads)."""
    import glob
    import json
    import sys

    import keras
    import tensorflow as tf

    import keras_albert.models  # noqa: F401 (registers the classes model.keras names)
    from keras_albert.data import pretraining_dataset

    sys.path.insert(0, os.path.dirname(__file__))
    from multi_worker_harness import run_workers

    run_dir = scratch_dir("two-workers-validated")
    flags = ["pretrain", "--train_files", records["train"], "--val_files", records["val"], "--output_dir", run_dir,
             "--model_size", "tiny", "--per_gpu_batch_size", "2", "--total_steps", "4", "--warmup_steps", "1",
             "--learning_rate", "1e-2", "--log_frequency", "2", "--checkpoint_frequency", "4",
             "--validation_frequency", "2", "--max_validation_steps", str(VALIDATION_STEPS),
             "--distribution", "multi_worker", "--jit_compile", "false", "--quiet", "--seed", "3"]
    script = "import json, os, sys\nfrom keras_albert.cli import main\nsys.exit(main(json.loads(os.environ['FLAGS'])))"
    results = run_workers(script, num_workers=2, timeout=400, env={"FLAGS": json.dumps(flags)})
    assert all("validation" in r.log for r in results[:1]) and "validation" not in results[1].log
    lines = _lines(run_dir)
    assert [(line["step"], line["split"]) for line in lines] == [(2, "train"), (2, "validation"), (4, "train"),
                                                                 (4, "validation")]

    model = keras.saving.load_model(os.path.join(run_dir, "model.keras"), compile=False)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    shards = [pretraining_dataset(records["val"], 2, SEQ, PREDICTIONS, shuffle=False, repeat=True, seed=3,
                                  input_context=tf.distribute.InputContext(2, index, 2)) for index in (0, 1)]
    side_by_side = tf.data.Dataset.zip(tuple(shards)).map(
        lambda a, b: {key: tf.concat([a[key], b[key]], 0) for key in a})
    expected = model.evaluate(side_by_side, steps=VALIDATION_STEPS, verbose=0, return_dict=True)
    for key in ("loss", "mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy"):
        assert lines[-1][key] == pytest.approx(float(expected[key]), abs=1e-5), key
    assert len(glob.glob(os.path.join(run_dir, "tensorboard", "validation", "events.*"))) == 1
