"""ALBERT / BERT with a span head for extractive question answering (SQuAD v1.1 and v2.0)."""

import os

import keras
import tensorflow as tf

from keras_albert.errors import UserInputError
from keras_albert.models.heads import correct_predictions, head_initializer, sparse_cross_entropy
from keras_albert.models.task import Task


@keras.saving.register_keras_serializable(package="keras_albert")
class SquadModel(Task):
    """A backbone with a span head giving `start_logits` and `end_logits` over the sequence.

    The head is one dense layer from each token's hidden state to two logits, as in BERT's SQuAD finetuning
    (Devlin et al., 2018) and Hugging Face's `*ForQuestionAnswering`. The loss is the mean over the global batch
    of the start and end cross-entropies, averaged; an unanswerable question points both at `[CLS]` (index 0).

    Args:
        backbone: `keras_albert.models.AlbertEncoder` or `BertEncoder`.

    Example:
    ```python
    import keras_albert

    pretrained = keras_albert.PretrainingModel.from_preset("albert_tiny")
    model = keras_albert.SquadModel.from_pretraining(pretrained)
    model.compile(optimizer=keras_albert.optimizers.AdamW(3e-5))
    ```
    """

    head_arguments = ()
    input_names_used = ("input_ids", "input_mask", "segment_ids")
    numerator_names = ("start_loss_sum", "end_loss_sum", "start_correct", "end_correct")
    denominator_names = ("rows",)
    metric_names = {
        "start_loss": ("start_loss_sum", "rows"),
        "end_loss": ("end_loss_sum", "rows"),
        "start_accuracy": ("start_correct", "rows"),
        "end_accuracy": ("end_correct", "rows"),
    }
    huggingface_architecture = "ForQuestionAnswering"
    huggingface_pooler = False  # transformers' *ForQuestionAnswering have none
    huggingface_heads = {
        "albert": {"question answering": (("dense", "span_head", "qa_outputs"),)},
        "bert": {"question answering": (("dense", "span_head", "qa_outputs"),)},
    }

    def __init__(self, backbone, **kwargs):
        self.backbone = backbone
        self.span_head = keras.layers.Dense(
            2, kernel_initializer=head_initializer(), dtype=backbone.dtype_policy, name="span_head"
        )
        inputs = {name: keras.Input(shape=(None,), dtype="int32", name=name) for name in self.input_names_used}
        encoded = backbone(
            {
                "token_ids": inputs["input_ids"],
                "segment_ids": inputs["segment_ids"],
                "padding_mask": inputs["input_mask"],
            }
        )
        logits = self.span_head(encoded["sequence_output"])
        start_logits, end_logits = keras.ops.unstack(logits, num=2, axis=-1)
        super().__init__(inputs=inputs, outputs={"start_logits": start_logits, "end_logits": end_logits}, **kwargs)

    @classmethod
    def from_pretraining(cls, pretrained):
        """A SquadModel whose encoder is a copy of a pretrained one; the span head is freshly initialised.

        Args:
            pretrained: a `PretrainingModel` (or any `Task`), a `.keras` file, or a Hugging Face checkpoint
                directory. The copy shares no variables with `pretrained`, so finetuning it leaves the
                pretraining model untouched.
        """
        if isinstance(pretrained, (str, os.PathLike)):
            path = os.fspath(pretrained)
            if os.path.isdir(path):
                return cls.from_huggingface(path)
            if not path.endswith(".keras") or not os.path.isfile(path):
                raise UserInputError(
                    f"{path}: expected a .keras model file or a Hugging Face checkpoint directory."
                )
            pretrained = keras.saving.load_model(path)
        if not isinstance(pretrained, Task):
            raise UserInputError(f"Cannot take an encoder from {type(pretrained).__name__}.")
        source = pretrained.backbone
        backbone = type(source).from_config(source.get_config())
        backbone.set_weights(source.get_weights())
        return cls(backbone)

    def _local_denominators(self, data):
        return [tf.cast(tf.shape(data["input_ids"])[0], tf.float32)]

    def _loss_terms(self, data, outputs):
        terms = {}
        for side in ("start", "end"):
            labels = tf.reshape(tf.cast(data[f"{side}_positions"], tf.int32), [-1])
            logits = outputs[f"{side}_logits"]
            terms[f"{side}_loss_sum"] = tf.reduce_sum(sparse_cross_entropy(labels, logits))
            terms[f"{side}_correct"] = tf.reduce_sum(correct_predictions(labels, logits))
        return terms

    def _loss_from_terms(self, terms, denominators):
        rows = tf.maximum(denominators["rows"], 1.0)
        return (terms["start_loss_sum"] + terms["end_loss_sum"]) / (2.0 * rows)
