"""Direct Preference Optimization from scratch (the book's chapter 7 bonus notebook "dpo-from-scratch").

DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290) tunes a *policy* model so that it raises the
probability of a chosen answer relative to a rejected one, measured against a frozen *reference* model (the
instruction-tuned model before DPO). For one pair, with ``log p`` the log-probability of a response given the
prompt::

    logits = (log p_policy(chosen) - log p_policy(rejected)) - (log p_ref(chosen) - log p_ref(rejected))
    loss   = -log sigmoid(beta * logits)                              # Eq. 7 of the paper; 0.693 at the start

The book's steps, as functions:

* ``compute_logprobs`` (the notebook's ``compute_logprobs``): the log-probability of each sequence's response
  tokens, from the logits and chapter 7's targets (``-100`` = not scored). ``reduction="mean"`` averages over the
  response tokens as the notebook does; ``reduction="sum"`` is the paper's ``log p(y|x)`` and what TRL's
  ``DPOTrainer`` computes (``loss_type="sigmoid"``; the mean matches its ``loss_type="sigmoid_norm"``).
* ``compute_dpo_loss`` (the notebook's ``compute_dpo_loss``): the loss, and the per-pair implicit rewards
  ``beta * (log p_policy - log p_ref)`` (the paper's Eq. 5 reward, which TRL logs as ``rewards/chosen``; the
  notebook prints the same differences without the factor ``beta``).
* ``compute_dpo_loss_batch`` / ``evaluate_dpo_loader`` (the notebook's ``compute_dpo_loss_batch`` /
  ``compute_dpo_loss_loader``): one batch, and a loader, with the reference model under ``torch.no_grad``.
  Besides loss and reward margin (chosen - rejected reward), the *reward accuracy* is reported: the share of
  pairs whose chosen reward is above the rejected one.
* ``train_model_dpo_simple`` (the notebook's function of the same name): chapter 5's loop with the DPO loss,
  the reference model frozen (``freeze_reference``), an evaluation every ``eval_freq`` steps; ``disable_dropout``
  sets the policy's dropout to 0 as the notebook (``drop_rate=0.0``) and TRL do.

``response_loss`` from chapter 7 (``instruction_training``) measures the loss of the held-out *chosen answers*
before and after, the check that DPO did not wreck what instruction tuning taught (DPO is prone to collapse).

Not here: the data (``dpo_data.py``) and loading/saving models (``dpo_pipeline.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..generation import model_logits

__all__ = [
    "DPOLossOutput",
    "DPORun",
    "compute_dpo_loss",
    "compute_dpo_loss_batch",
    "compute_logprobs",
    "disable_dropout",
    "evaluate_dpo_loader",
    "freeze_reference",
    "sequence_logprobs",
    "train_model_dpo_simple",
]

REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be 'mean' (the book's notebook) or 'sum' (the DPO paper, TRL), got {reduction!r}"
        )


def compute_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean", ignore_index: int = -100
) -> torch.Tensor:
    """Log-probability of each sequence's scored targets, shape ``(B,)``.

    ``logits`` ``(B, T, V)`` come from the inputs, ``targets`` ``(B, T)`` are the inputs shifted by one with
    ``ignore_index`` where nothing is scored (chapter 7's collate already did the shift, so unlike the
    notebook nothing is cut off here). ``reduction="sum"`` is ``log p(response | prompt)``; ``"mean"`` divides it
    by the number of scored tokens. A row without scored tokens gives 0 (sum) or NaN (mean).
    """
    _check_reduction(reduction)
    mask = targets != ignore_index  # (B, T)
    log_probs = F.log_softmax(
        logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1
    )  # (B, T, V)
    selected = torch.gather(log_probs, -1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    summed = (selected * mask).sum(-1)  # (B,)
    if reduction == "sum":
        return summed
    return summed / mask.sum(-1)


def sequence_logprobs(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """``compute_logprobs`` of ``model``'s logits for ``inputs`` ``(B, T)``: shape ``(B,)``."""
    return compute_logprobs(model_logits(model, inputs), targets, reduction)


class DPOLossOutput(NamedTuple):
    """The mean DPO loss over the pairs, and the implicit rewards of each pair (shape ``(B,)``, no gradient)."""

    loss: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor


