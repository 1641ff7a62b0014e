"""``scratch-gpt finetune-classifier`` (book chapter 6), and later the chapter 7 commands, in one command group.

* ``finetune-classifier --model DIR --data FILE --output DIR`` fine-tunes a pretrained checkpoint (scratch_gpt,
  or a Hugging Face GPT-2 folder) into a spam classifier with ``finetune_classifier.finetune_classifier`` and
  prints the accuracies before and after, the trainable parameters and the time.

Each command is one ``_add_<command>(subparsers)`` function decorated with ``@_command``; ``register`` calls
them in order. A new command is a new decorated function plus its handler: nothing else here changes. The
handlers parse, call one library function and print.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from . import finite_float

_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _command(
    add: Callable[[argparse._SubParsersAction], None],
) -> Callable[[argparse._SubParsersAction], None]:
    """Register a function that adds one sub-command (see the module docstring)."""
    _COMMANDS.append(add)
    return add


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the fine-tuning commands to the ``scratch-gpt`` parser."""
    for add in _COMMANDS:
        add(subparsers)


# --------------------------------------------------------------------------------------------------------
# finetune-classifier (chapter 6)
# --------------------------------------------------------------------------------------------------------


@_command
def _add_finetune_classifier(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune-classifier",
        help="fine-tune a pretrained checkpoint into a text classifier (book chapter 6, SMS spam)",
        description="Load a causal-LM checkpoint folder as a classifier (a new head 'score'), balance and split "
        "a label<TAB>text file 70/10/20 as the book does, train, and write a Hugging Face checkpoint with "
        "results.json and classifier_curves.png. Defaults are the book's: 5 epochs, batch 8, lr 5e-5, "
        "weight decay 0.1, last block + final norm + head trained.",
    )
    parser.add_argument("--model", "-m", required=True, metavar="DIR", help="pretrained checkpoint folder")
    parser.add_argument(
        "--data", required=True, metavar="FILE", help="label<TAB>text file (SMSSpamCollection.tsv)"
    )
    parser.add_argument(
        "--output", "-o", required=True, metavar="DIR", help="folder for the fine-tuned model"
    )
    parser.add_argument(
        "--freeze",
        default="last_block",
        choices=["last_block", "all", "lora", "peft-lora"],
        help="what to train: the book's last block + final norm + head (default), all weights, hand-written "
        "LoRA on every Linear, or peft LoRA on the blocks (head trained fully)",
    )
    parser.add_argument(
        "--pooling",
        default="last_real",
        choices=["last_real", "last"],
        help="classify at the last real token (default) or at the last position (a pad for shorter messages)",
    )
    parser.add_argument("--epochs", type=int, default=5, help="passes over the training split (default: 5)")
    parser.add_argument("--batch-size", type=int, default=8, help="messages per step (default: 8)")
    parser.add_argument("--lr", type=finite_float, default=5e-5, help="AdamW learning rate (default: 5e-5)")
    parser.add_argument(
        "--weight-decay", type=finite_float, default=0.1, help="AdamW weight decay (default: 0.1)"
    )
    parser.add_argument("--seed", type=int, default=123, help="seed of the head init, batch order, dropout")
    parser.add_argument(
        "--eval-freq", type=int, default=50, help="evaluate the loss every N steps (default: 50)"
    )
    parser.add_argument("--eval-iter", type=int, default=5, help="batches per evaluation (default: 5)")
    parser.add_argument(
        "--max-length", type=int, default=None, help="pad/truncate to N tokens (default: longest)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N steps (smoke tests)")
    parser.add_argument(
        "--dropout", type=finite_float, default=None, help="override the checkpoint's dropout rate"
    )
    parser.add_argument("--lora-rank", type=int, default=16, help="LoRA rank (default: 16)")
    parser.add_argument("--lora-alpha", type=finite_float, default=16, help="LoRA alpha (default: 16)")
    parser.add_argument(
        "--lora-scaling",
        default="book",
        choices=["book", "peft"],
        help="LoRA update scale: alpha (the book, default) or alpha / rank (peft's convention)",
    )
    parser.add_argument(
        "--tokenizer", default=None, metavar="DIR", help="tokenizer folder (default: --model)"
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --output folder")
    parser.add_argument("--quiet", action="store_true", help="do not print the loss every --eval-freq steps")
    parser.set_defaults(func=_finetune_classifier)


def _print_now(line: str) -> None:
    print(line, flush=True)  # progress lines show up at once, also when stdout goes to a log file


def _finetune_classifier(args: argparse.Namespace) -> int:
    from ..finetune.classifier_pipeline import finetune_classifier

    result = finetune_classifier(
        args.model,
        args.data,
        args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        freeze=args.freeze,
        pooling=args.pooling,
        seed=args.seed,
        eval_freq=args.eval_freq,
        eval_iter=args.eval_iter,
        max_length=args.max_length,
        max_steps=args.max_steps,
        dropout=args.dropout,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_scaling=args.lora_scaling,
        tokenizer_dir=args.tokenizer,
        device=args.device,
        overwrite=args.overwrite,
        log=None if args.quiet else _print_now,
    )
    before, after = result["accuracy_before"], result["accuracy"]
    for name in ("train", "validation", "test"):
        print(f"{name:>10} accuracy: {before[name] * 100:6.2f}% before -> {after[name] * 100:6.2f}% after")
    print(
        f"trained {result['trainable_params']:,} of {result['total_params']:,} parameters "
        f"({result['freeze']}, pooling {result['pooling']}) in {result['train_seconds']:.1f} s"
    )
    print(f"saved the classifier, results.json and {result['plot']} to {result['output_dir']}")
    return 0


# ---------------------------------------------------------------------------------------------------------
# finetune-instruct and chat (chapter 7)
# ---------------------------------------------------------------------------------------------------------


@_command
def _add_finetune_instruct(subparsers: argparse._SubParsersAction) -> None:
    finetune = subparsers.add_parser(
        "finetune-instruct",
        help="instruction-fine-tune a causal LM on Alpaca-style records (book chapter 7)",
        description="Fine-tune a checkpoint folder on instruction records (JSON list or JSON Lines of "
        "{instruction, input, output}) with the book's chapter 7 loop: 85/10/5 split, Alpaca prompts, AdamW. "
        "Writes the fine-tuned model + tokenizer with the Alpaca chat template, training_history.json, "
        "loss_plot.png, test_responses.json (greedy answers to the test split) and results.json (held-out "
        "response loss/perplexity and ROUGE-L, a word-overlap score, not a judgment of correctness).",
    )
    finetune.add_argument("--model", "-m", required=True, metavar="DIR", help="pretrained checkpoint folder")
    finetune.add_argument(
        "--data", required=True, metavar="PATH", help="instruction records (.json or .jsonl)"
    )
    finetune.add_argument("--output", "-o", required=True, metavar="DIR", help="folder to write results to")
    finetune.add_argument("--epochs", type=int, default=2, help="passes over the training split (default: 2)")
    finetune.add_argument("--batch-size", type=int, default=8, help="records per step (default: 8)")
    finetune.add_argument("--lr", type=finite_float, default=5e-5, help="AdamW learning rate (default: 5e-5)")
    finetune.add_argument(
        "--weight-decay", type=finite_float, default=0.1, help="AdamW weight decay (default: 0.1)"
    )
    finetune.add_argument(
        "--mask-instruction",
        action="store_true",
        help="no loss on the prompt tokens (the book's exercise 7.2)",
    )
    finetune.add_argument("--lora-rank", type=int, default=None, help="train LoRA adapters of this rank only")
    finetune.add_argument(
        "--lora-alpha", type=finite_float, default=16.0, help="LoRA alpha, book scaling (default: 16)"
    )
    finetune.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    finetune.add_argument("--eval-freq", type=int, default=5, help="evaluate every N steps (default: 5)")
    finetune.add_argument("--eval-iter", type=int, default=5, help="batches per evaluation (default: 5)")
    finetune.add_argument(
        "--dropout", type=finite_float, default=None, help="override the checkpoint's dropout"
    )
    finetune.add_argument(
        "--max-new-tokens", type=int, default=256, help="longest generated test answer (default: 256)"
    )
    finetune.add_argument("--num-test", type=int, default=None, help="answer only the first N test records")
    finetune.add_argument(
        "--skip-bad-records", action="store_true", help="skip malformed records with a warning"
    )
    finetune.add_argument("--seed", type=int, default=123, help="random seed (default: 123)")
    finetune.add_argument(
        "--device", default=None, help="torch device (default: cuda if available, else cpu)"
    )
    finetune.add_argument("--quiet", action="store_true", help="do not print the progress lines")
    finetune.set_defaults(func=_finetune_instruct)


@_command
def _add_chat(subparsers: argparse._SubParsersAction) -> None:
    chat = subparsers.add_parser(
        "chat",
        help="chat with an instruction-tuned model; answers stream in as they are generated",
        description="Load a checkpoint folder and answer instructions typed on stdin, one per line, streaming "
        "each answer token by token. Each line is a new single-turn Alpaca prompt (the tokenizer's chat "
        "template, or the book's format_input). '/input TEXT' sets the input of the next instruction; "
        "'/quit' or end of input leaves.",
    )
    chat.add_argument(
        "--model", "-m", required=True, metavar="DIR", help="checkpoint folder (with tokenizer)"
    )
    chat.add_argument("--max-new-tokens", type=int, default=256, help="longest answer (default: 256)")
    chat.add_argument(
        "--temperature", type=finite_float, default=0.0, help="0 = greedy (default); > 0 samples"
    )
    chat.add_argument("--top-k", type=int, default=None, help="sample only among the K most likely tokens")
    chat.add_argument("--seed", type=int, default=None, help="random seed, for repeatable sampling")
    chat.add_argument("--device", default=None, help="torch device (default: cpu)")
    chat.set_defaults(func=_chat)


def _finetune_instruct(args: argparse.Namespace) -> int:
    from ..finetune.instruction_pipeline import finetune_instruct

    result = finetune_instruct(
        args.model,
        args.data,
        args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        mask_instruction=args.mask_instruction,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        seed=args.seed,
        eval_freq=args.eval_freq,
        eval_iter=args.eval_iter,
        max_steps=args.max_steps,
        dropout=args.dropout,
        max_new_tokens=args.max_new_tokens,
        num_test=args.num_test,
        on_error="skip" if args.skip_bad_records else "raise",
        device=args.device,
        log_fn=None if args.quiet else print,
    )
    after = result["after"]
    print(
        f"{result['steps']} steps in {result['train_seconds']:.0f} s; held-out test responses: loss "
        f"{after['test_response_loss']:.3f}, perplexity {after['test_response_perplexity']:.2f}; mean ROUGE-L F1 "
        f"{result['rouge_l_f1_overlap_mean']:.3f} (word overlap, not correctness); saved to {result['output_dir']}"
    )
    return 0


def _chat(args: argparse.Namespace) -> int:
    from ..finetune.chat import chat_with_model_dir

    chat_with_model_dir(
        args.model,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
        device=args.device,
    )
    return 0
