"""Raw text to sharded masked-LM + sentence-order / next-sentence TFRecords (`keras-albert create-pretraining-data`).

Follows Google's `create_pretraining_data.py` of BERT and ALBERT: documents (blank-line separated) are tokenized
once; each copy (`dupe_factor`) walks every document gathering whole sentences into a segment pair that fills
`max_seq_length` (a `short_seq_prob` share aim at a random shorter length); the pair is `[CLS] A [SEP] B [SEP]`.
ALBERT's sentence-order prediction swaps A and B with probability 0.5 (label 1 = swapped, as Google ALBERT's
`is_random_next`); BERT's next-sentence prediction replaces B by text from a random other document with probability
0.5 (label 1 = random). Masking picks `masked_lm_prob` of the tokens (at most `max_predictions_per_seq`) as single
tokens, whole words, or ALBERT's n-grams of whole words (n up to `max_ngram`, probability proportional to 1/n), and
replaces 80% by `[MASK]`, 10% by a random token, keeps 10%.

Deliberate differences from Google's scripts: a chunk holding a single sentence is split inside that sentence for
sentence-order prediction (Google substitutes a random-document segment there, which mixes NSP negatives into SOP
and unbalances its labels); every random draw comes from counter-based streams keyed by (seed, copy, document chunk,
instance), so the output is byte-identical for a seed whatever `--workers` (Google's n-gram sampling calls the
unseeded global NumPy generator); and instead of holding every instance in memory for one global shuffle, the
documents are shuffled, cut into chunks of about INSTANCE_CHUNK_TOKENS tokens, the (copy, chunk) tasks run in a
shuffled order and each task's records are shuffled and dealt round-robin over the shards, so that consecutive records
of a shard come from random places of the corpus while memory stays bounded.

Instances are built by a compiled module (`_instances.c`) when the install compiled it, else by its NumPy twin in
this file; both draw the same numbers and write byte-identical records (tested), the compiled one about 14 times
faster. `--workers` processes share the work (`_Executor`): reading, sentence splitting and tokenizing pieces of the
text, then building the instances of each task.

The records hold Google's feature spec: `input_ids`, `input_mask`, `segment_ids` int64 [max_seq_length];
`masked_lm_positions`, `masked_lm_ids` int64 and `masked_lm_weights` float32 [max_predictions_per_seq];
`next_sentence_labels` int64 [1]; and, for ALBERT as its script writes, `token_boundary` int64 [max_seq_length].

Command line:
    keras-albert create-pretraining-data --tokenizer tok --output_dir data        # embedded corpus, ALBERT defaults
    keras-albert create-pretraining-data --input 'wiki/*.txt.gz' --tokenizer tok --output_dir data \\
        --model_type bert --max_seq_length 128 --max_predictions_per_seq 20 --masking token --num_shards 256
"""

import functools
import gc
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

from keras_albert.data import text, tokenizers
from keras_albert.errors import UserInputError

MASKING_MODES = ("token", "whole_word", "ngram")
SHARD_NAME = "part-{index:05d}-of-{count:05d}.tfrecord"
SHARD_PATTERN = re.compile(r"part-\d{5}-of-(\d{5})\.tfrecord$")
SUMMARY_FILE = "summary.json"
# Work units. Text pieces end at document breaks, so where they are cut does not change the output; instance chunks
# have a fixed size (not derived from the number of workers), which keeps the output independent of `--workers`.
TOKENIZE_PIECE_CHARS = 250_000
SMALLEST_PIECE_CHARS = 25_000
# Room the files in flight between processes may need: a few pieces and task results per worker (~1 MB each).
SPILL_PER_WORKER = 32 << 20
INSTANCE_CHUNK_TOKENS = 50_000
GROUP_ROWS = 256


def _cyclic_gc_paused(function):
    """Run `function` with Python's cyclic garbage collector paused: a run allocates millions of short-lived
    objects (sentences, token lists) and no reference cycles, and the collector's passes over them cost ~3%."""

    @functools.wraps(function)
    def paused(*args, **kwargs):
        enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if enabled:
                gc.enable()

    return paused


@_cyclic_gc_paused
def create_pretraining_data(
    inputs,
    tokenizer,
    output_dir,
    *,
    model_type=None,
    max_seq_length=512,
    max_predictions_per_seq=20,
    masked_lm_prob=0.15,
    masking=None,
    max_ngram=3,
    dupe_factor=10,
    short_seq_prob=0.1,
    num_shards=1,
    workers=None,
    seed=12345,
    no_masking=False,
    document_break_lines=1,
    progress=True,
):
    """Write pretraining TFRecords and return the summary (also written as `summary.json` beside the shards).

    Args:
        inputs: str, list of str or None. Text files or globs (plain or gzip); `None` uses the embedded corpus.
        tokenizer: str or `Tokenizer`. A tokenizer directory or file (`load_tokenizer`), which must have `[MASK]`.
        output_dir: str. Directory for `part-XXXXX-of-YYYYY.tfrecord` shards and `summary.json`.
        model_type: str or None. "albert" (sentence order) or "bert" (next sentence); default: the tokenizer's.
        max_seq_length: int. Tokens per instance, `[CLS]` and `[SEP]`s included.
        max_predictions_per_seq: int. Masked positions per instance at most.
        masked_lm_prob: float. Share of an instance's tokens to mask.
        masking: str or None. "token", "whole_word" or "ngram"; default "ngram" for ALBERT, "token" for BERT.
        max_ngram: int. Longest n-gram (in words) for "ngram" masking.
        dupe_factor: int. Copies of the corpus, each with different pairs and masks.
        short_seq_prob: float. Share of documents whose pairs aim at a random shorter length.
        num_shards: int. Output files.
        workers: int or None. Processes; default all cores. The output does not depend on it.
        seed: int. Random seed.
        no_masking: bool. Write unmasked records (empty masked_lm_* features) for the reader's dynamic masking.
        document_break_lines: int. Blank lines that end a document (see `text.split_documents`).
        progress: bool. Show progress bars.
    """
    start_time = time.perf_counter()
    tokenizer_path = tokenizer if isinstance(tokenizer, (str, os.PathLike)) else None
    tokenizer = tokenizers.load_tokenizer(tokenizer)
    settings = _validate(
        tokenizer=tokenizer,
        tokenizer_path=tokenizer_path,
        model_type=model_type or tokenizer.model_type,
        max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        masked_lm_prob=masked_lm_prob,
        masking=masking or ("ngram" if (model_type or tokenizer.model_type) == "albert" else "token"),
        max_ngram=max_ngram,
        dupe_factor=dupe_factor,
        short_seq_prob=short_seq_prob,
        num_shards=num_shards,
        workers=workers or _available_cores(),
        seed=seed,
        no_masking=no_masking,
        document_break_lines=document_break_lines,
    )
    settings["builder"] = "compiled" if _compiled() is not None else "numpy"
    # Records leave the workers framed as TFRecords (the compiled builder frames them itself); without either the
    # compiled builder or google-crc32c, TensorFlow's writer frames them.
    settings["framed"] = settings["builder"] == "compiled" or _crc32c() is not None
    paths = text.resolve_inputs(inputs)
    shard_paths = _prepare_output_dir(output_dir, num_shards)

    totals = _Totals(max_ngram=settings["max_ngram"])
    writer = spill = None
    try:
        if settings["workers"] > 1:  # the corpus reaches the workers, and their records come back, in files
            spill_root = _spill_root(settings["workers"] * SPILL_PER_WORKER)
            spill = tempfile.mkdtemp(prefix="keras-albert-spill-", dir=spill_root)
        # The worker processes serve both steps, started once.
        with _Executor(settings["workers"], tokenizer=tokenizer, spill=spill) as executor:
            # 1. Read, split into documents and sentences, and tokenize (each sentence once), in pieces of whole
            # documents.
            corpus = _tokenize(paths, executor, settings, progress)
            if corpus.num_tokens < 2:
                raise UserInputError(f"--input: corpus too small for one instance ({corpus.num_tokens} tokens)")

            # 2. Instances, masked and serialized in parallel, one seeded task per (copy, chunk of documents).
            tables = _Tables.from_tokenizer(tokenizer)
            tasks = _plan_tasks(corpus, settings)
            # Without google-crc32c, TensorFlow (for its TFRecord writer) loads only now, after the workers fork.
            writer = _ShardWriter(shard_paths, settings["framed"], executor)
            executor.share(corpus=corpus, tables=tables, settings=settings, shard_files=writer.temporary)
            bar = _progress(progress, "instances", "chunk", total=len(tasks))
            for task, (blob, ends, stats) in zip(tasks, executor.map(_run_task, tasks)):
                totals.add(stats)
                writer.write(blob, ends, offset=task[3])
                bar.update(1)
            executor.wait_for_writes()
            bar.close()
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
    if totals.instances == 0:
        writer.discard()
        raise UserInputError(
            f"--input: corpus too small for one instance ({corpus.num_tokens} tokens in {corpus.num_documents} "
            "documents)"
        )
    writer.commit()

    seconds = time.perf_counter() - start_time
    summary = totals.summary(settings, corpus, seconds)
    summary["files"] = paths
    summary["shards"] = [os.path.basename(path) for path in shard_paths]
    tokenizers._write_atomic(
        os.path.join(output_dir, SUMMARY_FILE), json.dumps(summary, indent=2).encode("utf-8") + b"\n"
    )
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Settings and output directory


