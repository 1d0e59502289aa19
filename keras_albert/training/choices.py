"""The choices of a run's settings, in one table each, readable without TensorFlow.

The commands check their settings before the tf.distribute strategy exists, and `MultiWorkerMirroredStrategy`
must be created before any TensorFlow op runs; importing `keras_albert.models` imports TensorFlow (keras-hub), so
the preset names are listed here rather than read from `keras_albert.models.presets.PRESETS`. A test asserts that
this list and `PRESETS` name the same presets in the same order.
"""

PRESET_NAMES = (
    "albert_tiny",
    "albert_small",
    "albert_base",
    "albert_large",
    "albert_xlarge",
    "albert_xxlarge",
    "bert_tiny",
    "bert_small",
    "bert_base",
    "bert_large",
)
MODEL_TYPES = tuple(dict.fromkeys(name.split("_", 1)[0] for name in PRESET_NAMES))
MODEL_SIZES = tuple(dict.fromkeys(name.split("_", 1)[1] for name in PRESET_NAMES))

# Where a run's model comes from: random initialisation of a preset, a keras-albert checkpoint, a Hugging Face
# checkpoint directory.
LOAD_FROM = ("scratch", "checkpoint", "huggingface")
OPTIMIZERS = ("lamb", "adamw")
# --mixed_precision -> Keras dtype policy. Weights stay float32 in every one of them.
PRECISIONS = {"none": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}
JIT_COMPILE = ("auto", "true", "false")


def preset_name(model_type, model_size):
    return f"{model_type}_{model_size}"
