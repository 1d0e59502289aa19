"""`keras-albert quickstart`: the four steps run in order through the CLI, and a rerun redoes none of them."""

import json
import os

import pytest

from keras_albert import cli


@pytest.mark.large
def test_quickstart_runs_the_pipeline_and_a_rerun_resumes(tmp_path, capsys):
    out = tmp_path / "quickstart"
    argv = ["quickstart", "--output_dir", str(out), "--pretrain_steps", "8", "--squad_steps", "8", "--dupe_factor",
            "1", "--workers", "1", "--vocab_size", "1000", "--max_seq_length", "64", "--squad_max_seq_length", "64"]
    assert cli.main(argv) == 0
    first = capsys.readouterr().out
    scores = json.loads((out / "squad" / "scores.json").read_text())
    assert scores["total"] == 93  # the held-apart Austen questions, scored with the official rules
    summary = json.loads((out / "pretrain" / "summary.json").read_text())
    assert summary["step"] == 8 and summary["logs"]["loss"] > 0
    assert "== quickstart summary" in first and "pretraining data:" in first and "SQuAD v2.0 on held-apart" in first

    assert cli.main(argv) == 0
    second = capsys.readouterr().out
    assert second.count("already done") == 4, second
    assert sorted(os.listdir(out)) == ["data", "pretrain", "squad", "tokenizer"]
