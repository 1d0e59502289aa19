"""Builds the embedded SQuAD v2.0-format question set from the Jane Austen corpus (deterministic).

```
python -m keras_albert.data.make_corpus_squad            # rewrites keras_albert/data/corpus/austen_squad_*.json
python -m keras_albert.data.make_corpus_squad --output-dir /tmp/austen --seed 7
```

Every context is one real paragraph of a novel (40-110 words, whitespace collapsed). Answerable questions are
wh-cloze questions: a sentence of the paragraph (trimmed to a dozen words either side) with one proper name replaced
by "who" (a title such as Mr./Miss/Lady, or a name seen beside "said" in that novel) or "what" (any other
mid-sentence capitalised name: places, houses, months). The answer is that name, at its true `answer_start`.
Unanswerable questions (`is_impossible`) are answerable questions of a paragraph from another novel, attached to
this one: their sentence is not in this context. Paragraphs are split between `train` and a held-apart `dev` set, so
no dev context is seen in training. A training split may instead take every question the corpus gives
(`build_splits(training_split=...)`): every name of every sentence, in paragraphs of 25-160 words.
"""

import argparse
import collections
import gzip
import os
import random
import re
import sys

from keras_albert.data.squad.postprocess import write_json
from keras_albert.data.squad.reading import read_squad
from keras_albert.errors import UserInputError

CORPUS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MIN_WORDS, MAX_WORDS = 40, 110
TRAINING_MIN_WORDS, TRAINING_MAX_WORDS = 25, 160  # a `training_split`'s paragraphs
QUESTION_WORDS_EACH_SIDE = 12

_TITLES = r"(?:Mr\.?|Mrs\.?|Dr\.?|Miss|Lady|Sir|Colonel|Captain|Admiral)"
_CANDIDATE = re.compile(rf"\b(?:{_TITLES} )?[A-Z][a-z]+(?: [A-Z][a-z]+)?\b")
_TITLE_ONLY = re.compile(rf"^{_TITLES}$")
_HAS_TITLE = re.compile(rf"^{_TITLES} ")
# Capitalised words that are not names even mid-sentence.
_NOT_NAMES = frozenset("Oh Ah Yes No Aye Pray Dear Madam Ma Sir Lady Miss Mr Mrs God Heaven Heavens".split())
_ABBREVIATIONS = ("Mr.", "Mrs.", "Dr.", "St.")
_SENTENCE_END = re.compile(r"""[.!?]+["')_]*\s+(?=["'(_]*[A-Z])""")


def read_paragraphs(path):
    """The blank-line separated paragraphs of a gzip text file, each with its whitespace collapsed."""
    with gzip.open(path, "rt", encoding="utf-8") as file:
        text = file.read()
    return [" ".join(block.split()) for block in re.split(r"\n\s*\n", text) if block.strip()]


