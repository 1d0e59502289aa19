"""The pretraining reader: Google's records (issue 4, acceptance 3), batching, sharding, shuffling, dynamic masking."""

import collections
import glob
import os

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

import keras_albert  # noqa: E402
from fixtures_data import novel_path, scratch_dir, trained_tokenizer_dir  # noqa: E402
from keras_albert.data import create_pretraining_data, pretraining_dataset  # noqa: E402
from keras_albert.data.tokenizers import load_tokenizer  # noqa: E402
from keras_albert.errors import UserInputError  # noqa: E402

SEQ, PREDICTIONS = 32, 5
FEATURES = (
    "input_ids",
    "input_mask",
    "segment_ids",
    "masked_lm_positions",
    "masked_lm_ids",
    "masked_lm_weights",
    "next_sentence_labels",
)


def google_instance(index):
    """A hand-made instance: [CLS] A [SEP] B [SEP], two masked positions, padded as Google pads."""
    rng = np.random.RandomState(index)
    length_a, length_b = 3 + index % 5, 2 + index % 7
    tokens = [2] + list(rng.randint(5, 900, length_a)) + [3] + list(rng.randint(5, 900, length_b)) + [3]
    segment = [0] * (length_a + 2) + [1] * (length_b + 1)
    positions = [1, length_a + 2]
    labels = [tokens[p] for p in positions]
    for p in positions:
        tokens[p] = 4
    return {
        "input_ids": tokens + [0] * (SEQ - len(tokens)),
        "input_mask": [1] * len(tokens) + [0] * (SEQ - len(tokens)),
        "segment_ids": segment + [0] * (SEQ - len(segment)),
        "masked_lm_positions": positions + [0] * (PREDICTIONS - 2),
        "masked_lm_ids": labels + [0] * (PREDICTIONS - 2),
        "masked_lm_weights": [1.0, 1.0] + [0.0] * (PREDICTIONS - 2),
        "next_sentence_labels": [index % 2],
    }


def write_google_records(path, instances, token_boundary=False):
    """As Google's `write_instance_to_example_files`: create_int_feature / create_float_feature, an OrderedDict."""

    def create_int_feature(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def create_float_feature(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))

    with tf.io.TFRecordWriter(path) as writer:
        for instance in instances:
            features = collections.OrderedDict()
            features["input_ids"] = create_int_feature(instance["input_ids"])
            features["input_mask"] = create_int_feature(instance["input_mask"])
            features["segment_ids"] = create_int_feature(instance["segment_ids"])
            if token_boundary:
                features["token_boundary"] = create_int_feature([1] * SEQ)
            features["masked_lm_positions"] = create_int_feature(instance["masked_lm_positions"])
            features["masked_lm_ids"] = create_int_feature(instance["masked_lm_ids"])
            features["masked_lm_weights"] = create_float_feature(instance["masked_lm_weights"])
            features["next_sentence_labels"] = create_int_feature(instance["next_sentence_labels"])
            example = tf.train.Example(features=tf.train.Features(feature=features))
            writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def google_files():
    directory = scratch_dir("google-records")
    instances = [google_instance(i) for i in range(40)]
    paths = []
    for shard in range(4):
        path = os.path.join(directory, f"shard-{shard}.tfrecord")
        write_google_records(path, instances[shard::4], token_boundary=shard % 2 == 1)
        paths.append(path)
    return paths, instances


def rows_of(dataset):
    out = collections.defaultdict(list)
    for batch in dataset.as_numpy_iterator():
        for name, value in batch.items():
            out[name].append(value)
    return {name: np.concatenate(values) for name, values in out.items()}


def test_reads_googles_records_exactly(google_files):
    paths, instances = google_files
    dataset = pretraining_dataset(paths[0], 2, SEQ, PREDICTIONS, shuffle=False, repeat=False)
    batch = next(iter(dataset))
    assert set(batch) == set(FEATURES)
    for name in FEATURES:
        expected_dtype = tf.float32 if name == "masked_lm_weights" else tf.int32
        assert batch[name].dtype == expected_dtype
        width = SEQ if name in FEATURES[:3] else 1 if name == "next_sentence_labels" else PREDICTIONS
        assert batch[name].shape == (2, width)
    rows = rows_of(dataset)
    for i, instance in enumerate(instances[0::4]):
        for name in FEATURES:
            np.testing.assert_array_equal(rows[name][i], np.asarray(instance[name], rows[name].dtype))


