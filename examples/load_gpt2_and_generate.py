"""Load GPT-2 weights into scratch_gpt and generate text (book chapter 5, "Loading pretrained weights from OpenAI").

Give it a local Hugging Face GPT-2 folder (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``, e.g.
one written by ``GPT2LMHeadModel.save_pretrained``). The script

1. converts the weights with ``load_gpt2`` (the book's ``load_weights_into_gpt``, written as a name table);
2. checks the converted model against ``GPT2LMHeadModel`` on the prompt (largest logit difference);
3. continues the prompt with the book's ``generate`` (temperature + top-k, KV cache) and prints the text.

The tokenizer is the folder's own (``AutoTokenizer``) when it has one, else OpenAI's GPT-2 BPE files
(``encoder.json`` + ``vocab.bpe``) from the data folder that ``scratch-gpt data`` fills. Without a folder the
script makes a small *random* GPT-2 in a temporary folder, so you can see it run (its text is gibberish)::

    .venv/bin/python examples/load_gpt2_and_generate.py path/to/gpt2 --prompt "Every effort moves you"
    .venv/bin/python examples/load_gpt2_and_generate.py            # random demo model

Not here: downloading weights (no network is assumed; fetch GPT-2 yourself and pass its folder).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from scratch_gpt.data.downloads import data_dir, missing_message
from scratch_gpt.generation import generate
from scratch_gpt.hub.convert_gpt2 import load_gpt2

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = data_dir()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("gpt2_dir", nargs="?", help="local GPT-2 folder (default: a random demo model)")
    parser.add_argument("--prompt", default="Every effort moves you", help="text to continue")
    parser.add_argument("--max-new-tokens", type=int, default=25)
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (the default)")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument(
        "--data-dir", default=str(DEFAULT_DATA), help="folder with encoder.json and vocab.bpe"
    )
    return parser.parse_args(argv)


def load_tokenizer(gpt2_dir: Path, data_dir: Path):  # noqa: ANN201 - a BPETokenizer or a Hugging Face tokenizer
    """The folder's tokenizer if it has one, else GPT-2's BPE from the reference data."""
    if (gpt2_dir / "tokenizer.json").is_file() or (gpt2_dir / "vocab.json").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(gpt2_dir)
    from scratch_gpt.bpe import BPETokenizer

    encoder, vocab_bpe = data_dir / "encoder.json", data_dir / "vocab.bpe"
    if not encoder.is_file():
        raise SystemExit(
            f"{gpt2_dir} has no tokenizer of its own, and "
            + missing_message(["encoder.json", "vocab.bpe"], data_dir)
        )
    return BPETokenizer.from_gpt2_files(encoder, vocab_bpe)


def make_demo_gpt2(directory: Path) -> None:
    """A small random GPT-2 (GPT-2's vocabulary, 2 layers) saved the way Hugging Face saves GPT-2."""
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=128, initializer_range=0.2)
    GPT2LMHeadModel(config).save_pretrained(directory)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        gpt2_dir = Path(args.gpt2_dir) if args.gpt2_dir else Path(tmp) / "random-gpt2"
        if args.gpt2_dir is None:
            make_demo_gpt2(gpt2_dir)
            print(f"no folder given: made a random GPT-2 in {gpt2_dir}")
        model = load_gpt2(gpt2_dir)  # ScratchGPTForCausalLM, eval mode
        tokenizer = load_tokenizer(gpt2_dir, Path(args.data_dir))
        idx = torch.tensor([tokenizer.encode(args.prompt)])  # (1, T)

        reference = GPT2LMHeadModel.from_pretrained(gpt2_dir).eval()
        with torch.no_grad():
            diff = (model(idx).logits - reference(idx).logits).abs().max().item()
        n_params = sum(p.numel() for p in model.parameters())
        print(f"loaded {n_params:,} parameters; max |logit difference| vs GPT2LMHeadModel: {diff:.2e}")

        generator = torch.Generator().manual_seed(args.seed)
        out = generate(
            model,
            idx,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            eos_id=model.config.eos_token_id,
            generator=generator,
        )
        print(tokenizer.decode(out[0].tolist()))


if __name__ == "__main__":
    main()
