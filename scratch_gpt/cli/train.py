"""``scratch-gpt pretrain`` and ``scratch-gpt demo``: train a GPT from scratch (book chapters 2, 4, 5).

* ``pretrain CORPUS... --output DIR`` trains (or loads) a tokenizer and pretrains a GPT on text files, folders,
  JSON Lines or a saved ``datasets`` dataset (``training.from_corpus.pretrain_from_corpus``). Run it under
  ``accelerate launch`` for several GPUs or nodes.
* ``demo`` trains a tokenizer and a small GPT on the Python standard library's docstrings in about 5 minutes
  on 2 CPU cores, reloads the result with ``AutoModelForCausalLM`` and prints a few generations
  (``demo.run_demo``).

The commands parse, call one library function and print.
"""

from __future__ import annotations

import argparse


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
        type=float,
        default=0.1,
        help="the last fraction of the tokens, held out for validation",
    )
    data.add_argument("--text-field", default="text", help="JSON Lines / dataset field that holds the text")
    data.add_argument("--pattern", default="*.txt", help="which files to read inside folders")
    data.add_argument("--decode-errors", choices=["strict", "replace"], default="strict",
                      help="undecodable bytes: stop with an error naming file and offset, or replace them")  # fmt: skip
    model = p.add_argument_group("model")
    model.add_argument("--preset", choices=["gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"],
                       help="GPT-2 sizes (gpt2-small: 124M); overrides --n-layer/--n-embd/--n-head")  # fmt: skip
    model.add_argument("--n-layer", type=int, default=4, help="transformer blocks")
    model.add_argument("--n-embd", type=int, default=256, help="embedding size")
    model.add_argument("--n-head", type=int, default=4, help="attention heads (must divide --n-embd)")
    model.add_argument("--dropout", type=float, default=0.0, help="dropout rate")
    train = p.add_argument_group("training")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--max-steps", type=int, help="optimizer steps")
    length.add_argument("--epochs", type=int, help="passes over the training windows (default: 1)")
    train.add_argument("--batch-size", type=int, default=8, help="windows per process per micro-step")
    train.add_argument(
        "--grad-accum", type=int, default=1, help="micro-steps (gradient accumulation) per optimizer step"
    )
    train.add_argument("--lr", type=float, default=4e-4, help="peak learning rate")
    train.add_argument(
        "--min-lr", type=float, default=0.0, help="learning rate at the end of the cosine decay"
    )
    train.add_argument("--warmup-steps", type=int, default=0, help="steps of linear warmup")
    train.add_argument("--initial-lr", type=float, default=0.0,
                       help="with --book: appendix D's learning rate at the first warmup step")  # fmt: skip
    train.add_argument(
        "--schedule", choices=["cosine", "constant"], default="cosine", help="after the warmup"
    )
    train.add_argument(
        "--weight-decay", type=float, default=0.1, help="AdamW weight decay (on weight matrices only)"
    )
    train.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm; 0 turns clipping off")
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
    train.add_argument("--seed", type=int, default=123)
    train.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --output"
    )
    train.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto",
                       help="auto: bf16 on GPUs that support it, else full precision")  # fmt: skip
    train.add_argument("--compile", action="store_true", help="torch.compile the model")
    train.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    train.add_argument("--time-limit", type=float, metavar="SECONDS", help="stop cleanly after this long")
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
        "BPE tokenizer and a small GPT on them (about 5 minutes on 2 CPU cores), save a Hugging Face "
        "checkpoint, reload it with AutoModelForCausalLM and print a few generations and the loss plot's path.",
    )
    d.add_argument(
        "--output", "-o", default="scratch_gpt_demo", metavar="DIR", help="(default: scratch_gpt_demo)"
    )
    d.add_argument("--quick", action="store_true", help="a seconds-long run with a tiny model (a smoke test)")
    d.add_argument("--max-steps", type=int, help="override the number of training steps")
    d.add_argument(
        "--time-limit", type=float, metavar="SECONDS", help="override the training time limit (270 s)"
    )
    d.add_argument("--resume", action="store_true", help="continue an interrupted demo in --output")
    d.add_argument("--seed", type=int, default=123, help="random seed")
    d.set_defaults(func=_demo)


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
        book_conventions=args.book,
        initial_lr=args.initial_lr,
    )
    result = pretrain_from_corpus(config, corpus)
    print(describe(result))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..training.demo import describe_demo, run_demo

    result = run_demo(
        args.output,
        quick=args.quick,
        max_steps=args.max_steps,
        time_limit_s=args.time_limit,
        resume=args.resume,
        seed=args.seed,
    )
    print(describe_demo(result))
    return 0
