"""`keras-albert squad`: finetune on SQuAD v1.1/v2.0, predict and score (the run itself is
`keras_albert.training.squad.run_squad`).

The flags are the 2020 reference's `run_squad.py` flags; each is a field of `SquadRunSettings`.

Command line:
    keras-albert squad --tokenizer tok/ --model_type albert --model_size tiny --total_steps 600   # Austen questions
    keras-albert squad --load_from checkpoint --checkpoint_path runs/pretrain/ --task_name squadv2 \\
        --train_file train-v2.0.json --predict_file dev-v2.0.json --per_gpu_batch_size 6 --total_steps 8144 \\
        --warmup_steps 814 --learning_rate 3e-5 --output_dir squad_out
"""

import argparse
import dataclasses
import json
import os
import sys

from keras_albert.distribute import DISTRIBUTIONS, worker_info
from keras_albert.training.choices import JIT_COMPILE, LOAD_FROM, MODEL_SIZES, MODEL_TYPES, OPTIMIZERS, PRECISIONS
from keras_albert.commands import add_long_run_arguments
from keras_albert.training.logs import configure_logging
from keras_albert.training.preemption import signal_name
from keras_albert.training.squad import run_squad
from keras_albert.training.squad_settings import TASK_NAMES, SquadRunSettings
from keras_albert.training.validation import flag_names


def add_arguments(parser):
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
    add("--tfds_data_dir", default=None,
        help="Where a tfds: --train_file/--predict_file (e.g. tfds:squad/v2.0:validation) is prepared; nothing is "
        "downloaded. Default: $TFDS_DATA_DIR, else TensorFlow Datasets' own directory.")
    add("--output_dir", default=None,
        help="The run directory: checkpoints, model.keras, huggingface/ (the model and tokenizer for transformers), "
        "predictions and scores. Rerunning with the same directory resumes. Default: squad_output.")
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
    add("--mixed_precision", choices=sorted(PRECISIONS), default="none", help="Mixed-precision compute dtype.")
    add("--seed", type=int, default=42, help="Random seed (initialisation, dropout, shuffling).")
    run = parser.add_argument_group("long runs (rerunning with the same --output_dir resumes)")
    run.add_argument("--jit_compile", default="auto", choices=JIT_COMPILE,
                     help="XLA for the whole step. auto: on (not under CPU collective strategies, where XLA cannot "
                     "compile), except for float32 without a GPU, where the step is as fast without it.")
    run.add_argument("--checkpoint_frequency", type=int, default=1000,
                     help="Steps between checkpoints in output_dir/checkpoints (one is also saved at the end and when "
                     "SIGTERM/SIGINT stops the run).")
    run.add_argument("--keep_checkpoints", type=int, default=3, help="Checkpoints kept in output_dir/checkpoints.")
    run.add_argument("--log_frequency", type=int, default=100,
                     help="Steps between log lines (stderr and output_dir/train.log).")
    add_long_run_arguments(run)


def settings_from_args(args):
    """The `SquadRunSettings` of parsed flags."""
    fields = {field.name for field in dataclasses.fields(SquadRunSettings)}
    return SquadRunSettings(**{key: value for key, value in vars(args).items() if key in fields})


def run(args):
    """Finetunes (or resumes), writes the model and its Hugging Face export, predicts, scores; prints the scores.
    A run stopped by SIGTERM or SIGINT exits with 128 + the signal's number (143, 130) after one line saying where
    it stopped."""
    configure_logging(worker_info().is_chief)
    with flag_names():
        result = run_squad(settings_from_args(args))
    if result["preempted"]:
        print(
            f"keras-albert squad: stopped by {signal_name(result['preempted'])} at step {result['step']} of "
            f"{result['total_steps']} (checkpoint saved in {result['output_dir']}); run the same command again to "
            "resume",
            file=sys.stderr,
        )
        return 128 + result["preempted"]
    if result["is_chief"]:
        predictions = result["predictions"]
        print(json.dumps(predictions.scores, indent=2))
        written = ", ".join(sorted(os.path.basename(path) for path in predictions.paths.values()))
        print(f"wrote {written}, model.keras and huggingface/ to {result['output_dir']}")
    return 0
