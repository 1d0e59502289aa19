"""`keras_albert.data.squad.evaluate` against hand-computed results of the official SQuAD scoring rules.

Every expected number below was worked out by hand from the official scripts' rules (evaluate-v1.1.py,
evaluate-v2.0.py); the comments show the arithmetic.
"""

import json
import os

import pytest

from keras_albert import cli
from keras_albert.data.squad import evaluate, exact_match_score, f1_score, normalize_answer

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "squad_v1.1_sample.json")


def _dataset(questions, version="v2.0"):
    """questions: list of (id, [gold texts]); an empty list makes an impossible question."""
    context = "unused context"
    qas = [
        {
            "id": qid,
            "question": "?",
            "answers": [{"text": text, "answer_start": 0} for text in answers],
            "is_impossible": not answers,
        }
        for qid, answers in questions
    ]
    return {"version": version, "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}


DATASET = _dataset(
    [
        ("q1", ["The Cat", "a dog"]),
        ("q2", ["big red house"]),
        ("q3", ["Paris", "Paris, France"]),
        ("q4", []),
        ("q5", []),
        ("q6", ["1858"]),
    ]
)
PREDICTIONS = {"q1": "cat!", "q2": "the red house of", "q3": "France", "q4": "", "q5": "something"}
NA_PROBS = {"q1": 0.1, "q2": 0.6, "q3": 0.3, "q4": 0.9, "q5": 0.2}


def test_normalisation_ignores_case_punctuation_articles_whitespace():
    assert normalize_answer("  The  Cat,   sat!  ") == "cat sat"
    assert normalize_answer("An apple; a pear") == "apple pear"
    assert normalize_answer("theatre") == "theatre"  # "the" only as a whole word
    assert exact_match_score("The Cat", "cat.") == 1
    assert exact_match_score("cat", "cats") == 0


def test_token_f1_by_hand():
    # pred [red, house, of], gold [big, red, house]: overlap 2, P = R = 2/3, F1 = 2/3
    assert f1_score("big red house", "the red house of") == pytest.approx(2 / 3, abs=1e-12)
    # repeated tokens count with multiplicity: gold [x, x, y] vs pred [x]: overlap 1, P 1, R 1/3, F1 0.5
    assert f1_score("x x y", "x") == pytest.approx(0.5, abs=1e-12)
    assert f1_score("", "") == 1.0
    assert f1_score("", "anything") == 0.0
    assert f1_score("something", "") == 0.0


def test_scores_by_hand_a_missing_prediction_scoring_0_as_official_v1_1_beyond_v2_0():
    scores = evaluate(DATASET, PREDICTIONS)
    # exact: q1 1 (cat == cat), q2 0, q3 0, q4 1 (empty on impossible), q5 0, q6 0 (missing) -> 2/6
    # f1:    q1 1, q2 2/3, q3 max(0, F1("paris france", "france") = 2/3), q4 1, q5 0, q6 0 -> (10/3)/6
    expected = {
        "exact": 100 * 2 / 6,
        "f1": 100 * (10 / 3) / 6,
        "total": 6,
        "HasAns_exact": 100 * 1 / 4,
        "HasAns_f1": 100 * (7 / 3) / 4,
        "HasAns_total": 4,
        "NoAns_exact": 50.0,
        "NoAns_f1": 50.0,
        "NoAns_total": 2,
    }
    assert scores.keys() == expected.keys()
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-9), key


def test_dataset_may_be_the_data_list():
    assert evaluate(DATASET["data"], PREDICTIONS) == evaluate(DATASET, PREDICTIONS)


