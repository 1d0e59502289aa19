"""create-pretraining-data: statistics (issue 4, acceptance 1), determinism across workers (2), Google's feature spec
(3), pair semantics, and bad input."""

import hashlib
import json
import os
import random
import time

import numpy as np
import pytest

from fixtures_data import novel_path, scratch_dir, trained_tokenizer_dir
from keras_albert import cli
from keras_albert.data import create_pretraining_data, text
from keras_albert.data.pretraining import encoding, pool
from keras_albert.data.pretraining.instances import compiled_module
from keras_albert.data.summary import read_data_summary
from keras_albert.data.tokenizers import WordPieceTokenizer, load_tokenizer
from keras_albert.errors import UserInputError

SEQ, PREDICTIONS, PROB = 128, 20, 0.15


def google_spec(tf, max_seq_length, max_predictions_per_seq, token_boundary=False):
    """Google's `name_to_features` from BERT/ALBERT `run_pretraining.py`, plus ALBERT's `token_boundary`."""
    spec = {
        "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }
    if token_boundary:
        spec["token_boundary"] = tf.io.FixedLenFeature([max_seq_length], tf.int64)
    return spec


def read_records(directory, token_boundary=True, seq=SEQ, predictions=PREDICTIONS):
    """Every record of a run, in shard order, parsed one by one with tf.io.parse_single_example and Google's spec."""
    tf = pytest.importorskip("tensorflow")
    spec = google_spec(tf, seq, predictions, token_boundary)
    files = sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".tfrecord"))
    parsed = tf.data.TFRecordDataset(files).map(lambda record: tf.io.parse_single_example(record, spec))
    batches = list(parsed.batch(4096).as_numpy_iterator())
    return {name: np.concatenate([batch[name] for batch in batches]) for name in spec}


def run(output_name, tokenizer, **settings):
    out = scratch_dir(output_name)
    defaults = dict(
        max_seq_length=SEQ,
        max_predictions_per_seq=PREDICTIONS,
        masked_lm_prob=PROB,
        dupe_factor=4,
        workers=1,
        seed=7,
        num_shards=2,
        progress=False,
    )
    defaults.update(settings)
    summary = create_pretraining_data(novel_path(), tokenizer, out, **defaults)
    return out, summary


@pytest.fixture(scope="module")
def albert():
    """ALBERT n-gram masking on Persuasion, and the same run unmasked (the same pairs, in the same order)."""
    tokenizer = trained_tokenizer_dir("albert")
    masked_dir, summary = run("albert-ngram", tokenizer)
    plain_dir, plain_summary = run("albert-plain", tokenizer, no_masking=True)
    return {
        "tokenizer": load_tokenizer(tokenizer),
        "summary": summary,
        "records": read_records(masked_dir),
        "plain": read_records(plain_dir),
        "plain_summary": plain_summary,
        "dir": masked_dir,
    }


def corpus_tokens(tokenizer):
    """Persuasion tokenized independently of the pipeline, as int32 bytes for substring search."""
    sentences = [s for d in text.read_documents(novel_path()) for s in d]
    return np.concatenate([np.asarray(ids, np.int32) for ids in tokenizer.encode_batch(sentences)]).tobytes()


def contains(haystack, tokens):
    needle = np.asarray(tokens, np.int32).tobytes()
    start = haystack.find(needle)
    while start >= 0 and start % 4:
        start = haystack.find(needle, start + 1)
    return start >= 0


def segments(row_ids, row_mask, sep_id):
    length = int(row_mask.sum())
    first_sep = int(np.flatnonzero(row_ids[:length] == sep_id)[0])
    return row_ids[1:first_sep], row_ids[first_sep + 1 : length - 1]


# ---------------------------------------------------------------------------------------------------------------
# Acceptance 1: statistics on the embedded corpus


