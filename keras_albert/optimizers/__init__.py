"""Optimizers and the learning-rate schedule used to pretrain and finetune ALBERT and BERT.

`LAMB` keeps TensorFlow Addons' update rule and arguments; `AdamW` is BERT's Adam with decoupled weight decay; both
exclude variables from weight decay by regexes searched in the variable's full path. `WarmupPolyDecay` is the
reference's linear-warmup, polynomial-decay schedule, counted in optimizer updates.
"""

from keras_albert.optimizers.adamw import AdamW
from keras_albert.optimizers.lamb import EXCLUDE_FROM_WEIGHT_DECAY, LAMB
from keras_albert.optimizers.schedules import WarmupPolyDecay

__all__ = ["LAMB", "AdamW", "WarmupPolyDecay", "EXCLUDE_FROM_WEIGHT_DECAY"]
