"""`keras-albert export`: a pretraining run's model as a Hugging Face directory, tokenizer files beside it.

The output (`config.json`, `model.safetensors`, and `spiece.model` or `vocab.txt` with the tokenizer configs) loads
unchanged in transformers: its `AutoModelForPreTraining` reads the directory of a pretraining model,
`AutoModelForQuestionAnswering` that of a SQuAD model.

Command line:
    keras-albert export --checkpoint_path runs/albert-base --output_dir albert-base-hf
    keras-albert export --checkpoint_path runs/albert-base/checkpoints/ckpt-50000 --output_dir step50k-hf \\
        --tokenizer tok
"""

import os

from keras_albert import io
from keras_albert.errors import UserInputError

# The files a tokenizer directory (`keras-albert train-tokenizer`) may hold; copied from a run directory.
TOKENIZER_FILES = (
    "spiece.model",
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "keras_albert_tokenizer.json",
)
# Never taken from a tokenizer directory: they are the model's.
MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")


def _run_directory(checkpoint_path):
    """The run directory a checkpoint path belongs to (where `pretrain` copied the tokenizer)."""
    path = os.path.abspath(checkpoint_path)
    if os.path.isdir(path):
        return path
    directory = os.path.dirname(path)
    if os.path.basename(directory) == "checkpoints":
        return os.path.dirname(directory)
    return directory


def tokenizer_files(tokenizer, checkpoint_path):
    """The tokenizer files to copy: from `tokenizer` (a directory or a file), or, when it is None, the tokenizer
    files of the checkpoint's run directory (none if it holds no `spiece.model` / `vocab.txt`)."""
    if tokenizer is None:
        run_dir = _run_directory(checkpoint_path)
        files = [os.path.join(run_dir, name) for name in TOKENIZER_FILES]
        files = [path for path in files if os.path.isfile(path)]
        has_vocabulary = any(os.path.basename(path) in ("spiece.model", "vocab.txt") for path in files)
        return files if has_vocabulary else []
    if os.path.isdir(tokenizer):
        return [
            os.path.join(tokenizer, name)
            for name in sorted(os.listdir(tokenizer))
            if os.path.isfile(os.path.join(tokenizer, name)) and name not in MODEL_FILES and not name.startswith(".")
        ]
    if os.path.isfile(tokenizer):
        return [tokenizer]
    raise UserInputError(f"tokenizer {tokenizer}: no such file or directory")


def export(checkpoint_path, output_dir, tokenizer=None, copy_tokenizer=True):
    """Writes the model of `checkpoint_path` as a Hugging Face directory, with the tokenizer files beside it.

    Args:
        checkpoint_path: str. A run directory (its `model.keras`, else its latest checkpoint), a checkpoint prefix
            (`.../checkpoints/ckpt-1000`), a checkpoints directory or a `.keras` file.
        output_dir: str. The Hugging Face directory to write (created; `config.json` and `model.safetensors` are
            replaced if present).
        tokenizer: str or None. A tokenizer directory or file to copy; None copies the run directory's.
        copy_tokenizer: bool. False writes the model only.

    Returns:
        The list of files written into `output_dir`.

    Example:
    ```python
    from keras_albert.commands.export import export

    export("runs/albert-tiny", "albert-tiny-hf")
    # transformers.AutoModelForPreTraining.from_pretrained("albert-tiny-hf")
    ```
    """
    from keras_albert.training.checkpoints import load_model  # TensorFlow: only once an export runs

    if not os.path.exists(checkpoint_path) and not os.path.isfile(f"{checkpoint_path}.index"):
        raise UserInputError(f"checkpoint_path {checkpoint_path}: no such file, directory or checkpoint prefix")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserInputError(f"output_dir {output_dir}: exists and is not a directory")
    sources = tokenizer_files(tokenizer, checkpoint_path) if copy_tokenizer else []
    model = load_model(checkpoint_path)
    if not hasattr(model, "save_huggingface"):
        raise UserInputError(
            f"checkpoint_path {checkpoint_path}: holds a {type(model).__name__}, not a keras_albert task model"
        )
    model.save_huggingface(output_dir)
    written = [os.path.join(output_dir, name) for name in ("config.json", "model.safetensors")]
    for source in sources:
        target = os.path.join(output_dir, os.path.basename(source))
        io.copy_file(source, target)
        written.append(target)
    return written


def add_arguments(parser):
    parser.add_argument("--checkpoint_path", required=True,
                        help="A pretraining run directory (its model.keras, else its latest checkpoint), a checkpoint "
                        "prefix (checkpoints/ckpt-N), a checkpoints directory or a .keras file.")
    parser.add_argument("--output_dir", required=True, help="The Hugging Face directory to write.")
    parser.add_argument("--tokenizer", default=None,
                        help="Tokenizer directory or file to copy beside the model. Default: the run directory's "
                        "tokenizer, if it holds one.")
    parser.add_argument("--no_tokenizer", action="store_true", help="Write the model files only.")


def run(args):
    written = export(args.checkpoint_path, args.output_dir, args.tokenizer, copy_tokenizer=not args.no_tokenizer)
    names = ", ".join(os.path.basename(path) for path in written)
    print(f"Wrote {args.output_dir}: {names}")
    return 0
