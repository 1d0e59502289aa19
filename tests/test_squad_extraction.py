"""Windows, labels and answer extraction on long contexts, with synthetic logits; the v2 no-answer rule; files.

A word-level tokenizer defined here keeps these tests independent of the trained tokenizers (tested with the real
sample in test_squad_features.py): every word is a token, its offsets are exact.
"""

import collections
import json
import re

import numpy as np
import pytest

from keras_albert.data.squad import (
    SquadAnswer,
    SquadExample,
    convert_examples_to_features,
    evaluate,
    extract_answers,
    read_squad,
    write_predictions,
)


class WordTokenizer:
    pad_id, unk_id, cls_id, sep_id, mask_id = 0, 1, 2, 3, 4

    def __init__(self):
        self.vocab = {}

    def encode_with_offsets(self, text):
        matches = list(re.finditer(r"\w+|[^\w\s]", text))
        ids = [self.vocab.setdefault(m.group(), 5 + len(self.vocab)) for m in matches]
        return ids, [(m.start(), m.end()) for m in matches]

    def encode(self, text):
        return self.encode_with_offsets(text)[0]


WORDS = "w{:03d}"
LONG_CONTEXT = " ".join(WORDS.format(i) for i in range(300))  # 300 tokens, 4 chars each + spaces


def _long_example(qas_id="long", answer_word=270, impossible=False):
    answers = () if impossible else (SquadAnswer(WORDS.format(answer_word), 5 * answer_word),)
    return SquadExample(qas_id, "which word is it", LONG_CONTEXT, answers, impossible)


