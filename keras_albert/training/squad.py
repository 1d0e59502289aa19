"""SQuAD finetuning, prediction and scoring, and the `keras-albert squad` command.

`finetune_squad` trains a `SquadModel` on SQuAD features (one optimizer update per step, gradient accumulation inside
the step); `predict_squad` predicts, extracts answers, scores them with the official rules and writes the official
files. The command and `PeriodicSquad` (periodic SQuAD during pretraining) both call these two functions.

Prediction under several workers (`MultiWorkerMirroredStrategy`): every worker tokenizes all questions (cheap and
deterministic, so every worker knows every feature), predicts only its strided share of the features (features
`w, w + n, w + 2n, ...` on worker `w` of `n`) with a local loop that runs no collective op, writes its logits into a
zero array of all features, and then all workers enter ONE all-reduce (sum) together, after which every worker holds
every feature's logits, extracts the same answers and computes the same scores; the chief alone writes the files. No
worker is ever inside a collective that another worker does not also enter at the same point of the program. On one
worker the model's own `predict` runs (over all local replicas) and nothing is gathered.

Command line (the reference's `run_squad.py` flags):
    keras-albert squad --tokenizer tok/ --model_type albert --model_size tiny --total_steps 600   # Austen questions
    keras-albert squad --load_from checkpoint --checkpoint_path runs/pretrain/ --task_name squadv2 \\
        --train_file train-v2.0.json --predict_file dev-v2.0.json --per_gpu_batch_size 6 --total_steps 8144 \\
        --warmup_steps 814 --learning_rate 3e-5 --output_dir squad_out
"""

import argparse
import dataclasses
import json
import logging
import math
import os
import sys

from keras_albert.errors import UserInputError

logger = logging.getLogger("keras_albert")

TASK_NAMES = {"squadv1": "1.1", "squadv2": "2.0"}
LOAD_FROM = ("scratch", "checkpoint", "huggingface")
MODEL_TYPES = ("albert", "bert")
MODEL_SIZES = ("tiny", "base", "large", "xlarge", "xxlarge")
OPTIMIZERS = ("lamb", "adamw")
MIXED_PRECISION = {"none": None, "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
SCORES_FILE = "scores.json"
DEFAULT_OUTPUT_DIR = "squad_output"
_INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")


# ---------------------------------------------------------------------------------------------- the library functions


def make_optimizer(name, learning_rate, warmup_steps, total_steps, weight_decay=0.01):
    """The finetuning optimizer: `"adamw"` or `"lamb"` on a linear-warmup, linear-decay schedule.

    LayerNorm weights and biases are excluded from weight decay, as in BERT and ALBERT.
    """
    from keras_albert.optimizers import EXCLUDE_FROM_WEIGHT_DECAY, LAMB, AdamW, WarmupPolyDecay

    if name not in OPTIMIZERS:
        raise UserInputError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}. Received: {name!r}")
    try:
        schedule = WarmupPolyDecay(learning_rate, warmup_steps, total_steps)
    except ValueError as error:
        raise UserInputError(f"--warmup_steps/--total_steps: {error}") from None
    kind = AdamW if name == "adamw" else LAMB
    return kind(schedule, weight_decay=weight_decay, exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY))


def _workers(strategy):
    """(index of this worker, number of workers, replicas on this worker) for a tf.distribute strategy."""
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


def training_dataset(features, batch_size, gradient_accumulation_steps=1, strategy=None, seed=None):
    """Shuffled, repeated SQuAD training batches for `strategy`: per replica, `batch_size * accumulation` rows.

    Under a strategy with several replicas, each worker reads its shard (`distribute_datasets_from_function`).
    """
    import tensorflow as tf

    from keras_albert.data.squad import squad_dataset

    strategy = strategy or tf.distribute.get_strategy()
    per_replica = batch_size * gradient_accumulation_steps
    if strategy.num_replicas_in_sync == 1:
        return squad_dataset(features, per_replica, training=True, seed=seed)
    global_batch = per_replica * strategy.num_replicas_in_sync
    return strategy.distribute_datasets_from_function(
        lambda context: squad_dataset(features, global_batch, training=True, input_context=context, seed=seed)
    )


