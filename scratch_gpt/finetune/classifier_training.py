"""Training a classifier that is already built, the book's way (book chapter 6, sections 6.5 to 6.7).

The book's steps, as functions:

* ``calc_loss_batch`` / ``calc_loss_loader`` / ``calc_accuracy_loader`` (section 6.6): cross-entropy and
  accuracy of the class logits read at one token per message (``classifier_logits``; ``pooling="last_real"``,
  the last real token, or ``"last"``, the last position, which is a pad token for every shorter message: the
  book's ablation gives 98.33% vs 95.00%);
* ``apply_freeze_policy`` (section 6.5): what is trained. ``"last_block"`` (the book: the last transformer
  block, the final LayerNorm and the new head), ``"all"``, ``"lora"`` (appendix E: hand-written LoRA on every
  ``Linear``, head included, everything else frozen) or ``"peft-lora"`` (peft's LoRA on the blocks' Linears,
  head fully trained); ``unwrap_trained_model`` merges the LoRA into the weights before saving;
* ``train_classifier_simple`` (section 6.7): the book's loop (AdamW; train/val loss every ``eval_freq`` steps
  on ``eval_iter`` batches, train/val accuracy after every epoch), returning a ``ClassifierHistory``, which
  ``plot_classifier_history`` draws as the book's loss and accuracy plots.

Everything here takes a ``ScratchGPTForSequenceClassification`` and ``DataLoader``s of ``(input_ids, label)``
batches. Not here: data loading and model loading, and the pipeline from a checkpoint folder to a fine-tuned one
(all in ``classifier_pipeline.py``); LoRA itself (``lora.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..atomic_io import atomic_write
from ..constants import LORA_TARGETS
from ..kernels.loss import cross_entropy
from .lora import LinearWithLoRA, freeze_for_lora, merge_lora, replace_linear_with_lora

FREEZE_POLICIES = ("last_block", "all", "lora", "peft-lora")
POOLINGS = ("last_real", "last")
# peft target names of every Linear inside a transformer block (see docs/finetuning.md)
PEFT_TARGET_MODULES = list(LORA_TARGETS)

Pooling = Literal["last_real", "last"]
Freeze = Literal["last_block", "all", "lora", "peft-lora"]


# --------------------------------------------------------------------------------------------------------
# Loss and accuracy (the book's calc_loss_batch, calc_loss_loader, calc_accuracy_loader)
# --------------------------------------------------------------------------------------------------------


def classifier_logits(
    model: nn.Module, input_batch: torch.Tensor, *, pad_token_id: int, pooling: Pooling = "last_real"
) -> torch.Tensor:
    """Class logits ``(B, num_labels)`` for right-padded token ids ``(B, T)``.

    The classifier reads its head at the last token its ``attention_mask`` marks as real: the mask is
    ``input_ids != pad_token_id`` for ``"last_real"`` and all ones for ``"last"`` (so every position counts as
    real and the last position is read, as the book's ``model(input_batch)[:, -1, :]``). With right padding and
    causal attention, real tokens never see the pads, so both match the book's unmasked forward pass.
    """
    if pooling == "last":
        attention_mask = torch.ones_like(input_batch)
    elif pooling == "last_real":
        attention_mask = (input_batch != pad_token_id).long()  # (B, T)
    else:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return model(input_ids=input_batch, attention_mask=attention_mask, use_cache=False).logits


def calc_loss_batch(
    input_batch: torch.Tensor,
    target_batch: torch.Tensor,
    model: nn.Module,
    device: torch.device | str,
    *,
    pad_token_id: int,
    pooling: Pooling = "last_real",
) -> torch.Tensor:
    """Mean cross-entropy of one batch of ``(input_ids (B, T), labels (B,))``."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = classifier_logits(model, input_batch, pad_token_id=pad_token_id, pooling=pooling)  # (B, C)
    return cross_entropy(logits, target_batch)


@torch.no_grad()
def calc_loss_loader(
    data_loader: DataLoader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
    *,
    pad_token_id: int,
    pooling: Pooling = "last_real",
) -> float:
    """Mean batch loss over the first ``num_batches`` batches (all if None); NaN for an empty loader."""
    limit = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    if limit == 0:
        return float("nan")
    total = 0.0
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= limit:
            break
        total += calc_loss_batch(
            input_batch, target_batch, model, device, pad_token_id=pad_token_id, pooling=pooling
        ).item()
    return total / limit


@torch.no_grad()
def calc_accuracy_loader(
    data_loader: DataLoader,
    model: nn.Module,
    device: torch.device | str,
    num_batches: int | None = None,
    *,
    pad_token_id: int,
    pooling: Pooling = "last_real",
    show_progress: bool | None = None,
    desc: str = "accuracy",
) -> float:
    """Fraction of correctly classified examples in the first ``num_batches`` batches (all if None).

    ``show_progress``: a progress bar with the time left (``None``: only when stderr is a terminal).
    """
    model.eval()
    limit = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    correct = seen = 0
    bar = _progress(limit, desc, "batch", show_progress)
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= limit:
            break
        bar.update(1)
        logits = classifier_logits(model, input_batch.to(device), pad_token_id=pad_token_id, pooling=pooling)
        predicted = logits.argmax(dim=-1)  # (B,)
        correct += int((predicted == target_batch.to(device)).sum())
        seen += predicted.shape[0]
    bar.close()
    return correct / seen if seen else float("nan")


def _progress(total: int, desc: str, unit: str, show: bool | None) -> Any:
    """A tqdm bar (steps done, rate, time left) on stderr; ``show=None`` shows it only on a terminal, so logs
    and tests stay clean."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, unit=unit, disable=None if show is None else not show, dynamic_ncols=True
    )


# --------------------------------------------------------------------------------------------------------
# What is trained
# --------------------------------------------------------------------------------------------------------


def apply_freeze_policy(
    model: nn.Module,
    freeze: Freeze,
    *,
    lora_rank: int = 16,
    lora_alpha: float = 16,
    lora_scaling: Literal["book", "peft"] = "book",
) -> nn.Module:
    """Set ``requires_grad`` for a ``ScratchGPTForSequenceClassification`` and return the model to train.

    ``"peft-lora"`` returns peft's wrapper (call ``unwrap_trained_model`` before saving); the other policies
    change ``model`` in place and return it. LoRA's ``lora_alpha`` follows ``lora_scaling`` in both LoRA
    policies (``"book"``: the update is ``alpha * x @ A @ B``; ``"peft"``: ``alpha / rank * x @ A @ B``), so the
    same numbers mean the same update whichever implementation runs.
    """
    if freeze not in FREEZE_POLICIES:
        raise ValueError(f"freeze must be one of {FREEZE_POLICIES}, got {freeze!r}")
    gpt = getattr(getattr(model, "transformer", None), "gpt", None)
    if gpt is None or not hasattr(model, "score"):
        raise ValueError(
            f"expected a ScratchGPTForSequenceClassification (with .transformer.gpt and .score), got "
            f"{type(model).__name__}; load it with load_classifier(model_dir)"
        )
    if freeze == "all":
        model.requires_grad_(True)
    elif freeze == "last_block":  # the book: last block + final LayerNorm + the new head
        model.requires_grad_(False)
        for module in (gpt.trf_blocks[-1], gpt.final_norm, model.score):
            module.requires_grad_(True)
    elif freeze == "lora":  # appendix E: LoRA on every Linear, the head's included; all else frozen
        replace_linear_with_lora(model, lora_rank, lora_alpha, scaling=lora_scaling)
        freeze_for_lora(model)
    else:
        from peft import LoraConfig, get_peft_model

        peft_alpha = lora_alpha * lora_rank if lora_scaling == "book" else lora_alpha
        config = LoraConfig(
            task_type="SEQ_CLS", r=lora_rank, lora_alpha=peft_alpha, target_modules=PEFT_TARGET_MODULES
        )
        model = get_peft_model(model, config)  # task SEQ_CLS also trains the head "score" in full
    return model


def unwrap_trained_model(model: nn.Module) -> nn.Module:
    """The plain classifier to save: LoRA merged into the weights (hand-written or peft), nothing else changed."""
    if hasattr(model, "merge_and_unload"):  # a peft model
        return model.merge_and_unload()
    if any(isinstance(m, LinearWithLoRA) for m in model.modules()):
        merge_lora(model)
    return model


# --------------------------------------------------------------------------------------------------------
# The training loop (the book's train_classifier_simple)
# --------------------------------------------------------------------------------------------------------


@dataclass
class ClassifierHistory:
    """What ``train_classifier_simple`` measured: losses every ``eval_freq`` steps, accuracies every epoch."""

    steps: list[int] = field(default_factory=list)
    examples_seen_at_eval: list[int] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    train_accs: list[float] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)
    examples_seen: int = 0
    global_step: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_classifier_simple(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    *,
    pad_token_id: int,
    pooling: Pooling = "last_real",
    max_steps: int | None = None,
    log: Callable[[str], None] | None = None,
    show_progress: bool | None = None,
) -> ClassifierHistory:
    """The book's loop: one optimizer step per batch; every ``eval_freq`` steps the mean loss over ``eval_iter``
    train and validation batches; after every epoch the accuracy over ``eval_iter`` batches of each.

    ``max_steps`` stops early (for smoke tests). ``log`` receives one line per evaluation (the book prints them).
    ``show_progress``: a progress bar over all steps with the time left, and one for each accuracy pass
    (``None``: only when stderr is a terminal); the log lines are written above it.
    """
    for name, value in (("num_epochs", num_epochs), ("eval_freq", eval_freq), ("eval_iter", eval_iter)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    history = ClassifierHistory()
    kwargs = dict(pad_token_id=pad_token_id, pooling=pooling)
    step = -1  # as the book: the first evaluation comes after the first step
    total = (
        num_epochs * len(train_loader)
        if max_steps is None
        else min(max_steps, num_epochs * len(train_loader))
    )
    bar = _progress(total, "fine-tune", "step", show_progress)
    if log and not bar.disable:
        log = _above(bar, log)
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()
            loss = calc_loss_batch(input_batch, target_batch, model, device, **kwargs)
            loss.backward()
            optimizer.step()
            history.examples_seen += input_batch.shape[0]
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            if step % eval_freq == 0:
                model.eval()
                train_loss = calc_loss_loader(train_loader, model, device, eval_iter, **kwargs)
                val_loss = calc_loss_loader(val_loader, model, device, eval_iter, **kwargs)
                model.train()
                history.steps.append(step)
                history.examples_seen_at_eval.append(history.examples_seen)
                history.train_losses.append(train_loss)
                history.val_losses.append(val_loss)
                if log:
                    log(
                        f"Ep {epoch + 1} (Step {step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}"
                    )
            if max_steps is not None and step + 1 >= max_steps:
                break
        shown = False if bar.disable else show_progress  # nested bars only under a shown main bar
        train_acc = calc_accuracy_loader(train_loader, model, device, eval_iter, **kwargs, show_progress=shown,
                                         desc="train accuracy")  # fmt: skip
        val_acc = calc_accuracy_loader(val_loader, model, device, eval_iter, **kwargs, show_progress=shown,
                                       desc="validation accuracy")  # fmt: skip
        history.train_accs.append(train_acc)
        history.val_accs.append(val_acc)
        if log:
            log(f"Training accuracy: {train_acc * 100:.2f}% | Validation accuracy: {val_acc * 100:.2f}%")
        if max_steps is not None and step + 1 >= max_steps:
            break
    bar.close()
    history.global_step = step + 1
    return history


def _above(bar: Any, log: Callable[[str], None]) -> Callable[[str], None]:
    """``log``, but printed above the progress bar instead of through it."""

    def write(line: str) -> None:
        bar.clear()
        log(line)
        bar.refresh()

    return write


def plot_classifier_history(history: ClassifierHistory, path: str | PathLike[str]) -> Path:
    """Loss against examples seen and accuracy against epochs, side by side, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(history.examples_seen_at_eval, history.train_losses, label="Training loss")
    ax_loss.plot(history.examples_seen_at_eval, history.val_losses, linestyle="-.", label="Validation loss")
    ax_loss.set_xlabel("Examples seen")
    ax_loss.set_ylabel("Loss")
    ax_loss.legend()
    epochs = range(1, len(history.train_accs) + 1)
    ax_acc.plot(epochs, history.train_accs, marker="o", label="Training accuracy")
    ax_acc.plot(epochs, history.val_accs, marker="o", linestyle="-.", label="Validation accuracy")
    ax_acc.set_xlabel("Epoch")
    ax_acc.set_ylabel("Accuracy")
    ax_acc.legend()
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), suffix=".png")
    finally:
        plt.close(fig)
    return path
