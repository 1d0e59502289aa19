"""Reading and validating SQuAD v1.1 / v2.0 JSON files."""

import dataclasses
import importlib.resources
import os

from keras_albert.data import tfds_input
from keras_albert.errors import UserInputError
from keras_albert.io import read_json

EMBEDDED_SPLITS = ("train", "dev")
_VERSIONS = {"1.1": "1.1", "v1.1": "1.1", "2.0": "2.0", "v2.0": "2.0"}


@dataclasses.dataclass(frozen=True)
class SquadAnswer:
    """One gold answer: its text and the character offset where it starts in the context."""

    text: str
    start: int

    @property
    def end(self):
        return self.start + len(self.text)


@dataclasses.dataclass(frozen=True)
class SquadExample:
    """One SQuAD question with its context paragraph.

    Args:
        qas_id: str. The question id.
        question: str. The question text.
        context: str. The paragraph, exactly as in the file (answer offsets index into it).
        answers: tuple of `SquadAnswer`. The gold answers (empty for an impossible question).
        is_impossible: bool. True for a v2.0 question with no answer in the context.
        title: str. The article title.
    """

    qas_id: str
    question: str
    context: str
    answers: tuple
    is_impossible: bool = False
    title: str = ""


def austen_squad_path(split="train"):
    """Path of the embedded SQuAD v2.0-format question set on the Jane Austen corpus (`train` or held-apart `dev`).

    Built by `python -m keras_albert.data.make_corpus_squad`; see that module for how questions are made.
    """
    if split not in EMBEDDED_SPLITS:
        raise UserInputError(f"embedded SQuAD split must be one of {', '.join(EMBEDDED_SPLITS)}, got {split!r}")
    path = importlib.resources.files("keras_albert.data").joinpath("corpus", f"austen_squad_{split}.json")
    if not path.is_file():
        raise UserInputError(f"the embedded SQuAD file is missing: {path} (reinstall keras-albert)")
    return str(path)


def load_json(path, what="JSON file", tfds_data_dir=None):
    """Parses a JSON file (SQuAD data, predictions, no-answer probabilities); `keras_albert.io.read_json`.

    A TensorFlow Datasets SQuAD split, `tfds:squad/v2.0[:SPLIT]` (split default train), gives the SQuAD JSON of its
    examples (`tfds_input.squad_json`; read from `tfds_data_dir`, else `TFDS_DATA_DIR` or TFDS's default directory).

    Raises:
        UserInputError: one line naming the path, for a missing or unreadable file, non-UTF-8 bytes or invalid JSON.
    """
    if tfds_input.is_tfds(path):
        return tfds_input.squad_json(path, tfds_data_dir)
    return read_json(path, what=what)


def _field(container, name, expected_type, where):
    if not isinstance(container, dict) or name not in container:
        raise UserInputError(f"{where}: missing field {name!r}")
    value = container[name]
    if not isinstance(value, expected_type) or (expected_type is int and isinstance(value, bool)):
        raise UserInputError(f"{where}: field {name!r} must be a {expected_type.__name__}, got {type(value).__name__}")
    return value


def read_squad(path_or_dict, version=None, tfds_data_dir=None):
    """Reads a SQuAD v1.1 or v2.0 dataset into a list of `SquadExample`, validating every question.

    Args:
        path_or_dict: str, path or dict. A SQuAD JSON file, or the already parsed JSON (`{"data": [...]}`), or a
            prepared TensorFlow Datasets split, `tfds:squad/v2.0:validation` (split default train; its examples
            come in TFDS's order, grouped back into paragraphs).
        version: str or None. `"1.1"` or `"2.0"`; None takes the file's `version` field, and otherwise allows
            `is_impossible` questions (v2.0) whenever they appear.
        tfds_data_dir: str or None. Where a `tfds:` split is prepared; default `TFDS_DATA_DIR`, else TFDS's own.

    Returns:
        A list of `SquadExample`, in file order.

    Raises:
        UserInputError: a one-line message for an unreadable, non-UTF-8 or invalid JSON file (naming the path), a
            missing or mistyped field (naming the question id and field), an answer whose text is not found at its
            `answer_start` in the context (naming the question id), or an impossible question in a v1.1 dataset.

    Example:
    ```python
    from keras_albert.data.squad import read_squad
    examples = read_squad("dev-v2.0.json")
    examples[0].qas_id, examples[0].answers[0].text, examples[0].is_impossible
    ```
    """
    if isinstance(path_or_dict, (dict, list)):
        source, dataset = "SQuAD dataset", path_or_dict
    else:
        source, dataset = os.fspath(path_or_dict), load_json(path_or_dict, tfds_data_dir=tfds_data_dir)
    if isinstance(dataset, list):
        dataset = {"data": dataset}
    if not isinstance(dataset, dict):
        raise UserInputError(f"{source}: a SQuAD file must hold a JSON object with a 'data' list")
    if version is None:
        version = dataset.get("version")
        version = _VERSIONS.get(str(version)) if version is not None else None
    else:
        if str(version) not in _VERSIONS:
            raise UserInputError(f"SQuAD version must be '1.1' or '2.0', got {version!r}")
        version = _VERSIONS[str(version)]

    examples = []
    for article_index, article in enumerate(_field(dataset, "data", list, source)):
        where = f"{source}: article {article_index}"
        title = article.get("title", "") if isinstance(article, dict) else ""
        for paragraph_index, paragraph in enumerate(_field(article, "paragraphs", list, where)):
            paragraph_where = f"{where} paragraph {paragraph_index}"
            context = _field(paragraph, "context", str, paragraph_where)
            for qa_index, qa in enumerate(_field(paragraph, "qas", list, paragraph_where)):
                qas_id = _field(qa, "id", str, f"{paragraph_where} question {qa_index}")
                examples.append(_read_question(qa, qas_id, context, title, version, source))
    return examples


def _read_question(qa, qas_id, context, title, version, source):
    where = f"{source}: question {qas_id}"
    question = _field(qa, "question", str, where)
    is_impossible = _field(qa, "is_impossible", bool, where) if "is_impossible" in qa else False
    if is_impossible and version == "1.1":
        raise UserInputError(f"{where}: 'is_impossible' is true in a SQuAD v1.1 dataset (use version 2.0)")
    raw_answers = qa.get("answers", []) if is_impossible else _field(qa, "answers", list, where)
    answers = []
    if not is_impossible:
        if not raw_answers:
            raise UserInputError(f"{where}: 'answers' is empty but 'is_impossible' is not true")
        for raw in raw_answers:
            text = _field(raw, "text", str, where + " answer")
            start = _field(raw, "answer_start", int, where + " answer")
            if not text or start < 0 or context[start : start + len(text)] != text:
                found = context[max(start, 0) : max(start, 0) + len(text)]
                raise UserInputError(
                    f"{where}: answer {text!r} is not at answer_start {start} (context there reads {found!r})"
                )
            answers.append(SquadAnswer(text, start))
    return SquadExample(qas_id, question, context, tuple(answers), is_impossible, title)
