"""Multi-worker SQuAD with fewer features than workers: two workers (MultiWorkerMirroredStrategy on 127.0.0.1) and one
question of one feature. Worker 1's share of the prediction is empty; it still enters the one all-reduce, and both
workers hold the logits, answers and scores of one process. Finetuning on that one feature also runs on both."""

import json
import os
import sys

import keras
import numpy as np
import pytest

from fixtures_data import trained_tokenizer_dir

from keras_albert import SquadModel
from keras_albert.data import load_tokenizer, squad
from keras_albert.training.squad import predict_logits, predict_squad

sys.path.insert(0, os.path.dirname(__file__))
from multi_worker_harness import run_workers  # noqa: E402

WINDOW = dict(max_seq_length=64, doc_stride=32, max_query_length=16)
ONE_QUESTION = {"version": "v2.0", "data": [{"title": "Persuasion", "paragraphs": [{
    "context": "Anne Elliot walked to Uppercross in the autumn, and Captain Wentworth came to Kellynch.",
    "qas": [{"id": "q-1", "question": "Where did Anne Elliot walk?",
             "answers": [{"text": "Uppercross", "answer_start": 22}], "is_impossible": False}],
}]}]}

WORKER_SCRIPT = r"""
import json, os
import numpy as np
from keras_albert import distribute

strategy = distribute.get_strategy("multi_worker")  # before any TensorFlow op
from keras_albert import SquadModel
from keras_albert.data import load_tokenizer, squad
from keras_albert.training.squad import finetune_squad, predict_logits, predict_squad

tokenizer = load_tokenizer(os.environ["TOKENIZER"])
window = json.loads(os.environ["WINDOW"])
examples = squad.read_squad(os.environ["QUESTIONS"])
features = squad.convert_examples_to_features(examples, tokenizer, is_training=False, **window)
with strategy.scope():
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=tokenizer.vocab_size, max_sequence_length=64)
    initial = np.load(os.environ["INITIAL"])
    model.set_weights([initial[f"w{i}"] for i in range(len(initial.files))])
start, end = predict_logits(model, features, batch_size=8, verbose=0)
result = predict_squad(model, examples, features=features, predict_batch_size=8, verbose=0)
train_features = squad.convert_examples_to_features(examples, tokenizer, is_training=True, **window)
finetune_squad(model, train_features, total_steps=2, per_gpu_batch_size=2, learning_rate=1e-3, seed=0, verbose=0)
out = os.environ["KERAS_ALBERT_WORKER_OUT"]
np.savez(out, start=start, end=end, features=len(features), workers=strategy.num_replicas_in_sync,
         weights=np.concatenate([w.ravel() for w in model.get_weights()]))
with open(out + ".json", "w") as f:
    json.dump({"predictions": result.predictions, "scores": result.scores}, f)
"""


@pytest.mark.large  # two TensorFlow processes: about a minute on 2 cores
def test_two_workers_predict_one_feature_as_one_process(tmp_path):
    tokenizer_dir = trained_tokenizer_dir("albert", 2000)
    questions = tmp_path / "one.json"
    questions.write_text(json.dumps(ONE_QUESTION))
    tokenizer = load_tokenizer(tokenizer_dir)
    examples = squad.read_squad(str(questions))
    features = squad.convert_examples_to_features(examples, tokenizer, is_training=False, **WINDOW)
    assert len(features) == 1  # fewer features than workers

    keras.utils.set_random_seed(3)
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=tokenizer.vocab_size, max_sequence_length=64)
    np.savez(tmp_path / "initial.npz", **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    start, end = predict_logits(model, features, batch_size=8, verbose=0)
    alone = predict_squad(model, examples, features=features, predict_batch_size=8, verbose=0)

    env = {"TOKENIZER": tokenizer_dir, "INITIAL": str(tmp_path / "initial.npz"), "QUESTIONS": str(questions),
           "WINDOW": json.dumps(WINDOW)}
    results = run_workers(WORKER_SCRIPT, 2, timeout=300, env=env, workdir=str(tmp_path / "workers"))
    outputs = []
    for result in results:
        arrays = dict(np.load(result.out_path))
        with open(result.out_path + ".json") as file:
            outputs.append((arrays, json.load(file)))
    for arrays, written in outputs:
        assert int(arrays["features"]) == 1 and int(arrays["workers"]) == 2
        assert np.abs(arrays["start"] - start).max() < 1e-5
        assert np.abs(arrays["end"] - end).max() < 1e-5
        assert written["predictions"] == alone.predictions
        assert written["scores"] == pytest.approx(alone.scores)
    # Finetuned together on one feature: both workers hold the same weights, moved from the initial ones.
    assert np.array_equal(outputs[0][0]["weights"], outputs[1][0]["weights"])
    initial = np.concatenate([w.ravel() for w in model.get_weights()])
    assert not np.array_equal(outputs[0][0]["weights"], initial)


SQUAD_COMMAND = """
import json, os, sys
from keras_albert.cli import main
sys.exit(main(json.loads(os.environ["FLAGS"])))
"""


@pytest.mark.large  # two TensorFlow processes finetuning and predicting: a minute or two on 2 cores
def test_the_squad_command_on_two_workers_checkpoints_exports_and_predicts_once(tmp_path):
    """`keras-albert squad --distribution multi_worker` on two workers sharing --output_dir: both exit 0; the
    checkpoints at 2 and 4, model.keras, huggingface/ and the predictions are written once, by the chief; a rerun
    of both resumes at the last step and only predicts."""
    from test_squad_long_runs import small_squad

    for split, questions in (("train", 12), ("dev", 3)):
        (tmp_path / f"{split}.json").write_text(json.dumps(small_squad(split, questions)))
    output_dir = tmp_path / "out"
    flags = ["squad", "--tokenizer", trained_tokenizer_dir("albert", 2000), "--model_size", "tiny",
             "--train_file", str(tmp_path / "train.json"), "--predict_file", str(tmp_path / "dev.json"),
             "--output_dir", str(output_dir), "--max_seq_length", "64", "--doc_stride", "32",
             "--max_query_length", "16", "--per_gpu_batch_size", "2", "--total_steps", "4",
             "--checkpoint_frequency", "2", "--log_frequency", "1", "--learning_rate", "1e-3",
             "--distribution", "multi_worker"]
    for attempt in ("first", "rerun"):
        results = run_workers(SQUAD_COMMAND, 2, timeout=400, env={"FLAGS": json.dumps(flags)},
                              workdir=str(tmp_path / attempt))
        assert all(result.returncode == 0 for result in results)
    names = set(os.listdir(output_dir))
    assert {"model.keras", "huggingface", "predictions.json", "scores.json", "checkpoints"} <= names
    assert not [name for name in names if name.startswith(".")]
    steps = sorted(name for name in os.listdir(output_dir / "checkpoints") if name.endswith(".index"))
    assert steps == ["ckpt-2.index", "ckpt-4.index"]
    assert not [name for name in os.listdir(output_dir / "checkpoints") if name.startswith(".worker")]
    log = (output_dir / "train.log").read_text()
    assert "step 4/4" in log and "The finetuning is complete: step 4 of 4" in log
    questions = len(squad.read_squad(str(tmp_path / "dev.json")))
    assert json.loads((output_dir / "scores.json").read_text())["total"] == questions >= 3
