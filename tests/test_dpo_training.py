"""DPO from scratch: sequence log-probabilities, the loss (known answers), evaluation and the training loop."""

from __future__ import annotations

import copy
import math
from functools import partial

import pytest
import torch
from instruct_helpers import RECORDS, tiny_model, tiny_tokenizer
from torch.utils.data import DataLoader

from scratch_gpt.finetune.dpo_data import PreferenceDataset, build_preference_pairs, preference_collate_fn
from scratch_gpt.finetune.dpo_training import (
    compute_dpo_loss,
    compute_dpo_loss_batch,
    compute_logprobs,
    disable_dropout,
    evaluate_dpo_loader,
    freeze_reference,
    train_model_dpo_simple,
)


def test_compute_logprobs_against_a_loop():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, generator=generator)
    targets = torch.tensor([[1, -100, 3, 0], [-100, -100, 4, -100]])
    expected = []
    for row in range(2):
        values = [
            torch.log_softmax(logits[row, t], -1)[targets[row, t]].item()
            for t in range(4)
            if targets[row, t] >= 0
        ]
        expected.append((sum(values), sum(values) / len(values)))
    summed = compute_logprobs(logits, targets, reduction="sum")
    mean = compute_logprobs(logits, targets, reduction="mean")
    torch.testing.assert_close(summed, torch.tensor([e[0] for e in expected]))
    torch.testing.assert_close(mean, torch.tensor([e[1] for e in expected]))
    with pytest.raises(ValueError, match="reduction must be"):
        compute_logprobs(logits, targets, reduction="max")


def test_dpo_loss_known_answer():
    out = compute_dpo_loss(
        torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -2.0]), torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0]),
        beta=0.5,
    )  # fmt: skip
    # pair 1: logits (-1 + 3) - 0 = 2 -> -log sigmoid(1); pair 2: logits 0 -> log 2
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert out.loss.item() == pytest.approx(expected, abs=1e-7)
    assert out.chosen_rewards.tolist() == [0.5, 0.0]  # beta * (policy - reference)
    assert out.rejected_rewards.tolist() == [-0.5, 0.0]
    with pytest.raises(ValueError, match="beta must be a positive"):
        compute_dpo_loss(*[torch.zeros(1)] * 4, beta=0.0)


def _loader(tokenizer, records, batch_size=4):
    dataset = PreferenceDataset(build_preference_pairs(records), tokenizer)
    collate = partial(preference_collate_fn, pad_token_id=tokenizer.eos_token_id, allowed_max_length=160)
    return DataLoader(dataset, batch_size, collate_fn=collate)


def test_same_policy_and_reference_give_log_two():
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    reference = freeze_reference(model, copy_model=True)
    metrics = evaluate_dpo_loader(_loader(tokenizer, RECORDS), model, reference, beta=0.1)
    assert metrics["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["reward_accuracy"] == 0.0


def test_batch_loss_trains_only_the_policy():
    tokenizer = tiny_tokenizer()
    policy = tiny_model(tokenizer, seed=0).train()
    reference = freeze_reference(tiny_model(tokenizer, seed=1))
    batch = next(iter(_loader(tokenizer, RECORDS)))
    out = compute_dpo_loss_batch(batch, policy, reference, beta=0.1, reduction="sum")
    out.loss.backward()
    assert all(p.grad is not None for p in policy.parameters())
    assert all(p.grad is None for p in reference.parameters())
    assert out.chosen_rewards.shape == (4,) and not out.chosen_rewards.requires_grad


@pytest.mark.slow
def test_training_raises_the_margin_and_keeps_the_reference():
    tokenizer = tiny_tokenizer()
    policy = tiny_model(tokenizer, seed=0)
    reference = freeze_reference(policy, copy_model=True)
    reference_state = copy.deepcopy(reference.state_dict())
    loader = _loader(tokenizer, RECORDS)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3, weight_decay=0.01)
    steps = []
    run = train_model_dpo_simple(
        policy, reference, loader, loader, optimizer, num_epochs=2, beta=0.1, eval_freq=5, eval_iter=2,
        log_fn=None, on_step=lambda step, loss: steps.append(step),
    )  # fmt: skip
    assert run.steps == 10 and steps == list(range(1, 11))
    assert [record["step"] for record in run.history] == [5, 10]
    last = run.history[-1]
    assert last["train_loss"] < math.log(2) - 0.05
    assert last["train_reward_margin"] > 0.1 and last["train_reward_accuracy"] > 0.7
    for name, value in reference.state_dict().items():
        assert torch.equal(value, reference_state[name]), name
    assert run.tokens_seen > 0


def test_training_rejects_an_unfrozen_reference():
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    loader = _loader(tokenizer, RECORDS)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="must be frozen"):
        train_model_dpo_simple(model, copy.deepcopy(model), loader, loader, optimizer, 1, 0.1, 1, 1)


def test_disable_dropout_keeps_the_config():
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, dropout=0.3).train()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    assert not torch.equal(model(ids).logits, model(ids).logits)  # dropout is on
    disable_dropout(model)
    torch.testing.assert_close(model(ids).logits, model.eval()(ids).logits, rtol=0, atol=0)
    assert model.config.dropout == 0.3  # a saved model keeps its own rate