def test_batch_times_accumulation_drops_remainder(google_files):
    paths, _ = google_files
    dataset = pretraining_dataset(
        paths[:1], 2, SEQ, PREDICTIONS, gradient_accumulation_steps=2, shuffle=False, repeat=False
    )
    shapes = [batch["input_ids"].shape[0] for batch in dataset]
    assert shapes == [4, 4]  # 10 records: two batches of 2 x 2, two dropped
    assert dataset.element_spec["input_ids"].shape == (4, SEQ)  # static, as XLA and the accumulation loop need


def _ids(rows):
    return {tuple(row) for row in rows["input_ids"]}


@pytest.mark.parametrize("files", [4, 1])
def test_input_pipelines_partition_the_records(google_files, files):
    paths, instances = google_files
    everything = {tuple(instance["input_ids"]) for instance in (instances if files == 4 else instances[0::4])}
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        rows = rows_of(
            pretraining_dataset(paths[:files], 1, SEQ, PREDICTIONS, input_context=context, shuffle=False, repeat=False)
        )
        seen.append(_ids(rows))
        assert len(rows["input_ids"]) == len(everything) // 2
    assert seen[0] | seen[1] == everything and not seen[0] & seen[1]
    if files == 4:  # whole files per pipeline
        assert seen[0] == {tuple(i["input_ids"]) for i in instances[0::4] + instances[2::4]}


def test_shuffle_is_seeded_and_repeat_goes_on(google_files):
    paths, instances = google_files

    def order(seed):
        dataset = pretraining_dataset(paths, 4, SEQ, PREDICTIONS, seed=seed, shuffle_buffer_size=64)
        return [tuple(row) for batch in dataset.take(20) for row in batch["input_ids"].numpy()]

    first = order(1)
    assert len(first) == 80  # more rows than the 40 records: it repeats
    assert set(first) <= {tuple(instance["input_ids"]) for instance in instances} and len(set(first)) >= 30
    assert first == order(1) and first != order(2)
    unshuffled = pretraining_dataset(paths, 4, SEQ, PREDICTIONS, shuffle=False, repeat=False)
    assert first[:40] != [tuple(row) for batch in unshuffled for row in batch["input_ids"].numpy()]


def test_bad_settings_name_the_problem(google_files):
    paths, _ = google_files
    with pytest.raises(UserInputError, match="file_pattern: no TFRecord file matches"):
        pretraining_dataset(os.path.join(scratch_dir("none"), "*.tfrecord"), 2, SEQ, PREDICTIONS)
    with pytest.raises(UserInputError, match=r"shard-0.tfrecord: feature 'input_ids' holds 32 values, max_seq_length"):
        pretraining_dataset(paths[0], 2, 64, PREDICTIONS)
    with pytest.raises(UserInputError, match="max_predictions_per_seq"):
        pretraining_dataset(paths[0], 2, SEQ, 20)
    with pytest.raises(UserInputError, match="already masked"):
        pretraining_dataset(
            paths[0], 2, SEQ, PREDICTIONS, dynamic_masking=True, mask_id=4, vocab_size=1000, special_ids=[0, 1, 2, 3, 4]
        )
    with pytest.raises(UserInputError, match="batch_size"):
        pretraining_dataset(paths[0], 0, SEQ, PREDICTIONS)
    not_records = os.path.join(scratch_dir("text"), "a.tfrecord")
    with open(not_records, "w") as file:
        file.write("plain text, not records\n" * 10)
    with pytest.raises(UserInputError, match="a.tfrecord: not a TFRecord file"):
        pretraining_dataset(not_records, 2, SEQ, PREDICTIONS)


def test_package_attribute_is_callable(google_files):
    paths, _ = google_files
    dataset = keras_albert.data.pretraining_dataset(paths[0], 2, SEQ, PREDICTIONS, repeat=False)
    assert next(iter(dataset))["input_ids"].shape == (2, SEQ)


# ---------------------------------------------------------------------------------------------------------------
# Dynamic masking from records written without masks


@pytest.fixture(scope="module")
def unmasked():
    out = scratch_dir("unmasked")
    create_pretraining_data(
        novel_path(),
        trained_tokenizer_dir("albert"),
        out,
        max_seq_length=128,
        max_predictions_per_seq=20,
        dupe_factor=1,
        workers=1,
        num_shards=2,
        no_masking=True,
        progress=False,
    )
    plain = rows_of(pretraining_dataset(out, 256, 128, 20, shuffle=False, repeat=False))
    return out, plain, load_tokenizer(trained_tokenizer_dir("albert"))


