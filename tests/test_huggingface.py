"""Hugging Face parity: transformers' PyTorch models are the oracle for every logit, both directions."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from keras_albert import PretrainingModel, SquadModel, UserInputError  # noqa: E402

TOLERANCE = 1e-4
SEQ = 24

ALBERT_SHAPES = {
    "albert_grouped": dict(vocab_size=300, embedding_size=16, hidden_size=32, num_hidden_layers=4,
                           num_hidden_groups=2, inner_group_num=2, num_attention_heads=4, intermediate_size=64,
                           hidden_act="gelu_new"),
    "albert_shared_exact_gelu": dict(vocab_size=257, embedding_size=24, hidden_size=48, num_hidden_layers=3,
                                     num_hidden_groups=1, inner_group_num=1, num_attention_heads=3,
                                     intermediate_size=80, hidden_act="gelu"),
}
BERT_SHAPES = {
    "bert_two_layers": dict(vocab_size=310, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, hidden_act="gelu"),
    "bert_three_layers_relu": dict(vocab_size=199, hidden_size=48, num_hidden_layers=3, num_attention_heads=6,
                                   intermediate_size=96, hidden_act="relu"),
}


def _hf_model(kind, head, shape):
    torch.manual_seed(0)
    common = dict(max_position_embeddings=64, type_vocab_size=2, hidden_dropout_prob=0.0,
                  attention_probs_dropout_prob=0.0, initializer_range=0.2)
    if kind == "albert":
        config = transformers.AlbertConfig(**shape, classifier_dropout_prob=0.0, **common)
        cls = transformers.AlbertForPreTraining if head == "pretraining" else transformers.AlbertForQuestionAnswering
    else:
        config = transformers.BertConfig(**shape, **common)
        cls = transformers.BertForPreTraining if head == "pretraining" else transformers.BertForQuestionAnswering
    model = cls(config).eval()
    with torch.no_grad():  # random biases and LayerNorm parameters too, so that every weight matters
        for name, parameter in model.named_parameters():
            if "LayerNorm.weight" in name or "layer_norm.weight" in name:
                parameter.copy_(1.0 + 0.2 * torch.randn_like(parameter))
            elif name.endswith("bias"):
                parameter.copy_(0.2 * torch.randn_like(parameter))
    return model


def _batch(vocab_size, rng):
    lengths = [SEQ, 17, 9]
    batch = len(lengths)
    input_ids = rng.integers(5, vocab_size, size=(batch, SEQ))
    input_mask = np.zeros((batch, SEQ), "int32")
    segment_ids = np.zeros((batch, SEQ), "int32")
    for row, length in enumerate(lengths):
        input_mask[row, :length] = 1
        input_ids[row, length:] = 0
        segment_ids[row, length // 2 : length] = 1
    positions = np.stack([rng.choice(length, size=5, replace=False) for length in lengths])
    return {
        "input_ids": input_ids.astype("int32"),
        "input_mask": input_mask,
        "segment_ids": segment_ids,
        "masked_lm_positions": positions.astype("int32"),
    }


def _hf_outputs(model, batch, head):
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(batch["input_ids"], dtype=torch.long),
            attention_mask=torch.tensor(batch["input_mask"], dtype=torch.long),
            token_type_ids=torch.tensor(batch["segment_ids"], dtype=torch.long),
        )
    if head == "qa":
        return {"start_logits": out.start_logits.numpy(), "end_logits": out.end_logits.numpy()}
    logits = out.prediction_logits.numpy()
    positions = batch["masked_lm_positions"]
    sop = out.sop_logits if hasattr(out, "sop_logits") else out.seq_relationship_logits
    return {
        "mlm_logits": np.take_along_axis(logits, positions[:, :, None], axis=1),
        "sentence_order_logits": sop.numpy(),
    }


def _max_differences(ours, theirs):
    differences = {}
    for key, expected in theirs.items():
        assert np.ptp(expected) > 0.1, f"{key}: oracle outputs too flat to make the comparison meaningful"
        differences[key] = float(np.max(np.abs(np.asarray(ours[key]) - expected)))
    return differences


CASES = [("albert", name, shape) for name, shape in ALBERT_SHAPES.items()] + [
    ("bert", name, shape) for name, shape in BERT_SHAPES.items()
]


@pytest.mark.parametrize("head", ["pretraining", "qa"])
@pytest.mark.parametrize("kind,name,shape", CASES, ids=[case[1] for case in CASES])
def test_import_and_export_match_transformers(kind, name, shape, head, tmp_path):
    hf = _hf_model(kind, head, shape)
    hf.save_pretrained(tmp_path / "hf")
    cls = PretrainingModel if head == "pretraining" else SquadModel
    ours = cls.from_huggingface(tmp_path / "hf")
    batch = _batch(shape["vocab_size"], np.random.default_rng(1))
    inputs = {key: batch[key] for key in ours.input_names_used}

    expected = _hf_outputs(hf, batch, head)
    got = ours.predict_on_batch(inputs)
    differences = _max_differences(got, expected)
    print(f"{name} {head} import max |diff|: {differences}")
    assert max(differences.values()) < TOLERANCE, differences

    # Export, then transformers' Auto class loads it unchanged.
    ours.save_huggingface(tmp_path / "exported")
    auto = transformers.AutoModelForPreTraining if head == "pretraining" else transformers.AutoModelForQuestionAnswering
    reloaded = auto.from_pretrained(tmp_path / "exported").eval()
    assert type(reloaded).__name__ == type(hf).__name__
    differences = _max_differences(got, _hf_outputs(reloaded, batch, head))
    print(f"{name} {head} export max |diff|: {differences}")
    assert max(differences.values()) < TOLERANCE, differences
    if head == "pretraining":
        embeddings = reloaded.get_input_embeddings().weight
        decoder = reloaded.get_output_embeddings().weight
        assert embeddings.data_ptr() == decoder.data_ptr(), "decoder not tied to the word embeddings"


def test_squad_model_loads_pretraining_checkpoint_with_fresh_head(tmp_path, caplog):
    hf = _hf_model("albert", "pretraining", ALBERT_SHAPES["albert_grouped"])
    hf.save_pretrained(tmp_path / "hf")
    with caplog.at_level("WARNING", logger="keras_albert"):
        model = SquadModel.from_huggingface(tmp_path / "hf")
    assert "no question answering head" in caplog.text
    pretraining = PretrainingModel.from_huggingface(tmp_path / "hf")
    for a, b in zip(model.backbone.weights, pretraining.backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_pretraining_model_from_qa_checkpoint_initialises_heads(tmp_path, caplog):
    hf = _hf_model("bert", "qa", BERT_SHAPES["bert_two_layers"])
    hf.save_pretrained(tmp_path / "hf")
    with caplog.at_level("INFO", logger="keras_albert"):
        model = PretrainingModel.from_huggingface(tmp_path / "hf")
    assert "no pooler weights" in caplog.text and "no masked LM head" in caplog.text
    assert model.model_type == "bert"


def _write_config(path, **fields):
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text(json.dumps(fields))


def test_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(UserInputError, match="no config.json"):
        PretrainingModel.from_huggingface(tmp_path)
    with pytest.raises(UserInputError, match="not a directory"):
        PretrainingModel.from_huggingface(tmp_path / "absent")

    _write_config(tmp_path / "gpt", model_type="gpt2")
    with pytest.raises(UserInputError, match=r"config.json: field 'model_type' is 'gpt2'"):
        PretrainingModel.from_huggingface(tmp_path / "gpt")

    _write_config(tmp_path / "act", **{**BERT_SHAPES["bert_two_layers"], "hidden_act": "mish", "model_type": "bert"})
    with pytest.raises(UserInputError, match=r"field 'hidden_act' is 'mish'"):
        PretrainingModel.from_huggingface(tmp_path / "act")

    _write_config(tmp_path / "noweights", model_type="bert", **BERT_SHAPES["bert_two_layers"],
                  max_position_embeddings=64, type_vocab_size=2)
    with pytest.raises(UserInputError, match="no model.safetensors"):
        PretrainingModel.from_huggingface(tmp_path / "noweights")

    # A config that disagrees with the weights: the error names the tensor, its shape and config.json.
    hf = _hf_model("bert", "pretraining", BERT_SHAPES["bert_two_layers"])
    hf.save_pretrained(tmp_path / "mismatch")
    config = json.loads((tmp_path / "mismatch" / "config.json").read_text())
    config["intermediate_size"] = 72
    (tmp_path / "mismatch" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError, match=r"model.safetensors: tensor 'bert.encoder.layer.0.intermediate.dense.weight' has shape \(64, 32\), but config.json implies \(72, 32\)"):
        PretrainingModel.from_huggingface(tmp_path / "mismatch")


def test_pytorch_bin_checkpoint(tmp_path):
    hf = _hf_model("albert", "qa", ALBERT_SHAPES["albert_grouped"])
    hf.save_pretrained(tmp_path / "hf")
    state = {name: tensor.contiguous() for name, tensor in hf.state_dict().items()}
    torch.save(state, tmp_path / "hf" / "pytorch_model.bin")
    (tmp_path / "hf" / "model.safetensors").unlink()
    ours = SquadModel.from_huggingface(tmp_path / "hf")
    batch = _batch(300, np.random.default_rng(2))
    got = ours.predict_on_batch({key: batch[key] for key in ours.input_names_used})
    assert max(_max_differences(got, _hf_outputs(hf, batch, "qa")).values()) < TOLERANCE


def test_config_and_index_errors_name_the_file(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text('{"model_type": "bert",\n')
    with pytest.raises(UserInputError, match=r"broken/config.json: invalid JSON at line 2"):
        PretrainingModel.from_huggingface(tmp_path / "broken")
    _write_config(tmp_path / "list")
    (tmp_path / "list" / "config.json").write_text("[1, 2]")
    with pytest.raises(UserInputError, match=r"list/config.json: expected a JSON object, found list"):
        PretrainingModel.from_huggingface(tmp_path / "list")

    hf = _hf_model("bert", "qa", BERT_SHAPES["bert_two_layers"])
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    ours = SquadModel.from_huggingface(tmp_path / "sharded")  # the shards, read through the index
    batch = _batch(310, np.random.default_rng(3))
    got = ours.predict_on_batch({key: batch[key] for key in ours.input_names_used})
    assert max(_max_differences(got, _hf_outputs(hf, batch, "qa")).values()) < TOLERANCE
    (tmp_path / "sharded" / "model.safetensors.index.json").write_text('{"metadata": {}}')
    with pytest.raises(UserInputError, match=r"model.safetensors.index.json: field 'weight_map' is missing"):
        SquadModel.from_huggingface(tmp_path / "sharded")


def test_save_huggingface_publishes_whole_and_keeps_other_files(tmp_path):
    model = SquadModel.from_preset("bert_tiny", vocabulary_size=120, num_layers=1)
    target = tmp_path / "new" / "hf"
    model.save_huggingface(target)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["hf"], "a temporary was left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o755 & ~umask
    assert (target / "config.json").stat().st_mode & 0o777 == 0o644 & ~umask
    assert json.loads((target / "config.json").read_text())["architectures"] == ["BertForQuestionAnswering"]

    (target / "vocab.txt").write_text("[PAD]\n")
    (target / "config.json").write_text("{}")
    model.save_huggingface(target)  # into an existing directory: the model's two files replaced, the rest kept
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]
    assert json.loads((target / "config.json").read_text())["model_type"] == "bert"


def test_export_command_writes_a_directory_transformers_loads(tmp_path, capsys):
    from keras_albert import cli

    import shutil

    from fixtures_data import trained_tokenizer_dir

    tokenizer = tmp_path / "tokenizer"
    shutil.copytree(trained_tokenizer_dir("albert"), tokenizer)
    (tokenizer / "config.json").write_text("{}")  # not a tokenizer file: never taken from a tokenizer directory
    model = SquadModel.from_preset("albert_tiny", vocabulary_size=2000, num_layers=1)
    model.save(tmp_path / "squad.keras")
    output = tmp_path / "hf"
    status = cli.main(["export", "--checkpoint_path", str(tmp_path / "squad.keras"), "--output_dir", str(output),
                       "--tokenizer", str(tokenizer)])
    assert status == 0
    assert f"Wrote {output}: config.json, model.safetensors, spiece.model" in capsys.readouterr().out
    assert (output / "spiece.model").read_bytes() == (tokenizer / "spiece.model").read_bytes()
    assert json.loads((output / "config.json").read_text())["vocab_size"] == 2000  # the model's, not the "{}"
    reloaded = transformers.AutoModelForQuestionAnswering.from_pretrained(output).eval()
    batch = _batch(150, np.random.default_rng(4))
    got = model.predict_on_batch({key: batch[key] for key in model.input_names_used})
    assert max(_max_differences(got, _hf_outputs(reloaded, batch, "qa")).values()) < TOLERANCE


def test_export_command_errors_name_the_argument(tmp_path, capsys):
    import keras

    from keras_albert import cli

    def fails(*flags):
        assert cli.main(["export", *flags]) == 2
        return capsys.readouterr().err

    assert "checkpoint_path absent: no such file" in fails("--checkpoint_path", "absent", "--output_dir", "out")
    (tmp_path / "file").write_text("")
    message = fails("--checkpoint_path", str(tmp_path), "--output_dir", str(tmp_path / "file"))
    assert "output_dir " in message and "exists and is not a directory" in message
    message = fails("--checkpoint_path", str(tmp_path), "--output_dir", "out", "--tokenizer", "nowhere")
    assert "tokenizer nowhere: no such file or directory" in message
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(tmp_path / "plain.keras")
    message = fails("--checkpoint_path", str(tmp_path / "plain.keras"), "--output_dir", str(tmp_path / "out"))
    assert "holds a Functional, not a keras_albert task model" in message
    assert not (tmp_path / "out").exists()
