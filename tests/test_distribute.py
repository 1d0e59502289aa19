"""Strategy selection, TF_CONFIG from SageMaker, and fit/evaluate/predict under MultiWorkerMirroredStrategy.

The multi-worker tests run two worker processes on 127.0.0.1 (tests/multi_worker_harness.py) and compare them with
one process on the whole global batch, running the same script.
"""

import json
import logging
import os
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from keras_albert import distribute
from keras_albert.errors import UserInputError

sys.path.insert(0, os.path.dirname(__file__))
from multi_worker_harness import run_workers  # noqa: E402

SM_ENV = {"SM_HOSTS": '["algo-1", "algo-2", "algo-3"]', "SM_CURRENT_HOST": "algo-2"}


def tf_config(workers, index, task_type="worker", chief=None):
    cluster = {"worker": workers}
    if chief:
        cluster["chief"] = chief
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


# ---------------------------------------------------------------- TF_CONFIG and worker info


def test_tf_config_from_sagemaker():
    assert distribute.tf_config_from_sagemaker(SM_ENV, port=7777) == {
        "cluster": {"worker": ["algo-1:7777", "algo-2:7777", "algo-3:7777"]},
        "task": {"type": "worker", "index": 1},
    }
    assert distribute.tf_config_from_sagemaker({}) is None
    with pytest.raises(UserInputError, match="SM_HOSTS"):
        distribute.tf_config_from_sagemaker({"SM_HOSTS": "algo-1,algo-2", "SM_CURRENT_HOST": "algo-1"})
    with pytest.raises(UserInputError, match="SM_CURRENT_HOST"):
        distribute.tf_config_from_sagemaker({"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-9"})


def test_tf_config_is_set_only_when_absent():
    env = dict(SM_ENV)
    config = distribute.set_tf_config_from_sagemaker(env)
    assert json.loads(env["TF_CONFIG"]) == config
    assert config["cluster"]["worker"][0] == f"algo-1:{distribute.SAGEMAKER_PORT}"

    existing = tf_config(["a:1", "b:2"], 1)
    env = {**SM_ENV, "TF_CONFIG": existing}
    distribute.set_tf_config_from_sagemaker(env)
    assert env["TF_CONFIG"] == existing

    env = {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"}  # one host: nothing to coordinate
    assert distribute.set_tf_config_from_sagemaker(env) is None
    assert "TF_CONFIG" not in env

    with pytest.raises(UserInputError, match="TF_CONFIG"):
        distribute.set_tf_config_from_sagemaker({"TF_CONFIG": "{not json"})


def test_worker_info():
    assert distribute.worker_info({}) == (0, 1, True)
    assert distribute.worker_info({"TF_CONFIG": tf_config(["a:1", "b:2"], 0)}) == (0, 2, True)
    assert distribute.worker_info({"TF_CONFIG": tf_config(["a:1", "b:2"], 1)}) == (1, 2, False)
    with_chief = {"TF_CONFIG": tf_config(["a:1", "b:2"], 0, chief=["c:3"])}
    assert distribute.worker_info(with_chief) == (1, 3, False)
    chief = {"TF_CONFIG": tf_config(["a:1", "b:2"], 0, task_type="chief", chief=["c:3"])}
    assert distribute.worker_info(chief) == (0, 3, True)
    assert distribute.worker_info(SM_ENV) == (1, 3, False)


# ---------------------------------------------------------------- strategy selection


def test_choose_distribution():
    assert distribute.choose_distribution({}) == "none"  # this machine has no GPU
    assert distribute.choose_distribution({"TF_CONFIG": tf_config(["a:1", "b:2"], 0)}) == "multi_worker"
    assert distribute.choose_distribution({"TF_CONFIG": tf_config(["a:1"], 0)}) == "none"
    assert distribute.choose_distribution(dict(SM_ENV)) == "multi_worker"


def test_get_strategy_none_and_bad_flag():
    assert distribute.get_strategy("none") is tf.distribute.get_strategy()
    assert distribute.get_strategy("auto", env={}) is tf.distribute.get_strategy()
    with pytest.raises(UserInputError, match="--distribution"):
        distribute.get_strategy("parameter_server")


def test_horovod_is_explained_when_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "horovod", None)
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)
    with pytest.raises(UserInputError, match="bash scripts/build_horovod.sh"):
        distribute.get_strategy("horovod")


