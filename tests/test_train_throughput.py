"""The throughput benchmark's FLOP count and `--mixed_precision auto` (figures themselves are not tested)."""

import os
import sys

import pytest

from keras_albert.training import runs


def _benchmark():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import train_throughput

    return train_throughput


def test_model_flops_of_albert_base_at_128():
    # 3 x forward: 12 layers x (QKV+O 4*S*H^2 + scores 2*S^2*H + FFN 2*S*H*I) x 2, the embedding projection, the
    # masked-LM head at 20 positions, the pooler: 67.6 GFLOP per sequence, as issue 12 counts it.
    flops = _benchmark().model_flops_per_sequence("albert_base", 128, 20)
    assert flops == pytest.approx(67.6e9, rel=2e-3)


def test_auto_precision_follows_the_device(monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    monkeypatch.setattr(runs, "_cpu_flags", lambda: {"avx512f", "amx_bf16"})
    assert runs.resolve_precision("auto") == "bf16"
    # AVX-512 BF16 alone: bf16 only where a bfloat16 matmul measures faster
    monkeypatch.setattr(runs, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    monkeypatch.setattr(runs, "_cpu_bfloat16_speedup", lambda: 1.6)
    assert runs.resolve_precision("auto") == "bf16"
    monkeypatch.setattr(runs, "_cpu_bfloat16_speedup", lambda: 0.5)
    assert runs.resolve_precision("auto") == "none"
    monkeypatch.setattr(runs, "_cpu_flags", lambda: {"avx2"})
    assert runs.resolve_precision("auto") == "none"
    assert runs.resolve_precision("fp16") == "fp16"


def test_the_systems_take_turns_setting_by_setting():
    order = _benchmark().interleaved(["ours", "keras_hub", "torch"])
    assert order[:3] == [("ours", "float32", "false"), ("keras_hub", "float32", "false"), ("torch", "float32", "-")]
    assert len(order) == len(set(order)) == 10  # every setting of every system, once
    assert [row for row in order if row[0] == "ours"] == [("ours", p, x) for p in ("float32", "bf16")
                                                           for x in ("false", "true")]
