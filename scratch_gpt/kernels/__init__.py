"""Faster CPU kernels for training and benchmarks, switched on with one call: ``use_fast_kernels(model)``.

The model itself is plain PyTorch (``nn.Linear`` layers, transformers' causal-LM loss), so a saved checkpoint —
and the remote code copied into it — runs on anyone's torch. The kernels here compute the same math faster on
CPU and are switched on only where this package trains or measures a model:

* ``linear.Linear``: an ``nn.Linear`` whose float32 CPU product runs on oneDNN's inner product (all cores),
  with the textbook backward pass;
* ``loss.cross_entropy`` / ``loss.causal_lm_loss``: cross-entropy over cache-sized blocks of rows, which never
  materialises the three logits-sized tensors of the plain loss.

``use_fast_kernels(model)`` turns every plain ``nn.Linear`` of ``model`` into ``linear.Linear`` (same parameters,
same state-dict keys: only the class changes), and gives a causal LM the blocked loss. Each large weight shape of
the model is timed once per process on both kernels, and layers of a shape where ``F.linear`` is faster on this
machine stay on it; docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import time
from collections import Counter

import torch
from torch import nn

from . import linear as _linear
from .linear import Linear, prefer_f_linear_for
from .loss import causal_lm_loss, cross_entropy

__all__ = ["Linear", "causal_lm_loss", "cross_entropy", "onednn_is_faster", "use_fast_kernels"]

_measured: dict[tuple[int, int], bool] = {}


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def onednn_is_faster(out_features: int, in_features: int) -> bool:
    """Time one batch-1 and one batch-64 product of an ``(out, in)`` weight on both kernels; cached per shape.

    The batch-1 product is a generation step, the batch-64 one a small training step; oneDNN must win the sum.
    Each kernel gets its best of 7 calls (3 for weights over 4M elements, such as a GPT-2 output head: about
    0.3 s in all for that one).
    """
    key = (out_features, in_features)
    if key not in _measured:
        if _linear._ONEDNN_LINEAR is None:
            _measured[key] = False
        else:
            g = torch.Generator().manual_seed(0)
            weight = torch.randn(out_features, in_features, generator=g)
            xs = [torch.randn(rows, in_features, generator=g) for rows in (1, 64)]
            with torch.no_grad():
                for x in xs:  # warm up both kernels (first calls allocate)
                    _linear._onednn_forward(x, weight, None)
                    torch.nn.functional.linear(x, weight)
                repeats = 3 if weight.numel() > 1 << 22 else 7
                onednn = sum(
                    _best_of(lambda x=x: _linear._onednn_forward(x, weight, None), repeats) for x in xs
                )
                mkl = sum(_best_of(lambda x=x: torch.nn.functional.linear(x, weight), repeats) for x in xs)
            _measured[key] = onednn < mkl
    return _measured[key]


def use_fast_kernels(model: nn.Module, *, measure: bool = True) -> nn.Module:
    """Switch ``model`` (in place) onto this package's CPU kernels; returns ``model``.

    Every module of exact type ``nn.Linear`` becomes ``Linear`` (LoRA wrappers, peft layers and other subclasses
    are left alone), and a Hugging Face causal LM (``ScratchGPTForCausalLM``) gets the blocked
    ``causal_lm_loss``. With ``measure=True`` each large weight shape of the model is timed once per process
    (``onednn_is_faster``) and layers of a shape where ``F.linear`` is faster here stay on it; ``Linear`` falls
    back to ``F.linear`` on its own for GPUs, other dtypes and autocast. Results equal the plain model's to
    float32 rounding.
    """
    shapes: Counter[tuple[int, int]] = Counter()
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = Linear
            shapes[(module.out_features, module.in_features)] += 1
    if measure:  # small layers stay on F.linear anyway (Linear's own size threshold)
        for shape in shapes:
            if shape[0] * shape[1] >= _linear.MIN_ONEDNN_WEIGHTS:
                prefer_f_linear_for(shape, not onednn_is_faster(*shape))
    can_generate = getattr(model, "can_generate", None)
    if hasattr(type(model), "loss_function") and callable(can_generate) and can_generate():  # a causal LM
        model.loss_function = causal_lm_loss
    return model