def test_horovod_when_importable(monkeypatch):
    calls = []
    fake = types.ModuleType("horovod.tensorflow")
    fake.init = lambda: calls.append("init")
    fake.rank = lambda: 1
    fake.size = lambda: 4
    fake.local_rank = lambda: 1
    package = types.ModuleType("horovod")
    package.tensorflow = fake
    monkeypatch.setitem(sys.modules, "horovod", package)
    monkeypatch.setitem(sys.modules, "horovod.tensorflow", fake)
    monkeypatch.setattr(distribute, "_HOROVOD", None)
    assert distribute.get_strategy("horovod") is tf.distribute.get_strategy()
    assert calls == ["init"]
    assert distribute.worker_info({}) == (1, 4, False)


def test_multi_worker_too_late_is_explained():
    # In a fresh process: run one op, then ask for a two-worker strategy.
    script = (
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1.0\n"
        "from keras_albert import distribute\n"
        "try:\n"
        "    distribute.get_strategy('multi_worker')\n"
        "except RuntimeError as error:\n"
        "    print('ERROR:', error)\n"
    )
    results = run_workers(script, num_workers=2, timeout=90)
    for result in results:
        assert "ERROR: MultiWorkerMirroredStrategy must be created before any TensorFlow op runs" in result.log


def test_jit_compile_off_for_cpu_collectives(caplog):
    assert distribute.jit_compile_supported(tf.distribute.get_strategy())
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert not distribute.jit_compile_supported(mirrored)
    with caplog.at_level(logging.INFO, logger="keras_albert"):
        assert distribute.resolve_jit_compile(True, mirrored) is False
    assert len([r for r in caplog.records if "jit_compile turned off" in r.getMessage()]) == 1
    assert distribute.resolve_jit_compile(True, tf.distribute.get_strategy()) is True
    assert distribute.resolve_jit_compile("auto", mirrored) == "auto"


# ---------------------------------------------------------------- fit / evaluate / predict on two workers

# Run as one process (default strategy, whole global batch) and as two workers (MultiWorkerMirroredStrategy, each
# reading its shard through `distribute_datasets_from_function`). Writes weights, losses and predictions.
WORKER_SCRIPT = r"""
import os
import numpy as np
from keras_albert import distribute

strategy = distribute.get_strategy("auto")  # first: before any TensorFlow op

import keras
import tensorflow as tf
from keras_albert.optimizers import LAMB, WarmupPolyDecay
from keras_albert.models.multi_worker import MultiWorkerTrainerMixin

GLOBAL_BATCH, STEPS = 8, 5
rng = np.random.default_rng(0)
X = rng.normal(size=(GLOBAL_BATCH * STEPS, 4)).astype("float32")
Y = rng.normal(size=(GLOBAL_BATCH * STEPS, 2)).astype("float32")


def dataset_fn(context):
    # Shard then batch: worker k's step-i batch holds rows i*G + k, i*G + k + 2, ...; together, global batch i.
    dataset = tf.data.Dataset.from_tensor_slices((X, Y))
    dataset = dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
    return dataset.batch(context.get_per_replica_batch_size(GLOBAL_BATCH))


class Regressor(MultiWorkerTrainerMixin, keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="tanh", name="hidden")
        self.norm = keras.layers.LayerNormalization(name="layer_norm")
        self.head = keras.layers.Dense(2, name="head")
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, x):
        return self.head(self.norm(self.hidden(x)))

    @property
    def metrics(self):
        return [self.loss_tracker]

    def _loss(self, x, y, training):
        return tf.reduce_mean(tf.square(self(x, training=training) - y))

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss = self._loss(x, y, training=True)
            # Gradients are summed over replicas: a hand-written loss is divided by their number, or two workers
            # train twice as fast as one.
            scaled = loss / self.distribute_strategy.num_replicas_in_sync
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        x, y = data
        self.loss_tracker.update_state(self._loss(x, y, training=False))
        return {"loss": self.loss_tracker.result()}


def make_optimizer(kind):
    schedule = WarmupPolyDecay(0.05, warmup_steps=2, total_steps=STEPS, end_learning_rate=0.01)
    if kind == "sgd":  # plain SGD: the weights show any error in the gradient's scale (summed over replicas)
        return keras.optimizers.SGD(learning_rate=schedule)
    # LAMB normalises the update's scale, but its state and trust ratios must agree across workers
    return LAMB(learning_rate=schedule, weight_decay=0.01, exclude_from_weight_decay=["layer_norm", "bias"])


results = {}
for kind in ("sgd", "lamb"):
    with strategy.scope():
        model = Regressor(name="regressor")
        model(np.zeros((1, 4), "float32"))  # creates the variables
        init = np.random.default_rng(1)
        model.set_weights([init.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()])
        initial = [w.copy() for w in model.get_weights()]
        model.compile(optimizer=make_optimizer(kind), jit_compile=distribute.resolve_jit_compile(False, strategy))

    history = model.fit(
        strategy.distribute_datasets_from_function(dataset_fn), epochs=1, steps_per_epoch=STEPS, verbose=0
    )
    evaluated = model.evaluate(strategy.distribute_datasets_from_function(dataset_fn), steps=STEPS, verbose=0)
    predicted = model.predict(strategy.distribute_datasets_from_function(dataset_fn), steps=STEPS, verbose=0)
    results.update(
        {
            f"{kind}_fit_loss": np.array(history.history["loss"]),
            f"{kind}_eval_loss": np.array(evaluated),
            f"{kind}_predicted": predicted,
            f"{kind}_iterations": np.array(int(model.optimizer.iterations.numpy())),
            **{f"{kind}_initial_{i}": w for i, w in enumerate(initial)},
            **{f"{kind}_weight_{i}": w for i, w in enumerate(model.get_weights())},
        }
    )

np.savez(
    os.environ["KERAS_ALBERT_WORKER_OUT"],
    replicas=np.array(strategy.num_replicas_in_sync),
    info=np.array(distribute.worker_info()),
    jit_supported=np.array(distribute.jit_compile_supported(strategy)),
    **results,
)
"""