def sentence_spans(text):
    """(start, end) character spans of the sentences of a paragraph (a full stop after Mr./Mrs. does not end one)."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if text[: match.start() + 1].endswith(_ABBREVIATIONS):
            continue
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def speaking_names(paragraphs):
    """Single names that appear next to "said" ("said Emma", "Emma said"): characters of the novel."""
    counts = collections.Counter()
    for paragraph in paragraphs:
        for name in re.findall(r"\bsaid ([A-Z][a-z]+)\b", paragraph) + re.findall(r"\b([A-Z][a-z]+) said\b", paragraph):
            counts[name] += 1
    return {name for name, count in counts.items() if count >= 2 and name not in _NOT_NAMES}


def questions_for_paragraph(context, people, every_name=False):
    """Every (question, answer_text, answer_start) cloze question of a paragraph: the first candidate name of each
    sentence, or every one with `every_name`."""
    questions = []
    for sentence_start, sentence_end in sentence_spans(context):
        sentence = context[sentence_start:sentence_end].rstrip()
        for match in _CANDIDATE.finditer(sentence):
            answer = match.group()
            before = sentence[: match.start()].rstrip()
            after = sentence[match.end() :]
            first_word = answer.split()[0]
            if (
                not before
                or not (before[-1].islower() or before[-1] in ",;:")  # capitalised only as a name, not a sentence start
                or _TITLE_ONLY.match(answer)
                or first_word in _NOT_NAMES and not _HAS_TITLE.match(answer)
                or after.startswith(("'s", "\u2019s", "."))  # possessives; "Mr" without its full stop
                or answer in before
                or answer in after
            ):
                continue
            wh_word = "who" if _HAS_TITLE.match(answer) or first_word in people else "what"
            left = " ".join(before.split()[-QUESTION_WORDS_EACH_SIDE:])
            right = re.match(rf"(?:\S*\s*){{0,{QUESTION_WORDS_EACH_SIDE}}}", after).group()
            question = " ".join(f"{left} {wh_word}{right}".split()).strip(" \"'_")
            question = question.rstrip(".,;:!?-\"'_ ") + "?"
            questions.append((question, answer, sentence_start + match.start()))
            if not every_name:
                break
    return questions


def _squad_json(items, version="v2.0"):
    articles = collections.OrderedDict()
    for title, context, qas in items:
        articles.setdefault(title, []).append({"context": context, "qas": qas})
    return {
        "version": version,
        "data": [{"title": title, "paragraphs": paragraphs} for title, paragraphs in articles.items()],
    }


def build(corpus_dir=CORPUS_DIR, seed=13, train_paragraphs=200, dev_paragraphs=50, questions_per_paragraph=2,
          impossible_fraction=0.5):
    """Returns `(train, dev)` SQuAD v2.0 dicts built from the `*.txt.gz` novels in `corpus_dir`."""
    splits = build_splits(corpus_dir, seed, {"train": train_paragraphs, "dev": dev_paragraphs},
                          questions_per_paragraph, impossible_fraction)
    return splits["train"], splits["dev"]


def usable_paragraph_count(corpus_dir=CORPUS_DIR):
    """How many paragraphs of the corpus give at least one question (the most `build_splits` can share out)."""
    return sum(len(pool) for pool in _usable_paragraphs(corpus_dir, random.Random(0)))


def _usable_paragraphs(corpus_dir, rng, min_words=MIN_WORDS, max_words=MAX_WORDS, every_name=False):
    """Per novel (sorted by file name), its shuffled (novel, title, index, paragraph, questions) that have questions."""
    paths = sorted(
        os.path.join(corpus_dir, name) for name in os.listdir(corpus_dir) if name.endswith(".txt.gz")
    ) if os.path.isdir(corpus_dir) else []
    if not paths:
        raise UserInputError(f"--corpus-dir: no *.txt.gz novels in {corpus_dir}")
    pools = []
    for path in paths:
        novel = os.path.basename(path)[: -len(".txt.gz")]
        paragraphs = read_paragraphs(path)
        title = paragraphs[0].title() if paragraphs else novel
        people = speaking_names(paragraphs)
        usable = []
        for index, paragraph in enumerate(paragraphs):
            if min_words <= len(paragraph.split()) <= max_words:
                questions = questions_for_paragraph(paragraph, people, every_name)
                if questions:
                    usable.append((novel, title, index, paragraph, questions))
        rng.shuffle(usable)
        pools.append(usable)
    return pools


def build_splits(corpus_dir=CORPUS_DIR, seed=13, paragraphs=None, questions_per_paragraph=2,
                 impossible_fraction=0.5, training_split=None):
    """SQuAD v2.0 dicts of disjoint paragraph splits: `paragraphs` maps each split's name to its paragraph count
    (None: the whole corpus, `{"train": -1}`; one count may be -1: every paragraph the others leave), in order.

    Splits are cut from one round-robin over the novels, in the order given; a split's unanswerable questions borrow
    questions of its own paragraphs only, so no text of one split appears in another. `impossible_fraction` (a float,
    or a dict of one per split) is the share of paragraphs that get an unanswerable question. `build` is the two-split
    case.

    `training_split`, the name of the last split, makes it as large as the corpus allows: its paragraphs are every
    one of TRAINING_MIN_WORDS-TRAINING_MAX_WORDS words that the other splits leave, each with a question for every
    name of every sentence (`questions_per_paragraph` does not cap them). The other splits are the same with or
    without it.
    """
    paragraphs = dict(paragraphs or {"train": -1})
    if training_split is not None and training_split != list(paragraphs)[-1]:
        raise UserInputError(f"training_split {training_split!r} must be the last of the splits {list(paragraphs)}")
    fractions = impossible_fraction if isinstance(impossible_fraction, dict) else dict.fromkeys(paragraphs,
                                                                                                impossible_fraction)
    rng = random.Random(seed)
    pools = _usable_paragraphs(corpus_dir, rng)
    # round-robin over the novels so every novel is represented in every split
    chosen = [pool[i] for i in range(max(map(len, pools))) for pool in pools if i < len(pool)]
    if any(count < -1 for count in paragraphs.values()) or list(paragraphs.values()).count(-1) > 1:
        raise UserInputError(f"paragraph counts must be >= 0, with at most one -1 (the rest); got {paragraphs}")
    cut = {split: count for split, count in paragraphs.items() if split != training_split}
    rest = [split for split, count in cut.items() if count == -1]
    fixed = sum(count for count in cut.values() if count != -1)
    if len(chosen) < fixed + (1 if rest else 0):
        raise UserInputError(f"the corpus has only {len(chosen)} usable paragraphs, {fixed} requested")
    if rest:
        cut[rest[0]] = len(chosen) - fixed
    splits, start = {}, 0
    for split, count in cut.items():
        splits[split] = chosen[start : start + count]
        start += count
    if training_split is not None:
        taken = {item[3] for split in splits.values() for item in split}
        splits[training_split] = _every_question_paragraphs(corpus_dir, seed, taken, paragraphs[training_split])

    results = {}
    for split, paragraphs in splits.items():
        answerable = []
        for novel, title, index, context, questions in paragraphs:
            wanted = len(questions) if split == training_split else min(questions_per_paragraph, len(questions))
            picked = rng.sample(questions, wanted)
            picked.sort(key=lambda question: question[2])
            qas = [
                {
                    "id": f"{novel}-p{index:05d}-q{number}",
                    "question": question,
                    "answers": [{"text": answer, "answer_start": start}],
                    "is_impossible": False,
                }
                for number, (question, answer, start) in enumerate(picked)
            ]
            answerable.append((novel, title, index, context, qas))
        items = []
        for novel, title, index, context, qas in answerable:
            if rng.random() < fractions[split]:
                donors = [item for item in answerable if item[0] != novel]
                donor = rng.choice(donors)
                borrowed = rng.choice(donor[4])
                qas = qas + [
                    {
                        "id": f"{novel}-p{index:05d}-x{donor[0]}-p{donor[2]:05d}",
                        "question": borrowed["question"],
                        "answers": [],
                        "plausible_answers": [],
                        "is_impossible": True,
                    }
                ]
            items.append((title, context, qas))
        results[split] = _squad_json(items)
        read_squad(results[split], version="2.0")  # every answer really is at its answer_start
    return results


def _every_question_paragraphs(corpus_dir, seed, taken, count):
    """`count` (-1: all) paragraphs of TRAINING_MIN_WORDS-TRAINING_MAX_WORDS words not in `taken`, round-robin over
    the novels, each with a question for every name of every sentence."""
    pools = _usable_paragraphs(corpus_dir, random.Random(seed + 1), TRAINING_MIN_WORDS, TRAINING_MAX_WORDS,
                               every_name=True)
    chosen = [pool[i] for i in range(max(map(len, pools))) for pool in pools
              if i < len(pool) and pool[i][3] not in taken]
    if count > len(chosen):
        raise UserInputError(f"the corpus has only {len(chosen)} training paragraphs, {count} requested")
    return chosen if count == -1 else chosen[:count]


def contexts(dataset):
    """The set of paragraph texts (contexts) of a SQuAD dict."""
    return {paragraph["context"] for article in dataset["data"] for paragraph in article["paragraphs"]}


def write_text_without(corpus_dir, excluded, output_dir):
    """Writes each novel of `corpus_dir` to `output_dir/<novel>.txt` without the paragraphs in `excluded`
    (whitespace-collapsed texts, as contexts hold them); chapters and the other paragraphs keep their blank lines.

    Pretraining on this text never sees a held-apart context (or a question, a sentence of one). Returns the paths.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for name in sorted(os.listdir(corpus_dir)):
        if not name.endswith(".txt.gz"):
            continue
        with gzip.open(os.path.join(corpus_dir, name), "rt", encoding="utf-8") as file:
            pieces = re.split(r"(\n\s*\n)", file.read())  # paragraph, separator, paragraph, ...
        kept = []
        for index in range(0, len(pieces), 2):
            if " ".join(pieces[index].split()) not in excluded:
                kept.append(pieces[index] + (pieces[index + 1] if index + 1 < len(pieces) else ""))
        path = os.path.join(output_dir, name[: -len(".gz")])
        with open(path + ".tmp", "w", encoding="utf-8") as file:
            file.write("".join(kept))
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


def question_counts(dataset):
    qas = [qa for article in dataset["data"] for p in article["paragraphs"] for qa in p["qas"]]
    paragraphs = sum(len(article["paragraphs"]) for article in dataset["data"])
    return paragraphs, len(qas), sum(qa["is_impossible"] for qa in qas)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus-dir", default=CORPUS_DIR, help="Directory of *.txt.gz novels.")
    parser.add_argument("--output-dir", default=CORPUS_DIR, help="Where austen_squad_{train,dev}.json go.")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--train-paragraphs", type=int, default=200)
    parser.add_argument("--dev-paragraphs", type=int, default=50)
    args = parser.parse_args(argv)
    try:
        train, dev = build(args.corpus_dir, args.seed, args.train_paragraphs, args.dev_paragraphs)
    except UserInputError as error:
        print(f"make_corpus_squad: error: {error}", file=sys.stderr)
        return 2
    for split, dataset in (("train", train), ("dev", dev)):
        path = os.path.join(args.output_dir, f"austen_squad_{split}.json")
        write_json(path, dataset, indent=1)
        paragraphs, questions, impossible = question_counts(dataset)
        print(f"{path}: {paragraphs} paragraphs, {questions} questions ({impossible} impossible)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
