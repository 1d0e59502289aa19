"""Train-step throughput of PretrainingModel: precision x XLA, on whatever device TensorFlow sees.

    python benchmarks/bench_train_step.py --preset albert_base --batch 8 --seq 128 --steps 5
    python benchmarks/bench_train_step.py --preset albert_tiny --batch 32 --seq 128 --accumulation 2

Prints one line per configuration: seconds per optimizer step (median of the timed steps, after warm-up and
compilation) and sequences/s. Each configuration runs in a fresh subprocess so that a global dtype policy or
XLA state cannot leak between them.
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
import numpy as np
args = json.loads(sys.argv[1])
import keras
keras.config.set_dtype_policy(args["precision"])
from keras_albert import PretrainingModel
from keras_albert.optimizers import LAMB

keras.utils.set_random_seed(0)
model = PretrainingModel.from_preset(args["preset"], max_sequence_length=max(args["seq"], 128))
rows, seq, predictions = args["batch"] * args["accumulation"], args["seq"], args["predictions"]
rng = np.random.default_rng(0)
vocab = model.backbone.vocabulary_size
batch = {
    "input_ids": rng.integers(5, vocab, (rows, seq)).astype("int32"),
    "input_mask": np.ones((rows, seq), "int32"),
    "segment_ids": (np.arange(seq) >= seq // 2).astype("int32")[None].repeat(rows, 0),
    "masked_lm_positions": np.sort(rng.integers(1, seq, (rows, predictions)), 1).astype("int32"),
    "masked_lm_ids": rng.integers(5, vocab, (rows, predictions)).astype("int32"),
    "masked_lm_weights": np.ones((rows, predictions), "float32"),
    "next_sentence_labels": rng.integers(0, 2, (rows, 1)).astype("int32"),
}
optimizer = LAMB(1e-4, weight_decay=0.01)
if args["precision"] == "mixed_float16":
    optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
model.compile(optimizer=optimizer, gradient_accumulation_steps=args["accumulation"], jit_compile=args["jit"])
for _ in range(2):
    model.train_on_batch(batch)
times = []
for _ in range(args["steps"]):
    start = time.perf_counter()
    model.train_on_batch(batch)
    times.append(time.perf_counter() - start)
print(json.dumps({"step_s": float(np.median(times)), "params": model.count_params()}))
"""


def run(config):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(config)], capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["?"])[-1][:160]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="albert_tiny")
    parser.add_argument("--batch", type=int, default=32, help="micro-batch rows")
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--predictions", type=int, default=20)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--jit", default="false,true")
    args = parser.parse_args(argv)
    print(f"{args.preset}: micro-batch {args.batch} x accumulation {args.accumulation}, seq {args.seq}, "
          f"{args.predictions} predictions")
    for precision in args.precisions.split(","):
        for jit in args.jit.split(","):
            config = dict(vars(args), precision=precision, jit=jit == "true")
            result = run(config)
            if "error" in result:
                print(f"  {precision:15s} jit_compile={jit:5s}  failed: {result['error']}")
                continue
            rows = args.batch * args.accumulation
            print(f"  {precision:15s} jit_compile={jit:5s}  {result['step_s'] * 1000:9.1f} ms/step  "
                  f"{rows / result['step_s']:8.1f} sequences/s  ({result['params']:,} parameters)")


if __name__ == "__main__":
    main()
