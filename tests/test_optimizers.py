"""LAMB and AdamW against NumPy transcriptions of their published update rules (TF Addons' LAMB, BERT's AdamW).

The oracles below are written from the algorithms, in float64, and never call keras_albert. Gradients are fed
straight to `optimizer.apply` inside a `tf.function` (as `train_step` does), one of them as `tf.IndexedSlices`.
"""

import copy
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_albert.optimizers import EXCLUDE_FROM_WEIGHT_DECAY, LAMB, AdamW, WarmupPolyDecay

STEPS = 10
TOLERANCE = 1e-6


class Tiny(keras.Model):
    """Variables whose full paths look like an encoder's: embeddings, dense, a LayerNorm."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = keras.layers.Embedding(10, 4, name="word_embeddings")
        self.hidden = keras.layers.Dense(4, name="hidden")
        self.norm = keras.layers.LayerNormalization(name="attention_layer_norm")
        self.head = keras.layers.Dense(3, name="output")

    def call(self, ids):
        return self.head(self.norm(self.hidden(self.embeddings(ids))))


def make_model():
    keras.utils.set_random_seed(0)
    model = Tiny(name="tiny_model")
    model(np.zeros((2, 5), "int32"))
    return model


EMBEDDINGS = "tiny_model/word_embeddings/embeddings"
ZERO_ALWAYS = "tiny_model/attention_layer_norm/beta"  # starts at 0 and never gets a gradient: both norms are 0
ZERO_SOMETIMES = "tiny_model/output/kernel"  # zero gradient on steps 4-6


def gradient_plan(model, seed=1):
    """Per step, per variable path: the dense gradient, and for the embeddings the (indices, values) of a sparse one."""
    rng = np.random.default_rng(seed)
    plan = []
    for step in range(1, STEPS + 1):
        grads = {}
        for variable in model.trainable_variables:
            shape = tuple(variable.shape)
            if variable.path == EMBEDDINGS:
                indices = rng.integers(0, shape[0], size=6)
                indices[1] = indices[0]  # a repeated row: IndexedSlices must be summed, not overwritten
                values = rng.normal(size=(6, shape[1]))
                dense = np.zeros(shape)
                np.add.at(dense, indices, values)
                grads[variable.path] = (dense, indices, values)
            elif variable.path == ZERO_ALWAYS or (variable.path == ZERO_SOMETIMES and 4 <= step <= 6):
                grads[variable.path] = np.zeros(shape)
            else:
                grads[variable.path] = rng.normal(size=shape)
        plan.append(grads)
    return plan


def run_optimizer(optimizer, model, plan):
    variables = model.trainable_variables

    @tf.function
    def apply(grads):
        optimizer.apply(grads, variables)

    for grads in plan:
        tensors = []
        for variable in variables:
            grad = grads[variable.path]
            if variable.path == EMBEDDINGS:
                _, indices, values = grad
                tensors.append(
                    tf.IndexedSlices(
                        tf.constant(values, tf.float32),
                        tf.constant(indices, tf.int64),
                        tf.constant(variable.shape, tf.int64),
                    )
                )
            else:
                tensors.append(tf.constant(grad, tf.float32))
        apply(tensors)
    return {variable.path: variable.numpy() for variable in variables}


def dense_of(grad):
    return grad[0] if isinstance(grad, tuple) else grad


def f32(x):
    """A hyperparameter as a float32 optimizer holds it (0.999 is 0.99900001 in float32: 1 - beta_2 differs by 1e-5
    relative). The oracles compute in float64 with these values."""
    return float(np.float32(x))


def excluded(patterns, path):
    return any(re.search(pattern, path) for pattern in patterns or [])


def reference_lr(step0, learning_rate):
    """Learning rate of the update made at 0-based step `step0`: constant, or the reference's warmup/poly formula."""
    if not isinstance(learning_rate, dict):
        return f32(learning_rate)
    peak, end = learning_rate["peak"], learning_rate["end"]
    warmup, total, power = learning_rate["warmup"], learning_rate["total"], learning_rate["power"]
    if step0 <= warmup:
        return peak * step0 / max(1, warmup)
    return (peak - end) * ((total - step0) / max(1, total - warmup)) ** power + end


def numpy_lamb(weights, plan, learning_rate, beta_1, beta_2, epsilon, weight_decay, exclude_wd, exclude_adapt):
    """TensorFlow Addons' LAMB (`tfa.optimizers.LAMB._resource_apply_dense`), transcribed in float64."""
    beta_1, beta_2, epsilon, weight_decay = f32(beta_1), f32(beta_2), f32(epsilon), f32(weight_decay)
    if not exclude_adapt:
        exclude_adapt = exclude_wd  # TF Addons: layer adaptation exclusions default to the weight-decay ones
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for step0, grads in enumerate(plan):
        t = step0 + 1
        lr = reference_lr(step0, learning_rate)
        for path in w:
            g = dense_of(grads[path])
            m[path] = beta_1 * m[path] + (1 - beta_1) * g
            v[path] = beta_2 * v[path] + (1 - beta_2) * g * g
            m_hat = m[path] / (1 - beta_1**t)
            v_hat = v[path] / (1 - beta_2**t)
            update = m_hat / (np.sqrt(v_hat) + epsilon)
            if not excluded(exclude_wd, path):
                update = update + weight_decay * w[path]
            ratio = 1.0
            if not excluded(exclude_adapt, path):
                w_norm = np.linalg.norm(w[path])
                g_norm = np.linalg.norm(update)
                if w_norm > 0 and g_norm > 0:
                    ratio = w_norm / g_norm
            w[path] = w[path] - ratio * lr * update
    return w


