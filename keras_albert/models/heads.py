"""What the task heads share: their initializer, and the per-example loss and accuracy terms they sum."""

import keras
import tensorflow as tf


def head_initializer():
    """BERT's and ALBERT's initializer for head weights: a truncated normal with standard deviation 0.02."""
    return keras.initializers.TruncatedNormal(stddev=0.02)


def sparse_cross_entropy(labels, logits):
    """Per-example cross-entropy of integer `labels` against `logits`, computed in float32 whatever the policy."""
    return keras.ops.sparse_categorical_crossentropy(labels, tf.cast(logits, tf.float32), from_logits=True)


def correct_predictions(labels, logits):
    """1.0 where the arg-max of `logits` is the label, else 0.0."""
    return tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=labels.dtype), labels), tf.float32)
