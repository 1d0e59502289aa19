"""`keras-albert pretrain`: pretrain ALBERT or BERT on TFRecords (the run itself is `keras_albert.training.pretrain`).

The flags keep the 2020 reference's names (`--model_type`, `--model_size`, `--per_gpu_batch_size`,
`--gradient_accumulation_steps`, `--learning_rate`, `--total_steps`, ...); each is a field of `PretrainSettings`.
Running the same command again with the same `--output_dir` resumes from the latest checkpoint.

Command line (one CPU, the embedded corpus):
    keras-albert train-tokenizer --output tok --model_type albert --vocab_size 5000
    keras-albert create-pretraining-data --tokenizer tok --output_dir data --max_seq_length 128
    keras-albert pretrain --train_files 'data/*.tfrecord' --output_dir runs/tiny --model_size tiny \\
        --per_gpu_batch_size 32 --total_steps 1000 --warmup_steps 100 --learning_rate 1e-3 --log_frequency 50
"""

import argparse
import dataclasses
import sys

from keras_albert.distribute import worker_info
from keras_albert.training.choices import JIT_COMPILE, LOAD_FROM, MODEL_SIZES, MODEL_TYPES, OPTIMIZERS, PRECISIONS
from keras_albert.commands import add_long_run_arguments, parse_bool
from keras_albert.training.logs import configure_logging
from keras_albert.training.preemption import signal_name
from keras_albert.training.pretrain import pretrain
from keras_albert.training.pretrain_settings import DEFAULT_MAX_PREDICTIONS, DEFAULT_MAX_SEQ_LENGTH, PretrainSettings
from keras_albert.training.validation import flag_names


