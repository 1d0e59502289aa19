"""Where one pretraining update's time goes: TensorFlow's profiler over a few `train_on_batch` updates, summarised.

    python benchmarks/profile_train_step.py --preset albert_base --batch 8 --seq 128
    python benchmarks/profile_train_step.py --system keras_hub --xla true      # keras-hub's AlbertMaskedLM
    python benchmarks/profile_train_step.py --preset bert_base --xla true     # BERT, whole step compiled

Needs `pip install xprof` (the profiler's converters; not a dependency of the library). Prints the host ops by
self time, grouped by op type and by op name (the top `--top` of each), as seconds per update and share of the
total; `--trace_dir` keeps the raw profile for TensorBoard / XProf.
"""

import argparse
import collections
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_throughput  # noqa: E402  (the same presets and random batch as the throughput suite)


def build(args):
    """One `train_on_batch` update of the system, built as the throughput suite builds it (`build_ours`,
    `build_keras_hub`), on its random batch."""
    config = {"model": args.preset, "precision": args.precision, "xla": args.xla}
    data = train_throughput.make_batch(args.preset, args.seq, args.batch, args.predictions)
    if args.system == "keras_hub":
        task, (x, y, sample_weight), _ = train_throughput.build_keras_hub(config, data)
        return lambda: task.train_on_batch(x, y, sample_weight=sample_weight)
    model, _ = train_throughput.build_ours(config)
    if args.fast_encoder == "false":  # back to keras-hub's own call on the same variables
        import keras_hub

        for layer in model.backbone.layers:
            if isinstance(layer, keras_hub.layers.TransformerEncoder):
                layer.__class__ = keras_hub.layers.TransformerEncoder
    return lambda: model.train_on_batch(data)


def summarise(trace_dir, updates, top):
    from xprof.convert import raw_to_tool_data

    paths = []
    for root, _, files in os.walk(trace_dir):
        paths += [os.path.join(root, f) for f in files if f.endswith(".xplane.pb")]
    data, _ = raw_to_tool_data.xspace_to_tool_data(paths, "framework_op_stats", {})
    table = json.loads(data)
    table = table[0] if isinstance(table, list) else table
    columns = [c["id"] for c in table["cols"]]
    rows = [dict(zip(columns, [cell.get("v") if cell else None for cell in r["c"]])) for r in table["rows"]]
    host = [r for r in rows if str(r.get("host_or_device", "")).lower() == "host"] or rows
    by_type, by_name = collections.Counter(), collections.Counter()
    for r in host:
        seconds = float(r["total_self_time"]) / 1e6  # microseconds
        by_type[r["type"]] += seconds
        by_name[f"{r['type']}  {r['operation']}"] += seconds
    total = sum(by_type.values())
    print(f"host ops' self time: {total / updates:.3f} s per update ({updates} updates profiled)")
    for title, counter in (("by op type", by_type), ("by op", by_name)):
        print(f"\n{title}:")
        for name, seconds in counter.most_common(top):
            print(f"  {seconds / updates * 1000:9.1f} ms  {100 * seconds / total:5.1f}%  {name[:110]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", default="ours", choices=("ours", "keras_hub"))
    parser.add_argument("--preset", default="albert_base", choices=list(train_throughput.PRESETS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--predictions", type=int, default=20)
    parser.add_argument("--precision", default="float32", choices=("float32", "bf16"))
    parser.add_argument("--xla", default="false", choices=("false", "true"))
    parser.add_argument("--fast_encoder", default="true", choices=("false", "true"), help="ours only")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--updates", type=int, default=3, help="updates profiled")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--trace_dir", help="keep the profile here (default: a temporary folder)")
    args = parser.parse_args(argv)
    import tensorflow as tf

    step = build(args)
    for _ in range(args.warmup):
        step()
    trace_dir = args.trace_dir or tempfile.mkdtemp(prefix="keras-albert-profile-")
    start = time.perf_counter()
    tf.profiler.experimental.start(trace_dir)
    for _ in range(args.updates):
        step()
    tf.profiler.experimental.stop()
    print(f"{args.system} {args.preset} {args.seq} x {args.batch} {args.precision} XLA {args.xla}: "
          f"{(time.perf_counter() - start) / args.updates:.3f} s per profiled update (profiler overhead included)")
    summarise(trace_dir, args.updates, args.top)


if __name__ == "__main__":
    main()
