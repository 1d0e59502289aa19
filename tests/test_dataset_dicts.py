"""The models take their datasets' dicts (inputs and labels together) wherever a user passes them."""

import numpy as np
import pytest
import tensorflow as tf

from keras_albert import PretrainingModel, SquadModel
from keras_albert.errors import UserInputError

SEQ, PREDICTIONS, VOCAB, ROWS = 16, 4, 120, 4
TINY = dict(vocabulary_size=VOCAB, num_layers=1, num_heads=2, embedding_dim=8, hidden_dim=16, intermediate_dim=32,
            max_sequence_length=SEQ, dropout=0.0)


def _pretraining_rows(rng):
    return {
        "input_ids": rng.integers(5, VOCAB, (ROWS, SEQ)).astype("int32"),
        "input_mask": np.ones((ROWS, SEQ), "int32"),
        "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype("int32")[None].repeat(ROWS, 0),
        "masked_lm_positions": rng.integers(0, SEQ, (ROWS, PREDICTIONS)).astype("int32"),
        # labels whose values are out of the vocabulary's range for positions: a positional mix-up would show
        "masked_lm_ids": rng.integers(VOCAB - 10, VOCAB, (ROWS, PREDICTIONS)).astype("int32"),
        "masked_lm_weights": np.ones((ROWS, PREDICTIONS), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (ROWS, 1)).astype("int32"),
    }


def _squad_rows(rng):
    return {
        "input_ids": rng.integers(5, VOCAB, (ROWS, SEQ)).astype("int32"),
        "input_mask": np.ones((ROWS, SEQ), "int32"),
        "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype("int32")[None].repeat(ROWS, 0),
        "start_positions": rng.integers(0, SEQ, (ROWS,)).astype("int32"),
        "end_positions": rng.integers(0, SEQ, (ROWS,)).astype("int32"),
    }


@pytest.mark.parametrize("model_class,rows", [(PretrainingModel, _pretraining_rows), (SquadModel, _squad_rows)])
def test_model_of_a_dataset_batch_equals_model_of_its_inputs(model_class, rows):
    model = model_class.from_preset("albert_tiny", **TINY)
    # A tf.data batch orders its keys by name, labels among the inputs.
    batch = next(iter(tf.data.Dataset.from_tensor_slices(rows(np.random.default_rng(0))).batch(ROWS)))
    inputs = {name: batch[name] for name in model.input_names_used}
    assert list(batch) != list(inputs)
    from_batch, from_inputs = model(batch), model(inputs)
    for key in from_inputs:
        np.testing.assert_array_equal(from_batch[key], from_inputs[key])
    predicted = model.predict(tf.data.Dataset.from_tensors(batch), verbose=0)
    for key in from_inputs:
        np.testing.assert_allclose(predicted[key], from_inputs[key], atol=1e-6)


def test_a_missing_input_is_an_error_naming_it():
    model = SquadModel.from_preset("albert_tiny", **TINY)
    batch = _squad_rows(np.random.default_rng(1))
    del batch["segment_ids"]
    with pytest.raises(UserInputError, match="SquadModel needs the input\\(s\\) segment_ids"):
        model(batch)