def _validate(**settings):
    tokenizer = settings.pop("tokenizer")
    tokenizer_path = settings.pop("tokenizer_path")
    name = tokenizer_path or "tokenizer"
    for role in ("cls", "sep", "mask"):
        if getattr(tokenizer, f"{role}_id") is None:
            raise UserInputError(f"--tokenizer: {name} has no {tokenizer.specials[role]} token")
    checks = [
        ("model_type", settings["model_type"] in tokenizers.MODEL_TYPES, "albert or bert"),
        ("masking", settings["masking"] in MASKING_MODES, "one of " + ", ".join(MASKING_MODES)),
        ("max_seq_length", _is_int(settings["max_seq_length"]) and settings["max_seq_length"] >= 5, "an integer >= 5"),
        (
            "max_predictions_per_seq",
            _is_int(settings["max_predictions_per_seq"]) and settings["max_predictions_per_seq"] >= 1,
            "an integer >= 1",
        ),
        ("masked_lm_prob", 0 < settings["masked_lm_prob"] < 1, "between 0 and 1"),
        ("max_ngram", _is_int(settings["max_ngram"]) and settings["max_ngram"] >= 1, "an integer >= 1"),
        ("dupe_factor", _is_int(settings["dupe_factor"]) and settings["dupe_factor"] >= 1, "an integer >= 1"),
        ("short_seq_prob", 0 <= settings["short_seq_prob"] <= 1, "between 0 and 1"),
        (
            "num_shards",
            _is_int(settings["num_shards"]) and 1 <= settings["num_shards"] <= 99999,
            "an integer from 1 to 99999",
        ),
        ("workers", _is_int(settings["workers"]) and settings["workers"] >= 1, "an integer >= 1"),
        ("seed", _is_int(settings["seed"]), "an integer"),
        (
            "document_break_lines",
            _is_int(settings["document_break_lines"]) and settings["document_break_lines"] >= 1,
            "an integer >= 1",
        ),
    ]
    for flag, ok, expected in checks:
        if not ok:
            raise UserInputError(f"--{flag}: expected {expected}, got {settings[flag]!r}")
    if settings["masking"] != "ngram":
        settings["max_ngram"] = 1
    settings["tokenizer"] = tokenizer_path
    return settings


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _prepare_output_dir(output_dir, num_shards):
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserInputError(f"--output_dir: {output_dir} exists and is not a directory")
    os.makedirs(output_dir, exist_ok=True)
    for name in os.listdir(output_dir):
        match = SHARD_PATTERN.match(name)
        if match and int(match.group(1)) != num_shards:
            raise UserInputError(
                f"--output_dir: {output_dir} holds shards of another run ({name}); use an empty directory"
            )
    return [os.path.join(output_dir, SHARD_NAME.format(index=i, count=num_shards)) for i in range(num_shards)]


def _progress(enabled, description, unit, total=None):
    if not enabled:  # spares the import of tqdm.auto (tens of ms) on a machine whose cores are all at work
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit, unit_scale=True, file=sys.stderr, leave=False)


class _NoProgress:
    def update(self, count):
        pass

    def close(self):
        pass


# ----------------------------------------------------------------------------------------------------------------
# Tokenization


class _Corpus:
    """All documents as one flat token array: sentence `s` is `tokens[sentence_starts[s]:sentence_starts[s + 1]]`,
    document `d` is sentences `document_starts[d]` to `document_starts[d + 1]`."""

    ARRAYS = ("tokens", "sentence_starts", "document_starts")  # the constructor's arguments

    def __init__(self, tokens, sentence_starts, document_starts):
        self.tokens = tokens
        self.sentence_starts = sentence_starts
        self.document_starts = document_starts

    @property
    def sentence_view(self):
        return memoryview(self.sentence_starts)

    @property
    def document_view(self):
        return memoryview(self.document_starts)

    @property
    def num_tokens(self):
        return int(self.tokens.size)

    @property
    def num_documents(self):
        return int(self.document_starts.size - 1)

    @property
    def num_sentences(self):
        return int(self.sentence_starts.size - 1)


def _tokenize(paths, executor, settings, progress):
    breaks = settings["document_break_lines"]
    # A generator: the next file is read and cut only when its pieces are needed, instead of every file being read
    # before any work starts.
    work = ((piece, breaks, number) for number, piece in enumerate(_input_pieces(paths, breaks, settings["workers"])))
    document_sizes, lengths, tokens = [], [], []
    bar = _progress(progress, "tokenizing", "token")
    for result in executor.map(_tokenize_piece, work, ship=_ship_piece):
        sizes, piece_lengths, piece_tokens = result.take_arrays(3) if isinstance(result, _SpillFile) else result
        document_sizes.append(sizes)
        lengths.append(piece_lengths)
        tokens.append(piece_tokens)
        bar.update(len(piece_tokens))
    bar.close()
    document_sizes = np.concatenate(document_sizes) if document_sizes else np.zeros(0, np.int64)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    tokens = np.concatenate(tokens) if tokens else np.zeros(0, np.int32)
    sentence_starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    document_starts = np.concatenate([[0], np.cumsum(document_sizes)]).astype(np.int64)
    return _Corpus(tokens, sentence_starts, document_starts)


def _input_pieces(paths, document_break_lines, workers):
    """Every file's text, cut at document breaks into pieces of about TOKENIZE_PIECE_CHARS characters.

    Pieces end at document breaks, so the documents, and the output, do not depend on where they are cut. With
    several workers, pieces shrink as the end of the input nears (OpenMP's "guided" schedule: a piece is at most
    1/(2 x workers) of what is left, at least SMALLEST_PIECE_CHARS), so that the workers finish together rather than
    all waiting for the one holding the last large piece. What is left in the files not yet read is estimated from
    their sizes on disk, at the characters per byte of the file just read.
    """
    later_bytes = sum(os.path.getsize(path) for path in paths)
    for path in paths:
        content = text.read_text(path)
        later_bytes -= os.path.getsize(path)
        later_chars = later_bytes * len(content) / max(os.path.getsize(path), 1)
        if "\r" in content:
            content = content.replace("\r\n", "\n").replace("\r", "\n")
        breaks = re.compile(r"\n(?:[^\S\n]*\n){%d,}" % document_break_lines)
        start = 0
        while True:
            size = TOKENIZE_PIECE_CHARS
            if workers > 1:
                left = len(content) - start + later_chars
                size = int(max(SMALLEST_PIECE_CHARS, min(size, left / (2 * workers))))
            found = breaks.search(content, start + size) if len(content) - start > size else None
            if found is None:
                yield content[start:]
                break
            yield content[start : found.start()]
            start = found.end()


_TOKENIZER = None


def _ship_piece(work, spill):
    """A piece of text for a worker process: its text in a spill file."""
    piece, document_break_lines, number = work
    path = os.path.join(spill, f"piece-{number}.txt")
    return _SpillFile.save(path, piece.encode("utf-8", "surrogatepass")), document_break_lines, number


