"""scratch_gpt through Hugging Face's ``pipeline("text-generation")`` (book chapter 5's text generation, HF style).

``import scratch_gpt`` registers ``model_type="scratch_gpt"`` with the Auto classes, so the stock pipeline loads a
scratch_gpt checkpoint folder (model + tokenizer) like any other causal LM, and decodes with ``generate()`` (KV
cache, greedy / sampling / beam search, batching with left padding).

Give it a checkpoint folder (e.g. written by ``examples/pretrain_small_gpt.py`` or ``scratch-gpt convert
--from-gpt2``). Without one, the script trains a tiny BPE tokenizer on a sentence, builds a tiny *random* model,
saves both to a temporary folder and runs the pipeline on that (the text is gibberish, the plumbing is real)::

    .venv/bin/python examples/pipeline_text_generation.py runs/small-gpt --prompt "To be, or not"
    .venv/bin/python examples/pipeline_text_generation.py            # random demo model

Not here: training (see ``examples/pretrain_small_gpt.py``) or downloads.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from transformers import pipeline

import scratch_gpt  # noqa: F401 - registers scratch_gpt with the Auto classes the pipeline uses
from scratch_gpt.bpe import BPETokenizer
from scratch_gpt.configuration_scratch_gpt import ScratchGPTConfig
from scratch_gpt.modeling_scratch_gpt import ScratchGPTForCausalLM
from scratch_gpt.tokenization_scratch_gpt import ScratchGPTTokenizerFast

DEMO_TEXT = "Every effort moves you. Every step moves you forward, and every word moves the story. " * 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "model_dir", nargs="?", help="scratch_gpt checkpoint folder (default: a random demo model)"
    )
    parser.add_argument("--prompt", action="append", help="text to continue (repeat for a batch)")
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the default)")
    parser.add_argument("--seed", type=int, default=123)
    return parser.parse_args(argv)


def make_demo_checkpoint(directory: Path) -> None:
    """Save a tiny random scratch_gpt model and its tokenizer to ``directory``."""
    tokenizer = ScratchGPTTokenizerFast.from_bpe(
        BPETokenizer.train(DEMO_TEXT, vocab_size=290), model_max_length=128
    )
    torch.manual_seed(0)
    config = ScratchGPTConfig(
        vocab_size=len(tokenizer),  # BPE + <|endoftext|> + <|pad|>
        n_positions=128,
        n_embd=64,
        n_layer=2,
        n_head=4,
        initializer_range=0.2,  # larger than GPT-2's 0.02, so the random text is not one token repeated
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    ScratchGPTForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prompts = args.prompt or ["Every effort moves", "Every step"]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else Path(tmp) / "tiny-scratch-gpt"
        if args.model_dir is None:
            make_demo_checkpoint(model_dir)
            print(f"no folder given: saved a random tiny model and tokenizer in {model_dir}")
        generator = pipeline("text-generation", model=str(model_dir))
        print(
            f"pipeline model: {type(generator.model).__name__}, tokenizer: {type(generator.tokenizer).__name__}"
        )
        generator.tokenizer.padding_side = "left"  # batched generation pads on the left
        torch.manual_seed(args.seed)
        sampling = {"do_sample": True, "temperature": args.temperature} if args.temperature > 0 else {}
        outputs = generator(prompts, max_new_tokens=args.max_new_tokens, batch_size=len(prompts), **sampling)
        for prompt, output in zip(prompts, outputs):
            print(f"{prompt!r} -> {output[0]['generated_text']!r}")


if __name__ == "__main__":
    main()
