"""Pretraining throughput of keras-albert against keras-hub and PyTorch transformers, on whatever device is present.

    python benchmarks/train_throughput.py --models albert_base --seqs 128 --batch 8          # the acceptance row
    python benchmarks/train_throughput.py --batch 128=8,512=2 --output throughput.txt        # the full matrix
    python benchmarks/train_throughput.py --models albert_base --seqs 128 --batch 8 \\
        --systems ours --precisions bf16 --xla false --steps 3                              # a quick look

Measures sequences/s and peak memory of one optimizer update, on the same random inputs for every system:
- ours: `keras_albert.PretrainingModel` (masked LM at `masked_lm_positions` + sentence order), LAMB with ALBERT's
  exclusions, trained with `fit` as `keras-albert pretrain` trains it;
- keras-hub: `AlbertMaskedLM` / `BertMaskedLM` with its default `compile` (Adam), trained with `fit`;
- torch: transformers' PyTorch `AlbertForPreTraining` / `BertForPreTraining`, AdamW, a plain loop (float32, and
  bfloat16 autocast).
Each model, length, batch, system and setting runs in its own subprocess, one after another (the systems taking
turns setting by setting, so that a drift of the machine's speed during the run does not favour one), so memory
peaks are separate: peak resident memory of the process on CPU, peak device memory on a GPU. A setting warms up for
`--warmup` updates (compilation included), then times `--steps` updates: the table gives the median sequences/s and
the range of the timed steps. MFU (model-FLOPs utilisation) counts the same model FLOPs for every system (forward
+ backward of the encoder, the masked-LM head at the masked positions only, the pooler: 3 x the forward's matmul
FLOPs) against the device's matmul ceiling measured here (a 2048x2048 matmul, the faster of TensorFlow and PyTorch,
per dtype). The host's load average is printed before and after: on a shared machine compare rows of one run.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PRESETS = {
    # the shapes of keras_albert.models.presets (ALBERT: embedding 128, one shared layer group, no dropout), here so
    # that the parent process imports no TensorFlow; the tiny ones are for a quick check of the script
    "albert_tiny": dict(model_type="albert", vocabulary_size=5000, embedding_dim=32, num_layers=2, num_heads=2,
                        hidden_dim=64, intermediate_dim=256, dropout=0.0),
    "bert_tiny": dict(model_type="bert", vocabulary_size=5000, embedding_dim=64, num_layers=2, num_heads=2,
                      hidden_dim=64, intermediate_dim=256, dropout=0.1),
    "albert_base": dict(model_type="albert", vocabulary_size=30000, embedding_dim=128, num_layers=12, num_heads=12,
                        hidden_dim=768, intermediate_dim=3072, dropout=0.0),
    "albert_large": dict(model_type="albert", vocabulary_size=30000, embedding_dim=128, num_layers=24, num_heads=16,
                         hidden_dim=1024, intermediate_dim=4096, dropout=0.0),
    "bert_base": dict(model_type="bert", vocabulary_size=30522, embedding_dim=768, num_layers=12, num_heads=12,
                      hidden_dim=768, intermediate_dim=3072, dropout=0.1),
    "bert_large": dict(model_type="bert", vocabulary_size=30522, embedding_dim=1024, num_layers=24, num_heads=16,
                       hidden_dim=1024, intermediate_dim=4096, dropout=0.1),
}
SETTINGS = {
    # system -> ((precision, xla), ...) it is measured in; torch has no XLA setting here
    "ours": [(p, x) for p in ("float32", "bf16") for x in ("false", "true")],
    "keras_hub": [(p, x) for p in ("float32", "bf16") for x in ("false", "true")],
    "torch": [("float32", "-"), ("bf16", "-")],
}
MAX_SEQUENCE_LENGTH = 512


def model_flops_per_sequence(preset, seq, predictions):
    """Matmul FLOPs of one training update per sequence: 3 x forward (the backward costs two forwards)."""
    c = PRESETS[preset]
    h, e, i, v, layers = c["hidden_dim"], c["embedding_dim"], c["intermediate_dim"], c["vocabulary_size"], c["num_layers"]
    forward = 2 * seq * e * h if e != h else 0  # ALBERT's embedding projection
    forward += layers * (2 * seq * 4 * h * h + 2 * 2 * seq * seq * h + 2 * 2 * seq * h * i)
    forward += 2 * predictions * (h * e + e * v)  # masked-LM transform and tied decoder, masked positions only
    forward += 2 * h * h + 2 * h * 2  # pooler and sentence-order classifier
    return 3 * forward


# ------------------------------------------------------------------------------------------ in the child process


def make_batch(preset, seq, batch, predictions):
    """The same random pretraining batch for every system (seed 0): distinct sorted masked positions."""
    import numpy as np

    rng = np.random.default_rng(0)
    vocab = PRESETS[preset]["vocabulary_size"]
    positions = np.stack([np.sort(rng.choice(np.arange(1, seq), predictions, replace=False)) for _ in range(batch)])
    return {
        "input_ids": rng.integers(5, vocab, (batch, seq)).astype("int32"),
        "input_mask": np.ones((batch, seq), "int32"),
        "segment_ids": (np.arange(seq) >= seq // 2).astype("int32")[None].repeat(batch, 0),
        "masked_lm_positions": positions.astype("int32"),
        "masked_lm_ids": rng.integers(5, vocab, (batch, predictions)).astype("int32"),
        "masked_lm_weights": np.ones((batch, predictions), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype("int32"),
    }


def peak_rss_bytes():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _keras_setup(config):
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.experimental.set_memory_growth(gpu, True)
    import keras

    keras.config.set_dtype_policy("mixed_bfloat16" if config["precision"] == "bf16" else "float32")
    keras.utils.set_random_seed(0)
    return keras, tf


def _fit_and_time(model, dataset, config, tf):
    """Trains with `fit` for warmup + steps updates; the time of each update is the time between the ends of
    consecutive ones (the loss is read, so the update has finished), as a user's `fit` runs them."""
    import keras

    ends, cpu = [], []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float((logs or {}).get("loss", 0.0))
            ends.append(time.perf_counter())
            cpu.append(time.process_time())

        def on_train_begin(self, logs=None):
            ends.append(time.perf_counter())
            cpu.append(time.process_time())

    steps = config["warmup"] + config["steps"]
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[Clock()])
    times = [b - a for a, b in zip(ends, ends[1:])][config["warmup"]:]
    cpu_times = [b - a for a, b in zip(cpu, cpu[1:])][config["warmup"]:]
    gpu = tf.config.list_physical_devices("GPU")
    memory = tf.config.experimental.get_memory_info("GPU:0")["peak"] if gpu else peak_rss_bytes()
    return times, cpu_times, memory, "GPU" if gpu else "CPU"


