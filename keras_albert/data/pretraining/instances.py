"""Instance building behind one interface: `build_instances(job)`, whichever builder runs.

A `BuildJob` holds everything one task's build reads, by name: the corpus arrays, the vocabulary tables, the run's
settings, the task's documents, its position in the plan and its three stream keys. The compiled builder
(`_instances.c`, when the install compiled it) reads these attributes itself; the NumPy builder (`numpy_builder`)
is the fallback and the tests' oracle. Both draw the same numbers and write the same bytes: one task's records,
framed as TFRecords and grouped by shard (`plan.shard_major`), with google-crc32c's CRC-32Cs (`encoding`).
"""

import dataclasses
import functools

import numpy as np

from keras_albert.data.pretraining import encoding, masking, numpy_builder, streams


@functools.cache
def compiled_module():
    """The compiled instance builder, or None when this install has none (the NumPy builder then runs)."""
    try:
        from keras_albert.data.pretraining import _instances
    except ImportError:
        return None
    return _instances


class Tables:
    """Per-vocabulary lookups the masking needs, small enough to send to every worker."""

    ARRAYS = ("word_start", "replacement_ids")
    SCALARS = ("pad_id", "cls_id", "sep_id", "mask_id", "vocab_size")

    def __init__(self, word_start, replacement_ids, pad_id, cls_id, sep_id, mask_id, vocab_size):
        self.word_start = word_start
        self.replacement_ids = replacement_ids
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = pad_id, cls_id, sep_id, mask_id
        self.vocab_size = vocab_size

    @classmethod
    def from_tokenizer(cls, tokenizer):
        special = np.zeros(tokenizer.vocab_size, bool)
        special[tokenizer.special_ids] = True
        if tokenizer.model_type == "bert":
            for i in range(tokenizer.vocab_size):
                token = tokenizer.id_to_token(i)
                if token.startswith("[") and token.endswith("]") and len(token) > 2:
                    special[i] = True  # [unused12] and the like are never random replacements
        return cls(
            word_start=tokenizer.word_start_table().copy(),
            replacement_ids=np.flatnonzero(~special).astype(np.int64),
            pad_id=tokenizer.pad_id if tokenizer.pad_id is not None else 0,
            cls_id=tokenizer.cls_id,
            sep_id=tokenizer.sep_id,
            mask_id=tokenizer.mask_id,
            vocab_size=tokenizer.vocab_size,
        )

    def scalars(self):
        return {name: getattr(self, name) for name in self.SCALARS}


@dataclasses.dataclass(frozen=True)
class BuildJob:
    """What one task's build reads (the compiled builder by attribute name).

    Args:
        corpus: `corpus.Corpus`. The tokenized documents.
        tables: `Tables`. The vocabulary's lookups.
        settings: `PretrainingDataSettings`. The run's settings.
        documents: int64 array. The task's documents, in order.
        position: int. The task's position in the plan (which shard its first record goes to).
        pair_key, mask_key, shuffle_key: int. The task's streams: pairing, masking (one sub-stream per row), and the
            order of its records.
    """

    corpus: object
    tables: Tables
    settings: object
    documents: np.ndarray
    position: int
    pair_key: int
    mask_key: int
    shuffle_key: int

    @classmethod
    def for_task(cls, corpus, tables, settings, task):
        task_key = streams.key(streams.key(settings.seed & streams.MASK64, task.copy), task.chunk)
        pair_key, mask_key, shuffle_key = (streams.key(task_key, stream) for stream in range(3))
        documents = np.ascontiguousarray(task.documents, np.int64)
        return cls(corpus, tables, settings, documents, task.position, pair_key, mask_key, shuffle_key)

    @property
    def sentence_order(self):
        return self.settings.sentence_order

    @property
    def token_boundary(self):
        """Google ALBERT's script writes `token_boundary`; BERT's does not."""
        return self.settings.sentence_order

    @property
    def whole_words(self):
        return self.settings.masking != "token"

    @property
    def ngram_thresholds(self):
        return masking.ngram_thresholds(self.settings.max_ngram)

    @property
    def crc32c_function(self):
        """The address of google-crc32c's C `crc32c_value` for the compiled builder, 0 to leave the CRCs to Python."""
        return encoding.native_crc32c_address()


def build_instances(job):
    """One task's records: (bytes framed as TFRecords and grouped by shard, int64 end offset of each, counts)."""
    if job.settings.builder == "compiled":
        crc_filled = job.crc32c_function != 0
        blob, ends, stats = compiled_module().build(job)
        ends = np.frombuffer(ends, np.int64)
    else:
        crc_filled = False
        blob, ends, stats = numpy_builder.build(job)
    return blob if crc_filled else encoding.fill_checksums(blob, ends), ends, stats
