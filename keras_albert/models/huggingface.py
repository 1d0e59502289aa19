"""Import and export of Hugging Face ALBERT / BERT checkpoints, heads included.

One table per architecture lists every (Keras variable, Hugging Face tensor name, layout) pair; loading and
saving both walk it, so the two directions cannot drift apart. Layouts:
  "table": same values, same shape (embedding tables);
  "vector": same values, flattened on the Hugging Face side (biases, LayerNorm; attention biases are
            [heads, head_dim] in Keras);
  "linear": a torch `Linear` weight [out, in] against a Keras kernel [in, out];
  "heads_out" / "heads_in": the same, with the Keras kernel's out (query/key/value: [in, heads, head_dim]) or
            in (attention output: [heads, head_dim, out]) dimension split into attention heads; reshaping the
            transposed matrix handles both directions.
The backbone's table is built here; a task's heads are listed by the task class itself (`huggingface_heads`,
`huggingface_architecture`, `huggingface_pooler`), so this module knows no task class and imports none.
The decoder of the masked-LM head is tied to the word embeddings, as transformers ties it: its weight is not
written, and its bias is the head's output bias.
"""

import functools
import logging
import os

import numpy as np

from keras_albert import io
from keras_albert.errors import UserInputError
from keras_albert.models.backbones import ENCODERS, HF_ACTIVATIONS, KERAS_TO_HF_ACTIVATION, transformer_layers

logger = logging.getLogger("keras_albert")

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_FILE = "pytorch_model.bin"


# ---------------------------------------------------------------------------------------------- weight tables


def _attention_entries(layer, prefix, names):
    attention = layer._self_attention_layer
    denses = (attention.query_dense, attention.key_dense, attention.value_dense, attention.output_dense)
    layouts = ("heads_out", "heads_out", "heads_out", "heads_in")
    entries = []
    for keras_dense, hf_name, layout in zip(denses, names, layouts):
        entries.append((keras_dense.kernel, f"{prefix}{hf_name}.weight", layout))
        entries.append((keras_dense.bias, f"{prefix}{hf_name}.bias", "vector"))
    return entries


def _dense(dense, name):
    return [(dense.kernel, f"{name}.weight", "linear"), (dense.bias, f"{name}.bias", "vector")]


def _norm(norm, name):
    return [(norm.gamma, f"{name}.weight", "vector"), (norm.beta, f"{name}.bias", "vector")]


def backbone_entries(backbone, model_type, prefix):
    """(variable, name, layout) for every backbone weight; `prefix` is "albert." / "bert." or ""."""
    p = prefix
    entries = [
        (backbone.token_embedding.embeddings, f"{p}embeddings.word_embeddings.weight", "table"),
        (backbone.position_embedding.position_embeddings, f"{p}embeddings.position_embeddings.weight", "table"),
        (backbone.segment_embedding.embeddings, f"{p}embeddings.token_type_embeddings.weight", "table"),
        *_norm(backbone.embeddings_layer_norm, f"{p}embeddings.LayerNorm"),
    ]
    if model_type == "albert":
        entries += _dense(backbone.embeddings_projection, f"{p}encoder.embedding_hidden_mapping_in")
        for group in range(backbone.num_groups):
            for inner in range(backbone.num_inner_repetitions):
                layer = backbone.transformer_layers[group][inner]
                lp = f"{p}encoder.albert_layer_groups.{group}.albert_layers.{inner}."
                entries += _attention_entries(
                    layer, lp, ("attention.query", "attention.key", "attention.value", "attention.dense")
                )
                entries += _norm(layer._self_attention_layer_norm, f"{lp}attention.LayerNorm")
                entries += _dense(layer._feedforward_intermediate_dense, f"{lp}ffn")
                entries += _dense(layer._feedforward_output_dense, f"{lp}ffn_output")
                entries += _norm(layer._feedforward_layer_norm, f"{lp}full_layer_layer_norm")
    else:
        for index, layer in enumerate(transformer_layers(backbone)):
            lp = f"{p}encoder.layer.{index}."
            entries += _attention_entries(
                layer,
                lp,
                ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"),
            )
            entries += _norm(layer._self_attention_layer_norm, f"{lp}attention.output.LayerNorm")
            entries += _dense(layer._feedforward_intermediate_dense, f"{lp}intermediate.dense")
            entries += _dense(layer._feedforward_output_dense, f"{lp}output.dense")
            entries += _norm(layer._feedforward_layer_norm, f"{lp}output.LayerNorm")
    return entries


