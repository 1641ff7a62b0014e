"""The small building blocks of a GPT block (book chapter 4): ``LayerNorm``, ``GELU`` and ``FeedForward``.

Each class is written the way chapter 4 derives it, and computes exactly that formula; where PyTorch has a fused
kernel for the same formula (``F.layer_norm``, ``F.gelu(approximate="tanh")``) we call it, and the tests check it
against the written-out math. This module does not contain attention (see ``attention.py``) or the block that
wires these pieces together (see ``model.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """Layer normalization over the last (embedding) dimension, with a learnable ``scale`` and ``shift``.

    ``y = scale * (x - mean) / sqrt(var + eps) + shift``, with the *biased* variance (``unbiased=False``), as in
    the book and in GPT-2.
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (..., emb_dim). F.layer_norm computes exactly the docstring's formula, in one fused kernel.
        return F.layer_norm(x, (x.shape[-1],), self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GPT-2's GELU activation, the tanh approximation.

    ``GELU(x) = 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))``
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.gelu(approximate="tanh") is the docstring's formula as a single kernel (checked in the tests).
        return F.gelu(x, approximate="tanh")


def gelu_reference(x: torch.Tensor) -> torch.Tensor:
    """The tanh-approximate GELU written out term by term, as in chapter 4 (used by the tests as an oracle)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


class FeedForward(nn.Module):
    """The position-wise feed-forward network: expand to ``4 * emb_dim``, GELU, project back.

    The two linear layers are named ``fc_in`` and ``fc_out`` so that LoRA (hand-written or peft) can target them.
    """

    def __init__(self, emb_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or 4 * emb_dim
        self.fc_in = nn.Linear(emb_dim, hidden_dim)
        self.gelu = GELU()
        self.fc_out = nn.Linear(hidden_dim, emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, emb_dim) -> (B, T, 4 * emb_dim) -> (B, T, emb_dim)
        return self.fc_out(self.gelu(self.fc_in(x)))
