"""The step-agreement check at the start of a multi-worker run (issue 9): the minimum and maximum over the workers,
gathered, not a variance (whose float sum of squares cannot tell 10**9 from 10**9 + 1)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_albert.models.multi_worker import workers_min_max
from keras_albert.training.pretrain import _workers_agree
from multi_worker_harness import OUT_ENV, run_workers


class _FakeHorovod:
    """Two ranks: this one, and another whose value is `other` (horovod.tensorflow's allgather concatenates)."""

    def __init__(self, other):
        self.other = other

    def allgather(self, tensor):
        return tf.concat([tensor, tf.constant([float(self.other)], tensor.dtype)], 0)


@pytest.mark.parametrize("mine, other", [(0, 5000), (10**9, 10**9 + 1), (5000, 0), (123, 123)])
def test_min_and_max_over_ranks(mine, other):
    assert workers_min_max(None, mine, _FakeHorovod(other)) == (min(mine, other), max(mine, other))
    assert _workers_agree(None, mine, _FakeHorovod(other)) == (mine == other)


def test_a_variance_would_have_missed_steps_one_apart():
    # The check it replaces: sum, sum of squares and count all-reduced in float64.
    values = np.array([10**9, 10**9 + 1], np.float64)
    total, squares, workers = values.sum(), (values**2).sum(), 2.0
    assert abs(squares * workers - total * total) < 0.5  # "agree": wrong
    assert not _workers_agree(None, 10**9, _FakeHorovod(10**9 + 1))


def test_one_process_strategy():
    assert workers_min_max(tf.distribute.get_strategy(), 42) == (42, 42)


SCRIPT = r'''
import json, os
from keras_albert.distribute import get_strategy
strategy = get_strategy("multi_worker")
from keras_albert.distribute import worker_info
from keras_albert.training.pretrain import _workers_agree
from keras_albert.models.multi_worker import workers_min_max
index = worker_info().task_index
values = json.loads(os.environ["VALUES"])
out = {"min_max": workers_min_max(strategy, values[index]), "agree": _workers_agree(strategy, values[index]),
       "same": _workers_agree(strategy, 7)}
open(os.environ["%s"], "w").write(json.dumps(out))
''' % OUT_ENV


@pytest.mark.large
def test_two_workers_gather_min_and_max():
    values = [10**9 + 1, 10**9]
    results = run_workers(SCRIPT, num_workers=2, timeout=300, env={"VALUES": json.dumps(values)})
    for result in results:
        with open(result.out_path) as file:
            out = json.load(file)
        assert out == {"min_max": [10**9, 10**9 + 1], "agree": False, "same": True}