def pooler_entries(backbone, model_type, prefix):
    name = f"{prefix}pooler" if model_type == "albert" else f"{prefix}pooler.dense"
    return _dense(backbone.pooled_dense, name)


def _vector(variable, name):
    return [(variable, name, "vector")]


_HEAD_WEIGHTS = {"dense": _dense, "norm": _norm, "vector": _vector}


def head_entries(model):
    """{head name: entries} for the heads of a task, from its `huggingface_heads` table."""
    entries = {}
    for head, weights in type(model).huggingface_heads[model.model_type].items():
        entries[head] = []
        for kind, attribute, name in weights:
            weight = functools.reduce(getattr, attribute.split("."), model)
            entries[head] += _HEAD_WEIGHTS[kind](weight, name)
    return entries


def _hf_shape(variable, layout):
    shape = tuple(variable.shape)
    if layout == "vector":
        return (int(np.prod(shape)),)
    if layout == "table":
        return shape
    if layout == "heads_out":  # Keras [in, heads, head_dim]
        return (shape[1] * shape[2], shape[0])
    if layout == "heads_in":  # Keras [heads, head_dim, out]
        return (shape[2], shape[0] * shape[1])
    return (shape[1], shape[0])  # linear: Keras [in, out]


def _to_keras(tensor, variable, layout):
    if layout not in ("vector", "table"):
        tensor = tensor.T
    return np.reshape(tensor, tuple(variable.shape))


def _to_hf(value, variable, layout):
    shape = _hf_shape(variable, layout)
    if layout in ("vector", "table"):
        return np.ascontiguousarray(np.reshape(value, shape))
    return np.ascontiguousarray(np.reshape(value, (shape[1], shape[0])).T)


# ---------------------------------------------------------------------------------------------- configs


def _read_config(path):
    config_path = os.path.join(path, CONFIG_FILE)
    if not os.path.isdir(path):
        raise UserInputError(f"{path}: not a directory (expected a Hugging Face checkpoint directory).")
    if not os.path.isfile(config_path):
        raise UserInputError(f"{path}: not a Hugging Face checkpoint: it has no {CONFIG_FILE}.")
    config = io.read_json(config_path, what="Hugging Face config")
    if not isinstance(config, dict):
        raise UserInputError(f"{config_path}: expected a JSON object, found {type(config).__name__}.")
    return config


def _field(config, config_path, name, default=None):
    if name in config:
        return config[name]
    if default is not None:
        return default
    raise UserInputError(f"{config_path}: missing field {name!r}.")


def backbone_config_from_hf(config, config_path):
    """Keras backbone arguments (plus "model_type") from a Hugging Face config dict."""
    model_type = config.get("model_type")
    if model_type not in ENCODERS:
        raise UserInputError(
            f"{config_path}: field 'model_type' is {model_type!r}; only 'albert' and 'bert' checkpoints are supported."
        )
    hidden_act = _field(config, config_path, "hidden_act", "gelu_new" if model_type == "albert" else "gelu")
    if hidden_act not in HF_ACTIVATIONS:
        raise UserInputError(
            f"{config_path}: field 'hidden_act' is {hidden_act!r}; supported: {', '.join(sorted(HF_ACTIVATIONS))}."
        )
    epsilon = float(config.get("layer_norm_eps", 1e-12))
    if abs(epsilon - 1e-12) > 1e-15:
        raise UserInputError(f"{config_path}: field 'layer_norm_eps' is {epsilon}; only 1e-12 is supported.")
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise UserInputError(
            f"{config_path}: field 'position_embedding_type' is {position_type!r}; only 'absolute' is supported."
        )
    hidden_size = _field(config, config_path, "hidden_size")
    heads = _field(config, config_path, "num_attention_heads")
    if hidden_size % heads:
        raise UserInputError(
            f"{config_path}: 'hidden_size' ({hidden_size}) is not divisible by 'num_attention_heads' ({heads})."
        )
    result = {
        "model_type": model_type,
        "vocabulary_size": _field(config, config_path, "vocab_size"),
        "num_layers": _field(config, config_path, "num_hidden_layers"),
        "num_heads": heads,
        "hidden_dim": hidden_size,
        "intermediate_dim": _field(config, config_path, "intermediate_size"),
        "dropout": float(config.get("hidden_dropout_prob", 0.0)),
        "max_sequence_length": _field(config, config_path, "max_position_embeddings"),
        "num_segments": _field(config, config_path, "type_vocab_size"),
        "hidden_activation": HF_ACTIVATIONS[hidden_act],
    }
    if model_type == "albert":
        groups = config.get("num_hidden_groups", 1)
        if result["num_layers"] % groups:
            raise UserInputError(
                f"{config_path}: 'num_hidden_layers' ({result['num_layers']}) is not divisible by "
                f"'num_hidden_groups' ({groups})."
            )
        result.update(
            embedding_dim=_field(config, config_path, "embedding_size"),
            num_groups=groups,
            num_inner_repetitions=config.get("inner_group_num", 1),
        )
    return result


