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
