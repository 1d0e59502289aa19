"""SQuAD v1.1 / v2.0: reading and validation, features, answer extraction and the official scores.

```python
from keras_albert.data import squad
examples = squad.read_squad("dev-v2.0.json")
features = squad.convert_examples_to_features(examples, tokenizer, is_training=False)
predictions, nbest, null_odds = squad.extract_answers(examples, features, start_logits, end_logits,
                                                      version_2_with_negative=True)
squad.evaluate(squad.load_json("dev-v2.0.json"), predictions, na_probs=null_odds)
```
TensorFlow is imported only by `squad_dataset`, so scoring and the `evaluate-squad` command
(`keras_albert.commands.evaluate_squad`) start fast.
"""

from keras_albert.data.squad.evaluation import (
    evaluate,
    exact_match_score,
    f1_score,
    missing_predictions,
    normalize_answer,
)
from keras_albert.data.squad.features import (
    SquadFeature,
    convert_examples_to_features,
    features_to_arrays,
    squad_dataset,
)
from keras_albert.data.squad.postprocess import extract_answers, write_json, write_predictions
from keras_albert.data.squad.reading import SquadAnswer, SquadExample, austen_squad_path, load_json, read_squad

__all__ = [
    "SquadAnswer",
    "SquadExample",
    "SquadFeature",
    "austen_squad_path",
    "convert_examples_to_features",
    "evaluate",
    "exact_match_score",
    "missing_predictions",
    "extract_answers",
    "f1_score",
    "features_to_arrays",
    "load_json",
    "normalize_answer",
    "read_squad",
    "squad_dataset",
    "write_json",
    "write_predictions",
]
