"""`FastTransformerEncoder` against keras-hub's own `TransformerEncoder.call`: same weights, same batch.

Each test runs one encoder twice: first with its layers as keras-hub built them (keras-hub's call is the oracle),
then switched to the fast call with `use_fast_encoder` (a class change: the same variables, the same dropout seed
state restored), and compares outputs and every gradient.
"""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_albert import PretrainingModel
from keras_albert.models import AlbertEncoder, BertEncoder, PRESETS
from keras_albert.models.fast_layers import FastTransformerEncoder, use_fast_encoder
from keras_albert.models.presets import preset_config

BATCH, SEQ = 3, 24


def _encoder(preset, dtype, dropout=None):
    keras.utils.set_random_seed(0)
    config = preset_config(preset, max_sequence_length=32)
    if dropout is not None:
        config["dropout"] = dropout
    cls = {"albert": AlbertEncoder, "bert": BertEncoder}[config.pop("model_type")]
    return cls(**config, fast_encoder=False, dtype=dtype)


def _batch(preset, padding):
    rng = np.random.default_rng(1)
    mask = np.ones((BATCH, SEQ), "int32")
    if padding:
        for row, length in enumerate((SEQ, 17, 5)):
            mask[row, length:] = 0
    return {
        "token_ids": rng.integers(5, PRESETS[preset]["vocabulary_size"], (BATCH, SEQ)).astype("int32") * mask,
        "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype("int32")[None].repeat(BATCH, 0) * mask,
        "padding_mask": mask,
    }


def _outputs_and_gradients(encoder, batch, training):
    seeds = [v for v in encoder.non_trainable_variables if "seed_generator" in v.path]
    state = [v.numpy() for v in seeds]
    weights = tf.random.stateless_normal((BATCH, SEQ, encoder.hidden_dim), seed=(2, 3))
    with tf.GradientTape() as tape:
        outputs = encoder(batch, training=training)
        loss = tf.reduce_sum(tf.cast(outputs["sequence_output"], "float32") * weights)
        loss += tf.reduce_sum(tf.cast(outputs["pooled_output"], "float32"))
    gradients = tape.gradient(loss, encoder.trainable_variables)
    for variable, value in zip(seeds, state):
        variable.assign(value)  # the second run draws the same dropout masks
    return {k: tf.cast(v, "float32").numpy() for k, v in outputs.items()}, [tf.convert_to_tensor(g).numpy() for g in gradients]


def _relative_error(actual, expected):
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def _gradient_errors(variables, gradients, expected_gradients):
    """Largest difference of each variable's gradient, relative to the largest entry of the expected one."""
    scale = {v.path: np.abs(g).max() for v, g in zip(variables, expected_gradients)}
    errors = {}
    for variable, actual, expected in zip(variables, gradients, expected_gradients):
        path = variable.path
        if path.endswith("key/bias"):
            # zero in exact arithmetic (softmax ignores a shift shared by all keys): both are round-off, measured
            # against the query bias's gradient
            denominator = scale[path.replace("key/bias", "query/bias")]
        else:
            assert scale[path] > 0, path
            denominator = scale[path]
        errors[path] = float(np.abs(actual - expected).max() / denominator)
    return errors