def finetune_squad(
    model,
    features,
    total_steps,
    *,
    batch_size=32,
    learning_rate=3e-5,
    warmup_steps=None,
    optimizer="adamw",
    weight_decay=0.01,
    gradient_accumulation_steps=1,
    max_grad_norm=1.0,
    seed=None,
    jit_compile="auto",
    callbacks=None,
    verbose="auto",
):
    """Compiles `model` with a fresh optimizer and trains it for `total_steps` optimizer updates on SQuAD features.

    The model's own strategy (the one whose scope it was created in) is used: the optimizer is created under its
    scope, and each worker reads its shard of the features.

    Args:
        model: `keras_albert.SquadModel`.
        features: list of `SquadFeature` built with `is_training=True`.
        total_steps: int. Optimizer updates.
        batch_size: int. Rows per replica per micro-batch (the reference's `per_gpu_batch_size`); one update sees
            `batch_size * gradient_accumulation_steps * replicas` rows.
        learning_rate: float. Peak learning rate.
        warmup_steps: int or None. Linear warmup; None warms up over the first 10% of the steps.
        optimizer: `"adamw"`, `"lamb"` or a Keras optimizer instance (used as given).
        weight_decay: float. Decoupled weight decay (LayerNorm and biases excluded).
        gradient_accumulation_steps: int. Micro-batches per update.
        max_grad_norm: float or None. Global gradient-norm clipping, after the cross-replica reduction.
        seed: int or None. Shuffle seed.
        jit_compile: passed to `compile` (turned off where the strategy cannot use XLA).
        callbacks: list of Keras callbacks for `fit`.
        verbose: Keras `fit` verbosity.

    Returns:
        The Keras `History`.

    Example:
    ```python
    from keras_albert import SquadModel
    from keras_albert.data import load_tokenizer, squad
    from keras_albert.training.squad import finetune_squad, predict_squad

    tokenizer = load_tokenizer("tokenizer/")
    examples = squad.read_squad(squad.austen_squad_path("train"))
    features = squad.convert_examples_to_features(examples, tokenizer, 192, 64, 48, is_training=True)
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=tokenizer.vocab_size, max_sequence_length=192)
    finetune_squad(model, features, total_steps=600, batch_size=32, learning_rate=2e-3)
    result = predict_squad(model, examples, tokenizer, max_seq_length=192, doc_stride=64, max_query_length=48)
    result.scores["f1"]
    ```
    """
    import keras

    from keras_albert.distribute import resolve_jit_compile

    if not features:
        raise UserInputError("no SQuAD training features (is the training file empty?)")
    for name, value in (
        ("total_steps", total_steps),
        ("batch_size", batch_size),
        ("gradient_accumulation_steps", gradient_accumulation_steps),
    ):
        if int(value) != value or value < 1:
            raise UserInputError(f"--{name} must be a positive integer. Received: {value!r}")
    if warmup_steps is None:
        warmup_steps = total_steps // 10
    strategy = model.distribute_strategy
    with strategy.scope():
        if isinstance(optimizer, str):
            optimizer = make_optimizer(optimizer, learning_rate, warmup_steps, total_steps, weight_decay)
            if model.backbone.dtype_policy.compute_dtype == "float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(
            optimizer=optimizer,
            gradient_accumulation_steps=gradient_accumulation_steps,
            max_grad_norm=max_grad_norm,
            jit_compile=resolve_jit_compile(jit_compile, strategy),
        )
    dataset = training_dataset(features, batch_size, gradient_accumulation_steps, strategy, seed=seed)
    return model.fit(
        dataset, epochs=1, steps_per_epoch=int(total_steps), callbacks=callbacks, verbose=verbose, shuffle=False
    )


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


def _local_logits(model, features, batch_size, verbose):
    """Start/end logits of `features` from this process alone: a plain loop, no distribution, no collective op."""
    import numpy as np
    import tensorflow as tf
    from tqdm.auto import tqdm

    from keras_albert.data.squad import squad_dataset

    seq = features[0].input_ids.shape[0] if features else 0
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
    index, num_workers, local_replicas = _workers(strategy)
    show = verbose not in (0, False)
    if num_workers == 1:
        from keras_albert.data.squad import squad_dataset

        outputs = model.predict(squad_dataset(features, batch_size, training=False), verbose=verbose)
        return (np.asarray(outputs["start_logits"], np.float32), np.asarray(outputs["end_logits"], np.float32))
    start, end = _local_logits(model, features[index::num_workers], batch_size, verbose=show and index == 0)
    both = np.zeros((len(features), features[0].input_ids.shape[0], 2), np.float32)
    both[index::num_workers, :, 0] = start
    both[index::num_workers, :, 1] = end
    both = _sum_over_workers(strategy, both, local_replicas)
    return both[..., 0], both[..., 1]