def _masked_epoch(directory, tokenizer, masking, seed=5, epochs=1):
    dataset = pretraining_dataset(
        directory,
        256,
        128,
        20,
        shuffle=False,
        repeat=False,
        seed=seed,
        dynamic_masking=True,
        tokenizer=tokenizer,
        masking=masking,
    )
    return [rows_of(dataset) for _ in range(epochs)]


@pytest.mark.parametrize("masking", ["token", "whole_word", "ngram"])
def test_dynamic_masking_statistics(unmasked, masking):
    directory, plain, tokenizer = unmasked
    (rows,) = _masked_epoch(directory, tokenizer, masking)
    count = len(rows["input_ids"])
    original = plain["input_ids"][:count]
    weights, positions, labels = rows["masked_lm_weights"], rows["masked_lm_positions"], rows["masked_lm_ids"]
    real = weights > 0
    assert abs(weights.sum() / rows["input_mask"].sum() - 0.15) <= 0.01
    assert (labels[real] == np.take_along_axis(original, positions, axis=1)[real]).all()
    assert not np.isin(labels[real], tokenizer.special_ids).any()  # never [CLS], [SEP] or padding
    assert ((weights > 0) == (np.arange(20)[None, :] < real.sum(axis=1)[:, None])).all()
    assert (np.diff(positions, axis=1)[real[:, 1:]] > 0).all()
    now = np.take_along_axis(rows["input_ids"], positions, axis=1)[real]
    as_mask, kept = (now == tokenizer.mask_id).mean(), (now == labels[real]).mean()
    assert abs(as_mask - 0.8) <= 0.02 and abs(kept - 0.1) <= 0.02 and abs(1 - as_mask - kept - 0.1) <= 0.02
    chosen = np.zeros(original.shape, bool)
    chosen[np.nonzero(real)[0], positions[real]] = True
    assert (rows["input_ids"][~chosen] == original[~chosen]).all()
    if masking != "token":  # whole words only: a masked piece's word is masked entirely
        special = np.isin(original, tokenizer.special_ids)
        after_special = np.pad(special[:, :-1], [(0, 0), (1, 0)])  # a segment may start inside a word
        starts = tokenizer.word_start_table()[original] | special | after_special
        continuation = ~starts & (rows["input_mask"] > 0)
        inside = continuation[:, 1:]
        assert (chosen[:, 1:][inside] == chosen[:, :-1][inside]).all()


def test_dynamic_masks_are_fresh_each_epoch_and_seeded(unmasked):
    # Masks are a function of the seed and the batch's place in the repeated stream: a second epoch (the records
    # again, in the same order without shuffle) gets new ones; the same stream read again gets the same.
    directory, _, tokenizer = unmasked
    from keras_albert.data.pretraining.dataset import count_records

    records = sum(count_records(path) for path in glob.glob(os.path.join(directory, "*.tfrecord")))
    dataset = pretraining_dataset(directory, 256, 128, 20, shuffle=False, seed=5, dynamic_masking=True,
                                  tokenizer=tokenizer, masking="ngram")
    rows = rows_of(dataset.take(-(-2 * records // 256)))
    first, second = ({name: value[start:start + records] for name, value in rows.items()} for start in (0, records))
    (again,) = _masked_epoch(directory, tokenizer, "ngram", seed=5)
    first = {name: value[:len(again["input_ids"])] for name, value in first.items()}  # the epoch's whole batches
    second = {name: value[:len(again["input_ids"])] for name, value in second.items()}
    assert (first["segment_ids"] == second["segment_ids"]).all()  # same records, same order
    assert (first["masked_lm_positions"] != second["masked_lm_positions"]).any(axis=1).mean() > 0.9
    for name in FEATURES:
        np.testing.assert_array_equal(first[name], again[name])


def test_batches_train_a_pretraining_model(unmasked):
    pretraining_model = pytest.importorskip("keras_albert.models.pretraining_model")
    directory, _, tokenizer = unmasked
    model = pretraining_model.PretrainingModel.from_preset("albert_tiny", vocabulary_size=tokenizer.vocab_size)
    model.compile(optimizer="adam", gradient_accumulation_steps=2)
    dataset = pretraining_dataset(
        directory,
        4,
        128,
        20,
        gradient_accumulation_steps=2,
        seed=1,
        dynamic_masking=True,
        tokenizer=tokenizer,
        masking="ngram",
    )
    history = model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
