"""The `keras-albert` command.

Each subcommand is a module of `keras_albert.commands` (the SageMaker launcher: `keras_albert.sagemaker.launch`)
exposing `add_arguments(parser)` and `run(args)` (returning an exit status). Modules are imported only when their
subcommand runs, so `keras-albert --help` and the data commands start without importing TensorFlow.
"""

import argparse
import importlib
import os
import sys

from keras_albert.commands import parse_bool
from keras_albert.errors import RunDiverged, UserInputError

# name -> (module, one-line help)
COMMANDS = {
    "train-tokenizer": (
        "keras_albert.commands.train_tokenizer",
        "Train a SentencePiece (ALBERT) or WordPiece (BERT) tokenizer from text, or import an existing one.",
    ),
    "create-pretraining-data": (
        "keras_albert.commands.create_pretraining_data",
        "Turn raw text into sharded masked-LM + SOP/NSP TFRecords.",
    ),
    "pretrain": ("keras_albert.commands.pretrain", "Pretrain ALBERT or BERT on TFRecords."),
    "squad": ("keras_albert.commands.squad", "Finetune on SQuAD v1.1/v2.0, predict and score."),
    "evaluate-squad": (
        "keras_albert.commands.evaluate_squad",
        "Score predictions with the official SQuAD v1.1/v2.0 rules.",
    ),
    "export": ("keras_albert.commands.export", "Export a checkpoint as a Hugging Face directory."),
    "launch-sagemaker": ("keras_albert.sagemaker.launch", "Launch a pretraining or SQuAD job on SageMaker."),
    "quickstart": (
        "keras_albert.commands.quickstart",
        "Tokenizer, data, pretraining and SQuAD on the embedded corpus.",
    ),
}


def _module_exists(module):
    # Looked up on disk: importlib.util.find_spec would import the parent packages (and TensorFlow with them).
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), *module.split("."))
    return os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__init__.py"))


def _available_commands():
    return {name: entry for name, entry in COMMANDS.items() if _module_exists(entry[0])}