def build_ours(config):
    """`keras_albert.PretrainingModel` for `config["model"]`, compiled with LAMB (ALBERT's exclusions) as
    `keras-albert pretrain` compiles it."""
    keras, tf = _keras_setup(config)
    from keras_albert import PretrainingModel
    from keras_albert.optimizers import EXCLUDE_FROM_WEIGHT_DECAY, LAMB

    model = PretrainingModel.from_preset(config["model"], max_sequence_length=MAX_SEQUENCE_LENGTH)
    optimizer = LAMB(1e-4, weight_decay=0.01, exclude_from_weight_decay=list(EXCLUDE_FROM_WEIGHT_DECAY))
    model.compile(optimizer=optimizer, jit_compile=config["xla"] == "true")
    return model, tf


def build_keras_hub(config, data):
    """keras-hub's `AlbertMaskedLM` / `BertMaskedLM` with its default `compile`, and `data` as its `(x, y,
    sample_weight)`."""
    keras, tf = _keras_setup(config)
    import keras_hub

    c = dict(PRESETS[config["model"]])
    common = dict(vocabulary_size=c["vocabulary_size"], num_layers=c["num_layers"], num_heads=c["num_heads"],
                  hidden_dim=c["hidden_dim"], intermediate_dim=c["intermediate_dim"], dropout=c["dropout"],
                  max_sequence_length=MAX_SEQUENCE_LENGTH)
    if c["model_type"] == "albert":
        backbone = keras_hub.models.AlbertBackbone(embedding_dim=c["embedding_dim"], num_groups=1,
                                                   num_inner_repetitions=1, **common)
        task = keras_hub.models.AlbertMaskedLM(backbone, preprocessor=None)
    else:
        backbone = keras_hub.models.BertBackbone(**common)
        task = keras_hub.models.BertMaskedLM(backbone, preprocessor=None)
    task.compile(jit_compile=config["xla"] == "true")
    x = {"token_ids": data["input_ids"], "segment_ids": data["segment_ids"], "padding_mask": data["input_mask"],
         "mask_positions": data["masked_lm_positions"]}
    return task, (x, data["masked_lm_ids"], data["masked_lm_weights"]), tf


