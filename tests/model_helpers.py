"""Tiny model configs shared by the model tests (no test functions here)."""

from __future__ import annotations

import torch

from scratch_gpt import ScratchGPTConfig


def tiny_config(**overrides) -> ScratchGPTConfig:
    """A 2-layer, 64-wide GPT with a 100-token vocab. ``initializer_range=0.3`` makes a random model's output vary
    from token to token, so generation tests cannot pass vacuously by repeating one token."""
    values = dict(
        vocab_size=100,
        n_positions=32,
        n_embd=64,
        n_layer=2,
        n_head=4,
        dropout=0.0,
        initializer_range=0.3,
        eos_token_id=99,
        pad_token_id=0,
    )
    values.update(overrides)
    return ScratchGPTConfig(**values)


def random_ids(batch: int, length: int, vocab: int = 100, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab - 1, (batch, length), generator=generator)


def gpt2_pair(attn_implementation: str = "eager", seed: int = 0, **config_overrides):
    """A random ``GPT2LMHeadModel`` and the ``ScratchGPTForCausalLM`` converted from it (same weights), both in
    eval mode with the given attention implementation: the oracle of the contract tests."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from scratch_gpt import load_gpt2

    values = dict(vocab_size=100, n_positions=32, n_embd=64, n_layer=2, n_head=4, initializer_range=0.3)
    values.update(bos_token_id=99, eos_token_id=99)
    values.update(config_overrides)
    torch.manual_seed(seed)
    gpt2 = GPT2LMHeadModel(GPT2Config(**values, attn_implementation=attn_implementation)).eval()
    ours = load_gpt2(gpt2).eval()
    ours.set_attn_implementation(attn_implementation)
    return gpt2, ours