@pytest.mark.parametrize("preset", ["albert_tiny", "bert_tiny"])
@pytest.mark.parametrize("padding", [False, True])
@pytest.mark.parametrize("training", [False, True])
def test_fast_call_matches_keras_hub_in_float32(preset, padding, training):
    encoder = _encoder(preset, "float32")
    layers = [layer for layer in encoder.layers if isinstance(layer, keras_hub.layers.TransformerEncoder)]
    assert layers and all(type(layer) is keras_hub.layers.TransformerEncoder for layer in layers)
    batch = _batch(preset, padding)
    expected_outputs, expected_gradients = _outputs_and_gradients(encoder, batch, training)

    names = [v.path for v in encoder.variables]
    use_fast_encoder(encoder)
    assert all(type(layer) is FastTransformerEncoder for layer in layers)
    assert [v.path for v in encoder.variables] == names
    outputs, gradients = _outputs_and_gradients(encoder, batch, training)

    if training and PRESETS[preset]["dropout"]:  # the comparison is only meaningful if dropout dropped something
        eval_outputs, _ = _outputs_and_gradients(encoder, batch, False)
        assert _relative_error(eval_outputs["sequence_output"], outputs["sequence_output"]) > 1e-2
    rows = batch["padding_mask"].astype(bool)  # padded positions' outputs are not defined to round-off
    assert _relative_error(outputs["sequence_output"][rows], expected_outputs["sequence_output"][rows]) < 1e-5
    assert _relative_error(outputs["pooled_output"], expected_outputs["pooled_output"]) < 1e-5
    errors = _gradient_errors(encoder.trainable_variables, gradients, expected_gradients)
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("preset", ["albert_tiny", "bert_tiny"])
@pytest.mark.parametrize("padding", [False, True])
def test_fast_call_in_mixed_bfloat16_is_as_close_to_float32_as_keras_hub(preset, padding):
    """bfloat16 round-off differs between any two orders of computation; the oracle is float32 (the same weights):
    the fast call in mixed_bfloat16 must be about as close to it as keras-hub's call in mixed_bfloat16 is."""
    encoder = _encoder(preset, "mixed_bfloat16", dropout=0.0)
    reference = _encoder(preset, "float32", dropout=0.0)
    reference.set_weights(encoder.get_weights())
    batch = _batch(preset, padding)
    rows = batch["padding_mask"].astype(bool)
    exact_outputs, exact_gradients = _outputs_and_gradients(reference, batch, False)
    hub_outputs, hub_gradients = _outputs_and_gradients(encoder, batch, False)
    use_fast_encoder(encoder)
    fast_outputs, fast_gradients = _outputs_and_gradients(encoder, batch, False)

    def output_error(outputs):
        return _relative_error(outputs["sequence_output"][rows], exact_outputs["sequence_output"][rows])

    hub_error = output_error(hub_outputs)
    assert 0 < hub_error < 0.1  # bfloat16 is in use, and close
    assert output_error(fast_outputs) < 1.5 * hub_error
    hub_errors = _gradient_errors(encoder.trainable_variables, hub_gradients, exact_gradients)
    fast_errors = _gradient_errors(encoder.trainable_variables, fast_gradients, exact_gradients)
    assert max(fast_errors.values()) < 1.5 * max(hub_errors.values()), (fast_errors, hub_errors)
    assert np.median(list(fast_errors.values())) < 1.5 * np.median(list(hub_errors.values()))


@pytest.mark.parametrize("preset", ["albert_tiny", "bert_tiny"])
def test_fast_call_under_xla_matches(preset):
    """The fast call's inner XLA functions inside a step that is itself compiled with XLA."""
    encoder = _encoder(preset, "float32", dropout=0.0)
    batch = _batch(preset, padding=True)
    expected = encoder(batch)["sequence_output"].numpy()
    use_fast_encoder(encoder)
    actual = tf.function(lambda b: encoder(b)["sequence_output"], jit_compile=True)(batch).numpy()
    rows = batch["padding_mask"].astype(bool)
    assert _relative_error(actual[rows], expected[rows]) < 1e-5


def test_presets_use_the_fast_call_and_round_trip(tmp_path):
    model = PretrainingModel.from_preset("albert_tiny", max_sequence_length=32)
    assert model.backbone.fast_encoder
    assert all(type(layer) is FastTransformerEncoder
               for layer in model.backbone.layers if isinstance(layer, keras_hub.layers.TransformerEncoder))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.backbone.fast_encoder
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    slow = AlbertEncoder.from_config({**model.backbone.get_config(), "fast_encoder": False})
    assert [v.path for v in slow.variables] == [v.path for v in model.backbone.variables]
    assert all(type(layer) is keras_hub.layers.TransformerEncoder
               for layer in slow.layers if isinstance(layer, keras_hub.layers.TransformerEncoder))


@pytest.mark.skipif(bool(tf.config.list_physical_devices("GPU")), reason="the CPU-only default")
def test_jit_compile_auto_is_off_without_a_gpu_in_float32_only():
    from keras_albert.training.runs import precision_policy, resolve_jit_compile

    strategy = tf.distribute.get_strategy()
    assert resolve_jit_compile("auto", strategy) is False
    assert resolve_jit_compile("true", strategy) is True
    assert resolve_jit_compile("false", strategy) is False
    with precision_policy("bf16"):  # bfloat16 steps are faster with XLA on a CPU too
        assert resolve_jit_compile("auto", strategy) is True
        assert resolve_jit_compile("false", strategy) is False