def test_masked_share_replacements_and_sop_balance(albert):
    records, plain, tokenizer = albert["records"], albert["plain"], albert["tokenizer"]
    instances = len(records["input_ids"])
    assert instances > 4000
    weights = records["masked_lm_weights"]
    masked_share = weights.sum() / records["input_mask"].sum()
    assert abs(masked_share - PROB) <= 0.01, masked_share
    # What each masked position now holds, against the original token (from the unmasked twin run).
    positions, labels = records["masked_lm_positions"], records["masked_lm_ids"]
    original = np.take_along_axis(plain["input_ids"], positions, axis=1)
    real = weights > 0
    assert (labels[real] == original[real]).all()
    now = np.take_along_axis(records["input_ids"], positions, axis=1)[real]
    as_mask = (now == tokenizer.mask_id).mean()
    kept = (now == labels[real]).mean()
    random_share = 1 - as_mask - kept
    assert abs(as_mask - 0.8) <= 0.02 and abs(kept - 0.1) <= 0.02 and abs(random_share - 0.1) <= 0.02, (
        as_mask,
        kept,
        random_share,
    )
    replaced = now[(now != tokenizer.mask_id) & (now != labels[real])]
    assert not np.isin(replaced, tokenizer.special_ids).any()
    # Outside masked positions the tokens are untouched.
    chosen = np.zeros(records["input_ids"].shape, bool)
    chosen[np.nonzero(real)[0], positions[real]] = True
    assert (records["input_ids"][~chosen] == plain["input_ids"][~chosen]).all()
    sop = records["next_sentence_labels"].mean()
    assert abs(sop - 0.5) <= 0.02, sop
    assert (records["next_sentence_labels"] == plain["next_sentence_labels"]).all()


def google_albert_masking(tokens, starts_word, masked_lm_prob, max_predictions, rng, np_rng, max_ngram=3):
    """ALBERT's `create_masked_lm_predictions` (google-research/albert), transcribed: whole-word n-grams,
    n <= 3 with p proportional to 1/n, shortened to fit, overlapping n-grams skipped. Returns masked positions and
    the length in words of each chosen n-gram."""
    cand_indexes = []
    for i, token in enumerate(tokens):
        if token is None:  # [CLS] / [SEP]
            continue
        if cand_indexes and not starts_word[i]:
            cand_indexes[-1].append(i)
        else:
            cand_indexes.append([i])
    num_to_predict = min(max_predictions, max(1, int(round(len(tokens) * masked_lm_prob))))
    ngrams = np.arange(1, max_ngram + 1, dtype=np.int64)
    pvals = 1.0 / np.arange(1, max_ngram + 1)
    pvals /= pvals.sum(keepdims=True)
    ngram_indexes = []
    for idx in range(len(cand_indexes)):
        ngram_indexes.append([cand_indexes[idx : idx + n] for n in ngrams])
    rng.shuffle(ngram_indexes)
    masked, covered, chosen = [], set(), []
    for cand_index_set in ngram_indexes:
        if len(masked) >= num_to_predict:
            break
        if not cand_index_set:
            continue
        n = np_rng.choice(ngrams[: len(cand_index_set)], p=pvals[: len(cand_index_set)])
        index_set = sum(cand_index_set[n - 1], [])
        words = len(cand_index_set[n - 1])
        n -= 1
        while len(masked) + len(index_set) > num_to_predict:
            if n == 0:
                break
            index_set = sum(cand_index_set[n - 1], [])
            words = len(cand_index_set[n - 1])
            n -= 1
        if len(masked) + len(index_set) > num_to_predict:
            continue
        if any(index in covered for index in index_set):
            continue
        covered.update(index_set)
        masked.extend(index_set)
        chosen.append(words)
    return sorted(masked), chosen


