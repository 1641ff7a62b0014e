"""The book's training conventions, for reproducing its printed numbers (book chapter 5 and appendix D).

``pretrain(..., PretrainConfig(book_conventions=True))`` trains the way the book's ``train_model_simple``
(chapter 5) and ``train_model`` (appendix D) do; these are the pieces it uses. Each differs from our default
for a reason (see docs/chapters/ch05-pretraining-and-generation.md, "Book mode"):

* **batch order**: each epoch is a fresh ``DataLoader(shuffle=True, drop_last=True)`` iterator, whose order
  comes from the *global* RNG (two draws: the iterator's base seed, then the sampler's seed). Our default
  permutes with a private generator seeded by ``(seed, epoch)``, so that a resumed or multi-process run sees
  the same batches as an uninterrupted one, and dropout cannot shift the data order.
* **weight decay** on every parameter (the book passes ``model.parameters()`` to AdamW); our default skips
  biases and LayerNorm parameters, as GPT-2, nanoGPT and ``Trainer`` do.
* **evaluation** after steps 1, 6, 11, ... (``global_step % eval_freq == 0`` with a 0-based step), on the
  first ``eval_iter`` batches of a *shuffled* training loader (more global-RNG draws) and of the validation
  loader, each a mean of batch means (``calc_loss_loader``); our default evaluates after steps
  ``eval_interval, 2 * eval_interval, ...`` and at the end, on the first batches in order, weighting by
  tokens.
* **appendix D's schedule**: warmup from ``initial_lr`` (``initial + s * (peak - initial) / W``), cosine
  from the step after warmup over ``total - W`` steps (never quite reaching ``min_lr``), clipping only once
  warmup is over (``s >= W``, the book's code today; the first printing had ``s > W``). Our default warms up
  as ``peak * (s + 1) / W`` (no step at learning rate 0), ends exactly at ``min_lr``, and clips every step.
* **the model**: the book's ``GPTModel`` keeps PyTorch's default initialization of every ``nn.Linear`` and
  ``nn.Embedding`` (drawn in construction order after ``torch.manual_seed(123)``) and has a separate output
  head. ``init_weights_like_the_book`` gives our model exactly those weights; our default is GPT-2's
  N(0, 0.02) initialization with a tied head.

Deliberately not here: the loop itself (``pretrain.py``), and anything that changes the model's math.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .losses import calc_loss_loader

__all__ = [
    "book_lr_at_step",
    "book_param_groups",
    "book_train_batches",
    "book_evaluate",
    "init_weights_like_the_book",
]


def book_lr_at_step(
    step: int,
    *,
    peak_lr: float,
    total_steps: int,
    warmup_steps: int = 0,
    initial_lr: float = 0.0,
    min_lr: float = 0.0,
    schedule: str = "cosine",
) -> float:
    """Appendix D's learning rate at 0-based ``step``, computed as the book's ``train_model`` does.

    Warmup (``step < warmup_steps``): ``initial_lr + step * lr_increment`` with
    ``lr_increment = (peak_lr - initial_lr) / warmup_steps``. Then ``peak_lr`` (``schedule="constant"``,
    chapter 5), or cosine annealing with ``progress = (step - warmup_steps) / (total_steps - warmup_steps)``:
    ``min_lr + (peak_lr - min_lr) * 0.5 * (1 + cos(pi * progress))``.
    """
    if step < warmup_steps:
        lr_increment = (peak_lr - initial_lr) / warmup_steps
        return initial_lr + step * lr_increment
    if schedule == "constant":
        return peak_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def book_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """One AdamW group holding every trainable parameter, all decayed (the book's
    ``AdamW(model.parameters(), weight_decay=...)``)."""
    return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]


def book_train_batches(
    data: Dataset, batch_size: int, num_workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches forever, epoch after epoch, as the book's ``for input_batch, target_batch in
    train_loader`` gives them: a new ``DataLoader(shuffle=True, drop_last=True)`` iterator each epoch, its
    order drawn from the global RNG when the epoch's first batch is asked for."""
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers)
    if len(loader) == 0:
        raise ValueError(
            f"the training data has {len(data)} windows, fewer than one batch of {batch_size}; "  # type: ignore[arg-type]
            "use more data or a smaller batch_size / max_length"
        )
    while True:
        yield from loader


@torch.no_grad()
def book_evaluate(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset | None,
    batch_size: int,
    eval_batches: int | None,
    device: Any = None,
) -> tuple[float, float]:
    """The book's ``evaluate_model``: ``calc_loss_loader`` on the first ``eval_batches`` batches of a shuffled
    training loader (``shuffle=True, drop_last=True``: its order comes from the global RNG) and of the
    validation loader (in order, ``drop_last=False``). Each loss is a mean of batch means; NaN without data.
    ``model`` must already be in eval mode."""
    train_loader = DataLoader(train_data, batch_size=batch_size, shuffle=True, drop_last=True)
    train_loss = calc_loss_loader(train_loader, model, device, num_batches=eval_batches)
    if val_data is None:
        return train_loss, float("nan")
    val_loader = DataLoader(val_data, batch_size=batch_size, shuffle=False, drop_last=False)
    return train_loss, calc_loss_loader(val_loader, model, device, num_batches=eval_batches)


def init_weights_like_the_book(model: nn.Module, seed: int = 123) -> nn.Module:
    """Give ``model`` the book's initial weights: ``torch.manual_seed(seed)``, then PyTorch's default
    initialization of every ``nn.Linear`` and ``nn.Embedding`` in module order (which is the book's
    construction order: token and position embeddings, each block's query/key/value/output projections and
    feed-forward layers, the output head); LayerNorm scale 1, shift 0.

    The global RNG is left where the book's ``GPTModel(cfg)`` leaves it, so what follows (batch order,
    dropout) draws the book's numbers too. The output head must not be tied to the token embedding (the
    book's is a separate ``nn.Linear``): resetting a tied head would overwrite the embedding.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    for module in model.modules():
        if isinstance(module, nn.Linear) and id(module.weight) in embeddings:
            raise ValueError(
                "the output head shares its weight with the token embedding; the book's GPTModel has a "
                "separate head: build the model with tie_word_embeddings=False"
            )
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.reset_parameters()
            elif hasattr(module, "scale") and hasattr(module, "shift"):  # the book's LayerNorm
                module.scale.fill_(1.0)
                module.shift.fill_(0.0)
    return model
