"""The run-building layer: its TensorFlow-free tables, how messages spell settings, the precision it restores."""

import subprocess
import sys

import pytest

from keras_albert import UserInputError
from keras_albert.training import choices
from keras_albert.training.validation import check_integer, flag_names, name


def test_the_tensorflow_free_tables_name_the_presets():
    from keras_albert.models.presets import PRESETS

    assert choices.PRESET_NAMES == tuple(PRESETS)
    assert choices.MODEL_TYPES == ("albert", "bert")
    assert choices.MODEL_SIZES == ("tiny", "small", "base", "large", "xlarge", "xxlarge")
    assert {PRESETS[name]["model_type"] for name in PRESETS} == set(choices.MODEL_TYPES)
    assert all(choices.preset_name(*name.split("_", 1)) in PRESETS for name in PRESETS)


def test_the_commands_and_the_run_layer_import_without_tensorflow():
    """The commands check their settings before the strategy exists, which must come before any TensorFlow op."""
    code = (
        "import sys\n"
        "import keras_albert.commands.pretrain, keras_albert.commands.squad, keras_albert.commands.quickstart\n"
        "import keras_albert.training.pretrain, keras_albert.training.squad, keras_albert.training.runs\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'keras_hub') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


class _Settings:
    total_steps = 0


def test_a_message_names_a_setting_as_its_caller_spells_it():
    with pytest.raises(UserInputError) as from_python:
        check_integer(_Settings(), "total_steps")
    with flag_names():
        assert name("total_steps") == "--total_steps"
        with pytest.raises(UserInputError) as from_flags:
            check_integer(_Settings(), "total_steps")
    assert name("total_steps") == "total_steps"  # restored after the block
    assert str(from_python.value) == "total_steps must be an integer >= 1. Received: 0"
    assert str(from_flags.value) == "--total_steps must be an integer >= 1. Received: 0"


def test_precision_policy_is_restored_after_the_block_even_when_it_raises():
    import keras

    from keras_albert.training.runs import precision_policy

    assert keras.config.dtype_policy().name == "float32"
    with precision_policy("bf16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(RuntimeError, match="inside"):
        with precision_policy("fp16"):
            assert keras.config.dtype_policy().name == "mixed_float16"
            raise RuntimeError("inside")
    assert keras.config.dtype_policy().name == "float32"
    with precision_policy("none"):
        assert keras.config.dtype_policy().name == "float32"


def test_one_optimizer_factory_for_both_runs():
    import numpy as np

    from keras_albert.optimizers import LAMB, AdamW
    from keras_albert.training.runs import build_optimizer

    lamb = build_optimizer("lamb", 1e-3, warmup_steps=10, total_steps=100, end_learning_rate=1e-5, decay_power=2.0)
    assert isinstance(lamb, LAMB) and lamb.weight_decay == 0.01
    schedule = lamb.learning_rate if callable(lamb.learning_rate) else lamb._learning_rate
    # The reference's schedule, written out: linear warmup to the peak, then (peak - end) * (1 - t)^power + end.
    for step, expected in ((5, 1e-3 * 5 / 10), (55, (1e-3 - 1e-5) * (1 - 45 / 90) ** 2 + 1e-5)):
        assert float(np.asarray(schedule(step))) == pytest.approx(expected, rel=1e-6)
    scaled = build_optimizer("adamw", 1e-3, warmup_steps=0, total_steps=10, loss_scale=True)
    assert isinstance(scaled.inner_optimizer, AdamW)
    with pytest.raises(UserInputError, match=r"^warmup_steps/total_steps: "):
        build_optimizer("adamw", 1e-3, warmup_steps=20, total_steps=10)