def test_ngram_lengths_follow_one_over_n_and_google_algorithm(albert):
    summary, plain, tokenizer = albert["summary"], albert["plain"], albert["tokenizer"]
    expected = np.array([6, 3, 2]) / 11  # p(n) proportional to 1/n, n = 1..3
    drawn = np.array([summary["ngram_drawn_counts"][k] for k in "123"], float)
    assert np.abs(drawn / drawn.sum() - expected).max() <= 0.01, drawn / drawn.sum()
    ours = np.array([summary["ngram_counts"][k] for k in "123"], float)
    # The oracle: Google's algorithm on the same unmasked instances, with its own random generators.
    rng, np_rng = random.Random(3), np.random.RandomState(3)
    oracle_counts = np.zeros(4)
    oracle_masked = 0
    for ids, mask in zip(plain["input_ids"], plain["input_mask"]):
        length = int(mask.sum())
        row = ids[:length].tolist()
        tokens = [None if t in (tokenizer.cls_id, tokenizer.sep_id) else t for t in row]
        starts_word = [tokenizer.is_word_start(t) for t in row]
        masked, chosen = google_albert_masking(tokens, starts_word, PROB, PREDICTIONS, rng, np_rng)
        oracle_masked += len(masked)
        oracle_counts += np.bincount(chosen, minlength=4)
    oracle = oracle_counts[1:] / oracle_counts[1:].sum()
    assert np.abs(ours / ours.sum() - oracle).max() <= 0.02, (ours / ours.sum(), oracle)
    assert abs(summary["masked_tokens"] - oracle_masked) / oracle_masked <= 0.01


def test_whole_words_and_tokens_masking_bert(albert):
    tokenizer = load_tokenizer(trained_tokenizer_dir("bert"))
    out, summary = run("bert-whole-word", trained_tokenizer_dir("bert"), masking="whole_word", dupe_factor=2)
    records = read_records(out, token_boundary=False)
    assert summary["settings"]["masking"] == "whole_word" and summary["ngram_counts"].keys() == {"1"}
    starts = tokenizer.word_start_table()
    broken = 0
    for ids, positions, weights, labels in zip(
        records["input_ids"], records["masked_lm_positions"], records["masked_lm_weights"], records["masked_lm_ids"]
    ):
        chosen = set(positions[weights > 0].tolist())
        original = ids.copy()
        original[positions[weights > 0]] = labels[weights > 0]
        for p in chosen:
            # A masked continuation piece has its word's previous piece masked; a masked word's next continuation
            # piece is masked too.
            if not starts[original[p]] and original[p - 1] not in (tokenizer.cls_id, tokenizer.sep_id):
                broken += (p - 1) not in chosen
            if p + 1 < len(ids) and not starts[original[p + 1]] and original[p + 1] not in tokenizer.special_ids:
                broken += (p + 1) not in chosen
    assert broken == 0
    assert abs(summary["masked_share"] - PROB) <= 0.01
    out, summary = run("bert-token", trained_tokenizer_dir("bert"), masking="token", dupe_factor=2)
    records = read_records(out, token_boundary=False)
    assert abs(records["masked_lm_weights"].sum() / records["input_mask"].sum() - PROB) <= 0.01


# ---------------------------------------------------------------------------------------------------------------
# Pair semantics


def test_sentence_order_pairs_come_from_the_corpus_in_order(albert):
    plain, tokenizer = albert["plain"], albert["tokenizer"]
    haystack = corpus_tokens(tokenizer)
    in_order = {0: [], 1: []}
    for ids, mask, label in zip(plain["input_ids"], plain["input_mask"], plain["next_sentence_labels"][:, 0]):
        a, b = segments(ids, mask, tokenizer.sep_id)
        assert len(a) and len(b)
        if len(a) + len(b) < SEQ - 3:  # not truncated: the two segments meet exactly in the corpus
            in_order[int(label)].append((contains(haystack, np.r_[a, b]), contains(haystack, np.r_[b, a])))
    for label in (0, 1):
        found = np.array(in_order[label])
        assert len(found) > 300
        forward, backward = found.mean(axis=0)
        if label == 0:  # A then B, as in the text
            assert forward == 1.0 and backward <= 0.05  # short segments (a name, "Yes.") recur in either order
        else:  # swapped
            assert backward == 1.0 and forward <= 0.05