def numpy_adamw(weights, plan, learning_rate, beta_1, beta_2, epsilon, weight_decay, exclude_wd, bias_correction):
    """BERT's AdamWeightDecay (decoupled decay times the learning rate), optionally with Adam's bias correction."""
    beta_1, beta_2, epsilon, weight_decay = f32(beta_1), f32(beta_2), f32(epsilon), f32(weight_decay)
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for step0, grads in enumerate(plan):
        t = step0 + 1
        lr = reference_lr(step0, learning_rate)
        for path in w:
            g = dense_of(grads[path])
            m[path] = beta_1 * m[path] + (1 - beta_1) * g
            v[path] = beta_2 * v[path] + (1 - beta_2) * g * g
            m_use, v_use = m[path], v[path]
            if bias_correction:
                m_use = m_use / (1 - beta_1**t)
                v_use = v_use / (1 - beta_2**t)
            update = m_use / (np.sqrt(v_use) + epsilon)
            if not excluded(exclude_wd, path):
                update = update + weight_decay * w[path]
            w[path] = w[path] - lr * update
    return w


SCHEDULE = {"peak": 0.02, "end": 0.001, "warmup": 3, "total": 12, "power": 2.0}


def keras_lr(learning_rate):
    if isinstance(learning_rate, dict):
        return WarmupPolyDecay(
            learning_rate["peak"],
            warmup_steps=learning_rate["warmup"],
            total_steps=learning_rate["total"],
            end_learning_rate=learning_rate["end"],
            power=learning_rate["power"],
        )
    return learning_rate


LAMB_CASES = {
    "decay_default_adaptation": dict(
        learning_rate=0.01, weight_decay=0.01, exclude_wd=["layer_norm", "bias"], exclude_adapt=None
    ),
    "no_decay_own_adaptation": dict(
        learning_rate=0.01, weight_decay=0.0, exclude_wd=["layer_norm", "bias"], exclude_adapt=["word_embeddings"]
    ),
    "decay_everything_schedule": dict(learning_rate=SCHEDULE, weight_decay=0.1, exclude_wd=None, exclude_adapt=None),
    # "output/kernel" exists only in the full path ("kernel" alone would also hit hidden/kernel).
    "full_path_only_patterns": dict(
        learning_rate=0.01,
        weight_decay=0.05,
        exclude_wd=["tiny_model/output/kernel$", "norm/gamma"],
        exclude_adapt=["^tiny_model/hidden/"],
    ),
}


@pytest.mark.parametrize("case", sorted(LAMB_CASES))
def test_lamb_matches_tf_addons_rule(case):
    spec = LAMB_CASES[case]
    model = make_model()
    initial = {v.path: v.numpy() for v in model.trainable_variables}
    plan = gradient_plan(model)
    optimizer = LAMB(
        learning_rate=keras_lr(spec["learning_rate"]),
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-6,
        weight_decay=spec["weight_decay"],
        exclude_from_weight_decay=spec["exclude_wd"],
        exclude_from_layer_adaptation=spec["exclude_adapt"],
    )
    got = run_optimizer(optimizer, model, plan)
    want = numpy_lamb(
        initial, plan, spec["learning_rate"], 0.9, 0.999, 1e-6, spec["weight_decay"], spec["exclude_wd"],
        spec["exclude_adapt"],
    )
    assert int(optimizer.iterations.numpy()) == STEPS
    for path in want:
        diff = np.max(np.abs(got[path] - want[path]))
        assert diff <= TOLERANCE, f"{case}: {path} differs by {diff:.3g}"
        if path != ZERO_ALWAYS:
            assert np.max(np.abs(got[path] - initial[path])) > 1e-4, f"{case}: {path} did not move"
    # Zero weights with zero gradients: both norms are 0, ratio 1, update 0 (decay of 0 is 0): no NaN, no move.
    assert np.array_equal(got[ZERO_ALWAYS], initial[ZERO_ALWAYS])


def test_lamb_exclusions_change_the_result():
    """The exclusion lists are not inert: matching by full path changes exactly the matched variables."""
    model = make_model()
    plan = gradient_plan(model)
    with_exclusion = run_optimizer(
        LAMB(0.01, weight_decay=0.1, exclude_from_weight_decay=["tiny_model/output/kernel$"]), model, plan
    )
    model = make_model()
    without = run_optimizer(LAMB(0.01, weight_decay=0.1), model, plan)
    changed = {p for p in without if not np.allclose(without[p], with_exclusion[p], atol=1e-7)}
    assert changed == {"tiny_model/output/kernel"}


