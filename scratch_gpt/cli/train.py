"""``scratch-gpt pretrain`` and ``scratch-gpt demo``: train a GPT from scratch (book chapters 2, 4, 5).

* ``pretrain CORPUS... --output DIR`` trains (or loads) a tokenizer and pretrains a GPT on text files, folders,
  JSON Lines or a saved ``datasets`` dataset (``training.from_corpus.pretrain_from_corpus``). Run it under
  ``accelerate launch`` for several GPUs or nodes.
* ``demo`` trains a tokenizer and a small GPT on the Python standard library's docstrings (a fixed amount of
  work, about 5 minutes on an idle 2-core CPU), reloads the result with ``AutoModelForCausalLM`` and prints a
  few generations and the command that continues a prompt (``demo.run_demo``); on a folder that already holds
  a demo it reports it (``demo.find_demo``) and names ``--resume`` / ``--overwrite``.

The commands parse, call one library function and print.
"""

from __future__ import annotations

import argparse

from . import finite_float


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pretrain`` and ``demo`` to the ``scratch-gpt`` parser."""
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a GPT (and its tokenizer) from scratch on your text",
        description="Tokenize a corpus (training a byte-level BPE unless --tokenizer is given), pretrain a GPT "
        "on it with AdamW, warmup + cosine decay and gradient clipping, and save a Hugging Face checkpoint "
        "(plus periodic resumable checkpoints, training_history.json and loss_plot.png) in --output.",
    )
    p.add_argument(
        "corpus", nargs="+", help="text file(s), .jsonl file(s), folder(s) or saved datasets folder(s)"
    )
    p.add_argument(
        "--output", "-o", required=True, metavar="DIR", help="folder for checkpoints and the model"
    )
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --output folder that holds other files (kept until the run has finished)")  # fmt: skip
    data = p.add_argument_group("data")
    data.add_argument("--tokenizer", metavar="DIR", help="use this tokenizer folder instead of training one")
    data.add_argument("--vocab-size", type=int, default=4096, help="BPE vocabulary when training one")
    data.add_argument(
        "--context-length",
        type=int,
        default=256,
        help="tokens per training window (the model's context length)",
    )
    data.add_argument("--stride", type=int, help="window stride (default: the context length)")
    data.add_argument(
        "--val-fraction",
        type=finite_float,
        default=0.1,
        help="the last fraction of the tokens, held out for validation",
    )
    data.add_argument("--text-field", default="text", help="JSON Lines / dataset field that holds the text")
    data.add_argument("--pattern", default="*.txt", help="which files to read inside folders")
    data.add_argument("--decode-errors", choices=["strict", "replace"], default="strict",
                      help="undecodable bytes: stop with an error naming file and offset, or replace them")  # fmt: skip
    data.add_argument("--specials-in-text", action="store_true",
                      help="encode text spelling a special token (<|endoftext|>) as that token (default: as text)")  # fmt: skip
    model = p.add_argument_group("model")
    model.add_argument("--preset", choices=["gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"],
                       help="GPT-2 sizes (gpt2-small: 124M); overrides --n-layer/--n-embd/--n-head")  # fmt: skip
    model.add_argument("--n-layer", type=int, default=4, help="transformer blocks")
    model.add_argument("--n-embd", type=int, default=256, help="embedding size")
    model.add_argument("--n-head", type=int, default=4, help="attention heads (must divide --n-embd)")
    model.add_argument("--dropout", type=finite_float, default=0.0, help="dropout rate")
    train = p.add_argument_group("training")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=int, help="passes over the training windows (default: 1)")
    train.add_argument("--batch-size", type=int, default=8, help="windows per process per micro-step")
    train.add_argument(
        "--grad-accum", type=int, default=1, help="micro-steps (gradient accumulation) per optimizer step"
    )
    train.add_argument("--lr", type=finite_float, default=4e-4, help="peak learning rate")
    train.add_argument(
        "--min-lr", type=finite_float, default=0.0, help="learning rate at the end of the cosine decay"
    )
    train.add_argument("--warmup-steps", type=int, default=0, help="steps of linear warmup")
    train.add_argument("--initial-lr", type=finite_float, default=0.0,
                       help="with --book: appendix D's learning rate at the first warmup step")  # fmt: skip
    train.add_argument(
        "--schedule", choices=["cosine", "constant"], default="cosine", help="after the warmup"
    )
    train.add_argument(
        "--weight-decay", type=finite_float, default=0.1, help="AdamW weight decay (on weight matrices only)"
    )
    train.add_argument(
        "--grad-clip", type=finite_float, default=1.0, help="max gradient norm; 0 turns clipping off"
    )
    train.add_argument(
        "--eval-interval", type=int, default=50, help="steps between evaluations (and samples)"
    )
    train.add_argument("--eval-batches", type=int, default=10, help="batches of each split per evaluation")
    train.add_argument("--save-interval", type=int, default=500, help="steps between checkpoints")
    train.add_argument(
        "--keep-checkpoints", type=int, default=2, help="how many of the newest checkpoints to keep"
    )
    train.add_argument(
        "--sample-prompt", default="Every effort moves you", help="prompt for samples at evals"
    )
    train.add_argument("--seed", type=int, default=123, help="random seed")
    train.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --output"
    )
    train.add_argument("--allow-changed-settings", action="store_true",
                       help="with --resume: apply changed settings (learning rate, seed, ...) and record them")  # fmt: skip
    train.add_argument("--skip-nonfinite", action="store_true",
                       help="skip (and count) steps with a NaN/inf loss or gradient instead of stopping")  # fmt: skip
    train.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto",
                       help="auto: bf16 on GPUs that support it, else full precision")  # fmt: skip
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument(
        "--time-limit", type=finite_float, metavar="SECONDS", help="stop cleanly after this long"
    )
    train.add_argument("--no-progress", action="store_true", help="no progress bar or evaluation lines")
    train.add_argument(
        "--book",
        action="store_true",
        help="follow the book's conventions exactly, to reproduce its numbers: its model initialization "
        "(untied head), global-RNG batch order, weight decay on all parameters, evaluation after steps 1, 6, "
        "11, ..., appendix D's warmup/cosine/clipping (see docs/chapters/ch05-pretraining-and-generation.md)",
    )
    p.set_defaults(func=_pretrain)

    d = subparsers.add_parser(
        "demo",
        help="train a tokenizer and a small GPT on the Python standard library's docstrings (~5 min on CPU)",
        description="The one-command demo: collect the docstrings of this Python's standard library, train a "
        "BPE tokenizer and a small GPT on them (a fixed 900 steps: about 5 minutes on an idle 2-core CPU, "
        "longer on a busy one; the progress bar shows the time left), save a Hugging Face checkpoint, reload it "
        "with AutoModelForCausalLM and print a few generations, the loss plot's path and the command that "
        "continues a prompt. If --output already holds a demo, it says so and how to go on.",
    )
    d.add_argument("--output", "-o", default="scratch_gpt_demo", metavar="DIR", help="folder for the demo")
    size = d.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="size",
                      help="a 1-minute version with a smaller model")  # fmt: skip
    size.add_argument("--tiny", action="store_const", const="tiny", dest="size",
                      help="a seconds-long smoke test with a tiny model")  # fmt: skip
    d.add_argument("--max-steps", type=int, help="override the number of training steps")
    again = d.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the demo in --output")
    again.add_argument("--overwrite", action="store_true",
                       help="start over in --output (its old content is replaced once the new run has finished)")  # fmt: skip
    d.add_argument("--seed", type=int, default=123, help="random seed")
    d.set_defaults(func=_demo, size=None)


def _pretrain(args: argparse.Namespace) -> int:
    from ..training.from_corpus import CorpusConfig, describe, pretrain_from_corpus
    from ..training.pretrain import PretrainConfig

    corpus = CorpusConfig(
        corpus=args.corpus,
        tokenizer=args.tokenizer,
        vocab_size=args.vocab_size,
        preset=args.preset,
        n_layer=args.n_layer,
        n_embd=args.n_embd,
        n_head=args.n_head,
        dropout=args.dropout,
        context_length=args.context_length,
        stride=args.stride,
        val_fraction=args.val_fraction,
        text_field=args.text_field,
        pattern=args.pattern,
        decode_errors=args.decode_errors,
        specials_in_text=args.specials_in_text,
    )
    config = PretrainConfig(
        output_dir=args.output,
        max_steps=args.max_steps,
        num_epochs=None if args.max_steps is not None else (1 if args.epochs is None else args.epochs),
        batch_size=args.batch_size,
        grad_accum_steps=args.grad_accum,
        learning_rate=args.lr,
        min_lr=args.min_lr,
        warmup_steps=args.warmup_steps,
        lr_schedule=args.schedule,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip or None,
        eval_interval=args.eval_interval,
        eval_batches=args.eval_batches,
        save_interval=args.save_interval,
        keep_checkpoints=args.keep_checkpoints,
        sample_prompt=args.sample_prompt or None,
        seed=args.seed,
        resume=args.resume,
        mixed_precision=args.mixed_precision,
        compile=args.compile,
        num_workers=args.num_workers,
        time_limit_s=args.time_limit,
        show_progress=not args.no_progress,
        overwrite=args.overwrite,
        allow_changed_settings=args.allow_changed_settings,
        on_nonfinite="skip" if args.skip_nonfinite else "stop",
        book_conventions=args.book,
        initial_lr=args.initial_lr,
    )
    result = pretrain_from_corpus(config, corpus)
    print(describe(result))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..training.demo import describe_demo, describe_existing, find_demo, run_demo

    program = _program()
    if not (args.resume or args.overwrite):
        existing = find_demo(args.output)
        if existing is not None:  # a second run: say what is there instead of failing or training over it
            print(describe_existing(existing, program))
            return 0 if existing.finished else 1
    result = run_demo(
        args.output,
        size=args.size,
        max_steps=args.max_steps,
        resume=args.resume,
        overwrite=args.overwrite,
        seed=args.seed,
    )
    print(describe_demo(result, program))
    return 0


def _program() -> str:
    """How the user ran ``scratch-gpt`` (``.venv/bin/scratch-gpt`` stays that), for the commands we print."""
    import os
    import sys

    typed = sys.argv[0] if sys.argv else ""
    return typed if os.path.basename(typed) == "scratch-gpt" else "scratch-gpt"