def _positions():
    """Rows the pretraining heads read: [CLS] first, then masked positions (some repeated, some padding)."""
    return np.array([[0, 1, 7, 7, 20, 23], [0, 2, 3, 16, 0, 0], [0, 4, 1, 2, 3, 0]], "int32")


@pytest.mark.parametrize("preset", ["albert_tiny", "bert_tiny"])
def test_the_last_layer_at_some_rows_matches_the_whole_sequence_at_those_rows(preset):
    """`encode_at` (the last layer's queries and feed-forward block at the given rows only) against keras-hub's own
    backbone call gathered at the rows: outputs and the gradients of a loss that reads those rows."""
    from keras_albert.models.backbones import encode_at

    encoder = _encoder(preset, "float32", dropout=0.0)
    batch = _batch(preset, padding=True)
    positions = tf.constant(_positions())
    weights = tf.random.stateless_normal((BATCH, positions.shape[1], encoder.hidden_dim), seed=(4, 5))

    def run(fn):
        with tf.GradientTape() as tape:
            hidden = fn()
            loss = tf.reduce_sum(hidden * weights)
        gradients = tape.gradient(loss, encoder.trainable_variables)
        return hidden.numpy(), [None if g is None else tf.convert_to_tensor(g).numpy() for g in gradients]

    expected, expected_gradients = run(
        lambda: tf.gather(encoder(batch)["sequence_output"], positions, batch_dims=1))
    use_fast_encoder(encoder)
    actual, gradients = run(lambda: encode_at(encoder, batch["token_ids"], batch["segment_ids"],
                                              batch["padding_mask"], positions))
    assert actual.shape == (BATCH, positions.shape[1], encoder.hidden_dim)
    assert _relative_error(actual, expected) < 1e-5
    variables = encoder.trainable_variables
    used = [i for i, v in enumerate(variables) if "pooled_dense" not in v.path]  # the loss skips the pooler
    assert all(gradients[i] is None and expected_gradients[i] is None for i in range(len(variables)) if i not in used)
    errors = _gradient_errors([variables[i] for i in used], [gradients[i] for i in used],
                              [expected_gradients[i] for i in used])
    assert max(errors.values()) < 1e-5, errors


def _fast_and_slow_pretraining_models(preset):
    """A `PretrainingModel` with the fast encoder, the same model and weights with keras-hub's call, and a batch
    (no dropout anywhere: the two would draw different masks in training)."""
    keras.utils.set_random_seed(0)
    fast = PretrainingModel.from_preset(preset, max_sequence_length=32, dropout=0.0, classifier_dropout=0.0)
    config = fast.get_config()
    backbone = fast.backbone
    config["backbone"] = keras.layers.serialize(type(backbone).from_config({**backbone.get_config(),
                                                                           "fast_encoder": False}))
    slow = PretrainingModel.from_config(config)
    slow.set_weights(fast.get_weights())
    encoded = _batch(preset, padding=True)
    positions = _positions()[:, 1:]
    batch = {"input_ids": encoded["token_ids"], "segment_ids": encoded["segment_ids"],
             "input_mask": encoded["padding_mask"], "masked_lm_positions": positions,
             "masked_lm_ids": np.ones_like(positions), "masked_lm_weights": np.ones(positions.shape, "float32"),
             "next_sentence_labels": np.zeros((BATCH, 1), "int32")}
    return fast, slow, batch


