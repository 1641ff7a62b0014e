"""A tiny tokenizer, model and instruction data set shared by the chapter 7 tests (no test functions here)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from scratch_gpt import BPETokenizer, ScratchGPTConfig, ScratchGPTForCausalLM, ScratchGPTTokenizerFast
from scratch_gpt.finetune.instruction_data import ALPACA_PREAMBLE

# Texts to train a throwaway BPE on: the prompt format plus a few non-ASCII characters (so that some characters
# span several byte-level tokens, which incremental decoding must handle).
TOKENIZER_TEXT = (
    f"{ALPACA_PREAMBLE}\n\n### Instruction:\nName a color.\n\n### Input:\nsky\n\n### Response:\nBlue.\n"
    "The quick brown fox jumps over the lazy dog. Café, naïve, 東京, emoji 😀 and more words to merge. "
) * 3

RECORDS = [
    {
        "instruction": f"Repeat the word {word}.",
        "input": "" if i % 3 else f"{word} {word}",
        "output": word.capitalize(),
    }
    for i, word in enumerate(
        [
            "red",
            "green",
            "blue",
            "cat",
            "dog",
            "sun",
            "moon",
            "star",
            "tree",
            "fish",
            "bird",
            "rain",
            "snow",
            "wind",
            "fire",
            "rock",
            "sand",
            "leaf",
            "road",
            "ship",
        ]
    )
]  # 20 records: split 85/10/5 -> 17 train / 2 test / 1 validation


@lru_cache(maxsize=1)
def _bpe() -> BPETokenizer:
    return BPETokenizer.train(TOKENIZER_TEXT, vocab_size=320, special_tokens=("<|endoftext|>",))


def tiny_tokenizer(context_length: int = 160) -> ScratchGPTTokenizerFast:
    """A fast HF tokenizer (byte-level BPE, 320 tokens + ``<|pad|>``) trained in-process."""
    return ScratchGPTTokenizerFast.from_bpe(_bpe(), model_max_length=context_length)


def tiny_model(tokenizer, context_length: int = 160, seed: int = 0, **overrides) -> ScratchGPTForCausalLM:
    """A random 2-layer, 32-wide causal LM sized for ``tokenizer``. ``initializer_range=0.3`` keeps the random
    model's tokens varied, so generation tests cannot pass by repeating one token."""
    torch.manual_seed(seed)
    values = dict(
        vocab_size=len(tokenizer),
        n_positions=context_length,
        n_embd=32,
        n_layer=2,
        n_head=2,
        dropout=0.0,
        initializer_range=0.3,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    values.update(overrides)
    return ScratchGPTForCausalLM(ScratchGPTConfig(**values)).eval()


def save_tiny_checkpoint(directory: Path, context_length: int = 160, seed: int = 0, **overrides) -> Path:
    """Save a tiny model + tokenizer into ``directory`` (a pretrained-model folder to fine-tune or chat with)."""
    tokenizer = tiny_tokenizer(context_length)
    model = tiny_model(tokenizer, context_length, seed, **overrides)
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def write_records(path: Path, records=RECORDS) -> Path:
    path.write_text(json.dumps(records), encoding="utf-8")
    return path
