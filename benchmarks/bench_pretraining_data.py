"""Pretraining-data throughput on the embedded corpus (issue 4, acceptance 4 and 5).

    python benchmarks/bench_pretraining_data.py                      # everything, a few minutes on 2 CPU cores
    python benchmarks/bench_pretraining_data.py --skip_model         # data figures only
    python benchmarks/bench_pretraining_data.py --json figures.json  # also write the figures

Prints, in one run on one machine:
1. the raw tokenizer: SentencePiece (an ALBERT tokenizer trained here on the corpus) encoding every sentence of the
   six novels in one process, tokens/s (best of `--repeats`); also with reading and sentence splitting included; and
   the same encode run in 2 processes at once (their combined tokens/s over one process's: what this machine's
   cores give to two independent tokenizers, the ceiling for the pipeline's speed-up with 2 workers);
2. create-pretraining-data on the whole embedded corpus (dupe_factor 1, ALBERT n-gram masking, 20 predictions) for
   each `--seq_lengths` and `--workers`: corpus tokens/s from start to the renamed shards (best of `--repeats`),
   its share of the raw tokenizer's speed, and the speed-up over one worker; the same with the default dupe_factor
   10, and on the corpus four times over (where fixed costs weigh less); then the instance step alone (pairs,
   masking, serialization of the tokenized corpus, one process) with the compiled builder and its NumPy twin;
3. the reader feeding `albert_base` shapes (`--reader_seq`, 20 predictions, batch `--batch_size`): examples/s with
   the records' masks and with dynamic n-gram masking, against one `albert_base` training step
   (`PretrainingModel.from_preset("albert_base")`, LAMB, gradient_accumulation_steps=1, `train_on_batch`) on the
   same batch size: the reader must deliver at least 10x what the step consumes.

The create-pretraining-data runs go first, before TensorFlow is imported, so their workers are forked as in a
fresh `keras-albert` process; timings on a shared machine vary from run to run, hence best-of-N.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def best_of(repeats, function, cpu=False):
    """Best wall time of `repeats` calls (and, with cpu=True, the CPU seconds of this process and its finished
    children during that call)."""
    best = None
    result = None
    for _ in range(repeats):
        before = os.times()
        start = time.perf_counter()
        result = function()
        wall = time.perf_counter() - start
        after = os.times()
        used = sum(after[i] - before[i] for i in range(4))  # user, system, children's user, children's system
        if best is None or wall < best[0]:
            best = (wall, used)
    return (best if cpu else best[0]), result


def _encode_all(tokenizer, sentences, repeats, start_at):
    """Best wall time of `repeats` encodes of every sentence, starting together with a sibling process."""
    while time.time() < start_at:
        time.sleep(0.001)
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        tokenizer.encode_batch(sentences)
        best = min(best or 1e9, time.perf_counter() - start)
    return best


def raw_in_two_processes(tokenizer, sentences, repeats):
    """Corpus passes per second of two processes encoding the whole corpus at the same time (forked, so that
    nothing is pickled)."""
    import multiprocessing

    start_at = time.time() + 0.2
    with multiprocessing.get_context("fork").Pool(2) as pool:
        seconds = pool.starmap(_encode_all, [(tokenizer, sentences, repeats, start_at)] * 2)
    return sum(1 / s for s in seconds)


def instance_step(tokenizer_dir, repeats, figures):
    """Instances of the tokenized corpus (seq 128, dupe_factor 1) in this process, compiled builder vs NumPy."""
    import dataclasses

    from keras_albert.data import text, tokenizers
    from keras_albert.data.pretraining import api, plan, pool
    from keras_albert.data.pretraining.instances import BuildJob, Tables, build_instances, compiled_module
    from keras_albert.data.pretraining.settings import PretrainingDataSettings

    tokenizer = tokenizers.load_tokenizer(tokenizer_dir)
    settings = PretrainingDataSettings(
        model_type="albert", max_seq_length=128, max_predictions_per_seq=20, masked_lm_prob=0.15, masking="ngram",
        max_ngram=3, dupe_factor=1, short_seq_prob=0.1, num_shards=4, workers=1, seed=12345,
    )
    with pool.WorkerPool(1, tokenizer=tokenizer) as workers:
        corpus = api.read_corpus(text.corpus_files(), workers, settings, progress=False)
    tables = Tables.from_tokenizer(tokenizer)
    tasks = plan.plan_tasks(corpus, settings)
    print("   instance step alone (seq 128, one process):")
    for builder in ("compiled", "numpy"):
        if builder == "compiled" and compiled_module() is None:
            print("     compiled builder: not built by this install")
            continue
        run = dataclasses.replace(settings, builder=builder)
        seconds, _ = best_of(
            repeats, lambda: [build_instances(BuildJob.for_task(corpus, tables, run, task)) for task in tasks]
        )
        figures[f"instance_step_{builder}_tokens_per_s"] = corpus.num_tokens / seconds
        print(f"     {builder:8s} builder: {seconds * 1000:7.1f} ms = {corpus.num_tokens / seconds:12,.0f} tokens/s")


def pipeline_rows(create_pretraining_data, tokenizer_dir, inputs, args, raw, dupe_factor):
    """create-pretraining-data for each --seq_lengths and --workers: one printed row and one dict each."""
    rows = []
    for seq in [int(s) for s in args.seq_lengths.split(",")]:
        baseline = baseline_cpu = None
        for workers in [int(w) for w in args.workers.split(",")]:
            out = os.path.join(tempfile.gettempdir(), f"bench-pretraining-data-{os.getpid()}-{seq}-{workers}")

            def create(out=out, seq=seq, workers=workers):
                shutil.rmtree(out, ignore_errors=True)
                return create_pretraining_data(
                    inputs,
                    tokenizer_dir,
                    out,
                    max_seq_length=seq,
                    max_predictions_per_seq=20,
                    dupe_factor=dupe_factor,
                    workers=workers,
                    num_shards=4,
                    progress=False,
                )

            try:
                (seconds, cpu_seconds), summary = best_of(args.repeats, create, cpu=True)
            finally:
                shutil.rmtree(out, ignore_errors=True)
            speed = summary["corpus_tokens"] / seconds
            baseline = baseline or speed
            baseline_cpu = baseline_cpu or cpu_seconds
            # CPU efficiency: the CPU time one worker needs over the CPU time all workers spend. With a free
            # core per worker the wall-time speed-up is workers x efficiency; on a busy machine it is less.
            row = {
                "max_seq_length": seq,
                "workers": workers,
                "dupe_factor": dupe_factor,
                "corpus_tokens": summary["corpus_tokens"],
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "corpus_tokens_per_s": speed,
                "share_of_raw_tokenizer": speed / raw,
                "speed_up": speed / baseline,
                "cpu_efficiency": baseline_cpu / cpu_seconds,
                "instances": summary["instances"],
                "padding_share": summary["padding_share"],
            }
            rows.append(row)
            print(
                f"   {seq:3d}  {workers:7d}  {seconds:7.2f}  {cpu_seconds:5.2f}  {speed:16,.0f}  "
                f"{speed / raw:11.0%}  {speed / baseline:7.2f}x  {baseline_cpu / cpu_seconds:13.0%}  "
                f"{summary['instances']:9d}  {summary['padding_share']:6.1%}"
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab_size", type=int, default=8000)
    parser.add_argument("--seq_lengths", default="128,512")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reader_seq", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--reader_batches", type=int, default=100)
    parser.add_argument("--model_steps", type=int, default=3)
    parser.add_argument("--skip_model", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from keras_albert.data import create_pretraining_data, text, tokenizers

    figures = {"cpu_cores": len(os.sched_getaffinity(0)), "load_average_at_start": os.getloadavg()}
    work = tempfile.mkdtemp(prefix="bench-pretraining-data-")
    try:
        tokenizer_dir = os.path.join(work, "tokenizer")
        seconds, tokenizer = best_of(
            1, lambda: tokenizers.train_tokenizer(None, tokenizer_dir, "albert", args.vocab_size)
        )
        print(
            f"trained ALBERT SentencePiece, vocabulary {tokenizer.vocab_size}, on the embedded corpus in "
            f"{seconds:.1f} s"
        )

        # 1. The raw tokenizer.
        paths = text.corpus_files()
        sentences = [s for path in paths for document in text.read_documents(path) for s in document]
        seconds, ids = best_of(args.repeats, lambda: tokenizer.encode_batch(sentences))
        corpus_tokens = sum(map(len, ids))
        raw = corpus_tokens / seconds

        def read_and_tokenize():
            found = [s for path in paths for document in text.read_documents(path) for s in document]
            return tokenizer.encode_batch(found)

        seconds_with_text, _ = best_of(args.repeats, read_and_tokenize)
        two = raw_in_two_processes(tokenizer, sentences, args.repeats) * corpus_tokens
        figures["raw_tokenizer_tokens_per_s"] = raw
        figures["read_split_tokenize_tokens_per_s"] = corpus_tokens / seconds_with_text
        figures["raw_tokenizer_two_processes_tokens_per_s"] = two
        print(f"\n1. raw tokenizer: {len(sentences)} sentences, {corpus_tokens} tokens")
        print(f"   SentencePiece encode (one process):           {raw:12,.0f} tokens/s")
        print(f"   read + split sentences + encode:              {corpus_tokens / seconds_with_text:12,.0f} tokens/s")
        print(f"   encode in 2 processes at once (combined):     {two:12,.0f} tokens/s = {two / raw:.2f}x one process")

        # 2. create-pretraining-data.
        print("\n2. create-pretraining-data, whole embedded corpus, dupe_factor 1, n-gram masking, 20 predictions")
        print(
            "   seq  workers  seconds  CPU s   corpus tokens/s  share of raw  speed-up  CPU efficiency  instances"
            "  padding"
        )
        figures["pipeline"] = pipeline_rows(create_pretraining_data, tokenizer_dir, None, args, raw, dupe_factor=1)
        print("   the same, default --dupe_factor 10:")
        figures["pipeline_dupe_factor_10"] = pipeline_rows(create_pretraining_data, tokenizer_dir, None, args, raw, dupe_factor=10)
        # Fixed costs (loading the tokenizer, starting processes, the step between tokenizing and building
        # instances) weigh less on a larger input.
        larger = os.path.join(work, "corpus-x4")
        os.makedirs(larger)
        for copy in range(4):
            for path in paths:
                shutil.copy(path, os.path.join(larger, f"{copy}-{os.path.basename(path)}"))
        print("   the corpus 4 times over (24 gzip files), dupe_factor 1:")
        figures["pipeline_corpus_x4"] = pipeline_rows(create_pretraining_data, tokenizer_dir, larger, args, raw, dupe_factor=1)

        instance_step(tokenizer_dir, args.repeats, figures)

        # 3. The reader against one albert_base step.
        import numpy as np

        from keras_albert.data import pretraining_dataset

        seq, batch = args.reader_seq, args.batch_size
        masked_dir = os.path.join(work, f"reader-{seq}")
        plain_dir = os.path.join(work, f"reader-{seq}-plain")
        for directory, no_masking in ((masked_dir, False), (plain_dir, True)):
            create_pretraining_data(
                None,
                tokenizer_dir,
                directory,
                max_seq_length=seq,
                max_predictions_per_seq=20,
                dupe_factor=1,
                num_shards=8,
                no_masking=no_masking,
                progress=False,
            )
        print(f"\n3. reader, max_seq_length {seq}, 20 predictions, batch {batch} (8 shards, shuffled, repeated)")

        def reader_rate(dataset):
            iterator = iter(dataset)
            for _ in range(5):
                next(iterator)
            start = time.perf_counter()
            for _ in range(args.reader_batches):
                next(iterator)
            return args.reader_batches * batch / (time.perf_counter() - start)

        static = reader_rate(pretraining_dataset(masked_dir, batch, seq, 20, seed=0))
        dynamic = reader_rate(
            pretraining_dataset(
                plain_dir, batch, seq, 20, seed=0, dynamic_masking=True, tokenizer=tokenizer, masking="ngram"
            )
        )
        figures["reader_examples_per_s"] = static
        figures["reader_dynamic_ngram_examples_per_s"] = dynamic
        print(f"   records' masks:          {static:10,.0f} examples/s")
        print(f"   dynamic n-gram masking:  {dynamic:10,.0f} examples/s")

        if args.skip_model:
            print("   (albert_base step skipped: --skip_model)")
        else:
            try:
                import keras

                from keras_albert import PretrainingModel
                from keras_albert.optimizers import LAMB
            except ImportError as error:
                print(f"   albert_base step skipped: keras_albert.PretrainingModel is not usable ({error})")
            else:
                keras.utils.set_random_seed(0)
                model = PretrainingModel.from_preset("albert_base", max_sequence_length=max(seq, 512))
                model.compile(optimizer=LAMB(1e-4, weight_decay=0.01), gradient_accumulation_steps=1)
                data = next(iter(pretraining_dataset(masked_dir, batch, seq, 20, seed=0)))
                data = {name: value.numpy() for name, value in data.items()}
                model.train_on_batch(data, return_dict=True)  # trace and build
                times = []
                for _ in range(args.model_steps):
                    start = time.perf_counter()
                    logs = model.train_on_batch(data, return_dict=True)
                    times.append(time.perf_counter() - start)
                step = float(np.median(times))
                consumed = batch / step
                figures["albert_base_step_seconds"] = step
                figures["albert_base_examples_per_s"] = consumed
                figures["reader_over_step"] = static / consumed
                figures["reader_dynamic_over_step"] = dynamic / consumed
                print(
                    f"   albert_base train step (batch {batch}): {step:.2f} s = {consumed:,.1f} examples/s "
                    f"(loss {float(logs['loss']):.2f})"
                )
                print(
                    f"   reader / step: {static / consumed:,.0f}x with the records' masks, "
                    f"{dynamic / consumed:,.0f}x with dynamic masking (goal >= 10x)"
                )
        figures["load_average_at_end"] = os.getloadavg()
        print(
            f"\nload average at start {figures['load_average_at_start'][0]:.1f}, at end "
            f"{figures['load_average_at_end'][0]:.1f}, on {figures['cpu_cores']} cores"
        )
        if args.json:
            with open(args.json, "w") as file:
                json.dump(figures, file, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