def run_ours(config, data):
    model, tf = build_ours(config)
    return _fit_and_time(model, tf.data.Dataset.from_tensors(data).repeat(), config, tf)


def run_keras_hub(config, data):
    task, batch, tf = build_keras_hub(config, data)
    return _fit_and_time(task, tf.data.Dataset.from_tensors(batch).repeat(), config, tf)


def run_torch(config, data):
    import numpy as np
    import torch
    import transformers

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    c = PRESETS[config["model"]]
    common = dict(vocab_size=c["vocabulary_size"], num_hidden_layers=c["num_layers"],
                  num_attention_heads=c["num_heads"], hidden_size=c["hidden_dim"],
                  intermediate_size=c["intermediate_dim"], hidden_dropout_prob=c["dropout"],
                  attention_probs_dropout_prob=c["dropout"], max_position_embeddings=MAX_SEQUENCE_LENGTH)
    if c["model_type"] == "albert":
        model = transformers.AlbertForPreTraining(
            transformers.AlbertConfig(embedding_size=c["embedding_dim"], hidden_act="gelu_new", **common)
        )
        order_key = "sentence_order_label"
    else:
        model = transformers.BertForPreTraining(transformers.BertConfig(hidden_act="gelu", **common))
        order_key = "next_sentence_label"
    model.to(device).train()
    labels = np.full(data["input_ids"].shape, -100, "int64")
    np.put_along_axis(labels, data["masked_lm_positions"].astype("int64"), data["masked_lm_ids"].astype("int64"), 1)
    inputs = {
        "input_ids": torch.tensor(data["input_ids"], dtype=torch.long, device=device),
        "attention_mask": torch.tensor(data["input_mask"], dtype=torch.long, device=device),
        "token_type_ids": torch.tensor(data["segment_ids"], dtype=torch.long, device=device),
        "labels": torch.tensor(labels, device=device),
        order_key: torch.tensor(data["next_sentence_labels"][:, 0], dtype=torch.long, device=device),
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, cpu_times = [], []
    for step in range(config["warmup"] + config["steps"]):
        start, start_cpu = time.perf_counter(), time.process_time()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=config["precision"] == "bf16"):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        loss.item()  # waits for the device
        if step >= config["warmup"]:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - start_cpu)
    memory = torch.cuda.max_memory_allocated() if device == "cuda" else peak_rss_bytes()
    return times, cpu_times, memory, device.upper()


def matmul_ceiling():
    """FLOP/s of a 2048x2048 matmul, float32 and bfloat16, in TensorFlow and in PyTorch (best of 5 x 10 calls)."""
    n, repeats = 2048, 10
    result = {}
    import tensorflow as tf

    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    for dtype in ("float32", "bfloat16"):
        with tf.device(device):
            a = tf.cast(tf.random.normal((n, n)), dtype)
            b = tf.cast(tf.random.normal((n, n)) / n**0.5, dtype)  # keeps the chain's values of order 1

            @tf.function
            def chain(a, b):
                for _ in range(repeats):  # each product feeds the next: none can be skipped or merged
                    a = tf.matmul(a, b)
                return a

            chain(a, b).numpy()
            best = min(_timed(lambda: chain(a, b).numpy()) for _ in range(5))
        result[f"tensorflow {dtype}"] = 2 * n**3 * repeats / best
    import torch

    torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    for dtype in ("float32", "bfloat16"):
        a = torch.randn(n, n, device=torch_device).to(getattr(torch, dtype))
        b = (torch.randn(n, n, device=torch_device) / n**0.5).to(getattr(torch, dtype))

        def chain():
            out = a
            for _ in range(repeats):
                out = out @ b
            out.sum().item()

        chain()
        best = min(_timed(chain) for _ in range(5))
        result[f"torch {dtype}"] = 2 * n**3 * repeats / best
    return result


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def child(config):
    if config["system"] == "ceiling":
        return matmul_ceiling()
    data = make_batch(config["model"], config["seq"], config["batch"], config["predictions"])
    runner = {"ours": run_ours, "keras_hub": run_keras_hub, "torch": run_torch}[config["system"]]
    times, cpu_times, memory, device = runner(config, data)
    return {"times": times, "cpu_times": cpu_times, "memory": memory, "device": device}


