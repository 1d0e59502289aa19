"""WarmupPolyDecay against the 2020 reference's LinearWarmupPolyDecaySchedule, values computed by hand.

Reference (aws-samples/deep-learning-models, models/nlp/common/learning_rate_schedules.py):
    step <= warmup: max_lr * step / max(1, warmup)
    else:           (max_lr - end_lr) * ((total - step) / max(1, total - warmup)) ** power + end_lr
"""

import copy

import keras
import numpy as np
import pytest

from keras_albert.optimizers import LAMB, WarmupPolyDecay

# learning_rate=1e-3, warmup_steps=100, total_steps=1000, end_learning_rate=1e-5; decay spans 900 steps.
HAND_VALUES = {
    1.0: {
        0: 0.0,  # start of warmup
        50: 5e-4,  # 1e-3 * 50 / 100
        100: 1e-3,  # end of warmup: the peak
        550: 5.05e-4,  # (1e-3 - 1e-5) * (450 / 900) + 1e-5 = 0.99e-3 * 0.5 + 1e-5
        1000: 1e-5,  # total_steps: end_learning_rate
    },
    2.0: {
        0: 0.0,
        50: 5e-4,
        100: 1e-3,
        550: 2.575e-4,  # 0.99e-3 * 0.5**2 + 1e-5
        775: 7.1875e-5,  # 0.99e-3 * (225 / 900)**2 + 1e-5 = 6.1875e-5 + 1e-5
        1000: 1e-5,
    },
}


@pytest.mark.parametrize("power", sorted(HAND_VALUES))
def test_reference_values(power):
    schedule = WarmupPolyDecay(1e-3, warmup_steps=100, total_steps=1000, end_learning_rate=1e-5, power=power)
    for step, want in HAND_VALUES[power].items():
        got = float(schedule(step))
        assert abs(got - want) <= 1e-9, f"step {step}: {got} != {want}"


def test_defaults_and_edges():
    schedule = WarmupPolyDecay(0.00176, warmup_steps=3125, total_steps=125000)
    assert float(schedule(3125)) == pytest.approx(0.00176, abs=1e-10)
    assert float(schedule(125000)) == 0.0  # end_learning_rate defaults to 0
    assert float(schedule(64062.5)) == pytest.approx(0.00088, abs=1e-9)  # half-way through the decay
    # Past total_steps the rate stays at end_learning_rate (the reference formula would go negative).
    assert float(WarmupPolyDecay(1e-3, 10, 100, end_learning_rate=1e-5)(150)) == pytest.approx(1e-5, abs=1e-12)
    # No warmup: the reference gives 0 at step 0 and starts decaying from step 1.
    no_warmup = WarmupPolyDecay(1e-3, warmup_steps=0, total_steps=10)
    assert float(no_warmup(0)) == 0.0
    assert float(no_warmup(1)) == pytest.approx(0.9e-3, abs=1e-10)


def test_validation_names_the_argument():
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupPolyDecay(1e-3, warmup_steps=200, total_steps=100)
    with pytest.raises(ValueError, match="total_steps"):
        WarmupPolyDecay(1e-3, warmup_steps=0, total_steps=0)
    with pytest.raises(ValueError, match="power"):
        WarmupPolyDecay(1e-3, warmup_steps=1, total_steps=10, power=0)


def test_counts_optimizer_updates():
    """The optimizer reads the schedule at its `iterations`: update k (0-based) uses schedule(k)."""
    schedule = WarmupPolyDecay(0.5, warmup_steps=2, total_steps=4)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    variable = keras.Variable(np.zeros((1,), "float32"))
    seen = []
    for _ in range(5):
        seen.append(float(optimizer.learning_rate))
        optimizer.apply([np.ones((1,), "float32")], [variable])
    # 0.5*0/2, 0.5*1/2, 0.5*2/2, 0.5*(4-3)/2, 0.5*(4-4)/2
    np.testing.assert_allclose(seen, [0.0, 0.25, 0.5, 0.25, 0.0], atol=1e-8)
    np.testing.assert_allclose(variable.numpy(), [-1.0], atol=1e-7)


def test_config_round_trip():
    schedule = WarmupPolyDecay(2e-3, warmup_steps=7, total_steps=70, end_learning_rate=1e-6, power=0.5)
    config = schedule.get_config()
    assert config == {
        "learning_rate": 2e-3,
        "warmup_steps": 7,
        "total_steps": 70,
        "end_learning_rate": 1e-6,
        "power": 0.5,
    }
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, WarmupPolyDecay)
    assert restored.get_config() == config
    for step in (0, 3, 7, 30, 70):
        assert float(restored(step)) == float(schedule(step))
    optimizer = LAMB(learning_rate=schedule)
    restored_optimizer = LAMB.from_config(copy.deepcopy(optimizer.get_config()))
    assert restored_optimizer._learning_rate.get_config() == config