def _tokenize_piece(work):
    """Documents of one piece of text -> (sentences per document, tokens per sentence, all tokens), empty
    sentences and documents dropped; in a worker process, the three arrays in a spill file."""
    piece, document_break_lines, number = work
    if isinstance(piece, _SpillFile):
        piece = piece.take().decode("utf-8", "surrogatepass")
    documents = text.split_documents(piece, document_break_lines)
    sentences = [sentence for document in documents for sentence in document]
    ids = _TOKENIZER.encode_batch(sentences)
    compiled = _compiled()
    if compiled is not None:  # a few ms where fromiter over a chain of the lists takes ~20 (whole embedded corpus)
        tokens, lengths = compiled.flatten(ids)
        tokens, lengths = np.frombuffer(tokens, np.int32), np.frombuffer(lengths, np.int64)
    else:
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        tokens = np.fromiter(itertools.chain.from_iterable(ids), np.int32, int(lengths.sum()))
    document_of_sentence = np.repeat(np.arange(len(documents)), [len(document) for document in documents])
    keep = lengths > 0
    sizes = np.bincount(document_of_sentence[keep], minlength=len(documents))
    result = sizes[sizes > 0].astype(np.int64), lengths[keep], tokens
    if _STATE.get("spill"):
        return _SpillFile.save_arrays(os.path.join(_STATE["spill"], f"piece-{number}.npy"), result)
    return result


# ----------------------------------------------------------------------------------------------------------------
# Random numbers: counter-based streams, the same in Python, NumPy and `_instances.c`.
#   draw(key, i) = splitmix64's finalizer of key + (i + 1) * golden ratio (mod 2^64); a stream's key derives from
#   its parent's and a child number. Row r of a task masks with its own stream, so the records do not depend on how
#   rows are grouped or visited, and a compiled loop over rows draws what a NumPy loop over steps draws.

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_REPLACE_COUNTER = 1 << 40  # masked token k's draws: _REPLACE_COUNTER + 2k and + 2k + 1


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _key(parent, child):
    return _mix64((parent + _mix64((child + _GOLDEN) & _MASK64)) & _MASK64)


def _draw(key, counter):
    return _mix64((key + (counter + 1) * _GOLDEN) & _MASK64)


def _below(x, span):
    """A draw to an integer in [0, span), span < 2^32: the high 32 bits, scaled."""
    return ((x >> 32) * span) >> 32


class _Stream:
    """Sequential draws from one stream (`Stream` in `_instances.c`)."""

    def __init__(self, key):
        self.key, self.counter = key, 0

    def next(self):
        self.counter += 1
        return _draw(self.key, self.counter - 1)

    def random(self):
        return (self.next() >> 11) * 2.0**-53

    def randint(self, low, high):
        return low + _below(self.next(), high - low + 1)

    def bits(self, count):
        """Set bits among `count` random bits: Binomial(count, 0.5)."""
        total = 0
        while count > 0:
            x = self.next()
            total += (x & ((1 << count) - 1) if count < 64 else x).bit_count()
            count -= 64
        return total


