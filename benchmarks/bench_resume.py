"""Time from start to the first step of a resumed pretraining run, at step k = 10 and k = 10,000 (issue 9).

    python benchmarks/bench_resume.py                      # k = 10 and 10000, 2 repeats each
    python benchmarks/bench_resume.py --steps 10 10000 1000000 --repeats 3
    python benchmarks/bench_resume.py --steps 10000 --replay_limit 10000 --repeats 0   # the reader, with a replay

A resume restores the data position in constant time: the reader starts at the record where k steps end (the
epoch, the file and the record in it follow from the files' record counts; its shuffles and masks are stateless in
the seed and the position), instead of replaying k batches of the input pipeline. The checkpoints are built cheaply:
an `albert_tiny` run of one step, then a checkpoint of its model and optimizer re-saved as step k (optimizer
iterations k), as it would be after k steps. Each resume runs `pretrain` in a fresh process and prints the seconds
from the call to the end of its first step (model build, restore, reader, tracing, the step), the median of the
repeats. Before that, the reader alone: the first batch after k batches with `skip_batches=k` (what a resume
does) and with `.skip(k)` (a replay, what resuming did before), the latter only up to `--replay_limit` batches.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

SETTINGS = dict(model_size="tiny", per_gpu_batch_size=8, warmup_steps=1, learning_rate=1e-3, log_frequency=1,
                checkpoint_frequency=1_000_000, distribution="none", quiet=True, seed=3)

FORGE = r"""
import json, sys
args = json.loads(sys.argv[1])
from keras_albert import distribute
from keras_albert.training.pretrain import PretrainSettings, _build_and_restore, data_layout, resolve_settings
settings = resolve_settings(PretrainSettings(train_files=args["records"], output_dir=args["run"],
                                             total_steps=args["k"] + 1, **args["settings"]))
strategy = distribute.get_strategy("none")
model, checkpoint, latest, step = _build_and_restore(settings, strategy, distribute.worker_info(), False, None)
assert latest is not None and step == 1, (latest, step)
model.optimizer.iterations.assign(args["k"])
checkpoint.save(step=args["k"], data_layout=data_layout(settings, 1, 1))
print(json.dumps({"saved": args["k"]}))
"""

RESUME = r"""
import json, sys, time
args = json.loads(sys.argv[1])
start = time.perf_counter()
import keras
from keras_albert.training.pretrain import PretrainSettings, pretrain

class FirstStep(keras.callbacks.Callback):
    seconds = None
    def on_train_batch_end(self, batch, logs=None):
        if FirstStep.seconds is None:
            FirstStep.seconds = time.perf_counter() - start

result = pretrain(PretrainSettings(train_files=args["records"], output_dir=args["run"], total_steps=args["k"] + 1,
                                   **args["settings"]), callbacks=[FirstStep()])
assert result["initial_step"] == args["initial"] and result["step"] == args["k"] + 1, result
print(json.dumps({"first_step_seconds": FirstStep.seconds}))
"""

READER = r"""
import json, sys, time
args = json.loads(sys.argv[1])
import tensorflow as tf
from keras_albert.data import pretraining_dataset
def first_batch(**kw):
    start = time.perf_counter()
    dataset = pretraining_dataset(args["records"], 8, args["seq"], args["predictions"], seed=3, **kw)
    if "replay" in args:
        dataset = dataset.skip(args["replay"])
    next(iter(dataset))
    return time.perf_counter() - start
first_batch()  # warm
print(json.dumps({"seconds": first_batch(skip_batches=args.get("k", 0))}))
"""


def _child(source, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", "-1"))
    result = subprocess.run([sys.executable, "-c", source, json.dumps(args)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"child failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_records(directory, seq, predictions):
    from keras_albert.data import create_pretraining_data, text
    from keras_albert.data.tokenizers import train_tokenizer

    novel = next(path for path in text.corpus_files() if os.path.basename(path) == "persuasion.txt.gz")
    tokenizer = os.path.join(directory, "tokenizer")
    train_tokenizer(novel, tokenizer, "albert", 2000)
    records = os.path.join(directory, "records")
    summary = create_pretraining_data(novel, tokenizer, records, max_seq_length=seq, max_predictions_per_seq=predictions,
                                      dupe_factor=1, num_shards=4, workers=1, progress=False)
    return os.path.join(records, "*.tfrecord"), summary["instances"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 10_000], help="Steps k to resume at.")
    parser.add_argument("--repeats", type=int, default=2, help="Resumes timed per k (median printed); 0: the reader only.")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--predictions", type=int, default=10)
    parser.add_argument("--replay_limit", type=int, default=1_000, help="Largest k timed with a replay (.skip).")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench-resume-")
    records, instances = make_records(work, args.seq, args.predictions)
    print(f"records: {instances} instances of {args.seq} tokens in 4 shards; albert_tiny, 8 sequences a step "
          f"({instances // 8} steps an epoch)")
    for k in args.steps:
        reader = dict(records=records, seq=args.seq, predictions=args.predictions)
        constant = _child(READER, dict(reader, k=k))["seconds"]
        line = f"reader, first batch after k={k:>9,} batches: skip_batches {constant:.3f} s"
        if k <= args.replay_limit:
            replay = _child(READER, dict(reader, replay=k))["seconds"]
            line += f"; replay (.skip) {replay:.3f} s"
        print(line, flush=True)
    settings = dict(SETTINGS)
    for k in args.steps if args.repeats > 0 else []:
        times = []
        for repeat in range(args.repeats):
            run = os.path.join(work, f"run-{k}-{repeat}")
            base = dict(records=records, run=run, settings=settings)
            _child(RESUME, dict(base, k=0, initial=0))  # a run of one step: ckpt-1
            _child(FORGE, dict(base, k=k))  # ckpt-k, as after k steps
            times.append(_child(RESUME, dict(base, k=k, initial=k))["first_step_seconds"])
        print(f"resume at step k={k:>9,}: {statistics.median(times):6.2f} s from pretrain() to the end of the first "
              f"step (median of {len(times)}: {', '.join(f'{t:.2f}' for t in times)})", flush=True)


if __name__ == "__main__":
    main()
