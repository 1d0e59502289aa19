"""Models: keras-hub encoders with ALBERT/BERT pretraining and SQuAD heads, presets, Hugging Face import/export."""

from keras_albert.models.backbones import AlbertEncoder, BertEncoder
from keras_albert.models.presets import PRESETS, preset_config
from keras_albert.models.pretraining_model import PretrainingModel
from keras_albert.models.squad_model import SquadModel

__all__ = ["AlbertEncoder", "BertEncoder", "PRESETS", "PretrainingModel", "SquadModel", "preset_config"]