def test_lamb_keras_weight_decay_is_not_applied_twice():
    """Keras' decoupled decay stays off: with a zero gradient, no adaptation, weight decay wd, one step moves
    w by exactly lr * wd * w (TF Addons), not by twice that."""
    keras.utils.set_random_seed(0)
    variable = keras.Variable(np.array([[1.0, -2.0], [3.0, 0.5]], "float32"), name="kernel")
    optimizer = LAMB(0.1, weight_decay=0.5, exclude_from_layer_adaptation=["kernel"])
    optimizer.apply([tf.zeros((2, 2))], [variable])
    np.testing.assert_allclose(variable.numpy(), np.array([[1.0, -2.0], [3.0, 0.5]]) * (1 - 0.1 * 0.5), atol=1e-7)


ADAMW_CASES = {
    "bias_corrected": dict(learning_rate=0.01, weight_decay=0.01, exclude_wd=list(EXCLUDE_FROM_WEIGHT_DECAY), bc=True),
    "google_bert_no_correction": dict(
        learning_rate=0.01, weight_decay=0.01, exclude_wd=["layer_norm", "bias"], bc=False
    ),
    "no_decay_schedule": dict(learning_rate=SCHEDULE, weight_decay=0.0, exclude_wd=None, bc=True),
    "full_path_only_patterns": dict(
        learning_rate=0.01, weight_decay=0.2, exclude_wd=["tiny_model/output/kernel$"], bc=True
    ),
}


@pytest.mark.parametrize("case", sorted(ADAMW_CASES))
def test_adamw_matches_bert_rule(case):
    spec = ADAMW_CASES[case]
    model = make_model()
    initial = {v.path: v.numpy() for v in model.trainable_variables}
    plan = gradient_plan(model)
    optimizer = AdamW(
        learning_rate=keras_lr(spec["learning_rate"]),
        weight_decay=spec["weight_decay"],
        exclude_from_weight_decay=spec["exclude_wd"],
        bias_correction=spec["bc"],
    )
    got = run_optimizer(optimizer, model, plan)
    want = numpy_adamw(
        initial, plan, spec["learning_rate"], 0.9, 0.999, 1e-6, spec["weight_decay"], spec["exclude_wd"], spec["bc"]
    )
    for path in want:
        diff = np.max(np.abs(got[path] - want[path]))
        assert diff <= TOLERANCE, f"{case}: {path} differs by {diff:.3g}"


def test_weight_decay_rate_alias_and_validation():
    assert LAMB(weight_decay_rate=0.01).weight_decay == 0.01
    assert AdamW(weight_decay_rate=0.02).weight_decay == 0.02
    with pytest.raises(ValueError, match="weight_decay_rate"):
        LAMB(weight_decay=0.1, weight_decay_rate=0.2)
    with pytest.raises(ValueError, match="exclude_from_weight_decay"):
        LAMB(exclude_from_weight_decay="bias")
    with pytest.raises(ValueError, match="exclude_from_layer_adaptation"):
        LAMB(exclude_from_layer_adaptation=["("])
    assert LAMB(learning_rate=1).get_config()["learning_rate"] == 1.0


@pytest.mark.parametrize("cls", [LAMB, AdamW])
def test_config_round_trip(cls):
    kwargs = dict(
        learning_rate=WarmupPolyDecay(0.002, warmup_steps=10, total_steps=100, end_learning_rate=1e-5, power=0.5),
        beta_1=0.8,
        beta_2=0.95,
        epsilon=1e-7,
        weight_decay=0.03,
        exclude_from_weight_decay=["layer_norm", "bias"],
        global_clipnorm=1.0,
    )
    if cls is LAMB:
        kwargs["exclude_from_layer_adaptation"] = ["embeddings"]
    else:
        kwargs["bias_correction"] = False
    optimizer = cls(**kwargs)
    config = optimizer.get_config()
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is cls
    assert restored.get_config() == config
    assert restored.get_config()["learning_rate"]["config"]["power"] == 0.5
    assert cls.from_config(copy.deepcopy(config)).get_config() == config  # from_config edits its argument


def test_keras_save_and_load_with_lamb_and_schedule(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 2)).astype("float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(2)])
    model.compile(
        optimizer=LAMB(
            learning_rate=WarmupPolyDecay(0.01, warmup_steps=2, total_steps=10, end_learning_rate=0.001),
            weight_decay=0.01,
            exclude_from_weight_decay=["bias"],
        ),
        loss="mse",
    )
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    path = str(tmp_path / "tiny.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)

    assert isinstance(loaded.optimizer, LAMB)
    assert isinstance(loaded.optimizer._learning_rate, WarmupPolyDecay)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert int(loaded.optimizer.iterations.numpy()) == 4
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Resuming from the file continues exactly where the original goes.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-7)