def test_next_sentence_pairs_bert():
    tokenizer = load_tokenizer(trained_tokenizer_dir("bert"))
    out, summary = run("bert-nsp", trained_tokenizer_dir("bert"), no_masking=True, dupe_factor=1)
    records = read_records(out, token_boundary=False)
    assert "token_boundary" not in _feature_names(out)  # BERT's script does not write it
    haystack = corpus_tokens(tokenizer)
    found = {0: [], 1: []}
    for ids, mask, label in zip(records["input_ids"], records["input_mask"], records["next_sentence_labels"][:, 0]):
        a, b = segments(ids, mask, tokenizer.sep_id)
        if len(a) + len(b) < SEQ - 3:
            found[int(label)].append(contains(haystack, np.r_[a, b]))
    assert np.mean(found[0]) == 1.0 and len(found[0]) > 100  # actual next
    assert np.mean(found[1]) <= 0.02 and len(found[1]) > 100  # random next from another document
    assert summary["settings"]["model_type"] == "bert"


def _feature_names(directory):
    tf = pytest.importorskip("tensorflow")
    files = sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".tfrecord"))
    record = next(iter(tf.data.TFRecordDataset(files).take(1)))
    return set(tf.train.Example.FromString(record.numpy()).features.feature)


# ---------------------------------------------------------------------------------------------------------------
# Acceptance 2: determinism whatever the number of workers


def _shard_bytes(directory):
    return {
        n: open(os.path.join(directory, n), "rb").read()
        for n in sorted(os.listdir(directory))
        if n.endswith(".tfrecord")
    }


def _require_compiled():
    """Skips where the install has no compiled builder (no C compiler), fails instead under
    KERAS_ALBERT_REQUIRE_COMPILED=1 (CI's machine has a compiler, so the install must have built it)."""
    if compiled_module() is None:
        if os.environ.get("KERAS_ALBERT_REQUIRE_COMPILED"):
            pytest.fail("keras_albert.data.pretraining._instances was not compiled by the install")
        pytest.skip("this install has no compiled instance builder")


@pytest.mark.parametrize(
    "model_type, settings",
    [
        ("albert", {}),
        ("albert", {"max_seq_length": 512, "max_predictions_per_seq": 76, "no_masking": True}),
        ("albert", {"masking": "token", "short_seq_prob": 0.5, "max_seq_length": 24, "max_predictions_per_seq": 3}),
        ("bert", {}),
        ("bert", {"masking": "whole_word", "max_seq_length": 64}),
        ("bert", {"model_type": "albert", "masking": "ngram", "max_ngram": 4}),
    ],
)
def test_compiled_and_numpy_builders_write_identical_records(model_type, settings):
    """The compiled builder (`_instances.c`) against its NumPy twin: the same bytes and counts for every mode."""
    _require_compiled()
    tokenizer = trained_tokenizer_dir(model_type)
    name = f"{model_type}-" + "-".join(f"{key}={value}" for key, value in settings.items())
    compiled, compiled_summary = run(f"compiled-{name}", tokenizer, dupe_factor=2, **settings)
    numpy, numpy_summary = run(f"numpy-{name}", tokenizer, dupe_factor=2, builder="numpy", **settings)
    assert compiled_summary["settings"]["builder"] == "compiled" and numpy_summary["settings"]["builder"] == "numpy"
    shards = _shard_bytes(compiled)
    assert sum(map(len, shards.values())) > 100_000
    assert shards == _shard_bytes(numpy)
    for key in ("instances", "tokens", "masked_tokens", "replaced_by_mask_share", "ngram_counts", "ngram_drawn_counts"):
        assert compiled_summary[key] == numpy_summary[key], key


def test_small_dev_shm_sends_the_corpus_through_disk(monkeypatch):
    """With little room in /dev/shm (64 MB in many containers), the files between processes go to the temporary
    directory and the corpus arrays to disk: the same shards."""
    tokenizer = trained_tokenizer_dir("albert")
    one, _ = run("shm-1", tokenizer, dupe_factor=1, workers=1)
    real = pool.shutil.disk_usage
    places = []

    def little_room(path):
        places.append(str(path))
        usage = real(path)
        return usage._replace(free=1 << 20) if str(path).startswith("/dev/shm") else usage

    monkeypatch.setattr(pool.shutil, "disk_usage", little_room)
    two, _ = run("shm-2", tokenizer, dupe_factor=1, workers=2)
    assert _shard_bytes(two) == _shard_bytes(one)
    assert places and not any(place.startswith("/dev/shm/") for place in places)  # nothing was placed there