def _mix64_array(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _keys(parent, children):
    """`_key(parent, child)` for an array of children."""
    with np.errstate(over="ignore"):
        children = np.asarray(children).astype(np.uint64)
        return _mix64_array(np.uint64(parent) + _mix64_array(children + np.uint64(_GOLDEN)))


def _draws(keys, counters):
    """`_draw` element-wise over arrays (or scalars) of keys and counters."""
    with np.errstate(over="ignore"):
        counters = np.asarray(counters).astype(np.uint64)
        return _mix64_array(np.asarray(keys, np.uint64) + (counters + np.uint64(1)) * np.uint64(_GOLDEN))


def _uniform_array(x):
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _below_array(x, span):
    return (((x >> np.uint64(32)) * np.asarray(span).astype(np.uint64)) >> np.uint64(32)).astype(np.int64)


def _ngram_thresholds(max_ngram):
    """Cumulative probabilities of n = 1 .. max_ngram - 1 for p(n) proportional to 1/n."""
    weights = 1.0 / np.arange(1, max_ngram + 1)
    return np.ascontiguousarray((np.cumsum(weights) / weights.sum())[:-1], np.float64)


def _compiled():
    """The compiled instance builder, or None when this install has none (the NumPy builder then runs)."""
    try:
        from keras_albert.data import _instances
    except ImportError:
        return None
    return _instances


# ----------------------------------------------------------------------------------------------------------------
# Worker processes


class _Tables:
    """Per-vocabulary lookups the masking needs, small enough to send to every worker."""

    ARRAYS = ("word_start", "replacement_ids")
    SCALARS = ("pad_id", "cls_id", "sep_id", "mask_id", "vocab_size")

    def __init__(self, word_start, replacement_ids, pad_id, cls_id, sep_id, mask_id, vocab_size):
        self.word_start = word_start
        self.replacement_ids = replacement_ids
        self.pad_id, self.cls_id, self.sep_id, self.mask_id = pad_id, cls_id, sep_id, mask_id
        self.vocab_size = vocab_size

    @classmethod
    def from_tokenizer(cls, tokenizer):
        special = np.zeros(tokenizer.vocab_size, bool)
        special[tokenizer.special_ids] = True
        if tokenizer.model_type == "bert":
            for i in range(tokenizer.vocab_size):
                token = tokenizer.id_to_token(i)
                if token.startswith("[") and token.endswith("]") and len(token) > 2:
                    special[i] = True  # [unused12] and the like are never random replacements
        return cls(
            word_start=tokenizer.word_start_table().copy(),
            replacement_ids=np.flatnonzero(~special).astype(np.int64),
            pad_id=tokenizer.pad_id if tokenizer.pad_id is not None else 0,
            cls_id=tokenizer.cls_id,
            sep_id=tokenizer.sep_id,
            mask_id=tokenizer.mask_id,
            vocab_size=tokenizer.vocab_size,
        )


_STATE = {}


def _init_worker(state, in_pool=True):
    global _TOKENIZER
    if in_pool:  # one core per worker process
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        # Modules the instance tasks need, loaded while the main process still reads and cuts the first input
        # file, rather than in the first instance task.
        _compiled() or _crc32c()
    _STATE.clear()
    _STATE.update(state)
    _TOKENIZER = state.get("tokenizer")


class _Executor:
    """`map` in item order over this process and `workers - 1` worker processes (the results are the same).

    Each worker gets its items through its own pipe, two ahead, so it never waits for work, and answers through
    another; no helper thread in this process is involved (a pool's would need the GIL, which this process's own work
    holds for milliseconds at a time). Large items and results never cross a pipe, whose 64 KiB turns would stall
    both sides: text pieces travel as files in the spill directory (memory-backed /dev/shm where there is one), tokens
    come back the same way, and a worker keeps the records it built until told where in the shards they go, then
    writes them there itself (`write_held`), so no record is copied between processes. This process takes items
    itself when every worker has two, and reads the input and places records in between: with a process per core,
    one that only fed the others would still take CPU from them, and leave a core idle when it waits.
    """

    def __init__(self, workers, tokenizer=None, spill=None):
        self.workers = workers
        self.state = {"tokenizer": tokenizer, "spill": spill}
        self.processes, self.orders, self.inboxes = [], [], []
        self.in_flight = []  # items sent to each worker and not yet answered
        self.writes = 0  # write orders not yet done
        self.directories = []  # made here, removed on exit

    def __enter__(self):
        self.saved = (dict(_STATE), _TOKENIZER)
        _init_worker({**self.state, "spill": None}, in_pool=False)  # this process's results need no files
        if self.workers > 1:
            # Fork is cheap and shares the tokenizer; after TensorFlow is loaded only spawn is safe.
            method = "spawn" if "tensorflow" in sys.modules or sys.platform != "linux" else "fork"
            context = multiprocessing.get_context(method)
            try:
                for rank in range(self.workers - 1):
                    orders_in, orders_out = context.Pipe(duplex=False)
                    inbox, outbox = context.Pipe(duplex=False)
                    process = context.Process(
                        target=_worker_main, args=({**self.state, "rank": rank}, orders_in, outbox), daemon=True
                    )
                    process.start()
                    orders_in.close()
                    outbox.close()
                    self.processes.append(process)
                    self.orders.append(orders_out)
                    self.inboxes.append(inbox)
                    self.in_flight.append(0)
            except BaseException:
                self._stop(terminate=True)
                raise
        return self

    def share(self, corpus, tables, settings, shard_files=()):
        """Make `corpus`, `tables` and `settings` `_STATE` here and in every worker process, and tell the workers the
        shard files they write records into.

        For the workers, written once into the spill directory, where each loads them at its first instance task
        (`_load_shared`): the arrays as .npy files that the workers map (one copy of the corpus in memory, whatever
        the number of workers), the rest as JSON.
        """
        _STATE.update(corpus=corpus, tables=tables, settings=settings)
        if not self.processes:
            return
        spill = corpus_dir = self.state["spill"]
        corpus_bytes = sum(getattr(corpus, name).nbytes for name in _Corpus.ARRAYS)
        if shutil.disk_usage(spill).free < corpus_bytes + len(self.processes) * SPILL_PER_WORKER:
            # A corpus too large for memory-backed /dev/shm goes to disk, where the page cache still shares it.
            corpus_dir = tempfile.mkdtemp(prefix="keras-albert-corpus-", dir=_spill_root(2 * corpus_bytes))
            self.directories.append(corpus_dir)
        for name in _Corpus.ARRAYS:
            np.save(os.path.join(corpus_dir, f"corpus-{name}.npy"), getattr(corpus, name))
        for name in _Tables.ARRAYS:
            np.save(os.path.join(spill, f"tables-{name}.npy"), getattr(tables, name))
        scalars = {name: getattr(tables, name) for name in _Tables.SCALARS}
        state = {"settings": settings, "tables": scalars, "corpus_dir": corpus_dir, "shard_files": list(shard_files)}
        with open(os.path.join(spill, "state.json"), "w", encoding="utf-8") as file:
            json.dump(state, file)

    def map(self, function, items, ship=None):
        """`function(item)` for every item, yielded in item order. `ship(item, spill)` turns an item into what is
        sent to a worker (large data into spill files); `function` is a module-level function."""
        if not self.processes:
            return map(function, items)
        return self._map(function, items, ship)

    def _map(self, function, items, ship):
        done = {}  # index -> result, computed here or received
        count = following = 0
        for count, item in enumerate(items, 1):
            self._receive(done, block=False)
            rank = min(range(len(self.processes)), key=self.in_flight.__getitem__)
            if self.in_flight[rank] < 2:
                shipped = ship(item, self.state["spill"]) if ship else item
                self.orders[rank].send(("run", count - 1, (function, shipped)))
                self.in_flight[rank] += 1
            else:
                done[count - 1] = function(item)
            while following in done:
                yield done.pop(following)
                following += 1
        while following < count:
            if following not in done:
                self._receive(done, block=True)
                continue
            yield done.pop(following)
            following += 1

    def write_held(self, held, placements):
        """Have the worker holding a task's records (`_Held`) write them: (shard, file offset, start, end) each."""
        self.orders[held.rank].send(("write", held.position, placements))
        self.writes += 1

    def wait_for_writes(self):
        while self.writes:
            self._receive({}, block=True)

    def _receive(self, done, block):
        """Messages that workers have sent (waiting for one with `block`); a worker's error is raised here."""
        sentinels = [process.sentinel for process in self.processes]
        for ready in multiprocessing.connection.wait(self.inboxes + sentinels, timeout=None if block else 0):
            if ready in sentinels:
                self._died(self.processes[sentinels.index(ready)])
            rank = self.inboxes.index(ready)
            try:
                while ready.poll():
                    kind, index, result, error = ready.recv()
                    if error is not None:
                        raise error
                    if kind == "run":
                        self.in_flight[rank] -= 1
                        done[index] = result
                    else:
                        self.writes -= 1
            except EOFError:  # the worker's end of the pipe closed: it is gone
                self._died(self.processes[rank])

    @staticmethod
    def _died(process):
        process.join(timeout=10)
        raise RuntimeError(f"a create-pretraining-data worker process died (exit code {process.exitcode})")

    def _stop(self, terminate):
        for orders in self.orders:
            try:
                orders.send(None)
            except OSError:  # the worker is gone
                pass
        for process in self.processes:
            if terminate:
                process.terminate()
            process.join(timeout=10 if terminate else 60)
            if process.is_alive():  # stuck sending a result nobody reads
                process.terminate()
                process.join(timeout=10)
        for connection in self.orders + self.inboxes:
            connection.close()
        self.processes, self.orders, self.inboxes = [], [], []

    def __exit__(self, *exc):
        global _TOKENIZER
        self._stop(terminate=exc[0] is not None)
        for directory in self.directories:
            shutil.rmtree(directory, ignore_errors=True)
        _STATE.clear()
        _STATE.update(self.saved[0])
        _TOKENIZER = self.saved[1]
        return False


_HELD = {}  # in a worker process: task position -> the records it built, until told where they go


class _Held:
    """A task's records kept by worker `rank`, which writes them when told where (`_Executor.write_held`)."""

    def __init__(self, rank, position):
        self.rank, self.position = rank, position


def _worker_main(state, orders, outbox):
    """A worker process: runs items and write orders from `orders` until None, answering each on `outbox`."""
    gc.disable()  # as `_cyclic_gc_paused`
    _init_worker(state)
    files = {}
    try:
        while True:
            message = orders.recv()
            if message is None:
                return
            kind, index, payload = message  # ("run", item index, (function, item)) or ("write", position, placements)
            try:
                if kind == "run":
                    function, item = payload
                    result = function(item)
                else:
                    result = _write_records(_HELD.pop(index), payload, files)
                outbox.send((kind, index, result, None))
            except BaseException as error:  # sent back to the main process, which raises it
                try:
                    outbox.send((kind, index, None, error))
                except Exception:  # an error that does not pickle
                    outbox.send((kind, index, None, RuntimeError(f"{type(error).__name__}: {error}")))
    finally:
        for descriptor in files.values():
            os.close(descriptor)


def _write_records(blob, placements, files):
    """Write slices of `blob` into the shard files: (shard, file offset, start, end) each."""
    view = memoryview(blob)
    paths = _STATE["shared"]["shard_files"]
    for shard, offset, start, end in placements:
        if shard not in files:
            files[shard] = os.open(paths[shard], os.O_WRONLY)
        _pwrite_all(files[shard], view[start:end], offset)


def _pwrite_all(descriptor, data, offset):
    while data:  # a short write (rare on a regular file): the remainder
        written = os.pwrite(descriptor, data, offset)
        data, offset = data[written:], offset + written


class _SpillFile:
    """The name of a file in the spill directory that the receiving process reads once and removes."""

    def __init__(self, path):
        self.path = path

    @classmethod
    def save(cls, path, data):
        with open(path, "wb") as file:
            file.write(data)
        return cls(path)

    def take(self):
        with open(self.path, "rb") as file:
            data = file.read()
        os.unlink(self.path)
        return data

    @classmethod
    def save_arrays(cls, path, arrays):
        with open(path, "wb") as file:
            for array in arrays:
                np.save(file, array)
        return cls(path)

    def take_arrays(self, count):
        with open(self.path, "rb") as file:
            arrays = [np.load(file) for _ in range(count)]
        os.unlink(self.path)
        return arrays


# ----------------------------------------------------------------------------------------------------------------
# Instances


def _plan_tasks(corpus, settings):
    """(copy, chunk index, document ids, position) work units in a seeded order.

    As Google's script shuffles all documents once, the documents are shuffled, then cut into chunks of about
    INSTANCE_CHUNK_TOKENS tokens (the chunks are the same for every copy); the (copy, chunk) tasks are shuffled too,
    so consecutive records come from random places of the corpus. A task's position in this order decides which
    shard each of its records goes to (`_ShardWriter.write`).
    """
    plan_key = _key(_key(settings["seed"] & _MASK64, 1 << 32), 0)
    order = _permutation(corpus.num_documents, _key(plan_key, 0))
    document_tokens = np.diff(corpus.sentence_starts[corpus.document_starts])[order]
    chunk_of = np.cumsum(document_tokens) // INSTANCE_CHUNK_TOKENS
    bounds = np.flatnonzero(np.diff(chunk_of)) + 1
    chunks = np.split(order, bounds)
    tasks = [(copy, index, chunk) for copy in range(settings["dupe_factor"]) for index, chunk in enumerate(chunks)]
    shuffled = _permutation(len(tasks), _key(plan_key, 1)).tolist()
    return [(*tasks[task], position) for position, task in enumerate(shuffled)]


def _permutation(count, key):
    """A random permutation of range(count): the indices sorted by a draw each."""
    return np.argsort(_draws(key, np.arange(count)), kind="stable")


def _run_task(task):
    copy, index, documents, position = task
    if "corpus" not in _STATE:  # a worker process's first instance task
        _load_shared(_STATE["spill"])
    corpus, tables, settings = _STATE["corpus"], _STATE["tables"], _STATE["settings"]
    task_key = _key(_key(settings["seed"] & _MASK64, copy), index)
    keys = {name: _key(task_key, stream) for stream, name in enumerate(("pairs", "masks", "order"))}
    documents = np.ascontiguousarray(documents, np.int64)
    if settings["builder"] == "compiled":
        blob, ends, stats = _compiled().build(
            corpus.tokens,
            corpus.sentence_starts,
            corpus.document_starts,
            tables.word_start,
            tables.replacement_ids,
            documents,
            _ngram_thresholds(settings["max_ngram"]),
            keys["pairs"],
            keys["masks"],
            keys["order"],
            settings["model_type"] == "albert",
            settings["model_type"] == "albert",
            settings["masking"] != "token",
            settings["no_masking"],
            settings["framed"],
            settings["max_seq_length"],
            settings["max_predictions_per_seq"],
            settings["max_ngram"],
            tables.cls_id,
            tables.sep_id,
            tables.mask_id,
            settings["masked_lm_prob"],
            settings["short_seq_prob"],
            settings["num_shards"],
            position,
        )
        ends = np.frombuffer(ends, np.int64)
    else:
        blob, ends, stats = _build_with_numpy(corpus, tables, settings, documents, keys, position)
    # One bytes object and the record ends, not thousands of small objects. A worker process keeps framed records
    # and writes them into the shards itself when told where (`_Executor.write_held`); unframed ones (TensorFlow's
    # writer frames them in the main process) go back in a spill file, whose name travels back.
    if _STATE.get("spill") and settings["framed"]:
        _HELD[position] = blob
        blob = _Held(_STATE["rank"], position)
    elif _STATE.get("spill"):
        blob = _SpillFile.save(os.path.join(_STATE["spill"], f"{copy}-{index}.records"), blob)
    return blob, ends, stats


def _build_with_numpy(corpus, tables, settings, documents, keys, position):
    """The NumPy twin of `_instances.build`: the same pairs, masks, order and bytes."""
    pairs = _PairMaker(corpus, tables, settings, _Stream(keys["pairs"]))
    for document in documents.tolist():
        pairs.document(document)
    # Rows of similar length together, so that matrices are only as wide as their longest row.
    lengths = np.asarray(pairs.a_end) - np.asarray(pairs.a_start) + np.asarray(pairs.b_end) - np.asarray(pairs.b_start)
    by_length = np.argsort(lengths, kind="stable")
    records, stats = [None] * len(by_length), None
    for group in np.array_split(by_length, max(1, -(-len(by_length) // GROUP_ROWS))):
        batch = _Batch(corpus, tables, settings, pairs, group)
        if batch.size and not settings["no_masking"]:
            batch.mask(keys["masks"])
        for row, record in zip(group.tolist(), batch.serialize()):
            records[row] = record
        stats = batch.stats if stats is None else _add_stats(stats, batch.stats)
    shuffled = _shuffled_order(len(records), keys["order"])
    records = [records[shuffled[p]] for p in _shard_major(len(records), settings["num_shards"], position)]
    if settings["framed"]:
        crc = _crc32c()
        records = [_frame(record, crc) for record in records]
    return b"".join(records), np.cumsum([len(record) for record in records], dtype=np.int64), stats


def _shard_positions(shard, count, num_shards, position):
    """The positions p among a task's `count` shuffled records that go to `shard`: (position + p) mod num_shards
    is the shard, for the task at `position` of the plan (`run_task` in `_instances.c` deals the same way)."""
    return range((shard - position) % num_shards, count, num_shards)


def _shard_major(count, num_shards, position):
    """Positions 0..count-1 of a task's shuffled records regrouped by shard: the task's records for shard 0 come
    first, then shard 1's..."""
    return [p for shard in range(num_shards) for p in _shard_positions(shard, count, num_shards, position)]


def _shuffled_order(count, key):
    """Fisher-Yates over range(count), position i drawing counter i of the stream `key`."""
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        j = _below(_draw(key, i), i + 1)
        order[i], order[j] = order[j], order[i]
    return order


def _load_shared(spill):
    """What `_Executor.share` left in `spill`, into this worker's `_STATE`."""
    with open(os.path.join(spill, "state.json"), encoding="utf-8") as file:
        state = json.load(file)
    tables = {name: np.load(os.path.join(spill, f"tables-{name}.npy")) for name in _Tables.ARRAYS}
    _STATE.update(settings=state["settings"], tables=_Tables(**tables, **state["tables"]), shared=state)
    paths = [os.path.join(state["corpus_dir"], f"corpus-{name}.npy") for name in _Corpus.ARRAYS]
    arrays = [np.asarray(np.load(path, mmap_mode="r")) for path in paths]
    _STATE["corpus"] = _Corpus(*arrays)


def _spill_root(needed):
    """Where processes leave files for each other: memory-backed /dev/shm when there is one with `needed` bytes
    free (containers often mount only 64 MB there), else the system's temporary directory."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= needed:
        return shm
    return None


def _add_stats(total, more):
    return {
        key: [x + y for x, y in zip(value, more[key])] if isinstance(value, list) else value + more[key]
        for key, value in total.items()
    }


class _PairMaker:
    """Google's `create_instances_from_document` on sentence index ranges: collects segment pairs and labels.

    `rng` is a `_Stream`; the draws, in order, are those of `document_pairs` in `_instances.c`.
    """

    def __init__(self, corpus, tables, settings, rng):
        self.corpus, self.tables, self.settings, self.rng = corpus, tables, settings, rng
        self.sop = settings["model_type"] == "albert"
        self.max_tokens = settings["max_seq_length"] - 3
        self.a_start, self.a_end, self.b_start, self.b_end, self.labels = [], [], [], [], []

    def document(self, document):
        corpus, rng = self.corpus, self.rng
        starts = corpus.sentence_view  # Python ints, fast to index
        first, last = corpus.document_view[document], corpus.document_view[document + 1]
        target = self.max_tokens
        if rng.random() < self.settings["short_seq_prob"]:
            target = rng.randint(2, self.max_tokens)
        chunk_first, chunk_length = first, 0
        i = first
        while i < last:
            chunk_length += starts[i + 1] - starts[i]
            if i == last - 1 or chunk_length >= target:
                segments = i + 1 - chunk_first
                a_end = chunk_first + (rng.randint(1, segments - 1) if segments >= 2 else 1)
                a = (starts[chunk_first], starts[a_end])
                label = 0
                if self.sop:
                    if segments >= 2:
                        b = (starts[a_end], starts[i + 1])
                    else:
                        a, b = self._split_segment(a)
                    if rng.random() < 0.5:
                        a, b, label = b, a, 1
                elif segments == 1 or rng.random() < 0.5:
                    label = 1
                    b = self._random_segment(document, target - (a[1] - a[0]))
                    i -= i + 1 - a_end  # the unused sentences start the next chunk
                else:
                    b = (starts[a_end], starts[i + 1])
                if a is not None and a[1] > a[0] and b[1] > b[0]:
                    self._add(a, b, label)
                chunk_first, chunk_length = i + 1, 0
            i += 1

    def _split_segment(self, a):
        """Cut a lone sentence at a random word start (uniform over word starts, by rejection sampling)."""
        start, end = a
        if end - start < 2:
            return None, None
        tokens, word_start, randint = self.corpus.tokens, self.tables.word_start, self.rng.randint
        cut = randint(start + 1, end - 1)
        for _ in range(64):
            if word_start[tokens[cut]]:
                break
            cut = randint(start + 1, end - 1)
        return (start, cut), (cut, end)

    def _random_segment(self, document, target_length):
        corpus, rng = self.corpus, self.rng
        starts = corpus.sentence_view
        other = document
        for _ in range(10):
            other = rng.randint(0, corpus.num_documents - 1)
            if other != document:
                break
        first, last = corpus.document_view[other], corpus.document_view[other + 1]
        start = rng.randint(first, last - 1)
        end = start
        while end < last:
            end += 1
            if starts[end] - starts[start] >= target_length:
                break
        return starts[start], starts[end]

    def _add(self, a, b, label):
        """Google's `truncate_seq_pair`, then record the pair.

        Google removes one token at a time from the longer segment (B on ties), from its front or back with
        probability 0.5 each. The same in closed form: the counts removed from A and B follow from the lengths, and
        the share taken from each front is Binomial(removed, 0.5), drawn as the number of set random bits.
        """
        (a0, a1), (b0, b1) = a, b
        length_a, length_b = a1 - a0, b1 - b0
        excess = length_a + length_b - self.max_tokens
        if excess > 0:
            if length_a > length_b:
                from_a = min(excess, length_a - length_b)
                rest = excess - from_a
                from_a, from_b = from_a + rest // 2, (rest + 1) // 2
            else:
                from_b = min(excess, length_b - length_a + 1)
                rest = excess - from_b
                from_a, from_b = (rest + 1) // 2, from_b + rest // 2
            front_a = self.rng.bits(from_a) if from_a else 0
            front_b = self.rng.bits(from_b) if from_b else 0
            a0, a1 = a0 + front_a, a1 - (from_a - front_a)
            b0, b1 = b0 + front_b, b1 - (from_b - front_b)
        self.a_start.append(a0)
        self.a_end.append(a1)
        self.b_start.append(b0)
        self.b_end.append(b1)
        self.labels.append(label)


class _Batch:
    """A task's instances as padded matrices: built, masked and serialized with whole-array NumPy operations."""

    def __init__(self, corpus, tables, settings, pairs, rows):
        self.tables, self.settings = tables, settings
        self.rows = np.asarray(rows, np.int64)  # indices of the pairs (their masking streams)
        a0, a1 = np.asarray(pairs.a_start, np.int64)[rows], np.asarray(pairs.a_end, np.int64)[rows]
        b0, b1 = np.asarray(pairs.b_start, np.int64)[rows], np.asarray(pairs.b_end, np.int64)[rows]
        self.labels = np.asarray(pairs.labels, np.int64)[rows]
        self.size = size = len(self.labels)
        length_a, length_b = a1 - a0, b1 - b0
        self.lengths = lengths = length_a + length_b + 3
        # Matrices as wide as the longest row; serialize() pads to max_seq_length.
        seq = int(lengths.max()) if size else 1
        # [CLS] A [SEP] B [SEP], padded: column c of row r reads corpus token source[r, c] or a special.
        columns = np.arange(seq)[None, :]
        la, lb = length_a[:, None], length_b[:, None]
        self.valid = columns < lengths[:, None]
        in_a = (columns >= 1) & (columns <= la)
        in_b = (columns >= la + 2) & (columns < la + 2 + lb)
        source = np.where(in_a, a0[:, None] + columns - 1, np.where(in_b, b0[:, None] + columns - la - 2, 0))
        tokens = np.where(in_a | in_b, corpus.tokens[source], tables.pad_id).astype(np.int64)
        self.special = self.valid & ~in_a & ~in_b
        tokens[:, 0] = tables.cls_id
        rows = np.arange(size)
        tokens[rows, length_a + 1] = tables.sep_id
        tokens[rows, lengths - 1] = tables.sep_id
        self.tokens = tokens
        self.segments = in_b | (self.valid & (columns == lengths[:, None] - 1))
        self.boundary = (tables.word_start[tokens] & self.valid) | self.special
        self.positions = np.zeros((size, settings["max_predictions_per_seq"]), np.int64)
        self.masked_ids = np.zeros_like(self.positions)
        self.weights = np.zeros(self.positions.shape, np.float32)
        max_ngram = settings["max_ngram"]
        self.stats = {
            "instances": size,
            "tokens": int(lengths.sum()),
            "padding": int(size * settings["max_seq_length"] - lengths.sum()),
            "masked": 0,
            "replaced_mask": 0,
            "replaced_random": 0,
            "kept": 0,
            "label_1": int(self.labels.sum()),
            "ngrams": [0] * max_ngram,
            "ngram_draws": [0] * max_ngram,
        }

    def mask(self, masks_key):
        """ALBERT's `create_masked_lm_predictions`, run in lockstep over all rows (`mask_row` in `_instances.c`).

        Units are tokens ("token") or whole words (a word start, or the first token after [CLS]/[SEP]). Units are
        visited in a random order (an incremental Fisher-Yates shuffle); each draws n (p proportional to 1/n, n no
        more than the units left), shortened until it fits the row's budget
        `min(max_predictions, max(1, round(length * masked_lm_prob)))`, and is skipped when it still does not fit
        or overlaps a chosen n-gram. Chosen tokens: 80% [MASK], 10% random, 10% kept. Row r draws from the stream
        `_key(masks_key, r)`: counters 2s and 2s + 1 at step s, and `_REPLACE_COUNTER + 2k` (+ 1) for its k-th
        masked token.
        """
        settings, tables = self.settings, self.tables
        size = self.size
        max_ngram = settings["max_ngram"]
        candidates = self.valid & ~self.special
        if settings["masking"] == "token":
            unit_start = candidates
        else:
            after_special = np.zeros_like(candidates)
            after_special[:, 1:] = self.special[:, :-1]
            unit_start = candidates & (self.boundary | after_special)
        units = unit_start.sum(axis=1)
        widest = int(units.max()) if size else 0
        budget = np.minimum(
            settings["max_predictions_per_seq"],
            np.maximum(1, np.round(self.lengths * settings["masked_lm_prob"]).astype(np.int64)),
        )
        # first[r, u]: candidate rank of unit u's first token; first[r, units[r]] = candidates in row r.
        rank = np.cumsum(candidates, axis=1) - candidates
        row_of_start, column_of_start = np.nonzero(unit_start)
        unit_of_start = np.arange(len(row_of_start)) - np.repeat(np.cumsum(units) - units, units)
        first = np.zeros((size, widest + max_ngram + 1), np.int64)
        first[:] = candidates.sum(axis=1)[:, None]
        first[row_of_start, unit_of_start] = rank[row_of_start, column_of_start]
        keys = _keys(masks_key, self.rows)
        thresholds = _ngram_thresholds(max_ngram)  # n = 1 + number of thresholds below a uniform draw
        visit = np.tile(np.arange(widest), (size, 1))  # each row's units, shuffled step by step
        covered = np.zeros((size, widest + max_ngram), bool)
        count = np.zeros(size, np.int64)
        ngrams = np.zeros(max_ngram + 1, np.int64)
        draws = np.zeros(max_ngram + 1, np.int64)
        live = np.arange(size)  # rows still below their budget with units left to visit, shrinking
        last_column = first.shape[1] - 1
        for step in range(widest):
            live = live[(step < units[live]) & (count[live] < budget[live])]
            if not live.size:
                break
            row_keys = keys[live]
            picked = step + _below_array(_draws(row_keys, 2 * step), units[live] - step)
            u = visit[live, picked]
            visit[live, picked] = visit[live, step]
            visit[live, step] = u
            # n for this start unit; as in ALBERT, an n-gram running past the last unit keeps the units there are.
            drawn = 1 + (_uniform_array(_draws(row_keys, 2 * step + 1))[:, None] > thresholds).sum(axis=1)
            n = np.minimum(drawn, units[live] - u)
            start = first[live, u]
            room = budget[live] - count[live]
            sizes = np.zeros((max_ngram + 1, live.size), np.int64)
            fits = np.zeros(live.size, np.int64)  # the longest k <= n whose tokens fit the room left
            for k in range(1, max_ngram + 1):
                sizes[k] = first[live, np.minimum(u + k, last_column)] - start
                fits += (k <= n) & (sizes[k] <= room)
            overlap = np.zeros(live.size, bool)
            for k in range(max_ngram):
                overlap |= (k < fits) & covered[live, u + k]
            accept = (fits >= 1) & ~overlap
            for k in range(max_ngram):
                chosen = accept & (k < fits)
                covered[live[chosen], u[chosen] + k] = True
            count[live] += np.where(accept, sizes[fits, np.arange(live.size)], 0)
            ngrams += np.bincount(fits[accept], minlength=max_ngram + 1)
            draws += np.bincount(drawn, minlength=max_ngram + 1)
        self.stats["ngrams"] = ngrams[1:].tolist()
        self.stats["ngram_draws"] = draws[1:].tolist()
        # Tokens of covered units, in position order.
        unit_of_token = np.cumsum(unit_start, axis=1) - 1
        masked = candidates & np.take_along_axis(covered, np.maximum(unit_of_token, 0), axis=1)
        row_of, column_of = np.nonzero(masked)
        per_row = masked.sum(axis=1)
        slot = np.arange(len(row_of)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        labels = self.tokens[row_of, column_of]
        self.positions[row_of, slot] = column_of
        self.masked_ids[row_of, slot] = labels
        self.weights[row_of, slot] = 1.0
        counters = _REPLACE_COUNTER + 2 * slot
        choice = _uniform_array(_draws(keys[row_of], counters))
        to_mask = choice < 0.8
        to_random = ~to_mask & (choice < 0.9)
        replacements = tables.replacement_ids
        random_ids = replacements[_below_array(_draws(keys[row_of], counters + 1), len(replacements))]
        replaced = np.where(to_mask, tables.mask_id, np.where(to_random, random_ids, labels))
        self.tokens[row_of, column_of] = replaced
        self.stats["masked"] = len(row_of)
        self.stats["replaced_mask"] = int(to_mask.sum())
        self.stats["replaced_random"] = int(to_random.sum())
        self.stats["kept"] = int(len(row_of) - to_mask.sum() - to_random.sum())

    def serialize(self):
        """Every row as a serialized tf.train.Example with Google's feature names, dtypes and shapes."""
        if not self.size:
            return []
        seq = self.settings["max_seq_length"]

        def padded(matrix):
            out = np.zeros((self.size, seq), np.uint8)
            out[:, : matrix.shape[1]] = matrix
            return out

        columns = [_varint_entries("input_ids", self.tokens, self.lengths, seq)]
        columns.append(_fixed_entries("input_mask", _INT64, padded(self.valid)))
        columns.append(_fixed_entries("segment_ids", _INT64, padded(self.segments)))
        if self.settings["model_type"] == "albert":
            columns.append(_fixed_entries("token_boundary", _INT64, padded(self.boundary)))
        columns.append(_varint_entries("masked_lm_positions", self.positions))
        columns.append(_varint_entries("masked_lm_ids", self.masked_ids))
        columns.append(_fixed_entries("masked_lm_weights", _FLOAT, self.weights.astype("<f4").view(np.uint8)))
        label_entries = [_entry_prefix("next_sentence_labels", _INT64, 1) + bytes([label]) for label in (0, 1)]
        columns.append([label_entries[label] for label in self.labels.tolist()])
        bodies = list(map(b"".join, zip(*columns)))
        return [b"\x0a" + _varint(len(body)) + body for body in bodies]


# ----------------------------------------------------------------------------------------------------------------
# Serialization: tf.train.Example in protobuf wire format, written by hand so that workers never import TensorFlow.
#   Example{features=1: Features{feature=1: map<string, Feature>}}; map entry {key=1, value=2};
#   Feature{float_list=2: FloatList{value=1 packed float}, int64_list=3: Int64List{value=1 packed varint}}.

_INT64, _FLOAT = b"\x1a", b"\x12"


@functools.lru_cache(maxsize=1 << 16)
def _varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@functools.cache
def _entry_prefix(name, kind, payload_length):
    """The bytes of a Features map entry up to its packed payload of `payload_length` bytes."""
    key = name.encode()
    value_list = b"\x0a" + _varint(payload_length)
    feature = kind + _varint(len(value_list) + payload_length) + value_list
    entry_length = 1 + len(_varint(len(key))) + len(key) + 1 + len(_varint(len(feature) + payload_length))
    entry_length += len(feature) + payload_length
    return (
        b"\x0a"
        + _varint(entry_length)
        + b"\x0a"
        + _varint(len(key))
        + key
        + b"\x12"
        + _varint(len(feature) + payload_length)
        + feature
    )


def _fixed_entries(name, kind, matrix):
    """Map entries for rows of a uint8 matrix that already is the packed payload (0/1 int64 varints, float32s)."""
    matrix = np.ascontiguousarray(matrix)
    width = matrix.shape[1]
    prefix = _entry_prefix(name, kind, width)
    data = matrix.tobytes()
    return [prefix + data[start : start + width] for start in range(0, len(data), width)]


def _varint_entries(name, matrix, lengths=None, width=None):
    """Map entries for rows of a non-negative integer matrix, packed as protobuf varints for all rows at once.

    With `lengths`, row r holds `lengths[r]` values followed by zeros up to `width` (padding, one byte each).
    """
    rows = matrix.shape[0]
    if not rows:
        return []
    largest = int(matrix.max())
    if lengths is None:
        if largest < 0x80:  # one byte per value: the values are the payload
            return _fixed_entries(name, _INT64, matrix.astype(np.uint8))
        lengths = np.full(rows, matrix.shape[1])
        width = matrix.shape[1]
    zeros = bytes(width)
    pads = (width - lengths).tolist()
    values = matrix[np.arange(matrix.shape[1])[None, :] < lengths[:, None]].astype(np.uint64)
    widest = max(1, (largest.bit_length() + 6) // 7)
    sizes = np.ones(values.shape, np.int64)
    for k in range(1, widest):
        sizes += values >= np.uint64(1 << (7 * k))
    ends = np.cumsum(sizes)
    first_byte = ends - sizes
    data = np.empty(int(ends[-1]), np.uint8)
    for k in range(widest):
        has = sizes > k if k else slice(None)
        group = (values[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (sizes[has] > k + 1).astype(np.uint64) << np.uint64(7)
        data[first_byte[has] + k] = (group | more).astype(np.uint8)
    data = data.tobytes()
    row_ends = ends[np.cumsum(lengths) - 1].tolist()
    return [
        _entry_prefix(name, _INT64, end - start + pad) + data[start:end] + zeros[:pad]
        for start, end, pad in zip([0] + row_ends[:-1], row_ends, pads)
    ]


# ----------------------------------------------------------------------------------------------------------------
# Output


def _crc32c():
    """google-crc32c's `value`, or None when it is not installed (TensorFlow then frames the records)."""
    try:
        from google_crc32c import value
    except ImportError:
        return None
    return value


def _masked_crc(data, crc):
    value = crc(data)
    return ((((value >> 15) | (value << 17)) + 0xA282EAD8) & 0xFFFFFFFF).to_bytes(4, "little")


@functools.lru_cache(maxsize=1 << 12)
def _frame_header(length, crc):
    """A record's length (uint64) and its masked CRC-32C: few distinct lengths, so computed once each."""
    data = length.to_bytes(8, "little")
    return data + _masked_crc(data, crc)


def _frame(record, crc):
    """One TFRecord: length (uint64), its masked CRC-32C, the data, the data's masked CRC-32C (little-endian)."""
    return _frame_header(len(record), crc) + record + _masked_crc(record, crc)


class _ShardWriter:
    """Appends each task's records to the shards, written under temporary names and renamed when complete.

    A task's records arrive grouped by shard (`_shard_major`), so each shard gets one slice of the task's bytes, at
    the shard's current end. Framed records (TFRecord format) are placed with positional writes: here when this
    process built them, else by the worker process that holds them (`_Executor.write_held`), so tasks finished in
    any order land where the task order puts them. With `framed=False`, TensorFlow's `TFRecordWriter` frames them
    one by one, here.
    """

    def __init__(self, paths, framed, executor=None):
        self.paths = paths
        self.temporary = [os.path.join(os.path.dirname(p), "." + os.path.basename(p) + ".tmp") for p in paths]
        self.framed = framed
        self.executor = executor
        if framed:
            self.files = [os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) for path in self.temporary]
            self.sizes = [0] * len(paths)
        else:
            self.writers = [_TensorFlowWriter(path) for path in self.temporary]

    def write(self, blob, ends, offset):
        """A task's records, cut at `ends`: `blob` is their bytes, a `_Held` marker for a worker's, or a worker's
        `_SpillFile` holding them; the task is at position `offset` of the plan."""
        shards = len(self.paths)
        per_shard = [len(_shard_positions(shard, len(ends), shards, offset)) for shard in range(shards)]
        last = np.cumsum(per_shard) - 1  # the index of each shard's last record
        if isinstance(blob, _SpillFile):
            blob = blob.take()
        placements, start = [], 0
        for shard, (records, last_record) in enumerate(zip(per_shard, last.tolist())):
            if records:
                end = int(ends[last_record])
                placements.append((shard, start, end, last_record - records + 1, last_record))
                start = end
        if not self.framed:
            view = memoryview(blob)
            for shard, start, end, first, last_record in placements:
                starts = [start, *ends[first:last_record].tolist()]
                records = [view[a:b] for a, b in zip(starts, ends[first : last_record + 1].tolist())]
                self.writers[shard].write_all(records)
            return
        where = []
        for shard, start, end, _, _ in placements:
            where.append((shard, self.sizes[shard], start, end))
            self.sizes[shard] += end - start
        if isinstance(blob, _Held):
            self.executor.write_held(blob, where)
        else:
            view = memoryview(blob)
            for shard, file_offset, start, end in where:
                _pwrite_all(self.files[shard], view[start:end], file_offset)

    def close(self):
        if self.framed:
            for descriptor in self.files:
                os.close(descriptor)
            self.files = []
        else:
            for writer in self.writers:
                writer.close()
            self.writers = []

    def commit(self):
        for temporary, path in zip(self.temporary, self.paths):
            os.replace(temporary, path)

    def abort(self):
        try:
            self.close()
        except Exception:
            pass
        self.discard()

    def discard(self):
        for temporary in self.temporary:
            if os.path.exists(temporary):
                os.unlink(temporary)


class _TensorFlowWriter:
    def __init__(self, path):
        import tensorflow as tf

        self.writer = tf.io.TFRecordWriter(path)

    def write_all(self, records):
        for record in records:
            self.writer.write(bytes(record))

    def close(self):
        self.writer.close()


class _Totals:
    def __init__(self, max_ngram):
        self.counts = {
            "instances": 0,
            "tokens": 0,
            "padding": 0,
            "masked": 0,
            "replaced_mask": 0,
            "replaced_random": 0,
            "kept": 0,
            "label_1": 0,
        }
        self.ngrams = [0] * max_ngram
        self.ngram_draws = [0] * max_ngram

    @property
    def instances(self):
        return self.counts["instances"]

    def add(self, stats):
        for key in self.counts:
            self.counts[key] += stats[key]
        self.ngrams = [x + y for x, y in zip(self.ngrams, stats["ngrams"])]
        self.ngram_draws = [x + y for x, y in zip(self.ngram_draws, stats["ngram_draws"])]

    def summary(self, settings, corpus, seconds):
        c = self.counts
        masked = max(c["masked"], 1)
        slots = max(c["instances"] * settings["max_seq_length"], 1)
        return {
            "documents": corpus.num_documents,
            "sentences": corpus.num_sentences,
            "corpus_tokens": corpus.num_tokens,
            "instances": c["instances"],
            "tokens": c["tokens"],
            "masked_tokens": c["masked"],
            "masked_share": c["masked"] / max(c["tokens"], 1),
            "padding_share": c["padding"] / slots,
            "replaced_by_mask_share": c["replaced_mask"] / masked,
            "replaced_by_random_share": c["replaced_random"] / masked,
            "kept_share": c["kept"] / masked,
            "label_1_share": c["label_1"] / max(c["instances"], 1),
            # Masked n-grams by length in words (tokens for --masking token) after shortening to fit the budget,
            # and the lengths drawn (p proportional to 1/n) before it.
            "ngram_counts": {str(n + 1): count for n, count in enumerate(self.ngrams)} if c["masked"] else {},
            "ngram_drawn_counts": {str(n + 1): count for n, count in enumerate(self.ngram_draws)}
            if c["masked"]
            else {},
            "seconds": round(seconds, 3),
            "corpus_tokens_per_second": round(corpus.num_tokens / max(seconds, 1e-9), 1),
            "settings": settings,
        }


# ----------------------------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser):
    parser.add_argument(
        "--input",
        nargs="*",
        default=None,
        help="Text files, directories or globs (plain or gzip; comma-separated allowed); documents are "
        "separated by blank lines. Default: the embedded Jane Austen corpus.",
    )
    parser.add_argument(
        "--tokenizer",
        required=True,
        help="Tokenizer directory from train-tokenizer, or a bare spiece.model / vocab.txt.",
    )
    parser.add_argument("--output_dir", required=True, help="Directory for the TFRecord shards and summary.json.")
    parser.add_argument(
        "--model_type",
        choices=tokenizers.MODEL_TYPES,
        default=None,
        help="albert: sentence-order labels; bert: next-sentence labels. Default: the tokenizer's.",
    )
    parser.add_argument("--max_seq_length", type=int, default=512, help="Tokens per instance. Default: %(default)s.")
    parser.add_argument(
        "--max_predictions_per_seq",
        type=int,
        default=20,
        help="Masked positions per instance at most. Default: %(default)s.",
    )
    parser.add_argument(
        "--masked_lm_prob", type=float, default=0.15, help="Share of tokens masked. Default: %(default)s."
    )
    parser.add_argument(
        "--masking",
        default=None,
        help="token, whole_word or ngram (ALBERT's n-grams of whole words). Default: ngram for albert, token for bert.",
    )
    parser.add_argument("--max_ngram", type=int, default=3, help="Longest n-gram for --masking ngram.")
    parser.add_argument(
        "--dupe_factor",
        type=int,
        default=10,
        help="Copies of the corpus with different pairs and masks. Default: %(default)s.",
    )
    parser.add_argument(
        "--short_seq_prob",
        type=float,
        default=0.1,
        help="Share of documents aiming at a shorter pair. Default: %(default)s.",
    )
    parser.add_argument("--num_shards", type=int, default=1, help="Output TFRecord files. Default: %(default)s.")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Processes, this one included (default: all cores); the output does not depend on it.",
    )
    parser.add_argument("--seed", type=int, default=12345, help="Random seed. Default: %(default)s.")
    parser.add_argument(
        "--no_masking",
        action="store_true",
        help="Write unmasked records for pretraining_dataset(..., dynamic_masking=True).",
    )
    parser.add_argument(
        "--document_break_lines",
        type=int,
        default=1,
        help="Blank lines that end a document (2 makes each chapter of the embedded corpus a document).",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bars.")


def run(args):
    if args.masking is not None and args.masking not in MASKING_MODES:
        raise UserInputError(f"--masking: expected one of {', '.join(MASKING_MODES)}, got {args.masking!r}")
    summary = create_pretraining_data(
        args.input,
        args.tokenizer,
        args.output_dir,
        model_type=args.model_type,
        max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        masked_lm_prob=args.masked_lm_prob,
        masking=args.masking,
        max_ngram=args.max_ngram,
        dupe_factor=args.dupe_factor,
        short_seq_prob=args.short_seq_prob,
        num_shards=args.num_shards,
        workers=args.workers,
        seed=args.seed,
        no_masking=args.no_masking,
        document_break_lines=args.document_break_lines,
        progress=not args.quiet,
    )
    print(
        f"{summary['documents']} documents, {summary['corpus_tokens']} tokens -> {summary['instances']} instances "
        f"({summary['tokens']} tokens, {summary['masked_tokens']} masked = {summary['masked_share']:.1%}, padding "
        f"{summary['padding_share']:.1%}) in {len(summary['shards'])} shards under {args.output_dir} "
        f"({summary['seconds']:.1f} s, {summary['corpus_tokens_per_second']:.0f} corpus tokens/s)"
    )
    return 0
