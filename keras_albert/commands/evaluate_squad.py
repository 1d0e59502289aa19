"""`keras-albert evaluate-squad DATA.json PREDICTIONS.json`: the official SQuAD scores of a predictions file.

The flags are those of the official `evaluate-v2.0.py` (`--na-prob-file`, `--na-prob-thresh`, `--out-file`), and the
printed JSON has its keys.
"""

import json
import sys

from keras_albert.data.squad import evaluate, load_json, missing_predictions
from keras_albert.errors import UserInputError
from keras_albert.io import read_json, write_json


def add_arguments(parser):
    parser.add_argument("data_file", metavar="DATA.json", help="SQuAD v1.1 or v2.0 dataset file.")
    parser.add_argument("pred_file", metavar="PREDICTIONS.json", help="Question id -> predicted answer text.")
    parser.add_argument(
        "--na-prob-file", "-n", help="Question id -> no-answer probability (e.g. null_odds.json); adds best_* keys."
    )
    parser.add_argument(
        "--na-prob-thresh",
        "-t",
        type=float,
        default=1.0,
        help="Predict no answer when the no-answer probability exceeds this (default 1.0, as officially).",
    )
    parser.add_argument("--out-file", "-o", help="Also write the scores JSON to this file.")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="Fail when a question has no prediction, as the official v2.0 script does. Without it such a question "
        "scores 0 and counts in the total, as the official v1.1 script does; either way the count is printed.",
    )


def run(args):
    dataset = load_json(args.data_file, what="SQuAD file")  # or a TFDS split, tfds:squad/v2.0:validation
    predictions = read_json(args.pred_file, what="predictions file")
    if not isinstance(predictions, dict):
        raise UserInputError(f"{args.pred_file}: predictions must be a JSON object of question id -> answer text")
    na_probs = None
    if args.na_prob_file:
        na_probs = read_json(args.na_prob_file, what="no-answer probabilities file")
        if not isinstance(na_probs, dict) or not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) for value in na_probs.values()
        ):
            raise UserInputError(f"{args.na_prob_file}: must be a JSON object of question id -> number")
    try:
        scores = evaluate(
            dataset, predictions, na_probs=na_probs, na_prob_thresh=args.na_prob_thresh, strict=args.strict
        )
    except UserInputError as error:
        raise UserInputError(f"{args.pred_file}: {error}") from None
    missing = missing_predictions(dataset, predictions)
    if missing:
        print(f"{len(missing)} of {scores['total']} questions have no prediction in {args.pred_file} and score 0 "
              f"(the first: {missing[0]})", file=sys.stderr)
    print(json.dumps(scores, indent=2))
    if args.out_file:
        write_json(args.out_file, scores, indent=2)
    return 0