def predict_squad(
    model,
    examples,
    tokenizer=None,
    *,
    features=None,
    dataset=None,
    version_2_with_negative=None,
    max_seq_length=384,
    doc_stride=128,
    max_query_length=64,
    batch_size=64,
    n_best_size=20,
    max_answer_length=30,
    null_score_diff_threshold=0.0,
    output_dir=None,
    verbose="auto",
):
    """Predicts answers to SQuAD questions, scores them with the official rules and (optionally) writes the files.

    Under several workers every worker must call it (see the module docstring); every worker gets the same result
    and only the chief writes.

    Args:
        model: `keras_albert.SquadModel`.
        examples: list of `SquadExample` (from `read_squad`).
        tokenizer: the tokenizer, to build features; not needed when `features` is given.
        features: list of `SquadFeature` built from `examples` with `is_training=False`, or None.
        dataset: dict or None. The parsed SQuAD JSON to score against (official scoring); None scores against the
            gold answers held by `examples`, which is the same.
        version_2_with_negative: bool or None. SQuAD v2.0 (no-answer) rules; None: whether any example is impossible.
        max_seq_length, doc_stride, max_query_length: int. Feature windows (when `features` is None).
        batch_size: int. Prediction batch size (per worker).
        n_best_size, max_answer_length, null_score_diff_threshold: answer extraction (see `extract_answers`).
        output_dir: str or None. Write `predictions.json`, `nbest_predictions.json`, `null_odds.json` (v2.0) and
            `scores.json` there (chief only; each under a temporary name, renamed when complete).
        verbose: progress display (Keras verbosity); 0 for none.

    Returns:
        `SquadPredictions`.
    """
    from keras_albert.data import squad

    if not examples:
        raise UserInputError("no SQuAD questions to predict (is the prediction file empty?)")
    if features is None:
        if tokenizer is None:
            raise UserInputError("predict_squad needs a tokenizer when `features` is not given")
        features = squad.convert_examples_to_features(
            examples, tokenizer, max_seq_length, doc_stride, max_query_length, is_training=False
        )
    if version_2_with_negative is None:
        version_2_with_negative = any(example.is_impossible for example in examples)
    start_logits, end_logits = predict_logits(model, features, batch_size=batch_size, verbose=verbose)
    predictions, nbest, null_odds = squad.extract_answers(
        examples,
        features,
        start_logits,
        end_logits,
        n_best_size=n_best_size,
        max_answer_length=max_answer_length,
        version_2_with_negative=version_2_with_negative,
        null_score_diff_threshold=null_score_diff_threshold,
    )
    scores = squad.evaluate(dataset or _examples_to_dataset(examples), predictions, na_probs=null_odds)
    paths = {}
    index, _, _ = _workers(model.distribute_strategy)
    if output_dir is not None and index == 0:
        paths = squad.write_predictions(output_dir, predictions, nbest, null_odds)
        paths["scores"] = os.path.join(output_dir, SCORES_FILE)
        squad.write_json(paths["scores"], scores, indent=2)
    return SquadPredictions(predictions, nbest, null_odds, scores, paths)


# ---------------------------------------------------------------------------------------------------- the command


