"""`keras-albert quickstart`: the whole pipeline on the embedded Jane Austen corpus, on one CPU, in minutes, ending
with a SQuAD v2.0 score on held-apart questions printed beside the score of answering "no answer" everywhere.

Each step writes under `--output_dir`:

    questions/       SQuAD v2.0-style questions about the novels (`make_corpus_squad.build_splits`), split by
                     paragraph: dev (held apart: the result), held_in (picks the no-answer threshold), train
                     (the paragraphs the other two leave);
                     text/ holds the novels without the held_in and dev paragraphs, heldout/ those paragraphs
    tokenizer/       keras-albert train-tokenizer          (on text/: SentencePiece for ALBERT, WordPiece for BERT)
    data/            keras-albert create-pretraining-data  (masked LM + sentence order / next sentence, from text/)
    data_heldout/    the same from heldout/ (validation records, never trained on)
    pretrain/        keras-albert pretrain                 (a small model, LAMB; + validation.jsonl)
    squad/           finetune on train and predict held_in (`run_squad`: the model, its Hugging Face export, the
                     held-in predictions and scores), choose the null-score threshold that maximises held-in F1
                     (the official sweep), score dev with it (`predict_squad`: squad/dev/), quickstart.json
    learning_curves.png

No held-apart or held-in paragraph is pretrained or finetuned on: the pretraining text leaves them out, so a cloze
question is never a sentence the model has read. A finished step is not run again: re-running the command resumes
where it stopped (pretraining resumes from its latest checkpoint).
"""

import argparse
import dataclasses
import os
import time

from keras_albert import cli, io
from keras_albert.data import make_corpus_squad
from keras_albert.data.summary import SUMMARY_FILE, read_data_summary
from keras_albert.errors import UserInputError
from keras_albert.training.choices import MODEL_SIZES, MODEL_TYPES
from keras_albert.training.pretrain import LOG_FILE
from keras_albert.training.pretrain import SUMMARY_FILE as RUN_SUMMARY_FILE

SPLITS = ("dev", "held_in", "train")  # cut in this order: dev and held_in do not change with the training size
CURVES_FILE = "learning_curves.png"
RESULT_FILE = "quickstart.json"


def add_arguments(parser):
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    add = parser.add_argument
    add("--output_dir", default="keras-albert-quickstart", help="Where every step writes its output.")
    add("--model_type", default="albert", choices=MODEL_TYPES,
        help="albert: SentencePiece + sentence-order prediction; bert: WordPiece + next sentence.")
    add("--model_size", default="small", choices=MODEL_SIZES,
        help="Preset size (keras_albert.models.presets): small is 0.76M parameters, 128 wide, two unshared layers; "
        "tiny half as wide, one shared layer.")
    add("--vocab_size", type=int, default=5000, help="Tokenizer vocabulary.")
    add("--max_seq_length", type=int, default=128, help="Pretraining sequence length.")
    add("--dupe_factor", type=int, default=2, help="Masked copies of the corpus.")
    add("--pretrain_steps", type=int, default=300, help="Pretraining updates.")
    add("--batch_size", type=int, default=32, help="Pretraining sequences per update.")
    add("--learning_rate", type=float, default=5e-3, help="Peak LAMB learning rate.")
    add("--squad_steps", type=int, default=3000, help="SQuAD finetuning updates.")
    add("--squad_learning_rate", type=float, default=1e-3, help="Peak AdamW learning rate of the SQuAD finetuning.")
    add("--squad_batch_size", type=int, default=32, help="SQuAD finetuning rows per update.")
    add("--max_answer_length", type=int, default=-1,
        help="Longest answer predicted, in tokens; -1: the longest answer of the training questions (every answer "
        "is a name of 1-3 words), so that no prediction runs on past a name into the sentence around it.")
    add("--squad_max_seq_length", type=int, default=128,
        help="SQuAD window length in tokens (at most --max_seq_length, the pretrained position table).")
    add("--dev_paragraphs", type=int, default=300, help="Held-apart paragraphs: their questions are the result.")
    add("--held_in_paragraphs", type=int, default=200,
        help="Paragraphs whose questions choose the no-answer threshold (not trained on either).")
    add("--train_paragraphs", type=int, default=-1, help="Training paragraphs; -1: every one the others leave.")
    add("--train_questions", default="all", choices=("per_sentence", "all"),
        help="per_sentence: as dev and held_in (40-110-word paragraphs, one question per sentence, up to 3 a "
        "paragraph); all: every name of every sentence of every 25-160-word paragraph (2.5x the questions).")
    add("--train_impossible_fraction", type=float, default=0.5,
        help="Share of training paragraphs given an unanswerable question (held-in and dev: 0.5).")
    add("--workers", type=int, default=None, help="Processes for create-pretraining-data. Default: all cores.")
    add("--seed", type=int, default=42, help="Seed of every step.")


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


