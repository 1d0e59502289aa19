"""Pretrain ALBERT or BERT: the 2020 reference's `run_pretraining.py`, with its flags, on `keras-albert pretrain`.

The same code as the `keras-albert pretrain` command (`keras_albert.commands.pretrain`); this script only adds
SageMaker's conventions (boolean flags written `--skip_sop=true`, `--model_dir` passed and ignored, data and output
directories from `SM_CHANNEL_TRAIN` / `SM_MODEL_DIR` when the flags are absent).

One CPU (tiny model on the embedded Jane Austen corpus, a few minutes):

    keras-albert train-tokenizer --output tok --model_type albert --vocab_size 5000
    keras-albert create-pretraining-data --tokenizer tok --output_dir data --max_seq_length 128 \\
        --max_predictions_per_seq 20 --dupe_factor 2 --num_shards 4
    python examples/run_pretraining.py --train_files 'data/*.tfrecord' --output_dir runs/albert-tiny \\
        --model_type albert --model_size tiny --per_gpu_batch_size 32 --gradient_accumulation_steps 1 \\
        --warmup_steps 100 --total_steps 1000 --learning_rate 0.00176 --optimizer lamb --log_frequency 50 \\
        --checkpoint_frequency 200

Run the same command again after an interruption: it resumes from the latest checkpoint in --output_dir.

Several workers (MultiWorkerMirroredStrategy; run on every host, TF_CONFIG's task index differing; --output_dir on
a filesystem all hosts share, e.g. FSx for Lustre, for checkpoints and resume):

    export TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]}, "task": {"type": "worker", "index": 0}}'
    python examples/run_pretraining.py --distribution multi_worker --train_files '/fsx/data/*.tfrecord' \\
        --output_dir /fsx/runs/albert-base --model_type albert --model_size base --per_gpu_batch_size 32 \\
        --gradient_accumulation_steps 2 --warmup_steps 3125 --total_steps 125000 --learning_rate 0.00176 \\
        --optimizer lamb --mixed_precision bf16 --log_frequency 10 --name myfirstjob

SageMaker (the launcher sets TF_CONFIG from SM_HOSTS on every host; see `keras-albert launch-sagemaker --help`):

    keras-albert launch-sagemaker --entry_point examples/run_pretraining.py --sm_job_name albert-pretrain \\
        --instance_type ml.p4d.24xlarge --instance_count 2 --load_from scratch --model_type albert \\
        --model_size base --per_gpu_batch_size 32 --gradient_accumulation_steps 2 --warmup_steps 3125 \\
        --total_steps 125000 --learning_rate 0.00176 --optimizer lamb --log_frequency 10 --name myfirstjob \\
        --train_files 'records/*.tfrecord' --output_dir runs/myfirstjob

BERT's two phases (the reference's phase 1 and phase 2 commands): phase 1 at 128 tokens from scratch,

    python examples/run_pretraining.py --model_type bert --model_size base --load_from scratch \\
        --train_files '/fsx/data128/*.tfrecord' --max_seq_length 128 --max_predictions_per_seq 20 \\
        --per_gpu_batch_size 128 --gradient_accumulation_steps 4 --warmup_steps 1400 --total_steps 14076 \\
        --learning_rate 0.00176 --optimizer lamb --squad_freq 0 --output_dir /fsx/runs/bert-phase1

then phase 2 at 512 tokens from phase 1's final weights (`--load_from checkpoint` into a new --output_dir: a fresh
optimizer, with this phase's batch layout, steps and schedule; the preset has 512 positions from phase 1 on):

    python examples/run_pretraining.py --model_type bert --model_size base --load_from checkpoint \\
        --checkpoint_path /fsx/runs/bert-phase1 --train_files '/fsx/data512/*.tfrecord' --max_seq_length 512 \\
        --max_predictions_per_seq 80 --per_gpu_batch_size 32 --gradient_accumulation_steps 8 --warmup_steps 312 \\
        --total_steps 3124 --learning_rate 0.00176 --output_dir /fsx/runs/bert-phase2

Validation on held-out records (the reference's --val_files and --validation_frequency): add
`--val_files '/fsx/heldout/*.tfrecord' --validation_frequency 2000`; the values land in TensorBoard and in
metrics.jsonl in --output_dir.
"""

import argparse
import os
import sys

from keras_albert import cli
from keras_albert.errors import UserInputError
from keras_albert.commands import pretrain


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_command_arguments(parser, "pretrain")
    args = parser.parse_args(argv)
    if args.train_files is None and os.environ.get("SM_CHANNEL_TRAIN"):
        args.train_files = os.path.join(os.environ["SM_CHANNEL_TRAIN"], "*.tfrecord")
    if args.output_dir is None and os.environ.get("SM_MODEL_DIR"):
        args.output_dir = os.environ["SM_MODEL_DIR"]
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return pretrain.run(args)
    except UserInputError as error:
        print(f"run_pretraining.py: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
