"""`keras-albert quickstart`: its question splits never share a paragraph and its pretraining text holds none of the
held-apart ones (fast); the whole default run beats the always-no-answer baseline by the README's margin, draws its
curves, and a rerun redoes nothing (large)."""

import gzip
import json
import os
import re

import pytest

from keras_albert import cli
from keras_albert.data import make_corpus_squad
from keras_albert.errors import UserInputError

# The README's quickstart bounds (section "Quickstart"), the targets of issue 15: held-apart F1 at least this far
# above the always-no-answer baseline on the same questions, and HasAns F1 at least this. Measured: F1 38.1 vs 26.0
# (+12.0), HasAns F1 42.9, the same in every run on the development machine (seeded).
F1_ABOVE_BASELINE = 10.0
MIN_HAS_ANS_F1 = 20.0


def _questions(dataset):
    return [qa for article in dataset["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def test_splits_are_disjoint_and_use_the_whole_corpus():
    usable = make_corpus_squad.usable_paragraph_count()
    fractions = {"dev": 0.5, "held_in": 0.5, "train": 1.0}
    splits = make_corpus_squad.build_splits(paragraphs={"dev": 300, "held_in": 200, "train": -1},
                                            questions_per_paragraph=3, impossible_fraction=fractions)
    contexts = {name: make_corpus_squad.contexts(split) for name, split in splits.items()}
    assert len(contexts["dev"]) == 300 and len(contexts["held_in"]) == 200
    assert len(contexts["train"]) == usable - 500 > 2000
    assert not contexts["dev"] & contexts["train"] and not contexts["held_in"] & contexts["train"]
    assert not contexts["dev"] & contexts["held_in"]
    train = _questions(splits["train"])
    assert len(train) > 3000  # thousands of questions: one per sentence, up to 3 a paragraph
    assert sum(qa["is_impossible"] for qa in train) == len(contexts["train"])  # fraction 1.0: one each
    dev = _questions(splits["dev"])
    assert 0.15 < sum(qa["is_impossible"] for qa in dev) / len(dev) < 0.4
    # the dev split does not depend on the size of the training split that follows it
    smaller = make_corpus_squad.build_splits(paragraphs={"dev": 300, "held_in": 200, "train": 100},
                                             questions_per_paragraph=3, impossible_fraction=fractions)
    assert smaller["dev"] == splits["dev"]

    # The quickstart's training split: every question of every paragraph of 25-160 words the others leave.
    every = make_corpus_squad.build_splits(paragraphs={"dev": 300, "held_in": 200, "train": -1},
                                           questions_per_paragraph=3, impossible_fraction=fractions,
                                           training_split="train")
    assert every["dev"] == splits["dev"] and every["held_in"] == splits["held_in"]
    wide = make_corpus_squad.contexts(every["train"])
    assert not wide & (contexts["dev"] | contexts["held_in"])
    assert len(wide) > 1.4 * len(contexts["train"])  # longer and shorter paragraphs too
    answerable = [qa for qa in _questions(every["train"]) if not qa["is_impossible"]]
    assert len(answerable) > 2.5 * sum(not qa["is_impossible"] for qa in train)
    # unanswerable questions are borrowed within the split: never a held-apart question
    borrowed = {qa["question"] for qa in _questions(every["train"]) if qa["is_impossible"]}
    held_apart = {qa["question"] for split in ("dev", "held_in") for qa in _questions(every[split])}
    assert borrowed <= {qa["question"] for qa in answerable} and not borrowed & held_apart
    first_100 = make_corpus_squad.build_splits(paragraphs={"dev": 300, "held_in": 200, "train": 100},
                                               questions_per_paragraph=3, impossible_fraction=fractions,
                                               training_split="train")
    assert first_100["dev"] == splits["dev"] and len(make_corpus_squad.contexts(first_100["train"])) == 100
    with pytest.raises(UserInputError, match="must be the last"):
        make_corpus_squad.build_splits(paragraphs={"train": 10, "dev": 5}, training_split="train")


def test_pretraining_text_leaves_the_held_apart_paragraphs_out(tmp_path):
    splits = make_corpus_squad.build_splits(paragraphs={"dev": 40, "train": 100})
    apart = make_corpus_squad.contexts(splits["dev"])
    paths = make_corpus_squad.write_text_without(make_corpus_squad.CORPUS_DIR, apart, str(tmp_path))
    assert len(paths) == 6
    written = [" ".join(block.split()) for path in paths
               for block in re.split(r"\n\s*\n", open(path, encoding="utf-8").read())]
    assert not apart & set(written)
    original = [" ".join(block.split()) for name in sorted(os.listdir(make_corpus_squad.CORPUS_DIR))
                if name.endswith(".txt.gz")
                for block in re.split(r"\n\s*\n", gzip.open(os.path.join(make_corpus_squad.CORPUS_DIR, name),
                                                            "rt", encoding="utf-8").read())]
    kept = [block for block in original if block not in apart]
    assert [block for block in written if block] == [block for block in kept if block]  # everything else, in order


@pytest.mark.parametrize("flags, message", [
    (["--squad_max_seq_length", "256"], "--squad_max_seq_length (256) must be at most --max_seq_length (128)"),
    (["--dev_paragraphs", "3000"], "usable paragraphs"),
    (["--train_paragraphs", "99999"], "--train_paragraphs 99999: the corpus has only"),
    (["--pretrain_steps", "0"], "--pretrain_steps must be at least 1"),
    (["--max_answer_length", "0"], "--max_answer_length must be at least 1, or -1"),
])
def test_mistakes_are_one_line_errors(tmp_path, capsys, flags, message):
    assert cli.main(["quickstart", "--output_dir", str(tmp_path / "q"), *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error


def test_the_answer_length_limit_is_the_longest_training_answer_in_tokens():
    """`--max_answer_length -1`: the longest answer the training windows label, here checked against each gold
    answer tokenized alone (WordPiece splits words the same alone as in a sentence)."""
    from keras_albert.commands.quickstart import _longest_answer
    from keras_albert.data import load_tokenizer, squad

    splits = make_corpus_squad.build_splits(paragraphs={"train": 40}, questions_per_paragraph=3,
                                            impossible_fraction=0.5)
    examples = squad.read_squad(splits["train"])
    tokenizer = load_tokenizer(os.path.join(os.path.dirname(__file__), "fixtures", "tokenizers", "bert"))
    answers = [a["text"] for qa in _questions(splits["train"]) for a in qa["answers"]]
    expected = max(len(tokenizer.tokenize(text)) for text in answers)
    assert expected >= 3  # names of more than one token: the limit is not trivially 1
    assert _longest_answer(examples, tokenizer, dict(max_seq_length=128, doc_stride=64, max_query_length=64)) == expected


@pytest.mark.large
def test_quickstart_learns_beyond_the_no_answer_baseline_and_a_rerun_resumes(tmp_path, capsys):
    out = tmp_path / "quickstart"
    argv = ["quickstart", "--output_dir", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "squad" / "quickstart.json").read_text())
    dev, baseline = result["dev"], result["no_answer_baseline"]
    print(f"\nheld-apart F1 {dev['f1']:.1f} (EM {dev['exact']:.1f}, HasAns F1 {dev['HasAns_f1']:.1f}, NoAns "
          f"{dev['NoAns_exact']:.1f}) on {dev['total']} questions; always-no-answer F1 {baseline['f1']:.1f}")
    assert dev["total"] > 500
    assert dev["f1"] >= baseline["f1"] + F1_ABOVE_BASELINE
    assert dev["HasAns_f1"] >= MIN_HAS_ANS_F1
    # answers are names (1-3 words): the limit, the longest training answer, is well under the default 30 tokens
    assert 3 <= result["max_answer_length"] < 30 and f"up to {result['max_answer_length']} tokens" in printed
    # the baseline is what answering "" to every question scores: the share of unanswerable questions
    assert baseline["f1"] == pytest.approx(100.0 * dev["NoAns_total"] / dev["total"])
    scores = json.loads((out / "squad" / "dev" / "scores.json").read_text())
    assert scores["f1"] == pytest.approx(dev["f1"])
    assert f"F1 {dev['f1']:.1f}" in printed and f"F1 {baseline['f1']:.1f}" in printed
    curves = out / "learning_curves.png"
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(curves) in printed
    validation = [json.loads(line) for line in (out / "pretrain" / "validation.jsonl").read_text().splitlines()]
    assert validation[0]["step"] == 0 and validation[-1]["val_mlm_loss"] < validation[0]["val_mlm_loss"] - 1.0

    assert cli.main(argv) == 0
    second = capsys.readouterr().out
    assert second.count("already done") == 6, second  # questions, tokenizer, 2 x records, pretrain, squad
