"""Training runs: pretraining and SQuAD, built from one run layer, with checkpoints, resume and callbacks.

- `pretrain.py`: `pretrain(settings, model=None, dataset=None)`, the pretraining run, top to bottom;
  `pretrain_settings.py`: `PretrainSettings` and `resolve_settings` (checked and completed from the data).
- `squad.py`: `finetune_squad`, `run_squad`; `squad_dataset.py`: `training_dataset` (the training batches, resumable
  at any step); `squad_predict.py`: `predict_squad`; `squad_settings.py`: `SquadSettings`, `SquadRunSettings`;
  `squad_callback.py`: `PeriodicSquad` (SQuAD during pretraining).
- `runs.py`: what both runs are built from (model, optimizer, precision, XLA); `choices.py`: the settings' choices;
  `validation.py`: the checks, whose messages spell a setting as its caller does (`--flag` or `field`).
- `checkpoints.py`: exact resume and the final model; `callbacks.py`: throughput, logs, TensorBoard, checkpoints;
  `logs.py`: log lines on stderr and in the run directory.

The command-line front ends live in `keras_albert.commands`. Nothing here imports TensorFlow at import time where a
command needs it not to (the strategy must exist before any TensorFlow op).
"""
