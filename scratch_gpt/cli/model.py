"""``scratch-gpt convert`` and ``scratch-gpt generate``: move weights to/from GPT-2, and generate text.

* ``convert --from-gpt2 SRC --output DIR`` writes a scratch_gpt checkpoint from a Hugging Face GPT-2 folder;
  ``convert --to-gpt2 SRC --output DIR`` writes a stock GPT-2 folder from a scratch_gpt checkpoint (book
  chapter 5's weight loading; see ``scratch_gpt.hub.convert_gpt2``). Tokenizer files travel along.
* ``generate --model DIR PROMPT`` loads any causal-LM folder (scratch_gpt or GPT-2) with ``AutoModelForCausalLM``
  and ``AutoTokenizer`` and prints the prompt with its continuation (chapter 5's decoding: greedy by default,
  ``--temperature`` / ``--top-k`` / ``--top-p`` sampling, or ``--num-beams`` beam search).

The commands parse, call one library function (``convert_gpt2.convert_*``, ``inference.generate_from_pretrained``)
and print.
"""

from __future__ import annotations

import argparse

from ..hub.inference import generate_from_pretrained
from . import finite_float


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``convert`` and ``generate`` to the ``scratch-gpt`` parser."""
    convert = subparsers.add_parser(
        "convert",
        help="convert weights between Hugging Face GPT-2 and scratch_gpt, both ways",
        description="Convert a local Hugging Face GPT-2 folder (config.json + model.safetensors or "
        "pytorch_model.bin) into a scratch_gpt checkpoint, or a scratch_gpt checkpoint into a stock GPT-2 folder "
        "that loads with GPT2LMHeadModel.from_pretrained without scratch_gpt. Tokenizer files are copied along.",
    )
    direction = convert.add_mutually_exclusive_group(required=True)
    direction.add_argument("--from-gpt2", metavar="SRC", help="a Hugging Face GPT-2 folder to read")
    direction.add_argument("--to-gpt2", metavar="SRC", help="a scratch_gpt checkpoint folder to read")
    convert.add_argument(
        "--output", "-o", required=True, metavar="DIR", help="folder to write the checkpoint to"
    )
    convert.add_argument(
        "--overwrite", action="store_true", help="replace an --output folder that holds other files"
    )
    convert.set_defaults(func=_convert)

    generate = subparsers.add_parser(
        "generate",
        help="continue a prompt with a saved model (scratch_gpt or GPT-2)",
        description="Load a checkpoint folder with AutoModelForCausalLM and AutoTokenizer and print the prompt "
        "followed by the generated text. Greedy by default; --temperature > 0 samples.",
    )
    generate.add_argument("prompt", help="the text to continue")
    generate.add_argument(
        "--model", "-m", required=True, metavar="DIR", help="checkpoint folder (with tokenizer)"
    )
    generate.add_argument("--max-new-tokens", type=int, default=50, help="tokens to generate (default: 50)")
    generate.add_argument(
        "--temperature",
        type=finite_float,
        default=0.0,
        help="0 = greedy (default); > 0 samples, higher is more random",
    )
    generate.add_argument(
        "--top-k", type=int, default=None, help="sample only among the K most likely tokens"
    )
    generate.add_argument(
        "--top-p", type=finite_float, default=None, help="sample only from the top-P probability mass"
    )
    generate.add_argument("--seed", type=int, default=None, help="random seed, for repeatable sampling")
    generate.add_argument(
        "--num-beams", type=int, default=1, help="beam search with this many beams (default: 1)"
    )
    generate.set_defaults(func=_generate)


def _convert(args: argparse.Namespace) -> int:
    from ..hub.convert_gpt2 import convert_from_gpt2, convert_to_gpt2

    if args.from_gpt2 is not None:
        out = convert_from_gpt2(args.from_gpt2, args.output, overwrite=args.overwrite)
        print(f"wrote a scratch_gpt checkpoint converted from GPT-2 {args.from_gpt2} to {out}")
    else:
        out = convert_to_gpt2(args.to_gpt2, args.output, overwrite=args.overwrite)
        print(f"wrote a GPT-2 checkpoint converted from {args.to_gpt2} to {out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    print(
        generate_from_pretrained(
            args.model,
            args.prompt,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            seed=args.seed,
            num_beams=args.num_beams,
        )
    )
    return 0
