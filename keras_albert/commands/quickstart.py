"""`keras-albert quickstart`: the whole pipeline on the embedded Jane Austen corpus, on one CPU, in minutes.

It runs the same subcommands a user runs, in order, each writing under `--output_dir`:

    tokenizer/   keras-albert train-tokenizer          (SentencePiece for ALBERT, WordPiece for BERT)
    data/        keras-albert create-pretraining-data  (masked LM + sentence order / next sentence TFRecords)
    pretrain/    keras-albert pretrain                 (a tiny model, LAMB, warmup + polynomial decay)
    squad/       keras-albert squad                    (SQuAD v2.0 finetuning on questions about the novels)

A finished step is not run again: re-running the command resumes where it stopped (the pretraining step itself
resumes from its latest checkpoint). The figures are those of a tiny model trained for a few minutes: they show
the pipeline works end to end, not what ALBERT reaches on Wikipedia.
"""

import os
import time

from keras_albert import cli, io
from keras_albert.data.summary import SUMMARY_FILE, read_data_summary
from keras_albert.errors import UserInputError
from keras_albert.training.pretrain import SUMMARY_FILE as RUN_SUMMARY_FILE
from keras_albert.training.choices import MODEL_TYPES


def add_arguments(parser):
    parser.add_argument("--output_dir", default="keras-albert-quickstart",
                        help="Where every step writes its output. Default: ./keras-albert-quickstart")
    parser.add_argument("--model_type", default="albert", choices=MODEL_TYPES,
                        help="albert: SentencePiece + sentence-order prediction; bert: WordPiece + next sentence.")
    parser.add_argument("--vocab_size", type=int, default=5000, help="Tokenizer vocabulary. Default: 5000.")
    parser.add_argument("--max_seq_length", type=int, default=128, help="Pretraining sequence length. Default: 128.")
    parser.add_argument("--dupe_factor", type=int, default=2, help="Masked copies of the corpus. Default: 2.")
    parser.add_argument("--pretrain_steps", type=int, default=400, help="Pretraining updates. Default: 400.")
    parser.add_argument("--batch_size", type=int, default=32, help="Pretraining sequences per update. Default: 32.")
    parser.add_argument("--learning_rate", type=float, default=5e-3, help="Peak LAMB learning rate. Default: 5e-3.")
    parser.add_argument("--squad_steps", type=int, default=400, help="SQuAD finetuning updates. Default: 400.")
    parser.add_argument("--squad_max_seq_length", type=int, default=128,
                        help="SQuAD window length in tokens (at most --max_seq_length, the pretrained position "
                        "table). Default: 128.")
    parser.add_argument("--workers", type=int, default=None,
                        help="Processes for create-pretraining-data. Default: all cores.")
    parser.add_argument("--seed", type=int, default=42, help="Seed of every step. Default: 42.")


