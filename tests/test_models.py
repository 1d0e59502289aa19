"""Presets, construction, config and .keras round-trips of the public model classes."""

import keras
import numpy as np
import pytest

from keras_albert import PretrainingModel, SquadModel, UserInputError
from keras_albert.models import AlbertEncoder, BertEncoder, PRESETS


def _inputs(model, rows=2, seq=12, vocab=100):
    rng = np.random.default_rng(0)
    data = {
        "input_ids": rng.integers(5, vocab, (rows, seq)).astype("int32"),
        "input_mask": np.ones((rows, seq), "int32"),
        "segment_ids": np.zeros((rows, seq), "int32"),
        "masked_lm_positions": np.tile(np.arange(1, 4, dtype="int32"), (rows, 1)),
    }
    return {key: data[key] for key in model.input_names_used}


@pytest.mark.parametrize("cls", [PretrainingModel, SquadModel])
@pytest.mark.parametrize("preset", ["albert_tiny", "bert_tiny"])
def test_config_and_keras_file_round_trip(cls, preset, tmp_path):
    model = cls.from_preset(preset, vocabulary_size=100, max_sequence_length=32)
    inputs = _inputs(model)
    expected = model.predict_on_batch(inputs)

    clone = cls.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    for key, value in clone.predict_on_batch(inputs).items():
        np.testing.assert_array_equal(value, expected[key])

    model.compile(optimizer="adam", gradient_accumulation_steps=3, max_grad_norm=0.5)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert type(loaded) is cls and type(loaded.backbone) is type(model.backbone)
    assert loaded.gradient_accumulation_steps == 3 and loaded.max_grad_norm == 0.5
    for key, value in loaded.predict_on_batch(inputs).items():
        np.testing.assert_array_equal(value, expected[key])


def test_encoder_activation_survives_serialisation():
    encoder = BertEncoder(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
                          max_sequence_length=16, hidden_activation="relu")
    clone = BertEncoder.from_config(encoder.get_config())
    assert clone.hidden_activation == "relu"
    assert clone.transformer_layers[0]._feedforward_intermediate_dense.activation is keras.activations.relu
    assert AlbertEncoder.from_config(
        AlbertEncoder(vocabulary_size=50, num_layers=2, num_heads=2, embedding_dim=4, hidden_dim=8,
                      intermediate_dim=16, max_sequence_length=16).get_config()
    ).hidden_activation == "gelu_approximate"


def test_presets_have_the_papers_shapes():
    transformers = pytest.importorskip("transformers")
    albert = PretrainingModel.from_preset("albert_base").backbone
    hf_albert = transformers.AlbertModel(transformers.AlbertConfig(
        vocab_size=30000, embedding_size=128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
        intermediate_size=3072))
    assert albert.count_params() == sum(p.numel() for p in hf_albert.parameters())  # 11.7M: ALBERT-base
    assert PRESETS["albert_xxlarge"]["hidden_dim"] == 4096 and PRESETS["albert_xxlarge"]["num_layers"] == 12
    assert PRESETS["albert_xlarge"]["hidden_dim"] == 2048 and PRESETS["albert_large"]["num_layers"] == 24
    assert PRESETS["bert_large"]["hidden_dim"] == 1024 and PRESETS["bert_base"]["vocabulary_size"] == 30522
    for name in ("albert_tiny", "bert_tiny"):
        parameters = PretrainingModel.from_preset(name).count_params()
        assert 1e5 < parameters < 1e6, (name, parameters)  # "a few hundred thousand"


def test_preset_errors_name_the_argument():
    with pytest.raises(UserInputError, match="Unknown preset 'albert_huge'"):
        PretrainingModel.from_preset("albert_huge")
    with pytest.raises(UserInputError, match=r"Unknown override\(s\) \['num_groups'\]"):
        PretrainingModel.from_preset("bert_tiny", num_groups=2)
    model = PretrainingModel.from_preset("albert_tiny", vocabulary_size=123, dropout=0.2, skip_sop=True)
    assert model.backbone.vocabulary_size == 123 and model.backbone.dropout == 0.2 and model.skip_sop


def test_squad_model_from_pretraining_copies_the_encoder(tmp_path):
    pretraining = PretrainingModel.from_preset("albert_tiny", vocabulary_size=100)
    squad = SquadModel.from_pretraining(pretraining)
    for ours, theirs in zip(squad.backbone.weights, pretraining.backbone.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    squad.backbone.weights[0].assign(squad.backbone.weights[0] + 1.0)  # no shared variables
    assert not np.array_equal(squad.backbone.weights[0].numpy(), pretraining.backbone.weights[0].numpy())

    pretraining.save(tmp_path / "pretrained.keras")
    from_file = SquadModel.from_pretraining(tmp_path / "pretrained.keras")
    np.testing.assert_array_equal(from_file.backbone.weights[0].numpy(), pretraining.backbone.weights[0].numpy())
    with pytest.raises(UserInputError, match="expected a .keras model file"):
        SquadModel.from_pretraining(tmp_path / "missing.h5")


@pytest.mark.parametrize("cls", [PretrainingModel, SquadModel])
@pytest.mark.parametrize("preset", ["albert_tiny", "bert_tiny"])
def test_huggingface_tables_name_every_weight_once(cls, preset):
    from keras_albert.models import huggingface

    model = cls.from_preset(preset, vocabulary_size=100, max_sequence_length=32)
    prefix = f"{model.model_type}."
    entries = huggingface.backbone_entries(model.backbone, model.model_type, prefix)
    pooler = huggingface.pooler_entries(model.backbone, model.model_type, prefix)
    heads = huggingface.head_entries(model)
    assert set(heads) == set(cls.huggingface_heads[model.model_type])
    entries += [entry for head in heads.values() for entry in head]
    paths = [variable.path for variable, _, _ in entries]
    names = [name for _, name, _ in entries]
    assert len(set(paths)) == len(paths) and len(set(names)) == len(names)
    # Every weight has a Hugging Face name; the pooler's only where the transformers class has one.
    pooler_paths = {variable.path for variable, _, _ in pooler}
    expected = {variable.path for variable in model.weights} - (set() if cls.huggingface_pooler else pooler_paths)
    assert set(paths) | (pooler_paths if cls.huggingface_pooler else set()) == expected
