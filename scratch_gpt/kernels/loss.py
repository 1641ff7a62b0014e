"""The training loss of chapter 5: cross-entropy between the next-token logits and the targets.

For each position the loss is ``-log softmax(logits)[target]`` — the negative log-probability the model gives the
right next token — averaged over the positions that have a target (``-100`` marks positions without one, as in
PyTorch and Hugging Face). Its gradient with respect to the logits is the classic ``softmax(logits) - one_hot(target)``
(divided by the number of targets).

* ``cross_entropy(logits, targets)`` has ``F.cross_entropy``'s contract for ``(N, C)`` logits: the book's
  ``calc_loss_batch``, instruction fine-tuning and the classifier call it.
* ``causal_lm_loss(logits, labels)`` has the Hugging Face causal-LM contract (``labels`` are the input ids, shifted
  inside; ``num_items_in_batch`` makes gradient accumulation exact): ``ScratchGPTForCausalLM`` calls it.

Why not ``F.cross_entropy`` itself: with a 50,257-token vocabulary the logits of a batch are large (8 x 256
positions: 411 MB in float32), and ``F.cross_entropy`` makes three more tensors of that size — ``log_softmax``'s
output, kept for the backward pass; a zero-filled gradient for the picked entries; ``log_softmax``'s gradient.
Here the logits are processed in blocks of rows small enough to stay in the CPU cache. The forward pass keeps nothing
but the logits it was given; the backward pass recomputes each block's softmax and writes ``softmax - one_hot``
once, straight into the gradient.
The same formula, computed in a different order: losses and gradients agree with ``F.cross_entropy`` to float32
rounding (tests). Inside ``torch.compile`` the compiler's own fused kernel is used, via ``F.cross_entropy``.

Not here: label smoothing, class weights, z-loss, fusing the output head into the loss.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

IGNORE_INDEX = (
    -100
)  # targets with this value do not count (padding, masked instruction tokens, the last position)

# Rows per block: about 4 MiB of float32 logits on the CPU (stays in the cache), far more on accelerators (fewer
# kernel launches).
_BLOCK_BYTES = {"cpu": 4 << 20}
_DEFAULT_BLOCK_BYTES = 256 << 20


def _block_rows(logits: torch.Tensor) -> int:
    block_bytes = _BLOCK_BYTES.get(logits.device.type, _DEFAULT_BLOCK_BYTES)
    return max(1, block_bytes // (4 * logits.shape[1]))


class _CrossEntropyFunction(torch.autograd.Function):
    """Summed cross-entropy of ``(N, C)`` logits, divided by ``divisor``; see the module docstring."""

    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, divisor: torch.Tensor
    ) -> torch.Tensor:
        # logits: (N, C); targets: (N,) class ids or ignore_index; divisor: () float
        valid = targets != ignore_index  # (N,)
        safe_targets = torch.where(valid, targets, 0)  # (N,): any in-range id where the target is ignored
        rows = _block_rows(logits)
        log_probs = torch.empty(
            min(rows, logits.shape[0]), logits.shape[1], device=logits.device
        )  # one block
        picked = torch.empty(logits.shape[0], device=logits.device)  # (N,): log softmax(logits)[target]
        for start in range(0, logits.shape[0], rows):
            block = log_probs[: min(rows, logits.shape[0] - start)]
            torch.log_softmax(logits[start : start + rows].float(), dim=-1, out=block)
            picked[start : start + rows] = block.gather(1, safe_targets[start : start + rows, None]).squeeze(
                1
            )
        ctx.save_for_backward(logits, safe_targets, valid, divisor)
        return -(picked.masked_fill(~valid, 0.0).sum()) / divisor

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        logits, safe_targets, valid, divisor = ctx.saved_tensors
        row_scale = (grad_loss / divisor) * valid  # (N,): 0 for ignored rows
        grad = torch.empty_like(logits)  # (N, C)
        rows = _block_rows(logits)
        for start in range(0, logits.shape[0], rows):
            stop = min(start + rows, logits.shape[0])
            if grad.dtype == torch.float32:  # work straight in the gradient's memory
                block = torch.log_softmax(logits[start:stop], dim=-1, out=grad[start:stop])
            else:  # bfloat16 / float16 logits: compute the block in float32, then store it
                block = torch.log_softmax(logits[start:stop].float(), dim=-1)
            block.exp_()  # softmax, (rows, C)
            block[torch.arange(stop - start, device=block.device), safe_targets[start:stop]] -= (
                1.0  # - one_hot
            )
            block.mul_(row_scale[start:stop, None])
            if grad.dtype != torch.float32:
                grad[start:stop] = block
        return grad, None, None, None


def _check_targets(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> None:
    if logits.dim() != 2 or targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        raise ValueError(
            f"cross_entropy needs logits (N, C) and targets (N,), got {tuple(logits.shape)} and "
            f"{tuple(targets.shape)}; flatten the batch and sequence dimensions first (logits.flatten(0, 1))"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be integer class ids, got {targets.dtype}; convert them with .long()")
    out_of_range = ((targets < 0) | (targets >= logits.shape[1])) & (targets != ignore_index)
    if bool(out_of_range.any()):
        bad = int(targets[out_of_range][0])
        raise ValueError(
            f"target {bad} is not a class id: there are {logits.shape[1]} classes (0..{logits.shape[1] - 1}); "
            f"mark positions without a target with {ignore_index}"
        )


def cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """Cross-entropy of ``(N, C)`` logits against ``(N,)`` class ids, as ``F.cross_entropy`` computes it.

    Args:
        logits: ``(N, C)`` unnormalized scores (any float dtype; computed in float32).
        targets: ``(N,)`` class ids; ``ignore_index`` marks rows that do not count.
        ignore_index: the target value of rows to skip.
        reduction: ``"mean"`` over the rows that count (NaN when none does, as in PyTorch) or ``"sum"``.

    Returns:
        The loss, a float32 scalar.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    _check_targets(logits, targets, ignore_index)
    targets = targets.to(logits.device)
    if torch.compiler.is_compiling():
        return F.cross_entropy(logits.float(), targets, ignore_index=ignore_index, reduction=reduction)
    if reduction == "sum":
        divisor = torch.ones((), device=logits.device)
    else:
        divisor = (targets != ignore_index).sum().float()
    return _CrossEntropyFunction.apply(logits, targets, ignore_index, divisor)


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = IGNORE_INDEX,
    shift_labels: torch.Tensor | None = None,
    **_: object,
) -> torch.Tensor:
    """The next-token loss of a causal LM, with Hugging Face's contract (``ForCausalLMLoss``).

    Args:
        logits: ``(B, T, V)`` next-token logits.
        labels: ``(B, T)`` the input ids themselves (``ignore_index`` = do not count); position ``t`` is scored
            against ``labels[:, t + 1]``, and the last position has no target.
        num_items_in_batch: when given (``Trainer`` passes it with gradient accumulation), the summed loss is
            divided by it instead of by this batch's own count, so that accumulated steps add up exactly.
        ignore_index: the label value of positions to skip.
        shift_labels: already-shifted ``(B, T)`` targets, used instead of shifting ``labels``.

    Returns:
        The loss, a float32 scalar.
    """
    if shift_labels is None:
        shift_labels = F.pad(labels, (0, 1), value=ignore_index)[..., 1:]  # (B, T): the next token, or ignore
    logits_2d = logits.reshape(-1, logits.shape[-1])  # (B*T, V)
    targets = shift_labels.reshape(-1).to(logits.device)  # (B*T,)
    if num_items_in_batch is None:
        return cross_entropy(logits_2d, targets, ignore_index, "mean")
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(logits.device)
    return cross_entropy(logits_2d, targets, ignore_index, "sum") / num_items_in_batch