class BooleanFlag(argparse.Action):
    """A boolean flag written `--flag`, `--flag=true`, `--flag=false` or `--flag true` (SageMaker passes the
    reference's switches as `--flag=true`; a hyperparameter given without a value arrives as `--flag true`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if values is None else values)


def accept_boolean_values(parser):
    """Turns every `store_true` flag of `parser` into a `BooleanFlag`. Not on parsers with positional arguments,
    where `--flag value` could swallow a positional."""
    actions = parser._actions
    if any(not action.option_strings for action in actions if not isinstance(action, argparse._SubParsersAction)):
        return
    for action in actions:
        if type(action) is argparse._StoreTrueAction:
            action.__class__ = BooleanFlag
            action.nargs, action.const, action.type, action.metavar = "?", True, parse_bool, "true|false"


# The 2020 reference's flags (its `arguments.py`) that keras-albert's commands do not hold under the same name,
# beyond those its README's commands use (all of which are flags, or aliases, of the commands themselves). Each is
# accepted and mapped onto a flag ("alias": the flag and the value that `--flag` / `--flag=true` stands for),
# accepted with one warning line saying why it changes nothing ("ignored"), or refused with one line saying what to
# use instead ("refused").
REFERENCE_FLAGS = {
    "skip_xla": ("alias", ("pretrain",), "jit_compile", "false"),
    "eager": ("ignored", ("pretrain", "squad"),
              "TensorFlow 2.1's switch to run the step eagerly for debugging: Keras 3 traces it as a tf.function "
              "(--jit_compile false turns XLA off)"),
    "dummy_eval": ("ignored", ("pretrain",), "the reference's placeholder evaluation; --val_files evaluates "
                   "held-out records"),
    "fsx_prefix": ("refused", ("pretrain", "squad"), "paths are given whole: --train_files, --val_files and "
                   "--output_dir (on SageMaker, launch-sagemaker --fsx_directory)"),
    "pre_layer_norm": ("refused", ("pretrain", "squad"), "keras-hub's ALBERT and BERT encoders put LayerNorm "
                       "after the residual, as the papers do; a pre-LayerNorm encoder is not available"),
    "attention_probs_dropout_prob": ("refused", ("pretrain", "squad"), "keras-hub's encoders have one dropout "
                                     "rate: use --hidden_dropout_prob"),
    "evaluate_frequency": ("refused", ("pretrain",), "use --validation_frequency (held-out masked-LM/SOP loss "
                           "with --val_files) or --squad_frequency (periodic SQuAD)"),
    "fast_squad": ("refused", ("pretrain",), "use --squad_steps to shorten the periodic SQuAD finetuning"),
}


class _ReferenceFlag(argparse.Action):
    """One of `REFERENCE_FLAGS`: sets the flag it is an alias of, warns, or refuses."""

    def __init__(self, option_strings, dest, kind=None, target=None, reason=None, **kwargs):
        kwargs.pop("default", None)
        super().__init__(option_strings, argparse.SUPPRESS, nargs="?", default=argparse.SUPPRESS, **kwargs)
        self.kind, self.target, self.reason = kind, target, reason

    def __call__(self, parser, namespace, values, option_string=None):
        if self.kind == "refused":
            parser.error(f"{option_string} (a flag of the 2020 reference) is not supported: {self.reason}")
        try:
            value = True if values is None else parse_bool(values)
        except argparse.ArgumentTypeError as error:
            parser.error(f"argument {option_string}: {error}")
        if self.kind == "ignored":
            print(f"{parser.prog}: warning: {option_string} is ignored: {self.reason}", file=sys.stderr)
        elif value:
            target_flag, target_value = self.target
            setattr(namespace, target_flag, target_value)


def add_reference_flags(parser, command):
    """Adds the `REFERENCE_FLAGS` of `command` that `parser` does not already hold."""
    existing = {option for action in parser._actions for option in action.option_strings}
    for flag, (kind, commands, *details) in REFERENCE_FLAGS.items():
        if command not in commands or f"--{flag}" in existing:
            continue
        if kind == "alias":
            target, reason = (details[0], details[1]), None
            help_text = f"The reference's flag: --{flag} (=true) is --{details[0]} {details[1]}."
        else:
            target, reason = None, details[0]
            help_text = f"The reference's flag, {kind}: {details[0]}."
        parser.add_argument(f"--{flag}", action=_ReferenceFlag, kind=kind, target=target, reason=reason,
                            metavar="VALUE", help=help_text)


def add_command_arguments(parser, command):
    """The flags of `keras-albert COMMAND` on `parser`: the command's own, booleans that take a value too, and the
    reference's other flags (`REFERENCE_FLAGS`). Every parser of a command is built here (the CLI, the example
    scripts, the SageMaker launcher's check of a job's flags)."""
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    accept_boolean_values(parser)
    add_reference_flags(parser, command)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command=None):
    parser = _Parser(
        prog="keras-albert",
        description="Pretrain ALBERT/BERT from raw text and finetune on SQuAD (Keras 3, TensorFlow backend).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available_commands().items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            add_command_arguments(sub, name)
    return parser


# Commands that start TensorFlow: its C++ start-up lines (and, on a machine without a GPU, a CUDA "failed call to
# cuInit" error that reads like a failure) are held back.
TENSORFLOW_COMMANDS = ("pretrain", "squad", "export", "quickstart")


def start_tensorflow_quietly():
    """Imports TensorFlow and looks for GPUs with the C++ library's start-up output held back (file descriptor 2 is
    redirected meanwhile: it is written below Python). It is shown after all if the import fails."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA's start-up (and its complaints) happens here
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    if args.command in TENSORFLOW_COMMANDS and "tensorflow" not in sys.modules:
        start_tensorflow_quietly()
    try:
        return module.run(args) or 0
    except UserInputError as error:
        print(f"keras-albert {args.command}: error: {error}", file=sys.stderr)
        return 2
    except RunDiverged as error:
        print(f"keras-albert {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"keras-albert {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
