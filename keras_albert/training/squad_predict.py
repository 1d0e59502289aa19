"""SQuAD prediction: start/end logits for every feature, answers, the official scores, the official files.

Prediction under several workers (`MultiWorkerMirroredStrategy`): every worker tokenizes all questions (cheap and
deterministic, so every worker knows every feature), predicts only its strided share of the features (features
`w, w + n, w + 2n, ...` on worker `w` of `n`) with a local loop that runs no collective op, writes its logits into a
zero array of all features, and then all workers enter ONE all-reduce (sum) together, after which every worker holds
every feature's logits, extracts the same answers and computes the same scores; the chief alone writes the files. No
worker is ever inside a collective that another worker does not also enter at the same point of the program. On one
worker the model's own `predict` runs (over all local replicas) and nothing is gathered.
"""

import dataclasses
import math
import os

from keras_albert import io
from keras_albert.errors import UserInputError
from keras_albert.training.squad_settings import squad_settings

SCORES_FILE = "scores.json"
_INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")


def strategy_workers(strategy):
    """(index of this worker, number of workers, replicas on this worker) for a tf.distribute strategy, or for the
    Horovod ranks (one replica each) when Horovod runs."""
    from keras_albert import distribute

    horovod = distribute.horovod_module()
    if horovod is not None and horovod.size() > 1:
        return horovod.rank(), horovod.size(), 1
    if strategy.num_replicas_in_sync == 1:
        return 0, 1, 1
    local_replicas = len(strategy.extended.worker_devices)
    num_workers = max(1, strategy.num_replicas_in_sync // local_replicas)
    if num_workers == 1:
        return 0, 1, local_replicas
    index = getattr(strategy.extended, "_id_in_cluster", None)
    if index is None:
        from keras_albert.distribute import worker_info

        index = worker_info().task_index
    return int(index), num_workers, local_replicas


@dataclasses.dataclass
class SquadPredictions:
    """What `predict_squad` returns.

    Args:
        predictions: dict. Question id -> answer text (`""` for no answer).
        nbest: dict. Question id -> n-best list (`text`, `probability`, `start_logit`, `end_logit`).
        null_odds: dict or None. Question id -> null score minus best span score (SQuAD v2.0), else None.
        scores: dict. The official scores (`exact`, `f1`, `total`, `HasAns_*`, `NoAns_*`, `best_*`), 0-100.
        paths: dict. Files written (`predictions`, `nbest_predictions`, `null_odds`, `scores`); empty when none.
    """

    predictions: dict
    nbest: dict
    null_odds: dict
    scores: dict
    paths: dict


def _examples_to_dataset(examples):
    """The SQuAD JSON structure the official scorer reads (ids and gold answers), from `SquadExample`s."""
    qas = [
        {
            "id": example.qas_id,
            "question": example.question,
            "answers": [{"text": answer.text, "answer_start": answer.start} for answer in example.answers],
            "is_impossible": example.is_impossible,
        }
        for example in examples
    ]
    return {"data": [{"title": "", "paragraphs": [{"context": "", "qas": qas}]}]}


def _local_logits(model, features, batch_size, verbose, seq):
    """Start/end logits `[len(features), seq]` of `features` from this process alone: a plain loop, no
    distribution, no collective op. A worker whose share is empty (fewer features than workers) predicts nothing."""
    import numpy as np
    import tensorflow as tf
    from tqdm.auto import tqdm

    from keras_albert.data.squad import squad_dataset

    if not features:
        return np.zeros((0, seq), np.float32), np.zeros((0, seq), np.float32)

    @tf.function(reduce_retracing=True)
    def step(batch):
        outputs = model({name: batch[name] for name in _INPUT_NAMES}, training=False)
        return tf.cast(outputs["start_logits"], tf.float32), tf.cast(outputs["end_logits"], tf.float32)

    starts, ends = [], []
    batches = squad_dataset(features, batch_size, training=False)
    total = math.ceil(len(features) / batch_size)
    for batch in tqdm(batches, total=total, desc="SQuAD predict (this worker)", unit="batch", disable=not verbose):
        start, end = step(batch)
        starts.append(start.numpy())
        ends.append(end.numpy())
    return np.concatenate(starts), np.concatenate(ends)


def _sum_over_workers(strategy, array, local_replicas):
    """The sum of every worker's `array` (same shape everywhere), on every worker: one all-reduce entered by all."""
    import numpy as np
    import tensorflow as tf

    from keras_albert import distribute

    if distribute.horovod_module() is not None:
        return distribute.horovod_all_reduce_sum([tf.constant(array)])[0].numpy()
    zeros = np.zeros_like(array)
    # Replica ids are contiguous per worker (worker w holds w*k .. w*k+k-1): its first replica carries the array.
    values = strategy.experimental_distribute_values_from_function(
        lambda context: array if context.replica_id_in_sync_group % local_replicas == 0 else zeros
    )

    def replica_fn(value):
        # tf.identity places the value on the replica's device: the all-reduce takes its destination from there.
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(value))

    @tf.function
    def all_reduce(values):
        return strategy.run(replica_fn, args=(values,))

    return strategy.experimental_local_results(all_reduce(values))[0].numpy()


