"""The reader's data position: `skip_batches=n` yields exactly what `.skip(n)` of the same stream yields, in time
independent of n (issue 9: a resume never replays the input pipeline); files of mixed shapes are refused by name."""

import os
import time

import numpy as np
import pytest
import tensorflow as tf

from fixtures_data import scratch_dir
from keras_albert.data import pretraining_dataset
from keras_albert.data.pretraining.dataset import count_records
from keras_albert.errors import UserInputError
from test_pretraining_dataset import PREDICTIONS, SEQ, google_instance, write_google_records

SIZES = (11, 0, 6, 17)  # uneven, one empty shard


@pytest.fixture(scope="module")
def uneven_files():
    directory = scratch_dir("position-records")
    paths, start = [], 0
    for shard, size in enumerate(SIZES):
        path = os.path.join(directory, f"shard-{shard}.tfrecord")
        write_google_records(path, [google_instance(start + i) for i in range(size)])
        paths.append(path)
        start += size
    return paths


@pytest.fixture(scope="module")
def unmasked_files():
    directory = scratch_dir("position-unmasked")
    paths = []
    for shard in range(2):
        instances = []
        for i in range(9 + shard * 4):
            instance = google_instance(100 + shard * 50 + i)
            instance["masked_lm_weights"] = [0.0] * PREDICTIONS
            instances.append(instance)
        path = os.path.join(directory, f"shard-{shard}.tfrecord")
        write_google_records(path, instances)
        paths.append(path)
    return paths


def batches(dataset, count):
    return [{name: value.numpy() for name, value in batch.items()} for batch in dataset.take(count)]


def assert_same_batches(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_counts_come_from_the_headers(uneven_files):
    assert [count_records(path) for path in uneven_files] == list(SIZES)
    truncated = os.path.join(scratch_dir("position-truncated"), "cut.tfrecord")
    with open(uneven_files[0], "rb") as source, open(truncated, "wb") as target:
        target.write(source.read()[:-7])
    with pytest.raises(UserInputError, match="cut.tfrecord: truncated TFRecord file"):
        count_records(truncated)


# 34 records: with 3 rows a batch an epoch ends mid-batch after 11 batches; skips cross two epochs.
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("pipelines", [1, 2])
def test_skip_batches_equals_skipping_the_stream(uneven_files, shuffle, pipelines):
    for pipeline in range(pipelines):
        context = tf.distribute.InputContext(pipelines, pipeline, pipelines) if pipelines > 1 else None
        # 2 pipelines: whole files each (11 + 6 and 0 + 17 records); records sharded: the next test.
        common = dict(input_context=context, shuffle=shuffle, seed=5, shuffle_buffer_size=4)
        stream = batches(pretraining_dataset(uneven_files, 3, SEQ, PREDICTIONS, **common), 40)
        for k in (4, 12, 23):
            resumed = batches(pretraining_dataset(uneven_files, 3, SEQ, PREDICTIONS, skip_batches=k, **common), 10)
            assert_same_batches(resumed, stream[k:k + 10])


@pytest.mark.parametrize("pipelines", [3])
def test_skip_batches_with_records_sharded_over_more_pipelines_than_files(uneven_files, pipelines):
    files = uneven_files[2:]  # 6 + 17 records in 2 files
    seen = []
    for pipeline in range(pipelines):
        context = tf.distribute.InputContext(pipelines, pipeline, pipelines)
        common = dict(input_context=context, seed=9, shuffle_buffer_size=3)
        stream = batches(pretraining_dataset(files, 2, SEQ, PREDICTIONS, **common), 20)
        for k in (2, 9):
            resumed = batches(pretraining_dataset(files, 2, SEQ, PREDICTIONS, skip_batches=k, **common), 6)
            assert_same_batches(resumed, stream[k:k + 6])
        epoch = pretraining_dataset(files, 1, SEQ, PREDICTIONS, repeat=False, **common)
        seen.append([tuple(row) for batch in epoch for row in batch["input_ids"].numpy()])
    everything = sorted(tuple(google_instance(i)["input_ids"]) for i in range(11, 34))
    assert sorted(row for rows in seen for row in rows) == everything  # a partition of the records


def test_each_epoch_reads_every_record_once_in_a_new_order(uneven_files):
    dataset = pretraining_dataset(uneven_files, 1, SEQ, PREDICTIONS, seed=3, shuffle_buffer_size=8)
    rows = [tuple(batch["input_ids"].numpy()[0]) for batch in dataset.take(68)]
    everything = sorted(tuple(google_instance(i)["input_ids"]) for i in range(34))
    assert sorted(rows[:34]) == everything and sorted(rows[34:]) == everything
    assert rows[:34] != rows[34:]


def test_dynamic_masks_do_not_depend_on_where_the_stream_starts(unmasked_files):
    common = dict(seed=11, shuffle_buffer_size=5, dynamic_masking=True, mask_id=4, vocab_size=1000,
                  special_ids=[0, 1, 2, 3, 4])
    stream = batches(pretraining_dataset(unmasked_files, 4, SEQ, PREDICTIONS, **common), 16)
    assert any(batch["masked_lm_weights"].sum() > 0 for batch in stream)
    for k in (1, 5, 9):
        resumed = batches(pretraining_dataset(unmasked_files, 4, SEQ, PREDICTIONS, skip_batches=k, **common), 6)
        assert_same_batches(resumed, stream[k:k + 6])


def test_the_first_batch_after_a_huge_skip_comes_at_once(uneven_files):
    def first_batch_seconds(k):
        start = time.perf_counter()
        next(iter(pretraining_dataset(uneven_files, 3, SEQ, PREDICTIONS, seed=1, skip_batches=k)))
        return time.perf_counter() - start

    first_batch_seconds(1)  # warm: TensorFlow's first dataset
    near, far = first_batch_seconds(1), first_batch_seconds(10**9)  # 10^9 batches: replaying would take days
    assert far < 10 * near + 2.0, (near, far)


def test_records_of_mixed_lengths_are_refused_naming_the_file(uneven_files):
    other = os.path.join(scratch_dir("position-longer"), "longer.tfrecord")
    instance = google_instance(0)
    longer = {name: value + [0] * (SEQ if name in ("input_ids", "input_mask", "segment_ids") else 0)
              for name, value in instance.items()}
    write_google_records(other, [longer])
    with pytest.raises(UserInputError, match=r"longer.tfrecord: records of mixed max_seq_length: its feature "
                                             r"'input_ids' holds 64 values, those of .*shard-0.tfrecord 32"):
        pretraining_dataset(uneven_files + [other], 2, SEQ, PREDICTIONS)