# ------------------------------------------------------------------------------------------ in the parent process


def run_child(config, timeout):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    try:
        result = subprocess.run([sys.executable, __file__, "--child", json.dumps(config)], capture_output=True,
                                text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": tail[:200]}
    return json.loads(lines[-1][len("RESULT "):])


def machine():
    cpu = platform.processor() or "?"
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("?", "x86_64", ""):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    shown = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{cpu}, {os.cpu_count()} cores ({' '.join(shown) or 'no AVX-512'})"


def versions():
    from importlib import metadata

    names = ("tensorflow", "keras", "keras-hub", "torch", "transformers", "keras-albert")
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} -")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "keras_albert"], capture_output=True, text=True,
                               cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
        found.append(f"commit {commit}{'+changes' if dirty else ''}")
    except OSError:
        pass
    return f"Python {platform.python_version()}, " + ", ".join(found)


def interleaved(systems):
    """(system, precision, XLA) in running order: each setting for every system in turn."""
    order = []
    for rank in range(max(len(SETTINGS[system]) for system in systems)):
        order += [(system, *SETTINGS[system][rank]) for system in systems if rank < len(SETTINGS[system])]
    return order


def parse_batches(text, seqs):
    """`8` (every length) or `128=8,512=2`."""
    if "=" not in text:
        return {seq: [int(b) for b in text.split(",")] for seq in seqs}
    batches = {}
    for item in text.split(","):
        seq, batch = item.split("=")
        batches.setdefault(int(seq), []).append(int(batch))
    return batches