def _double(state, item):
    return 2 * item


def _refuse_thirteen(state, item):
    if item == 13:
        raise UserInputError("item 13 is bad")
    return item


def _rank_and_item(state, item):
    # Slow enough that the next item is sent before this one is answered: warm workers answering at once would
    # each time leave worker 0 the least busy, and it would get every item.
    time.sleep(0.02)
    return state.rank, item


def _die_outside(state, item):
    """Kills any process but the one that started the test (whose pid the item carries)."""
    number, parent = item
    if os.getpid() != parent:
        os._exit(3)
    return number


def test_worker_pool_keeps_item_order_and_surfaces_worker_errors():
    with pool.WorkerPool(3, spill=scratch_dir("executor")) as executor:
        assert list(executor.map(_double, iter(range(40)))) == [2 * i for i in range(40)]
        assert list(executor.map(_double, [])) == []
        ranks = [rank for rank, _ in executor.map(_rank_and_item, range(40))]
        assert {0, 1} <= set(ranks)  # each worker process got its own state (rank), this one None
        with pytest.raises(UserInputError, match="item 13 is bad"):
            list(executor.map(_refuse_thirteen, range(40)))
    with pool.WorkerPool(2, spill=scratch_dir("executor")) as executor:
        with pytest.raises(RuntimeError, match=r"worker process died \(exit code 3\)"):
            list(executor.map(_die_outside, [(i, os.getpid()) for i in range(40)]))


