"""PretrainingModel under MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 against one process."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from multi_worker_harness import pretraining_batches, run_workers  # noqa: E402

STEPS, GLOBAL_ROWS, ACCUMULATION, SEQ, PREDICTIONS, VOCAB = 5, 16, 2, 16, 4, 300

SCRIPT = r'''
import json, os, sys
import numpy as np
from keras_albert.distribute import get_strategy
strategy = get_strategy(os.environ["DISTRIBUTION"])   # before any TensorFlow op
import keras, tensorflow as tf
from keras_albert import PretrainingModel
from keras_albert.optimizers import LAMB, WarmupPolyDecay

data = dict(np.load(os.environ["DATA"]))
initial = np.load(os.environ["INITIAL"])
workers = strategy.num_replicas_in_sync

pipelines = []

def dataset(context):
    pipelines.append((context.num_input_pipelines, context.input_pipeline_id))
    rows = data["input_ids"].shape[1] // context.num_input_pipelines
    lo = context.input_pipeline_id * rows
    return tf.data.Dataset.from_tensor_slices({k: v[:, lo:lo + rows] for k, v in data.items()})

with strategy.scope():
    model = PretrainingModel.from_preset(
        "albert_tiny", vocabulary_size=300, num_layers=2, num_heads=2, embedding_dim=8, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=16, dropout=0.0, classifier_dropout=0.0)
    model.set_weights([initial[f"w{i}"] for i in range(len(initial.files))])
    model.compile(optimizer=LAMB(WarmupPolyDecay(0.02, 2, 5), weight_decay=0.01),
                  gradient_accumulation_steps=int(os.environ["ACCUMULATION"]))
distributed = strategy.distribute_datasets_from_function(dataset)
history = model.fit(distributed, epochs=1, steps_per_epoch=int(os.environ["STEPS"]), verbose=0)
evaluation = model.evaluate(distributed, steps=2, verbose=0, return_dict=True)
out = os.environ["KERAS_ALBERT_WORKER_OUT"]
np.savez(out, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
with open(out + ".json", "w") as f:
    json.dump({"fit": {k: float(v[-1]) for k, v in history.history.items()},
               "evaluate": {k: float(v) for k, v in evaluation.items()},
               "iterations": int(model.optimizer.iterations.numpy()),
               "replicas": strategy.num_replicas_in_sync,
               "multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy),
               "pipelines": sorted(set(pipelines))}, f)
'''


def _data(rng):
    return pretraining_batches(rng, STEPS, GLOBAL_ROWS, SEQ, PREDICTIONS, VOCAB)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import keras

    from keras_albert import PretrainingModel

    workdir = tmp_path_factory.mktemp("pretraining_multi_worker")
    np.savez(workdir / "data.npz", **_data(np.random.default_rng(0)))
    keras.utils.set_random_seed(0)
    model = PretrainingModel.from_preset(
        "albert_tiny", vocabulary_size=VOCAB, num_layers=2, num_heads=2, embedding_dim=8, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=SEQ, dropout=0.0)
    np.savez(workdir / "initial.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    env = {"DATA": str(workdir / "data.npz"), "INITIAL": str(workdir / "initial.npz"), "STEPS": str(STEPS),
           "ACCUMULATION": str(ACCUMULATION)}

    def load(results):
        out = []
        for result in results:
            weights = np.load(result.out_path)
            with open(result.out_path + ".json") as f:
                out.append(([weights[f"w{i}"] for i in range(len(weights.files))], json.load(f)))
        return out

    (workdir / "two").mkdir()
    (workdir / "one").mkdir()
    two = load(run_workers(SCRIPT, num_workers=2, timeout=300, env={**env, "DISTRIBUTION": "multi_worker"},
                           workdir=str(workdir / "two")))
    one = load(run_workers(SCRIPT, num_workers=1, timeout=300, env={**env, "DISTRIBUTION": "none"},
                           workdir=str(workdir / "one")))
    initial = [np.load(workdir / "initial.npz")[f"w{i}"] for i in range(len(model.get_weights()))]
    return two, one[0], initial


def test_two_workers_ran_as_one_cluster_of_two_replicas(runs):
    (_, logs_0), (_, logs_1) = runs[0]
    single = runs[1][1]
    for index, logs in enumerate((logs_0, logs_1)):
        assert logs["multi_worker"]
        assert logs["replicas"] == 2
        assert logs["pipelines"] == [[2, index]]  # two input pipelines, this worker's own
    assert single["replicas"] == 1 and single["pipelines"] == [[1, 0]]


def test_two_workers_train_like_one_process_on_the_whole_batch(runs):
    (weights_0, logs_0), (weights_1, logs_1) = runs[0]
    single_weights, single_logs = runs[1]
    initial = runs[2]
    assert logs_0["replicas"] == logs_1["replicas"] == 2
    for a, b in zip(weights_0, weights_1):
        np.testing.assert_array_equal(a, b)  # bit-identical across workers
    worst = max(np.abs(a - b).max() for a, b in zip(weights_0, single_weights))
    moved = max(np.abs(a - b).max() for a, b in zip(single_weights, initial))
    print(f"two workers vs one process after {STEPS} steps: max |diff| {worst:.3g} (weights moved {moved:.3g})")
    assert moved > 1e-3
    assert worst < 1e-5
    assert logs_0["iterations"] == logs_1["iterations"] == single_logs["iterations"] == STEPS
    for key in ("loss", "mlm_loss", "sop_loss", "grad_norm", "learning_rate"):
        assert logs_0["fit"][key] == pytest.approx(single_logs["fit"][key], abs=1e-5), key


def test_two_workers_evaluate_like_one_process(runs):
    (_, logs_0), (_, logs_1) = runs[0]
    single = runs[1][1]["evaluate"]
    assert logs_0["evaluate"] == logs_1["evaluate"]
    for key in ("loss", "mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy"):
        assert logs_0["evaluate"][key] == pytest.approx(single[key], abs=1e-5), key
