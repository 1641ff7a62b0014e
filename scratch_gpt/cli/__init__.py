"""The ``scratch-gpt`` command line.

Each command group lives in its own module here and exposes ``register(subparsers)``, which adds its
sub-commands and sets ``func`` on each: a small function that turns parsed arguments into one library call
and prints the result. No logic lives in the CLI; everything it does is a library function you can call.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Sequence

from huggingface_hub.errors import (
    StrictDataclassError,  # invalid model configs (a strict dataclass in transformers 5)
)

# Command-group modules, in the order they appear in ``scratch-gpt --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "tokenizer",  # train-tokenizer, encode, decode
    "model",  # generate, convert
    "train",  # pretrain, demo
    "finetune",  # finetune-classifier, finetune-instruct, chat
    "dpo",  # finetune-dpo
    "hub",  # push
    "data",  # data
)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default, ``(default: X)``, unless the help text already speaks of it or
    there is none (the same rule as the generated reference, ``cli/reference.py``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if action.nargs == 0 or default in (None, argparse.SUPPRESS, [], "") or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def finite_float(text: str) -> float:
    """``type=`` for float options: a number, never NaN or infinity (they would silently poison a run)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (used by ``main`` and by the generated CLI reference)."""
    from scratch_gpt import __version__

    parser = argparse.ArgumentParser(
        prog="scratch-gpt",
        description="Build, train, convert and ship a GPT written from scratch, as a Hugging Face model.",
    )
    parser.add_argument("--version", action="version", version=f"scratch_gpt {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":  # that command group is not written yet
                continue
            raise
        module.register(subparsers)
    for command in subparsers.choices.values():  # the same help layout and one switch for every command
        command.formatter_class = DefaultsHelpFormatter
        command.add_argument(
            "--verbose",
            action="store_true",
            help="also show the libraries' own progress bars (transformers' 'Loading weights', 'Writing model shards')",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scratch-gpt`` console script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    from ..hub.loading import CheckpointLoadError

    restore = _library_progress_bars(getattr(args, "verbose", False))
    try:
        result = args.func(args)
    except CheckpointLoadError as err:  # a folder that cannot be loaded: status 2, as argparse's usage errors
        print(f"scratch-gpt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as err:  # torch.OutOfMemoryError is a RuntimeError
        if not _out_of_memory(err):
            raise
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        print(
            f"scratch-gpt {args.command}: error: out of memory ({first}); the sizes are too large for this machine: "
            "lower them (e.g. --n-embd, --n-layer, --batch-size, --context-length)",
            file=sys.stderr,
        )
        return 1
    except (
        ValueError,
        TypeError,
        FileNotFoundError,
        FileExistsError,
        NotADirectoryError,
        PermissionError,
        ConnectionError,
        StrictDataclassError,
        OSError,  # e.g. a full disk; its message names the file
    ) as err:
        # Library errors are written to name the problem and the fix; show them without a traceback.
        print(f"scratch-gpt {args.command}: error: {err}", file=sys.stderr)
        return 1
    finally:
        restore()
    from ..training import launch

    if (
        launch.end_process_group()
    ):  # under accelerate launch: leave without Python's teardown (training/launch.py)
        launch.exit_process(int(result or 0))
    return int(result or 0)


def _library_progress_bars(show: bool) -> Callable[[], None]:
    """Show or hide transformers' own tqdm bars ("Loading weights", "Writing model shards") for one command
    (hidden unless ``--verbose``: each command shows its own progress where the work is long, and these flash
    by on every load and save); returns the function that restores the previous setting."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    (hf_logging.enable_progress_bar if show else hf_logging.disable_progress_bar)()
    return hf_logging.enable_progress_bar if was_enabled else hf_logging.disable_progress_bar


def _out_of_memory(err: BaseException) -> bool:
    text = str(err)
    return isinstance(err, MemoryError) or any(
        s in text
        for s in ("out of memory", "can't allocate memory", "DefaultCPUAllocator", "not enough memory")
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
