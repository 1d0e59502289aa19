"""Raw text to sharded masked-LM + sentence-order / next-sentence TFRecords: `create_pretraining_data`.

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
instance) (`streams`), so the output is byte-identical for a seed whatever `workers` (Google's n-gram sampling
calls the unseeded global NumPy generator); and the corpus is shuffled in chunks rather than held in memory for one
global shuffle (`plan`).

The steps, each in its module: read and tokenize the text (`corpus`), plan the tasks (`plan`), build each task's
records (`instances`: the compiled builder, or its NumPy twin), write them into the shards (`writer`), with
`workers` processes sharing the work (`pool`).

The records hold Google's feature spec: `input_ids`, `input_mask`, `segment_ids` int64 [max_seq_length];
`masked_lm_positions`, `masked_lm_ids` int64 and `masked_lm_weights` float32 [max_predictions_per_seq];
`next_sentence_labels` int64 [1]; and, for ALBERT as its script writes, `token_boundary` int64 [max_seq_length].
"""

import functools
import gc
import hashlib
import os
import shutil
import sys
import time

from keras_albert import io, signals
from keras_albert.data import text, tfds_input, tokenizers
from keras_albert.data.pretraining import instances, plan, pool, writer
from keras_albert.data.pretraining.corpus import Corpus, input_pieces, tokenize_piece
from keras_albert.data.pretraining.settings import PretrainingDataSettings
from keras_albert.data.summary import SUMMARY_FILE
from keras_albert.errors import UserInputError


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
    builder=None,
    progress=True,
    tfds_text_field="text",
    tfds_data_dir=None,
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
        builder: str or None. "compiled" or "numpy"; default the compiled one when installed. Same output.
        progress: bool. Show progress bars.
        tfds_text_field: str. For `tfds:NAME[/CONFIG][:SPLIT]` inputs (TensorFlow Datasets splits, read from
            `tfds_data_dir`, else TFDS's default directory): the feature holding each example's text, one document.

    Example:
    ```python
    from keras_albert.data import create_pretraining_data
    summary = create_pretraining_data(None, "tok", "data", max_seq_length=128, dupe_factor=1)
    summary["instances"], summary["masked_share"]
    ```
    """
    start_time = time.perf_counter()
    tokenizer_path = os.fspath(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else None
    tokenizer = tokenizers.load_tokenizer(tokenizer)
    for role in ("cls", "sep", "mask"):
        if getattr(tokenizer, f"{role}_id") is None:
            name = tokenizer_path or "tokenizer"
            raise UserInputError(f"--tokenizer: {name} has no {tokenizer.specials[role]} token")
    settings = PretrainingDataSettings(
        model_type=model_type or tokenizer.model_type,
        max_seq_length=max_seq_length,
        max_predictions_per_seq=max_predictions_per_seq,
        masked_lm_prob=masked_lm_prob,
        masking=masking,
        max_ngram=max_ngram,
        dupe_factor=dupe_factor,
        short_seq_prob=short_seq_prob,
        num_shards=num_shards,
        workers=workers,
        seed=seed,
        no_masking=no_masking,
        document_break_lines=document_break_lines,
        builder=builder,
    )
    paths = text.resolve_inputs(inputs)
    for path in paths:  # fail before any work on a TFDS input that cannot be read
        if text.is_tfds(path):
            tfds_input.check_text_input(path, tfds_text_field, tfds_data_dir)
    shard_paths = writer.prepare_output_dir(output_dir, settings.num_shards)

    totals = Totals(max_ngram=settings.max_ngram)
    shards = spill = None
    try:
        if settings.workers > 1:  # the corpus reaches the workers, and their records come back, in files
            spill = pool.make_spill_dir(pool.spill_root(settings.workers * pool.SPILL_PER_WORKER))
        # The worker processes serve both steps, started once.
        with pool.WorkerPool(settings.workers, tokenizer=tokenizer, spill=spill) as workers_pool:
            corpus = read_corpus(paths, workers_pool, settings, progress, tfds_text_field, tfds_data_dir)
            if corpus.num_tokens < 2:
                raise _too_small(paths, corpus)
            tasks = plan.plan_tasks(corpus, settings)
            shards = writer.ShardWriter(shard_paths)
            tables = instances.Tables.from_tokenizer(tokenizer)
            workers_pool.share(pool.SharedInputs(corpus, tables, settings, shards.temporary))
            bar = _progress(progress, "instances", "chunk", total=len(tasks))
            for task, (blob, ends, stats) in zip(tasks, workers_pool.map(build_task, tasks)):
                totals.add(stats)
                placements = shards.placements(ends, task.position)
                if isinstance(blob, pool.Held):
                    workers_pool.write_held(blob, placements)
                else:
                    shards.write(blob, placements)
                bar.update(1)
            workers_pool.wait_for_writes()
            bar.close()
        shards.close()
        signals.check()  # nothing is committed after a terminating signal, even one whose exception was swallowed
    except BaseException:
        if shards is not None:
            shards.abort()
        raise
    finally:
        if spill is not None:
            shutil.rmtree(spill, ignore_errors=True)
    if totals.instances == 0:
        shards.discard()
        raise _too_small(paths, corpus)
    shards.commit()

    summary = totals.summary(settings, corpus, time.perf_counter() - start_time)
    summary["settings"] = settings.as_dict(tokenizer=tokenizer_path)
    summary["files"] = paths
    if any(map(text.is_tfds, paths)):
        summary["tfds"] = {"text_field": tfds_text_field, "data_dir": tfds_data_dir}
    summary["shards"] = [os.path.basename(path) for path in shard_paths]
    # What training checks its tokenizer against. `vocab_size` is the name `data.summary.read_data_summary` reads.
    summary["vocab_size"] = summary["tokenizer_vocab_size"] = tokenizer.vocab_size
    summary["tokenizer_sha256"] = tokenizer_sha256(tokenizer)
    io.write_json(os.path.join(output_dir, SUMMARY_FILE), summary)
    return summary


def _too_small(paths, corpus):
    """The error for a corpus from which no sentence pair can be made (no document has two tokens to pair)."""
    named = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return UserInputError(
        f"--input: {named}: too small to build one sentence pair ({corpus.num_tokens} tokens in "
        f"{corpus.num_documents} documents)"
    )


def read_corpus(paths, workers_pool, settings, progress, tfds_text_field="text", tfds_data_dir=None):
    """The `Corpus` of `paths`: read, split into documents and sentences, and tokenized (each sentence once) in
    pieces of whole documents, by the pool's processes."""
    breaks = settings.document_break_lines
    pieces = input_pieces(paths, breaks, settings.workers, tfds_text_field, tfds_data_dir)
    work = ((piece, breaks, number) for number, piece in enumerate(pieces))
    results = []
    bar = _progress(progress, "tokenizing", "token")
    for result in workers_pool.map(tokenize_task, work, ship=ship_piece):
        result = result.take_arrays(3) if isinstance(result, pool.SpillFile) else result
        results.append(result)
        bar.update(len(result[2]))
    bar.close()
    return Corpus.join(results)


def ship_piece(work, spill):
    """A piece of text for a worker process: its text in a spill file."""
    piece, document_break_lines, number = work
    path = os.path.join(spill, f"piece-{number}.txt")
    return pool.SpillFile.save(path, piece.encode("utf-8", "surrogatepass")), document_break_lines, number


def tokenize_task(state, work):
    """`tokenize_piece` in the pool: a worker's piece arrives, and its arrays go back, in a spill file."""
    piece, document_break_lines, number = work
    if isinstance(piece, pool.SpillFile):
        piece = piece.take().decode("utf-8", "surrogatepass")
    arrays = tokenize_piece(state.tokenizer, piece, document_break_lines)
    if state.in_worker:
        return pool.SpillFile.save_arrays(os.path.join(state.spill, f"piece-{number}.npy"), arrays)
    return arrays


def build_task(state, task):
    """One task's records in the pool: (records, end offsets, counts). A worker keeps its records and sends back a
    `Held` marker; it writes them into the shards when told where (`WorkerPool.write_held`)."""
    inputs = state.inputs()
    job = instances.BuildJob.for_task(inputs.corpus, inputs.tables, inputs.settings, task)
    blob, ends, stats = instances.build_instances(job)
    if state.in_worker:
        blob = state.hold(task.position, blob)
    return blob, ends, stats


def tokenizer_sha256(tokenizer):
    """SHA-256 of the tokenizer's model file as `Tokenizer.save` writes it (`spiece.model` / `vocab.txt`)."""
    return hashlib.sha256(tokenizer.model_file_bytes()).hexdigest()


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


class Totals:
    """The counts of every task, and the summary they make."""

    def __init__(self, max_ngram):
        self.counts = dict.fromkeys(
            ("instances", "tokens", "padding", "masked", "replaced_mask", "replaced_random", "kept", "label_1"), 0
        )
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
        slots = max(c["instances"] * settings.max_seq_length, 1)
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
        }