def test_best_thresholds_by_hand():
    scores = evaluate(DATASET, PREDICTIONS, na_probs=NA_PROBS)
    # Sweep in na_prob order q1 .1, q5 .2, q3 .3, q2 .6, q4 .9 from 2 (both NoAns right when all predicted null):
    # exact: +1 (q1) = 3 best at 0.1; -1 (q5) = 2; +0; +0; +0 (q4 predicted "") -> best 3/6 at 0.1
    # f1:    +1 = 3 at 0.1; -1 = 2; +2/3 = 2.667; +2/3 = 3.333 best at 0.6; +0 -> best 3.333/6 at 0.6
    assert scores["best_exact"] == pytest.approx(50.0, abs=1e-9)
    assert scores["best_exact_thresh"] == 0.1
    assert scores["best_f1"] == pytest.approx(100 * (10 / 3) / 6, abs=1e-9)
    assert scores["best_f1_thresh"] == 0.6
    # na_prob_thresh 1.0 (official default) switches nothing off: same as without na_probs
    assert scores["f1"] == pytest.approx(evaluate(DATASET, PREDICTIONS)["f1"], abs=1e-12)


def test_na_prob_threshold_applied():
    scores = evaluate(DATASET, PREDICTIONS, na_probs=NA_PROBS, na_prob_thresh=0.5)
    # q2 (0.6) and q4 (0.9) predicted null: q2 answerable -> 0 (was 2/3 F1), q4 impossible -> 1 (already 1)
    assert scores["exact"] == pytest.approx(100 * 2 / 6, abs=1e-9)
    assert scores["f1"] == pytest.approx(100 * (8 / 3) / 6, abs=1e-9)
    assert scores["HasAns_f1"] == pytest.approx(100 * (5 / 3) / 4, abs=1e-9)
    # applying the chosen best threshold reproduces the best score (no ties here)
    at_best = evaluate(DATASET, PREDICTIONS, na_probs=NA_PROBS, na_prob_thresh=0.6)
    assert at_best["f1"] == pytest.approx(at_best["best_f1"], abs=1e-9)


def test_threshold_ties_crossed_one_question_at_a_time_in_file_order():
    # The official sweep visits tied probabilities one by one in the na_probs file order.
    data = _dataset([("a", ["yes"]), ("b", [])])
    predictions = {"a": "yes", "b": "x"}
    # a first: start 1 (b right as null); +1 (a) = 2 best at 0.5; -1 (b) = 1 -> best 2/2
    first = evaluate(data, predictions, na_probs={"a": 0.5, "b": 0.5})
    assert (first["best_exact"], first["best_exact_thresh"]) == (100.0, 0.5)
    # b first: start 1; -1 (b) = 0; +1 (a) = 1 never beats 1 -> best 1/2 at the initial 0.0
    second = evaluate(data, predictions, na_probs={"b": 0.5, "a": 0.5})
    assert (second["best_exact"], second["best_exact_thresh"]) == (50.0, 0.0)


def test_always_no_answer_scores_the_no_answer_share():
    predictions = {qid: "" for qid in ("q1", "q2", "q3", "q4", "q5", "q6")}
    scores = evaluate(DATASET, predictions)
    assert scores["exact"] == pytest.approx(100 * 2 / 6, abs=1e-9)  # NoAns share: 2 of 6
    assert scores["f1"] == pytest.approx(100 * 2 / 6, abs=1e-9)
    assert scores["HasAns_exact"] == 0.0 and scores["NoAns_exact"] == 100.0


def test_real_sample_gold_and_v1_behaviour():
    with open(FIXTURE, encoding="utf-8") as file:
        data = json.load(file)
    gold = {
        qa["id"]: qa["answers"][0]["text"] for article in data["data"] for p in article["paragraphs"] for qa in p["qas"]
    }
    scores = evaluate(data, gold)
    assert scores == {"exact": 100.0, "f1": 100.0, "total": 5, "HasAns_exact": 100.0, "HasAns_f1": 100.0,
                      "HasAns_total": 5}
    # F1("Saint Bernadette Soubirous", "Saint Bernadette") = 2*1*(2/3)/(1+2/3) = 0.8; others missing -> 0.8/5
    partial = evaluate(data, {"5733be284776f41900661182": "Saint Bernadette"})
    assert partial["f1"] == pytest.approx(16.0, abs=1e-9)
    assert partial["exact"] == 0.0


def test_missing_na_prob_is_an_error():
    from keras_albert.errors import UserInputError

    with pytest.raises(UserInputError, match="q2"):
        evaluate(DATASET, PREDICTIONS, na_probs={"q1": 0.0})


