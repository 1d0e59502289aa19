"""The embedded Austen SQuAD v2.0 question set: reproducible from its script, honest spans, honest impossibles."""

import json
import os

import pytest

from keras_albert.data import make_corpus_squad, tokenizers
from keras_albert.data.squad import (
    austen_squad_path,
    convert_examples_to_features,
    evaluate,
    normalize_answer,
    read_squad,
)
from fixtures_data import trained_tokenizer_dir

CORPUS = make_corpus_squad.CORPUS_DIR
SPLITS = ("train", "dev")


def _committed(split):
    assert austen_squad_path(split) == os.path.join(CORPUS, f"austen_squad_{split}.json")
    with open(austen_squad_path(split), encoding="utf-8") as file:
        return json.load(file)


def test_committed_files_are_what_the_script_builds(tmp_path):
    train, dev = make_corpus_squad.build()
    assert train == _committed("train")
    assert dev == _committed("dev")
    assert make_corpus_squad.main(["--output-dir", str(tmp_path)]) == 0
    for split in SPLITS:
        assert json.loads((tmp_path / f"austen_squad_{split}.json").read_text()) == _committed(split)
        assert os.path.getsize(os.path.join(CORPUS, f"austen_squad_{split}.json")) < 1_000_000


def test_sizes_and_splits():
    examples = {split: read_squad(_committed(split)) for split in SPLITS}  # validates every answer_start
    assert len(examples["train"]) >= 300 and len(examples["dev"]) >= 80
    for split in SPLITS:
        impossible = sum(example.is_impossible for example in examples[split])
        assert 0.15 <= impossible / len(examples[split]) <= 0.4
        assert len({example.title for example in examples[split]}) == 6  # all six novels
        assert len({example.qas_id for example in examples[split]}) == len(examples[split])
    # held apart: no dev paragraph is a training paragraph
    assert not {e.context for e in examples["train"]} & {e.context for e in examples["dev"]}


def test_answers_are_real_spans_and_impossible_questions_come_from_another_novel():
    for split in SPLITS:
        examples = read_squad(_committed(split))
        answerable = {}
        for example in examples:
            if not example.is_impossible:
                (answer,) = example.answers
                assert example.context[answer.start : answer.end] == answer.text
                assert answer.text[0].isupper()
                answerable.setdefault(example.question, []).append(example)
        for example in examples:
            if example.is_impossible:
                twins = answerable[example.question]  # the same question, answerable in its own paragraph
                assert all(twin.title != example.title for twin in twins)
                for twin in twins:
                    answer = twin.answers[0]
                    # the words around the answer in the twin's paragraph are not in this paragraph
                    assert twin.context[max(0, answer.start - 30) : answer.end + 30] not in example.context


def test_labels_decode_exactly_with_an_albert_tokenizer():
    tokenizer = tokenizers.load_tokenizer(trained_tokenizer_dir("albert"))
    examples = read_squad(_committed("train"))
    features = convert_examples_to_features(examples, tokenizer, max_seq_length=128, doc_stride=64,
                                            max_query_length=48, is_training=True)
    labelled = set()
    for feature in features:
        example = examples[feature.example_index]
        if feature.start_position:
            offsets = feature.token_offsets
            decoded = example.context[offsets[feature.start_position, 0] : offsets[feature.end_position, 1]]
            assert normalize_answer(decoded) == normalize_answer(example.answers[0].text)
            labelled.add(feature.example_index)
    assert labelled == {i for i, example in enumerate(examples) if not example.is_impossible}
    lengths = [int(f.input_mask.sum()) for f in features]
    print(f"features: {len(features)} for {len(examples)} questions, mean length {sum(lengths) / len(lengths):.0f}")


@pytest.mark.parametrize("argv", [["--corpus-dir", "/nonexistent-dir"]])
def test_script_error_is_one_line(argv, capsys):
    assert make_corpus_squad.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "/nonexistent-dir" in error


def test_always_no_answer_on_the_dev_set_scores_its_no_answer_share():
    dev = _committed("dev")
    examples = read_squad(dev)
    impossible = sum(example.is_impossible for example in examples)
    scores = evaluate(dev, {example.qas_id: "" for example in examples})
    assert scores["exact"] == pytest.approx(100 * impossible / len(examples), abs=1e-9)
    assert scores["f1"] == pytest.approx(100 * impossible / len(examples), abs=1e-9)
    assert scores["NoAns_total"] == impossible and scores["HasAns_exact"] == 0.0
