"""TensorFlow Datasets as input: `tfds:NAME[/CONFIG][:SPLIT]` wherever a text file or a SQuAD JSON is accepted.

`tensorflow_datasets` is imported only when such an input is given (`pip install keras-albert[tfds]`). Nothing is
downloaded: the dataset must already be prepared under the data directory (`--tfds_data_dir`, else TFDS's own
default, `TFDS_DATA_DIR` or `~/tensorflow_datasets`), e.g. with `tfds build NAME/CONFIG --data_dir DIR`. A dataset
that is not registered in the installed TFDS (a user's own builder) is read from its prepared files.

Text (create-pretraining-data, train-tokenizer): every example's text field is one document; examples are joined by
enough blank lines to end a document, in the split's order (`shuffle_files=False`), so a builder whose examples are
a file's documents gives the records that file gives.

SQuAD: the examples of a split (TFDS's `squad` features: `id`, `title`, `context`, `question`,
`answers{text, answer_start}`, and for v2.0 `is_impossible`, `plausible_answers`) become the SQuAD JSON they came
from (`squad_json`), questions grouped back into paragraphs and articles in the order they first appear.
"""

import dataclasses
import functools
import os

from keras_albert.errors import UserInputError

PREFIX = "tfds:"
INSTALL = "pip install keras-albert[tfds]"
DEFAULT_SPLIT = "train"
DEFAULT_TEXT_FIELD = "text"
_SQUAD_VERSIONS = {"v1.1": "1.1", "v2.0": "2.0", "1.1": "1.1", "2.0": "2.0"}


def is_tfds(value):
    return isinstance(value, str) and value.startswith(PREFIX)


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
    """A parsed `tfds:NAME[/CONFIG][:SPLIT]` (the split may carry TFDS's slicing, `train[:10%]`)."""

    name: str
    config: str = None
    split: str = DEFAULT_SPLIT

    @classmethod
    def parse(cls, value, flag="--input"):
        if not is_tfds(value):
            raise UserInputError(f"{_where(flag, repr(value))} is not a tfds:NAME[/CONFIG][:SPLIT] input")
        body = value[len(PREFIX) :]
        dataset, _, split = body.partition(":")
        name, _, config = dataset.partition("/")
        if not name or (dataset.count("/") > 1) or ("/" in dataset and not config) or (":" in body and not split):
            raise UserInputError(f"{_where(flag, repr(value))}: expected tfds:NAME[/CONFIG][:SPLIT], e.g. "
                                 "tfds:wikipedia/20230601.en:train")
        return cls(name, config or None, split or DEFAULT_SPLIT)

    @property
    def dataset(self):
        return f"{self.name}/{self.config}" if self.config else self.name

    def __str__(self):
        return f"{PREFIX}{self.dataset}:{self.split}"


def _where(flag, value):
    return f"{flag}: {value}" if flag else str(value)


def import_tfds(value, flag):
    try:
        import tensorflow_datasets
    except ImportError:
        raise UserInputError(f"{_where(flag, value)} needs TensorFlow Datasets, which is not installed: {INSTALL}") from None
    return tensorflow_datasets


def _data_dir(data_dir):
    """The directory to read: the one given, else `TFDS_DATA_DIR` as it is now (TFDS reads it once, at import)."""
    return os.path.expanduser(data_dir) if data_dir else os.environ.get("TFDS_DATA_DIR") or None


def open_split(value, data_dir=None, flag="--input"):
    """(builder, spec) of a prepared TFDS split, or one line naming the flag and what is wrong."""
    spec = TfdsSpec.parse(value, flag)
    tfds = import_tfds(value, flag)
    data_dir = _data_dir(data_dir)
    where = data_dir or "TFDS's default data directory"
    try:
        builder = tfds.builder(spec.dataset, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError, a bad config name, unreadable files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"{_where(flag, value)}: no TensorFlow Datasets dataset {spec.dataset} in {where} "
                             f"({reason})") from None
    if not builder.is_prepared():
        raise UserInputError(
            f"{_where(flag, value)}: {spec.dataset} is not prepared in {where}; prepare it first (tfds build "
            f"{spec.dataset} --data_dir DIR): keras-albert downloads nothing"
        )
    splits = builder.info.splits
    for part in spec.split.split("+"):
        base = part.split("[", 1)[0].strip()
        if base not in splits:
            raise UserInputError(f"{_where(flag, value)}: no split {base!r} (the dataset has {', '.join(sorted(splits))})")
    return builder, spec


