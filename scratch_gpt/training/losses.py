"""Chapter 5's loss of a batch and of a data loader, the book's ``calc_loss_batch`` and ``calc_loss_loader``.

The cross-entropy of the model's logits against the targets (the inputs shifted by one), for a ``GPTModel``
or a Hugging Face causal LM alike (``generation.model_logits``). The pretraining loop (``pretrain.py``), the
book's evaluation (``book_conventions.py``) and the fine-tuning loops use these; ``pretrain.py`` re-exports
them.
"""

from __future__ import annotations

from typing import Any

import torch

from ..generation import model_logits
from ..kernels.loss import cross_entropy

__all__ = ["calc_loss_batch", "calc_loss_loader"]


def calc_loss_batch(
    input_batch: torch.Tensor, target_batch: torch.Tensor, model: torch.nn.Module, device: Any = None
) -> torch.Tensor:
    """The book's loss of one batch: cross-entropy of the logits ``(B, T, V)`` against targets ``(B, T)``.

    Works with a ``GPTModel`` (returns logits) and with a Hugging Face causal LM (returns ``.logits``).
    """
    if device is not None:
        input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = model_logits(model, input_batch)  # (B, T, vocab_size)
    return cross_entropy(logits.flatten(0, 1), target_batch.flatten())  # (B*T, V) vs (B*T,)


@torch.no_grad()
def calc_loss_loader(
    data_loader: Any, model: torch.nn.Module, device: Any = None, num_batches: int | None = None
) -> float:
    """The book's average loss over the first ``num_batches`` batches (all when None; NaN when empty)."""
    if len(data_loader) == 0:
        return float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        total += calc_loss_batch(input_batch, target_batch, model, device).item()
    return total / num_batches
