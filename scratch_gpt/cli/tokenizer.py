"""``scratch-gpt train-tokenizer`` / ``encode`` / ``decode``: train a byte-level BPE tokenizer and look at
its tokens.

Each command parses its arguments, calls one function (``training.tokenizer_tools.train_tokenizer_on_files``,
``hub.tokenizer_folders.load_folder_tokenizer``) and prints the result. ``encode`` and ``decode`` read any
folder the package writes: a tokenizer folder, a model folder (``tokenizer.json``; the demo, a fine-tuned run, a
GPT-2 conversion), its ``tokenizer/`` subfolder, or OpenAI's GPT-2 files.
"""

from __future__ import annotations

import argparse

from ..constants import END_OF_TEXT

DEFAULT_SPECIAL_TOKENS = [END_OF_TEXT]
_FOLDER_HELP = (
    "a tokenizer or model folder the package wrote (train-tokenizer, demo, pretrain, finetune-*, convert; "
    "its tokenizer/ subfolder is found too), a Hugging Face tokenizer.json folder, or GPT-2's encoder.json + vocab.bpe"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the tokenizer commands to the ``scratch-gpt`` parser."""
    train = subparsers.add_parser(
        "train-tokenizer",
        help="train a byte-level BPE tokenizer on text files and save it to a folder",
        description="Learn BPE merges from the text files (GPT-2's split pattern by default) and save "
        "vocab.json, merges.txt, tokenizer.json and bpe_config.json to --output.",
    )
    train.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files to train on")
    train.add_argument(
        "--vocab-size", type=int, required=True, help="tokens in all: 256 bytes + merges + specials"
    )
    train.add_argument("--output", required=True, metavar="DIR", help="folder to save the tokenizer in")
    train.add_argument(
        "--special-token",
        action="append",
        dest="special_tokens",
        metavar="TEXT",
        help="a special token (repeat for several; default: <|endoftext|>)",
    )
    train.add_argument("--no-special-tokens", action="store_true", help="train without any special token")
    train.add_argument(
        "--pattern",
        default="gpt2",
        metavar="gpt2|gpt4|REGEX",
        help="split pattern: GPT-2's (default), GPT-4's (cl100k), or your own regular expression",
    )
    train.add_argument("--encoding", default="utf-8", help="text encoding of the files (default: utf-8)")
    train.add_argument(
        "--overwrite", action="store_true", help="replace an --output folder that holds other files"
    )
    train.set_defaults(func=_train_tokenizer)

    encode = subparsers.add_parser(
        "encode",
        help="show the tokens and ids of a text",
        description="Encode TEXT with a saved tokenizer and print one line per token: id and its piece "
        "(the token's text, or its bytes when they are not valid UTF-8 on their own).",
    )
    encode.add_argument("text", metavar="TEXT", help="the text to encode")
    encode.add_argument("--tokenizer", required=True, metavar="DIR", help=_FOLDER_HELP)
    encode.add_argument(
        "--specials-as-text", action="store_true", help="encode special-token text as ordinary text"
    )
    encode.set_defaults(func=_encode)

    decode = subparsers.add_parser(
        "decode",
        help="turn token ids back into text",
        description="Decode token ids with a saved tokenizer and print the text (special tokens included).",
    )
    decode.add_argument("ids", nargs="+", type=int, metavar="ID", help="token ids")
    decode.add_argument("--tokenizer", required=True, metavar="DIR", help=_FOLDER_HELP)
    decode.set_defaults(func=_decode)


def _train_tokenizer(args: argparse.Namespace) -> int:
    from ..training.run_folder import claim_run_folder
    from ..training.tokenizer_tools import train_tokenizer_on_files

    specials = [] if args.no_special_tokens else (args.special_tokens or DEFAULT_SPECIAL_TOKENS)
    settings = {"files": args.files, "vocab_size": args.vocab_size, "special_tokens": specials}
    with claim_run_folder(
        args.output, "tokenizer", command="train-tokenizer", settings=settings, overwrite=args.overwrite
    ):
        summary = train_tokenizer_on_files(
            args.files,
            args.vocab_size,
            args.output,
            special_tokens=specials,
            pattern=args.pattern,
            show_progress=True,
            encoding=args.encoding,
        )
    tokenizer = summary.tokenizer
    print(
        f"vocab size: {tokenizer.vocab_size:,} (256 bytes + {len(tokenizer.merges):,} merges + "
        f"{len(tokenizer.special_tokens)} special)"
    )
    print(
        f"training text: {summary.n_bytes:,} bytes -> {summary.n_tokens:,} tokens "
        f"= {summary.bytes_per_token:.3f} bytes per token"
    )
    print(f"time: {summary.train_seconds:.2f} s")
    print(f"saved to {summary.output_dir}")
    return 0


def _encode(args: argparse.Namespace) -> int:
    from ..hub.tokenizer_folders import load_folder_tokenizer

    tokenizer = load_folder_tokenizer(args.tokenizer)
    ids = tokenizer.encode(args.text, specials_as_text=args.specials_as_text)
    pieces = [(token_id, tokenizer.id_to_bytes(token_id)) for token_id in ids]
    width = max([len(str(token_id)) for token_id, _ in pieces] + [2])
    print(f"{'id':>{width}}  piece")
    for token_id, data in pieces:
        try:
            piece = repr(data.decode("utf-8"))
        except UnicodeDecodeError:  # part of a multi-byte character
            piece = repr(data)
        print(f"{token_id:>{width}}  {piece}")
    print(f"{len(pieces)} tokens, {sum(len(data) for _, data in pieces)} bytes")
    return 0


def _decode(args: argparse.Namespace) -> int:
    from ..hub.tokenizer_folders import load_folder_tokenizer

    print(load_folder_tokenizer(args.tokenizer).decode(args.ids))
    return 0