def _one_line_errors(parser):
    """Argparse errors of this subcommand as one line (no usage block), exit status 2."""
    prog = parser.prog

    def error(message):
        print(f"{prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)

    parser.error = error


class _NameAction(argparse.Action):
    """`--name`: sets the run's name unless `--run_name` gives it (in either order)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, self.dest, None) is None:
            setattr(namespace, self.dest, values)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default unless it is None or False (those flags say what they default to)."""

    def _get_help_string(self, action):
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def add_arguments(parser):
    """The flags of `keras-albert pretrain` (and of `examples/run_pretraining.py`)."""
    _one_line_errors(parser)
    parser.formatter_class = _HelpFormatter
    flag = parser.add_argument
    data = parser.add_argument_group("data")
    data.add_argument("--train_files", nargs="+", default=None,
                      help="Pretraining TFRecords (from `keras-albert create-pretraining-data`): a quoted glob, "
                      "or files.")
    data.add_argument("--max_seq_length", type=int, default=None,
                      help=f"Tokens per sequence. Default: from summary.json beside the records, else "
                      f"{DEFAULT_MAX_SEQ_LENGTH}.")
    data.add_argument("--max_predictions_per_seq", type=int, default=None,
                      help="Masked positions per sequence. Default: from summary.json, else "
                      f"{DEFAULT_MAX_PREDICTIONS}.")
    data.add_argument("--dynamic_masking", type=parse_bool, nargs="?", const=True, default=False, metavar="true|false",
                      help="Mask in the input pipeline, anew each epoch (records written with --no_masking).")
    data.add_argument("--tokenizer", default=None,
                      help="Tokenizer directory or file: sets --vocab_size, serves --dynamic_masking and SQuAD, and "
                      "is copied into --output_dir. Default: the one summary.json names.")

    data.add_argument("--val_files", nargs="+", default=None,
                      help="Held-out pretraining TFRecords (a quoted glob, or files): masked-LM and sentence-order "
                      "loss and accuracy on them every --validation_frequency steps and at the end, in TensorBoard "
                      "and metrics.jsonl.")
    data.add_argument("--validation_frequency", type=int, default=2000,
                      help="Steps between validations on --val_files.")
    data.add_argument("--max_validation_steps", type=int, default=100,
                      help="Batches of --per_gpu_batch_size per replica in each validation: the first ones of "
                      "--val_files, the same each time (read round again if the files hold fewer); a multiple of "
                      "--steps_per_execution.")

    model = parser.add_argument_group("model")
    model.add_argument("--model_type", default="albert", choices=MODEL_TYPES,
                       help="albert (shared layers, sentence order) or bert (next sentence).")
    model.add_argument("--model_size", default="base", choices=MODEL_SIZES,
                       help="Preset size; tiny (0.2M parameters, tests) and small (0.76M, the quickstart) are CPU "
                       "sizes.")
    model.add_argument("--load_from", default="scratch", choices=LOAD_FROM,
                       help="scratch: random init; checkpoint: weights of --checkpoint_path (a run directory, "
                       "checkpoint prefix or .keras; fresh optimizer, e.g. BERT's phase 2); huggingface: a local "
                       "Hugging Face checkpoint directory.")
    model.add_argument("--checkpoint_path", default=None, help="What --load_from loads.")
    model.add_argument("--vocab_size", type=int, default=None,
                       help="Vocabulary size. Default: the tokenizer's (--tokenizer or summary.json), else the "
                       "preset's.")
    model.add_argument("--hidden_dropout_prob", type=float, default=None,
                       help="Encoder dropout. Default: the preset's (0 for ALBERT, 0.1 for BERT).")
    model.add_argument("--skip_mlm", type=parse_bool, nargs="?", const=True, default=False, metavar="true|false",
                       help="Train the sentence-order (next-sentence) loss only.")
    model.add_argument("--skip_sop", type=parse_bool, nargs="?", const=True, default=False, metavar="true|false",
                       help="Train the masked-LM loss only.")

    train = parser.add_argument_group("optimization")
    train.add_argument("--per_gpu_batch_size", type=int, default=32,
                       help="Sequences per micro-batch per replica (GPU, or the CPU).")
    train.add_argument("--gradient_accumulation_steps", type=int, default=1,
                       help="Micro-batches per optimizer step; the global batch is per_gpu_batch_size x this x "
                       "replicas.")
    train.add_argument("--total_steps", type=int, default=125000, help="Optimizer steps of the whole run.")
    train.add_argument("--warmup_steps", type=int, default=3125, help="Steps of linear learning-rate warmup.")
    train.add_argument("--learning_rate", type=float, default=0.00176, help="Peak learning rate.")
    train.add_argument("--end_learning_rate", type=float, default=3e-5,
                       help="Learning rate reached at --total_steps by the polynomial decay.")
    train.add_argument("--learning_rate_decay_power", type=float, default=1.0, help="1.0 is a linear decay.")
    train.add_argument("--optimizer", default="lamb", choices=OPTIMIZERS,
                       help="lamb (TF Addons' LAMB rule) or adamw (BERT's Adam with decoupled decay).")
    train.add_argument("--weight_decay", type=float, default=0.01,
                       help="Weight decay rate; LayerNorm and bias variables are excluded.")
    train.add_argument("--beta_1", type=float, default=0.9, help="Decay of the first-moment estimate.")
    train.add_argument("--beta_2", type=float, default=0.999, help="Decay of the second-moment estimate.")
    train.add_argument("--epsilon", type=float, default=1e-6, help="Added to the second moment's square root.")
    train.add_argument("--max_grad_norm", type=float, default=1.0,
                       help="Clip the global gradient norm (after the cross-replica sum); 0 turns clipping off.")
    train.add_argument("--seed", type=int, default=42, help="Seeds weights, dropout and the data shuffle.")

    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", default=None,
                     help="Run directory (checkpoints, TensorBoard, model.keras); rerunning with the same directory "
                     "resumes. Default: runs/<run_name>.")
    run.add_argument("--run_name", default=None,
                     help="Name of the run, for the default --output_dir. Default: --name, else "
                     "<model_type>-<model_size>.")
    run.add_argument("--name", dest="run_name", action=_NameAction, default=None,
                     help="The reference's run description: the run's name when --run_name is not given (as in the "
                     "reference, --run_name wins when both are).")
    run.add_argument("--mixed_precision", default="none", choices=(*PRECISIONS, "auto"),
                     help="bf16 (Ampere+ GPUs, CPUs with AVX-512 BF16 or AMX), fp16 (with dynamic loss scaling); "
                     "weights stay float32. auto: bf16 where it is faster (GPUs of compute capability 8.0+, CPUs "
                     "with AMX, AVX-512 BF16 CPUs where a bfloat16 matmul measures faster), else none.")
    run.add_argument("--jit_compile", default="auto", choices=JIT_COMPILE,
                     help="XLA for the whole step. auto: on (not under CPU collective strategies, where XLA cannot "
                     "compile), except for float32 without a GPU, where the step is as fast without it.")
    run.add_argument("--distribution", default="auto",
                     help="auto, none, mirrored (all local GPUs), multi_worker (TF_CONFIG / SageMaker hosts) or "
                     "horovod (under horovodrun, where Horovod can be installed).")
    run.add_argument("--steps_per_execution", type=int, default=1,
                     help="Steps per call of the compiled train function; the frequencies must be multiples of it.")
    run.add_argument("--log_frequency", type=int, default=100,
                     help="Steps between log lines and TensorBoard points (values averaged over the window).")
    run.add_argument("--checkpoint_frequency", type=int, default=5000, help="Steps between checkpoints.")
    run.add_argument("--keep_checkpoints", type=int, default=3, help="Checkpoints kept in output_dir/checkpoints.")
    add_long_run_arguments(run)
    squad = parser.add_argument_group("periodic SQuAD (--squad_frequency)")
    squad.add_argument("--squad_frequency", "--squad_freq", type=int, default=0,
                       help="Steps between SQuAD evaluations of the encoder (a copy finetuned for --squad_steps); "
                       "0 turns them off. Needs --tokenizer or a summary.json naming one.")
    squad.add_argument("--squad_train_file", default=None,
                       help="SQuAD JSON to finetune on. Default: the embedded Jane Austen questions (v2.0).")
    squad.add_argument("--squad_predict_file", default=None,
                       help="SQuAD JSON to score. Default: the embedded held-apart Austen questions.")
    squad.add_argument("--squad_steps", type=int, default=300, help="Finetuning updates per evaluation.")
    squad.add_argument("--squad_learning_rate", type=float, default=5e-5, help="Peak finetuning learning rate.")
    squad.add_argument("--squad_batch_size", type=int, default=32, help="Finetuning rows per replica.")
    squad.add_argument("--squad_max_seq_length", type=int, default=None,
                       help="Tokens per SQuAD feature. Default: --max_seq_length, at most 384.")
    run.add_argument("--quiet", type=parse_bool, nargs="?", const=True, default=False, metavar="true|false",
                     help="No progress bar.")
    flag("--model_dir", default=None, help="Ignored (SageMaker's TensorFlow estimator passes it).")


def settings_from_args(args):
    """The `PretrainSettings` of parsed flags."""
    fields = {field.name for field in dataclasses.fields(PretrainSettings)}
    return PretrainSettings(**{key: value for key, value in vars(args).items() if key in fields})


def run(args):
    """Runs `pretrain`; a run stopped by SIGTERM or SIGINT exits with 128 + the signal's number (143, 130), as a
    shell reports a process that the signal killed, after one line saying where it stopped."""
    configure_logging(worker_info().is_chief)
    with flag_names():
        result = pretrain(settings_from_args(args))
    if result.get("preempted"):
        print(
            f"keras-albert pretrain: stopped by {signal_name(result['preempted'])} at step {result['step']} of "
            f"{result['total_steps']} (checkpoint saved in {result['output_dir']}); run the same command again to "
            "resume",
            file=sys.stderr,
        )
        return 128 + result["preempted"]
    return 0