def add_arguments(parser):
    from keras_albert.distribute import DISTRIBUTIONS

    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    add = parser.add_argument
    add("--task_name", choices=sorted(TASK_NAMES), default="squadv2", help="SQuAD v1.1 or v2.0 (no-answer) rules.")
    add("--load_from", choices=LOAD_FROM, default="scratch",
        help="scratch: random init (--model_type/--model_size); checkpoint: a pretraining .keras model, checkpoint "
        "or run directory (--checkpoint_path); huggingface: a Hugging Face checkpoint directory (--checkpoint_path).")
    add("--checkpoint_path", help="The checkpoint for --load_from checkpoint|huggingface.")
    add("--model_type", choices=MODEL_TYPES, default="albert", help="Architecture for --load_from scratch.")
    add("--model_size", choices=MODEL_SIZES, default="base", help="Architecture for --load_from scratch.")
    add("--tokenizer", help="Tokenizer directory (spiece.model or vocab.txt). Default: the checkpoint's directory.")
    add("--train_file", help="SQuAD JSON to finetune on. Default: the embedded Jane Austen question set (v2.0).")
    add("--predict_file", help="SQuAD JSON to predict and score. Default: the embedded held-apart Austen questions.")
    add("--output_dir", default=None, help="Where predictions and scores are written. Default: squad_output.")
    add("--per_gpu_batch_size", type=int, default=6, help="Rows per replica per micro-batch.")
    add("--gradient_accumulation_steps", type=int, default=1, help="Micro-batches per optimizer update.")
    add("--total_steps", type=int, default=None, help="Optimizer updates. Default: two passes over the features.")
    add("--warmup_steps", type=int, default=None, help="Linear warmup steps. Default: 10%% of --total_steps.")
    add("--learning_rate", type=float, default=3e-5, help="Peak learning rate.")
    add("--optimizer", choices=OPTIMIZERS, default="adamw", help="Optimizer.")
    add("--weight_decay", type=float, default=0.01, help="Decoupled weight decay (not on LayerNorm and biases).")
    add("--max_grad_norm", type=float, default=1.0, help="Global gradient-norm clipping (0: none).")
    add("--max_seq_length", type=int, default=384, help="Tokens per feature.")
    add("--doc_stride", type=int, default=128, help="Tokens between the starts of a long context's windows.")
    add("--max_query_length", type=int, default=64, help="Questions are cut to this many tokens.")
    add("--predict_batch_size", type=int, default=64, help="Prediction batch size per worker.")
    add("--n_best_size", type=int, default=20, help="Candidates per question in nbest_predictions.json.")
    add("--max_answer_length", type=int, default=30, help="Longest answer, in tokens.")
    add("--null_score_diff_threshold", type=float, default=0.0, help="v2.0: answer '' when null - best > this.")
    add("--distribution", choices=DISTRIBUTIONS, default="auto",
        help="tf.distribute strategy (auto: multi_worker under TF_CONFIG/SageMaker, mirrored on several GPUs).")
    add("--mixed_precision", choices=sorted(MIXED_PRECISION), default="none", help="Mixed-precision compute dtype.")
    add("--seed", type=int, default=42, help="Random seed (initialisation, dropout, shuffling).")


def _read_split(path, version, flag, split):
    """Examples and parsed JSON of a SQuAD file, or of the embedded Austen questions when `path` is None."""
    from keras_albert.data import squad

    if path is None:
        if version == "1.1":
            raise UserInputError(
                f"{flag} is required with --task_name squadv1: the embedded Austen question set is SQuAD v2.0"
            )
        path = squad.austen_squad_path(split)
    elif not os.path.isfile(path):
        raise UserInputError(f"{flag} {path}: no such file")
    try:
        examples = squad.read_squad(path, version=version)
        dataset = squad.load_json(path)
    except UserInputError as error:
        raise UserInputError(f"{flag} {error}") from None
    if not examples:
        raise UserInputError(f"{flag} {path}: holds no questions")
    return examples, dataset


def _checkpoint_dir(path):
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def _has_tokenizer(directory):
    from keras_albert.data.tokenizers import SPIECE_FILE, VOCAB_FILE

    return any(os.path.isfile(os.path.join(directory, name)) for name in (SPIECE_FILE, VOCAB_FILE))


def _resolve_tokenizer(args):
    from keras_albert.data.tokenizers import load_tokenizer

    if args.tokenizer:
        try:
            return load_tokenizer(args.tokenizer)
        except UserInputError as error:
            raise UserInputError(f"--tokenizer {error}") from None
    if args.load_from != "scratch" and args.checkpoint_path:
        directory = _checkpoint_dir(args.checkpoint_path)
        for candidate in (directory, os.path.dirname(directory)):
            if _has_tokenizer(candidate):
                return load_tokenizer(candidate)
    raise UserInputError(
        "--tokenizer is required (a directory with spiece.model or vocab.txt"
        + (")" if args.load_from == "scratch" else "; the checkpoint's directory holds none)")
    )


