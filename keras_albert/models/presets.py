"""Architectures for random initialisation, by name.

ALBERT shapes are the ALBERT paper's (Lan et al. 2019, table 1; vocabulary 30000, embedding 128, all layers in one
shared group) and BERT's the BERT paper's (vocabulary 30522). The tiny presets are for tests (a few hundred thousand
parameters with a 5000-token vocabulary); the small ones, twice as wide, are what `keras-albert quickstart` trains on a
CPU in minutes (`albert_small` alone gives each of its two layers its own group).
Every preset takes overrides: `PretrainingModel.from_preset("albert_base", vocabulary_size=8000)`.
"""

from keras_albert.errors import UserInputError

_ALBERT = dict(
    model_type="albert",
    vocabulary_size=30000,
    embedding_dim=128,
    num_groups=1,
    num_inner_repetitions=1,
    dropout=0.0,
    max_sequence_length=512,
    num_segments=2,
    hidden_activation="gelu_approximate",
)
_BERT = dict(
    model_type="bert",
    vocabulary_size=30522,
    dropout=0.1,
    max_sequence_length=512,
    num_segments=2,
    hidden_activation="gelu",
)

PRESETS = {
    "albert_tiny": {**_ALBERT, "vocabulary_size": 5000, "embedding_dim": 32, "num_layers": 2, "num_heads": 2,
                    "hidden_dim": 64, "intermediate_dim": 256, "max_sequence_length": 128},
    # Two layers in two groups (ALBERT's num_hidden_groups): no sharing. With one shared layer the quickstart's
    # held-apart F1 stayed 7-12 points above answering "no answer" everywhere; with two groups (and AdamW 1e-3) its
    # finetuning leaves that plateau, 18-21 points above (README, "Quickstart").
    "albert_small": {**_ALBERT, "vocabulary_size": 5000, "embedding_dim": 64, "num_layers": 2, "num_groups": 2,
                     "num_heads": 4, "hidden_dim": 128, "intermediate_dim": 512, "max_sequence_length": 128},
    "albert_base": {**_ALBERT, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072},
    "albert_large": {**_ALBERT, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "intermediate_dim": 4096},
    "albert_xlarge": {**_ALBERT, "num_layers": 24, "num_heads": 16, "hidden_dim": 2048, "intermediate_dim": 8192},
    "albert_xxlarge": {**_ALBERT, "num_layers": 12, "num_heads": 64, "hidden_dim": 4096, "intermediate_dim": 16384},
    "bert_tiny": {**_BERT, "vocabulary_size": 5000, "num_layers": 2, "num_heads": 2, "hidden_dim": 64,
                  "intermediate_dim": 256, "max_sequence_length": 128},
    "bert_small": {**_BERT, "vocabulary_size": 5000, "num_layers": 2, "num_heads": 4, "hidden_dim": 128,
                   "intermediate_dim": 512, "max_sequence_length": 128},
    "bert_base": {**_BERT, "num_layers": 12, "num_heads": 12, "hidden_dim": 768, "intermediate_dim": 3072},
    "bert_large": {**_BERT, "num_layers": 24, "num_heads": 16, "hidden_dim": 1024, "intermediate_dim": 4096},
}


def preset_config(name, **overrides):
    """The backbone config of preset `name` with `overrides` applied (keys as the backbone's arguments)."""
    if name not in PRESETS:
        raise UserInputError(f"Unknown preset {name!r}; expected one of {', '.join(PRESETS)}.")
    config = dict(PRESETS[name])
    accepted = set(config) - {"model_type"}
    unknown = set(overrides) - accepted
    if unknown:
        raise UserInputError(
            f"Unknown override(s) {sorted(unknown)} for preset {name!r}; accepted: {', '.join(sorted(accepted))}."
        )
    config.update(overrides)
    return config
