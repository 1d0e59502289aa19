"""From start/end logits to answer texts: n-best spans, the v2.0 no-answer rule, and the official output files.

The rules are those of Google's BERT/ALBERT `run_squad.py`: candidate spans pair the `n_best_size` best start and end
tokens of each window, must lie in the context, end after they start, span at most `max_answer_length` tokens and
start where their window gives the start token its maximum context; texts are cut from the original context through
the tokens' character offsets. For v2.0 the no-answer score is `start_logit[CLS] + end_logit[CLS]`, its minimum over
the windows; the question is answered "" when that score beats the best span's by more than
`null_score_diff_threshold`.
"""

import collections
import os

import numpy as np

from keras_albert import io
from keras_albert.errors import UserInputError

_Candidate = collections.namedtuple("_Candidate", "score start_logit end_logit text")


def write_json(path, value, indent=4):
    """Writes JSON atomically (`keras_albert.io.write_json`), indented 4 as Google's `run_squad.py` writes it."""
    io.write_json(path, value, indent=indent)


def _softmax(scores):
    scores = np.asarray(scores, dtype=np.float64)
    exp = np.exp(scores - scores.max())
    return exp / exp.sum()


def _window_candidates(feature, context, start_logits, end_logits, n_best_size, max_answer_length):
    best_starts = np.argsort(-start_logits, kind="stable")[:n_best_size]
    best_ends = np.argsort(-end_logits, kind="stable")[:n_best_size]
    offsets = feature.token_offsets
    for start in best_starts:
        if offsets[start, 0] < 0 or not feature.token_is_max_context[start]:
            continue
        for end in best_ends:
            if offsets[end, 0] < 0 or end < start or end - start + 1 > max_answer_length:
                continue
            text = context[offsets[start, 0] : offsets[end, 1]].strip()
            score = float(start_logits[start]) + float(end_logits[end])
            yield _Candidate(score, float(start_logits[start]), float(end_logits[end]), text)


def extract_answers(
    examples,
    features,
    start_logits,
    end_logits,
    n_best_size=20,
    max_answer_length=30,
    version_2_with_negative=False,
    null_score_diff_threshold=0.0,
):
    """Turns per-feature start/end logits into answer texts, n-best lists and (v2.0) no-answer score differences.

    Args:
        examples: list of `SquadExample` the features were built from.
        features: list of `SquadFeature` (from `convert_examples_to_features`), every feature of every example.
        start_logits: array [num_features, max_seq_length]. Row i belongs to `features[i]`.
        end_logits: array [num_features, max_seq_length].
        n_best_size: int. Start and end tokens tried per window, and length of each n-best list.
        max_answer_length: int. Longest answer, in tokens.
        version_2_with_negative: bool. SQuAD v2.0: consider "no answer" (`[CLS]`).
        null_score_diff_threshold: float. Predict "" when null score - best span score exceeds this.

    Returns:
        `(predictions, nbest, null_odds)`: question id -> answer text; question id -> list of
        `{"text", "probability", "start_logit", "end_logit"}` best first; question id -> null score minus best span
        score (v2.0; the official `--na-prob-file` input), or None for v1.1.

    Example:
    ```python
    outputs = model.predict(squad_dataset(features, 64, training=False))
    predictions, nbest, null_odds = extract_answers(
        examples, features, outputs["start_logits"], outputs["end_logits"], version_2_with_negative=True)
    ```
    """
    start_logits = np.asarray(start_logits, dtype=np.float32)
    end_logits = np.asarray(end_logits, dtype=np.float32)
    expected = (len(features), features[0].input_ids.shape[0]) if features else (0,)
    if start_logits.shape[: len(expected)] != expected or end_logits.shape != start_logits.shape:
        raise UserInputError(
            f"logits must have shape [num_features, max_seq_length] = {list(expected)}. "
            f"Received: start_logits {list(start_logits.shape)}, end_logits {list(end_logits.shape)}"
        )
    by_example = collections.defaultdict(list)
    for index, feature in enumerate(features):
        by_example[feature.example_index].append(index)

    predictions, nbest_json = collections.OrderedDict(), collections.OrderedDict()
    null_odds = collections.OrderedDict() if version_2_with_negative else None
    for example_index, example in enumerate(examples):
        if example_index not in by_example:
            raise ValueError(
                f"no feature belongs to example {example_index} (question {example.qas_id}): build prediction "
                "features with is_training=False, from the same examples"
            )
        candidates, null = [], None
        for index in by_example[example_index]:
            feature = features[index]
            if version_2_with_negative:
                score = float(start_logits[index, 0]) + float(end_logits[index, 0])
                if null is None or score < null.score:
                    null = _Candidate(score, float(start_logits[index, 0]), float(end_logits[index, 0]), "")
            candidates.extend(
                _window_candidates(
                    feature, example.context, start_logits[index], end_logits[index], n_best_size, max_answer_length
                )
            )
        if null is not None:
            candidates.append(null)
        candidates.sort(key=lambda candidate: candidate.score, reverse=True)

        nbest, seen = [], set()
        for candidate in candidates:
            if len(nbest) >= n_best_size:
                break
            if candidate.text in seen:
                continue
            seen.add(candidate.text)
            nbest.append(candidate)
        if null is not None and "" not in seen:
            nbest.append(null)
        if not any(candidate.text for candidate in nbest):
            # No valid span anywhere (Google's run_squad would fail here): a zero-score placeholder, as transformers.
            nbest.append(_Candidate(0.0, 0.0, 0.0, "empty"))
        probabilities = _softmax([candidate.score for candidate in nbest])
        nbest_json[example.qas_id] = [
            {
                "text": candidate.text,
                "probability": float(probability),
                "start_logit": candidate.start_logit,
                "end_logit": candidate.end_logit,
            }
            for candidate, probability in zip(nbest, probabilities)
        ]
        best_span = next(candidate for candidate in nbest if candidate.text)
        if not version_2_with_negative:
            predictions[example.qas_id] = nbest[0].text
            continue
        score_diff = null.score - best_span.start_logit - best_span.end_logit
        null_odds[example.qas_id] = score_diff
        predictions[example.qas_id] = "" if score_diff > null_score_diff_threshold else best_span.text
    return predictions, nbest_json, null_odds


def write_predictions(output_dir, predictions, nbest, null_odds=None):
    """Writes `predictions.json`, `nbest_predictions.json` and, when given, `null_odds.json` into `output_dir`.

    Each file is written under a temporary name and renamed when complete. Returns the paths written.
    """
    paths = {
        "predictions": os.path.join(output_dir, "predictions.json"),
        "nbest_predictions": os.path.join(output_dir, "nbest_predictions.json"),
    }
    write_json(paths["predictions"], predictions)
    write_json(paths["nbest_predictions"], nbest)
    if null_odds is not None:
        paths["null_odds"] = os.path.join(output_dir, "null_odds.json")
        write_json(paths["null_odds"], null_odds)
    return paths
