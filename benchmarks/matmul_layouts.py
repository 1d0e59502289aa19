"""GFLOP/s of an encoder layer's matmuls in each operand layout, as TensorFlow (oneDNN) and XLA run them.

    python benchmarks/matmul_layouts.py                      # BERT/ALBERT-base shapes, 8 x 128 tokens
    python benchmarks/matmul_layouts.py --rows 1024 --hidden 1024 --intermediate 4096

For each weight of the layer (fused Q/K/V, attention output, the two feed-forward kernels) it times the forward
product and the ways of writing its two gradients: the input gradient `dy @ W^T` as TensorFlow's own gradient writes
it (`transpose_b`) and with `W^T` materialised beforehand (what `fast_layers._linear` does), and the weight gradient
`x^T @ dy` with `transpose_a` or a materialised transpose. Median of `--rounds` rounds of `--repeats` products each,
after warm-up. Why `fast_layers.prepare()` transposes the kernels: on the 2-core Xeon of issue 12, `dy @ W^T` for
the first feed-forward kernel ran at 266 GFLOP/s with `transpose_b` and at 313 with the transpose materialised.
"""

import argparse
import statistics
import time


def _seconds(function, a, b, repeats, rounds):
    for _ in range(3):
        function(a, b).numpy()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            result = function(a, b)
        result.numpy()
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1024, help="tokens per batch (batch x sequence length)")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--intermediate", type=int, default=3072)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    import tensorflow as tf

    def product(transpose_a=False, transpose_b=False, transpose_first=False, xla=False):
        def multiply(a, b):
            if transpose_first:
                a = tf.transpose(a)
            return tf.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)

        return tf.function(multiply, jit_compile=xla)

    rows, hidden, intermediate = args.rows, args.hidden, args.intermediate
    weights = {"qkv": (hidden, 3 * hidden), "attention output": (hidden, hidden),
               "feed-forward in": (hidden, intermediate), "feed-forward out": (intermediate, hidden)}
    print(f"GFLOP/s, {rows} rows; TensorFlow graph (oneDNN) / XLA")
    for name, (fan_in, fan_out) in weights.items():
        x, w = tf.random.normal([rows, fan_in]), tf.random.normal([fan_in, fan_out])
        dy, w_t = tf.random.normal([rows, fan_out]), tf.transpose(w)
        x_t = tf.transpose(x)
        flops = 2 * rows * fan_in * fan_out / 1e9
        cases = {
            "x @ W": (dict(), x, w),
            "dx = dy @ W^T (transpose_b)": (dict(transpose_b=True), dy, w),
            "dx = dy @ (W^T materialised)": (dict(), dy, w_t),
            "dW = x^T @ dy (transpose_a)": (dict(transpose_a=True), x, dy),
            "dW = (x^T materialised) @ dy": (dict(), x_t, dy),
            "dW = transpose(x) @ dy, transpose included": (dict(transpose_first=True), x, dy),
        }
        print(f"{name} [{fan_in} x {fan_out}]")
        for label, (options, a, b) in cases.items():
            rates = [flops / _seconds(product(**options, xla=xla), a, b, args.repeats, args.rounds)
                     for xla in (False, True)]
            print(f"  {label:45s} {rates[0]:6.0f} / {rates[1]:6.0f}", flush=True)


if __name__ == "__main__":
    main()