@pytest.mark.parametrize("preset", ["albert_tiny", "bert_tiny"])
def test_pretraining_model_computes_the_last_layer_at_the_heads_rows_only(preset, monkeypatch):
    """`PretrainingModel.call` with the fast encoder: the same logits and gradients as the functional graph with
    keras-hub's call (every row of the last layer), and its last layer called for [CLS] and the masked rows."""
    fast, slow, batch = _fast_and_slow_pretraining_models(preset)
    positions = batch["masked_lm_positions"]

    rows_seen = []
    original_call = FastTransformerEncoder.call

    def spy(self, *args, query_positions=None, **kwargs):
        rows_seen.append(None if query_positions is None else tuple(query_positions.shape))
        return original_call(self, *args, query_positions=query_positions, **kwargs)

    monkeypatch.setattr(FastTransformerEncoder, "call", spy)

    def run(model):
        with tf.GradientTape() as tape:
            outputs = model(batch)
            loss = tf.reduce_sum(outputs["mlm_logits"] * tf.random.stateless_normal(
                outputs["mlm_logits"].shape, seed=(6, 7))) + tf.reduce_sum(outputs["sentence_order_logits"])
        gradients = tape.gradient(loss, model.trainable_variables)
        return outputs, [tf.convert_to_tensor(g).numpy() for g in gradients]

    expected, expected_gradients = run(slow)
    assert not rows_seen  # keras-hub's own call
    actual, gradients = run(fast)
    assert rows_seen[-1] == (BATCH, 1 + positions.shape[1]) and set(rows_seen[:-1]) == {None}
    for name in ("mlm_logits", "sentence_order_logits"):
        assert _relative_error(actual[name].numpy(), expected[name].numpy()) < 1e-5, name
    errors = _gradient_errors(fast.trainable_variables, gradients, expected_gradients)
    assert max(errors.values()) < 1e-5, errors


@pytest.mark.parametrize("preset", ["albert_tiny", "bert_tiny"])
def test_the_train_step_takes_the_fast_path_and_updates_as_the_functional_graph(preset, monkeypatch):
    """Keras' train step calls the model with `mask` as a dict of Nones, one per input. The train step must still
    take `PretrainingModel.call`'s fast path (it once fell back to the functional graph there): the last layer at
    the heads' rows, the weights prepared once per layer object (once for ALBERT's shared layer, for all its
    calls), and one SGD update equal to the functional graph's with keras-hub's call."""
    fast, slow, batch = _fast_and_slow_pretraining_models(preset)
    calls = []
    original_call = FastTransformerEncoder.call

    def spy(self, *args, query_positions=None, prepared=None, **kwargs):
        calls.append((id(self), None if query_positions is None else tuple(query_positions.shape), prepared))
        return original_call(self, *args, query_positions=query_positions, prepared=prepared, **kwargs)

    monkeypatch.setattr(FastTransformerEncoder, "call", spy)
    before = [v.numpy() for v in fast.trainable_variables]
    for model in (slow, fast):
        model.compile(optimizer=keras.optimizers.SGD(0.5), jit_compile=False)
    slow_loss = slow.train_on_batch(batch, return_dict=True)["loss"]
    assert not calls  # keras-hub's own call
    fast_loss = fast.train_on_batch(batch, return_dict=True)["loss"]

    layers = fast.backbone.num_layers
    heads_rows = (BATCH, 1 + batch["masked_lm_positions"].shape[1])
    assert calls and len(calls) % layers == 0
    for start in range(0, len(calls), layers):  # one forward pass per trace
        trace = calls[start:start + layers]
        assert [rows for _, rows, _ in trace] == [None] * (layers - 1) + [heads_rows]
        assert all(prepared is not None for _, _, prepared in trace)
        prepared_per_layer = {}
        for layer, _, prepared in trace:
            assert prepared_per_layer.setdefault(layer, prepared) is prepared
        assert len({id(p) for p in prepared_per_layer.values()}) == len(prepared_per_layer)
    assert (len({layer for layer, _, _ in calls}) == 1) == (fast.model_type == "albert")

    assert abs(fast_loss - slow_loss) <= 1e-5 * abs(slow_loss)
    # the updates, relative to the largest one: some are zero up to round-off (the key bias's gradient is zero)
    updates = [(f.numpy() - b, s.numpy() - b) for f, s, b in zip(fast.trainable_variables, slow.trainable_variables,
                                                                  before)]
    largest = max(np.abs(expected).max() for _, expected in updates)
    assert largest > 1e-3
    errors = {v.path: float(np.abs(actual - expected).max() / largest)
              for v, (actual, expected) in zip(fast.trainable_variables, updates)}
    assert max(errors.values()) < 1e-5, errors