def _load(result):
    with np.load(result.out_path) as data:
        return {key: data[key] for key in data.files}


def _weights(out, prefix):
    return [out[f"{prefix}{i}"] for i in range(len([k for k in out if k.startswith(prefix)]))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    two = run_workers(WORKER_SCRIPT, num_workers=2, timeout=150, workdir=str(tmp_path_factory.mktemp("two")))
    one = run_workers(WORKER_SCRIPT, num_workers=1, timeout=150, workdir=str(tmp_path_factory.mktemp("one")))
    return [_load(r) for r in two], _load(one[0])


def test_two_workers_cluster(runs):
    (worker_0, worker_1), single = runs
    assert int(worker_0["replicas"]) == 2 and int(single["replicas"]) == 1
    assert tuple(worker_0["info"]) == (0, 2, 1) and tuple(worker_1["info"]) == (1, 2, 0)
    assert not worker_0["jit_supported"]  # CPU collectives: XLA off
    assert single["jit_supported"]


@pytest.mark.parametrize("kind", ["sgd", "lamb"])
def test_two_workers_fit_like_one_process(runs, kind):
    (worker_0, worker_1), single = runs
    assert int(worker_0[f"{kind}_iterations"]) == int(single[f"{kind}_iterations"]) == 5
    w0, w1, ws = (_weights(out, f"{kind}_weight_") for out in (worker_0, worker_1, single))
    assert len(w0) == 6
    for a, b in zip(w0, w1):
        assert np.array_equal(a, b), "the two workers' weights differ"
    max_diff = max(float(np.max(np.abs(a - b))) for a, b in zip(w0, ws))
    print(f"{kind} fit: max |two workers - one process| = {max_diff:.3g}")
    assert max_diff <= 1e-5
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(ws, _weights(single, f"{kind}_initial_")))
    assert moved > 1e-2, "training did not move the weights; the comparison would prove nothing"
    assert worker_0[f"{kind}_fit_loss"][0] == worker_1[f"{kind}_fit_loss"][0]
    assert abs(float(worker_0[f"{kind}_fit_loss"][0]) - float(single[f"{kind}_fit_loss"][0])) <= 1e-5


@pytest.mark.parametrize("kind", ["sgd", "lamb"])
def test_two_workers_evaluate_and_predict_like_one_process(runs, kind):
    (worker_0, worker_1), single = runs
    assert float(worker_0[f"{kind}_eval_loss"]) == float(worker_1[f"{kind}_eval_loss"])
    eval_diff = abs(float(worker_0[f"{kind}_eval_loss"]) - float(single[f"{kind}_eval_loss"]))
    print(f"{kind} evaluate: |two workers - one process| = {eval_diff:.3g}")
    assert eval_diff <= 1e-5

    # predict gathers worker 0's rows of each global batch, then worker 1's: rows 0,2,4,6 then 1,3,5,7.
    order = np.concatenate([step * 8 + np.array([0, 2, 4, 6, 1, 3, 5, 7]) for step in range(5)])
    assert np.array_equal(worker_0[f"{kind}_predicted"], worker_1[f"{kind}_predicted"])
    predict_diff = float(np.max(np.abs(worker_0[f"{kind}_predicted"] - single[f"{kind}_predicted"][order])))
    print(f"{kind} predict: max |two workers - one process| = {predict_diff:.3g}")
    assert predict_diff <= 1e-5

