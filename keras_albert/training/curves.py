"""Learning curves: recorded during a run (JSON lines beside it) and drawn into one PNG.

- `MaskedLmValidation`, a Keras callback for pretraining: every `frequency` optimizer updates, the masked-LM loss
  and accuracy on held-apart records, appended to a JSON-lines file (the step is the optimizer's, so a resumed run
  continues the same file).
- `SquadValidation`, a Keras callback for SQuAD finetuning: every `frequency` updates, the official v2.0 scores of
  held-in questions (not the held-apart ones a result is reported on), with the training loss of the window.
- `read_train_log` reads the `step N/T  loss ...` lines of a pretraining run's `train.log`.
- `plot_learning_curves` draws them (matplotlib, imported only there, with the non-interactive Agg backend).

```python
from keras_albert.training.curves import MaskedLmValidation, plot_learning_curves, read_jsonl, read_train_log

validation = MaskedLmValidation("heldout/*.tfrecord", 128, 19, frequency=100, path="run/validation.jsonl")
pretrain(settings, callbacks=[validation])
plot_learning_curves("curves.png", read_train_log("run/train.log"), read_jsonl("run/validation.jsonl"))
```
"""

import json
import os
import re

import keras
import numpy as np

_LOG_LINE = re.compile(r"\bstep (\d+)/\d+\s+(.*)$")
_LOG_PAIR = re.compile(r"([A-Za-z_/]+) (-?[0-9.]+(?:e[-+]?\d+)?)")


def read_jsonl(path):
    """The records of a JSON-lines file (one per step; a step written twice keeps its last record), by step."""
    if not os.path.isfile(path):
        return []
    by_step = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            line = line.strip()
            if line:
                record = json.loads(line)
                by_step[record["step"]] = record
    return [by_step[step] for step in sorted(by_step)]


def append_jsonl(path, record):
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


def read_train_log(path):
    """`[{"step": 50, "loss": ..., "mlm_loss": ..., "mlm_accuracy": ...}, ...]` from a pretraining `train.log`."""
    records = {}
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as file:
        for line in file:
            match = _LOG_LINE.search(line)
            if match:
                values = {key: float(value) for key, value in _LOG_PAIR.findall(match.group(2))}
                records[int(match.group(1))] = {"step": int(match.group(1)), **values}
    return [records[step] for step in sorted(records)]