def predict_logits(model, features, batch_size=64, verbose="auto"):
    """Start and end logits `[num_features, max_seq_length]` (float32) for every feature, on every worker.

    One worker: the model's `predict` (all local replicas). Several workers: each predicts its strided share of the
    features locally, and one all-reduce, which every worker enters, assembles them (see the module docstring).
    """
    import numpy as np

    strategy = model.distribute_strategy
    index, num_workers, local_replicas = strategy_workers(strategy)
    show = verbose not in (0, False)
    if num_workers == 1:
        from keras_albert.data.squad import squad_dataset

        outputs = model.predict(squad_dataset(features, batch_size, training=False), verbose=verbose)
        return (np.asarray(outputs["start_logits"], np.float32), np.asarray(outputs["end_logits"], np.float32))
    if not features:
        raise UserInputError("no SQuAD features to predict")
    seq = features[0].input_ids.shape[0]
    # With fewer features than workers, the last workers' shares are empty: they still enter the all-reduce.
    start, end = _local_logits(model, features[index::num_workers], batch_size, verbose=show and index == 0,
                               seq=seq)
    both = np.zeros((len(features), seq, 2), np.float32)
    both[index::num_workers, :, 0] = start
    both[index::num_workers, :, 1] = end
    both = _sum_over_workers(strategy, both, local_replicas)
    return both[..., 0], both[..., 1]



def official_scores(dataset, predictions, null_odds, null_score_diff_threshold=0.0):
    """The official scores of `predictions`, with `null_odds` as the na-prob file (which adds the `best_*` keys).

    The official script counts a question as answered "no answer" when its na-prob exceeds its threshold (1.0 by
    default), whatever the prediction says. Null odds are score differences, not probabilities, so that threshold
    is raised to the one the predictions were made with: `f1` and `exact` are then the scores of the predictions
    as written (a question is predicted "" exactly when its odds exceed `null_score_diff_threshold`)."""
    from keras_albert.data import squad

    return squad.evaluate(dataset, predictions, na_probs=null_odds,
                          na_prob_thresh=max(1.0, float(null_score_diff_threshold)))


def predict_squad(
    model,
    examples,
    tokenizer=None,
    settings=None,
    *,
    features=None,
    dataset=None,
    output_dir=None,
    verbose="auto",
    **fields,
):
    """Predicts answers to SQuAD questions, scores them with the official rules and (optionally) writes the files.

    Under several workers every worker must call it (see the module docstring); every worker gets the same result
    and only the chief writes.

    Args:
        model: `keras_albert.SquadModel`.
        examples: list of `SquadExample` (from `read_squad`).
        tokenizer: the tokenizer, to build features; not needed when `features` is given.
        settings: `SquadSettings` or None. Its feature windows (when `features` is None), `predict_batch_size`,
            answer extraction (`n_best_size`, `max_answer_length`, `null_score_diff_threshold`) and
            `version_2_with_negative` (None: whether any example is impossible) are used.
        features: list of `SquadFeature` built from `examples` with `is_training=False`, or None.
        dataset: dict or None. The parsed SQuAD JSON to score against (official scoring); None scores against the
            gold answers held by `examples`, which is the same.
        output_dir: str or None. Write `predictions.json`, `nbest_predictions.json`, `null_odds.json` (v2.0) and
            `scores.json` there (chief only; each published whole).
        verbose: progress display (Keras verbosity); 0 for none.
        **fields: `SquadSettings` fields replacing those of `settings` (e.g. `predict_batch_size=32`).

    Returns:
        `SquadPredictions`.
    """
    from keras_albert.data import squad

    settings = squad_settings(settings, **fields)
    if not examples:
        raise UserInputError("no SQuAD questions to predict (is the prediction file empty?)")
    if features is None:
        if tokenizer is None:
            raise UserInputError("predict_squad needs a tokenizer when `features` is not given")
        features = squad.convert_examples_to_features(examples, tokenizer, is_training=False, **settings.window())
    version_2_with_negative = settings.version_2_with_negative
    if version_2_with_negative is None:
        version_2_with_negative = any(example.is_impossible for example in examples)
    start_logits, end_logits = predict_logits(model, features, batch_size=settings.predict_batch_size,
                                              verbose=verbose)
    predictions, nbest, null_odds = squad.extract_answers(
        examples,
        features,
        start_logits,
        end_logits,
        n_best_size=settings.n_best_size,
        max_answer_length=settings.max_answer_length,
        version_2_with_negative=version_2_with_negative,
        null_score_diff_threshold=settings.null_score_diff_threshold,
    )
    scores = official_scores(dataset or _examples_to_dataset(examples), predictions, null_odds,
                             settings.null_score_diff_threshold)
    paths = {}
    index, _, _ = strategy_workers(model.distribute_strategy)
    if output_dir is not None and index == 0:
        paths = squad.write_predictions(output_dir, predictions, nbest, null_odds)
        paths["scores"] = os.path.join(output_dir, SCORES_FILE)
        io.write_json(paths["scores"], scores)
    return SquadPredictions(predictions, nbest, null_odds, scores, paths)