def test_checksums_frame_records_as_tensorflows_writer():
    """`encoding.fill_checksums` (google-crc32c) against TensorFlow's TFRecordWriter, on record lengths around the
    8-byte steps of CRC implementations and on empty input."""
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(0)
    records = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000]]
    blob, ends = encoding.frame_with_slots(records)
    path = os.path.join(scratch_dir("crc"), "records.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    assert bytes(encoding.fill_checksums(blob, ends)) == open(path, "rb").read()
    assert encoding.fill_checksums(b"", np.zeros(0, np.int64)) == b""


def test_compiled_builder_with_checksums_in_python_writes_the_same_bytes(albert, monkeypatch):
    """Where google-crc32c's C library is not found, the compiled builder leaves the CRC slots to
    `encoding.fill_checksums`: the same shards."""
    _require_compiled()
    monkeypatch.setattr(encoding, "native_crc32c_address", lambda: 0)
    python_crc, _ = run("albert-ngram-python-crc", trained_tokenizer_dir("albert"))
    assert _shard_bytes(python_crc) == _shard_bytes(albert["dir"])


def test_native_crc32c_is_found_beside_google_crc32c():
    """The wheels of google-crc32c for Linux ship their C library in google_crc32c.libs/: the compiled builder must
    find it there (else instance building runs about 30% slower, with the CRCs in Python)."""
    import glob

    import google_crc32c

    shipped = glob.glob(os.path.join(os.path.dirname(google_crc32c.__file__), os.pardir, "google_crc32c.libs", "*"))
    if google_crc32c.implementation != "c" or not shipped:
        pytest.skip("google-crc32c without its C library beside it")
    assert encoding.native_crc32c_address() != 0


def test_same_seed_byte_identical_with_one_and_two_workers():
    tokenizer = trained_tokenizer_dir("albert")
    one, summary_one = run("workers-1", tokenizer, dupe_factor=2, num_shards=3, workers=1)
    two, summary_two = run("workers-2", tokenizer, dupe_factor=2, num_shards=3, workers=2)
    shards = _shard_bytes(one)
    assert len(shards) == 3 and all(len(data) > 100_000 for data in shards.values())
    assert shards == _shard_bytes(two)
    for key in ("instances", "tokens", "masked_tokens", "ngram_counts"):
        assert summary_one[key] == summary_two[key]
    other, _ = run("seed-8", tokenizer, dupe_factor=2, num_shards=3, workers=1, seed=8)
    assert _shard_bytes(other) != shards


# ---------------------------------------------------------------------------------------------------------------
# Acceptance 3 (our half): the records parse with Google's spec; layout as Google writes it


def test_records_have_googles_layout(albert):
    records, tokenizer = albert["records"], albert["tokenizer"]
    assert set(_feature_names(albert["dir"])) == set(google_spec(__import__("tensorflow"), SEQ, PREDICTIONS, True))
    ids, mask, segment = records["input_ids"], records["input_mask"], records["segment_ids"]
    lengths = mask.sum(axis=1)
    assert (ids[:, 0] == tokenizer.cls_id).all()
    assert (ids[np.arange(len(ids)), lengths - 1] == tokenizer.sep_id).all()
    padding = np.arange(SEQ)[None, :] >= lengths[:, None]
    assert (mask == ~padding).all() and (ids[padding] == 0).all() and (segment[padding] == 0).all()
    for row in range(0, len(ids), 97):
        sep = np.flatnonzero(ids[row, : lengths[row]] == tokenizer.sep_id)
        first_sep = sep[0]
        assert (segment[row, : first_sep + 1] == 0).all() and (segment[row, first_sep + 1 : lengths[row]] == 1).all()
    weights = records["masked_lm_weights"]
    count = (weights > 0).sum(axis=1)
    assert ((weights > 0) == (np.arange(PREDICTIONS)[None, :] < count[:, None])).all()  # real slots first
    positions = records["masked_lm_positions"]
    real = weights > 0
    assert (np.diff(positions, axis=1)[real[:, 1:]] > 0).all()  # sorted, distinct
    assert (positions[real] > 0).all() and (positions[real] < np.repeat(lengths, count)).all()
    assert (positions[~real] == 0).all() and (records["masked_lm_ids"][~real] == 0).all()
    boundary = records["token_boundary"]
    table = tokenizer.word_start_table()
    assert (boundary[~padding] == table[albert["plain"]["input_ids"][~padding]]).all() and (
        boundary[padding] == 0
    ).all()


def test_framing_is_tensorflows_tfrecord_writer(albert):
    tf = pytest.importorskip("tensorflow")
    for name, data in _shard_bytes(albert["dir"]).items():
        path = os.path.join(scratch_dir("rewritten"), name)
        with tf.io.TFRecordWriter(path) as writer:
            for record in tf.data.TFRecordDataset(os.path.join(albert["dir"], name)):
                writer.write(record.numpy())
        assert open(path, "rb").read() == data


def test_summary_json_agrees_with_the_records(albert):
    summary, records = albert["summary"], albert["records"]
    with open(os.path.join(albert["dir"], "summary.json")) as file:
        written = json.load(file)
    assert written == summary
    assert summary["instances"] == len(records["input_ids"])
    assert summary["tokens"] == records["input_mask"].sum()
    assert summary["masked_tokens"] == records["masked_lm_weights"].sum()
    assert summary["padding_share"] == pytest.approx(1 - records["input_mask"].mean(), abs=1e-12)
    assert summary["documents"] == len(text.read_documents(novel_path()))
    assert summary["label_1_share"] == pytest.approx(records["next_sentence_labels"].mean(), abs=1e-12)
    assert not [n for n in os.listdir(albert["dir"]) if n.endswith(".tmp")]
    assert albert["plain_summary"]["masked_tokens"] == 0


def test_summary_is_read_by_the_data_layers_reader(albert):
    """`read_data_summary` (what training reads) finds the sequence lengths, model type, vocabulary and tokenizer;
    the tokenizer's SHA-256 is that of its spiece.model file."""
    summary = read_data_summary(albert["dir"])
    tokenizer_dir = trained_tokenizer_dir("albert")
    assert (summary.model_type, summary.max_seq_length, summary.max_predictions_per_seq) == ("albert", SEQ, PREDICTIONS)
    assert summary.vocab_size == albert["tokenizer"].vocab_size == albert["summary"]["tokenizer_vocab_size"]
    assert summary.tokenizer == tokenizer_dir
    with open(os.path.join(tokenizer_dir, "spiece.model"), "rb") as file:
        assert summary.tokenizer_sha256 == hashlib.sha256(file.read()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------
# Bad input


def _write(name, content):
    path = os.path.join(scratch_dir("input"), name)
    with open(path, "wb") as file:
        file.write(content)
    return path


def _cli_error(capsys, *arguments):
    out = scratch_dir("never")
    status = cli.main(
        [
            "create-pretraining-data",
            "--tokenizer",
            trained_tokenizer_dir("albert"),
            "--output_dir",
            out,
            "--quiet",
            *arguments,
        ]
    )
    error = capsys.readouterr().err.strip()
    assert status == 2 and len(error.splitlines()) == 1, error
    assert not os.listdir(out), "nothing written, not even temporary files"
    return error


def test_bad_input_one_line_errors(capsys):
    empty = _write("empty.txt", b"\n\n")
    assert empty in _cli_error(capsys, "--input", empty)
    binary = _write("model.bin", bytes(range(256)) * 4)
    error = _cli_error(capsys, "--input", binary)
    assert binary in error and "binary" in error
    tiny = _write("tiny.txt", b"a\n")  # one token: no pair can be made
    assert f"--input: {tiny}: too small to build one sentence pair" in _cli_error(capsys, "--input", tiny)
    assert "--masking" in _cli_error(capsys, "--input", novel_path(), "--masking", "span")
    assert "--max_seq_length" in _cli_error(capsys, "--input", novel_path(), "--max_seq_length", "3")
    assert "--input: no file matches" in _cli_error(capsys, "--input", "/nonexistent/*.txt")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_corpus_too_small_for_a_pair_is_one_line_naming_the_input(capsys, workers):
    """Two documents of one token each: tokens enough to pass the first check, no pair in any document. One line
    naming the file, exit 2, no shard of padding (nothing in --output_dir), with or without worker processes."""
    tokenizer = load_tokenizer(trained_tokenizer_dir("albert"))
    assert [len(tokenizer.encode(word)) for word in ("Anne", "Wentworth")] == [1, 1]  # in the novel's vocabulary
    tiny = _write("two-words.txt", b"Anne\n\nWentworth\n")
    error = _cli_error(capsys, "--input", tiny, "--workers", workers, "--max_seq_length", "512")
    assert error == (
        f"keras-albert create-pretraining-data: error: --input: {tiny}: too small to build one sentence pair "
        "(2 tokens in 2 documents)"
    )


def test_tokenizer_without_mask_is_refused():
    directory = scratch_dir("no-mask")
    WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + list("abcdefghijklmnopqrstuvwxyz")).save(directory)
    with pytest.raises(UserInputError, match=r"--tokenizer: .*no-mask.* has no \[MASK\] token"):
        create_pretraining_data(novel_path(), directory, scratch_dir("never"), progress=False)


def test_output_dir_with_shards_of_another_run_is_refused():
    out = scratch_dir("other-run")
    open(os.path.join(out, "part-00000-of-00004.tfrecord"), "wb").close()
    with pytest.raises(UserInputError, match="--output_dir: .* holds shards of another run"):
        create_pretraining_data(novel_path(), trained_tokenizer_dir("albert"), out, num_shards=2, progress=False)


def test_command_writes_shards_and_prints_summary(capsys):
    out = scratch_dir("cli-ok")
    status = cli.main(
        [
            "create-pretraining-data",
            "--input",
            novel_path(),
            "--tokenizer",
            trained_tokenizer_dir("albert"),
            "--output_dir",
            out,
            "--max_seq_length",
            "64",
            "--max_predictions_per_seq",
            "10",
            "--dupe_factor",
            "1",
            "--num_shards",
            "2",
            "--workers",
            "1",
            "--quiet",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert f"{summary['instances']} instances" in printed
    assert sorted(n for n in os.listdir(out)) == [
        "part-00000-of-00002.tfrecord",
        "part-00001-of-00002.tfrecord",
        "summary.json",
    ]
    assert summary["settings"]["max_seq_length"] == 64 and summary["settings"]["masking"] == "ngram"
