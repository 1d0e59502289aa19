"""The settings of one create-pretraining-data run: validated once, here, then passed by name to every step."""

import dataclasses
import os

import numpy as np

from keras_albert.data.pretraining import instances
from keras_albert.data.pretraining.masking import MASKING_MODES
from keras_albert.data.tokenizers import MODEL_TYPES
from keras_albert.errors import UserInputError

BUILDERS = ("compiled", "numpy")

# The shortest sequence any record or window can be: [CLS] A [SEP] B [SEP] (pretraining), [CLS] question [SEP]
# context [SEP] (SQuAD). Every check of a sequence length in the library uses this one number.
MIN_SEQ_LENGTH = 5


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class PretrainingDataSettings:
    """How create-pretraining-data turns a tokenized corpus into records (see `create_pretraining_data`).

    `masking=None` means "ngram" for ALBERT and "token" for BERT; `max_ngram` is 1 unless `masking` is "ngram";
    `workers=None` means every core; `builder=None` means the compiled builder when the install has one, else the
    NumPy one (both write the same bytes). Errors name the command's flags (`--masking: ...`).

    Example:
    ```python
    settings = PretrainingDataSettings(model_type="bert", max_seq_length=128, masking="whole_word")
    settings.max_ngram  # 1
    ```
    """

    model_type: str = "albert"
    max_seq_length: int = 512
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    masking: str = None
    max_ngram: int = 3
    dupe_factor: int = 10
    short_seq_prob: float = 0.1
    num_shards: int = 1
    workers: int = None
    seed: int = 12345
    no_masking: bool = False
    document_break_lines: int = 1
    builder: str = None

    def __post_init__(self):
        if self.masking is None:
            object.__setattr__(self, "masking", "ngram" if self.model_type == "albert" else "token")
        if self.workers is None:
            object.__setattr__(self, "workers", available_cores())
        checks = [
            ("model_type", self.model_type in MODEL_TYPES, "albert or bert"),
            ("masking", self.masking in MASKING_MODES, "one of " + ", ".join(MASKING_MODES)),
            (
                "max_seq_length",
                _is_int(self.max_seq_length) and self.max_seq_length >= MIN_SEQ_LENGTH,
                f"an integer >= {MIN_SEQ_LENGTH}",
            ),
            (
                "max_predictions_per_seq",
                _is_int(self.max_predictions_per_seq) and self.max_predictions_per_seq >= 1,
                "an integer >= 1",
            ),
            ("masked_lm_prob", 0 < self.masked_lm_prob < 1, "between 0 and 1"),
            ("max_ngram", _is_int(self.max_ngram) and self.max_ngram >= 1, "an integer >= 1"),
            ("dupe_factor", _is_int(self.dupe_factor) and self.dupe_factor >= 1, "an integer >= 1"),
            ("short_seq_prob", 0 <= self.short_seq_prob <= 1, "between 0 and 1"),
            ("num_shards", _is_int(self.num_shards) and 1 <= self.num_shards <= 99999, "an integer from 1 to 99999"),
            ("workers", _is_int(self.workers) and self.workers >= 1, "an integer >= 1"),
            ("seed", _is_int(self.seed), "an integer"),
            (
                "document_break_lines",
                _is_int(self.document_break_lines) and self.document_break_lines >= 1,
                "an integer >= 1",
            ),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise UserInputError(f"--{name}: expected {expected}, got {getattr(self, name)!r}")
        if self.masking != "ngram":
            object.__setattr__(self, "max_ngram", 1)
        if self.builder not in (None, *BUILDERS):
            raise UserInputError(f"builder: expected compiled, numpy or None, got {self.builder!r}")
        available = "compiled" if instances.compiled_module() is not None else "numpy"
        if self.builder is None:
            object.__setattr__(self, "builder", available)
        elif self.builder == "compiled" and available != "compiled":
            raise UserInputError("builder: this install has no compiled instance builder (no C compiler at install)")

    @property
    def sentence_order(self):
        """ALBERT's sentence-order labels (and `token_boundary` feature); BERT's next-sentence labels otherwise."""
        return self.model_type == "albert"

    def as_dict(self, tokenizer=None):
        """The settings as the summary records them, with the tokenizer's path before the builder."""
        fields = dataclasses.asdict(self)
        builder = fields.pop("builder")
        return {**fields, "tokenizer": tokenizer, "builder": builder}
