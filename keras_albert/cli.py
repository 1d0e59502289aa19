"""The `keras-albert` command.

Each subcommand is a module of `keras_albert.commands` (the SageMaker launcher: `keras_albert.sagemaker.launch`)
exposing `add_arguments(parser)` and `run(args)` (returning an exit status). Modules are imported only when their
subcommand runs, so `keras-albert --help` and the data commands start without importing TensorFlow.
"""

import argparse
import importlib
import os
import sys

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
            importlib.import_module(module).add_arguments(sub)
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
