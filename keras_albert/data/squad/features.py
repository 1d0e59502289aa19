"""SQuAD examples to model features: `[CLS] question [SEP] context window [SEP]`, with character offsets.

A context longer than one window is covered by sliding windows `doc_stride` tokens apart (BERT's run_squad). Each
context token keeps the character span it came from in the original context (from the tokenizer's
`encode_with_offsets`), so labels are found, and answers are cut back out, by character position, with SentencePiece
and WordPiece alike.
"""

import collections
import dataclasses
import functools

import numpy as np
from tqdm.auto import tqdm

from keras_albert.errors import UserInputError

_PROGRESS_MIN_EXAMPLES = 2000


@dataclasses.dataclass
class SquadFeature:
    """One window of one example, as the model sees it.

    Args:
        example_index: int. Index of the example in the list given to `convert_examples_to_features`.
        window_index: int. Which window of that example's context this is.
        input_ids: int32 array [max_seq_length]. `[CLS] question [SEP] window [SEP]`, padded with the pad id.
        input_mask: int32 array [max_seq_length]. 1 for real tokens, 0 for padding.
        segment_ids: int32 array [max_seq_length]. 0 for `[CLS] question [SEP]`, 1 for `window [SEP]`.
        start_position: int. Token index of the answer's first token, or 0 (`[CLS]`) when the question is
            impossible or the answer is not inside this window (and always 0 when not built for training).
        end_position: int. Token index of the answer's last token, or 0 likewise.
        token_offsets: int32 array [max_seq_length, 2]. For context tokens, the `[start, end)` character span in the
            example's context; `-1` for `[CLS]`, question, `[SEP]` and padding.
        token_is_max_context: bool array [max_seq_length]. True where this window gives the token its most
            context (more tokens on its less-covered side than any other window does): answers start only there.
    """

    example_index: int
    window_index: int
    input_ids: np.ndarray
    input_mask: np.ndarray
    segment_ids: np.ndarray
    start_position: int
    end_position: int
    token_offsets: np.ndarray
    token_is_max_context: np.ndarray


def _check_arguments(max_seq_length, doc_stride, max_query_length):
    for name, value in (
        ("max_seq_length", max_seq_length),
        ("doc_stride", doc_stride),
        ("max_query_length", max_query_length),
    ):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise UserInputError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if max_seq_length - max_query_length - 3 < 1:
        raise UserInputError(
            "`max_seq_length` must leave room for `max_query_length` question tokens, 3 special tokens and context. "
            f"Received: max_seq_length={max_seq_length}, max_query_length={max_query_length}"
        )


def _windows(num_tokens, window_length, doc_stride):
    """(start, length) of each window, BERT's way: advance by `doc_stride` until a window reaches the end."""
    windows, start = [], 0
    while True:
        length = min(num_tokens - start, window_length)
        windows.append((start, length))
        if start + length >= num_tokens:
            return windows
        start += min(length, doc_stride)


@functools.lru_cache(maxsize=4096)
def _windows_and_flags(num_tokens, window_length, doc_stride):
    windows = _windows(num_tokens, window_length, doc_stride)
    return windows, _max_context_flags(windows)


def _max_context_flags(windows):
    """For each window, whether each of its tokens has its maximum context there (first window wins ties).

    A token's context score in a window is min(tokens left of it, tokens right of it) + 0.01 * window length
    (BERT's `_check_is_max_context`).
    """
    best = {}
    for window_index, (start, length) in enumerate(windows):
        for position in range(start, start + length):
            score = min(position - start, start + length - 1 - position) + 0.01 * length
            if position not in best or score > best[position][0]:
                best[position] = (score, window_index)
    return [
        np.array([best[position][1] == window_index for position in range(start, start + length)], dtype=bool)
        for window_index, (start, length) in enumerate(windows)
    ]


def answer_token_span(offsets, start_char, end_char):
    """First and last index of the tokens overlapping characters `[start_char, end_char)`, or None if none does."""
    overlapping = [i for i, (start, end) in enumerate(offsets) if start < end_char and end > start_char]
    if not overlapping:
        return None
    return overlapping[0], overlapping[-1]