def _check_checkpoint_kind(args):
    """Refuses a --checkpoint_path of the wrong kind before anything heavy runs."""
    if args.load_from == "scratch":
        if args.checkpoint_path:
            raise UserInputError("--checkpoint_path is only read with --load_from checkpoint or huggingface")
        return
    path = args.checkpoint_path
    if not path:
        raise UserInputError(f"--checkpoint_path is required with --load_from {args.load_from}")
    if not os.path.exists(path) and not os.path.isfile(path + ".index"):
        raise UserInputError(f"--checkpoint_path {path}: no such file or directory")
    is_hf = os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json"))
    if args.load_from == "huggingface" and not is_hf:
        raise UserInputError(
            f"--checkpoint_path {path}: not a Hugging Face directory (no config.json); use --load_from checkpoint "
            "for a .keras model or a pretraining checkpoint"
        )
    if args.load_from == "checkpoint" and is_hf:
        raise UserInputError(f"--checkpoint_path {path}: a Hugging Face directory; use --load_from huggingface")
    if args.load_from == "checkpoint" and os.path.isfile(path) and not path.endswith(".keras"):
        raise UserInputError(
            f"--checkpoint_path {path}: not a .keras model, a checkpoint prefix (ckpt-N), a checkpoints directory "
            "or a run directory"
        )


def _load_pretrained(path):
    """A pretraining model (any `Task`) from a `.keras` file, checkpoint prefix, checkpoints or run directory."""
    import zipfile

    import keras

    try:
        from keras_albert.training.checkpoints import load_model
    except ImportError:  # the pretraining checkpoints module is optional here; a `.keras` file is enough
        load_model = None
    try:
        if load_model is not None:
            return load_model(path)
        if os.path.isdir(path):
            candidates = sorted(
                (os.path.join(path, name) for name in os.listdir(path) if name.endswith(".keras")),
                key=os.path.getmtime,
            )
            if not candidates:
                raise UserInputError(f"--checkpoint_path {path}: the directory holds no .keras model")
            path = candidates[-1]
        if not path.endswith(".keras"):
            raise UserInputError(f"--checkpoint_path {path}: not a .keras model or a directory holding one")
        return keras.saving.load_model(path, compile=False)
    except UserInputError as error:
        message = str(error)
        raise UserInputError(message if message.startswith("--") else f"--checkpoint_path {message}") from None
    except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserInputError(f"--checkpoint_path {path}: cannot load the model ({first_line})") from None


def _with_dtype_policy(model, policy):
    """`model` rebuilt with `policy` when it was loaded with another (a saved model keeps its own dtype policy)."""
    from keras_albert.models import SquadModel

    if policy is None or model.backbone.dtype_policy.name == policy:
        return model
    source = model.backbone
    backbone = type(source).from_config({**source.get_config(), "dtype": policy})
    rebuilt = SquadModel(backbone)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def build_model(args, tokenizer):
    """The `SquadModel` the flags describe (call under the strategy's scope)."""
    from keras_albert.models import PRESETS, SquadModel

    if args.load_from == "scratch":
        preset = f"{args.model_type}_{args.model_size}"
        if preset not in PRESETS:
            raise UserInputError(f"--model_size {args.model_size} is not available for --model_type {args.model_type}")
        length = max(PRESETS[preset]["max_sequence_length"], args.max_seq_length)
        return SquadModel.from_preset(preset, vocabulary_size=tokenizer.vocab_size, max_sequence_length=length)
    if args.load_from == "huggingface":
        try:
            model = SquadModel.from_huggingface(args.checkpoint_path)
        except UserInputError as error:
            raise UserInputError(f"--checkpoint_path {error}") from None
    else:
        pretrained = _load_pretrained(args.checkpoint_path)
        try:
            model = SquadModel.from_pretraining(pretrained)
        except UserInputError as error:
            raise UserInputError(f"--checkpoint_path {args.checkpoint_path}: {error}") from None
    backbone = model.backbone
    if tokenizer.vocab_size > backbone.vocabulary_size:
        raise UserInputError(
            f"--tokenizer: its vocabulary ({tokenizer.vocab_size}) is larger than the model's "
            f"({backbone.vocabulary_size}); use the tokenizer the checkpoint was trained with"
        )
    if args.max_seq_length > backbone.max_sequence_length:
        raise UserInputError(
            f"--max_seq_length {args.max_seq_length} exceeds the checkpoint's maximum sequence length "
            f"{backbone.max_sequence_length}"
        )
    return _with_dtype_policy(model, MIXED_PRECISION[args.mixed_precision])