def test_windows_cover_a_long_context_and_labels_point_at_the_answer():
    tokenizer = WordTokenizer()
    example = _long_example(answer_word=270)
    features = convert_examples_to_features([example], tokenizer, max_seq_length=64, doc_stride=32,
                                            max_query_length=8, is_training=True)
    # window length 64 - 4 question tokens - 3 = 57; starts 0, 32, ..., 256 (256 + 57 >= 300) -> 9 windows
    assert len(features) == 9
    assert [f.window_index for f in features] == list(range(9))
    labelled = [f for f in features if f.start_position != 0]
    assert labelled  # the answer sits in the last windows
    for feature in features:
        assert feature.input_ids[0] == tokenizer.cls_id
        assert feature.input_ids[5] == tokenizer.sep_id  # [CLS] + 4 question tokens
        assert feature.segment_ids[:6].tolist() == [0] * 6
        if feature.start_position:
            s, e = feature.token_offsets[feature.start_position], feature.token_offsets[feature.end_position]
            assert LONG_CONTEXT[s[0] : e[1]] == "w270"
        else:
            assert feature.end_position == 0
    # every context token is max-context in exactly one window
    counts = np.zeros(300, dtype=int)
    for feature in features:
        for (start, _), flag in zip(feature.token_offsets, feature.token_is_max_context):
            if flag:
                counts[start // 5] += 1
    assert counts.tolist() == [1] * 300


def _logits_picking(features, context, answer_char_start, answer_char_end, null_window=None):
    """Logits that choose the token span at the given characters in the window where it is max-context."""
    num, length = len(features), features[0].input_ids.shape[0]
    start_logits = np.full((num, length), -5.0, dtype=np.float32)
    end_logits = np.full((num, length), -5.0, dtype=np.float32)
    chosen = None
    for index, feature in enumerate(features):
        starts = np.where(feature.token_offsets[:, 0] == answer_char_start)[0]
        ends = np.where(feature.token_offsets[:, 1] == answer_char_end)[0]
        if len(starts) and len(ends) and feature.token_is_max_context[starts[0]]:
            start_logits[index, starts[0]], end_logits[index, ends[0]] = 6.0, 5.0
            chosen = index
        # decoys: a high-scoring span at the same place in other windows' non-max-context tokens
        elif len(starts) and len(ends):
            start_logits[index, starts[0]], end_logits[index, ends[0]] = 9.0, 9.0
    return start_logits, end_logits, chosen


def test_extraction_finds_a_span_in_a_late_window():
    tokenizer = WordTokenizer()
    example = _long_example(answer_word=270)
    features = convert_examples_to_features([example], tokenizer, max_seq_length=64, doc_stride=32,
                                            max_query_length=8)
    # answer "w270 w271 w272": chars [1350, 1364)
    start_logits, end_logits, chosen = _logits_picking(features, LONG_CONTEXT, 1350, 1364)
    assert chosen is not None and chosen >= 7  # a late window
    predictions, nbest, null_odds = extract_answers([example], features, start_logits, end_logits)
    # the decoy windows have the span too but not as max-context start tokens: decoys cannot win
    assert predictions == {"long": "w270 w271 w272"}
    assert null_odds is None
    assert nbest["long"][0]["text"] == "w270 w271 w272"
    assert nbest["long"][0]["start_logit"] == 6.0 and nbest["long"][0]["end_logit"] == 5.0
    assert len(nbest["long"]) == 20
    assert len({entry["text"] for entry in nbest["long"]}) == 20
    assert sum(entry["probability"] for entry in nbest["long"]) == pytest.approx(1.0, abs=1e-6)


def test_max_answer_length_and_order():
    tokenizer = WordTokenizer()
    example = _long_example()
    features = convert_examples_to_features([example], tokenizer, max_seq_length=64, doc_stride=32,
                                            max_query_length=8)
    # a 5-token span is allowed by max_answer_length 5 and refused by 4
    start_logits, end_logits, _ = _logits_picking(features, LONG_CONTEXT, 5 * 10, 5 * 14 + 4)
    long_span = "w010 w011 w012 w013 w014"
    assert extract_answers([example], features, start_logits, end_logits, max_answer_length=5)[0]["long"] == long_span
    assert extract_answers([example], features, start_logits, end_logits, max_answer_length=4)[0]["long"] != long_span


def test_v2_null_score_is_the_minimum_over_windows_and_the_threshold_rule():
    tokenizer = WordTokenizer()
    example = _long_example()
    features = convert_examples_to_features([example], tokenizer, max_seq_length=64, doc_stride=32,
                                            max_query_length=8)
    start_logits, end_logits, _ = _logits_picking(features, LONG_CONTEXT, 1350, 1364)  # best span 6 + 5 = 11
    start_logits[:, 0], end_logits[:, 0] = 8.0, 7.0  # null 15 in every window ...
    start_logits[3, 0], end_logits[3, 0] = 6.0, 6.5  # ... but 12.5 in window 3: the minimum is used
    predictions, nbest, null_odds = extract_answers([example], features, start_logits, end_logits,
                                                    version_2_with_negative=True)
    assert null_odds["long"] == pytest.approx(12.5 - 11.0, abs=1e-6)
    assert predictions["long"] == ""  # 1.5 > threshold 0.0
    assert nbest["long"][0] == {"text": "", "probability": pytest.approx(nbest["long"][0]["probability"]),
                                "start_logit": 6.0, "end_logit": 6.5}
    predictions, _, _ = extract_answers([example], features, start_logits, end_logits,
                                        version_2_with_negative=True, null_score_diff_threshold=2.0)
    assert predictions["long"] == "w270 w271 w272"  # 1.5 <= 2.0


def test_always_no_answer_scores_exactly_the_no_answer_share(tmp_path):
    tokenizer = WordTokenizer()
    examples = [_long_example(f"q{i}", answer_word=30 * i, impossible=i % 3 == 0) for i in range(9)]
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=64, doc_stride=32,
                                            max_query_length=8)
    num, length = len(features), 64
    start_logits = np.zeros((num, length), np.float32)
    end_logits = np.zeros((num, length), np.float32)
    start_logits[:, 0] = end_logits[:, 0] = 10.0  # [CLS] wins everywhere
    predictions, nbest, null_odds = extract_answers(examples, features, start_logits, end_logits,
                                                    version_2_with_negative=True)
    assert set(predictions.values()) == {""}
    dataset = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{"context": LONG_CONTEXT, "qas": [
        {"id": e.qas_id, "question": e.question, "is_impossible": e.is_impossible,
         "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers]} for e in examples]}]}]}
    assert len(read_squad(dataset)) == 9
    scores = evaluate(dataset, predictions, na_probs=null_odds)
    assert scores["exact"] == pytest.approx(100 * 3 / 9, abs=1e-9)  # 3 of 9 questions are impossible
    assert scores["f1"] == pytest.approx(100 * 3 / 9, abs=1e-9)
    assert scores["NoAns_exact"] == 100.0 and scores["HasAns_exact"] == 0.0

    paths = write_predictions(str(tmp_path / "out"), predictions, nbest, null_odds)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "nbest_predictions.json", "null_odds.json", "predictions.json"]
    assert json.loads(open(paths["predictions"]).read()) == predictions
    assert json.loads(open(paths["null_odds"]).read()) == pytest.approx(dict(null_odds))
    assert json.loads(open(paths["nbest_predictions"]).read())["q1"][0]["text"] == ""


def test_impossible_and_out_of_window_labels_are_cls():
    tokenizer = WordTokenizer()
    examples = [_long_example("none", impossible=True), _long_example("early", answer_word=3)]
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=64, doc_stride=32,
                                            max_query_length=8, is_training=True)
    assert all(f.start_position == f.end_position == 0 for f in features if f.example_index == 0)
    early = [f for f in features if f.example_index == 1]
    assert early[0].start_position > 0 and all(f.start_position == 0 for f in early[1:])


def test_bad_arguments():
    from keras_albert.errors import UserInputError

    with pytest.raises(UserInputError, match="max_seq_length"):
        convert_examples_to_features([_long_example()], WordTokenizer(), max_seq_length=10, max_query_length=8)
    with pytest.raises(UserInputError, match="doc_stride"):
        convert_examples_to_features([_long_example()], WordTokenizer(), doc_stride=0)


def test_squad_dataset_batches_and_shards():
    import tensorflow as tf

    from keras_albert.data.squad import squad_dataset

    tokenizer = WordTokenizer()
    examples = [_long_example(f"q{i}", answer_word=30 * i) for i in range(4)]
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=64, doc_stride=32,
                                            max_query_length=8, is_training=True)
    assert len(features) == 36
    batches = list(squad_dataset(features, batch_size=8, training=False).as_numpy_iterator())
    assert [len(b["input_ids"]) for b in batches] == [8, 8, 8, 8, 4]
    assert set(batches[0]) == {"input_ids", "input_mask", "segment_ids", "start_positions", "end_positions"}
    assert batches[0]["input_ids"].dtype == np.int32 and batches[0]["input_ids"].shape == (8, 64)
    ordered = np.concatenate([b["start_positions"] for b in batches])
    assert ordered.tolist() == [f.start_position for f in features]

    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=2)
    shard = squad_dataset(features, batch_size=8, training=True, input_context=context, seed=1)
    first = next(iter(shard))
    assert first["input_ids"].shape == (4, 64)  # global 8 over 2 replicas
    # pipeline 1 holds odd features only; a repeated pass draws each of its 18 features equally often
    rows = shard.unbatch().take(18 * 3).as_numpy_iterator()
    seen = collections.Counter(tuple(row["input_ids"].tolist()) for row in rows)
    expected = collections.Counter(tuple(f.input_ids.tolist()) for f in features[1::2])
    assert seen == {row: 3 * count for row, count in expected.items()}
