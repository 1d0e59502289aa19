"""The official SQuAD v1.1 / v2.0 scores, re-implemented from the official scripts' rules.

The rules are those of `evaluate-v2.0.py` (Rajpurkar, Jia & Liang 2018), which on v1.1 data gives the v1.1 script's
exact match and F1:

- answers are normalised (lowercase, punctuation removed, the articles a/an/the removed, whitespace collapsed);
- exact match and token F1 are each the maximum over all gold answers;
- a question whose gold answers are all empty after normalisation (a v2 impossible question) has the single gold
  answer `""`: an empty prediction scores 1 on it, anything else 0;
- with no-answer probabilities, a prediction whose probability exceeds `na_prob_thresh` counts as "no answer", and
  `best_exact`/`best_f1` and their thresholds come from the official sweep (`find_best_thresh`).

One deliberate difference: a question with no prediction scores 0 and stays in every total, as in the v1.1 script
(the v2 script skips it and then fails on the HasAns split).
"""

import collections
import re
import string

from keras_albert.errors import UserInputError

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text):
    """Lowercase, drop punctuation, drop the articles a/an/the, collapse whitespace (the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _answer_tokens(text):
    return normalize_answer(text).split() if text else []


def exact_match_score(gold, prediction):
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_score(gold, prediction):
    """Token-overlap F1 between one gold answer and a prediction; two empty answers agree (F1 1)."""
    gold_tokens = _answer_tokens(gold)
    predicted_tokens = _answer_tokens(prediction)
    if not gold_tokens or not predicted_tokens:
        return float(gold_tokens == predicted_tokens)
    overlap = sum((collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(predicted_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _articles(dataset):
    if isinstance(dataset, dict):
        if "data" not in dataset:
            raise UserInputError("SQuAD dataset has no 'data' field")
        dataset = dataset["data"]
    if not isinstance(dataset, list):
        raise UserInputError("SQuAD dataset must be a JSON object with a 'data' list, or that list")
    return dataset


def _gold_answers(dataset):
    """Question id -> list of gold answer texts (`[""]` when none survives normalisation), in file order."""
    gold = {}
    for article in _articles(dataset):
        for paragraph in article.get("paragraphs", []):
            for qa in paragraph.get("qas", []):
                if "id" not in qa:
                    raise UserInputError(f"a question in article {article.get('title')!r} has no 'id' field")
                texts = []
                for answer in qa.get("answers") or []:
                    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
                        raise UserInputError(f"question {qa['id']}: an answer has no 'text' string")
                    if normalize_answer(answer["text"]):
                        texts.append(answer["text"])
                gold[qa["id"]] = texts or [""]
    return gold


def _has_answer(dataset):
    # The official script's make_qid_to_has_ans: answerable when the answers list is not empty.
    return {
        qa["id"]: bool(qa.get("answers"))
        for article in _articles(dataset)
        for paragraph in article.get("paragraphs", [])
        for qa in paragraph.get("qas", [])
    }


def _best_threshold(predictions, scores, na_probs, has_answer, total):
    """The official find_best_thresh: sweep the threshold upwards through the sorted no-answer probabilities.

    Every question starts predicted "no answer" (impossible ones right, answerable ones wrong); passing a question's
    probability switches it to its text prediction. The best running score and the probability where it was first
    reached are returned; ties in probability are crossed one question at a time, in `na_probs` order, as officially.
    Questions without a prediction count 0 throughout.
    """
    score = sum(1 for qid, answerable in has_answer.items() if not answerable and qid in predictions)
    best_score, best_threshold = score, 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores or qid not in predictions:
            continue
        if has_answer[qid]:
            score += scores[qid]
        elif predictions[qid]:
            score -= 1
        if score > best_score:
            best_score, best_threshold = score, na_probs[qid]
    return 100.0 * best_score / total, best_threshold


def missing_predictions(dataset, predictions):
    """The question ids of `dataset` that `predictions` has no entry for, in dataset order."""
    return [qid for qid in _gold_answers(dataset) if qid not in predictions]


def evaluate(dataset, predictions, na_probs=None, na_prob_thresh=1.0, strict=False):
    """Scores predictions with the official SQuAD v1.1 / v2.0 rules.

    Args:
        dataset: dict or list. The parsed SQuAD JSON (`{"version": ..., "data": [...]}`) or its `data` list.
        predictions: dict. Question id -> predicted answer text (`""` for "no answer").
        na_probs: dict or None. Question id -> probability (any score, larger meaning "no answer") that the question
            has no answer. With it, predictions above `na_prob_thresh` count as "no answer" and the `best_*` keys
            are added, as the official script does with `--na-prob-file`.
        na_prob_thresh: float. The no-answer threshold (official default 1.0).
        strict: bool. A question without a prediction is an error, as in the official v2.0 script (which fails
            with a KeyError there). By default it scores 0 and counts in `total`, as the official v1.1 script does
            ("Unanswered question ... will receive score 0"): this goes beyond the v2.0 script. Either way, no
            prediction naming any question of the dataset is an error.

    Returns:
        A dict with the official keys on the 0-100 scale: `exact`, `f1`, `total`; `HasAns_exact`, `HasAns_f1`,
        `HasAns_total` when some questions are answerable; `NoAns_*` when some are impossible; `best_exact`,
        `best_exact_thresh`, `best_f1`, `best_f1_thresh` when `na_probs` is given.

    Example:
    ```python
    from keras_albert.data.squad import evaluate
    data = {"data": [{"paragraphs": [{"context": "The cat sat.", "qas": [
        {"id": "q1", "question": "Who sat?", "answers": [{"text": "The cat", "answer_start": 0}]}]}]}]}
    evaluate(data, {"q1": "cat"})  # {'exact': 100.0, 'f1': 100.0, 'total': 1, 'HasAns_exact': 100.0, ...}
    ```
    """
    if not isinstance(predictions, dict):
        raise UserInputError("SQuAD predictions must be a JSON object mapping question ids to answer texts")
    gold = _gold_answers(dataset)
    has_answer = _has_answer(dataset)
    if not gold:
        raise UserInputError("SQuAD dataset has no questions")
    for qid, text in predictions.items():
        if not isinstance(text, str):
            raise UserInputError(f"prediction for question {qid!r} is not a string: {text!r}")
    missing = [qid for qid in gold if qid not in predictions]
    if len(missing) == len(gold):
        raise UserInputError(
            f"none of the {len(predictions)} predictions names one of the dataset's {len(gold)} questions"
        )
    if strict and missing:
        raise UserInputError(
            f"{len(missing)} of {len(gold)} questions have no prediction (the first: {missing[0]!r}); without "
            "strict they score 0, as the official v1.1 script scores them"
        )
    if na_probs is not None:
        missing = [qid for qid in gold if qid in predictions and qid not in na_probs]
        if missing:
            raise UserInputError(f"no-answer probabilities have no entry for question {missing[0]!r}")

    exact_raw, f1_raw = {}, {}
    for qid, answers in gold.items():
        if qid not in predictions:
            exact_raw[qid], f1_raw[qid] = 0, 0.0
            continue
        exact_raw[qid] = max(exact_match_score(answer, predictions[qid]) for answer in answers)
        f1_raw[qid] = max(f1_score(answer, predictions[qid]) for answer in answers)

    def thresholded(raw):
        if na_probs is None:
            return dict(raw)
        return {
            qid: float(not has_answer[qid]) if qid in predictions and na_probs[qid] > na_prob_thresh else score
            for qid, score in raw.items()
        }

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)

    def summary(qids):
        return {
            "exact": 100.0 * sum(exact[qid] for qid in qids) / len(qids),
            "f1": 100.0 * sum(f1[qid] for qid in qids) / len(qids),
            "total": len(qids),
        }

    result = summary(list(gold))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [qid for qid, answerable in has_answer.items() if answerable == wanted]
        if qids:
            result.update({f"{prefix}_{key}": value for key, value in summary(qids).items()})
    if na_probs is not None:
        total = len(gold)
        result["best_exact"], result["best_exact_thresh"] = _best_threshold(
            predictions, exact_raw, na_probs, has_answer, total
        )
        result["best_f1"], result["best_f1_thresh"] = _best_threshold(predictions, f1_raw, na_probs, has_answer, total)
    return result
