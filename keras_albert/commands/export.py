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

from keras_albert.errors import UserInputError

def _tokenizer(tokenizer, checkpoint_path):
    """(the tokenizer to write beside the model, how messages name it, the run directory it was found in): loaded
    from `tokenizer`, or from the checkpoint's run directory (None there when it holds no `spiece.model` /
    `vocab.txt`)."""
    from keras_albert.training.provenance import load_checked_tokenizer, run_directory_of, run_tokenizer

    if tokenizer is None:
        run_dir = run_directory_of(checkpoint_path)
        return run_tokenizer(run_dir), f"the tokenizer of {run_dir}", run_dir
    if not os.path.exists(tokenizer):
        raise UserInputError(f"tokenizer {tokenizer}: no such file or directory")
    return load_checked_tokenizer(tokenizer), f"--tokenizer {tokenizer}", None


def export(checkpoint_path, output_dir, tokenizer=None, copy_tokenizer=True):
    """Writes the model of `checkpoint_path` as a Hugging Face directory, with the tokenizer beside it.

    The tokenizer is loaded and checked before anything is written (see `training.provenance`): against the
    model's vocabulary size, the records of the pretraining run the checkpoint belongs to, the tokenizer of that
    run directory, and a tokenizer already in `output_dir`. Only its model file (`spiece.model` / `vocab.txt`)
    and the configs a tokenizer writes go into `output_dir`.

    Args:
        checkpoint_path: str. A run directory (its `model.keras`, else its latest checkpoint), a checkpoint prefix
            (`.../checkpoints/ckpt-1000`), a checkpoints directory or a `.keras` file.
        output_dir: str. The Hugging Face directory to write (created; `config.json` and `model.safetensors` are
            replaced if present).
        tokenizer: str or None. A tokenizer directory or file; None: the run directory's, if it holds one.
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
    from keras_albert.training.provenance import check_tokenizer, run_directory_of, run_records_summary

    if not os.path.exists(checkpoint_path) and not os.path.isfile(f"{checkpoint_path}.index"):
        raise UserInputError(f"checkpoint_path {checkpoint_path}: no such file, directory or checkpoint prefix")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserInputError(f"output_dir {output_dir}: exists and is not a directory")
    loaded, source, found_in = _tokenizer(tokenizer, checkpoint_path) if copy_tokenizer else (None, None, None)
    model = load_model(checkpoint_path)
    if not hasattr(model, "save_huggingface"):
        raise UserInputError(
            f"checkpoint_path {checkpoint_path}: holds a {type(model).__name__}, not a keras_albert task model"
        )
    if loaded is not None:
        run_dir = run_directory_of(checkpoint_path)
        check_tokenizer(
            loaded, source, summary=run_records_summary(run_dir),
            model_vocab_size=model.backbone.vocabulary_size, model_source=f"the model of {checkpoint_path}",
            run_directory=run_dir if found_in is None else None,
        )
        check_tokenizer(loaded, source, run_directory=output_dir)
    model.save_huggingface(output_dir)
    written = [os.path.join(output_dir, name) for name in ("config.json", "model.safetensors")]
    if loaded is not None:
        from keras_albert.training.provenance import save_tokenizer

        written.append(save_tokenizer(loaded, output_dir))
    return written


def add_arguments(parser):
    parser.add_argument("--checkpoint_path", required=True,
                        help="A pretraining run directory (its model.keras, else its latest checkpoint), a checkpoint "
                        "prefix (checkpoints/ckpt-N), a checkpoints directory or a .keras file.")
    parser.add_argument("--output_dir", required=True, help="The Hugging Face directory to write.")
    parser.add_argument("--tokenizer", default=None,
                        help="Tokenizer directory or file to write beside the model (checked against the model and "
                        "the run's records first). Default: the run directory's tokenizer, if it holds one.")
    parser.add_argument("--no_tokenizer", action="store_true", help="Write the model files only.")


def run(args):
    written = export(args.checkpoint_path, args.output_dir, args.tokenizer, copy_tokenizer=not args.no_tokenizer)
    names = ", ".join(os.path.basename(path) for path in written)
    print(f"Wrote {args.output_dir}: {names}")
    return 0
