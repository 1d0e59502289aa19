"""`keras-albert train-tokenizer`: train a SentencePiece (ALBERT) or WordPiece (BERT) tokenizer, or import one.

    keras-albert train-tokenizer --output tok --model_type albert --vocab_size 30000          # embedded corpus
    keras-albert train-tokenizer --input 'wiki/*.txt.gz' --output tok --model_type bert --vocab_size 30522
    keras-albert train-tokenizer --input bert-base-uncased/vocab.txt --output tok --model_type bert   # import
"""

from keras_albert.data.tokenizers import MODEL_TYPES, train_tokenizer


def add_arguments(parser):
    parser.add_argument(
        "--input",
        nargs="*",
        default=None,
        help="Text files, directories or globs (plain or gzip; comma-separated allowed). Default: the embedded Jane "
        "Austen corpus. A single existing spiece.model (albert) or vocab.txt (bert) is imported instead of training.",
    )
    parser.add_argument(
        "--tfds_text_field",
        default="text",
        help="For tfds:NAME[/CONFIG][:SPLIT] inputs (prepared TensorFlow Datasets splits), the text feature.",
    )
    parser.add_argument("--tfds_data_dir", default=None, help="For tfds: inputs, where the dataset is prepared.")
    parser.add_argument("--output", required=True, help="Directory to write the tokenizer to.")
    parser.add_argument(
        "--model_type", choices=MODEL_TYPES, default="albert", help="albert: SentencePiece; bert: WordPiece."
    )
    parser.add_argument(
        "--vocab_size", type=int, default=30000, help="Vocabulary size (ALBERT and BERT use 30000/30522)."
    )
    parser.add_argument("--character_coverage", type=float, default=0.9995, help="SentencePiece character coverage.")
    parser.add_argument(
        "--input_sentence_size", type=int, default=2_000_000, help="SentencePiece samples at most this many sentences."
    )
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed.")
    parser.add_argument("--verbose", action="store_true", help="Show the trainers' logs.")


def run(args):
    tokenizer = train_tokenizer(
        args.input,
        args.output,
        args.model_type,
        args.vocab_size,
        character_coverage=args.character_coverage,
        input_sentence_size=args.input_sentence_size,
        seed=args.seed,
        verbose=args.verbose,
        tfds_text_field=args.tfds_text_field,
        tfds_data_dir=args.tfds_data_dir,
    )
    print(
        f"wrote {tokenizer.model_type} tokenizer, vocabulary {tokenizer.vocab_size}, to {args.output} "
        f"(pad {tokenizer.pad_id}, unk {tokenizer.unk_id}, cls {tokenizer.cls_id}, sep {tokenizer.sep_id}, "
        f"mask {tokenizer.mask_id})"
    )
    return 0