def _step_of(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class MaskedLmValidation(keras.callbacks.Callback):
    """Masked-LM loss and accuracy of the model on held-apart pretraining records, every `frequency` updates.

    Args:
        file_pattern: str. TFRecords of text the run does not train on (`create-pretraining-data` output).
        max_seq_length, max_predictions_per_seq: int. The records' shapes.
        frequency: int. Optimizer updates between evaluations (also one before the first update and one at the end).
        path: str. JSON-lines file the records (`step`, `val_mlm_loss`, `val_mlm_accuracy`) are appended to.
        batch_size: int. Sequences per forward pass.
        max_batches: int or None. Evaluate on at most this many batches.
    """

    def __init__(self, file_pattern, max_seq_length, max_predictions_per_seq, frequency, path, batch_size=64,
                 max_batches=None):
        super().__init__()
        self.file_pattern = file_pattern
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.frequency = frequency
        self.path = path
        self.batch_size = batch_size
        self.max_batches = max_batches
        self._batches = None
        self._last = None

    def _evaluate(self):
        if self._batches is None:
            from keras_albert.data import pretraining_dataset

            dataset = pretraining_dataset(self.file_pattern, self.batch_size, self.max_seq_length,
                                          self.max_predictions_per_seq, shuffle=False, repeat=False)
            if self.max_batches:
                dataset = dataset.take(self.max_batches)
            self._batches = list(dataset)
        step = _step_of(self.model)
        if step == self._last:
            return
        loss_sum = correct = weight_sum = 0.0
        for batch in self._batches:
            logits = keras.ops.convert_to_numpy(self.model(batch, training=False)["mlm_logits"]).astype(np.float64)
            ids = batch["masked_lm_ids"].numpy()
            weights = batch["masked_lm_weights"].numpy().astype(np.float64)
            top = logits.max(axis=-1, keepdims=True)
            log_norm = np.log(np.exp(logits - top).sum(axis=-1)) + top[..., 0]
            target = np.take_along_axis(logits, ids[..., None], axis=-1)[..., 0]
            loss_sum += float(((log_norm - target) * weights).sum())
            correct += float(((logits.argmax(axis=-1) == ids) * weights).sum())
            weight_sum += float(weights.sum())
        weight_sum = max(weight_sum, 1.0)
        append_jsonl(self.path, {"step": step, "val_mlm_loss": loss_sum / weight_sum,
                                 "val_mlm_accuracy": correct / weight_sum})
        self._last = step

    def on_train_begin(self, logs=None):
        if _step_of(self.model) == 0:
            self._evaluate()

    def on_train_batch_end(self, batch, logs=None):
        if _step_of(self.model) % self.frequency == 0:
            self._evaluate()

    def on_train_end(self, logs=None):
        self._evaluate()


class SquadValidation(keras.callbacks.Callback):
    """Official SQuAD v2.0 scores of held-in questions every `frequency` finetuning updates, with the mean of the
    training losses logged since the previous record, appended to a JSON-lines file.

    F1 is reported twice: answering every question (`f1_answer_all`) and at the best no-answer threshold on these
    same questions (`best_f1`); `thresh` is that threshold (null score minus best span score).

    Args:
        examples: list of `SquadExample`. Held-in questions (not trained on, and not those results are reported on).
        features: their `SquadFeature`s built with `is_training=False`.
        dataset: dict. Their SQuAD JSON, for the official scoring.
        frequency: int. Updates between records (and one at the end).
        path: str. The JSON-lines file.
        max_answer_length: int. Longest answer, in tokens (as the predictions it tracks are extracted).
    """

    def __init__(self, examples, features, dataset, frequency, path, batch_size=128, max_answer_length=30):
        super().__init__()
        self.examples, self.features, self.dataset = examples, features, dataset
        self.max_answer_length = max_answer_length
        self.frequency, self.path, self.batch_size = frequency, path, batch_size
        self._loss_sum, self._loss_count, self._last = 0.0, 0, None

    def scores(self):
        from keras_albert.data import squad
        from keras_albert.training.squad_predict import predict_logits

        start, end = predict_logits(self.model, self.features, batch_size=self.batch_size, verbose=0)
        predictions, _, null_odds = squad.extract_answers(self.examples, self.features, start, end,
                                                          version_2_with_negative=True,
                                                          max_answer_length=self.max_answer_length,
                                                          null_score_diff_threshold=float("inf"))
        # every question answered (`f1`), and the official sweep of no-answer thresholds (`best_f1`)
        scores = squad.evaluate(self.dataset, predictions, na_probs=null_odds, na_prob_thresh=float("inf"))
        return scores, predictions, null_odds

    def _record(self):
        step = _step_of(self.model)
        if step == self._last:
            return
        scores, _, _ = self.scores()
        loss = self._loss_sum / self._loss_count if self._loss_count else None
        append_jsonl(self.path, {"step": step, "loss": loss, "f1_answer_all": scores["f1"],
                                 "best_f1": scores["best_f1"], "thresh": scores["best_f1_thresh"],
                                 "no_answer_baseline": 100.0 * scores.get("NoAns_total", 0) / scores["total"]})
        self._loss_sum, self._loss_count, self._last = 0.0, 0, step

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:  # the loss the model's train_step reports for this update
            self._loss_sum += float(logs["loss"])
            self._loss_count += 1
        if _step_of(self.model) % self.frequency == 0:
            self._record()

    def on_train_end(self, logs=None):
        self._record()


def plot_learning_curves(path, pretrain_log=(), pretrain_validation=(), squad_curve=(), squad_result=None,
                         title=None):
    """Draws up to three panels into the PNG at `path`: pretraining masked-LM loss and accuracy (training log and
    held-apart validation), and SQuAD finetuning (training loss; held-in F1; the held-apart result beside its
    always-no-answer baseline, when `squad_result` has `f1`, `no_answer_baseline`, `step`). Returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    panels = 3 if squad_curve else 2
    figure, axes = pyplot.subplots(1, panels, figsize=(5.2 * panels, 4.0))
    for axis, key, label in ((axes[0], "mlm_loss", "masked-LM loss"), (axes[1], "mlm_accuracy", "masked-LM accuracy")):
        train = [(r["step"], r[key]) for r in pretrain_log if key in r]
        val = [(r["step"], r["val_" + key]) for r in pretrain_validation if "val_" + key in r]
        if train:
            axis.plot(*zip(*train), label="training (logged)", color="tab:blue")
        if val:
            axis.plot(*zip(*val), "o-", label="validation (held-apart text)", color="tab:orange", markersize=3)
        axis.set_xlabel("pretraining step")
        axis.set_title(label)
        axis.grid(alpha=0.3)
        axis.legend()
    if squad_curve:
        axis = axes[2]
        steps = [r["step"] for r in squad_curve]
        axis.plot(steps, [r["best_f1"] for r in squad_curve], "o-", color="tab:green", markersize=3,
                  label="F1, held-in questions (at their best threshold)")
        baseline = squad_curve[-1].get("no_answer_baseline")
        if squad_result:
            axis.plot([squad_result["step"]], [squad_result["f1"]], "*", color="tab:red", markersize=12,
                      label=f"F1, held-apart questions: {squad_result['f1']:.1f}")
            axis.axhline(squad_result["no_answer_baseline"], color="tab:red", linestyle="--",
                         label=f"always 'no answer', held-apart: {squad_result['no_answer_baseline']:.1f}")
        elif baseline is not None:
            axis.axhline(baseline, color="tab:green", linestyle="--", label="always 'no answer', held-in")
        axis.set_xlabel("SQuAD finetuning step")
        axis.set_ylabel("F1 (0-100)")
        axis.set_title("SQuAD v2.0")
        axis.grid(alpha=0.3)
        losses = [(r["step"], r["loss"]) for r in squad_curve if r.get("loss") is not None]
        if losses:
            twin = axis.twinx()
            twin.plot(*zip(*losses), color="tab:gray", alpha=0.6, label="training loss")
            twin.set_ylabel("span loss")
            lines, labels = axis.get_legend_handles_labels()
            more, more_labels = twin.get_legend_handles_labels()
            axis.legend(lines + more, labels + more_labels, fontsize=8, loc="center right")
        else:
            axis.legend(fontsize=8)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path + ".tmp.png", dpi=90)
    pyplot.close(figure)
    os.replace(path + ".tmp.png", path)
    return path