def compute_dpo_loss(
    policy_chosen_logprobs: torch.Tensor,
    policy_rejected_logprobs: torch.Tensor,
    reference_chosen_logprobs: torch.Tensor,
    reference_rejected_logprobs: torch.Tensor,
    beta: float = 0.1,
) -> DPOLossOutput:
    """The DPO loss of a batch of pairs from the four ``(B,)`` log-probabilities (Eq. 7 of the paper).

    ``beta`` (0.1 to 0.5 in the book) scales the log-ratios: the larger it is, the more a given drift from the
    reference moves the loss, so the policy stays closer to the reference. Rewards are
    ``beta * (policy - reference)`` log-probabilities, detached.
    """
    if not beta > 0:
        raise ValueError(f"beta must be a positive number, got {beta!r} (the book uses 0.1)")
    policy_logratios = policy_chosen_logprobs - policy_rejected_logprobs  # (B,)
    reference_logratios = reference_chosen_logprobs - reference_rejected_logprobs  # (B,)
    logits = policy_logratios - reference_logratios  # (B,)
    losses = -F.logsigmoid(beta * logits)  # (B,)
    chosen_rewards = beta * (policy_chosen_logprobs - reference_chosen_logprobs).detach()
    rejected_rewards = beta * (policy_rejected_logprobs - reference_rejected_logprobs).detach()
    return DPOLossOutput(losses.mean(), chosen_rewards, rejected_rewards)


def _pair_logprobs(
    model: nn.Module, batch: Mapping[str, torch.Tensor], reduction: str
) -> tuple[torch.Tensor, ...]:
    """Chosen and rejected log-probabilities from one forward pass over the 2B sequences."""
    device = next(model.parameters()).device
    inputs = torch.cat([batch["chosen"], batch["rejected"]]).to(device)  # (2B, T)
    targets = torch.cat([batch["chosen_targets"], batch["rejected_targets"]]).to(device)  # (2B, T)
    return sequence_logprobs(model, inputs, targets, reduction).chunk(2)  # (B,), (B,)


def compute_dpo_loss_batch(
    batch: Mapping[str, torch.Tensor],
    policy_model: nn.Module,
    reference_model: nn.Module,
    beta: float = 0.1,
    reduction: str = "mean",
) -> DPOLossOutput:
    """The DPO loss of one ``preference_collate_fn`` batch; the reference model runs without gradients."""
    _check_reduction(reduction)
    policy_chosen, policy_rejected = _pair_logprobs(policy_model, batch, reduction)
    with torch.no_grad():
        reference_chosen, reference_rejected = _pair_logprobs(reference_model, batch, reduction)
    return compute_dpo_loss(
        policy_chosen, policy_rejected, reference_chosen.to(policy_chosen.device),
        reference_rejected.to(policy_chosen.device), beta,
    )  # fmt: skip


@torch.no_grad()
def evaluate_dpo_loader(
    data_loader: DataLoader,
    policy_model: nn.Module,
    reference_model: nn.Module,
    beta: float = 0.1,
    num_batches: int | None = None,
    reduction: str = "mean",
) -> dict[str, float]:
    """DPO metrics over the first ``num_batches`` batches (None: all), averaged per pair.

    Returns ``loss``, ``chosen_reward``, ``rejected_reward``, ``reward_margin`` (chosen - rejected) and
    ``reward_accuracy`` (share of pairs with chosen reward > rejected reward; 0 at the start, where every
    reward is 0). The notebook averages batch means instead; the two agree when all batches are full.
    """
    was_training = policy_model.training
    policy_model.eval()
    losses, chosen, rejected = [], [], []
    for index, batch in enumerate(data_loader):
        if num_batches is not None and index >= num_batches:
            break
        out = compute_dpo_loss_batch(batch, policy_model, reference_model, beta, reduction)
        losses.append(out.loss.item() * len(out.chosen_rewards))
        chosen.append(out.chosen_rewards.float().cpu())
        rejected.append(out.rejected_rewards.float().cpu())
    policy_model.train(was_training)
    if not chosen:
        nan = float("nan")
        return dict(loss=nan, chosen_reward=nan, rejected_reward=nan, reward_margin=nan, reward_accuracy=nan)
    chosen_all, rejected_all = torch.cat(chosen), torch.cat(rejected)
    return {
        "loss": sum(losses) / len(chosen_all),
        "chosen_reward": chosen_all.mean().item(),
        "rejected_reward": rejected_all.mean().item(),
        "reward_margin": (chosen_all - rejected_all).mean().item(),
        "reward_accuracy": (chosen_all > rejected_all).float().mean().item(),
    }


