"""`keras-albert create-pretraining-data`: raw text to sharded masked-LM + SOP/NSP TFRecords.

    keras-albert create-pretraining-data --tokenizer tok --output_dir data        # embedded corpus, ALBERT defaults
    keras-albert create-pretraining-data --input 'wiki/*.txt.gz' --tokenizer tok --output_dir data \\
        --model_type bert --max_seq_length 128 --max_predictions_per_seq 20 --masking token --num_shards 256
    keras-albert create-pretraining-data --input tfds:wikipedia/20230601.en:train --tfds_data_dir ~/tfds \\
        --tokenizer tok --output_dir data                                            # a prepared TFDS split
"""

import os
import signal
import sys

from keras_albert import signals
from keras_albert.data.pretraining import create_pretraining_data
from keras_albert.data.pretraining.settings import MASKING_MODES
from keras_albert.data.tokenizers import MODEL_TYPES
from keras_albert.errors import UserInputError


def add_arguments(parser):
    parser.add_argument(
        "--input",
        nargs="*",
        default=None,
        help="Text files, directories or globs (plain or gzip; comma-separated allowed); documents are "
        "separated by blank lines. Or a prepared TensorFlow Datasets split, tfds:NAME[/CONFIG][:SPLIT] (split "
        "default train), each example's --tfds_text_field a document. Default: the embedded Jane Austen corpus.",
    )
    parser.add_argument(
        "--tfds_text_field",
        default="text",
        help="For tfds: inputs, the feature holding each example's text. Default: %(default)s.",
    )
    parser.add_argument(
        "--tfds_data_dir",
        default=None,
        help="For tfds: inputs, where the dataset is prepared (nothing is downloaded). Default: TFDS's own "
        "(TFDS_DATA_DIR or ~/tensorflow_datasets).",
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="Tokenizer directory from train-tokenizer, or a bare spiece.model / vocab.txt.",
    )
    parser.add_argument("--output_dir", required=True, help="Directory for the TFRecord shards and summary.json.")
    parser.add_argument(
        "--model_type",
        choices=MODEL_TYPES,
        default=None,
        help="albert: sentence-order labels; bert: next-sentence labels. Default: the tokenizer's.",
    )
    parser.add_argument("--max_seq_length", type=int, default=512, help="Tokens per instance. Default: %(default)s.")
    parser.add_argument(
        "--max_predictions_per_seq",
        type=int,
        default=20,
        help="Masked positions per instance at most. Default: %(default)s.",
    )
    parser.add_argument(
        "--masked_lm_prob", type=float, default=0.15, help="Share of tokens masked. Default: %(default)s."
    )
    parser.add_argument(
        "--masking",
        default=None,
        help="token, whole_word or ngram (ALBERT's n-grams of whole words). Default: ngram for albert, token for bert.",
    )
    parser.add_argument("--max_ngram", type=int, default=3, help="Longest n-gram for --masking ngram.")
    parser.add_argument(
        "--dupe_factor",
        type=int,
        default=10,
        help="Copies of the corpus with different pairs and masks. Default: %(default)s.",
    )
    parser.add_argument(
        "--short_seq_prob",
        type=float,
        default=0.1,
        help="Share of documents aiming at a shorter pair. Default: %(default)s.",
    )
    parser.add_argument("--num_shards", type=int, default=1, help="Output TFRecord files. Default: %(default)s.")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Processes, this one included (default: all cores); the output does not depend on it.",
    )
    parser.add_argument("--seed", type=int, default=12345, help="Random seed. Default: %(default)s.")
    parser.add_argument(
        "--no_masking",
        action="store_true",
        help="Write unmasked records for pretraining_dataset(..., dynamic_masking=True).",
    )
    parser.add_argument(
        "--document_break_lines",
        type=int,
        default=1,
        help="Blank lines that end a document (2 makes each chapter of the embedded corpus a document).",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def run(args):
    # SIGTERM and the other terminating signals end the command with its clean-up run (workers stopped, temporary
    # shards and /dev/shm files removed). Any other (SIGKILL included) still leaves nothing behind: the workers see
    # their parent die and clean up (`keras_albert.data.pretraining.pool`).
    try:
        with signals.raising():
            return _run(args)
    except signals.Terminated as stopped:
        name = signal.Signals(stopped.signum).name
        print(f"keras-albert create-pretraining-data: stopped by {name}", file=sys.stderr)
        # The signal asked the process to end, and all it made is cleaned up: end now. A normal interpreter exit
        # with TensorFlow loaded (a tfds: input) took up to 8 s more, tearing down its threads.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + stopped.signum)


def _run(args):
    if args.masking is not None and args.masking not in MASKING_MODES:
        raise UserInputError(f"--masking: expected one of {', '.join(MASKING_MODES)}, got {args.masking!r}")
    summary = create_pretraining_data(
        args.input,
        args.tokenizer,
        args.output_dir,
        model_type=args.model_type,
        max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        masked_lm_prob=args.masked_lm_prob,
        masking=args.masking,
        max_ngram=args.max_ngram,
        dupe_factor=args.dupe_factor,
        short_seq_prob=args.short_seq_prob,
        num_shards=args.num_shards,
        workers=args.workers,
        seed=args.seed,
        no_masking=args.no_masking,
        document_break_lines=args.document_break_lines,
        progress=not args.quiet,
        tfds_text_field=args.tfds_text_field,
        tfds_data_dir=args.tfds_data_dir,
    )
    print(
        f"{summary['documents']} documents, {summary['corpus_tokens']} tokens -> {summary['instances']} instances "
        f"({summary['tokens']} tokens, {summary['masked_tokens']} masked = {summary['masked_share']:.1%}, padding "
        f"{summary['padding_share']:.1%}) in {len(summary['shards'])} shards under {args.output_dir} "
        f"({summary['seconds']:.1f} s, {summary['corpus_tokens_per_second']:.0f} corpus tokens/s)"
    )
    return 0