def test_evaluate_squad_command(tmp_path, capsys):
    data_file, pred_file, na_file, out_file = (tmp_path / name for name in ("d.json", "p.json", "n.json", "o.json"))
    data_file.write_text(json.dumps(DATASET))
    pred_file.write_text(json.dumps(PREDICTIONS))
    na_file.write_text(json.dumps(NA_PROBS))
    status = cli.main(["evaluate-squad", str(data_file), str(pred_file), "--na-prob-file", str(na_file),
                       "--out-file", str(out_file)])
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out_file.read_text())
    assert printed == evaluate(DATASET, PREDICTIONS, na_probs=NA_PROBS)


def test_evaluate_squad_command_bad_file(tmp_path, capsys):
    data_file, pred_file = tmp_path / "d.json", tmp_path / "p.json"
    data_file.write_text(json.dumps(DATASET))
    pred_file.write_bytes(b'{"q1": "caf\xe9"}')  # Latin-1, not UTF-8
    assert cli.main(["evaluate-squad", str(data_file), str(pred_file)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert str(pred_file) in error and "UTF-8" in error


def test_strict_fails_on_a_missing_prediction_as_the_official_v2_0_script():
    from keras_albert.errors import UserInputError

    assert "q6" not in PREDICTIONS
    with pytest.raises(UserInputError, match=r"1 of 6 questions have no prediction \(the first: 'q6'\)"):
        evaluate(DATASET, PREDICTIONS, strict=True)
    complete = {**PREDICTIONS, "q6": ""}
    assert evaluate(DATASET, complete, strict=True) == evaluate(DATASET, complete)


def test_predictions_naming_no_question_are_an_error():
    from keras_albert.errors import UserInputError

    with pytest.raises(UserInputError, match="none of the 2 predictions names one of the dataset's 6 questions"):
        evaluate(DATASET, {"x1": "cat", "x2": ""})


def test_evaluate_squad_command_counts_missing_predictions(tmp_path, capsys):
    data_file, pred_file = tmp_path / "d.json", tmp_path / "p.json"
    data_file.write_text(json.dumps(DATASET))
    pred_file.write_text(json.dumps(PREDICTIONS))
    assert cli.main(["evaluate-squad", str(data_file), str(pred_file)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["total"] == 6
    assert captured.err.strip() == f"1 of 6 questions have no prediction in {pred_file} and score 0 (the first: q6)"
    assert cli.main(["evaluate-squad", str(data_file), str(pred_file), "--strict"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "1 of 6 questions have no prediction" in error


def test_run_scores_are_those_of_the_predictions_at_a_null_threshold_above_1():
    """`squad`'s scores.json: null odds are score differences, not probabilities. Predictions made at a threshold
    of 3 ("" exactly where the odds exceed 3) score as written, though the official default cut-off (1.0) would
    count q1 and q3 (odds 2.5 and 1.5, answered) as "no answer"."""
    from keras_albert.training.squad_predict import official_scores

    odds = {"q1": 2.5, "q2": -1.0, "q3": 1.5, "q4": 4.0, "q5": 0.5, "q6": 3.5}
    predictions = {"q1": "cat!", "q2": "the red house of", "q3": "France", "q4": "", "q5": "something", "q6": ""}
    assert all((text == "") == (odds[qid] > 3.0) for qid, text in predictions.items())
    as_written = evaluate(DATASET, predictions)
    scores = official_scores(DATASET, predictions, odds, null_score_diff_threshold=3.0)
    assert scores["f1"] == pytest.approx(as_written["f1"], abs=1e-9)
    assert scores["exact"] == pytest.approx(as_written["exact"], abs=1e-9)
    assert "best_f1" in scores
    official_default = evaluate(DATASET, predictions, na_probs=odds)
    assert official_default["f1"] < as_written["f1"] - 1  # what scores.json said before
    # at the default threshold 0 nothing changes: the official cut-off of 1.0 stays
    assert official_scores(DATASET, predictions, odds) == official_default