def disable_dropout(model: nn.Module) -> nn.Module:
    """Set every ``nn.Dropout`` of ``model`` to ``p=0`` (in place; the saved config keeps its rate) and return it.

    The notebook trains DPO with ``drop_rate=0.0`` and TRL's ``DPOConfig`` has ``disable_dropout=True``: with
    dropout the policy would score a text differently from the reference even before any update.
    """
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


def freeze_reference(model: nn.Module, copy_model: bool = False) -> nn.Module:
    """The reference model: ``model`` (or a deep copy of it) in eval mode with every parameter frozen."""
    reference = copy.deepcopy(model) if copy_model else model
    reference.eval()
    reference.requires_grad_(False)
    return reference


class DPORun(NamedTuple):
    """What ``train_model_dpo_simple`` returns: evaluation records, optimizer steps and tokens seen."""

    history: list[dict[str, float]]
    steps: int
    tokens_seen: int


def train_model_dpo_simple(
    policy_model: nn.Module,
    reference_model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    num_epochs: int,
    beta: float,
    eval_freq: int,
    eval_iter: int | None,
    *,
    reduction: str = "mean",
    max_steps: int | None = None,
    grad_clip: float | None = None,
    log_fn: Callable[[str], None] | None = print,
    on_step: Callable[[int, float], None] | None = None,
) -> DPORun:
    """The notebook's ``train_model_dpo_simple``: chapter 5's loop with the DPO loss.

    Only ``policy_model``'s parameters should be in ``optimizer``; the reference model is checked to be frozen.
    Every ``eval_freq`` steps (and after the last) ``evaluate_dpo_loader`` runs on ``eval_iter`` batches of the
    train and validation loaders and a record ``{step, tokens_seen, train_*, val_*}`` is appended to the
    history. ``on_step(step, loss)`` is called after every optimizer step (a progress bar); ``max_steps`` stops
    early.
    """
    if any(p.requires_grad for p in reference_model.parameters()):
        raise ValueError(
            "the reference model must be frozen; pass freeze_reference(model) as reference_model"
        )
    if eval_freq < 1:
        raise ValueError(f"eval_freq must be a positive integer, got {eval_freq!r}")
    history: list[dict[str, float]] = []
    tokens_seen, step = 0, 0

    def evaluate() -> None:
        record: dict[str, float] = {"step": step, "tokens_seen": tokens_seen}
        for name, loader in (("train", train_loader), ("val", val_loader)):
            metrics = evaluate_dpo_loader(loader, policy_model, reference_model, beta, eval_iter, reduction)
            record.update({f"{name}_{key}": value for key, value in metrics.items()})
        history.append(record)
        if log_fn is not None:
            log_fn(
                f"Step {step:06d}: train loss {record['train_loss']:.3f}, val loss {record['val_loss']:.3f}, "
                f"train reward margin {record['train_reward_margin']:.3f}, "
                f"val reward margin {record['val_reward_margin']:.3f}, "
                f"val reward accuracy {record['val_reward_accuracy']:.2f}"
            )

    done = False
    for _ in range(num_epochs):
        policy_model.train()
        for batch in train_loader:
            optimizer.zero_grad()
            loss = compute_dpo_loss_batch(batch, policy_model, reference_model, beta, reduction).loss
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(policy_model.parameters(), grad_clip)
            optimizer.step()
            tokens_seen += batch["chosen"].numel() + batch["rejected"].numel()
            step += 1
            if on_step is not None:
                on_step(step, loss.item())
            if step % eval_freq == 0:
                evaluate()
            if max_steps is not None and step >= max_steps:
                done = True
                break
        if done:
            break
    if not history or history[-1]["step"] != step:
        evaluate()
    policy_model.eval()
    return DPORun(history, step, tokens_seen)
