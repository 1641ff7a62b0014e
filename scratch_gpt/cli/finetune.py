"""``scratch-gpt finetune-classifier`` (book chapter 6), ``finetune-instruct`` and ``chat`` (chapter 7).

* ``finetune-classifier --model DIR --data FILE --output DIR`` fine-tunes a pretrained checkpoint (scratch_gpt,
  or a Hugging Face GPT-2 folder) into a spam classifier with ``finetune.classifier_pipeline.finetune_classifier``
  and prints the accuracies before and after, the trainable parameters and the time.
* ``finetune-instruct --model DIR --data FILE --output DIR`` instruction-fine-tunes a causal LM with
  ``finetune.instruction_pipeline.finetune_instruct`` and prints the held-out response loss and ROUGE-L.
* ``chat --model DIR`` answers instructions typed on stdin, streaming (``finetune.chat.chat_with_model_dir``).

The options both fine-tuning commands take are defined once (``_add_shared_options``), with their defaults
read from the command's config class (``ClassifierFinetuneConfig``, ``InstructFinetuneConfig``), so the CLI
and the library cannot disagree; ``_config_from_args`` turns the parsed options back into that config.

Each command is one ``_add_<command>(subparsers)`` function decorated with ``@_command``; ``register`` calls
them in order. A new command is a new decorated function plus its handler: nothing else here changes. The
handlers parse, call one library function and print.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

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
# The options both fine-tuning commands share
# --------------------------------------------------------------------------------------------------------


class _ConfigDefault:
    """An option's default that is the default of a field of the command's config class.

    It stays unresolved while parsing, so building the parser imports neither the pipeline nor torch;
    ``str()`` (what ``%(default)s`` in a help text calls) imports the config class and reads the field's default.
    ``_config_from_args`` leaves such values out, so the config's own default applies.
    """

    def __init__(self, config_class: str, name: str) -> None:
        self.config_class, self.name = config_class, name  # "module:Class" under scratch_gpt, field name

    def value(self) -> Any:
        module, cls = self.config_class.split(":")
        fields = dataclasses.fields(getattr(importlib.import_module(f"..{module}", __package__), cls))
        return next(f.default for f in fields if f.name == self.name)

    def __str__(self) -> str:
        return str(self.value())


CLASSIFIER_CONFIG = "finetune.classifier_pipeline:ClassifierFinetuneConfig"
INSTRUCT_CONFIG = "finetune.instruction_pipeline:InstructFinetuneConfig"


def _add_shared_options(parser: argparse.ArgumentParser, config_class: str, *, data_help: str) -> None:
    """The options of ``finetune-classifier`` and ``finetune-instruct``; defaults come from ``config_class``."""

    def default(name: str) -> _ConfigDefault:
        return _ConfigDefault(config_class, name)

    parser.add_argument(
        "--model", "-m", dest="model_dir", required=True, metavar="DIR", help="pretrained checkpoint folder"
    )
    parser.add_argument("--data", dest="data_path", required=True, metavar="FILE", help=data_help)
    parser.add_argument(
        "--output",
        "-o",
        dest="output_dir",
        required=True,
        metavar="DIR",
        help="folder for the fine-tuned model",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --output folder that holds other files (kept until the new run has finished)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=default("epochs"),
        help="passes over the training split (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=default("batch_size"),
        help="examples per step (default: %(default)s)",
    )
    parser.add_argument(
        "--lr", type=finite_float, default=default("lr"), help="AdamW learning rate (default: %(default)s)"
    )
    parser.add_argument(
        "--weight-decay",
        type=finite_float,
        default=default("weight_decay"),
        help="AdamW weight decay (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=default("seed"),
        help="seed of the new weights' init, the batch order and dropout (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-freq",
        type=int,
        default=default("eval_freq"),
        help="evaluate the loss every N steps (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-iter",
        type=int,
        default=default("eval_iter"),
        help="batches per evaluation (default: %(default)s)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    parser.add_argument(
        "--dropout", type=finite_float, default=None, help="override the checkpoint's dropout rate"
    )
    parser.add_argument(
        "--lora-alpha",
        type=finite_float,
        default=default("lora_alpha"),
        help="LoRA alpha, the update's scale (default: %(default)s)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument(
        "--book",
        dest="book_conventions",
        action="store_true",
        help="follow the book's conventions exactly, to reproduce its numbers (batch order from the global "
        "RNG, its evaluation schedule; see the chapter pages)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the progress lines")


def _config_from_args(config_class: type, args: argparse.Namespace, **extra: Any) -> Any:
    """``config_class`` built from the parsed options named like its fields (those left at their default are
    left out, so the config's defaults apply), plus ``extra``."""
    names = {f.name for f in dataclasses.fields(config_class)}
    values = {
        name: value
        for name, value in vars(args).items()
        if name in names and not isinstance(value, _ConfigDefault)
    }
    return config_class(**{**values, **extra})


def _print_now(line: str) -> None:
    print(line, flush=True)  # progress lines show up at once, also when stdout goes to a log file


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
    _add_shared_options(parser, CLASSIFIER_CONFIG, data_help="label<TAB>text file (SMSSpamCollection.tsv)")
    parser.add_argument(
        "--freeze",
        default=_ConfigDefault(CLASSIFIER_CONFIG, "freeze"),
        choices=["last_block", "all", "lora", "peft-lora"],
        help="what to train: the book's last block + final norm + head (default), all weights, hand-written "
        "LoRA on every Linear, or peft LoRA on the blocks (head trained fully)",
    )
    parser.add_argument(
        "--pooling",
        default=_ConfigDefault(CLASSIFIER_CONFIG, "pooling"),
        choices=["last_real", "last"],
        help="classify at the last real token (default) or at the last position (a pad for shorter messages)",
    )
    parser.add_argument(
        "--max-length", type=int, default=None, help="pad/truncate to N tokens (default: longest)"
    )
    parser.add_argument(
        "--lora-rank",
        type=int,
        default=_ConfigDefault(CLASSIFIER_CONFIG, "lora_rank"),
        help="LoRA rank, for --freeze lora/peft-lora (default: %(default)s)",
    )
    parser.add_argument(
        "--lora-scaling",
        default=_ConfigDefault(CLASSIFIER_CONFIG, "lora_scaling"),
        choices=["book", "peft"],
        help="LoRA update scale: alpha (the book, default) or alpha / rank (peft's convention)",
    )
    parser.add_argument(
        "--tokenizer",
        dest="tokenizer_dir",
        default=None,
        metavar="DIR",
        help="tokenizer folder (default: --model)",
    )
    parser.set_defaults(func=_finetune_classifier)


def _finetune_classifier(args: argparse.Namespace) -> int:
    from ..finetune.classifier_pipeline import ClassifierFinetuneConfig, finetune_classifier

    config = _config_from_args(ClassifierFinetuneConfig, args)
    result = finetune_classifier(config, log=None if args.quiet else _print_now)
    settings = result["settings"]
    before, same, after = result["accuracy_before"], result["accuracy_after_same_batches"], result["accuracy"]
    batches = result["before_batches"]
    on = "all batches" if batches is None else f"the first {batches} batches"
    print(f"accuracy on {on} of each split, before -> after fine-tuning; then after, on the whole split:")
    for name in ("train", "validation", "test"):
        print(
            f"{name:>10}: {before[name] * 100:6.2f}% -> {same[name] * 100:6.2f}%; whole split "
            f"{after[name] * 100:6.2f}%"
        )
    print(
        f"trained {result['trainable_params']:,} of {result['total_params']:,} parameters "
        f"({settings['freeze']}, pooling {settings['pooling']}) in {result['train_seconds']:.1f} s"
    )
    print(f"saved the classifier, results.json and {result['plot']} to {settings['output_dir']}")
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
    _add_shared_options(finetune, INSTRUCT_CONFIG, data_help="instruction records (.json or .jsonl)")
    finetune.add_argument(
        "--mask-instruction",
        action="store_true",
        help="no loss on the prompt tokens (the book's exercise 7.2)",
    )
    finetune.add_argument("--lora-rank", type=int, default=None, help="train LoRA adapters of this rank only")
    finetune.add_argument(
        "--max-new-tokens",
        type=int,
        default=_ConfigDefault(INSTRUCT_CONFIG, "max_new_tokens"),
        help="longest generated test answer (default: %(default)s)",
    )
    finetune.add_argument("--num-test", type=int, default=None, help="answer only the first N test records")
    finetune.add_argument(
        "--skip-bad-records", action="store_true", help="skip malformed records with a warning"
    )
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
    from ..finetune.instruction_pipeline import InstructFinetuneConfig, finetune_instruct

    on_error = "skip" if args.skip_bad_records else "raise"
    config = _config_from_args(InstructFinetuneConfig, args, on_error=on_error)
    result = finetune_instruct(config, log=None if args.quiet else print)
    after = result["after"]
    print(
        f"{result['steps']} steps in {result['train_seconds']:.0f} s; held-out test responses: loss "
        f"{after['test_response_loss']:.3f}, perplexity {after['test_response_perplexity']:.2f}; mean ROUGE-L F1 "
        f"{result['rouge_l_f1_overlap_mean']:.3f} (word overlap, not correctness); saved to "
        f"{result['settings']['output_dir']}"
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