def _step(title, argv, done_marker):
    if os.path.exists(done_marker):
        print(f"== {title}: already done ({done_marker})", flush=True)
        return 0.0
    print(f"== {title}\n   keras-albert {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    status = cli.main(argv)
    if status:
        raise UserInputError(f"step '{title}' failed (exit {status}); fix the error above and run quickstart again")
    return time.perf_counter() - start


def run(args):
    if args.pretrain_steps < 1 or args.squad_steps < 1:
        raise UserInputError("--pretrain_steps and --squad_steps must be at least 1")
    out = os.path.abspath(args.output_dir)
    paths = {name: os.path.join(out, name) for name in ("tokenizer", "data", "pretrain", "squad")}
    seed = str(args.seed)
    timings = {}

    timings["tokenizer"] = _step(
        "1/4 train a tokenizer on the embedded corpus",
        ["train-tokenizer", "--output", paths["tokenizer"], "--model_type", args.model_type,
         "--vocab_size", str(args.vocab_size), "--seed", seed],
        os.path.join(paths["tokenizer"], "keras_albert_tokenizer.json"),  # written last
    )
    data_argv = ["create-pretraining-data", "--tokenizer", paths["tokenizer"], "--output_dir", paths["data"],
                 "--model_type", args.model_type, "--max_seq_length", str(args.max_seq_length),
                 "--max_predictions_per_seq", str(max(1, round(args.max_seq_length * 0.15))),
                 "--dupe_factor", str(args.dupe_factor), "--num_shards", "4", "--seed", seed,
                 "--document_break_lines", "2"]  # chapters, not paragraphs, are the novels' documents
    if args.workers:
        data_argv += ["--workers", str(args.workers)]
    timings["data"] = _step("2/4 create pretraining data", data_argv, os.path.join(paths["data"], SUMMARY_FILE))

    final_model = os.path.join(paths["pretrain"], "model.keras")
    timings["pretrain"] = _step(
        f"3/4 pretrain {args.model_type}_tiny",
        ["pretrain", "--train_files", os.path.join(paths["data"], "*.tfrecord"), "--output_dir", paths["pretrain"],
         "--tokenizer", paths["tokenizer"], "--model_type", args.model_type, "--model_size", "tiny",
         "--max_seq_length", str(args.max_seq_length), "--per_gpu_batch_size", str(args.batch_size),
         "--total_steps", str(args.pretrain_steps), "--warmup_steps", str(max(1, args.pretrain_steps // 10)),
         "--learning_rate", str(args.learning_rate), "--log_frequency", str(max(1, args.pretrain_steps // 8)),
         "--checkpoint_frequency", str(max(1, args.pretrain_steps // 2)), "--seed", seed],
        final_model,
    )
    scores_file = os.path.join(paths["squad"], "scores.json")
    timings["squad"] = _step(
        "4/4 finetune on SQuAD v2.0 questions about the novels and score the held-apart ones",
        ["squad", "--task_name", "squadv2", "--load_from", "checkpoint", "--checkpoint_path", final_model,
         "--tokenizer", paths["tokenizer"], "--model_type", args.model_type, "--model_size", "tiny",
         "--output_dir", paths["squad"], "--max_seq_length", str(args.squad_max_seq_length),
         # Questions take at most half the window (64 tokens of the default 128): a short window keeps its context.
         "--doc_stride", "64", "--max_query_length", str(min(64, args.squad_max_seq_length // 2)),
         "--per_gpu_batch_size", "32", "--total_steps", str(args.squad_steps),
         "--warmup_steps", str(max(1, args.squad_steps // 10)), "--learning_rate", "2e-3",
         "--optimizer", "lamb", "--seed", seed],
        scores_file,
    )
    _print_summary(paths, scores_file, timings)
    return 0


def _read_json(path):
    """The JSON object at `path`, or {} when there is none to show (the summary is best effort)."""
    try:
        value = io.read_json(path)
    except UserInputError:
        return {}
    return value if isinstance(value, dict) else {}


def _print_summary(paths, scores_file, timings):
    try:
        data = read_data_summary(paths["data"]).raw
    except UserInputError:
        data = {}
    pretrain = _read_json(os.path.join(paths["pretrain"], RUN_SUMMARY_FILE))
    scores = _read_json(scores_file)
    print("\n== quickstart summary")
    if data:
        print(f"   pretraining data: {data.get('instances', '?')} instances, {data.get('tokens', '?')} tokens")
    if pretrain:
        logs = pretrain.get("logs", pretrain)
        shown = {k: round(v, 4) for k, v in logs.items()
                 if isinstance(v, (int, float)) and ("loss" in k or "accuracy" in k)}
        print(f"   pretraining, last logged values: {shown}")
    if scores:
        shown = {k: round(v, 2) for k, v in scores.items()
                 if k in ("exact", "f1", "HasAns_f1", "NoAns_exact", "total")}
        print(f"   SQuAD v2.0 on held-apart questions: {shown}")
    spent = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timings.items() if seconds)
    if spent:
        print(f"   time: {spent}")
    print(f"   outputs under {os.path.dirname(paths['tokenizer'])}")
