"""``scratch-gpt finetune-dpo``: preference tuning with DPO (the book's chapter 7 bonus), one library call.

``finetune-dpo --model DIR --data FILE --output DIR`` builds a ``DPOConfig`` from the arguments, runs
``dpo_pipeline.finetune_dpo`` (progress bar and evaluation lines) and prints the held-out numbers before and
after. The reference model defaults to a frozen copy of ``--model``; ``--reference DIR`` loads another one.
"""

from __future__ import annotations

import argparse

from . import finite_float


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``finetune-dpo`` to the ``scratch-gpt`` parser."""
    parser = subparsers.add_parser(
        "finetune-dpo",
        help="preference-tune an instruction-tuned model with DPO (the book's chapter 7 bonus)",
        description="Train a policy model with Direct Preference Optimization against a frozen reference model "
        "(default: a frozen copy of --model). --data holds preference records {instruction, input, chosen, "
        "rejected} or chapter 7 instruction records {instruction, input, output}, from which pairs are built "
        "deterministically (chosen = the reference answer, rejected = --pairs). Split 85/10/5 in order like "
        "chapter 7. Writes the tuned model + tokenizer (Alpaca chat template), dpo_history.json and "
        "results.json (DPO loss, reward margin and accuracy, held-out response loss, before and after). "
        "Defaults are the book's notebook: beta 0.1, 1 epoch, batch 8, lr 5e-6, weight decay 0.01.",
    )
    parser.add_argument(
        "--model", "-m", required=True, metavar="DIR", help="instruction-tuned checkpoint folder"
    )
    parser.add_argument(
        "--reference",
        default=None,
        metavar="DIR",
        help="reference checkpoint (default: a frozen copy of --model)",
    )
    parser.add_argument(
        "--data", required=True, metavar="PATH", help="preference or instruction records (.json/.jsonl)"
    )
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="folder for the tuned model")
    parser.add_argument("--beta", type=finite_float, default=0.1, help="DPO beta (default: 0.1, the book's)")
    parser.add_argument("--steps", type=int, default=None, help="stop after this many optimizer steps")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the training pairs (default: 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step (default: 8)")
    parser.add_argument("--lr", type=finite_float, default=5e-6, help="AdamW learning rate (default: 5e-6)")
    parser.add_argument(
        "--weight-decay", type=finite_float, default=0.01, help="AdamW weight decay (default: 0.01)"
    )
    parser.add_argument(
        "--log-prob",
        choices=["mean", "sum"],
        default="mean",
        help="a response's log-probability: mean over its tokens (the book, default) or sum (the paper, TRL)",
    )
    parser.add_argument(
        "--pairs",
        choices=["other_answer", "shuffled_words", "model_response"],
        default="other_answer",
        help="rejected answer built from instruction records: another record's answer (default), the answer's "
        "words shuffled, or the record's 'model_response'",
    )
    parser.add_argument("--eval-freq", type=int, default=5, help="evaluate every N steps (default: 5)")
    parser.add_argument("--eval-iter", type=int, default=5, help="batches per evaluation (default: 5)")
    parser.add_argument(
        "--max-length", type=int, default=None, help="cut sequences to N tokens (default: context)"
    )
    parser.add_argument(
        "--num-samples", type=int, default=3, help="test prompts answered before/after (default: 3)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=64, help="longest sample answer (default: 64)")
    parser.add_argument(
        "--skip-bad-records", action="store_true", help="skip malformed records with a warning"
    )
    parser.add_argument(
        "--seed", type=int, default=123, help="seed of the pairs and the batch order (default: 123)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --output folder that holds other files (kept until the new run has finished)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--quiet", action="store_true", help="do not print the evaluation lines")
    parser.set_defaults(func=_finetune_dpo)


def _print_now(line: str) -> None:
    print(line, flush=True)


def _finetune_dpo(args: argparse.Namespace) -> int:
    from ..finetune.dpo_pipeline import DPOConfig, finetune_dpo

    config = DPOConfig(
        model_dir=args.model,
        data_path=args.data,
        output_dir=args.output,
        reference_dir=args.reference,
        beta=args.beta,
        num_epochs=args.epochs,
        max_steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        log_prob=args.log_prob,
        pair_strategy=args.pairs,
        seed=args.seed,
        eval_freq=args.eval_freq,
        eval_iter=args.eval_iter,
        max_length=args.max_length,
        num_samples=args.num_samples,
        max_new_tokens=args.max_new_tokens,
        skip_bad_records=args.skip_bad_records,
        device=args.device,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    result = finetune_dpo(config, log_fn=None if args.quiet else _print_now)
    before, after = result["before"], result["after"]
    for split in ("val", "test"):
        print(
            f"{split:>4}: DPO loss {before[f'{split}_loss']:.4f} -> {after[f'{split}_loss']:.4f}, reward margin "
            f"{after[f'{split}_reward_margin']:+.4f}, reward accuracy {after[f'{split}_reward_accuracy']:.2f}, "
            f"chosen response loss {before[f'{split}_chosen_response_loss']:.4f} -> "
            f"{after[f'{split}_chosen_response_loss']:.4f}"
        )
    print(f"{result['steps']} steps in {result['train_seconds']:.1f} s; saved to {result['output_dir']}")
    return 0