def human_bytes(value):
    return f"{value / 2**30:.2f} GiB"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--models", default="albert_base,bert_base", help=f"of {', '.join(PRESETS)}")
    parser.add_argument("--seqs", default="128,512", help="sequence lengths")
    parser.add_argument("--batch", default="128=8,512=2",
                        help="sequences per update: one list for every length ('8' or '4,8'), or per length "
                        "('128=8,512=2')")
    parser.add_argument("--predictions", default="128=20,512=80",
                        help="masked positions per sequence, per length (default: 20 at 128, 80 at 512; "
                        "otherwise 15%% of the length)")
    parser.add_argument("--systems", default="ours,keras_hub,torch")
    parser.add_argument("--precisions", default="float32,bf16")
    parser.add_argument("--xla", default="false,true", help="XLA settings of the Keras systems")
    parser.add_argument("--warmup", type=int, default=2, help="updates before timing (compilation included)")
    parser.add_argument("--steps", type=int, default=6, help="timed updates")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per subprocess")
    parser.add_argument("--output", help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child))), flush=True)
        return

    seqs = [int(s) for s in args.seqs.split(",")]
    batches = parse_batches(args.batch, seqs)
    predictions = {int(k): int(v) for k, v in (item.split("=") for item in args.predictions.split(","))}
    systems = args.systems.split(",")
    precisions = args.precisions.split(",")
    xla = args.xla.split(",")
    lines = []

    def emit(line=""):
        print(line, flush=True)
        lines.append(line)

    started = datetime.datetime.now(datetime.timezone.utc)
    emit(f"# train_throughput: {started:%Y-%m-%d %H:%M} UTC")
    emit(f"machine: {machine()}")
    emit(f"versions: {versions()}")
    emit(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    emit(f"command: python benchmarks/{os.path.basename(__file__)} {' '.join(argv if argv is not None else sys.argv[1:])}")
    ceiling = run_child({"system": "ceiling"}, args.timeout)
    if "error" in ceiling:
        emit(f"matmul ceiling: failed ({ceiling['error']})")
        ceiling = {}
    else:
        emit("matmul ceiling (2048x2048): " + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in ceiling.items()))
    best_ceiling = {
        p: max([v for k, v in ceiling.items() if k.endswith(d)] or [0.0])
        for p, d in (("float32", "float32"), ("bf16", "bfloat16"))
    }

    rows = []
    for model in args.models.split(","):
        for seq in seqs:
            n_pred = predictions.get(seq, max(1, round(0.15 * seq)))
            for batch in batches.get(seq, []):
                # the systems take turns, setting by setting, so that a drift of the machine's speed over the
                # minutes of a run does not favour one system; the table lists them grouped by system
                for system, precision, x in interleaved(systems):
                    if precision not in precisions or (x != "-" and x not in xla):
                        continue
                    config = dict(system=system, model=model, seq=seq, batch=batch, predictions=n_pred,
                                  precision=precision, xla=x, warmup=args.warmup, steps=args.steps)
                    result = run_child(config, args.timeout)
                    rows.append((config, result))
                    if "error" in result:
                        print(f"  {system} {model} {seq} x{batch} {precision} xla={x}: failed: "
                              f"{result['error']}", flush=True)
                    else:
                        median = statistics.median(result["times"])
                        print(f"  {system} {model} {seq} x{batch} {precision} xla={x}: "
                              f"{batch / median:.2f} seq/s", flush=True)

    emit(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    emit()
    emit("| model | seq (pred.) | batch | system | precision | XLA | seq/s (median) | range of steps | CPU s/update "
         "| peak memory | ours / best peer | MFU |")
    emit("|---|---|---|---|---|---|---|---|---|---|---|---|")
    models = args.models.split(",")
    rows.sort(key=lambda row: (models.index(row[0]["model"]), seqs.index(row[0]["seq"]), row[0]["batch"],
                               systems.index(row[0]["system"])))
    best_peer = {}
    for config, result in rows:
        if "error" not in result and config["system"] != "ours":
            key = (config["model"], config["seq"], config["batch"])
            best_peer[key] = max(best_peer.get(key, 0.0), config["batch"] / statistics.median(result["times"]))
    for config, result in rows:
        head = (f"| {config['model']} | {config['seq']} ({config['predictions']}) | {config['batch']} | "
                f"{config['system']} | {config['precision']} | {config['xla']} | ")
        if "error" in result:
            emit(head + f"failed: {result['error'][:80]} | | | | | |")
            continue
        rates = [config["batch"] / t for t in result["times"]]
        rate = config["batch"] / statistics.median(result["times"])
        peer = best_peer.get((config["model"], config["seq"], config["batch"]))
        ratio = f"{rate / peer:.2f}x" if config["system"] == "ours" and peer else ""
        flops = model_flops_per_sequence(config["model"], config["seq"], config["predictions"])
        mfu = f"{100 * flops * rate / best_ceiling[config['precision']]:.0f}%" if best_ceiling[config["precision"]] else ""
        memory = ("RSS " if result["device"] == "CPU" else f"{result['device']} ") + human_bytes(result["memory"])
        cpu_seconds = statistics.median(result["cpu_times"])
        emit(head + f"{rate:.2f} | {min(rates):.2f}-{max(rates):.2f} | {cpu_seconds:.2f} | {memory} | {ratio} | "
             f"{mfu} |")
    emit()
    best = {}
    for config, result in rows:
        if "error" not in result:
            key = (config["model"], config["seq"], config["batch"], config["system"] == "ours")
            rate = config["batch"] / statistics.median(result["times"])
            if rate > best.get(key, (0.0, ""))[0]:
                best[key] = (rate, f"{config['system']} {config['precision']} XLA {config['xla']}")
    for (model, seq, batch, ours), (rate, setting) in best.items():
        peer = best.get((model, seq, batch, False))
        if ours and peer:
            emit(f"best at {model} {seq} x {batch}: ours {rate:.2f} seq/s ({setting}) vs {peer[0]:.2f} ({peer[1]}): "
                 f"{rate / peer[0]:.2f}x")
    emit()
    emit(f"{args.warmup} warm-up and {args.steps} timed updates per row, each row in its own process. Peak memory: "
         "resident set of the process on CPU (TensorFlow or PyTorch runtime included), allocator peak on a GPU. "
         "MFU counts the same model FLOPs for every system (masked-LM head at the masked positions only) against "
         "the faster 2048x2048 matmul of TensorFlow and PyTorch in the row's precision (ours computes 5.6-5.9% fewer "
         "of them: its last layer only at the rows the heads read). keras-hub's MaskedLM has no "
         "sentence-order head and trains with Adam; transformers' heads score every position; ours is LAMB. "
         "CPU s/update: processor time of the process per update (all its threads), steadier than wall time "
         "on a shared machine.")
    if args.output:
        with open(args.output, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