def hf_config_from_model(model, architecture):
    backbone = model.backbone
    config = {
        "architectures": [architecture],
        "model_type": model.model_type,
        "vocab_size": backbone.vocabulary_size,
        "hidden_size": backbone.hidden_dim,
        "num_hidden_layers": backbone.num_layers,
        "num_attention_heads": backbone.num_heads,
        "intermediate_size": backbone.intermediate_dim,
        "hidden_act": KERAS_TO_HF_ACTIVATION[backbone.hidden_activation],
        "hidden_dropout_prob": backbone.dropout,
        "attention_probs_dropout_prob": backbone.dropout,
        "max_position_embeddings": backbone.max_sequence_length,
        "type_vocab_size": backbone.num_segments,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute",
        "pad_token_id": 0,
        "tie_word_embeddings": True,
        "dtype": "float32",
    }
    if model.model_type == "albert":
        config.update(
            embedding_size=backbone.embedding_dim,
            num_hidden_groups=backbone.num_groups,
            inner_group_num=backbone.num_inner_repetitions,
            classifier_dropout_prob=getattr(model, "classifier_dropout", 0.1),
            bos_token_id=2,
            eos_token_id=3,
        )
    return config


# ---------------------------------------------------------------------------------------------- tensors


class _TensorFile:
    """Read access to the tensors of a checkpoint directory by name, whatever file holds them."""

    def __init__(self, path):
        self.path = path
        self._tensors = {}
        self._files = {}
        index = os.path.join(path, SAFETENSORS_INDEX)
        single = os.path.join(path, SAFETENSORS_FILE)
        torch_file = os.path.join(path, TORCH_FILE)
        if os.path.isfile(single):
            self._open_safetensors(single)
        elif os.path.isfile(index):
            index_json = io.read_json(index, what="safetensors index")
            weight_map = index_json.get("weight_map") if isinstance(index_json, dict) else None
            if not isinstance(weight_map, dict):
                raise UserInputError(f"{index}: field 'weight_map' is missing or not an object.")
            for shard in sorted(set(weight_map.values())):
                self._open_safetensors(os.path.join(path, shard))
        elif os.path.isfile(torch_file):
            self._open_torch(torch_file)
        else:
            raise UserInputError(
                f"{path}: not a Hugging Face checkpoint: no {SAFETENSORS_FILE}, {SAFETENSORS_INDEX} or {TORCH_FILE}."
            )

    def _open_safetensors(self, file):
        from safetensors import safe_open

        try:
            handle = safe_open(file, framework="numpy")
        except Exception as error:  # safetensors raises its own error types
            raise UserInputError(f"{file}: cannot read as safetensors ({error}).") from None
        for name in handle.keys():
            self._files[name] = (file, handle)

    def _open_torch(self, file):
        try:
            import torch
        except ImportError:
            raise UserInputError(
                f"{file}: reading pytorch_model.bin needs PyTorch; install torch or convert it to model.safetensors."
            ) from None
        state = torch.load(file, map_location="cpu", weights_only=True)
        for name, tensor in state.items():
            self._tensors[name] = tensor.float().numpy()
            self._files[name] = (file, None)

    def names(self):
        return set(self._files)

    def file_of(self, name):
        return self._files[name][0]

    def get(self, name):
        if name not in self._tensors:
            _, handle = self._files[name]
            self._tensors[name] = handle.get_tensor(name)
        return self._tensors[name]