def _examples(builder, spec, value, flag):
    tfds = import_tfds(value, flag)
    try:
        dataset = builder.as_dataset(split=spec.split, shuffle_files=False)
    except Exception as error:  # a malformed slice such as train[:x]
        raise UserInputError(f"{_where(flag, value)}: cannot read split {spec.split!r} ({error})") from None
    return tfds.as_numpy(dataset)


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def check_text_input(value, text_field=DEFAULT_TEXT_FIELD, data_dir=None, flag="--input"):
    """Fails early (before any work) on a TFDS text input that cannot be read: not installed, not prepared, no such
    split, no such text field. Returns the split's approximate size in bytes (0 when TFDS does not say)."""
    builder, spec = open_split(value, data_dir, flag)
    features = builder.info.features
    if text_field not in features:
        raise UserInputError(f"--tfds_text_field: {value} has no field {text_field!r} (it has "
                             f"{', '.join(sorted(features))})")
    try:
        return sum(int(builder.info.splits[part.split('[', 1)[0].strip()].num_bytes or 0)
                   for part in spec.split.split("+"))
    except Exception:
        return 0


def iter_texts(value, text_field=DEFAULT_TEXT_FIELD, data_dir=None, flag="--input"):
    """The text field of every example of the split, in order, as `str`."""
    builder, spec = open_split(value, data_dir, flag)
    if text_field not in builder.info.features:
        check_text_input(value, text_field, data_dir, flag)  # raises, naming the fields there are
    for example in _examples(builder, spec, value, flag):
        yield _text(example[text_field])


def iter_documents_text(value, document_break_lines=1, text_field=DEFAULT_TEXT_FIELD, data_dir=None,
                        flag="--input"):
    """The examples' texts, each followed by enough blank lines to end a document (`text.split_documents`): what a
    file holding these documents would read as. Examples of only whitespace are skipped."""
    separator = "\n" * (document_break_lines + 1)
    for document in iter_texts(value, text_field, data_dir, flag):
        if document.strip():
            yield document + separator


def squad_json(value, data_dir=None, flag=None):
    """The SQuAD JSON (`{"version", "data": [articles]}`) of a TFDS SQuAD split, `tfds:squad/v2.0:validation`.

    Cached (the training command reads a split for its examples and again for its scores): do not modify it.
    """
    return _squad_json(value, _data_dir(data_dir), flag)


@functools.lru_cache(maxsize=4)
def _squad_json(value, data_dir, flag):
    builder, spec = open_split(value, data_dir, flag)
    features = builder.info.features
    missing = [name for name in ("id", "context", "question", "answers") if name not in features]
    if missing:
        raise UserInputError(f"{_where(flag, value)}: not a SQuAD dataset (no {', '.join(missing)} feature)")
    version_2 = "is_impossible" in features
    articles, paragraphs = {}, {}
    for example in _examples(builder, spec, value, flag):
        title, context = _text(example.get("title", b"")), _text(example["context"])
        qa = {"id": _text(example["id"]), "question": _text(example["question"]),
              "answers": _answers(example["answers"])}
        if version_2:
            qa["is_impossible"] = bool(example["is_impossible"])
            plausible = _answers(example["plausible_answers"]) if "plausible_answers" in example else []
            if plausible:
                qa["plausible_answers"] = plausible
        if title not in articles:
            articles[title] = {"title": title, "paragraphs": []}
        if (title, context) not in paragraphs:
            paragraphs[title, context] = {"context": context, "qas": []}
            articles[title]["paragraphs"].append(paragraphs[title, context])
        paragraphs[title, context]["qas"].append(qa)
    version = _SQUAD_VERSIONS.get(spec.config or "", "2.0" if version_2 else "1.1")
    return {"version": f"v{version}", "data": list(articles.values())}


def _answers(answers):
    return [{"text": _text(text), "answer_start": int(start)}
            for text, start in zip(answers["text"], answers["answer_start"])]
