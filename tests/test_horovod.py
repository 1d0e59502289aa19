"""Real Horovod under real MPI: two ranks (`mpiexec -np 2`) against one process on the whole batch.

Needs Horovod built against this TensorFlow (`bash scripts/build_horovod.sh`, which `.ci/run` runs) and MPICH's
`mpiexec` beside the Python executable (the build script installs it from PyPI). These tests are `large` and fail,
never skip, when Horovod or mpiexec is missing: they are what proves the Horovod path.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from fixtures_data import published_checkpoints  # noqa: E402
from multi_worker_harness import pretraining_batches  # noqa: E402

pytestmark = pytest.mark.large

STEPS, GLOBAL_ROWS, ACCUMULATION, SEQ, PREDICTIONS, VOCAB = 5, 16, 2, 16, 4, 300
TINY = dict(vocabulary_size=VOCAB, num_layers=2, num_heads=2, embedding_dim=8, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=SEQ, dropout=0.0, classifier_dropout=0.0)

# Each rank starts from its own random initialisation (seed 100 + rank) and feeds its half of every global batch;
# `fit` itself must broadcast rank 0's state before the first update.
SCRIPT = r'''
import json, os, sys
import numpy as np
from keras_albert.distribute import get_strategy
strategy = get_strategy(os.environ["DISTRIBUTION"])
import keras, tensorflow as tf
from keras_albert import PretrainingModel, distribute
from keras_albert.optimizers import LAMB, WarmupPolyDecay

info = distribute.worker_info()
rank, size = info.task_index, info.num_workers
data = dict(np.load(os.environ["DATA"]))
out = os.environ["OUT"] + f".{rank}"
keras.utils.set_random_seed(100 + rank)
model = PretrainingModel.from_preset("albert_tiny", **json.loads(os.environ["TINY"]))
if os.environ.get("INITIAL"):
    initial = np.load(os.environ["INITIAL"])
    model.set_weights([initial[f"w{i}"] for i in range(len(initial.files))])
np.savez(out + ".initial.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
model.compile(optimizer=LAMB(WarmupPolyDecay(0.02, 2, 5), weight_decay=0.01),
              gradient_accumulation_steps=int(os.environ["ACCUMULATION"]))
rows = data["input_ids"].shape[1] // size
dataset = tf.data.Dataset.from_tensor_slices({k: v[:, rank * rows:(rank + 1) * rows] for k, v in data.items()})
history = model.fit(dataset, epochs=1, steps_per_epoch=int(os.environ["STEPS"]), verbose=0)
evaluation = model.evaluate(dataset, steps=2, verbose=0, return_dict=True)
np.savez(out + ".npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
with open(out + ".json", "w") as f:
    json.dump({"fit": {k: float(v[-1]) for k, v in history.history.items()},
               "evaluate": {k: float(v) for k, v in evaluation.items()},
               "size": size, "iterations": int(model.optimizer.iterations.numpy())}, f)
'''


def mpiexec():
    path = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    assert os.path.isfile(path), f"{path} is missing: run `bash scripts/build_horovod.sh` (it installs MPICH)"
    return path


def run_ranks(script, ranks, env, workdir, timeout=600):
    """Runs `script` (Python source) as `ranks` MPI processes; returns the combined log, failing on a non-zero exit."""
    full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", **env)
    result = subprocess.run(
        [mpiexec(), "-np", str(ranks), sys.executable, "-c", script],
        env=full_env, cwd=workdir, capture_output=True, text=True, timeout=timeout,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"mpiexec -np {ranks} failed (rc {result.returncode}):\n{log[-6000:]}"
    return log


def _data(rng):
    return pretraining_batches(rng, STEPS, GLOBAL_ROWS, SEQ, PREDICTIONS, VOCAB)


def _load(prefix):
    weights = np.load(prefix + ".npz")
    with open(prefix + ".json") as f:
        return [weights[f"w{i}"] for i in range(len(weights.files))], json.load(f)


def _initial(prefix):
    weights = np.load(prefix + ".initial.npz")
    return [weights[f"w{i}"] for i in range(len(weights.files))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    import horovod.tensorflow  # noqa: F401  (fails, not skips, when the build is missing)

    workdir = tmp_path_factory.mktemp("horovod")
    np.savez(workdir / "data.npz", **_data(np.random.default_rng(0)))
    env = {"DATA": str(workdir / "data.npz"), "STEPS": str(STEPS), "ACCUMULATION": str(ACCUMULATION),
           "TINY": json.dumps(TINY)}
    log = run_ranks(SCRIPT, 2, {**env, "DISTRIBUTION": "horovod", "OUT": str(workdir / "two")}, str(workdir))
    # One process on the whole batch, from rank 0's initialisation.
    np.savez(workdir / "rank0_initial.npz", **np.load(workdir / "two.0.initial.npz"))
    run_ranks(SCRIPT, 1, {**env, "DISTRIBUTION": "none", "OUT": str(workdir / "one"),
                          "INITIAL": str(workdir / "rank0_initial.npz")}, str(workdir))
    return {
        "ranks": [_load(str(workdir / f"two.{rank}")) for rank in range(2)],
        "initial": [_initial(str(workdir / f"two.{rank}")) for rank in range(2)],
        "one": _load(str(workdir / "one.0")),
        "log": log,
    }


def test_ranks_started_apart(runs):
    initial_0, initial_1 = runs["initial"]
    assert max(np.abs(a - b).max() for a, b in zip(initial_0, initial_1)) > 1e-2


def test_two_ranks_train_like_one_process_on_the_whole_batch(runs):
    (weights_0, logs_0), (weights_1, logs_1) = runs["ranks"]
    single_weights, single_logs = runs["one"]
    assert logs_0["size"] == logs_1["size"] == 2 and single_logs["size"] == 1
    for a, b in zip(weights_0, weights_1):
        np.testing.assert_array_equal(a, b)  # bit-identical across ranks
    worst = max(np.abs(a - b).max() for a, b in zip(weights_0, single_weights))
    moved = max(np.abs(a - b).max() for a, b in zip(single_weights, runs["initial"][0]))
    print(f"horovod 2 ranks vs one process after {STEPS} steps: max |diff| {worst:.3g} (weights moved {moved:.3g})")
    assert moved > 1e-3
    assert worst < 1e-5
    assert logs_0["iterations"] == logs_1["iterations"] == single_logs["iterations"] == STEPS
    for key in ("loss", "mlm_loss", "sop_loss"):
        assert logs_0["fit"][key] == pytest.approx(single_logs["fit"][key], abs=1e-5), key
        assert logs_0["fit"][key] == pytest.approx(logs_1["fit"][key], rel=1e-6), key  # one rounding apart at most


def test_two_ranks_evaluate_like_one_process(runs):
    (_, logs_0), (_, logs_1) = runs["ranks"]
    single = runs["one"][1]["evaluate"]
    # The ranks' metrics come from the same all-reduced sums, yet MPI's reduction may round the last bit differently
    # on each rank (seen: 6.369268 vs 6.3692679): equal within one rounding, not bit for bit as the weights are.
    assert logs_0["evaluate"].keys() == logs_1["evaluate"].keys()
    for key in logs_0["evaluate"]:
        assert logs_0["evaluate"][key] == pytest.approx(logs_1["evaluate"][key], rel=1e-6), key
    for key in ("loss", "mlm_loss", "mlm_accuracy", "sop_loss", "sop_accuracy"):
        assert logs_0["evaluate"][key] == pytest.approx(single[key], abs=1e-5), key


# `keras-albert pretrain --distribution horovod` on 2 ranks: the first run is killed (SIGKILL to the whole mpiexec
# group) after a checkpoint; the restart resumes from rank 0's checkpoint and both ranks end with identical weights.
PRETRAIN = r'''
import json, os, sys
import numpy as np
from keras_albert import cli
argv = json.loads(os.environ["ARGV"])
if os.environ.get("PHASE") == "first":
    sys.exit(cli.main(["pretrain", *argv]))
from keras_albert.commands.pretrain import settings_from_args
from keras_albert.training.pretrain import pretrain
parser = cli.build_parser("pretrain")
result = pretrain(settings_from_args(parser.parse_args(["pretrain", *argv])))
from keras_albert import distribute
rank = distribute.worker_info().task_index
np.savez(os.environ["OUT"] + f".{rank}.npz", **{f"w{i}": w for i, w in enumerate(result["model"].get_weights())})
with open(os.environ["OUT"] + f".{rank}.json", "w") as f:
    json.dump({"initial_step": result["initial_step"], "step": result["step"]}, f)
'''


def test_pretrain_under_mpiexec_resumes_from_rank_0s_checkpoint(tmp_path):
    import signal
    import time

    from fixtures_data import novel_path, trained_tokenizer_dir

    from keras_albert import cli

    tokenizer = trained_tokenizer_dir("albert", 2000)
    records = tmp_path / "records"
    assert cli.main(["create-pretraining-data", "--input", novel_path(), "--tokenizer", tokenizer,
                     "--output_dir", str(records), "--max_seq_length", "32", "--max_predictions_per_seq", "5",
                     "--dupe_factor", "1", "--num_shards", "2", "--workers", "1", "--quiet"]) == 0
    run = tmp_path / "run"
    argv = ["--train_files", str(records / "*.tfrecord"), "--output_dir", str(run), "--model_size", "tiny",
            "--distribution", "horovod", "--per_gpu_batch_size", "4", "--gradient_accumulation_steps", "2",
            "--total_steps", "40", "--warmup_steps", "2", "--learning_rate", "0.01", "--log_frequency", "4",
            "--checkpoint_frequency", "4", "--jit_compile", "false", "--quiet"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1", ARGV=json.dumps(argv),
               PHASE="first")
    log = open(tmp_path / "first.log", "w+")
    first = subprocess.Popen([mpiexec(), "-np", "2", sys.executable, "-c", PRETRAIN], env=env, cwd=tmp_path,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 400
    try:
        while not published_checkpoints(str(run)) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    log.seek(0)
    saved = published_checkpoints(str(run))
    assert saved, f"no checkpoint within the time limit; log:\n{log.read()[-4000:]}"
    assert not (run / "model.keras").exists(), "the first run finished before it was killed: raise --total_steps"

    out = str(tmp_path / "resumed")
    run_ranks(PRETRAIN, 2, {"ARGV": json.dumps(argv), "OUT": out, "PHASE": "resume"}, str(tmp_path))
    (weights_0, logs_0), (weights_1, logs_1) = [_load(f"{out}.{rank}") for rank in range(2)]
    print(f"killed after checkpoints {saved}; resumed at step {logs_0['initial_step']}, ended at {logs_0['step']}")
    assert logs_0["initial_step"] == logs_1["initial_step"] >= min(saved) > 0
    assert logs_0["step"] == logs_1["step"] == 40
    for a, b in zip(weights_0, weights_1):
        np.testing.assert_array_equal(a, b)
    assert (run / "model.keras").exists()


# SQuAD prediction split over 2 Horovod ranks (each its strided share, assembled by one all-reduce) vs one process.
SQUAD = r'''
import os, sys
import numpy as np
from keras_albert.distribute import get_strategy
get_strategy(os.environ["DISTRIBUTION"])
import keras
from keras_albert import SquadModel, distribute
from keras_albert.data import load_tokenizer, squad
from keras_albert.training.squad_predict import predict_logits

tokenizer = load_tokenizer(os.environ["TOKENIZER"])
examples = squad.read_squad(squad.austen_squad_path("dev"))[:13]  # an odd count: the ranks' shares differ
features = squad.convert_examples_to_features(examples, tokenizer, max_seq_length=64, doc_stride=32,
                                              max_query_length=24)
keras.utils.set_random_seed(5)
model = SquadModel.from_preset("albert_tiny", vocabulary_size=tokenizer.vocab_size, max_sequence_length=64)
start, end = predict_logits(model, features, batch_size=8, verbose=0)
rank = distribute.worker_info().task_index
np.savez(os.environ["OUT"] + f".{rank}.npz", start=start, end=end, count=len(features))
'''


def test_squad_prediction_split_over_two_ranks_equals_one_process(tmp_path):
    from fixtures_data import trained_tokenizer_dir

    env = {"TOKENIZER": trained_tokenizer_dir("albert", 2000)}
    run_ranks(SQUAD, 2, {**env, "DISTRIBUTION": "horovod", "OUT": str(tmp_path / "two")}, str(tmp_path))
    run_ranks(SQUAD, 1, {**env, "DISTRIBUTION": "none", "OUT": str(tmp_path / "one")}, str(tmp_path))
    one = np.load(tmp_path / "one.0.npz")
    assert int(one["count"]) > 13  # more features than questions, so both ranks predict several
    for rank in range(2):
        two = np.load(tmp_path / f"two.{rank}.npz")
        for key in ("start", "end"):
            np.testing.assert_allclose(two[key], one[key], atol=1e-5)