def _detect_prefix(names, model_type):
    prefix = f"{model_type}."
    if any(name.startswith(prefix + "embeddings.") for name in names):
        return prefix
    if any(name.startswith("embeddings.") for name in names):
        return ""
    raise UserInputError(f"found no {model_type} embedding weights ('{prefix}embeddings.*' or 'embeddings.*').")


def _assign(entries, tensors):
    for variable, name, layout in entries:
        tensor = tensors.get(name)
        expected = _hf_shape(variable, layout)
        if tuple(tensor.shape) != tuple(expected):
            raise UserInputError(
                f"{tensors.file_of(name)}: tensor {name!r} has shape {tuple(tensor.shape)}, but {CONFIG_FILE} "
                f"implies {tuple(expected)}."
            )
        variable.assign(_to_keras(np.asarray(tensor, dtype=np.float32), variable, layout))


def load(cls, path):
    """Builds `cls` (PretrainingModel or SquadModel) from a Hugging Face checkpoint directory."""
    path = os.fspath(path)
    config = _read_config(path)
    config_path = os.path.join(path, CONFIG_FILE)
    backbone_config = backbone_config_from_hf(config, config_path)
    model_type = backbone_config.pop("model_type")
    tensors = _TensorFile(path)
    try:
        prefix = _detect_prefix(tensors.names(), model_type)
    except UserInputError as error:
        raise UserInputError(f"{path}: {error}") from None

    head_args = {}
    if model_type == "albert" and "classifier_dropout_prob" in config and "classifier_dropout" in cls.head_arguments:
        head_args["classifier_dropout"] = float(config["classifier_dropout_prob"])
    model = cls(ENCODERS[model_type](**backbone_config), **head_args)
    backbone = model.backbone

    missing = [name for _, name, _ in backbone_entries(backbone, model_type, prefix) if name not in tensors.names()]
    if missing:
        raise UserInputError(f"{path}: the checkpoint lacks backbone tensor {missing[0]!r} ({len(missing)} missing).")
    _assign(backbone_entries(backbone, model_type, prefix), tensors)

    pooler = pooler_entries(backbone, model_type, prefix)
    if all(name in tensors.names() for _, name, _ in pooler):
        _assign(pooler, tensors)
    else:
        logger.info("%s: no pooler weights in the checkpoint; the pooler is freshly initialised.", path)

    for head, entries in head_entries(model).items():
        present = [name for _, name, _ in entries if name in tensors.names()]
        if len(present) == len(entries):
            _assign(entries, tensors)
        elif present:
            absent = next(name for _, name, _ in entries if name not in tensors.names())
            raise UserInputError(f"{path}: the {head} head is incomplete: tensor {absent!r} is missing.")
        else:
            logger.warning("%s: the checkpoint has no %s head; it is freshly initialised.", path, head)
    return model


def save(model, path):
    """Writes `model` as a transformers checkpoint directory (config.json + model.safetensors).

    A new directory appears whole; in an existing one, the two files are replaced one by one and any other file
    (a tokenizer) is kept.
    """
    from safetensors.numpy import save_file

    model_type = model.model_type
    prefix = f"{model_type}."
    backbone = model.backbone
    entries = backbone_entries(backbone, model_type, prefix)
    if model.huggingface_pooler:
        entries += pooler_entries(backbone, model_type, prefix)
    for head_entries_ in head_entries(model).values():
        entries += head_entries_
    tensors = {
        name: _to_hf(np.asarray(variable.numpy(), np.float32), variable, layout) for variable, name, layout in entries
    }
    family = "Albert" if model_type == "albert" else "Bert"
    config = hf_config_from_model(model, f"{family}{model.huggingface_architecture}")

    def write(directory):
        with io.atomic_path(os.path.join(directory, SAFETENSORS_FILE)) as temporary:
            save_file(tensors, temporary, metadata={"format": "pt"})
        io.write_json(os.path.join(directory, CONFIG_FILE), config)

    path = os.fspath(path)
    if os.path.isdir(path):
        write(path)
    else:
        with io.atomic_path(path, directory=True) as staging:
            write(staging)