def _check(args):
    for flag in ("pretrain_steps", "squad_steps", "batch_size", "squad_batch_size", "dev_paragraphs",
                 "held_in_paragraphs"):
        if getattr(args, flag) < 1:
            raise UserInputError(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    if args.train_paragraphs < 1 and args.train_paragraphs != -1:
        raise UserInputError(f"--train_paragraphs must be at least 1, or -1 (all), got {args.train_paragraphs}")
    if args.max_answer_length < 1 and args.max_answer_length != -1:
        raise UserInputError(f"--max_answer_length must be at least 1, or -1 (the longest training answer), got "
                             f"{args.max_answer_length}")
    if not 0.0 <= args.train_impossible_fraction <= 1.0:
        raise UserInputError(f"--train_impossible_fraction must be within [0, 1], got {args.train_impossible_fraction}")
    if args.squad_max_seq_length > args.max_seq_length:
        raise UserInputError(f"--squad_max_seq_length ({args.squad_max_seq_length}) must be at most "
                             f"--max_seq_length ({args.max_seq_length}), the pretrained position table")


def _questions(paths, args):
    """Step 0: the question splits and the texts (pretraining text without held-apart paragraphs; those paragraphs)."""
    directory = paths["questions"]
    marker = os.path.join(directory, "summary.json")
    title = "0/4 generate SQuAD v2.0-style questions about the novels, split by paragraph"
    if os.path.exists(marker):
        print(f"== {title}: already done ({marker})", flush=True)
        return io.read_json(marker)
    print(f"== {title}", flush=True)
    usable = make_corpus_squad.usable_paragraph_count()
    counts = {"dev": args.dev_paragraphs, "held_in": args.held_in_paragraphs, "train": args.train_paragraphs}
    wanted = args.dev_paragraphs + args.held_in_paragraphs
    if wanted >= usable:
        raise UserInputError(f"the corpus has {usable} usable paragraphs for --dev_paragraphs and "
                             f"--held_in_paragraphs, which ask for {wanted}")
    try:
        splits = make_corpus_squad.build_splits(
            paragraphs=counts,
            questions_per_paragraph=3,  # one question per sentence, up to 3 a paragraph
            impossible_fraction={"dev": 0.5, "held_in": 0.5, "train": args.train_impossible_fraction},
            training_split="train" if args.train_questions == "all" else None,
        )
    except UserInputError as error:
        raise UserInputError(f"--train_paragraphs {args.train_paragraphs}: {error}") from None
    apart = make_corpus_squad.contexts(splits["dev"]) | make_corpus_squad.contexts(splits["held_in"])
    make_corpus_squad.write_text_without(make_corpus_squad.CORPUS_DIR, apart, os.path.join(directory, "text"))
    heldout = os.path.join(directory, "heldout", "heldout.txt")
    os.makedirs(os.path.dirname(heldout), exist_ok=True)
    _write(heldout, apart)
    summary = {"usable_paragraphs": usable}
    for split in SPLITS:
        io.write_json(os.path.join(directory, f"{split}.json"), splits[split])
        paragraphs, questions, impossible = make_corpus_squad.question_counts(splits[split])
        summary[split] = {"paragraphs": paragraphs, "questions": questions, "unanswerable": impossible}
    io.write_json(marker, summary)
    for split in SPLITS:
        s = summary[split]
        print(f"   {split}: {s['questions']} questions ({s['unanswerable']} unanswerable) on {s['paragraphs']} "
              "paragraphs", flush=True)
    return summary


def _write(path, paragraphs):
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        file.write("\n\n".join(sorted(paragraphs)) + "\n")
    os.replace(path + ".tmp", path)


def _pretrain(paths, args, argv):
    """Step 3 through the pretrain command's own flags and run, with a validation callback on held-apart records."""
    final_model = os.path.join(paths["pretrain"], "model.keras")
    title = f"3/4 pretrain {args.model_type}_{args.model_size}"
    if os.path.exists(final_model):
        print(f"== {title}: already done ({final_model})", flush=True)
        return 0.0, 0
    print(f"== {title}\n   keras-albert {' '.join(argv)}\n   (with the masked-LM loss of held-apart text every "
          f"{_log_frequency(args)} steps in {os.path.join(paths['pretrain'], 'validation.jsonl')})", flush=True)
    from keras_albert.commands import pretrain as pretrain_command
    from keras_albert.training.curves import MaskedLmValidation
    from keras_albert.training.preemption import signal_name
    from keras_albert.training.pretrain import pretrain
    from keras_albert.training.validation import flag_names

    parser = argparse.ArgumentParser(prog="keras-albert pretrain")
    pretrain_command.add_arguments(parser)
    settings = pretrain_command.settings_from_args(parser.parse_args(argv[1:]))
    summary = read_data_summary(paths["data_heldout"]).raw
    validation = MaskedLmValidation(os.path.join(paths["data_heldout"], "*.tfrecord"), args.max_seq_length,
                                    summary["settings"]["max_predictions_per_seq"], _log_frequency(args),
                                    os.path.join(paths["pretrain"], "validation.jsonl"))
    start = time.perf_counter()
    with flag_names():
        result = pretrain(settings, callbacks=[validation])
    if result.get("preempted"):
        print(f"keras-albert quickstart: pretraining stopped by {signal_name(result['preempted'])} at step "
              f"{result['step']}; run the same command again to resume", flush=True)
        return time.perf_counter() - start, 128 + result["preempted"]
    return time.perf_counter() - start, 0


def _log_frequency(args):
    return max(1, args.pretrain_steps // 20)


def _squad(paths, args, final_model):
    """Step 4: finetune on the training questions, choose the null threshold on held-in ones, score the dev ones."""
    result_file = os.path.join(paths["squad"], RESULT_FILE)  # written last
    title = "4/4 finetune on SQuAD v2.0, choose the no-answer threshold on held-in questions, score held-apart ones"
    if os.path.exists(result_file):
        print(f"== {title}: already done ({result_file})", flush=True)
        return 0.0
    print(f"== {title}\n   (keras_albert.training.squad: run_squad, then predict_squad with that threshold)",
          flush=True)
    from keras_albert.data import load_tokenizer, squad
    from keras_albert.training.curves import SquadValidation
    from keras_albert.training.squad import SquadRunSettings, predict_squad, run_squad

    start = time.perf_counter()
    questions = paths["questions"]
    settings = SquadRunSettings(
        task_name="squadv2", load_from="checkpoint", checkpoint_path=final_model, model_type=args.model_type,
        model_size=args.model_size, tokenizer=paths["tokenizer"], train_file=os.path.join(questions, "train.json"),
        predict_file=os.path.join(questions, "held_in.json"), output_dir=paths["squad"],
        max_seq_length=args.squad_max_seq_length,
        # Questions take at most half the window (64 tokens of the default 128): a short window keeps its context.
        doc_stride=args.squad_max_seq_length // 2, max_query_length=min(64, args.squad_max_seq_length // 2),
        per_gpu_batch_size=args.squad_batch_size, total_steps=args.squad_steps,
        warmup_steps=max(1, args.squad_steps // 10), learning_rate=args.squad_learning_rate, optimizer="adamw",
        seed=args.seed, null_score_diff_threshold=float("inf"),  # answer everything; the threshold comes next
    )
    tokenizer = load_tokenizer(paths["tokenizer"])
    train = squad.read_squad(settings.train_file)
    max_answer_length = args.max_answer_length
    if max_answer_length == -1:
        max_answer_length = _longest_answer(train, tokenizer, settings.window())
        print(f"   answers predicted up to {max_answer_length} tokens, the longest training answer "
              "(--max_answer_length)", flush=True)
    settings = dataclasses.replace(settings, max_answer_length=max_answer_length)
    held_in = squad.read_squad(settings.predict_file)
    held_in_features = squad.convert_examples_to_features(held_in, tokenizer, is_training=False, **settings.window())
    curve = SquadValidation(held_in, held_in_features, squad.load_json(settings.predict_file),
                            max(1, args.squad_steps // 10), os.path.join(paths["squad"], "curve.jsonl"),
                            max_answer_length=max_answer_length)
    run = run_squad(settings, tokenizer=tokenizer, train_examples=train, callbacks=[curve], verbose=0)
    held_in_scores = run["predictions"].scores
    # The official practice for a no-answer threshold: the one that maximises F1 on questions other than those
    # reported (here the held-in ones); applied unchanged to the held-apart questions.
    threshold = held_in_scores["best_f1_thresh"]
    dev_file = os.path.join(questions, "dev.json")
    dev = squad.read_squad(dev_file)
    dev_json = squad.load_json(dev_file)
    predictions = predict_squad(run["model"], dev, tokenizer, settings, dataset=dev_json, verbose=0,
                                null_score_diff_threshold=threshold)
    # Scored as answered (no na_probs): with them the official rules would answer "" again wherever the null-score
    # difference exceeds their own default threshold (1.0, meant for probabilities), not the one chosen above.
    scores = squad.evaluate(dev_json, predictions.predictions)
    dev_dir = os.path.join(paths["squad"], "dev")
    squad.write_predictions(dev_dir, predictions.predictions, predictions.nbest, predictions.null_odds)
    io.write_json(os.path.join(dev_dir, "scores.json"), scores)
    baseline = squad.evaluate(dev_json, {example.qas_id: "" for example in dev})
    result = {
        "dev": scores,
        "no_answer_baseline": {"exact": baseline["exact"], "f1": baseline["f1"]},
        "null_score_diff_threshold": threshold,
        "held_in": {key: held_in_scores[key] for key in ("best_f1", "best_f1_thresh", "total")},
        "squad_steps": run["total_steps"],
        "max_answer_length": max_answer_length,
    }
    io.write_json(result_file, result)
    return time.perf_counter() - start


def _longest_answer(examples, tokenizer, window):
    """The longest answer of `examples` in tokens, as the training windows label it (1 when none is answerable)."""
    from keras_albert.data import squad

    features = squad.convert_examples_to_features(examples, tokenizer, is_training=True, **window)
    return max([f.end_position - f.start_position + 1 for f in features if f.start_position > 0] or [1])


def run(args):
    _check(args)
    out = os.path.abspath(args.output_dir)
    paths = {name: os.path.join(out, name)
             for name in ("questions", "tokenizer", "data", "data_heldout", "pretrain", "squad")}
    seed = str(args.seed)
    timings = {}
    started = time.perf_counter()

    from keras_albert.distribute import worker_info
    from keras_albert.training.logs import configure_logging

    configure_logging(worker_info().is_chief)  # the pretraining and SQuAD progress lines, resumed runs included
    _questions(paths, args)
    text = os.path.join(paths["questions"], "text", "*.txt")
    timings["tokenizer"] = _step(
        "1/4 train a tokenizer on the novels (held-apart paragraphs left out)",
        ["train-tokenizer", "--input", text, "--output", paths["tokenizer"], "--model_type", args.model_type,
         "--vocab_size", str(args.vocab_size), "--seed", seed],
        os.path.join(paths["tokenizer"], "keras_albert_tokenizer.json"),  # written last
    )
    data_argv = ["create-pretraining-data", "--tokenizer", paths["tokenizer"], "--model_type", args.model_type,
                 "--max_seq_length", str(args.max_seq_length),
                 "--max_predictions_per_seq", str(max(1, round(args.max_seq_length * 0.15))),
                 "--num_shards", "4", "--seed", seed, "--quiet"]
    if args.workers:
        data_argv += ["--workers", str(args.workers)]
    timings["data"] = _step(
        "2/4 create pretraining data",
        data_argv + ["--input", text, "--output_dir", paths["data"], "--dupe_factor", str(args.dupe_factor),
                     "--document_break_lines", "2"],  # chapters, not paragraphs, are the novels' documents
        os.path.join(paths["data"], SUMMARY_FILE),
    )
    timings["data"] += _step(
        "2/4 create validation records from the held-apart paragraphs (each one a document)",
        data_argv + ["--input", os.path.join(paths["questions"], "heldout", "heldout.txt"),
                     "--output_dir", paths["data_heldout"], "--dupe_factor", "1"],
        os.path.join(paths["data_heldout"], SUMMARY_FILE),
    )

    final_model = os.path.join(paths["pretrain"], "model.keras")
    steps = args.pretrain_steps
    timings["pretrain"], status = _pretrain(paths, args, [
        "pretrain", "--train_files", os.path.join(paths["data"], "*.tfrecord"), "--output_dir", paths["pretrain"],
        "--tokenizer", paths["tokenizer"], "--model_type", args.model_type, "--model_size", args.model_size,
        "--max_seq_length", str(args.max_seq_length), "--per_gpu_batch_size", str(args.batch_size),
        "--total_steps", str(steps), "--warmup_steps", str(max(1, steps // 10)),
        "--learning_rate", str(args.learning_rate), "--log_frequency", str(_log_frequency(args)),
        "--checkpoint_frequency", str(max(1, steps // 4)), "--seed", seed, "--quiet"])
    if status:
        return status
    timings["squad"] = _squad(paths, args, final_model)
    curves = _plot(out, paths, args)
    _print_summary(out, paths, timings, curves, time.perf_counter() - started)
    return 0


def _plot(out, paths, args):
    from keras_albert.training.curves import plot_learning_curves, read_jsonl, read_train_log

    result = _read_json(os.path.join(paths["squad"], RESULT_FILE))
    squad_curve = read_jsonl(os.path.join(paths["squad"], "curve.jsonl"))
    squad_result = None
    if result and squad_curve:
        squad_result = {"step": squad_curve[-1]["step"], "f1": result["dev"]["f1"],
                        "no_answer_baseline": result["no_answer_baseline"]["f1"]}
    return plot_learning_curves(
        os.path.join(out, CURVES_FILE),
        read_train_log(os.path.join(paths["pretrain"], LOG_FILE)),
        read_jsonl(os.path.join(paths["pretrain"], "validation.jsonl")),
        squad_curve, squad_result,
        title=f"keras-albert quickstart: {args.model_type}_{args.model_size} on Jane Austen",
    )


def _read_json(path):
    """The JSON object at `path`, or {} when there is none to show (the summary is best effort)."""
    try:
        value = io.read_json(path)
    except UserInputError:
        return {}
    return value if isinstance(value, dict) else {}


def _print_summary(out, paths, timings, curves, seconds):
    from keras_albert.training.curves import read_jsonl

    try:
        data = read_data_summary(paths["data"]).raw
    except UserInputError:
        data = {}
    questions = _read_json(os.path.join(paths["questions"], "summary.json"))
    pretrain = _read_json(os.path.join(paths["pretrain"], RUN_SUMMARY_FILE))
    validation = read_jsonl(os.path.join(paths["pretrain"], "validation.jsonl"))
    result = _read_json(os.path.join(paths["squad"], RESULT_FILE))
    print("\n== quickstart summary")
    if questions:
        parts = [f"{split} {questions[split]['questions']} ({questions[split]['unanswerable']} unanswerable, "
                 f"{questions[split]['paragraphs']} paragraphs)" for split in SPLITS if split in questions]
        print(f"   questions: {'; '.join(parts)}")
    if data:
        print(f"   pretraining data: {data.get('instances', '?')} instances, {data.get('tokens', '?')} tokens")
    if pretrain:
        logs = pretrain.get("logs", pretrain)
        print(f"   pretraining, step {pretrain.get('step', '?')}: training masked-LM loss "
              f"{logs.get('mlm_loss', float('nan')):.3f}, accuracy {logs.get('mlm_accuracy', float('nan')):.3f}")
    if len(validation) >= 2:
        first, last = validation[0], validation[-1]
        print(f"   held-apart text, masked-LM loss {first['val_mlm_loss']:.3f} -> {last['val_mlm_loss']:.3f}, "
              f"accuracy {first['val_mlm_accuracy']:.3f} -> {last['val_mlm_accuracy']:.3f} "
              f"(steps {first['step']} -> {last['step']})")
    if result:
        dev, base = result["dev"], result["no_answer_baseline"]
        print(f"   SQuAD v2.0 on {dev['total']} held-apart questions (official scoring): F1 {dev['f1']:.1f}, EM "
              f"{dev['exact']:.1f}, HasAns F1 {dev.get('HasAns_f1', float('nan')):.1f}, NoAns "
              f"{dev.get('NoAns_exact', float('nan')):.1f}")
        print(f"   answering \"no answer\" to every one of them: F1 {base['f1']:.1f}, EM {base['exact']:.1f}  "
              f"(the model: {dev['f1'] - base['f1']:+.1f} F1)")
        print(f"   no-answer threshold {result['null_score_diff_threshold']:.3f} (null score minus best span score), "
              f"chosen on the {result['held_in']['total']} held-in questions")
        export = os.path.join(paths["squad"], "huggingface")
        print(f"   held-apart predictions and scores: {os.path.join(paths['squad'], 'dev')}; the finetuned model: "
              f"{os.path.join(paths['squad'], 'model.keras')}"
              + (f" (for transformers: {export})" if os.path.isdir(export) else ""))
    spent = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timings.items() if seconds)
    if spent:
        print(f"   time: {spent}; this run {seconds:.0f}s")
    print(f"   learning curves: {curves}")
    print(f"   outputs under {out}")