def _check_flags(args):
    for name in ("per_gpu_batch_size", "gradient_accumulation_steps", "max_seq_length", "doc_stride",
                 "max_query_length", "predict_batch_size", "n_best_size", "max_answer_length"):
        if getattr(args, name) < 1:
            raise UserInputError(f"--{name} must be a positive integer. Received: {getattr(args, name)}")
    if args.total_steps is not None and args.total_steps < 1:
        raise UserInputError(f"--total_steps must be a positive integer. Received: {args.total_steps}")
    if args.warmup_steps is not None and args.warmup_steps < 0:
        raise UserInputError(f"--warmup_steps must be >= 0. Received: {args.warmup_steps}")
    if args.learning_rate <= 0:
        raise UserInputError(f"--learning_rate must be > 0. Received: {args.learning_rate}")


def run(args):
    """Finetunes, predicts, scores; prints the scores and writes them with the predictions to --output_dir."""
    _check_flags(args)
    _check_checkpoint_kind(args)
    output_dir = args.output_dir or DEFAULT_OUTPUT_DIR
    version = TASK_NAMES[args.task_name]
    train_examples, _ = _read_split(args.train_file, version, "--train_file", "train")
    predict_examples, predict_dataset = _read_split(args.predict_file, version, "--predict_file", "dev")
    tokenizer = _resolve_tokenizer(args)

    from keras_albert import distribute

    strategy = distribute.get_strategy(args.distribution)  # before any TensorFlow op (DESIGN trap 12)
    import keras

    from keras_albert.data import squad

    index, num_workers, _ = _workers(strategy)
    keras.utils.set_random_seed(args.seed)
    policy = MIXED_PRECISION[args.mixed_precision]
    if policy:
        keras.mixed_precision.set_dtype_policy(policy)

    window = {
        "max_seq_length": args.max_seq_length,
        "doc_stride": args.doc_stride,
        "max_query_length": args.max_query_length,
    }
    train_features = squad.convert_examples_to_features(train_examples, tokenizer, is_training=True, **window)
    if not train_features:
        raise UserInputError(f"--train_file {args.train_file}: no question gave a training feature")
    with strategy.scope():
        model = build_model(args, tokenizer)
    rows_per_step = args.per_gpu_batch_size * args.gradient_accumulation_steps * strategy.num_replicas_in_sync
    total_steps = args.total_steps or max(1, math.ceil(2 * len(train_features) / rows_per_step))
    print(
        f"SQuAD {version}: {len(train_examples)} training questions ({len(train_features)} features), "
        f"{len(predict_examples)} to predict; {model.model_type} with {model.count_params():,} parameters; "
        f"{total_steps} steps of {rows_per_step} rows on {strategy.num_replicas_in_sync} replica(s), "
        f"{num_workers} worker(s)"
    )
    # A progress bar on a terminal; one line per epoch in a log file (a bar redrawn there floods it).
    verbose = (1 if sys.stdout.isatty() else 2) if index == 0 else 0
    finetune_squad(
        model,
        train_features,
        total_steps,
        batch_size=args.per_gpu_batch_size,
        learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        max_grad_norm=args.max_grad_norm or None,
        seed=args.seed,
        verbose=verbose,
    )
    result = predict_squad(
        model,
        predict_examples,
        tokenizer,
        dataset=predict_dataset,
        version_2_with_negative=version == "2.0",
        batch_size=args.predict_batch_size,
        n_best_size=args.n_best_size,
        max_answer_length=args.max_answer_length,
        null_score_diff_threshold=args.null_score_diff_threshold,
        output_dir=output_dir,
        verbose=verbose,
        **window,
    )
    if index == 0:
        print(json.dumps(result.scores, indent=2))
        print(f"wrote {', '.join(sorted(os.path.basename(p) for p in result.paths.values()))} to {output_dir}")
    return 0
