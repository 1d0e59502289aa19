"""Finetune ALBERT or BERT on SQuAD v1.1 / v2.0: the 2020 reference's `run_squad.py`, with its flags.

The same code as the `keras-albert squad` command (`keras_albert.commands.squad`): finetune, predict (split over all
workers), write predictions.json / nbest_predictions.json / null_odds.json and scores.json to --output_dir, print
the official scores. This script only adds SageMaker's conventions: `--model_dir` passed and ignored; the output
directory from `SM_MODEL_DIR` and the SQuAD files from the `SM_CHANNEL_TRAIN` channel (`train-v2.0.json`,
`dev-v2.0.json`, or the v1.1 names with --task_name squadv1) when the flags are absent.

One CPU (tiny model from scratch on the embedded Jane Austen questions, about 90 s on two cores). Measured: F1 23.9,
exact 20.4 on the 93 held-apart questions (the default --predict_file); with --predict_file set to the training file
(`python -c "from keras_albert.data import squad; print(squad.austen_squad_path('train'))"`), F1 99.8, exact 99.7 on
the 374 training questions: a model without pretraining memorises them, it does not generalise.

    keras-albert train-tokenizer --output tok --model_type albert --vocab_size 2000
    python examples/run_squad.py --tokenizer tok --load_from scratch --model_type albert --model_size tiny \\
        --max_seq_length 192 --doc_stride 64 --max_query_length 48 --per_gpu_batch_size 32 --total_steps 600 \\
        --learning_rate 2e-3 --optimizer adamw --output_dir squad_out

From a pretraining run of `examples/run_pretraining.py` (its --output_dir holds model.keras and the tokenizer):

    python examples/run_squad.py --load_from checkpoint --checkpoint_path runs/albert-tiny --task_name squadv2 \\
        --max_seq_length 128 --doc_stride 64 --per_gpu_batch_size 32 --total_steps 400 --learning_rate 2e-3

Several workers (MultiWorkerMirroredStrategy; run on every host, TF_CONFIG's task index differing; each worker
predicts its share of the questions, the chief writes the files):

    export TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'
    python examples/run_squad.py --distribution multi_worker --load_from checkpoint \\
        --checkpoint_path /fsx/runs/albert-base --task_name squadv2 --train_file /fsx/squad/train-v2.0.json \\
        --predict_file /fsx/squad/dev-v2.0.json --model_type albert --model_size base --per_gpu_batch_size 6 \\
        --total_steps 8144 --warmup_steps 814 --learning_rate 3e-5 --mixed_precision bf16 \\
        --output_dir /fsx/runs/albert-base-squadv2

SageMaker (the launcher sets TF_CONFIG from SM_HOSTS on every host; see `keras-albert launch-sagemaker --help`):

    keras-albert launch-sagemaker --entry_point examples/run_squad.py --sm_job_name albert-squad \\
        --instance_type ml.p3dn.24xlarge --instance_count 1 --load_from checkpoint \\
        --checkpoint_path /fsx/runs/albert-base --model_type albert --model_size base --per_gpu_batch_size 6 \\
        --total_steps 8144 --warmup_steps 814 --learning_rate 3e-5 --task_name squadv2
"""

import argparse
import os
import sys

from keras_albert import cli
from keras_albert.errors import UserInputError
from keras_albert.commands import squad

_FILES = {"squadv1": ("train-v1.1.json", "dev-v1.1.json"), "squadv2": ("train-v2.0.json", "dev-v2.0.json")}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_command_arguments(parser, "squad")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--model_dir", help=argparse.SUPPRESS)  # SageMaker passes it; outputs go to --output_dir
    args = parser.parse_args(argv)
    channel = os.environ.get("SM_CHANNEL_TRAIN")
    if channel:
        train_name, predict_name = _FILES[args.task_name]
        if args.train_file is None and os.path.isfile(os.path.join(channel, train_name)):
            args.train_file = os.path.join(channel, train_name)
        if args.predict_file is None and os.path.isfile(os.path.join(channel, predict_name)):
            args.predict_file = os.path.join(channel, predict_name)
    if args.output_dir is None and os.environ.get("SM_MODEL_DIR"):
        args.output_dir = os.environ["SM_MODEL_DIR"]
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return squad.run(args)
    except UserInputError as error:
        print(f"run_squad.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
