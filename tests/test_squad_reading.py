"""Reading SQuAD files: examples from the real sample, and one-line errors for each kind of bad input."""

import copy
import json
import os

import pytest

from keras_albert import cli
from keras_albert.data.squad import read_squad
from keras_albert.errors import UserInputError

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "squad_v1.1_sample.json")

V2 = {
    "version": "v2.0",
    "data": [
        {
            "title": "T",
            "paragraphs": [
                {
                    "context": "Anne walked to Kellynch Hall in the rain.",
                    "qas": [
                        {
                            "id": "a1",
                            "question": "Where did Anne walk?",
                            "answers": [{"text": "Kellynch Hall", "answer_start": 15}],
                            "is_impossible": False,
                        },
                        {
                            "id": "a2",
                            "question": "Who sang?",
                            "answers": [],
                            "plausible_answers": [{"text": "Anne", "answer_start": 0}],
                            "is_impossible": True,
                        },
                    ],
                }
            ],
        }
    ],
}


def _one_line_error(callable_, *args, **kwargs):
    with pytest.raises(UserInputError) as info:
        callable_(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_real_sample():
    examples = read_squad(FIXTURE)
    assert len(examples) == 5
    first = examples[0]
    assert first.qas_id == "5733be284776f41900661182"
    assert first.answers[0].text == "Saint Bernadette Soubirous" and first.answers[0].start == 515
    assert first.context[515:541] == "Saint Bernadette Soubirous"
    assert not any(example.is_impossible for example in examples)
    assert len(examples[1].answers) == 3


def test_v2_dict_and_list():
    examples = read_squad(V2)
    assert [e.is_impossible for e in examples] == [False, True]
    assert examples[1].answers == ()
    assert read_squad(V2["data"]) == examples


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(json.dumps(V2).replace("Anne", "Ann\u00e9").encode("latin-1"))
    message = _one_line_error(read_squad, path)
    assert str(path) in message and "UTF-8" in message


def test_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"data": [')
    message = _one_line_error(read_squad, path)
    assert str(path) in message and "invalid JSON" in message


def test_missing_file(tmp_path):
    assert str(tmp_path / "none.json") in _one_line_error(read_squad, tmp_path / "none.json")


@pytest.mark.parametrize("field", ["question", "answers"])
def test_missing_question_field(field):
    data = copy.deepcopy(V2)
    del data["data"][0]["paragraphs"][0]["qas"][0][field]
    message = _one_line_error(read_squad, data)
    assert "a1" in message and repr(field) in message


def test_missing_answer_start():
    data = copy.deepcopy(V2)
    del data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"]
    message = _one_line_error(read_squad, data)
    assert "a1" in message and "'answer_start'" in message


def test_missing_context():
    data = copy.deepcopy(V2)
    del data["data"][0]["paragraphs"][0]["context"]
    assert "'context'" in _one_line_error(read_squad, data)


def test_answer_not_at_answer_start():
    data = copy.deepcopy(V2)
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 14
    message = _one_line_error(read_squad, data)
    assert "a1" in message and "answer_start 14" in message


def test_impossible_question_in_v1():
    data = copy.deepcopy(V2)
    data["version"] = "1.1"
    assert "a2" in _one_line_error(read_squad, data)
    assert len(read_squad(data, version="2.0")) == 2


def test_command_reports_bad_json_in_one_line(tmp_path, capsys):
    data, predictions = tmp_path / "d.json", tmp_path / "p.json"
    data.write_text("{not json")
    predictions.write_text("{}")
    assert cli.main(["evaluate-squad", str(data), str(predictions)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(data) in error