def convert_examples_to_features(
    examples,
    tokenizer,
    max_seq_length=384,
    doc_stride=128,
    max_query_length=64,
    is_training=False,
    progress=None,
):
    """Tokenizes SQuAD examples into fixed-length windows with labels and offset maps.

    Args:
        examples: list of `SquadExample` (from `read_squad`).
        tokenizer: a `keras_albert.data.tokenizers` tokenizer (`encode`, `encode_with_offsets`, `cls_id`, `sep_id`,
            `pad_id`).
        max_seq_length: int. Length of every feature, special tokens included.
        doc_stride: int. Tokens between the starts of consecutive windows of a long context.
        max_query_length: int. Questions are cut to this many tokens.
        is_training: bool. Label each window with the first gold answer's token span (`[CLS]` = 0 when impossible
            or outside the window). Examples whose answer covers no token are skipped, with a count printed.
        progress: bool or None. Show a progress bar; None shows one for 2,000 examples or more.

    Returns:
        A list of `SquadFeature`, windows of each example in order, examples in order.

    Example:
    ```python
    from keras_albert.data import load_tokenizer, squad
    tokenizer = load_tokenizer("tokenizer/")
    examples = squad.read_squad("train-v1.1.json")
    features = squad.convert_examples_to_features(examples, tokenizer, is_training=True)
    ```
    """
    _check_arguments(max_seq_length, doc_stride, max_query_length)
    if progress is None:
        progress = len(examples) >= _PROGRESS_MIN_EXAMPLES
    features, skipped = [], 0
    context, context_ids, context_offsets = None, None, None
    for example_index, example in enumerate(
        tqdm(examples, desc="SQuAD features", unit="question", disable=not progress)
    ):
        question_ids = list(tokenizer.encode(example.question))[:max_query_length]
        if example.context != context:  # a paragraph's questions come together: tokenize it once
            context = example.context
            context_ids, context_offsets = tokenizer.encode_with_offsets(context)
            context_ids, context_offsets = list(context_ids), [tuple(map(int, pair)) for pair in context_offsets]

        answer_span = None
        if is_training and not example.is_impossible:
            answer = example.answers[0]
            answer_span = answer_token_span(context_offsets, answer.start, answer.end)
            if answer_span is None:
                skipped += 1
                continue

        window_length = max_seq_length - len(question_ids) - 3
        windows, max_context = _windows_and_flags(len(context_ids), window_length, doc_stride)
        prefix = [tokenizer.cls_id] + question_ids + [tokenizer.sep_id]
        for window_index, (start, length) in enumerate(windows):
            ids = prefix + context_ids[start : start + length] + [tokenizer.sep_id]
            num_real = len(ids)
            input_ids = np.full(max_seq_length, tokenizer.pad_id, dtype=np.int32)
            input_ids[:num_real] = ids
            input_mask = np.zeros(max_seq_length, dtype=np.int32)
            input_mask[:num_real] = 1
            segment_ids = np.zeros(max_seq_length, dtype=np.int32)
            segment_ids[len(prefix) : num_real] = 1
            token_offsets = np.full((max_seq_length, 2), -1, dtype=np.int32)
            if length:
                token_offsets[len(prefix) : len(prefix) + length] = context_offsets[start : start + length]
            is_max_context = np.zeros(max_seq_length, dtype=bool)
            is_max_context[len(prefix) : len(prefix) + length] = max_context[window_index]

            start_position = end_position = 0
            if answer_span is not None and start <= answer_span[0] and answer_span[1] < start + length:
                start_position = answer_span[0] - start + len(prefix)
                end_position = answer_span[1] - start + len(prefix)
            features.append(
                SquadFeature(
                    example_index=example_index,
                    window_index=window_index,
                    input_ids=input_ids,
                    input_mask=input_mask,
                    segment_ids=segment_ids,
                    start_position=start_position,
                    end_position=end_position,
                    token_offsets=token_offsets,
                    token_is_max_context=is_max_context,
                )
            )
    if skipped:
        print(f"SQuAD features: skipped {skipped} training question(s) whose answer covers no token")
    return features


def features_to_arrays(features):
    """Stacks features into the model's input/label arrays (DESIGN names), one row per feature."""
    if not features:
        raise UserInputError("no SQuAD features to batch (empty dataset?)")
    return collections.OrderedDict(
        input_ids=np.stack([f.input_ids for f in features]),
        input_mask=np.stack([f.input_mask for f in features]),
        segment_ids=np.stack([f.segment_ids for f in features]),
        start_positions=np.array([f.start_position for f in features], dtype=np.int32),
        end_positions=np.array([f.end_position for f in features], dtype=np.int32),
    )


def squad_dataset(features, batch_size, training, input_context=None, seed=None, drop_remainder=None):
    """A `tf.data.Dataset` of SQuAD batches: dicts `input_ids`, `input_mask`, `segment_ids`, `start_positions`,
    `end_positions`, each int32 `[batch, ...]`.

    Args:
        features: list of `SquadFeature`.
        batch_size: int. The global batch size; with `input_context`, each input pipeline batches its share
            (`input_context.get_per_replica_batch_size(batch_size)`).
        training: bool. Shuffle (all features, reshuffled each pass) and repeat forever; batches are full.
            Otherwise one pass in feature order, the last batch possibly short.
        input_context: `tf.distribute.InputContext` or None. Shards features across input pipelines (workers).
            For prediction the shards are strided (`shard(n, i)`): pipeline i holds features i, i+n, ...
        seed: int or None. Shuffle seed.
        drop_remainder: bool or None. Default: True for training, False otherwise.

    Example:
    ```python
    train = squad_dataset(features, batch_size=32, training=True)
    strategy.distribute_datasets_from_function(
        lambda context: squad_dataset(features, 32, training=True, input_context=context))
    ```
    """
    import tensorflow as tf

    if batch_size < 1:
        raise UserInputError(f"`batch_size` must be a positive integer. Received: batch_size={batch_size}")
    arrays = features_to_arrays(features)
    dataset = tf.data.Dataset.from_tensor_slices(dict(arrays))
    if input_context is not None:
        if input_context.num_input_pipelines > 1:
            dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if training:
        dataset = dataset.shuffle(len(features), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
